//! The tokio task that drives one camera's [`Lease`]: it feeds the machine demand changes,
//! command results and timer ticks, carries out its effects through the command queue, and
//! publishes the lease's status on a `watch` channel for the ingest and for operators.
//!
//! At most one queue request (an admission or a command) is in flight per camera; the machine
//! replaces or cancels it, and cancelling is dropping its future, which takes an unsent command
//! out of the queue.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use camrelay_api_clients::nest::{NestError, NestErrorKind, Operation, StreamUrl};
use camrelay_queue::{AdmitError, Class, QueueError, QueueHandle, Request, StreamPermit};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::machine::{
    Command, Demand, Effect, Failure, Input, Lease, LeaseConfig, LeaseCounters, Phase, Refused,
};
use crate::nest::{DeviceCommand, NestCommand, NestExecutor, NestReply};

/// How long a camera's task waits, on shutdown, for the stop of its stream. The stop is a
/// courtesy (the stream expires by itself) and must not hold up the exit.
pub const SHUTDOWN_STOP_TIMEOUT: Duration = Duration::from_secs(3);

/// Refusals of stream URLs the ingest may report at once; more are dropped (one is enough to
/// end the stream, and the ingest reports at most one per connection attempt).
pub const REJECTIONS_CAPACITY: usize = 4;

/// What the lease publishes.
#[derive(Debug, Clone)]
pub struct LeaseStatus {
    /// The lease's phase.
    pub phase: Phase,
    /// Repeated failures.
    pub degraded: bool,
    /// The URL to pull, while a stream is usable.
    pub url: Option<StreamUrl>,
    /// Which URL this is; report a refusal of it with this number (see
    /// [`crate::lease::machine::Input::Rejected`]).
    pub generation: u64,
    /// When the current stream expires.
    pub expires: Option<Instant>,
    /// When an admission refusal will be retried.
    pub retry_at: Option<Instant>,
    /// The extension margin in use.
    pub margin: Duration,
    /// Counters and the last error.
    pub counters: LeaseCounters,
}

type Pending = Pin<Box<dyn Future<Output = Done> + Send>>;

/// A finished queue request.
enum Done {
    Admission(Result<StreamPermit, AdmitError>),
    Command(Input),
    /// The queue has shut down: nothing more can be sent.
    QueueClosed,
}

/// One camera's lease task.
pub struct LeaseTask {
    device: Arc<str>,
    lease: Lease,
    queue: QueueHandle<NestExecutor>,
    demand: watch::Receiver<Demand>,
    rejections: mpsc::Receiver<u64>,
    status: watch::Sender<LeaseStatus>,
    url: Option<StreamUrl>,
    permit: Option<StreamPermit>,
    pending: Option<Pending>,
    /// Fires when the pending command leaves the queue for the API.
    sent: Option<oneshot::Receiver<()>>,
}

