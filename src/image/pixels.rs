//! The decoded image every codec produces and every operation works on.

/// Decoded 8-bit pixels, tightly packed, `channels` 3 (RGB) or 4 (RGBA, straight alpha).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pixels {
    pub width: u32,
    pub height: u32,
    pub channels: u8,
    pub data: Vec<u8>,
}
