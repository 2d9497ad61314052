//! The tokio task around the [`Scheduler`]: it owns the scheduler, reads the clock, sleeps until
//! the next planned send, and executes dispatched commands concurrently (up to
//! `max_in_flight`).
//!
//! Submitters talk to it through a cloneable [`QueueHandle`]: [`QueueHandle::execute`] queues a
//! command and resolves with its result. Dropping that future cancels the command if it has not
//! been sent yet. Admission goes through [`QueueHandle::admit`], which returns a
//! [`StreamPermit`] that gives its slot back when dropped.
//!
//! The task ends when every handle is gone or its cancellation token fires; queued commands then
//! fail with [`QueueError::Closed`].

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::budget::BudgetStore;
use crate::scheduler::{
    Action, AtCapacity, CommandId, Dispatch, DropReason, Job, Outcome, RateLimitScope, Request,
    Scheduler, SchedulerConfig, StreamSlot,
};
use crate::stats::QueueStats;
use crate::window::SlidingWindow;

/// Messages a handle can have in flight to the queue task before `submit` waits. Submitters are
/// camera tasks, one or two commands each, so this is far above normal use; when it is full,
/// submitters wait (backpressure) rather than growing memory.
pub const QUEUE_CHANNEL_CAPACITY: usize = 256;

/// How an [`Executor`] error should be treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// HTTP 429: re-queue the command and treat the named bucket as full.
    RateLimited(RateLimitScope),
    /// The API did not process the command (HTTP 503, or the request never reached it): give
    /// its budget slot back and hand the error to the submitter.
    NotAccepted,
    /// Anything else (the API may have processed it): hand the error to the submitter, who
    /// decides whether to retry.
    Other,
}

/// Executes commands. Implementations never retry or sleep: the queue decides.
pub trait Executor: Send + Sync + 'static {
    /// What a command carries.
    type Payload: Send + 'static;
    /// A successful result.
    type Output: Send + 'static;
    /// A failure.
    type Error: Send + 'static;

    /// Runs one command once.
    fn execute(
        &self,
        payload: &Self::Payload,
    ) -> impl Future<Output = Result<Self::Output, Self::Error>> + Send;

    /// Sorts an error into retry-by-queue (429) or hand-back.
    fn classify(error: &Self::Error) -> ErrorClass;
}

/// Why a queued command produced no API result.
#[derive(Debug, thiserror::Error)]
pub enum QueueError<E> {
    /// The API answered with an error (not a 429, which the queue absorbs).
    #[error(transparent)]
    Api(E),
    /// The command expired in the queue before the budget allowed sending it.
    #[error("command {0}")]
    Dropped(DropReason),
    /// The queue has shut down.
    #[error("the command queue has shut down")]
    Closed,
}

/// Why a stream was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AdmitError {
    /// The budget cannot keep one more stream alive.
    #[error(transparent)]
    AtCapacity(#[from] AtCapacity),
    /// The queue has shut down.
    #[error("the command queue has shut down")]
    Closed,
}

/// What the queue has learned about timing, for callers that plan around it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timing {
    /// 99th percentile of API latency (send to answer) of recent commands.
    pub latency_p99: Option<Duration>,
    /// 99th percentile of how late deadline-bound commands were sent after their due instant.
    pub lateness_p99: Option<Duration>,
}

type Reply<E> =
    oneshot::Sender<Result<<E as Executor>::Output, QueueError<<E as Executor>::Error>>>;

/// A queued payload with the channel its result goes back on.
struct Pending<E: Executor> {
    payload: E::Payload,
    reply: Reply<E>,
}

impl<E: Executor> Job for Pending<E> {
    fn is_cancelled(&self) -> bool {
        self.reply.is_closed()
    }
}

impl<E: Executor> fmt::Debug for Pending<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pending").finish_non_exhaustive()
    }
}

enum Message<E: Executor> {
    Submit(Request<Pending<E>>),
    Admit {
        device: String,
        reply: oneshot::Sender<Result<StreamSlot, AtCapacity>>,
    },
    Stats(oneshot::Sender<QueueStats>),
}

/// A cloneable handle to a running queue.
pub struct QueueHandle<E: Executor> {
    tx: mpsc::Sender<Message<E>>,
    releases: mpsc::UnboundedSender<StreamSlot>,
    timing: watch::Receiver<Timing>,
}

