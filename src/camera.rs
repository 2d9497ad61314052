//! The cameras the relay knows: static RTSP cameras from the configuration and Nest cameras
//! found by discovery, each with a stable, readable id, a demand counter and its lease status.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use camrelay_api_clients::nest::StreamUrl;
use secrecy::SecretString;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::lease::task::LeaseStatus;
use crate::lease::{Demand, Phase};
use crate::media::Hub;

/// Longest readable id made from a device name.
pub const MAX_SLUG_LEN: usize = 48;

/// Where a camera's stream comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A static RTSP camera; its URL never changes (credentials are kept apart).
    Static {
        /// The camera's URL, without credentials.
        url: StreamUrl,
        /// User name and password, if the camera wants them.
        credentials: Option<Credentials>,
        /// Verify an `rtsps://` camera's certificate.
        tls_verify: bool,
    },
    /// A Nest camera; its URL comes from its lease.
    Nest {
        /// The SDM device id.
        device: String,
        /// The lease's status.
        lease: watch::Receiver<LeaseStatus>,
        /// Where the ingest reports a refused URL, by its generation.
        rejected: mpsc::Sender<u64>,
    },
}

/// A camera's user name and password. `Debug` shows the name only.
#[derive(Clone)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password.
    pub password: SecretString,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// One camera.
#[derive(Debug)]
pub struct Camera {
    /// The id in `rtsp://host:8554/{id}` and in the API.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Where the stream comes from.
    pub source: Source,
    /// Its media: the bus every client subscribes to, and what went through it.
    pub media: Hub,
    /// Its WebRTC publication.
    pub publish: crate::sfu::publisher::PublishStatus,
    demand: watch::Sender<Demand>,
    /// Holders of [`PublishGuard`]s: viewers, and the relay for always-on cameras.
    publish_demand: watch::Sender<usize>,
    /// Browser viewers watching now (see [`crate::viewer`]).
    pub viewers: std::sync::atomic::AtomicUsize,
    /// Uptime, downtime and bitrate, fed by [`crate::media::availability::monitor`].
    pub availability: std::sync::Mutex<crate::media::availability::Availability>,
    /// Stops the camera's tasks when it is removed.
    pub cancel: CancellationToken,
}

impl Camera {
    /// A camera with no demand yet. Returns it with the receiver its lease task watches.
    /// `frames`: keep whole frames for the WebRTC publisher.
    pub fn new(
        id: String,
        name: String,
        source: impl FnOnce(watch::Receiver<Demand>) -> Source,
        cancel: CancellationToken,
        frames: bool,
    ) -> Arc<Self> {
        let (demand, rx) = watch::channel(Demand::default());
        let source = source(rx);
        Arc::new(Self {
            id,
            name,
            source,
            media: Hub::new(frames),
            publish: crate::sfu::publisher::PublishStatus::default(),
            demand,
            publish_demand: watch::channel(0).0,
            viewers: std::sync::atomic::AtomicUsize::new(0),
            availability: std::sync::Mutex::new(crate::media::availability::Availability::new(
                Instant::now(),
            )),
            cancel,
        })
    }

    /// Registers one holder of demand until the guard is dropped. `interactive`: a person is
    /// waiting, so a start outranks background starts.
    pub fn acquire(self: &Arc<Self>, interactive: bool) -> DemandGuard {
        self.demand.send_modify(|d| {
            d.holders += 1;
            d.interactive |= interactive;
        });
        DemandGuard {
            camera: Arc::clone(self),
            interactive,
        }
    }

    /// Watches the demand.
    pub fn watch_demand(&self) -> watch::Receiver<Demand> {
        self.demand.subscribe()
    }

    /// Current demand.
    pub fn demand(&self) -> Demand {
        *self.demand.borrow()
    }

    /// Wants the camera published into the SFU until the guard is dropped. It does not make
    /// the camera live: pair it with [`Self::acquire`].
    pub fn want_published(self: &Arc<Self>) -> PublishGuard {
        self.publish_demand.send_modify(|n| *n += 1);
        PublishGuard {
            camera: Arc::clone(self),
        }
    }

    /// Watches how many want the camera published.
    pub fn watch_publish_demand(&self) -> watch::Receiver<usize> {
        self.publish_demand.subscribe()
    }

