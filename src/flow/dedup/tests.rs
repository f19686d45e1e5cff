use super::*;
use crate::decode::TcpInfo;

const CLIENT_VETH: u16 = 0;
const BACKEND_VETH: u16 = 1;
const BRIDGE: u16 = 2;
const UPLINK: u16 = 3;

fn end(text: &str) -> SocketEnd {
    let (ip, port) = text.rsplit_once(':').unwrap();
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    SocketEnd { ip: ip.parse().unwrap(), port: port.parse().unwrap() }
}

fn ends(src: &str, dst: &str) -> Endpoints {
    Endpoints { src: end(src), dst: end(dst) }
}

fn tcp(src: &str, dst: &str, ip_id: u32, seq: u32, flags: u8, ttl: u8) -> PacketFacts {
    PacketFacts {
        protocol: Protocol::Tcp,
        ends: ends(src, dst),
        ip_id,
        ip_len: 60,
        tcp: Some((seq, 0, flags)),
        later_fragment: false,
        ttl: Some(ttl),
    }
}

fn udp(src: &str, dst: &str, ip_id: u32, ip_len: u32, ttl: u8) -> PacketFacts {
    PacketFacts {
        protocol: Protocol::Udp,
        ends: ends(src, dst),
        ip_id,
        ip_len,
        tcp: None,
        later_fragment: false,
        ttl: Some(ttl),
    }
}

fn at(micros: u64) -> Timestamp {
    Timestamp(1_800_000_000_000_000_000 + micros * 1_000)
}

fn is_first(sighting: Sighting) -> bool {
    matches!(sighting, Sighting::First { seen_as: None, .. })
}

const SYN: u8 = TcpInfo::SYN;
const SYN_ACK: u8 = TcpInfo::SYN | TcpInfo::ACK;

#[test]
fn pod_to_pod_on_one_bridge_counts_once_though_both_veths_see_it() {
    let mut dedup = Dedup::new(DedupLimits::default());
    let packet = udp("10.244.7.11:40001", "10.244.7.12:9000", 4242, 128, 64);
    assert!(is_first(dedup.observe(&packet, CLIENT_VETH, at(0))));
    let copy = dedup.observe(&packet, BACKEND_VETH, at(30));
    assert_eq!(
        copy,
        Sighting::Copy {
            first_interface: CLIENT_VETH,
            counted_as: packet.ends,
            seen_as: packet.ends,
        }
    );
    assert_eq!(dedup.counts().copies, 1);
    assert_eq!(dedup.counts().translated_copies, 0);
}

#[test]
fn pod_to_external_counts_once_on_veth_bridge_and_uplink() {
    let mut dedup = Dedup::new(DedupLimits::default());
    let on_veth = tcp("10.244.7.11:40002", "203.0.113.10:443", 7, 1000, SYN, 64);
    assert!(is_first(dedup.observe(&on_veth, CLIENT_VETH, at(0))));
    // The bridge sees identical bytes; the uplink one hop later, TTL one lower.
    assert!(matches!(dedup.observe(&on_veth, BRIDGE, at(5)), Sighting::Copy { .. }));
    let on_uplink = PacketFacts { ttl: Some(63), ..on_veth };
    assert!(matches!(
        dedup.observe(&on_uplink, UPLINK, at(9)),
        Sighting::Copy { first_interface: CLIENT_VETH, .. }
    ));
    assert_eq!(dedup.counts().copies, 2);
}

