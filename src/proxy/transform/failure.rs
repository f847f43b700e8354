//! Why a transform produced no image: the status it is answered with, its metric label, and
//! whom it is remembered for.

use crate::image::error::{BudgetError, PoolError, TransformError};

/// A transform that did not produce an image, with the status a repeat is answered with.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error(transparent)]
    Image(#[from] TransformError),
    #[error(transparent)]
    Pool(#[from] PoolError),
    #[error(transparent)]
    Memory(#[from] BudgetError),
}

/// Whom a failure is remembered for (`transform.failure_ttl`), so that a repeat is answered
/// up front without asking the origin again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The source's fault (too large, too many pixels, corrupt, truncated, not an image):
    /// every variant of it fails alike.
    Source,
    /// Only this variant (its canonical transform) fails: an output (or an SVG's rendering)
    /// too large, an animation over its limits (its first frame, `anim=false`, is still made),
    /// an encoder error, a memory need above the whole budget, a job that ran past `transform.timeout`
    /// (it cannot be stopped: a repeat would start another copy of the same costly job).
    /// Other variants of the source are still made.
    Variant,
    /// Not remembered: the server was busy (the job waited past its timeout for a worker or
    /// for memory, and never ran), or shutting down.
    None,
}

impl Failure {
    /// 422 for what cannot be made from this source (too big, bomb, corrupt, truncated, not
    /// an image, more memory than the whole budget); 503 when over time (retry later); 500
    /// when our side failed (encoder, pool).
    pub fn status(&self) -> u16 {
        match self {
            Failure::Pool(PoolError::TimedOut(_) | PoolError::Expired(_)) => 503,
            Failure::Memory(BudgetError::Busy { .. }) => 503,
            Failure::Memory(BudgetError::NeverFits { .. }) => 422,
            Failure::Image(TransformError::Encode(_)) | Failure::Pool(_) => 500,
            Failure::Image(_) => 422,
        }
    }

    /// Metric label: too_big | bomb | bad_data | encode | pool | timeout | memory |
    /// memory_wait.
    pub fn reason(&self) -> &'static str {
        match self {
            Failure::Image(e) => e.reason(),
            Failure::Pool(PoolError::TimedOut(_) | PoolError::Expired(_)) => "timeout",
            Failure::Pool(_) => "pool",
            Failure::Memory(BudgetError::NeverFits { .. }) => "memory",
            Failure::Memory(BudgetError::Busy { .. }) => "memory_wait",
        }
    }

    pub fn scope(&self) -> Scope {
        match self {
            Failure::Image(
                TransformError::OutputTooLarge { .. }
                | TransformError::RenderTooLarge { .. }
                | TransformError::Encode(_)
                | TransformError::Trim(_)
                | TransformError::AnimationTooLarge { .. },
            ) => Scope::Variant,
            Failure::Image(_) => Scope::Source,
            Failure::Pool(PoolError::TimedOut(_) | PoolError::Panicked(_)) => Scope::Variant,
            Failure::Pool(PoolError::Expired(_) | PoolError::Shutdown) => Scope::None,
            Failure::Memory(BudgetError::NeverFits { .. }) => Scope::Variant,
            Failure::Memory(BudgetError::Busy { .. }) => Scope::None,
        }
    }
}
