//! Progressive JPEG at a reduced DCT scale: only the scans the scaled decode uses.
//!
//! libjpeg-turbo decodes every scan of a progressive file before it outputs a row, although
//! at scale 1/8 a component whose inverse DCT is 1x1 uses its DC coefficient alone. [`for_scale`]
//! walks the whole file's structure (markers, scan headers, the extent of each scan's entropy
//! data: cheap, no Huffman decoding) and rewrites it without the AC scans such components do
//! not use. In their place it appends one synthetic scan per dropped band that codes every
//! block as zero (a few EOB runs): the decoder then knows those coefficients exactly (zero), so
//! it does not switch on block smoothing, which would estimate them, and blur the DC
//! (`jdcoefct.c`, `smoothing_ok`). The output is the full decode's, pixel for pixel.
//!
//! Components whose inverse DCT is 2x2 or larger (everything at 1/4 and 1/2; the chroma of a
//! 4:2:0 file at 1/8, which libjpeg-turbo scales up by IDCT rather than upsampling) keep all
//! their scans: libjpeg-turbo's reduced IDCTs average the full 8x8 IDCT's pixels, so every odd
//! frequency counts, and dropping a band would change the picture. (`jpeg_dc` then re-codes
//! what is kept as one baseline pass where it can; this rewrite is its fallback.)
//!
//! Truncation: scans that are not decoded are still walked to their end, and the walk must
//! reach the EOI marker, so a file cut short is refused as today. What is not checked is the
//! entropy data inside the dropped scans (a bit error there no longer fails the decode).

use crate::image::codec::bytes::be16;
use crate::image::error::TransformError;

/// One component of the frame: its id in scan headers and its sampling factors.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Component {
    pub(crate) id: u8,
    pub(crate) h: u32,
    pub(crate) v: u32,
}

#[derive(Clone, Debug)]
pub(crate) struct Frame {
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) comps: Vec<Component>,
}

impl Frame {
    pub(crate) fn max_h(&self) -> u32 {
        self.comps.iter().map(|c| c.h).max().unwrap_or(1)
    }
    pub(crate) fn max_v(&self) -> u32 {
        self.comps.iter().map(|c| c.v).max().unwrap_or(1)
    }
}

/// A scan's header fields; `comps` are indices into `Frame::comps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ScanHeader {
    pub(crate) comps: Vec<usize>,
    pub(crate) ss: usize,
    pub(crate) se: usize,
    pub(crate) ah: u8,
    pub(crate) al: u8,
    /// The Huffman table slot of each component in `comps` (DC for a DC scan, else AC).
    pub(crate) tables: Vec<u8>,
    /// Where the entropy-coded data begins.
    pub(crate) data: usize,
}

/// A byte range of the file: a marker segment kept as it is, or a scan (header and data).
#[derive(Clone, Debug)]
pub(crate) enum Piece {
    Segment(u8, std::ops::Range<usize>),
    Scan(ScanHeader, std::ops::Range<usize>),
}

pub(crate) struct Layout {
    pub(crate) frame: Frame,
    pub(crate) pieces: Vec<Piece>,
    /// A DRI segment was seen: the synthetic scans switch restart markers off first.
    restarts: bool,
}

/// Why the rewrite is not attempted: the original bytes go to libjpeg-turbo, which decides.
struct NotHandled;

/// What a scaled decode of a progressive file needs: the file's structure and, per component,
/// whether its DC scans suffice.
pub(crate) struct Plan {
    pub(crate) layout: Layout,
    pub(crate) dc_only: Vec<bool>,
    keep: Vec<bool>,
}

