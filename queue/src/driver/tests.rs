use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use super::*;
use crate::budget::{BudgetConfig, MemoryBudget};

/// What the test executor does with a command.
#[derive(Debug)]
enum Behaviour {
    /// Answer `Ok(n)` after `delay`.
    Answer { n: u32, delay: Duration },
    /// Answer 503 (not processed).
    Unavailable,
    /// Panic.
    Panic,
    /// Answer 429 once, then `Ok(n)`.
    RateLimitedOnce { n: u32, hit: AtomicBool },
}

#[derive(Debug, Default)]
struct TestExecutor {
    executed: AtomicU32,
}

#[derive(Debug, PartialEq, Eq)]
enum TestError {
    Unavailable,
    RateLimited,
}

impl Executor for Arc<TestExecutor> {
    type Payload = Behaviour;
    type Output = u32;
    type Error = TestError;

    async fn execute(&self, payload: &Behaviour) -> Result<u32, TestError> {
        self.executed.fetch_add(1, Ordering::SeqCst);
        match payload {
            Behaviour::Answer { n, delay } => {
                tokio::time::sleep(*delay).await;
                Ok(*n)
            }
            Behaviour::Unavailable => Err(TestError::Unavailable),
            Behaviour::Panic => panic!("executor bug"),
            Behaviour::RateLimitedOnce { n, hit } => {
                if hit.swap(true, Ordering::SeqCst) {
                    Ok(*n)
                } else {
                    Err(TestError::RateLimited)
                }
            }
        }
    }

    fn classify(error: &TestError) -> ErrorClass {
        match error {
            TestError::Unavailable => ErrorClass::NotAccepted,
            TestError::RateLimited => ErrorClass::RateLimited(RateLimitScope::Project),
        }
    }
}

fn start(
    config: SchedulerConfig,
) -> (
    QueueHandle<Arc<TestExecutor>>,
    Arc<TestExecutor>,
    CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    let executor = Arc::new(TestExecutor::default());
    let store = MemoryBudget::new(config.budget.clone());
    let (queue, handle) = Queue::new(config, store, Arc::clone(&executor));
    let cancel = CancellationToken::new();
    let task = tokio::spawn(queue.run(cancel.clone()));
    (handle, executor, cancel, task)
}

fn config() -> SchedulerConfig {
    SchedulerConfig {
        budget: BudgetConfig {
            guard: Duration::ZERO,
            ..BudgetConfig::default()
        },
        ..SchedulerConfig::default()
    }
}

fn request(device: &str, class: Class, payload: Behaviour) -> Request<Behaviour> {
    Request {
        device: Arc::from(device),
        command: Arc::from("GenerateRtspStream"),
        class,
        due: None,
        expires: None,
        payload,
    }
}

fn answer(n: u32) -> Behaviour {
    Behaviour::Answer {
        n,
        delay: Duration::from_millis(100),
    }
}

#[tokio::test(start_paused = true)]
async fn a_refunded_503_does_not_trip_the_backstop() {
    let (handle, _, _, _) = start(SchedulerConfig {
        max_in_flight: 20,
        ..config()
    });
    let mut calls = Vec::new();
    for i in 0..9 {
        let h = handle.clone();
        calls.push(tokio::spawn(async move {
            h.execute(request(&format!("d{i}"), Class::ViewerStart, answer(i)))
                .await
        }));
    }
    let failed = handle
        .execute(request("x", Class::ViewerStart, Behaviour::Unavailable))
        .await;
    assert!(matches!(
        failed,
        Err(QueueError::Api(TestError::Unavailable))
    ));
    let started = Instant::now();
    // The tenth slot was given back: the eleventh command goes at once.
    let eleventh = handle
        .execute(request("y", Class::ViewerStart, answer(11)))
        .await;
    assert_eq!(eleventh.ok(), Some(11));
    assert!(Instant::now() - started < Duration::from_secs(1));
    for call in calls {
        assert!(call.await.unwrap().is_ok());
    }
    let stats = handle.stats().await.unwrap();
    assert_eq!((stats.backstop_trips, stats.refunded), (0, 1));
}

