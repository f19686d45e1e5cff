//! The flow key: a canonical bidirectional 5-tuple, and the transport protocol it names.
//!
//! Both directions of a conversation map to one key, so the table needs one lookup per packet;
//! which side initiated is kept on the flow, not in the key.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Transport protocol of a flow, as carried in the IP header. In flow records it is its
/// [`name`](Protocol::name): `TCP`, …, `GRE`, `ESP`, or `IP/N` for another number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
    Icmp,
    Icmpv6,
    /// Any other IP protocol, by number (GRE, ESP, …).
    Other(u8),
}

impl Serialize for Protocol {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.name())
    }
}

/// Reads a name as [`Protocol::name`] writes it, or a bare protocol number (what records
/// written before names were used for other protocols carry).
impl<'de> Deserialize<'de> for Protocol {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written<'a> {
            Number(u8),
            Name(std::borrow::Cow<'a, str>),
        }
        match Written::deserialize(deserializer)? {
            Written::Number(number) => Ok(Self::from_ip_number(number)),
            Written::Name(name) => Self::from_name(&name).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "'{name}' is not a protocol (TCP, UDP, SCTP, ICMP, ICMPv6, GRE, ESP or IP/N)"
                ))
            }),
        }
    }
}

impl Protocol {
    /// The protocol for an IP protocol number (IPv4 protocol / IPv6 next header).
    #[must_use]
    pub fn from_ip_number(number: u8) -> Self {
        match number {
            6 => Self::Tcp,
            17 => Self::Udp,
            132 => Self::Sctp,
            1 => Self::Icmp,
            58 => Self::Icmpv6,
            other => Self::Other(other),
        }
    }

    /// Whether the protocol has ports (so a flow is keyed by them).
    #[must_use]
    pub fn has_ports(self) -> bool {
        matches!(self, Self::Tcp | Self::Udp | Self::Sctp)
    }

    /// The name used in records, tables and policy explanations.
    #[must_use]
    pub fn name(self) -> std::borrow::Cow<'static, str> {
        match self {
            Self::Tcp => "TCP".into(),
            Self::Udp => "UDP".into(),
            Self::Sctp => "SCTP".into(),
            Self::Icmp => "ICMP".into(),
            Self::Icmpv6 => "ICMPv6".into(),
            Self::Other(47) => "GRE".into(),
            Self::Other(50) => "ESP".into(),
            Self::Other(n) => format!("IP/{n}").into(),
        }
    }

    /// The IP protocol number (IPv4 protocol / IPv6 next header).
    #[must_use]
    pub fn ip_number(self) -> u8 {
        match self {
            Self::Tcp => 6,
            Self::Udp => 17,
            Self::Sctp => 132,
            Self::Icmp => 1,
            Self::Icmpv6 => 58,
            Self::Other(n) => n,
        }
    }

    /// The protocol [`name`](Self::name) gives.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "TCP" => Some(Self::Tcp),
            "UDP" => Some(Self::Udp),
            "SCTP" => Some(Self::Sctp),
            "ICMP" => Some(Self::Icmp),
            "ICMPv6" => Some(Self::Icmpv6),
            "GRE" => Some(Self::Other(47)),
            "ESP" => Some(Self::Other(50)),
            _ => name.strip_prefix("IP/")?.parse().ok().map(Self::from_ip_number),
        }
    }

    /// Parses the names Kubernetes uses (`TCP`, `UDP`, `SCTP`), case-insensitively.
    #[must_use]
    pub fn parse_l4(name: &str) -> Option<Self> {
        match name.to_ascii_uppercase().as_str() {
            "TCP" => Some(Self::Tcp),
            "UDP" => Some(Self::Udp),
            "SCTP" => Some(Self::Sctp),
            _ => None,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// One side of a flow: an address and, for protocols with ports, a port (0 otherwise; for ICMP
/// echo, the echo identifier, so that pings from one host stay separate flows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketEnd {
    pub ip: IpAddr,
    pub port: u16,
}

impl SocketEnd {
    /// The end as integers: whether the address is IPv6, the address as 128 bits, the port.
    /// Comparing and hashing read these: the derived ones went through the enum and an IPv6
    /// address sixteen bits (comparing) or a byte (hashing) at a time, and every packet puts
    /// its two ends in order and hashes its key.
    #[inline]
    fn words(self) -> (bool, u128, u16) {
        match self.ip {
            IpAddr::V4(v4) => (false, u128::from(v4.to_bits()), self.port),
            IpAddr::V6(v6) => (true, v6.to_bits(), self.port),
        }
    }

    /// [`words`](Self::words) with the family and port in one word, for hashing.
    #[inline]
    fn hash_words(self) -> (u128, u64) {
        let (v6, address, port) = self.words();
        (address, u64::from(port) | u64::from(v6) << 16)
    }
}

/// The order `IpAddr`'s own gives (IPv4 before IPv6, then by address), then by port.
impl Ord for SocketEnd {
    #[inline]
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.words().cmp(&other.words())
    }
}

impl PartialOrd for SocketEnd {
    #[inline]
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Hash for SocketEnd {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let (ip, rest) = self.hash_words();
        state.write_u128(ip);
        state.write_u64(rest);
    }
}

impl fmt::Display for SocketEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ip {
            IpAddr::V4(ip) => write!(f, "{ip}:{}", self.port),
            IpAddr::V6(ip) => write!(f, "[{ip}]:{}", self.port),
        }
    }
}

