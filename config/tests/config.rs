//! Behaviour of the whole crate through its public API. The process
//! environment is never touched: everything goes through `from_vars`.

use std::collections::BTreeSet;
use std::time::Duration;

use std::net::SocketAddr;
use std::path::Path;

use camrelay_config::{
    Config, ConfigErrors, IngestConfig, LeaseTuning, LogFormat, NestBudget, PER_CAMERA_OPTIONS,
    RtspConfig, RtspUdp, SettingsTable, SfuConfig, SfuKind, Source, defaults, known_variables,
};
use secrecy::ExposeSecret;

const ENV_EXAMPLE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../deploy/.env.example"
));

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn parse(pairs: &[(&str, &str)]) -> Config {
    match Config::from_vars(vars(pairs)) {
        Ok(config) => config,
        Err(errors) => panic!("unexpected errors:\n{errors}"),
    }
}

fn fail(pairs: &[(&str, &str)]) -> ConfigErrors {
    match Config::from_vars(vars(pairs)) {
        Ok(config) => panic!("expected errors, got {config:?}"),
        Err(errors) => errors,
    }
}

/// The message of the only error naming `variable`.
fn message<'a>(errors: &'a ConfigErrors, variable: &str) -> &'a str {
    let matching: Vec<_> = errors.iter().filter(|e| e.variable == variable).collect();
    assert_eq!(matching.len(), 1, "{variable} in:\n{errors}");
    &matching[0].message
}

/// The uncommented `KEY=VALUE` lines of .env.example, quotes removed.
fn env_example_vars() -> Vec<(String, String)> {
    ENV_EXAMPLE
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (key, value) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("not KEY=VALUE: {line}"));
            let value = value
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .unwrap_or(value);
            (key.to_owned(), value.to_owned())
        })
        .collect()
}

/// Every `CAMRELAY_…` word in .env.example, commented or not.
fn env_example_names() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = ENV_EXAMPLE;
    while let Some(start) = rest.find("CAMRELAY_") {
        let word = &rest[start..];
        let end = word
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(word.len());
        names.insert(word[..end].to_owned());
        rest = &word[end..];
    }
    names
}

fn is_per_camera(name: &str) -> bool {
    name.strip_prefix("CAMRELAY_CAMERA_").is_some_and(|rest| {
        PER_CAMERA_OPTIONS.iter().any(|option| {
            rest.strip_suffix(option)
                .and_then(|key| key.strip_suffix('_'))
                .is_some_and(|key| !key.is_empty())
        })
    })
}

const NEST_CREDENTIALS: &[(&str, &str)] = &[
    ("CAMRELAY_NEST_PROJECT_ID", "project-1"),
    ("CAMRELAY_NEST_CLIENT_ID", "client-1"),
    ("CAMRELAY_NEST_CLIENT_SECRET", "client-secret-1"),
    ("CAMRELAY_NEST_REFRESH_TOKEN", "refresh-token-1"),
];

const CALLS_CREDENTIALS: &[(&str, &str)] = &[
    ("CAMRELAY_CALLS_APP_ID", "app-1"),
    ("CAMRELAY_CALLS_APP_SECRET", "app-secret-1"),
];

// 1. .env.example parses to the defaults.

#[test]
fn env_example_is_the_defaults() {
    let example = Config::from_vars(env_example_vars()).unwrap();
    let empty = Config::from_vars(Vec::new()).unwrap();
    assert_eq!(example.effective(), empty.effective());

    // With Nest and Calls on, the tuning values are in use and compared too.
    let with_credentials = |mut vars: Vec<(String, String)>| {
        vars.extend(self::vars(NEST_CREDENTIALS));
        vars.extend(self::vars(CALLS_CREDENTIALS));
        Config::from_vars(vars).unwrap()
    };
    let example = with_credentials(env_example_vars());
    let plain = with_credentials(Vec::new());
    assert_eq!(example.effective(), plain.effective());
    let nest = example.nest.as_ref().unwrap();
    assert_eq!(nest.budget, NestBudget::default());
    assert_eq!(nest.lease, LeaseTuning::default());
    assert_eq!(example.ingest, IngestConfig::default());
    assert_rtsp_defaults(&example.rtsp);
    assert_rtsp_defaults(&RtspConfig::default());
    assert_eq!(example.extra_ca_file, None);
}

/// `rtsp` holds the documented defaults (`RtspConfig` has no `PartialEq`:
/// it may hold a secret).
fn assert_rtsp_defaults(rtsp: &RtspConfig) {
    assert_eq!(rtsp.udp, Some(RtspUdp::default()));
    assert_eq!(
        rtsp.udp.map(|u| (u.rtp_addr, u.rtcp_addr)),
        Some((defaults::RTSP_RTP_ADDR, defaults::RTSP_RTCP_ADDR))
    );
    assert_eq!(rtsp.session_timeout, defaults::RTSP_SESSION_TIMEOUT);
    assert_eq!(rtsp.max_clients, defaults::RTSP_MAX_CLIENTS);
    assert_eq!(
        rtsp.max_clients_per_camera,
        defaults::RTSP_MAX_CLIENTS_PER_CAMERA
    );
    assert!(rtsp.credentials.is_none());
    assert_eq!(rtsp.start_timeout, defaults::RTSP_START_TIMEOUT);
}

#[test]
fn env_example_sets_exactly_the_variables_with_defaults() {
    let without_default: BTreeSet<&str> = [
        "CAMRELAY_RTSP_USERNAME",
        "CAMRELAY_RTSP_PASSWORD",
        "CAMRELAY_EXTRA_CA_FILE",
        "CAMRELAY_CAMERAS",
        "CAMRELAY_NEST_PROJECT_ID",
        "CAMRELAY_NEST_CLIENT_ID",
        "CAMRELAY_NEST_CLIENT_SECRET",
        "CAMRELAY_NEST_REFRESH_TOKEN",
        "CAMRELAY_NEST_DEVICES",
        // Its default depends on CAMRELAY_CALLS_APP_ID.
        "CAMRELAY_SFU",
        "CAMRELAY_CALLS_APP_ID",
        "CAMRELAY_CALLS_APP_SECRET",
        "CAMRELAY_WHIP_URL",
        "CAMRELAY_WHIP_TOKEN",
        // Its default is found at start (the interface with the default route).
        "CAMRELAY_WEBRTC_IP",
        "CAMRELAY_VIEWER_TOKEN",
        "CAMRELAY_VIEWER_USERNAME",
        "CAMRELAY_VIEWER_PASSWORD",
        // Its default is to share CAMRELAY_HTTP_ADDR.
        "CAMRELAY_ADMIN_ADDR",
        "CAMRELAY_ADMIN_TOKEN",
        "CAMRELAY_ENV_FILE",
    ]
    .into();
    let expected: BTreeSet<String> = known_variables()
        .iter()
        .filter(|name| !without_default.contains(*name))
        .map(|name| (*name).to_owned())
        .collect();
    let set: BTreeSet<String> = env_example_vars().into_iter().map(|(k, _)| k).collect();
    assert_eq!(set, expected);
}

