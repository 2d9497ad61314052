//! Offline stand-ins for what camrelay cannot reach in tests, benchmarks and demos.
//!
//! - [`sdm`]: a strict fake of Google's Smart Device Management API and its OAuth
//!   token endpoint, on tokio time so that hours of rate limits and stream
//!   expiries run in seconds.

pub mod sdm;
