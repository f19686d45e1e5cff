//! Decode: one captured frame → its header facts, one small [`Packet`] value, and its payload
//! ([`Decoded`]), or a counted [`SkipReason`].
//!
//! Uses `pnet` for header fields. Every length is checked against the captured bytes before a
//! slice is taken, so no input can panic; payload slices are computed here rather than by pnet,
//! whose `payload()` trusts header lengths. Only the payload that matters is kept ([`AppData`]:
//! a copy of a DNS message, or of the start of a ClientHello or HTTP request); the engine parses
//! it with the submodules where it is used, and a DNS message too long to copy is parsed here.

pub mod dns;
pub mod http;
pub mod tls;

use std::net::IpAddr;

use pnet::packet::ethernet::{EtherType, EtherTypes, EthernetPacket};
use pnet::packet::icmp::{IcmpPacket, IcmpTypes};
use pnet::packet::icmpv6::{Icmpv6Packet, Icmpv6Types};
use pnet::packet::ipv4::Ipv4Packet;
use pnet::packet::ipv6::Ipv6Packet;
use pnet::packet::tcp::TcpPacket;
use pnet::packet::udp::UdpPacket;
use pnet::packet::vlan::VlanPacket;

use crate::flow::key::Protocol;

/// Link-layer framing of captured bytes, from the capture's DLT/LINKTYPE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkType {
    Ethernet,
    /// Linux cooked capture v1 (`tcpdump -i any` before libpcap 1.10).
    LinuxSll,
    /// Linux cooked capture v2 (`tcpdump -i any` since libpcap 1.10).
    LinuxSll2,
    /// Bare IPv4 or IPv6 (tun devices, some overlays).
    RawIp,
    /// BSD loopback: a 4-byte address family, then IP.
    Null,
}

impl LinkType {
    /// Maps a libpcap link type number; `None` for framings netwatch does not decode.
    #[must_use]
    pub fn from_linktype(linktype: i32) -> Option<Self> {
        match linktype {
            1 => Some(Self::Ethernet),
            113 => Some(Self::LinuxSll),
            276 => Some(Self::LinuxSll2),
            // DLT_RAW has two numbers on different platforms; 228/229 are IPv4-/IPv6-only raw.
            12 | 14 | 101 | 228 | 229 => Some(Self::RawIp),
            0 => Some(Self::Null),
            _ => None,
        }
    }
}

impl LinkType {
    /// The LINKTYPE number a capture file records for this framing.
    #[must_use]
    pub fn number(self) -> u16 {
        match self {
            Self::Ethernet => 1,
            Self::LinuxSll => 113,
            Self::LinuxSll2 => 276,
            Self::RawIp => 101,
            Self::Null => 0,
        }
    }
}

/// TCP header facts the flow table needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpInfo {
    pub flags: u8,
    pub seq: u32,
    pub ack: u32,
}

impl TcpInfo {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const ACK: u8 = 0x10;

    #[must_use]
    pub fn has(self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// Where an IP fragment sits in its datagram. Only the first fragment carries ports, so later
/// ones are matched to its flow by (src, dst, protocol, [`Packet::ip_id`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fragment {
    /// A whole datagram.
    None,
    /// The first fragment: has the transport header.
    First,
    /// A later fragment: no transport header, ports unknown here.
    Later,
}

impl Fragment {
    /// A later fragment: it carries no transport header.
    #[must_use]
    pub fn is_later(self) -> bool {
        self == Self::Later
    }
}

/// What a packet says about who started the conversation, where it says anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Unknown,
    /// A TCP SYN or an ICMP echo request: the sender initiated.
    Initiator,
    /// A TCP SYN-ACK or an ICMP echo reply: the sender answers.
    Responder,
}