impl std::fmt::Debug for LeaseTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseTask")
            .field("device", &self.device)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl LeaseTask {
    /// A task for `device`, the receiver of its status, and the sender on which the ingest
    /// reports a refused URL by its [`LeaseStatus::generation`].
    pub fn new(
        device: Arc<str>,
        config: LeaseConfig,
        queue: QueueHandle<NestExecutor>,
        demand: watch::Receiver<Demand>,
    ) -> (Self, watch::Receiver<LeaseStatus>, mpsc::Sender<u64>) {
        let lease = Lease::new(config);
        let (status, rx) = watch::channel(snapshot(&lease, None));
        let (rejected, rejections) = mpsc::channel(REJECTIONS_CAPACITY);
        let task = Self {
            device,
            lease,
            queue,
            demand,
            rejections,
            status,
            url: None,
            permit: None,
            pending: None,
            sent: None,
        };
        (task, rx, rejected)
    }

    /// Runs until `cancel` fires or the camera's demand sender is dropped.
    pub async fn run(mut self, cancel: CancellationToken) {
        let initial = *self.demand.borrow_and_update();
        self.step(Input::Demand(initial));
        loop {
            let wake = self.lease.next_wakeup();
            let input = tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                changed = self.demand.changed() => match changed {
                    Ok(()) => Input::Demand(*self.demand.borrow_and_update()),
                    Err(_) => break,
                },
                done = poll_pending(&mut self.pending) => {
                    self.pending = None;
                    self.sent = None;
                    match done {
                        Done::Admission(Ok(permit)) => {
                            self.permit = Some(permit);
                            Input::Admission(Ok(()))
                        }
                        Done::Admission(Err(AdmitError::AtCapacity(refused))) => {
                            Input::Admission(Err(Refused { retry_after: refused.retry_after }))
                        }
                        Done::Admission(Err(AdmitError::Closed)) | Done::QueueClosed => break,
                        Done::Command(input) => input,
                    }
                }
                Some(generation) = self.rejections.recv() => Input::Rejected { generation },
                () = sent(&mut self.sent) => {
                    self.sent = None;
                    Input::Sent
                }
                () = sleep_until(wake) => Input::Tick,
            };
            self.step(input);
        }
        self.pending = None;
        self.shutdown().await;
    }

    /// Feeds one input to the machine and carries out its effects.
    fn step(&mut self, input: Input) {
        let timing = self.queue.timing();
        self.lease
            .set_timing(timing.latency_p99, timing.lateness_p99);
        let before = (self.lease.phase(), self.lease.degraded());
        let effects = self.lease.handle(input, Instant::now().into_std());
        for effect in effects {
            self.apply(effect);
        }
        let after = (self.lease.phase(), self.lease.degraded());
        if before != after {
            let (phase, degraded) = after;
            let error = self.lease.counters().last_error.as_deref();
            match phase {
                // Steps on the way to a stream are debug; where the lease settles is news.
                Phase::Admitting | Phase::Starting => {
                    tracing::debug!(?phase, "lease changed");
                }
                Phase::Backoff | Phase::AtCapacity => {
                    tracing::warn!(?phase, degraded, error, "lease changed");
                }
                Phase::Idle | Phase::Live | Phase::Dormant => {
                    tracing::info!(?phase, degraded, "lease changed");
                }
            }
        }
        self.status
            .send_replace(snapshot(&self.lease, self.url.clone()));
    }

    fn apply(&mut self, effect: Effect) {
        match effect {
            Effect::Admit => {
                let queue = self.queue.clone();
                let device = self.device.clone();
                self.pending = Some(Box::pin(async move {
                    Done::Admission(queue.admit(&device).await)
                }));
            }
            Effect::Release => self.permit = None,
            Effect::Cancel => {
                self.pending = None;
                self.sent = None;
            }
            Effect::Publish(url) => self.url = url,
            Effect::Submit(command) => {
                let queue = self.queue.clone();
                let device = self.device.clone();
                let (on_send, sent) = oneshot::channel();
                self.sent = Some(sent);
                self.pending = Some(Box::pin(async move {
                    execute(&queue, device, command, on_send)
                        .await
                        .map_or(Done::QueueClosed, Done::Command)
                }));
            }
        }
    }

    async fn shutdown(&mut self) {
        let Some(Command::Stop { token, expires }) = self.lease.shutdown() else {
            return;
        };
        let now = Instant::now();
        let deadline = (now + SHUTDOWN_STOP_TIMEOUT).into_std().min(expires);
        let request = Request {
            device: self.device.clone(),
            command: Arc::from("StopRtspStream"),
            class: Class::Stop,
            due: None,
            expires: Some(deadline),
            payload: DeviceCommand {
                device: self.device.clone(),
                command: NestCommand::Stop(token),
            },
        };
        let stop = self.queue.execute(request);
        if let Ok(Ok(_)) = tokio::time::timeout(SHUTDOWN_STOP_TIMEOUT, stop).await {
            tracing::debug!(device = %self.device, "stream stopped on shutdown");
        }
        self.status.send_replace(snapshot(&self.lease, None));
    }
}

fn snapshot(lease: &Lease, url: Option<StreamUrl>) -> LeaseStatus {
    LeaseStatus {
        phase: lease.phase(),
        degraded: lease.degraded(),
        url,
        generation: lease.generation(),
        expires: lease.expires().map(Instant::from_std),
        retry_at: lease.retry_at().map(Instant::from_std),
        margin: lease.margin(),
        counters: lease.counters().clone(),
    }
}