    /// Waits until the camera is live (its current upstream session delivered a keyframe and
    /// its description is known), or fails at once when it cannot be: its lease is at capacity,
    /// or a static camera refused the relay. The caller bounds the wait.
    pub async fn wait_live(&self) -> Result<(), StartError> {
        let mut live = self.media.watch_live();
        let mut lease = match &self.source {
            Source::Nest { lease, .. } => Some(lease.clone()),
            Source::Static { .. } => None,
        };
        // A static camera that refuses the relay (wrong credentials, no such path) will not
        // change its mind within the wait; a refused Nest URL is replaced by the lease.
        let mut refusals = lease.is_none().then(|| self.media.watch_refusals());
        loop {
            if *live.borrow_and_update() && self.media.description().is_some() {
                return Ok(());
            }
            if let Some(lease) = &mut lease {
                let status = lease.borrow_and_update();
                if status.phase == Phase::AtCapacity {
                    return Err(StartError::AtCapacity {
                        retry_after: status
                            .retry_at
                            .map(|at| at.saturating_duration_since(Instant::now())),
                    });
                }
            }
            tokio::select! {
                () = self.cancel.cancelled() => return Err(StartError::Removed),
                changed = live.changed() => if changed.is_err() {
                    return Err(StartError::Removed);
                },
                () = changed_or_pending(lease.as_mut()) => {}
                () = changed_or_pending(refusals.as_mut()) => return Err(StartError::Refused),
            }
        }
    }
}

/// Why a camera could not be started for a client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartError {
    /// The Nest API budget cannot carry one more stream now.
    #[error("the Nest API budget is at capacity")]
    AtCapacity {
        /// When the lease will try again, if it knows.
        retry_after: Option<Duration>,
    },
    /// The camera refused the relay's session.
    #[error("the camera refused the relay (see its last_error in /stats)")]
    Refused,
    /// The camera was removed meanwhile.
    #[error("the camera was removed")]
    Removed,
}

/// Resolves when the watched value changes; never without a watch, or once its sender is gone.
async fn changed_or_pending<T>(rx: Option<&mut watch::Receiver<T>>) {
    if let Some(rx) = rx
        && rx.changed().await.is_ok()
    {
        return;
    }
    std::future::pending::<()>().await;
}

/// Keeps a camera wanted in the SFU while alive.
#[derive(Debug)]
pub struct PublishGuard {
    camera: Arc<Camera>,
}

