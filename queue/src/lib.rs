//! The command queue that spends a camera API's budget.
//!
//! Google's SDM API lets one project and user send 10 `executeCommand` requests per minute, and
//! every live Nest stream needs one `ExtendRtspStream` before its five minutes run out. The
//! budget, not bandwidth, decides how many cameras can be live. This crate spends it:
//!
//! - [`window`]: exact rolling-window accounting (never N+1 in any window);
//! - [`budget`]: the buckets a command is charged to, behind the [`BudgetStore`] trait so a
//!   shared store can serve several relay instances;
//! - [`plan`]: as-late-as-possible planning of extensions;
//! - [`scheduler`]: the sans-IO core, told `now`, never reading the clock;
//! - [`driver`]: the thin tokio task that runs the core and executes commands;
//! - [`stats`]: the DTOs operators read.
//!
//! The queue knows nothing of HTTP: an [`Executor`] runs commands and classifies its errors.

pub mod budget;
pub mod driver;
pub mod plan;
pub mod scheduler;
pub mod stats;
pub mod window;

pub use budget::{BucketKey, BudgetConfig, BudgetStore, MemoryBudget};
pub use driver::{
    AdmitError, ErrorClass, Executor, Queue, QueueError, QueueHandle, StreamPermit, Timing,
};
pub use scheduler::{
    AdmissionConfig, AtCapacity, Class, CommandId, RateLimitScope, Request, Scheduler,
    SchedulerConfig,
};
pub use stats::QueueStats;
