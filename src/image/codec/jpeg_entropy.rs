//! Entropy-coded data of a JPEG file, read and written bit by bit: canonical Huffman decoding
//! (ITU T.81 F.2.2.3), byte stuffing, restart markers, and the order in which a scan codes its
//! blocks. Shared by the progressive-to-baseline transcoders (`jpeg_dc`, `jpeg_ac`).

use crate::image::codec::jpeg_scans::{blocks_wh, Frame, ScanHeader};

/// Codes up to this many bits long are decoded by one table lookup.
const LUT_BITS: u32 = 9;

/// A Huffman table, for canonical decoding (ITU T.81 F.2.2.3).
#[derive(Clone)]
pub(crate) struct Huffman {
    /// Per code length 1-16: the largest code (-1: none), and where its values start.
    maxcode: [i32; 17],
    mincode: [i32; 17],
    valptr: [usize; 17],
    values: Vec<u8>,
    /// By the next `LUT_BITS` bits: the code's length (0: longer) and its value.
    lut: Vec<(u8, u8)>,
}

/// MCUs across and down an interleaved scan.
pub(crate) fn mcus(f: &Frame) -> (usize, usize) {
    (
        (f.width as usize).div_ceil(f.max_h() as usize * 8),
        (f.height as usize).div_ceil(f.max_v() as usize * 8),
    )
}

/// Calls `block(index in the scan, component, block index in its grid)` for each block a scan
/// codes, in order; `restart()` before each MCU a restart marker precedes (every `interval`
/// MCUs). Either returning false stops the walk (false).
pub(crate) fn for_each_block(
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

/// ITU T.81 F.2.2.1: a `cat`-bit value as a signed difference.
pub(crate) fn extend(v: u32, cat: u32) -> i32 {
    if v < 1 << (cat - 1) {
        v as i32 - (1 << cat) + 1
    } else {
        v as i32
    }
}

/// Entropy-coded bits of one scan: stuffed zeros removed, stopping at any marker.
pub(crate) struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
    acc: u64,
    n: u32,
}

impl<'a> BitReader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        BitReader {
            data,
            pos: 0,
            acc: 0,
            n: 0,
        }
    }
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
    pub(crate) fn bits(&mut self, k: u32) -> Option<u32> {
        if self.n < k {
            self.fill();
            if self.n < k {
                return None;
            }
        }
        self.n -= k;
        Some(((self.acc >> self.n) & ((1u64 << k) - 1)) as u32)
    }
    /// One Huffman symbol: a table lookup on the next `LUT_BITS` bits when that many are
    /// buffered and the code is that short, else code length by code length.
    pub(crate) fn decode(&mut self, h: &Huffman) -> Option<u8> {
        if self.n < LUT_BITS {
            self.fill();
        }
        if self.n >= LUT_BITS {
            let peek = ((self.acc >> (self.n - LUT_BITS)) as usize) & ((1 << LUT_BITS) - 1);
            let (len, value) = h.lut[peek];
            if len > 0 {
                self.n -= u32::from(len);
                return Some(value);
            }
        }
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
    pub(crate) fn restart(&mut self) -> bool {
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

/// The tables of one class (DC or AC), by slot.
pub(crate) type Tables = [Option<Huffman>; 4];

/// Reads the tables of a DHT payload into `dc` (class 0) and `ac` (class 1).
pub(crate) fn parse_dht(mut p: &[u8], dc: &mut Tables, ac: &mut Tables) -> Option<()> {
    while !p.is_empty() {
        let (class, slot) = (p[0] >> 4, (p[0] & 15) as usize);
        let counts = p.get(1..17)?;
        let total: usize = counts.iter().map(|&c| c as usize).sum();
        let values = p.get(17..17 + total)?;
        let tables = match class {
            0 => &mut *dc,
            1 => &mut *ac,
            _ => return None,
        };
        *tables.get_mut(slot)? = Some(huffman(counts, values)?);
        p = &p[17 + total..];
    }
    Some(())
}

fn huffman(counts: &[u8], values: &[u8]) -> Option<Huffman> {
    let mut h = Huffman {
        maxcode: [-1; 17],
        mincode: [0; 17],
        valptr: [0; 17],
        values: values.to_vec(),
        lut: vec![(0, 0); 1 << LUT_BITS],
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
            if len <= LUT_BITS as usize {
                // every LUT_BITS-bit string that starts with one of these codes
                let spread = LUT_BITS as usize - len;
                for (j, c) in (h.mincode[len]..code).enumerate() {
                    let first = (c as usize) << spread;
                    let entry = (len as u8, values[k - n + j]);
                    h.lut[first..first + (1 << spread)].fill(entry);
                }
            }
        }
        code <<= 1;
    }
    Some(h)
}