impl<E: Executor> Clone for QueueHandle<E> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            releases: self.releases.clone(),
            timing: self.timing.clone(),
        }
    }
}

impl<E: Executor> fmt::Debug for QueueHandle<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueHandle").finish_non_exhaustive()
    }
}

impl<E: Executor> QueueHandle<E> {
    /// Queues a command and waits for its result. Dropping the future cancels the command if
    /// it has not been sent yet.
    pub async fn execute(
        &self,
        request: Request<E::Payload>,
    ) -> Result<E::Output, QueueError<E::Error>> {
        let (reply, rx) = oneshot::channel();
        let Request {
            device,
            command,
            class,
            due,
            expires,
            payload,
        } = request;
        let message = Message::Submit(Request {
            device,
            command,
            class,
            due,
            expires,
            payload: Pending { payload, reply },
        });
        self.tx
            .send(message)
            .await
            .map_err(|_| QueueError::Closed)?;
        rx.await.unwrap_or(Err(QueueError::Closed))
    }

    /// Asks for an admission slot for one more live stream on `device`.
    pub async fn admit(&self, device: &str) -> Result<StreamPermit, AdmitError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Message::Admit {
                device: device.to_owned(),
                reply,
            })
            .await
            .map_err(|_| AdmitError::Closed)?;
        let slot = rx.await.map_err(|_| AdmitError::Closed)??;
        Ok(StreamPermit {
            slot: Some(slot),
            releases: self.releases.clone(),
        })
    }

    /// A snapshot of the queue, or `None` if it has shut down.
    pub async fn stats(&self) -> Option<QueueStats> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Message::Stats(reply)).await.ok()?;
        rx.await.ok()
    }

    /// What the queue has learned about latency and lateness so far.
    pub fn timing(&self) -> Timing {
        *self.timing.borrow()
    }
}

/// An admitted stream's slot; dropping it gives the slot back.
#[derive(Debug)]
pub struct StreamPermit {
    slot: Option<StreamSlot>,
    releases: mpsc::UnboundedSender<StreamSlot>,
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            // The channel holds at most one message per admitted stream, so it is bounded by
            // the stream capacity. If the queue is gone there is nothing to give back.
            let _ = self.releases.send(slot);
        }
    }
}

/// The queue task. Build it with [`Queue::new`], then `spawn(queue.run(cancel))`.
pub struct Queue<E: Executor, S: BudgetStore> {
    scheduler: Scheduler<Pending<E>, S>,
    executor: Arc<E>,
    rx: mpsc::Receiver<Message<E>>,
    release_rx: mpsc::UnboundedReceiver<StreamSlot>,
    timing: watch::Sender<Timing>,
    backstop: SlidingWindow,
    backstop_trips: u64,
}

impl<E: Executor, S: BudgetStore> fmt::Debug for Queue<E, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue").finish_non_exhaustive()
    }
}

type Finished<E> = (
    CommandId,
    Pending<E>,
    Result<<E as Executor>::Output, <E as Executor>::Error>,
);

impl<E: Executor, S: BudgetStore> Queue<E, S> {
    /// A queue that charges `store` and runs commands with `executor`.
    pub fn new(config: SchedulerConfig, store: S, executor: E) -> (Self, QueueHandle<E>) {
        let (tx, rx) = mpsc::channel(QUEUE_CHANNEL_CAPACITY);
        let (releases, release_rx) = mpsc::unbounded_channel();
        let (timing, timing_rx) = watch::channel(Timing::default());
        // An independent check of the scheduler's own accounting: the project limit over the
        // same window, counted at the point of sending. It never trips unless the scheduler is
        // wrong.
        let (limit, window) = config.budget.limit(&crate::BucketKey::Project);
        let queue = Self {
            scheduler: Scheduler::new(config, store),
            executor: Arc::new(executor),
            rx,
            release_rx,
            timing,
            backstop: SlidingWindow::new(limit, window),
            backstop_trips: 0,
        };
        let handle = QueueHandle {
            tx,
            releases,
            timing: timing_rx,
        };
        (queue, handle)
    }