/// The header facts of one decoded IP packet: small and `Copy`, what the flow stage reads of
/// every packet (its payload goes only as far as [`summarize`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub protocol: Protocol,
    /// Ports for TCP/UDP/SCTP; the echo identifier for ICMP echo; 0 otherwise.
    pub src_port: u16,
    pub dst_port: u16,
    /// Bytes at the IP layer (header + payload) as the IP header states them: the same whether
    /// captured with Ethernet or cooked framing, and whatever the snap length.
    pub ip_len: u32,
    pub tcp: Option<TcpInfo>,
    pub role: Role,
    /// IPv4 TTL or IPv6 hop limit: a forwarded copy of a packet has a lower one.
    pub ttl: u8,
    pub fragment: Fragment,
    /// IPv4 identification, or the IPv6 fragment header's (0 for IPv6 unless fragmented): it
    /// matches later fragments to the first, and helps recognise copies of one packet seen on
    /// several interfaces.
    pub ip_id: u32,
}

/// A decoded packet and its transport payload, borrowed from the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded<'a> {
    pub packet: Packet,
    /// The transport payload, as far as it was captured (a later fragment's: all of its data).
    pub payload: &'a [u8],
    /// The IP header stated no length (a segmentation-offload super-packet captured on the
    /// host), so `ip_len` is what was captured: the frame's length on the wire says the rest
    /// (see `DecodedFrame::from_frame`).
    pub length_from_capture: bool,
}

/// Why a frame produced no packet. Counted by kind, never logged one by one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SkipReason {
    /// Shorter than the headers it claims to have.
    Truncated,
    /// An IP header that cannot be right (bad version, header length, total length).
    BadIpHeader,
    /// A transport header that cannot be right (TCP data offset below 5, …).
    BadTransportHeader,
    /// ARP: counted, not flowed.
    Arp,
    /// Another non-IP protocol (LLDP, STP, …).
    NonIp,
    /// A capture link type netwatch does not decode.
    UnsupportedLinkType,
    /// A later IP fragment whose first fragment was never seen.
    OrphanFragment,
}

impl SkipReason {
    pub const ALL: [Self; 7] = [
        Self::Truncated,
        Self::BadIpHeader,
        Self::BadTransportHeader,
        Self::Arp,
        Self::NonIp,
        Self::UnsupportedLinkType,
        Self::OrphanFragment,
    ];

    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Truncated => "truncated",
            Self::BadIpHeader => "bad-ip-header",
            Self::BadTransportHeader => "bad-transport-header",
            Self::Arp => "arp",
            Self::NonIp => "non-ip",
            Self::UnsupportedLinkType => "unsupported-link-type",
            Self::OrphanFragment => "orphan-fragment",
        }
    }

    #[must_use]
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Decodes one frame of the given framing.
pub fn decode(linktype: Option<LinkType>, frame: &[u8]) -> Result<Decoded<'_>, SkipReason> {
    match linktype {
        Some(LinkType::Ethernet) => decode_ethernet(frame),
        Some(LinkType::LinuxSll) => {
            // 16-byte header; the protocol (an EtherType) is its last two bytes.
            let header = frame.get(..16).ok_or(SkipReason::Truncated)?;
            let ethertype = u16::from_be_bytes([header[14], header[15]]);
            decode_ethertype(EtherType(ethertype), &frame[16..])
        }
        Some(LinkType::LinuxSll2) => {
            // 20-byte header; the protocol comes first.
            let header = frame.get(..20).ok_or(SkipReason::Truncated)?;
            let ethertype = u16::from_be_bytes([header[0], header[1]]);
            decode_ethertype(EtherType(ethertype), &frame[20..])
        }
        Some(LinkType::RawIp) => decode_raw_ip(frame),
        Some(LinkType::Null) => {
            let header = frame.get(..4).ok_or(SkipReason::Truncated)?;
            // The family is in host byte order of the capturing machine: accept either.
            let family = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
            let family = if family > 0xffff { family.swap_bytes() } else { family };
            match family {
                2 => decode_ipv4(&frame[4..]),
                // AF_INET6 differs between BSDs (24, 28, 30) and Linux (10).
                10 | 24 | 28 | 30 => decode_ipv6(&frame[4..]),
                _ => Err(SkipReason::NonIp),
            }
        }
        None => Err(SkipReason::UnsupportedLinkType),
    }
}

