use super::*;
use crate::image::codec::jpeg_scans::plan;

/// Progressive fixtures (tests/fixtures/LICENSES.md): 4:2:2 with restart markers, 4:2:2, 4:4:4
/// and grey at sizes that leave partial MCUs, and a 4:2:0 file.
const SUNSET_RST: &[u8] = include_bytes!("../../../tests/fixtures/sunset_prog422_rst_800x528.jpg");
const SUNSET_ODD: &[u8] = include_bytes!("../../../tests/fixtures/sunset_prog422_203x117.jpg");
const SEEDING_444: &[u8] = include_bytes!("../../../tests/fixtures/seeding_prog444_203x117.jpg");
const SEEDING_GREY: &[u8] = include_bytes!("../../../tests/fixtures/seeding_prog_grey_203x117.jpg");
const SEEDING_420: &[u8] = include_bytes!("../../../tests/fixtures/seeding_prog_1600x896.jpg");
/// 4:2:0 with restart markers every 3 MCUs (jpegtran -progressive -restart 3B), and 4:2:0 with
/// this scan script (jpegtran -scans): split bands, refinement on some only, a two-step DC.
///   0,1,2: 0-0, 0, 1;  0: 1-5, 0, 2;  1: 1-63, 0, 1;  2: 1-2, 0, 0;  2: 3-63, 0, 0;
///   0: 6-63, 0, 2;  1: 1-63, 1, 0;  0: 1-63, 2, 1;  0,1,2: 0-0, 1, 0;  0: 1-63, 1, 0;
const SEEDING_420_RST: &[u8] =
    include_bytes!("../../../tests/fixtures/seeding_prog420_rst_203x117.jpg");
const SEEDING_420_SCRIPT: &[u8] =
    include_bytes!("../../../tests/fixtures/seeding_prog420_script_400x224.jpg");

/// libjpeg-turbo at 1/8, every warning an error: the pixels and their size.
fn decode_8(b: &[u8]) -> (Vec<u8>, usize, usize) {
    let img =
        crate::image::codec::jpeg_scans::tests::tj_decode(b, 8).expect("decode without warning");
    (img.pixels, img.width, img.height)
}

#[test]
fn the_baseline_of_the_dc_scans_decodes_to_the_full_decode() {
    for (name, src) in [
        ("4:2:2 + restarts", SUNSET_RST),
        ("4:2:2 203x117", SUNSET_ODD),
        ("4:4:4 203x117", SEEDING_444),
        ("grey 203x117", SEEDING_GREY),
        ("4:2:0 1600x896", SEEDING_420),
        ("4:2:0 + restarts", SEEDING_420_RST),
        ("4:2:0 scan script", SEEDING_420_SCRIPT),
    ] {
        let p = plan(src, 8).expect("walk").expect("a plan");
        let base = baseline(src, &p).unwrap_or_else(|| panic!("{name}: no baseline"));
        // a baseline frame, and far fewer bytes than the source
        assert!(base.windows(2).any(|w| w == [0xFF, 0xC0]), "{name}");
        assert!(!base.windows(2).any(|w| w == [0xFF, 0xC2]), "{name}");
        assert!(
            base.len() < src.len() / 2,
            "{name}: {} of {}",
            base.len(),
            src.len()
        );
        let full = decode_8(src);
        let dc = decode_8(&base);
        assert_eq!((dc.1, dc.2), (full.1, full.2), "{name}");
        assert!(dc.0 == full.0, "{name}: pixels differ");
    }
}

#[test]
fn the_chroma_of_a_4_2_0_file_keeps_its_ac_coefficients() {
    let p = plan(SEEDING_420, 8).expect("walk").expect("a plan");
    assert_eq!(p.dc_only, [true, false, false]);
    // At 1/4 every scan is needed: no plan, the file goes to libjpeg-turbo as it is.
    assert!(plan(SEEDING_420, 4).expect("walk").is_none());
}

#[test]
fn ac_data_cut_short_is_left_to_libjpeg_turbo() {
    // the last AC scan of a chroma component ends early
    let p = plan(SEEDING_420_SCRIPT, 8).expect("walk").expect("a plan");
    let Some(Piece::Scan(s, r)) = p
        .layout
        .pieces
        .iter()
        .rev()
        .find(|p| matches!(p, Piece::Scan(s, _) if s.ss > 0 && s.comps[0] != 0))
    else {
        panic!("no chroma AC scan");
    };
    let mut cut = SEEDING_420_SCRIPT[..s.data + (r.end - s.data) / 2].to_vec();
    cut.extend_from_slice(&SEEDING_420_SCRIPT[r.end..]);
    let p = plan(&cut, 8).expect("walk").expect("a plan");
    assert!(baseline(&cut, &p).is_none());
}

#[test]
fn baseline_ac_values_have_at_most_10_bits() {
    // sizes 1 to 10, a run over 16 zeros (ZRL), both signs, then zeros (EOB)
    let mut block = [0i16; 64];
    block[1] = 1;
    block[2] = -1;
    block[3] = 1023;
    block[5] = -512;
    block[30] = 7;
    let mut w = BitWriter::default();
    assert!(jpeg_ac::encode_block(&mut w, &block, &jpeg_ac::codes()));
    block[40] = 1024;
    assert!(!jpeg_ac::encode_block(&mut w, &block, &jpeg_ac::codes()));
}

#[test]
fn dc_data_cut_short_is_left_to_libjpeg_turbo() {
    // the first DC scan's data ends early: a marker where bits were due
    let p = plan(SUNSET_ODD, 8).expect("walk").expect("a plan");
    let Some(Piece::Scan(s, r)) = p
        .layout
        .pieces
        .iter()
        .find(|p| matches!(p, Piece::Scan(..)))
    else {
        panic!("no scan");
    };
    let mut cut = SUNSET_ODD[..s.data + (r.end - s.data) / 2].to_vec();
    cut.extend_from_slice(&SUNSET_ODD[r.end..]);
    let p = plan(&cut, 8).expect("walk").expect("a plan");
    assert!(baseline(&cut, &p).is_none());
}

#[test]
fn dc_difference_categories() {
    assert_eq!(extend(0, 1), -1);
    assert_eq!(extend(1, 1), 1);
    assert_eq!(extend(0b010, 3), -5);
    assert_eq!(extend(0b110, 3), 6);
}
