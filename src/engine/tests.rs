//! The engine against cluster changes that arrive while flows are in the table.

use std::net::{IpAddr, SocketAddr};

use super::Engine;
use crate::cluster::event::{ClusterEvent, Object, ResourceKind};
use crate::cluster::{ObjectKey, snapshot};
use crate::flow::TableLimits;
use crate::snapshot::FlowRecord;
use crate::synth::SECOND_NANOS;
use crate::synth::timeline::Timeline;
use crate::time::Timestamp;

const START: u64 = 1_800_000_000 * SECOND_NANOS;

fn pod_yaml(name: &str, ip: &str) -> String {
    format!(
        "- apiVersion: v1\n  kind: Pod\n  metadata: {{name: {name}, namespace: shop, labels: {{app: {name}}}}}\n  \
         spec: {{nodeName: n1, containers: [{{name: main, image: busybox}}]}}\n  \
         status: {{phase: Running, podIP: {ip}, podIPs: [{{ip: {ip}}}]}}\n"
    )
}

/// The pods of a snapshot holding only `pods`, as objects to upsert.
fn pods(pods: &[(&str, &str)]) -> Vec<Object> {
    let items: String = pods.iter().map(|(name, ip)| pod_yaml(name, ip)).collect();
    let text = format!("apiVersion: v1\nkind: List\nitems:\n{items}");
    let loaded = snapshot::parse("pods.yaml", &text).unwrap();
    loaded
        .events
        .into_iter()
        .find_map(|event| match event {
            ClusterEvent::Reset(ResourceKind::Pod, objects) => Some(objects),
            _ => None,
        })
        .unwrap()
}

/// An engine whose cluster holds only `pods` (name, IP).
fn engine_with_pods(list: &[(&str, &str)]) -> Engine {
    let mut engine = Engine::new(TableLimits::default());
    for object in pods(list) {
        engine.apply(ClusterEvent::Upsert(object));
    }
    engine
}

fn ingest(engine: &mut Engine, timeline: Timeline) {
    for frame in timeline.into_frames() {
        engine.ingest(&frame.as_frame());
    }
}

/// One open TCP conversation from `from` to `to`, starting at START.
fn open_session(engine: &mut Engine, from: &str, to: &str) {
    let mut timeline = Timeline::new();
    timeline.tcp_session(addr(from), addr(to), START, b"a", b"b", false);
    ingest(engine, timeline);
}

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

fn names(record: &FlowRecord) -> (Option<&str>, Option<&str>) {
    (record.src.name.as_deref(), record.dst.name.as_deref())
}

/// A deleted pod's IP handed to a new pod: a conversation that closed while the old pod had the
/// IP stays the old pod's (as its verdict stays what it was); an open one and a new one are the
/// new pod's.
#[test]
fn a_closed_flow_keeps_the_names_it_had_when_the_ip_passes_to_another_pod() {
    let mut engine = engine_with_pods(&[("web", "10.244.1.10"), ("db", "10.244.1.11")]);
    let mut before = Timeline::new();
    let closed_at = before.tcp_session(
        addr("10.244.1.10:40000"),
        addr("10.244.1.11:5432"),
        START,
        b"query",
        b"rows",
        true,
    );
    before.tcp_session(
        addr("10.244.1.10:40001"),
        addr("10.244.1.11:5432"),
        START,
        b"query",
        b"rows",
        false,
    );
    ingest(&mut engine, before);

    engine.apply(ClusterEvent::Delete(ResourceKind::Pod, ObjectKey::namespaced("shop", "db")));
    for object in pods(&[("cache", "10.244.1.11")]) {
        engine.apply(ClusterEvent::Upsert(object));
    }
    let mut after = Timeline::new();
    after.tcp_session(
        addr("10.244.1.10:40002"),
        addr("10.244.1.11:6379"),
        closed_at + SECOND_NANOS,
        b"get",
        b"value",
        true,
    );
    ingest(&mut engine, after);

    let records = engine.live_records(Timestamp(closed_at + 2 * SECOND_NANOS));
    let by_port = |port: u16| records.iter().find(|r| r.src.port == Some(port)).map(names).unwrap();
    assert_eq!(by_port(40000), (Some("web"), Some("db")), "closed while db had the IP");
    assert_eq!(by_port(40001), (Some("web"), Some("cache")), "still open: the IP's owner now");
    assert_eq!(by_port(40002), (Some("web"), Some("cache")), "made after the reuse");
}

