//! `rtsps://` for retina, which speaks plain `rtsp://` only: a loopback bridge per upstream
//! session.
//!
//! The bridge listens on `127.0.0.1`, and retina is handed `rtsp://127.0.0.1:PORT/path?query`
//! (the camera's path and query, so Nest's `?auth=` token travels untouched). Each connection
//! retina opens becomes a TLS connection to the camera. Requests going up have their
//! Request-URI prefix put back (`rtsp://127.0.0.1:PORT` → `rtsps://host:port`), interleaved
//! RTP/RTCP frames pass unchanged, and everything coming down is copied as it is.
//!
//! retina signs Digest credentials for the loopback URI, so with the camera's credentials the
//! bridge also puts the camera's URI into the `Authorization` header's `uri` and signs it
//! again (see [`super::digest`]): servers that check that `uri` against the Request-URI, as
//! MediaMTX does, would refuse the request otherwise.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::{Bytes, BytesMut};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_util::sync::{CancellationToken, DropGuard};
use url::Url;

use super::digest;
use crate::camera::Credentials;

/// The port of an `rtsps://` URL that names none (RFC 7826 §19.4).
pub const RTSPS_DEFAULT_PORT: u16 = 322;

/// Longest request header the bridge forwards (retina's requests are a few hundred bytes).
pub const MAX_REQUEST_HEADER: usize = 16 * 1024;

/// Bytes read from retina at a time.
const READ_CHUNK: usize = 8 * 1024;

/// TLS client settings for cameras: one that verifies certificates (platform roots plus
/// `CAMRELAY_EXTRA_CA_FILE`), one that does not (`CAMRELAY_CAMERA_<KEY>_TLS_VERIFY=false`).
#[derive(Clone)]
pub struct TlsClients {
    verified: Result<Arc<ClientConfig>, String>,
    unverified: Arc<ClientConfig>,
}

impl std::fmt::Debug for TlsClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClients")
            .field("verified", &self.verified.as_ref().map(|_| "ready"))
            .finish_non_exhaustive()
    }
}

impl TlsClients {
    /// Builds both settings. An unreadable or empty extra CA file is an error; a platform
    /// without usable roots is not (the error is kept and reported by each session that needs
    /// verification), since plain `rtsp://` cameras still work.
    pub fn new(extra_ca_file: Option<&Path>) -> anyhow::Result<Self> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let extra = match extra_ca_file {
            Some(path) => load_certificates(path)
                .with_context(|| format!("CAMRELAY_EXTRA_CA_FILE {}", path.display()))?,
            None => Vec::new(),
        };
        let verified = rustls_platform_verifier::Verifier::new_with_extra_roots(
            extra.clone(),
            Arc::clone(&provider),
        )
        .map(|verifier| Arc::new(verifier) as Arc<dyn ServerCertVerifier>)
        .or_else(|platform_error| {
            // No usable system roots: the extra CA alone, if there is one.
            if extra.is_empty() {
                return Err(format!("no trusted root certificates: {platform_error}"));
            }
            let mut roots = rustls::RootCertStore::empty();
            roots.add_parsable_certificates(extra);
            rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                Arc::clone(&provider),
            )
            .build()
            .map(|v| v as Arc<dyn ServerCertVerifier>)
            .map_err(|e| e.to_string())
        })
        .and_then(|verifier| client_config(&provider, verifier).map_err(|e| e.to_string()));
        let unverified = client_config(
            &provider,
            Arc::new(AcceptAnyCertificate {
                algorithms: provider.signature_verification_algorithms,
            }),
        )?;
        Ok(Self {
            verified,
            unverified,
        })
    }

    /// The settings for a camera, verifying its certificate or not.
    pub fn config(&self, verify: bool) -> Result<Arc<ClientConfig>, String> {
        if verify {
            self.verified.clone()
        } else {
            Ok(Arc::clone(&self.unverified))
        }
    }
}

