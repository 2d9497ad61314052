//! The per-camera fan-out: one publisher (the camera's ingest), any number of subscribers (RTSP
//! clients, the SFU publisher), none of which can slow the publisher down.
//!
//! Items go through one shared ring (`tokio::sync::broadcast`), so memory does not grow with
//! the number of subscribers and an item is shared, not copied. A subscriber that falls more
//! than the ring behind loses what was overwritten: it counts the drop and skips to the next
//! keyframe, where a decoder can resume cleanly. The bus also keeps the current group of
//! pictures (from the last keyframe), so that a new subscriber starts on a keyframe at once
//! instead of waiting for the next one.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::broadcast::{self, error::RecvError};

use crate::rtp::Packet;

/// Items in the shared ring: about 1.5 seconds of a 4 Mbps camera in 1.4 kB packets, on top of
/// what the client's TCP socket buffers. A subscriber further behind than this skips to the next
/// keyframe. MediaMTX's default write queue is 512 packets too; 1024 cost 0.7 MB more per
/// camera (docs/BENCHMARKS.md) without a client that needed it.
pub const RING_CAPACITY: usize = 512;

/// Bytes kept for the current group of pictures. A longer GOP is not cached past this (a new
/// subscriber then waits for the next keyframe); 2 MiB holds four seconds of 4 Mbps.
pub const MAX_GOP_BYTES: usize = 2 * 1024 * 1024;

/// What the bus needs to know about an item.
pub trait Unit: Clone + Send + Sync + 'static {
    /// Whether a decoder can start at this item.
    fn starts_gop(&self) -> bool;
    /// Its size, for the GOP cache's budget.
    fn byte_len(&self) -> usize;
}

impl Unit for Packet {
    fn starts_gop(&self) -> bool {
        self.keyframe
    }

    fn byte_len(&self) -> usize {
        self.data().len()
    }
}

#[derive(Debug)]
struct Gop<T> {
    items: Vec<T>,
    bytes: usize,
    /// The GOP outgrew [`MAX_GOP_BYTES`]: nothing is cached until the next keyframe.
    overflowed: bool,
}

#[derive(Debug)]
struct Inner<T> {
    gop: Mutex<Gop<T>>,
    tx: broadcast::Sender<T>,
    max_gop_bytes: usize,
    /// Items all subscribers together lost by falling behind, since the bus was made.
    dropped: Arc<AtomicU64>,
}

/// A camera's bus. Cheap to clone.
#[derive(Debug)]
pub struct Bus<T: Unit> {
    inner: Arc<Inner<T>>,
}

impl<T: Unit> Clone for Bus<T> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T: Unit> Default for Bus<T> {
    fn default() -> Self {
        Self::new(RING_CAPACITY, MAX_GOP_BYTES)
    }
}

impl<T: Unit> Bus<T> {
    /// A bus with a ring of `capacity` items and a GOP cache of `max_gop_bytes`.
    pub fn new(capacity: usize, max_gop_bytes: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        Self {
            inner: Arc::new(Inner {
                gop: Mutex::new(Gop {
                    items: Vec::new(),
                    bytes: 0,
                    overflowed: true,
                }),
                tx,
                max_gop_bytes,
                dropped: Arc::new(AtomicU64::new(0)),
            }),
        }
    }

    /// Sends `item` to every subscriber. Never waits.
    pub fn publish(&self, item: T) {
        let mut gop = self
            .inner
            .gop
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if item.starts_gop() {
            gop.items.clear();
            gop.bytes = 0;
            gop.overflowed = false;
        }
        if !gop.overflowed {
            if gop.bytes + item.byte_len() > self.inner.max_gop_bytes {
                gop.items.clear();
                gop.bytes = 0;
                gop.overflowed = true;
            } else {
                gop.bytes += item.byte_len();
                gop.items.push(item.clone());
            }
        }
        // Sent under the lock, so that a subscriber's backlog and its ring never overlap or
        // leave a gap. An error only means nobody listens.
        let _ = self.inner.tx.send(item);
    }

    /// Forgets the cached GOP (after a discontinuity, e.g. new parameter sets): new subscribers
    /// then wait for the next keyframe.
    pub fn reset(&self) {
        let mut gop = self
            .inner
            .gop
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        gop.items.clear();
        gop.bytes = 0;
        gop.overflowed = true;
    }

    /// A new subscriber, starting with the cached GOP.
    pub fn subscribe(&self) -> Subscriber<T> {
        let gop = self
            .inner
            .gop
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let rx = self.inner.tx.subscribe();
        Subscriber {
            backlog: gop.items.iter().cloned().collect(),
            rx,
            // Without a cached GOP, start at the next keyframe.
            skipping: gop.items.is_empty(),
            dropped: 0,
            bus_dropped: Arc::clone(&self.inner.dropped),
        }
    }

    /// Subscribers now.
    pub fn subscribers(&self) -> usize {
        self.inner.tx.receiver_count()
    }

