//! The supervisor thread: owns the capture threads, releases their frames in timestamp order
//! across interfaces, and sends per-interface stats. Attaching and detaching interfaces (at
//! start and on hot-plug) is in `attach`. It must not touch the engine: it only sends events.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant, SystemTime};

use super::attach::{Attachment, still_up};
use super::budget::BufferBudget;
use super::pool::FramePool;
use super::worker::{AnyIndexes, BATCH_FRAMES, Internal};
use super::{CaptureEvent, EventSink, InterfaceStats, LiveConfig};
use crate::capture::DecodedFrame;
use crate::capture::interfaces::LinkCache;
use crate::time::Timestamp;

/// Most frames in one `CaptureEvent::Frames`.
const RELEASE_FRAMES: usize = 1024;
/// The index under which the counts of interfaces that went away are sent.
pub const DETACHED_INDEX: u16 = u16::MAX;
/// How often the supervisor releases held frames (and, when nothing arrives, wakes at all).
const RELEASE_TICK: Duration = Duration::from_millis(40);

/// Owns the capture threads, the reorder buffer and hot-plug.
pub(super) struct Supervisor {
    pub(super) config: LiveConfig,
    pub(super) events: Box<dyn EventSink>,
    pub(super) internal: SyncSender<Internal>,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) attached: BTreeMap<u16, Attachment>,
    /// Index per interface name, stable across detach and re-attach.
    pub(super) slots: HashMap<String, u16>,
    pub(super) next_slot: u16,
    /// Interfaces (name, ifindex) that failed to open while present: not retried.
    pub(super) failed: HashSet<(String, u32)>,
    /// With `-i any`: interfaces announced, by kernel index.
    pub(super) any_members: BTreeMap<u32, String>,
    /// With `-i any`: the frame index of each kernel index, shared with the capture thread.
    pub(super) any_indexes: AnyIndexes,
    /// Frames not yet released, per interface, each queue in timestamp order (as its capture
    /// thread delivers them): releasing merges the queues' fronts, so a frame is moved once on
    /// its way out rather than copied and re-sorted on every tick it waits.
    pub(super) held: HeldFrames,
    /// Events made before the supervisor thread runs (sent first thing there).
    pub(super) queued: Vec<CaptureEvent>,
    pub(super) receiver_gone: bool,
    /// Kernel buffer bytes given to attached interfaces, against `--buffer-total`.
    pub(super) budget: BufferBudget,
    /// The budget shrank a buffer and the user was told.
    pub(super) budget_warned: bool,
    /// Capture threads' batches, given back once their frames are held.
    pub(super) batches: FramePool,
    /// Released batches, given back by the consumer of the events.
    pub(super) chunks: FramePool,
    /// The links as the last hot-plug poll read them.
    pub(super) links: LinkCache,
    /// The final counts of interfaces that went away, summed: sent with every `Stats` so that
    /// totals never go down when a pod's veth does.
    pub(super) detached: Option<InterfaceStats>,
}

impl Supervisor {
    pub(super) fn new(
        config: LiveConfig,
        events: Box<dyn EventSink>,
        internal: SyncSender<Internal>,
        stop: Arc<AtomicBool>,
    ) -> Self {
        Self {
            budget: BufferBudget::new(config.buffer_bytes, config.buffer_total),
            config,
            events,
            internal,
            stop,
            attached: BTreeMap::new(),
            slots: HashMap::new(),
            next_slot: 0,
            failed: HashSet::new(),
            any_members: BTreeMap::new(),
            any_indexes: AnyIndexes::default(),
            held: HeldFrames::default(),
            queued: Vec::new(),
            receiver_gone: false,
            budget_warned: false,
            batches: FramePool::new(BATCH_FRAMES),
            chunks: FramePool::new(RELEASE_FRAMES),
            links: LinkCache::default(),
            detached: None,
        }
    }

    /// Where consumers give back the batches of released frames.
    pub(super) fn frame_pool(&self) -> FramePool {
        self.chunks.clone()
    }

    pub(super) fn run(mut self, from_captures: &Receiver<Internal>) {
        for event in std::mem::take(&mut self.queued) {
            self.send(event);
        }
        let now = Instant::now();
        let mut next_poll = now + self.config.poll_interval;
        let mut next_stats = now + self.config.stats_interval;
        let mut next_release = now + RELEASE_TICK;
        while !self.stop.load(Ordering::Relaxed) && !self.receiver_gone {
            // Holding no frames, nothing is due before the next poll or stats: an idle capture
            // wakes a few times a second, not every release tick (each wake-up costs more CPU
            // here than a thousand packets).
            let next_event = next_poll.min(next_stats);
            let wake_at =
                if self.held.is_empty() { next_event } else { next_release.min(next_event) };
            match from_captures.recv_timeout(wake_at.saturating_duration_since(Instant::now())) {
                Ok(message) => self.handle(message),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {}
            }
            let now = Instant::now();
            if now >= next_release {
                next_release = now + RELEASE_TICK;
                self.release(Some(self.config.reorder_hold));
            }
            if now >= next_poll {
                next_poll = now + self.config.poll_interval;
                self.poll();
            }
            if now >= next_stats {
                next_stats = now + self.config.stats_interval;
                self.send_stats();
            }
            for event in std::mem::take(&mut self.queued) {
                self.send(event);
            }
        }
        self.shut_down(from_captures);
    }

