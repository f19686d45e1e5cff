//! When a recording moves on to its next file and when it stops — a small policy ([`Rotation`],
//! [`Limits`]; pure but for listing the ring's existing files) — and the [`Recorder`] that
//! applies it to files on disk.
//!
//! Every file a recording writes is a complete pcapng on its own: header, every interface known
//! so far, and the full cluster view as it stands when the file starts, so any one file of a
//! ring replays with identities. The policy reads no clock: the caller passes packet or clock
//! time. Sizes count bytes as written, headers included.

use std::collections::VecDeque;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{InterfaceDesc, PcapngWriter, RecordError, WriterOptions};
use crate::cluster::{ClusterEvent, ClusterView, Object, ResourceKind};
use crate::time::Timestamp;

/// When to start the next file (`--rotate 100MB`, `--rotate-every 1h`, with a file count).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rotation {
    /// Start a new file rather than let one grow past this many bytes.
    pub max_file_bytes: Option<u64>,
    /// Start a new file once one spans this much time.
    pub every: Option<Duration>,
    /// Keep only the newest this many files, removing older ones; `None` keeps them all.
    pub keep_files: Option<u32>,
}

/// Where the current file stands, for [`Rotation::is_due`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileState {
    pub bytes: u64,
    pub packets: u64,
    pub started: Timestamp,
}

impl Rotation {
    /// Whether any rotation is asked for (and so whether file names carry a number).
    #[must_use]
    pub fn is_enabled(&self) -> bool {
        self.max_file_bytes.is_some() || self.every.is_some()
    }

    /// Whether a packet block of `next_block_bytes` arriving at `now` belongs in a new file.
    /// A file always takes at least one packet, so a packet larger than the limit cannot make
    /// a recording rotate forever.
    #[must_use]
    pub fn is_due(&self, file: &FileState, now: Timestamp, next_block_bytes: u64) -> bool {
        if file.packets == 0 {
            return false;
        }
        let too_big = self
            .max_file_bytes
            .is_some_and(|max| file.bytes.saturating_add(next_block_bytes) > max);
        let too_old = self.every.is_some_and(|every| now >= file.started.saturating_add(every));
        too_big || too_old
    }

    /// File number `index` (from 1): `capture.pcapng` becomes `capture-00001.pcapng` when
    /// rotating, and stays itself when not.
    #[must_use]
    pub fn file_path(&self, base: &Path, index: u32) -> PathBuf {
        if !self.is_enabled() {
            return base.to_owned();
        }
        let stem = base.file_stem().map_or_else(String::new, |s| s.to_string_lossy().into_owned());
        let name = match base.extension() {
            Some(extension) => format!("{stem}-{index:05}.{}", extension.to_string_lossy()),
            None => format!("{stem}-{index:05}"),
        };
        base.with_file_name(name)
    }

    /// The numbers of this rotation's files already in `base`'s directory (left by a run
    /// before this one: a restarted DaemonSet pod), lowest first. Only five-digit numbers
    /// count (`{stem}-{five digits}{.ext}`), though past 99999 the ring writes more: a dated
    /// archive beside it (`node-202501.pcapng`, `node-20250101.pcapng`) taken for its newest
    /// file would have the ring continue from there and delete every file below. (A ring
    /// restarted past 99999 goes on after its last five-digit file, or from 1, and leaves the
    /// last run's files of six digits, at most `--keep`, where they are; see
    /// [`Rotation::free_index`].)
    #[must_use]
    pub fn existing(&self, base: &Path) -> Vec<u32> {
        if !self.is_enabled() {
            return Vec::new();
        }
        let dir = match base.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
        let stem = base.file_stem().map_or_else(String::new, |s| s.to_string_lossy().into_owned());
        let extension = base.extension().map(|e| format!(".{}", e.to_string_lossy()));
        let mut numbers = entries
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                let rest = name.strip_prefix(&stem)?.strip_prefix('-')?;
                let number = match &extension {
                    Some(extension) => rest.strip_suffix(extension.as_str())?,
                    None => rest,
                };
                (number.len() == 5 && number.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| number.parse::<u32>().ok())
                    .flatten()
            })
            .collect::<Vec<u32>>();
        // Names are unique (one stem and extension, five digits): sorting is enough.
        numbers.sort_unstable();
        numbers
    }

    /// The first number from `from` on whose file does not exist: a file is never written
    /// over, not even one of six digits that [`existing`](Self::existing) does not adopt (a
    /// ring restarted at 99999 goes on past the files its last run wrote there).
    #[must_use]
    pub fn free_index(&self, base: &Path, from: u32) -> u32 {
        let mut index = from;
        while self.is_enabled() && self.file_path(base, index).exists() && index < u32::MAX {
            index += 1;
        }
        index
    }

    /// How many of the ring's newest files stay (`None`: all).
    fn keep(&self) -> Option<usize> {
        self.keep_files.map(|keep| usize::try_from(keep.max(1)).unwrap_or(usize::MAX))
    }
}

