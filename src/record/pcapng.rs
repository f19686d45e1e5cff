//! The pcapng writer of `netwatch record`: every captured packet, one interface block per
//! captured interface under its real name, nanosecond timestamps, and the cluster view (at the
//! start and every change) embedded as pcapng Custom Blocks, so the file alone replays with
//! identities. [`rotation`] decides when a recording moves on to its next file.
//!
//! It owns the byte layout and the buffering, and must not read a clock: every call that needs
//! the time takes it, so flushing is as testable as the rest. It reads nothing back; that is
//! `pcapng_reader`'s job, which shares the constants below.
//!
//! # Layout
//!
//! Little-endian, one section: a Section Header Block (`shb_userappl` = `netwatch <version>`),
//! one Interface Description Block per interface (`if_name`, `if_tsresol` = 9, the interface's
//! link type and the snap length), then Enhanced Packet Blocks (interface id, nanosecond
//! timestamp, captured and original length) and netwatch Custom Blocks in the order they were
//! written. An interface that appears later gets its IDB when it does.
//!
//! A netwatch Custom Block is block type `0x00000BAD` ("custom, may be copied": it is
//! self-contained, so a copy into another file stays meaningful) with Private Enterprise Number
//! **32473**, the number IANA reserves for documentation and examples (RFC 5612) — netwatch has
//! no PEN of its own; the 8-byte tag `netwatch` right after it tells its blocks from other
//! users of that number. After the standard block header:
//!
//! ```text
//! u32 PEN = 32473 | [u8; 8] "netwatch" | u16 version = 1 | u16 kind = 1 (cluster events)
//! u16 fragment index | u16 fragment count | u32 timestamp high | u32 timestamp low (ns, Unix)
//! u32 payload length | payload, zero-padded to 4 bytes | u32 block total length
//! ```
//!
//! The payload of a batch of cluster events applied at one instant is the JSON array of those
//! [`ClusterEvent`]s (serde's externally tagged form), cut into fragments of at most
//! [`MAX_FRAGMENT_BYTES`] in consecutive blocks: Wireshark refuses blocks much larger than a
//! packet, and a big cluster's view is megabytes. Wireshark lists each custom block as a record
//! of its own ("PCAPNG Custom Block: PEN = Example Enterprise Number…"), so the view is written
//! in as few blocks as possible; capinfos and `tshark -Y frame.interface_id` count packets only.
//!
//! # Safety of the data
//!
//! Blocks are assembled in memory and handed to the destination whole, at least every
//! [`WriterOptions::flush_interval`] of packet time ([`PcapngWriter::write_frame`]) or of clock
//! time ([`PcapngWriter::flush_if_due`]): a `kill -9` loses at most that, and a reader sees a
//! clean file up to a cut block. A write error (a full disk) cuts the file back to the last
//! block the destination took whole, so what stays on disk is a valid pcapng, and every later
//! call fails.

mod blocks;
pub mod rotation;

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Duration;

use crate::cluster::ClusterEvent;
use crate::time::Timestamp;

use blocks::{
    padded, push_cluster_blocks, push_interface_block, push_packet_block, push_section_header,
    whole_blocks,
};
pub use rotation::{Limits, Progress, Recorder, RecordingPlan, Rotation, StopReason, parse_size};

/// Section Header Block.
pub const BLOCK_SECTION_HEADER: u32 = 0x0A0D_0D0A;
/// Interface Description Block.
pub const BLOCK_INTERFACE: u32 = 0x0000_0001;
/// Packet Block (obsolete, still read).
pub const BLOCK_PACKET_OBSOLETE: u32 = 0x0000_0002;
/// Simple Packet Block.
pub const BLOCK_SIMPLE_PACKET: u32 = 0x0000_0003;
/// Enhanced Packet Block.
pub const BLOCK_ENHANCED_PACKET: u32 = 0x0000_0006;
/// Custom Block that may be copied into other files.
pub const BLOCK_CUSTOM_COPY: u32 = 0x0000_0BAD;
/// Custom Block that must not be copied.
pub const BLOCK_CUSTOM_NO_COPY: u32 = 0x4000_0BAD;
/// The byte-order magic of a Section Header Block.
pub const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;