/// Connections between addresses the cluster does not know share one verdict; a connection
/// from a pod is judged on its own, and a change to the view is seen by both.
#[test]
fn connections_between_strangers_share_one_verdict_and_pods_get_their_own() {
    let mut engine = engine_with_pods(&[("web", "10.244.1.10")]);
    engine.apply(ClusterEvent::Synced(ResourceKind::NetworkPolicy));
    engine.apply(ClusterEvent::Synced(ResourceKind::Namespace));
    let mut timeline = Timeline::new();
    for (i, (src, dst)) in [
        ("198.51.100.1:40000", "203.0.113.1:443"),
        ("198.51.100.2:40001", "203.0.113.2:8080"),
        ("10.244.1.10:40002", "203.0.113.1:443"),
    ]
    .into_iter()
    .enumerate()
    {
        let at = START + i as u64 * SECOND_NANOS;
        timeline.tcp_session(addr(src), addr(dst), at, b"hello", b"world", false);
    }
    ingest(&mut engine, timeline);
    let records = engine.live_records(Timestamp(START + 5 * SECOND_NANOS));
    let by_port = |port: u16| records.iter().find(|r| r.src.port == Some(port)).unwrap();
    let (first, second, pod) = (by_port(40000), by_port(40001), by_port(40002));
    assert!(std::sync::Arc::ptr_eq(&first.verdict, &second.verdict), "one shared verdict");
    assert_eq!(first.verdict.egress.reason, "source is not a pod");
    assert_eq!(first.verdict.ingress.reason, "destination is not a pod");
    assert!(!std::sync::Arc::ptr_eq(&first.verdict, &pod.verdict));
    assert_ne!(pod.verdict.egress.reason, "source is not a pod", "{:?}", pod.verdict);

    // A pod now at one stranger's address: that connection is judged as the pod's.
    for object in pods(&[("api", "198.51.100.1")]) {
        engine.apply(ClusterEvent::Upsert(object));
    }
    let records = engine.live_records(Timestamp(START + 6 * SECOND_NANOS));
    let first = records.iter().find(|r| r.src.port == Some(40000)).unwrap();
    assert_ne!(first.verdict.egress.reason, "source is not a pod", "{:?}", first.verdict);
}

/// Called before every packet, the engine sweeps once per second of packet time.
#[test]
fn advance_if_due_sweeps_once_per_interval_of_packet_time() {
    let mut engine = Engine::new(TableLimits::default());
    let ok = |_| Ok::<(), ()>(());
    let at = |ms: u64| Timestamp(START + ms * 1_000_000);
    assert_eq!(engine.advance_if_due(at(0), ok), Ok(true), "the first call sweeps");
    assert_eq!(engine.advance_if_due(at(999), ok), Ok(false));
    assert_eq!(engine.advance_if_due(at(1_000), ok), Ok(true));
    assert_eq!(engine.advance_if_due(at(1_500), ok), Ok(false));
    assert_eq!(engine.advance_if_due(at(5_000), ok), Ok(true), "a gap: one sweep, not four");
    assert_eq!(engine.advance_if_due(at(5_999), ok), Ok(false));
    assert_eq!(engine.advance_if_due(at(4_999), ok), Ok(false), "a frame late by less than a step");
    assert_eq!(engine.advance_if_due(at(0), ok), Ok(true), "the clock stepped back: sweep now");
    assert_eq!(engine.advance_if_due(at(500), ok), Ok(false));
}

/// A name learned before the clock stepped back lasts the validity it had left, not an hour
/// more.
#[test]
fn names_follow_a_clock_that_steps_back() {
    let mut engine = Engine::new(TableLimits::default());
    let ok = |_| Ok::<(), ()>(());
    let at = |secs: u64| Timestamp(START + secs * SECOND_NANOS);
    let (client, address): (IpAddr, IpAddr) =
        ("10.244.1.10".parse().unwrap(), "198.51.100.1".parse().unwrap());
    assert_eq!(engine.advance_if_due(at(3600), ok), Ok(true));
    let answer = crate::decode::dns::Resolution { name: "a.example".into(), address, ttl_secs: 30 };
    engine.names.learn(client, &[answer], at(3600));
    assert_eq!(engine.advance_if_due(at(10), ok), Ok(true), "an hour back");
    assert!(engine.names.lookup(client, address, at(39)).is_some());
    assert!(engine.names.lookup(client, address, at(41)).is_none(), "not for the hour stepped");
}