    /// Ends every capture thread, collecting what they still send, then releases all frames.
    fn shut_down(&mut self, from_captures: &Receiver<Internal>) {
        for attachment in self.attached.values() {
            attachment.detach();
        }
        while !self.attached.is_empty() {
            match from_captures.recv_timeout(Duration::from_secs(1)) {
                Ok(message) => self.handle(message),
                // A thread stuck in libpcap past a second: give up on it rather than hang.
                Err(_) => break,
            }
        }
        if !self.receiver_gone {
            self.release(None);
            for event in std::mem::take(&mut self.queued) {
                self.send(event);
            }
            // The last interval's counts, which the periodic stats would not have sent.
            self.send_stats();
        }
    }

    /// Counts of every attached interface, and of the detached ones together.
    fn send_stats(&mut self) {
        let attached = self.attached.values().map(|a| a.stats.clone());
        let stats = attached.chain(self.detached.clone()).collect();
        self.send(CaptureEvent::Stats(stats));
    }

    fn handle(&mut self, message: Internal) {
        match message {
            Internal::Frames(mut frames) => {
                self.held.add(&mut frames);
                self.batches.give(frames);
            }
            Internal::Wake => {}
            Internal::Stats { index, received, dropped, if_dropped } => {
                if let Some(attachment) = self.attached.get_mut(&index) {
                    let (r, d, i) = attachment.raw;
                    attachment.stats.received += u64::from(received.wrapping_sub(r));
                    attachment.stats.dropped += u64::from(dropped.wrapping_sub(d));
                    attachment.stats.if_dropped += u64::from(if_dropped.wrapping_sub(i));
                    attachment.raw = (received, dropped, if_dropped);
                }
            }
            Internal::Ended { index, error } => {
                let Some(mut attachment) = self.attached.remove(&index) else { return };
                self.budget.release(attachment.stats.buffer_bytes);
                let gone = &attachment.stats;
                let detached = self
                    .detached
                    .get_or_insert_with(|| stats_for(DETACHED_INDEX, "(interfaces gone)", 0));
                detached.received += gone.received;
                detached.dropped += gone.dropped;
                detached.if_dropped += gone.if_dropped;
                if let Some(thread) = attachment.thread.take() {
                    let _ = thread.join();
                }
                let asked = attachment.detach.load(Ordering::Relaxed);
                if let Some(reason) = error
                    && !asked
                    && still_up(&attachment.name, attachment.ifindex)
                {
                    self.failed.insert((attachment.name.clone(), attachment.ifindex));
                    self.queued.push(CaptureEvent::Warning(format!(
                        "capture on '{}' stopped: {reason}",
                        attachment.name
                    )));
                }
                // Its last frames may still be held: they follow in order; the index stays named.
                self.queued.push(CaptureEvent::Detached { index, name: attachment.name });
            }
        }
    }

    /// Sends held frames in timestamp order: those older than `hold` (all with `None`).
    fn release(&mut self, hold: Option<Duration>) {
        let cutoff = match hold {
            None => Timestamp(u64::MAX),
            Some(hold) => {
                let now = Timestamp::from_system_time(SystemTime::now());
                Timestamp(now.0.saturating_sub(duration_nanos(hold)))
            }
        };
        if !self.held.any_at_or_before(cutoff) {
            return;
        }
        // Earlier queued events (an attach) go first, so frames never name an unknown index.
        for event in std::mem::take(&mut self.queued) {
            self.send(event);
        }
        // Messages of bounded size and capacity, so the run loop's channel bounds memory
        // whatever the rate.
        let mut chunk = self.chunks.take();
        let mut full = Vec::new();
        let chunks = &self.chunks;
        self.held.release_until(cutoff, |frame| {
            chunk.push(frame);
            if chunk.len() == RELEASE_FRAMES {
                full.push(std::mem::replace(&mut chunk, chunks.take()));
            }
        });
        for frames in full {
            self.send(CaptureEvent::Frames(frames));
        }
        if chunk.is_empty() {
            self.chunks.give(chunk);
        } else {
            self.send(CaptureEvent::Frames(chunk));
        }
    }

    pub(super) fn send(&mut self, event: CaptureEvent) {
        if !self.receiver_gone && !self.events.deliver(event) {
            self.receiver_gone = true;
        }
    }
}

pub(super) fn stats_for(index: u16, name: &str, buffer_bytes: u32) -> InterfaceStats {
    InterfaceStats {
        index,
        name: name.to_owned(),
        received: 0,
        dropped: 0,
        if_dropped: 0,
        buffer_bytes,
    }
}

