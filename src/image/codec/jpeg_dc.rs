//! Progressive JPEG at 1/8 when a component's inverse DCT is 1x1 (every component of a 4:2:2,
//! 4:4:4 or grey file; the luma of a 4:2:0 one): its DC coefficients, Huffman-decoded from the
//! DC scans, re-coded as a baseline JPEG whose blocks have no AC coefficient. A component whose
//! IDCT is larger (4:2:0 chroma: 2x2) keeps every coefficient, decoded from its AC scans by
//! `jpeg_ac`: chroma AC is a small part of a file. libjpeg-turbo decodes that baseline at 1/8 in
//! one pass, without the whole-image coefficient buffer a progressive decode zeroes and walks
//! several times, with the same IDCTs, upsampling and colour conversion: the full decode's
//! pixels.
//!
//! Anything unexpected (a DC category over 11, data running into a marker, a table missing, a
//! quantization table redefined after the first scan) gives `None`: the caller decodes the
//! stream `jpeg_scans` rewrites instead, and libjpeg-turbo has the last word.

use crate::image::codec::bytes::be16;
use crate::image::codec::jpeg_ac;
use crate::image::codec::jpeg_entropy::{
    extend, for_each_block, mcus, parse_dht, BitReader, Huffman, Tables,
};
use crate::image::codec::jpeg_scans::{BitWriter, Frame, Piece, Plan, ScanHeader};

/// The coefficients of one component over its MCU-padded block grid: the DC of each block,
/// and for a component that needs them, all 64 (zigzag order) of each.
struct Grid {
    width: usize,
    dc: Vec<i32>,
    ac: Option<Vec<i16>>,
}

/// The baseline stream, or `None` when no component's IDCT is 1x1 (nothing to gain) or the
/// file is not one this transcoder handles.
pub(crate) fn baseline(b: &[u8], plan: &Plan) -> Option<Vec<u8>> {
    if !plan.dc_only.iter().any(|&d| d) {
        return None;
    }
    let f = &plan.layout.frame;
    let (mcus_x, mcus_y) = mcus(f);
    let mut grids: Vec<Grid> = f
        .comps
        .iter()
        .zip(&plan.dc_only)
        .map(|(c, &dc_only)| {
            let width = mcus_x * c.h as usize;
            let blocks = width * mcus_y * c.v as usize;
            Grid {
                width,
                dc: vec![0; blocks],
                ac: (!dc_only).then(|| vec![0; blocks * 64]),
            }
        })
        .collect();
    let (mut dc_tables, mut ac_tables): (Tables, Tables) = Default::default();
    let mut restart = 0;
    let mut header = Vec::new();
    let mut scanned = false;
    for p in &plan.layout.pieces {
        match p {
            Piece::Segment(m, r) => {
                let payload = &b[payload_start(b, r.start)..r.end];
                match *m {
                    0xC4 => parse_dht(payload, &mut dc_tables, &mut ac_tables)?,
                    0xDD => restart = be16(payload, 0)? as usize,
                    // latched at the first scan: a later table would not be the one used
                    0xDB if scanned => return None,
                    0xC2 => {
                        header.extend_from_slice(&[0xFF, 0xC0]);
                        header.extend_from_slice(&b[r.end - payload.len() - 2..r.end]);
                    }
                    _ if !scanned => header.extend_from_slice(&b[r.clone()]),
                    _ => {}
                }
            }
            Piece::Scan(s, r) => {
                scanned = true;
                let data = &b[s.data..r.end];
                if s.ss == 0 {
                    decode_dc_scan(data, s, f, &dc_tables, restart, &mut grids)?;
                } else if let Some(g) = grids.get_mut(*s.comps.first()?) {
                    if let Some(ac) = g.ac.as_mut() {
                        jpeg_ac::decode_scan(data, s, f, &ac_tables, restart, g.width, ac)?;
                    }
                }
            }
        }
    }
    let mut out =
        Vec::with_capacity(header.len() + grids.iter().map(|g| g.dc.len()).sum::<usize>());
    out.extend_from_slice(&[0xFF, 0xD8]);
    out.extend_from_slice(&header);
    encode(f, &grids, &mut out)?;
    out.extend_from_slice(&[0xFF, 0xD9]);
    Some(out)
}

/// Where a marker segment's payload starts (after fill bytes, the marker and the length).
fn payload_start(b: &[u8], mut i: usize) -> usize {
    while b.get(i) == Some(&0xFF) {
        i += 1;
    }
    i + 3
}

