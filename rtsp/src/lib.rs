//! RTSP serving for camrelay, shared by the relay's RTSP server and the camera simulator.
//!
//! Media flows one way: frames → [`rtp`] packetizers (once per camera) → [`bus`] (fan-out with
//! a GOP cache) → [`server`] sessions (TCP interleaved or UDP) → clients. [`h264`], [`aac`] and
//! [`media`] describe what is sent; protocol logic ([`request`], [`auth`], [`session`]) is free
//! of I/O and tested without sockets.

pub mod aac;
pub mod auth;
pub mod bus;
pub mod h264;
pub mod media;
pub mod request;
pub mod rtp;
pub mod server;