// 2. .env.example documents every variable and nothing else.

#[test]
fn env_example_mentions_every_known_variable_and_no_other() {
    let mentioned = env_example_names();
    for name in known_variables() {
        assert!(
            mentioned.contains(*name),
            "{name} missing from .env.example"
        );
    }
    for name in &mentioned {
        let ok = known_variables().contains(&name.as_str())
            || is_per_camera(name)
            // Prefixes in prose: CAMRELAY_*, CAMRELAY_CAMERA_<KEY>_<OPTION>.
            || name == "CAMRELAY_"
            || name == "CAMRELAY_CAMERA_";
        assert!(ok, "{name} in .env.example is not a known variable");
    }
    for option in PER_CAMERA_OPTIONS {
        assert!(
            mentioned
                .iter()
                .any(|name| name.starts_with("CAMRELAY_CAMERA_")
                    && name.ends_with(&format!("_{option}"))),
            "no example of the per-camera option {option}"
        );
    }
}

#[test]
fn every_known_variable_is_read() {
    // Two environments that between them set every fixed variable to a
    // non-default value: each must show up as coming from the environment.
    let cloudflare = parse(&[
        ("CAMRELAY_HTTP_ADDR", "127.0.0.1:1"),
        ("CAMRELAY_RTSP_ADDR", "127.0.0.1:2"),
        ("CAMRELAY_LOG", "debug"),
        ("CAMRELAY_LOG_FORMAT", "json"),
        ("CAMRELAY_ALWAYS_ON", "yes"),
        ("CAMRELAY_IDLE_GRACE", "1m"),
        ("CAMRELAY_RTSP_RTP_ADDR", "127.0.0.1:5000"),
        ("CAMRELAY_RTSP_RTCP_ADDR", "127.0.0.1:5001"),
        ("CAMRELAY_RTSP_SESSION_TIMEOUT", "2m"),
        ("CAMRELAY_RTSP_MAX_CLIENTS", "10"),
        ("CAMRELAY_RTSP_MAX_CLIENTS_PER_CAMERA", "5"),
        ("CAMRELAY_RTSP_USERNAME", "viewer"),
        ("CAMRELAY_RTSP_PASSWORD", "pw"),
        ("CAMRELAY_RTSP_START_TIMEOUT", "30s"),
        ("CAMRELAY_INGEST_TIMEOUT", "20s"),
        ("CAMRELAY_INGEST_RETRY_INITIAL", "2s"),
        ("CAMRELAY_INGEST_RETRY_MAX", "2m"),
        ("CAMRELAY_EXTRA_CA_FILE", "/etc/camrelay/ca.pem"),
        ("CAMRELAY_CAMERAS", "a=rtsp://h/"),
        ("CAMRELAY_NEST_PROJECT_ID", "p"),
        ("CAMRELAY_NEST_CLIENT_ID", "c"),
        ("CAMRELAY_NEST_CLIENT_SECRET", "s"),
        ("CAMRELAY_NEST_REFRESH_TOKEN", "t"),
        ("CAMRELAY_NEST_API_URL", "http://127.0.0.1:9/v1"),
        ("CAMRELAY_NEST_TOKEN_URL", "http://127.0.0.1:9/token"),
        ("CAMRELAY_NEST_DEVICES", "d1, d2"),
        ("CAMRELAY_NEST_QPM", "20"),
        ("CAMRELAY_NEST_DEVICE_COMMAND_QPM", "6"),
        ("CAMRELAY_NEST_DEVICE_QPH", "101"),
        ("CAMRELAY_NEST_WINDOW_GUARD", "2s"),
        ("CAMRELAY_NEST_BUDGET_RESERVE", "1.5"),
        ("CAMRELAY_NEST_STREAM_LIFETIME", "4m"),
        ("CAMRELAY_NEST_MAX_IN_FLIGHT", "8"),
        ("CAMRELAY_NEST_EXTEND_MIN_MARGIN", "5s"),
        ("CAMRELAY_NEST_RETRY_INITIAL", "1s"),
        ("CAMRELAY_NEST_RETRY_MAX", "2m"),
        ("CAMRELAY_NEST_DEGRADED_AFTER", "3"),
        ("CAMRELAY_NEST_REQUEST_TIMEOUT", "20s"),
        ("CAMRELAY_NEST_DISCOVERY_INTERVAL", "1h"),
        ("CAMRELAY_CALLS_APP_ID", "app"),
        ("CAMRELAY_CALLS_APP_SECRET", "secret"),
        ("CAMRELAY_CALLS_API_URL", "http://127.0.0.1:9/calls"),
        ("CAMRELAY_WEBRTC_IP", "192.0.2.7"),
        ("CAMRELAY_WEBRTC_CONNECT_TIMEOUT", "3s"),
        ("CAMRELAY_SFU_UDP_ADDR", "127.0.0.1:9189"),
        ("CAMRELAY_VIEWER_TOKEN", "viewer-token"),
        ("CAMRELAY_VIEWER_USERNAME", "family"),
        ("CAMRELAY_VIEWER_PASSWORD", "pass word"),
        ("CAMRELAY_VIEWER_TIMEOUT", "20s"),
        ("CAMRELAY_MAX_VIEWERS", "50"),
        ("CAMRELAY_ADMIN_ADDR", "127.0.0.1:9090"),
        ("CAMRELAY_ADMIN_TOKEN", "admin-token"),
        ("CAMRELAY_ENV_FILE", "/etc/camrelay/camrelay.env"),
    ]);
    let whip = parse(&[
        ("CAMRELAY_RTSP_UDP", "false"),
        ("CAMRELAY_SFU", "WHIP"),
        ("CAMRELAY_WHIP_URL", "https://w.example/{camera_id}"),
        ("CAMRELAY_WHIP_TOKEN", "token"),
    ]);
    let from_env: BTreeSet<String> = [cloudflare.effective(), whip.effective()]
        .into_iter()
        .flatten()
        .filter(|s| s.source == Source::Environment)
        .map(|s| s.name)
        .collect();
    for name in known_variables() {
        assert!(from_env.contains(*name), "{name} is not read");
    }

    // The listing follows known_variables(), cameras after CAMRELAY_CAMERAS.
    let fixed: Vec<String> = cloudflare
        .effective()
        .into_iter()
        .map(|s| s.name)
        .filter(|name| !is_per_camera(name))
        .collect();
    assert_eq!(fixed, known_variables());
    let budget = &cloudflare.nest.as_ref().unwrap().budget;
    assert_eq!(budget.reserve_per_minute, 1.5);
    assert_eq!(budget.stream_lifetime, Duration::from_secs(240));
}

// 3. Every problem at once.

