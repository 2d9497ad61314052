//! Static RTSP cameras: `CAMRELAY_CAMERAS` and `CAMRELAY_CAMERA_<KEY>_<OPTION>`.
//!
//! One variable lists the cameras (`id=url;id=url`) so that adding a camera
//! is one edit; options that do not fit in a URL, or that should live in a
//! separate secret (a password), get their own variables keyed by the id.
//!
//! Credentials may sit in the URL's userinfo, as cameras document them
//! (`rtsp://admin:pa%40ss@192.168.1.10/stream1`). They are percent-decoded
//! and taken out: the stored [`StaticCamera::url`] has no userinfo, so it can
//! be logged and shown. Error messages never quote a camera URL, because a
//! malformed one (say, a password with an unencoded `;` or `/`) cannot be
//! reliably redacted.

use std::collections::{BTreeMap, BTreeSet};

use secrecy::SecretString;
use url::Url;

use crate::defaults;
use crate::parse::{self, Check, SecretKind};
use crate::vars::{self, KNOWN, var};

/// The options of a static camera; each is the variable
/// `CAMRELAY_CAMERA_<KEY>_<OPTION>`, where `<KEY>` is the camera id in upper
/// case with `-` replaced by `_`.
///
/// - `NAME`: display name (default: the id).
/// - `USERNAME`, `PASSWORD`: credentials, if they are not in the URL.
/// - `ALWAYS_ON`: keep this camera live (default: `CAMRELAY_ALWAYS_ON`).
/// - `TLS_VERIFY`: `false` accepts self-signed certificates; `rtsps://` only.
pub const PER_CAMERA_OPTIONS: &[&str] = &[NAME, USERNAME, PASSWORD, ALWAYS_ON, TLS_VERIFY];

/// The prefix of the per-camera variables.
pub(crate) const CAMERA_PREFIX: &str = "CAMRELAY_CAMERA_";

pub(crate) const NAME: &str = "NAME";
pub(crate) const USERNAME: &str = "USERNAME";
pub(crate) const PASSWORD: &str = "PASSWORD";
pub(crate) const ALWAYS_ON: &str = "ALWAYS_ON";
pub(crate) const TLS_VERIFY: &str = "TLS_VERIFY";

/// A plain RTSP camera from `CAMRELAY_CAMERAS`.
#[derive(Debug, Clone)]
pub struct StaticCamera {
    /// Unique id: 1 to 64 characters of `A-Z a-z 0-9 _ -`; the RTSP path.
    pub id: String,
    /// Display name (`CAMRELAY_CAMERA_<KEY>_NAME`, default: the id).
    pub name: String,
    /// `rtsp://` or `rtsps://` URL, without userinfo.
    pub url: Url,
    /// From the URL's userinfo or `CAMRELAY_CAMERA_<KEY>_USERNAME`.
    pub username: Option<String>,
    /// From the URL's userinfo or `CAMRELAY_CAMERA_<KEY>_PASSWORD`; only
    /// with a username.
    pub password: Option<SecretString>,
    /// Keep live without clients (default: `CAMRELAY_ALWAYS_ON`).
    pub always_on: bool,
    /// Verify the `rtsps://` server certificate (always `true` for `rtsp://`).
    pub tls_verify: bool,
}

/// The per-camera variable key of `id`: upper case, `-` as `_`.
pub(crate) fn camera_key(id: &str) -> String {
    id.to_ascii_uppercase().replace('-', "_")
}

/// `CAMRELAY_CAMERA_<KEY>_<OPTION>` for the camera `id`.
pub(crate) fn camera_variable(id: &str, option: &str) -> String {
    format!("{CAMERA_PREFIX}{}_{option}", camera_key(id))
}

/// One well-formed `id=url` entry (its URL may still be bad).
struct Entry {
    number: usize,
    id: String,
    url: Option<CameraUrl>,
}

/// A camera URL with its userinfo taken out.
struct CameraUrl {
    url: Url,
    username: Option<String>,
    password: Option<SecretString>,
}

/// The set per-camera options of one camera: option → raw value.
type Options<'a> = BTreeMap<&'static str, &'a str>;

