//! L2–L4 frame builders: Ethernet + IPv4/IPv6 + TCP, UDP, SCTP, ICMP/ICMPv6 echo; and ARP.
//!
//! Each builder returns one complete Ethernet frame with every checksum filled in. The IP
//! family follows the addresses; when a caller mixes families, the IPv4 address is written as
//! an IPv4-mapped IPv6 address rather than failing, so a builder never panics. A payload too
//! large for one IP packet (over 65,535 bytes) gives an empty frame: split it first.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use pnet::packet::MutablePacket;
use pnet::packet::arp::{ArpHardwareTypes, ArpOperation, ArpOperations, MutableArpPacket};
use pnet::packet::ethernet::{EtherType, EtherTypes, MutableEthernetPacket};
use pnet::packet::icmp::{self, IcmpPacket, IcmpTypes, echo_request::MutableEchoRequestPacket};
use pnet::packet::icmpv6::{self, Icmpv6Packet, Icmpv6Types, echo_request};
use pnet::packet::ip::{IpNextHeaderProtocol, IpNextHeaderProtocols};
use pnet::packet::ipv4::{self, Ipv4Flags, MutableIpv4Packet};
use pnet::packet::ipv6::MutableIpv6Packet;
use pnet::packet::tcp::{self, MutableTcpPacket, TcpFlags};
use pnet::packet::udp::{self, MutableUdpPacket};
use pnet::util::MacAddr;

use super::fnv1a;

pub const ETHERNET_HEADER_LEN: usize = 14;
pub const IPV4_HEADER_LEN: usize = 20;
pub const IPV6_HEADER_LEN: usize = 40;
pub const TCP_HEADER_LEN: usize = 20;
pub const UDP_HEADER_LEN: usize = 8;
/// Linux's default TTL / hop limit.
pub const TTL: u8 = 64;
/// The window a data segment advertises; with the SYN's window scale 7 that is 64,256 bytes.
const WINDOW: u16 = 502;
const SYN_WINDOW: u16 = 64_240;
const WINDOW_SCALE: u8 = 7;
/// The bytes after the timestamp in a Linux `ping`: 0x10, 0x11, …
const PING_PAYLOAD_LEN: usize = 56;

/// The MAC address a host with `ip` has in synthetic frames: locally administered, and readable.
/// IPv4 `a.b.c.d` → `02:00:a:b:c:d`; IPv6 → `06:00:` + its last four bytes.
#[must_use]
pub fn mac_for(ip: IpAddr) -> MacAddr {
    match ip {
        IpAddr::V4(ip) => {
            let [a, b, c, d] = ip.octets();
            MacAddr::new(0x02, 0x00, a, b, c, d)
        }
        IpAddr::V6(ip) => {
            let o = ip.octets();
            MacAddr::new(0x06, 0x00, o[12], o[13], o[14], o[15])
        }
    }
}

/// Source and destination of one IP packet, normalised to one family.
#[derive(Debug, Clone, Copy)]
enum Pair {
    V4(Ipv4Addr, Ipv4Addr),
    V6(Ipv6Addr, Ipv6Addr),
}

impl Pair {
    fn new(src: IpAddr, dst: IpAddr) -> Self {
        match (src, dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => Self::V4(src, dst),
            _ => Self::V6(as_v6(src), as_v6(dst)),
        }
    }

    fn header_len(self) -> usize {
        match self {
            Self::V4(..) => IPV4_HEADER_LEN,
            Self::V6(..) => IPV6_HEADER_LEN,
        }
    }
}

fn as_v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(ip) => ip.to_ipv6_mapped(),
        IpAddr::V6(ip) => ip,
    }
}