/// Decodes a DC first scan (predicted differences, shifted by `al`) or a DC refinement scan
/// (one bit per block) into `grids`, as libjpeg's `jdphuff.c` does.
fn decode_dc_scan(
    data: &[u8],
    s: &ScanHeader,
    f: &Frame,
    tables: &Tables,
    interval: usize,
    grids: &mut [Grid],
) -> Option<()> {
    let huff: Vec<&Huffman> = match s.ah {
        0 => s
            .tables
            .iter()
            .map(|&t| tables.get(t as usize)?.as_ref())
            .collect::<Option<_>>()?,
        _ => Vec::new(),
    };
    let reader = std::cell::RefCell::new(BitReader::new(data));
    let mut pred = vec![0i32; s.comps.len()];
    let pred_reset = std::cell::Cell::new(false);
    let al = s.al as u32;
    let widths: Vec<usize> = grids.iter().map(|g| g.width).collect();
    let ok = for_each_block(
        s,
        f,
        &widths,
        || {
            pred_reset.set(true);
            reader.borrow_mut().restart()
        },
        interval,
        |k, c, i| {
            if pred_reset.replace(false) {
                pred.iter_mut().for_each(|p| *p = 0);
            }
            let mut r = reader.borrow_mut();
            let Some(g) = grids.get_mut(c).and_then(|g| g.dc.get_mut(i)) else {
                return false;
            };
            if s.ah == 0 {
                let Some(cat) = r.decode(huff[k]) else {
                    return false;
                };
                if cat > 11 {
                    return false;
                }
                let diff = match cat {
                    0 => 0,
                    _ => match r.bits(cat as u32) {
                        Some(v) => extend(v, cat as u32),
                        None => return false,
                    },
                };
                pred[k] = pred[k].wrapping_add(diff);
                // libjpeg keeps coefficients as 16-bit JCOEF
                *g = i32::from(pred[k].wrapping_shl(al) as i16);
            } else {
                match r.bits(1) {
                    Some(1) => *g = i32::from((*g as i16) | (1i16 << al)),
                    Some(_) => {}
                    None => return false,
                }
            }
            true
        },
    );
    ok.then_some(())
}

/// The baseline tables, frame scan and data: DC categories 0-11 as 4-bit codes (DC table 0);
/// for DC-only components one AC symbol, EOB, as the 1-bit code `0` (AC table 0), for the others
/// `jpeg_ac`'s table (AC table 1).
fn encode(f: &Frame, grids: &[Grid], out: &mut Vec<u8>) -> Option<()> {
    out.extend_from_slice(&[0xFF, 0xC4, 0, 2 + 17 + 12 + 17 + 1, 0x00]);
    out.extend_from_slice(&[0, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    out.extend(0..12u8);
    out.extend_from_slice(&[0x10, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x00]);
    if grids.iter().any(|g| g.ac.is_some()) {
        out.extend_from_slice(&jpeg_ac::table_segment());
    }
    let codes = jpeg_ac::codes();
    let n = f.comps.len();
    out.extend_from_slice(&[0xFF, 0xDA, 0, 6 + 2 * n as u8, n as u8]);
    for (c, g) in f.comps.iter().zip(grids) {
        out.extend_from_slice(&[c.id, u8::from(g.ac.is_some())]);
    }
    out.extend_from_slice(&[0, 63, 0]);
    let scan = ScanHeader {
        comps: (0..n).collect(),
        ss: 0,
        se: 63,
        ah: 0,
        al: 0,
        tables: vec![0; n],
        data: 0,
    };
    let mut w = BitWriter::default();
    let mut pred = vec![0i32; n];
    let widths: Vec<usize> = grids.iter().map(|g| g.width).collect();
    let ok = for_each_block(
        &scan,
        f,
        &widths,
        || true,
        0,
        |k, c, i| {
            let dc = grids[c].dc[i];
            let diff = dc - pred[k];
            pred[k] = dc;
            let cat = 32 - diff.unsigned_abs().leading_zeros();
            if cat > 11 {
                return false;
            }
            w.put(cat, 4);
            if cat > 0 {
                let v = if diff < 0 { diff - 1 } else { diff };
                w.put(v as u32 & ((1 << cat) - 1), cat);
            }
            match &grids[c].ac {
                Some(ac) => jpeg_ac::encode_block(&mut w, &ac[i * 64..i * 64 + 64], &codes),
                None => {
                    w.put(0, 1);
                    true
                }
            }
        },
    );
    if !ok {
        return None;
    }
    w.finish(out);
    Some(())
}

#[cfg(test)]
#[path = "jpeg_dc_tests.rs"]
mod tests;