/// When the whole recording stops (`--max-size 500MB`, `--duration 10m`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Bytes written over all files (removed ring files included).
    pub max_bytes: Option<u64>,
    pub duration: Option<Duration>,
}

/// Why a recording stopped on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    Duration(Duration),
    MaxSize(u64),
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Duration(duration) => {
                write!(f, "recorded for --duration {}", humantime::format_duration(*duration))
            }
            Self::MaxSize(bytes) => write!(f, "wrote --max-size {bytes} bytes"),
        }
    }
}

impl Limits {
    /// Why a packet block of `next_block_bytes` at `now` must not be written, if it must not.
    #[must_use]
    pub fn stop_reason(
        &self,
        started: Timestamp,
        total_bytes: u64,
        now: Timestamp,
        next_block_bytes: u64,
    ) -> Option<StopReason> {
        if let Some(duration) = self.duration
            && now >= started.saturating_add(duration)
        {
            return Some(StopReason::Duration(duration));
        }
        match self.max_bytes {
            Some(max) if total_bytes.saturating_add(next_block_bytes) > max => {
                Some(StopReason::MaxSize(max))
            }
            _ => None,
        }
    }
}

/// Whether the recording goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    Continue,
    /// A limit was reached; nothing more is written. Call [`Recorder::finish`].
    Stopped(StopReason),
}

/// Everything `netwatch record` decides about its files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordingPlan {
    pub rotation: Rotation,
    pub limits: Limits,
    pub writer: WriterOptions,
}

/// Parses a size: a number with an optional unit, `kB`/`MB`/`GB`/`TB` in powers of 1000 (as
/// tcpdump's `-C`), `KiB`/`MiB`/`GiB`/`TiB` in powers of 1024, `B` or none for bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let split = trimmed.find(|c: char| !c.is_ascii_digit()).unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let bad = || format!("'{text}' is not a size; write a number and a unit, like 100MB or 2GiB");
    let number: u64 = number.parse().map_err(|_| bad())?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "t" | "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => return Err(bad()),
    };
    let bytes = number.checked_mul(multiplier).ok_or_else(bad)?;
    if bytes == 0 {
        return Err(format!("'{text}' is zero bytes; give a size above zero, like 100MB"));
    }
    Ok(bytes)
}

/// What a finished recording wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingSummary {
    /// Files still on disk, oldest first.
    pub files: Vec<PathBuf>,
    pub packets: u64,
    pub bytes: u64,
    pub stopped: Option<StopReason>,
}

/// Writes a recording into one file or a rotation of files, within its limits.
#[derive(Debug)]
pub struct Recorder {
    base: PathBuf,
    plan: RecordingPlan,
    /// The cluster as recorded so far: the head of every new file.
    view: ClusterView,
    writer: PcapngWriter,
    file_index: u32,
    file_started: Timestamp,
    started: Timestamp,
    /// Bytes of files already closed.
    closed_bytes: u64,
    closed_packets: u64,
    files: Vec<PathBuf>,
    /// The numbers of the ring's files, oldest first: an earlier run's and this one's, as
    /// written. The ring removes from its front, not `index - keep`: numbers skipped because
    /// their file existed are not the ring's, and are neither removed nor counted.
    ring: VecDeque<u32>,
    stopped: Option<StopReason>,
}

