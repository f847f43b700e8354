//! Progressive JPEG at 1/8 when every component's inverse DCT is 1x1 (4:2:2, 4:4:4, grey):
//! the DC coefficients, Huffman-decoded from the DC scans, re-coded as a baseline JPEG whose
//! blocks have no AC coefficient. libjpeg-turbo decodes that at 1/8 in one pass, without the
//! whole-image coefficient buffer a progressive decode zeroes and walks several times, with
//! the same 1x1 IDCT (the DC alone), upsampling and colour conversion: the full decode's pixels.
//!
//! Anything unexpected (a DC category over 11, data running into a marker, a table missing, a
//! quantization table redefined after the first scan) gives `None`: the caller decodes the
//! stream `jpeg_scans` rewrites instead, and libjpeg-turbo has the last word.

use crate::image::codec::bytes::be16;
use crate::image::codec::jpeg_scans::{blocks_wh, BitWriter, Frame, Piece, Plan, ScanHeader};

/// A DC Huffman table, for canonical decoding (ITU T.81 F.2.2.3).
#[derive(Clone, Default)]
struct Huffman {
    /// Per code length 1-16: the largest code (-1: none), and where its values start.
    maxcode: [i32; 17],
    mincode: [i32; 17],
    valptr: [usize; 17],
    values: Vec<u8>,
}

/// The DC coefficients of one component, over its MCU-padded block grid.
struct Grid {
    width: usize,
    dc: Vec<i32>,
}