#[test]
fn broken_environment_reports_every_problem() {
    let errors = fail(&[
        ("CAMRELAY_HTTP_ADDR", "localhost"),
        ("CAMRELAY_NEST_QPM", "0"),
        ("CAMRELAY_IDLE_GRACE", "soon"),
        ("CAMRELAY_NEST_QMP", "20"),
        ("CAMRELAY_NEST_PROJECT_ID", "p"),
        ("CAMRELAY_NEST_CLIENT_ID", "c"),
        (
            "CAMRELAY_CAMERAS",
            "front=rtsp://cam1/live; no-equals-sign ; front=rtsp://cam2/ ; bad id=rtsp://x/",
        ),
        ("CAMRELAY_CAMERA_FRONT_COLOUR", "red"),
        ("CAMRELAY_CAMERA_BACK_NAME", "Back"),
        ("PATH", "/usr/bin"),
    ]);
    let text = errors.to_string();
    assert!(
        message(&errors, "CAMRELAY_HTTP_ADDR").contains("\"localhost\""),
        "{text}"
    );
    assert!(
        message(&errors, "CAMRELAY_NEST_QPM").contains("between 1 and 1000"),
        "{text}"
    );
    assert!(
        message(&errors, "CAMRELAY_IDLE_GRACE").contains("\"soon\""),
        "{text}"
    );
    assert!(
        message(&errors, "CAMRELAY_NEST_QMP").contains("did you mean CAMRELAY_NEST_QPM?"),
        "{text}"
    );
    assert!(
        message(&errors, "CAMRELAY_NEST_CLIENT_SECRET").contains("CAMRELAY_NEST_PROJECT_ID"),
        "{text}"
    );
    assert!(message(&errors, "CAMRELAY_NEST_REFRESH_TOKEN").contains("all four"));
    let cameras: Vec<_> = errors
        .iter()
        .filter(|e| e.variable == "CAMRELAY_CAMERAS")
        .map(|e| e.message.as_str())
        .collect();
    assert_eq!(cameras.len(), 3, "{text}");
    assert!(cameras[0].contains("entry 2") && cameras[0].contains("id=url"));
    assert!(cameras[1].contains("entry 3") && cameras[1].contains("used twice"));
    assert!(cameras[2].contains("entry 4") && cameras[2].contains("\"bad id\""));
    assert!(message(&errors, "CAMRELAY_CAMERA_FRONT_COLOUR").contains("unknown per-camera option"));
    let back = message(&errors, "CAMRELAY_CAMERA_BACK_NAME");
    assert!(back.contains("\"front\""), "{back}");
    assert!(!errors.mentions("PATH"));
    assert_eq!(errors.len(), 11, "{text}");
    // One line per problem, each naming its variable.
    for (line, error) in text.lines().zip(&errors) {
        assert_eq!(line, format!("{}: {}", error.variable, error.message));
    }
    assert_eq!(text.lines().count(), errors.len());
}

#[test]
fn cross_checks_and_ranges() {
    let errors = fail(&[
        ("CAMRELAY_NEST_BUDGET_RESERVE", "10"),
        ("CAMRELAY_NEST_RETRY_INITIAL", "2m"),
        ("CAMRELAY_NEST_RETRY_MAX", "1m"),
        ("CAMRELAY_NEST_STREAM_LIFETIME", "30s"),
        ("CAMRELAY_NEST_EXTEND_MIN_MARGIN", "1m"),
        ("CAMRELAY_NEST_WINDOW_GUARD", "11s"),
        ("CAMRELAY_NEST_MAX_IN_FLIGHT", "65"),
        ("CAMRELAY_NEST_DISCOVERY_INTERVAL", "30s"),
        ("CAMRELAY_NEST_DEVICES", "a,b, a"),
        ("CAMRELAY_LOG_FORMAT", "xml"),
        ("CAMRELAY_ALWAYS_ON", "maybe"),
        ("CAMRELAY_SFU", "janus"),
        ("CAMRELAY_HTTP_ADDR", "0.0.0.0:8554"),
        ("CAMRELAY_NEST_API_URL", "ftp://example.com"),
    ]);
    for variable in [
        "CAMRELAY_NEST_BUDGET_RESERVE",
        "CAMRELAY_NEST_RETRY_INITIAL",
        "CAMRELAY_NEST_EXTEND_MIN_MARGIN",
        "CAMRELAY_NEST_WINDOW_GUARD",
        "CAMRELAY_NEST_MAX_IN_FLIGHT",
        "CAMRELAY_NEST_DISCOVERY_INTERVAL",
        "CAMRELAY_NEST_DEVICES",
        "CAMRELAY_LOG_FORMAT",
        "CAMRELAY_ALWAYS_ON",
        "CAMRELAY_SFU",
        "CAMRELAY_RTSP_ADDR",
        "CAMRELAY_NEST_API_URL",
    ] {
        message(&errors, variable);
    }
    assert_eq!(errors.len(), 12, "{errors}");
}

#[test]
fn names_given_twice_are_errors() {
    let errors = fail(&[("CAMRELAY_LOG", "info"), ("CAMRELAY_LOG", "debug")]);
    assert!(message(&errors, "CAMRELAY_LOG").contains("more than once"));
}

#[test]
fn unknown_variables_without_a_close_name() {
    let errors = fail(&[("CAMRELAY_FOO", "1")]);
    assert!(!message(&errors, "CAMRELAY_FOO").contains("did you mean"));
    // Per-camera typos suggest the camera's real options.
    let errors = errors_with_camera(("CAMRELAY_CAMERA_FRONT_PASWORD", "x"));
    assert!(
        message(&errors, "CAMRELAY_CAMERA_FRONT_PASWORD")
            .contains("did you mean CAMRELAY_CAMERA_FRONT_PASSWORD?")
    );
    let errors = errors_with_camera(("CAMRELAY_CAMERA_FRONTT_NAME", "x"));
    assert!(
        message(&errors, "CAMRELAY_CAMERA_FRONTT_NAME")
            .contains("did you mean CAMRELAY_CAMERA_FRONT_NAME?")
    );
}

#[test]
fn kubernetes_service_links_are_not_ours() {
    // What Kubernetes sets for Services named camrelay and camrelay-sfu in the namespace.
    parse(&[
        ("CAMRELAY_SERVICE_HOST", "10.0.0.7"),
        ("CAMRELAY_SERVICE_PORT", "8080"),
        ("CAMRELAY_SERVICE_PORT_HTTP", "8080"),
        ("CAMRELAY_PORT", "tcp://10.0.0.7:8080"),
        ("CAMRELAY_PORT_8080_TCP", "tcp://10.0.0.7:8080"),
        ("CAMRELAY_PORT_8080_TCP_PROTO", "tcp"),
        ("CAMRELAY_PORT_8080_TCP_PORT", "8080"),
        ("CAMRELAY_PORT_8080_TCP_ADDR", "10.0.0.7"),
        ("CAMRELAY_SFU_SERVICE_HOST", "10.0.0.8"),
        ("CAMRELAY_SFU_PORT_8189_UDP", "udp://10.0.0.8:8189"),
    ]);
    // Near misses are still errors.
    for name in [
        "CAMRELAY_PORT_80_TCPX",
        "CAMRELAY_PORT_X_TCP",
        "CAMRELAY_SERVICE_HOSTS",
    ] {
        fail(&[(name, "1")]);
    }
}

