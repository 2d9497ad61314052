//! Every default and every limit, in one place.
//!
//! Each constant says what it means and what happens at its limit, so that
//! `deploy/.env.example`, `camrelay check-config` and the code agree. A test
//! checks that the example file parses to exactly these values.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use crate::LogFormat;

// ---------------------------------------------------------------- general

/// `CAMRELAY_HTTP_ADDR`: viewer page, viewer API, stats, metrics and health,
/// on every interface.
pub const HTTP_ADDR: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 8080));

/// How long an HTTP connection may take to send a request head (request line and headers),
/// and how long a kept-alive connection may sit idle between requests, before it is closed.
/// Not a setting: browsers, probes and scrapers send a head at once, and a browser reconnects
/// by itself. It bounds what silent or half-sent connections hold (a task and a descriptor
/// each), so that they cannot pile up until the relay runs out of descriptors.
pub const HTTP_HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// How long an HTTP request's body (an SDP offer or answer, a Calls API document) may take to
/// arrive in full once its head has. A request that takes longer is answered 408 and its
/// connection closed. Not a setting: these bodies are a few kilobytes sent at once; the bound
/// keeps a peer that announces a body and then sends it slowly, or never, from holding a
/// connection and its task for as long as it likes.
pub const HTTP_BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest HTTP request body, in bytes: answered 413 beyond it. An SDP offer for a few
/// tracks is under 10 KB; the limit is axum's own default, which this check replaces.
pub const HTTP_MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// `CAMRELAY_RTSP_ADDR`: the local RTSP server, on every interface (8554 is
/// the customary unprivileged RTSP port).
pub const RTSP_ADDR: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 8554));

/// `CAMRELAY_LOG`: the `tracing` filter; `info` logs lifecycle events, not
/// packets.
pub const LOG: &str = "info";

/// `CAMRELAY_LOG_FORMAT`: human-readable lines.
pub const LOG_FORMAT: LogFormat = LogFormat::Text;

/// `CAMRELAY_ALWAYS_ON`: cameras are pulled on demand (a viewer or RTSP
/// client asks), which spends the Nest budget only on cameras someone watches.
pub const ALWAYS_ON: bool = false;

/// `CAMRELAY_IDLE_GRACE`: how long a camera stays up after its last client
/// leaves, so that a reload or a quick reconnect finds it live.
pub const IDLE_GRACE: Duration = Duration::from_secs(30);

/// Longest accepted `CAMRELAY_IDLE_GRACE`. A longer grace is always-on in
/// disguise (and keeps spending the Nest budget); use `CAMRELAY_ALWAYS_ON`.
pub const IDLE_GRACE_MAX: Duration = Duration::from_secs(60 * 60);

// ---------------------------------------------------------------- local RTSP server

/// `CAMRELAY_RTSP_UDP`: RTP over UDP is offered to the clients that ask for
/// it (lower latency, no head-of-line blocking on a lossy LAN). `false`
/// serves RTP interleaved on the RTSP TCP connection only, and a client's
/// UDP `SETUP` is answered 461 Unsupported Transport.
pub const RTSP_UDP: bool = true;

/// `CAMRELAY_RTSP_RTP_ADDR`: the UDP socket RTP leaves from, shared by every
/// UDP client (one socket, not a port pair per client, so a firewall needs
/// two ports in all).
pub const RTSP_RTP_ADDR: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 8000));

/// `CAMRELAY_RTSP_RTCP_ADDR`: the UDP socket client RTCP (receiver reports,
/// which also keep a UDP session alive) arrives at. Its port must differ from
/// the RTP port unless both ask for any free port (0).
pub const RTSP_RTCP_ADDR: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 8001));

/// `CAMRELAY_RTSP_SESSION_TIMEOUT`: a client session with neither a request
/// nor RTCP for this long is closed and its slot freed. It is announced in
/// the `Session` header (`;timeout=60`, RFC 2326's default), so well-behaved
/// clients send keep-alives in time. The same bound closes a connection
/// without a session that sends no request (one that only described a camera
/// would keep it wanted), and a client that takes no data (stopped or gone
/// without closing) while the server waits to write to it.
pub const RTSP_SESSION_TIMEOUT: Duration = Duration::from_secs(60);

