//! The Calls API's JSON bodies (research/calls-openapi.yaml, `components.schemas`).
//!
//! Every type is `Serialize + Deserialize` so the relay's embedded SFU serves the same API with
//! the same types. Field names are camelCase as on the wire, optional fields are left out when
//! `None`, and unknown fields (e.g. `dataChannels`, which the relay does not use) are ignored.

use serde::{Deserialize, Serialize};

/// An SDP offer or answer (`SessionDescription`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionDescription {
    /// Offer or answer.
    #[serde(rename = "type")]
    pub sdp_type: SdpType,
    /// The SDP text.
    pub sdp: String,
}

impl SessionDescription {
    /// An offer.
    pub fn offer(sdp: impl Into<String>) -> Self {
        Self {
            sdp_type: SdpType::Offer,
            sdp: sdp.into(),
        }
    }

    /// An answer.
    pub fn answer(sdp: impl Into<String>) -> Self {
        Self {
            sdp_type: SdpType::Answer,
            sdp: sdp.into(),
        }
    }
}

/// `SessionDescription.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SdpType {
    /// `offer`.
    Offer,
    /// `answer`.
    Answer,
}

/// `TrackObject.location`: which side of the session the track is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrackLocation {
    /// `local`: this session publishes the track.
    Local,
    /// `remote`: this session pulls a track another session publishes.
    Remote,
}

/// `TrackObject.kind`: a hint the SFU needs when it generates the offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaKind {
    /// `audio`.
    Audio,
    /// `video`.
    Video,
}

/// `simulcast.priorityOrdering` and `simulcast.ridNotAvailable`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SimulcastFallback {
    /// `none`: keep the chosen layer.
    None,
    /// `asciibetical`: fall back through the layers in a–z order.
    Asciibetical,
}

/// `TrackObject.simulcast`: which layer a puller prefers.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Simulcast {
    /// The preferred RID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_rid: Option<String>,
    /// What to do when bandwidth does not allow the preferred RID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_ordering: Option<SimulcastFallback>,
    /// What to do when the publisher stops sending the current RID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rid_not_available: Option<SimulcastFallback>,
}

/// A track in a request or a response (`TrackObject`). A publication is located by
/// `(sessionId, trackName)`; a `mid` belongs to one session's PeerConnection only.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrackObject {
    /// Publish (`local`) or pull (`remote`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<TrackLocation>,
    /// The transceiver's mid on this session, or `#<trackName>` to name an existing one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mid: Option<String>,
    /// The publisher's session, on remote tracks only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The track's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track_name: Option<String>,
    /// Make the transceiver bidirectional (only when the SFU generates the offer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bidirectional_media_stream: Option<bool>,
    /// Transceiver kind; required when the SFU generates the offer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<MediaKind>,
    /// Simulcast preferences of a pull.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simulcast: Option<Simulcast>,
}

impl TrackObject {
    /// A track this session publishes from transceiver `mid` of its offer.
    pub fn local(mid: impl Into<String>, track_name: impl Into<String>) -> Self {
        Self {
            location: Some(TrackLocation::Local),
            mid: Some(mid.into()),
            track_name: Some(track_name.into()),
            ..Self::default()
        }
    }

    /// A track this session pulls from the publisher session `session_id`.
    pub fn remote(session_id: impl Into<String>, track_name: impl Into<String>) -> Self {
        Self {
            location: Some(TrackLocation::Remote),
            session_id: Some(session_id.into()),
            track_name: Some(track_name.into()),
            ..Self::default()
        }
    }
}

/// Body of `POST sessions/{id}/tracks/new` (`TracksRequest`). One request is all-local or
/// all-remote, at most 64 tracks (research/cloudflare-calls.md §2.2).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TracksRequest {
    /// The endpoint's offer (push), or none (pull: the SFU offers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_description: Option<SessionDescription>,
    /// The tracks to add.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tracks: Vec<TrackObject>,
    /// Name every new track in the offer at random instead of listing them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_discover: Option<bool>,
}

impl TracksRequest {
    /// Publish `tracks` (see [`TrackObject::local`]) offered in `offer_sdp`.
    pub fn push(offer_sdp: impl Into<String>, tracks: Vec<TrackObject>) -> Self {
        Self {
            session_description: Some(SessionDescription::offer(offer_sdp)),
            tracks,
            auto_discover: None,
        }
    }

