//! Value parsers and the collector that records their errors.
//!
//! A parser is a plain `fn(&str) -> Result<T, String>` whose message may quote
//! the value (only non-secret values go through them); [`Check`] runs it,
//! applies the default when the variable is unset, and records the message
//! under the variable's name instead of stopping.

use std::fmt::Display;
use std::net::SocketAddr;
use std::time::Duration;

use secrecy::SecretString;
use url::Url;

use crate::error::ConfigErrors;

/// Collects every problem while the configuration is assembled.
#[derive(Debug, Default)]
pub(crate) struct Check {
    pub(crate) errors: ConfigErrors,
}

impl Check {
    pub(crate) fn error(&mut self, variable: impl Into<String>, message: impl Into<String>) {
        self.errors.push(variable, message);
    }

    /// Parses `raw` (trimmed), or returns `default` when it is unset. `None`
    /// means the value was bad and the problem is recorded.
    pub(crate) fn value<T>(
        &mut self,
        variable: &str,
        raw: Option<&str>,
        default: T,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        match raw {
            None => Some(default),
            Some(raw) => self.record(variable, parse(raw.trim())),
        }
    }

    /// Parses `raw` (trimmed) if it is set. `None` means unset or bad; ask
    /// `raw.is_some()` to tell them apart.
    pub(crate) fn optional<T>(
        &mut self,
        variable: &str,
        raw: Option<&str>,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        raw.and_then(|raw| self.record(variable, parse(raw.trim())))
    }

    /// Wraps a secret. The value is taken as given (not trimmed); `tokens`
    /// are opaque strings from a provider, in which whitespace is always a
    /// copy-and-paste accident. Messages never quote the value.
    pub(crate) fn secret(
        &mut self,
        variable: &str,
        raw: Option<&str>,
        kind: SecretKind,
    ) -> Option<SecretString> {
        let raw = raw?;
        if kind == SecretKind::Token && raw.chars().any(char::is_whitespace) {
            self.error(variable, "contains whitespace (value not shown)");
            return None;
        }
        Some(SecretString::from(raw))
    }

    fn record<T>(&mut self, variable: &str, result: Result<T, String>) -> Option<T> {
        result.map_err(|message| self.error(variable, message)).ok()
    }
}

/// How strictly [`Check::secret`] looks at a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SecretKind {
    /// Anything goes (camera passwords).
    Password,
    /// An opaque token or API secret: no whitespace.
    Token,
}

/// `true`/`false`, `1`/`0`, `yes`/`no`, in any case.
pub(crate) fn boolean(value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(format!(
            "{value:?} is not a boolean (use true/false, 1/0 or yes/no)"
        )),
    }
}

/// `ip:port`, e.g. `0.0.0.0:8080` or `[::]:8554`.
pub(crate) fn socket_addr(value: &str) -> Result<SocketAddr, String> {
    value.parse().map_err(|_| {
        format!(
            "{value:?} is not a socket address (expected ip:port, e.g. 0.0.0.0:8080 or [::]:8080)"
        )
    })
}

/// A humantime duration (`30s`, `5m`, `1500ms`, `1m 30s`) within `min..=max`.
pub(crate) fn duration_in(
    min: Duration,
    max: Duration,
) -> impl FnOnce(&str) -> Result<Duration, String> {
    move |value| {
        let duration = humantime::parse_duration(value)
            .map_err(|e| format!("{value:?} is not a duration ({e}; e.g. 30s, 5m, 1500ms)"))?;
        in_range(value, duration, min, max, fmt_duration)
    }
}

/// A whole number within `min..=max`.
pub(crate) fn u32_in(min: u32, max: u32) -> impl FnOnce(&str) -> Result<u32, String> {
    move |value| {
        let number = value
            .parse()
            .map_err(|_| format!("{value:?} is not a whole number"))?;
        in_range(value, number, min, max, |n| n.to_string())
    }
}

/// A whole number within `min..=max`, for counts and sizes.
pub(crate) fn usize_in(min: usize, max: usize) -> impl FnOnce(&str) -> Result<usize, String> {
    move |value| {
        let number = value
            .parse()
            .map_err(|_| format!("{value:?} is not a whole number"))?;
        in_range(value, number, min, max, |n| n.to_string())
    }
}

/// A finite number `>= 0`.
pub(crate) fn non_negative_f64(value: &str) -> Result<f64, String> {
    let number: f64 = value
        .parse()
        .map_err(|_| format!("{value:?} is not a number"))?;
    if number.is_finite() && number >= 0.0 {
        Ok(number)
    } else {
        Err(format!("{value:?} must be a finite number >= 0"))
    }
}