/// Shortest accepted `CAMRELAY_RTSP_SESSION_TIMEOUT`: shorter closes clients
/// that keep alive at common intervals, or pause briefly.
pub const RTSP_SESSION_TIMEOUT_MIN: Duration = Duration::from_secs(10);

/// Longest accepted `CAMRELAY_RTSP_SESSION_TIMEOUT`: a vanished UDP client
/// keeps its slot (and its camera up) at most this long.
pub const RTSP_SESSION_TIMEOUT_MAX: Duration = Duration::from_secs(60 * 60);

/// `CAMRELAY_RTSP_MAX_CLIENTS`: client sessions in all, over every camera.
/// A `SETUP` beyond it is answered 453 Not Enough Bandwidth.
pub const RTSP_MAX_CLIENTS: usize = 1000;

/// `CAMRELAY_RTSP_MAX_CLIENTS_PER_CAMERA`: client sessions on one camera.
/// A `SETUP` beyond it is answered 453 Not Enough Bandwidth. Must not exceed
/// `CAMRELAY_RTSP_MAX_CLIENTS`; when unset, a lower `CAMRELAY_RTSP_MAX_CLIENTS`
/// caps this default.
pub const RTSP_MAX_CLIENTS_PER_CAMERA: usize = 500;

/// Smallest accepted client limit (`CAMRELAY_RTSP_MAX_CLIENTS`,
/// `CAMRELAY_RTSP_MAX_CLIENTS_PER_CAMERA`): zero would refuse every client.
pub const RTSP_CLIENTS_MIN: usize = 1;

/// Largest accepted client limit: far beyond what one relay's uplink can
/// carry; a larger value is a typo.
pub const RTSP_CLIENTS_MAX: usize = 100_000;

/// `CAMRELAY_RTSP_START_TIMEOUT`: how long a client's `DESCRIBE` waits for
/// an on-demand camera to start (a Nest stream to be generated, a camera to
/// answer) before it is answered 503 Service Unavailable.
pub const RTSP_START_TIMEOUT: Duration = Duration::from_secs(15);

/// Shortest accepted `CAMRELAY_RTSP_START_TIMEOUT`: less than a second does
/// not cover one camera's RTSP handshake.
pub const RTSP_START_TIMEOUT_MIN: Duration = Duration::from_secs(1);

/// Longest accepted `CAMRELAY_RTSP_START_TIMEOUT`: clients give up long
/// before this (most after 10 to 60 s).
pub const RTSP_START_TIMEOUT_MAX: Duration = Duration::from_secs(2 * 60);

// ---------------------------------------------------------------- camera ingest

/// `CAMRELAY_INGEST_TIMEOUT`: a camera session that delivers no media for
/// this long is considered dead, torn down and reconnected (with the backoff
/// below). Cameras send at least a frame a second, so 10 s rides out a
/// network hiccup without leaving viewers on a frozen picture for long.
pub const INGEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Shortest accepted `CAMRELAY_INGEST_TIMEOUT`: shorter would reconnect
/// low-frame-rate cameras that are merely slow.
pub const INGEST_TIMEOUT_MIN: Duration = Duration::from_secs(2);

/// Longest accepted `CAMRELAY_INGEST_TIMEOUT`: beyond this viewers watch a
/// frozen picture far too long before anything happens.
pub const INGEST_TIMEOUT_MAX: Duration = Duration::from_secs(5 * 60);

/// `CAMRELAY_INGEST_RETRY_INITIAL`: first delay before reconnecting to a
/// camera whose session failed or died; the delay doubles (with jitter) up
/// to `CAMRELAY_INGEST_RETRY_MAX`, and starts over after 30 s of media. A
/// session that delivered media is first retried at once (at most once per
/// 30 s), so a camera restarting or a Nest stream Google ended costs little.
pub const INGEST_RETRY_INITIAL: Duration = Duration::from_secs(1);

/// `CAMRELAY_INGEST_RETRY_MAX`: the cap of the reconnect backoff; a camera
/// that stays unreachable is retried this often, forever.
pub const INGEST_RETRY_MAX: Duration = Duration::from_secs(60);

/// Shortest accepted reconnect delay (`CAMRELAY_INGEST_RETRY_INITIAL`,
/// `CAMRELAY_INGEST_RETRY_MAX`): zero would reconnect in a tight loop.
pub const INGEST_RETRY_FLOOR: Duration = Duration::from_millis(100);

