//! The pcapng reader of `netwatch replay`: frames with their interface (by the names the file's
//! interface blocks give, so a replay shows `cni0` and `veth1a2b3c` rather than the file name)
//! and the cluster events netwatch embedded as custom blocks, by their recorded time.
//!
//! It reads any pcapng — several sections, either byte order, any `if_tsresol`, Enhanced,
//! Simple and obsolete Packet Blocks — and skips blocks it has no use for. It owns parsing and
//! must not decode packets or apply events: it hands [`Frame`]s to the pipeline through
//! [`PacketSource`] and [`TimedClusterEvent`]s to whoever drives the engine. libpcap stays the
//! reader of classic pcap (`capture::file`); it cannot see custom blocks or interface ids.
//!
//! Damaged input never panics: a file cut short (a crash, `kill -9`, a full disk) yields every
//! packet and event before the cut and one warning saying at which byte it stopped; a block
//! that cannot be right (a length that does not add up) ends the read the same way. Events that
//! cannot be read are skipped with a warning; packets on an interface the file never described
//! are counted and reported once.

mod cluster_blocks;
mod fields;

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use rustc_hash::FxHashMap;

use crate::capture::{CaptureError, Frame, Next, PacketSource};
use crate::cluster::ClusterEvent;
use crate::decode::LinkType;
use crate::record::pcapng::{
    BLOCK_CUSTOM_COPY, BLOCK_CUSTOM_NO_COPY, BLOCK_ENHANCED_PACKET, BLOCK_INTERFACE,
    BLOCK_PACKET_OBSOLETE, BLOCK_SECTION_HEADER, BLOCK_SIMPLE_PACKET, BYTE_ORDER_MAGIC,
};
use crate::time::Timestamp;

use cluster_blocks::ClusterBlocks;
use fields::{Endian, Resolution, block_name, options, read_up_to};

/// Blocks larger than this are taken for damage rather than allocated.
const MAX_BLOCK_BYTES: u32 = 64 << 20;

/// Whether `prefix` (the first bytes of a file) starts a pcapng file.
#[must_use]
pub fn is_pcapng(prefix: &[u8]) -> bool {
    prefix.get(..4) == Some(&BLOCK_SECTION_HEADER.to_le_bytes()[..])
}

/// A cluster change and the time it was applied during the recording.
#[derive(Debug, Clone, PartialEq)]
pub struct TimedClusterEvent {
    pub ts: Timestamp,
    pub event: ClusterEvent,
}

/// An interface of the current section.
#[derive(Debug, Clone, Copy)]
struct SectionInterface {
    /// Index into the source's interface names.
    global: Option<u16>,
    linktype: Option<LinkType>,
    snaplen: u32,
    resolution: Resolution,
    offset_secs: i64,
}

/// A packet found in the block buffer, handed out on the next call.
#[derive(Debug, Clone, Copy)]
struct FoundFrame {
    ts: Timestamp,
    interface: u16,
    linktype: Option<LinkType>,
    start: usize,
    len: usize,
    wire_len: u32,
}

enum Step {
    Packet(FoundFrame),
    Continue,
    End,
}

/// A pcapng file as a packet source, with its netwatch cluster events on the side.
pub struct PcapngSource<R: Read = BufReader<File>> {
    input: R,
    label: String,
    /// Bytes consumed so far: the offset of the next block.
    offset: u64,
    /// The body of the block just read (it only grows, so it is rarely reallocated).
    block: Vec<u8>,
    endian: Endian,
    section: Vec<SectionInterface>,
    names: Vec<String>,
    /// (name, link type) → source-wide index.
    keys: FxHashMap<(String, u16), u16>,
    /// `tcpdump -i any` files: the source-wide index of each kernel interface index met in a
    /// cooked v2 header (a lookup per packet, not a name made and searched for).
    sll2_interfaces: FxHashMap<u32, u16>,
    pending: Option<FoundFrame>,
    /// The first block's type was read to recognise the file.
    magic_read: bool,
    cluster_blocks: ClusterBlocks,
    events: VecDeque<TimedClusterEvent>,
    packets_read: u64,
    last_ts: Option<Timestamp>,
    unknown_interface_packets: u64,
    warnings: Vec<String>,
    ended: bool,
    /// How many of `names` were already handed out by `take_new_interfaces`.
    announced: usize,
}