impl Recorder {
    /// Starts the first file at `base` (numbered when rotating) with `cluster_events` as its
    /// view, stamped `now`.
    pub fn create(
        base: &Path,
        interfaces: &[InterfaceDesc],
        cluster_events: &[ClusterEvent],
        now: Timestamp,
        plan: RecordingPlan,
    ) -> Result<Self, RecordError> {
        let mut view = ClusterView::new();
        for event in cluster_events {
            view.apply(event.clone());
        }
        // Numbered files continue after those of an earlier run (a restart must not overwrite
        // them), and the ring keeps the newest `--keep` of them all: what it would have removed
        // goes now, so restarts (even before a first rotation) never grow it.
        let earlier = plan.rotation.existing(base);
        let file_index = plan.rotation.free_index(base, earlier.last().map_or(1, |last| last + 1));
        let path = plan.rotation.file_path(base, file_index);
        let writer =
            PcapngWriter::create_with(&path, interfaces, cluster_events, now, plan.writer)?;
        let mut ring: VecDeque<u32> = earlier.into();
        ring.push_back(file_index);
        let mut recorder = Self {
            base: base.to_owned(),
            plan,
            view,
            writer,
            file_index,
            file_started: now,
            started: now,
            closed_bytes: 0,
            closed_packets: 0,
            files: vec![path],
            ring,
            stopped: None,
        };
        recorder.trim_ring()?;
        Ok(recorder)
    }

    /// Removes the ring's oldest files past `--keep`: this run's, or an earlier run's.
    fn trim_ring(&mut self) -> Result<(), RecordError> {
        let Some(keep) = self.plan.rotation.keep() else { return Ok(()) };
        while self.ring.len() > keep {
            let Some(oldest) = self.ring.pop_front() else { break };
            let old = self.plan.rotation.file_path(&self.base, oldest);
            self.files.retain(|f| *f != old);
            remove_ring_file(&old)?;
        }
        Ok(())
    }

    /// Writes one packet, starting the next file first when the rotation says so. Returns
    /// `Stopped` (and writes nothing) once a limit is reached.
    pub fn write_frame(
        &mut self,
        interface: u32,
        ts: Timestamp,
        data: &[u8],
        orig_len: u32,
    ) -> Result<Progress, RecordError> {
        if let Some(reason) = self.stopped {
            return Ok(Progress::Stopped(reason));
        }
        let block = self.writer.packet_block_len(data.len());
        let total = self.closed_bytes + self.writer.len_bytes();
        if let Some(reason) = self.plan.limits.stop_reason(self.started, total, ts, block) {
            self.stopped = Some(reason);
            return Ok(Progress::Stopped(reason));
        }
        let file = FileState {
            bytes: self.writer.len_bytes(),
            packets: self.writer.packets(),
            started: self.file_started,
        };
        if self.plan.rotation.is_due(&file, ts, block) {
            self.rotate(ts)?;
            // The new file's header counts towards --max-size too.
            let total = self.closed_bytes + self.writer.len_bytes();
            if let Some(reason) = self.plan.limits.stop_reason(self.started, total, ts, block) {
                self.stopped = Some(reason);
                return Ok(Progress::Stopped(reason));
            }
        }
        self.writer.write_frame(interface, ts, data, orig_len)?;
        Ok(Progress::Continue)
    }

    /// Records a batch of cluster changes applied at `ts`, and keeps them for later files.
    pub fn write_cluster_events(
        &mut self,
        ts: Timestamp,
        events: &[ClusterEvent],
    ) -> Result<(), RecordError> {
        for event in events {
            self.view.apply(event.clone());
        }
        self.writer.write_cluster_events(ts, events)
    }