/// One watch on packet time, which the flows and the names follow (count-once too). A live
/// recording sweeps on the wall clock and only hands packets over: they alone move it. A wall
/// clock ahead of them, or a packet late by less than a second, is no step (the flow keeps its
/// rate); packets an hour back are (the flow and the name start over, and a copy of a packet
/// is still recognised).
#[test]
fn flows_and_names_follow_one_packet_clock() {
    let mut engine = Engine::new(TableLimits::default());
    engine.count_once_across_interfaces();
    let ok = |_| Ok::<(), ()>(());
    let at = |secs: u64| Timestamp(START + secs * SECOND_NANOS);
    let (client, address): (IpAddr, IpAddr) =
        ("10.244.1.10".parse().unwrap(), "198.51.100.1".parse().unwrap());
    let frame = crate::synth::udp(addr("10.244.1.10:40000"), addr("10.96.0.10:53"), b"");
    let packet = |engine: &mut Engine, ts: Timestamp, interface: u16, ip_id: u32| {
        let decoded = crate::decode::decode(Some(crate::decode::LinkType::Ethernet), &frame);
        let decoded = decoded.map(|mut d| {
            d.packet.ip_id = ip_id;
            crate::decode::summarize(&d)
        });
        engine.ingest_decoded(ts, interface, decoded);
    };
    packet(&mut engine, at(3600), 0, 1);
    let answer = crate::decode::dns::Resolution { name: "a.example".into(), address, ttl_secs: 30 };
    engine.names.learn(client, &[answer], at(3600));
    engine.advance(at(3605), ok).unwrap();
    packet(&mut engine, Timestamp(at(3599).0 + 100_000_000), 0, 2);
    assert!(engine.names.lookup(client, address, at(3629)).is_some(), "nothing stepped");
    let record = engine.live_records(at(3601)).remove(0);
    assert!((record.rates.0 - 56.0 / 5.0).abs() < 1e-9, "both packets in the rate: {record:?}");

    packet(&mut engine, at(10), 0, 3);
    // The same packet on a second interface: a copy, though the latest time was an hour on.
    packet(&mut engine, Timestamp(at(10).0 + 1_000), 1, 3);
    assert!(engine.names.lookup(client, address, at(39)).is_some());
    assert!(engine.names.lookup(client, address, at(41)).is_none(), "the packets stepped back");
    let record = engine.live_records(at(11)).remove(0);
    assert_eq!((record.first_seen, record.last_seen), (at(10), at(10)));
    assert_eq!(record.packets.tx, 3, "{record:?}");
    assert_eq!(engine.stats().copies_across_interfaces, 1);
}

/// Counted once across interfaces: a DNAT'd copy at the backend's veth names the Service's
/// backend; a masqueraded copy on the uplink (the pod's end rewritten) names none.
#[test]
fn a_dnated_copy_names_the_backend_and_a_masqueraded_one_does_not() {
    let mut engine = Engine::new(TableLimits::default());
    engine.count_once_across_interfaces();
    let (seen, at) = (syn_seen, micros);
    engine.ingest_decoded(at(0), 0, seen("10.244.1.10:40000", "10.96.0.10:80", 64));
    engine.ingest_decoded(at(10), 1, seen("10.244.1.10:40000", "10.244.2.20:8080", 63));
    engine.ingest_decoded(at(1_000), 0, seen("10.244.1.10:40001", "203.0.113.5:443", 64));
    engine.ingest_decoded(at(1_010), 2, seen("198.51.100.1:61000", "203.0.113.5:443", 63));
    let records = engine.live_records(at(2_000));
    assert_eq!(records.len(), 2, "each connection counted once");
    let to_port = |port: u16| records.iter().find(|r| r.dst.port == Some(port)).unwrap();
    let backend = to_port(80).backend.as_ref().map(|b| (b.ip, b.port));
    assert_eq!(backend, Some(("10.244.2.20".parse().unwrap(), Some(8080))));
    assert_eq!(to_port(443).backend, None, "the node's masquerade address is no backend");
}