    /// Items its subscribers lost by falling behind, all of them together, since the bus was
    /// made (counted as they are lost, not when a subscriber ends).
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }
}

/// One subscriber's view of a bus.
#[derive(Debug)]
pub struct Subscriber<T: Unit> {
    backlog: VecDeque<T>,
    rx: broadcast::Receiver<T>,
    skipping: bool,
    dropped: u64,
    /// The bus's running total, shared by all its subscribers.
    bus_dropped: Arc<AtomicU64>,
}

impl<T: Unit> Subscriber<T> {
    /// The next item, or `None` when the bus is gone. After falling behind it resumes at the
    /// next keyframe.
    pub async fn recv(&mut self) -> Option<T> {
        if let Some(item) = self.backlog.pop_front() {
            return Some(item);
        }
        loop {
            match self.rx.recv().await {
                Ok(item) => {
                    if self.skipping && !item.starts_gop() {
                        continue;
                    }
                    self.skipping = false;
                    return Some(item);
                }
                Err(RecvError::Lagged(missed)) => self.lagged(missed),
                Err(RecvError::Closed) => return None,
            }
        }
    }

    /// The next item if one is ready now, without waiting.
    pub fn try_recv(&mut self) -> Option<T> {
        if let Some(item) = self.backlog.pop_front() {
            return Some(item);
        }
        loop {
            match self.rx.try_recv() {
                Ok(item) => {
                    if self.skipping && !item.starts_gop() {
                        continue;
                    }
                    self.skipping = false;
                    return Some(item);
                }
                Err(broadcast::error::TryRecvError::Lagged(missed)) => self.lagged(missed),
                Err(_) => return None,
            }
        }
    }

    /// It fell `missed` items behind: count them and resume at the next keyframe.
    fn lagged(&mut self, missed: u64) {
        self.dropped += missed;
        self.bus_dropped.fetch_add(missed, Ordering::Relaxed);
        self.skipping = true;
    }

    /// The cached items this subscriber will receive first.
    pub fn backlog(&self) -> impl Iterator<Item = &T> {
        self.backlog.iter()
    }

    /// Items this subscriber lost by falling behind.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq)]
    struct Item(u32, bool);

    impl Unit for Item {
        fn starts_gop(&self) -> bool {
            self.1
        }
        fn byte_len(&self) -> usize {
            100
        }
    }

    #[tokio::test]
    async fn a_new_subscriber_starts_with_the_current_gop() {
        let bus = Bus::new(16, 10_000);
        let early = bus.subscribe();
        drop(early);
        bus.publish(Item(1, false));
        bus.publish(Item(2, true));
        bus.publish(Item(3, false));
        let mut late = bus.subscribe();
        bus.publish(Item(4, false));
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(late.recv().await.unwrap().0);
        }
        assert_eq!(got, vec![2, 3, 4]);
    }

    #[tokio::test]
    async fn without_a_gop_a_subscriber_waits_for_a_keyframe() {
        let bus = Bus::new(16, 10_000);
        let mut sub = bus.subscribe();
        bus.publish(Item(1, false));
        bus.publish(Item(2, true));
        assert_eq!(sub.recv().await, Some(Item(2, true)));
    }

    #[tokio::test]
    async fn a_lagging_subscriber_skips_to_the_next_keyframe_and_counts() {
        let bus = Bus::new(4, 10_000);
        bus.publish(Item(0, true));
        let mut slow = bus.subscribe();
        for i in 1..10 {
            bus.publish(Item(i, false));
        }
        bus.publish(Item(10, true));
        bus.publish(Item(11, false));
        assert_eq!(slow.recv().await, Some(Item(0, true)), "the backlog first");
        assert_eq!(slow.recv().await, Some(Item(10, true)));
        assert_eq!(slow.recv().await, Some(Item(11, false)));
        assert!(slow.dropped() > 0);
        // The bus counts the loss at once, while the subscriber still plays.
        assert_eq!(bus.dropped(), slow.dropped());
        let mut fast = bus.subscribe();
        bus.publish(Item(12, false));
        assert_eq!(fast.try_recv(), Some(Item(10, true)));
        assert_eq!(
            bus.dropped(),
            slow.dropped(),
            "a keeping-up subscriber adds nothing"
        );
    }

    #[tokio::test]
    async fn an_oversized_gop_is_not_cached() {
        let bus = Bus::new(64, 250);
        bus.publish(Item(1, true));
        bus.publish(Item(2, false));
        bus.publish(Item(3, false));
        let mut sub = bus.subscribe();
        bus.publish(Item(4, true));
        assert_eq!(sub.recv().await, Some(Item(4, true)));
        assert_eq!(bus.subscribers(), 1);
        drop(sub);
        assert_eq!(bus.subscribers(), 0);
    }

    #[tokio::test]
    async fn a_closed_bus_ends_its_subscribers() {
        let bus: Bus<Item> = Bus::new(4, 1000);
        let mut sub = bus.subscribe();
        drop(bus);
        assert_eq!(sub.recv().await, None);
    }
}