impl Drop for PublishGuard {
    fn drop(&mut self) {
        self.camera
            .publish_demand
            .send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// Keeps a camera wanted while alive.
#[derive(Debug)]
pub struct DemandGuard {
    camera: Arc<Camera>,
    interactive: bool,
}

impl Drop for DemandGuard {
    fn drop(&mut self) {
        let interactive = self.interactive;
        self.camera.demand.send_modify(|d| {
            d.holders = d.holders.saturating_sub(1);
            if d.holders == 0 || interactive {
                // Interactive-ness is a hint for the next start only; recomputing it exactly
                // would need a second counter for no behavioural gain.
                d.interactive = false;
            }
        });
    }
}

/// All cameras, by id.
#[derive(Debug, Default)]
pub struct Registry {
    cameras: RwLock<BTreeMap<String, Arc<Camera>>>,
}

impl Registry {
    /// Adds a camera. An id already taken is refused (the camera is handed back): replacing
    /// a camera would cut off its clients.
    pub fn insert(&self, camera: Arc<Camera>) -> Result<(), Arc<Camera>> {
        let mut cameras = self.cameras.write().unwrap_or_else(PoisonError::into_inner);
        if cameras.contains_key(&camera.id) {
            return Err(camera);
        }
        cameras.insert(camera.id.clone(), camera);
        Ok(())
    }

    /// Every id in use.
    pub fn ids(&self) -> Vec<String> {
        self.cameras
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect()
    }

    /// Removes a camera and stops its tasks.
    pub fn remove(&self, id: &str) -> Option<Arc<Camera>> {
        let removed = self
            .cameras
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
        if let Some(camera) = &removed {
            camera.cancel.cancel();
        }
        removed
    }

    /// One camera.
    pub fn get(&self, id: &str) -> Option<Arc<Camera>> {
        self.cameras
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned()
    }

    /// Every camera, ordered by id.
    pub fn all(&self) -> Vec<Arc<Camera>> {
        self.cameras
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// The Nest device ids present, with their camera ids.
    pub fn nest_devices(&self) -> BTreeMap<String, String> {
        self.all()
            .into_iter()
            .filter_map(|c| match &c.source {
                Source::Nest { device, .. } => Some((device.clone(), c.id.clone())),
                Source::Static { .. } => None,
            })
            .collect()
    }
}

/// A readable id from a display name: lower case ASCII letters and digits, words joined by `-`
/// ("Front Door" → `front-door`). Empty when the name has no such characters.
pub fn slug(name: &str) -> String {
    let mut out = String::new();
    let mut dash = false;
    for c in name.chars() {
        let c = match c {
            'a'..='z' | '0'..='9' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => {
                dash = !out.is_empty();
                continue;
            }
        };
        if dash {
            out.push('-');
            dash = false;
        }
        if out.len() >= MAX_SLUG_LEN {
            break;
        }
        out.push(c);
    }
    out
}

/// Readable ids for Nest devices, from the whole list Google returns: the slug of the display
/// name (`nest` for a name without letters or digits). Where several devices share a slug, or a
/// slug is a static camera's id, each of those devices gets a suffix derived from its device id.
/// The answer depends only on the list, not on its order or on history, so a restart gives the
/// same ids.
pub fn nest_ids<'a>(
    devices: impl IntoIterator<Item = (&'a str, &'a str)>,
    taken: &[String],
) -> BTreeMap<String, String> {
    let slugs: Vec<(&str, String)> = devices
        .into_iter()
        .map(|(device, name)| {
            let slug = slug(name);
            (
                device,
                if slug.is_empty() {
                    "nest".to_owned()
                } else {
                    slug
                },
            )
        })
        .collect();
    slugs
        .iter()
        .map(|(device, slug)| {
            let shared = slugs.iter().filter(|(_, s)| s == slug).count() > 1;
            let id = if shared || taken.contains(slug) {
                format!("{slug}-{}", short_hash(device))
            } else {
                slug.clone()
            };
            ((*device).to_owned(), id)
        })
        .collect()
}

/// `id`, or `id-2`, `id-3`, … the first not in `taken` (for the rare hash collision, or a
/// camera that kept an id from before a duplicate name appeared).
pub fn unique_id(id: &str, taken: &[String]) -> String {
    if !taken.iter().any(|t| t == id) {
        return id.to_owned();
    }
    (2u32..)
        .map(|n| format!("{id}-{n}"))
        .find(|candidate| !taken.contains(candidate))
        .unwrap_or_else(|| id.to_owned())
}

/// Six hex digits from a stable hash of `text` (FNV-1a: `DefaultHasher` is not stable across
/// Rust releases, and ids must survive upgrades).
fn short_hash(text: &str) -> String {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in text.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    format!("{:06x}", hash & 0x00ff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_readable() {
        assert_eq!(slug("Front Door"), "front-door");
        assert_eq!(slug("  Kid's Room #2 "), "kid-s-room-2");
        assert_eq!(slug("Café"), "caf");
        assert_eq!(slug("🙂"), "");
        assert!(slug(&"x".repeat(200)).len() <= MAX_SLUG_LEN);
    }

    #[test]
    fn nest_ids_are_stable_and_unique() {
        let devices = [
            ("BBB", "Garage"),
            ("AAA", "Garage"),
            ("CCC", "front door"),
            ("DDD", "!!!"),
            ("EEE", "Porch"),
        ];
        let ids = nest_ids(devices.iter().copied(), &["front-door".to_owned()]);
        // Both garages are suffixed: neither owns the plain name, whoever was listed first.
        assert!(ids["AAA"].starts_with("garage-") && ids["AAA"].len() == "garage-".len() + 6);
        assert!(ids["BBB"].starts_with("garage-"));
        assert_ne!(ids["AAA"], ids["BBB"]);
        assert!(ids["CCC"].starts_with("front-door-"));
        assert_eq!(ids["DDD"], "nest");
        assert_eq!(ids["EEE"], "porch");
        // Same answer whatever the listing order.
        let mut reversed = devices;
        reversed.reverse();
        assert_eq!(
            nest_ids(reversed.iter().copied(), &["front-door".to_owned()]),
            ids
        );
    }

    #[test]
    fn unique_ids_count_up() {
        let taken = vec!["a".to_owned(), "a-2".to_owned()];
        assert_eq!(unique_id("b", &taken), "b");
        assert_eq!(unique_id("a", &taken), "a-3");
    }

    #[test]
    fn the_registry_never_replaces_a_camera() {
        let registry = Registry::default();
        let make = |name: &str| {
            Camera::new(
                "c".into(),
                name.into(),
                |_| Source::Static {
                    url: StreamUrl::new(url::Url::parse("rtsp://h/x").unwrap()),
                    credentials: None,
                    tls_verify: true,
                },
                CancellationToken::new(),
                false,
            )
        };
        let first = make("first");
        assert!(registry.insert(Arc::clone(&first)).is_ok());
        assert!(registry.insert(make("second")).is_err());
        assert_eq!(registry.get("c").unwrap().name, "first");
        assert!(!first.cancel.is_cancelled());
    }

    #[test]
    fn demand_guards_count_holders() {
        let camera = Camera::new(
            "c".into(),
            "C".into(),
            |_| Source::Static {
                url: StreamUrl::new(url::Url::parse("rtsp://h/x").unwrap()),
                credentials: None,
                tls_verify: true,
            },
            CancellationToken::new(),
            false,
        );
        let a = camera.acquire(false);
        let b = camera.acquire(true);
        assert_eq!(
            camera.demand(),
            Demand {
                holders: 2,
                interactive: true
            }
        );
        drop(b);
        assert_eq!(
            camera.demand(),
            Demand {
                holders: 1,
                interactive: false
            }
        );
        drop(a);
        assert_eq!(camera.demand().holders, 0);
    }
}