fn errors_with_camera(extra: (&str, &str)) -> ConfigErrors {
    fail(&[("CAMRELAY_CAMERAS", "front=rtsp://cam/"), extra])
}

// 4. Secrets never print.

const SECRETS: &[&str] = &[
    "S3cr3t-client",
    "S3cr3t-refresh",
    "S3cr3t-app",
    "S3cr3t-whip",
    "S3cr3t-url-pw",
    "S3cr3t-var-pw",
    "S3cr3t-rtsp",
];

fn assert_no_secret(what: &str, text: &str) {
    for secret in SECRETS {
        assert!(!text.contains(secret), "{secret} leaked in {what}:\n{text}");
    }
}

#[test]
fn secrets_never_print() {
    let cloudflare = parse(&[
        ("CAMRELAY_NEST_PROJECT_ID", "p"),
        ("CAMRELAY_NEST_CLIENT_ID", "c"),
        ("CAMRELAY_NEST_CLIENT_SECRET", "S3cr3t-client"),
        ("CAMRELAY_NEST_REFRESH_TOKEN", "S3cr3t-refresh"),
        ("CAMRELAY_CALLS_APP_ID", "app"),
        ("CAMRELAY_CALLS_APP_SECRET", "S3cr3t-app"),
        (
            "CAMRELAY_CAMERAS",
            "a=rtsp://user:S3cr3t-url-pw@cam-a/;b=rtsps://cam-b/",
        ),
        ("CAMRELAY_CAMERA_B_USERNAME", "viewer"),
        ("CAMRELAY_CAMERA_B_PASSWORD", "S3cr3t-var-pw"),
        ("CAMRELAY_RTSP_USERNAME", "viewer"),
        ("CAMRELAY_RTSP_PASSWORD", "S3cr3t-rtsp"),
    ]);
    let whip = parse(&[
        ("CAMRELAY_SFU", "whip"),
        ("CAMRELAY_WHIP_URL", "https://w.example/{camera_id}"),
        ("CAMRELAY_WHIP_TOKEN", "S3cr3t-whip"),
    ]);
    for config in [&cloudflare, &whip] {
        assert_no_secret("Debug", &format!("{config:?}"));
        assert_no_secret("Debug", &format!("{config:#?}"));
        assert_no_secret("effective", &SettingsTable(&config.effective()).to_string());
        assert_no_secret("Display", &config.to_string());
    }
    // The secrets are there, only hidden.
    let nest = cloudflare.nest.as_ref().unwrap();
    assert_eq!(nest.client_secret.expose_secret(), "S3cr3t-client");
    let table = cloudflare.to_string();
    assert!(
        table.contains("CAMRELAY_NEST_CLIENT_SECRET=[redacted]"),
        "{table}"
    );
    assert!(
        table.contains("CAMRELAY_CAMERA_B_PASSWORD=[redacted]"),
        "{table}"
    );
    assert!(
        table.contains("CAMRELAY_CAMERA_A_PASSWORD=[redacted]"),
        "{table}"
    );
    assert!(
        table.contains("CAMRELAY_RTSP_PASSWORD=[redacted]"),
        "{table}"
    );
    assert!(table.contains("CAMRELAY_RTSP_USERNAME=viewer"), "{table}");
    let rtsp = cloudflare.rtsp.credentials.as_ref().unwrap();
    assert_eq!(rtsp.password.expose_secret(), "S3cr3t-rtsp");
    assert_no_secret("Debug", &format!("{rtsp:?}"));

    let broken = fail(&[
        ("CAMRELAY_NEST_CLIENT_SECRET", "S3cr3t-client with space"),
        ("CAMRELAY_NEST_REFRESH_TOKEN", "S3cr3t-refresh"),
        ("CAMRELAY_CALLS_APP_SECRET", "S3cr3t-app\n"),
        ("CAMRELAY_WHIP_TOKEN", "S3cr3t-whip S3cr3t-whip"),
        (
            "CAMRELAY_WHIP_URL",
            "https://u:S3cr3t-whip@w.example/{camera_id}",
        ),
        ("CAMRELAY_NEST_API_URL", "https://u:S3cr3t-app@:bad/"),
        (
            "CAMRELAY_CAMERAS",
            "a=rtsp://user:S3cr3t-url-pw@cam-a:badport/;\
             rtsp://user:S3cr3t-url-pw@cam-b/;\
             rtsp://user:S3cr3t-url-pw@cam-c/x?y=1;\
             c=rtsp://user:S3cr3t-url-pw@cam-c/",
        ),
        ("CAMRELAY_CAMERA_C_PASSWORD", "S3cr3t-var-pw"),
        ("CAMRELAY_CAMERA_X_PASSWORD", "S3cr3t-var-pw"),
        ("CAMRELAY_NEST_CLIENT_SECERT", "S3cr3t-client"),
        ("CAMRELAY_RTSP_PASSWORD", "S3cr3t-rtsp"),
        ("CAMRELAY_RTSP_PASWORD", "S3cr3t-rtsp"),
    ]);
    assert_no_secret("errors", &broken.to_string());
    assert_no_secret("errors", &format!("{broken:?}"));
    assert!(message(&broken, "CAMRELAY_NEST_CLIENT_SECRET").contains("whitespace"));
    assert!(message(&broken, "CAMRELAY_CAMERA_C_PASSWORD").contains("one place"));
    assert!(
        message(&broken, "CAMRELAY_NEST_CLIENT_SECERT")
            .contains("did you mean CAMRELAY_NEST_CLIENT_SECRET?")
    );
    assert!(message(&broken, "CAMRELAY_RTSP_USERNAME").contains("CAMRELAY_RTSP_PASSWORD is"));
    assert!(
        message(&broken, "CAMRELAY_RTSP_PASWORD").contains("did you mean CAMRELAY_RTSP_PASSWORD?")
    );
    assert_eq!(
        broken
            .iter()
            .filter(|e| e.variable == "CAMRELAY_CAMERAS")
            .count(),
        3,
        "{broken}"
    );
}

// 5. Camera URL credentials.

