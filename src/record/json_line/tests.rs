//! The encoder against serde_json, the reference: byte for byte on every record shape.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use proptest::prelude::*;

use super::*;
use crate::flow::TcpState;
use crate::policy::{Decision, Direction, SideVerdict};

fn serde_line(record: &FlowRecord) -> String {
    serde_json::to_string(record).expect("serializes")
}

fn encoded(encoder: &mut JsonLineEncoder, record: &FlowRecord) -> String {
    let mut out = Vec::new();
    encoder.encode(record, &mut out).expect("encodes");
    String::from_utf8(out).expect("UTF-8")
}

const PROTOCOLS: [Protocol; 8] = [
    Protocol::Tcp,
    Protocol::Udp,
    Protocol::Sctp,
    Protocol::Icmp,
    Protocol::Icmpv6,
    Protocol::Other(0),
    Protocol::Other(47),
    Protocol::Other(255),
];
const KINDS: [EndpointKind; 6] = [
    EndpointKind::Pod,
    EndpointKind::Service,
    EndpointKind::Node,
    EndpointKind::Host,
    EndpointKind::External,
    EndpointKind::Unknown,
];
const STATES: [TcpState; 7] = [
    TcpState::SynSent,
    TcpState::SynAck,
    TcpState::Established,
    TcpState::Closing,
    TcpState::Closed,
    TcpState::Reset,
    TcpState::NoReply,
];
const DECISIONS: [Decision; 5] = [
    Decision::Allow,
    Decision::Deny,
    Decision::Unrestricted,
    Decision::Partial,
    Decision::NotApplicable,
];

/// Text that exercises both string paths: plain, non-ASCII, quotes, backslashes, controls.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9./-]{0,24}",
        any::<String>(),
        Just("quote \" back \\ tab \t nl \n nul \u{0} del \u{7f} é ☃".to_owned()),
    ]
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<u32>().prop_map(|n| IpAddr::V4(Ipv4Addr::from(n))),
        any::<u128>().prop_map(|n| IpAddr::V6(Ipv6Addr::from(n))),
        // Runs of zero groups: the `::` compression and IPv4-mapped forms.
        (any::<u16>(), any::<u32>()).prop_map(|(a, b)| {
            IpAddr::V6(Ipv6Addr::from((u128::from(a) << 112) | u128::from(b)))
        }),
        any::<u32>().prop_map(|n| IpAddr::V6(Ipv4Addr::from(n).to_ipv6_mapped())),
    ]
}

fn endpoint() -> impl Strategy<Value = EndpointRecord> {
    (
        ip(),
        proptest::option::of(any::<u16>()),
        proptest::sample::select(&KINDS[..]),
        proptest::option::of(text()),
        proptest::option::of(text()),
        proptest::option::of(text()),
        proptest::option::of(text()),
        proptest::option::of(prop_oneof![Just(NameSource::Own), Just(NameSource::Other)]),
        proptest::option::of(text()),
        proptest::option::of(text()),
    )
        .prop_map(
            |(ip, port, kind, namespace, name, node, dns, dns_source, sni, http_host)| {
                EndpointRecord {
                    ip,
                    port,
                    kind,
                    namespace,
                    name,
                    node,
                    dns,
                    dns_source,
                    sni,
                    http_host,
                }
            },
        )
}

fn side() -> impl Strategy<Value = SideVerdict> {
    (proptest::sample::select(&DECISIONS[..]), proptest::collection::vec(text(), 0..3), text())
        .prop_map(|(decision, policies, reason)| SideVerdict { decision, policies, reason })
}

