//! Media helpers: a relay with static cameras, and real RTSP clients (ffprobe, GStreamer).

use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use camrelay::app::Relay;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// A relay without Nest.
pub struct RelayRunning {
    pub relay: Arc<Relay>,
    pub shutdown: CancellationToken,
}

impl Drop for RelayRunning {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl RelayRunning {
    /// `rtsp://127.0.0.1:PORT/{id}` on the relay.
    pub fn url(&self, id: &str) -> String {
        format!("rtsp://{}/{id}", self.relay.rtsp.local_addr())
    }

    /// `rtsp://user:password@127.0.0.1:PORT/{id}`.
    pub fn url_with(&self, id: &str, user: &str, password: &str) -> String {
        format!(
            "rtsp://{user}:{password}@{}/{id}",
            self.relay.rtsp.local_addr()
        )
    }

    pub fn camera(&self, id: &str) -> Arc<camrelay::camera::Camera> {
        self.relay.registry.get(id).unwrap()
    }

    /// Asserts that ffprobe decodes camera `id`, relayed from the simulated camera, cleanly
    /// over TCP for 2 s; a failure names the camera's last ingest error.
    pub async fn assert_relays_sim_camera(&self, id: &str) {
        let probe = ffprobe(&self.url(id), "tcp", 2).await;
        let error = self.camera(id).media.stats.last_error();
        assert!(probe.ok(), "{}; camera: {error:?}", probe.stderr);
        probe.assert_sim_camera(25);
    }
}

/// Starts a relay on free loopback ports with `extra` variables.
pub async fn start_relay(extra: &[(&str, &str)]) -> RelayRunning {
    let (relay, shutdown) = super::start_relay_from(Vec::new(), extra).await;
    RelayRunning { relay, shutdown }
}

/// What ffprobe said.
#[derive(Debug)]
pub struct Probe {
    pub report: Value,
    pub stderr: String,
    pub output: Output,
}

impl Probe {
    pub fn ok(&self) -> bool {
        self.output.status.success()
    }

    pub fn stream(&self, kind: &str) -> &Value {
        self.report["streams"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["codec_type"] == kind))
            .unwrap_or(&Value::Null)
    }