/// Builds Ethernet + IP around an L4 segment of `l4_len` bytes that `fill` writes (checksum
/// included). `None` only when the segment does not fit in an IP packet.
fn ip_frame(
    pair: Pair,
    protocol: IpNextHeaderProtocol,
    l4_len: usize,
    fill: impl FnOnce(&mut [u8], Pair) -> Option<()>,
) -> Option<Vec<u8>> {
    let ip_len = pair.header_len();
    let mut buf = vec![0u8; ETHERNET_HEADER_LEN + ip_len + l4_len];
    let (head, l4) = buf.split_at_mut(ETHERNET_HEADER_LEN + ip_len);
    fill(l4, pair)?;
    let (eth, ip) = head.split_at_mut(ETHERNET_HEADER_LEN);
    match pair {
        Pair::V4(src, dst) => {
            write_ethernet(eth, mac_for(src.into()), mac_for(dst.into()), EtherTypes::Ipv4)?;
            let mut packet = MutableIpv4Packet::new(ip)?;
            packet.set_version(4);
            packet.set_header_length(5);
            packet.set_total_length(u16::try_from(ip_len + l4_len).ok()?);
            // Reproducible yet varied: a hash of the segment's start (headers and the first
            // payload bytes) stands in for the kernel's counter.
            packet.set_identification((fnv1a(&[&l4[..l4.len().min(64)]]) & 0xffff) as u16);
            // Linux sets DF on everything it does not fragment itself (path MTU discovery).
            packet.set_flags(Ipv4Flags::DontFragment);
            packet.set_ttl(TTL);
            packet.set_next_level_protocol(protocol);
            packet.set_source(src);
            packet.set_destination(dst);
            packet.set_checksum(ipv4::checksum(&packet.to_immutable()));
        }
        Pair::V6(src, dst) => {
            write_ethernet(eth, mac_for(src.into()), mac_for(dst.into()), EtherTypes::Ipv6)?;
            let mut packet = MutableIpv6Packet::new(ip)?;
            packet.set_version(6);
            packet.set_payload_length(u16::try_from(l4_len).ok()?);
            packet.set_next_header(protocol);
            packet.set_hop_limit(TTL);
            packet.set_source(src);
            packet.set_destination(dst);
        }
    }
    Some(buf)
}

fn write_ethernet(buf: &mut [u8], src: MacAddr, dst: MacAddr, ethertype: EtherType) -> Option<()> {
    let mut eth = MutableEthernetPacket::new(buf)?;
    eth.set_destination(dst);
    eth.set_source(src);
    eth.set_ethertype(ethertype);
    Some(())
}

/// SYN options as Linux sends them without timestamps: MSS, NOP, NOP, SACK-permitted, NOP,
/// window scale. The MSS is patched per family.
fn syn_options(pair: Pair) -> [u8; 12] {
    let mss: u16 = match pair {
        Pair::V4(..) => 1460,
        Pair::V6(..) => 1440,
    };
    let [hi, lo] = mss.to_be_bytes();
    [2, 4, hi, lo, 1, 1, 4, 2, 1, 3, 3, WINDOW_SCALE]
}

/// Ethernet + IPv4/IPv6 + TCP. `flags` are [`TcpFlags`] bits; a SYN carries MSS, SACK-permitted
/// and window-scale options, like Linux's.
#[must_use]
pub fn tcp(
    src: SocketAddr,
    dst: SocketAddr,
    flags: u8,
    seq: u32,
    ack: u32,
    payload: &[u8],
) -> Vec<u8> {
    let pair = Pair::new(src.ip(), dst.ip());
    let options = if flags & TcpFlags::SYN != 0 { syn_options(pair).to_vec() } else { Vec::new() };
    let header_len = TCP_HEADER_LEN + options.len();
    let fill = |seg: &mut [u8], pair: Pair| {
        let mut packet = MutableTcpPacket::new(seg)?;
        packet.set_source(src.port());
        packet.set_destination(dst.port());
        packet.set_sequence(seq);
        packet.set_acknowledgement(ack);
        packet.set_data_offset(u8::try_from(header_len / 4).ok()?);
        packet.set_flags(flags);
        packet.set_window(if flags & TcpFlags::SYN != 0 { SYN_WINDOW } else { WINDOW });
        packet.packet_mut().get_mut(TCP_HEADER_LEN..header_len)?.copy_from_slice(&options);
        packet.set_payload(payload);
        let checksum = match pair {
            Pair::V4(s, d) => tcp::ipv4_checksum(&packet.to_immutable(), &s, &d),
            Pair::V6(s, d) => tcp::ipv6_checksum(&packet.to_immutable(), &s, &d),
        };
        packet.set_checksum(checksum);
        Some(())
    };
    ip_frame(pair, IpNextHeaderProtocols::Tcp, header_len + payload.len(), fill).unwrap_or_default()
}

/// Ethernet + IPv4/IPv6 + UDP.
#[must_use]
pub fn udp(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let pair = Pair::new(src.ip(), dst.ip());
    let len = UDP_HEADER_LEN + payload.len();
    let fill = |seg: &mut [u8], pair: Pair| {
        let mut packet = MutableUdpPacket::new(seg)?;
        packet.set_source(src.port());
        packet.set_destination(dst.port());
        packet.set_length(u16::try_from(len).ok()?);
        packet.set_payload(payload);
        let checksum = match pair {
            Pair::V4(s, d) => udp::ipv4_checksum(&packet.to_immutable(), &s, &d),
            Pair::V6(s, d) => udp::ipv6_checksum(&packet.to_immutable(), &s, &d),
        };
        // A computed 0 is sent as all ones: 0 on the wire means "no checksum".
        packet.set_checksum(if checksum == 0 { 0xffff } else { checksum });
        Some(())
    };
    ip_frame(pair, IpNextHeaderProtocols::Udp, len, fill).unwrap_or_default()
}