fn client_config(
    provider: &Arc<CryptoProvider>,
    verifier: Arc<dyn ServerCertVerifier>,
) -> anyhow::Result<Arc<ClientConfig>> {
    let config = ClientConfig::builder_with_provider(Arc::clone(provider))
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Every certificate in a PEM file; at least one.
fn load_certificates(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path).context("cannot read it")?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("not a PEM certificate file: {e}"))?;
    anyhow::ensure!(!certificates.is_empty(), "it holds no PEM certificate");
    Ok(certificates)
}

/// Accepts any certificate chain but still checks that the server holds its key (the
/// handshake signatures), for cameras with self-signed certificates the operator chose to
/// trust.
#[derive(Debug)]
struct AcceptAnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A running bridge to one `rtsps://` camera; stops when dropped.
pub struct Bridge {
    url: Url,
    route: Arc<Route>,
    _stop: DropGuard,
}

impl Bridge {
    /// Starts a bridge to `remote` (an `rtsps://` URL). `connect_timeout` bounds each TCP
    /// connect and TLS handshake. `credentials` are the ones retina signs Digest requests
    /// with, so that the bridge can sign them again for the camera's URI.
    pub async fn start(
        remote: &Url,
        tls: Arc<ClientConfig>,
        connect_timeout: Duration,
        credentials: Option<Credentials>,
    ) -> std::io::Result<Self> {
        let host = remote
            .host_str()
            .ok_or_else(|| std::io::Error::other("the camera URL has no host"))?
            .to_owned();
        let port = remote.port().unwrap_or(RTSPS_DEFAULT_PORT);
        // IPv6 literals come bracketed from the URL; the TLS name and the socket want them bare.
        let bare_host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let server_name = ServerName::try_from(bare_host.clone())
            .map_err(|_| std::io::Error::other("the camera URL's host is not a valid TLS name"))?;
        let listener = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
        let local = listener.local_addr()?;
        let local_prefix = format!("rtsp://{local}");
        let remote_prefix = format!("rtsps://{host}:{port}");
        let mut url = remote.clone();
        // Infallible for an rtsp URL with a host: the scheme is special-free, the port valid.
        let _ = url.set_scheme("rtsp");
        let _ = url.set_host(Some("127.0.0.1"));
        let _ = url.set_port(Some(local.port()));
        let stop = CancellationToken::new();
        let route = Arc::new(Route {
            connector: TlsConnector::from(tls),
            server_name,
            host: bare_host,
            port,
            local_prefix,
            remote_prefix,
            connect_timeout,
            credentials,
            failure: std::sync::Mutex::new(None),
        });
        tokio::spawn(accept(listener, Arc::clone(&route), stop.clone()));
        Ok(Self {
            url,
            route,
            _stop: stop.drop_guard(),
        })
    }

    /// The URL to hand retina.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Why the last connection to the camera failed (TCP connect or TLS handshake), if it did:
    /// retina only sees the loopback connection close.
    pub fn failure(&self) -> Option<String> {
        self.route
            .failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge")
            .field("local", &self.url.port())
            .finish_non_exhaustive()
    }
}

/// Where a bridge's connections go.
struct Route {
    connector: TlsConnector,
    server_name: ServerName<'static>,
    host: String,
    port: u16,
    local_prefix: String,
    remote_prefix: String,
    connect_timeout: Duration,
    credentials: Option<Credentials>,
    /// Why the last connection to the camera failed, if it did.
    failure: std::sync::Mutex<Option<String>>,
}

async fn accept(listener: TcpListener, route: Arc<Route>, stop: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            // Only this process can reach a loopback port, but any local process could: the
            // bridge serves whoever connects for as long as the session lives, like the camera.
            Ok((local, _)) => {
                let route = Arc::clone(&route);
                let stop = stop.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        () = stop.cancelled() => {}
                        result = relay(local, &route) => if let Err(error) = result {
                            tracing::debug!(%error, "rtsps bridge connection ended");
                        },
                    }
                });
            }
            Err(error) => {
                tracing::debug!(%error, "rtsps bridge accept failed");
                return;
            }
        }
    }
}

