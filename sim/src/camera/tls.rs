//! The simulated camera's TLS front: terminates `rtsps://` with the test certificate and
//! forwards each connection to the plain RTSP server behind it.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::{TEST_CERT_PEM, TEST_KEY_PEM};

/// The front's task: accepts TLS on `listener` and relays to `inner` until `shutdown`.
pub(super) fn front(
    listener: TcpListener,
    inner: SocketAddr,
    shutdown: CancellationToken,
) -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    let acceptor = TlsAcceptor::from(server_config()?);
    Ok(async move {
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            let Ok((tcp, _)) = accepted else {
                return;
            };
            let acceptor = acceptor.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                tokio::select! {
                    () = shutdown.cancelled() => {}
                    result = relay(acceptor, tcp, inner) => if let Err(error) = result {
                        tracing::debug!(%error, "simulated camera TLS connection ended");
                    },
                }
            });
        }
    })
}

async fn relay(acceptor: TlsAcceptor, tcp: TcpStream, inner: SocketAddr) -> std::io::Result<()> {
    let mut tls = acceptor.accept(tcp).await?;
    let mut plain = TcpStream::connect(inner).await?;
    tokio::io::copy_bidirectional(&mut tls, &mut plain).await?;
    Ok(())
}

fn server_config() -> std::io::Result<Arc<ServerConfig>> {
    let certificates = CertificateDer::pem_slice_iter(TEST_CERT_PEM.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(std::io::Error::other)?;
    let key =
        PrivateKeyDer::from_pem_slice(TEST_KEY_PEM.as_bytes()).map_err(std::io::Error::other)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(certificates, key)
        .map_err(std::io::Error::other)?;
    Ok(Arc::new(config))
}
