//! The `camrelay` binary's command line: `check-config` on good and broken environments.

// Tests may panic on unexpected values; that is how they fail.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};

/// Distinctive secret values: none may ever appear in output.
const SECRETS: [&str; 6] = [
    "client-secret-7f3a9c",
    "refresh-token-2b8e1d",
    "calls-secret-5c4f0a",
    "camera-pass-9d2e7b",
    "url-pass-6a1c3f",
    "whip-token-3e8b5d",
];

fn camrelay(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_camrelay"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn assert_no_secret(out: &str) {
    for secret in SECRETS {
        assert!(!out.contains(secret), "{secret} printed in:\n{out}");
    }
}

fn full_environment() -> Vec<(&'static str, &'static str)> {
    vec![
        ("CAMRELAY_NEST_PROJECT_ID", "my-project"),
        (
            "CAMRELAY_NEST_CLIENT_ID",
            "client.apps.googleusercontent.com",
        ),
        ("CAMRELAY_NEST_CLIENT_SECRET", SECRETS[0]),
        ("CAMRELAY_NEST_REFRESH_TOKEN", SECRETS[1]),
        ("CAMRELAY_CALLS_APP_ID", "app-123"),
        ("CAMRELAY_CALLS_APP_SECRET", SECRETS[2]),
        (
            "CAMRELAY_CAMERAS",
            "porch=rtsp://admin:url-pass-6a1c3f@192.0.2.10/stream1;yard=rtsps://192.0.2.11/live",
        ),
        ("CAMRELAY_CAMERA_YARD_USERNAME", "viewer"),
        ("CAMRELAY_CAMERA_YARD_PASSWORD", SECRETS[3]),
        ("CAMRELAY_CAMERA_YARD_TLS_VERIFY", "false"),
    ]
}

#[test]
fn check_config_prints_the_effective_configuration_without_secrets() {
    let output = camrelay(&["check-config"], &full_environment());
    let out = text(&output);
    assert!(output.status.success(), "{out}");
    assert!(out.contains("CAMRELAY_NEST_QPM=10"), "{out}");
    assert!(
        out.contains("CAMRELAY_NEST_CLIENT_SECRET=[redacted]"),
        "{out}"
    );
    assert!(
        out.contains("CAMRELAY_CAMERA_YARD_TLS_VERIFY=false"),
        "{out}"
    );
    assert!(out.contains("192.0.2.10"), "camera hosts are shown: {out}");
    assert_no_secret(&out);
}

#[test]
fn check_config_lists_every_problem_and_exits_2() {
    let mut env = full_environment();
    env.retain(|(k, _)| *k != "CAMRELAY_NEST_REFRESH_TOKEN");
    env.extend([
        ("CAMRELAY_HTTP_ADDR", "not-an-address"),
        ("CAMRELAY_NEST_QPM", "lots"),
        ("CAMRELAY_IDLE_GRACE", "soon"),
        ("CAMRELAY_NEST_QMP", "10"),
        ("CAMRELAY_SFU", "carrier-pigeon"),
        ("CAMRELAY_WHIP_TOKEN", SECRETS[5]),
    ]);
    let output = camrelay(&["check-config"], &env);
    let out = text(&output);
    assert_eq!(output.status.code(), Some(2), "{out}");
    for variable in [
        "CAMRELAY_HTTP_ADDR",
        "CAMRELAY_NEST_QPM",
        "CAMRELAY_IDLE_GRACE",
        "CAMRELAY_NEST_QMP",
        "CAMRELAY_NEST_REFRESH_TOKEN",
        "CAMRELAY_SFU",
    ] {
        assert!(out.contains(variable), "{variable} not named in:\n{out}");
    }
    assert!(out.contains("did you mean CAMRELAY_NEST_QPM"), "{out}");
    assert_no_secret(&out);
}

#[test]
fn run_refuses_a_broken_configuration_with_the_same_report() {
    let output = camrelay(&["run"], &[("CAMRELAY_NEST_QPM", "0")]);
    let out = text(&output);
    assert_eq!(output.status.code(), Some(2), "{out}");
    assert!(out.contains("CAMRELAY_NEST_QPM"), "{out}");
}

#[test]
fn an_invalid_log_filter_is_a_configuration_error() {
    let output = camrelay(
        &["run"],
        &[
            ("CAMRELAY_LOG", "camrelay=loud"),
            ("CAMRELAY_HTTP_ADDR", "127.0.0.1:0"),
        ],
    );
    let out = text(&output);
    assert_eq!(output.status.code(), Some(2), "{out}");
    assert!(out.contains("CAMRELAY_LOG"), "{out}");
}
