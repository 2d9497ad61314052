//! The viewer side: who may use the viewer page and API, how long a silent
//! viewer is kept, and how many viewers the relay serves at once.

use std::time::Duration;

use secrecy::SecretString;

use crate::defaults as d;
use crate::parse::{self, Check, SecretKind};
use crate::vars::{RawVars, var};

/// `CAMRELAY_VIEWER_*` and `CAMRELAY_MAX_VIEWERS`.
#[derive(Debug, Clone)]
pub struct ViewerConfig {
    /// `CAMRELAY_VIEWER_TOKEN`: a bearer token the page and the API require.
    pub token: Option<SecretString>,
    /// `CAMRELAY_VIEWER_USERNAME` and `CAMRELAY_VIEWER_PASSWORD`: HTTP Basic
    /// credentials the page and the API require. `Debug` redacts the password.
    pub basic: Option<ViewerCredentials>,
    /// `CAMRELAY_VIEWER_TIMEOUT`: a viewer that sends no heartbeat this long
    /// is released.
    pub timeout: Duration,
    /// `CAMRELAY_MAX_VIEWERS`: viewers served at once, over all cameras.
    pub max_viewers: usize,
}

impl ViewerConfig {
    /// The defaults: no authentication.
    pub fn defaults() -> Self {
        Self {
            token: None,
            basic: None,
            timeout: d::VIEWER_TIMEOUT,
            max_viewers: d::MAX_VIEWERS,
        }
    }

    /// Whether viewers must authenticate.
    pub fn auth_required(&self) -> bool {
        self.token.is_some() || self.basic.is_some()
    }
}

/// The one user viewers authenticate as with HTTP Basic.
#[derive(Debug, Clone)]
pub struct ViewerCredentials {
    /// User name.
    pub username: String,
    /// Password.
    pub password: SecretString,
}

/// Parses the viewer section; `None` means a recorded problem.
pub(crate) fn parse(check: &mut Check, raw: &RawVars) -> Option<ViewerConfig> {
    let token = check.secret(
        var::VIEWER_TOKEN,
        raw.viewer_token.as_deref(),
        SecretKind::Token,
    );
    let token_bad = raw.viewer_token.is_some() && token.is_none();
    let username = check.optional(var::VIEWER_USERNAME, raw.viewer_username.as_deref(), |v| {
        if v.contains(':') || v.contains(char::is_control) {
            Err(format!(
                "{v:?} is not usable as a user name (HTTP Basic forbids ':' and control characters)"
            ))
        } else {
            Ok(v.to_owned())
        }
    });
    let password = check.secret(
        var::VIEWER_PASSWORD,
        raw.viewer_password.as_deref(),
        SecretKind::Password,
    );
    let basic = match (raw.viewer_username.is_some(), raw.viewer_password.is_some()) {
        (false, false) => Some(None),
        (true, true) => match (username, password) {
            (Some(username), Some(password)) => {
                Some(Some(ViewerCredentials { username, password }))
            }
            _ => None,
        },
        (set, _) => {
            let (missing, given) = if set {
                (var::VIEWER_PASSWORD, var::VIEWER_USERNAME)
            } else {
                (var::VIEWER_USERNAME, var::VIEWER_PASSWORD)
            };
            check.error(
                missing,
                format!(
                    "is not set, but {given} is: viewer sign-in needs both a user name and a \
                     password, or neither"
                ),
            );
            None
        }
    };
    let timeout = check.value(
        var::VIEWER_TIMEOUT,
        raw.viewer_timeout.as_deref(),
        d::VIEWER_TIMEOUT,
        parse::duration_in(d::VIEWER_TIMEOUT_MIN, d::VIEWER_TIMEOUT_MAX),
    );
    let max_viewers = check.value(
        var::MAX_VIEWERS,
        raw.max_viewers.as_deref(),
        d::MAX_VIEWERS,
        parse::usize_in(d::MAX_VIEWERS_MIN, d::MAX_VIEWERS_MAX),
    );
    if token_bad {
        return None;
    }
    Some(ViewerConfig {
        token,
        basic: basic?,
        timeout: timeout?,
        max_viewers: max_viewers?,
    })
}
