//! The accept loop: plain HTTP or TLS, HTTP/1.1 with upgrades (the agent
//! WebSocket), bounded connections, graceful shutdown.
//!
//! Each connection is a tracked task. On shutdown the listener stops, every
//! connection is asked to finish its current request, agent links are
//! closed, and draining is given a deadline.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::state::AppState;

/// How long shutdown waits for connections and links to finish.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// How long a client has to finish the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// rustls refused the certificate / key pair.
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// Loads a PEM certificate chain and private key into a TLS acceptor.
pub fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<TlsAcceptor, TlsError> {
    let pem_err = |path: &std::path::Path, reason: String| TlsError::Pem {
        path: path.display().to_string(),
        reason,
    };
    let cert_bytes = std::fs::read(cert).map_err(|e| pem_err(cert, e.to_string()))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut cert_bytes.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| pem_err(cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(pem_err(cert, "no certificate found".into()));
    }
    let key_bytes = std::fs::read(key).map_err(|e| pem_err(key, e.to_string()))?;
    let key_der = rustls_pemfile::private_key(&mut key_bytes.as_slice())
        .map_err(|e| pem_err(key, e.to_string()))?
        .ok_or_else(|| pem_err(key, "no private key found".into()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serves the hub on `listener` (plain HTTP) until `shutdown` is cancelled
/// (normally `state.shutdown`; the state's token is cancelled on the way
/// out either way, which closes every agent link).
pub async fn run(listener: TcpListener, state: AppState, shutdown: CancellationToken) {
    serve(listener, state, None, shutdown).await
}

/// Serves the hub over TLS (https / wss).
pub async fn run_tls(
    listener: TcpListener,
    state: AppState,
    tls: TlsAcceptor,
    shutdown: CancellationToken,
) {
    serve(listener, state, Some(tls), shutdown).await
}

async fn serve(
    listener: TcpListener,
    state: AppState,
    tls: Option<TlsAcceptor>,
    shutdown: CancellationToken,
) {
    let router = crate::api::router(state.clone());
    let slots = Arc::new(Semaphore::new(state.settings.max_connections));
    let tracker = state.tracker.clone();
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(err) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(%err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let router = router.clone();
        let tls = tls.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            let _permit = permit;
            match tls {
                None => serve_conn(tcp, peer, router, shutdown, false).await,
                Some(acceptor) => {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => serve_conn(stream, peer, router, shutdown, true).await,
                        Ok(Err(err)) => tracing::debug!(%peer, %err, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
    tracing::info!("shutting down: closing agent links and draining connections");
    state.shutdown.cancel();
    state.links.close_all("Hub shutting down");
    tracker.close();
    if tokio::time::timeout(DRAIN_DEADLINE, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "drain deadline passed; {} tasks still running",
            tracker.len()
        );
    }
}

async fn serve_conn<IO>(
    io: IO,
    peer: SocketAddr,
    router: Router,
    shutdown: CancellationToken,
    tls: bool,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = router.map_request(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        if tls {
            req.extensions_mut().insert(crate::install::ServedOverTls);
        }
        req
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(service))
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        res = conn.as_mut() => {
            if let Err(err) = res {
                tracing::debug!(%peer, %err, "connection ended with an error");
            }
        }
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(DRAIN_DEADLINE, conn.as_mut()).await;
        }
    }
}
