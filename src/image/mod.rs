//! Image-processing core of imgedge: query parsing, format negotiation, safe decode, resize,
//! encode and a bounded CPU pool. Knows nothing of HTTP frameworks.

pub mod decode;
pub mod encode;
pub mod error;
pub mod format;
pub mod params;
pub mod pool;
pub mod resize;
pub mod transform;

#[cfg(test)]
mod tests;

pub use decode::{probe, Probe};
pub use error::{ParamError, PoolError, TransformError};
pub use format::{
    negotiate, negotiate_allowed, sniff, source_format_from_content_type, FormatChoice, Negotiated,
    OutputFormat, SourceFormat,
};
pub use params::{
    parse_preset, parse_query, Fit, Gravity, Limits, ParsedQuery, Preset, Presets, TransformSpec,
};
pub use pool::{Permit, TransformPool};
pub use transform::{transform, Output};