/// Payloads are read in the flow stage: a DNS answer seen on two interfaces counts once, a
/// payload from port 53 that is no DNS counts as malformed, and only a connection's first
/// payload from its initiator can name it.
#[test]
fn an_answer_counts_once_and_only_a_first_payload_names_a_connection() {
    use crate::decode::{LinkType, TcpInfo, decode, summarize};
    use crate::synth::dns::{Answer, TYPE_A, response};
    let mut engine = Engine::new(TableLimits::default());
    engine.count_once_across_interfaces();
    let at = |micros: u64| Timestamp(START + micros * 1_000);
    let read = |frame: &[u8]| Ok(summarize(&decode(Some(LinkType::Ethernet), frame).unwrap()));
    let answer = Answer::A { name: "a.example".into(), ip: [203, 0, 113, 7].into(), ttl: 60 };
    let message = response(7, "a.example", TYPE_A, &[answer]);
    let dns = crate::synth::udp(addr("10.96.0.10:53"), addr("10.244.1.10:40000"), &message);
    engine.ingest_decoded(at(0), 0, read(&dns));
    engine.ingest_decoded(at(10), 1, read(&dns));
    let junk = crate::synth::udp(addr("10.96.0.10:53"), addr("10.244.1.10:40001"), b"junk");
    engine.ingest_decoded(at(20), 0, read(&junk));
    let stats = engine.stats();
    assert_eq!((stats.dns_responses, stats.dns_malformed), (1, 1));

    let hello = crate::synth::app::tls_client_hello("api.example.com");
    let psh = TcpInfo::ACK | 0x08;
    let (late, first) = (addr("10.244.1.10:40002"), addr("10.244.1.10:40003"));
    let server = addr("203.0.113.7:443");
    engine.ingest_decoded(at(30), 0, read(&crate::synth::tcp(late, server, psh, 1, 1, b"\0hi")));
    engine.ingest_decoded(at(40), 0, read(&crate::synth::tcp(late, server, psh, 4, 1, &hello)));
    engine.ingest_decoded(at(50), 0, read(&crate::synth::tcp(first, server, psh, 1, 1, &hello)));
    let records = engine.live_records(at(60));
    let sni = |port: u16| {
        let record = records.iter().find(|r| r.src.port == Some(port)).unwrap();
        (record.dst.sni.clone(), record.dst.dns.clone())
    };
    assert_eq!(sni(40002), (None, Some("a.example".into())), "its first payload was no hello");
    assert_eq!(sni(40003), (Some("api.example.com".into()), Some("a.example".into())));
}

/// A flow to a Service address whose copy on a backend's interface showed the backend it
/// reached is judged as that backend is (the CNI judges the packet after DNAT), not "partial"
/// over all the Service's backends; one with no such copy still is.
#[test]
fn a_service_flow_is_judged_as_the_backend_it_reached() {
    use crate::policy::Decision;
    let mut engine = Engine::new(TableLimits::default());
    engine.count_once_across_interfaces();
    // api-1 serves 'http' on 8080, api-2 on 8081: the policy lets in only 8080.
    let only_8080 = "podSelector: {matchLabels: {app: api}}\ningress: [{ports: [{port: 8080}]}]";
    engine.view = crate::policy::fixtures::cluster_with(&[("shop", "api-8080", only_8080)]);
    engine.apply(ClusterEvent::Synced(ResourceKind::NetworkPolicy));
    engine.apply(ClusterEvent::Synced(ResourceKind::Namespace));
    let (seen, at) = (syn_seen, micros);
    engine.ingest_decoded(at(0), 0, seen("10.244.1.10:40000", "10.96.0.10:80", 64));
    engine.ingest_decoded(at(10), 1, seen("10.244.1.10:40000", "10.244.2.21:8081", 63));
    engine.ingest_decoded(at(1_000), 0, seen("10.244.1.10:40001", "10.96.0.10:80", 64));
    engine.ingest_decoded(at(1_010), 1, seen("10.244.1.10:40001", "10.244.1.20:8080", 63));
    engine.ingest_decoded(at(2_000), 0, seen("10.244.1.10:40002", "10.96.0.10:80", 64));
    let records = engine.live_records(at(3_000));
    let ingress = |port: u16| {
        let record = records.iter().find(|r| r.src.port == Some(port)).unwrap();
        (record.verdict.ingress.decision, record.service.clone())
    };
    let api = Some("shop/api".to_owned());
    assert_eq!(ingress(40000), (Decision::Deny, api.clone()), "reached api-2");
    assert_eq!(ingress(40001), (Decision::Allow, api.clone()), "reached api-1");
    assert_eq!(ingress(40002), (Decision::Partial, api), "backend not seen");
}

