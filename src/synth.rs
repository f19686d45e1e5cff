//! Synthetic traffic: real, checksummed frames for the bundled demo, tests and benchmarks.
//!
//! Owns frame builders (Ethernet + IPv4/IPv6 + TCP/UDP/SCTP/ICMP, ARP), link-layer rewrites
//! (802.1Q, Linux cooked v1/v2, raw IP), IPv4 fragmentation and IPv6 extension headers, DNS /
//! TLS / HTTP payloads, a [`Timeline`] that keeps TCP sequence numbers and time right, the
//! demo [`scenario`], the streaming [`bench`] generator and a classic pcap writer. Everything is
//! pure and deterministic — no clock, no randomness, no I/O except the writer, which takes any
//! `std::io::Write`. It must never be used by the pipeline itself: it only produces its inputs.
//!
//! Frames are what a capture on a host would record: no Ethernet padding or FCS, TTL/hop
//! limit 64, every checksum valid, MAC addresses derived from the IP address ([`mac_for`]).

pub mod app;
pub mod bench;
pub mod dns;
pub mod frame;
pub mod pcap;
pub mod scenario;
pub mod timeline;
pub mod transform;

pub use app::{
    Body, http_request, http_response, http_scrape_request, tls_application_data,
    tls_client_finished, tls_client_hello, tls_server_hello,
};
pub use bench::bench_capture;
pub use frame::{arp_reply, arp_request, icmp_echo, mac_for, sctp_init, tcp, udp};
pub use pcap::{PcapWriter, write_pcap};
pub use timeline::{Exchange, Timeline};
pub use transform::{
    forwarded, fragment_ipv4, to_linux_sll, to_linux_sll2, to_raw_ip, with_ipv6_extension_headers,
    with_vlan,
};

/// One captured frame and when it was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimedFrame {
    /// Nanoseconds since the Unix epoch.
    pub ts_nanos: u64,
    pub frame: Vec<u8>,
}

impl TimedFrame {
    /// The frame as a capture source would hand it over (Ethernet, nothing cut by a snap length).
    #[must_use]
    pub fn as_frame(&self) -> crate::capture::Frame<'_> {
        crate::capture::Frame {
            ts: crate::time::Timestamp(self.ts_nanos),
            interface: 0,
            linktype: Some(crate::decode::LinkType::Ethernet),
            data: &self.frame,
            wire_len: u32::try_from(self.frame.len()).unwrap_or(u32::MAX),
        }
    }
}

/// pcap link-layer header types (`LINKTYPE_*`) the builders can produce.
pub mod linktype {
    pub const ETHERNET: u32 = 1;
    pub const RAW: u32 = 101;
    pub const LINUX_SLL: u32 = 113;
    pub const LINUX_SLL2: u32 = 276;
}

/// Nanoseconds per second and millisecond, for readable time arithmetic in scenarios.
pub const SECOND_NANOS: u64 = 1_000_000_000;
pub const MILLI_NANOS: u64 = 1_000_000;
pub const MICRO_NANOS: u64 = 1_000;

/// A 64-bit FNV-1a hash: the one source of "random-looking" but reproducible values (IPv4 ids,
/// initial sequence numbers, TLS randoms), so the same inputs always give the same bytes.
#[must_use]
pub fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in *part {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        // Separates parts so ("ab","c") and ("a","bc") differ.
        hash ^= 0xff;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}
