//! Error types of the image core. Every `Display` is one line, fit for a log or a 4xx body.

use thiserror::Error;

/// A bad transform parameter in the URL query or in a preset (always a client error, 400).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{param}: {problem}")]
pub struct ParamError {
    /// The user-facing parameter name as written (`width`, `w`, `preset`, ...).
    pub param: String,
    /// What is wrong with it, e.g. `"-3" is not a positive integer`.
    pub problem: String,
}

impl ParamError {
    pub fn new(param: impl Into<String>, problem: impl Into<String>) -> Self {
        ParamError {
            param: param.into(),
            problem: problem.into(),
        }
    }
}

/// Why a transform failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TransformError {
    #[error("source image is {bytes} bytes, above the maximum {max}")]
    TooLarge { bytes: u64, max: u64 },
    #[error("source image is {w}x{h} pixels, above the maximum {max} pixels")]
    TooManyPixels { w: u32, h: u32, max: u64 },
    #[error("output image would be {w}x{h} pixels, above the maximum {max} pixels")]
    OutputTooLarge { w: u32, h: u32, max: u64 },
    /// An animation over `transform.max_animation_frames` or `max_animation_pixels` (only
    /// when it would be kept animated: its first frame alone is still made).
    #[error("animation has {frames} frames of {w}x{h} pixels, above the maximum {what}")]
    AnimationTooLarge {
        frames: u32,
        w: u32,
        h: u32,
        what: String,
    },
    /// An SVG asked at a size whose rendering is above `max_source_pixels` (this variant's
    /// fault: a smaller one of the same document renders).
    #[error("SVG would be rendered at {w}x{h} pixels, above the maximum {max} pixels")]
    RenderTooLarge { w: u32, h: u32, max: u64 },
    #[error("source is not an image in a supported format (JPEG, PNG, WebP, GIF, SVG)")]
    NotAnImage,
    #[error("unsupported image: {0}")]
    Unsupported(String),
    #[error("corrupt image data: {0}")]
    Corrupt(String),
    #[error("image data is truncated")]
    Truncated,
    #[error("encoding failed: {0}")]
    Encode(String),
    /// `trim` asks for more than the source has (this variant's fault, not the source's).
    #[error("{0}")]
    Trim(String),
}

impl TransformError {
    /// Short label for metrics: `too_big` | `bomb` | `bad_data` | `encode`.
    pub fn reason(&self) -> &'static str {
        match self {
            TransformError::TooLarge { .. }
            | TransformError::OutputTooLarge { .. }
            | TransformError::RenderTooLarge { .. } => "too_big",
            TransformError::Trim(_) => "bad_data",
            TransformError::TooManyPixels { .. } | TransformError::AnimationTooLarge { .. } => {
                "bomb"
            }
            TransformError::NotAnImage
            | TransformError::Unsupported(_)
            | TransformError::Corrupt(_)
            | TransformError::Truncated => "bad_data",
            TransformError::Encode(_) => "encode",
        }
    }
}

/// Why a pool job did not produce its result.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PoolError {
    #[error("transform job panicked: {0}")]
    Panicked(String),
    #[error("transform pool is shut down")]
    Shutdown,
    #[error("transform did not finish within {0:?} (transform.timeout)")]
    TimedOut(std::time::Duration),
    /// Still queued when the time was up: it never ran (the server was busy, not the job slow).
    #[error("transform waited {0:?} for a worker (transform.timeout)")]
    Expired(std::time::Duration),
}

/// Why a job could not reserve its memory (`transform.max_memory_bytes`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BudgetError {
    #[error("transform would need about {} MB of memory, above transform.max_memory_bytes ({} MB)", mb(*need), mb(*limit))]
    NeverFits { need: u64, limit: u64 },
    #[error("transform waited {waited:?} for {} MB of memory (transform.max_memory_bytes)", mb(*need))]
    Busy {
        need: u64,
        waited: std::time::Duration,
    },
}

/// Megabytes, rounded up, for messages.
fn mb(bytes: u64) -> u64 {
    bytes.div_ceil(1_000_000)
}