    /// Describes an interface that appeared during the recording; returns its id.
    pub fn add_interface(&mut self, interface: InterfaceDesc) -> Result<u32, RecordError> {
        self.writer.add_interface(interface)
    }

    /// Called on every tick of the run loop with the clock: flushes when due, and stops once
    /// `--duration` has passed on a quiet link.
    pub fn tick(&mut self, now: Timestamp) -> Result<Progress, RecordError> {
        self.writer.flush_if_due(now)?;
        if self.stopped.is_none()
            && let Some(duration) = self.plan.limits.duration
            && now >= self.started.saturating_add(duration)
        {
            self.stopped = Some(StopReason::Duration(duration));
        }
        Ok(self.stopped.map_or(Progress::Continue, Progress::Stopped))
    }

    /// Flushes the current file and says what was written.
    pub fn finish(self) -> Result<RecordingSummary, RecordError> {
        let packets = self.closed_packets + self.writer.packets();
        let bytes = self.closed_bytes + self.writer.len_bytes();
        self.writer.finish()?;
        Ok(RecordingSummary { files: self.files, packets, bytes, stopped: self.stopped })
    }

    /// Files written and still on disk, oldest first; the last is being written.
    #[must_use]
    /// Bytes written so far over all files.
    pub fn bytes_written(&self) -> u64 {
        self.closed_bytes + self.writer.len_bytes()
    }

    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Closes the current file and starts the next with every interface and the whole view.
    fn rotate(&mut self, now: Timestamp) -> Result<(), RecordError> {
        let index = self.plan.rotation.free_index(&self.base, self.file_index + 1);
        let path = self.plan.rotation.file_path(&self.base, index);
        let events = view_events(&self.view);
        let next = PcapngWriter::create_with(
            &path,
            self.writer.interfaces(),
            &events,
            now,
            self.plan.writer,
        )?;
        let previous = std::mem::replace(&mut self.writer, next);
        self.closed_bytes += previous.len_bytes();
        self.closed_packets += previous.packets();
        self.files.push(path);
        self.file_index = index;
        self.file_started = now;
        previous.finish()?;
        self.ring.push_back(index);
        self.trim_ring()
    }
}

/// Removes a file the ring no longer keeps; one already gone (deleted by hand to make room) is
/// what the ring wanted.
fn remove_ring_file(path: &Path) -> Result<(), RecordError> {
    match std::fs::remove_file(path) {
        Err(source) if source.kind() != std::io::ErrorKind::NotFound => {
            Err(RecordError::Remove { path: path.display().to_string(), source })
        }
        _ => Ok(()),
    }
}

/// The events that rebuild `view` from nothing: one `Reset` per kind (the view is the whole
/// truth for every kind), then `Synced` for the kinds that were.
#[must_use]
pub fn view_events(view: &ClusterView) -> Vec<ClusterEvent> {
    let mut events: Vec<ClusterEvent> = ResourceKind::ALL
        .iter()
        .map(|&kind| {
            let objects: Vec<Object> = match kind {
                ResourceKind::Namespace => {
                    view.namespaces.values().cloned().map(Object::Namespace).collect()
                }
                ResourceKind::Pod => view.pods.values().cloned().map(Object::Pod).collect(),
                ResourceKind::Service => {
                    view.services.values().cloned().map(Object::Service).collect()
                }
                ResourceKind::EndpointSlice => {
                    view.endpoint_slices.values().cloned().map(Object::EndpointSlice).collect()
                }
                ResourceKind::Node => view.nodes.values().cloned().map(Object::Node).collect(),
                ResourceKind::NetworkPolicy => {
                    view.policies.values().cloned().map(Object::NetworkPolicy).collect()
                }
            };
            ClusterEvent::Reset(kind, objects)
        })
        .collect();
    let mut synced = view.synced.clone();
    synced.sort();
    events.extend(synced.into_iter().map(ClusterEvent::Synced));
    events
}

#[cfg(test)]
mod tests;
