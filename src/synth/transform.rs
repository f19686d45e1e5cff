//! Rewrites of finished Ethernet frames: 802.1Q tags, Linux cooked headers (v1 and v2), raw IP,
//! IPv4 fragmentation, IPv6 extension headers, and a router's forwarding (new MACs, TTL - 1).
//!
//! These exist so decoders are tested on every link type and L3 shape a capture can hold, from
//! the same frames the builders make. They never recompute L4 checksums: none of the rewrites
//! changes what an L4 checksum covers. Input that a rewrite does not apply to is returned
//! unchanged (fragmenting a non-IPv4 frame) or, when the output format cannot carry it (ARP as
//! raw IP, a frame shorter than an Ethernet header), gives an empty frame.

use pnet::packet::ipv4::{self, MutableIpv4Packet};

use super::frame::{ETHERNET_HEADER_LEN, IPV4_HEADER_LEN, IPV6_HEADER_LEN};

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
const ARPHRD_ETHER: u16 = 1;
/// Linux `PACKET_*` packet types, as the cooked headers carry them.
const PACKET_HOST: u8 = 0;
const PACKET_BROADCAST: u8 = 1;
const PACKET_MULTICAST: u8 = 2;
const IPV4_FLAG_MORE_FRAGMENTS: u8 = 0b001;

/// Where the L3 header starts (after any VLAN tags) and its ethertype.
fn l3_start(frame: &[u8]) -> Option<(usize, u16)> {
    let mut at = 12;
    loop {
        let ethertype = u16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]);
        if ethertype == ETHERTYPE_VLAN || ethertype == ETHERTYPE_QINQ {
            at += 4;
            continue;
        }
        return Some((at + 2, ethertype));
    }
}

/// Inserts an 802.1Q tag (priority 0) carrying `vlan_id` (its low 12 bits) after the MACs.
#[must_use]
pub fn with_vlan(frame: &[u8], vlan_id: u16) -> Vec<u8> {
    if frame.len() < ETHERNET_HEADER_LEN {
        return Vec::new();
    }
    let mut out = Vec::with_capacity(frame.len() + 4);
    out.extend_from_slice(&frame[..12]);
    out.extend_from_slice(&ETHERTYPE_VLAN.to_be_bytes());
    out.extend_from_slice(&(vlan_id & 0x0fff).to_be_bytes());
    out.extend_from_slice(&frame[12..]);
    out
}

/// The packet type a receiving Linux host would record for this destination MAC.
fn packet_type(frame: &[u8]) -> u8 {
    if frame[..6] == [0xff; 6] {
        PACKET_BROADCAST
    } else if frame[0] & 1 == 1 {
        PACKET_MULTICAST
    } else {
        PACKET_HOST
    }
}

/// Ethernet → Linux cooked v1 (`LINKTYPE_LINUX_SLL`, 113): the source MAC moves into the
/// 16-byte cooked header; VLAN tags stay in the payload, as Linux delivers them.
#[must_use]
pub fn to_linux_sll(frame: &[u8]) -> Vec<u8> {
    if frame.len() < ETHERNET_HEADER_LEN {
        return Vec::new();
    }
    let mut out = Vec::with_capacity(frame.len() + 2);
    out.extend_from_slice(&u16::from(packet_type(frame)).to_be_bytes());
    out.extend_from_slice(&ARPHRD_ETHER.to_be_bytes());
    out.extend_from_slice(&6u16.to_be_bytes());
    out.extend_from_slice(&frame[6..12]);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&frame[12..]);
    out
}

/// Ethernet → Linux cooked v2 (`LINKTYPE_LINUX_SLL2`, 276), which also records the interface.
#[must_use]
pub fn to_linux_sll2(frame: &[u8], ifindex: u32) -> Vec<u8> {
    if frame.len() < ETHERNET_HEADER_LEN {
        return Vec::new();
    }
    let mut out = Vec::with_capacity(frame.len() + 6);
    out.extend_from_slice(&frame[12..14]);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&ifindex.to_be_bytes());
    out.extend_from_slice(&ARPHRD_ETHER.to_be_bytes());
    out.push(packet_type(frame));
    out.push(6);
    out.extend_from_slice(&frame[6..12]);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&frame[14..]);
    out
}