async fn relay(local: TcpStream, route: &Route) -> std::io::Result<()> {
    let _ = local.set_nodelay(true);
    let connect = async {
        let tcp = TcpStream::connect((route.host.as_str(), route.port)).await?;
        let _ = tcp.set_nodelay(true);
        route
            .connector
            .connect(route.server_name.clone(), tcp)
            .await
    };
    let tls = match tokio::time::timeout(route.connect_timeout, connect).await {
        Ok(Ok(tls)) => tls,
        failed => {
            let message = match failed {
                Err(_) => "TLS connect timed out".to_owned(),
                Ok(Err(e)) => format!("TLS connect failed: {e}"),
                Ok(Ok(_)) => String::new(),
            };
            // retina only sees the loopback connection close; keep the reason for the session.
            *route
                .failure
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(message.clone());
            return Err(std::io::Error::other(message));
        }
    };
    let (mut local_read, mut local_write) = local.into_split();
    let (mut remote_read, mut remote_write) = tokio::io::split(tls);
    let up = async {
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        loop {
            while let Some(message) = take_message(&mut buf)? {
                let mut message =
                    rewrite_request_uri(message, &route.local_prefix, &route.remote_prefix);
                if let Some(credentials) = &route.credentials {
                    message = resign_authorization(
                        message,
                        &route.local_prefix,
                        &route.remote_prefix,
                        credentials,
                    );
                }
                remote_write.write_all(&message).await?;
            }
            buf.reserve(READ_CHUNK);
            if local_read.read_buf(&mut buf).await? == 0 {
                remote_write.shutdown().await?;
                return Ok::<(), std::io::Error>(());
            }
        }
    };
    let down = tokio::io::copy(&mut remote_read, &mut local_write);
    tokio::select! {
        result = up => result,
        result = down => result.map(|_| ()),
    }
}

/// Takes the next complete message retina sent from `buf`: an interleaved frame (`$`, channel,
/// 16-bit length, data) or a request with its body. `None` until one is complete.
pub fn take_message(buf: &mut BytesMut) -> std::io::Result<Option<Bytes>> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    if first == b'$' {
        if buf.len() < 4 {
            return Ok(None);
        }
        let len = 4 + usize::from(u16::from_be_bytes([buf[2], buf[3]]));
        if buf.len() < len {
            return Ok(None);
        }
        return Ok(Some(buf.split_to(len).freeze()));
    }
    let Some(end) = find(buf, b"\r\n\r\n") else {
        if buf.len() > MAX_REQUEST_HEADER {
            return Err(invalid("request header too long"));
        }
        return Ok(None);
    };
    let header_len = end + 4;
    let body_len = content_length(&buf[..end])?;
    let total = header_len
        .checked_add(body_len)
        .ok_or_else(|| invalid("bad Content-Length"))?;
    if buf.len() < total {
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    Ok(Some(buf.split_to(total).freeze()))
}

/// The request's `Content-Length` (0 if absent); bodies beyond [`MAX_REQUEST_HEADER`] are
/// refused, as retina never sends one.
fn content_length(header: &[u8]) -> std::io::Result<usize> {
    let text = std::str::from_utf8(header).map_err(|_| invalid("request header is not UTF-8"))?;
    for line in text.split("\r\n").skip(1) {
        if let Some((name, value)) = line.split_once(':')
            && name.trim().eq_ignore_ascii_case("content-length")
        {
            let len: usize = value
                .trim()
                .parse()
                .map_err(|_| invalid("bad Content-Length"))?;
            if len > MAX_REQUEST_HEADER {
                return Err(invalid("request body too long"));
            }
            return Ok(len);
        }
    }
    Ok(0)
}