/// A Service's backend answers with a datagram in two fragments: the first is counted under the
/// Service address through the binding its request taught, the second (no ports) with it.
#[test]
fn a_fragmented_reply_from_a_backend_counts_whole_on_the_service_flow() {
    use crate::decode::{Decoded, Fragment, LinkType, Packet, decode, summarize};
    let mut engine = Engine::new(TableLimits::default());
    engine.count_once_across_interfaces();
    let frame = crate::synth::udp(addr("10.0.0.1:1"), addr("10.0.0.2:2"), &[0; 32]);
    let datagram = decode(Some(LinkType::Ethernet), &frame).unwrap();
    let seen = |src: &str, dst: &str, ttl: u8, fragment: Fragment, ip_len: u32| {
        // The fragments of one datagram share its identification.
        let ip_id = if fragment == Fragment::None { 5 } else { 900 };
        let copy = sent(&datagram, src, dst, ttl);
        let packet = Packet { fragment, ip_id, ip_len, ..copy.packet };
        Ok(summarize(&Decoded { packet, ..copy }))
    };
    let at = |micros: u64| Timestamp(START + micros * 1_000);
    let (client, service, backend) = ("10.244.1.10:40000", "10.96.0.10:53", "10.244.2.20:53");
    engine.ingest_decoded(at(0), 0, seen(client, service, 64, Fragment::None, 60));
    engine.ingest_decoded(at(10), 1, seen(client, backend, 63, Fragment::None, 60));
    engine.ingest_decoded(at(100), 1, seen(backend, client, 64, Fragment::First, 1500));
    let later = seen("10.244.2.20:0", "10.244.1.10:0", 64, Fragment::Later, 700);
    engine.ingest_decoded(at(110), 1, later);
    let records = engine.live_records(at(1_000));
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!((records[0].packets.rx, records[0].bytes.rx), (2, 2200));
    assert!(engine.stats().skipped.values().all(|n| *n == 0), "{:?}", engine.stats().skipped);
}

/// A SYN from `src` to `dst` as a capture thread hands it over, seen with `ttl` (a copy one
/// hop on has one less).
fn syn_seen(
    src: &str,
    dst: &str,
    ttl: u8,
) -> Result<crate::decode::Summary, crate::decode::SkipReason> {
    use crate::decode::{LinkType, TcpInfo, decode, summarize};
    let frame = crate::synth::tcp(addr("10.0.0.1:1"), addr("10.0.0.2:2"), TcpInfo::SYN, 1, 0, &[]);
    let syn = decode(Some(LinkType::Ethernet), &frame).unwrap();
    Ok(summarize(&sent(&syn, src, dst, ttl)))
}

/// Microseconds after START.
fn micros(micros: u64) -> Timestamp {
    Timestamp(START + micros * 1_000)
}

/// `template` as seen going from `src` to `dst` with `ttl`: a copy of one packet elsewhere.
fn sent<'a>(
    template: &crate::decode::Decoded<'a>,
    src: &str,
    dst: &str,
    ttl: u8,
) -> crate::decode::Decoded<'a> {
    let (src, dst) = (addr(src), addr(dst));
    let packet = crate::decode::Packet {
        src: src.ip(),
        src_port: src.port(),
        dst: dst.ip(),
        dst_port: dst.port(),
        ttl,
        ..template.packet
    };
    crate::decode::Decoded { packet, ..*template }
}

