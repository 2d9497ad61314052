//! The sans-IO scheduler: told the time, never reads the clock.
//!
//! Commands wait in one queue. [`Scheduler::next_action`] says what to do at `now`: dispatch a
//! command, drop one that can no longer help, or wait until an instant (always in the future).
//! The order of service:
//!
//! 1. **Extensions** (any command with a `due` instant), planned as late as possible by the
//!    smoothest plan that fits ([`crate::plan`]) and sent when their planned time comes; late
//!    ones least slack first. Under overload nothing is sent before its planned time: an early
//!    extension shortens its stream's cycle and would feed the overload.
//! 2. **Starts for a waiting viewer**, first come first served, whenever one more send now still
//!    leaves some plan that keeps every deadline.
//! 3. **Background starts** (always-on cameras, warm-up) only when the smooth plan keeps its
//!    slack and the previous send is a smooth spacing ago, so that a boot-time burst does not
//!    create extension clusters; after waiting `start_patience` they settle for any room.
//! 4. **Stops**, only with headroom left in the window while extensions wait: a stream that is
//!    not extended expires by itself, so a stop is a courtesy that must never cost an extension
//!    its slot.
//!
//! The last execution slot is kept for extensions. A command rejected with HTTP 429 goes back
//! into the queue with its deadlines and the bucket the API named is blocked with exponential
//! backoff ([`Scheduler::rate_limited`]); one the API did not process (503) gets its budget
//! slot back.
//!
//! Admission control ([`Scheduler::admit`]) keeps the number of live streams at what the budget
//! can extend forever: `streams × 60 / (lifetime − margin) + reserve ≤ effective budget`.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::budget::{BucketKey, BudgetConfig, BudgetStore, MINUTE};
use crate::plan::{self, Plan};
use crate::stats::{BucketStats, ClassCounts, QueueStats, Samples};

/// Why a command is queued; decides its rank.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// Keeps a live stream alive; has a deadline.
    Extend,
    /// Starts a stream somebody is waiting for.
    ViewerStart,
    /// Starts a stream nobody waits for yet (always-on, warm-up).
    BackgroundStart,
    /// Ends a stream early; droppable.
    Stop,
}

impl Class {
    /// All classes, in rank order.
    pub const ALL: [Class; 4] = [
        Class::Extend,
        Class::ViewerStart,
        Class::BackgroundStart,
        Class::Stop,
    ];

    /// A stable lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Extend => "extend",
            Class::ViewerStart => "viewer_start",
            Class::BackgroundStart => "background_start",
            Class::Stop => "stop",
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A command to schedule. `P` is the caller's payload, opaque to the queue.
#[derive(Debug)]
pub struct Request<P> {
    /// The device the command is for.
    pub device: Arc<str>,
    /// The command's short name (its per-device budget is per command name).
    pub command: Arc<str>,
    /// Its rank.
    pub class: Class,
    /// The latest instant it should be sent; the planner sends it as close to this as it can.
    pub due: Option<Instant>,
    /// After this instant the command is useless and is dropped unsent.
    pub expires: Option<Instant>,
    /// What to execute.
    pub payload: P,
}

/// A queued payload that can tell whether its submitter has given up.
pub trait Job {
    /// True when nobody waits for the result any more; the command is then dropped unsent.
    fn is_cancelled(&self) -> bool {
        false
    }
}

/// Identifies one submitted command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CommandId(u64);

impl fmt::Display for CommandId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// What the driver must do now.
#[derive(Debug)]
pub enum Action<P> {
    /// Execute this command now, then report with [`Scheduler::completed`] or
    /// [`Scheduler::rate_limited`].
    Dispatch(Dispatch<P>),
    /// This command was dropped unsent; tell its submitter.
    Drop {
        /// The command.
        id: CommandId,
        /// Its payload, back to the driver.
        payload: P,
        /// Why.
        reason: DropReason,
    },
    /// Nothing to do before this instant (or before the next submission or completion if
    /// `None`).
    Wait(Option<Instant>),
}

/// A command handed out for execution.
#[derive(Debug)]
pub struct Dispatch<P> {
    /// The command.
    pub id: CommandId,
    /// Its rank.
    pub class: Class,
    /// Its device.
    pub device: Arc<str>,
    /// Its name.
    pub command: Arc<str>,
    /// How many times it was dispatched before (after 429s).
    pub attempt: u32,
    /// What to execute.
    pub payload: P,
}

/// Why a command was dropped unsent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Its `expires` instant passed before a budget slot was free.
    Expired,
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DropReason::Expired => f.write_str("expired before the API budget allowed sending it"),
        }
    }
}

