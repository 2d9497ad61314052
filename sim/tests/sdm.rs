//! The fake SDM API driven over HTTP with reqwest, on paused tokio time.

use std::time::Duration;

use camrelay_sim::sdm::{self, FakeSdmConfig, FakeSdmHandle, FakeSdmStats, Fault, RtspAccessError};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

const GENERATE_RTSP: &str = "sdm.devices.commands.CameraLiveStream.GenerateRtspStream";
const EXTEND_RTSP: &str = "sdm.devices.commands.CameraLiveStream.ExtendRtspStream";
const STOP_RTSP: &str = "sdm.devices.commands.CameraLiveStream.StopRtspStream";
const GENERATE_WEB_RTC: &str = "sdm.devices.commands.CameraLiveStream.GenerateWebRtcStream";
const EXTEND_WEB_RTC: &str = "sdm.devices.commands.CameraLiveStream.ExtendWebRtcStream";
const STOP_WEB_RTC: &str = "sdm.devices.commands.CameraLiveStream.StopWebRtcStream";

const UNAUTHENTICATED: &str = "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.";
const BAD_EXTENSION_TOKEN: &str = "The stream extension token is invalid or has expired.";
const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=recvonly\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=recvonly\r\n\
m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n";

struct Env {
    sdm: FakeSdmHandle,
    http: Client,
    token: String,
}

impl Env {
    async fn start(config: FakeSdmConfig) -> Self {
        let sdm = sdm::start(config).await.expect("fake SDM starts");
        let http = Client::builder()
            .no_proxy()
            .build()
            .expect("reqwest client builds");
        let token = fetch_token(&http, &sdm).await;
        Self { sdm, http, token }
    }

    fn devices_url(&self) -> String {
        format!("{}/enterprises/sim-project/devices", self.sdm.api_url())
    }

    async fn get(&self, url: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .get(url)
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("request is sent");
        let status = response.status();
        (status, response.json().await.expect("answer is JSON"))
    }

    async fn post_command(&self, device: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(format!("{}/{device}:executeCommand", self.devices_url()))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .expect("request is sent")
    }

    async fn command(&self, device: &str, command: &str, params: Value) -> (StatusCode, Value) {
        let response = self
            .post_command(device, &json!({ "command": command, "params": params }))
            .await;
        let status = response.status();
        (status, response.json().await.expect("answer is JSON"))
    }

    /// GenerateRtspStream that must succeed; returns `results`.
    async fn generate(&self, device: &str) -> Value {
        let (status, body) = self.command(device, GENERATE_RTSP, json!({})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["results"].clone()
    }
}

async fn fetch_token(http: &Client, sdm: &FakeSdmHandle) -> String {
    let response = http
        .post(sdm.token_url())
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", "sim-refresh-token"),
            ("client_id", "sim-client-id"),
            ("client_secret", "sim-client-secret"),
        ])
        .send()
        .await
        .expect("token request is sent");
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("token answer is JSON");
    body["access_token"]
        .as_str()
        .expect("access_token is a string")
        .to_owned()
}

fn rate_limited(message: &str) -> Value {
    json!({ "error": {
        "code": 429,
        "message": message,
        "status": "RESOURCE_EXHAUSTED",
        "errors": [{ "message": message, "domain": "global", "reason": "rateLimitExceeded" }],
    }})
}

fn envelope(code: u16, status: &str, message: &str) -> Value {
    json!({ "error": { "code": code, "message": message, "status": status } })
}

async fn sleep_secs(secs: u64) {
    tokio::time::sleep(Duration::from_secs(secs)).await;
}