/// Ethernet → raw IP (`LINKTYPE_RAW`, 101): the Ethernet header and VLAN tags go. Non-IP frames
/// give an empty frame, since raw IP cannot carry them.
#[must_use]
pub fn to_raw_ip(frame: &[u8]) -> Vec<u8> {
    match l3_start(frame) {
        Some((at, ETHERTYPE_IPV4 | ETHERTYPE_IPV6)) => frame[at..].to_vec(),
        _ => Vec::new(),
    }
}

/// The frame as a router forwards it: new MAC addresses, and the IPv4 TTL (header checksum
/// updated) or IPv6 hop limit one lower — what a node's uplink shows of a pod's packet. A
/// non-IP frame only gets the new MACs; a frame too short for a header comes back unchanged.
#[must_use]
pub fn forwarded(frame: &[u8], src_mac: [u8; 6], dst_mac: [u8; 6]) -> Vec<u8> {
    let mut out = frame.to_vec();
    if out.len() < ETHERNET_HEADER_LEN {
        return out;
    }
    out[..6].copy_from_slice(&dst_mac);
    out[6..12].copy_from_slice(&src_mac);
    match l3_start(frame) {
        Some((at, ETHERTYPE_IPV4)) => {
            if let Some(mut packet) = out.get_mut(at..).and_then(MutableIpv4Packet::new) {
                packet.set_ttl(packet.get_ttl().saturating_sub(1));
                packet.set_checksum(ipv4::checksum(&packet.to_immutable()));
            }
        }
        Some((at, ETHERTYPE_IPV6)) if out.len() >= at + IPV6_HEADER_LEN => {
            out[at + 7] = out[at + 7].saturating_sub(1);
        }
        _ => {}
    }
    out
}

/// Splits an IPv4 frame into fragments whose IP payloads hold at most `max_payload` bytes
/// (rounded down to a multiple of 8, at least 8). DF is cleared; each fragment keeps the
/// original header (and id) with its own offset, MF flag, length and checksum. A non-IPv4
/// frame, or one that already fits, comes back as the only element.
#[must_use]
pub fn fragment_ipv4(frame: &[u8], max_payload: usize) -> Vec<Vec<u8>> {
    fragments(frame, max_payload).unwrap_or_else(|| vec![frame.to_vec()])
}

fn fragments(frame: &[u8], max_payload: usize) -> Option<Vec<Vec<u8>>> {
    let (at, ethertype) = l3_start(frame)?;
    if ethertype != ETHERTYPE_IPV4 {
        return None;
    }
    let ip = frame.get(at..)?;
    let header_len = usize::from(ip.first()? & 0x0f) * 4;
    let total_len = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
    if header_len < IPV4_HEADER_LEN || total_len < header_len {
        return None;
    }
    let header = ip.get(..header_len)?;
    let payload = ip.get(header_len..total_len)?;
    let chunk = (max_payload / 8 * 8).max(8);
    if payload.len() <= chunk {
        return None;
    }
    // A frame that is itself a fragment keeps its place in the original datagram.
    let flags_and_offset = u16::from_be_bytes([*ip.get(6)?, *ip.get(7)?]);
    let base_offset = usize::from(flags_and_offset & 0x1fff) * 8;
    let was_last = flags_and_offset & 0x2000 == 0;
    let mut out = Vec::new();
    for (index, piece) in payload.chunks(chunk).enumerate() {
        let is_last = (index + 1) * chunk >= payload.len();
        let mut fragment = Vec::with_capacity(at + header_len + piece.len());
        fragment.extend_from_slice(&frame[..at]);
        fragment.extend_from_slice(header);
        fragment.extend_from_slice(piece);
        let mut packet = MutableIpv4Packet::new(&mut fragment[at..])?;
        packet.set_total_length(u16::try_from(header_len + piece.len()).ok()?);
        let more = !is_last || !was_last;
        packet.set_flags(if more { IPV4_FLAG_MORE_FRAGMENTS } else { 0 });
        packet.set_fragment_offset(u16::try_from((base_offset + index * chunk) / 8).ok()?);
        packet.set_checksum(ipv4::checksum(&packet.to_immutable()));
        out.push(fragment);
    }
    Some(out)
}

/// An IPv6 frame with a hop-by-hop options header and a destination options header (each
/// eight bytes of PadN) inserted before whatever followed the fixed header. Other frames come
/// back unchanged. The L4 checksum stays valid: its pseudo-header does not cover them.
#[must_use]
pub fn with_ipv6_extension_headers(frame: &[u8]) -> Vec<u8> {
    extension_headers(frame).unwrap_or_else(|| frame.to_vec())
}

