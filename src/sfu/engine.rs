//! The embedded SFU's core: every session's `str0m` peer, the tracks they publish and pull, and
//! the forwarding between them. No sockets and no clock of its own: the task in
//! [`super::embedded`] feeds it datagrams, commands and time, and sends what it returns.
//!
//! Sessions follow the Calls API's model: a session is one peer connection; `local` tracks are
//! pushed into it by the peer (which sends the offer), `remote` tracks are pulled into it from
//! other sessions (the SFU sends the offer, the peer answers through `renegotiate`). The SFU is
//! ICE-lite with one host candidate, as Cloudflare's is observed to be.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::media::{Direction, KeyframeRequestKind, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};

/// A session that never connects is dropped after this long (Cloudflare: an unconnected
/// session "can expire before its first use").
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(30);

/// A connected session whose ICE stays disconnected this long is dropped: its peer is gone.
pub const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Keyframe requests toward one publisher track, at most one per this interval (several
/// viewers joining at once need one keyframe, not one each).
pub const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_secs(1);

/// Dropped sessions remembered, so that calls on them say "gone" (410) rather than "unknown"
/// (404).
pub const GONE_MEMORY: usize = 1024;

/// Every session is polled at least this often, whether or not it has anything to do: its
/// set-up and disconnect timeouts are checked then. In between only the sessions that received
/// a datagram, were written media or a command, or whose own timer is due are polled, so what
/// a datagram costs hardly depends on how many sessions there are.
pub const SWEEP_INTERVAL: Duration = Duration::from_millis(100);

/// Source addresses remembered with the session they belong to. The map is a cache (a miss
/// only costs asking every session), so when it is full it starts over.
pub const ROUTE_MEMORY: usize = 16 * 1024;

/// Polling rounds in one [`Engine::poll`]: media received in one round is written to the
/// pulling sessions and sent in the next. The rest, if any, waits for the next call.
const POLL_ROUNDS: usize = 3;

/// Per-track error codes of the Calls API.
pub mod codes {
    /// The pulled track does not exist (no such session or track name).
    pub const NOT_FOUND_TRACK: &str = "not_found_track_error";
    /// A pushed track names a mid the offer does not have.
    pub const INVALID_TRACK: &str = "invalid_track_error";
    /// A closed track did not exist or was already closed.
    pub const CLOSE_TRACK: &str = "close_track_error";
}

/// Why a command failed as a whole. Each maps to an HTTP status and Calls error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// The session was closed or dropped (Calls: 410 `session_error`).
    #[error("session {0} is closed")]
    SessionGone(String),
    /// No session by that id ever existed here.
    #[error("no session {0}")]
    UnknownSession(String),
    /// The SDP was not acceptable.
    #[error("invalid session description: {0}")]
    InvalidDescription(String),
    /// The call does not fit the session's negotiation state (e.g. an answer with no offer
    /// pending, or a new offer while one is pending).
    #[error("{0}")]
    Conflict(String),
    /// A malformed request (e.g. mixing local and remote tracks).
    #[error("{0}")]
    BadRequest(String),
    /// The SFU is shutting down.
    #[error("the embedded SFU has stopped")]
    Stopped,
}

/// One track of a `tracks/new` or `tracks/close` result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackResult {
    /// Track name.
    pub track_name: String,
    /// Its mid in the session the call modified.
    pub mid: String,
    /// For pulled tracks: the publishing session.
    pub session_id: Option<String>,
    /// Calls error code, when this track failed.
    pub error: Option<(&'static str, String)>,
}

/// The outcome of a push or pull.
#[derive(Debug, Clone)]
pub struct TracksOutcome {
    /// Per-track results.
    pub tracks: Vec<TrackResult>,
    /// The SDP to hand back: an answer to a push's offer, or the SFU's offer for a pull.
    pub description: Option<(SdpKind, String)>,
    /// The peer must answer the offer through `renegotiate`.
    pub requires_immediate_renegotiation: bool,
}

/// Offer or answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SdpKind {
    /// An offer.
    Offer,
    /// An answer.
    Answer,
}

/// One track as `GET sessions/{id}` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackState {
    /// `local` (pushed) or `remote` (pulled).
    pub local: bool,
    /// Its mid in this session.
    pub mid: String,
    /// Track name.
    pub track_name: String,
    /// For pulled tracks: the publishing session.
    pub session_id: Option<String>,
    /// `active`, `inactive` or `initializing`.
    pub status: &'static str,
}

/// What the engine counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct EngineStats {
    /// Sessions open now.
    pub sessions: usize,
    /// Of them, connected.
    pub connected: usize,
    /// Tracks published now.
    pub published_tracks: usize,
    /// Pulls forwarding now.
    pub pulled_tracks: usize,
    /// Media frames forwarded to viewers (since start).
    pub frames_forwarded: u64,
    /// Keyframe requests passed to publishers (since start).
    pub keyframe_requests: u64,
    /// Sessions dropped (since start): closed, failed or timed out.
    pub sessions_dropped: u64,
}

#[derive(Debug)]
struct Pulled {
    /// Its mid in the pulling session.
    mid: Mid,
    source_session: String,
    track_name: String,
    /// Negotiated (the peer answered the offer that added it).
    open: bool,
    closed: bool,
    /// Video: a keyframe went out, so the viewer's decoder can follow. Until then deltas
    /// are held back (they would only be decode errors).
    started: bool,
}

#[derive(Debug)]
struct Peer {
    rtc: Rtc,
    created: Instant,
    connected: bool,
    disconnected_since: Option<Instant>,
    pending: Option<SdpPendingOffer>,
    /// Pushed tracks: name by mid.
    local: Vec<(Mid, String, MediaKind)>,
    pulled: Vec<Pulled>,
    last_keyframe_request: HashMap<Mid, Instant>,
    /// When str0m next needs time to move on for this session.
    due: Instant,
    /// Something happened to the session since it was last polled (a datagram, media written
    /// to it, a command): poll it whether or not it is due.
    dirty: bool,
}

