//! A scripted [`DockerOps`] for the push tests: fixed answers for inspect
//! and tag, a scripted chunk stream for the push, and a record of calls.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use mooring_protocol::Headers;

use super::ops::{ChunkStream, DockerOps};
use crate::envs::{DockerCall, DockerResponse, EnvError};

/// One scripted step of the push stream.
#[derive(Debug, Clone)]
pub(crate) enum Item {
    Chunk(&'static [u8]),
    Owned(Vec<u8>),
    /// From here on, `status()` reports this.
    Status(u16),
    Fail(EnvError),
    /// Never answers (for cancellation).
    Hang,
}

#[derive(Debug)]
pub(crate) struct Fake {
    pub(crate) inspect: Result<DockerResponse, EnvError>,
    pub(crate) tag: Result<DockerResponse, EnvError>,
    pub(crate) stream_open: Option<EnvError>,
    pub(crate) script: Vec<Item>,
    pub(crate) initial_status: Option<u16>,
    pub(crate) calls: Mutex<Vec<DockerCall>>,
    pub(crate) stream_dropped: Arc<AtomicBool>,
}

pub(crate) fn response(status: u16, body: &str) -> DockerResponse {
    DockerResponse {
        status,
        headers: Headers::new(),
        body: Bytes::from(body.to_owned()),
    }
}

impl Fake {
    pub(crate) fn new(script: Vec<Item>) -> Self {
        Fake {
            inspect: Ok(response(
                200,
                r#"{"Id":"sha256:abc","RepoTags":["rig/busybox:1"]}"#,
            )),
            tag: Ok(response(201, "")),
            stream_open: None,
            script,
            initial_status: None,
            calls: Mutex::new(Vec::new()),
            stream_dropped: Arc::new(AtomicBool::new(false)),
        }
    }

    pub(crate) fn calls(&self) -> Vec<DockerCall> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    fn record(&self, call: &DockerCall) {
        if let Ok(mut calls) = self.calls.lock() {
            calls.push(call.clone());
        }
    }
}

#[derive(Debug)]
pub(crate) struct FakeStream {
    items: VecDeque<Item>,
    status: Option<u16>,
    dropped: Arc<AtomicBool>,
}

impl Drop for FakeStream {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::SeqCst);
    }
}

impl ChunkStream for FakeStream {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, EnvError> {
        loop {
            match self.items.pop_front() {
                None => return Ok(None),
                Some(Item::Chunk(c)) => return Ok(Some(Bytes::from_static(c))),
                Some(Item::Owned(c)) => return Ok(Some(Bytes::from(c))),
                Some(Item::Status(s)) => self.status = Some(s),
                Some(Item::Fail(e)) => return Err(e),
                Some(Item::Hang) => std::future::pending::<()>().await,
            }
        }
    }

    fn status(&self) -> Option<u16> {
        self.status
    }
}

impl DockerOps for Fake {
    type Stream = FakeStream;

    async fn request(&self, call: DockerCall) -> Result<DockerResponse, EnvError> {
        self.record(&call);
        if call.path.contains("/tag?") {
            self.tag.clone()
        } else {
            self.inspect.clone()
        }
    }

    async fn stream(&self, call: DockerCall) -> Result<FakeStream, EnvError> {
        self.record(&call);
        if let Some(err) = &self.stream_open {
            return Err(err.clone());
        }
        Ok(FakeStream {
            items: self.script.clone().into(),
            status: self.initial_status,
            dropped: self.stream_dropped.clone(),
        })
    }
}
