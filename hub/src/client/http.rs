//! A small HTTP/1.1 client for a running hub (http or https), one
//! connection per request: the CLI makes a handful of calls, and a fresh
//! connection per call keeps a long SSE stream independent of the rest.
//!
//! Each response owns the task driving its connection and aborts it when
//! dropped. Bodies read whole are bounded. The API key is sent as a bearer
//! token and never appears in an error.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// Connect (TCP + TLS) timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest body read whole ([`Response::json`]).
pub const MAX_JSON_BODY: usize = 16 * 1024 * 1024;

/// Why a call to the hub failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The hub URL is not `http(s)://host[:port][/prefix]`.
    #[error("invalid hub URL {0:?}: use http://host:port or https://host")]
    BadUrl(String),
    /// Could not connect.
    #[error("cannot reach the hub at {addr}: {reason}")]
    Connect {
        /// `host:port`.
        addr: String,
        /// What failed.
        reason: String,
    },
    /// The HTTP exchange failed.
    #[error("HTTP error talking to the hub: {0}")]
    Http(String),
    /// The body was not what was expected.
    #[error("unexpected answer from the hub: {0}")]
    BadAnswer(String),
    /// The job ran and failed; the hub's message.
    #[error("{0}")]
    JobFailed(String),
}

/// Where the hub is and how to authenticate.
#[derive(Clone)]
pub struct HubClient {
    https: bool,
    host: String,
    port: u16,
    prefix: String,
    api_key: Option<String>,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for HubClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubClient")
            .field("url", &self.base_url())
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl HubClient {
    /// A client for `url` (`http://127.0.0.1:8080`, `https://hub.example.com/mooring`).
    pub fn new(url: &str, api_key: Option<String>) -> Result<HubClient, ClientError> {
        let bad = || ClientError::BadUrl(url.chars().take(200).collect());
        let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(bad());
        };
        let (authority, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let (host, port_text) = match authority.strip_prefix('[') {
            Some(v6) => {
                let (h, after) = v6.split_once(']').ok_or_else(bad)?;
                (h, after.strip_prefix(':'))
            }
            None => match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            },
        };
        let port = match port_text {
            Some(p) => p.parse::<u16>().map_err(|_| bad())?,
            None if https => 443,
            None => 80,
        };
        if host.is_empty() || host.contains(['@', ' ', '?', '#', '/']) {
            return Err(bad());
        }
        let prefix = prefix.trim_end_matches('/');
        let tls = if https { Some(tls_config()?) } else { None };
        Ok(HubClient {
            https,
            host: host.to_owned(),
            port,
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("/{prefix}")
            },
            api_key: api_key.filter(|k| !k.trim().is_empty()),
            tls,
        })
    }

    /// The base URL, for messages.
    pub fn base_url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        if self.host.contains(':') {
            format!("{scheme}://[{}]:{}{}", self.host, self.port, self.prefix)
        } else {
            format!("{scheme}://{}:{}{}", self.host, self.port, self.prefix)
        }
    }

    /// Sends one request; `path` starts with `/` and may carry a query.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Result<Response, ClientError> {
        let addr = if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        };
        let connect_err = |reason: String| ClientError::Connect {
            addr: addr.clone(),
            reason,
        };
        let tcp = tokio::time::timeout(
            CONNECT_TIMEOUT,
            TcpStream::connect((self.host.as_str(), self.port)),
        )
        .await
        .map_err(|_| connect_err(format!("no answer in {CONNECT_TIMEOUT:?}")))?
        .map_err(|e| connect_err(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{}", self.prefix, path))
            .header(http::header::HOST, &addr)
            .header(
                http::header::USER_AGENT,
                concat!("mooring-hub/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(key) = &self.api_key {
            req = req.header(http::header::AUTHORIZATION, format!("Bearer {key}"));
        }
        if body.is_some() {
            req = req.header(http::header::CONTENT_TYPE, "application/json");
        }
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ClientError::Http(e.to_string()))?;
        match &self.tls {
            Some(config) => {
                let name = rustls::pki_types::ServerName::try_from(self.host.clone())
                    .map_err(|e| connect_err(e.to_string()))?;
                let connector = tokio_rustls::TlsConnector::from(config.clone());
                let tls = tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name, tcp))
                    .await
                    .map_err(|_| connect_err("TLS handshake timed out".into()))?
                    .map_err(|e| connect_err(format!("TLS: {e}")))?;
                exchange(TokioIo::new(tls), req).await
            }
            None => exchange(TokioIo::new(tcp), req).await,
        }
    }

    /// Sends a JSON request (or none) and reads a JSON answer.
    pub async fn json(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value), ClientError> {
        let body = body.map(|b| b.to_string().into_bytes());
        let resp = self
            .send(method, path, &[("accept", "application/json")], body)
            .await?;
        let status = resp.status();
        let bytes = resp.bytes(MAX_JSON_BODY).await?;
        let value = serde_json::from_slice(&bytes).map_err(|_| {
            ClientError::BadAnswer(format!(
                "HTTP {status} with a non-JSON body: {}",
                String::from_utf8_lossy(&bytes)
                    .chars()
                    .take(200)
                    .collect::<String>()
            ))
        })?;
        Ok((status, value))
    }
}

async fn exchange<T>(io: TokioIo<T>, req: Request<Full<Bytes>>) -> Result<Response, ClientError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| ClientError::Http(e.to_string()))?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let guard = AbortOnDrop(driver);
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| ClientError::Http(e.to_string()))?;
    Ok(Response {
        inner: resp,
        _driver: guard,
    })
}

/// A response whose connection lives as long as it does.
#[derive(Debug)]
pub struct Response {
    inner: http::Response<Incoming>,
    _driver: AbortOnDrop,
}

impl Response {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.inner.status()
    }

    /// A response header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.inner.headers().get(name)?.to_str().ok()
    }

    /// The next body chunk; `Ok(None)` at the end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, ClientError> {
        loop {
            match self.inner.body_mut().frame().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(ClientError::Http(e.to_string())),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        return Ok(Some(data));
                    }
                }
            }
        }
    }

    /// The whole body, refusing more than `limit` bytes.
    pub async fn bytes(mut self, limit: usize) -> Result<Vec<u8>, ClientError> {
        let mut out = Vec::new();
        while let Some(chunk) = self.chunk().await? {
            if out.len() + chunk.len() > limit {
                return Err(ClientError::BadAnswer(format!(
                    "body larger than {limit} bytes"
                )));
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }
}

#[derive(Debug)]
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn tls_config() -> Result<Arc<rustls::ClientConfig>, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for cert in found.certs {
        let _ = roots.add(cert);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Http(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let c = HubClient::new("http://127.0.0.1:8080/", None).expect("url");
        assert_eq!(c.base_url(), "http://127.0.0.1:8080");
        let c = HubClient::new("http://hub.local/mooring/", Some("k".into())).expect("url");
        assert_eq!(c.base_url(), "http://hub.local:80/mooring");
        assert!(!format!("{c:?}").contains("\"k\""));
        for bad in [
            "ftp://x",
            "127.0.0.1:80",
            "http://",
            "http://h:notaport",
            "http://u@h",
        ] {
            assert!(HubClient::new(bad, None).is_err(), "{bad}");
        }
    }
}