/// The plan to decode `b` at scale 1/`denom`: `Ok(None)` when every scan is needed or the file
/// is one this module leaves to libjpeg-turbo (not Huffman progressive, not 8-bit, an unusual
/// structure or scan progression); `Err(Truncated)` when the file ends before EOI.
pub(crate) fn plan(b: &[u8], denom: usize) -> Result<Option<Plan>, TransformError> {
    if denom < 2 {
        return Ok(None);
    }
    let layout = match walk(b)? {
        Ok(l) => l,
        Err(NotHandled) => return Ok(None),
    };
    if !complete_progression(&layout) {
        return Ok(None);
    }
    let dc_only = dc_only_components(&layout.frame, denom);
    let keep: Vec<bool> = layout
        .pieces
        .iter()
        .map(|p| match p {
            Piece::Segment(..) => true,
            Piece::Scan(s, _) => s.ss == 0 || s.comps.iter().any(|&c| !dc_only[c]),
        })
        .collect();
    if keep.iter().all(|&k| k) {
        return Ok(None);
    }
    Ok(Some(Plan {
        layout,
        dc_only,
        keep,
    }))
}

/// [`plan`], then the rewritten stream: what to decode at scale 1/`denom` instead of `b`.
#[cfg(test)]
pub(crate) fn for_scale(b: &[u8], denom: usize) -> Result<Option<Vec<u8>>, TransformError> {
    Ok(plan(b, denom)?.map(|p| p.rewrite(b)))
}

impl Plan {
    /// The stream without the scans no component needs, their bands coded as zero instead.
    pub(crate) fn rewrite(&self, b: &[u8]) -> Vec<u8> {
        rewrite(b, &self.layout, &self.keep, &self.dc_only)
    }
}

/// For each component, whether its inverse DCT at scale 1/`denom` is 1x1 (uses DC only), as
/// libjpeg-turbo's `jpeg_calc_output_dimensions` chooses: a subsampled component is scaled up by
/// a larger IDCT when the sampling ratios allow.
fn dc_only_components(f: &Frame, denom: usize) -> Vec<bool> {
    let min = (8 / denom.clamp(1, 8)) as u32;
    let (max_h, max_v) = (f.max_h(), f.max_v());
    f.comps
        .iter()
        .map(|c| {
            let mut size = min;
            while size < 8
                && (max_h * min).is_multiple_of(c.h * size * 2)
                && (max_v * min).is_multiple_of(c.v * size * 2)
            {
                size *= 2;
            }
            size == 1
        })
        .collect()
}

/// Checks the scan progression as libjpeg does (`jdphuff.c`) and returns each component's
/// True when it is valid and every coefficient of every component ends fully refined
/// (successive-approximation bit 0): the only case where dropping scans is exact.
fn complete_progression(l: &Layout) -> bool {
    let mut bits = vec![[-1i8; 64]; l.frame.comps.len()];
    for p in &l.pieces {
        let Piece::Scan(s, _) = p else { continue };
        let dc = s.ss == 0;
        if (dc && s.se != 0) || (!dc && (s.comps.len() != 1 || s.se < s.ss || s.se > 63)) {
            return false;
        }
        if s.al > 13 || (s.ah != 0 && s.al + 1 != s.ah) {
            return false;
        }
        for &c in &s.comps {
            if !dc && bits[c][0] < 0 {
                return false;
            }
            for bit in &mut bits[c][s.ss..=s.se] {
                if i16::from(s.ah) != i16::from((*bit).max(0)) {
                    return false;
                }
                *bit = s.al as i8;
            }
        }
    }
    bits.iter().all(|c| c.iter().all(|&b| b == 0))
}