/// Longest accepted reconnect delay: a camera stays unwatchable at most this
/// long after its fault clears.
pub const INGEST_RETRY_CEILING: Duration = Duration::from_secs(60 * 60);

// `CAMRELAY_EXTRA_CA_FILE` has no default: without it, `rtsps://` cameras
// are verified against the built-in trust roots only.

// ---------------------------------------------------------------- static cameras

/// Longest camera id. The id is a URL path segment (`rtsp://host:8554/{id}`)
/// and part of variable names, so it stays short; longer ids are rejected.
pub const CAMERA_ID_MAX_LEN: usize = 64;

/// `CAMRELAY_CAMERA_<KEY>_TLS_VERIFY`: `rtsps://` cameras must present a
/// certificate that verifies. `false` accepts self-signed certificates (LAN
/// cameras); it is rejected on `rtsp://` cameras, where it would mean nothing.
pub const CAMERA_TLS_VERIFY: bool = true;

// ---------------------------------------------------------------- Nest

/// `CAMRELAY_NEST_API_URL`: Google's Smart Device Management API base URL.
pub const NEST_API_URL: &str = "https://smartdevicemanagement.googleapis.com/v1";

/// `CAMRELAY_NEST_TOKEN_URL`: Google's OAuth 2.0 token endpoint, used to
/// trade the refresh token for access tokens.
pub const NEST_TOKEN_URL: &str = "https://www.googleapis.com/oauth2/v4/token";

/// `CAMRELAY_NEST_QPM`: executeCommand calls per project and authorized user
/// per rolling minute, Google's published quota. When it is spent, new
/// streams wait or are refused ("at capacity") so that live ones can still be
/// extended.
pub const NEST_QPM: u32 = 10;

/// Smallest accepted `CAMRELAY_NEST_QPM`: below one command a minute no
/// stream could ever be extended.
pub const NEST_QPM_MIN: u32 = 1;

/// Largest accepted `CAMRELAY_NEST_QPM`: far above any quota Google grants; a
/// larger value is a typo, and the API would answer RESOURCE_EXHAUSTED.
pub const NEST_QPM_MAX: u32 = 1000;

/// `CAMRELAY_NEST_DEVICE_COMMAND_QPM`: calls per device per command (e.g.
/// ExtendRtspStream) per minute. At the limit that device's next command of
/// the same kind waits for the window.
pub const NEST_DEVICE_COMMAND_QPM: u32 = 5;

/// `CAMRELAY_NEST_DEVICE_QPH`: calls per device per hour, all commands
/// together. At the limit the device's commands wait for the hourly window;
/// a stream that cannot be extended expires.
pub const NEST_DEVICE_QPH: u32 = 100;

/// Smallest accepted per-device limit (`CAMRELAY_NEST_DEVICE_COMMAND_QPM`,
/// `CAMRELAY_NEST_DEVICE_QPH`): zero would forbid every command.
pub const NEST_DEVICE_LIMIT_MIN: u32 = 1;

/// `CAMRELAY_NEST_STREAM_LIFETIME`: expected lifetime of a generated stream
/// (Google says five minutes), used by admission control to plan extensions.
/// The real expiry is read from every response.
pub const NEST_STREAM_LIFETIME: Duration = Duration::from_secs(5 * 60);

/// Shortest accepted `CAMRELAY_NEST_STREAM_LIFETIME`: shorter would plan more
/// extensions than the per-device limits allow.
pub const NEST_STREAM_LIFETIME_MIN: Duration = Duration::from_secs(30);

/// Longest accepted `CAMRELAY_NEST_STREAM_LIFETIME`: longer would admit more
/// streams than the budget can keep alive if Google keeps its five minutes.
pub const NEST_STREAM_LIFETIME_MAX: Duration = Duration::from_secs(60 * 60);

/// `CAMRELAY_NEST_WINDOW_GUARD`: added to the 60 s rate window to absorb
/// clock and network jitter between us and Google, so a command sent exactly
/// one window later is not counted in the previous one.
pub const NEST_WINDOW_GUARD: Duration = Duration::from_secs(1);

/// Longest accepted `CAMRELAY_NEST_WINDOW_GUARD`: more than this wastes a
/// sixth of the budget for no gain.
pub const NEST_WINDOW_GUARD_MAX: Duration = Duration::from_secs(10);

