//! Capture: sources of raw frames behind one trait, so replay and live capture share every
//! stage after this one.
//!
//! A source says explicitly whether it has a frame, nothing right now, or nothing ever again.
//! This module and its children are the only ones (with `run` and `main`) that touch files or
//! interfaces.

pub mod file;
pub mod interfaces;
pub mod live;

use crate::decode::{LinkType, SkipReason, Summary};
use crate::time::Timestamp;

pub use file::FileSource;

/// One captured frame, borrowed from the source until the next call.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    pub ts: Timestamp,
    /// Index into the source's interface names.
    pub interface: u16,
    /// `None` when the capture's link type is one netwatch cannot decode (counted, not fatal).
    pub linktype: Option<LinkType>,
    pub data: &'a [u8],
    /// The packet's length on the wire (more than `data` when the snap length cut it).
    pub wire_len: u32,
}

/// A frame decoded where it was captured (a capture or reader thread): what the run loop hands
/// the engine. Owned and `Send`; the frame bytes stay behind but for the bounded part of the
/// payload that the flow stage reads (see `decode::AppData`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedFrame {
    pub ts: Timestamp,
    pub interface: u16,
    pub decoded: Result<Summary, SkipReason>,
    /// The frame's bytes too, when they are being recorded (boxed: most frames carry none).
    pub raw: Option<Box<RawFrame>>,
}

/// A captured frame's bytes, kept for a recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    /// The LINKTYPE number of the interface.
    pub linktype: u16,
    pub data: Vec<u8>,
    /// The length on the wire (more than `data` when the snap length cut it).
    pub wire_len: u32,
}

impl DecodedFrame {
    /// Decodes a borrowed frame into an owned one.
    #[must_use]
    pub fn from_frame(frame: &Frame<'_>) -> Self {
        let decoded = crate::decode::decode(frame.linktype, frame.data).map(|mut decoded| {
            if decoded.length_from_capture {
                let packet = &mut decoded.packet;
                // What the snap length cut off counts too.
                let cut = u64::from(frame.wire_len).saturating_sub(frame.data.len() as u64);
                let cut = u32::try_from(cut).unwrap_or(u32::MAX);
                packet.ip_len = packet.ip_len.saturating_add(cut);
            }
            crate::decode::summarize(&decoded)
        });
        Self { ts: frame.ts, interface: frame.interface, decoded, raw: None }
    }

    /// Decodes a borrowed frame and keeps a copy of its bytes for recording. Frames of a link
    /// type netwatch cannot name are decoded but not kept.
    #[must_use]
    pub fn keeping_bytes(frame: &Frame<'_>) -> Self {
        let raw = frame.linktype.map(|linktype| {
            Box::new(RawFrame {
                linktype: linktype.number(),
                data: frame.data.to_vec(),
                wire_len: frame.wire_len,
            })
        });
        Self { raw, ..Self::from_frame(frame) }
    }
}

/// Frames per message from the interactive view's file reader (about 78 KB a batch). A headless
/// replay uses larger ones (its engine waits on every batch; see `run::replay`).
pub const FRAME_BATCH: usize = 512;

/// What a source has to say when asked for the next frame.
#[derive(Debug)]
pub enum Next<'a> {
    Packet(Frame<'a>),
    /// Nothing right now (live sources only); ask again later.
    Idle,
    /// Nothing ever again.
    End,
}

/// Errors opening or reading a capture. Each message names the source and the problem.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("cannot read '{path}': {reason}")]
    Open { path: String, reason: String },
    #[error(
        "'{path}' is not a pcap or pcapng capture ({reason}); give a file written by tcpdump, tshark, Wireshark or 'netwatch record'"
    )]
    NotACapture { path: String, reason: String },
}

/// A source of frames.
pub trait PacketSource {
    /// The next frame, `Idle` or `End`.
    fn next_frame(&mut self) -> Next<'_>;
    /// Names of the interfaces frames come from, by index.
    fn interfaces(&self) -> Vec<String>;
    /// Problems met while reading (a damaged file, a vanished interface), each once, taken.
    fn take_warnings(&mut self) -> Vec<String>;
    /// Whether one packet may appear on several of the source's interfaces (a `tcpdump -i any`
    /// capture sees it on the pod's veth and again on the bridge or uplink): the engine should
    /// then count each packet once across interfaces.
    fn sees_packets_more_than_once(&self) -> bool {
        false
    }
    /// The interface names again, if interfaces were added since the last call (a file names
    /// its interfaces as it meets them). Names are only ever appended: indexes stay valid.
    fn take_new_interfaces(&mut self) -> Option<Vec<String>> {
        None
    }
    /// Cluster changes recorded in the input ahead of the frames read so far (a netwatch
    /// recording carries them), taken. Sources without any return none.
    fn take_cluster_events(&mut self) -> Vec<crate::cluster::ClusterEvent> {
        Vec::new()
    }
}