async fn sleep_ms(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

// ----- OAuth ------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn token_endpoint_grants_and_refuses_like_google() {
    let env = Env::start(FakeSdmConfig::default()).await;
    let url = env.sdm.token_url();
    let post = |form: Vec<(&'static str, &'static str)>| {
        let request = env.http.post(&url).form(&form);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    let good = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", "sim-refresh-token"),
        ("client_id", "sim-client-id"),
        ("client_secret", "sim-client-secret"),
    ];

    let (status, body) = post(good.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["access_token"].as_str().unwrap().starts_with("ya29."));
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "https://www.googleapis.com/auth/sdm.service");

    let with = |key: &'static str, value: &'static str| {
        good.iter()
            .map(|&(k, v)| if k == key { (k, value) } else { (k, v) })
            .collect::<Vec<_>>()
    };
    let (status, body) = post(with("refresh_token", "stolen")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({ "error": "invalid_grant", "error_description": "Token has been expired or revoked." })
    );
    let (status, body) = post(with("client_id", "someone-else")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_client");
    let (status, body) = post(with("client_secret", "wrong")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_client");
    let (status, body) = post(with("grant_type", "authorization_code")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "unsupported_grant_type");
    let (status, body) = post(good[..3].to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "missing secret: {body}");
    assert_eq!(body["error"], "invalid_request");
    let (status, body) = post(vec![good[0], good[2], good[3]]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_request");
    let (status, body) = post(vec![good[1], good[2], good[3]]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_request");

    // Client credentials in an HTTP Basic header (RFC 6749 §2.3.1).
    let response = env
        .http
        .post(&url)
        .basic_auth("sim-client-id", Some("sim-client-secret"))
        .form(&good[..2])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // But not both methods at once.
    let response = env
        .http
        .post(&url)
        .basic_auth("sim-client-id", Some("sim-client-secret"))
        .form(&good)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    let stats = env.sdm.stats();
    // One token from Env::start, one from the first post, one via Basic.
    assert_eq!(stats.access_tokens_issued, 3);
    assert_eq!(stats.token_requests, 11);
    assert_eq!(stats.token_errors, 8);
}

#[tokio::test(start_paused = true)]
async fn access_tokens_expire_after_their_lifetime() {
    let env = Env::start(FakeSdmConfig::default()).await;
    let (status, _) = env.get(&env.devices_url()).await;
    assert_eq!(status, StatusCode::OK);

    sleep_ms(3_599_900).await;
    let (status, _) = env.get(&env.devices_url()).await;
    assert_eq!(status, StatusCode::OK);

    sleep_ms(100).await;
    let response = env
        .http
        .get(env.devices_url())
        .bearer_auth(&env.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.headers().contains_key("www-authenticate"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, envelope(401, "UNAUTHENTICATED", UNAUTHENTICATED));

    // No token at all, and a made-up one.
    let response = env.http.get(env.devices_url()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = env
        .http
        .get(env.devices_url())
        .bearer_auth("ya29.made-up")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(env.sdm.stats().unauthenticated, 3);
}

// ----- devices ------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn lists_and_gets_devices_in_googles_shape() {
    let env = Env::start(FakeSdmConfig::default()).await;
    let (status, body) = env.get(&env.devices_url()).await;
    assert_eq!(status, StatusCode::OK);
    let devices = body["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 4);
    let front = &devices[0];
    assert_eq!(front["name"], "enterprises/sim-project/devices/device-001");
    assert_eq!(front["type"], "sdm.devices.types.CAMERA");
    assert_eq!(
        front["traits"]["sdm.devices.traits.Info"]["customName"],
        "Front Door"
    );
    assert_eq!(
        front["traits"]["sdm.devices.traits.CameraLiveStream"],
        json!({
            "maxVideoResolution": { "width": 640, "height": 480 },
            "videoCodecs": ["H264"],
            "audioCodecs": ["AAC"],
            "supportedProtocols": ["RTSP"],
        })
    );
    assert_eq!(front["parentRelations"][0]["displayName"], "Entryway");
    assert!(
        front["parentRelations"][0]["parent"]
            .as_str()
            .unwrap()
            .starts_with("enterprises/sim-project/structures/")
    );
    let names: Vec<&str> = devices
        .iter()
        .map(|d| {
            d["traits"]["sdm.devices.traits.Info"]["customName"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(names, ["Front Door", "Backyard", "Garage", "Nursery"]);
    assert_eq!(
        devices[3]["traits"]["sdm.devices.traits.CameraLiveStream"]["supportedProtocols"],
        json!(["WEB_RTC"])
    );

    let (status, body) = env.get(&format!("{}/device-002", env.devices_url())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, devices[1]);

    let (status, body) = env.get(&format!("{}/nope", env.devices_url())).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["status"], "NOT_FOUND");

    let other_project = format!("{}/enterprises/other/devices", env.sdm.api_url());
    let (status, body) = env.get(&other_project).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["status"], "PERMISSION_DENIED");

    // devices.list: 5 QPM; one used above.
    for _ in 0..4 {
        assert_eq!(env.get(&env.devices_url()).await.0, StatusCode::OK);
    }
    let (status, body) = env.get(&env.devices_url()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        body,
        rate_limited("Rate limited for the ListDevices API for the user.")
    );
    assert_eq!(env.sdm.stats().rate_limited.list, 1);
}

#[tokio::test(start_paused = true)]
async fn with_rtsp_cameras_numbers_devices() {
    let config = FakeSdmConfig::with_rtsp_cameras(45);
    assert_eq!(config.devices.len(), 45);
    assert_eq!(config.devices[0].id, "device-001");
    assert_eq!(config.devices[44].id, "device-045");
    assert_eq!(config.devices[44].custom_name, "Camera 45");
    assert!(
        config
            .devices
            .iter()
            .all(|d| d.supports(sdm::PROTOCOL_RTSP))
    );
}

// ----- RTSP streams -------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn rtsp_generate_extend_stop() {
    let env = Env::start(FakeSdmConfig::default()).await;
    let generated = env.generate("device-001").await;
    let first_extension = generated["streamExtensionToken"].as_str().unwrap();
    let first_stream_token = generated["streamToken"].as_str().unwrap();
    assert!(first_extension.len() > 100);
    assert!(first_stream_token.starts_with("g.0."));
    assert_eq!(
        generated["streamUrls"]["rtspUrl"],
        format!(
            "rtsps://127.0.0.1:8443/sdm_live_stream/{first_extension}?auth={first_stream_token}"
        )
    );
    assert_eq!(generated["expiresAt"], "2026-01-01T00:05:00.000Z");
    assert_eq!(
        env.sdm
            .check_rtsp_access(first_extension, first_stream_token),
        Ok("device-001".to_owned())
    );

    sleep_secs(240).await;
    let (status, body) = env
        .command(
            "device-001",
            EXTEND_RTSP,
            json!({ "streamExtensionToken": first_extension }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let extended = &body["results"];
    let second_extension = extended["streamExtensionToken"].as_str().unwrap();
    let second_stream_token = extended["streamToken"].as_str().unwrap();
    assert_ne!(second_extension, first_extension);
    assert!(second_stream_token.starts_with("g.1."));
    assert_eq!(extended["expiresAt"], "2026-01-01T00:09:00.000Z");
    assert!(extended.get("streamUrls").is_none());

    // The URL keeps its path; only the current stream token opens it.
    assert_eq!(
        env.sdm
            .check_rtsp_access(first_extension, second_stream_token),
        Ok("device-001".to_owned())
    );
    assert_eq!(
        env.sdm
            .check_rtsp_access(first_extension, first_stream_token),
        Err(RtspAccessError::StaleToken)
    );
    assert_eq!(
        env.sdm.check_rtsp_access(first_extension, "g.0.forged"),
        Err(RtspAccessError::InvalidToken)
    );
    assert_eq!(
        env.sdm.check_rtsp_access("nope", second_stream_token),
        Err(RtspAccessError::UnknownStream)
    );

    // Extension tokens are single use.
    let (status, body) = env
        .command(
            "device-001",
            EXTEND_RTSP,
            json!({ "streamExtensionToken": first_extension }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        envelope(400, "FAILED_PRECONDITION", BAD_EXTENSION_TOKEN)
    );
    // Nor does a token work on another device.
    let (status, _) = env
        .command(
            "device-002",
            EXTEND_RTSP,
            json!({ "streamExtensionToken": second_extension }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, body) = env
        .command(
            "device-001",
            STOP_RTSP,
            json!({ "streamExtensionToken": second_extension }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({ "results": {} }));
    assert_eq!(
        env.sdm
            .check_rtsp_access(first_extension, second_stream_token),
        Err(RtspAccessError::Stopped)
    );
    let (status, _) = env
        .command(
            "device-001",
            STOP_RTSP,
            json!({ "streamExtensionToken": second_extension }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let stats = env.sdm.stats();
    assert_eq!(stats.generates, 1);
    assert_eq!(stats.extends, 1);
    assert_eq!(stats.extend_rejected, 2);
    assert_eq!(stats.stops, 1);
    assert_eq!(stats.stop_rejected, 1);
    assert_eq!(stats.streams_live, 0);
    assert_eq!(stats.streams_expired, 0);
    assert_eq!(stats.min_margin_at_extension, Some(Duration::from_secs(60)));
    assert_eq!(stats.commands_accepted, 6);
    assert_eq!(stats.commands_failed, 3);
    assert_eq!(stats.devices["device-001"].accepted_commands, 5);
    assert_eq!(stats.devices["device-002"].accepted_commands, 1);
}

#[tokio::test(start_paused = true)]
async fn streams_expire_after_five_minutes() {
    let env = Env::start(FakeSdmConfig::default()).await;
    let wanted = env.generate("device-001").await;
    let unwanted = env.generate("device-002").await;
    let kept = env.generate("device-003").await;
    env.sdm.set_wanted("device-002", false);
    assert_eq!(env.sdm.stats().streams_live, 3);

    sleep_secs(299).await;
    let (status, _) = env
        .command(
            "device-003",
            EXTEND_RTSP,
            json!({ "streamExtensionToken": kept["streamExtensionToken"] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    sleep_secs(1).await;

    let stats = env.sdm.stats();
    assert_eq!(stats.streams_live, 1);
    assert_eq!(stats.streams_expired, 2);
    assert_eq!(stats.expired_while_wanted, 1);
    assert_eq!(stats.devices["device-001"].expired_while_wanted, 1);
    assert_eq!(stats.devices["device-002"].streams_expired, 1);
    assert_eq!(stats.devices["device-002"].expired_while_wanted, 0);
    assert!(!stats.devices["device-002"].wanted);
    assert_eq!(stats.min_margin_at_extension, Some(Duration::from_secs(1)));

    let (status, body) = env
        .command(
            "device-001",
            EXTEND_RTSP,
            json!({ "streamExtensionToken": wanted["streamExtensionToken"] }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["status"], "FAILED_PRECONDITION");
    assert_eq!(
        env.sdm.check_rtsp_access(
            wanted["streamExtensionToken"].as_str().unwrap(),
            wanted["streamToken"].as_str().unwrap()
        ),
        Err(RtspAccessError::Expired)
    );
    assert_eq!(
        env.sdm.check_rtsp_access(
            unwanted["streamExtensionToken"].as_str().unwrap(),
            unwanted["streamToken"].as_str().unwrap()
        ),
        Err(RtspAccessError::Expired)
    );

    // Expiry is counted against the flag in force when it happened, even if the
    // flag changes before anyone looks.
    sleep_secs(300).await;
    env.sdm.set_wanted("device-003", false);
    let stats = env.sdm.stats();
    assert_eq!(stats.streams_expired, 3);
    assert_eq!(stats.expired_while_wanted, 2);
}

#[tokio::test(start_paused = true)]
async fn several_streams_per_device() {
    let env = Env::start(FakeSdmConfig::default()).await;
    let a = env.generate("device-001").await;
    let b = env.generate("device-001").await;
    assert_ne!(a["streamExtensionToken"], b["streamExtensionToken"]);
    let stats = env.sdm.stats();
    assert_eq!(stats.streams_live, 2);
    assert_eq!(stats.devices["device-001"].streams_live, 2);
}

// ----- WebRTC -------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn web_rtc_commands_and_protocol_checks() {
    let env = Env::start(FakeSdmConfig::default()).await;
    let (status, body) = env
        .command("device-004", GENERATE_WEB_RTC, json!({ "offerSdp": OFFER }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let results = &body["results"];
    assert!(
        results["answerSdp"]
            .as_str()
            .unwrap()
            .contains("m=application")
    );
    assert_eq!(results["expiresAt"], "2026-01-01T00:05:00.000Z");
    let session = results["mediaSessionId"].as_str().unwrap();

    sleep_secs(60).await;
    let (status, body) = env
        .command(
            "device-004",
            EXTEND_WEB_RTC,
            json!({ "mediaSessionId": session }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({ "results": { "expiresAt": "2026-01-01T00:06:00.000Z", "mediaSessionId": session } })
    );
    let (status, body) = env
        .command(
            "device-004",
            EXTEND_WEB_RTC,
            json!({ "mediaSessionId": "bogus" }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        envelope(
            400,
            "FAILED_PRECONDITION",
            "WebRtc error caused by invalid session or user id mismatch."
        )
    );
    let (status, body) = env
        .command(
            "device-004",
            STOP_WEB_RTC,
            json!({ "mediaSessionId": session }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({ "results": {} }));

    let wrong_order = OFFER
        .replace("m=audio", "m=AUDIO")
        .replace("m=video", "m=audio");
    let (status, body) = env
        .command(
            "device-004",
            GENERATE_WEB_RTC,
            json!({ "offerSdp": wrong_order }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["status"], "INVALID_ARGUMENT");

    // RTSP on a WebRTC-only camera and WebRTC on an RTSP-only camera.
    let (status, body) = env.command("device-004", GENERATE_RTSP, json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["status"], "FAILED_PRECONDITION");
    let (status, body) = env
        .command("device-001", GENERATE_WEB_RTC, json!({ "offerSdp": OFFER }))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["status"], "FAILED_PRECONDITION");
}

// ----- validation -------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn bad_requests_are_4xx_and_accepted_ones_count() {
    let env = Env::start(FakeSdmConfig::default()).await;
    let url = format!("{}/device-001:executeCommand", env.devices_url());

    // Malformed JSON: accepted by the budgets, then 400.
    let response = env
        .http
        .post(&url)
        .bearer_auth(&env.token)
        .header("content-type", "application/json")
        .body("{\"command\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["status"], "INVALID_ARGUMENT");

    for body in [
        json!({ "command": "sdm.devices.commands.Nope", "params": {} }),
        json!({ "command": GENERATE_RTSP }),
        json!({ "command": GENERATE_RTSP, "params": {}, "extra": true }),
        json!({ "command": EXTEND_RTSP, "params": {} }),
    ] {
        let response = env.post_command("device-001", &body).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
    }
    let stats = env.sdm.stats();
    assert_eq!(stats.commands_accepted, 5);
    assert_eq!(stats.commands_failed, 5);

    // A huge body.
    let response = env
        .http
        .post(&url)
        .bearer_auth(&env.token)
        .header("content-type", "application/json")
        .body(vec![b' '; sdm::MAX_BODY_BYTES + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // Bad paths.
    for path in [
        "/v1/enterprises/sim-project/devices/device-001:explode",
        "/v1/enterprises/sim-project/devices/device-001",
        "/v2/whatever",
    ] {
        let response = env
            .http
            .post(format!("http://{}{path}", env.sdm.addr()))
            .bearer_auth(&env.token)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], 404);
    }
    let response = env.http.delete(env.devices_url()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);

    // Auth, project and device are checked before anything is accepted.
    let response = env
        .http
        .post(&url)
        .json(&json!({ "command": GENERATE_RTSP, "params": {} }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let (status, _) = env.command("device-999", GENERATE_RTSP, json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let response = env
        .http
        .post(format!(
            "{}/enterprises/other/devices/device-001:executeCommand",
            env.sdm.api_url()
        ))
        .bearer_auth(&env.token)
        .json(&json!({ "command": GENERATE_RTSP, "params": {} }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(env.sdm.stats().commands_accepted, 5);
}

// ----- budgets --------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn project_budget_is_ten_per_rolling_minute() {
    let env = Env::start(FakeSdmConfig::with_rtsp_cameras(12)).await;
    for i in 1..=10 {
        env.generate(&format!("device-{i:03}")).await;
    }
    let (status, body) = env.command("device-011", GENERATE_RTSP, json!({})).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        body,
        rate_limited("Rate limited for the ExecuteDeviceCommand API for the user.")
    );

    sleep_ms(59_999).await;
    let (status, _) = env.command("device-011", GENERATE_RTSP, json!({})).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    sleep_ms(1).await;
    env.generate("device-011").await;

    let stats = env.sdm.stats();
    assert_eq!(stats.rate_limited.project, 2);
    assert_eq!(stats.commands_accepted, 11);
    assert_eq!(stats.commands_received, 13);
    assert_eq!(stats.devices["device-011"].rate_limited, 2);
    assert_eq!(stats.max_accepted_in_any_window, 10);
}

#[tokio::test(start_paused = true)]
async fn per_command_budget_is_five_per_device() {
    let env = Env::start(FakeSdmConfig::default()).await;
    let mut last = Value::Null;
    for _ in 0..5 {
        last = env.generate("device-001").await;
    }
    let (status, body) = env.command("device-001", GENERATE_RTSP, json!({})).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        body,
        rate_limited("Rate limited for the GenerateRtspStream command for the user.")
    );
    // Another command on the same device and the same command on another device
    // have their own budgets.
    let (status, _) = env
        .command(
            "device-001",
            EXTEND_RTSP,
            json!({ "streamExtensionToken": last["streamExtensionToken"] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    env.generate("device-002").await;

    sleep_secs(60).await;
    env.generate("device-001").await;
    assert_eq!(env.sdm.stats().rate_limited.device_command, 1);
}

#[tokio::test(start_paused = true)]
async fn device_budget_per_minute_and_hour() {
    let config = FakeSdmConfig {
        command_qpm: 1000,
        device_command_qpm: 1000,
        device_qph: 40,
        access_token_lifetime: Duration::from_secs(24 * 60 * 60),
        ..FakeSdmConfig::default()
    };
    let env = Env::start(config).await;
    for _ in 0..30 {
        env.generate("device-001").await;
    }
    let (status, body) = env.command("device-001", GENERATE_RTSP, json!({})).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body, rate_limited("Rate limited for the device."));
    env.generate("device-002").await;

    sleep_secs(60).await;
    for _ in 0..10 {
        env.generate("device-001").await;
    }
    // 40 in the last hour: the hourly budget is spent although the minute is not.
    let (status, body) = env.command("device-001", GENERATE_RTSP, json!({})).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body, rate_limited("Rate limited for the device."));

    sleep_secs(3540).await;
    env.generate("device-001").await;
    let stats = env.sdm.stats();
    assert_eq!(stats.rate_limited.device, 2);
    assert_eq!(stats.max_accepted_in_any_window, 31);
}

#[tokio::test(start_paused = true)]
async fn max_accepted_in_any_window_is_exact() {
    let env = Env::start(FakeSdmConfig::with_rtsp_cameras(12)).await;
    let mut device = 0;
    let mut burst = |n: usize| {
        let devices: Vec<String> = (0..n)
            .map(|_| {
                device += 1;
                format!("device-{:03}", (device - 1) % 12 + 1)
            })
            .collect();
        devices
    };
    // t=0: 4, t=59: 5 → 9 in (−1, 59]; t=61: 3 → (1, 61] holds 5 + 3 = 8.
    for d in burst(4) {
        env.generate(&d).await;
    }
    sleep_secs(59).await;
    for d in burst(5) {
        env.generate(&d).await;
    }
    sleep_secs(2).await;
    for d in burst(3) {
        env.generate(&d).await;
    }
    assert_eq!(env.sdm.stats().max_accepted_in_any_window, 9);
}

// ----- failures -------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn failure_rate_one_fails_every_command_before_the_budgets() {
    let config = FakeSdmConfig {
        failure_rate: 1.0,
        ..FakeSdmConfig::default()
    };
    let env = Env::start(config).await;
    for _ in 0..12 {
        let (status, body) = env.command("device-001", GENERATE_RTSP, json!({})).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            body,
            envelope(503, "UNAVAILABLE", "The service is currently unavailable.")
        );
    }
    let stats = env.sdm.stats();
    assert_eq!(stats.commands_accepted, 0);
    assert_eq!(stats.injected_failures, 12);
    assert_eq!(stats.rate_limited, Default::default());
    // Reads are not affected.
    assert_eq!(env.get(&env.devices_url()).await.0, StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn injected_faults() {
    let env = Env::start(FakeSdmConfig::default()).await;

    env.sdm.inject(Fault::Status(500), 2);
    for _ in 0..2 {
        let (status, body) = env.command("device-001", GENERATE_RTSP, json!({})).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["error"]["status"], "INTERNAL");
    }
    env.sdm.inject(Fault::Status(429), 1);
    let (status, body) = env.command("device-001", GENERATE_RTSP, json!({})).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        body,
        rate_limited("Rate limited for the ExecuteDeviceCommand API for the user.")
    );
    let generated = env.generate("device-001").await;
    assert_eq!(env.sdm.stats().commands_accepted, 1);

    // A garbled answer to an extension that did happen: the old token is spent.
    env.sdm.inject(Fault::MalformedJson, 1);
    let response = env
        .post_command(
            "device-001",
            &json!({ "command": EXTEND_RTSP, "params": { "streamExtensionToken": generated["streamExtensionToken"] } }),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");
    let (status, _) = env
        .command(
            "device-001",
            EXTEND_RTSP,
            json!({ "streamExtensionToken": generated["streamExtensionToken"] }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    env.sdm.inject(Fault::WrongShape, 1);
    let (status, body) = env.command("device-002", GENERATE_RTSP, json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["results"].get("streamUrls").is_none());
    assert!(body["results"].get("streamExtensionToken").is_none());
    assert_eq!(env.sdm.stats().streams_live, 2);

    env.sdm.inject(Fault::ExpireAccessTokens, 1);
    let (status, _) = env.get(&env.devices_url()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let fresh = fetch_token(&env.http, &env.sdm).await;
    let response = env
        .http
        .get(env.devices_url())
        .bearer_auth(&fresh)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    env.sdm.inject(Fault::RevokeRefreshToken, 1);
    let response = env
        .http
        .post(env.sdm.token_url())
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", "sim-refresh-token"),
            ("client_id", "sim-client-id"),
            ("client_secret", "sim-client-secret"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant");

    let stats = env.sdm.stats();
    assert_eq!(stats.injected_failures, 5);
    assert_eq!(stats.rate_limited, Default::default());
}

// ----- time -----------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn date_header_follows_the_virtual_clock() {
    let config = FakeSdmConfig {
        access_token_lifetime: Duration::from_secs(24 * 60 * 60),
        ..FakeSdmConfig::default()
    };
    let env = Env::start(config).await;
    let date =
        |response: &reqwest::Response| response.headers()["date"].to_str().unwrap().to_owned();
    let response = env
        .post_command(
            "device-001",
            &json!({ "command": GENERATE_RTSP, "params": {} }),
        )
        .await;
    assert_eq!(date(&response), "Thu, 01 Jan 2026 00:00:00 GMT");

    sleep_secs(90 * 60).await;
    let response = env
        .post_command(
            "device-001",
            &json!({ "command": GENERATE_RTSP, "params": {} }),
        )
        .await;
    assert_eq!(date(&response), "Thu, 01 Jan 2026 01:30:00 GMT");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["results"]["expiresAt"], "2026-01-01T01:35:00.000Z");

    let response = env
        .http
        .get(format!("http://{}/nowhere", env.sdm.addr()))
        .send()
        .await
        .unwrap();
    assert_eq!(date(&response), "Thu, 01 Jan 2026 01:30:00 GMT");
}

#[tokio::test(start_paused = true)]
async fn latency_is_seeded_and_within_bounds() {
    let config = FakeSdmConfig {
        latency_min: Duration::from_millis(100),
        latency_max: Duration::from_millis(300),
        ..FakeSdmConfig::default()
    };
    let mut runs = Vec::new();
    for _ in 0..2 {
        let env = Env::start(config.clone()).await;
        let mut elapsed = Vec::new();
        for _ in 0..5 {
            let started = tokio::time::Instant::now();
            let (status, _) = env.get(&format!("{}/device-001", env.devices_url())).await;
            assert_eq!(status, StatusCode::OK);
            let took = started.elapsed();
            assert!(
                took >= Duration::from_millis(100) && took <= Duration::from_millis(302),
                "{took:?}"
            );
            elapsed.push(took);
        }
        runs.push(elapsed);
    }
    assert_eq!(runs[0], runs[1]);
}

#[tokio::test(start_paused = true)]
async fn stats_are_served_over_http() {
    let env = Env::start(FakeSdmConfig::default()).await;
    env.generate("device-001").await;
    let response = env
        .http
        .get(format!("http://{}/sim/stats", env.sdm.addr()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let served: FakeSdmStats = response.json().await.unwrap();
    assert_eq!(served, env.sdm.stats());
    assert_eq!(served.generates, 1);
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_serving() {
    let env = Env::start(FakeSdmConfig::default()).await;
    let url = env.devices_url();
    let Env { sdm, .. } = env;
    sdm.shutdown_and_wait().await;
    let fresh = Client::builder().no_proxy().build().unwrap();
    assert!(fresh.get(url).send().await.is_err());
}

#[tokio::test(start_paused = true)]
async fn a_simulated_day_of_extensions_runs_in_moments() {
    let mut env = Env::start(FakeSdmConfig::with_rtsp_cameras(2)).await;
    let devices = ["device-001", "device-002"];
    let mut tokens = Vec::new();
    for device in devices {
        tokens.push(env.generate(device).await["streamExtensionToken"].clone());
    }
    let mut token_age = Duration::ZERO;
    for _ in 0..(24 * 60 / 4) {
        sleep_secs(4 * 60).await;
        token_age += Duration::from_secs(4 * 60);
        if token_age >= Duration::from_secs(50 * 60) {
            env.token = fetch_token(&env.http, &env.sdm).await;
            token_age = Duration::ZERO;
        }
        for (device, token) in devices.iter().zip(tokens.iter_mut()) {
            let (status, body) = env
                .command(
                    device,
                    EXTEND_RTSP,
                    json!({ "streamExtensionToken": token }),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            *token = body["results"]["streamExtensionToken"].clone();
        }
    }
    let stats = env.sdm.stats();
    assert_eq!(stats.extends, 2 * 24 * 60 / 4);
    assert_eq!(stats.streams_expired, 0);
    assert_eq!(stats.streams_live, 2);
    assert_eq!(stats.min_margin_at_extension, Some(Duration::from_secs(60)));
    assert_eq!(stats.max_accepted_in_any_window, 2);
    let date = httpdate::fmt_http_date(env.sdm.wall_clock());
    assert_eq!(date, "Fri, 02 Jan 2026 00:00:00 GMT");
}
