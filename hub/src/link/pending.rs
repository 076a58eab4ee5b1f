//! The table of requests a link is waiting on, keyed by request id.
//!
//! Bounded: at most `limit` entries; a full table refuses new calls with
//! [`EnvError::Busy`] instead of queueing them. Closing the table (link
//! loss) hands every waiter back so the caller fails them at once; a closed
//! table refuses new entries with the close reason.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use mooring_protocol::Headers;
use tokio::sync::{mpsc, oneshot};

use crate::envs::EnvError;

/// A whole (non-streaming) answer as the agent sent it.
#[derive(Debug)]
pub(crate) struct WholeAnswer {
    pub(crate) status: u16,
    pub(crate) headers: Headers,
    pub(crate) body: Bytes,
}

/// What a stream consumer receives, in order.
#[derive(Debug)]
pub(crate) enum StreamEvent {
    /// A chunk of the body; `status` on the first one when the agent says.
    Chunk { data: Bytes, status: Option<u16> },
    /// The agent answered a streaming request with a whole `response`.
    Whole(WholeAnswer),
    /// `stream_end` from the agent.
    End {
        status: Option<u16>,
        reason: Option<String>,
        error: Option<String>,
    },
    /// The request failed (agent `error` frame, link loss).
    Failed(EnvError),
}

/// Why a stream was failed by the hub itself, seen by its consumer when
/// the channel closes without an `End`.
pub(crate) type FailSlot = Arc<OnceLock<EnvError>>;

/// One waiting request.
#[derive(Debug)]
pub(crate) enum Waiter {
    /// A non-streaming request.
    Whole(oneshot::Sender<Result<WholeAnswer, EnvError>>),
    /// A streaming request.
    Stream {
        tx: mpsc::Sender<StreamEvent>,
        fail: FailSlot,
    },
}

impl Waiter {
    /// Delivers a failure (never blocks).
    pub(crate) fn fail(self, err: EnvError) {
        match self {
            Waiter::Whole(tx) => {
                let _ = tx.send(Err(err));
            }
            Waiter::Stream { tx, fail } => {
                let _ = fail.set(err.clone());
                // If the buffer is full the consumer still sees the error
                // through the fail slot once the channel drains and closes.
                let _ = tx.try_send(StreamEvent::Failed(err));
            }
        }
    }
}

/// The per-link table.
#[derive(Debug)]
pub(crate) struct PendingTable {
    map: HashMap<String, Waiter>,
    limit: usize,
    closed: Option<String>,
}

impl PendingTable {
    pub(crate) fn new(limit: usize) -> Self {
        PendingTable {
            map: HashMap::new(),
            limit: limit.max(1),
            closed: None,
        }
    }

    /// Adds a waiter, unless the table is closed or full.
    pub(crate) fn insert(&mut self, id: String, waiter: Waiter) -> Result<(), EnvError> {
        if let Some(reason) = &self.closed {
            return Err(EnvError::Disconnected(reason.clone()));
        }
        if self.map.len() >= self.limit {
            return Err(EnvError::Busy(format!(
                "{} requests already in flight on this agent link; retry shortly",
                self.limit
            )));
        }
        self.map.insert(id, waiter);
        Ok(())
    }

    /// Takes a waiter out.
    pub(crate) fn remove(&mut self, id: &str) -> Option<Waiter> {
        self.map.remove(id)
    }

    /// The channel of a streaming waiter, left in place.
    pub(crate) fn stream_sender(&self, id: &str) -> Option<(mpsc::Sender<StreamEvent>, FailSlot)> {
        match self.map.get(id) {
            Some(Waiter::Stream { tx, fail }) => Some((tx.clone(), fail.clone())),
            _ => None,
        }
    }

    /// Whether `id` waits for a whole answer.
    pub(crate) fn is_whole(&self, id: &str) -> bool {
        matches!(self.map.get(id), Some(Waiter::Whole(_)))
    }

    /// Entries waiting.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Closes the table and returns every waiter to be failed.
    pub(crate) fn close(&mut self, reason: &str) -> Vec<Waiter> {
        self.closed = Some(reason.to_owned());
        self.map.drain().map(|(_, w)| w).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_table_refuses_and_closed_table_names_the_reason() {
        let mut t = PendingTable::new(2);
        for i in 0..2 {
            let (tx, _rx) = oneshot::channel();
            t.insert(i.to_string(), Waiter::Whole(tx)).unwrap();
        }
        let (tx, _rx) = oneshot::channel();
        assert!(matches!(
            t.insert("x".into(), Waiter::Whole(tx)),
            Err(EnvError::Busy(_))
        ));
        let waiters = t.close("agent gone");
        assert_eq!(waiters.len(), 2);
        assert_eq!(t.len(), 0);
        let (tx, _rx) = oneshot::channel();
        match t.insert("y".into(), Waiter::Whole(tx)) {
            Err(EnvError::Disconnected(r)) => assert_eq!(r, "agent gone"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn failing_a_full_stream_still_reports_through_the_slot() {
        let (tx, mut rx) = mpsc::channel(1);
        tx.try_send(StreamEvent::Chunk {
            data: Bytes::from_static(b"a"),
            status: None,
        })
        .unwrap();
        let fail = FailSlot::default();
        Waiter::Stream {
            tx,
            fail: fail.clone(),
        }
        .fail(EnvError::Disconnected("x".into()));
        assert!(matches!(rx.recv().await, Some(StreamEvent::Chunk { .. })));
        assert!(rx.recv().await.is_none());
        assert!(matches!(fail.get(), Some(EnvError::Disconnected(_))));
    }
}
