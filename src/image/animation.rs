//! Animated GIF and WebP kept animated: which output an animated source gets, the limits read
//! from its header before any frame is decoded (`max_animation_frames`, `max_animation_pixels`),
//! and the per-frame loop: each frame decoded, made like a still (the pipeline's own steps,
//! the geometry settled on the first frame), and handed to the encoder before the next is
//! decoded, so memory holds a frame or two whatever the frame count.
//!
//! - `anim=false`, or a still output format (JPEG, PNG, AVIF, asked for by name): the first
//!   frame, as Cloudflare serves it.
//! - No `format`: GIF stays GIF, WebP stays WebP. `format=auto`: animated WebP when `Accept`
//!   lists `image/webp`, else GIF ([`auto_format`]), never a still. `format=webp`: animated.

use crate::image::codec::{self, gif_anim, webp_anim, AnimHeader, Probe};
use crate::image::error::TransformError;
use crate::image::format::{FormatChoice, OutputFormat, SourceFormat};
use crate::image::pixels::Pixels;
use crate::image::spec::{Limits, TransformSpec};

/// The output format of a source the origin declared `declared`, decided before its bytes are
/// seen (the response header goes out first): `still` is what the request negotiated for a
/// still image, `auto` what `format=auto` gives an animation ([`auto_format`]). A GIF or WebP
/// source may be animated, so it gets a format that can carry the animation unless
/// `anim=false` or a still format was asked for by name; a still source in that format comes
/// out still.
pub fn output_format(
    spec: &TransformSpec,
    declared: SourceFormat,
    still: OutputFormat,
    auto: OutputFormat,
) -> OutputFormat {
    if !spec.anim || spec.json {
        return still;
    }
    match (declared, spec.format) {
        (SourceFormat::Gif, FormatChoice::Source) => OutputFormat::Gif,
        (SourceFormat::Webp, FormatChoice::Source) => OutputFormat::Webp,
        (SourceFormat::Gif | SourceFormat::Webp, FormatChoice::Auto) => auto,
        _ => still,
    }
}

/// What `format=auto` gives an animation: WebP when the client takes it (`accepts_webp`) and
/// the operator allows it, else GIF.
pub fn auto_format(accepts_webp: bool) -> OutputFormat {
    if accepts_webp {
        OutputFormat::Webp
    } else {
        OutputFormat::Gif
    }
}

/// Whether `src` is made as an animation into `format`, checked against the limits from its
/// header alone (no frame decoded): `None` makes a still (of the first frame).
pub(crate) fn plan(
    src: &[u8],
    probe: &Probe,
    spec: &TransformSpec,
    format: OutputFormat,
    limits: &Limits,
) -> Result<Option<AnimHeader>, TransformError> {
    if !spec.anim || !matches!(format, OutputFormat::Gif | OutputFormat::Webp) {
        return Ok(None);
    }
    let Some(anim) = codec::animation(src, probe)? else {
        return Ok(None);
    };
    let refuse = |what: String| TransformError::AnimationTooLarge {
        frames: anim.frames,
        w: probe.width,
        h: probe.height,
        what,
    };
    if anim.frames > limits.max_animation_frames {
        return Err(refuse(format!(
            "{} frames (transform.max_animation_frames)",
            limits.max_animation_frames
        )));
    }
    // every frame is composed onto the whole canvas, whatever its own size
    if anim.frames as u64 * probe.pixels() > limits.max_animation_pixels {
        return Err(refuse(format!(
            "{} pixels in all frames (transform.max_animation_pixels)",
            limits.max_animation_pixels
        )));
    }
    Ok(Some(anim))
}

/// The animation's encoder, made when the first frame gives the output size.
enum Sink {
    Gif(gif_anim::Encoder),
    Webp(webp_anim::Encoder),
}

/// Decodes `src`'s frames one at a time, makes each with `each` (the pipeline's steps) and
/// encodes it into `format` (GIF or WebP) with its delay, the loop count kept. Returns the
/// bytes and the output size.
pub(crate) fn run(
    src: &[u8],
    probe: &Probe,
    anim: AnimHeader,
    format: OutputFormat,
    quality: u8,
    mut each: impl FnMut(Pixels) -> Result<Pixels, TransformError>,
) -> Result<(Vec<u8>, (u32, u32)), TransformError> {
    let mut sink: Option<(Sink, (u32, u32))> = None;
    for (n, frame) in codec::frames(src, probe)?.enumerate() {
        if n as u64 >= anim.frames as u64 {
            // the limits were checked on the header's count
            return Err(TransformError::Corrupt(
                "more frames than the header".into(),
            ));
        }
        let (pixels, delay) = frame?;
        let img = each(pixels)?;
        let size = (img.width, img.height);
        let (enc, _) = match &mut sink {
            Some(s) => s,
            None => sink.insert((new_sink(format, size, anim.plays, quality)?, size)),
        };
        match enc {
            Sink::Gif(e) => e.add(&img, delay)?,
            Sink::Webp(e) => e.add(&img, delay)?,
        }
    }
    let Some((enc, size)) = sink else {
        return Err(TransformError::Corrupt("animation without frames".into()));
    };
    let bytes = match enc {
        Sink::Gif(e) => e.finish()?,
        Sink::Webp(e) => e.finish()?,
    };
    Ok((bytes, size))
}