impl Peer {
    /// Applies the peer's offer (`tracks/new` push, negotiated `tracks/close`) and returns the
    /// SFU's answer. Refused while an SFU offer waits for the peer's answer.
    fn accept_offer(&mut self, offer: SdpOffer) -> Result<SdpAnswer, EngineError> {
        if self.pending.is_some() {
            return Err(EngineError::Conflict(
                "an SFU offer is waiting for its answer (renegotiate first)".to_owned(),
            ));
        }
        self.rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| EngineError::InvalidDescription(e.to_string()))
    }
}

/// Parses a peer's offer.
fn parse_offer(sdp: &str) -> Result<SdpOffer, EngineError> {
    SdpOffer::from_sdp_string(sdp).map_err(|e| EngineError::InvalidDescription(e.to_string()))
}

/// The SFU's state.
#[derive(Debug)]
pub struct Engine {
    candidate: SocketAddr,
    peers: HashMap<String, Peer>,
    gone: std::collections::VecDeque<String>,
    stats: EngineStats,
    /// The session each source address last turned out to belong to.
    routes: HashMap<SocketAddr, String>,
    /// Who pulls what: publishing session → track name → the sessions that pulled it, so
    /// forwarding a frame visits its pullers, not every session. A session is listed from its
    /// pull's offer until it or the publisher is dropped; a closed pull stays listed (forwarding
    /// checks each pull's own state), and pulling the same track again does not list it twice.
    pullers: HashMap<String, HashMap<String, Vec<String>>>,
    /// When every session is polled next ([`SWEEP_INTERVAL`]); `None`: at the next poll.
    next_sweep: Option<Instant>,
    /// Sessions polled, for tests of what a datagram costs.
    #[cfg(test)]
    polled: u64,
    /// Sessions looked at to forward media, for tests of what a frame costs.
    #[cfg(test)]
    forward_visits: u64,
}

/// A forwarding step gathered while polling one peer and applied to others after.
#[derive(Debug)]
enum Propagate {
    Media {
        from: String,
        mid: Mid,
        data: Box<str0m::media::MediaData>,
    },
    Keyframe {
        from: String,
        name: String,
        kind: KeyframeRequestKind,
    },
}

impl Engine {
    /// An engine whose socket is advertised as `candidate`.
    pub fn new(candidate: SocketAddr) -> Self {
        Self {
            candidate,
            peers: HashMap::new(),
            gone: std::collections::VecDeque::new(),
            stats: EngineStats::default(),
            routes: HashMap::new(),
            pullers: HashMap::new(),
            next_sweep: None,
            #[cfg(test)]
            polled: 0,
            #[cfg(test)]
            forward_visits: 0,
        }
    }

    /// Counters and gauges.
    pub fn stats(&self) -> EngineStats {
        let mut stats = self.stats;
        stats.sessions = self.peers.len();
        stats.connected = self.peers.values().filter(|p| p.connected).count();
        stats.published_tracks = self.peers.values().map(|p| p.local.len()).sum();
        stats.pulled_tracks = self
            .peers
            .values()
            .flat_map(|p| &p.pulled)
            .filter(|t| t.open && !t.closed)
            .count();
        stats
    }

    /// `sessions/new`: a new, empty session.
    pub fn new_session(&mut self, now: Instant) -> Result<String, EngineError> {
        let mut rtc = Rtc::builder()
            .set_ice_lite(true)
            .set_crypto_provider(super::crypto())
            .build(now);
        let candidate = Candidate::host(self.candidate, Protocol::Udp)
            .map_err(|e| EngineError::BadRequest(format!("bad SFU candidate address: {e}")))?;
        rtc.add_local_candidate(candidate);
        let id = super::random_id();
        self.peers.insert(
            id.clone(),
            Peer {
                rtc,
                created: now,
                connected: false,
                disconnected_since: None,
                pending: None,
                local: Vec::new(),
                pulled: Vec::new(),
                last_keyframe_request: HashMap::new(),
                due: now,
                dirty: true,
            },
        );
        Ok(id)
    }

    fn missing(&self, session: &str) -> EngineError {
        if self.gone.iter().any(|g| g == session) {
            EngineError::SessionGone(session.to_owned())
        } else {
            EngineError::UnknownSession(session.to_owned())
        }
    }

    /// The session a command acts on, marked to be polled next.
    fn peer(&mut self, session: &str) -> Result<&mut Peer, EngineError> {
        if !self.peers.contains_key(session) {
            return Err(self.missing(session));
        }
        let peer = self
            .peers
            .get_mut(session)
            .ok_or_else(|| EngineError::UnknownSession(session.to_owned()))?;
        peer.dirty = true;
        Ok(peer)
    }

    /// `tracks/new` with local tracks: the peer's offer publishes `(mid, track name)` pairs.
    /// With `auto_discover`, every other media section the peer sends on that is not published
    /// yet is published too, under a random name (Cloudflare's `autoDiscover`).
    pub fn push(
        &mut self,
        session: &str,
        offer_sdp: &str,
        tracks: &[(String, String)],
        auto_discover: bool,
    ) -> Result<TracksOutcome, EngineError> {
        let offer = parse_offer(offer_sdp)?;
        let peer = self.peer(session)?;
        let answer = peer.accept_offer(offer)?;
        let mut results = Vec::with_capacity(tracks.len());
        for (mid, name) in tracks {
            // str0m's mids are up to 16 ASCII alphanumerics; anything else would be mangled
            // into some other mid.
            let m = Mid::from(mid.as_str());
            let kind = (&*m == mid.as_str())
                .then(|| peer.rtc.media(m).map(str0m::media::Media::kind))
                .flatten();
            let error = match kind {
                None => Some((
                    codes::INVALID_TRACK,
                    format!("the offer has no media section with mid {mid}"),
                )),
                Some(_) if peer.local.iter().any(|(_, n, _)| n == name) => Some((
                    codes::INVALID_TRACK,
                    format!("track {name} is already published in this session"),
                )),
                Some(kind) => {
                    peer.local.push((m, name.clone(), kind));
                    None
                }
            };
            results.push(TrackResult {
                track_name: name.clone(),
                mid: mid.clone(),
                session_id: None,
                error,
            });
        }
        if auto_discover {
            for mid in offered_mids(offer_sdp) {
                let m = Mid::from(mid);
                if &*m != mid
                    || tracks.iter().any(|(listed, _)| listed == mid)
                    || peer.local.iter().any(|(lm, _, _)| *lm == m)
                {
                    continue;
                }
                // Only what the peer sends: its receive-only sections are pulls.
                let Some(media) = peer.rtc.media(m) else {
                    continue;
                };
                if !matches!(media.direction(), Direction::RecvOnly | Direction::SendRecv) {
                    continue;
                }
                let name = super::random_id();
                peer.local.push((m, name.clone(), media.kind()));
                results.push(TrackResult {
                    track_name: name,
                    mid: mid.to_owned(),
                    session_id: None,
                    error: None,
                });
            }
        }
        Ok(TracksOutcome {
            tracks: results,
            description: Some((SdpKind::Answer, answer.to_sdp_string())),
            requires_immediate_renegotiation: false,
        })
    }

