//! A capture thread: reads one interface (or the `any` device) through libpcap, decodes each
//! frame where it was captured and sends batches and libpcap's counters to the supervisor. It
//! must not decide anything about interfaces: the supervisor attaches and detaches them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pcap::{Active, Capture};

use super::pcap_reason;
use super::pool::FramePool;
use crate::capture::file::sll2_ifindex;
use crate::capture::{DecodedFrame, Frame};
use crate::decode::LinkType;
use crate::time::Timestamp;

/// Most frames per batch; a batch also ends whenever the kernel has nothing more ready.
pub(super) const BATCH_FRAMES: usize = 256;

/// From a capture thread to the supervisor.
pub(super) enum Internal {
    Frames(Vec<DecodedFrame>),
    Stats {
        index: u16,
        received: u32,
        dropped: u32,
        if_dropped: u32,
    },
    Ended {
        index: u16,
        error: Option<String>,
    },
    /// Nothing to take: the capture is stopping, and the supervisor may be waiting for its next
    /// poll (it sleeps until then when it holds no frames).
    Wake,
}

/// What a capture thread needs besides its capture.
pub(super) struct Reader {
    pub(super) index: u16,
    pub(super) linktype: Option<LinkType>,
    /// Frames of the `any` device carry their interface (kernel index) in the cooked header:
    /// mapped to frame indexes through the table the supervisor announces them from.
    pub(super) any: Option<AnyIndexes>,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) detach: Arc<AtomicBool>,
    pub(super) out: SyncSender<Internal>,
    pub(super) stats_interval: Duration,
    /// Recording: keep each frame's bytes beside its decoded summary.
    pub(super) keep_bytes: bool,
    /// Empty batches, given back by the supervisor.
    pub(super) batches: FramePool,
}

impl Reader {
    pub(super) fn run(self, mut capture: Capture<Active>) {
        let mut batch: Vec<DecodedFrame> = self.batches.take();
        let mut hung_up = false;
        let mut next_stats = Instant::now() + self.stats_interval;
        // This thread's copy of the `any` table: the shared one is locked only for a kernel
        // index seen for the first time.
        let mut known: rustc_hash::FxHashMap<u32, u16> = rustc_hash::FxHashMap::default();
        let error = loop {
            if self.stop.load(Ordering::Relaxed) || self.detach.load(Ordering::Relaxed) {
                break None;
            }
            // One dispatch hands over what the kernel has ready (blocking while there is
            // nothing; a stop or detach breaks the wait), so a batch goes out as soon as the
            // ring is drained and no frame waits on this thread for more traffic.
            let result = capture.dispatch(None, |packet| {
                if hung_up {
                    return;
                }
                // With nanosecond precision libpcap puts nanoseconds in the microsecond field.
                let secs = u64::try_from(packet.header.ts.tv_sec).unwrap_or(0);
                let nanos = u64::try_from(packet.header.ts.tv_usec).unwrap_or(0);
                let ts = Timestamp(secs.saturating_mul(1_000_000_000).saturating_add(nanos));
                let interface = match &self.any {
                    Some(indexes) => sll2_ifindex(packet.data).map_or(0, |ifindex| {
                        *known.entry(ifindex).or_insert_with(|| indexes.index_of(ifindex))
                    }),
                    None => self.index,
                };
                let frame = Frame {
                    ts,
                    interface,
                    linktype: self.linktype,
                    data: packet.data,
                    wire_len: packet.header.len,
                };
                batch.push(if self.keep_bytes {
                    DecodedFrame::keeping_bytes(&frame)
                } else {
                    DecodedFrame::from_frame(&frame)
                });
                if batch.len() >= BATCH_FRAMES {
                    let frames = std::mem::replace(&mut batch, self.batches.take());
                    hung_up = self.out.send(Internal::Frames(frames)).is_err();
                }
            });
            if hung_up {
                return;
            }
            if !batch.is_empty() {
                let frames = std::mem::replace(&mut batch, self.batches.take());
                if self.out.send(Internal::Frames(frames)).is_err() {
                    return;
                }
            }
            if let Err(error) = result {
                if self.stop.load(Ordering::Relaxed) || self.detach.load(Ordering::Relaxed) {
                    break None;
                }
                break Some(pcap_reason(&error));
            }
            let now = Instant::now();
            if now >= next_stats {
                next_stats = now + self.stats_interval;
                if !self.send_stats(&mut capture) {
                    return;
                }
            }
        };
        self.send_stats(&mut capture);
        let _ = self.out.send(Internal::Ended { index: self.index, error });
    }

    /// Sends libpcap's counts; false when the supervisor is gone.
    fn send_stats(&self, capture: &mut Capture<Active>) -> bool {
        let Ok(stat) = capture.stats() else { return true };
        let stats = Internal::Stats {
            index: self.index,
            received: stat.received,
            dropped: stat.dropped,
            if_dropped: stat.if_dropped,
        };
        self.out.send(stats).is_ok()
    }
}

/// With `-i any`: a frame index for each kernel interface index, given in the order they are
/// met (by the capture thread or by the supervisor announcing the interface, whichever is
/// first), from 1 (0 is the `any` device itself). Kernel indexes grow without bound on a node
/// where pods come and go: cut to 16 bits, 65538 would be taken for 2.
#[derive(Debug, Clone, Default)]
pub(super) struct AnyIndexes(Arc<Mutex<rustc_hash::FxHashMap<u32, u16>>>);

impl AnyIndexes {
    pub(super) fn index_of(&self, ifindex: u32) -> u16 {
        let mut table = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let next = table.len() + 1;
        // Past the last free index (the last one counts the interfaces gone): the `any` device.
        *table.entry(ifindex).or_insert_with(|| {
            u16::try_from(next).ok().filter(|i| *i < super::DETACHED_INDEX).unwrap_or(0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kernel indexes become frame indexes in the order they are met, the same for every
    /// asker; indexes past 16 bits do not wrap onto others.
    #[test]
    fn kernel_interface_indexes_get_distinct_frame_indexes() {
        let indexes = AnyIndexes::default();
        let other = indexes.clone();
        assert_eq!(indexes.index_of(7), 1);
        assert_eq!(other.index_of(65_543), 2, "not 7's");
        assert_eq!(other.index_of(7), 1);
        assert_eq!(indexes.index_of(2), 3);
        assert_eq!(indexes.index_of(65_538), 4, "not 2's");
    }
}