/// The live view hands the same list back every tick: what it held is replaced, not added to.
#[test]
fn live_records_into_replaces_what_the_list_held() {
    let mut engine = Engine::new(TableLimits::default());
    open_session(&mut engine, "10.244.1.10:40000", "10.244.1.11:80");
    open_session(&mut engine, "10.244.1.10:40001", "10.244.1.11:80");
    let now = Timestamp(START + SECOND_NANOS);
    let mut list = engine.live_records(now);
    assert_eq!(list.len(), 2);
    engine.live_records_into(now, &mut list);
    let mut ports: Vec<_> = list.iter().map(|r| r.src.port).collect();
    ports.sort_unstable();
    assert_eq!(ports, [Some(40000), Some(40001)], "each flow once");
}

/// A capture interface attached later is named at its index; those before it without a name
/// stay unnamed, and naming one again replaces its name.
#[test]
fn interfaces_are_named_by_index_across_gaps() {
    let mut engine = Engine::new(TableLimits::default());
    engine.name_interface(2, "veth2".into());
    assert_eq!(engine.interface_names(), ["", "", "veth2"]);
    engine.name_interface(0, "cni0".into());
    engine.name_interface(2, "veth9".into());
    assert_eq!(engine.interface_names(), ["cni0", "", "veth9"]);
}

/// Until the cluster's NetworkPolicies and Namespaces are listed, no verdict can say a pod is
/// unrestricted: n/a, saying what is missing; once they are, the flow is judged.
#[test]
fn verdicts_wait_for_the_policies_and_namespaces_to_be_listed() {
    let mut engine = engine_with_pods(&[("web", "10.244.1.10")]);
    engine.apply(ClusterEvent::Synced(ResourceKind::Pod));
    open_session(&mut engine, "10.244.1.10:40000", "203.0.113.1:443");
    let now = Timestamp(START + SECOND_NANOS);
    let verdict = &engine.live_records(now)[0].verdict;
    assert_eq!(verdict.egress.decision, crate::policy::Decision::NotApplicable);
    assert_eq!(
        verdict.egress.reason,
        "NetworkPolicies and Namespaces not listed from the cluster yet"
    );
    engine.apply(ClusterEvent::Synced(ResourceKind::NetworkPolicy));
    let verdict = &engine.live_records(now)[0].verdict;
    assert_eq!(verdict.egress.reason, "Namespaces not listed from the cluster yet");
    engine.apply(ClusterEvent::Synced(ResourceKind::Namespace));
    let verdict = &engine.live_records(now)[0].verdict;
    assert_eq!(verdict.egress.decision, crate::policy::Decision::Unrestricted, "{verdict:?}");
}

/// The records at the end of the input follow the cluster as it stands then, not the verdicts
/// cached before its last change.
#[test]
fn the_flows_left_at_the_end_are_judged_by_the_cluster_as_it_stands_then() {
    use crate::policy::{Decision, fixtures};
    let mut engine = Engine::new(TableLimits::default());
    engine.view = fixtures::cluster();
    for kind in ResourceKind::ALL {
        engine.apply(ClusterEvent::Synced(kind));
    }
    open_session(&mut engine, "10.244.1.10:40000", "203.0.113.1:443");
    let now = Timestamp(START + SECOND_NANOS);
    let verdict = &engine.live_records(now)[0].verdict;
    assert_eq!(verdict.egress.decision, Decision::Unrestricted, "{verdict:?}");
    let deny_out = "podSelector: {matchLabels: {app: web}}\npolicyTypes: [Egress]";
    engine.apply(ClusterEvent::Upsert(fixtures::policy("shop", "deny-out", deny_out)));
    let mut records = Vec::new();
    let result = engine.finish(now, |record| {
        records.push(record);
        Ok::<(), ()>(())
    });
    assert_eq!((result, records.len()), (Ok(()), 1));
    let verdict = &records[0].verdict;
    assert_eq!(verdict.egress.decision, Decision::Deny, "{verdict:?}");
}

