//! camrelay's configuration: every `CAMRELAY_*` environment variable, parsed
//! once into typed structs.
//!
//! Environment variables are the one configuration surface (twelve-factor:
//! the same image runs under Docker, systemd and Kubernetes), so this crate
//! is strict where a silent fallback would cost an operator an evening:
//!
//! - **Every problem at once.** Parsing goes on after a bad value, and
//!   [`ConfigErrors`] lists each problem as `CAMRELAY_X: message`. A restart
//!   per typo is slow, in a cluster much slower.
//! - **Unknown variables are errors.** A misspelt `CAMRELAY_NEST_QMP` would
//!   otherwise leave the budget at its default without a word; the error
//!   suggests the closest known name. Variables without the `CAMRELAY_`
//!   prefix are ignored (the process has many).
//! - **Blank is unset.** A variable set to an empty or all-blank value counts
//!   as unset, because templating (`${VAR:-}` in Compose, empty `value:` in
//!   Kubernetes) produces blanks for "not given".
//! - **Secrets never print.** OAuth and SFU secrets, camera passwords and
//!   the RTSP server's password are `SecretString`s, whose `Debug` is redacted; error messages say what is
//!   wrong with a secret without quoting it; camera URLs are stored without
//!   their credentials. Non-secret bad values are quoted.
//! - **Defaults are named.** Every default and limit is a constant in
//!   [`defaults`], documented with what happens at the limit, and
//!   `deploy/.env.example` is tested to parse to exactly those values.
//!
//! - **Only the environment.** Nothing here touches the file system or the
//!   network: a file setting such as `CAMRELAY_EXTRA_CA_FILE` is checked to
//!   be a plausible path and loaded by its user.
//!
//! envy reads the fixed variables into raw strings that cannot fail to
//! deserialize (serde would stop at the first bad field); this crate then
//! checks each one. The per-camera variables `CAMRELAY_CAMERA_<KEY>_<OPTION>`
//! have open-ended names, so they are matched by hand against the cameras
//! listed in `CAMRELAY_CAMERAS`.

mod admin;
mod cameras;
pub mod defaults;
mod effective;
mod env_file;
mod error;
mod ingest;
mod nest;
mod parse;
mod rtsp;
mod sfu;
mod vars;
mod viewer;

use std::ffi::OsString;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use crate::admin::AdminConfig;
pub use crate::cameras::{PER_CAMERA_OPTIONS, StaticCamera};
pub use crate::effective::{Setting, SettingsTable, Source};
pub use crate::error::{ConfigError, ConfigErrors};
pub use crate::ingest::IngestConfig;
pub use crate::nest::{LeaseTuning, NestBudget, NestConfig};
pub use crate::rtsp::{RtspConfig, RtspCredentials, RtspUdp};
pub use crate::sfu::{SfuConfig, SfuKind, WebRtcConfig};
pub use crate::viewer::{ViewerConfig, ViewerCredentials};

use crate::parse::Check;
use crate::vars::{Input, PREFIX, RawVars, var};

/// The whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `CAMRELAY_HTTP_ADDR`: viewer page, API, stats, metrics, health.
    pub http_addr: SocketAddr,
    /// `CAMRELAY_RTSP_ADDR`: the local RTSP server.
    pub rtsp_addr: SocketAddr,
    /// `CAMRELAY_LOG`, `CAMRELAY_LOG_FORMAT`.
    pub log: LogConfig,
    /// `CAMRELAY_ALWAYS_ON`: keep every camera live (default for each static
    /// camera's own `ALWAYS_ON`).
    pub always_on: bool,
    /// `CAMRELAY_IDLE_GRACE`: how long a camera stays up after its last
    /// client leaves.
    pub idle_grace: Duration,
    /// `CAMRELAY_RTSP_*` other than `CAMRELAY_RTSP_ADDR`: the local RTSP server's
    /// transports, limits, timeouts and client authentication.
    pub rtsp: RtspConfig,
    /// `CAMRELAY_INGEST_*`: camera session liveness and reconnect backoff.
    pub ingest: IngestConfig,
    /// `CAMRELAY_EXTRA_CA_FILE`: a PEM file of CA certificates trusted for
    /// `rtsps://` cameras besides the built-in roots. Not read or checked
    /// for existence here; the caller loads it at start-up.
    pub extra_ca_file: Option<PathBuf>,
    /// `CAMRELAY_CAMERAS` and their `CAMRELAY_CAMERA_<KEY>_*` options, in
    /// the listed order.
    pub cameras: Vec<StaticCamera>,
    /// Nest access, when its four credentials are set.
    pub nest: Option<NestConfig>,
    /// `CAMRELAY_SFU` and its settings.
    pub sfu: SfuConfig,
    /// `CAMRELAY_WEBRTC_*` and `CAMRELAY_SFU_UDP_ADDR`.
    pub webrtc: WebRtcConfig,
    /// `CAMRELAY_VIEWER_*` and `CAMRELAY_MAX_VIEWERS`.
    pub viewer: ViewerConfig,
    /// `CAMRELAY_ADMIN_*`: the operator's endpoints.
    pub admin: AdminConfig,
    /// `CAMRELAY_ENV_FILE`: the file more variables came from, re-read on SIGHUP (the
    /// process environment wins over it).
    pub env_file: Option<PathBuf>,
}