/// Walks SOI to EOI. The outer `Err` is a file cut short; the inner one a structure left to
/// libjpeg-turbo.
fn walk(b: &[u8]) -> Result<Result<Layout, NotHandled>, TransformError> {
    let mut i = 2;
    let mut frame = None;
    let mut pieces = Vec::new();
    let mut restarts = false;
    loop {
        let start = i;
        match b.get(i) {
            None => return Err(TransformError::Truncated),
            Some(0xFF) => {}
            Some(_) => return Ok(Err(NotHandled)),
        }
        while b.get(i) == Some(&0xFF) {
            i += 1;
        }
        let m = *b.get(i).ok_or(TransformError::Truncated)?;
        i += 1;
        if m == 0xD9 {
            break;
        }
        if m == 0x01 || (0xD0..=0xD8).contains(&m) {
            return Ok(Err(NotHandled));
        }
        let len = be16(b, i).ok_or(TransformError::Truncated)? as usize;
        let end = i + len;
        if len < 2 {
            return Ok(Err(NotHandled));
        }
        let seg = b.get(i + 2..end).ok_or(TransformError::Truncated)?;
        match m {
            0xC2 if frame.is_none() => match parse_frame(seg) {
                Some(f) => frame = Some(f),
                None => return Ok(Err(NotHandled)),
            },
            // any other frame type, or a second frame
            0xC0..=0xCF if m != 0xC4 && m != 0xC8 && m != 0xCC => return Ok(Err(NotHandled)),
            0xDD => restarts = true,
            0xDA => {
                let Some(f) = &frame else {
                    return Ok(Err(NotHandled));
                };
                let Some(h) = parse_scan(seg, f, end) else {
                    return Ok(Err(NotHandled));
                };
                let data_end = entropy_end(b, end)?;
                pieces.push(Piece::Scan(h, start..data_end));
                i = data_end;
                continue;
            }
            _ => {}
        }
        pieces.push(Piece::Segment(m, start..end));
        i = end;
    }
    Ok(match frame {
        Some(frame) => Ok(Layout {
            frame,
            pieces,
            restarts,
        }),
        None => Err(NotHandled),
    })
}