fn decode_raw_ip(bytes: &[u8]) -> Result<Decoded<'_>, SkipReason> {
    match bytes.first().map(|b| b >> 4) {
        Some(4) => decode_ipv4(bytes),
        Some(6) => decode_ipv6(bytes),
        Some(_) => Err(SkipReason::BadIpHeader),
        None => Err(SkipReason::Truncated),
    }
}

fn decode_ethernet(frame: &[u8]) -> Result<Decoded<'_>, SkipReason> {
    let ethernet = EthernetPacket::new(frame).ok_or(SkipReason::Truncated)?;
    decode_ethertype(ethernet.get_ethertype(), &frame[EthernetPacket::minimum_packet_size()..])
}

fn decode_ethertype(ethertype: EtherType, mut bytes: &[u8]) -> Result<Decoded<'_>, SkipReason> {
    let mut ethertype = ethertype;
    // 802.1Q and QinQ: peel up to two tags. The outer (service) tag is 0x88a8 in 802.1ad, or
    // 0x9100 on older switches.
    for _ in 0..2 {
        if ![EtherTypes::Vlan, EtherTypes::PBridge, EtherTypes::QinQ].contains(&ethertype) {
            break;
        }
        let vlan = VlanPacket::new(bytes).ok_or(SkipReason::Truncated)?;
        ethertype = vlan.get_ethertype();
        bytes = &bytes[VlanPacket::minimum_packet_size()..];
    }
    match ethertype {
        EtherTypes::Ipv4 => decode_ipv4(bytes),
        EtherTypes::Ipv6 => decode_ipv6(bytes),
        EtherTypes::Arp => Err(SkipReason::Arp),
        _ => Err(SkipReason::NonIp),
    }
}

fn decode_ipv4(bytes: &[u8]) -> Result<Decoded<'_>, SkipReason> {
    let ip = Ipv4Packet::new(bytes).ok_or(SkipReason::Truncated)?;
    let header_len = usize::from(ip.get_header_length()) * 4;
    // A segmentation-offload super-packet captured on the host (BIG TCP) states 0: its length
    // is the frame's (what was captured here; the wire length where the snap length cut it,
    // see `DecodedFrame::from_frame`).
    let stated_len = usize::from(ip.get_total_length());
    let total_len = if stated_len == 0 { bytes.len() } else { stated_len };
    if ip.get_version() != 4 || header_len < 20 || total_len < header_len {
        return Err(SkipReason::BadIpHeader);
    }
    if bytes.len() < header_len {
        return Err(SkipReason::Truncated);
    }
    // What was captured of the payload: bounded by the stated total length (Ethernet padding
    // follows short packets) and by the capture length.
    let end = total_len.min(bytes.len());
    let payload = &bytes[header_len..end];
    let id = u32::from(ip.get_identification());
    let more_fragments = ip.get_flags() & 0b001 != 0;
    let offset = ip.get_fragment_offset();
    let fragment = match (offset, more_fragments) {
        (0, false) => Fragment::None,
        (0, true) => Fragment::First,
        _ => Fragment::Later,
    };
    let protocol = Protocol::from_ip_number(ip.get_next_level_protocol().0);
    let src = IpAddr::V4(ip.get_source());
    let dst = IpAddr::V4(ip.get_destination());
    let mut decoded = finish(src, dst, protocol, ip.get_ttl(), total_len, fragment, id, payload)?;
    decoded.length_from_capture = stated_len == 0;
    Ok(decoded)
}

/// IPv6 extension headers that netwatch walks over to reach the transport header.
const HOP_BY_HOP: u8 = 0;
const ROUTING: u8 = 43;
const FRAGMENT: u8 = 44;
const AUTHENTICATION: u8 = 51;
const DESTINATION_OPTIONS: u8 = 60;
const MOBILITY: u8 = 135;