    /// Pull `tracks` (see [`TrackObject::remote`]); the SFU answers with an offer.
    pub fn pull(tracks: Vec<TrackObject>) -> Self {
        Self {
            session_description: None,
            tracks,
            auto_discover: None,
        }
    }
}

/// One track of a `tracks/new` response: the track, or why it failed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrackResult {
    /// The track as the SFU allocated it (its `mid` on this session).
    #[serde(flatten)]
    pub track: TrackObject,
    /// Set when this track failed, e.g. `not_found_track_error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// What went wrong with this track.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
}

/// Response of `tracks/new` (`TracksResponse`). An HTTP 200 can carry failed tracks; the client
/// turns those into [`super::CallsErrorKind::TrackErrors`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TracksResponse {
    /// The SFU's SDP must be answered through `renegotiate` before the next mutation (pulls).
    #[serde(default)]
    pub requires_immediate_renegotiation: bool,
    /// One entry per requested track.
    #[serde(default)]
    pub tracks: Vec<TrackResult>,
    /// The SFU's answer (push) or offer (pull).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_description: Option<SessionDescription>,
    /// Request-level error code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// Request-level error text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
}

/// Query of `POST sessions/new`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NewSessionQuery {
    /// `thirdparty`: the session will connect to an ICE-lite peer (a server, not a browser).
    #[serde(rename = "thirdparty", default, skip_serializing_if = "is_false")]
    pub third_party: bool,
    /// `correlationId`: a diagnostic label, not an idempotency key.
    #[serde(
        rename = "correlationId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub correlation_id: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Response of `POST sessions/new` (`NewSessionResponse`), HTTP 201.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewSessionResponse {
    /// The new session.
    pub session_id: String,
    /// Legacy: the answer when `sessions/new` was sent an offer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_description: Option<SessionDescription>,
}

/// Body of `PUT sessions/{id}/renegotiate` (`RenegotiateRequest`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RenegotiateRequest {
    /// The endpoint's answer to the SFU's offer.
    pub session_description: SessionDescription,
}

/// Response of `renegotiate` (`RenegotiateResponse`): usually `{}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RenegotiateResponse {
    /// An SDP, should the SFU send one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_description: Option<SessionDescription>,
}

/// A track to close, by its mid on the session being modified (`CloseTrackObject`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CloseTrackObject {
    /// The transceiver's mid on this session.
    pub mid: String,
}

/// Body of `PUT sessions/{id}/tracks/close` (`CloseTracksRequest`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CloseTracksRequest {
    /// The tracks, by mid.
    pub tracks: Vec<CloseTrackObject>,
    /// Stop forwarding without an SDP exchange.
    pub force: bool,
    /// The endpoint's offer with the transceivers stopped (when not forced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_description: Option<SessionDescription>,
}

impl CloseTracksRequest {
    /// Close `mids` without an SDP exchange.
    pub fn forced<I: IntoIterator<Item = S>, S: Into<String>>(mids: I) -> Self {
        Self {
            tracks: close_objects(mids),
            force: true,
            session_description: None,
        }
    }

    /// Close `mids` with the endpoint's new offer; apply the returned answer.
    pub fn negotiated<I: IntoIterator<Item = S>, S: Into<String>>(
        mids: I,
        offer_sdp: impl Into<String>,
    ) -> Self {
        Self {
            tracks: close_objects(mids),
            force: false,
            session_description: Some(SessionDescription::offer(offer_sdp)),
        }
    }
}

fn close_objects<I: IntoIterator<Item = S>, S: Into<String>>(mids: I) -> Vec<CloseTrackObject> {
    mids.into_iter()
        .map(|mid| CloseTrackObject { mid: mid.into() })
        .collect()
}

/// The error code of a close item whose track is absent or already closed: not a failure.
pub const CLOSE_TRACK_ERROR: &str = "close_track_error";

/// One track of a `tracks/close` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CloseTrackResult {
    /// The requested mid.
    pub mid: String,
    /// Set when this close failed; [`CLOSE_TRACK_ERROR`] means "already gone".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// What went wrong with this close.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
}

