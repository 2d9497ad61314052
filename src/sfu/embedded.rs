//! The embedded SFU's task: one UDP socket shared by every session, the [`Engine`] behind it,
//! and a handle through which the HTTP API (and tests) send it commands.

use std::net::SocketAddr;
use std::time::Instant;

use anyhow::Context;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::engine::{Engine, EngineError, EngineStats, TrackState, TracksOutcome};

/// Commands queued for the SFU task before callers wait.
pub const COMMAND_QUEUE: usize = 64;

/// The largest datagram the SFU reads (above any path MTU).
pub const MAX_DATAGRAM: usize = 2048;

type Reply<T> = oneshot::Sender<Result<T, EngineError>>;

#[derive(Debug)]
enum Command {
    NewSession(Reply<String>),
    Push {
        session: String,
        offer: String,
        tracks: Vec<(String, String)>,
        auto_discover: bool,
        reply: Reply<TracksOutcome>,
    },
    Pull {
        session: String,
        tracks: Vec<(String, String)>,
        reply: Reply<TracksOutcome>,
    },
    Answer {
        session: String,
        sdp: String,
        reply: Reply<()>,
    },
    Close {
        session: String,
        mids: Vec<String>,
        /// The peer's offer (`force: false`).
        offer: Option<String>,
        reply: Reply<TracksOutcome>,
    },
    State {
        session: String,
        reply: Reply<Vec<TrackState>>,
    },
    Drop {
        session: String,
        reply: Reply<bool>,
    },
    Stats(Reply<EngineStats>),
}

/// A handle on the running embedded SFU. Cheap to clone.
#[derive(Debug, Clone)]
pub struct EmbeddedSfu {
    tx: mpsc::Sender<Command>,
    udp: SocketAddr,
    candidate: SocketAddr,
}

impl EmbeddedSfu {
    /// Binds the UDP socket at `bind` and starts the SFU; host candidates advertise
    /// `candidate_ip` with the bound port. Runs until `cancel`.
    pub async fn start(
        bind: SocketAddr,
        candidate_ip: std::net::IpAddr,
        cancel: CancellationToken,
    ) -> anyhow::Result<(Self, tokio::task::JoinHandle<()>)> {
        let socket = UdpSocket::bind(bind)
            .await
            .with_context(|| format!("cannot bind CAMRELAY_SFU_UDP_ADDR {bind}"))?;
        let udp = socket.local_addr()?;
        let candidate = SocketAddr::new(candidate_ip, udp.port());
        // Refuse at start what every session would fail on (a wildcard or multicast address).
        str0m::Candidate::host(candidate, str0m::net::Protocol::Udp).map_err(|e| {
            anyhow::anyhow!(
                "{candidate_ip} cannot be advertised to WebRTC peers (CAMRELAY_WEBRTC_IP): {e}"
            )
        })?;
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        let engine = Engine::new(candidate);
        let task = tokio::spawn(run(engine, socket, rx, cancel));
        tracing::info!(udp = %udp, candidate = %candidate, "embedded SFU started");
        Ok((Self { tx, udp, candidate }, task))
    }

    /// Where the UDP socket is bound.
    pub fn udp_addr(&self) -> SocketAddr {
        self.udp
    }

    /// The host candidate it advertises.
    pub fn candidate(&self) -> SocketAddr {
        self.candidate
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, EngineError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }

    /// `sessions/new`.
    pub async fn new_session(&self) -> Result<String, EngineError> {
        self.call(Command::NewSession).await
    }

    /// `tracks/new` with local tracks and the peer's offer.
    pub async fn push(
        &self,
        session: String,
        offer: String,
        tracks: Vec<(String, String)>,
        auto_discover: bool,
    ) -> Result<TracksOutcome, EngineError> {
        self.call(|reply| Command::Push {
            session,
            offer,
            tracks,
            auto_discover,
            reply,
        })
        .await
    }

