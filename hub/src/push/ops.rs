//! The two Docker operations a push needs, as a trait, so the push logic
//! runs the same over the hub's `EnvClient` (local socket or edge agent) and
//! over a scripted fake in tests.
//!
//! Contract (the one `EnvClient` keeps): [`DockerOps::request`] returns a
//! whole answer; [`DockerOps::stream`] returns a [`ChunkStream`] whose
//! `next_chunk` yields body chunks, `Ok(None)` at a clean end, and an error
//! when the environment failed mid-way; dropping the stream cancels the
//! Docker request.

use std::future::Future;

use bytes::Bytes;

use crate::envs::{DockerCall, DockerResponse, EnvError};

/// A chunked Docker answer being read.
pub trait ChunkStream: Send {
    /// The next body chunk; `Ok(None)` once the answer ended cleanly.
    fn next_chunk(&mut self) -> impl Future<Output = Result<Option<Bytes>, EnvError>> + Send;

    /// Docker's HTTP status when known (the reference agent never says).
    fn status(&self) -> Option<u16>;
}

/// Docker Engine API access to one environment.
pub trait DockerOps: Send + Sync {
    /// The stream type of [`DockerOps::stream`].
    type Stream: ChunkStream;

    /// One call, whole answer.
    fn request(
        &self,
        call: DockerCall,
    ) -> impl Future<Output = Result<DockerResponse, EnvError>> + Send;

    /// One call whose answer is read chunk by chunk.
    fn stream(
        &self,
        call: DockerCall,
    ) -> impl Future<Output = Result<Self::Stream, EnvError>> + Send;
}

impl ChunkStream for crate::envs::DockerStream {
    fn next_chunk(&mut self) -> impl Future<Output = Result<Option<Bytes>, EnvError>> + Send {
        crate::envs::DockerStream::next_chunk(self)
    }

    fn status(&self) -> Option<u16> {
        crate::envs::DockerStream::status(self)
    }
}

impl DockerOps for crate::envs::EnvClient {
    type Stream = crate::envs::DockerStream;

    fn request(
        &self,
        call: DockerCall,
    ) -> impl Future<Output = Result<DockerResponse, EnvError>> + Send {
        crate::envs::EnvClient::request(self, call)
    }

    fn stream(
        &self,
        call: DockerCall,
    ) -> impl Future<Output = Result<Self::Stream, EnvError>> + Send {
        crate::envs::EnvClient::stream(self, call)
    }
}