/// `CAMRELAY_NEST_BUDGET_RESERVE`: commands per minute that admission control
/// keeps free for retries and for viewers waiting on a new stream. Must stay
/// below `CAMRELAY_NEST_QPM`, or no stream could ever be admitted.
pub const NEST_BUDGET_RESERVE: f64 = 0.5;

/// `CAMRELAY_NEST_EXTEND_MIN_MARGIN`: the floor of the learned margin before
/// expiry at which a stream is extended. Too small and an extension that
/// waits in the queue arrives after the stream died.
pub const NEST_EXTEND_MIN_MARGIN: Duration = Duration::from_secs(3);

/// Shortest accepted `CAMRELAY_NEST_EXTEND_MIN_MARGIN`: less than a second
/// does not cover one request's round trip.
pub const NEST_EXTEND_MIN_MARGIN_MIN: Duration = Duration::from_secs(1);

/// Longest accepted `CAMRELAY_NEST_EXTEND_MIN_MARGIN`: beyond this every
/// stream is extended so early that extensions eat the budget.
pub const NEST_EXTEND_MIN_MARGIN_MAX: Duration = Duration::from_secs(2 * 60);

/// `CAMRELAY_NEST_REQUEST_TIMEOUT`: one HTTP request to Google (token or
/// command). A request that takes longer is abandoned and counts as failed
/// (its budget slot stays spent).
pub const NEST_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Shortest accepted `CAMRELAY_NEST_REQUEST_TIMEOUT`.
pub const NEST_REQUEST_TIMEOUT_MIN: Duration = Duration::from_secs(1);

/// Longest accepted `CAMRELAY_NEST_REQUEST_TIMEOUT`: a stream expires in
/// minutes, waiting longer for one answer would let it die.
pub const NEST_REQUEST_TIMEOUT_MAX: Duration = Duration::from_secs(2 * 60);

/// `CAMRELAY_NEST_MAX_IN_FLIGHT`: commands executing at once; further ones
/// wait in the queue.
pub const NEST_MAX_IN_FLIGHT: u32 = 4;

/// Smallest accepted `CAMRELAY_NEST_MAX_IN_FLIGHT`.
pub const NEST_MAX_IN_FLIGHT_MIN: u32 = 1;

/// Largest accepted `CAMRELAY_NEST_MAX_IN_FLIGHT`: the budget is spent long
/// before more commands could usefully run in parallel.
pub const NEST_MAX_IN_FLIGHT_MAX: u32 = 64;

/// `CAMRELAY_NEST_RETRY_INITIAL`: first delay before re-generating a failed
/// stream; the delay doubles (with jitter) up to `CAMRELAY_NEST_RETRY_MAX`.
pub const NEST_RETRY_INITIAL: Duration = Duration::from_secs(2);

/// `CAMRELAY_NEST_RETRY_MAX`: the cap of the retry backoff; a camera that
/// keeps failing is retried this often, forever.
pub const NEST_RETRY_MAX: Duration = Duration::from_secs(60);

/// Shortest accepted retry delay (`CAMRELAY_NEST_RETRY_INITIAL`): zero would
/// retry in a tight loop.
pub const NEST_RETRY_FLOOR: Duration = Duration::from_millis(100);

/// Longest accepted retry delay (`CAMRELAY_NEST_RETRY_MAX`): a camera stays
/// unwatchable at most this long after its fault clears.
pub const NEST_RETRY_CEILING: Duration = Duration::from_secs(60 * 60);

/// `CAMRELAY_NEST_DEGRADED_AFTER`: consecutive failures after which a camera
/// is shown as degraded in stats and the API. It keeps retrying.
pub const NEST_DEGRADED_AFTER: u32 = 5;

/// Smallest accepted `CAMRELAY_NEST_DEGRADED_AFTER`: one failure.
pub const NEST_DEGRADED_AFTER_MIN: u32 = 1;

/// `CAMRELAY_NEST_DISCOVERY_INTERVAL`: how often the device list is re-read,
/// so that new cameras appear and removed ones go away. Listing devices does
/// not spend the command budget.
pub const NEST_DISCOVERY_INTERVAL: Duration = Duration::from_secs(10 * 60);

/// Shortest accepted `CAMRELAY_NEST_DISCOVERY_INTERVAL`: the device list
/// changes rarely, and it has its own (smaller) read quota.
pub const NEST_DISCOVERY_INTERVAL_MIN: Duration = Duration::from_secs(60);

