//! What the SDM API returns, as typed values, and the JSON shapes on the wire
//! (research/nest-sdm.md §1).
//!
//! Stream URLs and tokens are credentials: whoever holds one can watch the camera. They live in
//! types whose `Debug` and `Display` never show them ([`StreamUrl`], [`ExtensionToken`]).

use std::fmt;
use std::time::SystemTime;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use url::Url;

/// An RTSP stream URL. Its path holds the initial extension token and its `auth` query the
/// stream token, so both are hidden when printed: `rtsps://host:443/[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct StreamUrl(Url);

impl StreamUrl {
    /// Wraps a URL.
    pub fn new(url: Url) -> Self {
        Self(url)
    }

    /// The real URL, for the RTSP client only.
    pub fn expose(&self) -> &Url {
        &self.0
    }

    /// The same stream with a new stream token (after `ExtendRtspStream`, which returns a new
    /// token but no URL: the URL's `auth` query is replaced, as google-nest-sdm does).
    pub fn with_stream_token(&self, token: &SecretString) -> Self {
        let mut url = self.0.clone();
        let others: Vec<(String, String)> = self
            .0
            .query_pairs()
            .filter(|(k, _)| k != "auth")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        {
            let mut query = url.query_pairs_mut();
            query.clear();
            for (k, v) in &others {
                query.append_pair(k, v);
            }
            query.append_pair("auth", token.expose_secret());
        }
        Self(url)
    }

    /// The URL with path and query hidden, for logs.
    pub fn redacted(&self) -> String {
        let host = self.0.host_str().unwrap_or("?");
        match self.0.port() {
            Some(port) => format!("{}://{host}:{port}/[redacted]", self.0.scheme()),
            None => format!("{}://{host}/[redacted]", self.0.scheme()),
        }
    }
}

impl fmt::Debug for StreamUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamUrl({})", self.redacted())
    }
}

impl fmt::Display for StreamUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// A `streamExtensionToken`: needed for the next extend or stop, never printed.
#[derive(Clone)]
pub struct ExtensionToken(SecretString);

impl ExtensionToken {
    /// Wraps a token.
    pub fn new(token: impl Into<String>) -> Self {
        Self(SecretString::from(token.into()))
    }

    /// The token, for the request body only.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for ExtensionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ExtensionToken([redacted])")
    }
}

/// When a stream or session ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry {
    /// `expiresAt` as Google wrote it.
    pub at: SystemTime,
    /// The same moment on this process's monotonic clock, computed without trusting our wall
    /// clock: `expiresAt` minus the server's `Date` header is the lifetime, counted from when we
    /// sent the request (so network delay only makes it earlier) minus the `Date` header's one
    /// second resolution. Without a `Date` header our wall clock stands in.
    pub instant: Instant,
}

/// The answer to `GenerateRtspStream`.
#[derive(Debug, Clone)]
pub struct RtspStream {
    /// Where to pull the stream (one client at a time).
    pub url: StreamUrl,
    /// For the next extend or stop.
    pub extension_token: ExtensionToken,
    /// When it dies unless extended.
    pub expires: Expiry,
}

/// The answer to `ExtendRtspStream`.
#[derive(Debug, Clone)]
pub struct RtspExtension {
    /// The new stream token (the URL's `auth` query for new connections).
    pub stream_token: SecretString,
    /// For the next extend or stop; the old one is spent.
    pub extension_token: ExtensionToken,
    /// The new expiry.
    pub expires: Expiry,
}

/// The answer to `GenerateWebRtcStream`.
#[derive(Debug, Clone)]
pub struct WebRtcStream {
    /// The camera's SDP answer.
    pub answer_sdp: String,
    /// Identifies the session for extend and stop.
    pub media_session_id: String,
    /// When it dies unless extended.
    pub expires: Expiry,
}

/// The answer to `ExtendWebRtcStream`.
#[derive(Debug, Clone)]
pub struct WebRtcExtension {
    /// The session (unchanged by Google, per its docs).
    pub media_session_id: String,
    /// The new expiry.
    pub expires: Expiry,
}

/// A streaming protocol from `supportedProtocols`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamProtocol {
    /// `RTSP`: Generate/Extend/StopRtspStream.
    Rtsp,
    /// `WEB_RTC`: Generate/Extend/StopWebRtcStream.
    WebRtc,
}

/// Width × height in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub struct Resolution {
    /// Pixels across.
    pub width: u32,
    /// Pixels down.
    pub height: u32,
}

/// The `sdm.devices.traits.CameraLiveStream` trait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveStream {
    /// `maxVideoResolution`.
    pub max_resolution: Option<Resolution>,
    /// `videoCodecs`, e.g. `H264`.
    pub video_codecs: Vec<String>,
    /// `audioCodecs`, e.g. `AAC` or `OPUS`.
    pub audio_codecs: Vec<String>,
    /// `supportedProtocols`; Google omits it on older devices, which then speak RTSP
    /// (google-nest-sdm's default). Unknown values are dropped.
    pub protocols: Vec<StreamProtocol>,
}