impl PcapngSource {
    /// Opens a pcapng file and reads up to its first packet (interfaces and the recorded
    /// cluster view come first in netwatch's files).
    pub fn open(path: &Path) -> Result<Self, CaptureError> {
        let label = path.display().to_string();
        let file = File::open(path)
            .map_err(|e| CaptureError::Open { path: label.clone(), reason: e.to_string() })?;
        Self::from_reader(&label, BufReader::with_capacity(1 << 20, file))
    }
}

impl PcapngSource<io::Cursor<Vec<u8>>> {
    /// Reads pcapng bytes held in memory.
    pub fn from_bytes(label: &str, bytes: Vec<u8>) -> Result<Self, CaptureError> {
        Self::from_reader(label, io::Cursor::new(bytes))
    }
}

impl<R: Read> PcapngSource<R> {
    /// Reads pcapng from any reader (`label` names it in messages), up to the first packet.
    pub fn from_reader(label: &str, mut input: R) -> Result<Self, CaptureError> {
        let mut magic = [0u8; 4];
        let got = read_up_to(&mut input, &mut magic)
            .map_err(|e| CaptureError::Open { path: label.to_owned(), reason: e.to_string() })?;
        if got < 4 || !is_pcapng(&magic) {
            let reason = if got == 0 {
                "the file is empty".to_owned()
            } else {
                "it does not start with a pcapng Section Header Block".to_owned()
            };
            return Err(CaptureError::NotACapture { path: label.to_owned(), reason });
        }
        let mut source = Self {
            input,
            label: label.to_owned(),
            offset: 0,
            block: Vec::new(),
            endian: Endian::Little,
            section: Vec::new(),
            names: Vec::new(),
            keys: FxHashMap::default(),
            sll2_interfaces: FxHashMap::default(),
            pending: None,
            magic_read: true,
            cluster_blocks: ClusterBlocks::default(),
            events: VecDeque::new(),
            packets_read: 0,
            last_ts: None,
            unknown_interface_packets: 0,
            warnings: Vec::new(),
            ended: false,
            announced: 0,
        };
        loop {
            match source.next_block() {
                Step::Packet(found) => {
                    source.pending = Some(found);
                    break;
                }
                Step::Continue => {}
                Step::End => {
                    source.end();
                    break;
                }
            }
        }
        Ok(source)
    }

    /// Whether the file carried netwatch cluster events (so far: after opening, in its head).
    #[must_use]
    pub fn has_netwatch_blocks(&self) -> bool {
        self.cluster_blocks.seen() > 0
    }

    /// Every cluster event read so far, in file order. Blocks are read in order, so after
    /// [`next_frame`](PacketSource::next_frame) returns a packet, these are the events written
    /// before it; right after opening, the recorded view at the start.
    pub fn take_cluster_events(&mut self) -> Vec<TimedClusterEvent> {
        self.events.drain(..).collect()
    }

    /// The cluster events read so far that were applied at or before `until`, oldest first, so
    /// a run loop applies each at its recorded time.
    pub fn take_cluster_events_due(&mut self, until: Timestamp) -> Vec<TimedClusterEvent> {
        self.events.make_contiguous().sort_by_key(|e| e.ts);
        let due = self.events.iter().take_while(|e| e.ts <= until).count();
        self.events.drain(..due).collect()
    }

