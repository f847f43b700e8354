//! Test harness: a real origin HTTP server on 127.0.0.1:0, the real imgedge binary started on
//! ephemeral ports with a generated config, and a real HTTP client. No fixed sleeps: readiness
//! and expiry are polled with deadlines. Each test binary uses a subset (hence `dead_code`);
//! everything is re-exported here, so tests call `common::X`.
#![allow(dead_code)]

mod client;
mod edge;
mod fixtures;
mod origin;
mod redis;
mod tls;

// Each test binary uses a subset of these, like the items themselves (`dead_code`).
#[allow(unused_imports)]
pub use self::{client::*, edge::*, fixtures::*, origin::*, redis::*, tls::*};