/// One device from `devices.list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// The last segment of the resource name: what commands address.
    pub id: String,
    /// `sdm.devices.types.CAMERA`, `DOORBELL`, `DISPLAY`, …
    pub device_type: String,
    /// `sdm.devices.traits.Info.customName`, if the user set one.
    pub custom_name: Option<String>,
    /// The room (`parentRelations[0].displayName`), if any.
    pub room: Option<String>,
    /// The live-stream trait, for cameras.
    pub live_stream: Option<LiveStream>,
}

impl Device {
    /// The name people know it by: the custom name, else the room, else the id.
    pub fn display_name(&self) -> &str {
        self.custom_name
            .as_deref()
            .filter(|n| !n.trim().is_empty())
            .or(self.room.as_deref().filter(|n| !n.trim().is_empty()))
            .unwrap_or(&self.id)
    }

    /// Whether it can serve an RTSP live stream.
    pub fn supports_rtsp(&self) -> bool {
        self.live_stream
            .as_ref()
            .is_some_and(|l| l.protocols.contains(&StreamProtocol::Rtsp))
    }
}

// ---------------------------------------------------------------- wire shapes

pub(crate) mod wire {
    //! JSON exactly as the SDM API sends and takes it.

    use std::collections::HashMap;

    use serde::{Deserialize, Serialize};

    use super::Resolution;

    pub(crate) const TRAIT_INFO: &str = "sdm.devices.traits.Info";
    pub(crate) const TRAIT_LIVE_STREAM: &str = "sdm.devices.traits.CameraLiveStream";

    #[derive(Debug, Deserialize)]
    pub(crate) struct DeviceList {
        #[serde(default)]
        pub(crate) devices: Vec<Device>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub(crate) struct Device {
        pub(crate) name: String,
        #[serde(rename = "type", default)]
        pub(crate) device_type: String,
        #[serde(default)]
        pub(crate) traits: HashMap<String, serde_json::Value>,
        #[serde(default)]
        pub(crate) parent_relations: Vec<ParentRelation>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub(crate) struct ParentRelation {
        #[serde(default)]
        pub(crate) display_name: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub(crate) struct InfoTrait {
        #[serde(default)]
        pub(crate) custom_name: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub(crate) struct LiveStreamTrait {
        #[serde(default)]
        pub(crate) max_video_resolution: Option<Resolution>,
        #[serde(default)]
        pub(crate) video_codecs: Vec<String>,
        #[serde(default)]
        pub(crate) audio_codecs: Vec<String>,
        #[serde(default)]
        pub(crate) supported_protocols: Option<Vec<String>>,
    }

    #[derive(Debug, Serialize)]
    pub(crate) struct Command<'a, P: Serialize> {
        pub(crate) command: &'a str,
        pub(crate) params: P,
    }

    #[derive(Debug, Serialize)]
    pub(crate) struct NoParams {}

    #[derive(Debug, Serialize)]
    #[serde(rename_all = "camelCase")]
    pub(crate) struct ExtensionParams<'a> {
        pub(crate) stream_extension_token: &'a str,
    }

    #[derive(Debug, Serialize)]
    #[serde(rename_all = "camelCase")]
    pub(crate) struct OfferParams<'a> {
        pub(crate) offer_sdp: &'a str,
    }

    #[derive(Debug, Serialize)]
    #[serde(rename_all = "camelCase")]
    pub(crate) struct SessionParams<'a> {
        pub(crate) media_session_id: &'a str,
    }

