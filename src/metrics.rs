//! `/metrics`: the `/stats` document in Prometheus text format.
//!
//! Rendered from one [`Stats`] snapshot per scrape into a fresh recorder of
//! `metrics-exporter-prometheus`, so the series are exactly what the relay has now: a removed
//! camera's series disappear with it, and counters are the relay's own (monotonic since start).
//! Every series is listed in [`SERIES`] with its help text and documented in `docs/metrics.md`
//! (a test keeps the three in step).

use metrics::{Key, KeyName, Label, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};

use crate::stats::Stats;

/// What kind of series a name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (since start).
    Counter,
    /// Goes up and down.
    Gauge,
}

/// Every series: name, kind, help.
pub const SERIES: &[(&str, Kind, &str)] = &[
    (
        "camrelay_build_info",
        Kind::Gauge,
        "Always 1; the version label says which camrelay runs.",
    ),
    (
        "camrelay_uptime_seconds",
        Kind::Gauge,
        "Seconds since the relay started.",
    ),
    ("camrelay_cameras", Kind::Gauge, "Cameras known, by state."),
    (
        "camrelay_camera_state",
        Kind::Gauge,
        "1 for the camera's current state (idle, admitting, at_capacity, starting, live, backoff, dormant).",
    ),
    (
        "camrelay_camera_degraded",
        Kind::Gauge,
        "1 while the camera fails repeatedly (it keeps retrying).",
    ),
    (
        "camrelay_camera_demand",
        Kind::Gauge,
        "Holders of demand on the camera: RTSP clients, viewers, always-on.",
    ),
    (
        "camrelay_camera_viewers",
        Kind::Gauge,
        "Browser viewers watching the camera.",
    ),
    (
        "camrelay_camera_rtsp_clients",
        Kind::Gauge,
        "RTSP clients playing the camera.",
    ),
    (
        "camrelay_camera_connected",
        Kind::Gauge,
        "1 while an upstream session delivers.",
    ),
    (
        "camrelay_camera_uptime_seconds_total",
        Kind::Counter,
        "Seconds the camera was live since the relay started.",
    ),
    (
        "camrelay_camera_downtime_seconds_total",
        Kind::Counter,
        "Seconds the camera was wanted but not live (starting, reconnecting, refused, at capacity).",
    ),
    (
        "camrelay_camera_bitrate_bps",
        Kind::Gauge,
        "Incoming media bitrate over the last second, bits per second.",
    ),
    (
        "camrelay_camera_bitrate_peak_bps",
        Kind::Gauge,
        "Highest one-second incoming bitrate, bits per second.",
    ),
    (
        "camrelay_camera_upstream_sessions_total",
        Kind::Counter,
        "Upstream sessions established.",
    ),
    (
        "camrelay_camera_upstream_failures_total",
        Kind::Counter,
        "Upstream sessions that failed or ended.",
    ),
    (
        "camrelay_camera_video_frames_in_total",
        Kind::Counter,
        "Video frames received from the camera.",
    ),
    (
        "camrelay_camera_audio_frames_in_total",
        Kind::Counter,
        "Audio frames received from the camera.",
    ),
    (
        "camrelay_camera_bytes_in_total",
        Kind::Counter,
        "Media bytes received from the camera.",
    ),
    (
        "camrelay_camera_packets_out_total",
        Kind::Counter,
        "RTP packets built once for all RTSP clients.",
    ),
    (
        "camrelay_camera_rtsp_packets_dropped_total",
        Kind::Counter,
        "RTP packets the camera's RTSP clients lost by falling behind (each then skipped to the next keyframe).",
    ),
    (
        "camrelay_camera_bytes_out_total",
        Kind::Counter,
        "Bytes of those packets.",
    ),
    (
        "camrelay_lease_expires_in_seconds",
        Kind::Gauge,
        "Seconds until the Nest camera's current stream expires (absent without a stream).",
    ),
    (
        "camrelay_lease_generated_total",
        Kind::Counter,
        "Nest streams generated for the camera.",
    ),
    (
        "camrelay_lease_extended_total",
        Kind::Counter,
        "Nest stream extensions for the camera.",
    ),
    (
        "camrelay_lease_failures_total",
        Kind::Counter,
        "Failed Nest commands for the camera.",
    ),
    (
        "camrelay_lease_lost_total",
        Kind::Counter,
        "Nest streams lost while wanted (expired or ended by Google).",
    ),
    (
        "camrelay_lease_refusals_total",
        Kind::Counter,
        "Starts refused by admission control (at capacity).",
    ),
    (
        "camrelay_publish_state",
        Kind::Gauge,
        "1 for the camera's WebRTC publication state (idle, connecting, published, retrying).",
    ),
    (
        "camrelay_publish_sessions_total",
        Kind::Counter,
        "SFU sessions the camera's publisher established.",
    ),
    (
        "camrelay_publish_failures_total",
        Kind::Counter,
        "Publishing attempts that failed.",
    ),
    (
        "camrelay_publish_video_frames_total",
        Kind::Counter,
        "Video frames sent to the SFU.",
    ),
    (
        "camrelay_publish_audio_packets_total",
        Kind::Counter,
        "Opus packets sent to the SFU.",
    ),
    (
        "camrelay_publish_frames_dropped_total",
        Kind::Counter,
        "Frames the publisher skipped because it fell behind.",
    ),
    (
        "camrelay_publish_keyframe_requests_total",
        Kind::Counter,
        "Keyframe requests from the SFU, by kind (pli, fir).",
    ),
    (
        "camrelay_viewers",
        Kind::Gauge,
        "Browser viewers over all cameras.",
    ),
    (
        "camrelay_rtsp_connections_total",
        Kind::Counter,
        "RTSP connections accepted.",
    ),
    (
        "camrelay_rtsp_connections_open",
        Kind::Gauge,
        "RTSP connections open now.",
    ),
    (
        "camrelay_rtsp_sessions_total",
        Kind::Counter,
        "RTSP sessions set up.",
    ),
    (
        "camrelay_rtsp_sessions_open",
        Kind::Gauge,
        "RTSP sessions open now.",
    ),
    (
        "camrelay_rtsp_requests_total",
        Kind::Counter,
        "RTSP requests answered.",
    ),
    (
        "camrelay_rtsp_bad_requests_total",
        Kind::Counter,
        "RTSP requests refused as malformed or with an unsupported transport.",
    ),
    (
        "camrelay_rtsp_unauthorized_total",
        Kind::Counter,
        "RTSP requests refused for missing or wrong credentials.",
    ),
    (
        "camrelay_rtsp_refused_limit_total",
        Kind::Counter,
        "RTSP sessions refused for a client limit.",
    ),
    (
        "camrelay_rtsp_packets_sent_total",
        Kind::Counter,
        "RTP packets sent to RTSP clients.",
    ),
    (
        "camrelay_rtsp_bytes_sent_total",
        Kind::Counter,
        "Bytes sent to RTSP clients.",
    ),
    (
        "camrelay_rtsp_packets_dropped_total",
        Kind::Counter,
        "Packets slow RTSP clients skipped (they resume at the next keyframe).",
    ),
    (
        "camrelay_queue_depth",
        Kind::Gauge,
        "Nest commands waiting, by class.",
    ),
    (
        "camrelay_queue_in_flight",
        Kind::Gauge,
        "Nest commands executing, by class.",
    ),
    (
        "camrelay_queue_commands_total",
        Kind::Counter,
        "Nest commands by outcome (submitted, executed, succeeded, failed, rate_limited, refunded, dropped, cancelled).",
    ),
    (
        "camrelay_queue_admissions_total",
        Kind::Counter,
        "Stream admissions granted.",
    ),
    (
        "camrelay_queue_admission_refusals_total",
        Kind::Counter,
        "Stream admissions refused (at capacity).",
    ),
    (
        "camrelay_queue_streams_admitted",
        Kind::Gauge,
        "Streams admitted now.",
    ),
    (
        "camrelay_queue_stream_capacity",
        Kind::Gauge,
        "Streams the budget can keep alive.",
    ),
    (
        "camrelay_queue_wait_seconds",
        Kind::Gauge,
        "Recent time commands waited in the queue, by class and quantile (0.5, 0.9, 0.99, 1).",
    ),
    (
        "camrelay_queue_latency_seconds",
        Kind::Gauge,
        "Recent Nest API latency, by quantile.",
    ),
    (
        "camrelay_queue_extend_lateness_seconds",
        Kind::Gauge,
        "Recent lateness of extensions against their plan, by quantile.",
    ),
    (
        "camrelay_queue_budget_used",
        Kind::Gauge,
        "Sends counting in each budget bucket's window now.",
    ),
    (
        "camrelay_queue_budget_remaining",
        Kind::Gauge,
        "Sends still possible in each budget bucket now.",
    ),
    (
        "camrelay_queue_budget_limit",
        Kind::Gauge,
        "Each budget bucket's limit per window.",
    ),
    (
        "camrelay_nest_token_refreshes_total",
        Kind::Counter,
        "OAuth access tokens requested.",
    ),
    (
        "camrelay_nest_discovered",
        Kind::Gauge,
        "1 when the last Nest device discovery succeeded.",
    ),
    (
        "camrelay_sfu_sessions",
        Kind::Gauge,
        "Embedded SFU: sessions now.",
    ),
    (
        "camrelay_sfu_sessions_connected",
        Kind::Gauge,
        "Embedded SFU: sessions with a connected peer.",
    ),
    (
        "camrelay_sfu_tracks_published",
        Kind::Gauge,
        "Embedded SFU: tracks published.",
    ),
    (
        "camrelay_sfu_tracks_pulled",
        Kind::Gauge,
        "Embedded SFU: tracks pulled by viewers.",
    ),
    (
        "camrelay_sfu_frames_forwarded_total",
        Kind::Counter,
        "Embedded SFU: frames forwarded to viewers.",
    ),
    (
        "camrelay_sfu_keyframe_requests_total",
        Kind::Counter,
        "Embedded SFU: keyframe requests sent to publishers.",
    ),
    (
        "camrelay_sfu_sessions_dropped_total",
        Kind::Counter,
        "Embedded SFU: sessions dropped (timed out or disconnected).",
    ),
];

