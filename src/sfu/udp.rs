//! Sends a publisher's datagrams in batches. str0m hands them out one at a time; most of a video
//! frame's packets are FU-A fragments of one size, so consecutive datagrams of one size to one
//! destination go to the kernel as one UDP GSO send (`UDP_SEGMENT`, Linux): one trip through
//! the network stack instead of one per packet. Where the kernel cannot segment, `quinn-udp`
//! reports one segment at most and every datagram goes alone, as before.

use std::io;
use std::net::SocketAddr;

use quinn_udp::{Transmit, UdpSocketState};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// The most datagrams in one batch: about one 4 Mbit/s frame, and little latency added to the
/// first packet of a batch (they are all ready at once anyway).
pub const MAX_BATCH_SEGMENTS: usize = 32;

/// The most bytes in one batch: a UDP datagram's limit, which a GSO send shares.
const MAX_BATCH_BYTES: usize = 65_000;

/// Datagrams gathered for one send.
#[derive(Debug)]
pub struct Batch {
    state: UdpSocketState,
    max_segments: usize,
    buf: Vec<u8>,
    destination: Option<SocketAddr>,
    segment: usize,
    count: usize,
    /// A shorter datagram ended the batch: GSO allows only the last segment to be short.
    closed: bool,
}

impl Batch {
    /// A batch for `socket`, with what its kernel supports.
    pub fn new(socket: &UdpSocket) -> io::Result<Self> {
        let state = UdpSocketState::new(socket.into())?;
        let max_segments = state.max_gso_segments().clamp(1, MAX_BATCH_SEGMENTS);
        Ok(Self::with_max_segments(state, max_segments))
    }

    fn with_max_segments(state: UdpSocketState, max_segments: usize) -> Self {
        Self {
            state,
            max_segments,
            buf: Vec::with_capacity(MAX_BATCH_BYTES),
            destination: None,
            segment: 0,
            count: 0,
            closed: false,
        }
    }

    /// Adds a datagram if it fits the batch; `false` means: flush, then add it.
    pub fn push(&mut self, destination: SocketAddr, datagram: &[u8]) -> bool {
        if self.count == 0 {
            self.destination = Some(destination);
            self.segment = datagram.len();
            self.closed = false;
        } else if self.closed
            || self.destination != Some(destination)
            || datagram.len() > self.segment
            || self.count >= self.max_segments
            || self.buf.len() + datagram.len() > MAX_BATCH_BYTES
        {
            return false;
        } else if datagram.len() < self.segment {
            self.closed = true;
        }
        self.buf.extend_from_slice(datagram);
        self.count += 1;
        true
    }

    /// Datagrams waiting.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Sends what waits. A datagram the kernel refuses is lost, as the network would lose it.
    pub async fn flush(&mut self, socket: &UdpSocket) {
        let Some(destination) = self.destination.filter(|_| self.count > 0) else {
            return;
        };
        let transmit = Transmit {
            destination,
            ecn: None,
            contents: &self.buf,
            segment_size: (self.count > 1).then_some(self.segment),
            src_ip: None,
        };
        loop {
            if socket.writable().await.is_err() {
                break;
            }
            match socket.try_io(Interest::WRITABLE, || {
                self.state.send(socket.into(), &transmit)
            }) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                _ => break,
            }
        }
        self.buf.clear();
        self.count = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn batch(max_segments: usize) -> (UdpSocket, Batch) {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let state = UdpSocketState::new((&socket).into()).unwrap();
        (socket, Batch::with_max_segments(state, max_segments))
    }

    #[tokio::test]
    async fn equal_datagrams_batch_and_a_short_one_ends_the_batch() {
        let (_socket, mut b) = batch(8).await;
        let to: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert!(b.push(to, &[1; 100]));
        assert!(b.push(to, &[2; 100]));
        assert!(b.push(to, &[3; 40]), "a shorter last segment");
        assert!(!b.push(to, &[4; 40]), "nothing after the short one");
        assert_eq!(b.len(), 3);
        let (_socket, mut b) = batch(8).await;
        assert!(b.push(to, &[1; 100]));
        assert!(!b.push(to, &[2; 101]), "never longer than the first");
        let other: SocketAddr = "127.0.0.1:10".parse().unwrap();
        assert!(!b.push(other, &[2; 100]), "one destination per batch");
        let (_socket, mut b) = batch(2).await;
        assert!(b.push(to, &[1; 100]) && b.push(to, &[1; 100]));
        assert!(!b.push(to, &[1; 100]), "at most the kernel's segments");
    }

    #[tokio::test]
    async fn a_flushed_batch_arrives_as_separate_datagrams() {
        let receiver = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        receiver
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let to = receiver.local_addr().unwrap();
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut b = Batch::new(&socket).unwrap();
        // Linux segments on loopback: the GSO path is the one under test.
        #[cfg(target_os = "linux")]
        assert!(b.max_segments > 1, "{}", b.max_segments);
        let mut sent = Vec::new();
        for (i, len) in [1100, 1100, 1100, 300].into_iter().enumerate() {
            let datagram = vec![u8::try_from(i).unwrap(); len];
            if !b.push(to, &datagram) {
                b.flush(&socket).await;
                assert!(b.push(to, &datagram));
            }
            sent.push(datagram);
        }
        b.flush(&socket).await;
        assert!(b.is_empty());
        let mut buf = [0; 2048];
        for datagram in &sent {
            let n = receiver.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], &datagram[..]);
        }
    }
}
