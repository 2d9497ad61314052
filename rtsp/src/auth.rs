//! Client authentication for the RTSP server: Basic (RFC 7617) and Digest (RFC 2617 with MD5,
//! with or without `qop=auth`, which is what ffmpeg, GStreamer and VLC speak).
//!
//! Digest nonces are stateless: the time they were issued plus a keyed hash of it, so nothing
//! is stored per client and a nonce older than [`NONCE_LIFETIME`] is refused as stale. A
//! challenge offers Digest first and Basic second; credentials are never logged.

use std::time::{Duration, Instant};

use base64::Engine as _;
use md5::{Digest as _, Md5};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

/// How long a Digest nonce stays valid. Clients reuse the nonce for every request of a
/// session; after this they are challenged again (with `stale=true`) and answer without asking
/// the user.
pub const NONCE_LIFETIME: Duration = Duration::from_secs(3600);

/// One allowed user.
#[derive(Debug, Clone)]
pub struct User {
    /// User name.
    pub name: String,
    /// Password.
    pub password: SecretString,
}

/// Checks `Authorization` headers against configured users.
#[derive(Debug)]
pub struct Authenticator {
    realm: String,
    users: Vec<User>,
    key: [u8; 16],
    epoch: Instant,
    check_uri: bool,
}

/// Why a request was not let in, with the challenges to send in `WWW-Authenticate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// One header value per offered scheme.
    pub headers: Vec<String>,
}

impl Authenticator {
    /// An authenticator for `users` in `realm`.
    pub fn new(realm: impl Into<String>, users: Vec<User>) -> Self {
        // The key makes nonces unforgeable; the OS CSPRNG has it. The fallback is for a
        // platform without one, where the nonces are still unique, only guessable.
        let mut key = [0u8; 16];
        if getrandom::fill(&mut key).is_err() {
            for byte in &mut key {
                *byte = fastrand::u8(..);
            }
        }
        Self {
            realm: realm.into().replace('"', "'"),
            users,
            key,
            epoch: Instant::now(),
            check_uri: false,
        }
    }

    /// Also requires a Digest `uri` to name the request's URL, as RFC 7616 §3.4.6 asks and
    /// MediaMTX does (in SETUP the stream's URL is accepted for the track's, which VLC
    /// signs). Off by default: the relay's own server accepts a response that is right for
    /// whatever `uri` the client signed, so no client is refused for how it names the URL.
    /// The camera simulator checks, as strict cameras do.
    #[must_use]
    pub fn checking_request_uri(mut self) -> Self {
        self.check_uri = true;
        self
    }

    /// Lets a request in if its `authorization` header is valid for `method` (`DESCRIBE`, …)
    /// on `url` (`None` for `*`) at `now`.
    pub fn check(
        &self,
        method: &str,
        url: Option<&Url>,
        authorization: Option<&str>,
        now: Instant,
    ) -> Result<(), Challenge> {
        let stale = match authorization.map(str::trim) {
            Some(header) if starts_with_ignore_case(header, "basic ") => {
                if self.basic_ok(&header[6..]) {
                    return Ok(());
                }
                false
            }
            Some(header) if starts_with_ignore_case(header, "digest ") => {
                match self.digest(method, url, &header[7..], now) {
                    DigestCheck::Ok => return Ok(()),
                    DigestCheck::Stale => true,
                    DigestCheck::Wrong => false,
                }
            }
            _ => false,
        };
        Err(self.challenge(now, stale))
    }

    fn challenge(&self, now: Instant, stale: bool) -> Challenge {
        let nonce = self.nonce(now);
        let stale = if stale { ", stale=true" } else { "" };
        Challenge {
            headers: vec![
                format!(
                    "Digest realm=\"{}\", nonce=\"{nonce}\", algorithm=MD5, qop=\"auth\"{stale}",
                    self.realm
                ),
                format!("Basic realm=\"{}\"", self.realm),
            ],
        }
    }