/// How an executed command ended, for the statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The API accepted and answered it.
    Succeeded,
    /// It failed for another reason than the rate limit, and may have been processed.
    Failed,
    /// The API did not process it (HTTP 503 UNAVAILABLE, or it never reached the API): its
    /// budget slot is given back.
    NotAccepted,
}

/// Execution slots kept for deadline-bound commands: starts and stops may not take the last
/// one, so an extension never waits behind slow starts (a request can take the whole request
/// timeout, longer than an extension's margin).
pub const RESERVED_FOR_DEADLINES: usize = 1;

/// Which budget a 429 named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimitScope {
    /// The project + user budget.
    Project,
    /// The per-device per-command budget.
    DeviceCommand,
    /// The per-device budget (per hour across projects).
    Device,
    /// The response did not say; treated as the project budget, the safe assumption.
    Unknown,
}

/// Admission control settings.
#[derive(Debug, Clone, PartialEq)]
pub struct AdmissionConfig {
    /// Expected lifetime of a stream before it must be extended.
    pub stream_lifetime: Duration,
    /// Expected margin before expiry at which streams are extended.
    pub expected_margin: Duration,
    /// Commands per minute kept free for retries and new streams.
    pub reserve_per_minute: f64,
    /// What to tell a refused caller when no better estimate exists.
    pub retry_after: Duration,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        Self {
            stream_lifetime: Duration::from_secs(300),
            expected_margin: Duration::from_secs(10),
            reserve_per_minute: 0.5,
            retry_after: Duration::from_secs(30),
        }
    }
}

impl AdmissionConfig {
    /// How many streams the budget can keep alive: the largest `n` with
    /// `n × 60 / (lifetime − margin) + reserve ≤ effective budget per minute`.
    pub fn max_streams(&self, budget: &BudgetConfig) -> usize {
        let period = self
            .stream_lifetime
            .saturating_sub(self.expected_margin)
            .as_secs_f64();
        if period <= 0.0 {
            return 0;
        }
        let per_stream = MINUTE.as_secs_f64() / period;
        let spare = budget.effective_per_minute() - self.reserve_per_minute;
        if spare <= 0.0 {
            return 0;
        }
        // Truncation is the point: a fraction of a stream is no stream.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let n = (spare / per_stream + 1e-9).floor() as usize;
        n
    }
}

/// All scheduler settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SchedulerConfig {
    /// The budgets.
    pub budget: BudgetConfig,
    /// Commands executing at once.
    pub max_in_flight: u32,
    /// Admission control.
    pub admission: AdmissionConfig,
    /// Slots of the project window a stop must leave free.
    pub stop_headroom: u32,
    /// Slots per window the smooth plan leaves free for retries and starts while the budget
    /// allows it.
    pub plan_spare_slots: u32,
    /// How long a background start waits for room in the smooth plan before it settles for any
    /// room that keeps the deadlines.
    pub start_patience: Duration,
    /// Backoff after a 429 when our own log cannot say when the window frees; doubled per
    /// consecutive 429 on the same bucket, capped at the window length.
    pub rate_limit_backoff: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        let budget = BudgetConfig::default();
        let rate_limit_backoff = plan::spacing(budget.project_per_minute, budget.project_window());
        let start_patience = budget.project_window() * 2;
        Self {
            budget,
            max_in_flight: 4,
            admission: AdmissionConfig::default(),
            stop_headroom: 2,
            plan_spare_slots: 1,
            start_patience,
            rate_limit_backoff,
        }
    }
}

