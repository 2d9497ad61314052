//! The relay assembled from its configuration: cameras, the Nest service and its leases,
//! discovery, and the HTTP endpoints. [`Relay::start`] brings it up; cancelling the token it was
//! given and awaiting [`Relay::stopped`] shuts it down within a bounded time.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use camrelay_api_clients::nest::{NestClient, NestClientConfig, StreamUrl};
use camrelay_config::{Config, NestConfig, StaticCamera};
use camrelay_rtsp::server::Server;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use camrelay_api_clients::calls::{CallsClient, CallsClientConfig, CallsErrorKind};
use camrelay_api_clients::whip::WhipClient;
use camrelay_config::SfuConfig;
use camrelay_config::defaults as d;
use secrecy::SecretString;

use crate::camera::{self, Camera, Credentials, DemandGuard, PublishGuard, Registry, Source};
use crate::http;
use crate::ingest::tls::TlsClients;
use crate::ingest::{self, IngestSettings};
use crate::nest::{self, NestService};
use crate::rtsp;
use crate::sfu::api::{self as sfu_api, SfuApi};
use crate::sfu::embedded::EmbeddedSfu;
use crate::sfu::publisher::{self, PublisherSettings};
use crate::sfu::signaling::Signaling;
use crate::viewer::{ViewerSettings, Viewers};

/// How long shutdown may take before the remaining tasks are abandoned: leases get
/// [`crate::lease::task::SHUTDOWN_STOP_TIMEOUT`] to stop their streams, the queue
/// [`camrelay_queue::driver::DRAIN_TIMEOUT`] to send them.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(8);

/// First retry after a failed device discovery; doubles up to the discovery interval.
pub const DISCOVERY_RETRY: Duration = Duration::from_secs(5);

/// Shared state of a running relay.
#[derive(Debug)]
pub struct Relay {
    /// The cameras.
    pub registry: Arc<Registry>,
    /// The Nest side, when configured.
    pub nest: Option<NestService>,
    /// Where the HTTP endpoints listen.
    pub http_addr: SocketAddr,
    /// Where the operator's endpoints listen, when apart from `http_addr`.
    pub admin_addr: Option<SocketAddr>,
    /// The local RTSP server.
    pub rtsp: Server,
    /// The WebRTC side, unless `CAMRELAY_SFU=off`.
    pub sfu: Option<SfuRuntime>,
    /// Browser viewers, when the SFU speaks the Calls API.
    pub viewers: Option<Arc<Viewers>>,
    /// How cameras are pulled.
    ingest: IngestSettings,
    /// The configuration in force.
    pub config: Config,
    /// When the relay started.
    pub started: Instant,
    discovery: Mutex<DiscoveryState>,
    /// The outcome of the last SFU check.
    sfu_health: Mutex<SfuHealth>,
    /// Demand held for always-on cameras, by camera id: live, and published when there is an
    /// SFU.
    always_on: Mutex<BTreeMap<String, (DemandGuard, PublishGuard)>>,
    /// Camera lease tasks: stopped first on shutdown, so their stops can still be sent.
    leases: Mutex<JoinSet<()>>,
    /// The command queue: cancelled after the leases.
    queue: Mutex<Option<(CancellationToken, tokio::task::JoinHandle<()>)>>,
    /// Everything else (HTTP, discovery).
    tasks: Mutex<JoinSet<()>>,
    /// The static cameras in force (the configuration's, or a reload's).
    static_cameras: Mutex<Vec<StaticCamera>>,
    /// Wakes discovery before its interval (a reload).
    rediscover: tokio::sync::Notify,
    /// The relay's shutdown, parent of every camera's token.
    shutdown: CancellationToken,
}

/// The WebRTC side of a running relay.
#[derive(Debug)]
pub struct SfuRuntime {
    /// The embedded SFU and its API, when it is the SFU in use.
    pub embedded: Option<SfuApi>,
    /// What every camera's publisher uses.
    pub publisher: PublisherSettings,
}

/// Whether the SFU answered the last check.
#[derive(Debug, Clone, Default)]
pub struct SfuHealth {
    /// A check was made.
    pub checked: bool,
    /// Its problem, free of secrets; `None` when the SFU answered.
    pub error: Option<String>,
}

