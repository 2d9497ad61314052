//! Re-signing a Digest `Authorization` header (RFC 7616, RFC 2617) for another URI.
//!
//! retina talks to an `rtsps://` camera through the loopback bridge (see [`super::tls`]), so it
//! signs its requests for the bridge's URI. The bridge puts the camera's URI back into the
//! request line, and with this into the Digest `uri` parameter too, with the `response`
//! recomputed to match: cameras and servers that check that `uri` names the Request-URI, as
//! RFC 7616 §3.4.6 asks (MediaMTX, for one), would otherwise refuse every request.
//!
//! The header is re-signed only if recomputing the old `response` for the old `uri` gives the
//! value retina sent, so a variant this does not know (a future algorithm, `auth-int`) is
//! left exactly as it was, never made worse.

use md5::Md5;
use sha2::{Sha256, Sha512_256};

/// A hash algorithm of Digest authentication.
#[derive(Debug, Clone, Copy)]
enum Algorithm {
    Md5,
    Sha256,
    Sha512_256,
}

impl Algorithm {
    /// The algorithm and whether it is a `-sess` variant; `None` for an unknown one.
    fn parse(name: &str) -> Option<(Self, bool)> {
        let (base, session) = match name.len().checked_sub("-sess".len()) {
            Some(at) if name.is_char_boundary(at) && name[at..].eq_ignore_ascii_case("-sess") => {
                (&name[..at], true)
            }
            _ => (name, false),
        };
        let algorithm = if base.eq_ignore_ascii_case("MD5") {
            Self::Md5
        } else if base.eq_ignore_ascii_case("SHA-256") {
            Self::Sha256
        } else if base.eq_ignore_ascii_case("SHA-512-256") {
            Self::Sha512_256
        } else {
            return None;
        };
        Some((algorithm, session))
    }

    /// The lowercase hex digest of `parts` joined by `:`.
    fn hash(self, parts: &[&str]) -> String {
        fn run<D: md5::Digest>(parts: &[&str]) -> String {
            let mut hasher = D::new();
            for (i, part) in parts.iter().enumerate() {
                if i > 0 {
                    hasher.update(b":");
                }
                hasher.update(part.as_bytes());
            }
            hasher
                .finalize()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        }
        match self {
            Self::Md5 => run::<Md5>(parts),
            Self::Sha256 => run::<Sha256>(parts),
            Self::Sha512_256 => run::<Sha512_256>(parts),
        }
    }
}

/// One `name=value` parameter of the header, as written.
struct Param<'a> {
    name: &'a str,
    /// The value, unquoted and unescaped.
    value: String,
    /// The parameter exactly as it appeared (`name="value"`), to write back unchanged.
    raw: &'a str,
}

/// Splits the parameters after `Digest `; `None` if they do not parse.
fn params(text: &str) -> Option<Vec<Param<'_>>> {
    let mut out = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let start = rest;
        let eq = rest.find('=')?;
        let name = rest[..eq].trim();
        if name.is_empty() || name.contains([',', ' ', '"']) {
            return None;
        }
        let after = rest[eq + 1..].trim_start();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => value.push(chars.next()?.1),
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => value.push(c),
                }
            }
            (value, &quoted[end?..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_owned(), &after[end..])
        };
        let raw = start[..start.len() - remaining.len()].trim();
        out.push(Param { name, value, raw });
        rest = remaining.trim_start();
        if let Some(next) = rest.strip_prefix(',') {
            rest = next.trim_start();
        } else if !rest.is_empty() {
            return None;
        }
    }
    Some(out)
}

