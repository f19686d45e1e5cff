//! Conversations in time: TCP sessions with correct sequence and acknowledgement numbers, UDP
//! and DNS exchanges, unanswered SYNs, pings — placed on a timeline of packet timestamps.
//!
//! A [`Timeline`] collects frames from many conversations, which may overlap, and hands them
//! back ordered by time. Timing models one capture point next to the client: a reply arrives one
//! round trip (plus server think time) after the request. Initial sequence numbers are derived
//! from the endpoints and start time, so the same calls always give the same bytes.

use std::net::{IpAddr, SocketAddr};

use pnet::packet::tcp::TcpFlags;

use super::dns::{self, Answer};
use super::frame::{icmp_echo, tcp, udp};
use super::{MICRO_NANOS, SECOND_NANOS, TimedFrame, fnv1a};

/// Between back-to-back segments from one sender.
const SEGMENT_GAP_NANOS: u64 = 12 * MICRO_NANOS;
/// How long a client takes to acknowledge or to send its next segment.
const CLIENT_DELAY_NANOS: u64 = 35 * MICRO_NANOS;
/// Linux's initial SYN retransmission timeout; it doubles on each retry.
const SYN_RTO_NANOS: u64 = SECOND_NANOS;

/// One request/response turn on a TCP connection.
#[derive(Debug, Clone, Copy)]
pub struct Exchange<'a> {
    /// Idle time before the client sends `request` (after the previous turn).
    pub pause_nanos: u64,
    /// What the client sends; empty for a server push.
    pub request: &'a [u8],
    /// What the server answers; empty for none (the server only acknowledges).
    pub response: &'a [u8],
}

/// Collects frames of overlapping conversations; see the module docs.
#[derive(Debug, Clone)]
pub struct Timeline {
    frames: Vec<TimedFrame>,
    rtt_nanos: u64,
    think_nanos: u64,
}

impl Default for Timeline {
    fn default() -> Self {
        Self::new()
    }
}

impl Timeline {
    /// An empty timeline with in-cluster timing: 200 µs round trip, 300 µs server think time.
    #[must_use]
    pub fn new() -> Self {
        Self { frames: Vec::new(), rtt_nanos: 200 * MICRO_NANOS, think_nanos: 300 * MICRO_NANOS }
    }

    /// Sets the round-trip and server think times for the conversations added next.
    pub fn set_timing(&mut self, rtt_nanos: u64, think_nanos: u64) -> &mut Self {
        self.rtt_nanos = rtt_nanos.max(1);
        self.think_nanos = think_nanos;
        self
    }

