//! A capture thread: reads one interface (or the `any` device) through libpcap, decodes each
//! frame where it was captured and sends batches and libpcap's counters to the supervisor. It
//! must not decide anything about interfaces: the supervisor attaches and detaches them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
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
    /// Frames of the `any` device carry their interface in the cooked header.
    pub(super) any: bool,
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
                let interface = if self.any { any_interface(packet.data) } else { self.index };
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

/// The interface index in a Linux cooked v2 header (bytes 4..8), as a frame's interface: with
/// `-i any` announced interfaces use their kernel index (truncated to 16 bits).
fn any_interface(data: &[u8]) -> u16 {
    sll2_ifindex(data).map_or(0, |ifindex| u16::try_from(ifindex & 0xffff).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_of_the_any_device_name_their_interface() {
        let mut header = [0u8; 20];
        header[4..8].copy_from_slice(&7u32.to_be_bytes());
        assert_eq!(any_interface(&header), 7);
        assert_eq!(any_interface(&[0, 1]), 0);
    }
}
