//! Live capture: one blocking libpcap thread per interface, frames decoded where they are
//! captured, batches merged in capture-time order and handed to the run loop as
//! [`CaptureEvent`]s through an [`EventSink`] (a channel, or the live view's own converter);
//! interfaces followed as they come and go.
//!
//! Threads: each capture thread reads its interface (promiscuous off; frames handed over by the
//! kernel in blocks within 40 ms, or one by one in immediate mode, which costs five to twenty
//! times the CPU per packet and drops at the top rate — see `scripts/bench-live.sh`;
//! a stop or detach wakes it through `pcap_breakloop`), decodes every frame and sends batches
//! to a supervisor thread. The supervisor holds frames briefly to release them in timestamp order
//! across interfaces (so copies of one packet reach [`crate::flow::dedup`] first where they were
//! first seen), polls `/sys/class/net` to attach new interfaces and detach vanished ones, and
//! sends per-interface stats. A vanished interface is a quiet detach, never an error. This
//! module must not touch the engine: it only produces events.

mod attach;
pub mod budget;
mod pool;
mod supervisor;
mod worker;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use pcap::{Capture, Linktype};

use super::DecodedFrame;
use super::interfaces::{self, InterfaceInfo, Selection};
pub use pool::FramePool;
pub use supervisor::DETACHED_INDEX;
use supervisor::Supervisor;

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
    /// Most kernel buffer bytes over all interfaces: past it, interfaces attached later get
    /// what remains, never below [`budget::BUFFER_FLOOR`].
    pub buffer_total: u64,
    /// Bytes kept of each frame: [`SNAPLEN_FLOWS`], or [`SNAPLEN_FULL`] when recording.
    pub snaplen: u32,
    /// libpcap immediate mode: each frame handed over as it arrives (one wakeup per packet at
    /// low rates). Off, the kernel fills blocks and hands each over when full or after
    /// `read_timeout`: the same frames, up to `read_timeout` later, at a fraction of the CPU.
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
            buffer_total: budget::DEFAULT_BUFFER_TOTAL,
            snaplen: SNAPLEN_FLOWS,
            immediate: false,
            // Each handover wakes three threads; at 10 ms blocks those wakeups were most of the
            // CPU at 10k packets/s. 40 ms still shows a flow within half a second.
            read_timeout: Duration::from_millis(40),
            // New pod interfaces are attached within 2 s (a poll, then opening them).
            poll_interval: Duration::from_secs(1),
            reorder_hold: Duration::from_millis(150),
            stats_interval: Duration::from_secs(1),
            keep_bytes: false,
        }
    }
}

/// Where a live capture's events go: a channel, or whatever turns them into a consumer's own
/// items on the way (the interactive loop takes them without a thread in between).
pub trait EventSink: Send + 'static {
    /// Delivers one event, waiting while the consumer is full; false once it is gone, and the
    /// capture then stops sending.
    fn deliver(&mut self, event: CaptureEvent) -> bool;
}

impl EventSink for SyncSender<CaptureEvent> {
    fn deliver(&mut self, event: CaptureEvent) -> bool {
        self.send(event).is_ok()
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
    /// The kernel buffer it was given (less than `--buffer-size` once the budget ran short).
    pub buffer_bytes: u32,
}

/// Packets the kernel dropped over all interfaces in one `Stats` event, before capture or in
/// its buffer (the header's drop count).
#[must_use]
pub fn total_drops(stats: &[InterfaceStats]) -> u64 {
    stats.iter().map(|s| s.dropped + s.if_dropped).sum()
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
    /// Counts of every attached interface, every `stats_interval` and once more at the end;
    /// interfaces that went away are summed in one more entry (index `u16::MAX`), so totals
    /// never go down.
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
    /// Wakes the supervisor to see `stop` at once.
    wake: mpsc::SyncSender<worker::Internal>,
    supervisor: Option<JoinHandle<()>>,
    frame_pool: FramePool,
}

impl LiveCapture {
    /// Checks the filter and the privileges, opens the selected interfaces, and starts the
    /// threads. Events (first the `Attached` ones) go to `events` until the capture stops
    /// ([`request_stop`](Self::request_stop) then, once the events end, [`stop`](Self::stop);
    /// or `stop` alone when nothing waits to be read) or until its `deliver` returns false (the
    /// receiver is gone).
    pub fn start(config: LiveConfig, events: impl EventSink) -> Result<Self, LiveError> {
        if let Some(filter) = &config.filter {
            check_filter(filter)?;
        }
        probe_privileges()?;
        // The hot-plug polls start from what this read: their first one reads again only what
        // can change.
        let mut link_cache = interfaces::LinkCache::default();
        let links = link_cache.discover().map_err(|e| LiveError::Discovery(e.to_string()))?;
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
        let wake = internal.clone();
        let mut supervisor = Supervisor::new(config, Box::new(events), internal, stop.clone());
        supervisor.links = link_cache;
        let frame_pool = supervisor.frame_pool();
        supervisor.attach_initial(&survey)?;
        let handle = thread::Builder::new()
            .name("netwatch-capture".into())
            .spawn(move || supervisor.run(&from_captures))
            .map_err(|e| LiveError::Open { interface: "-".into(), reason: e.to_string() })?;
        Ok(Self { stop, wake, supervisor: Some(handle), frame_pool })
    }

    /// Where the batches of [`CaptureEvent::Frames`] go back once their frames are taken out
    /// (`drain(..)`), so the supervisor fills the same memory again instead of new pages.
    #[must_use]
    pub fn frame_pool(&self) -> FramePool {
        self.frame_pool.clone()
    }

    /// Asks the capture to stop without waiting: the supervisor sends the frames it still holds
    /// and then hangs up its sender, so a consumer reads the events until they end and then
    /// calls [`stop`](Self::stop). (Waiting in `stop` while nobody reads a full channel would
    /// never end.)
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        // A full channel means the supervisor is busy and sees `stop` soon anyway.
        let _ = self.wake.try_send(worker::Internal::Wake);
    }

    /// Stops every capture thread (waking those that wait for packets) and waits for them.
    /// Frames still held are sent first.
    pub fn stop(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        self.request_stop();
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
}