/// The `response` for `uri`, computed as RFC 7616 §3.4.1 says (qop `auth`, or none as in
/// RFC 2069), from the header's own parameters; `None` for what it does not cover.
fn response(
    params: &[Param<'_>],
    method: &str,
    uri: &str,
    username: &str,
    password: &str,
) -> Option<String> {
    let get = |name: &str| {
        params
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
            .map(|p| p.value.as_str())
    };
    let (algorithm, session) = Algorithm::parse(get("algorithm").unwrap_or("MD5"))?;
    let realm = get("realm")?;
    let nonce = get("nonce")?;
    let mut ha1 = algorithm.hash(&[username, realm, password]);
    if session {
        ha1 = algorithm.hash(&[&ha1, nonce, get("cnonce")?]);
    }
    let ha2 = algorithm.hash(&[method, uri]);
    match get("qop") {
        None => Some(algorithm.hash(&[&ha1, nonce, &ha2])),
        Some(qop) if qop.eq_ignore_ascii_case("auth") => {
            let (nc, cnonce) = (get("nc")?, get("cnonce")?);
            Some(algorithm.hash(&[&ha1, nonce, nc, cnonce, qop, &ha2]))
        }
        Some(_) => None,
    }
}

/// `header` (the value of a Digest `Authorization` header for a `method` request) re-signed
/// so that its `uri`, which `map_uri` is given, becomes what `map_uri` returns. `None` if
/// there is nothing to change (`map_uri` returns `None`), or the header is not one this can
/// re-sign: not Digest, malformed, of an unknown variant, or not signed with `password`.
pub(super) fn resign(
    header: &str,
    method: &str,
    username: &str,
    password: &str,
    map_uri: impl FnOnce(&str) -> Option<String>,
) -> Option<String> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("Digest") {
        return None;
    }
    let params = params(rest)?;
    let find = |name: &str| params.iter().find(|p| p.name.eq_ignore_ascii_case(name));
    let old_uri = &find("uri")?.value;
    let new_uri = map_uri(old_uri)?;
    if new_uri.contains(['"', '\\', '\r', '\n']) {
        return None;
    }
    let sent = &find("response")?.value;
    let old = response(&params, method, old_uri, username, password)?;
    if !old.eq_ignore_ascii_case(sent) {
        return None;
    }
    let new = response(&params, method, &new_uri, username, password)?;
    let rewritten: Vec<String> = params
        .iter()
        .map(|p| {
            if p.name.eq_ignore_ascii_case("uri") {
                format!("{}=\"{new_uri}\"", p.name)
            } else if p.name.eq_ignore_ascii_case("response") {
                format!("{}=\"{new}\"", p.name)
            } else {
                p.raw.to_owned()
            }
        })
        .collect();
    Some(format!("{scheme} {}", rewritten.join(", ")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// RFC 7616 §3.9.1's example, whose responses the RFC gives for MD5 and SHA-256.
    fn rfc_header(algorithm: &str, response: &str) -> String {
        format!(
            "Digest username=\"Mufasa\", realm=\"http-auth@example.org\", uri=\"/dir/index.html\", \
             algorithm={algorithm}, nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", \
             nc=00000001, cnonce=\"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ\", qop=auth, \
             response=\"{response}\", opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\""
        )
    }

    #[test]
    fn recomputes_the_rfc_examples_and_resigns_them_for_another_uri() {
        for (algorithm, response) in [
            ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
            (
                "SHA-256",
                "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
            ),
        ] {
            let header = rfc_header(algorithm, response);
            // Re-signed for the same URI it is unchanged: the computation is the RFC's.
            let same = resign(&header, "GET", "Mufasa", "Circle of Life", |u| {
                Some(u.to_owned())
            });
            assert_eq!(same.as_deref(), Some(header.as_str()), "{algorithm}");
            let moved = resign(&header, "GET", "Mufasa", "Circle of Life", |_| {
                Some("/elsewhere".to_owned())
            })
            .unwrap();
            assert!(moved.contains("uri=\"/elsewhere\""), "{moved}");
            assert!(!moved.contains(response), "{moved}");
            // Everything else is kept as written.
            assert!(moved.contains("nc=00000001, cnonce=\"f2/"), "{moved}");
            assert!(moved.ends_with("opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\""));
            // The re-signed header verifies for its new URI.
            let again = resign(&moved, "GET", "Mufasa", "Circle of Life", |u| {
                Some(u.to_owned())
            });
            assert_eq!(again.as_deref(), Some(moved.as_str()));
        }
    }

    #[test]
    fn leaves_alone_what_it_cannot_resign() {
        let header = rfc_header("MD5", "8ca523f5e9506fed4657c9700eebdbec");
        let to = |_: &str| Some("/x".to_owned());
        // Another password, method or response: not ours to vouch for.
        assert!(resign(&header, "GET", "Mufasa", "guess", to).is_none());
        assert!(resign(&header, "PUT", "Mufasa", "Circle of Life", to).is_none());
        for other in [
            header.replace("qop=auth", "qop=auth-int"),
            header.replace("MD5", "SHA3"),
            header.replace("Digest", "Basic"),
            header.replace("uri=", "url="),
            header.replace("\"/dir/index.html\"", "\"/dir/index.html"),
            "Digest".to_owned(),
            "Digest =x".to_owned(),
            "Digest a=\"\\".to_owned(),
        ] {
            assert!(
                resign(&other, "GET", "Mufasa", "Circle of Life", to).is_none(),
                "{other}"
            );
        }
        // Nothing to change.
        assert!(resign(&header, "GET", "Mufasa", "Circle of Life", |_| None).is_none());
    }

    #[test]
    fn resigns_session_variants_and_rfc_2069_headers() {
        for variant in ["MD5-sess", "SHA-256-sess", "SHA-512-256"] {
            let params_text = format!(
                "username=\"u\", realm=\"r\", nonce=\"n\", uri=\"/a\", algorithm={variant}, \
                 qop=auth, nc=00000002, cnonce=\"c\", response=\"\""
            );
            let parsed = params(&params_text).unwrap();
            let signed = response(&parsed, "PLAY", "/a", "u", "p").unwrap();
            let header = format!(
                "Digest {}",
                params_text.replace("\"\"", &format!("\"{signed}\""))
            );
            let moved = resign(&header, "PLAY", "u", "p", |_| Some("/b".to_owned())).unwrap();
            let parsed = params(moved.strip_prefix("Digest ").unwrap()).unwrap();
            let expected = response(&parsed, "PLAY", "/b", "u", "p").unwrap();
            assert!(moved.contains(&expected), "{variant}: {moved}");
        }
        // RFC 2069: no qop, nc or cnonce.
        let parsed = params("username=\"u\", realm=\"r\", nonce=\"n\", uri=\"/a\"").unwrap();
        let signed = response(&parsed, "DESCRIBE", "/a", "u", "p").unwrap();
        let header = format!(
            "Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"/a\", response=\"{signed}\""
        );
        assert!(resign(&header, "DESCRIBE", "u", "p", |_| Some("/b".to_owned())).is_some());
    }
}
