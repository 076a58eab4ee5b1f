//! A fake Docker socket for the one thing the real daemon cannot do on
//! demand: stream a gigabyte as fast as the reader takes it.
//!
//! It answers `/_ping` and `/version` (so an agent connects to it) and any
//! `GET …/get` with `bytes` bytes of a fixed pattern (default: the size it
//! was started with; `?bytes=N` overrides), chunked, in 128 KiB frames cut
//! from one shared buffer (no copy per frame). Everything else is 404.
//! It owns its accept loop and every connection task: dropping the
//! [`FakeDocker`] stops them all and removes the socket.

use std::convert::Infallible;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::UnixListener;
use tokio::task::JoinSet;

/// Bytes per body frame.
const FRAME: usize = 128 * 1024;

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// A running fake daemon.
pub struct FakeDocker {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl FakeDocker {
    /// Listens on `path`; `GET …/get` streams `default_bytes` bytes.
    pub fn start(path: &Path, default_bytes: u64) -> anyhow::Result<FakeDocker> {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)?;
        let pattern: Bytes = (0..FRAME)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<_>>()
            .into();
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    break;
                };
                let pattern = pattern.clone();
                conns.spawn(async move {
                    let svc = service_fn(move |req| {
                        let pattern = pattern.clone();
                        async move { Ok::<_, Infallible>(answer(req, &pattern, default_bytes)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
                while conns.try_join_next().is_some() {}
            }
        });
        Ok(FakeDocker {
            path: path.to_owned(),
            task,
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for FakeDocker {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

fn full(status: StatusCode, ctype: &str, body: &'static str) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())).boxed());
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert("content-type", ctype.parse().expect("static header"));
    h.insert("api-version", "1.41".parse().expect("static header"));
    resp
}

fn answer(req: Request<Incoming>, pattern: &Bytes, default_bytes: u64) -> Response<Body> {
    let path = req.uri().path();
    let route = match path.strip_prefix("/v1.") {
        Some(rest) => rest.find('/').map(|i| &rest[i..]).unwrap_or("/"),
        None => path,
    };
    if route == "/_ping" {
        return full(StatusCode::OK, "text/plain", "OK");
    }
    if route == "/version" {
        return full(
            StatusCode::OK,
            "application/json",
            r#"{"Version":"fake-bench","ApiVersion":"1.41","MinAPIVersion":"1.12"}"#,
        );
    }
    if !route.ends_with("/get") {
        return full(
            StatusCode::NOT_FOUND,
            "application/json",
            r#"{"message":"fake docker: not found"}"#,
        );
    }
    let bytes = req
        .uri()
        .query()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("bytes=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_bytes);
    let pattern = pattern.clone();
    let frames = futures_util::stream::unfold(bytes, move |left| {
        let pattern = pattern.clone();
        async move {
            if left == 0 {
                return None;
            }
            let n = (left as usize).min(FRAME);
            Some((
                Ok::<_, Infallible>(Frame::data(pattern.slice(..n))),
                left - n as u64,
            ))
        }
    });
    let mut resp = Response::new(BodyExt::boxed(StreamBody::new(frames)));
    resp.headers_mut().insert(
        "content-type",
        "application/x-tar".parse().expect("static header"),
    );
    resp
}