fn duration_nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// Frames held for reordering, one timestamp-ordered queue per interface.
#[derive(Default)]
pub(super) struct HeldFrames {
    queues: BTreeMap<u16, VecDeque<DecodedFrame>>,
}

impl HeldFrames {
    /// Adds a capture thread's batch. Its frames are in capture order, which is timestamp order
    /// but for the odd frame the kernel stamped late: that one is put in its place.
    pub(super) fn add(&mut self, frames: &mut Vec<DecodedFrame>) {
        let mut frames = frames.drain(..).peekable();
        while let Some(interface) = frames.peek().map(|frame| frame.interface) {
            // A capture thread's batch is all one interface: one lookup per batch.
            let queue = self.queues.entry(interface).or_default();
            while let Some(frame) = frames.next_if(|frame| frame.interface == interface) {
                if queue.back().is_none_or(|last| last.ts <= frame.ts) {
                    queue.push_back(frame);
                } else {
                    let at = queue.partition_point(|held| held.ts <= frame.ts);
                    queue.insert(at, frame);
                }
            }
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.queues.is_empty()
    }

    fn any_at_or_before(&self, cutoff: Timestamp) -> bool {
        self.queues.values().any(|queue| queue.front().is_some_and(|f| f.ts <= cutoff))
    }

    /// Hands out, oldest first across interfaces, every frame stamped at or before `cutoff`
    /// (ties in interface order).
    pub(super) fn release_until(&mut self, cutoff: Timestamp, mut out: impl FnMut(DecodedFrame)) {
        if self.queues.len() == 1 {
            // One busy interface (the usual case): nothing to merge.
            for queue in self.queues.values_mut() {
                while queue.front().is_some_and(|frame| frame.ts <= cutoff) {
                    if let Some(frame) = queue.pop_front() {
                        out(frame);
                    }
                }
            }
            self.queues.retain(|_, queue| !queue.is_empty());
            return;
        }
        let mut fronts: BinaryHeap<Reverse<(Timestamp, u16)>> = self
            .queues
            .iter()
            .filter_map(|(index, queue)| queue.front().map(|f| Reverse((f.ts, *index))))
            .filter(|Reverse((ts, _))| *ts <= cutoff)
            .collect();
        while let Some(Reverse((_, index))) = fronts.pop() {
            let Some(queue) = self.queues.get_mut(&index) else { continue };
            if let Some(frame) = queue.pop_front() {
                out(frame);
            }
            if let Some(next) = queue.front()
                && next.ts <= cutoff
            {
                fronts.push(Reverse((next.ts, index)));
            }
        }
        // Interfaces come and go with pods: drop the queues they left empty.
        self.queues.retain(|_, queue| !queue.is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(interface: u16, ts: u64) -> DecodedFrame {
        DecodedFrame {
            ts: Timestamp(ts),
            interface,
            decoded: Err(crate::decode::SkipReason::Truncated),
            raw: None,
        }
    }

    fn released(held: &mut HeldFrames, cutoff: u64) -> Vec<(u16, u64)> {
        let mut out = Vec::new();
        held.release_until(Timestamp(cutoff), |f| out.push((f.interface, f.ts.0)));
        out
    }

    #[test]
    fn frames_of_several_interfaces_come_out_merged_in_time_order_up_to_the_cutoff() {
        let mut held = HeldFrames::default();
        held.add(&mut vec![frame(0, 10), frame(0, 30), frame(0, 50)]);
        held.add(&mut vec![frame(1, 20), frame(1, 30), frame(1, 60)]);
        // A frame the kernel stamped earlier than one already held goes in its place.
        held.add(&mut vec![frame(0, 25)]);
        assert!(!held.any_at_or_before(Timestamp(5)));
        assert_eq!(released(&mut held, 5), []);
        assert_eq!(released(&mut held, 30), [(0, 10), (1, 20), (0, 25), (0, 30), (1, 30)]);
        assert!(held.any_at_or_before(Timestamp(55)));
        assert_eq!(released(&mut held, 55), [(0, 50)]);
        held.add(&mut vec![frame(2, 40)]);
        assert_eq!(released(&mut held, u64::MAX), [(2, 40), (1, 60)]);
        assert!(held.queues.is_empty(), "emptied queues are dropped");

        // One interface alone, its batch with a late-stamped frame.
        held.add(&mut vec![frame(3, 70), frame(3, 90), frame(3, 80)]);
        assert_eq!(released(&mut held, 85), [(3, 70), (3, 80)]);
        assert_eq!(released(&mut held, 95), [(3, 90)]);
        assert!(held.queues.is_empty());
        // A batch holding two interfaces' frames (the reorder input, not a capture thread's).
        held.add(&mut vec![frame(4, 5), frame(5, 4), frame(4, 6)]);
        assert_eq!(released(&mut held, 10), [(5, 4), (4, 5), (4, 6)]);
    }
}
