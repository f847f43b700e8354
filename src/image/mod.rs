//! The image engine of imgedge: transform parameters, format negotiation, safe decode, pixel
//! operations, encode and a bounded CPU pool. Knows nothing of Pingora, the proxy or config.
//!
//! - `params` parses a URL query or a preset into a `spec::TransformSpec` (checked against
//!   `spec::Limits`); `spec` also writes its canonical forms (cache key, signature, shield).
//! - `format`: source and output formats, `Accept` negotiation, `Content-Type` mapping;
//!   `hints`: the width `width=auto` takes from client hints.
//! - `info`: `format=json`, the output's and the original's sizes from the header alone.
//! - `metadata`: what `metadata=` keeps of the source's EXIF and XMP in the output.
//! - `pipeline::transform` runs one transform: probe, decode, the `ops`, encode; `cost`
//!   estimates from the header what one holds in memory.
//! - `animation`: animated GIF and WebP kept animated, frame by frame, within their limits.
//! - `codec/`: one file per format (probe, decode, encode) and the dispatch over them.
//! - `ops/`: one file per pixel operation (fit geometry, resize, orientation, pad, flatten).
//! - `pool`: the bounded thread pool transforms run on, and the memory budget they reserve
//!   from; `error`: every error type here.

pub mod animation;
pub mod codec;
pub mod cost;
pub mod decoded;
pub mod error;
pub mod format;
pub mod hints;
pub mod info;
pub mod lookalike;
pub mod metadata;
pub mod ops;
pub mod params;
pub mod path_options;
pub mod pipeline;
pub mod pixels;
pub mod pool;
pub mod spec;
pub mod svg;
pub mod values;

#[cfg(test)]
mod tests;