/// Puts the camera's scheme, host and port back into a request line addressed to the bridge.
/// Interleaved frames and other requests pass unchanged.
pub fn rewrite_request_uri(message: Bytes, local_prefix: &str, remote_prefix: &str) -> Bytes {
    if message.first() == Some(&b'$') {
        return message;
    }
    let Some(method_end) = message.iter().position(|&b| b == b' ') else {
        return message;
    };
    let uri_start = method_end + 1;
    let uri_len = message[uri_start..]
        .iter()
        .position(|&b| b == b' ')
        .unwrap_or(message.len() - uri_start);
    let uri_end = uri_start + uri_len;
    let Some(uri) = std::str::from_utf8(&message[uri_start..uri_end])
        .ok()
        .and_then(|uri| camera_uri(uri, local_prefix, remote_prefix))
    else {
        return message;
    };
    let mut out = BytesMut::with_capacity(message.len() + remote_prefix.len());
    out.extend_from_slice(&message[..uri_start]);
    out.extend_from_slice(uri.as_bytes());
    out.extend_from_slice(&message[uri_end..]);
    out.freeze()
}

/// `uri` with the bridge's prefix replaced by the camera's, if it starts with it.
fn camera_uri(uri: &str, local_prefix: &str, remote_prefix: &str) -> Option<String> {
    let rest = uri.strip_prefix(local_prefix)?;
    (rest.is_empty() || rest.starts_with(['/', '?'])).then(|| format!("{remote_prefix}{rest}"))
}

/// Signs a request's Digest `Authorization` again for the camera's URI when retina signed it
/// for the bridge's. Other messages, and headers that cannot be re-signed, pass unchanged.
pub fn resign_authorization(
    message: Bytes,
    local_prefix: &str,
    remote_prefix: &str,
    credentials: &Credentials,
) -> Bytes {
    use secrecy::ExposeSecret;
    if message.first() == Some(&b'$') {
        return message;
    }
    let Some(head_end) = find(&message, b"\r\n\r\n") else {
        return message;
    };
    let Ok(head) = std::str::from_utf8(&message[..head_end]) else {
        return message;
    };
    let Some(method) = head.split(' ').next() else {
        return message;
    };
    let mut changed = false;
    let lines: Vec<std::borrow::Cow<'_, str>> = head
        .split("\r\n")
        .map(|line| {
            let resigned = line.split_once(':').and_then(|(name, value)| {
                if !name.trim().eq_ignore_ascii_case("authorization") {
                    return None;
                }
                let value = digest::resign(
                    value,
                    method,
                    &credentials.username,
                    credentials.password.expose_secret(),
                    |uri| camera_uri(uri, local_prefix, remote_prefix),
                )?;
                Some(format!("{name}: {value}"))
            });
            match resigned {
                Some(line) => {
                    changed = true;
                    line.into()
                }
                None => line.into(),
            }
        })
        .collect();
    if !changed {
        return message;
    }
    let mut out = BytesMut::with_capacity(message.len() + remote_prefix.len() + 64);
    out.extend_from_slice(lines.join("\r\n").as_bytes());
    out.extend_from_slice(&message[head_end..]);
    out.freeze()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn invalid(message: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message.to_owned())
}

#[cfg(test)]
mod tests {
    use md5::Digest as _;

    use super::*;

