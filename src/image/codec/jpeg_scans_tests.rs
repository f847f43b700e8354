use super::*;

/// Progressive, 4:2:0, libjpeg's default scan script (Pillow; see tests/fixtures/LICENSES.md).
const SEEDING: &[u8] = include_bytes!("../../../tests/fixtures/seeding_prog_1600x896.jpg");
/// Progressive, 4:2:2, a restart interval (DRI) of one MCU row.
const SUNSET: &[u8] = include_bytes!("../../../tests/fixtures/sunset_prog422_rst_800x528.jpg");

fn frame(sampling: &[(u32, u32)]) -> Frame {
    Frame {
        width: 100,
        height: 50,
        comps: sampling
            .iter()
            .enumerate()
            .map(|(i, &(h, v))| Component {
                id: i as u8 + 1,
                h,
                v,
            })
            .collect(),
    }
}

/// Decodes with libjpeg-turbo at 1/`denom`, every warning an error (what `jpeg::decode` does).
pub(crate) fn tj_decode(
    b: &[u8],
    denom: usize,
) -> Result<turbojpeg::Image<Vec<u8>>, turbojpeg::Error> {
    let mut d = turbojpeg::Decompressor::new()?;
    d.set_scaling_factor(turbojpeg::ScalingFactor::new(1, denom))?;
    let header = d.read_header(b)?;
    let scaled = header.scaled(turbojpeg::ScalingFactor::new(1, denom));
    let mut img = turbojpeg::Image {
        pixels: vec![0u8; scaled.width * scaled.height * 3],
        width: scaled.width,
        pitch: scaled.width * 3,
        height: scaled.height,
        format: turbojpeg::PixelFormat::RGB,
    };
    d.decompress(b, img.as_deref_mut())?;
    Ok(img)
}

fn layout(b: &[u8]) -> Layout {
    match walk(b) {
        Ok(Ok(l)) => l,
        _ => panic!("walk failed"),
    }
}

#[test]
fn idct_size_per_component_follows_libjpeg_turbo() {
    // 4:2:0 at 1/8: chroma is scaled up by a 2x2 IDCT, so it needs its AC coefficients
    assert_eq!(
        dc_only_components(&frame(&[(2, 2), (1, 1), (1, 1)]), 8),
        [true, false, false]
    );
    // 4:2:2 (and 4:4:4, grey) at 1/8: every component's IDCT is 1x1
    assert_eq!(
        dc_only_components(&frame(&[(2, 1), (1, 1), (1, 1)]), 8),
        [true, true, true]
    );
    assert_eq!(
        dc_only_components(&frame(&[(1, 1), (1, 1), (1, 1)]), 8),
        [true, true, true]
    );
    assert_eq!(dc_only_components(&frame(&[(1, 1)]), 8), [true]);
    // 1/4 and 1/2: 2x2 or larger IDCTs everywhere
    for denom in [4, 2] {
        assert_eq!(
            dc_only_components(&frame(&[(2, 1), (1, 1), (1, 1)]), denom),
            [false, false, false]
        );
    }
}

#[test]
fn blocks_of_a_non_interleaved_scan() {
    // 100x50 4:2:0: luma 13x7 blocks, chroma (50x25 samples) 7x4
    let f = frame(&[(2, 2), (1, 1), (1, 1)]);
    assert_eq!(blocks_wh(&f, 0), (13, 7));
    assert_eq!(blocks_wh(&f, 1), (7, 4));
}

#[test]
fn walk_finds_every_scan_and_its_progression() {
    let l = layout(SEEDING);
    let scans: Vec<&ScanHeader> = l
        .pieces
        .iter()
        .filter_map(|p| match p {
            Piece::Scan(s, _) => Some(s),
            _ => None,
        })
        .collect();
    assert_eq!(scans.len(), 10);
    assert_eq!((scans[0].ss, scans[0].se, scans[0].comps.len()), (0, 0, 3));
    assert_eq!((scans[1].ss, scans[1].se, scans[1].al), (1, 5, 2));
    assert!(!l.restarts);
    assert!(complete_progression(&l));
    assert!(layout(SUNSET).restarts);
}

#[test]
fn scaled_decode_of_the_kept_scans_is_the_full_decode() {
    for (name, src) in [("seeding 4:2:0", SEEDING), ("sunset 4:2:2 + DRI", SUNSET)] {
        for denom in [8, 4, 2] {
            let full = tj_decode(src, denom).expect("full decode");
            let pruned = for_scale(src, denom).expect("walk");
            let Some(pruned) = pruned else {
                assert_ne!(denom, 8, "{name}: 1/8 drops the luma AC scans");
                continue;
            };
            assert!(
                pruned.len() < src.len() / 2,
                "{name} 1/{denom}: {} of {} bytes",
                pruned.len(),
                src.len()
            );
            let part = tj_decode(&pruned, denom).expect("pruned stream decodes without warning");
            assert_eq!((part.width, part.height), (full.width, full.height));
            assert!(
                part.pixels == full.pixels,
                "{name} 1/{denom}: pixels differ"
            );
        }
    }
}