    /// Reads one block; a packet stays in `self.block` until the next call.
    fn next_block(&mut self) -> Step {
        let start = self.offset;
        let mut header = [0u8; 8];
        let header_start = if self.magic_read {
            header[..4].copy_from_slice(&BLOCK_SECTION_HEADER.to_le_bytes());
            self.magic_read = false;
            4
        } else {
            0
        };
        match read_up_to(&mut self.input, &mut header[header_start..]) {
            Ok(0) if header_start == 0 => return Step::End,
            Ok(n) if n + header_start < 8 => return self.cut_short(start, "a block header"),
            Ok(_) => {}
            Err(e) => return self.unreadable(start, &e),
        }
        self.offset += 8;
        let raw_type = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let is_section = raw_type == BLOCK_SECTION_HEADER;
        let mut body_start = 0;
        if is_section {
            // The byte-order magic decides how this section, and this block's length, read.
            let mut magic = [0u8; 4];
            match read_up_to(&mut self.input, &mut magic) {
                Ok(4) => {}
                Ok(_) => return self.cut_short(start, "a Section Header Block"),
                Err(e) => return self.unreadable(start, &e),
            }
            self.offset += 4;
            self.endian = if u32::from_le_bytes(magic) == BYTE_ORDER_MAGIC {
                Endian::Little
            } else if u32::from_be_bytes(magic) == BYTE_ORDER_MAGIC {
                Endian::Big
            } else {
                return self.damaged(start, "a section header with no byte-order magic");
            };
            self.ensure_block(4);
            self.block[..4].copy_from_slice(&magic);
            body_start = 4;
        }
        let block_type =
            if is_section { raw_type } else { self.endian.u32(&header, 0).unwrap_or(0) };
        let total = self.endian.u32(&header, 4).unwrap_or(0);
        if total < 12
            || !total.is_multiple_of(4)
            || total > MAX_BLOCK_BYTES
            || (is_section && total < 28)
        {
            return self.damaged(start, &format!("a block of impossible length {total}"));
        }
        // The body after the 8-byte header, trailer included.
        let body_len = total as usize - 8;
        self.ensure_block(body_len);
        match read_up_to(&mut self.input, &mut self.block[body_start..body_len]) {
            Ok(n) if n + body_start == body_len => {}
            Ok(_) => return self.cut_short(start, block_name(block_type)),
            Err(e) => return self.unreadable(start, &e),
        }
        self.offset += (body_len - body_start) as u64;
        if self.endian.u32(&self.block, body_len - 4) != Some(total) {
            return self.damaged(start, "a block whose two length fields disagree");
        }
        let body_len = body_len - 4;
        match block_type {
            BLOCK_SECTION_HEADER => self.read_section_header(start),
            BLOCK_INTERFACE => {
                self.read_interface(body_len);
                Step::Continue
            }
            BLOCK_ENHANCED_PACKET => self.read_enhanced_packet(start, body_len),
            BLOCK_SIMPLE_PACKET => self.read_simple_packet(body_len),
            BLOCK_PACKET_OBSOLETE => self.read_obsolete_packet(start, body_len),
            BLOCK_CUSTOM_COPY | BLOCK_CUSTOM_NO_COPY => {
                self.read_custom(start, body_len);
                Step::Continue
            }
            // Name resolution, statistics, decryption secrets, …: nothing netwatch uses.
            _ => Step::Continue,
        }
    }

    fn ensure_block(&mut self, len: usize) {
        if self.block.len() < len {
            self.block.resize(len, 0);
        }
    }

    fn read_section_header(&mut self, start: u64) -> Step {
        let major = self.endian.u16(&self.block, 4).unwrap_or(0);
        if major != 1 {
            return self.damaged(start, &format!("a section of pcapng version {major}, not 1"));
        }
        if let Some(from) = self.cluster_blocks.abandon() {
            self.warnings.push(format!(
                "{}: cluster events from byte {from} end before the section at byte {start}; they are skipped",
                self.label
            ));
        }
        // Interface ids start again in every section.
        self.section.clear();
        Step::Continue
    }

    fn read_interface(&mut self, body_len: usize) {
        let endian = self.endian;
        let body = &self.block[..body_len];
        let linktype_number = endian.u16(body, 0).unwrap_or(u16::MAX);
        let snaplen = endian.u32(body, 4).unwrap_or(0);
        let mut name = None;
        let mut resolution = Resolution::Decimal(6);
        let mut offset_secs = 0;
        for (code, value) in options(endian, body.get(8..).unwrap_or(&[])) {
            match code {
                2 => name = Some(String::from_utf8_lossy(value).trim_end_matches('\0').to_owned()),
                9 => {
                    if let Some(&byte) = value.first() {
                        resolution = Resolution::from_option(byte);
                    }
                }
                14 => {
                    if let Some(secs) = endian.u64(value, 0) {
                        offset_secs = secs.cast_signed();
                    }
                }
                _ => {}
            }
        }
        let local = self.section.len();
        let name = name.filter(|n| !n.is_empty()).unwrap_or_else(|| {
            if local == 0 { self.label.clone() } else { format!("{}#{local}", self.label) }
        });
        let linktype = LinkType::from_linktype(i32::from(linktype_number));
        if linktype.is_none() {
            self.warnings.push(format!(
                "{}: interface '{name}' has link type {linktype_number}, which is not decoded (Ethernet, Linux cooked v1/v2, raw IP and loopback are); its packets are counted as skipped",
                self.label
            ));
        }
        let global = self.global_index(name, linktype_number);
        self.section.push(SectionInterface { global, linktype, snaplen, resolution, offset_secs });
    }

