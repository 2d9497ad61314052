//! The relay's cameras as RTSP streams: `rtsp://host:8554/{camera id}`.
//!
//! Opening a stream registers an interactive demand on the camera (an on-demand camera starts,
//! a Nest camera's lease asks for a stream ahead of background starts) and waits until the
//! camera is live: its current upstream session has delivered a keyframe. The demand lasts as
//! long as the client's session.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use camrelay_config::RtspConfig;
use camrelay_rtsp::auth::{Authenticator, User};
use camrelay_rtsp::bus::Subscriber;
use camrelay_rtsp::media::MediaDescription;
use camrelay_rtsp::rtp::Packet;
use camrelay_rtsp::server::{
    BoxFuture, Mounts, OpenError, Server, ServerConfig, Source, UdpSockets,
};
use tokio::net::{TcpListener, UdpSocket};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::camera::{Camera, DemandGuard, Registry, Source as CameraKind};
use crate::lease::Phase;

/// The realm clients see when the server asks for credentials.
pub const REALM: &str = "camrelay";

/// Starts the RTSP server on `addr` with the operator's settings.
pub async fn start(
    addr: SocketAddr,
    config: &RtspConfig,
    registry: Arc<Registry>,
    shutdown: CancellationToken,
) -> anyhow::Result<Server> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on CAMRELAY_RTSP_ADDR {addr}"))?;
    let udp = match &config.udp {
        Some(udp) => Some(UdpSockets {
            rtp: UdpSocket::bind(udp.rtp_addr)
                .await
                .with_context(|| format!("cannot bind CAMRELAY_RTSP_RTP_ADDR {}", udp.rtp_addr))?,
            rtcp: UdpSocket::bind(udp.rtcp_addr).await.with_context(|| {
                format!("cannot bind CAMRELAY_RTSP_RTCP_ADDR {}", udp.rtcp_addr)
            })?,
        }),
        None => None,
    };
    let auth = config.credentials.as_ref().map(|c| {
        Arc::new(Authenticator::new(
            REALM,
            vec![User {
                name: c.username.clone(),
                password: c.password.clone(),
            }],
        ))
    });
    let server_config = ServerConfig {
        session_timeout: config.session_timeout,
        max_sessions: config.max_clients,
        max_sessions_per_stream: config.max_clients_per_camera,
        open_timeout: config.start_timeout,
        auth,
        ..ServerConfig::default()
    };
    let mounts = Arc::new(CameraMounts { registry });
    Ok(Server::start(
        listener,
        udp,
        mounts,
        server_config,
        shutdown,
    )?)
}

/// The registry's cameras, by id.
#[derive(Debug)]
struct CameraMounts {
    registry: Arc<Registry>,
}

impl Mounts for CameraMounts {
    fn open(
        &self,
        path: &str,
        _query: Option<&str>,
    ) -> BoxFuture<Result<Arc<dyn Source>, OpenError>> {
        let id = path.trim_matches('/');
        let camera = self.registry.get(id);
        Box::pin(async move {
            let camera = camera.ok_or(OpenError::NotFound)?;
            let guard = camera.acquire(true);
            wait_live(&camera).await?;
            Ok(Arc::new(CameraSource {
                camera,
                _demand: guard,
            }) as Arc<dyn Source>)
        })
    }
}

/// Waits until `camera` is live, or fails at once when its lease says it cannot be (the server
/// bounds the wait with `CAMRELAY_RTSP_START_TIMEOUT`).
async fn wait_live(camera: &Camera) -> Result<(), OpenError> {
    let mut live = camera.media.watch_live();
    let mut lease = match &camera.source {
        CameraKind::Nest { lease, .. } => Some(lease.clone()),
        CameraKind::Static { .. } => None,
    };
    // A static camera that refuses the relay (wrong credentials, no such path) will not
    // change its mind within the wait; a refused Nest URL is replaced by the lease.
    let mut refusals = lease.is_none().then(|| camera.media.watch_refusals());
    loop {
        if *live.borrow_and_update() && camera.media.description().is_some() {
            return Ok(());
        }
        if let Some(lease) = &mut lease {
            let status = lease.borrow_and_update();
            if status.phase == Phase::AtCapacity {
                let retry_after = status
                    .retry_at
                    .map(|at| at.saturating_duration_since(Instant::now()));
                return Err(OpenError::Unavailable {
                    reason: "the Nest API budget is at capacity".into(),
                    retry_after,
                });
            }
        }
        tokio::select! {
            changed = live.changed() => if changed.is_err() {
                return Err(OpenError::NotFound);
            },
            () = lease_changed(lease.as_mut()) => {}
            () = refused(refusals.as_mut()) => {
                return Err(OpenError::Unavailable {
                    reason: "the camera refused the relay (see its last_error in /stats)".into(),
                    retry_after: None,
                });
            }
        }
    }
}

async fn lease_changed(
    lease: Option<&mut tokio::sync::watch::Receiver<crate::lease::task::LeaseStatus>>,
) {
    match lease {
        Some(lease) => {
            if lease.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

/// A client's hold on a camera.
struct CameraSource {
    camera: Arc<Camera>,
    _demand: DemandGuard,
}

impl Source for CameraSource {
    fn name(&self) -> String {
        self.camera.name.clone()
    }

    fn description(&self) -> MediaDescription {
        self.camera.media.description().unwrap_or_default()
    }

    fn subscribe(&self) -> Subscriber<Packet> {
        self.camera.media.subscribe()
    }
}

/// Resolves when the camera refuses another session; never without a watch.
async fn refused(refusals: Option<&mut tokio::sync::watch::Receiver<u64>>) {
    match refusals {
        Some(refusals) => {
            if refusals.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}