#[tokio::test(start_paused = true)]
async fn a_panicking_executor_frees_its_slot_and_says_why() {
    let (handle, _, _, _) = start(SchedulerConfig {
        max_in_flight: 1,
        ..config()
    });
    let failed = handle
        .execute(request("a", Class::ViewerStart, Behaviour::Panic))
        .await;
    assert!(matches!(failed, Err(QueueError::Internal(_))), "{failed:?}");
    let next = tokio::time::timeout(
        Duration::from_secs(10),
        handle.execute(request("b", Class::ViewerStart, answer(2))),
    )
    .await
    .expect("the slot came back");
    assert_eq!(next.ok(), Some(2));
    let stats = handle.stats().await.unwrap();
    assert_eq!((stats.failed, stats.in_flight.total()), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn a_429_is_absorbed_and_retried() {
    let (handle, executor, _, _) = start(config());
    let behaviour = Behaviour::RateLimitedOnce {
        n: 7,
        hit: AtomicBool::new(false),
    };
    let result = handle
        .execute(request("a", Class::ViewerStart, behaviour))
        .await;
    assert_eq!(result.ok(), Some(7));
    assert_eq!(executor.executed.load(Ordering::SeqCst), 2);
    assert_eq!(handle.stats().await.unwrap().rate_limited, 1);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_future_cancels_an_unsent_command() {
    let (handle, executor, _, _) = start(config());
    // Fill the budget, then queue one more and give up on it.
    for i in 0..10 {
        handle
            .execute(request(&format!("d{i}"), Class::ViewerStart, answer(i)))
            .await
            .unwrap();
    }
    let waiting = handle.execute(request("late", Class::ViewerStart, answer(99)));
    assert!(
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .is_err()
    );
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(executor.executed.load(Ordering::SeqCst), 10);
    assert_eq!(handle.stats().await.unwrap().cancelled, 1);
}

#[tokio::test(start_paused = true)]
async fn admission_slots_come_back_however_the_asker_leaves() {
    let (handle, _, _, _) = start(config());
    let permit = handle.admit("a").await.unwrap();
    assert_eq!(handle.stats().await.unwrap().streams_admitted, 1);
    drop(permit);
    // An asker that gives up before reading the answer.
    let asking = tokio::spawn({
        let handle = handle.clone();
        async move { handle.admit("b").await }
    });
    asking.abort();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(handle.stats().await.unwrap().streams_admitted, 0);
}

#[tokio::test(start_paused = true)]
async fn shutdown_drains_running_commands_and_stops_only() {
    let (handle, executor, cancel, task) = start(config());
    let running = tokio::spawn({
        let handle = handle.clone();
        async move {
            handle
                .execute(request(
                    "a",
                    Class::ViewerStart,
                    Behaviour::Answer {
                        n: 1,
                        delay: Duration::from_secs(2),
                    },
                ))
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    // A start that cannot go yet (its device's budget is spent) and a stop.
    let blocked_start = tokio::spawn({
        let handle = handle.clone();
        async move {
            handle
                .execute(Request {
                    due: Some(Instant::now().into_std() + Duration::from_secs(3600)),
                    ..request("b", Class::Extend, answer(2))
                })
                .await
        }
    });
    let stop = tokio::spawn({
        let handle = handle.clone();
        async move {
            handle
                .execute(Request {
                    command: Arc::from("StopRtspStream"),
                    ..request("c", Class::Stop, answer(3))
                })
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    cancel.cancel();
    assert_eq!(running.await.unwrap().ok(), Some(1), "in flight finishes");
    assert_eq!(stop.await.unwrap().ok(), Some(3), "stops still go");
    assert!(matches!(
        blocked_start.await.unwrap(),
        Err(QueueError::Closed)
    ));
    tokio::time::timeout(DRAIN_TIMEOUT + Duration::from_secs(1), task)
        .await
        .expect("the queue task ends within the drain timeout")
        .unwrap();
    assert_eq!(executor.executed.load(Ordering::SeqCst), 2);
    assert!(matches!(
        handle
            .execute(request("d", Class::ViewerStart, answer(4)))
            .await,
        Err(QueueError::Closed)
    ));
}

#[tokio::test(start_paused = true)]
async fn learned_timing_is_published() {
    let (handle, _, _, _) = start(config());
    assert_eq!(handle.timing(), Timing::default());
    handle
        .execute(request("a", Class::ViewerStart, answer(1)))
        .await
        .unwrap();
    assert_eq!(
        handle.timing().latency_p99,
        Some(Duration::from_millis(100))
    );
}

#[tokio::test(start_paused = true)]
async fn the_submitter_is_told_when_its_command_leaves_the_queue() {
    let (handle, _, _, _) = start(config());
    // An extension due in 100 s waits in the queue; its submitter hears nothing until then.
    let (on_send, mut sent) = oneshot::channel();
    let due = Instant::now().into_std() + Duration::from_secs(100);
    let waiting = tokio::spawn({
        let handle = handle.clone();
        async move {
            handle
                .execute_notified(
                    Request {
                        due: Some(due),
                        ..request("a", Class::Extend, answer(1))
                    },
                    Some(on_send),
                )
                .await
        }
    });
    tokio::time::sleep(Duration::from_secs(99)).await;
    assert!(sent.try_recv().is_err(), "not sent before it is due");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(sent.try_recv().is_ok(), "sent when due");
    assert_eq!(waiting.await.unwrap().ok(), Some(1));
}