    /// The source-wide index of an interface. The same interface in a later section
    /// (concatenated or rotated files) keeps its index.
    fn global_index(&mut self, name: String, linktype_number: u16) -> Option<u16> {
        let key = (name, linktype_number);
        if let Some(index) = self.keys.get(&key) {
            return Some(*index);
        }
        let index = u16::try_from(self.names.len()).ok()?;
        self.names.push(key.0.clone());
        self.keys.insert(key, index);
        Some(index)
    }

    fn timestamp(interface: &SectionInterface, units: u64) -> Timestamp {
        let nanos = interface.resolution.to_nanos(units);
        let offset = interface.offset_secs.saturating_mul(1_000_000_000);
        Timestamp(nanos.saturating_add_signed(offset))
    }

    /// The packet at `data_start..+captured` of the block, on the section's interface `local`.
    fn packet(
        &mut self,
        local: usize,
        units: Option<u64>,
        data_start: usize,
        captured: usize,
        original: usize,
    ) -> Step {
        let Some(interface) = self.section.get(local).copied() else {
            self.unknown_interface_packets += 1;
            return Step::Continue;
        };
        let Some(mut global) = interface.global else {
            self.unknown_interface_packets += 1;
            return Step::Continue;
        };
        let linktype = interface.linktype;
        // `tcpdump -i any --pcapng`: one interface on file, the real one in each packet's cooked
        // header. Each becomes an interface of its own (`if7`), so copies can be counted once.
        if linktype == Some(LinkType::LinuxSll2)
            && let Some(ifindex) = self
                .block
                .get(data_start..data_start + captured)
                .and_then(crate::capture::file::sll2_ifindex)
        {
            global = match self.sll2_interfaces.get(&ifindex) {
                Some(index) => *index,
                None => {
                    let index =
                        self.global_index(format!("if{ifindex}"), LinkType::LinuxSll2.number());
                    if let Some(index) = index {
                        self.sll2_interfaces.insert(ifindex, index);
                    }
                    index.unwrap_or(global)
                }
            };
        }
        let ts = match units {
            Some(units) => Self::timestamp(&interface, units),
            // A Simple Packet Block has no time: it happened no earlier than the one before.
            None => self.last_ts.unwrap_or_default(),
        };
        self.packets_read += 1;
        self.last_ts = Some(ts);
        Step::Packet(FoundFrame {
            ts,
            interface: global,
            linktype,
            start: data_start,
            len: captured,
            wire_len: u32::try_from(original.max(captured)).unwrap_or(u32::MAX),
        })
    }

    fn read_enhanced_packet(&mut self, start: u64, body_len: usize) -> Step {
        let endian = self.endian;
        let fields = (
            endian.u32(&self.block, 0),
            endian.timestamp(&self.block, 4),
            endian.u32(&self.block, 12),
        );
        let (Some(interface), Some(units), Some(captured)) = fields else {
            return self.damaged(start, "an Enhanced Packet Block too short for its fields");
        };
        let original = endian.u32(&self.block, 16).unwrap_or(captured) as usize;
        let captured = captured as usize;
        if 20 + captured > body_len {
            return self.damaged(start, "a packet longer than its block");
        }
        self.packet(interface as usize, Some(units), 20, captured, original)
    }

    fn read_obsolete_packet(&mut self, start: u64, body_len: usize) -> Step {
        let endian = self.endian;
        let fields = (
            endian.u16(&self.block, 0),
            endian.timestamp(&self.block, 4),
            endian.u32(&self.block, 12),
        );
        let (Some(interface), Some(units), Some(captured)) = fields else {
            return self.damaged(start, "a Packet Block too short for its fields");
        };
        let original = endian.u32(&self.block, 16).unwrap_or(captured) as usize;
        let captured = captured as usize;
        if 20 + captured > body_len {
            return self.damaged(start, "a packet longer than its block");
        }
        self.packet(usize::from(interface), Some(units), 20, captured, original)
    }

