//! Counting once: recognises the copies of one packet that several capture interfaces see, and
//! the address translation between them.
//!
//! On a node one packet crosses several interfaces. Pod to pod on one bridge: the source veth
//! and the destination veth see identical bytes (the bridge device does not, promiscuous mode
//! being off). Pod to outside: the veth and the bridge see identical bytes, the uplink a copy
//! with the TTL one lower, other MACs and, behind masquerade, another source. Pod to a
//! ClusterIP: the client veth sees the service address, the backend veth the backend pod, with
//! the same IP id and TCP sequence number.
//!
//! The rule: a packet's *fingerprint* is what address translation leaves alone (protocol, IP id,
//! IP length, TCP sequence, acknowledgement and flags). A packet is a copy of one seen in the
//! last [`DedupLimits::window`] when the fingerprints are equal, it is on an interface that
//! packet was not yet seen on (with these ends: a bridge routing between its own ports sees one
//! packet before and after DNAT), at least one end (source or destination address and port) is
//! unchanged, and its TTL is not higher — strictly lower when an end changed, since translation
//! happens only on packets the node routes. Each copy is matched to the oldest such packet that
//! shows its own ends, else to the oldest a translation explains (looking at no more than 256
//! with its fingerprint), so counts stay exact even when fingerprints collide. A copy whose ends
//! differ from the first sighting teaches a *binding* (translated ends → original ends); later
//! packets first seen with translated ends (the backend's reply, seen on the backend veth before
//! the client veth) are counted under the original ends, so one connection stays one flow.
//!
//! Pure: the time comes in with each packet; memory is bounded by [`DedupLimits`]. It must not
//! look at interfaces' names or classes: copies are told apart by what is on the wire.

use std::collections::VecDeque;
use std::time::Duration;

use rustc_hash::FxHashMap;

use super::key::{Protocol, SocketEnd};
use crate::decode::Packet;
use crate::time::Timestamp;

/// How much the rule remembers, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DedupLimits {
    /// Copies of one packet arrive within this long of each other on a node (microseconds in
    /// practice; the margin covers a loaded host).
    pub window: Duration,
    /// Most packets remembered at once: 65,536 holds 50 ms at over a million packets/s.
    pub max_recent: usize,
    /// A translation binding not used for this long is forgotten.
    pub binding_idle: Duration,
    /// Most translation bindings remembered at once (each connection through a NAT needs one
    /// per direction).
    pub max_bindings: usize,
}

impl Default for DedupLimits {
    fn default() -> Self {
        Self {
            window: Duration::from_millis(50),
            max_recent: 1 << 16,
            binding_idle: Duration::from_secs(300),
            max_bindings: 1 << 17,
        }
    }
}

/// Source and destination of one packet (or of the flow direction it is counted in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Endpoints {
    pub src: SocketEnd,
    pub dst: SocketEnd,
}

impl Endpoints {
    #[must_use]
    pub fn reversed(self) -> Self {
        Self { src: self.dst, dst: self.src }
    }
}

/// What dedup needs to know about one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketFacts {
    pub protocol: Protocol,
    pub ends: Endpoints,
    pub ip_id: u32,
    pub ip_len: u32,
    /// TCP sequence, acknowledgement and flags; `None` for other protocols.
    pub tcp: Option<(u32, u32, u8)>,
    pub later_fragment: bool,
    /// IPv4 TTL or IPv6 hop limit; `None` when the decoder does not report it (then the TTL
    /// check is skipped and only fingerprints and ends decide).
    pub ttl: Option<u8>,
}

impl PacketFacts {
    /// The facts of a decoded packet, with its TTL (or hop limit) where known.
    #[must_use]
    pub fn of(packet: &Packet, ttl: Option<u8>) -> Self {
        Self {
            protocol: packet.protocol,
            ends: Endpoints {
                src: SocketEnd { ip: packet.src, port: packet.src_port },
                dst: SocketEnd { ip: packet.dst, port: packet.dst_port },
            },
            ip_id: packet.ip_id,
            ip_len: packet.ip_len,
            tcp: packet.tcp.map(|tcp| (tcp.seq, tcp.ack, tcp.flags)),
            later_fragment: packet.fragment.is_later(),
            ttl,
        }
    }
}

/// The verdict on one sighting of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sighting {
    /// Not seen before: count it, in the direction `count_as`. That is the packet's own ends,
    /// unless a binding learned from earlier copies maps them back to the original ends (a
    /// backend's reply counted as the Service's); then `seen_as` holds the packet's own ends.
    First { count_as: Endpoints, seen_as: Option<Endpoints> },
    /// A copy of a packet already counted on `first_interface`, in the direction `counted_as`:
    /// do not count it again. `seen_as` is what this copy shows: the end that differs from
    /// `counted_as` is what translation rewrote (a DNAT'd copy shows the backend as destination;
    /// the engine's `backend_of` reads it).
    Copy { first_interface: u16, counted_as: Endpoints, seen_as: Endpoints },
}

