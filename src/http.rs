//! HTTP endpoints: health and readiness probes, the `/stats` document, and the camera list.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use bytes::BytesMut;
use camrelay_config::defaults;
use futures_util::StreamExt;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
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

/// How long to wait after a failed accept (out of descriptors, say) before the next.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

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
    let timeouts = Timeouts {
        header: defaults::HTTP_HEADER_TIMEOUT,
        body: defaults::HTTP_BODY_TIMEOUT,
    };
    serve_with_timeout(listener, app, timeouts, shutdown).await;
}

/// How long a connection may take to send each part of a request.
#[derive(Debug, Clone, Copy)]
struct Timeouts {
    /// The request head, and the idle time between kept-alive requests.
    header: Duration,
    /// The whole body, once the head is in.
    body: Duration,
}

/// Serves HTTP/1.1 on `listener` until `shutdown`, then lets requests in flight finish.
///
/// A connection that does not send a complete request head within `timeouts.header`, whether
/// new or kept alive after a response, is closed: `axum::serve` has no such bound, so silent
/// or slowly-sending connections would stay open for as long as their peers liked. A request
/// whose body does not arrive within `timeouts.body` is answered 408 and its connection closed
/// ([`read_body_within`]).
async fn serve_with_timeout(
    listener: TcpListener,
    app: Router,
    timeouts: Timeouts,
    shutdown: CancellationToken,
) {
    let app = app.layer(middleware::from_fn_with_state(
        timeouts.body,
        read_body_within,
    ));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(timeouts.header);
    let graceful = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors or similar: back off briefly instead of spinning.
                tracing::warn!(error = %e, "HTTP accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let connection =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "HTTP connection ended");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Reads a request's whole body, at most [`defaults::HTTP_MAX_BODY_BYTES`], within `limit` of
/// its head, then hands the request on with the body in memory. hyper bounds only the head in
/// time, so without this a peer that announces a body and sends it slowly (or never) would
/// hold its connection and a handler for as long as it liked. A late body gets 408, an
/// oversized one 413, and both close the connection: what is left of the body is unread.
async fn read_body_within(
    State(limit): State<Duration>,
    request: axum::extract::Request,
    next: middleware::Next,
) -> Response {
    let deadline = Instant::now() + limit;
    let (parts, body) = request.into_parts();
    let announced = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > defaults::HTTP_MAX_BODY_BYTES as u64) {
        return closing(StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n");
    }
    let mut frames = body.into_data_stream();
    let mut buffered = BytesMut::new();
    loop {
        match tokio::time::timeout_at(deadline, frames.next()).await {
            Ok(None) => break,
            Ok(Some(Ok(chunk))) => {
                if buffered.len() + chunk.len() > defaults::HTTP_MAX_BODY_BYTES {
                    return closing(StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n");
                }
                buffered.extend_from_slice(&chunk);
            }
            Ok(Some(Err(e))) => {
                tracing::debug!(error = %e, "HTTP request body unreadable");
                return closing(StatusCode::BAD_REQUEST, "request body unreadable\n");
            }
            Err(_) => {
                tracing::debug!(received = buffered.len(), "HTTP request body too slow");
                return closing(
                    StatusCode::REQUEST_TIMEOUT,
                    "request body not received in time\n",
                );
            }
        }
    }
    let request =
        axum::extract::Request::from_parts(parts, axum::body::Body::from(buffered.freeze()));
    next.run(request).await
}

/// An error response after which the connection is closed (RFC 9112 §9.6).
fn closing(status: StatusCode, message: &'static str) -> Response {
    (status, [(header::CONNECTION, "close")], message).into_response()
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::future::Future;

    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::task::JoinHandle;

    use super::*;

    /// Short, so that the test takes a second or two.
    const TIMEOUT: Duration = Duration::from_millis(400);
    /// Bound on every wait: generous, never reached when the server works.
    const PATIENCE: Duration = Duration::from_secs(10);
    /// Timer slack allowed below the timeout.
    const SLACK: Duration = Duration::from_millis(50);
    const TIMEOUTS: Timeouts = Timeouts {
        header: TIMEOUT,
        body: TIMEOUT,
    };
    const REQUEST: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: relay\r\n\r\n";

    async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
        tokio::time::timeout(PATIENCE, future)
            .await
            .unwrap_or_else(|_| panic!("{what}: nothing within {PATIENCE:?}"))
    }

    /// Reads until the server closes the connection (or resets it, after a write of ours it
    /// did not read); what it sent.
    async fn until_closed(stream: &mut (impl AsyncRead + Unpin)) -> Vec<u8> {
        let mut got = Vec::new();
        let _closed_or_reset = within("the server closes", stream.read_to_end(&mut got)).await;
        got
    }

    /// Serves `app` on a free loopback port with [`TIMEOUTS`]: its address, what stops it, and
    /// the server's task.
    async fn serve_app(app: Router) -> (std::net::SocketAddr, CancellationToken, JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve_with_timeout(
            listener,
            app,
            TIMEOUTS,
            shutdown.clone(),
        ));
        (addr, shutdown, server)
    }

    /// Reads one response whose body ends with `ending` (a short body, so one read after the
    /// head suffices).
    async fn response(stream: &mut TcpStream, ending: &str) -> String {
        let mut buf = vec![0u8; 1024];
        let mut got = String::new();
        while !got.ends_with(ending) {
            let n = within("a response", stream.read(&mut buf)).await.unwrap();
            assert!(n > 0, "closed before the response ended: {got:?}");
            got.push_str(std::str::from_utf8(&buf[..n]).unwrap());
        }
        got
    }

    #[tokio::test]
    async fn silent_idle_and_dripping_connections_are_closed_after_the_header_timeout() {
        let (addr, shutdown, server) =
            serve_app(Router::new().route("/healthz", get(healthz))).await;

        // A connection that never sends a byte.
        let mut silent = TcpStream::connect(addr).await.unwrap();
        let silent_since = Instant::now();
        // One that sends a request head a byte at a time, never finishing it (slowloris).
        let mut dripping = TcpStream::connect(addr).await.unwrap();
        let dripping_since = Instant::now();
        let drip = tokio::spawn(async move {
            for byte in b"GET /healthz HTTP/1.1\r\nHost: relay\r\nX-Padding: "
                .iter()
                .cycle()
            {
                if dripping.write_all(&[*byte]).await.is_err() {
                    break;
                }
                tokio::time::sleep(TIMEOUT / 8).await;
            }
            dripping
        });
        // A client that makes two requests on one connection, then goes quiet.
        let mut kept_alive = TcpStream::connect(addr).await.unwrap();
        kept_alive.write_all(REQUEST).await.unwrap();
        assert!(
            response(&mut kept_alive, "ok\n")
                .await
                .starts_with("HTTP/1.1 200")
        );
        tokio::time::sleep(TIMEOUT / 2).await;
        kept_alive.write_all(REQUEST).await.unwrap();
        assert!(
            response(&mut kept_alive, "ok\n")
                .await
                .starts_with("HTTP/1.1 200")
        );
        let idle_since = Instant::now();

        assert_eq!(until_closed(&mut silent).await, b"");
        assert!(silent_since.elapsed() + SLACK >= TIMEOUT);
        let mut dripping = within("the drip stops", drip).await.unwrap();
        let dripped_for = dripping_since.elapsed();
        assert!(dripped_for + SLACK >= TIMEOUT);
        assert!(
            dripped_for < TIMEOUT * 3,
            "a dripping head held its connection for {dripped_for:?}"
        );
        until_closed(&mut dripping).await;
        until_closed(&mut kept_alive).await;
        assert!(idle_since.elapsed() + SLACK >= TIMEOUT);

        // The server serves on, and stops at shutdown although a connection is open.
        let mut fresh = TcpStream::connect(addr).await.unwrap();
        fresh.write_all(REQUEST).await.unwrap();
        assert!(
            response(&mut fresh, "ok\n")
                .await
                .starts_with("HTTP/1.1 200")
        );
        shutdown.cancel();
        within("the server stops", server).await.unwrap();
        until_closed(&mut fresh).await;
    }

    /// A POST of `len` announced bytes to `/echo`.
    fn post_head(len: usize) -> Vec<u8> {
        format!("POST /echo HTTP/1.1\r\nHost: relay\r\nContent-Length: {len}\r\n\r\n").into_bytes()
    }

    #[tokio::test]
    async fn slow_and_oversized_request_bodies_are_refused_and_their_connections_closed() {
        let (addr, shutdown, server) = serve_app(Router::new().route(
            "/echo",
            post(|body: axum::body::Bytes| async move { format!("got {}\n", body.len()) }),
        ))
        .await;

        // A body sent in part, then nothing.
        let mut stalled = TcpStream::connect(addr).await.unwrap();
        stalled.write_all(&post_head(100)).await.unwrap();
        stalled.write_all(&[b'x'; 10]).await.unwrap();
        let stalled_since = Instant::now();
        // A body sent a byte at a time, each well within the timeout of the last.
        let dripping = TcpStream::connect(addr).await.unwrap();
        let (mut dripping_reader, mut dripping_writer) = dripping.into_split();
        dripping_writer.write_all(&post_head(1000)).await.unwrap();
        let dripping_since = Instant::now();
        let drip = tokio::spawn(async move {
            while dripping_writer.write_all(b"x").await.is_ok() {
                tokio::time::sleep(TIMEOUT / 8).await;
            }
        });
        // A body announced over the limit, and one sent chunked over it.
        let mut announced = TcpStream::connect(addr).await.unwrap();
        announced
            .write_all(&post_head(defaults::HTTP_MAX_BODY_BYTES + 1))
            .await
            .unwrap();
        let chunked = TcpStream::connect(addr).await.unwrap();
        let (mut chunked_reader, mut chunked_writer) = chunked.into_split();
        let chunk = vec![b'x'; 64 * 1024];
        let chunks = tokio::spawn(async move {
            let head = b"POST /echo HTTP/1.1\r\nHost: relay\r\nTransfer-Encoding: chunked\r\n\r\n";
            chunked_writer.write_all(head).await?;
            loop {
                chunked_writer
                    .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                    .await?;
                chunked_writer.write_all(&chunk).await?;
                chunked_writer.write_all(b"\r\n").await?;
            }
            #[allow(unreachable_code)]
            Ok::<_, std::io::Error>(())
        });

        let answer = String::from_utf8(until_closed(&mut announced).await).unwrap();
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(answer.contains("connection: close"), "{answer}");
        let answer = String::from_utf8(until_closed(&mut chunked_reader).await).unwrap();
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        // The writer stops on the closed connection.
        assert!(
            within("the chunked writer stops", chunks)
                .await
                .unwrap()
                .is_err()
        );

        let answer = String::from_utf8(until_closed(&mut stalled).await).unwrap();
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("connection: close"), "{answer}");
        assert!(stalled_since.elapsed() + SLACK >= TIMEOUT);
        let answer = String::from_utf8(until_closed(&mut dripping_reader).await).unwrap();
        let dripped_for = dripping_since.elapsed();
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(dripped_for + SLACK >= TIMEOUT);
        assert!(
            dripped_for < TIMEOUT * 3,
            "a dripping body held its connection for {dripped_for:?}"
        );
        within("the drip stops", drip).await.unwrap();

        // A body sent at once still reaches its handler, on a connection kept alive after it.
        let mut fine = TcpStream::connect(addr).await.unwrap();
        for _ in 0..2 {
            fine.write_all(&post_head(5)).await.unwrap();
            fine.write_all(b"hello").await.unwrap();
            let got = response(&mut fine, "got 5\n").await;
            assert!(got.starts_with("HTTP/1.1 200"), "{got}");
        }
        shutdown.cancel();
        within("the server stops", server).await.unwrap();
    }
}
