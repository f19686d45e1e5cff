//! Live capture: one blocking libpcap thread per interface, frames decoded where they are
//! captured, batches merged in capture-time order and handed to the run loop as
//! [`CaptureEvent`]s over one channel; interfaces followed as they come and go.
//!
//! Threads: each capture thread reads its interface (promiscuous off; frames handed over by the
//! kernel in blocks within 10 ms, or one by one in immediate mode, which costs ten times the
//! CPU per packet below 150k packets/s and drops at the top rate — see `scripts/bench-live.sh`;
//! a stop or detach wakes it through `pcap_breakloop`), decodes every frame and sends batches
//! to a supervisor thread. The supervisor holds frames briefly to release them in timestamp order
//! across interfaces (so copies of one packet reach [`crate::flow::dedup`] first where they were
//! first seen), polls `/sys/class/net` to attach new interfaces and detach vanished ones, and
//! sends per-interface stats. A vanished interface is a quiet detach, never an error. This
//! module must not touch the engine: it only produces events.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use pcap::{Active, Capture, Linktype, Precision};

use super::interfaces::{self, InterfaceInfo, Selection};
use super::{DecodedFrame, Frame};
use crate::decode::LinkType;
use crate::time::Timestamp;

/// Snap length for flows and names: whole DNS messages and TLS ClientHellos, even when the
/// kernel hands over GRO-merged segments.
pub const SNAPLEN_FLOWS: u32 = 4096;
/// Snap length when the packets themselves are recorded.
pub const SNAPLEN_FULL: u32 = 262_144;
/// Kernel buffer per capture: room for ~100 ms at the highest rates a node sees.
pub const DEFAULT_BUFFER_BYTES: u32 = 32 << 20;

/// How live capture runs. `Default` is what `netwatch` with no arguments does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveConfig {
    pub selection: Selection,
    /// `--filter`: a BPF expression applied to every interface.
    pub filter: Option<String>,
    /// Kernel capture buffer per interface, in bytes.
    pub buffer_bytes: u32,
    /// Bytes kept of each frame: [`SNAPLEN_FLOWS`], or [`SNAPLEN_FULL`] when recording.
    pub snaplen: u32,
    /// libpcap immediate mode: each frame handed over as it arrives (one wakeup per packet at
    /// low rates). Off, the kernel fills blocks and hands each over when full or after
    /// `read_timeout`: the same frames, a few milliseconds later, at a fraction of the CPU.
    pub immediate: bool,
    /// Longest a frame waits in the kernel when not in immediate mode. Must stay well below
    /// `reorder_hold`, or frames are released out of order.
    pub read_timeout: Duration,
    /// How often the interface list is read for hot-plug.
    pub poll_interval: Duration,
    /// How long frames are held to be released in timestamp order across interfaces.
    pub reorder_hold: Duration,
    /// How often per-interface stats are sent.
    pub stats_interval: Duration,
    /// Recording: frames carry their bytes (`DecodedFrame::raw`), not only their summary.
    pub keep_bytes: bool,
}

impl Default for LiveConfig {
    fn default() -> Self {
        Self {
            selection: Selection::PodFacing,
            filter: None,
            buffer_bytes: DEFAULT_BUFFER_BYTES,
            snaplen: SNAPLEN_FLOWS,
            immediate: false,
            read_timeout: Duration::from_millis(10),
            poll_interval: Duration::from_millis(500),
            reorder_hold: Duration::from_millis(60),
            stats_interval: Duration::from_secs(1),
            keep_bytes: false,
        }
    }
}

/// Received and dropped counts of one interface since it was attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceStats {
    pub index: u16,
    pub name: String,
    /// Packets the kernel handed to the capture (passing the filter).
    pub received: u64,
    /// Dropped because the capture buffer was full: netwatch fell behind.
    pub dropped: u64,
    /// Dropped by the interface or driver before capture.
    pub if_dropped: u64,
}

/// What live capture tells the run loop.
#[derive(Debug)]
pub enum CaptureEvent {
    /// Decoded frames (at most 1,024), in timestamp order; `interface` is an index announced by
    /// `Attached`.
    Frames(Vec<DecodedFrame>),
    /// An interface is now captured; frames carry `index`. An index is reused only for the
    /// same interface name.
    Attached { index: u16, interface: InterfaceInfo },
    /// An interface is no longer captured (it vanished or went down): not an error. Frames it
    /// read last may still follow; its index keeps naming it.
    Detached { index: u16, name: String },
    /// Counts of every attached interface, every `stats_interval`.
    Stats(Vec<InterfaceStats>),
    /// A problem worth showing once (an interface that could not be opened); capture goes on.
    Warning(String),
}

