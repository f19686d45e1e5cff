//! The flow table: ingest packets, advance time, expire idle flows, evict under a flood.
//!
//! Bounded: a flow idle past its timeout expires; at the hard cap the least recently seen flows
//! are evicted in a batch (amortised O(1) per packet), counted, and handed out like expired
//! ones, so nothing disappears silently.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::IpAddr;
use std::time::Duration;

use std::hash::BuildHasher;

use rustc_hash::FxHashMap;

use super::key::{FlowKey, SocketEnd};
use super::{Counters, Flow, TcpState};
use crate::decode::{Fragment, Packet, Role, TcpInfo};
use crate::flow::rates::RateWindow;
use crate::time::Timestamp;

/// How large and how long-lived the table may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableLimits {
    pub max_flows: usize,
    /// A flow with no packet for this long ends.
    pub idle_timeout: Duration,
    /// A TCP flow closed by FIN or RST ends after this much quiet.
    pub closed_timeout: Duration,
}

impl Default for TableLimits {
    fn default() -> Self {
        Self {
            max_flows: 200_000,
            idle_timeout: Duration::from_secs(120),
            closed_timeout: Duration::from_secs(10),
        }
    }
}

/// Why a flow left the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    Expired,
    Evicted,
}

/// What one packet did to the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ingested {
    pub new_flow: bool,
    pub from_initiator: bool,
    /// This packet closed the flow (FIN both ways, or RST; a lone RST starts a flow closed).
    pub closed: bool,
}

/// A later fragment is matched to its flow by these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FragmentKey {
    src: IpAddr,
    dst: IpAddr,
    protocol: u8,
    id: u32,
}

impl FragmentKey {
    /// The datagram a fragment seen with addresses `wire` (the packet's own when `None`)
    /// belongs to. IPv4 names it by
    /// addresses, protocol and identification; IPv6 by addresses and the fragment header's id
    /// alone (RFC 8200): its first fragment's protocol is the transport's, found past any
    /// extension headers, while a later fragment only says what the fragment header follows with.
    fn of(packet: &Packet, wire: Option<&(IpAddr, IpAddr)>) -> Self {
        let wire = wire.copied().unwrap_or((packet.src, packet.dst));
        let protocol = if wire.0.is_ipv6() { 0 } else { packet.protocol.ip_number() };
        Self { src: wire.0, dst: wire.1, protocol, id: packet.ip_id }
    }
}

/// Fragments of one datagram arrive within this long of each other, or not at all.
const FRAGMENT_TIMEOUT: Duration = Duration::from_secs(30);

/// A time at or before which one flow may go idle. Entries are never updated in place: a flow's
/// packets only push its real deadline later, and when it is reached the entry is checked
/// against the flow and pushed again at the real one. So a sweep touches only the flows that are
/// due, not the whole table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Deadline {
    at: Timestamp,
    /// The flow this was for: its slot may since hold another flow.
    id: u64,
    /// Where the flow was when the entry was made. A flow moved to another slot (to fill a
    /// removed one's) gets a new entry there; entries stay small (24 bytes, not a whole key),
    /// which keeps the queue's memory and its sifting cheap.
    slot: u32,
}

impl Ord for Deadline {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // The slot last: it only tells two entries of one flow apart (agreeing with `Eq`).
        (self.at, self.id, self.slot).cmp(&(other.at, other.id, other.slot))
    }
}

impl PartialOrd for Deadline {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

#[derive(Debug, Default)]
pub struct FlowTable {
    limits: TableLimits,
    /// Flows stored densely; `index` maps a key to its slot. Growing a table of small index
    /// entries (rather than one of whole flows) keeps rehashing cheap under a burst of new flows.
    flows: Vec<Flow>,
    index: FlowIndex,
    fragments: FxHashMap<FragmentKey, (FlowKey, Timestamp)>,
    /// Earliest first. Every flow has an entry at or before its idle deadline.
    deadlines: BinaryHeap<Reverse<Deadline>>,
    next_id: u64,
    /// Flows that left the table and were not yet collected by [`swap_ended`](Self::swap_ended).
    ended: Vec<(Flow, EndReason)>,
    /// The flows a sweep found idle, kept between sweeps for its room.
    expiring: Vec<(Timestamp, u64, FlowKey)>,
    pub evicted_total: u64,
    pub expired_total: u64,
}

impl FlowTable {
    #[must_use]
    pub fn new(limits: TableLimits) -> Self {
        // Room for a busy node's flows from the start: growing a list of whole flows copies
        // them all at each doubling. Untouched capacity costs address space, not memory.
        let room = limits.max_flows.min(1 << 16);
        let flows = Vec::with_capacity(room);
        // The deadlines hold up to two entries a flow before they are rebuilt (see `schedule`);
        // doubling them as they fill faulted in fresh memory for a copy each time.
        let deadlines = BinaryHeap::with_capacity(2 * room + 1024);
        Self { limits, flows, deadlines, ..Self::default() }
    }

