//! The AC coefficients of a progressive JPEG's component, decoded from its AC scans (first
//! passes and successive-approximation refinements, as libjpeg's `jdphuff.c` does), and written
//! back as the AC part of baseline blocks. Used at 1/8 for a 4:2:0 file: its chroma's inverse
//! DCT is 2x2 and needs them, while its luma needs only the DC. Decoding the small chroma AC
//! data here lets libjpeg-turbo decode one baseline pass instead of a progressive file.
//!
//! Coefficients are kept in zigzag order (index 0 is DC), 64 per block, as 16-bit values
//! like libjpeg's `JCOEF`. Anything a valid file cannot hold (a band running past its end, a
//! refinement symbol other than +-1, a value too large for a baseline AC code) gives `None`.

use crate::image::codec::jpeg_entropy::{extend, for_each_block, BitReader, Huffman, Tables};
use crate::image::codec::jpeg_scans::{BitWriter, Frame, ScanHeader};

/// Decodes one AC scan (a single component: `s.ss..=s.se`, first pass or refinement) into
/// `coefs`, 64 per block of the component's grid (`width` blocks a row).
pub(crate) fn decode_scan(
    data: &[u8],
    s: &ScanHeader,
    f: &Frame,
    tables: &Tables,
    interval: usize,
    width: usize,
    coefs: &mut [i16],
) -> Option<()> {
    let c = *s.comps.first()?;
    if s.comps.len() != 1 || s.ss == 0 || s.se > 63 || s.se < s.ss {
        return None;
    }
    let huff = tables.get(*s.tables.first()? as usize)?.as_ref()?;
    let reader = std::cell::RefCell::new(BitReader::new(data));
    let eobrun = std::cell::Cell::new(0u32);
    let mut widths = vec![0; f.comps.len()];
    widths[c] = width;
    let ok = for_each_block(
        s,
        f,
        &widths,
        || {
            eobrun.set(0);
            reader.borrow_mut().restart()
        },
        interval,
        |_, _, i| {
            let Some(block) = coefs.get_mut(i * 64..i * 64 + 64) else {
                return false;
            };
            let mut r = reader.borrow_mut();
            let mut run = eobrun.get();
            let ok = match s.ah {
                0 => first(&mut r, huff, s, &mut run, block),
                _ => refine(&mut r, huff, s, &mut run, block),
            };
            eobrun.set(run);
            ok.is_some()
        },
    );
    ok.then_some(())
}

/// An end-of-band run: `r` bits after 2^r.
fn eob_run(r: &mut BitReader, bits: u32) -> Option<u32> {
    Some((1 << bits) + if bits > 0 { r.bits(bits)? } else { 0 })
}

/// A first pass over band `ss..=se`: run-length coded values, shifted left by `al`.
fn first(
    r: &mut BitReader,
    h: &Huffman,
    s: &ScanHeader,
    eobrun: &mut u32,
    block: &mut [i16],
) -> Option<()> {
    if *eobrun > 0 {
        *eobrun -= 1;
        return Some(());
    }
    let mut k = s.ss;
    while k <= s.se {
        let sym = r.decode(h)?;
        let (run, size) = (usize::from(sym >> 4), u32::from(sym & 15));
        if size == 0 {
            if run == 15 {
                k += 16;
                continue;
            }
            *eobrun = eob_run(r, run as u32)? - 1;
            return Some(());
        }
        k += run;
        if k > s.se {
            return None;
        }
        let v = extend(r.bits(size)?, size);
        *block.get_mut(k)? = (v as u32).wrapping_shl(u32::from(s.al)) as i16;
        k += 1;
    }
    Some(())
}

