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
pub mod udp;

use std::sync::{Arc, OnceLock};

use str0m::crypto::CryptoProvider;

/// The crypto provider every peer connection uses (aws-lc-rs, as rustls does).
pub(crate) fn crypto() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    Arc::clone(PROVIDER.get_or_init(|| Arc::new(str0m::crypto::from_feature_flags())))
}

/// A random identifier: 32 hex digits (128 bits), like Cloudflare's session ids. From the
/// operating system's CSPRNG: these ids authorize (viewer ids) or are secrets (the embedded
/// SFU's generated app secret).
pub(crate) fn random_id() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // Not reachable on the platforms we run on; never hand out a predictable id.
        std::process::abort();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