/// Why the zero scans are there: without them libjpeg-turbo sees AC coefficients it never got
/// and smooths the blocks (and their DC), which the full decode does not.
#[test]
fn without_the_zero_scans_the_decoder_would_smooth() {
    let l = layout(SUNSET);
    let mut out = SUNSET[..2].to_vec();
    for p in &l.pieces {
        match p {
            Piece::Segment(_, r) => out.extend_from_slice(&SUNSET[r.clone()]),
            Piece::Scan(s, r) if s.ss == 0 => out.extend_from_slice(&SUNSET[r.clone()]),
            Piece::Scan(..) => {}
        }
    }
    out.extend_from_slice(&[0xFF, 0xD9]);
    let full = tj_decode(SUNSET, 8).expect("full decode");
    let naive = tj_decode(&out, 8).expect("DC-only decode");
    assert!(naive.pixels != full.pixels);
}

#[test]
fn a_file_cut_anywhere_is_truncated() {
    let l = layout(SEEDING);
    let mut cuts = vec![SEEDING.len() - 2, SEEDING.len() - 1, 300];
    for p in &l.pieces {
        if let Piece::Scan(_, r) = p {
            // in the scan header, in its data, at its end
            cuts.extend([r.start + 5, (r.start + r.end) / 2, r.end]);
        }
    }
    for cut in cuts {
        assert_eq!(
            for_scale(&SEEDING[..cut], 8),
            Err(TransformError::Truncated),
            "cut at {cut} of {}",
            SEEDING.len()
        );
    }
}

#[test]
fn left_to_libjpeg_turbo() {
    // full scale: nothing to drop
    assert_eq!(for_scale(SEEDING, 1), Ok(None));
    // 4:2:0 at 1/4: every component's IDCT is 2x2 or larger
    assert_eq!(for_scale(SEEDING, 4), Ok(None));
    // an incomplete progression (the last scan, luma's last refinement, taken out): the full
    // decode smooths the blocks, so the rewrite could not give the same picture
    let l = layout(SEEDING);
    let Some(Piece::Scan(_, last)) = l.pieces.iter().rev().find(|p| matches!(p, Piece::Scan(..)))
    else {
        panic!("no scan");
    };
    let mut cut = SEEDING[..last.start].to_vec();
    cut.extend_from_slice(&SEEDING[last.end..]);
    assert_eq!(for_scale(&cut, 8), Ok(None));
    // a baseline frame
    let mut baseline = SEEDING.to_vec();
    let sof = baseline
        .windows(2)
        .position(|w| w == [0xFF, 0xC2])
        .expect("SOF2");
    baseline[sof + 1] = 0xC0;
    assert_eq!(for_scale(&baseline, 8), Ok(None));
    // garbage between segments
    let mut garbage = SEEDING.to_vec();
    garbage.insert(2, 0x00);
    assert_eq!(for_scale(&garbage, 8), Ok(None));
}

#[test]
fn zero_scan_data_is_eob_runs_with_stuffing() {
    let mut out = Vec::new();
    // 1 block: EOB0 = code 0000, padded with ones
    zero_scan_data(&mut out, 1);
    assert_eq!(out, [0x0F]);
    out.clear();
    // 32767 + 1 blocks: EOB14 (1110) + 14 ones, then EOB0 (0000), then padding
    zero_scan_data(&mut out, 32768);
    assert_eq!(out, [0xEF, 0xFF, 0x00, 0xC3]);
}

#[test]
fn odd_sizes_and_other_samplings_rewrite_exactly() {
    for (name, src) in [
        (
            "4:2:2 203x117",
            &include_bytes!("../../../tests/fixtures/sunset_prog422_203x117.jpg")[..],
        ),
        (
            "4:4:4 203x117",
            &include_bytes!("../../../tests/fixtures/seeding_prog444_203x117.jpg")[..],
        ),
        (
            "grey 203x117",
            &include_bytes!("../../../tests/fixtures/seeding_prog_grey_203x117.jpg")[..],
        ),
    ] {
        let pruned = for_scale(src, 8).expect("walk").expect("a rewrite");
        let full = tj_decode(src, 8).expect("full decode");
        let part = tj_decode(&pruned, 8).expect("pruned stream decodes without warning");
        assert!(part.pixels == full.pixels, "{name}: pixels differ");
    }
}