    /// `tracks/new` with remote tracks: pull `(publisher session, track name)` pairs into
    /// `session`; the SFU's offer comes back for the peer to answer through `renegotiate`.
    pub fn pull(
        &mut self,
        session: &str,
        tracks: &[(String, String)],
    ) -> Result<TracksOutcome, EngineError> {
        if !self.peers.contains_key(session) {
            return Err(self.missing(session));
        }
        // Resolve the sources first (other peers), then change this one.
        let sources: Vec<Option<MediaKind>> = tracks
            .iter()
            .map(|(from, name)| {
                self.peers.get(from).and_then(|p| {
                    p.local
                        .iter()
                        .find(|(_, n, _)| n == name)
                        .map(|(_, _, k)| *k)
                })
            })
            .collect();
        let peer = self.peer(session)?;
        if peer.pending.is_some() {
            return Err(EngineError::Conflict(
                "an SFU offer is waiting for its answer (renegotiate first)".to_owned(),
            ));
        }
        let mut api = peer.rtc.sdp_api();
        let mut results = Vec::with_capacity(tracks.len());
        let mut added = Vec::new();
        for ((from, name), kind) in tracks.iter().zip(sources) {
            let Some(kind) = kind else {
                results.push(TrackResult {
                    track_name: name.clone(),
                    mid: String::new(),
                    session_id: Some(from.clone()),
                    error: Some((
                        codes::NOT_FOUND_TRACK,
                        "Track not found on remote peer".to_owned(),
                    )),
                });
                continue;
            };
            let mid = api.add_media(
                kind,
                Direction::SendOnly,
                Some(from.clone()),
                Some(name.clone()),
                None,
            );
            added.push(Pulled {
                mid,
                source_session: from.clone(),
                track_name: name.clone(),
                open: false,
                closed: false,
                started: kind == MediaKind::Audio,
            });
            results.push(TrackResult {
                track_name: name.clone(),
                mid: mid.to_string(),
                session_id: Some(from.clone()),
                error: None,
            });
        }
        let sources: Vec<(String, String)> = added
            .iter()
            .map(|t| (t.source_session.clone(), t.track_name.clone()))
            .collect();
        let offer = api.apply();
        let description = match offer {
            Some((offer, pending)) => {
                peer.pending = Some(pending);
                peer.pulled.extend(added);
                Some((SdpKind::Offer, offer.to_sdp_string()))
            }
            None => None,
        };
        if description.is_some() {
            for (from, name) in sources {
                let pulling = self
                    .pullers
                    .entry(from)
                    .or_default()
                    .entry(name)
                    .or_default();
                if !pulling.iter().any(|id| id == session) {
                    pulling.push(session.to_owned());
                }
            }
        }
        Ok(TracksOutcome {
            tracks: results,
            requires_immediate_renegotiation: description.is_some(),
            description,
        })
    }