/// With no cluster but pinned policies (`replay x.pcap --policies p.yaml`), a flow between
/// addresses nobody knows says so, not that the namespaces are not listed.
#[test]
fn without_a_cluster_the_verdict_says_the_ends_are_not_pods() {
    let mut engine = Engine::new(TableLimits::default());
    engine.apply(ClusterEvent::Reset(ResourceKind::NetworkPolicy, Vec::new()));
    engine.apply(ClusterEvent::Synced(ResourceKind::NetworkPolicy));
    open_session(&mut engine, "198.51.100.1:40000", "203.0.113.1:443");
    let records = engine.live_records(Timestamp(START + SECOND_NANOS));
    assert_eq!(records[0].verdict.egress.reason, "source is not a pod");
}

/// A denial that may be only for want of the Nodes or the Services (not listed yet, or refused
/// to the user) is n/a saying so, and judged once they are listed: a probe from the node's
/// bridge gateway is always allowed; a ClusterIP is judged as the pods behind it.
#[test]
fn a_denial_waits_for_the_nodes_or_services_it_may_lack() {
    use crate::policy::Decision;
    let deny_in = "podSelector: {matchLabels: {app: web}}\npolicyTypes: [Ingress]";
    let to_api_only = "podSelector: {matchLabels: {app: web}}\npolicyTypes: [Egress]\n\
                       egress: [{to: [{podSelector: {matchLabels: {app: api}}}]}]";
    let full = crate::policy::fixtures::cluster_with(&[
        ("shop", "deny-in", deny_in),
        ("shop", "to-api-only", to_api_only),
    ]);
    let mut engine = Engine::new(TableLimits::default());
    engine.view = full.clone();
    // Listed: everything but the Nodes and the Services.
    engine.apply(ClusterEvent::Reset(ResourceKind::Node, Vec::new()));
    engine.apply(ClusterEvent::Reset(ResourceKind::Service, Vec::new()));
    for kind in [ResourceKind::NetworkPolicy, ResourceKind::Namespace, ResourceKind::Pod] {
        engine.apply(ClusterEvent::Synced(kind));
    }
    open_session(&mut engine, "10.244.1.1:50000", "10.244.1.10:8080");
    open_session(&mut engine, "10.244.1.10:40000", "10.96.0.10:80");
    open_session(&mut engine, "10.244.1.10:40001", "203.0.113.1:443");
    open_session(&mut engine, "10.244.3.41:40002", "10.244.1.10:8080");
    let now = Timestamp(START + SECOND_NANOS);
    let verdict_of = |engine: &mut Engine, port: u16| {
        let records = engine.live_records(now);
        let record = records.iter().find(|r| r.src.port == Some(port)).unwrap();
        let verdict = &record.verdict;
        (verdict.egress.decision, verdict.ingress.decision, verdict.ingress.reason.clone())
    };
    let (_, ingress, reason) = verdict_of(&mut engine, 50000);
    assert_eq!(ingress, Decision::NotApplicable);
    assert!(reason.starts_with("Nodes not listed from the cluster yet"), "{reason}");
    let (egress, _, reason) = verdict_of(&mut engine, 40000);
    assert_eq!(egress, Decision::NotApplicable);
    assert!(reason.starts_with("Services not listed from the cluster yet"), "{reason}");
    // An address outside the cluster cannot be told from a ClusterIP before the Services are
    // listed; ingress from a pod needs neither kind.
    let (egress, _, reason) = verdict_of(&mut engine, 40001);
    assert_eq!(egress, Decision::NotApplicable, "{reason}");
    assert_eq!(verdict_of(&mut engine, 40002).1, Decision::Deny, "ingress from a pod");
    let objects = |kind| match kind {
        ResourceKind::Node => full.nodes.values().cloned().map(Object::Node).collect(),
        _ => full.services.values().cloned().map(Object::Service).collect(),
    };
    for kind in [ResourceKind::Node, ResourceKind::Service] {
        engine.apply(ClusterEvent::Reset(kind, objects(kind)));
        engine.apply(ClusterEvent::Synced(kind));
    }
    let (_, ingress, reason) = verdict_of(&mut engine, 50000);
    assert_eq!(ingress, Decision::Allow, "{reason}");
    assert!(reason.contains("its own node n1"), "{reason}");
    assert_eq!(verdict_of(&mut engine, 40000).0, Decision::Allow, "to the api pods");
    assert_eq!(verdict_of(&mut engine, 40001).0, Decision::Deny, "egress to the internet");
}
