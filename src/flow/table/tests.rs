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
    let limits = TableLimits { idle_timeout: Duration::from_secs(60), ..TableLimits::default() };
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
        table.ingest(&tcp((CLIENT, 40000 + port), (SERVER, 443), SYN, 60), 0, at(u64::from(port)));
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
    let limits = TableLimits { idle_timeout: Duration::from_secs(10), ..TableLimits::default() };
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
    let limits = TableLimits { idle_timeout: Duration::from_secs(60), ..TableLimits::default() };
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

/// The packet that closes a flow says so, once: the engine freezes the flow's verdict and names
/// on it (and nowhere else).
#[test]
fn the_packet_that_closes_a_flow_says_so_once() {
    let closed = |table: &mut FlowTable, packet: Packet, ms: u64| {
        table.ingest(&packet, 0, at(ms)).map(|(_, ingested)| ingested.closed).unwrap()
    };
    let mut table = FlowTable::new(TableLimits::default());
    let (c, s) = ((CLIENT, 43130), (SERVER, 443));
    assert!(!closed(&mut table, tcp(c, s, SYN, 60), 0));
    assert!(!closed(&mut table, tcp(s, c, SYN_ACK, 60), 1));
    assert!(!closed(&mut table, tcp(c, s, FIN_ACK, 52), 2), "one FIN leaves it closing");
    assert!(closed(&mut table, tcp(s, c, FIN_ACK, 52), 3), "the second FIN closes it");
    assert!(!closed(&mut table, tcp(c, s, ACK, 52), 4), "closed already");
    assert!(!closed(&mut table, tcp(s, c, TcpInfo::RST, 40), 5), "closed already");

    // A lone RST starts a flow closed: that packet closed it too.
    let mut table = FlowTable::new(TableLimits::default());
    assert!(closed(&mut table, tcp((SERVER, 80), (CLIENT, 50002), TcpInfo::RST, 40), 0));
    assert!(!closed(&mut table, tcp((SERVER, 80), (CLIENT, 50002), TcpInfo::RST, 40), 1));
}