    /// `renegotiate`: the peer's answer to the SFU's pending offer.
    pub fn answer(&mut self, now: Instant, session: &str, answer: &str) -> Result<(), EngineError> {
        let answer = SdpAnswer::from_sdp_string(answer)
            .map_err(|e| EngineError::InvalidDescription(e.to_string()))?;
        let peer = self.peer(session)?;
        let Some(pending) = peer.pending.take() else {
            return Err(EngineError::Conflict(
                "no SFU offer is waiting for an answer".to_owned(),
            ));
        };
        peer.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| EngineError::InvalidDescription(e.to_string()))?;
        for track in &mut peer.pulled {
            track.open = true;
        }
        // The new viewer needs a keyframe to start.
        let wanted: Vec<(String, String)> = peer
            .pulled
            .iter()
            .filter(|t| !t.closed)
            .map(|t| (t.source_session.clone(), t.track_name.clone()))
            .collect();
        for (from, name) in wanted {
            self.request_keyframe(&from, &name, KeyframeRequestKind::Pli, now);
        }
        Ok(())
    }

    /// `tracks/close`: stop forwarding the mids (pulled tracks) or unpublish them (pushed
    /// tracks). Unknown mids are reported per track. With `offer` (`force: false`), the peer's
    /// offer with those transceivers stopped is applied and the SFU's answer returned; without
    /// it (`force: true`), media simply stops.
    pub fn close(
        &mut self,
        session: &str,
        mids: &[String],
        offer: Option<&str>,
    ) -> Result<TracksOutcome, EngineError> {
        let offer = offer.map(parse_offer).transpose()?;
        let peer = self.peer(session)?;
        let answer = match offer {
            Some(offer) => Some((SdpKind::Answer, peer.accept_offer(offer)?.to_sdp_string())),
            None => None,
        };
        let mut results = Vec::with_capacity(mids.len());
        for mid in mids {
            let m = Mid::from(mid.as_str());
            let mut found = None;
            if &*m != mid.as_str() {
                // Not a mid str0m could have made: nothing to close.
            } else if let Some(t) = peer.pulled.iter_mut().find(|t| t.mid == m && !t.closed) {
                t.closed = true;
                found = Some(t.track_name.clone());
            } else if let Some(i) = peer.local.iter().position(|(lm, _, _)| *lm == m) {
                found = Some(peer.local.remove(i).1);
            }
            results.push(TrackResult {
                track_name: found.clone().unwrap_or_default(),
                mid: mid.clone(),
                session_id: None,
                error: found.is_none().then(|| {
                    (
                        codes::CLOSE_TRACK,
                        "Track doesn't exist or was already closed".to_owned(),
                    )
                }),
            });
        }
        Ok(TracksOutcome {
            tracks: results,
            description: answer,
            requires_immediate_renegotiation: false,
        })
    }

    /// `GET sessions/{id}`: the session's tracks.
    pub fn state(&self, session: &str) -> Result<Vec<TrackState>, EngineError> {
        let peer = self
            .peers
            .get(session)
            .ok_or_else(|| self.missing(session))?;
        let mut tracks: Vec<TrackState> = peer
            .local
            .iter()
            .map(|(mid, name, _)| TrackState {
                local: true,
                mid: mid.to_string(),
                track_name: name.clone(),
                session_id: None,
                status: if peer.connected {
                    "active"
                } else {
                    "initializing"
                },
            })
            .collect();
        tracks.extend(peer.pulled.iter().map(|t| TrackState {
            local: false,
            mid: t.mid.to_string(),
            track_name: t.track_name.clone(),
            session_id: Some(t.source_session.clone()),
            status: match (t.closed, t.open && peer.connected) {
                (true, _) => "inactive",
                (false, true) => "active",
                (false, false) => "initializing",
            },
        }));
        Ok(tracks)
    }

    /// Drops a session at once, as if its peer vanished (operators and tests).
    pub fn drop_session(&mut self, session: &str) -> bool {
        let found = self.peers.remove(session).is_some();
        if found {
            self.routes.retain(|_, id| id != session);
            self.pullers.remove(session);
            for tracks in self.pullers.values_mut() {
                tracks.retain(|_, pulling| {
                    pulling.retain(|id| id != session);
                    !pulling.is_empty()
                });
            }
            self.stats.sessions_dropped += 1;
            if self.gone.len() == GONE_MEMORY {
                self.gone.pop_front();
            }
            self.gone.push_back(session.to_owned());
        }
        found
    }

    /// Whether any session is open.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// A datagram arrived from `source`. Unknown senders are ignored (the STUN binding of a
    /// peer whose session was dropped, stray traffic).
    pub fn receive(&mut self, now: Instant, source: SocketAddr, data: &[u8]) {
        // str0m must see the advertised candidate as the destination: the socket may be bound
        // to a wildcard address or sit behind NAT.
        let Ok(receive) = Receive::new(Protocol::Udp, source, self.candidate, data) else {
            return;
        };
        let input = Input::Receive(now, receive);
        // Nearly every datagram comes from an address already seen: ask that session first
        // instead of every session.
        let known = self
            .routes
            .get(&source)
            .and_then(|id| self.peers.get_mut(id))
            .filter(|peer| peer.rtc.accepts(&input));
        let peer = match known {
            Some(peer) => peer,
            None => {
                let Some((id, peer)) = self
                    .peers
                    .iter_mut()
                    .find(|(_, peer)| peer.rtc.accepts(&input))
                else {
                    return;
                };
                if self.routes.len() >= ROUTE_MEMORY {
                    self.routes.clear();
                }
                self.routes.insert(source, id.clone());
                peer
            }
        };
        peer.dirty = true;
        if let Err(e) = peer.rtc.handle_input(input) {
            tracing::debug!(error = %e, "SFU peer input failed");
            peer.rtc.disconnect();
        }
    }

    /// Advances time, forwards media, and collects datagrams to send. Returns when the engine
    /// next needs [`Engine::poll`] at the latest.
    ///
    /// Polls the sessions something happened to and those whose timer is due, and every
    /// session once per [`SWEEP_INTERVAL`]. Media received is forwarded and the pulling
    /// sessions polled again, so forwarded packets leave in the same call.
    pub fn poll(&mut self, now: Instant, transmit: &mut Vec<(SocketAddr, Vec<u8>)>) -> Instant {
        let mut everyone = self.next_sweep.is_none_or(|t| t <= now);
        if everyone {
            self.next_sweep = Some(now + SWEEP_INTERVAL);
        }
        for _ in 0..POLL_ROUNDS {
            self.poll_round(now, everyone, transmit);
            everyone = false;
            if !self.peers.values().any(|p| p.dirty) {
                break;
            }
        }
        let mut next = self.next_sweep.unwrap_or(now);
        for peer in self.peers.values() {
            next = next.min(if peer.dirty { now } else { peer.due });
        }
        next
    }

    /// One round of [`Engine::poll`]: polls the sessions that need it (all with `everyone`),
    /// drops the dead, and forwards what they received, which marks the pulling sessions.
    fn poll_round(
        &mut self,
        now: Instant,
        everyone: bool,
        transmit: &mut Vec<(SocketAddr, Vec<u8>)>,
    ) {
        let mut propagate = Vec::new();
        let mut dead = Vec::new();
        for (id, peer) in &mut self.peers {
            if !(everyone || peer.dirty || peer.due <= now) {
                continue;
            }
            peer.dirty = false;
            #[cfg(test)]
            {
                self.polled += 1;
            }
            if peer.rtc.handle_input(Input::Timeout(now)).is_err() {
                peer.rtc.disconnect();
            }
            loop {
                if !peer.rtc.is_alive() {
                    break;
                }
                match peer.rtc.poll_output() {
                    Ok(Output::Timeout(t)) => {
                        peer.due = t;
                        break;
                    }
                    Ok(Output::Transmit(t)) => transmit.push((t.destination, t.contents.into())),
                    Ok(Output::Event(event)) => match event {
                        Event::Connected => {
                            peer.connected = true;
                        }
                        Event::IceConnectionStateChange(state) => match state {
                            IceConnectionState::Disconnected => {
                                peer.disconnected_since.get_or_insert(now);
                            }
                            IceConnectionState::Connected | IceConnectionState::Completed => {
                                peer.disconnected_since = None;
                            }
                            _ => {}
                        },
                        Event::MediaData(data) => propagate.push(Propagate::Media {
                            from: id.clone(),
                            mid: data.mid,
                            data: Box::new(data),
                        }),
                        Event::KeyframeRequest(req) => {
                            if let Some(t) = peer.pulled.iter().find(|t| t.mid == req.mid) {
                                propagate.push(Propagate::Keyframe {
                                    from: t.source_session.clone(),
                                    name: t.track_name.clone(),
                                    kind: req.kind,
                                });
                            }
                        }
                        _ => {}
                    },
                    Err(e) => {
                        tracing::debug!(error = %e, session = %id, "SFU peer failed");
                        peer.rtc.disconnect();
                    }
                }
            }
            let timed_out = !peer.connected && now.duration_since(peer.created) > SETUP_TIMEOUT;
            let gone = peer
                .disconnected_since
                .is_some_and(|t| now.duration_since(t) > DISCONNECT_TIMEOUT);
            if !peer.rtc.is_alive() || timed_out || gone {
                dead.push(id.clone());
            }
        }
        for id in dead {
            tracing::debug!(session = %id, "SFU session dropped");
            self.drop_session(&id);
        }
        for step in propagate {
            match step {
                Propagate::Media { from, mid, data } => self.forward(&from, mid, &data),
                Propagate::Keyframe { from, name, kind } => {
                    self.request_keyframe(&from, &name, kind, now);
                }
            }
        }
    }

    fn forward(&mut self, from: &str, mid: Mid, data: &str0m::media::MediaData) {
        let Some(name) = self
            .peers
            .get(from)
            .and_then(|p| p.local.iter().find(|(m, _, _)| *m == mid))
            .map(|(_, n, _)| n.clone())
        else {
            return;
        };
        let Some(pulling) = self.pullers.get(from).and_then(|tracks| tracks.get(&name)) else {
            return;
        };
        let mut forwarded = 0;
        let keyframe = data.is_keyframe();
        for id in pulling {
            #[cfg(test)]
            {
                self.forward_visits += 1;
            }
            let Some(peer) = self.peers.get_mut(id) else {
                continue;
            };
            if !peer.connected {
                continue;
            }
            let mut targets = Vec::new();
            for t in &mut peer.pulled {
                if t.open && !t.closed && t.source_session == from && t.track_name == name {
                    t.started |= keyframe;
                    if t.started {
                        targets.push(t.mid);
                    }
                }
            }
            for target in targets {
                let Some(writer) = peer.rtc.writer(target) else {
                    continue;
                };
                let Some(pt) = writer.match_params(data.params) else {
                    continue;
                };
                if writer
                    .write(pt, data.network_time, data.time, Arc::clone(&data.data))
                    .is_ok()
                {
                    forwarded += 1;
                    // Its packets go out when it is polled.
                    peer.dirty = true;
                }
            }
        }
        self.stats.frames_forwarded += forwarded;
    }

    fn request_keyframe(
        &mut self,
        from: &str,
        name: &str,
        kind: KeyframeRequestKind,
        now: Instant,
    ) {
        let Some(peer) = self.peers.get_mut(from) else {
            return;
        };
        let Some(mid) = peer
            .local
            .iter()
            .find(|(_, n, k)| n == name && *k == MediaKind::Video)
            .map(|(m, _, _)| *m)
        else {
            return;
        };
        if peer
            .last_keyframe_request
            .get(&mid)
            .is_some_and(|t| now.duration_since(*t) < KEYFRAME_REQUEST_INTERVAL)
        {
            return;
        }
        if let Some(mut writer) = peer.rtc.writer(mid)
            && writer.request_keyframe(None, kind).is_ok()
        {
            peer.dirty = true;
            peer.last_keyframe_request.insert(mid, now);
            self.stats.keyframe_requests += 1;
        }
    }
}

