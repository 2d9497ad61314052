//! Stream leases: how a camera gets a URL to pull.
//!
//! A static RTSP camera's URL never changes: its lease is permanent. A Nest camera's URL must be
//! generated and kept alive through the budgeted API: [`machine`] decides, [`task`] drives it.

pub mod machine;
pub mod task;

pub use machine::{Demand, Failure, Lease, LeaseConfig, LeaseCounters, Phase};
