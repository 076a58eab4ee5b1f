//! # mooring-docker
//!
//! The one Docker Engine API client of Mooring, shared by the agent (its
//! relay and its own calls) and the hub (the `local` environment). It owns
//! the connection to the daemon, unix socket or tcp, and the API version
//! negotiated with it (`/_ping`'s `Api-Version`, capped at what we know).
//!
//! It sends requests and hands back hyper responses whose bodies the caller
//! reads chunk by chunk; dropping a response (or its body) closes that
//! connection, which is how a Docker request is cancelled. It never
//! interprets what Docker answers beyond the version handshake, and never
//! hard-codes an API version newer than the daemon speaks.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use hyperlocal::UnixConnector;

/// How long a tcp connection to the daemon may take to open.
pub const TCP_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The newest Engine API version whose calls Mooring itself makes.
pub const MAX_CLIENT_API: &str = "1.43";

/// Where the daemon listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A unix socket path.
    Unix(PathBuf),
    /// `host:port` over plain tcp.
    Tcp(String),
}

impl Endpoint {
    /// Parses `unix:///path`, `tcp://host:port`, `http://host:port` or a
    /// bare absolute socket path.
    pub fn parse(text: &str) -> Result<Endpoint, DockerError> {
        let bad = || DockerError::BadEndpoint(text.to_owned());
        if let Some(path) = text.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(bad());
            }
            return Ok(Endpoint::Unix(PathBuf::from(path)));
        }
        for scheme in ["tcp://", "http://"] {
            if let Some(addr) = text.strip_prefix(scheme) {
                let addr = addr.trim_end_matches('/');
                if addr.is_empty() || !addr.contains(':') {
                    return Err(bad());
                }
                return Ok(Endpoint::Tcp(addr.to_owned()));
            }
        }
        if text.starts_with('/') {
            return Ok(Endpoint::Unix(PathBuf::from(text)));
        }
        Err(bad())
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix://{}", p.display()),
            Endpoint::Tcp(a) => write!(f, "tcp://{a}"),
        }
    }
}

/// What went wrong talking to the daemon.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// The endpoint text is not a form we understand.
    #[error("invalid Docker endpoint {0:?}: use unix:///path/to/docker.sock or tcp://host:port")]
    BadEndpoint(String),
    /// The daemon could not be reached or the exchange broke.
    #[error("cannot reach Docker at {endpoint}: {reason} (is dockerd running, and is the socket path right?)")]
    Unreachable {
        /// Where we tried.
        endpoint: String,
        /// The underlying error, as text.
        reason: String,
    },
    /// Reading the response body failed midway.
    #[error("reading Docker's answer failed: {0}")]
    Body(String),
    /// The answer was larger than the caller allows.
    #[error("Docker's answer exceeds {limit} bytes")]
    TooLarge {
        /// The limit in force.
        limit: usize,
    },
    /// Docker answered with an error status.
    #[error("Docker answered {status}: {message}")]
    Status {
        /// HTTP status.
        status: u16,
        /// Docker's `message`, or the body text.
        message: String,
    },
    /// A JSON answer did not parse.
    #[error("Docker's answer is not the JSON expected: {0}")]
    Json(String),
    /// The request could not be built (bad method, path or header).
    #[error("invalid Docker request: {0}")]
    BadRequest(String),
    /// No answer within the deadline.
    #[error("Docker did not answer within {0:?}")]
    Timeout(Duration),
}

/// One call, as the relay or a caller builds it.
#[derive(Debug, Clone, Default)]
pub struct DockerRequest {
    /// HTTP method (`GET`, `POST`, …).
    pub method: Method,
    /// API path with query, sent as given (`/images/json`, `/v1.41/_ping`).
    pub path: String,
    /// Request headers.
    pub headers: BTreeMap<String, String>,
    /// Request body (empty for none).
    pub body: Bytes,
}