#[test]
fn credentials_leave_the_camera_url() {
    let config = parse(&[(
        "CAMRELAY_CAMERAS",
        " front-door = rtsp://ad%20min:pa%40ss%3Aw%2Frd@192.168.1.10:554/Streaming/Channels/101?transport=tcp ;\
          garage=rtsps://cam.lan/live ; ",
    )]);
    assert_eq!(config.cameras.len(), 2);
    let front = &config.cameras[0];
    assert_eq!(front.id, "front-door");
    assert_eq!(front.name, "front-door");
    assert_eq!(
        front.url.as_str(),
        "rtsp://192.168.1.10:554/Streaming/Channels/101?transport=tcp"
    );
    assert_eq!(front.username.as_deref(), Some("ad min"));
    assert_eq!(
        front.password.as_ref().map(ExposeSecret::expose_secret),
        Some("pa@ss:w/rd")
    );
    let garage = &config.cameras[1];
    assert_eq!(garage.url.as_str(), "rtsps://cam.lan/live");
    assert!(garage.username.is_none() && garage.password.is_none());

    let table = config.to_string();
    assert!(
        table.contains("CAMRELAY_CAMERAS=front-door=rtsp://192.168.1.10:554/"),
        "{table}"
    );
    assert!(
        table.contains("CAMRELAY_CAMERA_FRONT_DOOR_USERNAME=ad min"),
        "{table}"
    );
    assert!(
        !table.contains("pa@ss") && !table.contains("pa%40ss"),
        "{table}"
    );
}

#[test]
fn credentials_from_variables() {
    let config = parse(&[
        ("CAMRELAY_CAMERAS", "cam=rtsp://cam/"),
        ("CAMRELAY_CAMERA_CAM_USERNAME", " viewer "),
        ("CAMRELAY_CAMERA_CAM_PASSWORD", " spaced pw "),
        ("CAMRELAY_CAMERA_CAM_NAME", "Porch"),
    ]);
    let cam = &config.cameras[0];
    assert_eq!(cam.username.as_deref(), Some("viewer"));
    assert_eq!(
        cam.password.as_ref().map(ExposeSecret::expose_secret),
        Some(" spaced pw ")
    );
    assert_eq!(cam.name, "Porch");

    let errors = fail(&[
        ("CAMRELAY_CAMERAS", "cam=rtsp://cam/;other=rtsp://:pw@cam/"),
        ("CAMRELAY_CAMERA_CAM_PASSWORD", "pw"),
    ]);
    assert!(message(&errors, "CAMRELAY_CAMERA_CAM_PASSWORD").contains("no user name"));
    assert!(message(&errors, "CAMRELAY_CAMERAS").contains("no user name"));
}

#[test]
fn camera_ids_and_urls_are_checked() {
    let errors = fail(&[(
        "CAMRELAY_CAMERAS",
        "a-b=rtsp://x/;a_b=rtsp://y/;http=http://cam/;nohost=rtsp:/path;\
         long=rtsp://h/;x=not a url",
    )]);
    let messages: Vec<_> = errors.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(messages.len(), 4, "{errors}");
    assert!(messages[0].contains("CAMRELAY_CAMERA_A_B_"), "{errors}");
    assert!(messages[1].contains("\"http\""), "{errors}");
    assert!(messages[2].contains("no host"), "{errors}");
    assert!(messages[3].contains("invalid URL"), "{errors}");

    let long = format!("{}=rtsp://h/", "x".repeat(65));
    let errors = fail(&[("CAMRELAY_CAMERAS", &long)]);
    assert!(message(&errors, "CAMRELAY_CAMERAS").contains("1 to 64"));
}

// 6. Defaults and inheritance.

#[test]
fn defaults() {
    let config = parse(&[("HOME", "/root"), ("CAMRELAY_LOG", "  ")]);
    assert_eq!(config.http_addr, defaults::HTTP_ADDR);
    assert_eq!(config.http_addr.to_string(), "0.0.0.0:8080");
    assert_eq!(config.rtsp_addr.to_string(), "0.0.0.0:8554");
    assert_eq!(config.log.filter, "info");
    assert_eq!(config.log.format, LogFormat::Text);
    assert!(!config.always_on);
    assert_eq!(config.idle_grace, Duration::from_secs(30));
    assert!(config.cameras.is_empty());
    assert!(config.nest.is_none());
    assert!(matches!(config.sfu, SfuConfig::Embedded { .. }));
    let udp = config.rtsp.udp.unwrap();
    assert_eq!(udp.rtp_addr.to_string(), "0.0.0.0:8000");
    assert_eq!(udp.rtcp_addr.to_string(), "0.0.0.0:8001");
    assert_eq!(config.rtsp.session_timeout, Duration::from_secs(60));
    assert_eq!(config.rtsp.max_clients, 1000);
    assert_eq!(config.rtsp.max_clients_per_camera, 500);
    assert!(config.rtsp.credentials.is_none());
    assert_eq!(config.rtsp.start_timeout, Duration::from_secs(15));
    assert_eq!(
        config.ingest,
        IngestConfig {
            timeout: Duration::from_secs(10),
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
        }
    );
    assert_eq!(config.ingest, IngestConfig::default());
    assert_eq!(config.extra_ca_file, None);
    assert!(
        config
            .effective()
            .iter()
            .all(|s| s.source == Source::Default)
    );

    let budget = NestBudget::default();
    assert_eq!(
        (budget.qpm, budget.device_command_qpm, budget.device_qph),
        (10, 5, 100)
    );
    assert_eq!(budget.window_guard, Duration::from_secs(1));
    assert_eq!(budget.reserve_per_minute, 0.5);
    assert_eq!(budget.stream_lifetime, Duration::from_secs(300));
    assert_eq!(budget.max_in_flight, 4);
    let lease = LeaseTuning::default();
    assert_eq!(lease.extend_min_margin, Duration::from_secs(3));
    assert_eq!(lease.retry_initial, Duration::from_secs(2));
    assert_eq!(lease.retry_max, Duration::from_secs(60));
    assert_eq!(lease.degraded_after, 5);

    let nest = parse(NEST_CREDENTIALS).nest.unwrap();
    assert_eq!(nest.api_url.as_str(), defaults::NEST_API_URL);
    assert_eq!(nest.token_url.as_str(), defaults::NEST_TOKEN_URL);
    assert_eq!(nest.devices, None);
    assert_eq!(nest.request_timeout, Duration::from_secs(10));
    assert_eq!(nest.discovery_interval, Duration::from_secs(600));
    let nest = parse(&[NEST_CREDENTIALS, &[("CAMRELAY_NEST_DEVICES", " , ")]].concat())
        .nest
        .unwrap();
    assert_eq!(nest.devices, None);
}