/// Parses the static cameras and their options. Cameras with a problem are
/// left out (their problems are recorded). Also returns the per-camera
/// variable names of every well-formed entry, as typo suggestions.
pub(crate) fn parse(
    check: &mut Check,
    raw: Option<&str>,
    per_camera: &BTreeMap<String, String>,
    always_on_default: bool,
) -> (Vec<StaticCamera>, Vec<String>) {
    let entries = parse_entries(check, raw.unwrap_or_default());
    let names: Vec<String> = entries
        .iter()
        .flat_map(|entry| {
            PER_CAMERA_OPTIONS
                .iter()
                .map(|option| camera_variable(&entry.id, option))
        })
        .collect();
    let mut options = sort_options(check, per_camera, &entries, &names);
    let cameras = entries
        .into_iter()
        .filter_map(|entry| {
            let options = options.remove(&camera_key(&entry.id)).unwrap_or_default();
            build(check, entry, &options, always_on_default)
        })
        .collect();
    (cameras, names)
}

/// Splits `CAMRELAY_CAMERAS` into entries with valid, unique ids.
fn parse_entries(check: &mut Check, raw: &str) -> Vec<Entry> {
    let mut entries: Vec<Entry> = Vec::new();
    let mut keys: BTreeMap<String, String> = BTreeMap::new();
    let pieces = raw.split(';').map(str::trim).filter(|p| !p.is_empty());
    for (index, piece) in pieces.enumerate() {
        let number = index + 1;
        let Some((id, url)) = piece.split_once('=') else {
            check.error(
                var::CAMERAS,
                format!("entry {number} is not of the form id=url (value not shown)"),
            );
            continue;
        };
        let id = id.trim();
        if let Err(message) = check_id(id) {
            check.error(var::CAMERAS, format!("entry {number}: {message}"));
            continue;
        }
        let key = camera_key(id);
        if let Some(other) = keys.get(&key) {
            let message = if other == id {
                format!("entry {number}: camera id {id:?} is used twice")
            } else {
                format!(
                    "entry {number}: camera ids {other:?} and {id:?} both map to the variables \
                     {CAMERA_PREFIX}{key}_*; rename one"
                )
            };
            check.error(var::CAMERAS, message);
            continue;
        }
        keys.insert(key, id.to_owned());
        let url = camera_url(url.trim())
            .map_err(|message| {
                check.error(var::CAMERAS, format!("entry {number} ({id:?}): {message}"));
            })
            .ok();
        entries.push(Entry {
            number,
            id: id.to_owned(),
            url,
        });
    }
    entries
}

/// 1 to [`defaults::CAMERA_ID_MAX_LEN`] characters of `A-Z a-z 0-9 _ -`:
/// the id is an RTSP path segment and part of variable names.
fn check_id(id: &str) -> Result<(), String> {
    let valid_chars = id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !id.is_empty() && id.len() <= defaults::CAMERA_ID_MAX_LEN && valid_chars {
        return Ok(());
    }
    let max = defaults::CAMERA_ID_MAX_LEN;
    let shown = if id.contains(['@', ':', '/']) {
        "(not shown, it looks like part of a URL)".to_owned()
    } else {
        format!("{id:?}")
    };
    Err(format!(
        "camera id {shown} must be 1 to {max} characters of A-Z, a-z, 0-9, '_' or '-'"
    ))
}

