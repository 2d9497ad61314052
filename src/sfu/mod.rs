//! The WebRTC side: the publisher that pushes every live camera into an SFU, and the embedded
//! SFU that serves the Calls API's subset for self-hosting, the demo and the tests.
//!
//! `str0m` (sans-IO) does WebRTC; everything here wraps it in our own small types, so the
//! stack could be swapped without touching the rest of the relay.

pub mod api;
pub mod embedded;
pub mod engine;
pub mod net;
pub mod publisher;
pub mod signaling;

use std::sync::{Arc, OnceLock};

use str0m::crypto::CryptoProvider;

/// The crypto provider every peer connection uses (aws-lc-rs, as rustls does).
pub(crate) fn crypto() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    Arc::clone(PROVIDER.get_or_init(|| Arc::new(str0m::crypto::from_feature_flags())))
}

/// A random identifier: 32 hex digits (128 bits), like Cloudflare's session ids.
pub(crate) fn random_id() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}
