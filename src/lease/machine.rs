//! The stream lease of one Nest camera, as a state machine that is told the time.
//!
//! A Nest camera has no fixed URL: `GenerateRtspStream` issues one that dies about five minutes
//! later unless `ExtendRtspStream` renews it, and every command spends the shared budget. The
//! lease turns "somebody wants this camera" into the fewest commands that keep a URL alive:
//!
//! ```text
//!            demand                admitted            generated
//!   Idle ─────────────▶ Admitting ─────────▶ Generating ─────────▶ Live ◀──┐ extended
//!    ▲                    │ at capacity         │ failed          │  └──────┘ (just in time)
//!    │                    ▼                     ▼                 │ no demand (after grace)
//!    │               AtCapacity ──▶ …       Backoff ──▶ Admitting  ▼
//!    └──────────── expired / stopped ◀──────────────────────── Dormant ── demand ──▶ Live
//! ```
//!
//! - **Just in time.** Each extension restarts the five minutes, so extending early wastes
//!   budget. The lease asks for the extension due at `expiry − margin`; the queue plans it as late
//!   as the budget allows. The margin is learned: a floor plus three times the observed API
//!   latency (one attempt and two retries; a 503 gives its budget slot back, so a retry waits only
//!   for the network) plus how late the queue has recently been.
//! - **Failures.** A transient failure of an extension is retried at once while the stream lives;
//!   a stale token or a dead stream means a new one, after capped, jittered exponential backoff.
//!   After `degraded_after` consecutive failures the camera shows as degraded and keeps trying.
//! - **Demand ends.** After the idle grace the lease stops extending and gives its admission slot
//!   back, but keeps the still-valid stream *dormant*: if demand returns before it expires, it is
//!   extended again instead of generating a new one. A stop is queued at the lowest priority and
//!   is only sent when the budget has slack (an unextended stream expires by itself anyway).
//!
//! The machine performs no I/O: [`Lease::handle`] takes an input and the time, and returns the
//! effects for its driver ([`super::task`]) to carry out.

use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use camrelay_api_clients::nest::{ExtensionToken, RtspExtension, RtspStream, StreamUrl};
use camrelay_queue::Class;
use serde::Serialize;

/// API latency assumed before any has been measured.
pub const INITIAL_LATENCY_ESTIMATE: Duration = Duration::from_secs(1);

/// Attempts an extension's margin is sized for: the first plus two retries.
pub const EXTENSION_ATTEMPTS: u32 = 3;

/// Shortest time between the starts of two attempts to extend a stream. A refused connection
/// fails in microseconds; without it the retries would spin. A slower failure is retried at
/// once.
pub const EXTEND_RETRY_MIN_DELAY: Duration = Duration::from_millis(250);

/// Tuning knobs, from `CAMRELAY_NEST_*`.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaseConfig {
    /// Floor of the learned extension margin.
    pub min_margin: Duration,
    /// First re-generate backoff.
    pub retry_initial: Duration,
    /// Longest re-generate backoff.
    pub retry_max: Duration,
    /// Consecutive failures after which the camera shows as degraded.
    pub degraded_after: u32,
    /// How long the stream stays up after demand ends.
    pub idle_grace: Duration,
}

/// Who wants the camera.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Demand {
    /// Holders of demand (RTSP clients, viewers, always-on).
    pub holders: usize,
    /// Whether a person is waiting (a viewer or a client that just connected): their start
    /// outranks background starts in the queue.
    pub interactive: bool,
}

/// How a command failed, as far as the lease cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Try again soon (5xx, timeout, refused access token).
    Transient(String),
    /// The stream or its token is gone (stale token, camera offline, garbled answer, or the
    /// queue could not send it in time): a new stream is needed.
    Gone(String),
    /// Only an operator can fix it (revoked refresh token, wrong credentials or project).
    Fatal(String),
}

impl Failure {
    fn message(&self) -> &str {
        match self {
            Failure::Transient(m) | Failure::Gone(m) | Failure::Fatal(m) => m,
        }
    }
}

/// The budget cannot keep another stream alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// When to ask again.
    pub retry_after: Duration,
}