fn new_sink(
    format: OutputFormat,
    (w, h): (u32, u32),
    plays: u32,
    quality: u8,
) -> Result<Sink, TransformError> {
    Ok(match format {
        OutputFormat::Webp => {
            Sink::Webp(webp_anim::Encoder::new(w, h, plays, quality.clamp(1, 100))?)
        }
        _ => Sink::Gif(gif_anim::Encoder::new(plays)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::format::FormatChoice as C;

    #[test]
    fn output_format_from_the_declared_type() {
        let spec = |format, anim| TransformSpec {
            format,
            anim,
            ..TransformSpec::default()
        };
        let (gif, webp, jpeg) = (SourceFormat::Gif, SourceFormat::Webp, SourceFormat::Jpeg);
        let f = OutputFormat::Png;
        let of = |s: &TransformSpec, d, still| output_format(s, d, still, OutputFormat::Gif);
        assert_eq!(of(&spec(C::Source, true), gif, f), OutputFormat::Gif);
        assert_eq!(of(&spec(C::Source, false), gif, f), f);
        assert_eq!(
            of(&spec(C::Source, true), webp, OutputFormat::Webp),
            OutputFormat::Webp
        );
        assert_eq!(
            of(&spec(C::Auto, true), gif, OutputFormat::Avif),
            OutputFormat::Gif
        );
        assert_eq!(
            output_format(
                &spec(C::Auto, true),
                webp,
                OutputFormat::Avif,
                OutputFormat::Webp
            ),
            OutputFormat::Webp
        );
        assert_eq!(
            of(&spec(C::Auto, true), jpeg, OutputFormat::Avif),
            OutputFormat::Avif
        );
        let png = C::Fixed(OutputFormat::Png);
        assert_eq!(of(&spec(png, true), gif, f), f);
        assert_eq!(auto_format(true), OutputFormat::Webp);
        assert_eq!(auto_format(false), OutputFormat::Gif);
    }

    fn w(width: u32) -> TransformSpec {
        TransformSpec {
            width: Some(width),
            ..TransformSpec::default()
        }
    }

    #[test]
    fn limits_refuse_from_the_header_alone() {
        use crate::image::pipeline::prepare;
        // 10 000 frames of 1000x1000: 40 GB of RGBA if decoded; prepare decodes nothing
        let bomb = gif_anim::crafted(1000, 1000, 10_000, Some(0));
        let l = Limits::default();
        let e = prepare(&bomb, &w(100), OutputFormat::Gif, &l).unwrap_err();
        assert!(e.to_string().contains("max_animation_frames"), "{e}");
        assert_eq!(e.reason(), "bomb");
        let few = gif_anim::crafted(1000, 1000, 60, Some(0));
        let e = prepare(&few, &w(100), OutputFormat::Webp, &l).unwrap_err();
        assert!(e.to_string().contains("max_animation_pixels"), "{e}");
        // the first frame alone: no animation limit applies
        assert!(prepare(&bomb, &w(100), OutputFormat::Png, &l).is_ok());
        let still = TransformSpec {
            anim: false,
            ..w(100)
        };
        assert!(prepare(&bomb, &still, OutputFormat::Gif, &l).is_ok());
    }

    #[test]
    fn fixture_frames_are_made_one_by_one() {
        use crate::image::pipeline::transform;
        let src = crate::image::tests::fixture("seeding_pan_anim_240.gif");
        for format in [OutputFormat::Webp, OutputFormat::Gif] {
            let out = transform(&src, &w(120), format, &Limits::default()).unwrap();
            assert_eq!((out.format, out.width, out.height), (format, 120, 80));
            let probe = codec::probe(&out.bytes).unwrap();
            assert_eq!((probe.width, probe.height), (120, 80));
            let h = codec::animation(&out.bytes, &probe).unwrap();
            assert_eq!(
                h,
                Some(AnimHeader {
                    frames: 4,
                    plays: 0
                }),
                "{format:?}"
            );
        }
    }
}
