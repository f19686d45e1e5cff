//! netwatch's custom blocks back into cluster events: telling them from other custom blocks,
//! joining a batch's fragments, parsing its JSON. Pure: block bodies in, events and messages
//! out (without the file name, which the source adds).

use super::TimedClusterEvent;
use super::fields::Endian;
use crate::cluster::ClusterEvent;
use crate::record::pcapng::{
    KIND_CLUSTER_EVENTS, NETWATCH_BLOCK_VERSION, NETWATCH_PEN, NETWATCH_TAG,
};
use crate::time::Timestamp;

/// What one custom block gave.
#[derive(Debug, Default)]
pub(super) struct Outcome {
    pub events: Vec<TimedClusterEvent>,
    pub warnings: Vec<String>,
}

impl Outcome {
    fn warning(message: String) -> Self {
        Self { events: Vec::new(), warnings: vec![message] }
    }
}

/// A batch whose payload spans several blocks, gathered until its last fragment.
#[derive(Debug)]
struct Fragments {
    ts: Timestamp,
    next: u16,
    count: u16,
    payload: Vec<u8>,
    /// Where its first block starts, for messages.
    offset: u64,
}

/// The state between netwatch blocks of one file.
#[derive(Debug, Default)]
pub(super) struct ClusterBlocks {
    fragments: Option<Fragments>,
    newer_warned: bool,
    seen: u64,
}

impl ClusterBlocks {
    /// netwatch blocks met so far.
    pub(super) fn seen(&self) -> u64 {
        self.seen
    }

    /// Drops a batch left incomplete (a new section began, or the file ended); returns the
    /// offset of its first block.
    pub(super) fn abandon(&mut self) -> Option<u64> {
        self.fragments.take().map(|f| f.offset)
    }

    /// Reads the body of a custom block that starts at byte `start`.
    pub(super) fn read(&mut self, endian: Endian, body: &[u8], start: u64) -> Outcome {
        if endian.u32(body, 0) != Some(NETWATCH_PEN) || body.get(4..12) != Some(&NETWATCH_TAG[..]) {
            return Outcome::default();
        }
        self.seen += 1;
        let version = endian.u16(body, 12).unwrap_or(0);
        let kind = endian.u16(body, 14).unwrap_or(0);
        if version != NETWATCH_BLOCK_VERSION || kind != KIND_CLUSTER_EVENTS {
            if self.newer_warned {
                return Outcome::default();
            }
            self.newer_warned = true;
            return Outcome::warning(format!(
                "netwatch blocks of version {version} kind {kind} (from byte {start}) are from a newer netwatch; they are skipped — replay with that version, or pass --cluster"
            ));
        }
        let fields = (
            endian.u16(body, 16),
            endian.u16(body, 18),
            endian.timestamp(body, 20),
            endian.u32(body, 28),
        );
        let (Some(index), Some(count), Some(ts), Some(len)) = fields else {
            return Outcome::warning(format!(
                "the netwatch block at byte {start} is too short for its fields; skipped"
            ));
        };
        let Some(payload) = body.get(32..32 + len as usize) else {
            return Outcome::warning(format!(
                "the netwatch block at byte {start} claims more payload than it holds; skipped"
            ));
        };
        let ts = Timestamp(ts);
        let mut outcome = Outcome::default();
        let mut fragments = match self.fragments.take() {
            Some(f) if index == f.next && count == f.count && ts == f.ts => f,
            previous => {
                if let Some(f) = previous {
                    outcome.warnings.push(format!(
                        "cluster events from byte {} end before their last part; they are skipped",
                        f.offset
                    ));
                }
                if index != 0 {
                    outcome.warnings.push(format!(
                        "the netwatch block at byte {start} continues cluster events that never began; skipped"
                    ));
                    return outcome;
                }
                Fragments { ts, next: 0, count, payload: Vec::new(), offset: start }
            }
        };
        fragments.payload.extend_from_slice(payload);
        fragments.next = index.saturating_add(1);
        if fragments.next < fragments.count {
            self.fragments = Some(fragments);
            return outcome;
        }
        match serde_json::from_slice::<Vec<ClusterEvent>>(&fragments.payload) {
            Ok(events) => outcome.events.extend(
                events.into_iter().map(|event| TimedClusterEvent { ts: fragments.ts, event }),
            ),
            Err(e) => outcome.warnings.push(format!(
                "cluster events at byte {} cannot be read ({e}); they are skipped",
                fragments.offset
            )),
        }
        outcome
    }
}
