//! A replay's reader thread: frames read from the source and decoded, in batches handed to the
//! engine in file order with the recorded cluster changes between them; the interactive view's
//! reader uses the same loop ([`read_source`]).

use std::io;
use std::sync::mpsc;
use std::thread;

use super::REPLAY_BATCH;
use crate::capture::{DecodedFrame, Next, PacketSource};
use crate::cluster::ClusterEvent;

/// What the reader thread hands the loop, in file order.
pub(crate) enum ReaderItem {
    Frames(Vec<DecodedFrame>),
    /// Cluster changes recorded before the next frame.
    Cluster(Vec<ClusterEvent>),
    /// A file's interfaces by index, after it met a new one (`tcpdump -i any`).
    Interfaces(Vec<String>),
    /// Live: an interface attached as capture interface `index` (which keeps its name for good:
    /// frames may follow a detach).
    Attached {
        index: u16,
        name: String,
    },
    /// Live: packets the kernel dropped so far, over all interfaces.
    Drops(u64),
    /// Live: something the user should know (an interface that failed, …).
    Warning(String),
}

/// A replay's reader thread: frames read and decoded in batches, handed over in file order.
pub(super) struct Reader<S> {
    pub(super) items: mpsc::Receiver<ReaderItem>,
    /// Batches go back to the reader, which fills them anew: allocating them anew on one thread
    /// and freeing them on the other made the allocator hand pages back and fault them in again.
    pub(super) recycle: mpsc::Sender<Vec<DecodedFrame>>,
    pub(super) thread: thread::JoinHandle<S>,
}

impl<S: PacketSource + Send + 'static> Reader<S> {
    pub(super) fn spawn(source: S) -> io::Result<Self> {
        // 8 batches of 4096 frames (~5 MB, and the few KiB at most of payload each frame may
        // keep) absorb the engine's pauses at sweeps. Large batches: the engine keeps up and
        // waits for each one, and waking a thread costs so much on a VM that 512-frame batches
        // made a replay 6% slower.
        let (sender, items) = mpsc::sync_channel::<ReaderItem>(8);
        let (recycle, recycled) = mpsc::channel::<Vec<DecodedFrame>>();
        let thread = thread::Builder::new().name("netwatch-read".into()).spawn(move || {
            let fresh = || recycled.try_recv().unwrap_or_else(|_| Vec::with_capacity(REPLAY_BATCH));
            read_source(source, REPLAY_BATCH, fresh, |item| sender.send(item).is_ok())
        })?;
        Ok(Self { items, recycle, thread })
    }
}

/// A replay's reader thread stopped on an internal error (a bug: it panicked). The flows of the
/// frames it had handed over (whole batches) were handed out.
#[derive(Debug)]
pub struct ReaderFailed;

impl std::fmt::Display for ReaderFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            "the capture reader stopped on an internal error (a bug in netwatch: please report \
             it); the flows were written as far as it had read",
        )
    }
}

impl std::error::Error for ReaderFailed {}

/// The reader thread's work: frames → decoded summaries in batches of `batch_frames`, with
/// recorded cluster changes in between, until the source ends or `send` says the loop hung up.
/// `next_batch` gives a list to fill, new or handed back: its old frames are dropped here, on
/// this thread, as new ones are written over them. Returns the source so its warnings can be
/// shown.
pub(crate) fn read_source<S: PacketSource>(
    mut source: S,
    batch_frames: usize,
    mut next_batch: impl FnMut() -> Vec<DecodedFrame>,
    mut send: impl FnMut(ReaderItem) -> bool,
) -> S {
    let mut batch = Filling::new(next_batch());
    loop {
        match source.next_frame() {
            Next::Packet(frame) => {
                let decoded = DecodedFrame::from_frame(&frame);
                let events = source.take_cluster_events();
                if !events.is_empty() {
                    // The events came before this frame: the frames before them go first.
                    if batch.filled > 0 {
                        let frames = std::mem::replace(&mut batch, Filling::new(next_batch()));
                        if !send_frames(&mut source, frames.finish(), &mut send) {
                            return source;
                        }
                    }
                    if !send(ReaderItem::Cluster(events)) {
                        return source;
                    }
                }
                batch.put(decoded);
                if batch.filled >= batch_frames {
                    let frames = std::mem::replace(&mut batch, Filling::new(next_batch()));
                    if !send_frames(&mut source, frames.finish(), &mut send) {
                        return source;
                    }
                }
            }
            // A file never idles; a live source would be waited on by the interactive loop.
            Next::Idle => {}
            Next::End => break,
        }
    }
    if !send_frames(&mut source, batch.finish(), &mut send) {
        return source;
    }
    let events = source.take_cluster_events();
    if !events.is_empty() {
        send(ReaderItem::Cluster(events));
    }
    source
}

/// A batch being filled in the list of one handed back: each new frame is written over an old
/// one, which is dropped there, rather than all the old ones dropped first. The old frames were
/// last read on the engine's core, and one pass over them to drop them and another to write the
/// new ones fetched each cache line twice.
struct Filling {
    frames: Vec<DecodedFrame>,
    /// The frames before this are new; those after are the old ones still to be written over.
    filled: usize,
}

impl Filling {
    fn new(frames: Vec<DecodedFrame>) -> Self {
        Self { frames, filled: 0 }
    }

    fn put(&mut self, frame: DecodedFrame) {
        match self.frames.get_mut(self.filled) {
            Some(old) => *old = frame,
            None => self.frames.push(frame),
        }
        self.filled += 1;
    }

    /// The new frames, the old ones left over dropped.
    fn finish(mut self) -> Vec<DecodedFrame> {
        self.frames.truncate(self.filled);
        self.frames
    }
}

/// Sends a batch of frames, naming first the interfaces met since the last batch. Once per
/// batch: the names go as one list, and sending it for each new interface cost the square of
/// their number (a file of 65k cooked-v2 packets on as many interfaces). False once the loop
/// hung up.
fn send_frames<S: PacketSource>(
    source: &mut S,
    frames: Vec<DecodedFrame>,
    send: &mut impl FnMut(ReaderItem) -> bool,
) -> bool {
    if let Some(names) = source.take_new_interfaces()
        && !send(ReaderItem::Interfaces(names))
    {
        return false;
    }
    frames.is_empty() || send(ReaderItem::Frames(frames))
}