/// What happened, told to [`Lease::handle`].
#[derive(Debug)]
pub enum Input {
    /// Demand changed.
    Demand(Demand),
    /// The queue answered the admission request.
    Admission(Result<(), Refused>),
    /// `GenerateRtspStream` finished.
    Generated(Result<RtspStream, Failure>),
    /// `ExtendRtspStream` finished.
    Extended(Result<RtspExtension, Failure>),
    /// `StopRtspStream` finished (or was dropped by the queue).
    Stopped,
    /// The command in flight (an extension or a stop) left the queue for the API: from now on
    /// its answer matters even if nobody wants the stream.
    Sent,
    /// The ingest found the URL of `generation` refused (e.g. DESCRIBE 404): the stream is gone.
    Rejected {
        /// [`Lease::generation`] when the refused URL was published.
        generation: u64,
    },
    /// A timer the lease asked for fired (or any time passes).
    Tick,
}

/// A command for the queue.
#[derive(Debug, Clone)]
pub enum Command {
    /// `GenerateRtspStream`.
    Generate {
        /// Viewer or background start.
        class: Class,
    },
    /// `ExtendRtspStream`.
    Extend {
        /// The current extension token.
        token: ExtensionToken,
        /// Send no later than this (expiry − margin).
        due: Instant,
        /// Useless after this (expiry − one latency).
        expires: Instant,
    },
    /// `StopRtspStream`.
    Stop {
        /// The current extension token.
        token: ExtensionToken,
        /// Useless after this (the stream's expiry).
        expires: Instant,
    },
}

/// What the driver must do.
#[derive(Debug, Clone)]
pub enum Effect {
    /// Ask the queue for an admission slot.
    Admit,
    /// Give the admission slot back.
    Release,
    /// Send a command (replacing any command in flight, which is cancelled).
    Submit(Command),
    /// Cancel the command in flight, if any.
    Cancel,
    /// The URL the ingest should use changed (`None`: no stream).
    Publish(Option<StreamUrl>),
}

/// The lease's state, for operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Nobody wants the camera; no stream.
    Idle,
    /// Waiting for an admission slot.
    Admitting,
    /// The budget cannot carry another stream now.
    AtCapacity,
    /// A new stream is being generated.
    Starting,
    /// A stream is live and being extended.
    Live,
    /// Waiting before trying again after a failure.
    Backoff,
    /// Nobody wants the camera; its last stream is kept, unextended, until it expires.
    Dormant,
}

/// A live stream: its URL (with the latest token), next extension token and expiry.
#[derive(Debug, Clone)]
struct Grant {
    url: StreamUrl,
    token: ExtensionToken,
    expires: Instant,
}

#[derive(Debug)]
enum State {
    Idle,
    /// Waiting for an admission slot, to start a new stream or to revive a dormant one.
    Admitting {
        revive: Option<Grant>,
    },
    AtCapacity {
        retry_at: Instant,
    },
    Generating,
    /// A stream is live. `extension`: where its next extension stands. `retry_at`: the next
    /// extension attempt after a transient failure.
    Live {
        grant: Grant,
        extension: Flight,
        retry_at: Option<Instant>,
        /// When the current extension attempt left for the API.
        sent_at: Option<Instant>,
    },
    Backoff {
        until: Instant,
    },
    /// Nobody wants the stream; it is kept until it expires. `extension`: an extension sent
    /// while it was live and not answered yet (its answer carries the token a stop needs).
    /// `stop`: where the stop stands.
    Dormant {
        grant: Grant,
        extension: Flight,
        stop: Flight,
    },
}

/// Where a command of the lease stands. A queued command can be taken back for free; a sent one
/// may act at Google, so its answer is awaited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flight {
    /// None.
    Idle,
    /// Waiting in the command queue.
    Queued,
    /// Sent to the API, not answered yet.
    Sent,
}

/// Counters and the last error, for operators.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseCounters {
    /// Streams generated.
    pub generated: u64,
    /// Successful extensions.
    pub extended: u64,
    /// Failed commands.
    pub failures: u64,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// Streams lost while wanted (expired or refused before a new one took over).
    pub lost: u64,
    /// Admission refusals.
    pub refusals: u64,
    /// The last failure (already free of secrets).
    pub last_error: Option<String>,
}

/// One camera's lease.
#[derive(Debug)]
pub struct Lease {
    config: LeaseConfig,
    state: State,
    demand: Demand,
    /// When demand dropped to zero, if it did and the grace is not over.
    released_at: Option<Instant>,
    admitted: bool,
    latency_p99: Option<Duration>,
    lateness_p99: Option<Duration>,
    backoff: ExponentialBackoff,
    counters: LeaseCounters,
    degraded: bool,
    /// When a live stream was last lost (its URL refused).
    last_loss: Option<Instant>,
    /// Counts URL changes, so a refusal of an outdated URL is told apart.
    generation: u64,
}

