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
use tokio_util::sync::CancellationToken;

use crate::camera::{Camera, DemandGuard, Registry, StartError};

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
        if let Some(camera) = &camera {
            // The client's span names the camera once the path is known to be one: a path a
            // client made up never reaches the log.
            tracing::Span::current().record("camera", camera.id.as_str());
        }
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

/// Waits until `camera` is live, or fails at once when it cannot be (the server bounds the
/// wait with `CAMRELAY_RTSP_START_TIMEOUT`).
async fn wait_live(camera: &Camera) -> Result<(), OpenError> {
    camera.wait_live().await.map_err(|e| match e {
        StartError::AtCapacity { retry_after } => OpenError::Unavailable {
            reason: e.to_string(),
            retry_after,
        },
        StartError::Refused => OpenError::Unavailable {
            reason: e.to_string(),
            retry_after: None,
        },
        StartError::Removed => OpenError::NotFound,
    })
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