    /// `tracks/new` with remote tracks `(publisher session, track name)`.
    pub async fn pull(
        &self,
        session: String,
        tracks: Vec<(String, String)>,
    ) -> Result<TracksOutcome, EngineError> {
        self.call(|reply| Command::Pull {
            session,
            tracks,
            reply,
        })
        .await
    }

    /// `renegotiate` with the peer's answer.
    pub async fn answer(&self, session: String, sdp: String) -> Result<(), EngineError> {
        self.call(|reply| Command::Answer {
            session,
            sdp,
            reply,
        })
        .await
    }

    /// `tracks/close`: forced without `offer`, negotiated with the peer's offer.
    pub async fn close(
        &self,
        session: String,
        mids: Vec<String>,
        offer: Option<String>,
    ) -> Result<TracksOutcome, EngineError> {
        self.call(|reply| Command::Close {
            session,
            mids,
            offer,
            reply,
        })
        .await
    }

    /// `GET sessions/{id}`.
    pub async fn state(&self, session: String) -> Result<Vec<TrackState>, EngineError> {
        self.call(|reply| Command::State { session, reply }).await
    }

    /// Drops a session as if its peer vanished; `false` if there was none.
    pub async fn drop_session(&self, session: String) -> Result<bool, EngineError> {
        self.call(|reply| Command::Drop { session, reply }).await
    }

    /// The engine's counters.
    pub async fn stats(&self) -> Result<EngineStats, EngineError> {
        self.call(Command::Stats).await
    }
}

fn handle(engine: &mut Engine, command: Command, now: Instant) {
    // A caller that gave up waiting is no error of ours: its reply is dropped.
    match command {
        Command::NewSession(reply) => {
            let _ = reply.send(engine.new_session(now));
        }
        Command::Push {
            session,
            offer,
            tracks,
            auto_discover,
            reply,
        } => {
            let _ = reply.send(engine.push(&session, &offer, &tracks, auto_discover));
        }
        Command::Pull {
            session,
            tracks,
            reply,
        } => {
            let _ = reply.send(engine.pull(&session, &tracks));
        }
        Command::Answer {
            session,
            sdp,
            reply,
        } => {
            let _ = reply.send(engine.answer(now, &session, &sdp));
        }
        Command::Close {
            session,
            mids,
            offer,
            reply,
        } => {
            let _ = reply.send(engine.close(&session, &mids, offer.as_deref()));
        }
        Command::State { session, reply } => {
            let _ = reply.send(engine.state(&session));
        }
        Command::Drop { session, reply } => {
            let _ = reply.send(Ok(engine.drop_session(&session)));
        }
        Command::Stats(reply) => {
            let _ = reply.send(Ok(engine.stats()));
        }
    }
}

async fn run(
    mut engine: Engine,
    socket: UdpSocket,
    mut rx: mpsc::Receiver<Command>,
    cancel: CancellationToken,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut out = Vec::new();
    loop {
        let next = engine.poll(Instant::now(), &mut out);
        for (destination, data) in out.drain(..) {
            // UDP: a full socket buffer loses the datagram, as the network would.
            if let Err(e) = socket.send_to(&data, destination).await {
                tracing::debug!(error = %e, %destination, "SFU send failed");
            }
        }
        // A duration, not an instant: str0m runs on the wall clock, tokio's may be paused (in
        // tests), and a wall-clock deadline on a paused clock would never stop being due.
        let wait = next.saturating_duration_since(Instant::now());
        tokio::select! {
            () = cancel.cancelled() => return,
            command = rx.recv() => match command {
                Some(command) => handle(&mut engine, command, Instant::now()),
                None => return,
            },
            received = socket.recv_from(&mut buf) => match received {
                Ok((n, source)) => {
                    engine.receive(Instant::now(), source, &buf[..n]);
                }
                Err(e) => tracing::debug!(error = %e, "SFU receive failed"),
            },
            () = tokio::time::sleep(wait) => {}
        }
    }
}
