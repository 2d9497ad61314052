//! The operator's endpoints (`/stats`, `/metrics`, `/healthz`, `/readyz`): where they listen
//! and whether they want a token.

use std::net::SocketAddr;

use secrecy::SecretString;

use crate::parse::{self, Check, SecretKind};
use crate::vars::{RawVars, var};

/// `CAMRELAY_ADMIN_ADDR` and `CAMRELAY_ADMIN_TOKEN`.
#[derive(Debug, Clone, Default)]
pub struct AdminConfig {
    /// `CAMRELAY_ADMIN_ADDR`: a listener of their own for the operator's endpoints, apart
    /// from the viewers' (`CAMRELAY_HTTP_ADDR`). Unset: they share the HTTP listener.
    pub addr: Option<SocketAddr>,
    /// `CAMRELAY_ADMIN_TOKEN`: a bearer token `/stats` and `/metrics` require. The probes
    /// stay open (they reveal nothing and orchestrators call them without credentials).
    pub token: Option<SecretString>,
}

/// Parses the admin section; `None` means a recorded problem.
pub(crate) fn parse(
    check: &mut Check,
    raw: &RawVars,
    http_addr: Option<SocketAddr>,
) -> Option<AdminConfig> {
    let addr = check.optional(
        var::ADMIN_ADDR,
        raw.admin_addr.as_deref(),
        parse::socket_addr,
    );
    let addr_bad = raw.admin_addr.is_some() && addr.is_none();
    let token = check.secret(
        var::ADMIN_TOKEN,
        raw.admin_token.as_deref(),
        SecretKind::Token,
    );
    let token_bad = raw.admin_token.is_some() && token.is_none();
    if let (Some(admin), Some(http)) = (addr, http_addr)
        && admin == http
        && admin.port() != 0
    {
        check.error(
            var::ADMIN_ADDR,
            format!(
                "is {admin}, the same as CAMRELAY_HTTP_ADDR: leave it unset to serve the \
                 operator's endpoints on the HTTP listener"
            ),
        );
        return None;
    }
    if addr_bad || token_bad {
        return None;
    }
    Some(AdminConfig { addr, token })
}