/// Refusal of a new stream: the budget cannot keep one more alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("at capacity: the camera API budget cannot keep another stream alive; retry in {} s", retry_after.as_secs().max(1))]
pub struct AtCapacity {
    /// When a retry may succeed.
    pub retry_after: Duration,
}

/// Proof that a stream was admitted; give it back with [`Scheduler::release`].
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct StreamSlot(u64);

#[derive(Debug)]
struct Queued<P> {
    id: CommandId,
    request: Request<P>,
    enqueued: Instant,
    attempt: u32,
}

#[derive(Debug)]
struct InFlight {
    class: Class,
    device: Arc<str>,
    command: Arc<str>,
    due: Option<Instant>,
    expires: Option<Instant>,
    enqueued: Instant,
    dispatched: Instant,
    attempt: u32,
}

#[derive(Debug, Default)]
struct Counters {
    submitted: u64,
    executed: u64,
    succeeded: u64,
    failed: u64,
    rate_limited: u64,
    refunded: u64,
    dropped: u64,
    cancelled: u64,
    admitted: u64,
    refused: u64,
}

/// The scheduler core. `S` stores the budget accounting.
#[derive(Debug)]
pub struct Scheduler<P, S> {
    config: SchedulerConfig,
    store: S,
    queued: Vec<Queued<P>>,
    in_flight: HashMap<CommandId, InFlight>,
    next_id: u64,
    streams: HashMap<u64, Arc<str>>,
    next_slot: u64,
    consecutive_429: HashMap<BucketKey, u32>,
    counters: Counters,
    waits: HashMap<Class, Samples>,
    latency: Samples,
    lateness: Samples,
}