    /// Video frames decoded.
    pub fn video_frames(&self) -> u64 {
        self.stream("video")["nb_read_frames"]
            .as_str()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// Asserts a clean decode of the simulated camera: 640x360 H.264, 48 kHz AAC, at least
    /// `min_frames` video frames, nothing on stderr.
    pub fn assert_sim_camera(&self, min_frames: u64) {
        assert!(self.ok(), "ffprobe failed: {}", self.stderr);
        assert!(
            self.stderr.trim().is_empty(),
            "decode errors: {}",
            self.stderr
        );
        let video = self.stream("video");
        assert_eq!(video["codec_name"], "h264", "{}", self.report);
        assert_eq!(
            (video["width"].as_u64(), video["height"].as_u64()),
            (Some(640), Some(360)),
            "{}",
            self.report
        );
        assert!(
            self.video_frames() >= min_frames,
            "{} frames: {}",
            self.video_frames(),
            self.report
        );
        let audio = self.stream("audio");
        assert_eq!(audio["codec_name"], "aac", "{}", self.report);
        assert_eq!(audio["sample_rate"], "48000", "{}", self.report);
    }
}

/// Runs ffprobe on `url` over `transport` (`tcp` or `udp`) for `seconds` of media.
pub async fn ffprobe(url: &str, transport: &str, seconds: u32) -> Probe {
    let interval = format!("%+{seconds}");
    let output = tokio::time::timeout(
        Duration::from_secs(u64::from(seconds) + 30),
        tokio::process::Command::new("ffprobe")
            .args(["-v", "error", "-rtsp_transport", transport])
            .args([
                "-count_frames",
                "-show_entries",
                "stream=codec_name,codec_type,width,height,nb_read_frames,sample_rate",
                "-read_intervals",
                &interval,
                "-of",
                "json",
                url,
            ])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("ffprobe finishes")
    .expect("ffprobe runs (apt-get install ffmpeg)");
    Probe {
        report: serde_json::from_slice(&output.stdout).unwrap_or(Value::Null),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        output,
    }
}

/// Waits up to `limit` for a helper script's `READY <port>` line on `stdout` and returns the
/// port; `what` names the helper in the panic.
pub async fn ready_port(
    stdout: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    limit: Duration,
    what: &str,
) -> u16 {
    let line = tokio::time::timeout(limit, stdout.next_line())
        .await
        .unwrap_or_else(|_| panic!("{what} starts"))
        .unwrap()
        .unwrap_or_else(|| panic!("{what} says READY"));
    line.strip_prefix("READY ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected: {line}"))
}

/// Waits for `condition`, checking every 20 ms, for at most `limit` (for state with no event
/// to await, such as another process's connections).
pub async fn eventually(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {limit:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A relay against the fake SDM API and its simulated Nest stream server (`rtsps://`).
pub struct NestRelay {
    pub relay: Arc<Relay>,
    pub api: camrelay_sim::sdm::FakeSdmHandle,
    pub streams: camrelay_sim::camera::SimCamera,
    pub shutdown: CancellationToken,
}

impl Drop for NestRelay {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl NestRelay {
    /// `rtsp://127.0.0.1:PORT/{id}` on the relay.
    pub fn url(&self, id: &str) -> String {
        format!("rtsp://{}/{id}", self.relay.rtsp.local_addr())
    }

    /// The camera `id`, once discovery has found it.
    pub async fn camera(&self, id: &str) -> Arc<camrelay::camera::Camera> {
        let mut found = None;
        eventually(Duration::from_secs(10), "discovery", || {
            found = self.relay.registry.get(id);
            found.is_some()
        })
        .await;
        found.unwrap()
    }
}

/// Starts the fake SDM API, its stream server and a relay trusting the stream server's CA.
pub async fn start_nest_relay(
    fake: camrelay_sim::sdm::FakeSdmConfig,
    extra: &[(&str, &str)],
) -> NestRelay {
    let (api, streams) = camrelay_sim::start_nest(fake.clone()).await.unwrap();
    let mut vars = camrelay::demo::fake_nest_env(&fake, &api);
    vars.push((
        "CAMRELAY_EXTRA_CA_FILE".into(),
        camrelay_sim::camera::TEST_CA_FILE.into(),
    ));
    let (relay, shutdown) = super::start_relay_from(vars, extra).await;
    NestRelay {
        relay,
        api,
        streams,
        shutdown,
    }
}

/// GStreamer's gst-rtsp-server as a third-party camera (`tests/support/gst_camera.py`):
/// `/cam`, 640x360 H.264 at 25 fps and 48 kHz AAC. Killed when dropped.
pub struct GstCamera {
    pub port: u16,
    tls: bool,
    _child: tokio::process::Child,
}

impl GstCamera {
    /// Starts it with `args` (`--digest user:password`, `--tls-cert`/`--tls-key`).
    pub async fn start(args: &[&str]) -> Self {
        use tokio::io::AsyncBufReadExt;
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/gst_camera.py");
        // Debian's python3 has the GObject bindings (python3-gi), whatever python3 is first.
        let mut child = tokio::process::Command::new("/usr/bin/python3")
            .arg(script)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("gst-rtsp-server runs (apt-get install python3-gi gir1.2-gst-rtsp-server-1.0)");
        let stdout = child.stdout.take().unwrap();
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let port = ready_port(&mut lines, Duration::from_secs(20), "gst-rtsp-server").await;
        Self {
            port,
            tls: args.contains(&"--tls-cert"),
            _child: child,
        }
    }

    /// Its `/cam` URL.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "rtsps" } else { "rtsp" };
        format!("{scheme}://127.0.0.1:{}/cam", self.port)
    }
}

/// Plays `url` with GStreamer's `rtspsrc` over TCP and decodes `frames` video frames and as
/// many audio frames, then ends (exit status 0 once it got there).
pub async fn gst_play(url: &str, frames: u32) -> std::process::Output {
    let eos = format!("eos-after={frames}");
    tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new("gst-launch-1.0")
            .args([
                "-q",
                "rtspsrc",
                &format!("location={url}"),
                "protocols=tcp",
                "name=s",
            ])
            .args([
                "s.",
                "!",
                "rtph264depay",
                "!",
                "avdec_h264",
                "!",
                "identity",
                &eos,
                "!",
                "fakesink",
            ])
            .args([
                "s.",
                "!",
                "rtpmp4gdepay",
                "!",
                "avdec_aac",
                "!",
                "identity",
                &eos,
                "!",
                "fakesink",
            ])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("gst-launch finishes")
    .expect("gst-launch runs (apt-get install gstreamer1.0-tools)")
}
