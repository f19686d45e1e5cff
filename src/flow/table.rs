//! The flow table: ingest packets, advance time, expire idle flows, evict under a flood.
//!
//! Bounded: a flow idle past its timeout expires; at the hard cap the least recently seen flows
//! are evicted in a batch (amortised O(1) per packet), counted, and handed out like expired
//! ones, so nothing disappears silently.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::IpAddr;
use std::time::Duration;

use rustc_hash::FxHashMap;

use super::key::{FlowKey, SocketEnd};
use super::{Counters, Flow, TcpState};
use crate::decode::{Fragment, Packet, Role, TcpInfo};
use crate::flow::rates::RateWindow;
use crate::time::Timestamp;

mod index;

use index::FlowIndex;

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
mod tests;
