//! The effective configuration, as `camrelay check-config` prints it.
//!
//! Every known variable is listed, set or not, so an operator sees what the
//! relay will do without reading the defaults. The listing is derived from
//! the parsed [`Config`] alone (it has no record of the environment), so a
//! value equal to its default is shown as `(default)` even when it was set,
//! and a value that the configuration does not use (Nest tuning without Nest
//! credentials, Calls settings with another SFU, the RTP and RTCP sockets with
//! UDP off) is shown as `(not used)`.
//! Secrets show as `[redacted]`; camera URLs never carry credentials.

use std::collections::BTreeMap;
use std::fmt::{self, Display};

use secrecy::SecretString;

use crate::cameras::{self, StaticCamera};
use crate::defaults as d;
use crate::parse::fmt_duration;
use crate::vars::{KNOWN, var};
use crate::{Config, IngestConfig, NestConfig, RtspConfig, SfuConfig};

/// What a set secret shows as.
const REDACTED: &str = "[redacted]";
/// What an unset variable without a default shows as.
const UNSET: &str = "(unset)";
/// What a variable ignored by the current configuration shows as.
const NOT_USED: &str = "(not used)";
/// The prefix of the Nest variables.
const NEST_PREFIX: &str = "CAMRELAY_NEST_";
/// [`SettingsTable`] aligns sources up to this column; longer `NAME=value`
/// lines (long camera lists) are not padded further.
const ALIGN_MAX: usize = 60;

/// One variable's effective value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The full `CAMRELAY_*` name.
    pub name: String,
    /// The value as it would be written, `[redacted]` for a set secret,
    /// `(unset)` for an unset variable without default, `(not used)` for
    /// one the configuration ignores.
    pub value: String,
    /// Whether the value is the default.
    pub source: Source,
}

/// Where an effective value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The value is the built-in default (or unset, or not used).
    Default,
    /// The value differs from the default: the environment set it.
    Environment,
}

impl Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Default => "default",
            Self::Environment => "environment",
        })
    }
}

impl Display for Setting {
    /// `CAMRELAY_NEST_QPM=10  (default)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}  ({})", self.name, self.value, self.source)
    }
}

/// Displays settings one per line with their sources aligned:
///
/// ```text
/// CAMRELAY_HTTP_ADDR=0.0.0.0:8080  (default)
/// CAMRELAY_NEST_QPM=20             (environment)
/// ```
#[derive(Debug, Clone, Copy)]
pub struct SettingsTable<'a>(pub &'a [Setting]);

impl Display for SettingsTable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = |s: &Setting| s.name.chars().count() + 1 + s.value.chars().count();
        let column = self.0.iter().map(width).filter(|w| *w <= ALIGN_MAX).max();
        let column = column.unwrap_or(0);
        for (i, setting) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            let pad = column.saturating_sub(width(setting));
            write!(
                f,
                "{}={}{:pad$}  ({})",
                setting.name, setting.value, "", setting.source
            )?;
        }
        Ok(())
    }
}

impl Display for Config {
    /// The effective configuration as a [`SettingsTable`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        SettingsTable(&self.effective()).fmt(f)
    }
}

impl Config {
    /// Every known variable with its effective value, in
    /// [`known_variables`](crate::known_variables) order, each camera's
    /// `CAMRELAY_CAMERA_<KEY>_*` variables following `CAMRELAY_CAMERAS`.
    pub fn effective(&self) -> Vec<Setting> {
        self.settings().list
    }

    /// The names of the settings whose effective value differs between `old` and `self`,
    /// secrets included (they are compared, never listed), in [`Config::effective`] order.
    pub fn changed_since(&self, old: &Config) -> Vec<String> {
        use secrecy::ExposeSecret;
        let (new, old) = (self.settings(), old.settings());
        let before: BTreeMap<&str, &str> = old
            .list
            .iter()
            .map(|s| (s.name.as_str(), s.value.as_str()))
            .collect();
        let secret_before: BTreeMap<&str, &str> = old
            .secrets
            .iter()
            .map(|(name, value)| (name.as_str(), value.expose_secret()))
            .collect();
        let secret_now: BTreeMap<&str, &str> = new
            .secrets
            .iter()
            .map(|(name, value)| (name.as_str(), value.expose_secret()))
            .collect();
        new.list
            .into_iter()
            .filter(|s| {
                let name = s.name.as_str();
                before.get(name) != Some(&s.value.as_str())
                    || secret_before.get(name) != secret_now.get(name)
            })
            .map(|s| s.name)
            .collect()
    }