    /// Adds one frame as is (an ARP, a fragment, anything built by hand).
    pub fn push(&mut self, ts_nanos: u64, frame: Vec<u8>) {
        self.frames.push(TimedFrame { ts_nanos, frame });
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// The frames so far, in the order they were added.
    #[must_use]
    pub fn frames(&self) -> &[TimedFrame] {
        &self.frames
    }

    /// All frames ordered by timestamp (frames with equal timestamps keep the order added).
    #[must_use]
    pub fn into_frames(mut self) -> Vec<TimedFrame> {
        self.frames.sort_by_key(|f| f.ts_nanos);
        self.frames
    }

    /// A whole TCP connection with one request and one response: handshake, data with
    /// acknowledgements, and (if `close`) the client's FIN, the server's FIN and the last ACK.
    /// Returns the timestamp of the last frame.
    pub fn tcp_session(
        &mut self,
        client: SocketAddr,
        server: SocketAddr,
        start_nanos: u64,
        request: &[u8],
        response: &[u8],
        close: bool,
    ) -> u64 {
        let exchange = Exchange { pause_nanos: 0, request, response };
        self.tcp_conversation(client, server, start_nanos, &[exchange], close)
    }

    /// A TCP connection with any number of turns (keep-alive, TLS handshake then requests,
    /// server pushes). Returns the timestamp of the last frame.
    pub fn tcp_conversation(
        &mut self,
        client: SocketAddr,
        server: SocketAddr,
        start_nanos: u64,
        exchanges: &[Exchange<'_>],
        close: bool,
    ) -> u64 {
        let seed = fnv1a(&[
            client.to_string().as_bytes(),
            server.to_string().as_bytes(),
            &start_nanos.to_be_bytes(),
        ]);
        let mut c = Side { addr: client, seq: seed as u32 };
        let mut s = Side { addr: server, seq: (seed >> 32) as u32 };
        let mss = if server.is_ipv4() { 1460 } else { 1440 };
        let (rtt, think) = (self.rtt_nanos, self.think_nanos);
        let mut t = start_nanos;

        self.push(t, tcp(client, server, TcpFlags::SYN, c.seq, 0, &[]));
        c.seq = c.seq.wrapping_add(1);
        t += rtt;
        self.push(t, tcp(server, client, TcpFlags::SYN | TcpFlags::ACK, s.seq, c.seq, &[]));
        s.seq = s.seq.wrapping_add(1);
        t += CLIENT_DELAY_NANOS;
        self.push(t, c.segment(&s, TcpFlags::ACK, &[]));

        for exchange in exchanges {
            t += exchange.pause_nanos;
            if !exchange.request.is_empty() {
                t += CLIENT_DELAY_NANOS;
                t = self.send(&mut c, &s, t, exchange.request, mss) - SEGMENT_GAP_NANOS;
            }
            if exchange.response.is_empty() {
                if !exchange.request.is_empty() {
                    t += rtt;
                    self.push(t, s.segment(&c, TcpFlags::ACK, &[]));
                }
                continue;
            }
            // A reply to a request comes a round trip plus think time later; a push just comes.
            t += if exchange.request.is_empty() { CLIENT_DELAY_NANOS } else { rtt + think };
            for (index, chunk) in exchange.response.chunks(mss).enumerate() {
                let last = (index + 1) * mss >= exchange.response.len();
                let flags = if last { TcpFlags::PSH | TcpFlags::ACK } else { TcpFlags::ACK };
                self.push(t, s.segment(&c, flags, chunk));
                s.seq = s.seq.wrapping_add(chunk.len() as u32);
                // Delayed ACK: every second full segment, and at the end of the reply.
                if last || index % 2 == 1 {
                    t += CLIENT_DELAY_NANOS / 7;
                    self.push(t, c.segment(&s, TcpFlags::ACK, &[]));
                }
                t += SEGMENT_GAP_NANOS;
            }
        }

        if close {
            t += CLIENT_DELAY_NANOS;
            self.push(t, c.segment(&s, TcpFlags::FIN | TcpFlags::ACK, &[]));
            c.seq = c.seq.wrapping_add(1);
            t += rtt;
            self.push(t, s.segment(&c, TcpFlags::FIN | TcpFlags::ACK, &[]));
            s.seq = s.seq.wrapping_add(1);
            t += CLIENT_DELAY_NANOS;
            self.push(t, c.segment(&s, TcpFlags::ACK, &[]));
        }
        t
    }

    /// Sends `data` from `from` in MSS-sized segments (PSH on the last); returns the time after.
    fn send(&mut self, from: &mut Side, to: &Side, mut t: u64, data: &[u8], mss: usize) -> u64 {
        for (index, chunk) in data.chunks(mss).enumerate() {
            let last = (index + 1) * mss >= data.len();
            let flags = if last { TcpFlags::PSH | TcpFlags::ACK } else { TcpFlags::ACK };
            self.push(t, from.segment(to, flags, chunk));
            from.seq = from.seq.wrapping_add(chunk.len() as u32);
            t += SEGMENT_GAP_NANOS;
        }
        t
    }

    /// A SYN sent `attempts` times with Linux's back-off (1 s, 2 s, 4 s, …) and never answered.
    /// Returns the timestamp of the last SYN.
    pub fn tcp_syn_unanswered(
        &mut self,
        client: SocketAddr,
        server: SocketAddr,
        start_nanos: u64,
        attempts: u32,
    ) -> u64 {
        let seed = fnv1a(&[
            client.to_string().as_bytes(),
            server.to_string().as_bytes(),
            &start_nanos.to_be_bytes(),
        ]);
        let (mut t, mut rto) = (start_nanos, SYN_RTO_NANOS);
        for attempt in 0..attempts.max(1) {
            if attempt > 0 {
                t += rto;
                rto *= 2;
            }
            self.push(t, tcp(client, server, TcpFlags::SYN, seed as u32, 0, &[]));
        }
        t
    }

    /// One UDP datagram and, if given, its answer a round trip later. Returns the last timestamp.
    pub fn udp_exchange(
        &mut self,
        client: SocketAddr,
        server: SocketAddr,
        start_nanos: u64,
        request: &[u8],
        response: Option<&[u8]>,
    ) -> u64 {
        self.push(start_nanos, udp(client, server, request));
        match response {
            Some(response) => {
                let t = start_nanos + self.rtt_nanos + self.think_nanos;
                self.push(t, udp(server, client, response));
                t
            }
            None => start_nanos,
        }
    }

    /// A DNS lookup over UDP: the query for `name` and the resolver's answer. The query type is
    /// AAAA when any answer is an AAAA record, else A. Returns the last timestamp.
    pub fn dns_exchange(
        &mut self,
        client: SocketAddr,
        server: SocketAddr,
        start_nanos: u64,
        id: u16,
        name: &str,
        answers: &[Answer],
    ) -> u64 {
        let qtype = query_type(answers);
        let query = dns::query(id, name, qtype);
        let response = dns::response(id, name, qtype, answers);
        self.udp_exchange(client, server, start_nanos, &query, Some(&response))
    }

    /// The same lookup over TCP: a connection carrying one length-prefixed query and answer.
    pub fn dns_exchange_tcp(
        &mut self,
        client: SocketAddr,
        server: SocketAddr,
        start_nanos: u64,
        id: u16,
        name: &str,
        answers: &[Answer],
    ) -> u64 {
        let qtype = query_type(answers);
        let query = dns::tcp_framed(&dns::query(id, name, qtype));
        let response = dns::tcp_framed(&dns::response(id, name, qtype, answers));
        self.tcp_session(client, server, start_nanos, &query, &response, true)
    }

    /// `count` echo requests one second apart (sequence 1, 2, …), each answered a round trip
    /// later. Returns the last timestamp.
    pub fn ping(&mut self, src: IpAddr, dst: IpAddr, start_nanos: u64, id: u16, count: u16) -> u64 {
        let mut last = start_nanos;
        for seq in 1..=count {
            let t = start_nanos + u64::from(seq - 1) * SECOND_NANOS;
            self.push(t, icmp_echo(src, dst, id, seq, true));
            last = t + self.rtt_nanos;
            self.push(last, icmp_echo(dst, src, id, seq, false));
        }
        last
    }
}

fn query_type(answers: &[Answer]) -> u16 {
    if answers.iter().any(|a| matches!(a, Answer::Aaaa { .. })) {
        dns::TYPE_AAAA
    } else {
        dns::TYPE_A
    }
}

/// One end of a TCP connection: its address and next sequence number.
struct Side {
    addr: SocketAddr,
    seq: u32,
}

impl Side {
    /// A segment from this side to `peer`, acknowledging everything `peer` has sent.
    fn segment(&self, peer: &Side, flags: u8, payload: &[u8]) -> Vec<u8> {
        tcp(self.addr, peer.addr, flags, self.seq, peer.seq, payload)
    }
}

#[cfg(test)]
mod tests {
    use pnet::packet::Packet;
    use pnet::packet::ethernet::EthernetPacket;
    use pnet::packet::ipv4::Ipv4Packet;
    use pnet::packet::tcp::TcpPacket;

    use super::*;

    fn sa(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    struct Seg {
        from_client: bool,
        flags: u8,
        seq: u32,
        ack: u32,
        len: u32,
    }

    fn segments(frames: &[TimedFrame], client: SocketAddr) -> Vec<Seg> {
        frames
            .iter()
            .map(|f| {
                let eth = EthernetPacket::new(&f.frame).unwrap();
                let ip = Ipv4Packet::new(eth.payload()).unwrap();
                let seg = TcpPacket::new(ip.payload()).unwrap();
                Seg {
                    from_client: seg.get_source() == client.port(),
                    flags: seg.get_flags(),
                    seq: seg.get_sequence(),
                    ack: seg.get_acknowledgement(),
                    len: seg.payload().len() as u32,
                }
            })
            .collect()
    }

    #[test]
    fn tcp_session_keeps_sequence_and_acknowledgement_numbers_consistent() {
        let (client, server) = (sa("10.244.1.10:43122"), sa("10.96.12.5:80"));
        let mut timeline = Timeline::new();
        let response = vec![b'x'; 5000];
        timeline.tcp_session(client, server, 1_000, b"GET / HTTP/1.1\r\n\r\n", &response, true);
        let frames = timeline.into_frames();
        assert!(frames.windows(2).all(|w| w[0].ts_nanos < w[1].ts_nanos), "strictly increasing");
        let segs = segments(&frames, client);
        assert_eq!(segs[0].flags, TcpFlags::SYN);
        assert_eq!(segs[1].flags, TcpFlags::SYN | TcpFlags::ACK);
        assert_eq!(segs[1].ack, segs[0].seq.wrapping_add(1));
        // Replay both sides' byte counts: every segment starts where that side left off, and
        // every ACK acknowledges exactly what the peer sent before it.
        let (mut next_c, mut next_s) = (segs[0].seq.wrapping_add(1), segs[1].seq.wrapping_add(1));
        for seg in &segs[2..] {
            let syn_fin = u32::from(seg.flags & (TcpFlags::SYN | TcpFlags::FIN) != 0);
            if seg.from_client {
                assert_eq!((seg.seq, seg.ack), (next_c, next_s));
                next_c = next_c.wrapping_add(seg.len + syn_fin);
            } else {
                assert_eq!((seg.seq, seg.ack), (next_s, next_c));
                next_s = next_s.wrapping_add(seg.len + syn_fin);
            }
        }
        let server_bytes: u32 = segs.iter().filter(|s| !s.from_client).map(|s| s.len).sum();
        assert_eq!(server_bytes, 5000);
        let fins = segs.iter().filter(|s| s.flags & TcpFlags::FIN != 0).count();
        assert_eq!(fins, 2);
        assert_eq!(segs.last().unwrap().flags, TcpFlags::ACK);
    }

    #[test]
    fn unanswered_syn_is_retransmitted_with_back_off_and_the_same_sequence() {
        let mut timeline = Timeline::new();
        let last =
            timeline.tcp_syn_unanswered(sa("10.244.1.11:40000"), sa("203.0.113.99:443"), 0, 4);
        assert_eq!(last, 7 * SECOND_NANOS);
        let frames = timeline.into_frames();
        let segs = segments(&frames, sa("10.244.1.11:40000"));
        assert_eq!(segs.len(), 4);
        assert!(segs.iter().all(|s| s.flags == TcpFlags::SYN && s.seq == segs[0].seq));
    }

    #[test]
    fn dns_exchange_asks_for_aaaa_when_the_answer_is_ipv6() {
        let mut timeline = Timeline::new();
        let answers = [Answer::Aaaa {
            name: "a.example".into(),
            ip: "2001:db8::10".parse().unwrap(),
            ttl: 60,
        }];
        timeline.dns_exchange(
            sa("10.244.1.30:40000"),
            sa("10.96.0.10:53"),
            0,
            5,
            "a.example",
            &answers,
        );
        let frames = timeline.into_frames();
        assert_eq!(frames.len(), 2);
        let eth = EthernetPacket::new(&frames[0].frame).unwrap();
        let ip = Ipv4Packet::new(eth.payload()).unwrap();
        let query = dns_parser::Packet::parse(&ip.payload()[8..]).unwrap();
        assert_eq!(query.questions[0].qtype, dns_parser::QueryType::AAAA);
    }

    #[test]
    fn ping_pairs_each_request_with_a_reply() {
        let mut timeline = Timeline::new();
        timeline.ping("10.244.1.10".parse().unwrap(), "10.0.0.12".parse().unwrap(), 0, 1, 3);
        assert_eq!(timeline.len(), 6);
    }
}
