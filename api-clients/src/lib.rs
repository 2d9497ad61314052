//! Typed HTTP clients for the external APIs camrelay talks to.
//!
//! - [`nest`]: Google's Smart Device Management API (devices, RTSP and WebRTC stream commands)
//!   with the OAuth 2.0 refresh-token flow.
//!
//! Clients never retry and never sleep: each call is one request, and its error says whether
//! the API processed it, so the command queue can decide what to spend its budget on. Every base
//! URL is configurable, which is how the tests point them at the offline simulators. Secrets and
//! stream tokens never appear in `Debug`, `Display` or error messages.

pub mod nest;
pub mod sanitize;