impl<P: Job, S: BudgetStore> Scheduler<P, S> {
    /// An empty scheduler.
    pub fn new(config: SchedulerConfig, store: S) -> Self {
        Self {
            config,
            store,
            queued: Vec::new(),
            in_flight: HashMap::new(),
            next_id: 0,
            streams: HashMap::new(),
            next_slot: 0,
            consecutive_429: HashMap::new(),
            counters: Counters::default(),
            waits: Class::ALL
                .iter()
                .map(|&c| (c, Samples::default()))
                .collect(),
            latency: Samples::default(),
            lateness: Samples::default(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    /// Queues a command.
    pub fn submit(&mut self, request: Request<P>, now: Instant) -> CommandId {
        let id = CommandId(self.next_id);
        self.next_id += 1;
        self.counters.submitted += 1;
        self.queued.push(Queued {
            id,
            request,
            enqueued: now,
            attempt: 0,
        });
        id
    }

    /// Decides what to do at `now`. Call until it returns [`Action::Wait`].
    pub fn next_action(&mut self, now: Instant) -> Action<P> {
        let before = self.queued.len();
        self.queued.retain(|q| !q.request.payload.is_cancelled());
        self.counters.cancelled += (before - self.queued.len()) as u64;

        if let Some(i) = self
            .queued
            .iter()
            .position(|q| q.request.expires.is_some_and(|e| e <= now))
        {
            let q = self.queued.swap_remove(i);
            self.counters.dropped += 1;
            return Action::Drop {
                id: q.id,
                payload: q.request.payload,
                reason: DropReason::Expired,
            };
        }
        if self.queued.is_empty() {
            return Action::Wait(None);
        }
        let next_expiry = self.queued.iter().filter_map(|q| q.request.expires).min();
        let max_in_flight = self.config.max_in_flight.max(1) as usize;
        if self.in_flight.len() >= max_in_flight {
            return Action::Wait(next_expiry);
        }
        let project_free = self.store.next_free(&[BucketKey::Project], now);
        if project_free > now {
            return Action::Wait(Some(earliest(project_free, next_expiry)));
        }
        // The last execution slot is kept for deadline-bound commands, so that slow starts can
        // never hold up an extension.
        let allow_unbound = max_in_flight <= RESERVED_FOR_DEADLINES
            || self.in_flight.len() + RESERVED_FOR_DEADLINES < max_in_flight;
        match self.pick(now, allow_unbound) {
            Ok(index) => self.dispatch(index, now),
            Err(wake) => Action::Wait(wake.into_iter().chain(next_expiry).min()),
        }
    }

    /// Chooses the queued command to dispatch at `now`, or the instant to look again.
    fn pick(&mut self, now: Instant, allow_unbound: bool) -> Result<usize, Option<Instant>> {
        let (limit, window) = self.config.budget.limit(&BucketKey::Project);
        let view = self.store.view(&BucketKey::Project, now);
        let not_before = view.blocked_until.unwrap_or(now).max(now);
        let mut wake: Option<Instant> = view.sends.first().map(|&oldest| oldest + window);

        // Deadline-bound commands whose device budgets allow sending now. One whose device is
        // blocked cannot use a project slot before its device frees, so it stays out of the
        // project plan until then instead of holding a slot it cannot take.
        let mut bound: Vec<(usize, Instant)> = Vec::new();
        for i in 0..self.queued.len() {
            let Some(due) = self.queued[i].request.due else {
                continue;
            };
            match self.device_ready(i, now) {
                Ok(()) => bound.push((i, due)),
                Err(free) => wake = Some(earliest(free, wake)),
            }
        }
        bound.sort_by(|a, b| {
            b.1.cmp(&a.1)
                .then(self.queued[b.0].id.cmp(&self.queued[a.0].id))
        });
        let deadlines: Vec<Instant> = bound.iter().map(|&(_, d)| d).collect();
        let fits = |plan: &Plan, history: &[Instant]| plan.fits(history, not_before, limit, window);
        // The smoothest plan that fits: one slot per window left free (for a retry or a viewer),
        // else every slot used, else bursts. When even the burst plan does not fit (overload),
        // follow it anyway: what it places now or in the past goes first, least slack first, and
        // nothing is sent before its planned time, because an early extension shortens its
        // stream's cycle and would feed the overload.
        let spare = self.config.plan_spare_slots.min(limit.saturating_sub(1));
        let rolling = Plan::rolling(&deadlines, limit, window);
        let fitting = plan::spacing_tiers(limit, spare, window)
            .find_map(|spacing| Plan::spaced(&deadlines, spacing).filter(|p| fits(p, &view.sends)))
            .or_else(|| rolling.clone().filter(|p| fits(p, &view.sends)));
        let feasible = fitting.is_some();
        let plan = fitting.or_else(|| rolling.clone());

        // 1. Deadline-bound commands whose planned time has come.
        let mut urgent: Vec<(usize, Instant)> = match &plan {
            Some(p) => bound
                .iter()
                .zip(p.send_times(not_before))
                .filter_map(|(&(i, due), t)| {
                    if t <= now {
                        Some((i, due))
                    } else {
                        wake = Some(earliest(t, wake));
                        None
                    }
                })
                .collect(),
            // Only before the platform's clock origin; nothing to plan against.
            None => bound.clone(),
        };
        // Least slack first: the hard deadline when there is one (a retry is due "now" but may
        // have less time left than a planned extension due earlier).
        urgent.sort_by_key(|&(i, due)| {
            let q = &self.queued[i];
            (q.request.expires.unwrap_or(due), due, q.id)
        });
        if let Some(&(i, _)) = urgent.first() {
            return Ok(i);
        }
        if !feasible || !allow_unbound {
            return Err(wake);
        }

        // 2–4. Commands without deadline, if one more send now keeps the deadlines. The smooth
        // plan is the test for background work, so that starts do not undo its spreading; a
        // viewer's start (and background work that has waited `start_patience`, which matters
        // when the limit is small and evenly spread extensions never leave a window with room)
        // only needs some plan to keep every deadline: the burst plan, which leaves the most room
        // now.
        let mut history = view.sends.clone();
        history.push(now);
        // Background work also keeps the smooth spacing from the previous send, so that a start-up
        // burst (always-on cameras at boot) does not create the clusters the plan must later
        // spread: streams started together need extending together.
        let smooth_spacing = plan::spacing(limit - spare, window);
        let spaced_from_last = view
            .sends
            .last()
            .is_none_or(|&last| last + smooth_spacing <= now);
        let room_smooth = feasible && plan.as_ref().is_some_and(|p| fits(p, &history));
        let room_any = rolling.as_ref().is_some_and(|p| fits(p, &history));
        if !room_any {
            return Err(wake);
        }
        let used_after = u32::try_from(history.len()).unwrap_or(u32::MAX);
        let extensions_waiting = self.queued.iter().any(|q| q.request.due.is_some());
        let mut unbound: Vec<usize> = (0..self.queued.len())
            .filter(|&i| self.queued[i].request.due.is_none())
            .collect();
        unbound.sort_by_key(|&i| {
            let q = &self.queued[i];
            let stop_expiry = match q.request.class {
                Class::Stop => q.request.expires,
                _ => None,
            };
            (q.request.class, stop_expiry, q.id)
        });
        for i in unbound {
            let q = &self.queued[i];
            let patient = now.saturating_duration_since(q.enqueued) >= self.config.start_patience;
            let allowed = match q.request.class {
                Class::ViewerStart => true,
                Class::BackgroundStart => (room_smooth && spaced_from_last) || patient,
                // The headroom protects extensions; with none waiting (at shutdown every lease
                // has given up its extension) stops may use the whole budget.
                Class::Stop => {
                    room_smooth
                        && (!extensions_waiting || used_after + self.config.stop_headroom <= limit)
                }
                Class::Extend => false,
            };
            if !allowed {
                if q.request.class == Class::BackgroundStart {
                    wake = Some(earliest(q.enqueued + self.config.start_patience, wake));
                    if let Some(&last) = view.sends.last()
                        && last + smooth_spacing > now
                    {
                        wake = Some(earliest(last + smooth_spacing, wake));
                    }
                }
                continue;
            }
            match self.device_ready(i, now) {
                Ok(()) => return Ok(i),
                Err(free) => wake = Some(earliest(free, wake)),
            }
        }
        Err(wake)
    }

    /// Whether the device buckets of queued command `i` have room at `now`; if not, when.
    fn device_ready(&mut self, i: usize, now: Instant) -> Result<(), Instant> {
        let r = &self.queued[i].request;
        let [_, command, hour] = BudgetConfig::buckets_for(&r.device, &r.command);
        let free = self.store.next_free(&[command, hour], now);
        if free <= now { Ok(()) } else { Err(free) }
    }

    fn dispatch(&mut self, index: usize, now: Instant) -> Action<P> {
        let q = self.queued.swap_remove(index);
        let buckets = BudgetConfig::buckets_for(&q.request.device, &q.request.command);
        if let Err(free) = self.store.try_acquire(&buckets, now) {
            // Another user of a shared store took the slot between our look and our acquire.
            let wake = free;
            self.queued.push(q);
            return Action::Wait(Some(wake));
        }
        self.counters.executed += 1;
        let waited = now.saturating_duration_since(q.enqueued);
        if let Some(samples) = self.waits.get_mut(&q.request.class) {
            samples.push(waited);
        }
        if let Some(due) = q.request.due {
            self.lateness.push(now.saturating_duration_since(due));
        }
        let Request {
            device,
            command,
            class,
            due,
            expires,
            payload,
        } = q.request;
        self.in_flight.insert(
            q.id,
            InFlight {
                class,
                device: device.clone(),
                command: command.clone(),
                due,
                expires,
                enqueued: q.enqueued,
                dispatched: now,
                attempt: q.attempt,
            },
        );
        Action::Dispatch(Dispatch {
            id: q.id,
            class,
            device,
            command,
            attempt: q.attempt,
            payload,
        })
    }

    /// Reports that dispatched command `id` finished (not with a 429).
    pub fn completed(&mut self, id: CommandId, outcome: Outcome, now: Instant) {
        let Some(flight) = self.in_flight.remove(&id) else {
            return;
        };
        self.latency
            .push(now.saturating_duration_since(flight.dispatched));
        let buckets = BudgetConfig::buckets_for(&flight.device, &flight.command);
        match outcome {
            Outcome::Succeeded => {
                self.counters.succeeded += 1;
                for bucket in &buckets {
                    self.consecutive_429.remove(bucket);
                }
            }
            Outcome::Failed => self.counters.failed += 1,
            Outcome::NotAccepted => {
                self.counters.failed += 1;
                self.counters.refunded += 1;
                self.store.refund(&buckets, flight.dispatched);
            }
        }
    }

    /// Reports that dispatched command `id` was answered with 429 for `scope`: the bucket is
    /// treated as full until its window frees, and the command is queued again with its
    /// deadlines.
    pub fn rate_limited(&mut self, id: CommandId, payload: P, scope: RateLimitScope, now: Instant) {
        let Some(flight) = self.in_flight.remove(&id) else {
            return;
        };
        self.counters.rate_limited += 1;
        let [project, command, hour] = BudgetConfig::buckets_for(&flight.device, &flight.command);
        let bucket = match scope {
            RateLimitScope::Project | RateLimitScope::Unknown => project,
            RateLimitScope::DeviceCommand => command,
            RateLimitScope::Device => hour,
        };
        let strikes = self.consecutive_429.entry(bucket.clone()).or_insert(0);
        *strikes = strikes.saturating_add(1);
        // Our log cannot say when Google's window frees: others may spend the same budget. A
        // full rolling window frees a slot every `window / limit` on average, so the first look
        // is that far away, doubling while the API keeps refusing, up to a whole window.
        let (_, window) = self.config.budget.limit(&bucket);
        let backoff = self
            .config
            .rate_limit_backoff
            .saturating_mul(1 << (*strikes - 1).min(16))
            .min(window);
        self.store.block_until(&bucket, now + backoff);
        self.requeue(id, flight, payload, 1);
    }

    /// Puts a dispatched command back in the queue with its original deadlines and enqueue
    /// time, counting `attempts` more dispatches.
    fn requeue(&mut self, id: CommandId, flight: InFlight, payload: P, attempts: u32) {
        self.queued.push(Queued {
            id,
            request: Request {
                device: flight.device,
                command: flight.command,
                class: flight.class,
                due: flight.due,
                expires: flight.expires,
                payload,
            },
            enqueued: flight.enqueued,
            attempt: flight.attempt + attempts,
        });
    }

    /// Takes a dispatched command back unsent (the driver's backstop refused it): its budget
    /// charge is refunded, it is queued again, and nothing is sent on the project budget before
    /// `until`.
    pub fn hold_back(&mut self, id: CommandId, payload: P, until: Instant, now: Instant) {
        let Some(flight) = self.in_flight.remove(&id) else {
            return;
        };
        self.counters.executed = self.counters.executed.saturating_sub(1);
        let buckets = BudgetConfig::buckets_for(&flight.device, &flight.command);
        self.store.refund(&buckets, flight.dispatched);
        self.store.block_until(&BucketKey::Project, until.max(now));
        self.requeue(id, flight, payload, 0);
    }

    /// Removes every queued command of a class for which `keep` is false and returns their
    /// payloads (on shutdown, only stops are still worth sending).
    pub fn remove_queued(&mut self, keep: impl Fn(Class) -> bool) -> Vec<(CommandId, P)> {
        let (kept, removed): (Vec<_>, Vec<_>) = std::mem::take(&mut self.queued)
            .into_iter()
            .partition(|q| keep(q.request.class));
        self.queued = kept;
        removed
            .into_iter()
            .map(|q| (q.id, q.request.payload))
            .collect()
    }

    /// Commands waiting.
    pub fn queued_len(&self) -> usize {
        self.queued.len()
    }

    /// Commands executing.
    pub fn in_flight_len(&self) -> usize {
        self.in_flight.len()
    }

    /// Admits one more live stream on `device` if the budget can keep it alive.
    pub fn admit(&mut self, device: &str, now: Instant) -> Result<StreamSlot, AtCapacity> {
        let max = self.config.admission.max_streams(&self.config.budget);
        if self.streams.len() >= max {
            self.counters.refused += 1;
            return Err(AtCapacity {
                retry_after: self.config.admission.retry_after,
            });
        }
        let device: Arc<str> = Arc::from(device);
        let hour = BucketKey::DeviceHour {
            device: device.clone(),
        };
        let free = self.store.next_free(&[hour], now);
        if free > now {
            self.counters.refused += 1;
            return Err(AtCapacity {
                retry_after: free - now,
            });
        }
        let slot = self.next_slot;
        self.next_slot += 1;
        self.streams.insert(slot, device);
        self.counters.admitted += 1;
        Ok(StreamSlot(slot))
    }

    /// Gives back an admitted stream's slot.
    pub fn release(&mut self, slot: StreamSlot) {
        self.streams.remove(&slot.0);
    }

    /// Execution latency (dispatch to answer) at quantile `q` of recent commands.
    pub fn latency_quantile(&self, q: f64) -> Option<Duration> {
        self.latency.quantile(q)
    }

    /// How late deadline-bound commands were sent, at quantile `q` of recent ones.
    pub fn lateness_quantile(&self, q: f64) -> Option<Duration> {
        self.lateness.quantile(q)
    }

    /// A snapshot of the queue for operators.
    pub fn stats(&mut self, now: Instant) -> QueueStats {
        let mut depth = ClassCounts::default();
        for q in &self.queued {
            *depth.get_mut(q.request.class) += 1;
        }
        let mut in_flight = ClassCounts::default();
        for f in self.in_flight.values() {
            *in_flight.get_mut(f.class) += 1;
        }
        let buckets = self
            .store
            .active(now)
            .into_iter()
            .map(|key| {
                let view = self.store.view(&key, now);
                BucketStats::new(&key, &view, now)
            })
            .collect();
        QueueStats {
            depth,
            in_flight,
            submitted: self.counters.submitted,
            executed: self.counters.executed,
            succeeded: self.counters.succeeded,
            failed: self.counters.failed,
            rate_limited: self.counters.rate_limited,
            refunded: self.counters.refunded,
            dropped: self.counters.dropped,
            cancelled: self.counters.cancelled,
            streams_admitted: self.streams.len() as u64,
            stream_capacity: self.config.admission.max_streams(&self.config.budget) as u64,
            admissions: self.counters.admitted,
            admission_refusals: self.counters.refused,
            wait_ms: Class::ALL
                .iter()
                .map(|&c| {
                    (
                        c,
                        self.waits.get(&c).map(Samples::summary).unwrap_or_default(),
                    )
                })
                .collect(),
            latency_ms: self.latency.summary(),
            extend_lateness_ms: self.lateness.summary(),
            buckets,
            backstop_trips: 0,
        }
    }
}

fn earliest(t: Instant, other: Option<Instant>) -> Instant {
    other.map_or(t, |o| o.min(t))
}

#[cfg(test)]
mod tests;
