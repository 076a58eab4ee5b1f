//! The one writer of a link: every outgoing frame passes through here.
//!
//! Two bounded queues feed the socket sink. The control queue (pongs, pings,
//! small refusals, the close frame) is small and always polled first, so a
//! busy stream cannot starve liveness. The data queue carries relay output
//! and is bounded twice: by frame count and by encoded bytes (a semaphore
//! whose permits travel with each queued frame and are released once the
//! frame is written). A relay that produces faster than the hub reads
//! therefore waits in [`Outbox::send`], which in turn stops it reading from
//! Docker: backpressure reaches the daemon and memory stays flat.
//!
//! This module never decides what to send, and never reads from the socket.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{Sink, SinkExt};
use mooring_protocol::Frame;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_util::sync::CancellationToken;

/// Depth of the control queue (frames).
const CONTROL_QUEUE: usize = 64;
/// Depth of the data queue (frames); the byte budget usually binds first.
const DATA_QUEUE: usize = 256;

/// The link is gone (or going): nothing more can be sent on it.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the hub link is closed")]
pub(crate) struct LinkClosed;

struct Queued {
    msg: Message,
    _permit: OwnedSemaphorePermit,
}

/// The sending side of a link, cheap to clone; one per connection.
#[derive(Clone)]
pub(crate) struct Outbox {
    control: mpsc::Sender<Message>,
    data: mpsc::Sender<Queued>,
    budget: Arc<Semaphore>,
    budget_bytes: usize,
    link: CancellationToken,
}

/// The receiving side, owned by [`run_writer`].
pub(crate) struct Inbox {
    control: mpsc::Receiver<Message>,
    data: mpsc::Receiver<Queued>,
}

