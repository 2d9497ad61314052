//! The tokio task around the [`Scheduler`]: it owns the scheduler, reads the clock, sleeps until
//! the next planned send, and executes dispatched commands concurrently (up to
//! `max_in_flight`).
//!
//! Submitters talk to it through a cloneable [`QueueHandle`]: [`QueueHandle::execute`] queues a
//! command and resolves with its result. Dropping that future cancels the command if it has not
//! been sent yet. Admission goes through [`QueueHandle::admit`], which returns a
//! [`StreamPermit`] that gives its slot back when dropped.
//!
//! The task ends when every handle is gone or its cancellation token fires. It then drains for
//! at most [`DRAIN_TIMEOUT`]: commands already executing get their answers and queued stops are
//! still sent (releasing streams is polite and budget-free at shutdown); everything else fails
//! with [`QueueError::Closed`].

use std::collections::HashMap;
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
    Action, AtCapacity, Class, CommandId, Dispatch, DropReason, Job, Outcome, RateLimitScope,
    Request, Scheduler, SchedulerConfig, StreamSlot,
};
use crate::stats::QueueStats;
use crate::window::SlidingWindow;

/// Messages a handle can have in flight to the queue task before `submit` waits. Submitters are
/// camera tasks, one or two commands each, so this is far above normal use; when it is full,
/// submitters wait (backpressure) rather than growing memory.
pub const QUEUE_CHANNEL_CAPACITY: usize = 256;

/// Most commands waiting in the queue. Each camera has at most one command queued, so this is
/// only reached by a bug; beyond it commands fail with [`QueueError::Full`] instead of growing
/// memory without bound.
pub const MAX_QUEUED: usize = 4096;

/// How long the queue keeps going after shutdown begins: commands already executing get their
/// answers and queued stops are still sent, then everything left fails with `Closed`.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

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
    type Payload: Send + Sync + 'static;
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
    /// The queue holds [`MAX_QUEUED`] commands already.
    #[error("the command queue is full")]
    Full,
    /// The command's execution failed inside the relay (a bug); its outcome is unknown.
    #[error("the command failed inside the relay: {0}")]
    Internal(String),
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
    payload: Arc<E::Payload>,
    reply: Reply<E>,
    /// Told when the command leaves for the API (from then on, cancelling loses its result).
    on_send: Option<oneshot::Sender<()>>,
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
        reply: oneshot::Sender<Result<StreamPermit, AtCapacity>>,
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
        self.execute_notified(request, None).await
    }

    /// [`Self::execute`], telling `on_send` when the command is sent to the API: until then,
    /// dropping the future takes the command back unsent; after, the API may act on it and
    /// only the result is lost.
    pub async fn execute_notified(
        &self,
        request: Request<E::Payload>,
        on_send: Option<oneshot::Sender<()>>,
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
            payload: Pending {
                payload: Arc::new(payload),
                reply,
                on_send,
            },
        });
        self.tx
            .send(message)
            .await
            .map_err(|_| QueueError::Closed)?;
        rx.await.unwrap_or(Err(QueueError::Closed))
    }

    /// Asks for an admission slot for one more live stream on `device`. If this future is
    /// dropped after the queue granted the slot, the slot is given back.
    pub async fn admit(&self, device: &str) -> Result<StreamPermit, AdmitError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Message::Admit {
                device: device.to_owned(),
                reply,
            })
            .await
            .map_err(|_| AdmitError::Closed)?;
        Ok(rx.await.map_err(|_| AdmitError::Closed)??)
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

/// A command being executed.
struct Running<E: Executor> {
    pending: Pending<E>,
    dispatched: std::time::Instant,
}

type Finished<E> = (
    CommandId,
    Result<<E as Executor>::Output, <E as Executor>::Error>,
);

/// The queue task. Build it with [`Queue::new`], then `spawn(queue.run(cancel))`.
pub struct Queue<E: Executor, S: BudgetStore> {
    scheduler: Scheduler<Pending<E>, S>,
    executor: Arc<E>,
    rx: mpsc::Receiver<Message<E>>,
    releases: mpsc::UnboundedSender<StreamSlot>,
    release_rx: mpsc::UnboundedReceiver<StreamSlot>,
    timing: watch::Sender<Timing>,
    backstop: SlidingWindow,
    backstop_trips: u64,
    tasks: JoinSet<Finished<E>>,
    task_ids: HashMap<tokio::task::Id, CommandId>,
    running: HashMap<CommandId, Running<E>>,
    /// Set on shutdown: only stops are still sent, until this instant.
    draining_until: Option<Instant>,
}

