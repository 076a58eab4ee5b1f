//! Agent links: the `/api/hawser/connect` endpoint and the registry of live
//! links, one per environment.
//!
//! A live link is a [`LinkHandle`]. The registry ([`Links`]) maps an
//! environment id to its handle; taking a handle out of the registry *is*
//! the disconnect: [`LinkHandle::close`] cancels the link's tasks and fails
//! every pending request and stream of that link at once with a clear
//! error. The map sits behind a `std::sync::Mutex` that is never held
//! across an await.
//!
//! # Layout
//! - [`endpoint`]: the WebSocket upgrade, the `hello` handshake, token
//!   checks, conflict resolution between agents.
//! - [`session`]: the tasks that own one socket (reader, writer).
//! - [`heartbeat`]: the one sweep over all links: pings, silence, last-seen
//!   and token re-checks.
//! - [`pending`]: the per-link table of requests waiting for answers.
//! - [`calls`]: sending a Docker call over a link and collecting the answer.
//! - [`ratelimit`]: failed-auth delays per source IP and the reconnect
//!   throttle per environment.
//!
//! This module never talks to Docker and never parses what Docker says.

pub mod calls;
pub mod endpoint;
pub mod heartbeat;
pub mod pending;
pub mod ratelimit;
pub mod session;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use mooring_protocol::Frame;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::envs::EnvError;
use crate::metrics::LinkCounters;
use crate::store::{now_secs, AgentRecord};

pub use endpoint::router;
use pending::PendingTable;

/// How long a refused second agent stays visible as a conflict.
pub const CONFLICT_VISIBLE_SECS: i64 = 300;

/// Current unix time in milliseconds.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Knobs of one link, copied from the hub settings.
#[derive(Debug, Clone)]
pub struct LinkLimits {
    /// Requests and streams waiting for an answer, at most.
    pub max_pending: usize,
    /// Chunks buffered per stream before the reader waits for the consumer.
    pub stream_buffer: usize,
    /// How long the reader waits for a slow stream consumer before failing
    /// that stream (the link is not dropped).
    pub stream_stall: Duration,
    /// Outgoing frames queued for the writer, at most.
    pub writer_queue: usize,
}

/// One live agent link. Cheap to clone; all clones are the same link.
#[derive(Clone)]
pub struct LinkHandle {
    inner: Arc<LinkInner>,
}

struct LinkInner {
    env_id: i64,
    conn_id: u64,
    token_id: i64,
    agent: AgentRecord,
    stream_status: bool,
    binary_stream: bool,
    last_seen_ms: AtomicI64,
    out: mpsc::Sender<Frame>,
    cancels: mpsc::UnboundedSender<String>,
    pending: Mutex<PendingTable>,
    cancel: CancellationToken,
    close_reason: Mutex<Option<String>>,
    limits: LinkLimits,
    counters: LinkCounters,
    /// The hub's last unanswered ping: its timestamp and when it left.
    ping_out: Mutex<Option<(i64, std::time::Instant)>>,
    /// Round trip of the last answered ping, microseconds (-1: none yet).
    rtt_us: AtomicI64,
    /// When the hub last queued a ping, unix ms (0: never).
    last_ping_ms: AtomicI64,
    /// Cancelled once the session has recorded and published this link's
    /// end (the link that replaces it waits for that, so events and stored
    /// status read old-end before new-start).
    retired: CancellationToken,
}

impl std::fmt::Debug for LinkHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkHandle")
            .field("env_id", &self.inner.env_id)
            .field("conn_id", &self.inner.conn_id)
            .field("agent_id", &self.inner.agent.id)
            .finish()
    }
}