fn record() -> impl Strategy<Value = FlowRecord> {
    (
        (any::<u64>(), any::<u64>(), proptest::sample::select(&PROTOCOLS[..])),
        (endpoint(), endpoint(), proptest::option::of(text()), proptest::option::of(endpoint())),
        (any::<[u64; 4]>(), proptest::option::of(proptest::sample::select(&STATES[..]))),
        (proptest::collection::vec(text(), 0..3), side(), side()),
        (
            proptest::option::of(prop_oneof![Just(Direction::Egress), Just(Direction::Ingress)]),
            any::<bool>(),
            any::<bool>(),
        ),
    )
        .prop_map(
            |(
                (first, last, protocol),
                (src, dst, service, backend),
                (counts, tcp),
                (interfaces, egress, ingress),
                (violation, leak, direct_ip),
            )| FlowRecord {
                first_seen: Timestamp(first),
                last_seen: Timestamp(last),
                protocol,
                src,
                dst,
                service,
                backend: backend.map(Box::new),
                packets: TxRx { tx: counts[0], rx: counts[1] },
                bytes: TxRx { tx: counts[2], rx: counts[3] },
                tcp,
                interfaces,
                verdict: Arc::new(Verdict { egress, ingress }),
                violation,
                leak,
                direct_ip,
                flow_id: 0,
                rates: (0.0, 0.0),
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn encodes_every_record_as_serde_json_does(record in record()) {
        let mut encoder = JsonLineEncoder::new();
        prop_assert_eq!(encoded(&mut encoder, &record), serde_line(&record));
        // The second time the verdict comes from the cache.
        prop_assert_eq!(encoded(&mut encoder, &record), serde_line(&record));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    /// Zero runs of every length and place, the case the compression rule is about.
    #[test]
    fn ipv6_addresses_read_as_display_writes_them(
        groups in proptest::collection::vec(prop_oneof![Just(0u16), Just(1), any::<u16>()], 8),
    ) {
        let mut segments = [0u16; 8];
        segments.copy_from_slice(&groups);
        let v6 = Ipv6Addr::from(segments);
        let mut out = Vec::new();
        push_ipv6(&mut out, v6);
        prop_assert_eq!(String::from_utf8(out).unwrap(), v6.to_string());
    }
}

#[test]
fn every_enum_variant_is_named_as_serde_names_it() {
    let quoted = |name: &str| format!("\"{name}\"");
    for protocol in PROTOCOLS {
        let mut out = Vec::new();
        push_protocol(&mut out, protocol);
        assert_eq!(out, serde_json::to_vec(&protocol).unwrap(), "{protocol:?}");
    }
    for kind in KINDS {
        assert_eq!(quoted(endpoint_kind_name(kind)), serde_json::to_string(&kind).unwrap());
    }
    for state in STATES {
        assert_eq!(quoted(state.name()), serde_json::to_string(&state).unwrap());
    }
    for direction in [Direction::Egress, Direction::Ingress] {
        assert_eq!(quoted(direction.name()), serde_json::to_string(&direction).unwrap());
    }
    for source in [NameSource::Own, NameSource::Other] {
        assert_eq!(quoted(name_source_name(source)), serde_json::to_string(&source).unwrap());
    }
}

#[test]
fn a_new_verdict_gets_its_own_entry_not_the_cached_one() {
    let mut encoder = JsonLineEncoder::new();
    let mut record = crate::record::jsonl::parse_line(SAMPLE).expect("sample parses");
    assert_eq!(encoded(&mut encoder, &record), serde_line(&record));
    // Another verdict: the cache holds the first one alive, so its address cannot be reused.
    record.verdict = Arc::new(Verdict::not_evaluated("policies not synced"));
    assert_eq!(encoded(&mut encoder, &record), serde_line(&record));
    assert_eq!(encoder.verdicts.len(), 2);
}

#[test]
fn the_cache_starts_over_when_full_and_still_encodes_right() {
    let mut encoder = JsonLineEncoder::new();
    let mut record = crate::record::jsonl::parse_line(SAMPLE).expect("sample parses");
    for i in 0..MAX_CACHED_VERDICTS + 10 {
        record.verdict = Arc::new(Verdict::not_evaluated(&format!("reason {i}")));
        assert_eq!(encoded(&mut encoder, &record), serde_line(&record));
    }
    assert!(encoder.verdicts.len() <= MAX_CACHED_VERDICTS);
}

const SAMPLE: &str = r#"{"first_seen":"2026-11-29T10:00:00.123456Z","last_seen":"2026-11-29T10:00:02.500000Z","protocol":"TCP","src":{"ip":"10.244.1.10","port":43122,"kind":"pod","namespace":"shop","name":"web-a","node":"n1"},"dst":{"ip":"203.0.113.10","port":443,"kind":"external","dns":"api.example.com","dns_source":"own","sni":"api.example.com"},"service":"shop/api","packets":{"tx":12,"rx":10},"bytes":{"tx":1830,"rx":9120},"tcp":"established","interfaces":["veth1a2b3c"],"verdict":{"egress":{"decision":"deny","policies":["shop/default-deny-egress"],"reason":"no rule"},"ingress":{"decision":"n/a","policies":[],"reason":"destination is not a pod"}},"violation":"egress","leak":true,"direct_ip":false}"#;

#[test]
fn the_contract_sample_encodes_to_itself() {
    let record = crate::record::jsonl::parse_line(SAMPLE).expect("sample parses");
    assert_eq!(encoded(&mut JsonLineEncoder::new(), &record), SAMPLE);
}