impl Lease {
    /// An idle lease.
    pub fn new(config: LeaseConfig) -> Self {
        let backoff = backoff(&config);
        Self {
            config,
            state: State::Idle,
            demand: Demand::default(),
            released_at: None,
            admitted: false,
            latency_p99: None,
            lateness_p99: None,
            backoff,
            counters: LeaseCounters::default(),
            degraded: false,
            last_loss: None,
            generation: 0,
        }
    }

    /// Tells the lease what the queue has measured (call before [`Self::handle`]).
    pub fn set_timing(&mut self, latency_p99: Option<Duration>, lateness_p99: Option<Duration>) {
        self.latency_p99 = latency_p99;
        self.lateness_p99 = lateness_p99;
    }

    /// The margin before expiry at which the next extension is due.
    pub fn margin(&self) -> Duration {
        self.config.min_margin
            + self.latency() * EXTENSION_ATTEMPTS
            + self.lateness_p99.unwrap_or_default()
    }

    fn latency(&self) -> Duration {
        self.latency_p99.unwrap_or(INITIAL_LATENCY_ESTIMATE)
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        match self.state {
            State::Idle => Phase::Idle,
            State::Admitting { .. } => Phase::Admitting,
            State::AtCapacity { .. } => Phase::AtCapacity,
            State::Generating => Phase::Starting,
            State::Live { .. } => Phase::Live,
            State::Backoff { .. } => Phase::Backoff,
            State::Dormant { .. } => Phase::Dormant,
        }
    }

    /// Whether repeated failures have marked the camera degraded.
    pub fn degraded(&self) -> bool {
        self.degraded
    }

    /// Which published URL is current: it changes with every new stream or extension.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// When the current stream expires, if there is one.
    pub fn expires(&self) -> Option<Instant> {
        match &self.state {
            State::Live { grant, .. } | State::Dormant { grant, .. } => Some(grant.expires),
            _ => None,
        }
    }

    /// When an admission refusal may be retried, if refused.
    pub fn retry_at(&self) -> Option<Instant> {
        match self.state {
            State::AtCapacity { retry_at } => Some(retry_at),
            _ => None,
        }
    }

    /// Counters and the last error.
    pub fn counters(&self) -> &LeaseCounters {
        &self.counters
    }

    /// The next instant [`Input::Tick`] is needed, if any. Always after the `now` of the last
    /// [`Self::handle`].
    pub fn next_wakeup(&self) -> Option<Instant> {
        let state = match &self.state {
            State::AtCapacity { retry_at } => Some(*retry_at),
            State::Backoff { until } => Some(*until),
            State::Live {
                grant, retry_at, ..
            } => Some(retry_at.map_or(grant.expires, |r| r.min(grant.expires))),
            State::Dormant { grant, .. }
            | State::Admitting {
                revive: Some(grant),
            } => Some(grant.expires),
            State::Idle | State::Admitting { revive: None } | State::Generating => None,
        };
        let grace = self
            .released_at
            .filter(|_| self.demand.holders == 0)
            .map(|at| at + self.config.idle_grace);
        [state, grace].into_iter().flatten().min()
    }

    fn wanted(&self, now: Instant) -> bool {
        self.demand.holders > 0
            || self
                .released_at
                .is_some_and(|at| now < at + self.config.idle_grace)
    }

    fn start_class(&self) -> Class {
        if self.demand.interactive {
            Class::ViewerStart
        } else {
            Class::BackgroundStart
        }
    }

    /// On shutdown: the stop for the current stream, if any, to send if the budget allows.
    pub fn shutdown(&mut self) -> Option<Command> {
        let grant = match std::mem::replace(&mut self.state, State::Idle) {
            State::Live { grant, .. } | State::Dormant { grant, .. } => grant,
            State::Admitting {
                revive: Some(grant),
            } => grant,
            _ => return None,
        };
        Some(Command::Stop {
            token: grant.token,
            expires: grant.expires,
        })
    }