/// IANA's Private Enterprise Number for documentation and examples (RFC 5612), used because
/// netwatch has none of its own; [`NETWATCH_TAG`] makes the blocks unambiguous.
pub const NETWATCH_PEN: u32 = 32_473;
/// The first custom-data bytes of every netwatch block.
pub const NETWATCH_TAG: [u8; 8] = *b"netwatch";
/// The layout version of netwatch blocks.
pub const NETWATCH_BLOCK_VERSION: u16 = 1;
/// A netwatch block kind: a batch of cluster events as JSON.
pub const KIND_CLUSTER_EVENTS: u16 = 1;
/// Largest payload in one netwatch block. Wireshark 4.0 rejects blocks over ~400 KiB.
pub const MAX_FRAGMENT_BYTES: usize = 64 * 1024;
/// Bytes of a netwatch custom block around its payload (headers, fields and trailer).
pub const CUSTOM_BLOCK_OVERHEAD: usize = 8 + 4 + 8 + 2 + 2 + 2 + 2 + 4 + 4 + 4 + 4;

/// Bytes of an Enhanced Packet Block around its (padded) data.
pub const PACKET_BLOCK_OVERHEAD: usize = 8 + 20 + 4;

/// What tcpdump captures by default, and the largest packet Wireshark accepts.
pub const DEFAULT_SNAPLEN: u32 = 262_144;

/// One captured interface as the file describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceDesc {
    /// The interface's real name (`cni0`, `veth1a2b3c`, `eth0`).
    pub name: String,
    /// The pcap `LINKTYPE_*` number of its frames (1 Ethernet, 276 Linux cooked v2, …).
    pub linktype: u16,
}

impl InterfaceDesc {
    #[must_use]
    pub fn new(name: &str, linktype: u16) -> Self {
        Self { name: name.to_owned(), linktype }
    }
}

/// How a writer cuts and flushes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterOptions {
    /// Bytes kept of each packet (`--snaplen`); longer packets keep their original length.
    /// At most [`DEFAULT_SNAPLEN`], the largest packet Wireshark reads.
    pub snaplen: u32,
    /// The most data, in packet or clock time, a crash may lose.
    pub flush_interval: Duration,
    /// Bytes gathered before they are handed to the destination regardless of time.
    pub buffer_bytes: usize,
}

impl Default for WriterOptions {
    fn default() -> Self {
        Self {
            snaplen: DEFAULT_SNAPLEN,
            flush_interval: Duration::from_secs(1),
            buffer_bytes: 1 << 20,
        }
    }
}

/// Why recording failed. Each message names the file.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("cannot create '{path}': {source}")]
    Create { path: String, source: io::Error },
    #[error(
        "cannot write '{path}': {source}; recording stopped — the file is valid and holds {packets} packets ({valid_bytes} bytes); free some space or record with --rotate and a file count"
    )]
    Write { path: String, source: io::Error, packets: u64, valid_bytes: u64 },
    #[error("'{path}': the recording already stopped after a write error")]
    Stopped { path: String },
    #[error(
        "'{path}': packet on interface {interface}, but only {described} interfaces are described"
    )]
    UnknownInterface { path: String, interface: u32, described: usize },
    #[error("'{path}': cannot encode cluster events: {reason}")]
    Encode { path: String, reason: String },
    #[error("cannot remove the old rotated file '{path}': {source}")]
    Remove { path: String, source: io::Error },
}

/// Where a writer's bytes go: a `Write` that can also be cut back to a length, so a failed write
/// never leaves half a block behind.
pub trait Destination: Write {
    /// Shortens what was written to `len` bytes.
    fn cut_to(&mut self, len: u64) -> io::Result<()>;
}

impl Destination for File {
    fn cut_to(&mut self, len: u64) -> io::Result<()> {
        self.set_len(len)?;
        self.seek(SeekFrom::Start(len)).map(|_| ())
    }
}

impl Destination for Vec<u8> {
    fn cut_to(&mut self, len: u64) -> io::Result<()> {
        self.truncate(usize::try_from(len).unwrap_or(usize::MAX));
        Ok(())
    }
}

impl Destination for io::Sink {
    fn cut_to(&mut self, _len: u64) -> io::Result<()> {
        Ok(())
    }
}

/// Writes one pcapng file. See the module docs for the layout and the flush policy.
#[derive(Debug)]
pub struct PcapngWriter<D: Destination = File> {
    /// `None` only after [`finish`](Self::finish) took it.
    dest: Option<D>,
    label: String,
    options: WriterOptions,
    /// Whole blocks not yet handed to the destination.
    buffer: Vec<u8>,
    /// Bytes the destination took: always a block boundary.
    written: u64,
    interfaces: Vec<InterfaceDesc>,
    packets_written: u64,
    packets_buffered: u64,
    packet_flush_at: Option<Timestamp>,
    clock_flush_at: Option<Timestamp>,
    failed: bool,
}

