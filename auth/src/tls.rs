//! Transport security for both services' listeners: TLS with rustls (the `ring` provider, the
//! one the AWS SDK already builds), and the rule that a non-loopback listener needs TLS or an
//! explicit acknowledgement that something in front of it terminates TLS.
//!
//! [`ServerListener`] is an `axum::serve::Listener`, plain or TLS, so `axum::serve` keeps its
//! graceful shutdown. TLS handshakes run on their own tasks (with a timeout), so one slow or
//! silent client cannot hold up the accept loop.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::either::Either;

/// Installs ring as the process's rustls provider, once; later calls (and a provider someone
/// else installed first) leave it as it is.
///
/// reqwest is built with `rustls-no-provider` (no aws-lc to compile), so building any reqwest
/// client before a provider is installed panics. Everything that builds one goes through
/// [`http_client`], or calls this first.
pub fn install_crypto_provider() {
    // An `Err` only says a provider is already installed: exactly the state we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A reqwest client builder that speaks https (rustls with ring, the platform's trust store).
pub fn http_client() -> reqwest::ClientBuilder {
    install_crypto_provider();
    reqwest::Client::builder()
}

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections handshaken and waiting for `accept`; beyond it, handshakes wait.
const READY_QUEUE: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("read the TLS certificate chain {path}: {why}")]
    Certificate { path: String, why: String },
    #[error("read the TLS private key {path}: {why}")]
    Key { path: String, why: String },
    #[error("the TLS certificate and key do not make a server configuration: {0}")]
    Config(String),
    #[error(
        "{addr} is reachable from other machines, so it needs TLS: pass --tls-cert and --tls-key, \
         or --insecure-http if a load balancer in front of it terminates TLS"
    )]
    PlainOffLoopback { addr: SocketAddr },
}

/// A rustls server configuration from PEM files: a certificate chain and its private key.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Certificate {
            path: cert.display().to_string(),
            why: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::Certificate {
            path: cert.display().to_string(),
            why: "no CERTIFICATE block".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.display().to_string(),
        why: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    Ok(Arc::new(config))
}

/// Plain HTTP is allowed on loopback only, unless the operator says a TLS-terminating proxy
/// stands in front (`insecure_http`).
pub fn check_plain_allowed(addr: SocketAddr, insecure_http: bool) -> Result<(), TlsError> {
    if addr.ip().is_loopback() || insecure_http {
        Ok(())
    } else {
        Err(TlsError::PlainOffLoopback { addr })
    }
}

/// A listener for `axum::serve`: plain TCP, or TLS over it.
pub struct ServerListener {
    addr: SocketAddr,
    inner: Inner,
}

enum Inner {
    Plain(TcpListener),
    Tls {
        ready: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
        acceptor: tokio::task::JoinHandle<()>,
    },
}

impl ServerListener {
    pub fn plain(tcp: TcpListener) -> std::io::Result<Self> {
        Ok(ServerListener {
            addr: tcp.local_addr()?,
            inner: Inner::Plain(tcp),
        })
    }

    pub fn tls(tcp: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<Self> {
        let addr = tcp.local_addr()?;
        let (tx, ready) = tokio::sync::mpsc::channel(READY_QUEUE);
        let tls = TlsAcceptor::from(config);
        let acceptor = tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: pause, as axum's TCP listener does.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                if tx.is_closed() {
                    return;
                }
                let (tls, ready) = (tls.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            let _ = ready.send((stream, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(ServerListener {
            addr,
            inner: Inner::Tls { ready, acceptor },
        })
    }

    /// The address bound (with port 0, the one the system chose).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.addr)
    }

    /// `https` or `http`, for the URLs a banner prints.
    pub fn scheme(&self) -> &'static str {
        match self.inner {
            Inner::Plain(_) => "http",
            Inner::Tls { .. } => "https",
        }
    }
}

impl Drop for ServerListener {
    fn drop(&mut self) {
        if let Inner::Tls { acceptor, .. } = &self.inner {
            acceptor.abort();
        }
    }
}

impl axum::serve::Listener for ServerListener {
    type Io = Either<TlsStream<TcpStream>, TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match &mut self.inner {
            Inner::Plain(tcp) => {
                let (stream, peer) = axum::serve::Listener::accept(tcp).await;
                (Either::Right(stream), peer)
            }
            Inner::Tls { ready, .. } => match ready.recv().await {
                Some((stream, peer)) => (Either::Left(stream), peer),
                // The acceptor task ended (it never does while we hold the receiver): wait
                // for shutdown rather than spin.
                None => std::future::pending().await,
            },
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_for_loopback_unless_acknowledged() {
        let table = [
            ("127.0.0.1:7878", false, true),
            ("[::1]:7878", false, true),
            ("0.0.0.0:7878", false, false),
            ("10.1.2.3:7878", false, false),
            ("0.0.0.0:7878", true, true),
        ];
        for (addr, insecure, allowed) in table {
            let addr: SocketAddr = addr.parse().expect("address");
            assert_eq!(
                check_plain_allowed(addr, insecure).is_ok(),
                allowed,
                "{addr}"
            );
        }
    }
}