    /// Flows started since the table was made.
    #[must_use]
    pub fn flows_started(&self) -> u64 {
        self.next_id
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    pub fn flows(&self) -> impl Iterator<Item = &Flow> {
        self.flows.iter()
    }

    #[must_use]
    pub fn get(&self, key: &FlowKey) -> Option<&Flow> {
        self.index.get(&self.flows, key).map(|slot| &self.flows[slot])
    }

    pub fn get_mut(&mut self, key: &FlowKey) -> Option<&mut Flow> {
        let slot = self.index.get(&self.flows, key)?;
        self.flows.get_mut(slot)
    }

    /// Removes a flow, moving the last one into its slot.
    fn remove(&mut self, key: &FlowKey) -> Option<Flow> {
        let slot = self.index.remove(&self.flows, key)?;
        let last = self.flows.len() - 1;
        let flow = self.flows.swap_remove(slot);
        if let Some(moved) = self.flows.get(slot) {
            let slot = u32::try_from(slot).unwrap_or(u32::MAX);
            self.index.relocate(&moved.key, last, slot);
            let deadline = self.deadline_of(moved, slot);
            self.deadlines.push(Reverse(deadline));
        }
        Some(flow)
    }

    /// Folds one packet into its flow. Returns `None` for a later fragment whose first
    /// fragment was never seen (the caller counts it).
    pub fn ingest(
        &mut self,
        packet: &Packet,
        interface: u16,
        now: Timestamp,
    ) -> Option<(&mut Flow, Ingested)> {
        self.ingest_seen_as(packet, None, interface, now)
    }

    /// [`ingest`](Self::ingest) for a packet counted under other addresses than the wire
    /// showed (a backend's reply counted under the Service's): `wire` is its source and
    /// destination as captured, when they differ from the packet's. Fragments are matched by
    /// those, since a later fragment (no ports) cannot be translated back as its first fragment
    /// was. (A reference, not the addresses: copied, they were a cost of every packet.)
    pub fn ingest_seen_as(
        &mut self,
        packet: &Packet,
        wire: Option<&(IpAddr, IpAddr)>,
        interface: u16,
        now: Timestamp,
    ) -> Option<(&mut Flow, Ingested)> {
        let src = SocketEnd { ip: packet.src, port: packet.src_port };
        let dst = SocketEnd { ip: packet.dst, port: packet.dst_port };
        let key = match packet.fragment {
            Fragment::Later => {
                let (key, _) = self.fragments.get(&FragmentKey::of(packet, wire))?;
                *key
            }
            Fragment::First => {
                let key = FlowKey::canonical(packet.protocol, src, dst).0;
                let fragment_key = FragmentKey::of(packet, wire);
                // Bounded like the flows: past it, this datagram's later fragments are orphans
                // (counted), rather than a flood of first fragments growing the map unbounded.
                if self.fragments.len() < self.limits.max_flows {
                    self.fragments.insert(fragment_key, (key, now));
                }
                key
            }
            Fragment::None => FlowKey::canonical(packet.protocol, src, dst).0,
        };
        // Hashed once: a new flow is looked up, then indexed.
        let hash = FlowIndex::hash_of(&key);
        let mut existing = self.index.get_hashed(&self.flows, &key, hash);
        if let Some(slot) = existing
            && is_closed(self.flows[slot].tcp)
            && packet.role == Role::Initiator
        {
            // A new connection on the 5-tuple of one that closed (a reused client port): the
            // old flow ends here rather than taking in the new one's packets and verdict.
            if let Some(flow) = self.remove(&key) {
                self.expired_total += 1;
                self.ended.push((flow, EndReason::Expired));
            }
            existing = None;
        }
        let (slot, new_flow) = match existing {
            Some(slot) => (slot, false),
            // Its flow ended (expired or evicted) while the fragment entry lived on: a flow
            // started from it would have no ports. Counted as an orphan, like an unknown one.
            None if packet.fragment.is_later() => return None,
            None => {
                if self.flows.len() >= self.limits.max_flows {
                    self.evict_oldest();
                }
                let flow = self.start_flow(key, packet, (src, dst), interface, now);
                let slot = u32::try_from(self.flows.len()).ok()?;
                self.schedule(&flow, slot);
                self.flows.push(flow);
                self.index.insert(hash, slot);
                (slot as usize, true)
            }
        };
        let flow = &mut self.flows[slot];
        let initiator = flow.initiator();
        let from_initiator = initiator.ip == packet.src
            && (initiator.port == packet.src_port || packet.fragment.is_later());
        let was_closed = is_closed(flow.tcp);
        count(flow, packet, interface, from_initiator, now);
        let closed = is_closed(flow.tcp) && (new_flow || !was_closed);
        if closed && !new_flow {
            // The shorter closed timeout may fall before the entry the flow already has.
            let deadline = self.deadline_of(&self.flows[slot], u32::try_from(slot).ok()?);
            self.deadlines.push(Reverse(deadline));
        }
        let flow = &mut self.flows[slot];
        Some((flow, Ingested { new_flow, from_initiator, closed }))
    }

    fn start_flow(
        &mut self,
        key: FlowKey,
        packet: &Packet,
        (src, dst): (SocketEnd, SocketEnd),
        interface: u16,
        now: Timestamp,
    ) -> Flow {
        let sender_initiates = match packet.role {
            Role::Initiator => true,
            Role::Responder => false,
            // Seen mid-conversation (or UDP): a port that looks like a server's answering one
            // that looks like a client's is the server.
            Role::Unknown => {
                !(packet.protocol.has_ports() && looks_like_server(src.port, dst.port))
            }
        };
        let initiator = if sender_initiates { src } else { dst };
        let tcp = packet.tcp.map(|tcp| match packet.role {
            Role::Initiator => TcpState::SynSent,
            Role::Responder => TcpState::SynAck,
            Role::Unknown if tcp.has(TcpInfo::RST) => TcpState::Reset,
            Role::Unknown => TcpState::Established,
        });
        self.next_id += 1;
        Flow {
            id: self.next_id,
            key,
            // The key's `low` end when the two ends are one (a packet to itself): either reads
            // the same.
            initiator_is_low: initiator == key.low,
            first_seen: now,
            last_seen: now,
            tx: Counters::default(),
            rx: Counters::default(),
            tcp,
            interfaces: smallvec::smallvec![interface],
            last_interface: interface,
            sni: None,
            http_host: None,
            responder_name: None,
            own_lookup: false,
            backend: None,
            payload_inspected: false,
            closed_as: None,
            fin: [false; 2],
            rates: RateWindow::default(),
        }
    }

    /// Evicts the least recently seen 1/64th of the table (at least one flow), so a flood
    /// costs one partial sort per many new flows rather than one scan per packet.
    fn evict_oldest(&mut self) {
        let batch = (self.limits.max_flows / 64).max(1);
        let mut by_age: Vec<(Timestamp, u64, FlowKey)> =
            self.flows.iter().map(|f| (f.last_seen, f.id, f.key)).collect();
        if by_age.len() > batch {
            by_age.select_nth_unstable(batch - 1);
            by_age.truncate(batch);
        }
        for (_, _, key) in by_age {
            if let Some(flow) = self.remove(&key) {
                self.evicted_total += 1;
                self.ended.push((flow, EndReason::Evicted));
            }
        }
    }

    /// How long a flow may stay quiet before it ends.
    fn timeout_of(&self, flow: &Flow) -> Duration {
        if is_closed(flow.tcp) { self.limits.closed_timeout } else { self.limits.idle_timeout }
    }

    fn deadline_of(&self, flow: &Flow, slot: u32) -> Deadline {
        let at = flow.last_seen.saturating_add(self.timeout_of(flow));
        Deadline { at, id: flow.id, slot }
    }

    /// Queues a new flow's deadline; it is about to take `slot`.
    fn schedule(&mut self, flow: &Flow, slot: u32) {
        let deadline = self.deadline_of(flow, slot);
        self.deadlines.push(Reverse(deadline));
        // Entries of evicted flows wait for their time; under a flood of new flows that could
        // be many, so start over from the live flows when they dominate.
        if self.deadlines.len() > 2 * self.flows.len() + 1024 {
            self.requeue_deadlines();
            self.deadlines.push(Reverse(deadline));
        }
    }

    /// Queues one deadline per flow in the table, dropping every other entry. Rebuilt in the
    /// same buffer: a new one would be fresh memory to fault in.
    fn requeue_deadlines(&mut self) {
        let mut entries = std::mem::take(&mut self.deadlines).into_vec();
        entries.clear();
        entries
            .extend(self.flows.iter().zip(0..).map(|(f, slot)| Reverse(self.deadline_of(f, slot))));
        self.deadlines = BinaryHeap::from(entries);
    }

    /// Packet time stepped back to `now` (the engine watches it): the flows come back with it
    /// — last seen no later than now, rates started over, deadlines queued anew — or, measured
    /// from the future, they would freeze and end late.
    pub fn step_back(&mut self, now: Timestamp) {
        for flow in &mut self.flows {
            flow.last_seen = flow.last_seen.min(now);
            flow.first_seen = flow.first_seen.min(now);
            flow.rates = RateWindow::default();
        }
        self.requeue_deadlines();
    }

    /// Ends flows idle past their timeout at `now`, and forgets stale fragment entries.
    pub fn advance(&mut self, now: Timestamp) {
        let mut expired = std::mem::take(&mut self.expiring);
        while let Some(Reverse(due)) = self.deadlines.peek().copied()
            && due.at <= now
        {
            self.deadlines.pop();
            let slot = due.slot as usize;
            let Some(flow) = self.flows.get(slot).filter(|flow| flow.id == due.id) else {
                continue; // the flow ended, or moved and has an entry at its new slot
            };
            if now.since(flow.last_seen) >= self.timeout_of(flow) {
                expired.push((flow.last_seen, flow.id, flow.key));
            } else {
                let later = self.deadline_of(flow, due.slot);
                self.deadlines.push(Reverse(later));
            }
        }
        // Ended flows go out in the order they went quiet: the same on every run. A flow with
        // two due entries (opened, then closed) was listed twice.
        expired.sort_unstable();
        expired.dedup();
        for (_, _, key) in expired.drain(..) {
            if let Some(flow) = self.remove(&key) {
                self.expired_total += 1;
                self.ended.push((flow, EndReason::Expired));
            }
        }
        self.expiring = expired;
        self.fragments.retain(|_, (_, seen)| now.since(*seen) < FRAGMENT_TIMEOUT);
    }

    /// Ends every flow still open: the input is over. They come out oldest first (flows that
    /// ended earlier are still collected with [`swap_ended`](Self::swap_ended)).
    pub fn finish(&mut self) -> Remaining {
        self.index.clear();
        self.fragments.clear();
        let flows = std::mem::take(&mut self.flows);
        // Sorts small entries, not the flows: putting whole flows in order moved each of them
        // once more, at the end of a replay when nothing else can run. The entries are made in
        // the deadline queue's memory, faulted in already: a new list of them (and another of
        // the slots) cost fresh pages there.
        let mut oldest_first = std::mem::take(&mut self.deadlines).into_vec();
        oldest_first.clear();
        oldest_first.extend(
            flows
                .iter()
                .zip(0u32..)
                .map(|(flow, slot)| Reverse(Deadline { at: flow.first_seen, id: flow.id, slot })),
        );
        oldest_first.sort_unstable_by_key(|entry| entry.0);
        Remaining { flows, oldest_first }
    }

    /// Moves the flows that ended since the last call into `spare` (emptied first), in the order
    /// they ended, and keeps `spare`'s room for the next ones: the two lists trade places each
    /// sweep, so a busy table ends flows without allocating (a new list of whole flows each
    /// sweep made the allocator fault in fresh pages, a tenth of a replay's engine time).
    pub fn swap_ended(&mut self, spare: &mut Vec<(Flow, EndReason)>) {
        spare.clear();
        std::mem::swap(&mut self.ended, spare);
    }
}

/// The flows still open when the input ended.
#[derive(Debug)]
pub struct Remaining {
    flows: Vec<Flow>,
    /// The flows' slots by (first packet, id): the queue's entries, `at` the first packet.
    oldest_first: Vec<Reverse<Deadline>>,
}

impl Remaining {
    /// Oldest first (by first packet; flows started together in the order they were seen).
    pub fn iter(&self) -> impl Iterator<Item = &Flow> {
        self.oldest_first.iter().map(|entry| &self.flows[entry.0.slot as usize])
    }
}

/// Maps a key to its flow's slot. An entry is the slot and the key's hash (8 bytes), not the key
/// (48 bytes with the slot): the key is in the flow. The index is a sixth of the memory to fault
/// in and copy as it grows, and the stored hash spares growing from reading every flow again.
#[derive(Debug, Default)]
struct FlowIndex {
    entries: hashbrown::HashTable<IndexEntry>,
}

#[derive(Debug, Clone, Copy)]
struct IndexEntry {
    slot: u32,
    hash: u32,
}

impl FlowIndex {
    /// 32 bits of the key's hash, so that an entry stays 8 bytes.
    fn hash_of(key: &FlowKey) -> u32 {
        let full = rustc_hash::FxBuildHasher.hash_one(key);
        (full ^ (full >> 32)) as u32
    }