/// The receiving ends a session task needs for a new link.
pub(crate) struct LinkQueues {
    pub(crate) out_rx: mpsc::Receiver<Frame>,
    pub(crate) cancels_rx: mpsc::UnboundedReceiver<String>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl LinkHandle {
    /// A new link (not yet registered) and the queues its session drains.
    pub(crate) fn new(
        env_id: i64,
        conn_id: u64,
        token_id: i64,
        agent: AgentRecord,
        limits: LinkLimits,
        parent: &CancellationToken,
        counters: LinkCounters,
    ) -> (LinkHandle, LinkQueues) {
        let (out, out_rx) = mpsc::channel(limits.writer_queue.max(1));
        // Unbounded on purpose: each pending request is cancelled at most
        // once, so this queue never holds more than `max_pending` ids.
        let (cancels, cancels_rx) = mpsc::unbounded_channel();
        let stream_status = agent
            .capabilities
            .iter()
            .any(|c| c == mooring_protocol::caps::STREAM_STATUS);
        let binary_stream = agent
            .capabilities
            .iter()
            .any(|c| c == mooring_protocol::caps::BINARY_STREAM);
        let handle = LinkHandle {
            inner: Arc::new(LinkInner {
                env_id,
                conn_id,
                token_id,
                agent,
                stream_status,
                binary_stream,
                last_seen_ms: AtomicI64::new(now_ms()),
                out,
                cancels,
                pending: Mutex::new(PendingTable::new(limits.max_pending)),
                cancel: parent.child_token(),
                close_reason: Mutex::new(None),
                limits,
                counters,
                ping_out: Mutex::new(None),
                rtt_us: AtomicI64::new(-1),
                last_ping_ms: AtomicI64::new(0),
                retired: CancellationToken::new(),
            }),
        };
        (handle, LinkQueues { out_rx, cancels_rx })
    }

    /// Environment of this link.
    pub fn env_id(&self) -> i64 {
        self.inner.env_id
    }

    /// Unique number of this connection within the hub process.
    pub fn conn_id(&self) -> u64 {
        self.inner.conn_id
    }

    /// Token the agent authenticated with.
    pub fn token_id(&self) -> i64 {
        self.inner.token_id
    }

    /// The agent as it introduced itself.
    pub fn agent(&self) -> &AgentRecord {
        &self.inner.agent
    }

    /// The agent reports Docker's status on stream frames (Mooring agent).
    pub fn reports_stream_status(&self) -> bool {
        self.inner.stream_status
    }

    /// The agent announced binary stream-data messages (extension); the
    /// hub accepts them on this link, and only on such links.
    pub fn binary_stream(&self) -> bool {
        self.inner.binary_stream
    }

    /// Last frame received, unix milliseconds.
    pub fn last_seen_ms(&self) -> i64 {
        self.inner.last_seen_ms.load(Ordering::Relaxed)
    }

    pub(crate) fn touch(&self) {
        self.inner.last_seen_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// The link's metrics counters (frames, bytes, requests).
    pub fn counters(&self) -> &LinkCounters {
        &self.inner.counters
    }

    /// Round trip of the last ping the hub timed, in milliseconds.
    pub fn rtt_ms(&self) -> Option<f64> {
        let us = self.inner.rtt_us.load(Ordering::Relaxed);
        (us >= 0).then(|| us as f64 / 1000.0)
    }

    /// Queues a timed ping carrying `now` (unix ms) for the writer; false
    /// when the writer queue is full (the ping is skipped).
    pub(crate) fn send_ping(&self, now: i64) -> bool {
        // Noted before it is queued, so that its pong always finds it.
        *lock(&self.inner.ping_out) = Some((now, std::time::Instant::now()));
        self.inner.last_ping_ms.store(now, Ordering::Relaxed);
        self.try_send(Frame::Ping(mooring_protocol::Ping {
            timestamp: Some(now.into()),
        }))
    }

    /// A `pong` arrived. A pong that echoes a hub timestamp (a number close
    /// to the hub's clock in ms) answers the timed ping only if it echoes
    /// exactly that one (not a probe's); a pong carrying the agent's own
    /// clock (the reference agent sends unix seconds) or nothing answers
    /// the outstanding timed ping. The round trip is then recorded.
    pub(crate) fn pong_received(&self, timestamp: Option<&serde_json::Number>) {
        const ECHO_WINDOW_MS: i64 = 3_600_000;
        let mut out = lock(&self.inner.ping_out);
        let Some((sent_ts, sent_at)) = *out else {
            return;
        };
        let matches = match timestamp.and_then(|n| n.as_i64().or(n.as_f64().map(|f| f as i64))) {
            Some(ts) if (ts - now_ms()).abs() < ECHO_WINDOW_MS => ts == sent_ts,
            _ => true,
        };
        if matches {
            *out = None;
            let us = i64::try_from(sent_at.elapsed().as_micros()).unwrap_or(i64::MAX);
            self.inner.rtt_us.store(us, Ordering::Relaxed);
        }
    }

    /// When the hub last queued a ping on this link, unix ms (0: never).
    pub(crate) fn last_ping_ms(&self) -> i64 {
        self.inner.last_ping_ms.load(Ordering::Relaxed)
    }

    /// The session has recorded and published this link's end.
    pub(crate) fn retire(&self) {
        self.inner.retired.cancel();
    }

    /// Waits until [`LinkHandle::retire`], at most `within`.
    pub(crate) async fn wait_retired(&self, within: Duration) {
        let _ = tokio::time::timeout(within, self.inner.retired.cancelled()).await;
    }

    /// Token cancelled when the link closes.
    pub fn cancelled_token(&self) -> &CancellationToken {
        &self.inner.cancel
    }

    /// Whether the link has been closed.
    pub fn is_closed(&self) -> bool {
        self.inner.cancel.is_cancelled()
    }

    /// Why the link closed, once it has.
    pub fn close_reason(&self) -> Option<String> {
        lock(&self.inner.close_reason).clone()
    }

    /// Closes the link: its tasks stop, every pending request and stream
    /// fails at once with "Edge agent disconnected: {reason}". Idempotent;
    /// the first reason wins.
    pub fn close(&self, reason: &str) {
        {
            let mut slot = lock(&self.inner.close_reason);
            if slot.is_some() {
                return;
            }
            *slot = Some(reason.to_owned());
        }
        tracing::info!(env_id = self.inner.env_id, agent_id = %self.inner.agent.id, reason, "agent link closed");
        self.inner.cancel.cancel();
        let waiters = lock(&self.inner.pending).close(reason);
        let err = EnvError::Disconnected(reason.to_owned());
        for waiter in waiters {
            waiter.fail(err.clone());
        }
    }

    /// Queues a frame for the writer; waits while the queue is full.
    pub(crate) async fn send(&self, frame: Frame) -> Result<(), EnvError> {
        tokio::select! {
            sent = self.inner.out.send(frame) => sent.map_err(|_| self.disconnected()),
            _ = self.inner.cancel.cancelled() => Err(self.disconnected()),
        }
    }

    /// Queues a frame without waiting; false when the queue is full.
    pub(crate) fn try_send(&self, frame: Frame) -> bool {
        self.inner.out.try_send(frame).is_ok()
    }

    /// Asks the agent to stop `request_id` (sends `stream_end`
    /// "cancelled") and forgets the request. Never blocks.
    pub(crate) fn cancel_request(&self, request_id: &str) {
        let was_pending = lock(&self.inner.pending).remove(request_id).is_some();
        if was_pending && !self.is_closed() {
            let _ = self.inner.cancels.send(request_id.to_owned());
        }
    }

    /// Requests and streams of this link waiting for an answer.
    pub fn pending_count(&self) -> usize {
        lock(&self.inner.pending).len()
    }

    pub(crate) fn pending(&self) -> MutexGuard<'_, PendingTable> {
        lock(&self.inner.pending)
    }

    pub(crate) fn limits(&self) -> &LinkLimits {
        &self.inner.limits
    }

    /// The error pending calls see once the link is gone.
    pub(crate) fn disconnected(&self) -> EnvError {
        EnvError::Disconnected(
            self.close_reason()
                .unwrap_or_else(|| "link closed".to_owned()),
        )
    }

    /// Pings the agent and waits up to `within` for any frame from it.
    /// True when the link is alive.
    pub async fn probe(&self, within: Duration) -> bool {
        if self.is_closed() {
            return false;
        }
        let asked_at = now_ms();
        let ping = Frame::Ping(mooring_protocol::Ping {
            timestamp: Some(asked_at.into()),
        });
        if !self.try_send(ping) {
            // A full writer queue means the socket is not draining.
            return false;
        }
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if self.last_seen_ms() >= asked_at {
                return true;
            }
            if self.is_closed() || tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(25)) => {}
                _ = self.inner.cancel.cancelled() => return false,
            }
        }
    }
}