/// Parses an `rtsp://` or `rtsps://` URL and takes its credentials out.
/// Messages never quote the URL.
fn camera_url(value: &str) -> Result<CameraUrl, String> {
    let mut url = Url::parse(value).map_err(|e| format!("invalid URL ({e})"))?;
    if !matches!(url.scheme(), "rtsp" | "rtsps") {
        return Err(format!(
            "URL scheme {:?} is not supported (use rtsp or rtsps)",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("URL has no host".to_owned());
    }
    let username = match url.username() {
        "" => None,
        encoded => Some(
            parse::percent_decode(encoded)
                .ok_or("the user name in the URL is not UTF-8 once percent-decoded")?,
        ),
    };
    let password = match url.password() {
        None | Some("") => None,
        Some(encoded) => Some(SecretString::from(
            parse::percent_decode(encoded)
                .ok_or("the password in the URL is not UTF-8 once percent-decoded")?,
        )),
    };
    if url.set_username("").is_err() || url.set_password(None).is_err() {
        return Err("the credentials could not be removed from the URL".to_owned());
    }
    Ok(CameraUrl {
        url,
        username,
        password,
    })
}

/// Assigns every `CAMRELAY_CAMERA_*` variable to its camera and option;
/// the others are errors naming what exists.
fn sort_options<'a>(
    check: &mut Check,
    per_camera: &'a BTreeMap<String, String>,
    entries: &[Entry],
    names: &[String],
) -> BTreeMap<String, Options<'a>> {
    let keys: BTreeSet<String> = entries.iter().map(|e| camera_key(&e.id)).collect();
    let mut options: BTreeMap<String, Options<'a>> = BTreeMap::new();
    for (name, value) in per_camera {
        let Some((key, option)) = split_variable(name) else {
            let message = format!(
                "unknown per-camera option; the options are {}",
                PER_CAMERA_OPTIONS.join(", ")
            );
            unknown(check, name, message, names);
            continue;
        };
        if !keys.contains(key) {
            unknown(check, name, no_such_camera(key, entries), names);
            continue;
        }
        if !value.trim().is_empty() {
            options
                .entry(key.to_owned())
                .or_default()
                .insert(option, value);
        }
    }
    options
}

/// `CAMRELAY_CAMERA_<KEY>_<OPTION>` → (`KEY`, `OPTION`). No option ends in
/// `_` + another option, so the split is unambiguous.
fn split_variable(name: &str) -> Option<(&str, &'static str)> {
    let rest = name.strip_prefix(CAMERA_PREFIX)?;
    PER_CAMERA_OPTIONS.iter().find_map(|&option| {
        let key = rest.strip_suffix(option)?.strip_suffix('_')?;
        (!key.is_empty()).then_some((key, option))
    })
}

fn no_such_camera(key: &str, entries: &[Entry]) -> String {
    if entries.is_empty() {
        return format!("no camera has the key {key:?}: CAMRELAY_CAMERAS lists no camera");
    }
    let cameras = parse::join(
        entries
            .iter()
            .map(|e| format!("{:?} ({CAMERA_PREFIX}{}_*)", e.id, camera_key(&e.id))),
        ", ",
    );
    format!("no camera has the key {key:?}; the cameras are {cameras}")
}

fn unknown(check: &mut Check, name: &str, message: String, names: &[String]) {
    let candidates = KNOWN
        .iter()
        .copied()
        .chain(names.iter().map(String::as_str));
    let message = match vars::suggest(name, candidates) {
        Some(suggestion) => format!("{message} (did you mean {suggestion}?)"),
        None => message,
    };
    check.error(name, message);
}

/// Builds one camera from its entry and options, checking the options.
fn build(
    check: &mut Check,
    entry: Entry,
    options: &Options<'_>,
    always_on_default: bool,
) -> Option<StaticCamera> {
    let variable = |option| camera_variable(&entry.id, option);
    let name = options
        .get(NAME)
        .map_or_else(|| entry.id.clone(), |name| name.trim().to_owned());
    let always_on = check.value(
        &variable(ALWAYS_ON),
        options.get(ALWAYS_ON).copied(),
        always_on_default,
        parse::boolean,
    );
    let tls_verify = tls_verify(check, &entry, options);
    let credentials = credentials(check, &entry, options);
    let url = entry.url?;
    let (username, password) = credentials?;
    Some(StaticCamera {
        id: entry.id,
        name,
        url: url.url,
        username,
        password,
        always_on: always_on?,
        tls_verify: tls_verify?,
    })
}

fn tls_verify(check: &mut Check, entry: &Entry, options: &Options<'_>) -> Option<bool> {
    let variable = camera_variable(&entry.id, TLS_VERIFY);
    let raw = options.get(TLS_VERIFY).copied();
    let scheme = entry.url.as_ref().map(|u| u.url.scheme());
    if raw.is_some() && scheme == Some("rtsp") {
        check.error(
            variable,
            format!(
                "camera {:?} uses rtsp://, without TLS; TLS_VERIFY applies to rtsps:// only",
                entry.id
            ),
        );
        return None;
    }
    check.value(&variable, raw, defaults::CAMERA_TLS_VERIFY, parse::boolean)
}

