//! HTTP endpoints: health and readiness probes, the `/stats` document, and the camera list.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::app::Relay;
use crate::lease::Phase;
use crate::sfu::publisher::PublishState;
use crate::stats::{Aggregate, CameraStats, NestStats, RtspStats, Stats};
use crate::viewer::api::{self as viewer_api, Guard};

/// The router of the relay's HTTP endpoints.
pub fn router(relay: Arc<Relay>) -> Router {
    let auth = Arc::new(relay.config.viewer.clone());
    let api = Router::new()
        .route("/api/cameras", get(cameras))
        .route("/api/cameras/{id}/watch", post(viewer_api::watch))
        .route(
            "/api/cameras/{id}/watch/{viewer}/answer",
            post(viewer_api::answer),
        )
        .route(
            "/api/cameras/{id}/watch/{viewer}/heartbeat",
            post(viewer_api::heartbeat),
        )
        .route(
            "/api/cameras/{id}/watch/{viewer}",
            delete(viewer_api::leave),
        )
        .layer(middleware::from_fn_with_state(
            (Arc::clone(&auth), Guard::Api),
            viewer_api::authenticate,
        ));
    let page =
        Router::new()
            .route("/", get(viewer_api::page))
            .layer(middleware::from_fn_with_state(
                (auth, Guard::Page),
                viewer_api::authenticate,
            ));
    let mut router = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/stats", get(stats))
        .route("/metrics", get(metrics))
        .merge(api)
        .merge(page);
    if let Some(api) = relay.sfu.as_ref().and_then(|s| s.embedded.clone()) {
        router = router.nest(crate::sfu::api::BASE_PATH, crate::sfu::api::router(api));
    }
    router.with_state(relay)
}

/// Serves until `shutdown`.
pub async fn serve(listener: TcpListener, relay: Arc<Relay>, shutdown: CancellationToken) {
    let app = router(relay);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "HTTP server failed");
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(relay): State<Arc<Relay>>) -> Response {
    if relay.ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        let reason = relay
            .discovery()
            .error
            .unwrap_or_else(|| "Nest devices not discovered yet".to_owned());
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        )
            .into_response()
    }
}

/// Builds the stats document.
pub async fn collect(relay: &Relay) -> Stats {
    let now = Instant::now();
    let cameras: Vec<CameraStats> = relay
        .registry
        .all()
        .iter()
        .map(|c| CameraStats::of(c, now))
        .collect();
    let queue = match &relay.nest {
        Some(nest) => nest.queue().stats().await,
        None => None,
    };
    let nest = relay.nest.as_ref().map(|nest| {
        let discovery = relay.discovery();
        NestStats {
            token_refreshes: nest.client().token_refreshes(),
            discovered: discovery.ok,
            discovery_error: discovery.error,
        }
    });
    Stats {
        version: env!("CARGO_PKG_VERSION"),
        uptime_s: relay.started.elapsed().as_secs(),
        aggregate: Aggregate::of(&cameras),
        cameras,
        queue,
        nest,
        rtsp: RtspStats::of(relay.rtsp.stats()),
        embedded_sfu: match relay.sfu.as_ref().and_then(|s| s.embedded.as_ref()) {
            Some(api) => api.sfu.stats().await.ok(),
            None => None,
        },
    }
}

async fn stats(State(relay): State<Arc<Relay>>) -> Json<Stats> {
    Json(collect(&relay).await)
}

async fn metrics(State(relay): State<Arc<Relay>>) -> Response {
    let text = crate::metrics::render(&collect(&relay).await);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// One entry of `GET /api/cameras`.
#[derive(Debug, Serialize)]
pub struct CameraEntry {
    /// Camera id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// The lease phase (`live` for static cameras).
    pub state: Phase,
    /// Where RTSP clients pull the camera from this relay.
    pub rtsp_url: String,
    /// The camera's SFU publication, while published.
    pub sfu: Option<SfuEntry>,
    /// Browser viewers watching now.
    pub viewers: usize,
}

/// Where viewers pull a published camera from.
#[derive(Debug, Serialize)]
pub struct SfuEntry {
    /// The publisher's SFU session.
    pub session_id: String,
    /// Its track names.
    pub tracks: Vec<String>,
}

async fn cameras(State(relay): State<Arc<Relay>>, headers: HeaderMap) -> Json<Vec<CameraEntry>> {
    let now = Instant::now();
    let host = rtsp_host(&relay, &headers);
    // The bound port: the configured one may be 0 (any free port).
    let port = relay.rtsp.local_addr().port();
    Json(
        relay
            .registry
            .all()
            .iter()
            .map(|c| {
                let s = CameraStats::of(c, now);
                let published = c.publish.snapshot();
                let sfu = match (published.state, published.session_id) {
                    (PublishState::Published, Some(session_id)) => Some(SfuEntry {
                        session_id,
                        tracks: published.tracks,
                    }),
                    _ => None,
                };
                CameraEntry {
                    sfu,
                    viewers: s.viewers,
                    rtsp_url: format!("rtsp://{host}:{port}/{}", s.id),
                    id: s.id,
                    name: s.name,
                    state: s.state,
                }
            })
            .collect(),
    )
}

/// The host RTSP clients should use: the RTSP listener's address if it is a specific one, else
/// the host the HTTP client reached us by.
fn rtsp_host(relay: &Relay, headers: &HeaderMap) -> String {
    let ip = relay.config.rtsp_addr.ip();
    if !ip.is_unspecified() {
        return bracket(ip);
    }
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.parse::<axum::http::uri::Authority>().ok())
        .map(|a| a.host().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| bracket(relay.http_addr.ip()))
}

fn bracket(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}
