//! `wss://` links: a hub certificate from a private CA is trusted with
//! CA_CERT, refused without it, and accepted with TLS_SKIP_VERIFY.
//! Certificates are made per run with the `openssl` CLI
//! (`mooring_tests::procs::make_certs`).

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use mooring_protocol::{Frame, Welcome};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// A CA and a server certificate for 127.0.0.1 signed by it (openssl CLI).
fn make_certs() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "mt-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    ));
    mooring_tests::procs::make_certs(&dir, &[]);
    dir
}

/// A TLS hub: accepts, completes TLS + WebSocket, reads hello, welcomes.
/// Sends each hello's agent name, or an error text when TLS failed.
async fn tls_hub(dir: &Path) -> (String, tokio::sync::mpsc::Receiver<Result<String, String>>) {
    let certs: Vec<_> =
        rustls_pemfile::certs(&mut std::fs::read(dir.join("server.pem")).unwrap().as_slice())
            .collect::<Result<_, _>>()
            .unwrap();
    let key =
        rustls_pemfile::private_key(&mut std::fs::read(dir.join("server.key")).unwrap().as_slice())
            .unwrap()
            .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "wss://{}/api/hawser/connect",
        listener.local_addr().unwrap()
    );
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                let tls = match acceptor.accept(tcp).await {
                    Ok(t) => t,
                    Err(e) => return drop(tx.send(Err(e.to_string())).await),
                };
                let mut ws = tokio_tungstenite::accept_async(tls).await.unwrap();
                use futures_util::{SinkExt, StreamExt};
                let Some(Ok(msg)) = ws.next().await else {
                    return;
                };
                let Ok(Frame::Hello(h)) = Frame::decode(msg.to_text().unwrap()) else {
                    return;
                };
                let welcome = Frame::Welcome(Welcome::default());
                let _ = ws
                    .send(tokio_tungstenite::tungstenite::Message::text(
                        welcome.encode(),
                    ))
                    .await;
                let _ = tx.send(Ok(h.agent_name)).await;
                // Keep the link open until the agent goes.
                while let Some(Ok(_)) = ws.next().await {}
            });
        }
    });
    (url, rx)
}

fn docker_down(dir: &Path) -> PathBuf {
    let sock = dir.join("d.sock");
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    sock
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_hub_is_trusted_with_ca_cert_refused_without_and_accepted_with_skip_verify() {
    let dir = make_certs();
    let sock = docker_down(&dir);
    let (url, mut hellos) = tls_hub(&dir).await;

    // 1. CA_CERT: verified and connected.
    let mut cfg = config(&url, &sock);
    cfg.ca_cert = Some(dir.join("ca.pem"));
    let agent = start_agent(cfg).await;
    let got = tokio::time::timeout(WAIT, hellos.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, Ok("test-agent".to_string()));
    let h = agent.handle.clone();
    eventually("connected over wss", WAIT, || h.stats().connected).await;
    agent.stop().await;

    // 2. System roots only: the private CA is unknown, the handshake fails.
    let agent = start_agent(config(&url, &sock)).await;
    let got = tokio::time::timeout(WAIT, hellos.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(got.is_err(), "connected without trusting the CA: {got:?}");
    let h = agent.handle.clone();
    eventually("a retry", WAIT, || h.stats().dial_attempts >= 2).await;
    assert_eq!(h.stats().links_welcomed, 0);
    agent.stop().await;
    // Drain the failures of that agent's attempts.
    while let Ok(Some(r)) = tokio::time::timeout(Duration::from_millis(300), hellos.recv()).await {
        assert!(r.is_err());
    }

    // 3. TLS_SKIP_VERIFY: connected without the CA.
    let mut cfg = config(&url, &sock);
    cfg.tls_skip_verify = true;
    let agent = start_agent(cfg).await;
    let got = tokio::time::timeout(WAIT, hellos.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, Ok("test-agent".to_string()));
    agent.stop().await;
    std::fs::remove_dir_all(dir).unwrap();
}
