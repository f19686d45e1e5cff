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
    let decoded = decode(Some(LinkType::Ethernet), &frame).unwrap();
    let packet = decoded.packet;
    assert_eq!((packet.src, packet.dst), (ip("10.244.1.10"), ip("198.51.100.77")));
    assert_eq!((packet.protocol, packet.src_port, packet.dst_port), (Protocol::Tcp, 43122, 80));
    let tcp = packet.tcp.unwrap();
    assert_eq!((tcp.seq, tcp.ack), (1000, 2000));
    assert!(tcp.has(TcpInfo::ACK) && !tcp.has(TcpInfo::SYN));
    assert_eq!(packet.ip_len as usize, 20 + 20 + payload.len());
    assert_eq!(decoded.payload, &payload[..]);
    assert_eq!(http::request_host(decoded.payload).as_deref(), Some("www.example.com"));
}

#[test]
fn a_syn_marks_its_sender_as_the_initiator_and_a_syn_ack_as_the_responder() {
    let syn = synth::tcp(sock("10.244.1.10:1000"), sock("10.244.1.11:80"), 0x02, 1, 0, &[]);
    let syn_ack = synth::tcp(sock("10.244.1.11:80"), sock("10.244.1.10:1000"), 0x12, 1, 2, &[]);
    assert_eq!(decode(Some(LinkType::Ethernet), &syn).unwrap().packet.role, Role::Initiator);
    assert_eq!(decode(Some(LinkType::Ethernet), &syn_ack).unwrap().packet.role, Role::Responder);
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
    let decoded = decode(Some(LinkType::Ethernet), &frame).unwrap();
    let packet = decoded.packet;
    assert_eq!(packet.protocol, Protocol::Udp);
    assert_eq!(packet.src_port, 53);
    let resolved = dns::parse_udp(decoded.payload).unwrap();
    assert_eq!(&*resolved[0].name, "push.metrics.example");
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
    let decoded = decode(Some(LinkType::Ethernet), &stated_zero).unwrap();
    let packet = decoded.packet;
    assert_eq!(packet.ip_len as usize, v4.len() - 14);
    assert_eq!((packet.dst_port, decoded.payload), (8080, &payload[..]));
    let v6 =
        synth::tcp(sock("[2001:db8::1]:40000"), sock("[2001:db8::2]:443"), 0x18, 1, 2, &payload);
    let mut jumbo = synth::with_ipv6_extension_headers(&v6);
    jumbo[14 + 4..14 + 6].copy_from_slice(&[0, 0]);
    let decoded = decode(Some(LinkType::Ethernet), &jumbo).unwrap();
    let packet = decoded.packet;
    assert_eq!(packet.ip_len as usize, jumbo.len() - 14);
    assert_eq!((packet.dst_port, decoded.payload), (443, &payload[..]));
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
    let decoded = decode(Some(LinkType::Ethernet), &with_headers).unwrap();
    let packet = decoded.packet;
    assert_eq!((packet.protocol, packet.src_port, packet.dst_port), (Protocol::Tcp, 40000, 443));
}

#[test]
fn icmp_and_icmpv6_echo_carry_the_identifier_in_both_ports() {
    for (src, dst, protocol) in
        [("10.244.1.10", "10.0.0.12", Protocol::Icmp), ("fd00::1", "fd00::2", Protocol::Icmpv6)]
    {
        let request = synth::icmp_echo(ip(src), ip(dst), 0x1c2a, 1, true);
        let decoded = decode(Some(LinkType::Ethernet), &request).unwrap();
        let packet = decoded.packet;
        assert_eq!((packet.protocol, packet.src_port, packet.dst_port), (protocol, 0x1c2a, 0x1c2a));
        assert_eq!(packet.role, Role::Initiator);
        let reply = synth::icmp_echo(ip(dst), ip(src), 0x1c2a, 1, false);
        assert_eq!(decode(Some(LinkType::Ethernet), &reply).unwrap().packet.role, Role::Responder);
    }
}