    /// The table's own hash of an entry: its top 7 bits pick the tag and its low bits the
    /// bucket, so both halves carry the 32 bits.
    fn spread(hash: u32) -> u64 {
        u64::from(hash) << 32 | u64::from(hash)
    }

    fn get(&self, flows: &[Flow], key: &FlowKey) -> Option<usize> {
        self.get_hashed(flows, key, Self::hash_of(key))
    }

    /// [`get`](Self::get) with the key's [`hash_of`](Self::hash_of) already made.
    fn get_hashed(&self, flows: &[Flow], key: &FlowKey, hash: u32) -> Option<usize> {
        self.entries
            .find(Self::spread(hash), |e| e.hash == hash && flows[e.slot as usize].key == *key)
            .map(|e| e.slot as usize)
    }

    /// Indexes a key not yet in the index, by its [`hash_of`](Self::hash_of).
    fn insert(&mut self, hash: u32, slot: u32) {
        self.entries
            .insert_unique(Self::spread(hash), IndexEntry { slot, hash }, |e| Self::spread(e.hash));
    }

    fn remove(&mut self, flows: &[Flow], key: &FlowKey) -> Option<usize> {
        let hash = Self::hash_of(key);
        let entry = self
            .entries
            .find_entry(Self::spread(hash), |e| {
                e.hash == hash && flows[e.slot as usize].key == *key
            })
            .ok()?;
        Some(entry.remove().0.slot as usize)
    }