/// What the rule has done, for the stats line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DedupCounts {
    /// Sightings recognised as copies (not counted).
    pub copies: u64,
    /// Of those, copies whose ends a translation had rewritten.
    pub translated_copies: u64,
    /// First sightings counted under original ends through a binding.
    pub rewritten: u64,
    /// Packets forgotten before their window ended because `max_recent` was reached: a copy of
    /// one of them would be counted twice.
    pub recent_overflow: u64,
    /// Bindings not learned because `max_bindings` was reached.
    pub bindings_dropped: u64,
}

/// What translation leaves alone in a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    protocol: Protocol,
    ip_id: u32,
    ip_len: u32,
    tcp: Option<(u32, u32, u8)>,
    later_fragment: bool,
}

/// Two words per fingerprint: every packet hashes one once or twice (look up, remember), and
/// the derived hash fed the hasher field by field.
impl std::hash::Hash for Fingerprint {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let (seq, ack, flags) =
            self.tcp.map_or((0, 0, 0), |(seq, ack, flags)| (seq, ack, u64::from(flags) | 1 << 8));
        let head = u64::from(self.ip_id) << 32 | u64::from(self.ip_len);
        let tail = u64::from(seq) << 32 | u64::from(ack);
        let small = flags
            | u64::from(self.protocol.ip_number()) << 9
            | u64::from(self.later_fragment) << 17;
        state.write_u64(head);
        state.write_u64(tail ^ small.rotate_left(40));
    }
}

/// Where one packet was seen: (interface, tag of the ends it showed there). A node has few
/// interfaces on one path (veth, bridge, overlay, uplink, the peer veth), so a small inline set
/// does. The ends matter because a bridge that routes between its own ports ("router on a
/// stick") sees one packet twice: before and after DNAT.
#[derive(Debug, Clone, Copy)]
struct SeenOn {
    sightings: [(u16, u32); 6],
    len: u8,
}

impl SeenOn {
    fn one(interface: u16, ends: Endpoints) -> Self {
        Self { sightings: [(interface, ends_tag(ends)); 6], len: 1 }
    }

    fn contains(&self, interface: u16, ends: Endpoints) -> bool {
        self.sightings[..usize::from(self.len)].contains(&(interface, ends_tag(ends)))
    }

    fn add(&mut self, interface: u16, ends: Endpoints) {
        if usize::from(self.len) < self.sightings.len() {
            self.sightings[usize::from(self.len)] = (interface, ends_tag(ends));
            self.len += 1;
        }
    }
}

/// A short hash of a packet's ends: enough to tell a translated copy on one interface.
fn ends_tag(ends: Endpoints) -> u32 {
    use std::hash::{Hash, Hasher};
    let mut hasher = rustc_hash::FxHasher::default();
    ends.hash(&mut hasher);
    let hash = hasher.finish();
    (hash ^ (hash >> 32)) as u32
}

const NO_ENTRY: u64 = u64::MAX;

/// One packet remembered for the window.
#[derive(Debug, Clone, Copy)]
struct Recent {
    fingerprint: Fingerprint,
    ts: Timestamp,
    ttl: Option<u8>,
    seen_as: Endpoints,
    counted_as: Endpoints,
    first_interface: u16,
    seen_on: SeenOn,
    /// The sequence number of the next older packet with the same fingerprint.
    older: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct BindingKey {
    protocol: Protocol,
    ends: Endpoints,
}

#[derive(Debug, Clone, Copy)]
struct Binding {
    original: Endpoints,
    last_used: Timestamp,
}

/// How often (packet time) idle bindings are swept.
const BINDING_SWEEP: Duration = Duration::from_secs(1);

/// The counting-once rule. Feed it every decoded packet, in capture-time order as far as
/// possible, before the flow table.
#[derive(Debug)]
pub struct Dedup {
    limits: DedupLimits,
    /// Remembered packets, oldest first; `first_seq` is the sequence number of the front.
    recent: VecDeque<Recent>,
    first_seq: u64,
    /// Fingerprint → sequence number of the newest packet with it. Entries of forgotten packets
    /// (below `first_seq`) stay until a cleanup, as lookups skip them: removing each as its
    /// packet left cost a hash and a cache miss per packet.
    newest: FxHashMap<Fingerprint, u64>,
    bindings: FxHashMap<BindingKey, Binding>,
    /// The latest packet time seen.
    latest: Timestamp,
    next_binding_sweep: Timestamp,
    /// When a full binding map may be swept again to make room.
    next_full_sweep: Timestamp,
    counts: DedupCounts,
}

/// Whether a copy relates to a remembered view of its packet, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Relation {
    Unrelated,
    Identical,
    Translated,
}