fn decode_ipv6(bytes: &[u8]) -> Result<Decoded<'_>, SkipReason> {
    let ip = Ipv6Packet::new(bytes).ok_or(SkipReason::Truncated)?;
    if ip.get_version() != 6 {
        return Err(SkipReason::BadIpHeader);
    }
    let header_len = Ipv6Packet::minimum_packet_size();
    // A jumbogram (a BIG TCP super-packet captured on the host) states 0 and carries its length
    // in a hop-by-hop option: it is the frame's, as for IPv4 above.
    let jumbo = ip.get_payload_length() == 0 && ip.get_next_header().0 == HOP_BY_HOP;
    let total_len =
        if jumbo { bytes.len() } else { header_len + usize::from(ip.get_payload_length()) };
    let end = total_len.min(bytes.len());
    let mut rest = &bytes[header_len..end];
    let mut next = ip.get_next_header().0;
    let mut fragment = Fragment::None;
    // The fragment header's identification; 0 for a whole datagram.
    let mut id = 0;
    // Bounded: a chain of extension headers longer than this is not real traffic.
    for _ in 0..8 {
        match next {
            HOP_BY_HOP | ROUTING | DESTINATION_OPTIONS | MOBILITY => {
                let header = rest.get(..2).ok_or(SkipReason::Truncated)?;
                let len = (usize::from(header[1]) + 1) * 8;
                next = header[0];
                rest = rest.get(len..).ok_or(SkipReason::Truncated)?;
            }
            AUTHENTICATION => {
                let header = rest.get(..2).ok_or(SkipReason::Truncated)?;
                let len = (usize::from(header[1]) + 2) * 4;
                next = header[0];
                rest = rest.get(len..).ok_or(SkipReason::Truncated)?;
            }
            FRAGMENT => {
                let header = rest.get(..8).ok_or(SkipReason::Truncated)?;
                next = header[0];
                let offset_and_flags = u16::from_be_bytes([header[2], header[3]]);
                id = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
                fragment = match (offset_and_flags >> 3, offset_and_flags & 1 != 0) {
                    (0, false) => Fragment::None,
                    (0, true) => Fragment::First,
                    _ => Fragment::Later,
                };
                rest = &rest[8..];
                if fragment.is_later() {
                    // What follows is a piece of the datagram's data, not headers to walk.
                    break;
                }
            }
            _ => break,
        }
    }
    let src = IpAddr::V6(ip.get_source());
    let dst = IpAddr::V6(ip.get_destination());
    let id = if fragment == Fragment::None { 0 } else { id };
    let mut decoded = finish(
        src,
        dst,
        Protocol::from_ip_number(next),
        ip.get_hop_limit(),
        total_len,
        fragment,
        id,
        rest,
    )?;
    decoded.length_from_capture = jumbo;
    Ok(decoded)
}