/// Logging: `CAMRELAY_LOG` and `CAMRELAY_LOG_FORMAT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// A `tracing_subscriber::EnvFilter` directive, e.g. `info` or
    /// `info,camrelay::ingest=debug` (checked by the subscriber, not here).
    pub filter: String,
    /// Line format.
    pub format: LogFormat,
}

/// `CAMRELAY_LOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// `text`: human-readable lines.
    Text,
    /// `json`: one JSON object per line, for log collectors.
    Json,
}

impl LogFormat {
    /// The `CAMRELAY_LOG_FORMAT` spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Json => "json",
        }
    }

    fn parse(value: &str) -> Result<Self, String> {
        [Self::Text, Self::Json]
            .into_iter()
            .find(|format| format.as_str().eq_ignore_ascii_case(value))
            .ok_or_else(|| format!("{value:?} is not a log format (use text or json)"))
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The fixed variable names, in documentation order. The per-camera
/// variables are `CAMRELAY_CAMERA_<KEY>_<OPTION>` with an option from
/// [`PER_CAMERA_OPTIONS`].
pub fn known_variables() -> &'static [&'static str] {
    vars::KNOWN
}

impl Config {
    /// Reads the process environment. A `CAMRELAY_*` variable whose name or
    /// value is not UTF-8 is an error.
    pub fn from_env() -> Result<Self, ConfigErrors> {
        let mut check = Check::default();
        let mut vars = Vec::new();
        for (name, value) in std::env::vars_os() {
            if let Some(pair) = utf8_pair(&mut check, name, value) {
                vars.push(pair);
            }
        }
        let vars = with_env_file(vars, &mut check);
        Self::parse(vars, check)
    }

    /// [`Self::from_vars`], plus the variables of the file `CAMRELAY_ENV_FILE` names, if it
    /// is among `vars` (read now: call again to re-read it).
    pub fn from_vars_and_file<I>(vars: I) -> Result<Self, ConfigErrors>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let mut check = Check::default();
        let vars = with_env_file(vars.into_iter().collect(), &mut check);
        Self::parse(vars, check)
    }

    /// Reads the given variables instead of the process environment (tests,
    /// or a caller that builds its own environment, such as a demo mode).
    /// Names without the `CAMRELAY_` prefix are ignored.
    pub fn from_vars<I>(vars: I) -> Result<Self, ConfigErrors>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        Self::parse(vars, Check::default())
    }

    fn parse<I>(vars: I, mut check: Check) -> Result<Self, ConfigErrors>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let input = Input::sort(vars, &mut check.errors);
        let config = build(&mut check, &input);
        match config {
            Some(config) if check.errors.is_empty() => Ok(config),
            Some(_) => Err(check.errors),
            None => {
                if check.errors.is_empty() {
                    check.error(PREFIX, "internal error: incomplete configuration");
                }
                Err(check.errors)
            }
        }
    }
}

/// A prefixed variable as UTF-8, or an error naming it. Other variables
/// are skipped whatever their encoding.
fn utf8_pair(check: &mut Check, name: OsString, value: OsString) -> Option<(String, String)> {
    if !name.as_encoded_bytes().starts_with(PREFIX.as_bytes()) {
        return None;
    }
    match (name.into_string(), value.into_string()) {
        (Ok(name), Ok(value)) => Some((name, value)),
        (Ok(name), Err(_)) => {
            check.error(name, "value is not valid UTF-8");
            None
        }
        (Err(name), _) => {
            check.error(name.to_string_lossy(), "name is not valid UTF-8");
            None
        }
    }
}

/// Adds the variables of `CAMRELAY_ENV_FILE` to `vars`; a variable set in both keeps the
/// value of `vars` (the process environment), as with dotenv and Docker.
fn with_env_file(mut vars: Vec<(String, String)>, check: &mut Check) -> Vec<(String, String)> {
    let Some(path) = vars
        .iter()
        .find(|(name, value)| name == var::ENV_FILE && !value.trim().is_empty())
        .map(|(_, value)| PathBuf::from(value.trim()))
    else {
        return vars;
    };
    match env_file::read(&path) {
        Ok(from_file) => {
            for (name, value) in from_file {
                if name == var::ENV_FILE {
                    check.error(var::ENV_FILE, "cannot be set in the file it names");
                } else if !vars.iter().any(|(n, _)| *n == name) {
                    vars.push((name, value));
                }
            }
        }
        Err(message) => check.error(var::ENV_FILE, message),
    }
    vars
}