#[test]
fn sctp_ports_are_read_from_its_common_header() {
    let frame = synth::sctp_init(sock("10.244.1.12:36412"), sock("10.244.2.20:3868"));
    let decoded = decode(Some(LinkType::Ethernet), &frame).unwrap();
    let packet = decoded.packet;
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
    let first = decode(Some(LinkType::Ethernet), &fragments[0]).unwrap().packet;
    assert_eq!(first.fragment, Fragment::First);
    // The datagram's identification, from the IPv4 header.
    let identification = u16::from_be_bytes([fragments[0][18], fragments[0][19]]);
    assert_eq!(first.ip_id, u32::from(identification));
    assert_eq!((first.src_port, first.dst_port), (41000, 8125));
    for later in &fragments[1..] {
        let decoded = decode(Some(LinkType::Ethernet), later).unwrap();
        let packet = decoded.packet;
        assert_eq!((packet.fragment, packet.ip_id), (Fragment::Later, first.ip_id));
        assert_eq!(packet.src_port, 0, "no transport header in a later fragment");
    }
    let total: u32 =
        fragments.iter().map(|f| decode(Some(LinkType::Ethernet), f).unwrap().packet.ip_len).sum();
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
    assert_eq!(cut.packet.ip_len, 1040);
    assert_eq!(cut.payload.len(), 100 - 14 - 40);
}

/// An IPv6 datagram's fragment with its fragment header (id `id`) following the fixed header;
/// `next` is what the fragment header says follows it, `offset` in 8-byte units.
fn ipv6_fragment(next: u8, offset: u16, more: bool, id: u32, body: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x60, 0, 0, 0];
    frame.extend(u16::try_from(8 + body.len()).unwrap().to_be_bytes());
    frame.extend([44, 64]); // a fragment header next; hop limit
    frame.extend("2001:db8::1".parse::<std::net::Ipv6Addr>().unwrap().octets());
    frame.extend("2001:db8::2".parse::<std::net::Ipv6Addr>().unwrap().octets());
    frame.extend([next, 0]);
    frame.extend((offset << 3 | u16::from(more)).to_be_bytes());
    frame.extend(id.to_be_bytes());
    frame.extend(body);
    frame
}

#[test]
fn ipv6_fragments_carry_the_fragment_headers_id_and_later_ones_are_not_walked_as_headers() {
    let id = 0xabcd_ef01;
    let mut udp = vec![0xa0, 0x28, 0x1f, 0xbd, 0, 40, 0, 0]; // 41000 → 8125, 40 bytes
    udp.extend([7u8; 16]);
    let first_frame = ipv6_fragment(17, 0, true, id, &udp);
    let first = decode(Some(LinkType::RawIp), &first_frame).unwrap().packet;
    assert_eq!((first.fragment, first.ip_id, first.protocol), (Fragment::First, id, Protocol::Udp));
    assert_eq!((first.src_port, first.dst_port, first.ip_len), (41000, 8125, 40 + 8 + 24));
    let later_frame = ipv6_fragment(17, 3, false, id, &[9u8; 16]);
    let later = decode(Some(LinkType::RawIp), &later_frame).unwrap();
    assert_eq!((later.packet.fragment, later.packet.ip_id), (Fragment::Later, id));
    assert_eq!((later.packet.src_port, later.payload.len()), (0, 16));
    // A later fragment of a datagram whose fragmentable part starts with destination options:
    // its data (here bytes that read as an option header 1.6 KB long) is not a header.
    let data = [17u8, 200, 0, 0, 0, 0, 0, 0, 5, 5, 5, 5, 5, 5, 5, 5];
    let options_frame = ipv6_fragment(60, 3, false, id, &data);
    let later = decode(Some(LinkType::RawIp), &options_frame).unwrap();
    assert_eq!((later.packet.fragment, later.packet.ip_id), (Fragment::Later, id));
    assert_eq!(later.payload, &data[..]);
}