    /// Handles `input` at `now` and returns what the driver must do.
    pub fn handle(&mut self, input: Input, now: Instant) -> Vec<Effect> {
        let mut effects = Vec::new();
        match input {
            Input::Demand(demand) => {
                if demand.holders == 0 && self.demand.holders > 0 {
                    self.released_at = Some(now);
                } else if demand.holders > 0 {
                    self.released_at = None;
                }
                self.demand = demand;
            }
            Input::Admission(result) => self.on_admission(result, now, &mut effects),
            Input::Generated(result) => self.on_generated(result, now, &mut effects),
            Input::Extended(result) => self.on_extended(result, now, &mut effects),
            Input::Stopped => {
                if let State::Dormant {
                    stop: Flight::Queued | Flight::Sent,
                    ..
                } = self.state
                {
                    self.state = State::Idle;
                    self.publish(None, &mut effects);
                }
            }
            Input::Sent => match &mut self.state {
                State::Live {
                    extension: flight @ Flight::Queued,
                    sent_at,
                    ..
                } => {
                    *flight = Flight::Sent;
                    *sent_at = Some(now);
                }
                State::Dormant {
                    stop: flight @ Flight::Queued,
                    ..
                } => *flight = Flight::Sent,
                _ => {}
            },
            Input::Rejected { generation } => {
                // A refusal of an older URL (before the last extension) says nothing about
                // the current one.
                if generation == self.generation {
                    match self.state {
                        State::Live { .. } => {
                            self.counters.lost += 1;
                            let failure = Failure::Gone("the stream URL was refused".into());
                            // Google ends streams now and then: replace the first loss at
                            // once (viewers see a short gap); losing streams more often
                            // than once per QUICK_REPLACE_INTERVAL backs off as any failure.
                            let quick = self
                                .last_loss
                                .is_none_or(|at| now >= at + QUICK_REPLACE_INTERVAL);
                            self.last_loss = Some(now);
                            self.fail(failure, now, &mut effects);
                            if quick {
                                self.state = State::Backoff { until: now };
                            }
                        }
                        State::Dormant { .. } => {
                            self.state = State::Idle;
                            self.publish(None, &mut effects);
                        }
                        _ => {}
                    }
                }
            }
            Input::Tick => {}
        }
        self.advance(now, &mut effects);
        // The grace is over (or demand is back): nothing to wake up for.
        if self
            .released_at
            .is_some_and(|at| self.demand.holders > 0 || now >= at + self.config.idle_grace)
        {
            self.released_at = None;
        }
        effects
    }

    fn publish(&mut self, url: Option<StreamUrl>, effects: &mut Vec<Effect>) {
        self.generation += 1;
        effects.push(Effect::Publish(url));
    }

    /// Moves on from the current state given demand and time.
    fn advance(&mut self, now: Instant, effects: &mut Vec<Effect>) {
        let wanted = self.wanted(now);
        match &mut self.state {
            State::Idle => {
                if wanted {
                    self.state = State::Admitting { revive: None };
                    effects.push(Effect::Admit);
                }
            }
            State::Admitting { revive } => {
                if revive.as_ref().is_some_and(|g| now >= g.expires) {
                    // The dormant stream ran out while we waited for a slot: start afresh.
                    *revive = None;
                    self.publish(None, effects);
                }
                let State::Admitting { revive } = &mut self.state else {
                    return;
                };
                if !wanted {
                    effects.push(Effect::Cancel);
                    match revive.take() {
                        Some(grant) => self.go_dormant(grant, effects),
                        None => self.state = State::Idle,
                    }
                }
            }
            State::Generating => {
                if !wanted {
                    effects.push(Effect::Cancel);
                    self.release(effects);
                    self.state = State::Idle;
                }
            }
            State::AtCapacity { retry_at } => {
                if !wanted {
                    self.state = State::Idle;
                } else if now >= *retry_at {
                    self.state = State::Admitting { revive: None };
                    effects.push(Effect::Admit);
                }
            }
            State::Backoff { until } => {
                if !wanted {
                    self.release(effects);
                    self.state = State::Idle;
                } else if now >= *until {
                    self.generate(effects);
                }
            }
            State::Live {
                grant,
                extension,
                retry_at,
                ..
            } => {
                if now >= grant.expires {
                    self.counters.lost += 1;
                    let failure = Failure::Gone("the stream expired before it was extended".into());
                    self.fail(failure, now, effects);
                } else if !wanted {
                    let grant = grant.clone();
                    let extension = *extension;
                    self.release(effects);
                    match extension {
                        // A sent extension may spend the token: wait for its answer (its new
                        // token is what a stop needs).
                        Flight::Sent => {
                            self.state = State::Dormant {
                                grant,
                                extension: Flight::Sent,
                                stop: Flight::Idle,
                            };
                        }
                        Flight::Queued => {
                            effects.push(Effect::Cancel);
                            self.go_dormant(grant, effects);
                        }
                        Flight::Idle => self.go_dormant(grant, effects),
                    }
                } else if *extension == Flight::Idle && retry_at.is_none_or(|r| r <= now) {
                    *extension = Flight::Queued;
                    *retry_at = None;
                    if let Some(command) = self.extend_command(now) {
                        effects.push(Effect::Submit(command));
                    }
                }
            }
            State::Dormant {
                grant,
                extension,
                stop,
            } => {
                if now >= grant.expires {
                    if *extension != Flight::Idle || *stop != Flight::Idle {
                        effects.push(Effect::Cancel);
                    }
                    self.state = State::Idle;
                    self.publish(None, effects);
                    self.advance(now, effects);
                } else if *extension != Flight::Idle {
                    // Wait for the extension's answer: it decides the token.
                } else if wanted {
                    match *stop {
                        // The stop may have gone out: start afresh rather than revive a stream
                        // that might be stopped.
                        Flight::Sent => {
                            effects.push(Effect::Cancel);
                            self.state = State::Admitting { revive: None };
                            self.publish(None, effects);
                        }
                        Flight::Queued | Flight::Idle => {
                            if *stop == Flight::Queued {
                                effects.push(Effect::Cancel);
                            }
                            let grant = grant.clone();
                            self.state = State::Admitting {
                                revive: Some(grant),
                            };
                        }
                    }
                    effects.push(Effect::Admit);
                } else if *stop == Flight::Idle {
                    let grant = grant.clone();
                    self.go_dormant(grant, effects);
                }
            }
        }
    }

