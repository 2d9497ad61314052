//! The local RTSP server's settings (its TCP address is
//! `CAMRELAY_RTSP_ADDR`, with the general settings): RTP over UDP, client
//! limits and timeouts, and optional client authentication.
//!
//! The UDP sockets are checked even when UDP is off, so that turning it on
//! does not uncover old typos; only the RTP/RTCP port clash is left alone
//! then, because the sockets are not bound. The credentials follow the Nest
//! rule: both or neither, because one alone is a half-done setting that would
//! otherwise leave the server open.

use std::net::SocketAddr;
use std::time::Duration;

use secrecy::SecretString;

use crate::defaults as d;
use crate::parse::{self, Check, SecretKind};
use crate::vars::{RawVars, var};

/// The local RTSP server.
#[derive(Debug, Clone)]
pub struct RtspConfig {
    /// `CAMRELAY_RTSP_UDP` and its sockets: `Some` when RTP over UDP is
    /// offered, `None` for TCP interleaved only.
    pub udp: Option<RtspUdp>,
    /// `CAMRELAY_RTSP_SESSION_TIMEOUT`: a session with neither a request nor
    /// RTCP for this long is closed (and a connection without a session and
    /// without requests, or one that takes no data).
    pub session_timeout: Duration,
    /// `CAMRELAY_RTSP_MAX_CLIENTS`: sessions in all; beyond, 453.
    pub max_clients: usize,
    /// `CAMRELAY_RTSP_MAX_CLIENTS_PER_CAMERA`: sessions on one camera;
    /// beyond, 453. At most `max_clients` (and when unset, the default
    /// capped at `max_clients`).
    pub max_clients_per_camera: usize,
    /// `CAMRELAY_RTSP_USERNAME` and `CAMRELAY_RTSP_PASSWORD`: when set,
    /// clients must authenticate (Basic or Digest).
    pub credentials: Option<RtspCredentials>,
    /// `CAMRELAY_RTSP_START_TIMEOUT`: how long a `DESCRIBE` waits for an
    /// on-demand camera to start; then 503.
    pub start_timeout: Duration,
}

impl Default for RtspConfig {
    /// The defaults: UDP on at the default sockets, no authentication.
    fn default() -> Self {
        Self {
            udp: Some(RtspUdp::default()),
            session_timeout: d::RTSP_SESSION_TIMEOUT,
            max_clients: d::RTSP_MAX_CLIENTS,
            max_clients_per_camera: d::RTSP_MAX_CLIENTS_PER_CAMERA,
            credentials: None,
            start_timeout: d::RTSP_START_TIMEOUT,
        }
    }
}

/// The UDP sockets of RTP over UDP, shared by every UDP client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtspUdp {
    /// `CAMRELAY_RTSP_RTP_ADDR`: RTP leaves from here.
    pub rtp_addr: SocketAddr,
    /// `CAMRELAY_RTSP_RTCP_ADDR`: client RTCP arrives here. Its port differs
    /// from `rtp_addr`'s unless either is 0 (any free port).
    pub rtcp_addr: SocketAddr,
}

impl Default for RtspUdp {
    fn default() -> Self {
        Self {
            rtp_addr: d::RTSP_RTP_ADDR,
            rtcp_addr: d::RTSP_RTCP_ADDR,
        }
    }
}

/// The one user RTSP clients authenticate as. `Debug` redacts the password.
#[derive(Debug, Clone)]
pub struct RtspCredentials {
    /// `CAMRELAY_RTSP_USERNAME`: no `:`, `"`, `\` or control characters,
    /// which Basic and Digest cannot carry reliably.
    pub username: String,
    /// `CAMRELAY_RTSP_PASSWORD`, taken as given (not trimmed).
    pub password: SecretString,
}