impl PcapngWriter<File> {
    /// Creates (or truncates) `path` and writes the header, the interfaces and the cluster view
    /// (`cluster_events`, stamped `now`), flushed at once so the file is valid from the start.
    pub fn create(
        path: &Path,
        interfaces: &[InterfaceDesc],
        cluster_events: &[ClusterEvent],
        now: Timestamp,
    ) -> Result<Self, RecordError> {
        Self::create_with(path, interfaces, cluster_events, now, WriterOptions::default())
    }

    /// [`create`](Self::create) with a snap length and flush policy of the caller's choosing.
    pub fn create_with(
        path: &Path,
        interfaces: &[InterfaceDesc],
        cluster_events: &[ClusterEvent],
        now: Timestamp,
        options: WriterOptions,
    ) -> Result<Self, RecordError> {
        let label = path.display().to_string();
        let file = File::create(path)
            .map_err(|source| RecordError::Create { path: label.clone(), source })?;
        Self::new(file, &label, interfaces, cluster_events, now, options)
    }
}

impl<D: Destination> PcapngWriter<D> {
    /// Starts a file on any destination (`label` names it in errors): header, interfaces and
    /// the cluster view, flushed.
    pub fn new(
        dest: D,
        label: &str,
        interfaces: &[InterfaceDesc],
        cluster_events: &[ClusterEvent],
        now: Timestamp,
        options: WriterOptions,
    ) -> Result<Self, RecordError> {
        let mut writer = Self {
            dest: Some(dest),
            label: label.to_owned(),
            options: WriterOptions {
                snaplen: options.snaplen.clamp(1, DEFAULT_SNAPLEN),
                ..options
            },
            buffer: Vec::with_capacity(options.buffer_bytes.max(4096)),
            written: 0,
            interfaces: Vec::new(),
            packets_written: 0,
            packets_buffered: 0,
            packet_flush_at: None,
            clock_flush_at: Some(now.saturating_add(options.flush_interval)),
            failed: false,
        };
        push_section_header(&mut writer.buffer);
        for interface in interfaces {
            writer.push_interface(interface.clone());
        }
        writer.write_cluster_events(now, cluster_events)?;
        writer.flush()?;
        Ok(writer)
    }

    /// Describes one more interface (a pod veth that just appeared); returns its id.
    pub fn add_interface(&mut self, interface: InterfaceDesc) -> Result<u32, RecordError> {
        self.check_usable()?;
        Ok(self.push_interface(interface))
    }

    fn push_interface(&mut self, interface: InterfaceDesc) -> u32 {
        push_interface_block(&mut self.buffer, &interface, self.options.snaplen);
        self.interfaces.push(interface);
        u32::try_from(self.interfaces.len() - 1).unwrap_or(u32::MAX)
    }

    /// Appends one packet captured on `interface` (an index into the interfaces, in the order
    /// given) at `ts`. `data` longer than the snap length is cut; `orig_len` is the length on
    /// the wire (at least what was captured). Flushes when a flush interval of packet time has
    /// passed.
    pub fn write_frame(
        &mut self,
        interface: u32,
        ts: Timestamp,
        data: &[u8],
        orig_len: u32,
    ) -> Result<(), RecordError> {
        self.check_usable()?;
        if usize::try_from(interface).unwrap_or(usize::MAX) >= self.interfaces.len() {
            return Err(RecordError::UnknownInterface {
                path: self.label.clone(),
                interface,
                described: self.interfaces.len(),
            });
        }
        push_packet_block(&mut self.buffer, interface, ts, data, orig_len, self.options.snaplen);
        self.packets_buffered += 1;
        let due = self.packet_flush_at.is_some_and(|at| ts >= at);
        if due || self.packet_flush_at.is_none() {
            self.packet_flush_at = Some(ts.saturating_add(self.options.flush_interval));
        }
        if due {
            self.flush()?;
        } else if self.buffer.len() >= self.options.buffer_bytes {
            self.drain()?;
        }
        Ok(())
    }

    /// Appends a batch of cluster events applied at `ts` (nothing for an empty batch).
    pub fn write_cluster_events(
        &mut self,
        ts: Timestamp,
        events: &[ClusterEvent],
    ) -> Result<(), RecordError> {
        self.check_usable()?;
        if events.is_empty() {
            return Ok(());
        }
        let payload = serde_json::to_vec(events)
            .map_err(|e| RecordError::Encode { path: self.label.clone(), reason: e.to_string() })?;
        push_cluster_blocks(&mut self.buffer, ts, &payload).map_err(|reason| {
            RecordError::Encode { path: self.label.clone(), reason: reason.to_owned() }
        })?;
        if self.buffer.len() >= self.options.buffer_bytes {
            self.drain()?;
        }
        Ok(())
    }