fn relation(a: Endpoints, b: Endpoints) -> Relation {
    match (a.src == b.src, a.dst == b.dst) {
        (true, true) => Relation::Identical,
        (true, false) | (false, true) => Relation::Translated,
        (false, false) => Relation::Unrelated,
    }
}

impl Dedup {
    #[must_use]
    pub fn new(limits: DedupLimits) -> Self {
        Self {
            limits,
            recent: VecDeque::new(),
            first_seq: 0,
            newest: FxHashMap::default(),
            bindings: FxHashMap::default(),
            latest: Timestamp::default(),
            next_binding_sweep: Timestamp::default(),
            next_full_sweep: Timestamp::default(),
            counts: DedupCounts::default(),
        }
    }

    #[must_use]
    pub fn counts(&self) -> DedupCounts {
        self.counts
    }

    /// Translation bindings currently remembered.
    #[must_use]
    pub fn bindings(&self) -> usize {
        self.bindings.len()
    }

    /// Packet time stepped back to `now` (the engine watches it): what is remembered is from
    /// another time. (A frame merely late, by less than a step, is only not matched.)
    pub fn step_back(&mut self, now: Timestamp) {
        self.first_seq += self.recent.len() as u64;
        self.recent.clear();
        for binding in self.bindings.values_mut() {
            binding.last_used = binding.last_used.min(now);
        }
        self.latest = now;
        self.next_binding_sweep = now;
        self.next_full_sweep = now;
    }

    /// Judges one sighting of a packet on `interface` at `now`.
    pub fn observe(&mut self, packet: &PacketFacts, interface: u16, now: Timestamp) -> Sighting {
        self.forget_before(now);
        let fingerprint = Fingerprint {
            protocol: packet.protocol,
            ip_id: packet.ip_id,
            ip_len: packet.ip_len,
            tcp: packet.tcp,
            later_fragment: packet.later_fragment,
        };
        if let Some(seq) = self.matching_copy(&fingerprint, packet, interface, now) {
            return self.note_copy(seq, packet, interface, now);
        }
        let key = BindingKey { protocol: packet.protocol, ends: packet.ends };
        // An empty map answers without hashing: most nodes translate little.
        let binding = self.bindings.get_mut(&key);
        let (count_as, seen_as) = match binding {
            Some(binding) => {
                binding.last_used = binding.last_used.max(now);
                self.counts.rewritten += 1;
                (binding.original, Some(packet.ends))
            }
            None => (packet.ends, None),
        };
        self.remember(Recent {
            fingerprint,
            ts: now,
            ttl: packet.ttl,
            seen_as: packet.ends,
            counted_as: count_as,
            first_interface: interface,
            seen_on: SeenOn::one(interface, packet.ends),
            older: NO_ENTRY,
        });
        Sighting::First { count_as, seen_as }
    }

    /// The remembered packet this one is a copy of, by sequence number: the oldest showing the
    /// same ends, else the oldest a translation explains. Same-ends first: two packets can share
    /// a fingerprint (a DNS server's replies to two clients, IP id 0, same size), and matching
    /// a copy of one to the other as "translated" would merge the two clients' flows.
    fn matching_copy(
        &self,
        fingerprint: &Fingerprint,
        packet: &PacketFacts,
        interface: u16,
        now: Timestamp,
    ) -> Option<u64> {
        let mut seq = *self.newest.get(fingerprint)?;
        let (mut identical, mut translated) = (None, None);
        // Bounded: traffic whose fingerprints carry little (IPv6 UDP of one size, IP id 0)
        // would otherwise walk every packet of the window for each one.
        for _ in 0..MAX_CHAIN_WALK {
            if seq == NO_ENTRY || seq < self.first_seq {
                break;
            }
            let entry = &self.recent[usize::try_from(seq - self.first_seq).ok()?];
            let near = now.since(entry.ts).max(entry.ts.since(now)) <= self.limits.window;
            if near && !entry.seen_on.contains(interface, packet.ends) {
                match copy_relation(entry, packet) {
                    Some(Relation::Identical) => identical = Some(seq),
                    Some(_) => translated = Some(seq),
                    None => {}
                }
            }
            seq = entry.older;
        }
        identical.or(translated)
    }

    fn note_copy(
        &mut self,
        seq: u64,
        packet: &PacketFacts,
        interface: u16,
        now: Timestamp,
    ) -> Sighting {
        let Some(entry) =
            usize::try_from(seq - self.first_seq).ok().and_then(|index| self.recent.get_mut(index))
        else {
            return Sighting::First { count_as: packet.ends, seen_as: None };
        };
        entry.seen_on.add(interface, packet.ends);
        let (first_interface, counted_as, seen_before) =
            (entry.first_interface, entry.counted_as, entry.seen_as);
        self.counts.copies += 1;
        if packet.ends != counted_as {
            self.counts.translated_copies += 1;
        }
        if packet.ends != counted_as && packet.ends != seen_before {
            self.learn(packet.protocol, packet.ends, counted_as, now);
        }
        Sighting::Copy { first_interface, counted_as, seen_as: packet.ends }
    }