async fn poll_pending(pending: &mut Option<Pending>) -> Done {
    match pending {
        Some(future) => future.await,
        None => std::future::pending().await,
    }
}

/// Resolves when the pending command has been sent (never if it was not, or if there is none).
async fn sent(rx: &mut Option<oneshot::Receiver<()>>) {
    match rx {
        Some(rx) => {
            if rx.await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

async fn sleep_until(wake: Option<std::time::Instant>) {
    match wake {
        Some(at) => tokio::time::sleep_until(Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

/// Sends one lease command through the queue and turns the answer into the machine's input;
/// `None` if the queue has shut down.
async fn execute(
    queue: &QueueHandle<NestExecutor>,
    device: Arc<str>,
    command: Command,
    on_send: oneshot::Sender<()>,
) -> Option<Input> {
    let (name, class, due, expires, payload) = match command {
        Command::Generate { class } => (
            "GenerateRtspStream",
            class,
            None,
            None,
            NestCommand::Generate,
        ),
        Command::Extend {
            token,
            due,
            expires,
        } => (
            "ExtendRtspStream",
            Class::Extend,
            Some(due),
            Some(expires),
            // The request must answer before the stream dies, or a retry has no time.
            NestCommand::Extend {
                token,
                deadline: Some(Instant::from_std(expires)),
            },
        ),
        Command::Stop { token, expires } => (
            "StopRtspStream",
            Class::Stop,
            None,
            Some(expires),
            NestCommand::Stop(token),
        ),
    };
    let request = Request {
        device: device.clone(),
        command: Arc::from(name),
        class,
        due,
        expires,
        payload: DeviceCommand {
            device,
            command: payload,
        },
    };
    let result = queue.execute_notified(request, Some(on_send)).await;
    if let Err(QueueError::Closed) = result {
        return None;
    }
    Some(match (class, result) {
        (_, Ok(NestReply::Generated(stream))) => Input::Generated(Ok(stream)),
        (_, Ok(NestReply::Extended(extension))) => Input::Extended(Ok(extension)),
        (_, Ok(NestReply::Stopped)) | (Class::Stop, Err(_)) => Input::Stopped,
        (Class::Extend, Err(e)) => Input::Extended(Err(failure(e))),
        (_, Err(e)) => Input::Generated(Err(failure(e))),
    })
}

/// What a failed command means for the lease.
fn failure(error: QueueError<NestError>) -> Failure {
    match error {
        QueueError::Api(e) => {
            let message = e.to_string();
            match (e.operation, e.kind) {
                // Only an operator can fix these.
                (
                    _,
                    NestErrorKind::ReauthorizationRequired | NestErrorKind::TokenEndpoint { .. },
                )
                | (_, NestErrorKind::PermissionDenied { .. }) => Failure::Fatal(message),
                // Anything else from the token endpoint means no SDM request was sent: the
                // stream and its token are untouched.
                (Operation::RefreshToken, _) => Failure::Transient(message),
                (
                    _,
                    NestErrorKind::Unavailable { .. }
                    | NestErrorKind::Timeout
                    | NestErrorKind::Unauthenticated { .. }
                    | NestErrorKind::RateLimited { .. },
                ) => Failure::Transient(message),
                (
                    _,
                    NestErrorKind::FailedPrecondition { .. }
                    | NestErrorKind::InvalidArgument { .. }
                    | NestErrorKind::NotFound { .. }
                    | NestErrorKind::MalformedResponse { .. }
                    | NestErrorKind::Http { .. },
                ) => Failure::Gone(message),
            }
        }
        QueueError::Dropped(reason) => Failure::Gone(format!("command {reason}")),
        // The outcome is unknown: the stream may or may not have been extended.
        QueueError::Internal(message) => Failure::Gone(message),
        QueueError::Full => Failure::Gone("the command queue is full".into()),
        QueueError::Closed => Failure::Transient("the command queue has shut down".into()),
    }
}