#[allow(clippy::too_many_arguments)] // the fields of one IP header, named at both call sites
fn finish<'a>(
    src: IpAddr,
    dst: IpAddr,
    protocol: Protocol,
    ttl: u8,
    ip_len: usize,
    fragment: Fragment,
    ip_id: u32,
    l4: &'a [u8],
) -> Result<Decoded<'a>, SkipReason> {
    let mut packet = Packet {
        src,
        dst,
        protocol,
        src_port: 0,
        dst_port: 0,
        ip_len: u32::try_from(ip_len).unwrap_or(u32::MAX),
        tcp: None,
        role: Role::Unknown,
        ttl,
        fragment,
        ip_id,
    };
    if fragment.is_later() {
        // No transport header here: the flow is found through the first fragment.
        return Ok(Decoded { packet, payload: l4, length_from_capture: false });
    }
    let mut payload: &[u8] = &[];
    match protocol {
        Protocol::Tcp => {
            let tcp = TcpPacket::new(l4).ok_or(SkipReason::Truncated)?;
            let data_offset = usize::from(tcp.get_data_offset()) * 4;
            if data_offset < 20 {
                return Err(SkipReason::BadTransportHeader);
            }
            packet.src_port = tcp.get_source();
            packet.dst_port = tcp.get_destination();
            let info = TcpInfo {
                flags: tcp.get_flags(),
                seq: tcp.get_sequence(),
                ack: tcp.get_acknowledgement(),
            };
            packet.role = match (info.has(TcpInfo::SYN), info.has(TcpInfo::ACK)) {
                (true, false) => Role::Initiator,
                (true, true) => Role::Responder,
                _ => Role::Unknown,
            };
            packet.tcp = Some(info);
            // Options may be cut by the snap length: then there is simply no payload.
            payload = l4.get(data_offset..).unwrap_or(&[]);
        }
        Protocol::Udp => {
            let udp = UdpPacket::new(l4).ok_or(SkipReason::Truncated)?;
            packet.src_port = udp.get_source();
            packet.dst_port = udp.get_destination();
            payload = &l4[UdpPacket::minimum_packet_size()..];
        }
        Protocol::Sctp => {
            // pnet has no SCTP packet; the ports are the first four bytes of its common header.
            let header = l4.get(..12).ok_or(SkipReason::Truncated)?;
            packet.src_port = u16::from_be_bytes([header[0], header[1]]);
            packet.dst_port = u16::from_be_bytes([header[2], header[3]]);
        }
        Protocol::Icmp => {
            let icmp = IcmpPacket::new(l4).ok_or(SkipReason::Truncated)?;
            let kind = icmp.get_icmp_type();
            if kind == IcmpTypes::EchoRequest || kind == IcmpTypes::EchoReply {
                let id = echo_identifier(l4)?;
                (packet.src_port, packet.dst_port) = (id, id);
                packet.role =
                    if kind == IcmpTypes::EchoRequest { Role::Initiator } else { Role::Responder };
            }
        }
        Protocol::Icmpv6 => {
            let icmp = Icmpv6Packet::new(l4).ok_or(SkipReason::Truncated)?;
            let kind = icmp.get_icmpv6_type();
            if kind == Icmpv6Types::EchoRequest || kind == Icmpv6Types::EchoReply {
                let id = echo_identifier(l4)?;
                (packet.src_port, packet.dst_port) = (id, id);
                packet.role = if kind == Icmpv6Types::EchoRequest {
                    Role::Initiator
                } else {
                    Role::Responder
                };
            }
        }
        Protocol::Other(_) => payload = l4,
    }
    Ok(Decoded { packet, payload, length_from_capture: false })
}

/// The identifier of an ICMP/ICMPv6 echo message (bytes 4..6 after type, code, checksum).
fn echo_identifier(l4: &[u8]) -> Result<u16, SkipReason> {
    let bytes = l4.get(4..6).ok_or(SkipReason::Truncated)?;
    Ok(u16::from_be_bytes([bytes[0], bytes[1]]))
}

/// Longest name kept from the wire: a DNS name is at most 253 characters.
const MAX_NAME_LEN: usize = 253;

/// Makes a name taken from the wire safe to show: control characters (escape sequences!)
/// become `?`, and it is cut to the longest legal DNS name.
#[must_use]
pub fn sanitize_name(name: &str) -> String {
    // The common case, a short printable ASCII name, is one copy (this runs for every name in
    // every DNS answer).
    if is_clean_name(name) {
        return name.to_owned();
    }
    name.chars().take(MAX_NAME_LEN).map(|c| if c.is_control() { '?' } else { c }).collect()
}

/// [`sanitize_name`] into a shared name, copied once when it is clean already (DNS answers:
/// the name book and every flow it names share it).
#[must_use]
pub fn sanitized_shared_name(name: &str) -> std::sync::Arc<str> {
    if is_clean_name(name) { std::sync::Arc::from(name) } else { sanitize_name(name).into() }
}

fn is_clean_name(name: &str) -> bool {
    name.len() <= MAX_NAME_LEN && name.bytes().all(|b| (0x20..0x7f).contains(&b))
}

#[cfg(test)]
mod never_panics {
    use proptest::prelude::*;

    use super::*;