    fn read_simple_packet(&mut self, body_len: usize) -> Step {
        let original = self.endian.u32(&self.block, 0).unwrap_or(0) as usize;
        let snaplen = self.section.first().map_or(0, |i| i.snaplen as usize);
        let mut captured = original.min(body_len.saturating_sub(4));
        if snaplen > 0 {
            captured = captured.min(snaplen);
        }
        self.packet(0, None, 4, captured, original)
    }

    /// A custom block: netwatch's are gathered into cluster events; others are skipped.
    fn read_custom(&mut self, start: u64, body_len: usize) {
        let outcome = self.cluster_blocks.read(self.endian, &self.block[..body_len], start);
        self.events.extend(outcome.events);
        for warning in outcome.warnings {
            self.warnings.push(format!("{}: {warning}", self.label));
        }
    }

    fn read_count(&self) -> String {
        match self.last_ts {
            Some(ts) => {
                format!("the {} packets before it (up to {ts}) were read", self.packets_read)
            }
            None => "no packet came before it".to_owned(),
        }
    }

    /// The file ends inside a block: what a crash or `kill -9` leaves behind.
    fn cut_short(&mut self, start: u64, what: &str) -> Step {
        self.warnings.push(format!(
            "{}: the file is cut short at byte {start}, inside {what} (a recording that did not finish?); {}",
            self.label,
            self.read_count()
        ));
        Step::End
    }

    fn damaged(&mut self, start: u64, what: &str) -> Step {
        self.warnings.push(format!(
            "{}: the capture is damaged at byte {start} ({what}); {}",
            self.label,
            self.read_count()
        ));
        Step::End
    }

    fn unreadable(&mut self, start: u64, error: &io::Error) -> Step {
        self.warnings.push(format!(
            "{}: cannot read at byte {start}: {error}; {}",
            self.label,
            self.read_count()
        ));
        Step::End
    }

    /// Reports what the end leaves over, once.
    fn end(&mut self) {
        if self.ended {
            return;
        }
        self.ended = true;
        let abandoned = self.cluster_blocks.abandon();
        if let Some(from) = abandoned
            && !self.warnings.iter().any(|w| w.contains("cut short"))
        {
            self.warnings.push(format!(
                "{}: cluster events from byte {from} end before their last part; they are skipped",
                self.label
            ));
        }
        if self.unknown_interface_packets > 0 {
            self.warnings.push(format!(
                "{}: {} packets name an interface the file never described; they were skipped",
                self.label, self.unknown_interface_packets
            ));
        }
    }
}

impl<R: Read> PacketSource for PcapngSource<R> {
    fn next_frame(&mut self) -> Next<'_> {
        if let Some(found) = self.pending.take() {
            return self.frame(found);
        }
        if self.ended {
            return Next::End;
        }
        loop {
            match self.next_block() {
                Step::Packet(found) => return self.frame(found),
                Step::Continue => {}
                Step::End => {
                    self.end();
                    return Next::End;
                }
            }
        }
    }

    fn interfaces(&self) -> Vec<String> {
        self.names.clone()
    }

    /// A recording of several interfaces sees a pod's packet on its veth and again on the
    /// bridge or uplink, and interfaces may be added mid-file as pods come: live capture counted
    /// each packet once, and so must its replay. On a single interface nothing is a copy.
    fn sees_packets_more_than_once(&self) -> bool {
        true
    }

    fn take_new_interfaces(&mut self) -> Option<Vec<String>> {
        (self.announced < self.names.len()).then(|| {
            self.announced = self.names.len();
            self.names.clone()
        })
    }

    fn take_cluster_events(&mut self) -> Vec<crate::cluster::ClusterEvent> {
        self.events.drain(..).map(|timed| timed.event).collect()
    }

    fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }
}

impl<R: Read> PcapngSource<R> {
    fn frame(&self, found: FoundFrame) -> Next<'_> {
        let data = self.block.get(found.start..found.start + found.len).unwrap_or(&[]);
        Next::Packet(Frame {
            ts: found.ts,
            interface: found.interface,
            linktype: found.linktype,
            data,
            wire_len: found.wire_len,
        })
    }
}

#[cfg(test)]
mod tests;
