//! Where the relay publishes WebRTC: Cloudflare Calls, the embedded SFU, a
//! WHIP endpoint, or nowhere.
//!
//! The default follows the credentials: an app id means the operator signed
//! up for Cloudflare Calls, anything else gets the embedded SFU so that the
//! viewer page works out of the box. All values are checked whichever SFU
//! is selected, so that switching SFUs does not uncover old typos.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use secrecy::SecretString;
use url::Url;

use crate::defaults as d;
use crate::parse::{self, Check, SecretKind};
use crate::vars::{RawVars, var};

/// The selected SFU and what it needs.
#[derive(Debug, Clone)]
pub enum SfuConfig {
    /// Cloudflare Calls (or anything speaking its API).
    Cloudflare {
        /// Calls app id.
        app_id: String,
        /// Calls app secret (bearer token); never sent to browsers.
        app_secret: SecretString,
        /// API base URL.
        api_url: Url,
    },
    /// The relay serves the Calls API itself (self-hosting, demo, tests).
    Embedded {
        /// App id of the embedded API (`CAMRELAY_CALLS_APP_ID`, default
        /// [`d::EMBEDDED_APP_ID`]).
        app_id: String,
        /// Its bearer secret (`CAMRELAY_CALLS_APP_SECRET`); unset means a
        /// random one per process, which only the relay itself knows.
        app_secret: Option<SecretString>,
    },
    /// Publish each camera to a WHIP endpoint.
    Whip {
        /// Endpoint URL with `{camera_id}` where the camera id goes.
        url_template: String,
        /// Optional bearer token.
        token: Option<SecretString>,
    },
    /// No WebRTC; RTSP only.
    Off,
}

impl SfuConfig {
    /// The `CAMRELAY_SFU` value selecting this SFU.
    pub fn kind(&self) -> SfuKind {
        match self {
            Self::Cloudflare { .. } => SfuKind::Cloudflare,
            Self::Embedded { .. } => SfuKind::Embedded,
            Self::Whip { .. } => SfuKind::Whip,
            Self::Off => SfuKind::Off,
        }
    }
}

/// The values of `CAMRELAY_SFU`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SfuKind {
    /// `cloudflare`
    Cloudflare,
    /// `embedded`
    Embedded,
    /// `whip`
    Whip,
    /// `off`
    Off,
}

impl SfuKind {
    /// Every kind, in documentation order.
    pub const ALL: [Self; 4] = [Self::Cloudflare, Self::Embedded, Self::Whip, Self::Off];

    /// The `CAMRELAY_SFU` spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cloudflare => "cloudflare",
            Self::Embedded => "embedded",
            Self::Whip => "whip",
            Self::Off => "off",
        }
    }

    fn parse(value: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str().eq_ignore_ascii_case(value))
            .ok_or_else(|| {
                format!("{value:?} is not an SFU (use cloudflare, embedded, whip or off)")
            })
    }
}