    /// Runs until every handle is dropped or `cancel` fires.
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut running: JoinSet<Finished<E>> = JoinSet::new();
        loop {
            let wake = self.act(&mut running);
            let sleep = async {
                match wake {
                    Some(at) => tokio::time::sleep_until(Instant::from_std(at)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                Some(slot) = self.release_rx.recv() => self.scheduler.release(slot),
                Some(done) = running.join_next(), if !running.is_empty() => {
                    match done {
                        Ok(finished) => self.finish(finished),
                        Err(e) => tracing::error!(error = %e, "queue command task failed"),
                    }
                }
                message = self.rx.recv() => match message {
                    Some(message) => self.handle(message),
                    None if running.is_empty() => break,
                    None => {
                        // No more submitters: let the running commands finish.
                        while let Some(done) = running.join_next().await {
                            if let Ok(finished) = done {
                                self.finish(finished);
                            }
                        }
                        break;
                    }
                },
                () = sleep => {}
            }
        }
        running.abort_all();
    }

    /// Dispatches and drops what the scheduler says; returns when to look again.
    fn act(&mut self, running: &mut JoinSet<Finished<E>>) -> Option<std::time::Instant> {
        loop {
            let now = Instant::now().into_std();
            match self.scheduler.next_action(now) {
                Action::Wait(wake) => return wake,
                Action::Drop {
                    id,
                    payload,
                    reason,
                } => {
                    tracing::debug!(command = %id, %reason, "command dropped");
                    let _ = payload.reply.send(Err(QueueError::Dropped(reason)));
                }
                Action::Dispatch(dispatch) => {
                    if !self.backstop.has_room(now) {
                        self.backstop_trips += 1;
                        tracing::error!(
                            command = %dispatch.id,
                            trips = self.backstop_trips,
                            "scheduler dispatched beyond the project budget; holding the command back"
                        );
                        self.scheduler.rate_limited(
                            dispatch.id,
                            dispatch.payload,
                            RateLimitScope::Project,
                            now,
                        );
                        continue;
                    }
                    self.backstop.record(now);
                    self.spawn(dispatch, running);
                }
            }
        }
    }

    fn spawn(&self, dispatch: Dispatch<Pending<E>>, running: &mut JoinSet<Finished<E>>) {
        let executor = Arc::clone(&self.executor);
        let Dispatch {
            id,
            class,
            device,
            command,
            attempt,
            payload,
        } = dispatch;
        tracing::debug!(command = %id, %class, %device, name = %command, attempt, "sending command");
        running.spawn(async move {
            let result = executor.execute(&payload.payload).await;
            (id, payload, result)
        });
    }

    fn finish(&mut self, (id, pending, result): Finished<E>) {
        let now = Instant::now().into_std();
        match result {
            Ok(output) => {
                self.scheduler.completed(id, Outcome::Succeeded, now);
                let _ = pending.reply.send(Ok(output));
            }
            Err(error) => match E::classify(&error) {
                ErrorClass::RateLimited(scope) => {
                    tracing::debug!(command = %id, ?scope, "rate limited; re-queued");
                    self.scheduler.rate_limited(id, pending, scope, now);
                }
                ErrorClass::NotAccepted | ErrorClass::Other => {
                    let outcome = if E::classify(&error) == ErrorClass::NotAccepted {
                        Outcome::NotAccepted
                    } else {
                        Outcome::Failed
                    };
                    self.scheduler.completed(id, outcome, now);
                    let _ = pending.reply.send(Err(QueueError::Api(error)));
                }
            },
        }
        let timing = Timing {
            latency_p99: self.scheduler.latency_quantile(0.99),
            lateness_p99: self.scheduler.lateness_quantile(0.99),
        };
        self.timing.send_if_modified(|current| {
            let changed = *current != timing;
            *current = timing;
            changed
        });
    }

    fn handle(&mut self, message: Message<E>) {
        let now = Instant::now().into_std();
        match message {
            Message::Submit(request) => {
                self.scheduler.submit(request, now);
            }
            Message::Admit { device, reply } => {
                let result = self.scheduler.admit(&device, now);
                if let Err(Ok(slot)) = reply.send(result) {
                    // The asker left before the answer: give the slot straight back.
                    self.scheduler.release(slot);
                }
            }
            Message::Stats(reply) => {
                let mut stats = self.scheduler.stats(now);
                stats.backstop_trips = self.backstop_trips;
                let _ = reply.send(stats);
            }
        }
    }
}