    /// Keeps `grant` unextended until it expires and queues a stop for it.
    fn go_dormant(&mut self, grant: Grant, effects: &mut Vec<Effect>) {
        effects.push(Effect::Submit(Command::Stop {
            token: grant.token.clone(),
            expires: grant.expires,
        }));
        self.state = State::Dormant {
            grant,
            extension: Flight::Idle,
            stop: Flight::Queued,
        };
    }

    fn extend_command(&self, now: Instant) -> Option<Command> {
        let State::Live { grant, .. } = &self.state else {
            return None;
        };
        let margin = self.margin();
        let due = grant.expires.checked_sub(margin).unwrap_or(now).max(now);
        let expires = grant
            .expires
            .checked_sub(self.latency())
            .unwrap_or(now)
            .max(now);
        Some(Command::Extend {
            token: grant.token.clone(),
            due,
            expires,
        })
    }

    fn generate(&mut self, effects: &mut Vec<Effect>) {
        self.state = State::Generating;
        effects.push(Effect::Submit(Command::Generate {
            class: self.start_class(),
        }));
    }

    fn release(&mut self, effects: &mut Vec<Effect>) {
        if self.admitted {
            self.admitted = false;
            effects.push(Effect::Release);
        }
    }

    fn on_admission(
        &mut self,
        result: Result<(), Refused>,
        now: Instant,
        effects: &mut Vec<Effect>,
    ) {
        let State::Admitting { revive } = &mut self.state else {
            // Granted after demand went away: give it straight back.
            if result.is_ok() {
                effects.push(Effect::Release);
            }
            return;
        };
        let revive = revive.take();
        match result {
            Ok(()) => {
                self.admitted = true;
                match revive {
                    // Still long enough to extend: keep using it.
                    Some(grant) if grant.expires > now + self.margin() => {
                        self.state = State::Live {
                            grant,
                            extension: Flight::Idle,
                            retry_at: None,
                            sent_at: None,
                        };
                    }
                    Some(_) => {
                        self.publish(None, effects);
                        self.generate(effects);
                    }
                    None => self.generate(effects),
                }
            }
            Err(refused) => {
                self.counters.refusals += 1;
                if revive.is_some() {
                    self.publish(None, effects);
                }
                self.state = State::AtCapacity {
                    retry_at: now + refused.retry_after,
                };
            }
        }
    }

    fn on_generated(
        &mut self,
        result: Result<RtspStream, Failure>,
        now: Instant,
        effects: &mut Vec<Effect>,
    ) {
        if !matches!(self.state, State::Generating) {
            return;
        }
        match result {
            Ok(stream) => {
                self.succeeded();
                self.counters.generated += 1;
                self.publish(Some(stream.url.clone()), effects);
                self.state = State::Live {
                    grant: Grant {
                        url: stream.url,
                        token: stream.extension_token,
                        expires: stream.expires.instant.into_std(),
                    },
                    extension: Flight::Idle,
                    retry_at: None,
                    sent_at: None,
                };
            }
            Err(failure) => self.fail(failure, now, effects),
        }
    }