/// Ethernet + IP + SCTP: the common header and one INIT chunk (no optional parameters), with
/// the CRC32c checksum. Tags and TSN are derived from the addresses, so they are stable.
#[must_use]
pub fn sctp_init(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let pair = Pair::new(src.ip(), dst.ip());
    let seed = fnv1a(&[src.to_string().as_bytes(), dst.to_string().as_bytes()]);
    // The initiate tag must not be 0 (RFC 9260 §3.3.2).
    let initiate_tag = ((seed >> 32) as u32) | 1;
    let initial_tsn = seed as u32;
    let mut packet = Vec::with_capacity(32);
    packet.extend_from_slice(&src.port().to_be_bytes());
    packet.extend_from_slice(&dst.port().to_be_bytes());
    packet.extend_from_slice(&0u32.to_be_bytes()); // verification tag: 0 in a packet with INIT
    packet.extend_from_slice(&0u32.to_be_bytes()); // checksum, filled below
    packet.extend_from_slice(&[1, 0]); // chunk type INIT, flags
    packet.extend_from_slice(&20u16.to_be_bytes()); // chunk length
    packet.extend_from_slice(&initiate_tag.to_be_bytes());
    packet.extend_from_slice(&106_496u32.to_be_bytes()); // advertised receiver window
    packet.extend_from_slice(&10u16.to_be_bytes()); // outbound streams
    packet.extend_from_slice(&65_535u16.to_be_bytes()); // maximum inbound streams
    packet.extend_from_slice(&initial_tsn.to_be_bytes());
    // RFC 9260 appendix A: the CRC is stored least significant byte first.
    let crc = crc32c(&packet);
    packet[8..12].copy_from_slice(&crc.to_le_bytes());
    let fill = |seg: &mut [u8], _| {
        seg.copy_from_slice(&packet);
        Some(())
    };
    ip_frame(pair, IpNextHeaderProtocols::Sctp, packet.len(), fill).unwrap_or_default()
}

/// CRC32c (Castagnoli), as SCTP uses it.
#[must_use]
pub fn crc32c(data: &[u8]) -> u32 {
    const POLY: u32 = 0x82f6_3b78; // reflected 0x1EDC6F41
    let mut crc = !0u32;
    for byte in data {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ POLY } else { crc >> 1 };
        }
    }
    !crc
}

/// Ethernet + IP + ICMP echo request or reply (ICMPv6 for IPv6), with a `ping`-like 56-byte
/// payload.
#[must_use]
pub fn icmp_echo(src: IpAddr, dst: IpAddr, id: u16, seq: u16, request: bool) -> Vec<u8> {
    let pair = Pair::new(src, dst);
    let payload: Vec<u8> = (0..PING_PAYLOAD_LEN).map(|i| 0x10 + (i as u8)).collect();
    let len = 8 + payload.len();
    let protocol = match pair {
        Pair::V4(..) => IpNextHeaderProtocols::Icmp,
        Pair::V6(..) => IpNextHeaderProtocols::Icmpv6,
    };
    let fill = |seg: &mut [u8], pair: Pair| {
        match pair {
            Pair::V4(..) => {
                // Echo request and reply share a layout; only the type differs.
                let mut packet = MutableEchoRequestPacket::new(seg)?;
                packet.set_icmp_type(if request {
                    IcmpTypes::EchoRequest
                } else {
                    IcmpTypes::EchoReply
                });
                packet.set_identifier(id);
                packet.set_sequence_number(seq);
                packet.set_payload(&payload);
                let checksum = icmp::checksum(&IcmpPacket::new(packet.packet_mut())?);
                packet.set_checksum(checksum);
            }
            Pair::V6(s, d) => {
                let mut packet = echo_request::MutableEchoRequestPacket::new(seg)?;
                packet.set_icmpv6_type(if request {
                    Icmpv6Types::EchoRequest
                } else {
                    Icmpv6Types::EchoReply
                });
                packet.set_identifier(id);
                packet.set_sequence_number(seq);
                packet.set_payload(&payload);
                let checksum = icmpv6::checksum(&Icmpv6Packet::new(packet.packet_mut())?, &s, &d);
                packet.set_checksum(checksum);
            }
        }
        Some(())
    };
    ip_frame(pair, protocol, len, fill).unwrap_or_default()
}