fn extension_headers(frame: &[u8]) -> Option<Vec<u8>> {
    const HOP_BY_HOP: u8 = 0;
    const DESTINATION_OPTIONS: u8 = 60;
    const PAD_N: u8 = 1;
    let (at, ethertype) = l3_start(frame)?;
    if ethertype != ETHERTYPE_IPV6 {
        return None;
    }
    let ip = frame.get(at..at + IPV6_HEADER_LEN)?;
    let next_header = ip[6];
    let payload_len = u16::from_be_bytes([ip[4], ip[5]]).checked_add(16)?;
    let mut out = Vec::with_capacity(frame.len() + 16);
    out.extend_from_slice(&frame[..at]);
    out.extend_from_slice(&ip[..4]);
    out.extend_from_slice(&payload_len.to_be_bytes());
    out.push(HOP_BY_HOP);
    out.extend_from_slice(&ip[7..]);
    // Each header: next header, length in 8-byte units beyond the first (0), one PadN option
    // filling the remaining six bytes.
    out.extend_from_slice(&[DESTINATION_OPTIONS, 0, PAD_N, 4, 0, 0, 0, 0]);
    out.extend_from_slice(&[next_header, 0, PAD_N, 4, 0, 0, 0, 0]);
    out.extend_from_slice(&frame[at + IPV6_HEADER_LEN..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use pnet::packet::Packet;
    use pnet::packet::ethernet::{EtherTypes, EthernetPacket};
    use pnet::packet::ip::IpNextHeaderProtocols;
    use pnet::packet::ipv4::Ipv4Packet;
    use pnet::packet::ipv6::{ExtensionPacket, Ipv6Packet};
    use pnet::packet::sll::SLLPacket;
    use pnet::packet::sll2::SLL2Packet;
    use pnet::packet::tcp::{self, TcpFlags, TcpPacket};
    use pnet::packet::udp::{self, UdpPacket};
    use pnet::packet::vlan::VlanPacket;

    use super::*;
    use crate::synth::frame::{arp_request, mac_for, tcp, udp};

    fn sa(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    fn sample() -> Vec<u8> {
        tcp(sa("10.244.1.10:40000"), sa("10.96.12.5:80"), TcpFlags::ACK, 1, 2, b"payload")
    }

    #[test]
    fn vlan_tag_is_inserted_after_the_macs() {
        let frame = with_vlan(&sample(), 42);
        let eth = EthernetPacket::new(&frame).unwrap();
        assert_eq!(eth.get_ethertype(), EtherTypes::Vlan);
        let vlan = VlanPacket::new(eth.payload()).unwrap();
        assert_eq!(vlan.get_vlan_identifier(), 42);
        assert_eq!(vlan.get_ethertype(), EtherTypes::Ipv4);
        assert_eq!(vlan.payload(), &sample()[14..]);
    }

    #[test]
    fn linux_cooked_v1_keeps_the_source_mac_and_protocol() {
        let original = sample();
        let frame = to_linux_sll(&original);
        let sll = SLLPacket::new(&frame).unwrap();
        assert_eq!(sll.get_protocol(), EtherTypes::Ipv4);
        assert_eq!(sll.get_link_layer_address_len(), 6);
        assert_eq!(&sll.get_link_layer_address()[..6], &original[6..12]);
        assert_eq!(sll.payload(), &original[14..]);
    }

    #[test]
    fn linux_cooked_v2_records_the_interface_and_broadcasts() {
        let frame = to_linux_sll2(
            &arp_request("10.0.0.11".parse().unwrap(), "10.0.0.12".parse().unwrap()),
            7,
        );
        let sll = SLL2Packet::new(&frame).unwrap();
        assert_eq!(sll.get_protocol_type(), EtherTypes::Arp);
        assert_eq!(sll.get_interface_index(), 7);
        assert_eq!(sll.get_packet_type(), PACKET_BROADCAST);
        assert_eq!(
            &sll.get_link_layer_address()[..6],
            &mac_for("10.0.0.11".parse().unwrap()).octets()
        );
    }

    #[test]
    fn a_forwarded_frame_has_new_macs_one_less_ttl_and_a_valid_checksum() {
        let original = sample();
        let (router, next_hop) = ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        let frame = forwarded(&original, router, next_hop);
        let eth = EthernetPacket::new(&frame).unwrap();
        assert_eq!(eth.get_source().octets(), router);
        assert_eq!(eth.get_destination().octets(), next_hop);
        let ip = Ipv4Packet::new(eth.payload()).unwrap();
        assert_eq!(ip.get_ttl(), 63);
        assert_eq!(ip.get_checksum(), ipv4::checksum(&ip));
        assert_eq!(&frame[14 + 12..], &original[14 + 12..], "addresses and payload unchanged");
        let v6 = tcp(sa("[fd00::1]:1"), sa("[fd00::2]:2"), TcpFlags::ACK, 1, 2, b"x");
        assert_eq!(forwarded(&v6, router, next_hop)[14 + 7], 63);
        assert_eq!(forwarded(&[1, 2, 3], router, next_hop), [1, 2, 3]);
    }

    #[test]
    fn raw_ip_strips_ethernet_and_vlan_tags_and_drops_arp() {
        let original = sample();
        assert_eq!(to_raw_ip(&with_vlan(&original, 3)), &original[14..]);
        let ip = to_raw_ip(&original);
        assert!(Ipv4Packet::new(&ip).is_some());
        assert!(
            to_raw_ip(&arp_request("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap()))
                .is_empty()
        );
    }

    #[test]
    fn fragments_reassemble_to_the_original_payload() {
        let payload: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        let original = udp(sa("10.244.1.30:41000"), sa("198.51.100.30:8125"), &payload);
        let fragments = fragment_ipv4(&original, 1480);
        assert_eq!(fragments.len(), 3);
        let mut reassembled = vec![0u8; 8 + payload.len()];
        let mut ids = Vec::new();
        for (i, fragment) in fragments.iter().enumerate() {
            let ip = Ipv4Packet::new(&fragment[14..]).unwrap();
            assert_eq!(ip.get_checksum(), ipv4::checksum(&ip));
            assert_eq!(usize::from(ip.get_total_length()), fragment.len() - 14);
            let more = ip.get_flags() & IPV4_FLAG_MORE_FRAGMENTS != 0;
            assert_eq!(more, i + 1 < fragments.len());
            let offset = usize::from(ip.get_fragment_offset()) * 8;
            assert!(ip.payload().len() <= 1480);
            if more {
                assert_eq!(ip.payload().len() % 8, 0, "non-final fragments are 8-byte aligned");
            }
            reassembled[offset..offset + ip.payload().len()].copy_from_slice(ip.payload());
            ids.push(ip.get_identification());
        }
        ids.dedup();
        assert_eq!(ids.len(), 1, "all fragments share the datagram's id");
        let whole = Ipv4Packet::new(&original[14..]).unwrap();
        assert_eq!(reassembled, whole.payload());
        let seg = UdpPacket::new(&reassembled).unwrap();
        assert_eq!(seg.payload(), payload);
        assert_eq!(
            seg.get_checksum(),
            udp::ipv4_checksum(&seg, &whole.get_source(), &whole.get_destination())
        );
    }

    #[test]
    fn a_frame_that_fits_is_not_fragmented() {
        let original = sample();
        assert_eq!(fragment_ipv4(&original, 1480), vec![original]);
    }

    #[test]
    fn ipv6_extension_headers_chain_to_the_original_l4_with_its_checksum_intact() {
        let original =
            tcp(sa("[fd00:10:244:1::a]:40000"), sa("[2001:db8::10]:443"), TcpFlags::SYN, 9, 0, &[]);
        let frame = with_ipv6_extension_headers(&original);
        assert_eq!(frame.len(), original.len() + 16);
        let ip = Ipv6Packet::new(&frame[14..]).unwrap();
        assert_eq!(ip.get_next_header(), IpNextHeaderProtocols::Hopopt);
        assert_eq!(usize::from(ip.get_payload_length()), frame.len() - 14 - 40);
        let hop = ExtensionPacket::new(ip.payload()).unwrap();
        assert_eq!(hop.get_next_header(), IpNextHeaderProtocols::Ipv6Opts);
        let dest = ExtensionPacket::new(&ip.payload()[8..]).unwrap();
        assert_eq!(dest.get_next_header(), IpNextHeaderProtocols::Tcp);
        let seg = TcpPacket::new(&ip.payload()[16..]).unwrap();
        assert_eq!(
            seg.get_checksum(),
            tcp::ipv6_checksum(&seg, &ip.get_source(), &ip.get_destination())
        );
    }
}