impl DockerRequest {
    /// A body-less `GET`.
    pub fn get(path: impl Into<String>) -> Self {
        DockerRequest {
            method: Method::GET,
            path: path.into(),
            ..Default::default()
        }
    }
}

#[derive(Debug)]
enum Transport {
    Unix(Client<UnixConnector, Full<Bytes>>),
    Tcp(Client<HttpConnector, Full<Bytes>>),
}

#[derive(Debug)]
struct Inner {
    endpoint: Endpoint,
    transport: Transport,
    api_version: RwLock<Option<String>>,
}

/// A cheap-to-clone handle on one daemon.
#[derive(Debug, Clone)]
pub struct DockerClient {
    inner: Arc<Inner>,
}

/// Compares `a.b` version strings numerically.
pub fn version_lt(a: &str, b: &str) -> bool {
    let parse = |v: &str| -> Vec<u32> { v.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    parse(a) < parse(b)
}

impl DockerClient {
    /// A client for `endpoint`; connects lazily, pools connections.
    pub fn new(endpoint: Endpoint) -> Self {
        let transport = match &endpoint {
            Endpoint::Unix(_) => {
                Transport::Unix(Client::builder(TokioExecutor::new()).build(UnixConnector))
            }
            Endpoint::Tcp(_) => {
                let mut http = HttpConnector::new();
                http.set_nodelay(true);
                // A blackholed host must not hang a request for the OS's
                // ~2 min; unix sockets fail at once anyway.
                http.set_connect_timeout(Some(TCP_CONNECT_TIMEOUT));
                Transport::Tcp(Client::builder(TokioExecutor::new()).build(http))
            }
        };
        DockerClient {
            inner: Arc::new(Inner {
                endpoint,
                transport,
                api_version: RwLock::new(None),
            }),
        }
    }

    /// Where this client connects.
    pub fn endpoint(&self) -> &Endpoint {
        &self.inner.endpoint
    }

    fn uri(&self, path: &str) -> Result<Uri, DockerError> {
        match &self.inner.endpoint {
            Endpoint::Unix(sock) => Ok(hyperlocal::Uri::new(sock, path).into()),
            Endpoint::Tcp(addr) => format!("http://{addr}{path}")
                .parse()
                .map_err(|e| DockerError::BadRequest(format!("{path:?}: {e}"))),
        }
    }

    /// Sends a request as given; the caller reads (or drops) the body.
    pub async fn send(&self, req: DockerRequest) -> Result<Response<Incoming>, DockerError> {
        if !req.path.starts_with('/') {
            return Err(DockerError::BadRequest(format!(
                "path must start with '/': {:?}",
                req.path
            )));
        }
        let mut builder = Request::builder()
            .method(req.method)
            .uri(self.uri(&req.path)?)
            .header(http::header::HOST, "docker");
        for (name, value) in &req.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let request = builder
            .body(Full::new(req.body))
            .map_err(|e| DockerError::BadRequest(e.to_string()))?;
        let sent = match &self.inner.transport {
            Transport::Unix(c) => c.request(request).await,
            Transport::Tcp(c) => c.request(request).await,
        };
        sent.map_err(|e| DockerError::Unreachable {
            endpoint: self.inner.endpoint.to_string(),
            reason: error_chain(&e),
        })
    }

    /// `GET /_ping`; returns the daemon's `Api-Version` header, if any.
    pub async fn ping(&self) -> Result<Option<String>, DockerError> {
        let resp = self.send(DockerRequest::get("/_ping")).await?;
        let version = resp
            .headers()
            .get("api-version")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let status = resp.status().as_u16();
        let body = read_body(resp.into_body(), 64 * 1024).await?;
        if status != 200 {
            return Err(DockerError::Status {
                status,
                message: String::from_utf8_lossy(&body).into_owned(),
            });
        }
        Ok(version)
    }

    /// Negotiates the API version: the daemon's, capped at
    /// [`MAX_CLIENT_API`]. Remembered for [`DockerClient::versioned`].
    pub async fn negotiate(&self) -> Result<Option<String>, DockerError> {
        let daemon = self.ping().await?;
        let chosen = daemon.map(|v| {
            if version_lt(MAX_CLIENT_API, &v) {
                MAX_CLIENT_API.to_owned()
            } else {
                v
            }
        });
        if let Ok(mut slot) = self.inner.api_version.write() {
            slot.clone_from(&chosen);
        }
        Ok(chosen)
    }

    /// The negotiated version, if [`DockerClient::negotiate`] succeeded.
    pub fn api_version(&self) -> Option<String> {
        self.inner.api_version.read().ok().and_then(|v| v.clone())
    }

    /// `path` with the negotiated `/vX.Y` prefix (unchanged when none is
    /// known: the daemon then uses its own version).
    pub fn versioned(&self, path: &str) -> String {
        match self.api_version() {
            Some(v) => format!("/v{v}{path}"),
            None => path.to_owned(),
        }
    }

    /// `GET` a versioned path and parse JSON; non-2xx is an error.
    pub async fn get_json(&self, path: &str) -> Result<serde_json::Value, DockerError> {
        let resp = self.send(DockerRequest::get(self.versioned(path))).await?;
        let status = resp.status().as_u16();
        let body = read_body(resp.into_body(), 16 * 1024 * 1024).await?;
        if !(200..300).contains(&status) {
            return Err(DockerError::Status {
                status,
                message: docker_message(&body),
            });
        }
        serde_json::from_slice(&body).map_err(|e| DockerError::Json(e.to_string()))
    }

    /// The daemon's version string (`/version` → `Version`).
    pub async fn server_version(&self) -> Result<String, DockerError> {
        let v = self.get_json("/version").await?;
        Ok(v.get("Version")
            .and_then(|s| s.as_str())
            .unwrap_or("unknown")
            .to_owned())
    }
}

/// Reads a whole body, refusing more than `limit` bytes.
pub async fn read_body(mut body: Incoming, limit: usize) -> Result<Bytes, DockerError> {
    let mut out = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| DockerError::Body(error_chain(&e)))?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > limit {
                return Err(DockerError::TooLarge { limit });
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out.freeze())
}

