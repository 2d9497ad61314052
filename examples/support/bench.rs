//! What the benchmark programs share: the 1080p30 fixture, building the relay, and reading a
//! process's CPU and memory from /proc.

#![allow(dead_code, unreachable_pub, clippy::print_stdout)]

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;

/// Video frames per second of the benchmark camera.
pub const FPS: u32 = 30;
/// Length of the fixture loop: a whole number of video frames (240 at 30 fps) and of AAC frames
/// (375 of 1024 samples at 48 kHz), so audio and video stay in step across loops.
pub const LOOP_SECONDS: u32 = 8;
/// Target video bitrate of the fixture.
pub const VIDEO_BITRATE: &str = "4M";

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from)
}

pub fn build_relay() -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args(["build", "--release", "--bin", "camrelay"])
        .current_dir(root())
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("cargo build --release --bin camrelay failed");
    }
    Ok(())
}

/// The 1080p30 fixture, generated with ffmpeg on first use (see sim/fixtures/README.md for the
/// small one): returns the Annex B video and the ADTS audio.
pub fn fixture_files() -> Result<(Bytes, Bytes)> {
    let dir = target_dir().join("bench-fixtures");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let video = dir.join("camera-1080p30-4m-main-nobf.h264");
    let audio = dir.join("camera-48k.aac");
    let seconds = LOOP_SECONDS.to_string();
    if !video.exists() {
        println!("generating {} (x264, takes a while)", video.display());
        // Noise keeps x264 from compressing the test pattern far below the target bitrate.
        ffmpeg(
            &[
                "-f",
                "lavfi",
                "-i",
                &format!("testsrc2=size=1920x1080:rate={FPS}"),
                "-t",
                &seconds,
                "-vf",
                "noise=alls=20:allf=t",
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-profile:v",
                "main",
                "-bf",
                "0",
                "-pix_fmt",
                "yuv420p",
                "-b:v",
                VIDEO_BITRATE,
                "-maxrate",
                VIDEO_BITRATE,
                "-bufsize",
                "8M",
                "-x264-params",
                &format!("keyint={FPS}:min-keyint={FPS}:scenecut=0:aud=1:repeat-headers=1"),
                "-bsf:v",
                "h264_mp4toannexb",
                "-f",
                "h264",
            ],
            &video,
        )?;
    }
    if !audio.exists() {
        ffmpeg(
            &[
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440:sample_rate=48000:beep_factor=4",
                "-t",
                &seconds,
                "-c:a",
                "aac",
                "-profile:a",
                "aac_low",
                "-ar",
                "48000",
                "-ac",
                "1",
                "-b:a",
                "64k",
                "-f",
                "adts",
            ],
            &audio,
        )?;
    }
    let read = |p: &Path| {
        std::fs::read(p)
            .map(Bytes::from)
            .with_context(|| format!("reading {}", p.display()))
    };
    Ok((read(&video)?, read(&audio)?))
}

/// Runs ffmpeg with `args`, writing `out` atomically (a half-written fixture is never reused).
pub fn ffmpeg(args: &[&str], out: &Path) -> Result<()> {
    let partial = out.with_extension("partial");
    let status = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-y"])
        .args(args)
        .arg(&partial)
        .status()
        .context("running ffmpeg (apt-get install ffmpeg)")?;
    if !status.success() {
        bail!("ffmpeg failed making {}", out.display());
    }
    std::fs::rename(&partial, out).with_context(|| format!("writing {}", out.display()))
}

/// Clock ticks per second of /proc/PID/stat.
pub fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

// ------------------------------------------------------------------ /proc

#[derive(Debug, Clone, Copy, Default)]
pub struct ProcSample {
    /// utime + stime, in clock ticks.
    pub cpu_ticks: u64,
    /// stime (in the kernel: for these relays mostly loopback TCP), in clock ticks.
    pub sys_ticks: u64,
    /// VmRSS, KiB.
    pub rss_kib: u64,
    /// VmHWM (peak RSS), KiB.
    pub hwm_kib: u64,
    /// RssAnon, KiB: the process's private memory (heap, stacks), without the code and
    /// libraries that RSS also counts once they are paged in.
    pub anon_kib: u64,
}

pub fn sample(pid: &str) -> Result<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces), from field 3 (state) on.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| anyhow!("odd /proc/{pid}/stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> Result<u64> {
        fields
            .get(n - 3)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| anyhow!("no field {n} in /proc/{pid}/stat"))
    };
    let sys_ticks = field(15)?;
    let cpu_ticks = field(14)? + sys_ticks;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok(ProcSample {
        cpu_ticks,
        sys_ticks,
        rss_kib: kib("VmRSS:"),
        hwm_kib: kib("VmHWM:"),
        anon_kib: kib("RssAnon:"),
    })
}

pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_default()
}