    #[derive(Debug, Deserialize)]
    pub(crate) struct Results<T> {
        pub(crate) results: T,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub(crate) struct StreamUrls {
        pub(crate) rtsp_url: String,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub(crate) struct GenerateRtsp {
        pub(crate) stream_urls: StreamUrls,
        pub(crate) stream_extension_token: String,
        // The token is also in the URL's `auth` query; required so a wrong shape is caught.
        #[allow(dead_code)]
        pub(crate) stream_token: String,
        pub(crate) expires_at: String,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub(crate) struct ExtendRtsp {
        pub(crate) stream_extension_token: String,
        pub(crate) stream_token: String,
        pub(crate) expires_at: String,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub(crate) struct GenerateWebRtc {
        pub(crate) answer_sdp: String,
        pub(crate) expires_at: String,
        pub(crate) media_session_id: String,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub(crate) struct ExtendWebRtc {
        pub(crate) expires_at: String,
        pub(crate) media_session_id: String,
    }

    #[derive(Debug, Deserialize)]
    pub(crate) struct ErrorEnvelope {
        pub(crate) error: ErrorBody,
    }

    #[derive(Debug, Deserialize)]
    pub(crate) struct ErrorBody {
        #[serde(default)]
        pub(crate) message: String,
        #[serde(default)]
        pub(crate) status: String,
    }
}

/// Converts a wire device into ours; `None` if its resource name has no id.
pub(crate) fn device_from_wire(d: wire::Device) -> Option<Device> {
    let id = d
        .name
        .rsplit('/')
        .next()
        .filter(|s| !s.is_empty())?
        .to_owned();
    let custom_name = d
        .traits
        .get(wire::TRAIT_INFO)
        .and_then(|v| serde_json::from_value::<wire::InfoTrait>(v.clone()).ok())
        .and_then(|i| i.custom_name);
    let live_stream = d
        .traits
        .get(wire::TRAIT_LIVE_STREAM)
        .and_then(|v| serde_json::from_value::<wire::LiveStreamTrait>(v.clone()).ok())
        .map(|t| LiveStream {
            max_resolution: t.max_video_resolution,
            video_codecs: t.video_codecs,
            audio_codecs: t.audio_codecs,
            protocols: match t.supported_protocols {
                None => vec![StreamProtocol::Rtsp],
                Some(list) => list
                    .iter()
                    .filter_map(|p| match p.as_str() {
                        "RTSP" => Some(StreamProtocol::Rtsp),
                        "WEB_RTC" => Some(StreamProtocol::WebRtc),
                        _ => None,
                    })
                    .collect(),
            },
        });
    let room = d.parent_relations.into_iter().find_map(|r| r.display_name);
    Some(Device {
        id,
        device_type: d.device_type,
        custom_name,
        room,
        live_stream,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> StreamUrl {
        StreamUrl::new(Url::parse(s).unwrap())
    }

    #[test]
    fn stream_url_never_prints_tokens() {
        let u = url(
            "rtsps://stream-ue1-alfa.dropcam.com:443/sdm_live_stream/CjY5Y3VKsecret?auth=g.0.tokensecret",
        );
        for shown in [format!("{u}"), format!("{u:?}"), u.redacted()] {
            assert!(!shown.contains("secret"), "{shown}");
            assert!(shown.contains("stream-ue1-alfa.dropcam.com"), "{shown}");
        }
        assert_eq!(
            format!("{:?}", ExtensionToken::new("abcsecret")),
            "ExtensionToken([redacted])"
        );
    }

    #[test]
    fn new_stream_token_replaces_auth_only() {
        let u = url("rtsps://h:443/path/TOKEN?x=1&auth=g.0.old");
        let n = u.with_stream_token(&SecretString::from("g.1.new".to_owned()));
        assert_eq!(n.expose().path(), "/path/TOKEN");
        let pairs: Vec<(String, String)> = n
            .expose()
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        assert_eq!(
            pairs,
            vec![("x".into(), "1".into()), ("auth".into(), "g.1.new".into())]
        );
    }

    #[test]
    fn device_parsing_follows_googles_shapes() {
        let json = r#"{"devices":[
          {"name":"enterprises/p/devices/AVPHwEu","type":"sdm.devices.types.DOORBELL",
           "traits":{"sdm.devices.traits.Info":{"customName":""},
                     "sdm.devices.traits.CameraLiveStream":{"maxVideoResolution":{"width":640,"height":480},
                        "videoCodecs":["H264"],"audioCodecs":["AAC"]}},
           "parentRelations":[{"parent":"enterprises/p/structures/s/rooms/r","displayName":"Porch"}]},
          {"name":"enterprises/p/devices/T1","type":"sdm.devices.types.THERMOSTAT","traits":{}},
          {"name":"enterprises/p/devices/W1","type":"sdm.devices.types.CAMERA",
           "traits":{"sdm.devices.traits.Info":{"customName":"Nursery"},
                     "sdm.devices.traits.CameraLiveStream":{"supportedProtocols":["WEB_RTC","FUTURE"]}}}
        ]}"#;
        let list: wire::DeviceList = serde_json::from_str(json).unwrap();
        let devices: Vec<Device> = list
            .devices
            .into_iter()
            .filter_map(device_from_wire)
            .collect();
        assert_eq!(devices.len(), 3);
        assert_eq!(devices[0].id, "AVPHwEu");
        assert_eq!(devices[0].display_name(), "Porch");
        assert!(
            devices[0].supports_rtsp(),
            "a missing supportedProtocols means RTSP"
        );
        let ls = devices[0].live_stream.as_ref().unwrap();
        assert_eq!(
            ls.max_resolution,
            Some(Resolution {
                width: 640,
                height: 480
            })
        );
        assert!(!devices[1].supports_rtsp());
        assert_eq!(devices[1].display_name(), "T1");
        assert_eq!(devices[2].display_name(), "Nursery");
        assert_eq!(
            devices[2].live_stream.as_ref().unwrap().protocols,
            vec![StreamProtocol::WebRtc]
        );
    }
}