    fn settings(&self) -> Settings {
        let mut out = Settings::default();
        out.push(var::HTTP_ADDR, self.http_addr, d::HTTP_ADDR);
        out.push(var::RTSP_ADDR, self.rtsp_addr, d::RTSP_ADDR);
        out.push(var::LOG, &self.log.filter, d::LOG);
        out.push(var::LOG_FORMAT, self.log.format, d::LOG_FORMAT);
        out.push(var::ALWAYS_ON, self.always_on, d::ALWAYS_ON);
        out.duration(var::IDLE_GRACE, self.idle_grace, d::IDLE_GRACE);
        rtsp(&mut out, &self.rtsp);
        ingest(&mut out, &self.ingest);
        out.optional(
            var::EXTRA_CA_FILE,
            self.extra_ca_file.as_ref().map(|path| path.display()),
        );
        self.cameras(&mut out);
        nest(&mut out, self.nest.as_ref());
        sfu(&mut out, &self.sfu);
        let w = &self.webrtc;
        match w.ip {
            Some(ip) => out.push(var::WEBRTC_IP, ip, "auto"),
            None => out.push(var::WEBRTC_IP, "auto", "auto"),
        }
        out.duration(
            var::WEBRTC_CONNECT_TIMEOUT,
            w.connect_timeout,
            d::WEBRTC_CONNECT_TIMEOUT,
        );
        out.push(var::SFU_UDP_ADDR, w.sfu_udp_addr, d::SFU_UDP_ADDR);
        let v = &self.viewer;
        out.secret(var::VIEWER_TOKEN, v.token.as_ref());
        out.optional(var::VIEWER_USERNAME, v.basic.as_ref().map(|b| &b.username));
        out.secret(var::VIEWER_PASSWORD, v.basic.as_ref().map(|b| &b.password));
        out.duration(var::VIEWER_TIMEOUT, v.timeout, d::VIEWER_TIMEOUT);
        out.push(var::MAX_VIEWERS, v.max_viewers, d::MAX_VIEWERS);
        match self.admin.addr {
            Some(addr) => out.push(var::ADMIN_ADDR, addr, "CAMRELAY_HTTP_ADDR"),
            None => out.push(var::ADMIN_ADDR, "CAMRELAY_HTTP_ADDR", "CAMRELAY_HTTP_ADDR"),
        }
        out.secret(var::ADMIN_TOKEN, self.admin.token.as_ref());
        out.optional(
            var::ENV_FILE,
            self.env_file.as_ref().map(|path| path.display()),
        );
        out
    }

    fn cameras(&self, out: &mut Settings) {
        let list = self
            .cameras
            .iter()
            .map(|camera| format!("{}={}", camera.id, camera.url))
            .collect::<Vec<_>>()
            .join(";");
        out.optional(var::CAMERAS, (!list.is_empty()).then_some(list));
        for camera in &self.cameras {
            camera_settings(out, camera, self.always_on);
        }
    }
}

fn camera_settings(out: &mut Settings, camera: &StaticCamera, always_on: bool) {
    let name = |option| cameras::camera_variable(&camera.id, option);
    out.push(&name(cameras::NAME), &camera.name, &camera.id);
    out.optional(&name(cameras::USERNAME), camera.username.as_ref());
    out.secret(&name(cameras::PASSWORD), camera.password.as_ref());
    out.push(&name(cameras::ALWAYS_ON), camera.always_on, always_on);
    out.push(
        &name(cameras::TLS_VERIFY),
        camera.tls_verify,
        d::CAMERA_TLS_VERIFY,
    );
}