/// The outcome of the last Nest device discovery.
#[derive(Debug, Clone, Default)]
pub struct DiscoveryState {
    /// Whether the last discovery succeeded.
    pub ok: bool,
    /// Its error, free of secrets.
    pub error: Option<String>,
}

impl Relay {
    /// Brings the relay up: binds the HTTP listener, registers static cameras, starts the Nest
    /// queue and the first discovery. Runs until `shutdown` is cancelled.
    pub async fn start(config: Config, shutdown: CancellationToken) -> anyhow::Result<Arc<Self>> {
        let listener = TcpListener::bind(config.http_addr)
            .await
            .with_context(|| format!("cannot listen on CAMRELAY_HTTP_ADDR {}", config.http_addr))?;
        let http_addr = listener.local_addr()?;
        let admin_listener = match config.admin.addr {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on CAMRELAY_ADMIN_ADDR {addr}"))?,
            ),
            None => None,
        };
        let admin_addr = match &admin_listener {
            Some(l) => Some(l.local_addr()?),
            None => None,
        };
        let ingest = IngestSettings {
            timeout: config.ingest.timeout,
            retry_initial: config.ingest.retry_initial,
            retry_max: config.ingest.retry_max,
            idle_grace: config.idle_grace,
            tls: TlsClients::new(config.extra_ca_file.as_deref())?,
        };
        let registry = Arc::new(Registry::default());
        let rtsp = rtsp::start(
            config.rtsp_addr,
            &config.rtsp,
            Arc::clone(&registry),
            shutdown.clone(),
        )
        .await?;
        let (sfu, sfu_task) = start_sfu(&config, http_addr, &shutdown).await?;
        let (nest, queue) = match &config.nest {
            Some(nest_config) => {
                let (nest, queue) = start_nest(nest_config, &config)?;
                (Some(nest), Some(queue))
            }
            None => (None, None),
        };
        let viewers = sfu
            .as_ref()
            .and_then(|sfu| match sfu.publisher.signaling.as_ref() {
                Signaling::Calls(calls) => Some(Arc::new(Viewers::new(
                    calls.clone(),
                    Arc::clone(&registry),
                    ViewerSettings {
                        timeout: config.viewer.timeout,
                        max_viewers: config.viewer.max_viewers,
                        start_timeout: config.rtsp.start_timeout,
                        publish_timeout: config.webrtc.connect_timeout + d::WATCH_PUBLISH_MARGIN,
                    },
                ))),
                Signaling::Whip { .. } => None,
            });
        let config_cameras = config.cameras.clone();
        let relay = Arc::new(Self {
            registry,
            nest,
            http_addr,
            admin_addr,
            rtsp,
            sfu,
            viewers,
            ingest,
            config,
            started: Instant::now(),
            discovery: Mutex::new(DiscoveryState::default()),
            sfu_health: Mutex::new(SfuHealth::default()),
            always_on: Mutex::new(BTreeMap::new()),
            leases: Mutex::new(JoinSet::new()),
            queue: Mutex::new(queue),
            tasks: Mutex::new(JoinSet::new()),
            static_cameras: Mutex::new(config_cameras),
            rediscover: tokio::sync::Notify::new(),
            shutdown: shutdown.clone(),
        });
        if let Some(task) = sfu_task {
            relay.spawn(async move {
                let _ = task.await;
            });
        }
        if let Some(viewers) = &relay.viewers {
            relay.spawn(Arc::clone(viewers).run(shutdown.clone()));
        }
        relay.register_static(&shutdown);
        if relay.nest.is_some() {
            let discovery = discover_forever(Arc::clone(&relay), shutdown.clone());
            relay.spawn(discovery);
        }
        let probe = check_sfu_forever(Arc::clone(&relay), shutdown.clone());
        relay.spawn(probe);
        let server = http::serve(
            listener,
            admin_listener,
            Arc::clone(&relay),
            shutdown.clone(),
        );
        relay.spawn(server);
        tracing::info!(http = %http_addr, rtsp = %relay.rtsp.local_addr(), cameras = relay.config.cameras.len(), nest = relay.nest.is_some(), "camrelay started");
        let admin = &relay.config.admin;
        if relay.config.viewer.auth_required() && admin.addr.is_none() && admin.token.is_none() {
            tracing::warn!(
                "viewers must authenticate, but /stats and /metrics are open on the same listener: set CAMRELAY_ADMIN_TOKEN or CAMRELAY_ADMIN_ADDR"
            );
        }
        Ok(relay)
    }

    fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        // Reap the finished ones (the ingests of removed cameras).
        while tasks.try_join_next().is_some() {}
        tasks.spawn(task);
    }

    /// Starts pulling `camera` whenever it is wanted, until it is removed.
    fn start_ingest(&self, camera: &Arc<Camera>) {
        let span = tracing::info_span!("ingest", camera = %camera.id);
        let task = ingest::run(
            Arc::clone(camera),
            self.ingest.clone(),
            camera.cancel.clone(),
        );
        self.spawn(task.instrument(span));
        let monitor =
            crate::media::availability::monitor(Arc::clone(camera), camera.cancel.clone());
        self.spawn(monitor);
    }

    /// Publishes `camera` into the SFU whenever it is live and wanted there: by viewers (the
    /// watch API), or always when it is always-on. RTSP clients alone do not publish it.
    fn start_publisher(&self, camera: &Arc<Camera>) {
        if let Some(sfu) = &self.sfu {
            let span = tracing::info_span!("publish", camera = %camera.id);
            let task = publisher::run(
                Arc::clone(camera),
                sfu.publisher.clone(),
                camera.cancel.clone(),
            );
            self.spawn(task.instrument(span));
        }
    }

    fn register_static(&self, shutdown: &CancellationToken) {
        let mut added = Vec::new();
        for cam in &self.config.cameras {
            if self.add_static(cam, shutdown) {
                added.push(cam.clone());
            }
        }
        *self
            .static_cameras
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = added;
    }

    /// Adds a static camera and starts its tasks; an id already in use (by a Nest camera, after
    /// a reload) is refused with an error in the log. Returns whether it was added.
    fn add_static(&self, cam: &StaticCamera, shutdown: &CancellationToken) -> bool {
        let url = StreamUrl::new(cam.url.clone());
        let credentials = cam.username.clone().map(|username| Credentials {
            username,
            password: cam.password.clone().unwrap_or_default(),
        });
        let camera = Camera::new(
            cam.id.clone(),
            cam.name.clone(),
            |_| Source::Static {
                url,
                credentials,
                tls_verify: cam.tls_verify,
            },
            shutdown.child_token(),
            self.sfu.is_some(),
        );
        if let Err(camera) = self.registry.insert(Arc::clone(&camera)) {
            tracing::error!(camera = %camera.id, "a camera with this id exists already; the static camera is not added");
            camera.cancel.cancel();
            return false;
        }
        if cam.always_on {
            self.keep_on(&camera);
        }
        self.start_ingest(&camera);
        self.start_publisher(&camera);
        true
    }

    /// Applies a re-read configuration (SIGHUP): the static camera list changes without a
    /// restart (cameras removed, added, or replaced when their settings changed; the others
    /// keep their clients), Nest devices are discovered again now, and any other changed
    /// setting is named in the log as needing a restart. Returns the names of those settings.
    pub fn reload(&self, new: &Config) -> Vec<String> {
        let shutdown = self.shutdown.clone();
        // Only cameras this relay added as static ones: a refused entry never removes the
        // Nest camera that holds its id.
        let mut statics = self
            .static_cameras
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let old = std::mem::take(&mut *statics);
        for cam in &old {
            if new.cameras.iter().any(|n| same_camera(cam, n)) {
                statics.push(cam.clone());
            } else if self
                .registry
                .get(&cam.id)
                .is_some_and(|c| matches!(c.source, Source::Static { .. }))
            {
                tracing::info!(camera = %cam.id, "static camera removed or changed by reload");
                self.remove_camera(&cam.id);
            }
        }
        for cam in &new.cameras {
            if !old.iter().any(|o| same_camera(o, cam)) {
                tracing::info!(camera = %cam.id, "static camera added by reload");
                if self.add_static(cam, &shutdown) {
                    statics.push(cam.clone());
                }
            }
        }
        drop(statics);
        self.rediscover.notify_one();
        let is_camera =
            |name: &str| name == "CAMRELAY_CAMERAS" || name.starts_with("CAMRELAY_CAMERA_");
        // Secrets are compared too (a rotated token needs a restart), and listed by name only.
        let changed: Vec<String> = new
            .changed_since(&self.config)
            .into_iter()
            .filter(|name| !is_camera(name))
            .collect();
        if !changed.is_empty() {
            tracing::warn!(settings = %changed.join(", "), "these settings changed; they take effect at the next restart");
        }
        changed
    }

    fn keep_on(&self, camera: &Arc<Camera>) {
        self.always_on
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                camera.id.clone(),
                (camera.acquire(false), camera.want_published()),
            );
    }

    fn remove_camera(&self, id: &str) {
        self.always_on
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
        self.registry.remove(id);
    }

    /// The outcome of the last discovery.
    pub fn discovery(&self) -> DiscoveryState {
        self.discovery
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether the relay can serve: configuration valid (it is, or it would not run), with
    /// Nest a successful discovery (which needs an access token), and the SFU answering.
    pub fn ready(&self) -> bool {
        self.readiness().is_ok()
    }

    /// [`Self::ready`], with every reason it is not.
    pub fn readiness(&self) -> Result<(), Vec<String>> {
        let mut reasons = Vec::new();
        if self.nest.is_some() {
            let discovery = self.discovery();
            if !discovery.ok {
                reasons.push(
                    discovery
                        .error
                        .unwrap_or_else(|| "Nest devices not discovered yet".to_owned()),
                );
            }
        }
        let sfu = self.sfu_health();
        if !sfu.checked {
            reasons.push("the SFU has not been checked yet".to_owned());
        } else if let Some(error) = sfu.error {
            reasons.push(format!("SFU: {error}"));
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons)
        }
    }

    /// The outcome of the last SFU check.
    pub fn sfu_health(&self) -> SfuHealth {
        self.sfu_health
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Asks the SFU whether it is there: the embedded one's task must run; a Calls API must
    /// answer with our credentials (a session that does not exist is the cheapest question).
    /// WHIP has no way to ask without publishing, and `off` has nothing to ask.
    async fn check_sfu(&self) -> Option<String> {
        let sfu = self.sfu.as_ref()?;
        if let Some(embedded) = &sfu.embedded {
            return match tokio::time::timeout(d::SFU_REQUEST_TIMEOUT, embedded.sfu.stats()).await {
                Ok(Ok(_)) => None,
                Ok(Err(_)) => Some("the embedded SFU has stopped".to_owned()),
                Err(_) => Some("the embedded SFU does not answer".to_owned()),
            };
        }
        let Signaling::Calls(client) = sfu.publisher.signaling.as_ref() else {
            return None;
        };
        match client.session(SFU_PROBE_SESSION).state().await {
            Ok(_) => None,
            Err(e) => match e.kind {
                CallsErrorKind::NotFound(_)
                | CallsErrorKind::SessionGone(_)
                | CallsErrorKind::Rejected { .. } => None,
                _ => Some(e.to_string()),
            },
        }
    }

    /// Reconciles the registry with the devices Google lists: new cameras get a lease, vanished
    /// ones are removed.
    async fn discover_once(&self, shutdown: &CancellationToken) -> anyhow::Result<()> {
        let (Some(nest), Some(nest_config)) = (&self.nest, &self.config.nest) else {
            return Ok(());
        };
        let devices = nest.discover(nest_config.devices.as_deref()).await?;
        // Removals first, so that a new device may take a vanished one's id.
        for (device, id) in self.registry.nest_devices() {
            if !devices.iter().any(|d| d.id == device) {
                tracing::info!(camera = %id, %device, "Nest camera removed");
                self.remove_camera(&id);
            }
        }
        let known = self.registry.nest_devices();
        // The static cameras in force now (a reload may have changed them).
        let statics: Vec<String> = self
            .static_cameras
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|c| c.id.clone())
            .collect();
        let ids = camera::nest_ids(
            devices.iter().map(|d| (d.id.as_str(), d.display_name())),
            &statics,
        );
        for device in &devices {
            if known.contains_key(&device.id) {
                // A camera keeps its id for as long as it lives.
                continue;
            }
            let Some(id) = ids.get(&device.id) else {
                continue;
            };
            let id = camera::unique_id(id, &self.registry.ids());
            let cancel = shutdown.child_token();
            let lease_cancel = cancel.clone();
            let mut lease_task = None;
            let camera = Camera::new(
                id.clone(),
                device.display_name().to_owned(),
                |demand| {
                    let (task, status, rejected) = nest.lease(&device.id, demand, lease_cancel);
                    lease_task = Some(task);
                    Source::Nest {
                        device: device.id.clone(),
                        lease: status,
                        rejected,
                    }
                },
                cancel,
                self.sfu.is_some(),
            );
            if self.registry.insert(Arc::clone(&camera)).is_err() {
                // A reload added a static camera with this id meanwhile: it keeps it.
                tracing::warn!(camera = %id, device = %device.id, "id taken meanwhile; the Nest camera is added at the next discovery");
                camera.cancel.cancel();
                continue;
            }
            if let Some(task) = lease_task {
                let mut leases = self.leases.lock().unwrap_or_else(PoisonError::into_inner);
                // Reap the tasks of removed cameras.
                while leases.try_join_next().is_some() {}
                leases.spawn(task);
            }
            self.start_ingest(&camera);
            self.start_publisher(&camera);
            tracing::info!(camera = %id, device = %device.id, "Nest camera added");
            if self.config.always_on {
                self.keep_on(&camera);
            }
        }
        Ok(())
    }

    /// Waits for the relay's tasks after `shutdown` was cancelled, at most [`SHUTDOWN_TIMEOUT`]:
    /// first the leases (each stops its stream if the budget allows), then the command queue
    /// (which drains those stops), then the rest.
    pub async fn stopped(&self) {
        let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
        self.always_on
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        let mut leases =
            std::mem::take(&mut *self.leases.lock().unwrap_or_else(PoisonError::into_inner));
        let leases_done = async { while leases.join_next().await.is_some() {} };
        if tokio::time::timeout_at(deadline, leases_done)
            .await
            .is_err()
        {
            tracing::warn!("camera leases did not stop in time");
        }
        let queue = self
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some((cancel, task)) = queue {
            cancel.cancel();
            if tokio::time::timeout_at(deadline, task).await.is_err() {
                tracing::warn!("the command queue did not drain in time");
            }
        }
        let mut tasks =
            std::mem::take(&mut *self.tasks.lock().unwrap_or_else(PoisonError::into_inner));
        let all = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout_at(deadline, all).await.is_err() {
            tracing::warn!("shutdown timed out; exiting anyway");
        }
    }
}

