//! Channels bounded by the bytes they hold as well as by count (issue 20).
//!
//! The queues from the swarm to the job manager held up to 4,096 and 1,024 messages, each up
//! to [`MAX_MESSAGE_BYTES`] (1 MiB) and decoded beside it: gigabytes, if a flood of large
//! messages arrives faster than the manager handles it. Each item here weighs what it holds
//! ([`Weigh`]) and takes that many permits of a semaphore while queued, given back as it is
//! received, so a queue never holds more than its byte budget, however the flood is shaped.
//!
//! [`MAX_MESSAGE_BYTES`]: distributeai_protocol::limits::MAX_MESSAGE_BYTES

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

/// What an item holds in memory, in bytes, near enough: the signed bodies it carries (their
/// decoded form is of the same order). Small items may weigh nothing; the count bounds them.
pub trait Weigh {
    /// Bytes held.
    fn weight(&self) -> usize;
}

/// The sending half; cloneable.
#[derive(Debug)]
pub struct Sender<T> {
    tx: mpsc::Sender<(T, Option<OwnedSemaphorePermit>)>,
    bytes: Arc<Semaphore>,
    max_bytes: usize,
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            bytes: self.bytes.clone(),
            max_bytes: self.max_bytes,
        }
    }
}

/// The receiving half.
#[derive(Debug)]
pub struct Receiver<T> {
    rx: mpsc::Receiver<(T, Option<OwnedSemaphorePermit>)>,
}

/// Why [`Sender::try_send`] gave the item back.
#[derive(Debug, PartialEq, Eq)]
pub enum TrySendError<T> {
    /// The queue holds its count or its bytes.
    Full(T),
    /// The receiver is gone.
    Closed(T),
}

/// A channel of at most `count` items and `max_bytes` bytes of them. An item heavier than
/// `max_bytes` takes the whole budget, so it passes alone.
pub fn channel<T: Weigh>(count: usize, max_bytes: usize) -> (Sender<T>, Receiver<T>) {
    let (tx, rx) = mpsc::channel(count.max(1));
    let max_bytes = max_bytes.clamp(1, u32::MAX as usize);
    (
        Sender {
            tx,
            bytes: Arc::new(Semaphore::new(max_bytes)),
            max_bytes,
        },
        Receiver { rx },
    )
}

impl<T: Weigh> Sender<T> {
    fn permits(&self, item: &T) -> u32 {
        // Within u32: `max_bytes` is clamped to it.
        item.weight().min(self.max_bytes) as u32
    }

    /// Queues `item` if the count and the bytes allow, without waiting.
    pub fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
        let permit = match self.permits(&item) {
            0 => None,
            n => match self.bytes.clone().try_acquire_many_owned(n) {
                Ok(permit) => Some(permit),
                Err(_) => return Err(TrySendError::Full(item)),
            },
        };
        self.tx.try_send((item, permit)).map_err(|e| match e {
            mpsc::error::TrySendError::Full((item, _)) => TrySendError::Full(item),
            mpsc::error::TrySendError::Closed((item, _)) => TrySendError::Closed(item),
        })
    }

    /// Queues `item`, waiting for room in count and bytes; gives it back if the receiver is
    /// gone.
    pub async fn send(&self, item: T) -> Result<(), T> {
        let permit = match self.permits(&item) {
            0 => None,
            n => match self.bytes.clone().acquire_many_owned(n).await {
                Ok(permit) => Some(permit),
                Err(_) => return Err(item),
            },
        };
        self.tx.send((item, permit)).await.map_err(|e| e.0.0)
    }

    /// Bytes queued now.
    pub fn queued_bytes(&self) -> usize {
        self.max_bytes - self.bytes.available_permits()
    }
}

impl<T> Receiver<T> {
    /// The next item, once there is one; `None` when every sender is gone.
    pub async fn recv(&mut self) -> Option<T> {
        self.rx.recv().await.map(|(item, _permit)| item)
    }

    /// The next item if one is queued.
    pub fn try_recv(&mut self) -> Result<T, mpsc::error::TryRecvError> {
        self.rx.try_recv().map(|(item, _permit)| item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Blob(usize);

    impl Weigh for Blob {
        fn weight(&self) -> usize {
            self.0
        }
    }

    #[tokio::test]
    async fn a_queue_holds_no_more_than_its_bytes() {
        let (tx, mut rx) = channel(100, 1_000);
        assert!(tx.try_send(Blob(600)).is_ok());
        assert!(matches!(tx.try_send(Blob(600)), Err(TrySendError::Full(_))));
        assert!(tx.try_send(Blob(400)).is_ok());
        assert_eq!(tx.queued_bytes(), 1_000);
        // Weightless items are bounded by the count only.
        assert!(tx.try_send(Blob(0)).is_ok());
        assert_eq!(rx.recv().await.map(|b| b.0), Some(600));
        assert_eq!(tx.queued_bytes(), 400);
        assert!(tx.try_send(Blob(600)).is_ok());
    }

    #[tokio::test]
    async fn a_queue_holds_no_more_than_its_count() {
        let (tx, mut rx) = channel(2, 1_000);
        assert!(tx.try_send(Blob(1)).is_ok());
        assert!(tx.try_send(Blob(1)).is_ok());
        assert!(matches!(tx.try_send(Blob(1)), Err(TrySendError::Full(_))));
        // The refused item's bytes were given back.
        assert_eq!(tx.queued_bytes(), 2);
        rx.recv().await;
        assert!(tx.try_send(Blob(1)).is_ok());
    }

    #[tokio::test]
    async fn a_sender_waits_for_bytes_and_an_oversized_item_passes_alone() {
        let (tx, mut rx) = channel(100, 1_000);
        tx.send(Blob(5_000))
            .await
            .map_err(|_| "closed")
            .expect("sent");
        assert_eq!(tx.queued_bytes(), 1_000);
        let waiting = {
            let tx = tx.clone();
            tokio::spawn(async move { tx.send(Blob(10)).await.is_ok() })
        };
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        assert_eq!(rx.recv().await.map(|b| b.0), Some(5_000));
        assert!(waiting.await.expect("task"));
        drop(rx);
        assert!(matches!(tx.try_send(Blob(1)), Err(TrySendError::Closed(_))));
    }
}