/// Docker's error text from a JSON `{"message": …}` body, else the body.
pub fn docker_message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_owned())
}

/// An error and its sources on one line.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        assert_eq!(
            Endpoint::parse("unix:///var/run/docker.sock").unwrap(),
            Endpoint::Unix("/var/run/docker.sock".into())
        );
        assert_eq!(
            Endpoint::parse("/tmp/d.sock").unwrap(),
            Endpoint::Unix("/tmp/d.sock".into())
        );
        assert_eq!(
            Endpoint::parse("tcp://10.0.0.2:2375").unwrap(),
            Endpoint::Tcp("10.0.0.2:2375".into())
        );
        assert!(Endpoint::parse("docker.sock").is_err());
        assert!(Endpoint::parse("tcp://").is_err());
        assert!(Endpoint::parse("unix://relative").is_err());
    }

    #[test]
    fn versions_compare_numerically() {
        assert!(version_lt("1.9", "1.41"));
        assert!(version_lt("1.41", "1.43"));
        assert!(!version_lt("1.43", "1.43"));
        assert!(!version_lt("1.44", "1.43"));
    }

    #[test]
    fn docker_message_reads_json_or_text() {
        assert_eq!(
            docker_message(br#"{"message":"No such image: x"}"#),
            "No such image: x"
        );
        assert_eq!(docker_message(b"plain\n"), "plain");
    }

    #[tokio::test]
    async fn unreachable_socket_names_the_endpoint() {
        let client = DockerClient::new(Endpoint::Unix("/nonexistent/docker.sock".into()));
        let err = client.ping().await.unwrap_err();
        let text = err.to_string();
        assert!(text.contains("unix:///nonexistent/docker.sock"), "{text}");
        assert!(text.contains("is dockerd running"), "{text}");
    }
}
