//! DNS message encoding: queries and responses with A, AAAA and CNAME answers.
//!
//! `dns-parser` only parses, so encoding lives here. Names are compressed the way servers do it
//! (a pointer to an earlier occurrence of the same suffix), so decoders meet real pointer chains.
//! Only what synthetic traffic needs: one question, answer records, no EDNS.

use std::net::{Ipv4Addr, Ipv6Addr};

pub const TYPE_A: u16 = 1;
pub const TYPE_CNAME: u16 = 5;
pub const TYPE_AAAA: u16 = 28;
pub const CLASS_IN: u16 = 1;
/// RD: the stub resolver asks for recursion.
const FLAGS_QUERY: u16 = 0x0100;
/// QR, RD, RA: a recursive resolver's answer.
const FLAGS_RESPONSE: u16 = 0x8180;
const RCODE_NXDOMAIN: u16 = 3;

/// One answer record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    A { name: String, ip: Ipv4Addr, ttl: u32 },
    Aaaa { name: String, ip: Ipv6Addr, ttl: u32 },
    Cname { name: String, target: String, ttl: u32 },
}

/// A standard recursive query for `name` and `qtype` (class IN).
#[must_use]
pub fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut message = Encoder::new(id, FLAGS_QUERY, 0);
    message.question(name, qtype);
    message.finish()
}

/// A NOERROR response repeating the question, with `answers` in order.
#[must_use]
pub fn response(id: u16, name: &str, qtype: u16, answers: &[Answer]) -> Vec<u8> {
    let mut message = Encoder::new(id, FLAGS_RESPONSE, answers.len());
    message.question(name, qtype);
    for answer in answers {
        message.answer(answer);
    }
    message.finish()
}

/// An NXDOMAIN response: the name does not exist.
#[must_use]
pub fn nxdomain(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut message = Encoder::new(id, FLAGS_RESPONSE | RCODE_NXDOMAIN, 0);
    message.question(name, qtype);
    message.finish()
}

/// A message framed for DNS over TCP: a two-byte length prefix (RFC 1035 §4.2.2).
#[must_use]
pub fn tcp_framed(message: &[u8]) -> Vec<u8> {
    let len = u16::try_from(message.len()).unwrap_or(u16::MAX);
    let mut out = Vec::with_capacity(message.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&message[..usize::from(len)]);
    out
}

struct Encoder {
    buf: Vec<u8>,
    /// Suffixes already written (lower case) and where, for compression pointers.
    names: Vec<(String, u16)>,
}

impl Encoder {
    fn new(id: u16, flags: u16, answers: usize) -> Self {
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(&id.to_be_bytes());
        buf.extend_from_slice(&flags.to_be_bytes());
        buf.extend_from_slice(&1u16.to_be_bytes()); // questions
        buf.extend_from_slice(&u16::try_from(answers).unwrap_or(u16::MAX).to_be_bytes());
        buf.extend_from_slice(&0u16.to_be_bytes()); // authority
        buf.extend_from_slice(&0u16.to_be_bytes()); // additional
        Self { buf, names: Vec::new() }
    }

    fn question(&mut self, name: &str, qtype: u16) {
        self.name(name);
        self.buf.extend_from_slice(&qtype.to_be_bytes());
        self.buf.extend_from_slice(&CLASS_IN.to_be_bytes());
    }

    fn answer(&mut self, answer: &Answer) {
        let (name, rtype, ttl) = match answer {
            Answer::A { name, ttl, .. } => (name, TYPE_A, ttl),
            Answer::Aaaa { name, ttl, .. } => (name, TYPE_AAAA, ttl),
            Answer::Cname { name, ttl, .. } => (name, TYPE_CNAME, ttl),
        };
        self.name(name);
        self.buf.extend_from_slice(&rtype.to_be_bytes());
        self.buf.extend_from_slice(&CLASS_IN.to_be_bytes());
        self.buf.extend_from_slice(&ttl.to_be_bytes());
        let length_at = self.buf.len();
        self.buf.extend_from_slice(&[0, 0]);
        match answer {
            Answer::A { ip, .. } => self.buf.extend_from_slice(&ip.octets()),
            Answer::Aaaa { ip, .. } => self.buf.extend_from_slice(&ip.octets()),
            Answer::Cname { target, .. } => self.name(target),
        }
        let rdata_len = u16::try_from(self.buf.len() - length_at - 2).unwrap_or(u16::MAX);
        self.buf[length_at..length_at + 2].copy_from_slice(&rdata_len.to_be_bytes());
    }