/// One scrape under construction.
struct Out {
    recorder: PrometheusRecorder,
}

static METADATA: Metadata<'static> = Metadata::new(module_path!(), metrics::Level::INFO, None);

fn labels(pairs: &[(&'static str, &str)]) -> Vec<Label> {
    pairs
        .iter()
        .map(|(k, v)| Label::new(*k, (*v).to_owned()))
        .collect()
}

impl Out {
    fn new() -> Self {
        let recorder = PrometheusBuilder::new().build_recorder();
        for (name, kind, help) in SERIES {
            let key = KeyName::from(*name);
            let help = SharedString::from(*help);
            match kind {
                Kind::Counter => recorder.describe_counter(key, None::<Unit>, help),
                Kind::Gauge => recorder.describe_gauge(key, None::<Unit>, help),
            }
        }
        Self { recorder }
    }

    fn counter(&self, name: &'static str, pairs: &[(&'static str, &str)], value: u64) {
        let key = Key::from_parts(name, labels(pairs));
        self.recorder
            .register_counter(&key, &METADATA)
            .absolute(value);
    }

    #[allow(clippy::cast_precision_loss)]
    fn gauge(&self, name: &'static str, pairs: &[(&'static str, &str)], value: f64) {
        let key = Key::from_parts(name, labels(pairs));
        self.recorder.register_gauge(&key, &METADATA).set(value);
    }

    #[allow(clippy::cast_precision_loss)]
    fn count(&self, name: &'static str, pairs: &[(&'static str, &str)], value: u64) {
        self.gauge(name, pairs, value as f64);
    }

    fn flag(&self, name: &'static str, pairs: &[(&'static str, &str)], on: bool) {
        self.gauge(name, pairs, if on { 1.0 } else { 0.0 });
    }

    /// Quantiles of a percentile summary in ms, as seconds.
    #[allow(clippy::cast_precision_loss)]
    fn quantiles(
        &self,
        name: &'static str,
        pairs: &[(&'static str, &str)],
        p: &camrelay_queue::stats::Percentiles,
    ) {
        for (q, ms) in [
            ("0.5", p.p50),
            ("0.9", p.p90),
            ("0.99", p.p99),
            ("1", p.max),
        ] {
            let mut all = pairs.to_vec();
            all.push(("quantile", q));
            self.gauge(name, &all, ms as f64 / 1000.0);
        }
    }
}

fn snake<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The Prometheus text for `stats`, with the number of viewers over all cameras.
#[allow(clippy::cast_precision_loss, clippy::too_many_lines)]
pub fn render(stats: &Stats) -> String {
    let out = Out::new();
    out.flag("camrelay_build_info", &[("version", stats.version)], true);
    out.count("camrelay_uptime_seconds", &[], stats.uptime_s);
    for (state, n) in &stats.aggregate.by_state {
        out.count("camrelay_cameras", &[("state", &snake(state))], *n as u64);
    }
    let mut viewers = 0;
    for c in &stats.cameras {
        let cam = [("camera", c.id.as_str())];
        out.flag(
            "camrelay_camera_state",
            &[("camera", &c.id), ("state", &snake(&c.state))],
            true,
        );
        out.flag("camrelay_camera_degraded", &cam, c.degraded);
        out.count("camrelay_camera_demand", &cam, c.demand as u64);
        out.count("camrelay_camera_viewers", &cam, c.viewers as u64);
        viewers += c.viewers;
        let m = &c.media;
        out.count("camrelay_camera_rtsp_clients", &cam, m.subscribers as u64);
        out.flag("camrelay_camera_connected", &cam, m.connected);
        let a = &c.availability;
        out.counter(
            "camrelay_camera_uptime_seconds_total",
            &cam,
            a.uptime_ms / 1000,
        );
        out.counter(
            "camrelay_camera_downtime_seconds_total",
            &cam,
            a.downtime_ms / 1000,
        );
        out.count("camrelay_camera_bitrate_bps", &cam, a.bitrate_bps);
        out.count("camrelay_camera_bitrate_peak_bps", &cam, a.bitrate_peak_bps);
        out.counter("camrelay_camera_upstream_sessions_total", &cam, m.sessions);
        out.counter(
            "camrelay_camera_upstream_failures_total",
            &cam,
            m.session_failures,
        );
        out.counter(
            "camrelay_camera_video_frames_in_total",
            &cam,
            m.video_frames_in,
        );
        out.counter(
            "camrelay_camera_audio_frames_in_total",
            &cam,
            m.audio_frames_in,
        );
        out.counter("camrelay_camera_bytes_in_total", &cam, m.bytes_in);
        out.counter("camrelay_camera_packets_out_total", &cam, m.packets_out);
        out.counter(
            "camrelay_camera_rtsp_packets_dropped_total",
            &cam,
            m.packets_dropped,
        );
        out.counter("camrelay_camera_bytes_out_total", &cam, m.bytes_out);
        if let Some(l) = &c.lease {
            if let Some(ms) = l.expires_in_ms {
                out.gauge(
                    "camrelay_lease_expires_in_seconds",
                    &cam,
                    ms as f64 / 1000.0,
                );
            }
            out.counter("camrelay_lease_generated_total", &cam, l.generated);
            out.counter("camrelay_lease_extended_total", &cam, l.extended);
            out.counter("camrelay_lease_failures_total", &cam, l.failures);
            out.counter("camrelay_lease_lost_total", &cam, l.lost);
            out.counter("camrelay_lease_refusals_total", &cam, l.refusals);
        }
        let p = &c.sfu;
        out.flag(
            "camrelay_publish_state",
            &[("camera", &c.id), ("state", &snake(&p.state))],
            true,
        );
        out.counter("camrelay_publish_sessions_total", &cam, p.sessions);
        out.counter("camrelay_publish_failures_total", &cam, p.failures);
        out.counter(
            "camrelay_publish_video_frames_total",
            &cam,
            p.video_frames_out,
        );
        out.counter(
            "camrelay_publish_audio_packets_total",
            &cam,
            p.audio_packets_out,
        );
        out.counter(
            "camrelay_publish_frames_dropped_total",
            &cam,
            p.frames_dropped,
        );
        for (kind, n) in [("pli", p.pli), ("fir", p.fir)] {
            out.counter(
                "camrelay_publish_keyframe_requests_total",
                &[("camera", &c.id), ("kind", kind)],
                n,
            );
        }
    }
    out.count("camrelay_viewers", &[], viewers as u64);

    let r = &stats.rtsp;
    out.counter("camrelay_rtsp_connections_total", &[], r.connections);
    out.count(
        "camrelay_rtsp_connections_open",
        &[],
        r.connections_open as u64,
    );
    out.counter("camrelay_rtsp_sessions_total", &[], r.sessions);
    out.count("camrelay_rtsp_sessions_open", &[], r.sessions_open as u64);
    out.counter("camrelay_rtsp_requests_total", &[], r.requests);
    out.counter("camrelay_rtsp_bad_requests_total", &[], r.bad_requests);
    out.counter("camrelay_rtsp_unauthorized_total", &[], r.unauthorized);
    out.counter("camrelay_rtsp_refused_limit_total", &[], r.refused_limit);
    out.counter("camrelay_rtsp_packets_sent_total", &[], r.packets_sent);
    out.counter("camrelay_rtsp_bytes_sent_total", &[], r.bytes_sent);
    out.counter(
        "camrelay_rtsp_packets_dropped_total",
        &[],
        r.packets_dropped,
    );

    if let Some(q) = &stats.queue {
        for class in camrelay_queue::Class::ALL {
            let pairs = [("class", class.as_str())];
            let mut depth = q.depth;
            let mut in_flight = q.in_flight;
            out.count("camrelay_queue_depth", &pairs, *depth.get_mut(class));
            out.count(
                "camrelay_queue_in_flight",
                &pairs,
                *in_flight.get_mut(class),
            );
            if let Some(wait) = q.wait_ms.get(&class) {
                out.quantiles("camrelay_queue_wait_seconds", &pairs, wait);
            }
        }
        for (outcome, n) in [
            ("submitted", q.submitted),
            ("executed", q.executed),
            ("succeeded", q.succeeded),
            ("failed", q.failed),
            ("rate_limited", q.rate_limited),
            ("refunded", q.refunded),
            ("dropped", q.dropped),
            ("cancelled", q.cancelled),
        ] {
            out.counter("camrelay_queue_commands_total", &[("outcome", outcome)], n);
        }
        out.counter("camrelay_queue_admissions_total", &[], q.admissions);
        out.counter(
            "camrelay_queue_admission_refusals_total",
            &[],
            q.admission_refusals,
        );
        out.count("camrelay_queue_streams_admitted", &[], q.streams_admitted);
        out.count("camrelay_queue_stream_capacity", &[], q.stream_capacity);
        out.quantiles("camrelay_queue_latency_seconds", &[], &q.latency_ms);
        out.quantiles(
            "camrelay_queue_extend_lateness_seconds",
            &[],
            &q.extend_lateness_ms,
        );
        for b in &q.buckets {
            let pairs = [("bucket", b.bucket.as_str())];
            out.count("camrelay_queue_budget_used", &pairs, u64::from(b.used));
            out.count(
                "camrelay_queue_budget_remaining",
                &pairs,
                u64::from(b.remaining),
            );
            out.count("camrelay_queue_budget_limit", &pairs, u64::from(b.limit));
        }
    }
    if let Some(n) = &stats.nest {
        out.counter(
            "camrelay_nest_token_refreshes_total",
            &[],
            n.token_refreshes,
        );
        out.flag("camrelay_nest_discovered", &[], n.discovered);
    }
    if let Some(s) = &stats.embedded_sfu {
        out.count("camrelay_sfu_sessions", &[], s.sessions as u64);
        out.count("camrelay_sfu_sessions_connected", &[], s.connected as u64);
        out.count(
            "camrelay_sfu_tracks_published",
            &[],
            s.published_tracks as u64,
        );
        out.count("camrelay_sfu_tracks_pulled", &[], s.pulled_tracks as u64);
        out.counter(
            "camrelay_sfu_frames_forwarded_total",
            &[],
            s.frames_forwarded,
        );
        out.counter(
            "camrelay_sfu_keyframe_requests_total",
            &[],
            s.keyframe_requests,
        );
        out.counter(
            "camrelay_sfu_sessions_dropped_total",
            &[],
            s.sessions_dropped,
        );
    }
    out.recorder.handle().render()
}
