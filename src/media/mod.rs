//! The relay's media path inside one camera: frames from the ingest are packetized once
//! ([`packager`]) on a continuous timeline ([`timeline`]) and fanned out through the camera's
//! [`hub`] to every sink. Audio for WebRTC is transcoded from AAC-LC to Opus ([`transcode`]).

pub mod availability;
pub mod frame;
pub mod hub;
pub mod packager;
pub mod timeline;
pub mod transcode;

pub use frame::{Frame, FrameKind};
pub use hub::{Hub, MediaStats};