/// Sets up publishing: the signaling for the configured SFU, and the embedded SFU itself when
/// it is the one. The embedded SFU is reached through the relay's own HTTP listener, with the
/// same Calls client as Cloudflare.
async fn start_sfu(
    config: &Config,
    http_addr: SocketAddr,
    shutdown: &CancellationToken,
) -> anyhow::Result<(Option<SfuRuntime>, Option<tokio::task::JoinHandle<()>>)> {
    let candidate_ip = crate::sfu::net::candidate_ip(config.webrtc.ip);
    let timeout = d::SFU_REQUEST_TIMEOUT;
    let mut task = None;
    let (signaling, embedded) = match &config.sfu {
        SfuConfig::Off => return Ok((None, None)),
        SfuConfig::Cloudflare {
            app_id,
            app_secret,
            api_url,
        } => {
            let client = CallsClient::new(&CallsClientConfig {
                base_url: api_url.clone(),
                app_id: app_id.clone(),
                app_secret: app_secret.clone(),
                request_timeout: timeout,
            })?;
            (Signaling::Calls(client), None)
        }
        SfuConfig::Whip {
            url_template,
            token,
        } => (
            Signaling::Whip {
                client: WhipClient::new(timeout)?,
                template: url_template.clone(),
                token: token.clone(),
            },
            None,
        ),
        SfuConfig::Embedded { app_id, app_secret } => {
            let secret = app_secret
                .clone()
                .unwrap_or_else(|| SecretString::from(crate::sfu::random_id()));
            let (sfu, handle) = EmbeddedSfu::start(
                config.webrtc.sfu_udp_addr,
                candidate_ip,
                shutdown.child_token(),
            )
            .await?;
            task = Some(handle);
            let host = match http_addr.ip() {
                ip if !ip.is_unspecified() => ip,
                std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            };
            let base_url = url::Url::parse(&format!(
                "http://{}{}",
                SocketAddr::new(host, http_addr.port()),
                sfu_api::BASE_PATH
            ))?;
            let client = CallsClient::new(&CallsClientConfig {
                base_url,
                app_id: app_id.clone(),
                app_secret: secret.clone(),
                request_timeout: timeout,
            })?;
            let api = SfuApi {
                sfu,
                app_id: app_id.clone(),
                secret: Arc::new(secret),
            };
            (Signaling::Calls(client), Some(api))
        }
    };
    let publisher = PublisherSettings {
        signaling: Arc::new(signaling),
        candidate_ip,
        connect_timeout: config.webrtc.connect_timeout,
        retry_initial: d::PUBLISH_RETRY_INITIAL,
        retry_max: d::PUBLISH_RETRY_MAX,
        idle_grace: config.idle_grace,
    };
    Ok((
        Some(SfuRuntime {
            embedded,
            publisher,
        }),
        task,
    ))
}