#[test]
fn sfu_selection() {
    assert_eq!(parse(&[]).sfu.kind(), SfuKind::Embedded);
    let config = parse(CALLS_CREDENTIALS);
    let SfuConfig::Cloudflare {
        app_id, api_url, ..
    } = &config.sfu
    else {
        panic!("expected cloudflare, got {:?}", config.sfu);
    };
    assert_eq!(app_id, "app-1");
    assert_eq!(api_url.as_str(), defaults::CALLS_API_URL);
    assert_eq!(
        parse(&[CALLS_CREDENTIALS, &[("CAMRELAY_SFU", "embedded")]].concat())
            .sfu
            .kind(),
        SfuKind::Embedded
    );
    assert_eq!(parse(&[("CAMRELAY_SFU", "Off")]).sfu.kind(), SfuKind::Off);

    // The app id alone selects cloudflare, which then needs the secret.
    let errors = fail(&[("CAMRELAY_CALLS_APP_ID", "app")]);
    assert!(message(&errors, "CAMRELAY_CALLS_APP_SECRET").contains("CAMRELAY_CALLS_APP_ID"));
    let errors = fail(&[("CAMRELAY_SFU", "cloudflare")]);
    assert!(
        errors.mentions("CAMRELAY_CALLS_APP_ID") && errors.mentions("CAMRELAY_CALLS_APP_SECRET")
    );
    let errors = fail(&[("CAMRELAY_SFU", "whip")]);
    assert!(message(&errors, "CAMRELAY_WHIP_URL").contains("required"));
    let errors = fail(&[
        ("CAMRELAY_SFU", "whip"),
        ("CAMRELAY_WHIP_URL", "https://w.example/live"),
    ]);
    assert!(message(&errors, "CAMRELAY_WHIP_URL").contains("{camera_id}"));
    let whip = parse(&[
        ("CAMRELAY_SFU", "whip"),
        ("CAMRELAY_WHIP_URL", "https://w.example/{camera_id}/whip"),
    ]);
    assert!(
        matches!(&whip.sfu, SfuConfig::Whip { url_template, token: None } if url_template == "https://w.example/{camera_id}/whip")
    );
}

#[test]
fn per_camera_always_on_inherits() {
    let cameras = "a=rtsp://a/;b=rtsp://b/";
    let off = parse(&[
        ("CAMRELAY_CAMERAS", cameras),
        ("CAMRELAY_CAMERA_B_ALWAYS_ON", "true"),
    ]);
    assert_eq!(
        off.cameras.iter().map(|c| c.always_on).collect::<Vec<_>>(),
        [false, true]
    );
    let on = parse(&[
        ("CAMRELAY_CAMERAS", cameras),
        ("CAMRELAY_ALWAYS_ON", "1"),
        ("CAMRELAY_CAMERA_B_ALWAYS_ON", "no"),
    ]);
    assert_eq!(
        on.cameras.iter().map(|c| c.always_on).collect::<Vec<_>>(),
        [true, false]
    );
    // Inherited values count as defaults in the listing.
    let a = on
        .effective()
        .into_iter()
        .find(|s| s.name == "CAMRELAY_CAMERA_A_ALWAYS_ON")
        .unwrap();
    assert_eq!((a.value.as_str(), a.source), ("true", Source::Default));
}

#[test]
fn tls_verify_only_for_rtsps() {
    let config = parse(&[
        ("CAMRELAY_CAMERAS", "lan=rtsps://cam/;plain=rtsp://cam/"),
        ("CAMRELAY_CAMERA_LAN_TLS_VERIFY", "false"),
    ]);
    assert!(!config.cameras[0].tls_verify);
    assert!(config.cameras[1].tls_verify);

    let errors = fail(&[
        ("CAMRELAY_CAMERAS", "plain=rtsp://cam/"),
        ("CAMRELAY_CAMERA_PLAIN_TLS_VERIFY", "true"),
    ]);
    assert!(message(&errors, "CAMRELAY_CAMERA_PLAIN_TLS_VERIFY").contains("rtsps://"));
}

// 7. The local RTSP server, camera ingest, extra CAs.

/// The effective value and source of `name`.
fn setting(config: &Config, name: &str) -> (String, Source) {
    let setting = config
        .effective()
        .into_iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("{name} not listed"));
    (setting.value, setting.source)
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("a socket address")
}

#[test]
fn rtsp_udp_sockets() {
    let config = parse(&[
        ("CAMRELAY_RTSP_RTP_ADDR", "[::]:6970"),
        ("CAMRELAY_RTSP_RTCP_ADDR", "[::]:6971"),
    ]);
    assert_eq!(
        config.rtsp.udp,
        Some(RtspUdp {
            rtp_addr: addr("[::]:6970"),
            rtcp_addr: addr("[::]:6971"),
        })
    );

    // Off: TCP only, the sockets are not used, and a clash does not matter.
    let off = parse(&[
        ("CAMRELAY_RTSP_UDP", "no"),
        ("CAMRELAY_RTSP_RTP_ADDR", "0.0.0.0:7000"),
        ("CAMRELAY_RTSP_RTCP_ADDR", "0.0.0.0:7000"),
    ]);
    assert_eq!(off.rtsp.udp, None);
    let table = off.to_string();
    assert!(table.contains("CAMRELAY_RTSP_UDP=false "), "{table}");
    assert_eq!(
        setting(&off, "CAMRELAY_RTSP_RTP_ADDR"),
        ("(not used)".to_owned(), Source::Default)
    );
    assert_eq!(
        setting(&off, "CAMRELAY_RTSP_RTCP_ADDR"),
        ("(not used)".to_owned(), Source::Default)
    );
    // ... but a typo is still a typo.
    let errors = fail(&[
        ("CAMRELAY_RTSP_UDP", "false"),
        ("CAMRELAY_RTSP_RTP_ADDR", "8000"),
    ]);
    assert!(message(&errors, "CAMRELAY_RTSP_RTP_ADDR").contains("\"8000\""));
    let errors = fail(&[("CAMRELAY_RTSP_UDP", "tcp")]);
    assert!(message(&errors, "CAMRELAY_RTSP_UDP").contains("boolean"));

    // On: RTP and RTCP need different ports, whatever the IPs.
    for rtcp in ["0.0.0.0:8000", "127.0.0.1:8000"] {
        let errors = fail(&[("CAMRELAY_RTSP_RTCP_ADDR", rtcp)]);
        let text = message(&errors, "CAMRELAY_RTSP_RTCP_ADDR");
        assert!(
            text.contains("CAMRELAY_RTSP_RTP_ADDR") && text.contains("different ports"),
            "{text}"
        );
        assert_eq!(errors.len(), 1, "{errors}");
    }
    // Port 0 (any free port, as in tests) never clashes.
    let any = parse(&[
        ("CAMRELAY_RTSP_RTP_ADDR", "127.0.0.1:0"),
        ("CAMRELAY_RTSP_RTCP_ADDR", "127.0.0.1:0"),
    ]);
    let udp = any.rtsp.udp.unwrap();
    assert_eq!((udp.rtp_addr.port(), udp.rtcp_addr.port()), (0, 0));
}

