//! The bounded queue between Docker's event stream and the link.
//!
//! Docker's stream is read without pause (a subscriber that stalls makes
//! Docker drop its events silently); frames wait here until the link's
//! channel takes them. When the queue is full the **oldest** frame is
//! dropped and counted ([`TelemetryStatus::events_dropped`]): the newest
//! state of a container matters most to a dashboard. It never grows past
//! its capacity and never blocks the reader.

use std::collections::VecDeque;
use std::future::Future;

use mooring_protocol::Frame;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::TelemetryStatus;

/// How a [`Outbox::drive`] ended.
#[derive(Debug)]
pub(crate) enum Drive<T> {
    /// The future finished.
    Done(T),
    /// Shutdown was requested.
    Shutdown,
    /// The link's channel is closed: nobody will take frames any more.
    Closed,
}

/// Frames on their way to the link, at most `capacity` of them.
#[derive(Debug)]
pub(crate) struct Outbox {
    out: mpsc::Sender<Frame>,
    queue: VecDeque<Frame>,
    capacity: usize,
    status: watch::Sender<TelemetryStatus>,
    /// Frames dropped since the queue last drained (for one summary log).
    dropped_in_burst: u64,
}

impl Outbox {
    /// An outbox of `capacity` (at least 1) frames in front of `out`.
    pub(crate) fn new(
        out: mpsc::Sender<Frame>,
        capacity: usize,
        status: watch::Sender<TelemetryStatus>,
    ) -> Self {
        let capacity = capacity.max(1);
        Outbox {
            out,
            queue: VecDeque::with_capacity(capacity.min(1024)),
            capacity,
            status,
            dropped_in_burst: 0,
        }
    }

    /// Queues a frame, dropping the oldest one when full.
    pub(crate) fn push(&mut self, frame: Frame) {
        if self.queue.len() >= self.capacity {
            self.queue.pop_front();
            if self.dropped_in_burst == 0 {
                warn!(
                    capacity = self.capacity,
                    "link congested: dropping the oldest container events"
                );
            }
            self.dropped_in_burst += 1;
            self.status.send_modify(|s| s.events_dropped += 1);
        }
        self.queue.push_back(frame);
    }

    /// Frames waiting.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    /// Awaits `fut` while handing queued frames to the link as it takes
    /// them; ends early on shutdown or when the link's channel is closed.
    pub(crate) async fn drive<F: Future>(
        &mut self,
        fut: F,
        shutdown: &CancellationToken,
    ) -> Drive<F::Output> {
        tokio::pin!(fut);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Drive::Shutdown,
                permit = self.out.reserve(), if !self.queue.is_empty() => {
                    let Ok(permit) = permit else { return Drive::Closed };
                    if let Some(frame) = self.queue.pop_front() {
                        permit.send(frame);
                        self.status.send_modify(|s| s.events_sent += 1);
                    }
                    if self.queue.is_empty() && self.dropped_in_burst > 0 {
                        info!(dropped = self.dropped_in_burst, "link caught up with container events");
                        self.dropped_in_burst = 0;
                    }
                }
                value = &mut fut => return Drive::Done(value),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mooring_protocol::{ContainerEvent, ContainerEventFrame};

    fn ev(n: usize) -> Frame {
        Frame::ContainerEvent(ContainerEventFrame {
            event: ContainerEvent {
                container_id: n.to_string(),
                ..Default::default()
            },
        })
    }

    fn id(f: &Frame) -> String {
        match f {
            Frame::ContainerEvent(c) => c.event.container_id.clone(),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn full_queue_drops_the_oldest_and_counts() {
        let (tx, mut rx) = mpsc::channel(1);
        let (status, status_rx) = watch::channel(TelemetryStatus::default());
        let mut outbox = Outbox::new(tx, 3, status);
        for n in 0..5 {
            outbox.push(ev(n));
        }
        assert_eq!(outbox.len(), 3);
        assert_eq!(status_rx.borrow().events_dropped, 2);
        // The link takes frames one at a time: 2, 3, 4 arrive in order.
        let token = CancellationToken::new();
        let mut got = Vec::new();
        while got.len() < 3 {
            match outbox.drive(rx.recv(), &token).await {
                Drive::Done(Some(f)) => got.push(id(&f)),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(got, ["2", "3", "4"]);
        assert_eq!(status_rx.borrow().events_sent, 3);
    }

    #[tokio::test]
    async fn closed_link_and_shutdown_end_the_drive() {
        let (tx, rx) = mpsc::channel(1);
        drop(rx);
        let (status, _keep) = watch::channel(TelemetryStatus::default());
        let mut outbox = Outbox::new(tx, 3, status);
        outbox.push(ev(1));
        let token = CancellationToken::new();
        let pending = std::future::pending::<()>();
        assert!(matches!(outbox.drive(pending, &token).await, Drive::Closed));
        token.cancel();
        let pending = std::future::pending::<()>();
        assert!(matches!(
            outbox.drive(pending, &token).await,
            Drive::Shutdown
        ));
    }
}