#[test]
fn a_masqueraded_copy_on_the_uplink_is_a_copy_and_its_reply_counts_under_the_pod() {
    let mut dedup = Dedup::new(DedupLimits::default());
    let pod_side = tcp("10.244.7.11:40003", "203.0.113.10:443", 8, 2000, SYN, 64);
    dedup.observe(&pod_side, CLIENT_VETH, at(0));
    let masqueraded = PacketFacts {
        ends: ends("198.51.100.1:61000", "203.0.113.10:443"),
        ttl: Some(63),
        ..pod_side
    };
    let sighting = dedup.observe(&masqueraded, UPLINK, at(10));
    let Sighting::Copy { counted_as, seen_as, .. } = sighting else { panic!("{sighting:?}") };
    assert_eq!((seen_as.src, seen_as.dst), (end("198.51.100.1:61000"), counted_as.dst));
    // The reply reaches the uplink first, addressed to the node: counted under the pod.
    let reply = tcp("203.0.113.10:443", "198.51.100.1:61000", 0, 9000, SYN_ACK, 50);
    assert_eq!(
        dedup.observe(&reply, UPLINK, at(900)),
        Sighting::First {
            count_as: ends("203.0.113.10:443", "10.244.7.11:40003"),
            seen_as: Some(reply.ends),
        }
    );
    // After un-masquerading, the bridge and the veth see it addressed to the pod.
    let to_pod =
        PacketFacts { ends: ends("203.0.113.10:443", "10.244.7.11:40003"), ttl: Some(49), ..reply };
    assert!(matches!(
        dedup.observe(&to_pod, BRIDGE, at(905)),
        Sighting::Copy { first_interface: UPLINK, .. }
    ));
    assert!(matches!(
        dedup.observe(&to_pod, CLIENT_VETH, at(906)),
        Sighting::Copy { first_interface: UPLINK, .. }
    ));
    assert_eq!(dedup.counts().copies, 3);
    assert_eq!(dedup.counts().rewritten, 1);
}

#[test]
fn a_dnated_copy_reports_the_backend_and_the_backend_reply_counts_under_the_service() {
    let mut dedup = Dedup::new(DedupLimits::default());
    let to_service = tcp("10.244.7.11:40004", "10.96.7.10:80", 11, 3000, SYN, 64);
    assert!(is_first(dedup.observe(&to_service, CLIENT_VETH, at(0))));
    let to_backend = PacketFacts {
        ends: ends("10.244.7.11:40004", "10.244.7.13:8080"),
        ttl: Some(63),
        ..to_service
    };
    let sighting = dedup.observe(&to_backend, BACKEND_VETH, at(20));
    let Sighting::Copy { first_interface, counted_as, seen_as } = sighting else {
        panic!("{sighting:?}")
    };
    assert_eq!(first_interface, CLIENT_VETH);
    assert_eq!(counted_as, to_service.ends);
    assert_eq!((seen_as.src, seen_as.dst), (counted_as.src, end("10.244.7.13:8080")));
    // The backend answers; its veth sees the reply first, from the backend address.
    let reply = tcp("10.244.7.13:8080", "10.244.7.11:40004", 0, 5000, SYN_ACK, 64);
    assert_eq!(
        dedup.observe(&reply, BACKEND_VETH, at(100)),
        Sighting::First {
            count_as: ends("10.96.7.10:80", "10.244.7.11:40004"),
            seen_as: Some(reply.ends),
        }
    );
    let unnated =
        PacketFacts { ends: ends("10.96.7.10:80", "10.244.7.11:40004"), ttl: Some(63), ..reply };
    assert!(matches!(
        dedup.observe(&unnated, CLIENT_VETH, at(120)),
        Sighting::Copy { first_interface: BACKEND_VETH, .. }
    ));
    assert_eq!(dedup.counts().copies, 2);
    assert_eq!(dedup.bindings(), 2);
}

#[test]
fn a_bridge_that_routes_between_its_ports_sees_the_service_packet_twice_and_counts_it_once() {
    // Pod to ClusterIP on one bridge: the bridge device sees the packet arrive for the
    // service and leave, DNAT'd, for the backend; the veths see one each.
    let mut dedup = Dedup::new(DedupLimits::default());
    let to_service = tcp("10.244.7.11:40011", "10.96.7.10:80", 21, 4000, SYN, 64);
    let to_backend = PacketFacts {
        ends: ends("10.244.7.11:40011", "10.244.7.13:8080"),
        ttl: Some(63),
        ..to_service
    };
    assert!(is_first(dedup.observe(&to_service, CLIENT_VETH, at(0))));
    assert!(matches!(dedup.observe(&to_service, BRIDGE, at(1)), Sighting::Copy { .. }));
    assert!(matches!(dedup.observe(&to_backend, BRIDGE, at(2)), Sighting::Copy { .. }));
    assert!(matches!(dedup.observe(&to_backend, BACKEND_VETH, at(3)), Sighting::Copy { .. }));
    assert_eq!(dedup.counts().copies, 3);
}