    fn nonce(&self, now: Instant) -> String {
        let issued = now.saturating_duration_since(self.epoch).as_secs();
        format!("{issued:016x}{}", self.tag(issued))
    }

    fn tag(&self, issued: u64) -> String {
        let mut hash = Md5::new();
        hash.update(self.key);
        hash.update(issued.to_be_bytes());
        hex(&hash.finalize())
    }

    fn basic_ok(&self, encoded: &str) -> bool {
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
            return false;
        };
        let Ok(decoded) = String::from_utf8(decoded) else {
            return false;
        };
        let Some((name, password)) = decoded.split_once(':') else {
            return false;
        };
        self.users.iter().any(|u| {
            u.name == name
                && constant_time_eq(u.password.expose_secret().as_bytes(), password.as_bytes())
        })
    }

    fn digest(&self, method: &str, url: Option<&Url>, params: &str, now: Instant) -> DigestCheck {
        let fields = parse_params(params);
        let get = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        let (Some(username), Some(nonce), Some(uri), Some(response)) =
            (get("username"), get("nonce"), get("uri"), get("response"))
        else {
            return DigestCheck::Wrong;
        };
        if get("algorithm").is_some_and(|a| !a.eq_ignore_ascii_case("MD5")) {
            return DigestCheck::Wrong;
        }
        if self.check_uri && !names_request(uri, method, url) {
            return DigestCheck::Wrong;
        }
        // Our nonce: 16 hex digits of issue time and the tag over it.
        let Some((issued, tag)) = nonce.split_at_checked(16) else {
            return DigestCheck::Wrong;
        };
        let Ok(issued) = u64::from_str_radix(issued, 16) else {
            return DigestCheck::Wrong;
        };
        if !constant_time_eq(tag.as_bytes(), self.tag(issued).as_bytes()) {
            return DigestCheck::Wrong;
        }
        let Some(user) = self.users.iter().find(|u| u.name == username) else {
            return DigestCheck::Wrong;
        };
        let ha1 = md5_hex(&format!(
            "{username}:{}:{}",
            self.realm,
            user.password.expose_secret()
        ));
        let ha2 = md5_hex(&format!("{method}:{uri}"));
        let expected = match get("qop") {
            Some(qop) if qop.eq_ignore_ascii_case("auth") => {
                let (Some(nc), Some(cnonce)) = (get("nc"), get("cnonce")) else {
                    return DigestCheck::Wrong;
                };
                md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}"))
            }
            Some(_) => return DigestCheck::Wrong,
            None => md5_hex(&format!("{ha1}:{nonce}:{ha2}")),
        };
        if !constant_time_eq(
            expected.as_bytes(),
            response.to_ascii_lowercase().as_bytes(),
        ) {
            return DigestCheck::Wrong;
        }
        let age = now
            .saturating_duration_since(self.epoch)
            .as_secs()
            .saturating_sub(issued);
        if age > NONCE_LIFETIME.as_secs() {
            return DigestCheck::Stale;
        }
        DigestCheck::Ok
    }
}

/// Whether a Digest `uri` names the request's `url`; in SETUP, the stream's URL (the track's
/// without its last segment, with or without a trailing slash) counts too.
fn names_request(uri: &str, method: &str, url: Option<&Url>) -> bool {
    let Some(url) = url else {
        return uri == "*";
    };
    let Ok(given) = Url::parse(uri) else {
        return false;
    };
    if given == *url {
        return true;
    }
    if method != "SETUP" {
        return false;
    }
    let path = url.path();
    let Some(cut) = path.trim_end_matches('/').rfind('/') else {
        return false;
    };
    let mut stream = url.clone();
    stream.set_query(None);
    stream.set_path(&path[..cut]);
    let given_path = given.path().trim_end_matches('/');
    given.query().is_none() && given_path == stream.path() && {
        let mut given = given.clone();
        given.set_path(given_path);
        given == stream
    }
}

enum DigestCheck {
    Ok,
    Stale,
    Wrong,
}