/// Why live capture could not start.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// No CAP_NET_RAW. `interface` is `None` when found before any interface was opened.
    #[error(
        "cannot capture packets{}: permission denied ({reason}); run as root (sudo netwatch) or grant the capabilities: sudo setcap cap_net_raw,cap_net_admin+eip $(command -v netwatch)",
        on_interface(.interface.as_deref())
    )]
    Permission { interface: Option<String>, reason: String },
    #[error("--filter '{filter}' is not a valid BPF expression: {reason}")]
    BadFilter { filter: String, reason: String },
    #[error(
        "-i '{name}': no such interface; 'netwatch interfaces' lists them (globs such as 'veth*' may match none yet)"
    )]
    NoSuchInterface { name: String },
    #[error("cannot capture on '{interface}': {reason}")]
    Open { interface: String, reason: String },
    #[error("cannot list network interfaces: {0}")]
    Discovery(String),
}

impl LiveError {
    /// 2 for bad usage (a bad filter or interface name), 1 for failures at run time.
    #[must_use]
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::BadFilter { .. } | Self::NoSuchInterface { .. } => 2,
            Self::Permission { .. } | Self::Open { .. } | Self::Discovery(_) => 1,
        }
    }
}

fn on_interface(interface: Option<&str>) -> String {
    interface.map(|name| format!(" on '{name}'")).unwrap_or_default()
}

/// A running live capture. Dropping it stops it too.
pub struct LiveCapture {
    stop: Arc<AtomicBool>,
    supervisor: Option<JoinHandle<()>>,
}