/// A refinement pass: one more bit (`1 << al`) for coefficients already non-zero, and new
/// coefficients of magnitude `1 << al`, placed by counting the zero ones between.
fn refine(
    r: &mut BitReader,
    h: &Huffman,
    s: &ScanHeader,
    eobrun: &mut u32,
    block: &mut [i16],
) -> Option<()> {
    let p1 = 1i16.checked_shl(u32::from(s.al))?;
    let mut k = s.ss;
    if *eobrun == 0 {
        while k <= s.se {
            let sym = r.decode(h)?;
            let (mut zeros, size) = (i32::from(sym >> 4), sym & 15);
            let mut value = 0i16;
            match size {
                0 if zeros != 15 => {
                    *eobrun = eob_run(r, zeros as u32)?;
                    break;
                }
                0 => {}
                1 => value = if r.bits(1)? == 1 { p1 } else { -p1 },
                _ => return None,
            }
            // Past the non-zero coefficients (a correction bit each) and `zeros` zero ones.
            while k <= s.se {
                let coef = block.get_mut(k)?;
                if *coef != 0 {
                    correct(r, coef, p1)?;
                } else {
                    if zeros == 0 {
                        break;
                    }
                    zeros -= 1;
                }
                k += 1;
            }
            if value != 0 {
                if k > s.se {
                    return None;
                }
                block[k] = value;
            }
            k += 1;
        }
    }
    if *eobrun > 0 {
        // The rest of the band is in an end-of-band run: correction bits only.
        while k <= s.se {
            let coef = block.get_mut(k)?;
            if *coef != 0 {
                correct(r, coef, p1)?;
            }
            k += 1;
        }
        *eobrun -= 1;
    }
    Some(())
}

/// A correction bit: 1 adds `p1` to the magnitude (unless that bit is already set).
fn correct(r: &mut BitReader, coef: &mut i16, p1: i16) -> Option<()> {
    if r.bits(1)? == 1 && *coef & p1 == 0 {
        *coef = if *coef >= 0 { *coef + p1 } else { *coef - p1 };
    }
    Some(())
}

/// The DHT segment of the AC table (class 1, slot 1) the baseline blocks use: every symbol a
/// baseline AC code can need (EOB, ZRL, runs 0-15 of sizes 1-10) as an 8-bit code, its value's
/// rank in [`ac_symbols`]. Simple, and valid for any block: the bytes do not matter here, the
/// stream only lives until libjpeg-turbo has decoded it.
pub(crate) fn table_segment() -> Vec<u8> {
    let symbols = ac_symbols();
    let len = 2 + 1 + 16 + symbols.len();
    let mut t = vec![0xFF, 0xC4, (len >> 8) as u8, len as u8, 0x11];
    let mut counts = [0u8; 16];
    counts[7] = symbols.len() as u8;
    t.extend_from_slice(&counts);
    t.extend_from_slice(&symbols);
    t
}

/// EOB, ZRL, then `run << 4 | size` for runs 0-15 and sizes 1-10: 162 symbols.
fn ac_symbols() -> Vec<u8> {
    let mut s = vec![0x00, 0xF0];
    for run in 0..16u8 {
        for size in 1..=10u8 {
            s.push(run << 4 | size);
        }
    }
    s
}

/// The 8-bit code of each symbol in [`table_segment`]'s table, by symbol.
pub(crate) fn codes() -> [u8; 256] {
    let mut c = [0u8; 256];
    for (rank, sym) in ac_symbols().into_iter().enumerate() {
        c[usize::from(sym)] = rank as u8;
    }
    c
}

/// Writes the AC part of a block (zigzag `block[1..64]`) with [`codes`]; false when a value
/// needs more than 10 bits (not a baseline coefficient).
pub(crate) fn encode_block(w: &mut BitWriter, block: &[i16], codes: &[u8; 256]) -> bool {
    let mut zeros = 0u32;
    for &v in &block[1..64] {
        if v == 0 {
            zeros += 1;
            continue;
        }
        while zeros > 15 {
            w.put(u32::from(codes[0xF0]), 8);
            zeros -= 16;
        }
        let size = 32 - u32::from(v.unsigned_abs()).leading_zeros();
        if size > 10 {
            return false;
        }
        w.put(u32::from(codes[(zeros << 4 | size) as usize]), 8);
        let bits = if v < 0 {
            i32::from(v) - 1
        } else {
            i32::from(v)
        };
        w.put(bits as u32 & ((1 << size) - 1), size);
        zeros = 0;
    }
    if zeros > 0 {
        w.put(u32::from(codes[0x00]), 8);
    }
    true
}
