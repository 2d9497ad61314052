//! Offline stand-ins for what camrelay cannot reach in tests, benchmarks and demos.
//!
//! - [`sdm`]: a strict fake of Google's Smart Device Management API and its OAuth
//!   token endpoint, on tokio time so that hours of rate limits and stream
//!   expiries run in seconds.
//! - [`camera`]: a simulated RTSP camera looping a short H.264 + AAC fixture, plain, behind
//!   Basic/Digest authentication, or as Nest's stream server checking `?auth=` tokens.

pub mod camera;
pub mod sdm;

/// The fake SDM API and, behind it, a simulated Nest stream server: `rtsps://` with the test
/// certificate (trust [`camera::TEST_CA_FILE`]), serving each live stream's URL to its current
/// token only, one client at a time, and ending sessions when the stream ends.
pub async fn start_nest(
    fake: sdm::FakeSdmConfig,
) -> std::io::Result<(sdm::FakeSdmHandle, camera::SimCamera)> {
    let api = sdm::start(fake).await?;
    let streams = camera::SimCamera::start(camera::SimCameraConfig {
        nest: Some(api.sdm()),
        tls: true,
        ..camera::SimCameraConfig::default()
    })
    .await?;
    let base = streams.url(camera::NEST_PATH_PREFIX);
    api.sdm().set_rtsp_base(base.trim_end_matches('/'));
    Ok((api, streams))
}
