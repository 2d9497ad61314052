//! camrelay: relays cameras from rate-limited camera APIs (Google Nest first) and plain RTSP
//! cameras to a WebRTC SFU and to local RTSP clients.
//!
//! The library is the service; `main.rs` is its command line. Control flows from the
//! configuration to the camera registry and each camera's stream lease, which spends the
//! camera API's budget through the command queue:
//!
//! - [`app`]: assembles the relay from its configuration and runs discovery;
//! - [`camera`]: the registry of cameras, their ids and demand;
//! - [`lease`]: per-camera stream leases (a state machine and its task);
//! - [`nest`]: the command queue's executor over the SDM client;
//! - [`ingest`], [`media`] and [`rtsp`]: the media path, from each camera through its hub to
//!   RTSP clients;
//! - [`sfu`]: the WebRTC publisher and the embedded SFU;
//! - [`viewer`]: browser viewers (the watch API and the viewer page);
//! - [`http`], [`stats`] and [`metrics`]: what operators read;
//! - [`demo`]: the offline demo.

pub mod app;
pub mod camera;
pub mod demo;
pub mod http;
pub mod ingest;
pub mod lease;
pub mod logging;
pub mod media;
pub mod metrics;
pub mod nest;
pub mod rtsp;
pub mod sfu;
pub mod stats;
pub mod viewer;
