//! Offline stand-ins for what camrelay cannot reach in tests, benchmarks and demos.
//!
//! - [`sdm`]: a strict fake of Google's Smart Device Management API and its OAuth
//!   token endpoint, on tokio time so that hours of rate limits and stream
//!   expiries run in seconds.
//! - [`camera`]: a simulated RTSP camera looping a short H.264 + AAC fixture, plain, behind
//!   Basic/Digest authentication, or as Nest's stream server checking `?auth=` tokens.

pub mod camera;
pub mod sdm;
