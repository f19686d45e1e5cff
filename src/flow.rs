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
/// Laid out by hand in four cache lines (256 bytes), hot fields first. The first line holds
/// the key, which the table's index reads to confirm every lookup, with the state a packet
/// reads and writes; the second holds the counters and rates (the responder's rate buckets
/// spill into the third). A packet from the initiator touches two lines, one from the
/// responder three, and nothing after them unless something changes (another interface, a
/// close, a translation). The ends are the key's two ends, which one initiated kept as one
/// flag rather than two more copies of them: every new flow faults in fresh memory, and that
/// costs more here than the instructions that fill it.
#[derive(Debug, Clone)]
#[repr(C, align(64))]
pub struct Flow {
    /// Never changes: the table's index finds the flow by it.
    pub key: FlowKey,
    /// Whether the key's `low` end started the conversation (the SYN sender, else the first
    /// packet's sender); see [`initiator`](Self::initiator).
    pub(crate) initiator_is_low: bool,
    pub tcp: Option<TcpState>,
    /// FIN seen from initiator / responder.
    pub(crate) fin: [bool; 2],
    /// Whether the initiator's first payload was already inspected.
    pub payload_inspected: bool,
    /// Whether `responder_name` came from the initiator's own DNS lookup (false: only another
    /// client's answer named the address).
    pub(crate) own_lookup: bool,
    /// The interface the last packet came on, always one of `interfaces`: a packet on the same
    /// one (nearly all) need not read the list.
    pub(crate) last_interface: u16,
    pub last_seen: Timestamp,
    /// From the initiator.
    pub tx: Counters,
    /// To the initiator.
    pub rx: Counters,
    pub rates: RateWindow,
    // Cold from here: read when the flow starts, ends, changes or is shown.
    pub first_seen: Timestamp,
    /// Capture interfaces the flow was seen on, by interface index of the source, in the order
    /// first seen. Inline: almost every flow is seen on one to four.
    pub interfaces: smallvec::SmallVec<[u16; 4]>,
    /// The verdict and the names as they stood when a TCP flow closed: later cluster changes
    /// do not rewrite history. `None` while the flow is open (it follows the current view).
    pub closed_as: Option<Box<ClosedAs>>,
    /// Stable for the flow's life: views keep their selection on it as rows reorder.
    pub id: u64,
    /// Where a Service address was translated to (DNAT), as a copy of the flow's packets on a
    /// backend's interface showed it. Boxed: few flows have one.
    pub backend: Option<Box<SocketEnd>>,
    /// TLS SNI from the initiator's first payload.
    pub sni: Option<Box<str>>,
    /// HTTP Host from the initiator's first payload.
    pub http_host: Option<Box<str>>,
    /// The responder's name as DNS told the initiator (or, see `own_lookup`, another client),
    /// fixed when the flow began.
    pub(crate) responder_name: Option<Arc<str>>,
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
    /// The side that started the conversation.
    #[must_use]
    pub fn initiator(&self) -> SocketEnd {
        if self.initiator_is_low { self.key.low } else { self.key.high }
    }

    /// The side that answered.
    #[must_use]
    pub fn responder(&self) -> SocketEnd {
        if self.initiator_is_low { self.key.high } else { self.key.low }
    }

    /// The responder's name as DNS told it, and whether it was the initiator's own lookup.
    /// Borrowed: a record copies it, and sharing the name (its count bumped and dropped per
    /// record) cost more than the copy.
    #[must_use]
    pub fn responder_name(&self) -> Option<(&str, bool)> {
        Some((self.responder_name.as_deref()?, self.own_lookup))
    }

    pub(crate) fn set_responder_name(&mut self, learned: Option<LearnedName>) {
        (self.responder_name, self.own_lookup) = match learned {
            Some(LearnedName { name, own_lookup }) => (Some(name), own_lookup),
            None => (None, false),
        };
    }

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

    /// The key and the fields every packet touches share the first two cache lines (the
    /// responder's rate buckets excepted), and a flow is four lines, not five.
    #[test]
    fn hot_fields_share_the_first_two_cache_lines() {
        use std::mem::{offset_of, size_of};
        assert!(offset_of!(Flow, key) + size_of::<FlowKey>() <= 64, "the key is in line 0");
        assert!(offset_of!(Flow, last_seen) + size_of::<Timestamp>() <= 64);
        let counters_end = offset_of!(Flow, rx) + size_of::<Counters>();
        assert!(counters_end <= 2 * 64, "counters end at byte {counters_end}");
        assert!(offset_of!(Flow, rates) < 2 * 64);
        assert_eq!(std::mem::align_of::<Flow>(), 64);
        assert_eq!(size_of::<Flow>(), 4 * 64);
    }
}