/// Checks every section (each records its own problems), then the unknown
/// names, and assembles the result; `None` after any bad value.
fn build(check: &mut Check, input: &Input) -> Option<Config> {
    let raw = &input.fixed;
    let general = general(check, raw);
    let always_on_default = general
        .as_ref()
        .map_or(defaults::ALWAYS_ON, |g| g.always_on);
    let rtsp = rtsp::parse(check, raw);
    let ingest = ingest::parse(check, raw);
    let extra_ca_file = ingest::extra_ca_file(check, raw);
    let (cameras, camera_names) = cameras::parse(
        check,
        raw.cameras.as_deref(),
        &input.per_camera,
        always_on_default,
    );
    let nest = nest::parse(check, raw);
    let sfu = sfu::parse(check, raw);
    let webrtc = sfu::parse_webrtc(check, raw);
    let viewer = viewer::parse(check, raw);
    let admin = admin::parse(check, raw, general.as_ref().map(|g| g.http_addr));
    let env_file = raw
        .env_file
        .as_deref()
        .map(|path| PathBuf::from(path.trim()));
    for name in &input.unknown {
        let candidates = vars::KNOWN
            .iter()
            .copied()
            .chain(camera_names.iter().map(String::as_str));
        let message = match vars::suggest(name, candidates) {
            Some(known) => format!("unknown variable (did you mean {known}?)"),
            None => "unknown variable; `camrelay check-config` lists the known ones".to_owned(),
        };
        check.error(name.as_str(), message);
    }
    let General {
        http_addr,
        rtsp_addr,
        log,
        always_on,
        idle_grace,
    } = general?;
    Some(Config {
        http_addr,
        rtsp_addr,
        log,
        always_on,
        idle_grace,
        rtsp: rtsp?,
        ingest: ingest?,
        extra_ca_file: extra_ca_file?,
        cameras,
        nest,
        sfu: sfu?,
        webrtc: webrtc?,
        viewer: viewer?,
        admin: admin?,
        env_file,
    })
}

struct General {
    http_addr: SocketAddr,
    rtsp_addr: SocketAddr,
    log: LogConfig,
    always_on: bool,
    idle_grace: Duration,
}

fn general(check: &mut Check, raw: &RawVars) -> Option<General> {
    let http_addr = check.value(
        var::HTTP_ADDR,
        raw.http_addr.as_deref(),
        defaults::HTTP_ADDR,
        parse::socket_addr,
    );
    let rtsp_addr = check.value(
        var::RTSP_ADDR,
        raw.rtsp_addr.as_deref(),
        defaults::RTSP_ADDR,
        parse::socket_addr,
    );
    let filter = check.value(
        var::LOG,
        raw.log.as_deref(),
        defaults::LOG.to_owned(),
        parse::text,
    );
    let format = check.value(
        var::LOG_FORMAT,
        raw.log_format.as_deref(),
        defaults::LOG_FORMAT,
        LogFormat::parse,
    );
    let always_on = check.value(
        var::ALWAYS_ON,
        raw.always_on.as_deref(),
        defaults::ALWAYS_ON,
        parse::boolean,
    );
    let idle_grace = check.value(
        var::IDLE_GRACE,
        raw.idle_grace.as_deref(),
        defaults::IDLE_GRACE,
        parse::duration_in(Duration::ZERO, defaults::IDLE_GRACE_MAX),
    );
    // Port 0 asks the system for a free port, so two of them never collide.
    if let (Some(http), Some(rtsp)) = (http_addr, rtsp_addr)
        && http == rtsp
        && http.port() != 0
    {
        check.error(
            var::RTSP_ADDR,
            format!("{rtsp} is also CAMRELAY_HTTP_ADDR; the two servers need different ports"),
        );
        return None;
    }
    Some(General {
        http_addr: http_addr?,
        rtsp_addr: rtsp_addr?,
        log: LogConfig {
            filter: filter?,
            format: format?,
        },
        always_on: always_on?,
        idle_grace: idle_grace?,
    })
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::ffi::OsStringExt;

    use super::*;

    #[test]
    fn non_utf8_variables() {
        let mut check = Check::default();
        let bad = || OsString::from_vec(vec![b'x', 0xff]);
        let prefixed = |name: &str| OsString::from(name);
        assert_eq!(utf8_pair(&mut check, bad(), bad()), None);
        assert_eq!(utf8_pair(&mut check, prefixed("PATH"), bad()), None);
        assert!(check.errors.is_empty(), "others are ignored");

        assert_eq!(utf8_pair(&mut check, prefixed("CAMRELAY_LOG"), bad()), None);
        let mut name = b"CAMRELAY_".to_vec();
        name.push(0xff);
        assert_eq!(
            utf8_pair(&mut check, OsString::from_vec(name), prefixed("x")),
            None
        );
        let errors = check.errors.as_slice();
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[0].variable, "CAMRELAY_LOG");
        assert!(errors[0].message.contains("UTF-8"));
        assert!(errors[1].variable.starts_with("CAMRELAY_"));
        assert_eq!(
            utf8_pair(&mut check, prefixed("CAMRELAY_LOG"), prefixed("debug")),
            Some(("CAMRELAY_LOG".to_owned(), "debug".to_owned()))
        );
    }
}