    /// Remembers that `translated` ends stand for `original` ones, in both directions.
    fn learn(
        &mut self,
        protocol: Protocol,
        translated: Endpoints,
        original: Endpoints,
        now: Timestamp,
    ) {
        let key = BindingKey { protocol, ends: translated };
        let reply_key = BindingKey { protocol, ends: translated.reversed() };
        // One learned already (a retransmission's copy) is replaced, never refused: room is
        // needed only for the keys not there yet.
        // Looked up only when the map is near full: every DNAT'd copy comes this way.
        let near_full = self.bindings.len() + 2 > self.limits.max_bindings;
        let new_keys = if near_full {
            usize::from(!self.bindings.contains_key(&key))
                + usize::from(!self.bindings.contains_key(&reply_key))
        } else {
            0
        };
        if new_keys > 0 && self.bindings.len() + new_keys > self.limits.max_bindings {
            // Full: sweep, but at most once per sweep interval. A sweep scans every binding,
            // and doing that for each translated copy while the map stays full would take the
            // whole CPU.
            if now >= self.next_full_sweep {
                self.sweep_bindings(now);
                self.next_full_sweep = now.saturating_add(BINDING_SWEEP);
            }
            if self.bindings.len() + new_keys > self.limits.max_bindings {
                self.counts.bindings_dropped += 1;
                return;
            }
        }
        let binding = Binding { original, last_used: now };
        self.bindings.insert(key, binding);
        let reply = Binding { original: original.reversed(), last_used: now };
        self.bindings.insert(reply_key, reply);
    }

    fn remember(&mut self, mut entry: Recent) {
        if self.recent.len() >= self.limits.max_recent.max(1) {
            self.pop_oldest();
            self.counts.recent_overflow += 1;
        }
        self.drop_stale_fingerprints();
        let seq = self.first_seq + self.recent.len() as u64;
        if let Some(older) = self.newest.insert(entry.fingerprint, seq) {
            entry.older = older;
        }
        self.recent.push_back(entry);
    }

    fn pop_oldest(&mut self) {
        if self.recent.pop_front().is_some() {
            self.first_seq += 1;
        }
    }

    /// Drops the fingerprints of forgotten packets once they are most of the map: amortised,
    /// one pass per as many packets as the map held.
    fn drop_stale_fingerprints(&mut self) {
        if self.newest.len() > 2 * self.recent.len() + 1024 {
            let first_seq = self.first_seq;
            self.newest.retain(|_, seq| *seq >= first_seq);
        }
    }

    /// Forgets packets older than the window before the latest time seen, and idle bindings.
    fn forget_before(&mut self, now: Timestamp) {
        self.latest = self.latest.max(now);
        let latest = self.latest;
        while self.recent.front().is_some_and(|oldest| latest.since(oldest.ts) > self.limits.window)
        {
            self.pop_oldest();
        }
        if latest >= self.next_binding_sweep {
            self.sweep_bindings(latest);
            self.next_binding_sweep = latest.saturating_add(BINDING_SWEEP);
        }
    }

    fn sweep_bindings(&mut self, now: Timestamp) {
        let idle = self.limits.binding_idle;
        self.bindings.retain(|_, binding| now.since(binding.last_used) < idle);
    }
}

/// Packets with one fingerprint looked at, newest first, to find what a packet is a copy of.
const MAX_CHAIN_WALK: usize = 256;

/// How `packet` can be a copy of the remembered one, if it can: one end unchanged (compared
/// with what was seen and with what was counted), and a TTL that the path between them explains.
fn copy_relation(entry: &Recent, packet: &PacketFacts) -> Option<Relation> {
    let relation =
        match (relation(entry.seen_as, packet.ends), relation(entry.counted_as, packet.ends)) {
            (Relation::Identical, _) => Relation::Identical,
            (Relation::Translated, _) | (_, Relation::Translated | Relation::Identical) => {
                Relation::Translated
            }
            (Relation::Unrelated, Relation::Unrelated) => Relation::Unrelated,
        };
    let explained = match (relation, entry.ttl, packet.ttl) {
        (Relation::Unrelated, ..) => false,
        (Relation::Identical, Some(first), Some(copy)) => copy <= first,
        // Translation happens only where the node routes, and routing lowers the TTL.
        (Relation::Translated, Some(first), Some(copy)) => copy < first,
        (_, _, _) => true,
    };
    explained.then_some(relation)
}

#[cfg(test)]
mod tests;