/// Whether two static camera entries are the same camera with the same settings.
fn same_camera(a: &StaticCamera, b: &StaticCamera) -> bool {
    use secrecy::ExposeSecret;
    a.id == b.id
        && a.name == b.name
        && a.url == b.url
        && a.username == b.username
        && a.password.as_ref().map(ExposeSecret::expose_secret)
            == b.password.as_ref().map(ExposeSecret::expose_secret)
        && a.always_on == b.always_on
        && a.tls_verify == b.tls_verify
}

fn start_nest(
    nest_config: &NestConfig,
    config: &Config,
) -> anyhow::Result<(
    NestService,
    (CancellationToken, tokio::task::JoinHandle<()>),
)> {
    let client = NestClient::new(&NestClientConfig {
        api_url: nest_config.api_url.clone(),
        token_url: nest_config.token_url.clone(),
        project_id: nest_config.project_id.clone(),
        client_id: nest_config.client_id.clone(),
        client_secret: nest_config.client_secret.clone(),
        refresh_token: nest_config.refresh_token.clone(),
        request_timeout: nest_config.request_timeout,
    })?;
    let scheduler = nest::scheduler_config(&nest_config.budget, &nest_config.lease);
    let lease = nest::lease_config(&nest_config.lease, config.idle_grace);
    let cancel = CancellationToken::new();
    let (service, task) = NestService::start(client, scheduler, lease, cancel.clone());
    Ok((service, (cancel, task)))
}