    /// The flow with `key` moved from slot `from` to `to`.
    fn relocate(&mut self, key: &FlowKey, from: usize, to: u32) {
        let hash = Self::hash_of(key);
        let entry = self.entries.find_mut(Self::spread(hash), |e| e.slot as usize == from);
        debug_assert!(entry.is_some(), "a moved flow is indexed at its old slot");
        if let Some(entry) = entry {
            entry.slot = to;
        }
    }

    fn clear(&mut self) {
        self.entries.clear();
    }
}

/// Clients' ports are ephemeral: Linux picks them from 32768–60999 (others from 49152 up), so
/// a port below that talking to one in it is a server (6443, 8080, 5432, a NodePort), as is a
/// well-known port (below 1024) talking to any other. Two ports alike say nothing.
fn looks_like_server(port: u16, other: u16) -> bool {
    const EPHEMERAL: u16 = 32768;
    (port < 1024 && other >= 1024) || (port < EPHEMERAL && other >= EPHEMERAL)
}

fn is_closed(state: Option<TcpState>) -> bool {
    matches!(state, Some(TcpState::Closed | TcpState::Reset))
}

fn count(flow: &mut Flow, packet: &Packet, interface: u16, from_initiator: bool, now: Timestamp) {
    let counters = if from_initiator { &mut flow.tx } else { &mut flow.rx };
    counters.packets += 1;
    counters.bytes += u64::from(packet.ip_len);
    flow.rates.add(now.whole_secs(), from_initiator, packet.ip_len);
    if now > flow.last_seen {
        flow.last_seen = now;
    }
    if flow.last_interface != interface {
        flow.last_interface = interface;
        if !flow.interfaces.contains(&interface) {
            flow.interfaces.push(interface);
        }
    }
    if let (Some(tcp), Some(state)) = (packet.tcp, flow.tcp) {
        flow.tcp = Some(next_tcp_state(flow, state, tcp, from_initiator));
    }
}

/// The TCP state machine, as far as a passive observer can follow it.
fn next_tcp_state(
    flow: &mut Flow,
    state: TcpState,
    tcp: TcpInfo,
    from_initiator: bool,
) -> TcpState {
    // A reset connection is over: a FIN already in flight (or any straggler) does not reopen
    // it into "closing" with the long idle timeout.
    if tcp.has(TcpInfo::RST) || state == TcpState::Reset {
        return TcpState::Reset;
    }
    if tcp.has(TcpInfo::FIN) {
        flow.fin[usize::from(!from_initiator)] = true;
        return if flow.fin == [true, true] { TcpState::Closed } else { TcpState::Closing };
    }
    match state {
        TcpState::SynSent if !from_initiator && tcp.has(TcpInfo::SYN) && tcp.has(TcpInfo::ACK) => {
            TcpState::SynAck
        }
        // Any other answer to a SYN (data, a bare ACK) also shows the responder is alive.
        TcpState::SynSent if !from_initiator => TcpState::Established,
        TcpState::SynAck if from_initiator && tcp.has(TcpInfo::ACK) => TcpState::Established,
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Packet;
    use crate::flow::Protocol;

    /// The flows ended since the last call, as the engine collects them.
    fn drain_ended(table: &mut FlowTable) -> Vec<(Flow, EndReason)> {
        let mut ended = Vec::new();
        table.swap_ended(&mut ended);
        ended
    }

    const CLIENT: &str = "10.244.1.10";
    const SERVER: &str = "203.0.113.10";

    fn tcp(src: (&str, u16), dst: (&str, u16), flags: u8, len: u32) -> Packet {
        let role = match (flags & TcpInfo::SYN != 0, flags & TcpInfo::ACK != 0) {
            (true, false) => Role::Initiator,
            (true, true) => Role::Responder,
            _ => Role::Unknown,
        };
        Packet {
            src: src.0.parse().unwrap(),
            dst: dst.0.parse().unwrap(),
            protocol: Protocol::Tcp,
            src_port: src.1,
            dst_port: dst.1,
            ip_len: len,
            tcp: Some(TcpInfo { flags, seq: 0, ack: 0 }),
            role,
            ttl: 64,
            fragment: Fragment::None,
            ip_id: 0,
        }
    }

    fn at(ms: u64) -> Timestamp {
        Timestamp(1_000_000_000_000 + ms * 1_000_000)
    }

    const SYN: u8 = TcpInfo::SYN;
    const SYN_ACK: u8 = TcpInfo::SYN | TcpInfo::ACK;
    const ACK: u8 = TcpInfo::ACK;
    const FIN_ACK: u8 = TcpInfo::FIN | TcpInfo::ACK;

    /// A TCP handshake from `c` to `s` at 0, 1 and 2 ms.
    fn handshake(table: &mut FlowTable, c: (&str, u16), s: (&str, u16)) {
        table.ingest(&tcp(c, s, SYN, 60), 0, at(0));
        table.ingest(&tcp(s, c, SYN_ACK, 60), 0, at(1));
        table.ingest(&tcp(c, s, ACK, 52), 0, at(2));
    }

    fn only_flow(table: &FlowTable) -> &Flow {
        assert_eq!(table.len(), 1);
        table.flows().next().unwrap()
    }

    #[test]
    fn a_handshake_orients_the_flow_from_the_syn_sender_and_counts_each_direction() {
        let mut table = FlowTable::new(TableLimits::default());
        let c = (CLIENT, 43122);
        let s = (SERVER, 443);
        table.ingest(&tcp(c, s, SYN, 60), 0, at(0));
        assert_eq!(only_flow(&table).tcp, Some(TcpState::SynSent));
        table.ingest(&tcp(s, c, SYN_ACK, 60), 0, at(10));
        assert_eq!(only_flow(&table).tcp, Some(TcpState::SynAck));
        table.ingest(&tcp(c, s, ACK, 52), 0, at(11));
        assert_eq!(only_flow(&table).tcp, Some(TcpState::Established));
        table.ingest(&tcp(c, s, FIN_ACK, 52), 0, at(20));
        assert_eq!(only_flow(&table).tcp, Some(TcpState::Closing));
        table.ingest(&tcp(s, c, FIN_ACK, 52), 0, at(21));
        let flow = only_flow(&table);
        assert_eq!(flow.tcp, Some(TcpState::Closed));
        assert_eq!(flow.initiator().port, 43122);
        assert_eq!((flow.tx.packets, flow.tx.bytes), (3, 164));
        assert_eq!((flow.rx.packets, flow.rx.bytes), (2, 112));
        assert_eq!((flow.first_seen, flow.last_seen), (at(0), at(21)));
    }

    #[test]
    fn a_flow_first_seen_at_its_syn_ack_is_oriented_from_the_client() {
        let mut table = FlowTable::new(TableLimits::default());
        table.ingest(&tcp((SERVER, 443), (CLIENT, 43122), SYN_ACK, 60), 0, at(0));
        let flow = only_flow(&table);
        assert_eq!(flow.initiator().ip.to_string(), CLIENT);
        assert_eq!(flow.tcp, Some(TcpState::SynAck));
        assert_eq!(flow.rx.packets, 1);
    }

    #[test]
    fn a_flow_seen_mid_stream_is_oriented_towards_the_well_known_port() {
        let mut table = FlowTable::new(TableLimits::default());
        table.ingest(&tcp((SERVER, 443), (CLIENT, 43122), ACK, 1500), 0, at(0));
        let flow = only_flow(&table);
        assert_eq!(flow.responder().port, 443);
        assert_eq!(flow.tcp, Some(TcpState::Established));
    }

    #[test]
    fn an_unanswered_syn_reads_no_reply_once_the_retransmit_time_has_passed() {
        let mut table = FlowTable::new(TableLimits::default());
        let c = (CLIENT, 50000);
        let s = ("203.0.113.99", 443);
        table.ingest(&tcp(c, s, SYN, 60), 0, at(0));
        table.ingest(&tcp(c, s, SYN, 60), 0, at(1000));
        let flow = only_flow(&table);
        assert_eq!(flow.tcp_state_at(at(500), false), Some(TcpState::SynSent));
        assert_eq!(flow.tcp_state_at(at(1500), false), Some(TcpState::NoReply));
        assert_eq!(flow.tcp_state_at(at(10), true), Some(TcpState::NoReply));
    }

    #[test]
    fn a_flow_lists_every_interface_it_came_on_once_in_the_order_first_seen() {
        let mut table = FlowTable::new(TableLimits::default());
        let packet = tcp((CLIENT, 40000), (SERVER, 443), ACK, 60);
        for (i, interface) in [2u16, 2, 0, 2, 5, 0, 0, 5].into_iter().enumerate() {
            table.ingest(&packet, interface, at(i as u64));
        }
        let flow = only_flow(&table);
        assert_eq!(flow.interfaces.as_slice(), [2, 0, 5]);
        assert_eq!(flow.tx.packets, 8);
    }

    #[test]
    fn a_reset_ends_the_connection_state() {
        let mut table = FlowTable::new(TableLimits::default());
        table.ingest(&tcp((CLIENT, 50001), (SERVER, 80), SYN, 60), 0, at(0));
        table.ingest(&tcp((SERVER, 80), (CLIENT, 50001), TcpInfo::RST | ACK, 40), 0, at(1));
        assert_eq!(only_flow(&table).tcp, Some(TcpState::Reset));
    }

    /// A connection first seen mid-stream, from the server's side: a server port above 1024
    /// (6443, a NodePort) answering an ephemeral one is still the server; two ports alike leave
    /// the first packet's sender as the initiator.
    #[test]
    fn a_flow_seen_mid_stream_is_oriented_by_which_port_is_ephemeral() {
        let mut table = FlowTable::new(TableLimits::default());
        table.ingest(&tcp(("10.96.0.1", 6443), (CLIENT, 51000), ACK, 52), 0, at(0));
        table.ingest(&tcp((SERVER, 30080), (CLIENT, 40000), ACK, 52), 0, at(0));
        table.ingest(&tcp((SERVER, 50000), (CLIENT, 40001), ACK, 52), 0, at(0));
        table.ingest(&tcp((SERVER, 8080), (CLIENT, 9090), ACK, 52), 0, at(0));
        let responder = |port: u16| {
            table
                .flows()
                .find(|f| f.key.low.port == port || f.key.high.port == port)
                .map(|f| f.responder().port)
        };
        assert_eq!(responder(6443), Some(6443));
        assert_eq!(responder(30080), Some(30080), "a NodePort");
        assert_eq!(responder(50000), Some(40001), "both ephemeral: the first sender initiated");
        assert_eq!(responder(8080), Some(9090), "both server-like: the first sender initiated");
    }

    /// The clock steps back an hour (NTP on a live node): the flows come back with it, so they
    /// still end after their idle timeout and their rates count the new packets.
    #[test]
    fn flows_follow_a_clock_that_steps_back() {
        let limits =
            TableLimits { idle_timeout: Duration::from_secs(60), ..TableLimits::default() };
        let mut table = FlowTable::new(limits);
        let (c, s) = ((CLIENT, 40000), (SERVER, 443));
        let hour = 3_600_000;
        table.ingest(&tcp(c, s, SYN, 60), 0, at(hour));
        table.ingest(&tcp(s, c, SYN_ACK, 60), 0, at(hour + 1));
        // An hour back (the engine watches the clock and says so): the next packet, and the
        // seconds after it.
        table.step_back(at(0));
        for second in 0..7u64 {
            table.ingest(&tcp(c, s, ACK, 1000), 0, at(second * 1000));
        }
        let flow = only_flow(&table);
        assert!(flow.last_seen <= at(6000), "{:?}", flow.last_seen);
        let rate = flow.rates.rates(at(7000).whole_secs()).tx_bytes_per_sec;
        assert!((rate - 1000.0).abs() < 1e-9, "{rate}");
        table.advance(at(6000 + 61_000));
        assert_eq!(drain_ended(&mut table).len(), 1, "ended a minute after its last packet");
    }

    /// The server resets while the client's FIN is in flight: the flow stays reset (ended
    /// soon, and a new SYN on its ports is a new flow).
    #[test]
    fn a_fin_after_a_reset_leaves_the_flow_reset() {
        let mut table = FlowTable::new(TableLimits::default());
        let (c, s) = ((CLIENT, 40000), (SERVER, 443));
        handshake(&mut table, c, s);
        table.ingest(&tcp(s, c, TcpInfo::RST, 40), 0, at(3));
        table.ingest(&tcp(c, s, FIN_ACK, 52), 0, at(4));
        assert_eq!(only_flow(&table).tcp, Some(TcpState::Reset));
        let (_, ingested) = table.ingest(&tcp(c, s, SYN, 60), 0, at(5)).unwrap();
        assert!(ingested.new_flow);
    }

    #[test]
    fn idle_flows_expire_and_closed_ones_sooner() {
        let limits = TableLimits {
            max_flows: 10,
            idle_timeout: Duration::from_secs(60),
            closed_timeout: Duration::from_secs(5),
        };
        let mut table = FlowTable::new(limits);
        let (c, s) = ((CLIENT, 40000), (SERVER, 443));
        table.ingest(&tcp(c, s, SYN, 60), 0, at(0));
        table.ingest(&tcp(s, c, TcpInfo::RST, 40), 0, at(1));
        table.ingest(&tcp((CLIENT, 40001), s, SYN, 60), 0, at(0));
        table.advance(at(6_000));
        let ended = drain_ended(&mut table);
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].1, EndReason::Expired);
        assert_eq!(ended[0].0.initiator().port, 40000);
        table.advance(at(60_000));
        assert_eq!(drain_ended(&mut table).len(), 1);
        assert!(table.is_empty());
        assert_eq!(table.expired_total, 2);
    }

