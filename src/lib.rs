//! imgedge: an image edge proxy on Pingora. `main.rs` wires these modules together.

pub mod admin;
pub mod alloc;
pub mod cache;
pub mod cli;
pub mod config;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod image;
pub mod limits;
pub mod metrics;
pub mod proxy;
pub mod server;
pub mod signing;
pub mod upstream;
pub mod usage;