    fn on_extended(
        &mut self,
        result: Result<RtspExtension, Failure>,
        now: Instant,
        effects: &mut Vec<Effect>,
    ) {
        let latency = self.latency();
        match &mut self.state {
            State::Live {
                grant,
                extension: extension @ (Flight::Queued | Flight::Sent),
                retry_at,
                sent_at,
            } => {
                *extension = Flight::Idle;
                let attempt_sent = sent_at.take();
                match result {
                    Ok(extension) => {
                        apply_extension(grant, extension);
                        let url = grant.url.clone();
                        self.publish(Some(url), effects);
                        self.succeeded();
                        self.counters.extended += 1;
                    }
                    Err(Failure::Transient(message)) => {
                        // The stream lives and the token was not spent: try again, at once if
                        // the attempt took a while, else once attempts are
                        // EXTEND_RETRY_MIN_DELAY apart (a refused connection fails at once and
                        // must not spin).
                        let at = attempt_sent.map_or(now + EXTEND_RETRY_MIN_DELAY, |sent| {
                            (sent + EXTEND_RETRY_MIN_DELAY).max(now)
                        });
                        self.counters.failures += 1;
                        self.counters.consecutive_failures += 1;
                        self.counters.last_error = Some(message.clone());
                        if at + latency < grant.expires {
                            *retry_at = (at > now).then_some(at);
                        } else {
                            self.counters.lost += 1;
                            self.fail(Failure::Transient(message), now, effects);
                        }
                    }
                    Err(failure) => {
                        self.counters.lost += 1;
                        self.fail(failure, now, effects);
                    }
                }
            }
            State::Dormant {
                grant,
                extension: extension @ Flight::Sent,
                stop,
            } => {
                // `advance` then stops the stream, or revives it if demand came back.
                *extension = Flight::Idle;
                *stop = Flight::Idle;
                match result {
                    Ok(extension) => {
                        apply_extension(grant, extension);
                        let url = grant.url.clone();
                        self.publish(Some(url), effects);
                        self.counters.extended += 1;
                    }
                    // The token was not spent.
                    Err(Failure::Transient(_)) => {}
                    // The token is spent or the stream gone; it expires by itself.
                    Err(_) => {
                        self.state = State::Idle;
                        self.publish(None, effects);
                    }
                }
            }
            _ => {}
        }
    }

    fn succeeded(&mut self) {
        self.counters.consecutive_failures = 0;
        self.degraded = false;
        self.backoff = backoff(&self.config);
    }

    /// A start or a stream failed: publish no URL, wait, then start again.
    fn fail(&mut self, failure: Failure, now: Instant, effects: &mut Vec<Effect>) {
        self.counters.failures += 1;
        self.counters.consecutive_failures += 1;
        self.counters.last_error = Some(failure.message().to_owned());
        if self.counters.consecutive_failures >= self.config.degraded_after {
            self.degraded = true;
        }
        self.publish(None, effects);
        let delay = match failure {
            // Only an operator helps; try rarely.
            Failure::Fatal(_) => self.config.retry_max,
            Failure::Transient(_) | Failure::Gone(_) => self
                .backoff
                .next()
                .unwrap_or(self.config.retry_max)
                .min(self.config.retry_max),
        };
        self.state = State::Backoff { until: now + delay };
    }
}

fn apply_extension(grant: &mut Grant, extension: RtspExtension) {
    grant.url = grant.url.with_stream_token(&extension.stream_token);
    grant.token = extension.extension_token;
    grant.expires = extension.expires.instant.into_std();
}

/// A live stream lost (its URL refused) is replaced at once if no other was lost within this
/// interval, one stream lifetime: at most one unpaced Generate per camera per five minutes.
pub const QUICK_REPLACE_INTERVAL: Duration = Duration::from_secs(5 * 60);

/// Capped, jittered exponential backoff: delays in `[initial, 2 × initial)`, doubling, never
/// reaching `max` (backon's jitter adds up to 100%, so its cap is half of ours).
fn backoff(config: &LeaseConfig) -> ExponentialBackoff {
    ExponentialBuilder::new()
        .with_min_delay(config.retry_initial)
        .with_max_delay((config.retry_max / 2).max(config.retry_initial))
        .with_jitter()
        .without_max_times()
        .build()
}

#[cfg(test)]
mod tests;