/// The mids of an SDP's media sections, in order (the SDP has been parsed already).
fn offered_mids(sdp: &str) -> impl Iterator<Item = &str> {
    sdp.lines()
        .filter_map(|line| line.trim_end_matches('\r').strip_prefix("a=mid:"))
        .map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer() -> (Rtc, String, Vec<(String, String)>) {
        let (rtc, sdp, tracks, _pending) = offer_pending();
        (rtc, sdp, tracks)
    }

    /// A publisher's offer of a video and an audio track, and what it needs to take the answer.
    fn offer_pending() -> (Rtc, String, Vec<(String, String)>, SdpPendingOffer) {
        let mut rtc = Rtc::builder()
            .set_crypto_provider(crate::sfu::crypto())
            .build(Instant::now());
        let candidate = Candidate::host("127.0.0.1:40000".parse().unwrap(), Protocol::Udp).unwrap();
        rtc.add_local_candidate(candidate);
        let mut api = rtc.sdp_api();
        let video = api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
        let audio = api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        let (offer, pending) = api.apply().unwrap();
        let tracks = vec![
            (video.to_string(), "cam-video".to_owned()),
            (audio.to_string(), "cam-audio".to_owned()),
        ];
        (rtc, offer.to_sdp_string(), tracks, pending)
    }

    #[test]
    fn auto_discover_publishes_what_the_peer_sends_under_random_names() {
        let mut e = engine();
        let now = Instant::now();
        let publisher = e.new_session(now).unwrap();
        let mut rtc = Rtc::builder()
            .set_crypto_provider(crate::sfu::crypto())
            .build(Instant::now());
        let mut api = rtc.sdp_api();
        let video = api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
        let audio = api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        let receive = api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
        let (offer, _pending) = api.apply().unwrap();
        let named = [(audio.to_string(), "mic".to_owned())];
        let pushed = e
            .push(&publisher, &offer.to_sdp_string(), &named, true)
            .unwrap();
        // The listed track keeps its name; the video is discovered; the peer's receive-only
        // section is not something to publish.
        assert_eq!(pushed.tracks.len(), 2, "{pushed:?}");
        assert!(
            pushed.tracks.iter().all(|t| t.error.is_none()),
            "{pushed:?}"
        );
        assert_eq!(pushed.tracks[0].track_name, "mic");
        let discovered = &pushed.tracks[1];
        assert_eq!(discovered.mid, video.to_string());
        assert!(discovered.track_name.len() >= 16, "{discovered:?}");
        assert!(pushed.tracks.iter().all(|t| t.mid != receive.to_string()));
        assert!(matches!(pushed.description, Some((SdpKind::Answer, _))));
        assert_eq!(e.stats().published_tracks, 2);

        // The discovered name can be pulled like any other.
        let viewer = e.new_session(now).unwrap();
        let pulled = e
            .pull(
                &viewer,
                &[(publisher.clone(), discovered.track_name.clone())],
            )
            .unwrap();
        assert_eq!(pulled.tracks[0].error, None, "{pulled:?}");
    }

    #[test]
    fn a_negotiated_close_answers_the_peers_offer_and_unpublishes() {
        let mut e = engine();
        let now = Instant::now();
        let publisher = e.new_session(now).unwrap();
        let (mut rtc, sdp, tracks, pending) = offer_pending();
        let pushed = e.push(&publisher, &sdp, &tracks, false).unwrap();
        let Some((SdpKind::Answer, answer)) = pushed.description else {
            panic!("no answer: {pushed:?}");
        };
        rtc.sdp_api()
            .accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap())
            .unwrap();
        assert_eq!(e.stats().published_tracks, 2);

        // The publisher stops its video transceiver and offers that.
        let video = tracks[0].0.clone();
        let mut api = rtc.sdp_api();
        api.stop_media(Mid::from(video.as_str()));
        let (offer, pending) = api.apply().expect("stopping a track needs a negotiation");
        let closed = e
            .close(
                &publisher,
                std::slice::from_ref(&video),
                Some(&offer.to_sdp_string()),
            )
            .unwrap();
        assert_eq!(closed.tracks.len(), 1);
        assert_eq!(closed.tracks[0].error, None, "{closed:?}");
        assert_eq!(closed.tracks[0].track_name, "cam-video");
        let Some((SdpKind::Answer, answer)) = closed.description else {
            panic!("a negotiated close has an answer: {closed:?}");
        };
        rtc.sdp_api()
            .accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap())
            .expect("the publisher takes the SFU's answer");
        let state = e.state(&publisher).unwrap();
        assert_eq!(state.len(), 1, "{state:?}");
        assert_eq!(state[0].track_name, "cam-audio");
        assert_eq!(e.stats().published_tracks, 1);

        // A forced close has no answer.
        let forced = e.close(&publisher, &[tracks[1].0.clone()], None).unwrap();
        assert!(forced.description.is_none());
        assert_eq!(e.stats().published_tracks, 0);
    }

    fn engine() -> Engine {
        Engine::new("127.0.0.1:50000".parse().unwrap())
    }

    #[test]
    fn a_push_is_answered_and_its_tracks_can_be_pulled() {
        let mut e = engine();
        let now = Instant::now();
        let publisher = e.new_session(now).unwrap();
        let (_rtc, sdp, tracks) = offer();
        let pushed = e.push(&publisher, &sdp, &tracks, false).unwrap();
        assert!(
            pushed.tracks.iter().all(|t| t.error.is_none()),
            "{pushed:?}"
        );
        assert!(matches!(pushed.description, Some((SdpKind::Answer, _))));
        assert!(!pushed.requires_immediate_renegotiation);

        let viewer = e.new_session(now).unwrap();
        let pulled = e
            .pull(
                &viewer,
                &[
                    (publisher.clone(), "cam-video".to_owned()),
                    (publisher.clone(), "nope".to_owned()),
                ],
            )
            .unwrap();
        assert!(pulled.requires_immediate_renegotiation);
        assert!(matches!(pulled.description, Some((SdpKind::Offer, _))));
        assert_eq!(pulled.tracks[0].error, None);
        assert_eq!(
            pulled.tracks[1].error.as_ref().map(|e| e.0),
            Some(codes::NOT_FOUND_TRACK)
        );
        // A second pull before the answer conflicts.
        assert!(matches!(
            e.pull(&viewer, &[(publisher.clone(), "cam-audio".to_owned())]),
            Err(EngineError::Conflict(_))
        ));
        let state = e.state(&viewer).unwrap();
        assert_eq!(state.len(), 1);
        assert_eq!(state[0].status, "initializing");
        assert_eq!(e.stats().published_tracks, 2);
    }

    #[test]
    fn bad_input_gets_clear_errors_and_never_panics() {
        let mut e = engine();
        let now = Instant::now();
        let s = e.new_session(now).unwrap();
        assert!(matches!(
            e.push(&s, "v=0\r\nnot sdp", &[], false),
            Err(EngineError::InvalidDescription(_))
        ));
        assert!(matches!(
            e.answer(now, &s, "v=0\r\n"),
            Err(EngineError::InvalidDescription(_) | EngineError::Conflict(_))
        ));
        let (_rtc, sdp, _) = offer();
        let pushed = e
            .push(
                &s,
                &sdp,
                &[
                    ("99".to_owned(), "ghost".to_owned()),
                    ("0 ".to_owned(), "spaced".to_owned()),
                    ("a-mid-longer-than-sixteen".to_owned(), "long".to_owned()),
                ],
                false,
            )
            .unwrap();
        for track in &pushed.tracks {
            assert_eq!(
                track.error.as_ref().map(|e| e.0),
                Some(codes::INVALID_TRACK),
                "{track:?}"
            );
        }
        let closed = e.close(&s, &["42".to_owned()], None).unwrap();
        assert!(matches!(
            e.close(&s, &["42".to_owned()], Some("v=0\r\nnot sdp")),
            Err(EngineError::InvalidDescription(_))
        ));
        assert_eq!(
            closed.tracks[0].error.as_ref().map(|e| e.0),
            Some(codes::CLOSE_TRACK)
        );
        assert!(matches!(
            e.state("never"),
            Err(EngineError::UnknownSession(_))
        ));
        assert!(e.drop_session(&s));
        assert!(matches!(e.state(&s), Err(EngineError::SessionGone(_))));
        // Garbage datagrams from anyone are ignored.
        e.receive(now, "127.0.0.1:1".parse().unwrap(), &[0xff; 40]);
        e.receive(now, "127.0.0.1:1".parse().unwrap(), &[]);
        let mut out = Vec::new();
        e.poll(now, &mut out);
        assert!(e.is_empty());
    }

    #[test]
    fn sessions_that_never_connect_expire() {
        let mut e = engine();
        let now = Instant::now();
        e.new_session(now).unwrap();
        let mut out = Vec::new();
        e.poll(now + SETUP_TIMEOUT / 2, &mut out);
        assert!(!e.is_empty());
        e.poll(now + SETUP_TIMEOUT + Duration::from_secs(1), &mut out);
        assert!(e.is_empty());
        assert_eq!(e.stats().sessions_dropped, 1);
    }

    /// A str0m peer on the far side of an in-memory network from the engine.
    struct Remote {
        rtc: Rtc,
        addr: SocketAddr,
        /// Every datagram it sent the engine.
        sent: Vec<Vec<u8>>,
    }

    impl Remote {
        fn new(rtc: Rtc, port: u16) -> Self {
            Self {
                rtc,
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                sent: Vec::new(),
            }
        }

        /// Hands the engine what the remote has to send at `now`.
        fn send(&mut self, e: &mut Engine, now: Instant) -> bool {
            let mut sent = false;
            self.rtc.handle_input(Input::Timeout(now)).unwrap();
            while let Ok(output) = self.rtc.poll_output() {
                match output {
                    Output::Timeout(_) => break,
                    Output::Transmit(t) => {
                        sent = true;
                        e.receive(now, t.source, &t.contents);
                        self.sent.push(t.contents.to_vec());
                    }
                    Output::Event(_) => {}
                }
            }
            sent
        }

        /// Writes one H.264 keyframe on `mid`, hands its packets to the engine, and polls the
        /// engine once: what the engine sent in that poll.
        fn publish_keyframe(
            &mut self,
            e: &mut Engine,
            mid: Mid,
            now: Instant,
        ) -> Vec<(SocketAddr, Vec<u8>)> {
            let writer = self.rtc.writer(mid).unwrap();
            let pt = writer
                .payload_params()
                .find(|p| p.spec().codec == str0m::format::Codec::H264)
                .unwrap()
                .pt();
            writer
                .write(
                    pt,
                    now,
                    str0m::media::MediaTime::from_90khz(90_000),
                    keyframe(),
                )
                .unwrap();
            self.send(e, now);
            let mut out = Vec::new();
            e.poll(now, &mut out);
            out
        }
    }

    /// Moves time to `now` on every side and carries datagrams both ways until neither side
    /// has more to send.
    fn exchange(e: &mut Engine, remotes: &mut [&mut Remote], now: Instant) {
        for _ in 0..100 {
            let mut quiet = true;
            for remote in remotes.iter_mut() {
                if remote.send(e, now) {
                    quiet = false;
                }
            }
            let mut out = Vec::new();
            e.poll(now, &mut out);
            for (destination, data) in out {
                let Some(i) = remotes.iter().position(|r| r.addr == destination) else {
                    continue;
                };
                quiet = false;
                let receive = Receive::new(Protocol::Udp, e.candidate, destination, &data).unwrap();
                remotes[i]
                    .rtc
                    .handle_input(Input::Receive(now, receive))
                    .unwrap();
            }
            if quiet {
                return;
            }
        }
        panic!("the peers never stopped sending at one instant");
    }

    /// An Annex B H.264 access unit str0m's packetizer sends and its depacketizer marks as a
    /// keyframe (SPS, PPS, IDR slice; the bytes after the headers are filler).
    fn keyframe() -> Vec<u8> {
        let mut au = Vec::new();
        for nal in [
            &[0x67, 0x42, 0xc0, 0x1f, 0x8c, 0x8d, 0x40][..],
            &[0x68, 0xce, 0x3c, 0x80][..],
            &[0x65, 0x88, 0x84, 0x00, 0x33, 0xff][..],
        ] {
            au.extend_from_slice(&[0, 0, 0, 1]);
            au.extend_from_slice(nal);
        }
        au
    }

    /// A publisher of a video and an audio track and a viewer of the video, connected to `e`
    /// at `*now` or a little later: (publisher, its session, the video's mid, viewer).
    fn publisher_and_viewer(e: &mut Engine, now: &mut Instant) -> (Remote, String, Mid, Remote) {
        let publisher_id = e.new_session(*now).unwrap();
        let (rtc, sdp, tracks, pending) = offer_pending();
        let mut publisher = Remote::new(rtc, 40000);
        let pushed = e.push(&publisher_id, &sdp, &tracks, false).unwrap();
        let Some((SdpKind::Answer, answer)) = pushed.description else {
            panic!("no answer: {pushed:?}");
        };
        publisher
            .rtc
            .sdp_api()
            .accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap())
            .unwrap();
        // A viewer pulls its video and answers the SFU's offer.
        let viewer_id = e.new_session(*now).unwrap();
        let pulled = e
            .pull(
                &viewer_id,
                &[(publisher_id.clone(), "cam-video".to_owned())],
            )
            .unwrap();
        let Some((SdpKind::Offer, offer)) = pulled.description else {
            panic!("no offer: {pulled:?}");
        };
        let mut rtc = Rtc::builder()
            .set_crypto_provider(crate::sfu::crypto())
            .build(*now);
        rtc.add_local_candidate(
            Candidate::host("127.0.0.1:40001".parse().unwrap(), Protocol::Udp).unwrap(),
        );
        let answer = rtc
            .sdp_api()
            .accept_offer(SdpOffer::from_sdp_string(&offer).unwrap())
            .unwrap();
        e.answer(*now, &viewer_id, &answer.to_sdp_string()).unwrap();
        let mut viewer = Remote::new(rtc, 40001);

        let connected = e.stats().connected + 2;
        let deadline = *now + Duration::from_secs(10);
        while e.stats().connected < connected {
            assert!(*now < deadline, "not connected: {:?}", e.stats());
            exchange(e, &mut [&mut publisher, &mut viewer], *now);
            *now += Duration::from_millis(5);
        }
        let video = Mid::from(tracks[0].0.as_str());
        (publisher, publisher_id, video, viewer)
    }

    #[test]
    fn a_datagram_polls_its_own_session_and_forwarded_media_leaves_in_the_same_poll() {
        let mut e = engine();
        let mut now = Instant::now();
        // Sessions that never connect: each datagram must not cost a poll of each.
        for _ in 0..30 {
            e.new_session(now).unwrap();
        }
        let (mut publisher, publisher_id, video, mut viewer) =
            publisher_and_viewer(&mut e, &mut now);
        assert_eq!(e.stats().sessions, 32);
        assert!(
            e.routes.len() <= 2,
            "one route per peer address: {:?}",
            e.routes
        );

        // Between sweeps, the publisher's media polls the publisher and the viewer it is
        // forwarded to, not the sessions with nothing to do, and reaches the viewer in the
        // same call.
        exchange(&mut e, &mut [&mut publisher, &mut viewer], now);
        let polled_before = e.polled;
        let out = publisher.publish_keyframe(&mut e, video, now);
        assert_eq!(e.stats().frames_forwarded, 1);
        assert!(
            out.iter().any(|(to, _)| *to == viewer.addr),
            "the keyframe did not leave toward the viewer in the poll that received it"
        );
        let polled = e.polled - polled_before;
        assert!(
            polled <= 6,
            "{polled} sessions polled for one frame among {} sessions",
            e.stats().sessions
        );

        // A sweep still polls everyone, and the sessions that never connect expire.
        let polled_before = e.polled;
        let mut out = Vec::new();
        e.poll(now + SWEEP_INTERVAL, &mut out);
        assert!(e.polled - polled_before >= 32);
        // Dropping a session forgets its routes.
        assert!(e.drop_session(&publisher_id));
        assert!(e.routes.values().all(|id| *id != publisher_id));
    }

    #[test]
    fn forwarding_visits_only_the_pulling_sessions_whose_list_follows_pulls_and_drops() {
        let mut e = engine();
        let mut now = Instant::now();
        for _ in 0..30 {
            e.new_session(now).unwrap();
        }
        let (mut publisher, publisher_id, video, mut viewer) =
            publisher_and_viewer(&mut e, &mut now);
        let pulling = |e: &Engine| -> Vec<String> {
            e.pullers
                .get(&publisher_id)
                .and_then(|tracks| tracks.get("cam-video"))
                .cloned()
                .unwrap_or_default()
        };
        let [viewer_id] = <[String; 1]>::try_from(pulling(&e)).unwrap();

        // A frame looks at its one puller, not at all 32 sessions.
        exchange(&mut e, &mut [&mut publisher, &mut viewer], now);
        let visits = e.forward_visits;
        publisher.publish_keyframe(&mut e, video, now);
        assert_eq!(e.stats().frames_forwarded, 1);
        assert_eq!(e.forward_visits - visits, 1);

        // Closed and pulled again, the viewer is listed once and still gets the track.
        let mid = e.state(&viewer_id).unwrap()[0].mid.clone();
        assert!(
            e.close(&viewer_id, &[mid], None).unwrap().tracks[0]
                .error
                .is_none()
        );
        let pulled = e
            .pull(
                &viewer_id,
                &[(publisher_id.clone(), "cam-video".to_owned())],
            )
            .unwrap();
        let Some((SdpKind::Offer, offer)) = pulled.description else {
            panic!("no offer: {pulled:?}");
        };
        let answer = viewer
            .rtc
            .sdp_api()
            .accept_offer(SdpOffer::from_sdp_string(&offer).unwrap())
            .unwrap();
        e.answer(now, &viewer_id, &answer.to_sdp_string()).unwrap();
        assert_eq!(pulling(&e), std::slice::from_ref(&viewer_id));
        now += Duration::from_millis(5);
        exchange(&mut e, &mut [&mut publisher, &mut viewer], now);
        publisher.publish_keyframe(&mut e, video, now);
        assert_eq!(e.stats().frames_forwarded, 2);

        // Dropped sessions leave the lists: the viewer its entry, the publisher its tracks.
        assert!(e.drop_session(&viewer_id));
        assert!(pulling(&e).is_empty());
        assert!(e.drop_session(&publisher_id));
        assert!(!e.pullers.contains_key(&publisher_id));
    }

    #[test]
    fn corrupt_and_forged_datagrams_neither_panic_nor_break_a_session() {
        let mut e = engine();
        let mut now = Instant::now();
        let (mut publisher, _, video, mut viewer) = publisher_and_viewer(&mut e, &mut now);
        let stranger: SocketAddr = "127.0.0.1:40009".parse().unwrap();
        // Everything the peers sent while connecting (STUN, DTLS, SRTP, SRTCP), then mangled:
        // bytes flipped, cut short, padded with junk, from the peers' own addresses (forged
        // sources) and from a stranger.
        let mut rng = fastrand::Rng::with_seed(7);
        let samples: Vec<(SocketAddr, Vec<u8>)> = [&publisher, &viewer]
            .iter()
            .flat_map(|r| r.sent.iter().map(|d| (r.addr, d.clone())))
            .collect();
        assert!(samples.len() >= 4, "{} datagrams", samples.len());
        let mut out = Vec::new();
        for round in 0..2000 {
            let (from, original) = &samples[rng.usize(..samples.len())];
            let mut data = original.clone();
            match round % 4 {
                0 => {
                    for _ in 0..rng.usize(1..4) {
                        let i = rng.usize(..data.len());
                        data[i] ^= rng.u8(1..);
                    }
                }
                1 => data.truncate(rng.usize(..data.len())),
                2 => data.extend((0..rng.usize(1..64)).map(|_| rng.u8(..))),
                _ => {
                    let i = rng.usize(..data.len());
                    data[i..].iter_mut().for_each(|b| *b = rng.u8(..));
                }
            }
            let source = if round % 3 == 0 { stranger } else { *from };
            e.receive(now, source, &data);
            e.poll(now, &mut out);
            out.clear();
        }

        // Both sessions are still up, and media still flows.
        now += Duration::from_millis(5);
        exchange(&mut e, &mut [&mut publisher, &mut viewer], now);
        assert_eq!(e.stats().connected, 2, "{:?}", e.stats());
        let forwarded = e.stats().frames_forwarded;
        let out = publisher.publish_keyframe(&mut e, video, now);
        assert_eq!(e.stats().frames_forwarded, forwarded + 1);
        assert!(out.iter().any(|(to, _)| *to == viewer.addr));
    }
}