impl LiveCapture {
    /// Checks the filter and the privileges, opens the selected interfaces, and starts the
    /// threads. Events (first the `Attached` ones) go to `events` until [`stop`](Self::stop)
    /// or until its receiver is dropped.
    pub fn start(config: LiveConfig, events: SyncSender<CaptureEvent>) -> Result<Self, LiveError> {
        if let Some(filter) = &config.filter {
            check_filter(filter)?;
        }
        probe_privileges()?;
        let links = interfaces::discover().map_err(|e| LiveError::Discovery(e.to_string()))?;
        let survey = interfaces::survey(&links, &config.selection);
        if let Selection::Named(patterns) = &config.selection {
            let literal = patterns
                .iter()
                .find(|p| !p.contains(['*', '?']) && !survey.iter().any(|info| &info.name == *p));
            if let Some(name) = literal {
                return Err(LiveError::NoSuchInterface { name: name.clone() });
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (internal, from_captures) = mpsc::sync_channel(64);
        let mut supervisor = Supervisor::new(config, events, internal, stop.clone());
        supervisor.attach_initial(&survey)?;
        let handle = thread::Builder::new()
            .name("netwatch-capture".into())
            .spawn(move || supervisor.run(&from_captures))
            .map_err(|e| LiveError::Open { interface: "-".into(), reason: e.to_string() })?;
        Ok(Self { stop, supervisor: Some(handle) })
    }

    /// Stops every capture thread (waking those that wait for packets) and waits for them.
    /// Frames still held are sent first.
    pub fn stop(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.supervisor.take() {
            let _ = handle.join();
        }
    }
}

impl Drop for LiveCapture {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// Compiles the filter once, so a typo is a usage error before any capture starts.
fn check_filter(filter: &str) -> Result<(), LiveError> {
    let bad = |reason: String| LiveError::BadFilter { filter: filter.to_owned(), reason };
    let dead = Capture::dead(Linktype::ETHERNET).map_err(|e| bad(e.to_string()))?;
    dead.compile(filter, true).map(drop).map_err(|e| bad(pcap_reason(&e)))
}

/// Opens (and closes) the `any` device: fails the same way every capture would without
/// CAP_NET_RAW, even before there is any interface to capture.
fn probe_privileges() -> Result<(), LiveError> {
    let opened = Capture::from_device("any").and_then(|c| c.buffer_size(1 << 16).open());
    match opened {
        Ok(_) => Ok(()),
        Err(error) if is_permission_error(&error) => {
            Err(LiveError::Permission { interface: None, reason: pcap_reason(&error) })
        }
        Err(error) => Err(open_error("any", &error)),
    }
}

fn is_permission_error(error: &pcap::Error) -> bool {
    let text = error.to_string().to_ascii_lowercase();
    text.contains("permission") || text.contains("operation not permitted")
}

fn open_error(interface: &str, error: &pcap::Error) -> LiveError {
    let reason = pcap_reason(error);
    if is_permission_error(error) {
        LiveError::Permission { interface: Some(interface.to_owned()), reason }
    } else {
        LiveError::Open { interface: interface.to_owned(), reason }
    }
}

/// libpcap's own message, without the crate's "libpcap error: " prefix.
fn pcap_reason(error: &pcap::Error) -> String {
    match error {
        pcap::Error::PcapError(message) => message.clone(),
        other => other.to_string(),
    }
}

/// Opens one interface for capture.
fn open(name: &str, config: &LiveConfig) -> Result<Capture<Active>, pcap::Error> {
    let mut capture = Capture::from_device(name)?
        .immediate_mode(config.immediate)
        // A promiscuous bridge is handed frames meant for others: the DNAT'd SYN twice.
        .promisc(false)
        .snaplen(i32::try_from(config.snaplen).unwrap_or(i32::MAX))
        .buffer_size(i32::try_from(config.buffer_bytes).unwrap_or(i32::MAX))
        .precision(Precision::Nano)
        .timeout(i32::try_from(config.read_timeout.as_millis()).unwrap_or(i32::MAX).max(1))
        .open()?;
    if name == "any" {
        // Cooked v2 names the interface of each frame, so dedup can tell the copies apart.
        let _ = capture.set_datalink(Linktype(LINKTYPE_LINUX_SLL2));
    }
    if let Some(filter) = &config.filter {
        capture.filter(filter, true)?;
    }
    Ok(capture)
}

const LINKTYPE_LINUX_SLL2: i32 = 276;
/// Most frames per batch; a batch also ends whenever the kernel has nothing more ready.
const BATCH_FRAMES: usize = 256;
/// Most frames in one `CaptureEvent::Frames`.
const RELEASE_FRAMES: usize = 1024;
/// How often the supervisor releases held frames.
const RELEASE_TICK: Duration = Duration::from_millis(10);

/// From a capture thread to the supervisor.
enum Internal {
    Frames(Vec<DecodedFrame>),
    Stats { index: u16, received: u32, dropped: u32, if_dropped: u32 },
    Ended { index: u16, error: Option<String> },
}

/// What a capture thread needs besides its capture.
struct Reader {
    index: u16,
    linktype: Option<LinkType>,
    /// Frames of the `any` device carry their interface in the cooked header.
    any: bool,
    stop: Arc<AtomicBool>,
    detach: Arc<AtomicBool>,
    out: SyncSender<Internal>,
    stats_interval: Duration,
    /// Recording: keep each frame's bytes beside its decoded summary.
    keep_bytes: bool,
}

impl Reader {
    fn run(self, mut capture: Capture<Active>) {
        let mut batch: Vec<DecodedFrame> = Vec::with_capacity(BATCH_FRAMES);
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
                    let frames = std::mem::replace(&mut batch, Vec::with_capacity(BATCH_FRAMES));
                    hung_up = self.out.send(Internal::Frames(frames)).is_err();
                }
            });
            if hung_up {
                return;
            }
            if !batch.is_empty() {
                let frames = std::mem::replace(&mut batch, Vec::with_capacity(BATCH_FRAMES));
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
    data.get(4..8).map_or(0, |b| {
        let ifindex = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        u16::try_from(ifindex & 0xffff).unwrap_or(0)
    })
}

/// One attached interface, as the supervisor tracks it.
struct Attachment {
    name: String,
    ifindex: u32,
    detach: Arc<AtomicBool>,
    /// Wakes the thread from a wait for packets.
    breaker: pcap::BreakLoop,
    thread: Option<JoinHandle<()>>,
    stats: InterfaceStats,
    /// Raw counters last reported by libpcap (32-bit, wrapping).
    raw: (u32, u32, u32),
}

impl Attachment {
    /// Asks the thread to end, waking it if it waits for packets.
    fn detach(&self) {
        self.detach.store(true, Ordering::Relaxed);
        self.breaker.breakloop();
    }
}

/// Owns the capture threads, the reorder buffer and hot-plug.
struct Supervisor {
    config: LiveConfig,
    events: SyncSender<CaptureEvent>,
    internal: SyncSender<Internal>,
    stop: Arc<AtomicBool>,
    attached: BTreeMap<u16, Attachment>,
    /// Index per interface name, stable across detach and re-attach.
    slots: HashMap<String, u16>,
    next_slot: u16,
    /// Interfaces (name, ifindex) that failed to open while present: not retried.
    failed: HashSet<(String, u32)>,
    /// With `-i any`: interfaces announced, by kernel index.
    any_members: BTreeMap<u32, String>,
    held: Vec<DecodedFrame>,
    /// Events made before the supervisor thread runs (sent first thing there).
    queued: Vec<CaptureEvent>,
    receiver_gone: bool,
}

impl Supervisor {
    fn new(
        config: LiveConfig,
        events: SyncSender<CaptureEvent>,
        internal: SyncSender<Internal>,
        stop: Arc<AtomicBool>,
    ) -> Self {
        Self {
            config,
            events,
            internal,
            stop,
            attached: BTreeMap::new(),
            slots: HashMap::new(),
            next_slot: 0,
            failed: HashSet::new(),
            any_members: BTreeMap::new(),
            held: Vec::new(),
            queued: Vec::new(),
            receiver_gone: false,
        }
    }

    /// Opens the initial selection on the caller's thread, so failures are errors of `start`.
    fn attach_initial(&mut self, survey: &[InterfaceInfo]) -> Result<(), LiveError> {
        if self.config.selection == Selection::Any {
            let capture = open("any", &self.config).map_err(|e| open_error("any", &e))?;
            let linktype = LinkType::from_linktype(capture.get_datalink().0);
            let (detach, breaker, thread) = self.spawn_reader(capture, 0, linktype, true)?;
            self.attached.insert(
                0,
                Attachment {
                    name: "any".into(),
                    ifindex: 0,
                    detach,
                    breaker,
                    thread: Some(thread),
                    stats: stats_for(0, "any"),
                    raw: (0, 0, 0),
                },
            );
            self.follow_any_members(survey);
            return Ok(());
        }
        let named = matches!(self.config.selection, Selection::Named(_));
        for info in survey.iter().filter(|info| info.captured) {
            match open(&info.name, &self.config) {
                Ok(capture) => {
                    let index = self.slot_for(&info.name);
                    self.start_reader(capture, index, info)?;
                }
                Err(error) if is_permission_error(&error) => {
                    return Err(open_error(&info.name, &error));
                }
                // Gone between listing and opening: pods come and go.
                Err(_) if !still_present(&info.name, info.ifindex) => {}
                Err(error) if named => return Err(open_error(&info.name, &error)),
                Err(error) => {
                    self.failed.insert((info.name.clone(), info.ifindex));
                    self.queued
                        .push(CaptureEvent::Warning(open_error(&info.name, &error).to_string()));
                }
            }
        }
        if self.attached.is_empty() && self.config.selection == Selection::PodFacing {
            self.queued.push(CaptureEvent::Warning(
                "no pod-facing interfaces yet: waiting for pods (run 'netwatch interfaces' to see why, or choose with -i)".into(),
            ));
        }
        Ok(())
    }

    fn spawn_reader(
        &self,
        mut capture: Capture<Active>,
        index: u16,
        linktype: Option<LinkType>,
        any: bool,
    ) -> Result<(Arc<AtomicBool>, pcap::BreakLoop, JoinHandle<()>), LiveError> {
        let breaker = capture.breakloop_handle();
        let detach = Arc::new(AtomicBool::new(false));
        let reader = Reader {
            index,
            linktype,
            any,
            stop: self.stop.clone(),
            detach: detach.clone(),
            out: self.internal.clone(),
            stats_interval: self.config.stats_interval,
            keep_bytes: self.config.keep_bytes,
        };
        let thread = thread::Builder::new()
            .name(format!("netwatch-cap-{index}"))
            .spawn(move || reader.run(capture))
            .map_err(|e| LiveError::Open { interface: index.to_string(), reason: e.to_string() })?;
        Ok((detach, breaker, thread))
    }

    fn start_reader(
        &mut self,
        capture: Capture<Active>,
        index: u16,
        info: &InterfaceInfo,
    ) -> Result<(), LiveError> {
        let linktype = LinkType::from_linktype(capture.get_datalink().0);
        let (detach, breaker, thread) = self.spawn_reader(capture, index, linktype, false)?;
        self.attached.insert(
            index,
            Attachment {
                name: info.name.clone(),
                ifindex: info.ifindex,
                detach,
                breaker,
                thread: Some(thread),
                stats: stats_for(index, &info.name),
                raw: (0, 0, 0),
            },
        );
        self.queued.push(CaptureEvent::Attached { index, interface: info.clone() });
        Ok(())
    }

    /// The index for an interface name: its old one if it was seen before, else the next free.
    fn slot_for(&mut self, name: &str) -> u16 {
        if let Some(slot) = self.slots.get(name) {
            return *slot;
        }
        let slot = if self.next_slot < u16::MAX {
            self.next_slot += 1;
            self.next_slot - 1
        } else {
            // Sixty-five thousand interface names in one run: reuse one not attached now.
            let free = (0..u16::MAX).find(|slot| !self.attached.contains_key(slot)).unwrap_or(0);
            self.slots.retain(|_, s| *s != free);
            free
        };
        self.slots.insert(name.to_owned(), slot);
        slot
    }

    fn run(mut self, from_captures: &Receiver<Internal>) {
        for event in std::mem::take(&mut self.queued) {
            self.send(event);
        }
        let now = Instant::now();
        let mut next_poll = now + self.config.poll_interval;
        let mut next_stats = now + self.config.stats_interval;
        let mut next_release = now + RELEASE_TICK;
        while !self.stop.load(Ordering::Relaxed) && !self.receiver_gone {
            match from_captures.recv_timeout(RELEASE_TICK) {
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
                let stats = self.attached.values().map(|a| a.stats.clone()).collect();
                self.send(CaptureEvent::Stats(stats));
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
        }
    }

    fn handle(&mut self, message: Internal) {
        match message {
            Internal::Frames(frames) => self.held.extend(frames),
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
        if self.held.is_empty() {
            return;
        }
        // Batches arrive as sorted runs: the stable sort merges them in near-linear time.
        self.held.sort_by_key(|frame| frame.ts);
        let ready = match hold {
            None => self.held.len(),
            Some(hold) => {
                let now = Timestamp::from_system_time(SystemTime::now());
                let cutoff = Timestamp(now.0.saturating_sub(duration_nanos(hold)));
                self.held.partition_point(|frame| frame.ts <= cutoff)
            }
        };
        if ready == 0 {
            return;
        }
        // Earlier queued events (an attach) go first, so frames never name an unknown index.
        for event in std::mem::take(&mut self.queued) {
            self.send(event);
        }
        // Messages of bounded size and capacity, so the run loop's channel bounds memory
        // whatever the rate.
        let mut released = std::mem::take(&mut self.held);
        self.held = released.split_off(ready);
        let mut chunk = Vec::with_capacity(RELEASE_FRAMES.min(released.len()));
        for frame in released {
            chunk.push(frame);
            if chunk.len() == RELEASE_FRAMES {
                let full = std::mem::replace(&mut chunk, Vec::with_capacity(RELEASE_FRAMES));
                self.send(CaptureEvent::Frames(full));
            }
        }
        if !chunk.is_empty() {
            self.send(CaptureEvent::Frames(chunk));
        }
    }

    /// Hot-plug: attaches new matching interfaces, detaches vanished ones.
    fn poll(&mut self) {
        let Ok(links) = interfaces::discover() else { return };
        let survey = interfaces::survey(&links, &self.config.selection);
        if self.config.selection == Selection::Any {
            self.follow_any_members(&survey);
            return;
        }
        let wanted: HashSet<(&str, u32)> = survey
            .iter()
            .filter(|info| info.captured)
            .map(|info| (info.name.as_str(), info.ifindex))
            .collect();
        for attachment in self.attached.values() {
            if !wanted.contains(&(attachment.name.as_str(), attachment.ifindex)) {
                attachment.detach();
            }
        }
        let attached: HashSet<(String, u32)> =
            self.attached.values().map(|a| (a.name.clone(), a.ifindex)).collect();
        for info in survey.iter().filter(|info| info.captured) {
            let key = (info.name.clone(), info.ifindex);
            if attached.contains(&key) || self.failed.contains(&key) {
                continue;
            }
            // An old thread on a same-named interface still winding down keeps its slot.
            if let Some(slot) = self.slots.get(&info.name)
                && self.attached.contains_key(slot)
            {
                continue;
            }
            match open(&info.name, &self.config) {
                Ok(capture) => {
                    let index = self.slot_for(&info.name);
                    if let Err(error) = self.start_reader(capture, index, info) {
                        self.queued.push(CaptureEvent::Warning(error.to_string()));
                    }
                }
                Err(_) if !still_present(&info.name, info.ifindex) => {}
                Err(error) => {
                    self.failed.insert(key);
                    self.queued
                        .push(CaptureEvent::Warning(open_error(&info.name, &error).to_string()));
                }
            }
        }
    }

    /// With `-i any`, announces interfaces by kernel index as they appear and vanish.
    fn follow_any_members(&mut self, survey: &[InterfaceInfo]) {
        let present: BTreeMap<u32, &InterfaceInfo> =
            survey.iter().map(|info| (info.ifindex, info)).collect();
        let gone: Vec<u32> =
            self.any_members.keys().filter(|i| !present.contains_key(i)).copied().collect();
        for ifindex in gone {
            if let Some(name) = self.any_members.remove(&ifindex) {
                let index = u16::try_from(ifindex & 0xffff).unwrap_or(0);
                self.queued.push(CaptureEvent::Detached { index, name });
            }
        }
        for (ifindex, info) in present {
            if let std::collections::btree_map::Entry::Vacant(entry) =
                self.any_members.entry(ifindex)
            {
                entry.insert(info.name.clone());
                let index = u16::try_from(ifindex & 0xffff).unwrap_or(0);
                self.queued.push(CaptureEvent::Attached { index, interface: info.clone() });
            }
        }
    }

    fn send(&mut self, event: CaptureEvent) {
        if !self.receiver_gone && self.events.send(event).is_err() {
            self.receiver_gone = true;
        }
    }
}

fn stats_for(index: u16, name: &str) -> InterfaceStats {
    InterfaceStats { index, name: name.to_owned(), received: 0, dropped: 0, if_dropped: 0 }
}

fn duration_nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// Whether the interface of that name is still the same one (same index).
fn still_present(name: &str, ifindex: u32) -> bool {
    std::fs::read_to_string(format!("/sys/class/net/{name}/ifindex"))
        .ok()
        .and_then(|text| text.trim().parse::<u32>().ok())
        == Some(ifindex)
}

/// Whether the same interface is still there and up: a capture error on it is worth a word.
fn still_up(name: &str, ifindex: u32) -> bool {
    still_present(name, ifindex)
        && std::fs::read_to_string(format!("/sys/class/net/{name}/flags"))
            .ok()
            .and_then(|text| u32::from_str_radix(text.trim().trim_start_matches("0x"), 16).ok())
            .is_some_and(|flags| flags & 0x1 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_filter_is_a_usage_error_that_quotes_it() {
        let error = check_filter("tcp port banana").unwrap_err();
        assert_eq!(error.exit_code(), 2);
        assert!(error.to_string().starts_with("--filter 'tcp port banana'"), "{error}");
        assert!(check_filter("udp port 53 or tcp").is_ok());
    }

    #[test]
    fn a_permission_error_says_how_to_fix_it_and_exits_1() {
        let error = open_error(
            "cni0",
            &pcap::Error::PcapError(
                "cni0: You don't have permission to perform this capture on that device (socket: Operation not permitted)".into(),
            ),
        );
        assert_eq!(error.exit_code(), 1);
        let text = error.to_string();
        assert!(text.starts_with("cannot capture packets on 'cni0': permission denied"), "{text}");
        assert!(text.contains("setcap cap_net_raw,cap_net_admin+eip"), "{text}");
        assert!(!text.contains('\n'));
        let before_any = LiveError::Permission { interface: None, reason: "socket".into() };
        assert!(before_any.to_string().starts_with("cannot capture packets: permission denied"));
    }

    #[test]
    fn frames_of_the_any_device_name_their_interface() {
        let mut header = [0u8; 20];
        header[4..8].copy_from_slice(&7u32.to_be_bytes());
        assert_eq!(any_interface(&header), 7);
        assert_eq!(any_interface(&[0, 1]), 0);
    }
}