    const LINKTYPES: [Option<LinkType>; 6] = [
        Some(LinkType::Ethernet),
        Some(LinkType::LinuxSll),
        Some(LinkType::LinuxSll2),
        Some(LinkType::RawIp),
        Some(LinkType::Null),
        None,
    ];

    /// Bytes that look enough like IPv4/IPv6 to get past the first checks.
    fn ip_like() -> impl Strategy<Value = Vec<u8>> {
        (
            prop_oneof![Just(0x45u8), Just(0x46), Just(0x60), any::<u8>()],
            proptest::collection::vec(any::<u8>(), 0..200),
        )
            .prop_map(|(first, rest)| {
                let mut bytes = vec![first];
                bytes.extend(rest);
                bytes
            })
    }

    proptest! {
        /// The ASCII shortcut names exactly what the character-by-character rule does.
        #[test]
        fn sanitized_names_are_cut_and_stripped_of_control_characters(
            name in "[ -~\\x00-\\x1f\\x7f\\u{80}-\\u{10ffff}]{0,300}",
        ) {
            let reference: String = name
                .chars()
                .take(MAX_NAME_LEN)
                .map(|c| if c.is_control() { '?' } else { c })
                .collect();
            prop_assert_eq!(sanitize_name(&name), reference);
            let ascii: String = name.chars().filter(char::is_ascii_graphic).collect();
            prop_assert_eq!(sanitize_name(&ascii), ascii.chars().take(MAX_NAME_LEN).collect::<String>());
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        #[test]
        fn decode_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300), which in 0usize..6) {
            let _ = decode(LINKTYPES[which], &bytes);
        }

        #[test]
        fn decode_never_panics_on_ip_like_bytes(bytes in ip_like()) {
            if let Ok(Decoded { payload, .. }) = decode(Some(LinkType::RawIp), &bytes) {
                prop_assert!(payload.len() <= bytes.len());
                let _ = dns::parse_udp(payload);
                let _ = dns::parse_tcp(payload);
                let _ = tls::client_hello_sni(payload);
                let _ = http::request_host(payload);
            }
        }

        #[test]
        fn payload_parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = dns::parse_udp(&bytes);
            let _ = dns::parse_tcp(&bytes);
            let _ = tls::client_hello_sni(&bytes);
            let _ = http::request_host(&bytes);
        }
    }
}

/// The payload that matters, copied out where the packet was decoded (on the reader or capture
/// thread) so the flow stage gets an owned value, never the frame. It is read by the flow stage:
/// a DNS message only if the packet is not a copy of one already counted, a request only if it
/// is the first payload of its flow's initiator; reading them all where they were decoded was a
/// tenth of the reader thread's work, on the thread a replay waits on. A copy is at most
/// [`MAX_DNS_COPY`], a TLS record or what is read of an HTTP request head, so batches of frames
/// in flight stay bounded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AppData {
    #[default]
    None,
    /// A payload from port 53: a DNS message, over TCP behind its two-byte length.
    Dns { message: Box<[u8]>, tcp: bool },
    /// A DNS message longer than [`MAX_DNS_COPY`] (rare: only EDNS or TCP), read where it was
    /// decoded rather than copied.
    DnsRead(Box<Result<Vec<dns::Resolution>, dns::DnsSkip>>),
    /// The start of a TLS ClientHello or of an HTTP/1.x request.
    Request(Box<[u8]>),
}

impl AppData {
    /// What a DNS message resolved ([`dns::parse_udp`], [`dns::parse_tcp`]); `None` when the
    /// payload is not a DNS message. A long message read where it was decoded is taken out,
    /// not copied (this leaves `None`).
    #[must_use]
    pub fn take_dns(&mut self) -> Option<Result<Vec<dns::Resolution>, dns::DnsSkip>> {
        match self {
            Self::Dns { message, tcp } => Some(dns::parse(message, *tcp)),
            Self::DnsRead(_) => match std::mem::take(self) {
                Self::DnsRead(read) => Some(*read),
                _ => None,
            },
            _ => None,
        }
    }

