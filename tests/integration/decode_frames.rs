//! Decode on real frames built with `synth`: every protocol, every framing, and damaged input.

use std::net::{IpAddr, SocketAddr};

use netwatch::decode::{Fragment, LinkType, Role, SkipReason, TcpInfo, decode, dns, http, tls};
use netwatch::flow::Protocol;
use netwatch::synth;

fn sock(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[test]
fn tcp_over_ethernet_gives_ports_flags_sequence_and_ip_length() {
    let payload = synth::http_request("www.example.com", "/");
    let frame =
        synth::tcp(sock("10.244.1.10:43122"), sock("198.51.100.77:80"), 0x18, 1000, 2000, &payload);
    let packet = decode(Some(LinkType::Ethernet), &frame).unwrap();
    assert_eq!((packet.src, packet.dst), (ip("10.244.1.10"), ip("198.51.100.77")));
    assert_eq!((packet.protocol, packet.src_port, packet.dst_port), (Protocol::Tcp, 43122, 80));
    let tcp = packet.tcp.unwrap();
    assert_eq!((tcp.seq, tcp.ack), (1000, 2000));
    assert!(tcp.has(TcpInfo::ACK) && !tcp.has(TcpInfo::SYN));
    assert_eq!(packet.ip_len as usize, 20 + 20 + payload.len());
    assert_eq!(packet.payload, &payload[..]);
    assert_eq!(http::request_host(packet.payload).as_deref(), Some("www.example.com"));
}

#[test]
fn a_syn_marks_its_sender_as_the_initiator_and_a_syn_ack_as_the_responder() {
    let syn = synth::tcp(sock("10.244.1.10:1000"), sock("10.244.1.11:80"), 0x02, 1, 0, &[]);
    let syn_ack = synth::tcp(sock("10.244.1.11:80"), sock("10.244.1.10:1000"), 0x12, 1, 2, &[]);
    assert_eq!(decode(Some(LinkType::Ethernet), &syn).unwrap().role, Role::Initiator);
    assert_eq!(decode(Some(LinkType::Ethernet), &syn_ack).unwrap().role, Role::Responder);
}

#[test]
fn udp_dns_over_ipv6_is_decoded_and_its_answer_read() {
    let answer = synth::dns::Answer::Aaaa {
        name: "push.metrics.example".into(),
        ip: "2001:db8::10".parse().unwrap(),
        ttl: 300,
    };
    let message = synth::dns::response(7, "push.metrics.example", synth::dns::TYPE_AAAA, &[answer]);
    let frame = synth::udp(sock("[fd00:10:96::a]:53"), sock("[fd00:10:244:1::1e]:45678"), &message);
    let packet = decode(Some(LinkType::Ethernet), &frame).unwrap();
    assert_eq!(packet.protocol, Protocol::Udp);
    assert_eq!(packet.src_port, 53);
    let resolved = dns::parse_udp(packet.payload).unwrap();
    assert_eq!(resolved[0].name, "push.metrics.example");
    assert_eq!(resolved[0].address, ip("2001:db8::10"));
}

#[test]
fn offload_super_packets_that_state_no_length_take_the_captured_one() {
    // BIG TCP: a GSO/GRO packet captured on the host states IPv4 total length 0, or IPv6
    // payload length 0 with a hop-by-hop (jumbo) header.
    let payload = vec![0x42u8; 300];
    let v4 = synth::tcp(sock("10.244.1.10:43122"), sock("10.244.2.20:8080"), 0x18, 7, 9, &payload);
    let mut stated_zero = v4.clone();
    stated_zero[14 + 2..14 + 4].copy_from_slice(&[0, 0]);
    let packet = decode(Some(LinkType::Ethernet), &stated_zero).unwrap();
    assert_eq!(packet.ip_len as usize, v4.len() - 14);
    assert_eq!((packet.dst_port, packet.payload), (8080, &payload[..]));
    let v6 =
        synth::tcp(sock("[2001:db8::1]:40000"), sock("[2001:db8::2]:443"), 0x18, 1, 2, &payload);
    let mut jumbo = synth::with_ipv6_extension_headers(&v6);
    jumbo[14 + 4..14 + 6].copy_from_slice(&[0, 0]);
    let packet = decode(Some(LinkType::Ethernet), &jumbo).unwrap();
    assert_eq!(packet.ip_len as usize, jumbo.len() - 14);
    assert_eq!((packet.dst_port, packet.payload), (443, &payload[..]));
    // Cut by the snap length, the rest counts all the same: the frame says its length on the wire.
    let frame = netwatch::capture::Frame {
        ts: netwatch::time::Timestamp(1),
        interface: 0,
        linktype: Some(LinkType::Ethernet),
        data: &stated_zero[..100],
        wire_len: 150_000,
    };
    let decoded = netwatch::capture::DecodedFrame::from_frame(&frame).decoded.unwrap();
    assert_eq!(decoded.packet.ip_len, 150_000 - 14);
    // Without the hop-by-hop header a zero payload length is just an empty packet.
    let mut empty = v6.clone();
    empty[14 + 4..14 + 6].copy_from_slice(&[0, 0]);
    assert_eq!(decode(Some(LinkType::Ethernet), &empty), Err(SkipReason::Truncated));
}

#[test]
fn ipv6_extension_headers_are_walked_to_the_transport_header() {
    let frame = synth::tcp(sock("[2001:db8::1]:40000"), sock("[2001:db8::2]:443"), 0x02, 9, 0, &[]);
    let with_headers = synth::with_ipv6_extension_headers(&frame);
    assert!(with_headers.len() > frame.len());
    let packet = decode(Some(LinkType::Ethernet), &with_headers).unwrap();
    assert_eq!((packet.protocol, packet.src_port, packet.dst_port), (Protocol::Tcp, 40000, 443));
}

#[test]
fn icmp_and_icmpv6_echo_carry_the_identifier_in_both_ports() {
    for (src, dst, protocol) in
        [("10.244.1.10", "10.0.0.12", Protocol::Icmp), ("fd00::1", "fd00::2", Protocol::Icmpv6)]
    {
        let request = synth::icmp_echo(ip(src), ip(dst), 0x1c2a, 1, true);
        let packet = decode(Some(LinkType::Ethernet), &request).unwrap();
        assert_eq!((packet.protocol, packet.src_port, packet.dst_port), (protocol, 0x1c2a, 0x1c2a));
        assert_eq!(packet.role, Role::Initiator);
        let reply = synth::icmp_echo(ip(dst), ip(src), 0x1c2a, 1, false);
        assert_eq!(decode(Some(LinkType::Ethernet), &reply).unwrap().role, Role::Responder);
    }
}

#[test]
fn sctp_ports_are_read_from_its_common_header() {
    let frame = synth::sctp_init(sock("10.244.1.12:36412"), sock("10.244.2.20:3868"));
    let packet = decode(Some(LinkType::Ethernet), &frame).unwrap();
    assert_eq!((packet.protocol, packet.src_port, packet.dst_port), (Protocol::Sctp, 36412, 3868));
}

#[test]
fn every_framing_decodes_to_the_same_packet() {
    let hello = synth::tls_client_hello("api.stripe.example");
    let frame = synth::tcp(sock("10.244.1.10:53312"), sock("203.0.113.10:443"), 0x18, 5, 6, &hello);
    let plain = decode(Some(LinkType::Ethernet), &frame).unwrap();
    let vlan = synth::with_vlan(&frame, 42);
    let qinq = synth::with_vlan(&vlan, 7);
    // 802.1ad's outer service tag, and the older 0x9100, over an 802.1Q tag.
    let outer_tag = |ethertype: u16| {
        let mut frame = qinq.clone();
        frame[12..14].copy_from_slice(&ethertype.to_be_bytes());
        frame
    };
    let (provider, legacy) = (outer_tag(0x88a8), outer_tag(0x9100));
    let sll = synth::to_linux_sll(&frame);
    let sll2 = synth::to_linux_sll2(&frame, 3);
    let raw = synth::to_raw_ip(&frame);
    for (linktype, bytes) in [
        (LinkType::Ethernet, &vlan),
        (LinkType::Ethernet, &qinq),
        (LinkType::Ethernet, &provider),
        (LinkType::Ethernet, &legacy),
        (LinkType::LinuxSll, &sll),
        (LinkType::LinuxSll2, &sll2),
        (LinkType::RawIp, &raw),
    ] {
        assert_eq!(decode(Some(linktype), bytes).unwrap(), plain, "{linktype:?}");
    }
    assert_eq!(tls::client_hello_sni(plain.payload).as_deref(), Some("api.stripe.example"));
}

#[test]
fn ipv4_fragments_are_told_first_and_later() {
    let frame = synth::udp(sock("10.244.1.30:41000"), sock("198.51.100.30:8125"), &[7u8; 3000]);
    let fragments = synth::fragment_ipv4(&frame, 1480);
    assert_eq!(fragments.len(), 3);
    let first = decode(Some(LinkType::Ethernet), &fragments[0]).unwrap();
    let Fragment::First { id } = first.fragment else { panic!("{:?}", first.fragment) };
    assert_eq!((first.src_port, first.dst_port), (41000, 8125));
    for later in &fragments[1..] {
        let packet = decode(Some(LinkType::Ethernet), later).unwrap();
        assert_eq!(packet.fragment, Fragment::Later { id });
        assert_eq!(packet.src_port, 0, "no transport header in a later fragment");
    }
    let total: u32 =
        fragments.iter().map(|f| decode(Some(LinkType::Ethernet), f).unwrap().ip_len).sum();
    assert_eq!(total as usize, 3000 + 8 + 20 * 3);
}

#[test]
fn arp_and_other_non_ip_are_skipped_by_kind() {
    let arp = synth::arp_request("10.244.1.10".parse().unwrap(), "10.244.1.1".parse().unwrap());
    assert_eq!(decode(Some(LinkType::Ethernet), &arp), Err(SkipReason::Arp));
    let mut lldp = arp.clone();
    lldp[12..14].copy_from_slice(&0x88ccu16.to_be_bytes());
    assert_eq!(decode(Some(LinkType::Ethernet), &lldp), Err(SkipReason::NonIp));
    assert_eq!(decode(None, &arp), Err(SkipReason::UnsupportedLinkType));
}

#[test]
fn truncated_and_garbage_frames_are_counted_not_panicked_on() {
    let frame = synth::tcp(sock("10.244.1.10:1"), sock("10.244.1.11:2"), 0x02, 0, 0, &[]);
    // Cut inside the IP header, then inside the TCP header.
    assert_eq!(decode(Some(LinkType::Ethernet), &frame[..20]), Err(SkipReason::Truncated));
    assert_eq!(
        decode(Some(LinkType::Ethernet), &frame[..14 + 20 + 10]),
        Err(SkipReason::Truncated)
    );
    let mut bad_version = frame.clone();
    bad_version[14] = 0x35;
    assert_eq!(decode(Some(LinkType::Ethernet), &bad_version), Err(SkipReason::BadIpHeader));
    let mut bad_offset = frame.clone();
    bad_offset[14 + 20 + 12] = 0x20; // data offset 2 words
    assert_eq!(decode(Some(LinkType::Ethernet), &bad_offset), Err(SkipReason::BadTransportHeader));
    assert_eq!(decode(Some(LinkType::LinuxSll2), &[0u8; 5]), Err(SkipReason::Truncated));
    // A snap length that cut the payload still counts the packet's real length.
    let payload = [1u8; 1000];
    let big = synth::tcp(sock("10.244.1.10:1"), sock("10.244.1.11:2"), 0x18, 0, 0, &payload);
    let cut = decode(Some(LinkType::Ethernet), &big[..100]).unwrap();
    assert_eq!(cut.ip_len, 1040);
    assert_eq!(cut.payload.len(), 100 - 14 - 40);
}

/// An ICMP error is a packet of the flow it quotes, back towards the quoted packet's sender:
/// a port-unreachable answering a UDP probe is the probe's reply (ports from the quote).
#[test]
fn an_icmp_error_belongs_to_the_flow_it_quotes() {
    for (client, server) in [("10.244.1.10", "10.244.2.20"), ("fd00::10", "fd00::20")] {
        let client_end = std::net::SocketAddr::new(ip(client), 40000);
        let server_end = std::net::SocketAddr::new(ip(server), 9999);
        let probe = synth::udp(client_end, server_end, b"probe");
        let error = synth::icmp_port_unreachable(ip(server), ip(client), &probe);
        let packet = decode(Some(LinkType::Ethernet), &error).unwrap();
        assert_eq!((packet.src, packet.dst), (ip(server), ip(client)));
        assert_eq!(
            (packet.protocol, packet.src_port, packet.dst_port),
            (Protocol::Udp, 9999, 40000)
        );
        assert_eq!(packet.role, Role::Responder);
        let mut engine = netwatch::engine::Engine::new(netwatch::flow::TableLimits::default());
        for (n, frame) in [probe, error].iter().enumerate() {
            let ts = netwatch::time::Timestamp::from_secs(1_800_000_000 + n as u64);
            let frame = netwatch::capture::Frame {
                ts,
                interface: 0,
                linktype: Some(LinkType::Ethernet),
                data: frame,
                wire_len: u32::try_from(frame.len()).unwrap(),
            };
            engine.ingest(&frame);
        }
        let records = engine.live_records(netwatch::time::Timestamp::from_secs(1_800_000_002));
        assert_eq!(records.len(), 1, "{records:?}");
        assert_eq!((records[0].packets.tx, records[0].packets.rx), (1, 1));
        assert_eq!(records[0].src.port, Some(40000));
    }
}

/// A pod's packet to another node as the uplink carries it in the overlay (VXLAN on flannel's
/// 8472 or 4789, Geneve, IP-in-IP) decodes as the pod's packet: with count-once, the tunnelled
/// copy is a copy, not node-to-node traffic counted again.
#[test]
fn overlay_tunnels_decode_as_the_packet_they_carry() {
    let pod_a = sock("10.244.1.10:40000");
    let pod_b = sock("10.244.2.20:8080");
    let inner = synth::udp(pod_a, pod_b, b"hello");
    let (node_1, node_2) = (sock("10.0.0.11:51000"), sock("10.0.0.12:8472"));
    let mut vxlan = vec![0x08, 0, 0, 0, 0, 0, 1, 0];
    vxlan.extend_from_slice(&inner);
    let mut geneve = vec![0x00, 0x00, 0x65, 0x58, 0, 0, 1, 0];
    geneve.extend_from_slice(&inner);
    let mut ipip = inner[..14].to_vec();
    let inner_ip = &inner[14..];
    let total = u16::try_from(20 + inner_ip.len()).unwrap().to_be_bytes();
    ipip.extend_from_slice(&[0x45, 0, total[0], total[1], 0, 1, 0x40, 0, 63, 4, 0, 0]);
    ipip.extend_from_slice(&[10, 0, 0, 11, 10, 0, 0, 12]);
    ipip.extend_from_slice(inner_ip);
    let frames = [
        synth::udp(node_1, node_2, &vxlan),
        synth::udp(node_1, sock("10.0.0.12:4789"), &vxlan),
        synth::udp(node_1, sock("10.0.0.12:6081"), &geneve),
        ipip,
    ];
    for tunnelled in &frames {
        let packet = decode(Some(LinkType::Ethernet), tunnelled).unwrap();
        assert_eq!((packet.src, packet.dst), (pod_a.ip(), pod_b.ip()));
        assert_eq!(
            (packet.protocol, packet.src_port, packet.dst_port),
            (Protocol::Udp, 40000, 8080)
        );
        assert_eq!(packet.payload, b"hello");
    }
    let mut engine = netwatch::engine::Engine::new(netwatch::flow::TableLimits::default());
    engine.set_interfaces(vec!["veth-a".into(), "eth0".into()]);
    engine.count_once_across_interfaces();
    let at = |ms: u64| netwatch::time::Timestamp(1_800_000_000_000_000_000 + ms * 1_000_000);
    for (interface, (ms, frame)) in [(0, (0, &inner)), (1, (1, &frames[0]))] {
        let frame = netwatch::capture::Frame {
            ts: at(ms),
            interface,
            linktype: Some(LinkType::Ethernet),
            data: frame,
            wire_len: u32::try_from(frame.len()).unwrap(),
        };
        engine.ingest(&frame);
    }
    let records = engine.live_records(at(10));
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].packets.tx, 1, "the tunnelled copy counted once");
    assert_eq!(records[0].interfaces, ["veth-a", "eth0"]);
}