    #[test]
    fn at_the_cap_the_least_recently_seen_flows_are_evicted_and_counted() {
        let limits = TableLimits { max_flows: 4, ..TableLimits::default() };
        let mut table = FlowTable::new(limits);
        for port in 0..4u16 {
            table.ingest(
                &tcp((CLIENT, 40000 + port), (SERVER, 443), SYN, 60),
                0,
                at(u64::from(port)),
            );
        }
        // Port 40000 was seen first but is refreshed, so 40001 is now the oldest.
        table.ingest(&tcp((CLIENT, 40000), (SERVER, 443), ACK, 52), 0, at(10));
        table.ingest(&tcp((CLIENT, 40009), (SERVER, 443), SYN, 60), 0, at(11));
        let ended = drain_ended(&mut table);
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].0.initiator().port, 40001);
        assert_eq!(ended[0].1, EndReason::Evicted);
        assert_eq!(table.evicted_total, 1);
        assert_eq!(table.len(), 4);
    }

    #[test]
    fn later_fragments_count_against_the_flow_of_their_first_fragment() {
        let mut table = FlowTable::new(TableLimits::default());
        let mut first = tcp((CLIENT, 5353), (SERVER, 9999), 0, 1500);
        first.protocol = Protocol::Udp;
        first.tcp = None;
        (first.fragment, first.ip_id) = (Fragment::First, 77);
        let mut later = first;
        later.src_port = 0;
        later.dst_port = 0;
        later.ip_len = 400;
        later.fragment = Fragment::Later;
        table.ingest(&first, 0, at(0));
        assert!(table.ingest(&later, 0, at(1)).is_some());
        let flow = only_flow(&table);
        assert_eq!((flow.tx.packets, flow.tx.bytes), (2, 1900));
        let mut orphan = later;
        orphan.ip_id = 78;
        assert!(table.ingest(&orphan, 0, at(2)).is_none());
    }

    /// An IPv6 datagram is its addresses and fragment id: a later fragment counts on the first
    /// one's flow though its fragment header says destination options follow, not UDP.
    #[test]
    fn a_later_ipv6_fragment_counts_on_its_datagrams_flow_whatever_header_it_says_follows() {
        let mut table = FlowTable::new(TableLimits::default());
        let mut first = tcp(("2001:db8::1", 5353), ("2001:db8::2", 9999), 0, 1500);
        (first.protocol, first.tcp) = (Protocol::Udp, None);
        (first.fragment, first.ip_id) = (Fragment::First, 77);
        let later = Packet {
            protocol: Protocol::from_ip_number(60),
            src_port: 0,
            dst_port: 0,
            ip_len: 400,
            fragment: Fragment::Later,
            ..first
        };
        table.ingest(&first, 0, at(0));
        assert!(table.ingest(&later, 0, at(1)).is_some());
        assert_eq!(only_flow(&table).tx.packets, 2);
    }

    #[test]
    fn a_new_syn_on_a_closed_flows_ports_starts_a_new_flow() {
        let mut table = FlowTable::new(TableLimits::default());
        let (c, s) = ((CLIENT, 40000), (SERVER, 443));
        handshake(&mut table, c, s);
        table.ingest(&tcp(c, s, FIN_ACK, 52), 0, at(3));
        table.ingest(&tcp(s, c, FIN_ACK, 52), 0, at(4));
        let old = only_flow(&table).id;
        assert_eq!(only_flow(&table).tcp, Some(TcpState::Closed));
        // The client port comes round again within the closed timeout.
        let (_, ingested) = table.ingest(&tcp(c, s, SYN, 60), 0, at(5_000)).unwrap();
        assert!(ingested.new_flow);
        let flow = only_flow(&table);
        assert_ne!(flow.id, old);
        assert_eq!((flow.tcp, flow.tx.packets), (Some(TcpState::SynSent), 1));
        let ended = drain_ended(&mut table);
        assert_eq!(ended.len(), 1);
        assert_eq!((ended[0].0.id, ended[0].0.tx.packets), (old, 3));
        // A late retransmitted FIN of the old connection is not a new one.
        table.ingest(&tcp(c, s, FIN_ACK, 52), 0, at(5_001));
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn first_fragments_are_remembered_no_more_than_flows() {
        let limits = TableLimits { max_flows: 8, ..TableLimits::default() };
        let mut table = FlowTable::new(limits);
        for id in 0..100 {
            let mut first = tcp((CLIENT, 5353), (SERVER, 9999), 0, 1500);
            (first.fragment, first.ip_id) = (Fragment::First, id);
            table.ingest(&first, 0, at(u64::from(id)));
        }
        assert_eq!(table.fragments.len(), 8);
    }

    #[test]
    fn a_later_fragment_of_a_flow_that_ended_is_an_orphan_not_a_new_flow() {
        let limits = TableLimits { idle_timeout: Duration::from_secs(5), ..TableLimits::default() };
        let mut table = FlowTable::new(limits);
        let mut first = tcp((CLIENT, 5353), (SERVER, 9999), 0, 1500);
        first.protocol = Protocol::Udp;
        first.tcp = None;
        (first.fragment, first.ip_id) = (Fragment::First, 77);
        let later = Packet { src_port: 0, dst_port: 0, fragment: Fragment::Later, ..first };
        table.ingest(&first, 0, at(0));
        // The flow goes idle and ends; its fragment entry (kept 30 s) outlives it.
        table.advance(at(6_000));
        assert!(table.is_empty());
        assert!(table.ingest(&later, 0, at(7_000)).is_none());
        assert!(table.is_empty(), "no flow without ports");
    }

    #[test]
    fn every_flow_is_found_by_its_key_after_others_left_and_moved_into_their_slots() {
        let limits =
            TableLimits { idle_timeout: Duration::from_secs(10), ..TableLimits::default() };
        let mut table = FlowTable::new(limits);
        // Odd ports go quiet early and expire; each removal moves the last flow into its slot.
        for port in (1..=400u16).step_by(2).chain((2..=400).step_by(2)) {
            let ms = if port % 2 == 1 { 0 } else { 9_000 };
            table.ingest(&tcp((CLIENT, port), (SERVER, 443), ACK, 60), 0, at(ms));
        }
        assert_eq!(table.len(), 400);
        table.advance(at(10_500));
        assert_eq!(table.len(), 200);
        for port in 1..=400u16 {
            let key = FlowKey::canonical(
                Protocol::Tcp,
                SocketEnd { ip: CLIENT.parse().unwrap(), port },
                SocketEnd { ip: SERVER.parse().unwrap(), port: 443 },
            )
            .0;
            let found = table.get(&key).map(|flow| flow.key);
            assert_eq!(found, (port % 2 == 0).then_some(key), "port {port}");
        }
        // And a returning client is a new flow, not a stale slot.
        let (flow, ingested) =
            table.ingest(&tcp((CLIENT, 1), (SERVER, 443), SYN, 60), 0, at(10_600)).unwrap();
        assert!(ingested.new_flow);
        assert_eq!(flow.initiator().port, 1);
    }

    #[test]
    fn finishing_hands_out_every_flow_oldest_first() {
        let mut table = FlowTable::new(TableLimits::default());
        table.ingest(&tcp((CLIENT, 2), (SERVER, 443), SYN, 60), 0, at(5));
        table.ingest(&tcp((CLIENT, 1), (SERVER, 443), SYN, 60), 0, at(1));
        let ports: Vec<u16> = table.finish().iter().map(|f| f.initiator().port).collect();
        assert_eq!(ports, vec![1, 2]);

        // Flows started at one time come out in the order they were seen, also when a removal
        // moved the last of them into the first slot.
        let limits =
            TableLimits { idle_timeout: Duration::from_secs(60), ..TableLimits::default() };
        let mut table = FlowTable::new(limits);
        table.ingest(&tcp((CLIENT, 1), (SERVER, 443), SYN, 60), 0, at(0));
        for port in 2..=4 {
            table.ingest(&tcp((CLIENT, port), (SERVER, 443), SYN, 60), 0, at(100_000));
        }
        table.advance(at(100_000));
        assert_eq!(drain_ended(&mut table).len(), 1, "port 1 went, port 4 took its slot");
        let ports: Vec<u16> = table.finish().iter().map(|f| f.initiator().port).collect();
        assert_eq!(ports, vec![2, 3, 4]);
    }

    #[test]
    fn a_flood_of_evicted_flows_does_not_grow_the_deadline_queue_without_bound() {
        let limits = TableLimits { max_flows: 64, ..TableLimits::default() };
        let mut table = FlowTable::new(limits);
        for port in 0..20_000u16 {
            table.ingest(&tcp((CLIENT, port), (SERVER, 443), SYN, 60), 0, at(u64::from(port)));
        }
        assert_eq!(table.len(), 64);
        assert!(table.deadlines.len() <= 2 * 64 + 1024 + 1, "{}", table.deadlines.len());
    }

    proptest::proptest! {
        /// The lazy deadline queue ends exactly the flows a scan of the whole table would, in
        /// the same order, and the index finds every flow left.
        #[test]
        fn sweeping_by_deadlines_ends_the_same_flows_as_scanning_the_table(
            steps in proptest::collection::vec((0u16..12, 0u8..4, 0u64..4_000), 1..200),
        ) {
            let limits = TableLimits {
                max_flows: 1_000,
                idle_timeout: Duration::from_secs(3),
                closed_timeout: Duration::from_secs(1),
            };
            let mut table = FlowTable::new(limits);
            let mut now = 0;
            for (port, kind, gap_ms) in steps {
                now += gap_ms;
                let flags = [SYN, ACK, FIN_ACK, TcpInfo::RST][usize::from(kind)];
                let (c, s) = ((CLIENT, 40000 + port), (SERVER, 443));
                let packet = if kind == 1 && port % 2 == 0 { tcp(s, c, flags, 52) } else {
                    tcp(c, s, flags, 52)
                };
                table.ingest(&packet, 0, at(now));
                // A SYN on a closed flow's ports ends it at once (a reused port), not by time.
                drain_ended(&mut table);
                let mut due: Vec<(Timestamp, u64)> = table
                    .flows()
                    .filter(|f| at(now).since(f.last_seen) >= table.timeout_of(f))
                    .map(|f| (f.last_seen, f.id))
                    .collect();
                due.sort_unstable();
                table.advance(at(now));
                let ended: Vec<(Timestamp, u64)> =
                    drain_ended(&mut table).iter().map(|(f, _)| (f.last_seen, f.id)).collect();
                proptest::prop_assert_eq!(ended, due);
                // Removals moved flows between slots (the last one's too): each is still
                // found by its key.
                for flow in table.flows() {
                    proptest::prop_assert_eq!(table.get(&flow.key).map(|f| f.id), Some(flow.id));
                }
            }
        }
    }
}