    /// The name a request asked for: a ClientHello's SNI or an HTTP request's Host.
    #[must_use]
    pub fn request_name(&self) -> Option<RequestName> {
        let Self::Request(payload) = self else { return None };
        if payload.first() == Some(&TLS_HANDSHAKE) {
            tls::client_hello_sni(payload).map(|sni| RequestName::Sni(sni.into()))
        } else {
            http::request_host(payload).map(|host| RequestName::HttpHost(host.into()))
        }
    }
}

/// A name from the start of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestName {
    /// A TLS ClientHello's server name.
    Sni(Box<str>),
    /// An HTTP/1.x request's Host header.
    HttpHost(Box<str>),
}

const DNS_PORT: u16 = 53;
const TLS_HANDSHAKE: u8 = 0x16;
/// The handshake type of a ClientHello, after the 5-byte record header.
const TLS_CLIENT_HELLO: u8 = 0x01;
/// A TLS record is at most 16 KiB (and its header 5 bytes); an HTTP request head is read up to
/// 8 KiB (see `http`).
const MAX_REQUEST_BYTES: usize = 5 + (16 << 10);
/// DNS messages up to this long travel as bytes: nearly all of them (classic UDP is 512 bytes,
/// EDNS answers usually fit 1232).
pub const MAX_DNS_COPY: usize = 4096;

/// A decoded packet with its payload dropped but for what matters: owned, `Send`, small.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub packet: Packet,
    /// The transport payload's length as captured.
    pub payload_len: u32,
    pub app: AppData,
}

/// A payload from port 53: what of it a DNS reader reads (over TCP, the first message), as
/// bytes when short enough.
fn dns_payload(payload: &[u8], tcp: bool) -> AppData {
    let message = if tcp {
        let stated = payload.get(..2).map_or(0, |p| usize::from(u16::from_be_bytes([p[0], p[1]])));
        &payload[..payload.len().min(2 + stated)]
    } else {
        payload
    };
    if message.len() <= MAX_DNS_COPY {
        AppData::Dns { message: message.into(), tcp }
    } else {
        AppData::DnsRead(Box::new(dns::parse(message, tcp)))
    }
}

/// Keeps what matters of a packet's payload: a message from port 53, and the start of what looks
/// like a TLS ClientHello or an HTTP request (checked by its first bytes only).
#[must_use]
pub fn summarize(decoded: &Decoded<'_>) -> Summary {
    let Decoded { packet, payload, .. } = *decoded;
    let app = if payload.is_empty() || packet.fragment.is_later() {
        AppData::None
    } else if packet.src_port == DNS_PORT
        && matches!(packet.protocol, Protocol::Udp | Protocol::Tcp)
    {
        dns_payload(payload, packet.protocol == Protocol::Tcp)
    } else if packet.protocol == Protocol::Tcp
        && payload
            .get(..6)
            .is_some_and(|head| head[0] == TLS_HANDSHAKE && head[5] == TLS_CLIENT_HELLO)
    {
        AppData::Request(payload[..payload.len().min(MAX_REQUEST_BYTES)].into())
    } else if packet.protocol == Protocol::Tcp && http::starts_with_method(payload) {
        AppData::Request(payload[..payload.len().min(http::MAX_HEADER_BYTES)].into())
    } else {
        AppData::None
    };
    // A payload is shorter than a frame, whose length libpcap gives as 32 bits.
    Summary { packet, payload_len: u32::try_from(payload.len()).unwrap_or(u32::MAX), app }
}

#[cfg(test)]
mod payload_kept {
    use super::*;
    use crate::synth::app;

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
        let over_tcp =
            summarize(&tcp_payload(53, 40000, &prefixed)).app.take_dns().unwrap().unwrap();
        assert_eq!(over_tcp, resolved);
        assert_eq!(
            summarize(&tcp_payload(53, 40000, b"junk")).app.take_dns(),
            Some(Err(dns::DnsSkip::Malformed))
        );
    }
}