#[test]
fn a_retransmission_on_the_same_interface_counts_again() {
    let mut dedup = Dedup::new(DedupLimits::default());
    let packet = tcp("10.244.7.11:40005", "10.244.7.12:80", 0, 77, SYN, 64);
    assert!(is_first(dedup.observe(&packet, CLIENT_VETH, at(0))));
    assert!(is_first(dedup.observe(&packet, CLIENT_VETH, at(10))));
    // Each copy on the far veth pairs with one of the two.
    assert!(matches!(dedup.observe(&packet, BACKEND_VETH, at(11)), Sighting::Copy { .. }));
    assert!(matches!(dedup.observe(&packet, BACKEND_VETH, at(12)), Sighting::Copy { .. }));
    assert!(is_first(dedup.observe(&packet, BACKEND_VETH, at(13))));
}

#[test]
fn a_packet_seen_again_after_the_window_counts_again() {
    let mut dedup = Dedup::new(DedupLimits::default());
    let packet = udp("10.244.7.11:40006", "10.244.7.12:9000", 1, 100, 64);
    dedup.observe(&packet, CLIENT_VETH, at(0));
    assert!(is_first(dedup.observe(&packet, BACKEND_VETH, at(60_000))));
}

#[test]
fn another_pods_packet_with_the_same_fingerprint_is_not_taken_for_a_translated_copy() {
    // IPv6 carries no IP id: two pods' same-sized DNS queries to one server look alike but
    // for the source, and the second did not cross a router between the two sightings.
    let mut dedup = Dedup::new(DedupLimits::default());
    let first = udp("[fd00::11]:40007", "[fd00::53]:53", 0, 80, 64);
    let other = udp("[fd00::12]:40008", "[fd00::53]:53", 0, 80, 64);
    assert!(is_first(dedup.observe(&first, CLIENT_VETH, at(0))));
    assert!(is_first(dedup.observe(&other, BACKEND_VETH, at(5))));
}

#[test]
fn a_copy_with_a_higher_ttl_is_not_a_copy() {
    let mut dedup = Dedup::new(DedupLimits::default());
    let packet = udp("10.244.7.11:40009", "10.244.7.12:9000", 5, 100, 63);
    dedup.observe(&packet, CLIENT_VETH, at(0));
    let higher = PacketFacts { ttl: Some(64), ..packet };
    assert!(is_first(dedup.observe(&higher, BACKEND_VETH, at(1))));
}

#[test]
fn a_copy_goes_to_the_packet_with_its_own_ends_before_an_older_look_alike() {
    // A DNS server answers two clients with same-size replies, IP id 0: one fingerprint.
    let mut dedup = Dedup::new(DedupLimits::default());
    let to_a = udp("10.244.0.10:53", "10.244.7.11:40001", 0, 120, 64);
    let to_b = udp("10.244.0.10:53", "10.244.7.12:40002", 0, 120, 64);
    assert!(is_first(dedup.observe(&to_a, CLIENT_VETH, at(0))));
    assert!(is_first(dedup.observe(&to_b, CLIENT_VETH, at(10))));
    // B's reply on its way out, one hop later: a copy of B's, not a translation of A's.
    let on_uplink = PacketFacts { ttl: Some(63), ..to_b };
    match dedup.observe(&on_uplink, UPLINK, at(20)) {
        Sighting::Copy { counted_as, .. } => assert_eq!(counted_as, to_b.ends),
        other => panic!("not a copy: {other:?}"),
    }
    assert_eq!(dedup.bindings(), 0, "no translation was learned");
    // And B's next packet is counted under B's own ends.
    let next = udp("10.244.0.10:53", "10.244.7.12:40002", 0, 90, 64);
    let counted = dedup.observe(&next, CLIENT_VETH, at(30));
    assert_eq!(counted, Sighting::First { count_as: next.ends, seen_as: None });
}

#[test]
fn a_clock_that_goes_back_does_not_stop_copies_being_recognised() {
    let limits = DedupLimits { max_recent: 4, ..DedupLimits::default() };
    let mut dedup = Dedup::new(limits);
    let early = udp("10.244.7.11:1", "10.244.7.12:2", 1, 100, 64);
    dedup.observe(&early, CLIENT_VETH, at(60_000_000));
    // The clock steps back a minute (the engine says so); more packets than are remembered
    // follow.
    dedup.step_back(at(1));
    for id in 10..20 {
        dedup.observe(&udp("10.244.7.11:1", "10.244.7.12:2", id, 100, 64), CLIENT_VETH, at(1));
    }
    let packet = udp("10.244.7.11:1", "10.244.7.12:2", 2, 100, 64);
    assert!(is_first(dedup.observe(&packet, CLIENT_VETH, at(2))));
    assert!(matches!(dedup.observe(&packet, BACKEND_VETH, at(5)), Sighting::Copy { .. }));
}

