//! Nest plumbing: the command queue's executor over the SDM client, and the service that owns
//! the queue and spawns a lease per camera.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use camrelay_api_clients::nest::{
    Device, ExtensionToken, NestClient, NestError, NestErrorKind, Operation, RateLimitBucket,
    RtspExtension, RtspStream,
};
use camrelay_config::{LeaseTuning, NestBudget};
use camrelay_queue::{
    AdmissionConfig, BudgetConfig, ErrorClass, Executor, MemoryBudget, Queue, QueueHandle,
    RateLimitScope, SchedulerConfig,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::lease::machine::{EXTENSION_ATTEMPTS, INITIAL_LATENCY_ESTIMATE};
use crate::lease::task::{LeaseStatus, LeaseTask};
use crate::lease::{Demand, LeaseConfig};

/// What an RTSP camera can be told through the budget.
#[derive(Debug)]
pub enum NestCommand {
    /// `GenerateRtspStream`.
    Generate,
    /// `ExtendRtspStream` with the current token; the request gives up at `deadline` (when
    /// the stream would be dead anyway).
    Extend {
        /// The current extension token.
        token: ExtensionToken,
        /// When to stop waiting for the answer.
        deadline: Option<tokio::time::Instant>,
    },
    /// `StopRtspStream` with the current token.
    Stop(ExtensionToken),
}

/// A command for one device.
#[derive(Debug)]
pub struct DeviceCommand {
    /// The device id.
    pub device: Arc<str>,
    /// The command.
    pub command: NestCommand,
}

/// The answer to a [`DeviceCommand`].
#[derive(Debug)]
pub enum NestReply {
    /// A new stream.
    Generated(RtspStream),
    /// New tokens and expiry.
    Extended(RtspExtension),
    /// Stopped.
    Stopped,
}

/// Runs queue commands with the SDM client.
#[derive(Debug, Clone)]
pub struct NestExecutor {
    client: NestClient,
}

impl NestExecutor {
    /// An executor over `client`.
    pub fn new(client: NestClient) -> Self {
        Self { client }
    }
}

impl Executor for NestExecutor {
    type Payload = DeviceCommand;
    type Output = NestReply;
    type Error = NestError;

    async fn execute(&self, payload: &DeviceCommand) -> Result<NestReply, NestError> {
        let device = &payload.device;
        match &payload.command {
            NestCommand::Generate => self
                .client
                .generate_rtsp_stream(device)
                .await
                .map(NestReply::Generated),
            NestCommand::Extend { token, deadline } => self
                .client
                .extend_rtsp_stream_by(device, token, *deadline)
                .await
                .map(NestReply::Extended),
            NestCommand::Stop(token) => self
                .client
                .stop_rtsp_stream(device, token)
                .await
                .map(|()| NestReply::Stopped),
        }
    }

    fn classify(error: &NestError) -> ErrorClass {
        if error.operation == Operation::RefreshToken {
            // The SDM request was never sent: it cost no budget.
            return ErrorClass::NotAccepted;
        }
        match &error.kind {
            NestErrorKind::RateLimited { bucket, .. } => ErrorClass::RateLimited(match bucket {
                RateLimitBucket::Project => RateLimitScope::Project,
                RateLimitBucket::DeviceCommand { .. } => RateLimitScope::DeviceCommand,
                RateLimitBucket::Device => RateLimitScope::Device,
                RateLimitBucket::Unknown => RateLimitScope::Unknown,
            }),
            NestErrorKind::Unavailable {
                not_processed: true,
                ..
            } => ErrorClass::NotAccepted,
            _ => ErrorClass::Other,
        }
    }
}

/// The queue's settings from the operator's budget.
pub fn scheduler_config(budget: &NestBudget, lease: &LeaseTuning) -> SchedulerConfig {
    let defaults = SchedulerConfig::default();
    let budget_config = BudgetConfig {
        project_per_minute: budget.qpm,
        device_command_per_minute: budget.device_command_qpm,
        device_per_hour: budget.device_qph,
        guard: budget.window_guard,
    };
    SchedulerConfig {
        rate_limit_backoff: camrelay_queue::plan::spacing(
            budget.qpm,
            budget_config.project_window(),
        ),
        budget: budget_config,
        max_in_flight: budget.max_in_flight,
        admission: AdmissionConfig {
            stream_lifetime: budget.stream_lifetime,
            // The margin leases start with, before the queue has measured latency.
            expected_margin: lease.extend_min_margin
                + INITIAL_LATENCY_ESTIMATE * EXTENSION_ATTEMPTS,
            reserve_per_minute: budget.reserve_per_minute,
            ..defaults.admission
        },
        ..defaults
    }
}

/// The lease settings from the operator's tuning.
pub fn lease_config(lease: &LeaseTuning, idle_grace: Duration) -> LeaseConfig {
    LeaseConfig {
        min_margin: lease.extend_min_margin,
        retry_initial: lease.retry_initial,
        retry_max: lease.retry_max,
        degraded_after: lease.degraded_after,
        idle_grace,
    }
}

/// The Nest side of the relay: the client, the command queue and the lease settings.
#[derive(Debug, Clone)]
pub struct NestService {
    client: NestClient,
    queue: QueueHandle<NestExecutor>,
    lease: LeaseConfig,
}

impl NestService {
    /// Starts the command queue task, which runs until `cancel` (then drains) or until the
    /// service and its clones are gone. Cancel it after the leases have stopped, so that their
    /// stops still go out.
    pub fn start(
        client: NestClient,
        scheduler: SchedulerConfig,
        lease: LeaseConfig,
        cancel: CancellationToken,
    ) -> (Self, JoinHandle<()>) {
        let store = MemoryBudget::new(scheduler.budget.clone());
        let (queue_task, queue) = Queue::new(scheduler, store, NestExecutor::new(client.clone()));
        let task = tokio::spawn(
            queue_task
                .run(cancel)
                .instrument(tracing::info_span!("queue")),
        );
        let service = Self {
            client,
            queue,
            lease,
        };
        (service, task)
    }

    /// The SDM client.
    pub fn client(&self) -> &NestClient {
        &self.client
    }

    /// The command queue.
    pub fn queue(&self) -> &QueueHandle<NestExecutor> {
        &self.queue
    }

    /// The cameras among the project's devices: those that speak RTSP, and are on `allow` if
    /// given.
    pub async fn discover(&self, allow: Option<&[String]>) -> Result<Vec<Device>, NestError> {
        let devices = self.client.list_devices().await?;
        Ok(devices
            .into_iter()
            .filter(Device::supports_rtsp)
            .filter(|d| allow.is_none_or(|a| a.contains(&d.id)))
            .collect())
    }

    /// The lease task of `device`, driven by `demand`, until `cancel`; spawn the future. Also
    /// returns the lease's status and the sender for the ingest's refusals of its URLs.
    pub fn lease(
        &self,
        device: &str,
        demand: watch::Receiver<Demand>,
        cancel: CancellationToken,
    ) -> (
        impl Future<Output = ()> + Send + 'static,
        watch::Receiver<LeaseStatus>,
        mpsc::Sender<u64>,
    ) {
        let (task, status, rejected) = LeaseTask::new(
            Arc::from(device),
            self.lease.clone(),
            self.queue.clone(),
            demand,
        );
        let span = tracing::info_span!("lease", device = %device);
        (task.run(cancel).instrument(span), status, rejected)
    }
}
