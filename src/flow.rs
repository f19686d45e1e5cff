//! Flows: packets folded into bidirectional conversations, oriented from the initiator.
//!
//! [`table::FlowTable`] owns the flows; this module defines what one flow knows. Pure: packets
//! and `now` come in as values, expired and evicted flows go out as values.

pub mod dedup;
pub mod key;
pub mod rates;
pub mod table;

use std::sync::Arc;

use serde::Serialize;

pub use key::{FlowKey, Protocol, SocketEnd};
pub use table::{FlowTable, TableLimits};

/// The latest packet time seen, watched for the clock stepping back (NTP on a live node, or a
/// bogus stamp first): count-once and the flow table both start over from the new time then,
/// as measured from the old one nothing new would be kept or end.
#[derive(Debug, Clone, Copy, Default)]
pub struct PacketClock {
    latest: Timestamp,
}

impl PacketClock {
    /// How far time must go back to count as a step, not a late packet (1 s).
    const STEP_NANOS: u64 = 1_000_000_000;

    /// Takes `now` in; true when it stepped back past the latest time (which becomes `now`).
    pub fn stepped_back(&mut self, now: Timestamp) -> bool {
        let stepped = now.0.saturating_add(Self::STEP_NANOS) < self.latest.0;
        self.latest = if stepped { now } else { self.latest.max(now) };
        stepped
    }

    #[must_use]
    pub fn latest(self) -> Timestamp {
        self.latest
    }
}

use crate::time::Timestamp;
use rates::RateWindow;

/// Packets and bytes in one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    pub packets: u64,
    pub bytes: u64,
}

/// TCP connection state as seen from the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TcpState {
    /// The initiator sent SYN; nothing came back yet.
    SynSent,
    /// The responder answered with SYN-ACK.
    SynAck,
    /// Handshake completed, or the flow was first seen mid-stream.
    Established,
    /// One side sent FIN.
    Closing,
    /// Both sides sent FIN.
    Closed,
    /// Either side sent RST.
    Reset,
    /// A SYN that never got an answer (decided when the flow is reported, not stored).
    NoReply,
}

impl TcpState {
    /// The name used in records and tables.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::SynSent => "syn_sent",
            Self::SynAck => "syn_ack",
            Self::Established => "established",
            Self::Closing => "closing",
            Self::Closed => "closed",
            Self::Reset => "reset",
            Self::NoReply => "no_reply",
        }
    }
}

/// How long a SYN may stay unanswered before the flow reads "no reply": Linux retransmits the
/// first SYN after one second.
pub const NO_REPLY_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// Where an external name for the responder came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LearnedName {
    pub name: Arc<str>,
    /// True when the initiator's own DNS lookup returned it; false when only another client's
    /// answer named the address.
    pub own_lookup: bool,
}

/// One bidirectional conversation.
///
/// Laid out by hand, hot fields first: a packet reads and writes the first two cache lines
/// (rates, times, counters, the initiator, state, the interface it was last seen on) and
/// nothing after them unless something changes (another interface, a close, a translation).
/// A table larger than the cache then costs two line fetches a packet, not one per field
/// scattered over five; fewer lines also leave the memory bandwidth that the reader thread's
/// copy of the file competes for.
#[derive(Debug, Clone)]
#[repr(C, align(64))]
pub struct Flow {
    pub rates: RateWindow,
    pub last_seen: Timestamp,
    /// From the initiator.
    pub tx: Counters,
    /// To the initiator.
    pub rx: Counters,
    /// The side that started the conversation (the SYN sender, else the first packet's sender).
    pub initiator: SocketEnd,
    pub tcp: Option<TcpState>,
    /// FIN seen from initiator / responder.
    pub(crate) fin: [bool; 2],
    /// Whether the initiator's first payload was already inspected.
    pub payload_inspected: bool,
    /// The interface the last packet came on, always one of `interfaces`: a packet on the same
    /// one (nearly all) need not read the list.
    pub(crate) last_interface: u16,
    // Cold from here: read when the flow starts, ends, changes or is shown.
    /// Capture interfaces the flow was seen on, by interface index of the source, in the order
    /// first seen. Inline: almost every flow is seen on one to four.
    pub interfaces: smallvec::SmallVec<[u16; 4]>,
    /// The verdict and the names as they stood when a TCP flow closed: later cluster changes
    /// do not rewrite history. `None` while the flow is open (it follows the current view).
    pub closed_as: Option<Box<ClosedAs>>,
    /// Where a Service address was translated to (DNAT), as a copy of the flow's packets on a
    /// backend's interface showed it.
    pub backend: Option<SocketEnd>,
    /// Stable for the flow's life: views keep their selection on it as rows reorder.
    pub id: u64,
    /// Never changes: the table's index finds the flow by it.
    pub key: FlowKey,
    pub responder: SocketEnd,
    pub first_seen: Timestamp,
    /// TLS SNI from the initiator's first payload.
    pub sni: Option<Box<str>>,
    /// HTTP Host from the initiator's first payload.
    pub http_host: Option<Box<str>>,
    /// The responder's name as DNS told the initiator, fixed when the flow began.
    pub responder_name: Option<LearnedName>,
}

/// How a finished TCP conversation was judged and who its ends were. Kept whole: a policy added
/// later must not change its verdict, and a pod created later on a deleted pod's IP must not
/// become the party to a conversation it never had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosedAs {
    pub verdict: std::sync::Arc<crate::policy::Verdict>,
    pub initiator: crate::identity::Identity,
    pub responder: crate::identity::Identity,
}

impl Flow {
    /// The TCP state to report at `now`, with "no reply" decided from the packet timeline.
    #[must_use]
    pub fn tcp_state_at(&self, now: Timestamp, input_ended: bool) -> Option<TcpState> {
        match self.tcp {
            Some(TcpState::SynSent)
                if self.rx.packets == 0
                    && (input_ended || now.since(self.first_seen) >= NO_REPLY_AFTER) =>
            {
                Some(TcpState::NoReply)
            }
            state => state,
        }
    }

    /// Whether any packet came back from the responder.
    #[must_use]
    pub fn got_replies(&self) -> bool {
        self.rx.packets > 0
    }
}

#[cfg(test)]
mod layout_tests {
    use super::*;

    /// The fields every packet touches stay within the first two cache lines.
    #[test]
    fn hot_fields_fit_in_two_cache_lines() {
        let hot_end = std::mem::offset_of!(Flow, last_interface) + std::mem::size_of::<u16>();
        assert!(hot_end <= 2 * 64, "hot fields end at byte {hot_end}");
        assert_eq!(std::mem::align_of::<Flow>(), 64);
    }
}