#[test]
fn a_full_binding_map_refuses_new_translations_but_refreshes_known_ones() {
    let limits = DedupLimits { max_bindings: 4, ..DedupLimits::default() };
    let mut dedup = Dedup::new(limits);
    // A client port's SYN to the Service, and its DNAT'd copy at the backend.
    let dnat = |dedup: &mut Dedup, port: u16, id: u32, at_micros: u64| {
        let client = format!("10.244.7.11:{port}");
        let to_service = tcp(&client, "10.96.7.10:80", id, 3000, SYN, 64);
        dedup.observe(&to_service, CLIENT_VETH, at(at_micros));
        let to_backend =
            PacketFacts { ends: ends(&client, "10.244.7.13:8080"), ttl: Some(63), ..to_service };
        dedup.observe(&to_backend, BACKEND_VETH, at(at_micros + 10))
    };
    dnat(&mut dedup, 40001, 1, 0);
    dnat(&mut dedup, 40002, 2, 100);
    assert_eq!(dedup.bindings(), 4);
    assert!(matches!(dnat(&mut dedup, 40003, 3, 200), Sighting::Copy { .. }), "still a copy");
    assert_eq!((dedup.bindings(), dedup.counts().bindings_dropped), (4, 1));
    // A retransmission of a known connection is no new binding: nothing refused.
    dnat(&mut dedup, 40001, 4, 300);
    assert_eq!((dedup.bindings(), dedup.counts().bindings_dropped), (4, 1));
}

#[test]
fn memory_stays_bounded_under_a_flood_of_distinct_packets() {
    let limits = DedupLimits { max_recent: 100, ..DedupLimits::default() };
    let mut dedup = Dedup::new(limits);
    for id in 0..10_000 {
        dedup.observe(&udp("10.244.7.11:1", "10.244.7.12:2", id, 100, 64), CLIENT_VETH, at(0));
    }
    assert_eq!(dedup.recent.len(), 100);
    // Forgotten packets' fingerprints linger until they are most of the map.
    assert!(dedup.newest.len() <= 2 * 100 + 1024 + 1, "{}", dedup.newest.len());
    assert_eq!(dedup.counts().recent_overflow, 9_900);
    // The newest are still recognised, a forgotten one is not.
    let forgotten = udp("10.244.7.11:1", "10.244.7.12:2", 9_000, 100, 64);
    assert!(is_first(dedup.observe(&forgotten, BACKEND_VETH, at(1))));
    let last = udp("10.244.7.11:1", "10.244.7.12:2", 9_999, 100, 64);
    assert!(matches!(dedup.observe(&last, BACKEND_VETH, at(1)), Sighting::Copy { .. }));
}

#[test]
fn idle_bindings_are_forgotten() {
    let limits = DedupLimits { binding_idle: Duration::from_secs(5), ..DedupLimits::default() };
    let mut dedup = Dedup::new(limits);
    let to_service = tcp("10.244.7.11:40010", "10.96.7.10:80", 12, 1, SYN, 64);
    dedup.observe(&to_service, CLIENT_VETH, at(0));
    let to_backend = PacketFacts {
        ends: ends("10.244.7.11:40010", "10.244.7.13:8080"),
        ttl: Some(63),
        ..to_service
    };
    dedup.observe(&to_backend, BACKEND_VETH, at(1));
    assert_eq!(dedup.bindings(), 2);
    dedup.observe(&udp("10.0.0.1:1", "10.0.0.2:2", 1, 40, 64), 0, at(10_000_000));
    assert_eq!(dedup.bindings(), 0);
}

#[test]
fn without_ttls_fingerprints_and_ends_still_decide() {
    let mut dedup = Dedup::new(DedupLimits::default());
    let packet = PacketFacts { ttl: None, ..udp("10.244.7.11:1", "10.244.7.12:2", 3, 90, 0) };
    dedup.observe(&packet, CLIENT_VETH, at(0));
    assert!(matches!(dedup.observe(&packet, BACKEND_VETH, at(1)), Sighting::Copy { .. }));
}