#[test]
fn rtsp_limits_and_timeouts() {
    let config = parse(&[
        ("CAMRELAY_RTSP_MAX_CLIENTS", "100000"),
        ("CAMRELAY_RTSP_MAX_CLIENTS_PER_CAMERA", "100000"),
        ("CAMRELAY_RTSP_SESSION_TIMEOUT", "10s"),
        ("CAMRELAY_RTSP_START_TIMEOUT", "2m"),
    ]);
    assert_eq!(config.rtsp.max_clients, 100_000);
    assert_eq!(config.rtsp.max_clients_per_camera, 100_000);
    assert_eq!(config.rtsp.session_timeout, Duration::from_secs(10));
    assert_eq!(config.rtsp.start_timeout, Duration::from_secs(120));

    let errors = fail(&[
        ("CAMRELAY_RTSP_MAX_CLIENTS", "0"),
        ("CAMRELAY_RTSP_MAX_CLIENTS_PER_CAMERA", "100001"),
        ("CAMRELAY_RTSP_SESSION_TIMEOUT", "9s"),
        ("CAMRELAY_RTSP_START_TIMEOUT", "500ms"),
    ]);
    assert!(message(&errors, "CAMRELAY_RTSP_MAX_CLIENTS").contains("between 1 and 100000"));
    assert!(
        message(&errors, "CAMRELAY_RTSP_MAX_CLIENTS_PER_CAMERA").contains("between 1 and 100000")
    );
    assert!(message(&errors, "CAMRELAY_RTSP_SESSION_TIMEOUT").contains("between 10s and 1h"));
    assert!(message(&errors, "CAMRELAY_RTSP_START_TIMEOUT").contains("between 1s and 2m"));
    assert_eq!(errors.len(), 4, "{errors}");
    let errors = fail(&[
        ("CAMRELAY_RTSP_SESSION_TIMEOUT", "61m"),
        ("CAMRELAY_RTSP_START_TIMEOUT", "121s"),
        ("CAMRELAY_RTSP_MAX_CLIENTS", "many"),
    ]);
    assert_eq!(errors.len(), 3, "{errors}");
    assert!(message(&errors, "CAMRELAY_RTSP_MAX_CLIENTS").contains("whole number"));

    // One camera cannot have more clients than all of them together.
    let errors = fail(&[
        ("CAMRELAY_RTSP_MAX_CLIENTS", "10"),
        ("CAMRELAY_RTSP_MAX_CLIENTS_PER_CAMERA", "11"),
    ]);
    let text = message(&errors, "CAMRELAY_RTSP_MAX_CLIENTS_PER_CAMERA");
    assert!(
        text.contains("11") && text.contains("CAMRELAY_RTSP_MAX_CLIENTS (10)"),
        "{text}"
    );
    assert_eq!(errors.len(), 1, "{errors}");
    let equal = parse(&[
        ("CAMRELAY_RTSP_MAX_CLIENTS", "10"),
        ("CAMRELAY_RTSP_MAX_CLIENTS_PER_CAMERA", "10"),
    ]);
    assert_eq!(equal.rtsp.max_clients_per_camera, 10);

    // Lowering the total alone caps the per-camera default, which still
    // counts as the default.
    let low = parse(&[("CAMRELAY_RTSP_MAX_CLIENTS", "100")]);
    assert_eq!(low.rtsp.max_clients_per_camera, 100);
    assert_eq!(
        setting(&low, "CAMRELAY_RTSP_MAX_CLIENTS_PER_CAMERA"),
        ("100".to_owned(), Source::Default)
    );
    assert_eq!(
        setting(&low, "CAMRELAY_RTSP_MAX_CLIENTS"),
        ("100".to_owned(), Source::Environment)
    );
}

#[test]
fn rtsp_credentials_both_or_neither() {
    let config = parse(&[
        ("CAMRELAY_RTSP_USERNAME", " viewer "),
        ("CAMRELAY_RTSP_PASSWORD", " pass word "),
    ]);
    let credentials = config.rtsp.credentials.as_ref().unwrap();
    assert_eq!(credentials.username, "viewer");
    assert_eq!(credentials.password.expose_secret(), " pass word ");

    let errors = fail(&[("CAMRELAY_RTSP_USERNAME", "viewer")]);
    let text = message(&errors, "CAMRELAY_RTSP_PASSWORD");
    assert!(
        text.contains("is not set") && text.contains("CAMRELAY_RTSP_USERNAME"),
        "{text}"
    );
    assert_eq!(errors.len(), 1, "{errors}");
    // Blank is unset.
    let errors = fail(&[
        ("CAMRELAY_RTSP_USERNAME", "  "),
        ("CAMRELAY_RTSP_PASSWORD", "pw"),
    ]);
    assert!(message(&errors, "CAMRELAY_RTSP_USERNAME").contains("CAMRELAY_RTSP_PASSWORD"));
    assert_eq!(errors.len(), 1, "{errors}");

    for bad in ["a:b", "say \"hi\"", "back\\slash", "tab\tbed"] {
        let errors = fail(&[
            ("CAMRELAY_RTSP_USERNAME", bad),
            ("CAMRELAY_RTSP_PASSWORD", "pw"),
        ]);
        assert!(
            message(&errors, "CAMRELAY_RTSP_USERNAME").contains("RTSP user name"),
            "{errors}"
        );
        assert_eq!(errors.len(), 1, "{errors}");
    }
}

#[test]
fn ingest_settings() {
    let config = parse(&[
        ("CAMRELAY_INGEST_TIMEOUT", "2s"),
        ("CAMRELAY_INGEST_RETRY_INITIAL", "100ms"),
        ("CAMRELAY_INGEST_RETRY_MAX", "1h"),
    ]);
    assert_eq!(
        config.ingest,
        IngestConfig {
            timeout: Duration::from_secs(2),
            retry_initial: Duration::from_millis(100),
            retry_max: Duration::from_secs(3600),
        }
    );
    let equal = parse(&[
        ("CAMRELAY_INGEST_RETRY_INITIAL", "5s"),
        ("CAMRELAY_INGEST_RETRY_MAX", "5s"),
    ]);
    assert_eq!(equal.ingest.retry_initial, equal.ingest.retry_max);

    let errors = fail(&[
        ("CAMRELAY_INGEST_TIMEOUT", "1s"),
        ("CAMRELAY_INGEST_RETRY_INITIAL", "50ms"),
        ("CAMRELAY_INGEST_RETRY_MAX", "2h"),
    ]);
    assert!(message(&errors, "CAMRELAY_INGEST_TIMEOUT").contains("between 2s and 5m"));
    assert!(message(&errors, "CAMRELAY_INGEST_RETRY_INITIAL").contains("between 100ms and 1h"));
    assert!(message(&errors, "CAMRELAY_INGEST_RETRY_MAX").contains("between 100ms and 1h"));
    assert_eq!(errors.len(), 3, "{errors}");
    let errors = fail(&[("CAMRELAY_INGEST_TIMEOUT", "301s")]);
    message(&errors, "CAMRELAY_INGEST_TIMEOUT");

    // The initial delay must not exceed the cap, set or default.
    let errors = fail(&[("CAMRELAY_INGEST_RETRY_INITIAL", "2m")]);
    let text = message(&errors, "CAMRELAY_INGEST_RETRY_INITIAL");
    assert!(text.contains("CAMRELAY_INGEST_RETRY_MAX (1m)"), "{text}");
    let errors = fail(&[("CAMRELAY_INGEST_RETRY_MAX", "500ms")]);
    assert!(message(&errors, "CAMRELAY_INGEST_RETRY_INITIAL").contains("500ms"));
    assert_eq!(errors.len(), 1, "{errors}");
}