    #[test]
    fn frames_requests_and_interleaved_data() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(b"$\x01\x00\x03abc");
        buf.extend_from_slice(b"SET_PARAMETER rtsp://127.0.0.1:5/x RTSP/1.0\r\nCSeq: 4\r\n");
        let frame = take_message(&mut buf).unwrap().unwrap();
        assert_eq!(&frame[..], b"$\x01\x00\x03abc");
        assert!(
            take_message(&mut buf).unwrap().is_none(),
            "header incomplete"
        );
        buf.extend_from_slice(b"Content-length: 2\r\n\r\nhi$\x00");
        let request = take_message(&mut buf).unwrap().unwrap();
        assert!(request.ends_with(b"\r\n\r\nhi"));
        assert!(
            take_message(&mut buf).unwrap().is_none(),
            "frame header incomplete"
        );
        assert_eq!(&buf[..], b"$\x00");
    }

    #[test]
    fn refuses_what_retina_never_sends() {
        let mut buf = BytesMut::from(&b"GET / RTSP/1.0\r\nContent-Length: 99999999\r\n\r\n"[..]);
        assert!(take_message(&mut buf).is_err());
        let mut buf = BytesMut::from(&b"GET / RTSP/1.0\r\nContent-Length: x\r\n\r\n"[..]);
        assert!(take_message(&mut buf).is_err());
        let mut buf = BytesMut::from(vec![b'a'; MAX_REQUEST_HEADER + 1].as_slice());
        assert!(take_message(&mut buf).is_err());
    }

    #[test]
    fn signs_digest_again_for_the_camera_uri_and_leaves_the_rest() {
        use secrecy::SecretString;
        let local = "rtsp://127.0.0.1:4000";
        let remote = "rtsps://cam.example:322";
        let credentials = Credentials {
            username: "admin".into(),
            password: SecretString::from("pa:ss".to_owned()),
        };
        // What retina sends (RFC 2069 style, as http-auth writes without qop).
        let sign = |uri: &str| {
            let ha1 = format!("{:x}", md5::Md5::digest(b"admin:cam:pa:ss"));
            let ha2 = format!("{:x}", md5::Md5::digest(format!("DESCRIBE:{uri}")));
            let response = format!("{:x}", md5::Md5::digest(format!("{ha1}:n0nce:{ha2}")));
            format!(
                "Digest username=\"admin\", realm=\"cam\", uri=\"{uri}\", nonce=\"n0nce\", \
                 response=\"{response}\""
            )
        };
        let request = |uri: &str, authorization: &str| {
            Bytes::from(format!(
                "DESCRIBE {uri} RTSP/1.0\r\nCSeq: 2\r\nAuthorization: {authorization}\r\n\
                 User-Agent: camrelay\r\n\r\n"
            ))
        };
        let sent = request(
            "rtsps://cam.example:322/live?x=1",
            &sign("rtsp://127.0.0.1:4000/live?x=1"),
        );
        let resigned = resign_authorization(sent, local, remote, &credentials);
        let expected = request(
            "rtsps://cam.example:322/live?x=1",
            &sign("rtsps://cam.example:322/live?x=1"),
        );
        assert_eq!(resigned, expected);

        // Signed for the camera already, signed with other credentials, or interleaved data:
        // unchanged.
        let wrong = Credentials {
            username: "admin".into(),
            password: SecretString::from("other".to_owned()),
        };
        for (message, credentials) in [
            (expected.clone(), &credentials),
            (
                request(
                    "rtsps://cam.example:322/live",
                    &sign("rtsp://127.0.0.1:4000/live"),
                ),
                &wrong,
            ),
            (Bytes::from_static(b"$\x00\x00\x01x"), &credentials),
            (Bytes::from_static(b"OPTIONS * RTSP/1.0\r\n"), &credentials),
        ] {
            let same = resign_authorization(message.clone(), local, remote, credentials);
            assert_eq!(same, message);
        }
    }

    #[test]
    fn rewrites_only_the_bridge_prefix() {
        let local = "rtsp://127.0.0.1:4000";
        let remote = "rtsps://cam.example:443";
        let request = Bytes::from_static(
            b"DESCRIBE rtsp://127.0.0.1:4000/sdm_live_stream/x?auth=t RTSP/1.0\r\nCSeq: 1\r\n\r\n",
        );
        assert_eq!(
            &rewrite_request_uri(request, local, remote)[..],
            b"DESCRIBE rtsps://cam.example:443/sdm_live_stream/x?auth=t RTSP/1.0\r\nCSeq: 1\r\n\r\n"
        );
        // An absolute URI from Content-Base already names the camera; a longer port is not ours.
        for untouched in [
            &b"SETUP rtsps://cam.example:443/s/trackID=0 RTSP/1.0\r\n\r\n"[..],
            b"OPTIONS rtsp://127.0.0.1:40000/ RTSP/1.0\r\n\r\n",
            b"OPTIONS * RTSP/1.0\r\n\r\n",
            b"$\x00\x00\x01x",
        ] {
            let message = Bytes::copy_from_slice(untouched);
            assert_eq!(rewrite_request_uri(message.clone(), local, remote), message);
        }
    }
}
