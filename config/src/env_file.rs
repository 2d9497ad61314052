//! `CAMRELAY_ENV_FILE`: variables from a file, re-readable on SIGHUP.
//!
//! The syntax is the common subset of systemd's `EnvironmentFile=`, Docker's `--env-file` and
//! dotenv: one `NAME=value` per line, blank lines and lines starting with `#` ignored, an
//! optional leading `export `, and a value wrapped in matching single or double quotes taken
//! without them (no escapes, no inline comments: a `#` inside a value is part of it). Names
//! outside the `CAMRELAY_` prefix are ignored, so the file may be shared.

use std::path::Path;

use crate::vars::PREFIX;

/// The variables in `text`; a bad line is reported by number only (it may hold a secret).
pub(crate) fn parse(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut vars = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((name, value)) = line.split_once('=') else {
            return Err(format!("line {}: expected NAME=value", n + 1));
        };
        let name = name.trim();
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(format!(
                "line {}: not a variable name before '=' (A-Z, 0-9 and _)",
                n + 1
            ));
        }
        if !name.starts_with(PREFIX) {
            continue;
        }
        let value = value.trim();
        let value = ['"', '\'']
            .iter()
            .find_map(|q| {
                value
                    .strip_prefix(*q)
                    .and_then(|v| v.strip_suffix(*q))
                    .filter(|_| value.len() >= 2)
            })
            .unwrap_or(value);
        vars.push((name.to_owned(), value.to_owned()));
    }
    Ok(vars)
}

/// Reads and parses the file at `path`.
pub(crate) fn read(path: &Path) -> Result<Vec<(String, String)>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_parse_like_systemd_and_dotenv() {
        let text = "# comment\n\nCAMRELAY_A=1\nexport CAMRELAY_B = \"two # words\"\n\
                    CAMRELAY_C='x=y'\nOTHER=ignored\nCAMRELAY_D=\nCAMRELAY_E=\"\n";
        let vars = parse(text).unwrap();
        let expected = [
            ("CAMRELAY_A", "1"),
            ("CAMRELAY_B", "two # words"),
            ("CAMRELAY_C", "x=y"),
            ("CAMRELAY_D", ""),
            ("CAMRELAY_E", "\""),
        ];
        assert_eq!(
            vars,
            expected
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn bad_lines_are_named_by_number_without_their_content() {
        let e = parse("CAMRELAY_A=1\nsecret-value-without-equals\n").unwrap_err();
        assert_eq!(e, "line 2: expected NAME=value");
        assert!(parse("lower=1").is_err());
    }
}
