//! Keeps remote text safe to log.
//!
//! Error messages come from the remote side. Google's do not quote tokens as far as anyone has
//! seen, but a message that echoed a request parameter would carry a stream or extension token
//! into our logs and stats. Every remote message therefore passes through [`remote_text`], which
//! truncates it and masks anything shaped like a token.

/// Longest remote message kept, in characters.
pub const MAX_REMOTE_TEXT: usize = 300;

/// Runs of token characters at least this long are masked. Stream tokens, extension tokens,
/// OAuth tokens and JWTs are all far longer; ordinary words and numbers are shorter.
pub const TOKEN_RUN: usize = 24;

/// A remote message fit for logs: control characters dropped, token-like runs masked, truncated
/// to [`MAX_REMOTE_TEXT`] characters.
pub fn remote_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_REMOTE_TEXT + 16));
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.chars().count() >= TOKEN_RUN {
            out.push_str("[redacted]");
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for (count, c) in text.chars().enumerate() {
        if count >= MAX_REMOTE_TEXT {
            flush(&mut run, &mut out);
            out.push('…');
            return out;
        }
        if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '~' | '+' | '/' | '=') {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            if !c.is_control() {
                out.push(c);
            }
        }
    }
    flush(&mut run, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_token_shaped_runs_and_keeps_words() {
        let msg = "Invalid token CjY5Y3VKaTZwR3o4Y19YbFVOaEFGR3dNMjZvdHlBdk for device.";
        assert_eq!(remote_text(msg), "Invalid token [redacted] for device.");
        let jwt = "auth=g.0.eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjE3MDAwMDAwMDB9.c2lnbmF0dXJl";
        assert_eq!(remote_text(jwt), "[redacted]");
        let plain = "Rate limited for the ExecuteDeviceCommand API for the user.";
        assert_eq!(remote_text(plain), plain);
    }

    #[test]
    fn truncates_and_drops_control_characters() {
        let long = "a b ".repeat(200);
        let out = remote_text(&long);
        assert!(out.chars().count() <= MAX_REMOTE_TEXT + 1);
        assert!(out.ends_with('…'));
        assert_eq!(remote_text("line\nbreak\u{7}"), "linebreak");
    }
}