impl fmt::Display for SfuKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses the SFU section; `None` means a recorded problem.
pub(crate) fn parse(check: &mut Check, raw: &RawVars) -> Option<SfuConfig> {
    let app_id = check.optional(var::CALLS_APP_ID, raw.calls_app_id.as_deref(), parse::text);
    let app_secret = check.secret(
        var::CALLS_APP_SECRET,
        raw.calls_app_secret.as_deref(),
        SecretKind::Token,
    );
    let api_url = check.optional(
        var::CALLS_API_URL,
        Some(raw.calls_api_url.as_deref().unwrap_or(d::CALLS_API_URL)),
        parse::http_url,
    );
    let whip_url = check.optional(var::WHIP_URL, raw.whip_url.as_deref(), whip_template);
    let whip_token = check.secret(
        var::WHIP_TOKEN,
        raw.whip_token.as_deref(),
        SecretKind::Token,
    );

    let chosen = raw.sfu.is_some();
    let default = if raw.calls_app_id.is_some() {
        SfuKind::Cloudflare
    } else {
        SfuKind::Embedded
    };
    let kind = check.value(var::SFU, raw.sfu.as_deref(), default, SfuKind::parse)?;
    let why = if chosen {
        "CAMRELAY_SFU is cloudflare"
    } else {
        "CAMRELAY_CALLS_APP_ID is set, which selects the cloudflare SFU"
    };
    match kind {
        SfuKind::Cloudflare => {
            require(check, var::CALLS_APP_ID, raw.calls_app_id.is_some(), why);
            require(
                check,
                var::CALLS_APP_SECRET,
                raw.calls_app_secret.is_some(),
                why,
            );
            Some(SfuConfig::Cloudflare {
                app_id: app_id?,
                app_secret: app_secret?,
                api_url: api_url?,
            })
        }
        SfuKind::Whip => {
            require(
                check,
                var::WHIP_URL,
                raw.whip_url.is_some(),
                "CAMRELAY_SFU is whip",
            );
            // An unset token is `None`; a bad one is recorded and fails the whole.
            Some(SfuConfig::Whip {
                url_template: whip_url?,
                token: whip_token,
            })
        }
        SfuKind::Embedded => Some(SfuConfig::Embedded {
            app_id: app_id.unwrap_or_else(|| d::EMBEDDED_APP_ID.to_owned()),
            app_secret,
        }),
        SfuKind::Off => Some(SfuConfig::Off),
    }
}

/// WebRTC transport settings shared by the publisher and the embedded SFU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebRtcConfig {
    /// `CAMRELAY_WEBRTC_IP`: the address put in host candidates. `None`
    /// picks the address of the interface that routes to the internet (the
    /// relay's private address on most cloud VMs; set the public one if
    /// the VM sits behind 1:1 NAT).
    pub ip: Option<IpAddr>,
    /// `CAMRELAY_WEBRTC_CONNECT_TIMEOUT`.
    pub connect_timeout: Duration,
    /// `CAMRELAY_SFU_UDP_ADDR`: the embedded SFU's UDP socket.
    pub sfu_udp_addr: SocketAddr,
}

/// Parses the WebRTC transport settings; `None` means a recorded problem.
pub(crate) fn parse_webrtc(check: &mut Check, raw: &RawVars) -> Option<WebRtcConfig> {
    let ip = check.optional(var::WEBRTC_IP, raw.webrtc_ip.as_deref(), |value| {
        value
            .parse::<IpAddr>()
            .map_err(|_| format!("{value:?} is not an IP address"))
    });
    let ip_bad = raw.webrtc_ip.is_some() && ip.is_none();
    let connect_timeout = check.value(
        var::WEBRTC_CONNECT_TIMEOUT,
        raw.webrtc_connect_timeout.as_deref(),
        d::WEBRTC_CONNECT_TIMEOUT,
        parse::duration_in(d::WEBRTC_CONNECT_TIMEOUT_MIN, d::WEBRTC_CONNECT_TIMEOUT_MAX),
    );
    let sfu_udp_addr = check.value(
        var::SFU_UDP_ADDR,
        raw.sfu_udp_addr.as_deref(),
        d::SFU_UDP_ADDR,
        parse::socket_addr,
    );
    if ip_bad {
        return None;
    }
    Some(WebRtcConfig {
        ip,
        connect_timeout: connect_timeout?,
        sfu_udp_addr: sfu_udp_addr?,
    })
}

fn require(check: &mut Check, variable: &str, set: bool, why: &str) {
    if !set {
        check.error(variable, format!("is required: {why}"));
    }
}

/// A WHIP endpoint template: an http(s) URL once `{camera_id}` is filled in.
fn whip_template(value: &str) -> Result<String, String> {
    let placeholder = d::WHIP_CAMERA_PLACEHOLDER;
    if !value.contains(placeholder) {
        return Err(format!(
            "{value:?} must contain {placeholder}, where each camera's id goes"
        ));
    }
    let example = value.replace(placeholder, "camera");
    let url = Url::parse(&example)
        .map_err(|e| format!("{} is not a URL ({e})", parse::show_url(value)))?;
    parse::check_http_url(value, &url)?;
    Ok(value.to_owned())
}
