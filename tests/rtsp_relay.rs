//! The media path end to end: a simulated camera, the relay, and real RTSP clients.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use camrelay_sim::camera::{Fixture, SimCamera, SimCameraConfig};
use common::media::{RelayRunning, eventually, ffprobe, start_relay};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

async fn sim_camera(config: SimCameraConfig) -> SimCamera {
    SimCamera::start(SimCameraConfig {
        paths: vec!["/cam".into()],
        ..config
    })
    .await
    .unwrap()
}

/// A relay with the simulated camera's `/cam` as camera `cam`, always on.
async fn always_on_relay(camera: &SimCamera) -> RelayRunning {
    let cameras = format!("cam={}", camera.url("/cam"));
    start_relay(&[
        ("CAMRELAY_CAMERAS", &cameras),
        ("CAMRELAY_CAMERA_CAM_ALWAYS_ON", "true"),
    ])
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffprobe_reads_a_relayed_camera_over_tcp_and_udp() {
    let camera = sim_camera(SimCameraConfig::default()).await;
    let cameras = format!("cam={}", camera.url("/cam"));
    let relay = start_relay(&[("CAMRELAY_CAMERAS", &cameras)]).await;
    // On demand: nothing is pulled before a client comes.
    assert_eq!(camera.server().stats().sessions.load(Ordering::Relaxed), 0);

    let tcp = ffprobe(&relay.url("cam"), "tcp", 3).await;
    tcp.assert_sim_camera(50);
    let udp = ffprobe(&relay.url("cam"), "udp", 3).await;
    udp.assert_sim_camera(50);

    let media = &relay.camera("cam").media.stats;
    assert!(media.video_frames_in.load(Ordering::Relaxed) >= 100);
    assert!(media.audio_frames_in.load(Ordering::Relaxed) >= 100);
    assert!(media.last_error().is_none(), "{:?}", media.last_error());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_camera_is_released_after_the_idle_grace() {
    let camera = sim_camera(SimCameraConfig::default()).await;
    let cameras = format!("cam={}", camera.url("/cam"));
    let relay = start_relay(&[
        ("CAMRELAY_CAMERAS", &cameras),
        ("CAMRELAY_IDLE_GRACE", "1s"),
    ])
    .await;
    ffprobe(&relay.url("cam"), "tcp", 1)
        .await
        .assert_sim_camera(10);
    let cam = relay.camera("cam");
    // The client has gone: the upstream session ends once the grace is over.
    let mut live = cam.media.watch_live();
    tokio::time::timeout(Duration::from_secs(5), live.wait_for(|live| !*live))
        .await
        .expect("released within the grace")
        .unwrap();
    eventually(
        Duration::from_secs(5),
        "the camera's session closed",
        || {
            camera
                .server()
                .stats()
                .sessions_open
                .load(Ordering::Relaxed)
                == 0
        },
    )
    .await;
    assert_eq!(cam.demand().holders, 0);
    assert_eq!(cam.media.stats.sessions.load(Ordering::Relaxed), 1);
    // What an operator sees.
    let stats = camrelay::http::collect(&relay.relay).await;
    let entry = &stats.cameras[0];
    assert_eq!(entry.state, camrelay::lease::Phase::Idle);
    assert!(!entry.media.connected);
    assert_eq!(entry.media.sessions, 1);
    assert!(entry.media.video_frames_in >= 10, "{:?}", entry.media);
    assert!(entry.media.packets_out > 0);
    assert_eq!(entry.media.subscribers, 0);
    assert_eq!(stats.rtsp.sessions, 1);
    assert_eq!(stats.rtsp.sessions_open, 0);
    assert!(stats.rtsp.bytes_sent > 0);
    // A new client starts it again.
    ffprobe(&relay.url("cam"), "tcp", 1)
        .await
        .assert_sim_camera(10);
    assert_eq!(cam.media.stats.sessions.load(Ordering::Relaxed), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_clients_share_one_upstream_session() {
    let camera = sim_camera(SimCameraConfig::default()).await;
    let relay = always_on_relay(&camera).await;
    let url = relay.url("cam");
    let probes = futures_util::future::join_all((0..20).map(|i| {
        let url = url.clone();
        let transport = if i % 2 == 0 { "tcp" } else { "udp" };
        async move { ffprobe(&url, transport, 3).await }
    }))
    .await;
    for probe in &probes {
        probe.assert_sim_camera(50);
    }
    assert_eq!(camera.server().stats().sessions.load(Ordering::Relaxed), 1);
    let stats = relay.relay.rtsp.stats();
    assert_eq!(stats.sessions.load(Ordering::Relaxed), 20);
    assert_eq!(stats.packets_dropped.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_camera_with_digest_credentials_is_relayed_and_a_wrong_password_is_reported() {
    let camera = sim_camera(SimCameraConfig {
        credentials: Some(("admin".into(), "pa:ss w0rd".into())),
        ..SimCameraConfig::default()
    })
    .await;
    let good = format!("rtsp://admin:pa%3Ass%20w0rd@{}/cam", camera.addr());
    let bad = format!("rtsp://{}/cam", camera.addr());
    let cameras = format!("good={good};bad={bad}");
    let relay = start_relay(&[
        ("CAMRELAY_CAMERAS", &cameras),
        ("CAMRELAY_CAMERA_BAD_USERNAME", "admin"),
        ("CAMRELAY_CAMERA_BAD_PASSWORD", "wrong-Secret-1234"),
        // Longer than ffprobe's own limit in these tests: the 503 must come from the
        // camera's refusal, not from the start timeout.
        ("CAMRELAY_RTSP_START_TIMEOUT", "120s"),
    ])
    .await;
    ffprobe(&relay.url("good"), "tcp", 2)
        .await
        .assert_sim_camera(25);

    let refused = ffprobe(&relay.url("bad"), "tcp", 1).await;
    assert!(!refused.ok());
    assert!(refused.stderr.contains("503"), "{}", refused.stderr);
    let error = relay.camera("bad").media.stats.last_error().unwrap();
    assert!(error.contains("401"), "{error}");
    assert!(!error.contains("wrong-Secret-1234"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_camera_is_404_and_clients_may_need_credentials() {
    let camera = sim_camera(SimCameraConfig::default()).await;
    let cameras = format!("cam={}", camera.url("/cam"));
    let relay = start_relay(&[
        ("CAMRELAY_CAMERAS", &cameras),
        ("CAMRELAY_RTSP_USERNAME", "viewer"),
        ("CAMRELAY_RTSP_PASSWORD", "let-me-in"),
    ])
    .await;
    let missing = ffprobe(&relay.url_with("nope", "viewer", "let-me-in"), "tcp", 1).await;
    assert!(missing.stderr.contains("404"), "{}", missing.stderr);
    let anonymous = ffprobe(&relay.url("cam"), "tcp", 1).await;
    assert!(anonymous.stderr.contains("401"), "{}", anonymous.stderr);
    assert_eq!(
        camera.server().stats().sessions.load(Ordering::Relaxed),
        0,
        "no demand from a refused client"
    );
    ffprobe(&relay.url_with("cam", "viewer", "let-me-in"), "tcp", 2)
        .await
        .assert_sim_camera(25);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_stay_connected_while_the_camera_goes_away_and_comes_back() {
    let camera = sim_camera(SimCameraConfig::default()).await;
    let addr = camera.addr();
    let cameras = format!("cam={}", camera.url("/cam"));
    let relay = start_relay(&[("CAMRELAY_CAMERAS", &cameras)]).await;
    let url = relay.url("cam");
    let client = tokio::spawn(async move { ffprobe(&url, "tcp", 8).await });
    let cam = relay.camera("cam");
    let mut live = cam.media.watch_live();
    live.wait_for(|live| *live).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;

    camera.stop();
    drop(camera);
    live.wait_for(|live| !*live).await.unwrap();
    // Down for a while: the relay retries with backoff; the client keeps its session.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let camera = sim_camera(SimCameraConfig {
        addr: Some(addr),
        ..SimCameraConfig::default()
    })
    .await;
    tokio::time::timeout(Duration::from_secs(10), live.wait_for(|live| *live))
        .await
        .expect("live again")
        .unwrap();
    let probe = client.await.unwrap();
    probe.assert_sim_camera(100);
    assert_eq!(relay.relay.rtsp.stats().sessions.load(Ordering::Relaxed), 1);
    assert_eq!(cam.media.stats.sessions.load(Ordering::Relaxed), 2);
    assert!(cam.media.stats.last_error().is_some());
    drop(camera);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rtsps_camera_is_verified_against_the_configured_ca() {
    let camera = sim_camera(SimCameraConfig {
        tls: true,
        ..SimCameraConfig::default()
    })
    .await;
    let url = camera.url("/cam");
    assert!(url.starts_with("rtsps://"));
    let cameras = format!("trusted={url};unknown={url};unverified={url}");
    let trusted = start_relay(&[
        ("CAMRELAY_CAMERAS", &cameras),
        ("CAMRELAY_EXTRA_CA_FILE", camrelay_sim::camera::TEST_CA_FILE),
        ("CAMRELAY_RTSP_START_TIMEOUT", "3s"),
    ])
    .await;
    ffprobe(&trusted.url("trusted"), "tcp", 2)
        .await
        .assert_sim_camera(25);

    // Without the CA the certificate is refused, and the operator is told why.
    let untrusted = start_relay(&[
        ("CAMRELAY_CAMERAS", &cameras),
        ("CAMRELAY_CAMERA_UNVERIFIED_TLS_VERIFY", "false"),
        ("CAMRELAY_RTSP_START_TIMEOUT", "3s"),
    ])
    .await;
    let refused = ffprobe(&untrusted.url("unknown"), "tcp", 1).await;
    assert!(refused.stderr.contains("503"), "{}", refused.stderr);
    let error = untrusted
        .camera("unknown")
        .media
        .stats
        .last_error()
        .unwrap();
    assert!(error.to_lowercase().contains("certificate"), "{error}");
    // An explicit opt-out (a self-signed LAN camera) skips verification.
    ffprobe(&untrusted.url("unverified"), "tcp", 2)
        .await
        .assert_sim_camera(25);
}

/// Through the rtsps bridge, retina signs Digest for the bridge's loopback URL; a camera that
/// checks the Digest `uri` against the Request-URI (the simulator does, as MediaMTX) accepts
/// the relay only because the bridge signs again for the camera's URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_protected_rtsps_camera_that_checks_the_signed_uri_is_relayed() {
    let camera = sim_camera(SimCameraConfig {
        tls: true,
        credentials: Some(("admin".into(), "pa:ss w0rd".into())),
        ..SimCameraConfig::default()
    })
    .await;
    let url = camera
        .url("/cam")
        .replacen("rtsps://", "rtsps://admin:pa%3Ass%20w0rd@", 1);
    let cameras = format!("cam={url}");
    let relay = start_relay(&[
        ("CAMRELAY_CAMERAS", &cameras),
        ("CAMRELAY_EXTRA_CA_FILE", camrelay_sim::camera::TEST_CA_FILE),
        ("CAMRELAY_RTSP_START_TIMEOUT", "5s"),
    ])
    .await;
    relay.assert_relays_sim_camera("cam").await;
}

/// A 640x360 camera of about 10 Mbps (noise keeps x264 from compressing it), so that a client
/// that stops reading falls behind the bus's ring within seconds: 64 video frames at 30 fps and
/// 100 AAC frames at 48 kHz, both 2.133 s.
fn heavy_fixture() -> Arc<Fixture> {
    let dir = std::env::temp_dir().join(format!("camrelay-heavy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (video, audio) = (dir.join("video.h264"), dir.join("audio.aac"));
    let run = |args: &str, out: &std::path::Path| {
        let status = std::process::Command::new("ffmpeg")
            .args(["-v", "error", "-y"])
            .args(args.split_whitespace())
            .arg(out)
            .status()
            .unwrap();
        assert!(status.success(), "ffmpeg making {}", out.display());
    };
    run(
        "-f lavfi -i testsrc2=size=640x360:rate=30 -frames:v 64 -vf noise=alls=5:allf=t \
         -c:v libx264 -preset ultrafast -profile:v main -bf 0 -pix_fmt yuv420p -qp 20 \
         -x264-params keyint=30:min-keyint=30:scenecut=0:aud=1:repeat-headers=1 \
         -bsf:v h264_mp4toannexb -f h264",
        &video,
    );
    run(
        "-f lavfi -i sine=frequency=440:sample_rate=48000 -frames:a 100 -c:a aac -ar 48000 \
         -ac 1 -f adts",
        &audio,
    );
    let read = |p: &std::path::Path| Bytes::from(std::fs::read(p).unwrap());
    let fixture = Fixture::parse(&read(&video), &read(&audio), 30, 100);
    let _ = std::fs::remove_dir_all(&dir);
    Arc::new(fixture)
}

/// Reads one RTSP response head (and its body, if any) from `stream`.
async fn response(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(stream.read_u8().await.unwrap());
    }
    let head = String::from_utf8(head).unwrap();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .map_or(0, |n| n.trim().parse::<usize>().unwrap());
    let mut body = vec![0; length];
    stream.read_exact(&mut body).await.unwrap();
    assert!(head.starts_with("RTSP/1.0 200"), "{head}");
    head
}

/// The session id a SETUP response gives (without its timeout parameter).
fn session_id(setup: &str) -> String {
    setup
        .lines()
        .find_map(|l| l.strip_prefix("Session: "))
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_loses_packets_without_slowing_the_others() {
    let camera = sim_camera(SimCameraConfig {
        fixture: Some(heavy_fixture()),
        ..SimCameraConfig::default()
    })
    .await;
    let relay = always_on_relay(&camera).await;
    let url = relay.url("cam");

    // The slow client: a small receive window, and it stops reading once it plays.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut slow = socket.connect(relay.relay.rtsp.local_addr()).await.unwrap();
    slow.write_all(format!("DESCRIBE {url} RTSP/1.0\r\nCSeq: 1\r\n\r\n").as_bytes())
        .await
        .unwrap();
    response(&mut slow).await;
    slow.write_all(
        format!(
            "SETUP {url}/trackID=0 RTSP/1.0\r\nCSeq: 2\r\n\
             Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let setup = response(&mut slow).await;
    let session = session_id(&setup);
    slow.write_all(
        format!("PLAY {url} RTSP/1.0\r\nCSeq: 3\r\nSession: {session}\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    response(&mut slow).await;
    let cam = relay.camera("cam");
    let stalled_at = cam.media.stats.packets_out.load(Ordering::Relaxed);

    // Meanwhile another client decodes every frame.
    ffprobe(&url, "tcp", 3).await.assert_sim_camera(50);
    assert_eq!(
        cam.media.packets_dropped(),
        0,
        "nothing is lost before it reads again"
    );

    // Far more than the ring and both socket buffers hold has gone by.
    let ring = camrelay_rtsp::bus::RING_CAPACITY as u64;
    eventually(Duration::from_secs(20), "the camera ran ahead", || {
        cam.media.stats.packets_out.load(Ordering::Relaxed) > stalled_at + 4 * ring
    })
    .await;
    // It reads again: the server finds it fell behind, counts the loss and skips it ahead.
    let reader = tokio::spawn(async move {
        let mut buf = vec![0; 64 * 1024];
        while slow.read(&mut buf).await.is_ok_and(|n| n > 0) {}
    });
    eventually(Duration::from_secs(10), "the loss counted", || {
        cam.media.packets_dropped() > 0
    })
    .await;
    let stats = camrelay::http::collect(&relay.relay).await;
    assert!(stats.cameras[0].media.packets_dropped >= cam.media.packets_dropped() - 1);
    assert_eq!(stats.cameras[0].media.subscribers, 1, "it still plays");
    reader.abort();
}

/// Plays `url` over TCP with video and audio on the given interleaved RTP channels, and
/// returns the connection, positioned at the first interleaved frame.
async fn play_interleaved(url: &str, video: u8, audio: u8) -> TcpStream {
    let address = url
        .strip_prefix("rtsp://")
        .and_then(|rest| rest.split('/').next())
        .unwrap()
        .to_owned();
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream
        .write_all(format!("DESCRIBE {url} RTSP/1.0\r\nCSeq: 1\r\n\r\n").as_bytes())
        .await
        .unwrap();
    response(&mut stream).await;
    let mut session = String::new();
    for (cseq, (track, channel)) in [(0, video), (1, audio)].into_iter().enumerate() {
        let session_header = if session.is_empty() {
            String::new()
        } else {
            format!("Session: {session}\r\n")
        };
        stream
            .write_all(
                format!(
                    "SETUP {url}/trackID={track} RTSP/1.0\r\nCSeq: {}\r\n{session_header}\
                     Transport: RTP/AVP/TCP;unicast;interleaved={channel}-{}\r\n\r\n",
                    cseq + 2,
                    channel + 1
                )
                .as_bytes(),
            )
            .await
            .unwrap();
        let setup = response(&mut stream).await;
        assert!(
            setup.contains(&format!("interleaved={channel}-{}", channel + 1)),
            "{setup}"
        );
        session = session_id(&setup);
    }
    stream
        .write_all(
            format!("PLAY {url} RTSP/1.0\r\nCSeq: 9\r\nSession: {session}\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    response(&mut stream).await;
    stream
}

/// Reads `count` interleaved RTP packets and checks each channel carries one stream whose
/// sequence numbers go up by one (nothing lost, duplicated or interleaved wrongly).
async fn assert_interleaved_streams(stream: &mut TcpStream, count: usize, video: u8, audio: u8) {
    let mut last_seq = std::collections::HashMap::new();
    let mut per_channel = std::collections::HashMap::new();
    for _ in 0..count {
        let mut prefix = [0u8; 4];
        stream.read_exact(&mut prefix).await.unwrap();
        assert_eq!(prefix[0], b'$', "every frame starts with '$'");
        let len = usize::from(u16::from_be_bytes([prefix[2], prefix[3]]));
        let mut packet = vec![0; len];
        stream.read_exact(&mut packet).await.unwrap();
        let channel = prefix[1];
        if channel % 2 == 1 {
            continue; // RTCP
        }
        assert!(
            channel == video || channel == audio,
            "RTP on channel {channel}"
        );
        assert_eq!(packet[0] >> 6, 2, "RTP version 2");
        let pt = packet[1] & 0x7f;
        let want = if channel == video {
            camrelay_rtsp::media::H264_PAYLOAD_TYPE
        } else {
            camrelay_rtsp::media::AAC_PAYLOAD_TYPE
        };
        assert_eq!(pt, want, "channel {channel} carries its own track");
        let seq = u16::from_be_bytes([packet[2], packet[3]]);
        if let Some(last) = last_seq.insert(channel, seq) {
            assert_eq!(seq, u16::wrapping_add(last, 1), "channel {channel}");
        }
        *per_channel.entry(channel).or_insert(0) += 1;
    }
    assert!(
        per_channel[&video] > 0 && per_channel[&audio] > 0,
        "{per_channel:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_get_every_packet_on_the_interleaved_channels_they_chose() {
    // Clients on the usual channels are sent the camera's framed buffers as they are; the
    // others are framed for them, alone or mixed with shared buffers in one write.
    let camera = sim_camera(SimCameraConfig::default()).await;
    let relay = always_on_relay(&camera).await;
    let url = relay.url("cam");
    let mut clients = Vec::new();
    for (video, audio) in [(0, 2), (6, 0), (0, 4), (2, 0)] {
        let mut stream = play_interleaved(&url, video, audio).await;
        clients.push(tokio::spawn(async move {
            assert_interleaved_streams(&mut stream, 600, video, audio).await;
        }));
    }
    for client in clients {
        tokio::time::timeout(Duration::from_secs(30), client)
            .await
            .expect("600 packets within 30 s")
            .unwrap();
    }
    assert_eq!(relay.camera("cam").media.packets_dropped(), 0);
}
