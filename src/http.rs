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

/// The viewers' endpoints: the page, the viewer API and the embedded SFU's Calls API.
pub fn viewer_router(relay: Arc<Relay>) -> Router {
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
        .route_layer(middleware::from_fn_with_state(
            (Arc::clone(&auth), Guard::Api),
            viewer_api::authenticate,
        ));
    let page = Router::new().route("/", get(viewer_api::page)).route_layer(
        middleware::from_fn_with_state((auth, Guard::Page), viewer_api::authenticate),
    );
    let mut router = Router::new().merge(api).merge(page);
    if let Some(api) = relay.sfu.as_ref().and_then(|s| s.embedded.clone()) {
        router = router.nest(crate::sfu::api::BASE_PATH, crate::sfu::api::router(api));
    }
    router.with_state(relay)
}

/// The operator's endpoints: probes (always open), `/stats` and `/metrics` (behind
/// `CAMRELAY_ADMIN_TOKEN` when set).
pub fn operator_router(relay: Arc<Relay>) -> Router {
    let token = Arc::new(relay.config.admin.token.clone());
    let guarded = Router::new()
        .route("/stats", get(stats))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(token, admin_auth));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(guarded)
        .with_state(relay)
}

/// Every endpoint on one listener.
pub fn router(relay: Arc<Relay>) -> Router {
    viewer_router(Arc::clone(&relay)).merge(operator_router(relay))
}

/// Serves until `shutdown`: everything on `listener`, or the operator's endpoints on `admin`
/// when the operator gave them a listener of their own.
pub async fn serve(
    listener: TcpListener,
    admin: Option<TcpListener>,
    relay: Arc<Relay>,
    shutdown: CancellationToken,
) {
    let Some(admin) = admin else {
        return serve_one(listener, router(relay), shutdown).await;
    };
    let viewers = serve_one(
        listener,
        viewer_router(Arc::clone(&relay)),
        shutdown.clone(),
    );
    let operators = serve_one(admin, operator_router(relay), shutdown);
    tokio::join!(viewers, operators);
}

async fn serve_one(listener: TcpListener, app: Router, shutdown: CancellationToken) {
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "HTTP server failed");
    }
}

/// Refuses `/stats` and `/metrics` without the admin token, when one is set.
async fn admin_auth(
    State(token): State<Arc<Option<secrecy::SecretString>>>,
    request: axum::extract::Request,
    next: middleware::Next,
) -> Response {
    use secrecy::ExposeSecret;
    let Some(token) = token.as_ref() else {
        return next.run(request).await;
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        });
    if given
        .is_some_and(|g| crate::viewer::api::same(token.expose_secret().as_bytes(), g.as_bytes()))
    {
        return next.run(request).await;
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer realm=\"camrelay-admin\"")],
        "not authorized: send Authorization: Bearer <CAMRELAY_ADMIN_TOKEN>\n",
    )
        .into_response()
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(relay): State<Arc<Relay>>) -> Response {
    match relay.readiness() {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(reasons) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", reasons.join("; ")),
        )
            .into_response(),
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