/// A second agent that was refused because another one holds the link.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Conflict {
    /// The refused agent's id.
    pub agent_id: String,
    /// The refused agent's name.
    pub agent_name: String,
    /// Its host name.
    pub hostname: String,
    /// When it was last refused, unix seconds.
    pub at: i64,
    /// The agent holding the link at that time.
    pub live_agent_id: String,
}

/// The link table is full.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the hub already serves {0} agent links (--max-links)")]
pub struct TooManyLinks(pub usize);

/// The registry of live links, one per environment. Cheap to clone.
#[derive(Clone)]
pub struct Links {
    inner: Arc<Mutex<LinksInner>>,
    next_conn: Arc<AtomicU64>,
    max_links: usize,
}

struct LinksInner {
    live: HashMap<i64, LinkHandle>,
    conflicts: HashMap<i64, Conflict>,
}

impl Links {
    /// An empty registry holding at most `max_links` links.
    pub fn new(max_links: usize) -> Links {
        Links {
            inner: Arc::new(Mutex::new(LinksInner {
                live: HashMap::new(),
                conflicts: HashMap::new(),
            })),
            next_conn: Arc::new(AtomicU64::new(1)),
            max_links,
        }
    }

    pub(crate) fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// The live link of an environment.
    pub fn get(&self, env_id: i64) -> Option<LinkHandle> {
        lock(&self.inner).live.get(&env_id).cloned()
    }