fn starts_with_ignore_case(text: &str, prefix: &str) -> bool {
    text.len() >= prefix.len()
        && text.is_char_boundary(prefix.len())
        && text[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// `key=value, key="quoted, value"` pairs; malformed pieces are skipped.
fn parse_params(params: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = params.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key.trim().trim_start_matches(',').trim().to_owned();
        let after = after.trim_start();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.split_once('"') {
                Some((value, remaining)) => (value.to_owned(), remaining),
                None => (quoted.to_owned(), ""),
            }
        } else {
            match after.split_once(',') {
                Some((value, remaining)) => (value.trim().to_owned(), remaining),
                None => (after.trim().to_owned(), ""),
            }
        };
        out.push((key, value));
        rest = remaining.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

fn md5_hex(text: &str) -> String {
    hex(&Md5::digest(text.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authenticator() -> Authenticator {
        Authenticator::new(
            "camrelay",
            vec![User {
                name: "viewer".into(),
                password: SecretString::from("pa:ss w0rd".to_owned()),
            }],
        )
    }

    fn nonce_of(challenge: &Challenge) -> String {
        let digest = &challenge.headers[0];
        let start = digest.find("nonce=\"").unwrap() + 7;
        digest[start..start + 48].to_owned()
    }

    /// What a client computes (RFC 2617 §3.2.2).
    fn digest_header(
        user: &str,
        pass: &str,
        nonce: &str,
        method: &str,
        uri: &str,
        qop: bool,
    ) -> String {
        let ha1 = md5_hex(&format!("{user}:camrelay:{pass}"));
        let ha2 = md5_hex(&format!("{method}:{uri}"));
        if qop {
            let response = md5_hex(&format!("{ha1}:{nonce}:00000001:abcdef:auth:{ha2}"));
            format!(
                "Digest username=\"{user}\", realm=\"camrelay\", nonce=\"{nonce}\", uri=\"{uri}\", \
                 qop=auth, nc=00000001, cnonce=\"abcdef\", response=\"{response}\""
            )
        } else {
            let response = md5_hex(&format!("{ha1}:{nonce}:{ha2}"));
            format!(
                "Digest username=\"{user}\", realm=\"camrelay\", nonce=\"{nonce}\", uri=\"{uri}\", \
                 response=\"{response}\""
            )
        }
    }

    #[test]
    fn basic_accepts_the_right_password_only() {
        let a = authenticator();
        let now = Instant::now();
        let good = base64::engine::general_purpose::STANDARD.encode("viewer:pa:ss w0rd");
        assert!(
            a.check("DESCRIBE", None, Some(&format!("Basic {good}")), now)
                .is_ok()
        );
        let bad = base64::engine::general_purpose::STANDARD.encode("viewer:nope");
        let challenge = a
            .check("DESCRIBE", None, Some(&format!("Basic {bad}")), now)
            .unwrap_err();
        assert!(challenge.headers[0].starts_with("Digest realm=\"camrelay\""));
        assert_eq!(challenge.headers[1], "Basic realm=\"camrelay\"");
        assert!(a.check("DESCRIBE", None, None, now).is_err());
        assert!(a.check("DESCRIBE", None, Some("Basic !!!"), now).is_err());
    }

    #[test]
    fn a_strict_authenticator_requires_the_digest_uri_to_name_the_request() {
        let lenient = authenticator();
        let strict = authenticator().checking_request_uri();
        let now = Instant::now();
        let url = |u: &str| Url::parse(u).unwrap();
        let stream = "rtsp://127.0.0.1:8554/front-door";
        let track = url("rtsp://127.0.0.1:8554/front-door/trackID=0");
        // Each authenticator's nonces are its own.
        let signed_for = |a: &Authenticator, method: &str, uri: &str| {
            let nonce = nonce_of(&a.check("DESCRIBE", None, None, now).unwrap_err());
            digest_header("viewer", "pa:ss w0rd", &nonce, method, uri, true)
        };
        let signed = |method: &str, uri: &str| signed_for(&strict, method, uri);

        for a in [&lenient, &strict] {
            let describe = signed_for(a, "DESCRIBE", stream);
            assert!(
                a.check("DESCRIBE", Some(&url(stream)), Some(&describe), now)
                    .is_ok()
            );
        }
        // Signed for another URL, as through a proxy that rewrites the request line only.
        let elsewhere = "rtsp://127.0.0.1:4000/front-door";
        let other = signed_for(&lenient, "DESCRIBE", elsewhere);
        let ok = lenient.check("DESCRIBE", Some(&url(stream)), Some(&other), now);
        assert!(ok.is_ok());
        let other = signed("DESCRIBE", elsewhere);
        let refused = strict.check("DESCRIBE", Some(&url(stream)), Some(&other), now);
        assert!(refused.is_err());
        let describe = signed("DESCRIBE", stream);
        assert!(
            strict
                .check("DESCRIBE", None, Some(&describe), now)
                .is_err()
        );

        // SETUP of a track may be signed for the track or for the stream (VLC), nothing else.
        let stream_slash = format!("{stream}/");
        for (uri, accepted) in [
            (track.as_str(), true),
            (stream, true),
            (&stream_slash, true),
            ("rtsp://127.0.0.1:8554/elsewhere", false),
            ("rtsp://127.0.0.1:8554/", false),
        ] {
            let setup = signed("SETUP", uri);
            let checked = strict.check("SETUP", Some(&track), Some(&setup), now);
            assert_eq!(checked.is_ok(), accepted, "{uri}");
        }
        // Only in SETUP.
        let play = signed("PLAY", stream);
        assert!(
            strict
                .check("PLAY", Some(&track), Some(&play), now)
                .is_err()
        );
    }

    #[test]
    fn digest_with_and_without_qop() {
        let a = authenticator();
        let now = Instant::now();
        let nonce = nonce_of(&a.check("DESCRIBE", None, None, now).unwrap_err());
        let uri = "rtsp://127.0.0.1:8554/front-door";
        for qop in [false, true] {
            let header = digest_header("viewer", "pa:ss w0rd", &nonce, "DESCRIBE", uri, qop);
            assert!(
                a.check("DESCRIBE", None, Some(&header), now).is_ok(),
                "qop={qop}"
            );
            // The method is part of the hash.
            assert!(a.check("SETUP", None, Some(&header), now).is_err());
        }
        let wrong = digest_header("viewer", "guess", &nonce, "DESCRIBE", uri, false);
        assert!(a.check("DESCRIBE", None, Some(&wrong), now).is_err());
        let forged = digest_header(
            "viewer",
            "pa:ss w0rd",
            "0000000000000000ffffffffffffffffffffffffffffffff",
            "DESCRIBE",
            uri,
            false,
        );
        assert!(a.check("DESCRIBE", None, Some(&forged), now).is_err());
    }

    #[test]
    fn an_old_nonce_is_stale() {
        let a = authenticator();
        let now = Instant::now();
        let nonce = nonce_of(&a.check("PLAY", None, None, now).unwrap_err());
        let header = digest_header("viewer", "pa:ss w0rd", &nonce, "PLAY", "rtsp://h/c", true);
        let later = now + NONCE_LIFETIME + Duration::from_secs(5);
        let challenge = a.check("PLAY", None, Some(&header), later).unwrap_err();
        assert!(challenge.headers[0].ends_with("stale=true"));
    }

    #[test]
    fn garbage_headers_are_refused() {
        let a = authenticator();
        let now = Instant::now();
        for header in [
            "Digest",
            "Digest ,,,===",
            "Digest username=\"x",
            "Bearer abc",
            "",
            "digest nonce=\"é\"",
        ] {
            assert!(
                a.check("DESCRIBE", None, Some(header), now).is_err(),
                "{header}"
            );
        }
        assert_eq!(
            parse_params(r#"a="1, 2", b=3,c = "4""#),
            vec![
                ("a".into(), "1, 2".into()),
                ("b".into(), "3".into()),
                ("c".into(), "4".into())
            ]
        );
    }
}