/// A broadcast ARP request: who has `target`? Tell `sender`.
#[must_use]
pub fn arp_request(sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    arp(ArpOperations::Request, sender, target).unwrap_or_default()
}

/// The unicast ARP reply: `sender` is at its MAC, told to `target` (who asked).
#[must_use]
pub fn arp_reply(sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    arp(ArpOperations::Reply, sender, target).unwrap_or_default()
}

fn arp(operation: ArpOperation, sender: Ipv4Addr, target: Ipv4Addr) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; ETHERNET_HEADER_LEN + 28];
    let (eth, body) = buf.split_at_mut(ETHERNET_HEADER_LEN);
    let sender_mac = mac_for(sender.into());
    let (eth_dst, target_mac) = if operation == ArpOperations::Request {
        (MacAddr::broadcast(), MacAddr::zero())
    } else {
        (mac_for(target.into()), mac_for(target.into()))
    };
    write_ethernet(eth, sender_mac, eth_dst, EtherTypes::Arp)?;
    let mut packet = MutableArpPacket::new(body)?;
    packet.set_hardware_type(ArpHardwareTypes::Ethernet);
    packet.set_protocol_type(EtherTypes::Ipv4);
    packet.set_hw_addr_len(6);
    packet.set_proto_addr_len(4);
    packet.set_operation(operation);
    packet.set_sender_hw_addr(sender_mac);
    packet.set_sender_proto_addr(sender);
    packet.set_target_hw_addr(target_mac);
    packet.set_target_proto_addr(target);
    Some(buf)
}

#[cfg(test)]
mod tests {
    use pnet::packet::Packet;
    use pnet::packet::arp::ArpPacket;
    use pnet::packet::ethernet::EthernetPacket;
    use pnet::packet::icmp::echo_request::EchoRequestPacket;
    use pnet::packet::ipv4::Ipv4Packet;
    use pnet::packet::ipv6::Ipv6Packet;
    use pnet::packet::tcp::TcpPacket;
    use pnet::packet::udp::UdpPacket;

    use super::*;

    fn sa(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    fn ipv4_of(frame: &[u8]) -> Ipv4Packet<'_> {
        let ip = Ipv4Packet::new(&frame[ETHERNET_HEADER_LEN..]).unwrap();
        assert_eq!(ip.get_checksum(), ipv4::checksum(&ip), "IPv4 header checksum");
        assert_eq!(usize::from(ip.get_total_length()), frame.len() - ETHERNET_HEADER_LEN);
        ip
    }

    #[test]
    fn tcp_over_ipv4_parses_back_with_valid_checksums() {
        let (src, dst) = (sa("10.244.1.10:43122"), sa("10.96.12.5:80"));
        let frame = tcp(src, dst, TcpFlags::PSH | TcpFlags::ACK, 1000, 2000, b"hello");
        let eth = EthernetPacket::new(&frame).unwrap();
        assert_eq!(eth.get_ethertype(), EtherTypes::Ipv4);
        assert_eq!(eth.get_source(), mac_for(src.ip()));
        let ip = ipv4_of(&frame);
        assert_eq!(ip.get_ttl(), 64);
        let seg = TcpPacket::new(ip.payload()).unwrap();
        let (IpAddr::V4(s), IpAddr::V4(d)) = (src.ip(), dst.ip()) else { panic!() };
        assert_eq!(seg.get_checksum(), tcp::ipv4_checksum(&seg, &s, &d));
        assert_eq!((seg.get_source(), seg.get_destination()), (43122, 80));
        assert_eq!((seg.get_sequence(), seg.get_acknowledgement()), (1000, 2000));
        assert_eq!(seg.payload(), b"hello");
    }

    #[test]
    fn tcp_syn_over_ipv6_carries_options_and_a_valid_checksum() {
        let (src, dst) = (sa("[fd00:10:244:1::a]:40000"), sa("[2001:db8::10]:443"));
        let frame = tcp(src, dst, TcpFlags::SYN, 7, 0, &[]);
        let ip = Ipv6Packet::new(&frame[ETHERNET_HEADER_LEN..]).unwrap();
        assert_eq!(ip.get_next_header(), IpNextHeaderProtocols::Tcp);
        let seg = TcpPacket::new(ip.payload()).unwrap();
        assert_eq!(seg.get_data_offset(), 8);
        assert_eq!(seg.get_options_raw().len(), 12);
        let (IpAddr::V6(s), IpAddr::V6(d)) = (src.ip(), dst.ip()) else { panic!() };
        assert_eq!(seg.get_checksum(), tcp::ipv6_checksum(&seg, &s, &d));
    }