/// Username and password from the URL or from the variables, not both.
/// `None` means a recorded problem.
fn credentials(
    check: &mut Check,
    entry: &Entry,
    options: &Options<'_>,
) -> Option<(Option<String>, Option<SecretString>)> {
    let user_var = camera_variable(&entry.id, USERNAME);
    let password_var = camera_variable(&entry.id, PASSWORD);
    let var_user = options.get(USERNAME).map(|u| u.trim().to_owned());
    let var_password = check.secret(
        &password_var,
        options.get(PASSWORD).copied(),
        SecretKind::Password,
    );
    let (url_user, url_password) = entry
        .url
        .as_ref()
        .map(|u| (u.username.clone(), u.password.clone()))
        .unwrap_or_default();

    let in_url = url_user.is_some() || url_password.is_some();
    let mut conflict = false;
    for (variable, set) in [
        (&user_var, var_user.is_some()),
        (&password_var, var_password.is_some()),
    ] {
        if in_url && set {
            conflict = true;
            check.error(
                variable.as_str(),
                format!(
                    "camera {:?} (entry {} of CAMRELAY_CAMERAS) already has credentials in its \
                     URL; give them in one place",
                    entry.id, entry.number
                ),
            );
        }
    }
    if conflict {
        return None;
    }

    let username = url_user.or(var_user);
    let password = url_password.or(var_password);
    if password.is_some() && username.is_none() {
        let (variable, place) = if in_url {
            (
                var::CAMERAS,
                format!("entry {} ({:?}): the URL", entry.number, entry.id),
            )
        } else {
            (password_var.as_str(), format!("camera {:?}", entry.id))
        };
        check.error(
            variable,
            format!("{place} has a password but no user name (set {user_var} or user:password@ in the URL)"),
        );
        return None;
    }
    Some((username, password))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_variables() {
        assert_eq!(camera_key("front-door_2"), "FRONT_DOOR_2");
        assert_eq!(
            camera_variable("front-door", TLS_VERIFY),
            "CAMRELAY_CAMERA_FRONT_DOOR_TLS_VERIFY"
        );
        assert_eq!(
            split_variable("CAMRELAY_CAMERA_FRONT_DOOR_TLS_VERIFY"),
            Some(("FRONT_DOOR", TLS_VERIFY))
        );
        assert_eq!(
            split_variable("CAMRELAY_CAMERA_A_USERNAME"),
            Some(("A", USERNAME))
        );
        assert_eq!(split_variable("CAMRELAY_CAMERA_A_NAME"), Some(("A", NAME)));
        assert_eq!(split_variable("CAMRELAY_CAMERA_NAME"), None);
        assert_eq!(split_variable("CAMRELAY_CAMERA_A_COLOR"), None);
    }

    #[test]
    fn ids() {
        assert!(check_id("a").is_ok());
        assert!(check_id(&"x".repeat(64)).is_ok());
        assert!(check_id(&"x".repeat(65)).is_err());
        assert!(check_id("").is_err());
        assert!(check_id("front door").is_err());
        let message = check_id("rtsp://u:secret@host/x?a").unwrap_err();
        assert!(!message.contains("secret"), "{message}");
    }

    #[test]
    fn camera_urls() {
        let parsed = camera_url("rtsps://us%20er:p%3Ba%40ss@cam.lan:322/live?x=1").unwrap();
        assert_eq!(parsed.url.as_str(), "rtsps://cam.lan:322/live?x=1");
        assert_eq!(parsed.username.as_deref(), Some("us er"));
        use secrecy::ExposeSecret;
        assert_eq!(
            parsed.password.as_ref().map(ExposeSecret::expose_secret),
            Some("p;a@ss")
        );
        assert!(camera_url("http://cam/x").is_err());
        assert!(camera_url("rtsp:/x").is_err());
        assert!(camera_url("not a url").is_err());
        let error = camera_url("rtsp://u:secret@host:notaport/x").err().unwrap();
        assert!(!error.contains("secret"), "{error}");
    }
}
