use super::*;
use crate::decode::{Fragment, Role, TcpInfo};
use crate::synth::app;
use std::net::IpAddr;

fn tcp_payload(src_port: u16, dst_port: u16, payload: &[u8]) -> Decoded<'_> {
    let packet = Packet {
        src: "10.244.1.10".parse().unwrap(),
        dst: "203.0.113.10".parse().unwrap(),
        protocol: Protocol::Tcp,
        src_port,
        dst_port,
        ip_len: 40 + u32::try_from(payload.len()).unwrap(),
        tcp: Some(TcpInfo { flags: TcpInfo::ACK, seq: 1, ack: 1 }),
        role: Role::Unknown,
        ttl: 64,
        fragment: Fragment::None,
        ip_id: 0,
    };
    Decoded { packet, payload, length_from_capture: false }
}

#[test]
fn a_client_hello_and_a_request_are_kept_for_the_flow_stage_and_the_replies_are_not() {
    let hello = app::tls_client_hello("api.example.com");
    let mut kept = summarize(&tcp_payload(40000, 443, &hello)).app;
    assert_eq!(kept.request_name(), Some(RequestName::Sni("api.example.com".into())));
    assert_eq!(kept.take_dns(), None);
    let server = app::tls_server_hello("api.example.com", 100);
    assert_eq!(summarize(&tcp_payload(443, 40000, &server)).app, AppData::None);
    let request = app::http_request("shop.example", "/");
    let kept = summarize(&tcp_payload(40000, 80, &request)).app;
    assert_eq!(kept.request_name(), Some(RequestName::HttpHost("shop.example".into())));
    let response = b"HTTP/1.1 200 OK\r\nHost: x\r\n\r\n";
    assert_eq!(summarize(&tcp_payload(80, 40000, response)).app, AppData::None);
    let huge = [hello.as_slice(), &[0u8; 40_000]].concat();
    let kept = summarize(&tcp_payload(40000, 443, &huge)).app;
    assert!(matches!(kept, AppData::Request(ref start) if start.len() == MAX_REQUEST_BYTES));
}

#[test]
fn a_decoded_frame_stays_small() {
    // Every frame is written by the reader and read by the engine, on the other core: a few
    // bytes more a frame cost both threads (152 bytes a frame, with the payload's slice and
    // a fragment's id kept twice, made a replay 3% slower than 120).
    use std::mem::size_of;
    assert!(size_of::<AppData>() <= 24, "{}", size_of::<AppData>());
    assert!(size_of::<Summary>() <= 96, "{}", size_of::<Summary>());
    let frame = size_of::<crate::capture::DecodedFrame>();
    assert!(frame <= 120, "{frame}");
}

#[test]
fn what_is_kept_is_bounded_and_long_messages_are_read_where_decoded() {
    let short_hello = [TLS_HANDSHAKE, 3, 1, 0, 40];
    assert_eq!(summarize(&tcp_payload(40000, 443, &short_hello)).app, AppData::None);
    let mut request = app::http_request("shop.example", "/");
    request.extend(vec![b'x'; 20_000]);
    let kept = summarize(&tcp_payload(40000, 80, &request)).app;
    assert!(matches!(kept, AppData::Request(ref head) if head.len() == http::MAX_HEADER_BYTES));
    // A long answer over UDP is read at once; over TCP only the first message is kept.
    let name = "a".repeat(60);
    let answers: Vec<_> = (0..200u16)
        .map(|i| crate::synth::dns::Answer::Aaaa {
            name: format!("{name}.example"),
            ip: std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i),
            ttl: 60,
        })
        .collect();
    let long = crate::synth::dns::response(9, &format!("{name}.example"), 28, &answers);
    assert!(long.len() > MAX_DNS_COPY);
    let mut udp = tcp_payload(53, 40000, &long);
    (udp.packet.protocol, udp.packet.tcp) = (Protocol::Udp, None);
    let read = summarize(&udp).app;
    assert!(
        matches!(read, AppData::DnsRead(ref found) if found.as_ref().as_ref().is_ok_and(|f| f.len() == 200))
    );
    let query = crate::synth::dns::query(3, "a.example", 1);
    let mut framed = crate::synth::dns::tcp_framed(&query);
    framed.extend(crate::synth::dns::tcp_framed(&long));
    let alone = summarize(&tcp_payload(53, 40000, &crate::synth::dns::tcp_framed(&long))).app;
    assert!(
        matches!(alone, AppData::DnsRead(ref found) if found.as_ref().as_ref().is_ok_and(|f| f.len() == 200)),
        "read over TCP, behind its length"
    );
    let mut kept = summarize(&tcp_payload(53, 40000, &framed)).app;
    assert!(
        matches!(kept, AppData::Dns { ref message, tcp: true } if message.len() == query.len() + 2)
    );
    assert_eq!(kept.take_dns(), Some(Err(dns::DnsSkip::Query)));
}

#[test]
fn a_message_from_port_53_is_kept_and_read_where_it_is_used() {
    // One A answer for a.example, its name a pointer to the question's.
    let mut message = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
    message.extend(b"\x01a\x07example\x00\x00\x01\x00\x01");
    message.extend([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 203, 0, 113, 7]);
    let mut udp = tcp_payload(53, 40000, &message);
    (udp.packet.protocol, udp.packet.tcp) = (Protocol::Udp, None);
    let resolved = summarize(&udp).app.take_dns().unwrap().unwrap();
    assert_eq!(resolved.len(), 1);
    assert_eq!((&*resolved[0].name, resolved[0].ttl_secs), ("a.example", 60));
    assert_eq!(resolved[0].address, IpAddr::from([203, 0, 113, 7]));
    let mut prefixed = u16::try_from(message.len()).unwrap().to_be_bytes().to_vec();
    prefixed.extend(&message);
    let over_tcp = summarize(&tcp_payload(53, 40000, &prefixed)).app.take_dns().unwrap().unwrap();
    assert_eq!(over_tcp, resolved);
    assert_eq!(
        summarize(&tcp_payload(53, 40000, b"junk")).app.take_dns(),
        Some(Err(dns::DnsSkip::Malformed))
    );
}