fn rtsp(out: &mut Settings, rtsp: &RtspConfig) {
    out.push(var::RTSP_UDP, rtsp.udp.is_some(), d::RTSP_UDP);
    match &rtsp.udp {
        Some(udp) => {
            out.push(var::RTSP_RTP_ADDR, udp.rtp_addr, d::RTSP_RTP_ADDR);
            out.push(var::RTSP_RTCP_ADDR, udp.rtcp_addr, d::RTSP_RTCP_ADDR);
        }
        None => not_used(out, &[var::RTSP_RTP_ADDR, var::RTSP_RTCP_ADDR]),
    }
    out.duration(
        var::RTSP_SESSION_TIMEOUT,
        rtsp.session_timeout,
        d::RTSP_SESSION_TIMEOUT,
    );
    out.push(var::RTSP_MAX_CLIENTS, rtsp.max_clients, d::RTSP_MAX_CLIENTS);
    out.push(
        var::RTSP_MAX_CLIENTS_PER_CAMERA,
        rtsp.max_clients_per_camera,
        crate::rtsp::per_camera_default(rtsp.max_clients),
    );
    let credentials = rtsp.credentials.as_ref();
    out.optional(var::RTSP_USERNAME, credentials.map(|c| &c.username));
    out.secret(var::RTSP_PASSWORD, credentials.map(|c| &c.password));
    out.duration(
        var::RTSP_START_TIMEOUT,
        rtsp.start_timeout,
        d::RTSP_START_TIMEOUT,
    );
}

fn ingest(out: &mut Settings, ingest: &IngestConfig) {
    out.duration(var::INGEST_TIMEOUT, ingest.timeout, d::INGEST_TIMEOUT);
    out.duration(
        var::INGEST_RETRY_INITIAL,
        ingest.retry_initial,
        d::INGEST_RETRY_INITIAL,
    );
    out.duration(var::INGEST_RETRY_MAX, ingest.retry_max, d::INGEST_RETRY_MAX);
}

fn nest(out: &mut Settings, nest: Option<&NestConfig>) {
    let Some(nest) = nest else {
        // Without credentials (all four unset) the rest is not used.
        let credentials = [
            var::NEST_PROJECT_ID,
            var::NEST_CLIENT_ID,
            var::NEST_CLIENT_SECRET,
            var::NEST_REFRESH_TOKEN,
        ];
        for name in KNOWN.iter().filter(|name| name.starts_with(NEST_PREFIX)) {
            let value = if credentials.contains(name) {
                UNSET
            } else {
                NOT_USED
            };
            out.push(name, value, value);
        }
        return;
    };
    out.push(var::NEST_PROJECT_ID, &nest.project_id, UNSET);
    out.push(var::NEST_CLIENT_ID, &nest.client_id, UNSET);
    out.secret(var::NEST_CLIENT_SECRET, Some(&nest.client_secret));
    out.secret(var::NEST_REFRESH_TOKEN, Some(&nest.refresh_token));
    out.push(var::NEST_API_URL, &nest.api_url, d::NEST_API_URL);
    out.push(var::NEST_TOKEN_URL, &nest.token_url, d::NEST_TOKEN_URL);
    out.optional(
        var::NEST_DEVICES,
        nest.devices.as_ref().map(|d| d.join(",")),
    );
    let budget = &nest.budget;
    out.push(var::NEST_QPM, budget.qpm, d::NEST_QPM);
    out.push(
        var::NEST_DEVICE_COMMAND_QPM,
        budget.device_command_qpm,
        d::NEST_DEVICE_COMMAND_QPM,
    );
    out.push(var::NEST_DEVICE_QPH, budget.device_qph, d::NEST_DEVICE_QPH);
    out.duration(
        var::NEST_WINDOW_GUARD,
        budget.window_guard,
        d::NEST_WINDOW_GUARD,
    );
    out.push(
        var::NEST_BUDGET_RESERVE,
        budget.reserve_per_minute,
        d::NEST_BUDGET_RESERVE,
    );
    out.duration(
        var::NEST_STREAM_LIFETIME,
        budget.stream_lifetime,
        d::NEST_STREAM_LIFETIME,
    );
    out.push(
        var::NEST_MAX_IN_FLIGHT,
        budget.max_in_flight,
        d::NEST_MAX_IN_FLIGHT,
    );
    let lease = &nest.lease;
    out.duration(
        var::NEST_EXTEND_MIN_MARGIN,
        lease.extend_min_margin,
        d::NEST_EXTEND_MIN_MARGIN,
    );
    out.duration(
        var::NEST_RETRY_INITIAL,
        lease.retry_initial,
        d::NEST_RETRY_INITIAL,
    );
    out.duration(var::NEST_RETRY_MAX, lease.retry_max, d::NEST_RETRY_MAX);
    out.push(
        var::NEST_DEGRADED_AFTER,
        lease.degraded_after,
        d::NEST_DEGRADED_AFTER,
    );
    out.duration(
        var::NEST_REQUEST_TIMEOUT,
        nest.request_timeout,
        d::NEST_REQUEST_TIMEOUT,
    );
    out.duration(
        var::NEST_DISCOVERY_INTERVAL,
        nest.discovery_interval,
        d::NEST_DISCOVERY_INTERVAL,
    );
}