/// The baseline stream, or `None` when `plan` keeps AC scans or the file is not one this
/// transcoder handles.
pub(crate) fn baseline(b: &[u8], plan: &Plan) -> Option<Vec<u8>> {
    if !plan.dc_only.iter().all(|&d| d) {
        return None;
    }
    let f = &plan.layout.frame;
    let (mcus_x, mcus_y) = mcus(f);
    let mut grids: Vec<Grid> = f
        .comps
        .iter()
        .map(|c| {
            let width = mcus_x * c.h as usize;
            Grid {
                width,
                dc: vec![0; width * mcus_y * c.v as usize],
            }
        })
        .collect();
    let mut tables: [Option<Huffman>; 4] = Default::default();
    let mut restart = 0;
    let mut header = Vec::new();
    let mut scanned = false;
    for p in &plan.layout.pieces {
        match p {
            Piece::Segment(m, r) => {
                let payload = &b[payload_start(b, r.start)..r.end];
                match *m {
                    0xC4 => parse_dht(payload, &mut tables)?,
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
                if s.ss == 0 {
                    decode_dc_scan(&b[s.data..r.end], s, f, &tables, restart, &mut grids)?;
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

/// MCUs across and down an interleaved scan.
fn mcus(f: &Frame) -> (usize, usize) {
    (
        (f.width as usize).div_ceil(f.max_h() as usize * 8),
        (f.height as usize).div_ceil(f.max_v() as usize * 8),
    )
}

/// Where a marker segment's payload starts (after fill bytes, the marker and the length).
fn payload_start(b: &[u8], mut i: usize) -> usize {
    while b.get(i) == Some(&0xFF) {
        i += 1;
    }
    i + 3
}

/// Calls `block(index in the scan, component, block index in its grid)` for each block a scan
/// codes, in order; `restart()` before each MCU a restart marker precedes (every `interval`
/// MCUs). Either returning false stops the walk (false).
fn for_each_block(
    s: &ScanHeader,
    f: &Frame,
    widths: &[usize],
    mut restart: impl FnMut() -> bool,
    interval: usize,
    mut block: impl FnMut(usize, usize, usize) -> bool,
) -> bool {
    let mut mcu = 0usize;
    let mut next = |mcu: &mut usize| -> bool {
        let ok = interval == 0 || *mcu == 0 || !mcu.is_multiple_of(interval) || restart();
        *mcu += 1;
        ok
    };
    if s.comps.len() == 1 {
        let c = s.comps[0];
        let (w, h) = blocks_wh(f, c);
        for y in 0..h as usize {
            for x in 0..w as usize {
                if !next(&mut mcu) || !block(0, c, y * widths[c] + x) {
                    return false;
                }
            }
        }
        return true;
    }
    let (mcus_x, mcus_y) = mcus(f);
    for my in 0..mcus_y {
        for mx in 0..mcus_x {
            if !next(&mut mcu) {
                return false;
            }
            for (k, &c) in s.comps.iter().enumerate() {
                let (ch, cv) = (f.comps[c].h as usize, f.comps[c].v as usize);
                for v in 0..cv {
                    for h in 0..ch {
                        let i = (my * cv + v) * widths[c] + mx * ch + h;
                        if !block(k, c, i) {
                            return false;
                        }
                    }
                }
            }
        }
    }
    true
}

/// Decodes a DC first scan (predicted differences, shifted by `al`) or a DC refinement scan
/// (one bit per block) into `grids`, as libjpeg's `jdphuff.c` does.
fn decode_dc_scan(
    data: &[u8],
    s: &ScanHeader,
    f: &Frame,
    tables: &[Option<Huffman>; 4],
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
    let reader = std::cell::RefCell::new(BitReader {
        data,
        pos: 0,
        acc: 0,
        n: 0,
    });
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

/// ITU T.81 F.2.2.1: a `cat`-bit value as a signed difference.
fn extend(v: u32, cat: u32) -> i32 {
    if v < 1 << (cat - 1) {
        v as i32 - (1 << cat) + 1
    } else {
        v as i32
    }
}

/// Entropy-coded bits of one scan: stuffed zeros removed, stopping at any marker.
struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
    acc: u64,
    n: u32,
}

impl BitReader<'_> {
    fn fill(&mut self) {
        while self.n <= 56 {
            let Some(&byte) = self.data.get(self.pos) else {
                return;
            };
            if byte == 0xFF {
                if self.data.get(self.pos + 1) != Some(&0) {
                    return;
                }
                self.pos += 1;
            }
            self.pos += 1;
            self.acc = (self.acc << 8) | u64::from(byte);
            self.n += 8;
        }
    }
    fn bits(&mut self, k: u32) -> Option<u32> {
        if self.n < k {
            self.fill();
            if self.n < k {
                return None;
            }
        }
        self.n -= k;
        Some(((self.acc >> self.n) & ((1u64 << k) - 1)) as u32)
    }
    fn decode(&mut self, h: &Huffman) -> Option<u8> {
        let mut code = 0i32;
        for len in 1..=16 {
            code = (code << 1) | self.bits(1)? as i32;
            if code <= h.maxcode[len] {
                return h
                    .values
                    .get(h.valptr[len] + (code - h.mincode[len]) as usize)
                    .copied();
            }
        }
        None
    }
    /// Drops the bits left before a restart marker and steps over the marker.
    fn restart(&mut self) -> bool {
        self.acc = 0;
        self.n = 0;
        while self.data.get(self.pos) == Some(&0xFF) && self.data.get(self.pos + 1) == Some(&0xFF) {
            self.pos += 1;
        }
        match (self.data.get(self.pos), self.data.get(self.pos + 1)) {
            (Some(0xFF), Some(0xD0..=0xD7)) => {
                self.pos += 2;
                true
            }
            _ => false,
        }
    }
}

/// Reads the tables of a DHT payload; keeps the DC ones.
fn parse_dht(mut p: &[u8], tables: &mut [Option<Huffman>; 4]) -> Option<()> {
    while !p.is_empty() {
        let (class, slot) = (p[0] >> 4, (p[0] & 15) as usize);
        let counts = p.get(1..17)?;
        let total: usize = counts.iter().map(|&c| c as usize).sum();
        let values = p.get(17..17 + total)?;
        if class == 0 {
            *tables.get_mut(slot)? = Some(huffman(counts, values)?);
        }
        p = &p[17 + total..];
    }
    Some(())
}

fn huffman(counts: &[u8], values: &[u8]) -> Option<Huffman> {
    let mut h = Huffman {
        maxcode: [-1; 17],
        values: values.to_vec(),
        ..Default::default()
    };
    let (mut code, mut k) = (0i32, 0usize);
    for len in 1..=16 {
        let n = counts[len - 1] as usize;
        if n > 0 {
            h.valptr[len] = k;
            h.mincode[len] = code;
            code += n as i32;
            k += n;
            h.maxcode[len] = code - 1;
            if code > 1 << len {
                return None;
            }
        }
        code <<= 1;
    }
    Some(h)
}

/// The baseline tables, frame scan and data: DC categories 0-11 as 4-bit codes (DC table 0),
/// one AC symbol, EOB, as the 1-bit code `0` (AC table 0).
fn encode(f: &Frame, grids: &[Grid], out: &mut Vec<u8>) -> Option<()> {
    out.extend_from_slice(&[0xFF, 0xC4, 0, 2 + 17 + 12 + 17 + 1, 0x00]);
    out.extend_from_slice(&[0, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    out.extend(0..12u8);
    out.extend_from_slice(&[0x10, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x00]);
    let n = f.comps.len();
    out.extend_from_slice(&[0xFF, 0xDA, 0, 6 + 2 * n as u8, n as u8]);
    for c in &f.comps {
        out.extend_from_slice(&[c.id, 0x00]);
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
            w.put(0, 1);
            true
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