impl CloseTrackResult {
    /// The track was absent or already closed.
    pub fn already_closed(&self) -> bool {
        self.error_code.as_deref() == Some(CLOSE_TRACK_ERROR)
    }
}

/// Response of `tracks/close` (`CloseTracksResponse`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CloseTracksResponse {
    /// Always false for a close.
    #[serde(default)]
    pub requires_immediate_renegotiation: bool,
    /// One entry per requested mid.
    #[serde(default)]
    pub tracks: Vec<CloseTrackResult>,
    /// The SFU's answer, for a negotiated close.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_description: Option<SessionDescription>,
}

/// `status` of a track in the session state. It does not prove packets flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrackStatus {
    /// Not closed or unavailable.
    Active,
    /// Closed or unavailable.
    Inactive,
    /// Still connecting.
    Initializing,
    /// The older schema's name for a track not yet ready.
    Waiting,
    /// A value this client does not know.
    #[serde(other)]
    Unknown,
}

/// One track of `GET sessions/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionTrackState {
    /// The track (location, mid, trackName, and sessionId for remote tracks).
    #[serde(flatten)]
    pub track: TrackObject,
    /// Its state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<TrackStatus>,
}

/// Response of `GET sessions/{id}` (`GetSessionStateResponse`), without data channels.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionState {
    /// Every track the session has held, closed ones included.
    #[serde(default)]
    pub tracks: Vec<SessionTrackState>,
}

/// The error fields every response may carry; the whole body of an error answer.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorResponse {
    /// E.g. `session_error`, `invalid_session_description`, `internal_error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// Human-readable detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn requests_serialize_as_the_spec_examples() {
        let push = TracksRequest::push("v=0\r\n", vec![TrackObject::local("4", "camera")]);
        assert_eq!(
            serde_json::to_value(&push).unwrap(),
            json!({"sessionDescription": {"type": "offer", "sdp": "v=0\r\n"},
                   "tracks": [{"location": "local", "mid": "4", "trackName": "camera"}]})
        );
        let pull = TracksRequest::pull(vec![TrackObject::remote("abc", "camera")]);
        assert_eq!(
            serde_json::to_value(&pull).unwrap(),
            json!({"tracks": [{"location": "remote", "sessionId": "abc", "trackName": "camera"}]})
        );
        assert_eq!(
            serde_json::to_value(CloseTracksRequest::forced(["0", "1"])).unwrap(),
            json!({"tracks": [{"mid": "0"}, {"mid": "1"}], "force": true})
        );
        let reneg = RenegotiateRequest {
            session_description: SessionDescription::answer("v=0"),
        };
        assert_eq!(
            serde_json::to_value(reneg).unwrap(),
            json!({"sessionDescription": {"type": "answer", "sdp": "v=0"}})
        );
    }

    #[test]
    fn responses_parse_the_spec_examples() {
        // research/cloudflare-calls.md §2.2, a rejection observed against the live SFU.
        let r: TracksResponse = serde_json::from_value(json!({
            "requiresImmediateRenegotiation": false,
            "tracks": [{"errorCode": "not_found_track_error", "errorDescription": "Track not found",
                        "mid": "", "sessionId": "s1", "trackName": "mic"}]
        }))
        .unwrap();
        assert_eq!(r.tracks[0].track.track_name.as_deref(), Some("mic"));
        assert_eq!(
            r.tracks[0].error_code.as_deref(),
            Some("not_found_track_error")
        );
        let state: SessionState = serde_json::from_value(json!({
            "tracks": [{"location": "remote", "mid": "7", "sessionId": "s1", "trackName": "cam",
                        "status": "active"},
                       {"location": "local", "mid": "2", "trackName": "x", "status": "paused"}],
            "dataChannels": []
        }))
        .unwrap();
        assert_eq!(state.tracks[0].status, Some(TrackStatus::Active));
        assert_eq!(state.tracks[1].status, Some(TrackStatus::Unknown));
        let round = serde_json::to_value(&state.tracks[0]).unwrap();
        assert_eq!(
            round,
            json!({"location": "remote", "mid": "7", "sessionId": "s1", "trackName": "cam",
                   "status": "active"})
        );
        let q: NewSessionQuery = serde_json::from_value(json!({"thirdparty": true})).unwrap();
        assert!(q.third_party);
    }
}