    #[test]
    fn udp_over_both_families_has_valid_checksums() {
        let frame = udp(sa("10.244.1.10:5353"), sa("10.96.0.10:53"), b"abc");
        let ip = ipv4_of(&frame);
        let seg = UdpPacket::new(ip.payload()).unwrap();
        let check = udp::ipv4_checksum(&seg, &ip.get_source(), &ip.get_destination());
        assert_eq!(seg.get_checksum(), check);
        assert_eq!(seg.payload(), b"abc");

        let frame = udp(sa("[fd00::1]:1"), sa("[2001:db8::1]:2"), b"abcd");
        let ip = Ipv6Packet::new(&frame[ETHERNET_HEADER_LEN..]).unwrap();
        let seg = UdpPacket::new(ip.payload()).unwrap();
        let check = udp::ipv6_checksum(&seg, &ip.get_source(), &ip.get_destination());
        assert_eq!(seg.get_checksum(), check);
    }

    #[test]
    fn mixed_families_fall_back_to_ipv4_mapped_ipv6() {
        let frame = udp(sa("10.0.0.1:1"), sa("[2001:db8::1]:2"), b"");
        let ip = Ipv6Packet::new(&frame[ETHERNET_HEADER_LEN..]).unwrap();
        assert_eq!(ip.get_source(), "::ffff:10.0.0.1".parse::<Ipv6Addr>().unwrap());
    }

    #[test]
    fn sctp_init_has_a_valid_crc32c() {
        let frame = sctp_init(sa("10.244.1.12:36412"), sa("10.244.2.20:3868"));
        let ip = ipv4_of(&frame);
        assert_eq!(ip.get_next_level_protocol(), IpNextHeaderProtocols::Sctp);
        let mut sctp = ip.payload().to_vec();
        assert_eq!(sctp.len(), 32);
        assert_eq!(sctp[12], 1, "INIT chunk");
        let stored = u32::from_le_bytes(sctp[8..12].try_into().unwrap());
        sctp[8..12].fill(0);
        assert_eq!(stored, crc32c(&sctp));
    }

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn icmp_echo_has_valid_checksums_in_both_families() {
        let frame =
            icmp_echo("10.244.1.10".parse().unwrap(), "10.0.0.12".parse().unwrap(), 7, 1, true);
        let ip = ipv4_of(&frame);
        let icmp = IcmpPacket::new(ip.payload()).unwrap();
        assert_eq!(icmp.get_icmp_type(), IcmpTypes::EchoRequest);
        assert_eq!(icmp.get_checksum(), icmp::checksum(&icmp));
        let echo = EchoRequestPacket::new(ip.payload()).unwrap();
        assert_eq!((echo.get_identifier(), echo.get_sequence_number()), (7, 1));

        let (s, d): (Ipv6Addr, Ipv6Addr) =
            ("fd00::1".parse().unwrap(), "2001:db8::1".parse().unwrap());
        let frame = icmp_echo(s.into(), d.into(), 7, 2, false);
        let ip = Ipv6Packet::new(&frame[ETHERNET_HEADER_LEN..]).unwrap();
        let icmp = Icmpv6Packet::new(ip.payload()).unwrap();
        assert_eq!(icmp.get_icmpv6_type(), Icmpv6Types::EchoReply);
        assert_eq!(icmp.get_checksum(), icmpv6::checksum(&icmp, &s, &d));
    }

    #[test]
    fn arp_request_is_broadcast_and_reply_is_unicast() {
        let (a, b) = ("10.0.0.11".parse().unwrap(), "10.0.0.12".parse().unwrap());
        let frame = arp_request(a, b);
        let eth = EthernetPacket::new(&frame).unwrap();
        assert_eq!(eth.get_destination(), MacAddr::broadcast());
        let arp = ArpPacket::new(eth.payload()).unwrap();
        assert_eq!(arp.get_operation(), ArpOperations::Request);
        assert_eq!((arp.get_sender_proto_addr(), arp.get_target_proto_addr()), (a, b));

        let frame = arp_reply(b, a);
        let eth = EthernetPacket::new(&frame).unwrap();
        assert_eq!(eth.get_destination(), mac_for(a.into()));
        let arp = ArpPacket::new(eth.payload()).unwrap();
        assert_eq!(arp.get_sender_hw_addr(), mac_for(b.into()));
    }
}
