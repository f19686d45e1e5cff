//! Emptied frame batches, handed back to be filled again. Frames cross three threads (capture →
//! supervisor → run loop); a new batch at every hop, freed on the next thread, made the
//! allocator return pages to the kernel and fault fresh zeroed ones in again, which cost the
//! supervisor more per frame than ordering the frames did.

use std::sync::{Arc, Mutex, PoisonError};

use crate::capture::DecodedFrame;

/// Batches kept at most: enough for the frames in flight, not a hoard after a burst.
const MAX_SPARE: usize = 64;

/// A shared stock of empty batches of one size. Cheap to clone; `take` and `give` may be
/// called from any thread.
#[derive(Clone)]
pub struct FramePool {
    spare: Arc<Mutex<Vec<Vec<DecodedFrame>>>>,
    capacity: usize,
}

impl FramePool {
    /// A pool of batches holding `capacity` frames.
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self { spare: Arc::new(Mutex::new(Vec::new())), capacity }
    }

    /// An empty batch, reused when one was given back.
    #[must_use]
    pub fn take(&self) -> Vec<DecodedFrame> {
        // A thread that panicked holding the lock left a plain list: still usable.
        let reused = self.spare.lock().unwrap_or_else(PoisonError::into_inner).pop();
        reused.unwrap_or_else(|| Vec::with_capacity(self.capacity))
    }

    /// Batches in stock.
    #[cfg(test)]
    pub(crate) fn spare_len(&self) -> usize {
        self.spare.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Hands a batch back; its frames are dropped here. Batches of another size, or past the
    /// stock's limit, are simply freed.
    pub fn give(&self, mut batch: Vec<DecodedFrame>) {
        batch.clear();
        if batch.capacity() != self.capacity {
            return;
        }
        let mut spare = self.spare.lock().unwrap_or_else(PoisonError::into_inner);
        if spare.len() < MAX_SPARE {
            spare.push(batch);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_batches_come_back_empty_and_the_stock_is_bounded() {
        let pool = FramePool::new(8);
        let mut batch = pool.take();
        assert_eq!(batch.capacity(), 8);
        batch.push(DecodedFrame {
            ts: crate::time::Timestamp(1),
            interface: 0,
            decoded: Err(crate::decode::SkipReason::Truncated),
            raw: None,
        });
        let address = batch.as_ptr();
        pool.give(batch);
        let again = pool.take();
        assert!(again.is_empty());
        assert_eq!(again.as_ptr(), address, "the same allocation is reused");
        // Another size is not kept: it would be the wrong size for the next taker.
        pool.give(Vec::with_capacity(3));
        assert_eq!(pool.take().capacity(), 8);
        for _ in 0..MAX_SPARE + 10 {
            pool.give(Vec::with_capacity(8));
        }
        assert_eq!(pool.spare.lock().unwrap().len(), MAX_SPARE);
    }
}
