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
mod payload;
pub mod tls;

pub use payload::{AppData, MAX_DNS_COPY, RequestName, Summary, summarize};

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
// Inlined where frames are read: returned across a call, the packet went through the stack in
// pieces that were read back wider than they were written, stalling the reader thread.
#[inline]
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
mod never_panics;