fn parse_frame(seg: &[u8]) -> Option<Frame> {
    if *seg.first()? != 8 {
        return None;
    }
    let height = be16(seg, 1)?;
    let width = be16(seg, 3)?;
    let n = *seg.get(5)? as usize;
    if !(n == 1 || n == 3) || height == 0 || width == 0 {
        return None;
    }
    let comps = (0..n)
        .map(|k| {
            let hv = *seg.get(7 + 3 * k)?;
            let (h, v) = (u32::from(hv >> 4), u32::from(hv & 15));
            ((1..=4).contains(&h) && (1..=4).contains(&v)).then_some(Component {
                id: seg[6 + 3 * k],
                h,
                v,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Frame {
        width,
        height,
        comps,
    })
}

fn parse_scan(seg: &[u8], f: &Frame, data: usize) -> Option<ScanHeader> {
    let n = *seg.first()? as usize;
    let comps = (0..n)
        .map(|k| {
            let id = *seg.get(1 + 2 * k)?;
            f.comps.iter().position(|c| c.id == id)
        })
        .collect::<Option<Vec<_>>>()?;
    let a = *seg.get(3 + 2 * n)?;
    if n == 0 || seg.len() != 4 + 2 * n {
        return None;
    }
    let ss = seg[1 + 2 * n] as usize;
    let tables = (0..n)
        .map(|k| match ss {
            0 => seg[2 + 2 * k] >> 4,
            _ => seg[2 + 2 * k] & 15,
        })
        .collect();
    Some(ScanHeader {
        comps,
        ss,
        se: seg[2 + 2 * n] as usize,
        ah: a >> 4,
        al: a & 15,
        tables,
        data,
    })
}

/// Where the entropy-coded data starting at `i` ends: the first marker other than a stuffed
/// zero or a restart marker.
fn entropy_end(b: &[u8], mut i: usize) -> Result<usize, TransformError> {
    loop {
        let ff = b
            .get(i..)
            .and_then(|rest| rest.iter().position(|&x| x == 0xFF))
            .ok_or(TransformError::Truncated)?;
        let at = i + ff;
        match b.get(at + 1) {
            None => return Err(TransformError::Truncated),
            Some(0x00 | 0xD0..=0xD7) => i = at + 2,
            Some(_) => return Ok(at),
        }
    }
}

/// The rewritten stream: kept pieces, then (restart markers off) the EOB table and one
/// all-zero scan per band no kept scan covers, then EOI.
fn rewrite(b: &[u8], l: &Layout, keep: &[bool], dc_only: &[bool]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len() / 4);
    out.extend_from_slice(&b[..2]);
    let mut covered = vec![[false; 64]; l.frame.comps.len()];
    for (p, &k) in l.pieces.iter().zip(keep) {
        match p {
            Piece::Segment(_, r) => out.extend_from_slice(&b[r.clone()]),
            Piece::Scan(s, r) if k => {
                for &c in &s.comps {
                    covered[c][s.ss..=s.se].iter_mut().for_each(|x| *x = true);
                }
                out.extend_from_slice(&b[r.clone()]);
            }
            Piece::Scan(..) => {}
        }
    }
    if l.restarts {
        out.extend_from_slice(&[0xFF, 0xDD, 0, 4, 0, 0]);
    }
    out.extend_from_slice(&eob_table());
    for (c, cov) in covered.iter().enumerate() {
        debug_assert!(dc_only[c] || cov.iter().all(|&x| x));
        let mut k = 1;
        while k < 64 {
            if cov[k] {
                k += 1;
                continue;
            }
            let ss = k;
            while k < 64 && !cov[k] {
                k += 1;
            }
            let comp = l.frame.comps[c];
            out.extend_from_slice(&[
                0xFF,
                0xDA,
                0,
                8,
                1,
                comp.id,
                0x00,
                ss as u8,
                (k - 1) as u8,
                0,
            ]);
            let (w, h) = blocks_wh(&l.frame, c);
            zero_scan_data(&mut out, w * h);
        }
    }
    out.extend_from_slice(&[0xFF, 0xD9]);
    out
}

/// DHT segment of the synthetic scans' AC table (class 1, slot 0): the 15 EOB-run symbols
/// EOB0..EOB14 (`r << 4`), each a 4-bit code equal to `r`.
fn eob_table() -> Vec<u8> {
    let mut t = vec![0xFF, 0xC4, 0, 2 + 1 + 16 + 15, 0x10];
    let mut counts = [0u8; 16];
    counts[3] = 15;
    t.extend_from_slice(&counts);
    t.extend((0..15u8).map(|r| r << 4));
    t
}

/// The blocks of component `c` a non-interleaved scan codes (libjpeg's `width_in_blocks`,
/// `height_in_blocks`).
pub(crate) fn blocks_wh(f: &Frame, c: usize) -> (u64, u64) {
    let (max_h, max_v) = (f.max_h() as u64, f.max_v() as u64);
    let comp = f.comps[c];
    let w = (f.width as u64 * comp.h as u64).div_ceil(max_h * 8);
    let h = (f.height as u64 * comp.v as u64).div_ceil(max_v * 8);
    (w, h)
}

/// Entropy data of an AC first scan whose `n` blocks are all zero: EOB runs of at most 32767.
fn zero_scan_data(out: &mut Vec<u8>, mut n: u64) {
    let mut w = BitWriter::default();
    while n > 0 {
        let run = n.min(32767) as u32;
        let r = 31 - run.leading_zeros();
        w.put(r, 4);
        w.put(run - (1 << r), r);
        n -= u64::from(run);
    }
    w.finish(out);
}

/// MSB-first bit packing with JPEG byte stuffing.
#[derive(Default)]
pub(crate) struct BitWriter {
    bytes: Vec<u8>,
    /// Pending bits, the oldest highest; `n` of them (fewer than 8 between calls).
    acc: u64,
    n: u32,
}

impl BitWriter {
    /// Appends the low `bits` bits of `value` (at most 32).
    pub(crate) fn put(&mut self, value: u32, bits: u32) {
        if bits == 0 {
            return;
        }
        let value = u64::from(value) & ((1u64 << bits) - 1);
        self.acc = (self.acc << bits) | value;
        self.n += bits;
        while self.n >= 8 {
            self.n -= 8;
            let byte = (self.acc >> self.n) as u8;
            self.bytes.push(byte);
            if byte == 0xFF {
                self.bytes.push(0);
            }
        }
    }
    /// Pads the last byte with one bits, as the standard asks.
    pub(crate) fn finish(mut self, out: &mut Vec<u8>) {
        if self.n > 0 {
            let pad = 8 - self.n;
            self.put((1 << pad) - 1, pad);
        }
        out.extend_from_slice(&self.bytes);
    }
}

#[cfg(test)]
#[path = "jpeg_scans_tests.rs"]
pub(crate) mod tests;
