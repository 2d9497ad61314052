use std::time::SystemTime;

use camrelay_api_clients::nest::Expiry;
use secrecy::SecretString;
use url::Url;

use super::*;

const LIFETIME: Duration = Duration::from_secs(300);

fn config() -> LeaseConfig {
    LeaseConfig {
        min_margin: Duration::from_secs(3),
        retry_initial: Duration::from_secs(2),
        retry_max: Duration::from_secs(60),
        degraded_after: 3,
        idle_grace: Duration::from_secs(30),
    }
}

fn expiry(at: Instant) -> Expiry {
    Expiry {
        at: SystemTime::UNIX_EPOCH,
        instant: tokio::time::Instant::from_std(at),
    }
}

fn stream(now: Instant) -> RtspStream {
    RtspStream {
        url: StreamUrl::new(Url::parse("rtsps://cam.example:443/TOKEN0?auth=g.0.a").unwrap()),
        extension_token: ExtensionToken::new("ext-0"),
        expires: expiry(now + LIFETIME),
    }
}

fn extension(now: Instant, n: u32) -> RtspExtension {
    RtspExtension {
        stream_token: SecretString::from(format!("g.{n}.b")),
        extension_token: ExtensionToken::new(format!("ext-{n}")),
        expires: expiry(now + LIFETIME),
    }
}

fn wanted(interactive: bool) -> Input {
    Input::Demand(Demand {
        holders: 1,
        interactive,
    })
}

fn unwanted() -> Input {
    Input::Demand(Demand::default())
}

/// A lease that is live since `t0`, with its first extension submitted.
fn live(t0: Instant) -> Lease {
    let mut lease = Lease::new(config());
    lease.handle(wanted(false), t0);
    lease.handle(Input::Admission(Ok(())), t0);
    lease.handle(Input::Generated(Ok(stream(t0))), t0);
    assert_eq!(lease.phase(), Phase::Live);
    lease
}

fn submitted(effects: &[Effect]) -> Option<&Command> {
    effects.iter().find_map(|e| match e {
        Effect::Submit(c) => Some(c),
        _ => None,
    })
}

fn published(effects: &[Effect]) -> Option<Option<String>> {
    effects.iter().find_map(|e| match e {
        Effect::Publish(url) => Some(url.as_ref().map(|u| u.expose().to_string())),
        _ => None,
    })
}

#[test]
fn demand_admits_then_generates_with_the_right_class() {
    let t0 = Instant::now();
    let mut lease = Lease::new(config());
    let effects = lease.handle(wanted(true), t0);
    assert!(matches!(effects.as_slice(), [Effect::Admit]));
    assert_eq!(lease.phase(), Phase::Admitting);
    let effects = lease.handle(Input::Admission(Ok(())), t0);
    assert!(matches!(
        submitted(&effects),
        Some(Command::Generate {
            class: Class::ViewerStart
        })
    ));

    let mut background = Lease::new(config());
    background.handle(wanted(false), t0);
    let effects = background.handle(Input::Admission(Ok(())), t0);
    assert!(matches!(
        submitted(&effects),
        Some(Command::Generate {
            class: Class::BackgroundStart
        })
    ));
}