/// The session id the SFU check asks about (none has it).
pub const SFU_PROBE_SESSION: &str = "camrelay-readiness-probe";

/// Checks the SFU at start and every [`d::SFU_CHECK_INTERVAL`].
async fn check_sfu_forever(relay: Arc<Relay>, shutdown: CancellationToken) {
    loop {
        let error = relay.check_sfu().await;
        let before = relay.sfu_health();
        // Logged when it changes, not every interval of a long outage.
        match (&error, before.error) {
            (Some(error), previous) if previous.as_ref() != Some(error) => {
                tracing::warn!(%error, "the SFU does not answer");
            }
            (None, Some(_)) => tracing::info!("the SFU answers again"),
            _ => {}
        }
        *relay
            .sfu_health
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = SfuHealth {
            checked: true,
            error,
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(d::SFU_CHECK_INTERVAL) => {}
        }
    }
}

/// Discovers Nest cameras at start and every discovery interval; retries failures with
/// doubling delays.
async fn discover_forever(relay: Arc<Relay>, shutdown: CancellationToken) {
    let interval = relay
        .config
        .nest
        .as_ref()
        .map_or(Duration::from_secs(600), |n| n.discovery_interval);
    let mut retry = DISCOVERY_RETRY;
    loop {
        let wait = match relay.discover_once(&shutdown).await {
            Ok(()) => {
                *relay
                    .discovery
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = DiscoveryState {
                    ok: true,
                    error: None,
                };
                retry = DISCOVERY_RETRY;
                interval
            }
            Err(e) => {
                let error = format!("{e:#}");
                tracing::warn!(%error, retry_in_s = retry.as_secs(), "Nest device discovery failed");
                *relay
                    .discovery
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = DiscoveryState {
                    ok: false,
                    error: Some(error),
                };
                let wait = retry;
                retry = (retry * 2).min(interval);
                wait
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
            () = relay.rediscover.notified() => {}
        }
    }
}