    /// Writes `name` as labels, ending in a pointer to the longest suffix already written.
    fn name(&mut self, name: &str) {
        let name = name.trim_end_matches('.');
        let labels: Vec<&str> =
            if name.is_empty() { Vec::new() } else { name.split('.').collect() };
        for i in 0..labels.len() {
            let suffix = labels[i..].join(".").to_ascii_lowercase();
            if let Some((_, at)) = self.names.iter().find(|(known, _)| *known == suffix) {
                self.buf.extend_from_slice(&(0xc000 | at).to_be_bytes());
                return;
            }
            // Pointers have 14 bits; later suffixes simply are not compressible.
            if let Ok(at) = u16::try_from(self.buf.len())
                && at < 0x4000
            {
                self.names.push((suffix, at));
            }
            let label = labels[i].as_bytes();
            let label = &label[..label.len().min(63)];
            self.buf.push(label.len() as u8);
            self.buf.extend_from_slice(label);
        }
        self.buf.push(0);
    }

    fn finish(self) -> Vec<u8> {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use dns_parser::{Packet, QueryType, RData, ResponseCode};

    use super::*;

    #[test]
    fn a_query_parses_back_with_its_question() {
        let bytes = query(0x1234, "api.shop.svc.cluster.local", TYPE_A);
        let packet = Packet::parse(&bytes).unwrap();
        assert_eq!(packet.header.id, 0x1234);
        assert!(packet.header.query);
        assert!(packet.header.recursion_desired);
        assert_eq!(packet.questions[0].qname.to_string(), "api.shop.svc.cluster.local");
        assert_eq!(packet.questions[0].qtype, QueryType::A);
    }

    #[test]
    fn a_cname_chain_response_parses_back_in_order_with_compressed_names() {
        let answers = [
            Answer::Cname {
                name: "api.stripe.example".into(),
                target: "edge.stripe-cdn.example".into(),
                ttl: 30,
            },
            Answer::A {
                name: "edge.stripe-cdn.example".into(),
                ip: Ipv4Addr::new(203, 0, 113, 10),
                ttl: 30,
            },
        ];
        let bytes = response(7, "api.stripe.example", TYPE_A, &answers);
        let packet = Packet::parse(&bytes).unwrap();
        assert!(!packet.header.query);
        assert_eq!(packet.header.response_code, ResponseCode::NoError);
        assert_eq!(packet.answers.len(), 2);
        assert_eq!(packet.answers[0].name.to_string(), "api.stripe.example");
        assert_eq!(packet.answers[0].ttl, 30);
        let RData::CNAME(target) = &packet.answers[0].data else { panic!("not a CNAME") };
        assert_eq!(target.0.to_string(), "edge.stripe-cdn.example");
        assert_eq!(packet.answers[1].name.to_string(), "edge.stripe-cdn.example");
        let RData::A(a) = &packet.answers[1].data else { panic!("not an A") };
        assert_eq!(a.0, Ipv4Addr::new(203, 0, 113, 10));
        // The answer's owner name is a pointer back to the question (0xc00c).
        let question_end = 12 + "api.stripe.example".len() + 2 + 4;
        assert_eq!(&bytes[question_end..question_end + 2], &[0xc0, 0x0c]);
    }

    #[test]
    fn an_aaaa_response_parses_back() {
        let ip: Ipv6Addr = "2001:db8::10".parse().unwrap();
        let answers = [Answer::Aaaa { name: "push.metrics.example".into(), ip, ttl: 300 }];
        let bytes = response(9, "push.metrics.example", TYPE_AAAA, &answers);
        let packet = Packet::parse(&bytes).unwrap();
        let RData::AAAA(aaaa) = &packet.answers[0].data else { panic!("not an AAAA") };
        assert_eq!(aaaa.0, ip);
    }

    #[test]
    fn nxdomain_carries_its_response_code() {
        let packet_bytes = nxdomain(1, "nope.example", TYPE_A);
        let packet = Packet::parse(&packet_bytes).unwrap();
        assert_eq!(packet.header.response_code, ResponseCode::NameError);
    }

    #[test]
    fn tcp_framing_prefixes_the_length() {
        let message = query(1, "a.example", TYPE_A);
        let framed = tcp_framed(&message);
        assert_eq!(usize::from(u16::from_be_bytes([framed[0], framed[1]])), message.len());
        assert_eq!(&framed[2..], message);
    }
}
