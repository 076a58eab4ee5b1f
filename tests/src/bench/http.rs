//! The harness's HTTP client of the hub (keep-alive, Nagle off, admin key),
//! and body drainers that count bytes without keeping them.
//!
//! The direct baselines use `mooring_docker::DockerClient`, the client the
//! agent itself uses, so both sides of each ratio read with hyper.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// A client of one hub's HTTP API.
#[derive(Clone)]
pub struct HubClient {
    addr: SocketAddr,
    key: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl HubClient {
    /// A client for the hub at `addr` using API key `key`.
    pub fn new(addr: SocketAddr, key: &str) -> Self {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(256)
            .build(http);
        HubClient {
            addr,
            key: key.to_owned(),
            client,
        }
    }

    /// Sends a request; the caller reads (or drops) the body.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> anyhow::Result<Response<Incoming>> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr))
            .header("authorization", format!("Bearer {}", self.key));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        Ok(self.client.request(req.body(Full::new(body))?).await?)
    }

    /// `GET path`: status and body as text.
    pub async fn get_text(&self, path: &str) -> anyhow::Result<(u16, String)> {
        let resp = self.send(Method::GET, path, &[], Bytes::new()).await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    /// `POST path` with a JSON body: status and the JSON answer.
    pub async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<(u16, serde_json::Value)> {
        let resp = self
            .send(
                Method::POST,
                path,
                &[("content-type", "application/json")],
                Bytes::from(body.to_string()),
            )
            .await?;
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await?.to_bytes();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&bytes).into()));
        Ok((status, value))
    }
}

/// Reads a body to its end; returns the number of bytes.
pub async fn drain(mut body: Incoming) -> anyhow::Result<u64> {
    let mut n = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            n += data.len() as u64;
        }
    }
    Ok(n)
}

/// Reads a body to its end, keeping at most `keep` bytes of it (for
/// checking a Docker progress stream); returns the total and the kept text.
pub async fn drain_keep(mut body: Incoming, keep: usize) -> anyhow::Result<(u64, Vec<u8>)> {
    let mut n = 0u64;
    let mut kept = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            n += data.len() as u64;
            let room = keep.saturating_sub(kept.len());
            kept.extend_from_slice(&data[..room.min(data.len())]);
        }
    }
    Ok((n, kept))
}