/// An absolute `http` or `https` URL with a host and no credentials.
/// `http` is allowed for the offline simulator and local test servers.
pub(crate) fn http_url(value: &str) -> Result<Url, String> {
    let url = Url::parse(value).map_err(|e| format!("{} is not a URL ({e})", show_url(value)))?;
    check_http_url(value, &url)?;
    Ok(url)
}

/// The checks of [`http_url`] on an already parsed URL. The value is quoted
/// only once it is known to hold no credentials.
pub(crate) fn check_http_url(value: &str, url: &Url) -> Result<(), String> {
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain credentials (value not shown)".to_owned());
    }
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{value:?} must be an http or https URL"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{value:?} has no host"));
    }
    Ok(())
}

/// `value` quoted for a message, unless it may hold credentials (`@`): a
/// URL that does not parse cannot be reliably redacted.
pub(crate) fn show_url(value: &str) -> String {
    if value.contains('@') {
        "the value (not shown, it may contain credentials)".to_owned()
    } else {
        format!("{value:?}")
    }
}

/// A non-empty text value (already trimmed by [`Check`]).
pub(crate) fn text(value: &str) -> Result<String, String> {
    if value.is_empty() {
        Err("must not be empty".to_owned())
    } else {
        Ok(value.to_owned())
    }
}

/// `value` as humantime prints it, e.g. `5m` or `1s 500ms`.
pub(crate) fn fmt_duration(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

fn in_range<T: PartialOrd>(
    value: &str,
    parsed: T,
    min: T,
    max: T,
    show: impl Fn(T) -> String,
) -> Result<T, String> {
    if parsed < min || parsed > max {
        Err(format!(
            "{value:?} is out of range: must be between {} and {}",
            show(min),
            show(max)
        ))
    } else {
        Ok(parsed)
    }
}

/// Percent-decodes URL userinfo (`pa%40ss` → `pa@ss`). `None` when the
/// result is not UTF-8. A `%` not followed by two hex digits stays as is.
pub(crate) fn percent_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        let escaped = (byte == b'%')
            .then(|| Some(hex(*bytes.get(i + 1)?)? * 16 + hex(*bytes.get(i + 2)?)?))
            .flatten();
        match escaped {
            Some(decoded) => {
                out.push(decoded);
                i += 3;
            }
            None => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn hex(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// Joins displayable items with `separator`.
pub(crate) fn join<T: Display>(items: impl IntoIterator<Item = T>, separator: &str) -> String {
    items
        .into_iter()
        .map(|item| item.to_string())
        .collect::<Vec<_>>()
        .join(separator)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans() {
        for yes in ["true", "TRUE", "1", "yes", "Yes"] {
            assert_eq!(boolean(yes), Ok(true), "{yes}");
        }
        for no in ["false", "False", "0", "no", "NO"] {
            assert_eq!(boolean(no), Ok(false), "{no}");
        }
        assert!(boolean("on").is_err());
        assert!(boolean("").is_err());
    }

    #[test]
    fn durations_and_ranges() {
        let parse = |v| duration_in(Duration::ZERO, Duration::from_secs(10))(v);
        assert_eq!(parse("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        assert!(parse("11s").unwrap_err().contains("between 0s and 10s"));
        assert!(parse("soon").unwrap_err().contains("\"soon\""));
        assert_eq!(u32_in(1, 5)("5"), Ok(5));
        assert!(u32_in(1, 5)("0").is_err());
        assert!(u32_in(1, 5)("-1").is_err());
        assert_eq!(usize_in(1, 5)("1"), Ok(1));
        assert!(usize_in(1, 5)("6").unwrap_err().contains("between 1 and 5"));
        assert!(usize_in(1, 5)("1.5").is_err());
        assert!(non_negative_f64("NaN").is_err());
        assert!(non_negative_f64("inf").is_err());
        assert!(non_negative_f64("-0.5").is_err());
    }

    #[test]
    fn urls() {
        assert!(http_url("http://127.0.0.1:9000/v1").is_ok());
        assert!(http_url("ftp://example.com").is_err());
        let creds = http_url("https://user:hunter2@example.com").unwrap_err();
        assert!(!creds.contains("hunter2"), "{creds}");
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("pa%40ss").as_deref(), Some("pa@ss"));
        assert_eq!(percent_decode("100%").as_deref(), Some("100%"));
        assert_eq!(percent_decode("%zz%4").as_deref(), Some("%zz%4"));
        assert_eq!(percent_decode("%C3%A9").as_deref(), Some("é"));
        assert_eq!(percent_decode("%FF"), None);
    }
}