fn sfu(out: &mut Settings, sfu: &SfuConfig) {
    let default = if matches!(sfu, SfuConfig::Cloudflare { .. }) {
        "cloudflare"
    } else {
        "embedded"
    };
    out.push(var::SFU, sfu.kind(), default);
    match sfu {
        SfuConfig::Cloudflare {
            app_id,
            app_secret,
            api_url,
        } => {
            out.push(var::CALLS_APP_ID, app_id, UNSET);
            out.secret(var::CALLS_APP_SECRET, Some(app_secret));
            out.push(var::CALLS_API_URL, api_url, d::CALLS_API_URL);
        }
        SfuConfig::Embedded { app_id, app_secret } => {
            out.push(var::CALLS_APP_ID, app_id, d::EMBEDDED_APP_ID);
            out.secret(var::CALLS_APP_SECRET, app_secret.as_ref());
            not_used(out, &[var::CALLS_API_URL]);
        }
        _ => not_used(
            out,
            &[var::CALLS_APP_ID, var::CALLS_APP_SECRET, var::CALLS_API_URL],
        ),
    }
    match sfu {
        SfuConfig::Whip {
            url_template,
            token,
        } => {
            out.push(var::WHIP_URL, url_template, UNSET);
            out.secret(var::WHIP_TOKEN, token.as_ref());
        }
        _ => not_used(out, &[var::WHIP_URL, var::WHIP_TOKEN]),
    }
}

fn not_used(out: &mut Settings, names: &[&str]) {
    for name in names {
        out.push(name, NOT_USED, NOT_USED);
    }
}

/// The listing under construction.
#[derive(Debug, Default)]
struct Settings {
    list: Vec<Setting>,
    /// The set secrets by name, only to notice that one changed (never displayed).
    secrets: Vec<(String, SecretString)>,
}

impl Settings {
    /// A value and its default, compared as written.
    fn push(&mut self, name: &str, value: impl Display, default: impl Display) {
        let value = value.to_string();
        let source = if value == default.to_string() {
            Source::Default
        } else {
            Source::Environment
        };
        self.list.push(Setting {
            name: name.to_owned(),
            value,
            source,
        });
    }

    fn duration(&mut self, name: &str, value: std::time::Duration, default: std::time::Duration) {
        self.push(name, fmt_duration(value), fmt_duration(default));
    }

    /// A variable without default.
    fn optional(&mut self, name: &str, value: Option<impl Display>) {
        match value {
            Some(value) => self.push(name, value, UNSET),
            None => self.push(name, UNSET, UNSET),
        }
    }

    fn secret(&mut self, name: &str, value: Option<&SecretString>) {
        self.optional(name, value.map(|_| REDACTED));
        if let Some(value) = value {
            self.secrets.push((name.to_owned(), value.clone()));
        }
    }
}
