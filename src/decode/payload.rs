//! The payload that matters of a decoded packet, kept where it was decoded: a DNS message, the
//! start of a TLS ClientHello or of an HTTP request.

use super::{Decoded, Packet, dns, http, tls};
use crate::flow::key::Protocol;

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
#[inline] // as `decode`, for the same stalls
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
mod tests;
