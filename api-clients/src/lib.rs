//! Typed HTTP clients for the external APIs camrelay talks to.
//!
//! - [`nest`]: Google's Smart Device Management API (devices, RTSP and WebRTC stream commands)
//!   with the OAuth 2.0 refresh-token flow.
//! - [`calls`]: the Cloudflare Calls (Realtime SFU) session API, whose body types the relay's
//!   embedded SFU also serves, with mutations serialized per session.
//! - [`whip`]: a WHIP (RFC 9725) publisher: POST an offer, DELETE the session.
//!
//! Clients never retry and never sleep: each call is one request, and its error says whether
//! the API processed it, so the command queue can decide what to spend its budget on. Every base
//! URL is configurable, which is how the tests point them at the offline simulators. Secrets and
//! stream tokens never appear in `Debug`, `Display` or error messages.

pub mod calls;
pub mod nest;
mod net;
pub mod sanitize;
pub mod whip;