/// A fresh pair of queues for a link whose liveness is `link`; at most
/// `budget_bytes` of encoded data frames wait at any time.
pub(crate) fn queues(budget_bytes: usize, link: CancellationToken) -> (Outbox, Inbox) {
    let (ctx, crx) = mpsc::channel(CONTROL_QUEUE);
    let (dtx, drx) = mpsc::channel(DATA_QUEUE);
    let budget_bytes = budget_bytes.clamp(64 * 1024, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
    let outbox = Outbox {
        control: ctx,
        data: dtx,
        budget: Arc::new(Semaphore::new(budget_bytes)),
        budget_bytes,
        link,
    };
    (
        outbox,
        Inbox {
            control: crx,
            data: drx,
        },
    )
}

impl Outbox {
    /// Queues a data frame, waiting while the queue is full. Fails at once
    /// when the link is lost.
    pub(crate) async fn send(&self, frame: &Frame) -> Result<(), LinkClosed> {
        self.send_message(Message::text(frame.encode())).await
    }

    /// [`Outbox::send`] for a message already encoded (stream chunks are
    /// encoded straight from the borrowed bytes, as text or binary).
    pub(crate) async fn send_message(&self, msg: Message) -> Result<(), LinkClosed> {
        // `select!` picks at random among ready arms: check first, so a lost
        // link fails every send at once even while the queue has room.
        if self.link.is_cancelled() {
            return Err(LinkClosed);
        }
        // A frame larger than the whole budget takes all of it: it then
        // travels alone, and the bound still holds (plus that one frame).
        let cost = msg.len().clamp(1, self.budget_bytes) as u32;
        let permit = tokio::select! {
            p = self.budget.clone().acquire_many_owned(cost) => p.map_err(|_| LinkClosed)?,
            _ = self.link.cancelled() => return Err(LinkClosed),
        };
        let queued = Queued {
            msg,
            _permit: permit,
        };
        tokio::select! {
            r = self.data.send(queued) => r.map_err(|_| LinkClosed),
            _ = self.link.cancelled() => Err(LinkClosed),
        }
    }

    /// Queues a control frame ahead of data without waiting; when even the
    /// control queue is full the frame is dropped (and logged): the reader
    /// must never block on the writer.
    pub(crate) fn send_control(&self, frame: &Frame) {
        self.push_control(Message::text(frame.encode()));
    }

    /// Queues a close frame ahead of everything else.
    pub(crate) fn close(&self, reason: &str) {
        self.push_control(Message::Close(Some(CloseFrame {
            code: CloseCode::Away,
            reason: reason.to_owned().into(),
        })));
    }

    fn push_control(&self, msg: Message) {
        if let Err(err) = self.control.try_send(msg) {
            tracing::warn!(%err, "control queue full or closed: frame dropped");
        }
    }

    /// Whether the link this outbox belongs to is gone.
    pub(crate) fn is_closed(&self) -> bool {
        self.link.is_cancelled()
    }
}

/// Why the writer stopped.
#[derive(Debug)]
pub(crate) enum WriterEnd {
    /// Asked to stop, or the queues closed.
    Stopped,
    /// A close frame was written.
    Closed,
    /// Writing failed or stalled; the link is dead.
    Failed(String),
}

/// Writes queued frames to `sink` until `stop` is cancelled, a close frame
/// is written, or a write fails or takes longer than `stall`. On failure it
/// cancels `link` so every relay of the link stops.
pub(crate) async fn run_writer<S>(
    mut sink: S,
    mut inbox: Inbox,
    stop: CancellationToken,
    link: CancellationToken,
    stall: Duration,
) -> WriterEnd
where
    S: Sink<Message, Error = WsError> + Unpin,
{
    loop {
        let (msg, _permit) = tokio::select! {
            biased;
            _ = stop.cancelled() => return WriterEnd::Stopped,
            Some(m) = inbox.control.recv() => (m, None),
            Some(q) = inbox.data.recv() => (q.msg, Some(q._permit)),
            else => return WriterEnd::Stopped,
        };
        let is_close = matches!(msg, Message::Close(_));
        let result = tokio::select! {
            _ = stop.cancelled() => return WriterEnd::Stopped,
            r = tokio::time::timeout(stall, sink.send(msg)) => r,
        };
        match result {
            Ok(Ok(())) if is_close => return WriterEnd::Closed,
            Ok(Ok(())) => forget_write_waker(&mut sink),
            Ok(Err(err)) => {
                link.cancel();
                return WriterEnd::Failed(err.to_string());
            }
            Err(_) => {
                link.cancel();
                return WriterEnd::Failed(format!("a write to the hub stalled for {stall:?}"));
            }
        }
    }
}

/// Leaves a no-op waker, not this task's, registered with the socket.
///
/// tokio-tungstenite keeps the waker of the last sink poll and wakes it on
/// *every* readiness event of the socket, reads included (one proxy wakes
/// both halves). So once a frame was written, each frame the hub sends would
/// wake this idle writer for nothing as well as the reader: two tasks per
/// incoming frame, which on a multi-threaded runtime sends one of them to the
/// other worker (a futex wake and a context switch per request). The writer
/// is not waiting on the socket between sends (its next send registers
/// again), so an empty flush with a no-op waker is all it takes. The flush
/// writes nothing: the frame was flushed by the send that just completed.
fn forget_write_waker<S>(sink: &mut S)
where
    S: Sink<Message, Error = WsError> + Unpin,
{
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let _ = std::pin::Pin::new(sink).poll_flush(&mut cx);
}

#[cfg(test)]
mod tests {
    use super::*;
    use mooring_protocol::{Pong, StreamChunk};

    fn chunk(n: usize) -> Frame {
        Frame::Stream(StreamChunk {
            request_id: "r".into(),
            data: vec![0; n],
            ..Default::default()
        })
    }

    #[tokio::test]
    async fn data_queue_is_bounded_by_bytes() {
        let link = CancellationToken::new();
        let (out, _inbox) = queues(256 * 1024, link.clone());
        let mut sent = 0usize;
        loop {
            let r = tokio::time::timeout(Duration::from_millis(50), out.send(&chunk(30_000))).await;
            match r {
                Ok(Ok(())) => sent += 1,
                Ok(Err(e)) => panic!("{e}"),
                Err(_) => break,
            }
        }
        // 30 kB of bytes is ~40 kB encoded: 6 fit in 256 KiB, the 7th waits.
        assert_eq!(sent, 6);
        link.cancel();
        assert!(out.send(&chunk(1)).await.is_err());
    }

    #[tokio::test]
    async fn control_frames_overtake_queued_data() {
        let link = CancellationToken::new();
        let (out, inbox) = queues(1024 * 1024, link.clone());
        for _ in 0..5 {
            out.send(&chunk(100)).await.unwrap();
        }
        out.send_control(&Frame::Pong(Pong::default()));
        let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
        let sink = Box::pin(futures_util::sink::unfold(
            tx,
            |tx, msg: Message| async move {
                tx.send(msg).map_err(|_| WsError::ConnectionClosed)?;
                Ok::<_, WsError>(tx)
            },
        ));
        let stop = CancellationToken::new();
        let writer = tokio::spawn(run_writer(
            sink,
            inbox,
            stop.clone(),
            link,
            Duration::from_secs(5),
        ));
        let first = rx.recv().await.unwrap();
        assert!(first.to_text().unwrap().contains("\"pong\""), "{first:?}");
        for _ in 0..5 {
            assert!(rx
                .recv()
                .await
                .unwrap()
                .to_text()
                .unwrap()
                .contains("\"stream\""));
        }
        stop.cancel();
        assert!(matches!(writer.await.unwrap(), WriterEnd::Stopped));
    }
}