/// The canonical key: the lower end first, so both directions of a conversation are equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct FlowKey {
    pub protocol: Protocol,
    pub low: SocketEnd,
    pub high: SocketEnd,
}

impl Hash for FlowKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let (low_ip, low_rest) = self.low.hash_words();
        let (high_ip, high_rest) = self.high.hash_words();
        state.write_u128(low_ip);
        state.write_u128(high_ip);
        state.write_u64(low_rest | high_rest << 17 | u64::from(self.protocol.ip_number()) << 34);
    }
}

impl FlowKey {
    /// The key for a packet from `src` to `dst`, and whether `src` is the key's `low` end.
    #[must_use]
    #[inline]
    pub fn canonical(protocol: Protocol, src: SocketEnd, dst: SocketEnd) -> (Self, bool) {
        if src <= dst {
            (Self { protocol, low: src, high: dst }, true)
        } else {
            (Self { protocol, low: dst, high: src }, false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_directions_share_one_key() {
        let a = SocketEnd { ip: "10.0.0.2".parse().unwrap(), port: 40000 };
        let b = SocketEnd { ip: "10.0.0.1".parse().unwrap(), port: 80 };
        let (k1, a_low) = FlowKey::canonical(Protocol::Tcp, a, b);
        let (k2, b_low) = FlowKey::canonical(Protocol::Tcp, b, a);
        assert_eq!(k1, k2);
        assert_ne!(a_low, b_low);
    }

    #[test]
    fn keys_that_differ_only_in_address_family_hash_apart() {
        let hash = |key: &FlowKey| {
            use std::hash::BuildHasher;
            rustc_hash::FxBuildHasher.hash_one(key)
        };
        let end = |ip: &str, port| SocketEnd { ip: ip.parse().unwrap(), port };
        let v4 = FlowKey::canonical(Protocol::Udp, end("0.0.0.1", 53), end("0.0.0.2", 53)).0;
        let v6 = FlowKey::canonical(Protocol::Udp, end("::1", 53), end("::2", 53)).0;
        assert_ne!(v4, v6);
        assert_ne!(hash(&v4), hash(&v6));
        // The ports are packed into one word: a port moved to the other end must still count.
        let one_way = FlowKey::canonical(Protocol::Udp, end("0.0.0.1", 1), end("0.0.0.2", 2)).0;
        let other_way = FlowKey::canonical(Protocol::Udp, end("0.0.0.1", 2), end("0.0.0.2", 1)).0;
        assert_ne!(hash(&one_way), hash(&other_way));
        let tcp = FlowKey { protocol: Protocol::Tcp, ..v4 };
        assert_ne!(hash(&v4), hash(&tcp));
    }

    fn socket_end() -> impl proptest::strategy::Strategy<Value = SocketEnd> {
        use proptest::prelude::*;
        // Few values, so that equal addresses and ports come up as often as unequal ones.
        // Values apart in their first, middle and last bytes: a byte order mistaken anywhere
        // puts some pair the other way round.
        let v4 = prop_oneof![Just(0u32), Just(1), Just(0x100), Just(0x0100_0000), Just(u32::MAX)]
            .prop_map(|bits| IpAddr::from(std::net::Ipv4Addr::from_bits(bits)));
        let v6 = prop_oneof![Just(0u128), Just(1), Just(0x100), Just(1 << 64), Just(1 << 120)]
            .prop_map(|bits| IpAddr::from(std::net::Ipv6Addr::from_bits(bits)));
        (prop_oneof![v4, v6], 0u16..3).prop_map(|(ip, port)| SocketEnd { ip, port })
    }

    proptest::proptest! {
        #[test]
        fn ends_are_ordered_by_address_then_port(a in socket_end(), b in socket_end()) {
            // The reference: IpAddr's own order, then the port.
            proptest::prop_assert_eq!(a.cmp(&b), (a.ip, a.port).cmp(&(b.ip, b.port)));
            let (key, a_low) = FlowKey::canonical(Protocol::Tcp, a, b);
            proptest::prop_assert_eq!(a_low, a <= b);
            proptest::prop_assert!(key.low <= key.high);
        }
    }

    #[test]
    fn every_ip_protocol_number_round_trips() {
        for number in 0..=u8::MAX {
            assert_eq!(Protocol::from_ip_number(number).ip_number(), number);
        }
    }

    #[test]
    fn protocol_names_round_trip_through_json() {
        for number in 0..=u8::MAX {
            let p = Protocol::from_ip_number(number);
            let text = serde_json::to_string(&p).unwrap();
            assert_eq!(text, format!("\"{}\"", p.name()));
            assert_eq!(serde_json::from_str::<Protocol>(&text).unwrap(), p);
        }
        assert_eq!(serde_json::to_string(&Protocol::Other(47)).unwrap(), "\"GRE\"");
        // Older records carry other protocols as a bare number.
        assert_eq!(serde_json::from_str::<Protocol>("47").unwrap(), Protocol::Other(47));
        assert_eq!(serde_json::from_str::<Protocol>("6").unwrap(), Protocol::Tcp);
        assert!(serde_json::from_str::<Protocol>("\"tcp\"").is_err());
        assert!(serde_json::from_str::<Protocol>("\"IP/300\"").is_err());
    }
}