/// Parses the RTSP server section; `None` means a recorded problem.
pub(crate) fn parse(check: &mut Check, raw: &RawVars) -> Option<RtspConfig> {
    let udp = udp(check, raw);
    let session_timeout = check.value(
        var::RTSP_SESSION_TIMEOUT,
        raw.rtsp_session_timeout.as_deref(),
        d::RTSP_SESSION_TIMEOUT,
        parse::duration_in(d::RTSP_SESSION_TIMEOUT_MIN, d::RTSP_SESSION_TIMEOUT_MAX),
    );
    let max_clients = check.value(
        var::RTSP_MAX_CLIENTS,
        raw.rtsp_max_clients.as_deref(),
        d::RTSP_MAX_CLIENTS,
        parse::usize_in(d::RTSP_CLIENTS_MIN, d::RTSP_CLIENTS_MAX),
    );
    let max_clients_per_camera = check.value(
        var::RTSP_MAX_CLIENTS_PER_CAMERA,
        raw.rtsp_max_clients_per_camera.as_deref(),
        per_camera_default(max_clients.unwrap_or(d::RTSP_MAX_CLIENTS)),
        parse::usize_in(d::RTSP_CLIENTS_MIN, d::RTSP_CLIENTS_MAX),
    );
    let max_clients_per_camera = max_clients_per_camera.and_then(|per_camera| match max_clients {
        Some(max) if per_camera > max => {
            let message = format!(
                "{per_camera} must not exceed CAMRELAY_RTSP_MAX_CLIENTS ({max}): \
                 one camera cannot have more clients than all cameras together"
            );
            check.error(var::RTSP_MAX_CLIENTS_PER_CAMERA, message);
            None
        }
        _ => Some(per_camera),
    });
    let credentials = credentials(check, raw);
    let start_timeout = check.value(
        var::RTSP_START_TIMEOUT,
        raw.rtsp_start_timeout.as_deref(),
        d::RTSP_START_TIMEOUT,
        parse::duration_in(d::RTSP_START_TIMEOUT_MIN, d::RTSP_START_TIMEOUT_MAX),
    );
    Some(RtspConfig {
        udp: udp?,
        session_timeout: session_timeout?,
        max_clients: max_clients?,
        max_clients_per_camera: max_clients_per_camera?,
        credentials: credentials?,
        start_timeout: start_timeout?,
    })
}

/// `CAMRELAY_RTSP_MAX_CLIENTS_PER_CAMERA` when it is unset: the documented
/// default, or `max_clients` if that is lower (lowering the total alone must
/// not be an error about a variable the operator never set).
pub(crate) fn per_camera_default(max_clients: usize) -> usize {
    d::RTSP_MAX_CLIENTS_PER_CAMERA.min(max_clients)
}

/// `Some(None)`: UDP off; `None`: a recorded problem.
fn udp(check: &mut Check, raw: &RawVars) -> Option<Option<RtspUdp>> {
    let on = check.value(
        var::RTSP_UDP,
        raw.rtsp_udp.as_deref(),
        d::RTSP_UDP,
        parse::boolean,
    );
    let rtp_addr = check.value(
        var::RTSP_RTP_ADDR,
        raw.rtsp_rtp_addr.as_deref(),
        d::RTSP_RTP_ADDR,
        parse::socket_addr,
    );
    let rtcp_addr = check.value(
        var::RTSP_RTCP_ADDR,
        raw.rtsp_rtcp_addr.as_deref(),
        d::RTSP_RTCP_ADDR,
        parse::socket_addr,
    );
    // Ports, not addresses: two UDP sockets on one port clash as soon as one
    // of them is a wildcard, and clients send RTCP to the server they
    // connected to whatever the IP. Port 0 asks for a free port.
    let rtcp_addr = rtcp_addr.and_then(|rtcp| match rtp_addr {
        Some(rtp) if on == Some(true) && rtp.port() == rtcp.port() && rtcp.port() != 0 => {
            let message = format!(
                "{rtcp} has the port of CAMRELAY_RTSP_RTP_ADDR ({rtp}); RTP and RTCP need \
                 different ports (or 0 for any free port)"
            );
            check.error(var::RTSP_RTCP_ADDR, message);
            None
        }
        _ => Some(rtcp),
    });
    if !on? {
        return Some(None);
    }
    Some(Some(RtspUdp {
        rtp_addr: rtp_addr?,
        rtcp_addr: rtcp_addr?,
    }))
}

/// `Some(None)`: no authentication; `None`: a recorded problem.
fn credentials(check: &mut Check, raw: &RawVars) -> Option<Option<RtspCredentials>> {
    let username = check.optional(var::RTSP_USERNAME, raw.rtsp_username.as_deref(), username);
    let password = check.secret(
        var::RTSP_PASSWORD,
        raw.rtsp_password.as_deref(),
        SecretKind::Password,
    );
    let pair = [
        (var::RTSP_USERNAME, raw.rtsp_username.is_some()),
        (var::RTSP_PASSWORD, raw.rtsp_password.is_some()),
    ];
    match pair {
        [(_, false), (_, false)] => Some(None),
        [(_, true), (_, true)] => Some(Some(RtspCredentials {
            username: username?,
            password: password?,
        })),
        [(set, true), (missing, false)] | [(missing, false), (set, true)] => {
            let message = format!(
                "is not set, but {set} is: RTSP client authentication needs both a user \
                 name and a password, or neither"
            );
            check.error(missing, message);
            None
        }
    }
}

/// An RTSP user name: Basic puts it before a `:`, Digest in a quoted string.
fn username(value: &str) -> Result<String, String> {
    if value.contains([':', '"', '\\']) || value.contains(char::is_control) {
        Err(format!(
            "{value:?} is not usable as an RTSP user name (it must not contain ':', '\"', \
             '\\' or control characters)"
        ))
    } else {
        Ok(value.to_owned())
    }
}