#[test]
fn a_new_stream_is_published_and_its_extension_is_due_just_in_time() {
    let t0 = Instant::now();
    let mut lease = Lease::new(config());
    lease.handle(wanted(false), t0);
    lease.handle(Input::Admission(Ok(())), t0);
    let effects = lease.handle(Input::Generated(Ok(stream(t0))), t0);
    assert_eq!(
        published(&effects),
        Some(Some("rtsps://cam.example:443/TOKEN0?auth=g.0.a".into()))
    );
    // Margin: 3 s floor + 3 × 1 s assumed latency.
    match submitted(&effects) {
        Some(Command::Extend {
            token,
            due,
            expires,
        }) => {
            assert_eq!(token.expose(), "ext-0");
            assert_eq!(*due, t0 + LIFETIME - Duration::from_secs(6));
            assert_eq!(*expires, t0 + LIFETIME - Duration::from_secs(1));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(lease.expires(), Some(t0 + LIFETIME));
}

#[test]
fn the_margin_is_learned_from_the_queue() {
    let mut lease = Lease::new(config());
    lease.set_timing(
        Some(Duration::from_millis(200)),
        Some(Duration::from_millis(500)),
    );
    assert_eq!(lease.margin(), Duration::from_millis(3000 + 600 + 500));
}

#[test]
fn an_extension_carries_the_new_token_into_the_url() {
    let t0 = Instant::now();
    let mut lease = live(t0);
    let t1 = t0 + Duration::from_secs(294);
    let effects = lease.handle(Input::Extended(Ok(extension(t1, 1))), t1);
    assert_eq!(
        published(&effects),
        Some(Some("rtsps://cam.example:443/TOKEN0?auth=g.1.b".into()))
    );
    match submitted(&effects) {
        Some(Command::Extend { token, due, .. }) => {
            assert_eq!(token.expose(), "ext-1");
            assert_eq!(*due, t1 + LIFETIME - Duration::from_secs(6));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(lease.counters().extended, 1);
}

#[test]
fn a_transient_extension_failure_is_retried_with_the_same_token_but_never_in_a_spin() {
    let t0 = Instant::now();
    let mut lease = live(t0);
    let t1 = t0 + Duration::from_secs(294);
    lease.handle(Input::Sent, t1);
    // A 503 after half a second: retried at once.
    let t2 = t1 + Duration::from_millis(500);
    let effects = lease.handle(Input::Extended(Err(Failure::Transient("503".into()))), t2);
    match submitted(&effects) {
        Some(Command::Extend { token, due, .. }) => {
            assert_eq!(token.expose(), "ext-0");
            assert_eq!(*due, t2);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(published(&effects), None, "the URL stays valid");
    assert_eq!(lease.counters().consecutive_failures, 1);
    // A refused connection a millisecond after sending: the next attempt waits until 250 ms
    // after this one started.
    lease.handle(Input::Sent, t2);
    let t3 = t2 + Duration::from_millis(1);
    let effects = lease.handle(
        Input::Extended(Err(Failure::Transient("refused".into()))),
        t3,
    );
    assert!(submitted(&effects).is_none(), "no retry in a tight loop");
    assert_eq!(lease.next_wakeup(), Some(t2 + EXTEND_RETRY_MIN_DELAY));
    let effects = lease.handle(Input::Tick, t2 + EXTEND_RETRY_MIN_DELAY);
    assert!(matches!(submitted(&effects), Some(Command::Extend { .. })));
}

#[test]
fn transient_failures_are_retried_until_no_time_is_left() {
    let t0 = Instant::now();
    let mut lease = live(t0);
    let mut now = t0 + Duration::from_secs(294);
    let mut attempts = 0;
    loop {
        lease.handle(Input::Sent, now);
        lease.handle(
            Input::Extended(Err(Failure::Transient("refused".into()))),
            now,
        );
        attempts += 1;
        if lease.phase() != Phase::Live {
            break;
        }
        now = lease.next_wakeup().unwrap();
        lease.handle(Input::Tick, now);
        assert!(attempts < 100, "retries never stop");
    }
    // 6 s before expiry, one attempt every 250 ms, the last a latency (1 s) before expiry.
    assert!((18..=21).contains(&attempts), "{attempts} attempts");
    assert_eq!(lease.phase(), Phase::Backoff);
    assert_eq!(lease.counters().lost, 1);
}

#[test]
fn a_stale_token_means_a_new_stream_after_backoff() {
    let t0 = Instant::now();
    let mut lease = live(t0);
    let t1 = t0 + Duration::from_secs(294);
    let effects = lease.handle(
        Input::Extended(Err(Failure::Gone("stale token".into()))),
        t1,
    );
    assert_eq!(published(&effects), Some(None));
    assert_eq!(lease.phase(), Phase::Backoff);
    let until = lease.next_wakeup().unwrap();
    let delay = until - t1;
    assert!(
        delay >= Duration::from_secs(2) && delay < Duration::from_secs(4),
        "{delay:?}"
    );
    assert!(
        lease
            .handle(Input::Tick, until - Duration::from_millis(1))
            .is_empty()
    );
    let effects = lease.handle(Input::Tick, until);
    assert!(matches!(
        submitted(&effects),
        Some(Command::Generate { .. })
    ));
    assert_eq!(lease.counters().lost, 1);
    assert_eq!(lease.counters().last_error.as_deref(), Some("stale token"));
}

#[test]
fn backoff_grows_stays_capped_and_marks_degraded() {
    let t0 = Instant::now();
    let mut lease = Lease::new(config());
    lease.handle(wanted(false), t0);
    lease.handle(Input::Admission(Ok(())), t0);
    let mut now = t0;
    let mut delays = Vec::new();
    for i in 0..12 {
        lease.handle(
            Input::Generated(Err(Failure::Transient(format!("fail {i}")))),
            now,
        );
        let until = lease.next_wakeup().unwrap();
        delays.push(until - now);
        now = until;
        lease.handle(Input::Tick, now);
        assert_eq!(lease.phase(), Phase::Starting);
        if i + 1 >= 3 {
            assert!(lease.degraded());
        }
    }
    assert!(
        delays.iter().all(|d| *d < Duration::from_secs(60)),
        "{delays:?}"
    );
    assert!(delays[11] >= Duration::from_secs(30), "{delays:?}");
    assert!(delays[0] < Duration::from_secs(4), "{delays:?}");
    lease.handle(Input::Generated(Ok(stream(now))), now);
    assert!(!lease.degraded());
    assert_eq!(lease.counters().consecutive_failures, 0);
}

#[test]
fn a_fatal_failure_retries_only_at_the_longest_backoff() {
    let t0 = Instant::now();
    let mut lease = Lease::new(config());
    lease.handle(wanted(false), t0);
    lease.handle(Input::Admission(Ok(())), t0);
    lease.handle(Input::Generated(Err(Failure::Fatal("revoked".into()))), t0);
    assert_eq!(lease.next_wakeup(), Some(t0 + Duration::from_secs(60)));
}

#[test]
fn after_the_grace_a_stream_goes_dormant_and_is_revived_without_a_new_generate() {
    let t0 = Instant::now();
    let mut lease = live(t0);
    let t1 = t0 + Duration::from_secs(10);
    let effects = lease.handle(unwanted(), t1);
    assert!(effects.is_empty(), "still within the grace: {effects:?}");
    assert_eq!(lease.next_wakeup(), Some(t1 + Duration::from_secs(30)));
    let t2 = t1 + Duration::from_secs(30);
    // The extension only waits in the queue: take it back, give the slot back, queue a stop.
    let effects = lease.handle(Input::Tick, t2);
    assert!(
        matches!(effects.first(), Some(Effect::Release)),
        "{effects:?}"
    );
    assert!(effects.iter().any(|e| matches!(e, Effect::Cancel)));
    assert!(matches!(submitted(&effects), Some(Command::Stop { .. })));
    assert_eq!(lease.phase(), Phase::Dormant);

    // Demand returns before the stop was sent: take it back and keep the stream.
    let t3 = t2 + Duration::from_secs(5);
    let effects = lease.handle(wanted(true), t3);
    assert!(
        matches!(effects.as_slice(), [Effect::Cancel, Effect::Admit]),
        "{effects:?}"
    );
    let effects = lease.handle(Input::Admission(Ok(())), t3);
    match submitted(&effects) {
        Some(Command::Extend { token, .. }) => assert_eq!(token.expose(), "ext-0"),
        other => panic!("{other:?}"),
    }
    assert_eq!(lease.phase(), Phase::Live);
    assert_eq!(lease.counters().generated, 1);
}

#[test]
fn a_sent_extension_is_awaited_before_stopping_or_reviving() {
    let t0 = Instant::now();
    let mut lease = live(t0);
    let t1 = t0 + Duration::from_secs(250);
    lease.handle(Input::Sent, t1);
    lease.handle(unwanted(), t1);
    // The grace ends while the extension is at Google: its answer holds the token.
    let t2 = t1 + Duration::from_secs(30);
    let effects = lease.handle(Input::Tick, t2);
    assert!(
        matches!(effects.as_slice(), [Effect::Release]),
        "{effects:?}"
    );
    assert_eq!(lease.phase(), Phase::Dormant);
    // Demand returns meanwhile: still wait.
    assert!(lease.handle(wanted(false), t2).is_empty());
    let effects = lease.handle(Input::Extended(Ok(extension(t2, 1))), t2);
    assert!(matches!(effects.last(), Some(Effect::Admit)), "{effects:?}");
    let effects = lease.handle(Input::Admission(Ok(())), t2);
    match submitted(&effects) {
        Some(Command::Extend { token, .. }) => assert_eq!(token.expose(), "ext-1"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_dormant_stream_is_stopped_with_the_newest_token() {
    let t0 = Instant::now();
    let mut lease = live(t0);
    lease.handle(Input::Sent, t0);
    lease.handle(unwanted(), t0);
    lease.handle(Input::Tick, t0 + Duration::from_secs(30));
    let t1 = t0 + Duration::from_secs(31);
    let effects = lease.handle(Input::Extended(Ok(extension(t1, 1))), t1);
    match submitted(&effects) {
        Some(Command::Stop { token, .. }) => assert_eq!(token.expose(), "ext-1"),
        other => panic!("{other:?}"),
    }
    // Demand returns after the stop was sent: it may have acted, so start afresh.
    lease.handle(Input::Sent, t1);
    let effects = lease.handle(wanted(false), t1);
    assert!(
        matches!(effects.first(), Some(Effect::Cancel)),
        "{effects:?}"
    );
    assert_eq!(published(&effects), Some(None));
    assert!(matches!(effects.last(), Some(Effect::Admit)));
    let effects = lease.handle(Input::Admission(Ok(())), t1);
    assert!(matches!(
        submitted(&effects),
        Some(Command::Generate { .. })
    ));
}

#[test]
fn a_dormant_stream_ends_when_stopped_or_expired() {
    let t0 = Instant::now();
    let mut lease = live(t0);
    lease.handle(unwanted(), t0);
    lease.handle(Input::Tick, t0 + Duration::from_secs(30));
    lease.handle(
        Input::Extended(Ok(extension(t0, 1))),
        t0 + Duration::from_secs(31),
    );
    let effects = lease.handle(Input::Stopped, t0 + Duration::from_secs(32));
    assert_eq!(published(&effects), Some(None));
    assert_eq!(lease.phase(), Phase::Idle);

    let mut lease = live(t0);
    lease.handle(unwanted(), t0);
    lease.handle(Input::Tick, t0 + Duration::from_secs(30));
    let effects = lease.handle(Input::Tick, t0 + LIFETIME);
    assert_eq!(published(&effects), Some(None));
    assert_eq!(lease.phase(), Phase::Idle);
    assert_eq!(
        lease.counters().lost,
        0,
        "an unwanted stream that expires is not lost"
    );
}

#[test]
fn refusal_waits_and_gives_up_when_nobody_wants_it() {
    let t0 = Instant::now();
    let mut lease = Lease::new(config());
    lease.handle(wanted(true), t0);
    let retry_after = Duration::from_secs(30);
    lease.handle(Input::Admission(Err(Refused { retry_after })), t0);
    assert_eq!(lease.phase(), Phase::AtCapacity);
    assert_eq!(lease.retry_at(), Some(t0 + retry_after));
    let effects = lease.handle(Input::Tick, t0 + retry_after);
    assert!(matches!(effects.as_slice(), [Effect::Admit]));
    lease.handle(
        Input::Admission(Err(Refused { retry_after })),
        t0 + retry_after,
    );
    lease.handle(unwanted(), t0 + retry_after);
    lease.handle(Input::Tick, t0 + retry_after + Duration::from_secs(30));
    assert_eq!(lease.phase(), Phase::Idle);
    assert_eq!(lease.counters().refusals, 2);
}

#[test]
fn a_stream_that_expires_unextended_is_lost_and_replaced() {
    let t0 = Instant::now();
    let mut lease = live(t0);
    let effects = lease.handle(Input::Tick, t0 + LIFETIME);
    assert_eq!(published(&effects), Some(None));
    assert_eq!(lease.phase(), Phase::Backoff);
    assert_eq!(lease.counters().lost, 1);
}

#[test]
fn a_refused_url_is_replaced_but_not_an_outdated_refusal() {
    let t0 = Instant::now();
    let mut lease = live(t0);
    let first = lease.generation();
    let t1 = t0 + Duration::from_secs(294);
    lease.handle(Input::Extended(Ok(extension(t1, 1))), t1);
    // A client refused with the token from before the extension: says nothing of the new one.
    let effects = lease.handle(Input::Rejected { generation: first }, t1);
    assert!(effects.is_empty(), "{effects:?}");
    assert_eq!(lease.phase(), Phase::Live);
    let current = lease.generation();
    let effects = lease.handle(
        Input::Rejected {
            generation: current,
        },
        t1,
    );
    assert_eq!(published(&effects), Some(None));
    // The first loss is replaced at once…
    assert!(
        matches!(submitted(&effects), Some(Command::Generate { .. })),
        "{effects:?}"
    );
    assert_eq!(lease.counters().lost, 1);
    // …a second within QUICK_REPLACE_INTERVAL backs off.
    let t2 = t1 + Duration::from_secs(10);
    lease.handle(Input::Generated(Ok(stream(t2))), t2);
    assert_eq!(lease.phase(), Phase::Live);
    let generation = lease.generation();
    let effects = lease.handle(Input::Rejected { generation }, t2);
    assert_eq!(published(&effects), Some(None));
    assert!(submitted(&effects).is_none(), "{effects:?}");
    assert_eq!(lease.phase(), Phase::Backoff);
    // Once the interval has passed, a loss is replaced at once again.
    let t3 = t2 + QUICK_REPLACE_INTERVAL;
    lease.handle(Input::Tick, t3);
    lease.handle(Input::Generated(Ok(stream(t3))), t3);
    assert_eq!(lease.phase(), Phase::Live);
    let generation = lease.generation();
    let effects = lease.handle(Input::Rejected { generation }, t3);
    assert!(
        matches!(submitted(&effects), Some(Command::Generate { .. })),
        "{effects:?}"
    );
}

#[test]
fn demand_ending_while_starting_cancels_and_releases() {
    let t0 = Instant::now();
    let mut lease = Lease::new(config());
    lease.handle(wanted(true), t0);
    lease.handle(Input::Admission(Ok(())), t0);
    lease.handle(unwanted(), t0);
    let effects = lease.handle(Input::Tick, t0 + Duration::from_secs(30));
    assert!(matches!(
        effects.as_slice(),
        [Effect::Cancel, Effect::Release]
    ));
    assert_eq!(lease.phase(), Phase::Idle);
    // A late answer is ignored.
    assert!(
        lease
            .handle(
                Input::Generated(Ok(stream(t0))),
                t0 + Duration::from_secs(31)
            )
            .is_empty()
    );
}

/// Whatever happens, a lease never asks to be woken in the past: its driver would spin (and
/// under paused time, never let the clock move).
#[test]
fn the_next_wakeup_is_always_in_the_future() {
    let t0 = Instant::now();
    let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut random = move |below: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % below
    };
    for _ in 0..200 {
        let mut lease = Lease::new(config());
        let mut now = t0;
        for step in 0..200 {
            now += Duration::from_millis(random(120_000));
            let input = match random(10) {
                0 => wanted(random(2) == 0),
                1 => unwanted(),
                2 => Input::Admission(Ok(())),
                3 => Input::Admission(Err(Refused {
                    retry_after: Duration::from_secs(random(60) + 1),
                })),
                4 => Input::Generated(Ok(stream(now))),
                5 => Input::Generated(Err(Failure::Gone("x".into()))),
                6 => Input::Extended(Ok(extension(now, step))),
                7 => Input::Extended(Err(Failure::Transient("y".into()))),
                8 => Input::Stopped,
                _ => Input::Tick,
            };
            lease.handle(input, now);
            if let Some(wake) = lease.next_wakeup() {
                assert!(wake > now, "wake-up in the past in {:?}", lease.phase());
            }
        }
    }
}

/// A model of the driver (one request in flight, a permit) fed every kind of input at random
/// times and random expiries; checks permit accounting, that every waiting phase has something
/// in flight or a wake-up, and that no wake-up is in the past. (Contributed by a review.)
#[test]
fn model_based_driver_fuzz() {
    #[derive(Debug, Clone)]
    enum Pend {
        Admit,
        Gen,
        Ext,
        Stop,
    }
    let t0 = Instant::now();
    let mut seed: u64 = 0x1234_5678_9abc_def1;
    let mut random = move |below: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % below
    };
    let mut problems: Vec<String> = Vec::new();
    for run in 0..1000 {
        let mut lease = Lease::new(config());
        let mut now = t0;
        let mut pending: Option<Pend> = None;
        let mut permit = false;
        let mut n = 0u32;
        for step in 0..300 {
            if random(4) == 0 {
                lease.set_timing(
                    Some(Duration::from_millis(random(20_000))),
                    Some(Duration::from_millis(random(5_000))),
                );
            }
            now += Duration::from_millis(match random(3) {
                0 => random(50),
                1 => random(5_000),
                _ => random(120_000),
            });
            let input = match random(9) {
                8 => Input::Sent,
                0 => wanted(random(2) == 0),
                1 => unwanted(),
                2 => Input::Rejected {
                    generation: lease.generation() - random(2).min(lease.generation()),
                },
                3 => Input::Tick,
                _ => match pending.take() {
                    None => Input::Tick,
                    Some(Pend::Admit) => {
                        if random(3) == 0 {
                            Input::Admission(Err(Refused {
                                retry_after: Duration::from_secs(random(60) + 1),
                            }))
                        } else {
                            permit = true;
                            Input::Admission(Ok(()))
                        }
                    }
                    Some(Pend::Gen) => match random(4) {
                        0 => Input::Generated(Err(Failure::Transient("t".into()))),
                        1 => Input::Generated(Err(Failure::Fatal("f".into()))),
                        _ => {
                            let mut s = stream(now);
                            s.expires = expiry(now + Duration::from_millis(random(400_000) + 1));
                            Input::Generated(Ok(s))
                        }
                    },
                    Some(Pend::Ext) => match random(4) {
                        0 => Input::Extended(Err(Failure::Transient("t".into()))),
                        1 => Input::Extended(Err(Failure::Gone("g".into()))),
                        _ => {
                            n += 1;
                            let mut e = extension(now, n);
                            e.expires = expiry(now + Duration::from_millis(random(400_000) + 1));
                            Input::Extended(Ok(e))
                        }
                    },
                    Some(Pend::Stop) => Input::Stopped,
                },
            };
            let label = format!("{input:?}");
            let before = lease.phase();
            let effects = lease.handle(input, now);
            for e in &effects {
                match e {
                    Effect::Admit => {
                        if permit {
                            problems.push(format!("run {run} step {step}: Admit while holding a permit ({before:?} -{label}->)"));
                        }
                        pending = Some(Pend::Admit);
                    }
                    Effect::Release => permit = false,
                    Effect::Cancel => pending = None,
                    Effect::Publish(_) => {}
                    Effect::Submit(Command::Generate { .. }) => pending = Some(Pend::Gen),
                    Effect::Submit(Command::Extend { due, .. }) => {
                        if *due < now {
                            problems.push(format!("run {run} step {step}: extend due in the past"));
                        }
                        pending = Some(Pend::Ext);
                    }
                    Effect::Submit(Command::Stop { .. }) => pending = Some(Pend::Stop),
                }
            }
            let phase = lease.phase();
            let should_hold = matches!(phase, Phase::Live | Phase::Starting | Phase::Backoff);
            if should_hold != permit {
                problems.push(format!("run {run} step {step}: permit={permit} in {phase:?} after {before:?} -{label}-> {effects:?}"));
                permit = should_hold;
            }
            let wake = lease.next_wakeup();
            if wake.is_some_and(|w| w <= now) {
                problems.push(format!(
                    "run {run} step {step}: wake-up in the past in {phase:?} after {label}"
                ));
            }
            if matches!(phase, Phase::Admitting | Phase::Starting) && pending.is_none() {
                problems.push(format!("run {run} step {step}: {phase:?} with nothing in flight after {before:?} -{label}-> {effects:?}"));
            }
            // Live waits on its extension, or on a retry wake-up before the stream expires.
            if phase == Phase::Live && pending.is_none() && wake.is_none() {
                problems.push(format!("run {run} step {step}: Live with nothing to wait for after {before:?} -{label}-> {effects:?}"));
            }
        }
    }
    problems.sort();
    problems.dedup_by(|a, b| a.split(": ").nth(1) == b.split(": ").nth(1));
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