    /// Every live link, as of now (the lock is not held afterwards).
    pub(crate) fn snapshot(&self) -> Vec<LinkHandle> {
        lock(&self.inner).live.values().cloned().collect()
    }

    /// Number of live links.
    pub fn len(&self) -> usize {
        lock(&self.inner).live.len()
    }

    /// No live link at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Registers `link`, replacing (and returning) the previous link of
    /// its environment, which the caller must close.
    pub(crate) fn insert(&self, link: LinkHandle) -> Result<Option<LinkHandle>, TooManyLinks> {
        let mut inner = lock(&self.inner);
        let env_id = link.env_id();
        if !inner.live.contains_key(&env_id) && inner.live.len() >= self.max_links {
            return Err(TooManyLinks(self.max_links));
        }
        inner.conflicts.remove(&env_id);
        Ok(inner.live.insert(env_id, link))
    }

    /// Removes and closes the link of `env_id`, if any.
    pub fn disconnect(&self, env_id: i64, reason: &str) -> bool {
        let removed = {
            let mut inner = lock(&self.inner);
            inner.conflicts.remove(&env_id);
            inner.live.remove(&env_id)
        };
        match removed {
            Some(link) => {
                link.close(reason);
                true
            }
            None => false,
        }
    }

    /// Removes and closes the link of `env_id` only if it is connection
    /// `conn_id` (a newer link may have replaced it).
    pub(crate) fn disconnect_if(&self, env_id: i64, conn_id: u64, reason: &str) {
        let removed = {
            let mut inner = lock(&self.inner);
            match inner.live.get(&env_id) {
                Some(l) if l.conn_id() == conn_id => inner.live.remove(&env_id),
                _ => None,
            }
        };
        if let Some(link) = removed {
            link.close(reason);
        }
    }

    /// Closes every link authenticated with `token_id`; returns how many.
    pub fn disconnect_token(&self, token_id: i64, reason: &str) -> usize {
        let removed: Vec<LinkHandle> = {
            let mut inner = lock(&self.inner);
            let envs: Vec<i64> = inner
                .live
                .iter()
                .filter(|(_, l)| l.token_id() == token_id)
                .map(|(e, _)| *e)
                .collect();
            envs.iter().filter_map(|e| inner.live.remove(e)).collect()
        };
        for link in &removed {
            link.close(reason);
        }
        removed.len()
    }

    /// Closes every link (hub shutdown).
    pub fn close_all(&self, reason: &str) {
        let all: Vec<LinkHandle> = lock(&self.inner).live.drain().map(|(_, l)| l).collect();
        for link in all {
            link.close(reason);
        }
    }

    /// Remembers that an agent was refused for `env_id`.
    pub(crate) fn record_conflict(&self, env_id: i64, conflict: Conflict) {
        let mut inner = lock(&self.inner);
        // Bounded: at most one entry per environment with a live link.
        if inner.live.contains_key(&env_id) {
            inner.conflicts.insert(env_id, conflict);
        }
    }

    /// The recent conflict of an environment, if one is still visible.
    pub fn conflict(&self, env_id: i64) -> Option<Conflict> {
        let inner = lock(&self.inner);
        inner
            .conflicts
            .get(&env_id)
            .filter(|c| now_secs() - c.at <= CONFLICT_VISIBLE_SECS)
            .cloned()
    }
}