#[test]
fn extra_ca_file_is_named_not_read() {
    // The file does not exist: the config crate never opens it.
    let path = "/nonexistent/camrelay-test/ca.pem";
    let config = parse(&[("CAMRELAY_EXTRA_CA_FILE", &format!("  {path} "))]);
    assert_eq!(config.extra_ca_file.as_deref(), Some(Path::new(path)));
    assert_eq!(
        setting(&config, "CAMRELAY_EXTRA_CA_FILE"),
        (path.to_owned(), Source::Environment)
    );
    let relative = parse(&[("CAMRELAY_EXTRA_CA_FILE", "certs/sim-ca.pem")]);
    assert_eq!(
        relative.extra_ca_file.as_deref(),
        Some(Path::new("certs/sim-ca.pem"))
    );

    let unset = parse(&[("CAMRELAY_EXTRA_CA_FILE", " ")]);
    assert_eq!(unset.extra_ca_file, None);
    assert_eq!(
        setting(&unset, "CAMRELAY_EXTRA_CA_FILE"),
        ("(unset)".to_owned(), Source::Default)
    );

    let errors = fail(&[("CAMRELAY_EXTRA_CA_FILE", "ca\0.pem")]);
    assert!(message(&errors, "CAMRELAY_EXTRA_CA_FILE").contains("NUL"));
}

#[test]
fn effective_listing_is_aligned() {
    let config = parse(&[("CAMRELAY_NEST_QPM", "20")]);
    let table = config.to_string();
    let lines: Vec<_> = table.lines().collect();
    assert_eq!(lines.len(), config.effective().len());
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("CAMRELAY_LOG=info ") && l.ends_with("  (default)")),
        "{table}"
    );
    let column = |line: &str| line.find("  (").unwrap();
    assert!(
        lines.iter().all(|l| column(l) == column(lines[0])),
        "{table}"
    );
    // Without Nest credentials the tuning is not used.
    assert!(table.contains("CAMRELAY_NEST_QPM=(not used)"), "{table}");
    assert!(
        table.contains("CAMRELAY_NEST_CLIENT_SECRET=(unset)"),
        "{table}"
    );

    let config = parse(&[NEST_CREDENTIALS, &[("CAMRELAY_NEST_QPM", "20")]].concat());
    let qpm = config
        .effective()
        .into_iter()
        .find(|s| s.name == "CAMRELAY_NEST_QPM")
        .unwrap();
    assert_eq!(qpm.to_string(), "CAMRELAY_NEST_QPM=20  (environment)");
}

#[test]
fn arbitrary_values_never_panic() {
    let values = [
        "",
        " ",
        "\0",
        "=;=;",
        ";;;",
        "%",
        "%%%ZZ",
        "rtsp://",
        "rtsp://[::1",
        "rtsp://a:b@c:d@e/",
        "a=rtsp://%FF:%FE@h/",
        "99999999999999999999999h",
        "18446744073709551616",
        "-1",
        "1e400",
        "NaN",
        "🦀=rtsp://🦀/",
        "{camera_id}",
        "http://{camera_id}@/",
    ];
    let long = "x".repeat(10_000);
    let mut names: Vec<String> = known_variables().iter().map(|n| (*n).to_owned()).collect();
    names.extend(
        PER_CAMERA_OPTIONS
            .iter()
            .map(|o| format!("CAMRELAY_CAMERA_A_{o}")),
    );
    names.push(format!("CAMRELAY_{long}"));
    for name in &names {
        for value in values.iter().copied().chain([long.as_str()]) {
            let vars = vec![
                ("CAMRELAY_CAMERAS".to_owned(), "a=rtsps://h/".to_owned()),
                (name.clone(), value.to_owned()),
            ];
            // Only the absence of a panic matters here.
            let _ = Config::from_vars(vars);
        }
    }
}

#[test]
fn an_env_file_adds_variables_the_environment_does_not_set() {
    let path = std::env::temp_dir().join(format!("camrelay-env-{}.env", std::process::id()));
    std::fs::write(
        &path,
        "# cameras\nCAMRELAY_CAMERAS=a=rtsp://h/a\nCAMRELAY_NEST_QPM=20\n",
    )
    .unwrap();
    let file = path.display().to_string();
    let config = Config::from_vars_and_file(vars(&[
        ("CAMRELAY_ENV_FILE", file.as_str()),
        ("CAMRELAY_CAMERAS", "b=rtsp://h/b"),
    ]))
    .unwrap();
    // The environment wins; the file fills in.
    assert_eq!(config.cameras.len(), 1);
    assert_eq!(config.cameras[0].id, "b");
    assert_eq!(config.env_file.as_deref(), Some(path.as_path()));
    std::fs::write(
        &path,
        "CAMRELAY_CAMERAS=a=rtsp://h/a\nCAMRELAY_HTTP_ADDR=nowhere\n",
    )
    .unwrap();
    let errors =
        Config::from_vars_and_file(vars(&[("CAMRELAY_ENV_FILE", file.as_str())])).unwrap_err();
    assert!(message(&errors, "CAMRELAY_HTTP_ADDR").contains("nowhere"));
    std::fs::remove_file(&path).unwrap();
    let errors =
        Config::from_vars_and_file(vars(&[("CAMRELAY_ENV_FILE", file.as_str())])).unwrap_err();
    assert!(message(&errors, "CAMRELAY_ENV_FILE").contains("cannot read"));
}

#[test]
fn a_changed_secret_is_noticed_by_name_only() {
    let base: Vec<(&str, &str)> = NEST_CREDENTIALS
        .iter()
        .chain(CALLS_CREDENTIALS)
        .copied()
        .chain([("CAMRELAY_ADMIN_TOKEN", "admin-token-1")])
        .collect();
    let old = Config::from_vars(vars(&base)).unwrap();
    assert!(old.changed_since(&old).is_empty());

    let mut rotated = base.clone();
    for (name, value) in &mut rotated {
        match *name {
            "CAMRELAY_NEST_REFRESH_TOKEN" => *value = "refresh-token-2",
            "CAMRELAY_CALLS_APP_SECRET" => *value = "app-secret-2",
            _ => {}
        }
    }
    rotated.retain(|(name, _)| *name != "CAMRELAY_ADMIN_TOKEN");
    rotated.push(("CAMRELAY_IDLE_GRACE", "1m"));
    let new = Config::from_vars(vars(&rotated)).unwrap();
    let changed = new.changed_since(&old);
    assert_eq!(
        changed,
        [
            "CAMRELAY_IDLE_GRACE",
            "CAMRELAY_NEST_REFRESH_TOKEN",
            "CAMRELAY_CALLS_APP_SECRET",
            "CAMRELAY_ADMIN_TOKEN",
        ]
    );
    let listed = format!("{changed:?}");
    for secret in ["refresh-token", "app-secret", "admin-token"] {
        assert!(!listed.contains(secret), "{listed}");
    }
}