/// Longest accepted `CAMRELAY_NEST_DISCOVERY_INTERVAL`: a new camera appears
/// at the latest after this long.
pub const NEST_DISCOVERY_INTERVAL_MAX: Duration = Duration::from_secs(24 * 60 * 60);

// ---------------------------------------------------------------- SFU

/// `CAMRELAY_CALLS_API_URL`: the Cloudflare Calls API base URL.
pub const CALLS_API_URL: &str = "https://rtc.live.cloudflare.com/v1";

/// The placeholder that `CAMRELAY_WHIP_URL` must contain; it is replaced by
/// the camera id to form each camera's WHIP endpoint.
pub const WHIP_CAMERA_PLACEHOLDER: &str = "{camera_id}";

/// The embedded SFU's app id when `CAMRELAY_CALLS_APP_ID` is not set.
pub const EMBEDDED_APP_ID: &str = "camrelay";

/// `CAMRELAY_SFU_UDP_ADDR`: the one UDP socket of the embedded SFU (every
/// publisher and viewer shares it; peers are told apart by their ICE
/// credentials and addresses). 8189 is the WebRTC port MediaMTX made common.
pub const SFU_UDP_ADDR: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 8189));

/// `CAMRELAY_WEBRTC_CONNECT_TIMEOUT`: how long a publisher waits for ICE and
/// DTLS to connect before it gives the session up and starts a new one. The
/// Calls API has no trickle ICE, so candidates are all known up front and a
/// healthy path connects within a second or two.
pub const WEBRTC_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Shortest accepted `CAMRELAY_WEBRTC_CONNECT_TIMEOUT`.
pub const WEBRTC_CONNECT_TIMEOUT_MIN: Duration = Duration::from_secs(1);

/// Longest accepted `CAMRELAY_WEBRTC_CONNECT_TIMEOUT`.
pub const WEBRTC_CONNECT_TIMEOUT_MAX: Duration = Duration::from_secs(120);

/// One HTTP request to the SFU's API (Calls or WHIP).
pub const SFU_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// First wait before a publisher replaces a failed SFU session.
pub const PUBLISH_RETRY_INITIAL: Duration = Duration::from_secs(1);

/// Longest wait between a publisher's attempts at a new SFU session.
pub const PUBLISH_RETRY_MAX: Duration = Duration::from_secs(30);

/// `CAMRELAY_VIEWER_TIMEOUT`: a viewer whose page sent no heartbeat for this
/// long (closed tab, lost network) is released, and with it its demand on
/// the camera. The page beats every third of it, so two lost beats are
/// forgiven.
pub const VIEWER_TIMEOUT: Duration = Duration::from_secs(30);

/// Shortest accepted `CAMRELAY_VIEWER_TIMEOUT`: the page must be able to
/// beat a few times within it.
pub const VIEWER_TIMEOUT_MIN: Duration = Duration::from_secs(3);

/// Longest accepted `CAMRELAY_VIEWER_TIMEOUT`: beyond this a closed tab
/// keeps a camera (and its Nest budget) busy for too long.
pub const VIEWER_TIMEOUT_MAX: Duration = Duration::from_secs(10 * 60);

/// `CAMRELAY_MAX_VIEWERS`: viewers the relay serves at once over all
/// cameras; one more gets 503. Each costs the relay a little memory and one
/// SFU session (the SFU carries the media), so this guards against runaway
/// pages rather than load.
pub const MAX_VIEWERS: usize = 1000;

/// Smallest accepted `CAMRELAY_MAX_VIEWERS`.
pub const MAX_VIEWERS_MIN: usize = 1;

/// Largest accepted `CAMRELAY_MAX_VIEWERS`.
pub const MAX_VIEWERS_MAX: usize = 1_000_000;

/// A watch waits for the live camera's tracks to be published for
/// `CAMRELAY_WEBRTC_CONNECT_TIMEOUT` (the publisher's signaling, ICE and
/// DTLS) plus this margin, which lets a first failed attempt be retried
/// (the publisher's first retry comes after [`PUBLISH_RETRY_INITIAL`]).
pub const WATCH_PUBLISH_MARGIN: Duration = Duration::from_secs(5);

/// How often the relay asks the SFU whether it answers (for `/readyz`). One
/// cheap request (a session that does not exist) per interval.
pub const SFU_CHECK_INTERVAL: Duration = Duration::from_secs(30);