impl<E: Executor, S: BudgetStore> fmt::Debug for Queue<E, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue").finish_non_exhaustive()
    }
}

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
            releases: releases.clone(),
            release_rx,
            timing,
            backstop: SlidingWindow::new(limit, window),
            backstop_trips: 0,
            tasks: JoinSet::new(),
            task_ids: HashMap::new(),
            running: HashMap::new(),
            draining_until: None,
        };
        let handle = QueueHandle {
            tx,
            releases,
            timing: timing_rx,
        };
        (queue, handle)
    }

    /// Runs until every handle is dropped or `cancel` fires, then drains: commands already
    /// executing finish and queued stops are still sent, for at most [`DRAIN_TIMEOUT`].
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut open = true;
        loop {
            let wake = self.act();
            if self.draining_until.is_some()
                && self.running.is_empty()
                && self.scheduler.queued_len() == 0
            {
                break;
            }
            let deadline = match (wake, self.draining_until) {
                (Some(w), Some(d)) => Some(w.min(d.into_std())),
                (w, d) => w.or(d.map(Instant::into_std)),
            };
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(Instant::from_std(at)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = cancel.cancelled(), if self.draining_until.is_none() => self.start_draining(),
                Some(slot) = self.release_rx.recv() => self.scheduler.release(slot),
                Some(done) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => {
                    self.joined(done);
                }
                message = self.rx.recv(), if open => match message {
                    Some(message) => self.handle(message),
                    None => {
                        open = false;
                        self.start_draining();
                    }
                },
                () = sleep => {
                    if self.draining_until.is_some_and(|d| Instant::now() >= d) {
                        break;
                    }
                }
            }
        }
        self.tasks.abort_all();
        for (_, running) in self.running.drain() {
            let _ = running.pending.reply.send(Err(QueueError::Closed));
        }
        for (_, pending) in self.scheduler.remove_queued(|_| false) {
            let _ = pending.reply.send(Err(QueueError::Closed));
        }
    }

    /// Stops taking anything but stops; answers every other queued command with `Closed`.
    fn start_draining(&mut self) {
        if self.draining_until.is_some() {
            return;
        }
        tracing::debug!("command queue draining");
        self.draining_until = Some(Instant::now() + DRAIN_TIMEOUT);
        for (_, pending) in self.scheduler.remove_queued(|class| class == Class::Stop) {
            let _ = pending.reply.send(Err(QueueError::Closed));
        }
    }

    /// Dispatches and drops what the scheduler says; returns when to look again.
    fn act(&mut self) -> Option<std::time::Instant> {
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
                        let until = self.backstop.next_free(now);
                        self.scheduler
                            .hold_back(dispatch.id, dispatch.payload, until, now);
                        continue;
                    }
                    self.backstop.record(now);
                    self.spawn(dispatch, now);
                }
            }
        }
    }

    fn spawn(&mut self, dispatch: Dispatch<Pending<E>>, now: std::time::Instant) {
        let Dispatch {
            id,
            class,
            device,
            command,
            attempt,
            mut payload,
        } = dispatch;
        tracing::debug!(command = %id, %class, %device, name = %command, attempt, "sending command");
        if let Some(on_send) = payload.on_send.take() {
            let _ = on_send.send(());
        }
        let executor = Arc::clone(&self.executor);
        let job = Arc::clone(&payload.payload);
        let handle = self.tasks.spawn(async move {
            let result = executor.execute(&job).await;
            (id, result)
        });
        self.task_ids.insert(handle.id(), id);
        self.running.insert(
            id,
            Running {
                pending: payload,
                dispatched: now,
            },
        );
    }

    fn joined(&mut self, done: Result<(tokio::task::Id, Finished<E>), tokio::task::JoinError>) {
        match done {
            Ok((task, (id, result))) => {
                self.task_ids.remove(&task);
                self.finish(id, result);
            }
            Err(error) => {
                // The executor panicked (or was aborted): the command's fate is unknown, so it
                // keeps its budget charge, frees its execution slot and its submitter hears why.
                let Some(id) = self.task_ids.remove(&error.id()) else {
                    return;
                };
                tracing::error!(command = %id, %error, "command task failed");
                let now = Instant::now().into_std();
                self.scheduler.completed(id, Outcome::Failed, now);
                if let Some(running) = self.running.remove(&id) {
                    let _ = running
                        .pending
                        .reply
                        .send(Err(QueueError::Internal(error.to_string())));
                }
            }
        }
    }

    fn finish(&mut self, id: CommandId, result: Result<E::Output, E::Error>) {
        let now = Instant::now().into_std();
        let Some(running) = self.running.remove(&id) else {
            return;
        };
        match result {
            Ok(output) => {
                self.scheduler.completed(id, Outcome::Succeeded, now);
                let _ = running.pending.reply.send(Ok(output));
            }
            Err(error) => match E::classify(&error) {
                ErrorClass::RateLimited(scope) => {
                    tracing::debug!(command = %id, ?scope, "rate limited; re-queued");
                    self.scheduler.rate_limited(id, running.pending, scope, now);
                }
                class => {
                    let outcome = if class == ErrorClass::NotAccepted {
                        // The API did not count it: neither do we, nor does the backstop.
                        self.backstop.refund(running.dispatched);
                        Outcome::NotAccepted
                    } else {
                        Outcome::Failed
                    };
                    self.scheduler.completed(id, outcome, now);
                    let _ = running.pending.reply.send(Err(QueueError::Api(error)));
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
                if self.draining_until.is_some() && request.class != Class::Stop {
                    let _ = request.payload.reply.send(Err(QueueError::Closed));
                } else if self.scheduler.queued_len() >= MAX_QUEUED {
                    let _ = request.payload.reply.send(Err(QueueError::Full));
                } else {
                    self.scheduler.submit(request, now);
                }
            }
            Message::Admit { device, reply } => {
                let result = self.scheduler.admit(&device, now).map(|slot| StreamPermit {
                    slot: Some(slot),
                    releases: self.releases.clone(),
                });
                // If the asker is gone, the permit is dropped here or with the channel, and
                // its slot comes back through the release channel.
                let _ = reply.send(result);
            }
            Message::Stats(reply) => {
                let mut stats = self.scheduler.stats(now);
                stats.backstop_trips = self.backstop_trips;
                let _ = reply.send(stats);
            }
        }
    }
}

#[cfg(test)]
mod tests;