    /// Appends one cluster event applied at `ts`.
    pub fn write_cluster_event(
        &mut self,
        ts: Timestamp,
        event: &ClusterEvent,
    ) -> Result<(), RecordError> {
        self.write_cluster_events(ts, std::slice::from_ref(event))
    }

    /// Flushes when a flush interval of clock time (`now`, read by the caller) has passed since
    /// the last clock-driven flush: the run loop calls it on every tick, so a quiet link still
    /// loses at most one interval. Returns whether it flushed.
    pub fn flush_if_due(&mut self, now: Timestamp) -> Result<bool, RecordError> {
        if self.clock_flush_at.is_some_and(|at| now < at) {
            return Ok(false);
        }
        self.flush()?;
        self.clock_flush_at = Some(now.saturating_add(self.options.flush_interval));
        Ok(true)
    }

    /// Hands every whole block to the destination and flushes it.
    pub fn flush(&mut self) -> Result<(), RecordError> {
        self.drain()?;
        let result = match self.dest.as_mut() {
            Some(dest) => dest.flush(),
            None => return Err(RecordError::Stopped { path: self.label.clone() }),
        };
        result.map_err(|source| self.fail(source, 0))
    }

    /// Flushes and returns the destination. The file is complete: nothing needs closing.
    pub fn finish(mut self) -> Result<D, RecordError> {
        self.flush()?;
        self.dest.take().ok_or_else(|| RecordError::Stopped { path: self.label.clone() })
    }

    /// Bytes of the file so far, buffered or not.
    #[must_use]
    pub fn len_bytes(&self) -> u64 {
        self.written + self.buffer.len() as u64
    }

    /// Packets written so far, buffered or not.
    #[must_use]
    pub fn packets(&self) -> u64 {
        self.packets_written + self.packets_buffered
    }

    /// The interfaces described so far, by id.
    #[must_use]
    pub fn interfaces(&self) -> &[InterfaceDesc] {
        &self.interfaces
    }

    /// The file's name, as errors give it.
    #[must_use]
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Bytes a packet of `captured_len` bytes takes in the file (after the snap length).
    #[must_use]
    pub fn packet_block_len(&self, captured_len: usize) -> u64 {
        (PACKET_BLOCK_OVERHEAD + padded(captured_len.min(self.options.snaplen as usize))) as u64
    }

    fn check_usable(&self) -> Result<(), RecordError> {
        if self.failed || self.dest.is_none() {
            return Err(RecordError::Stopped { path: self.label.clone() });
        }
        Ok(())
    }

    /// Hands the buffer to the destination. On an error, cuts the destination back to the last
    /// block it took whole, and stops the writer.
    fn drain(&mut self) -> Result<(), RecordError> {
        self.check_usable()?;
        if self.buffer.is_empty() {
            return Ok(());
        }
        let Some(dest) = self.dest.as_mut() else {
            return Err(RecordError::Stopped { path: self.label.clone() });
        };
        let mut accepted = 0;
        while accepted < self.buffer.len() {
            match dest.write(&self.buffer[accepted..]) {
                Ok(0) => {
                    let error = io::Error::new(io::ErrorKind::WriteZero, "the device took no data");
                    return Err(self.fail(error, accepted));
                }
                Ok(n) => accepted += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.fail(e, accepted)),
            }
        }
        self.written += self.buffer.len() as u64;
        self.packets_written += self.packets_buffered;
        self.packets_buffered = 0;
        self.buffer.clear();
        Ok(())
    }

    /// Stops the writer after `source`, keeping the whole blocks among the first `accepted`
    /// bytes of the buffer that the destination took.
    fn fail(&mut self, source: io::Error, accepted: usize) -> RecordError {
        self.failed = true;
        let (whole_bytes, whole_packets) = whole_blocks(&self.buffer, accepted);
        let valid_bytes = self.written + whole_bytes as u64;
        let packets = self.packets_written + whole_packets;
        if let Some(dest) = self.dest.as_mut() {
            // If even the cut fails the reader still stops cleanly at the broken block.
            let _ = dest.cut_to(valid_bytes);
        }
        self.written = valid_bytes;
        self.packets_written = packets;
        self.packets_buffered = 0;
        self.buffer.clear();
        RecordError::Write { path: self.label.clone(), source, packets, valid_bytes }
    }
}

impl<D: Destination> Drop for PcapngWriter<D> {
    /// Hands buffered blocks over on an early return, as `BufWriter` would; errors are lost
    /// here, so callers that care call [`finish`](Self::finish).
    fn drop(&mut self) {
        if !self.failed && self.dest.is_some() {
            let _ = self.flush();
        }
    }
}

#[cfg(test)]
mod tests;
