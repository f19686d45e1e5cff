//! DNS responses (via `dns-parser`): which addresses a client was told a name resolves to.
//!
//! Only responses matter: they carry both the question and the answers. A CNAME chain is walked
//! back to the name the client asked for, because that is the name the workload used; the TTL of
//! a resolved address is the smallest TTL along its chain.

use std::net::IpAddr;
use std::sync::Arc;

use dns_parser::RData;
use rustc_hash::FxHashMap;

use super::sanitized_shared_name;

/// One address the response resolved, with the name the client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// Shared with the name book and the flows it names.
    pub name: Arc<str>,
    pub address: IpAddr,
    pub ttl_secs: u32,
}

/// Why a DNS payload on port 53 yielded nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsSkip {
    /// Not parseable as DNS.
    Malformed,
    /// A query, not a response (nothing learned).
    Query,
}

/// The longest CNAME chain followed; real chains are two or three links.
const MAX_CHAIN: usize = 16;

/// Parses a DNS message carried over UDP (the payload as is).
pub fn parse_udp(payload: &[u8]) -> Result<Vec<Resolution>, DnsSkip> {
    parse_message(payload)
}

/// Parses DNS over TCP: a two-byte length prefix, then the message. Only a message that starts
/// and ends in this segment is read; a response split across segments is counted as malformed
/// rather than reassembled.
pub fn parse_tcp(payload: &[u8]) -> Result<Vec<Resolution>, DnsSkip> {
    let prefix = payload.get(..2).ok_or(DnsSkip::Malformed)?;
    let len = usize::from(u16::from_be_bytes([prefix[0], prefix[1]]));
    let message = payload.get(2..2 + len).ok_or(DnsSkip::Malformed)?;
    parse_message(message)
}

/// [`parse_tcp`] or [`parse_udp`], by the transport the payload came on.
pub fn parse(payload: &[u8], tcp: bool) -> Result<Vec<Resolution>, DnsSkip> {
    if tcp { parse_tcp(payload) } else { parse_udp(payload) }
}

fn parse_message(message: &[u8]) -> Result<Vec<Resolution>, DnsSkip> {
    let packet = dns_parser::Packet::parse(message).map_err(|_| DnsSkip::Malformed)?;
    if packet.header.query {
        return Err(DnsSkip::Query);
    }
    // target → (alias, ttl): walking it backwards finds the name that was asked for.
    let mut alias_of: FxHashMap<String, (String, u32)> = FxHashMap::default();
    for record in &packet.answers {
        if let RData::CNAME(target) = &record.data {
            alias_of.insert(name_text(&target.0), (name_text(&record.name), record.ttl));
        }
    }
    let mut resolutions: Vec<Resolution> = Vec::new();
    // The answers of one name come together: its chain is walked once for all of them.
    let mut last: Option<(String, usize, u32)> = None;
    for record in &packet.answers {
        let address = match &record.data {
            RData::A(a) => IpAddr::V4(a.0),
            RData::AAAA(aaaa) => IpAddr::V6(aaaa.0),
            _ => continue,
        };
        let owner = name_text(&record.name);
        let (asked, chain_ttl) = match &last {
            Some((seen, index, chain_ttl)) if *seen == owner => {
                (resolutions[*index].name.clone(), *chain_ttl)
            }
            _ => {
                let (asked, chain_ttl) = walk_back(&alias_of, &owner);
                last = Some((owner, resolutions.len(), chain_ttl));
                (asked, chain_ttl)
            }
        };
        resolutions.push(Resolution { name: asked, address, ttl_secs: record.ttl.min(chain_ttl) });
    }
    Ok(resolutions)
}

/// A name as lowercase text. Written into room for a typical name: `to_string` grew the
/// string label by label, and reallocating was most of the cost of reading an answer.
fn name_text(name: &dns_parser::Name<'_>) -> String {
    use std::fmt::Write as _;
    let mut text = String::with_capacity(64);
    let _ = write!(text, "{name}");
    text.make_ascii_lowercase();
    text
}

/// The name that was asked for, walking CNAMEs back from `owner`, and the smallest TTL of the
/// links walked (`u32::MAX` when there were none).
fn walk_back(alias_of: &FxHashMap<String, (String, u32)>, owner: &str) -> (Arc<str>, u32) {
    let mut name = owner;
    let mut ttl = u32::MAX;
    for _ in 0..MAX_CHAIN {
        let Some((alias, alias_ttl)) = alias_of.get(name) else { break };
        ttl = ttl.min(*alias_ttl);
        name = alias;
    }
    (sanitized_shared_name(name), ttl)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Encodes a name as DNS labels.
    fn labels(name: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for label in name.split('.') {
            out.push(u8::try_from(label.len()).unwrap());
            out.extend_from_slice(label.as_bytes());
        }
        out.push(0);
        out
    }

    fn record(name: &str, rtype: u16, ttl: u32, data: &[u8]) -> Vec<u8> {
        let mut out = labels(name);
        out.extend_from_slice(&rtype.to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&ttl.to_be_bytes());
        out.extend_from_slice(&u16::try_from(data.len()).unwrap().to_be_bytes());
        out.extend_from_slice(data);
        out
    }

    fn response(question: &str, answers: &[Vec<u8>]) -> Vec<u8> {
        let mut out = vec![0x12, 0x34, 0x81, 0x80, 0, 1];
        out.extend_from_slice(&u16::try_from(answers.len()).unwrap().to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 0]);
        out.extend(labels(question));
        out.extend_from_slice(&[0, 1, 0, 1]);
        for answer in answers {
            out.extend_from_slice(answer);
        }
        out
    }

    #[test]
    fn a_cname_chain_resolves_to_the_name_the_client_asked_for_with_the_smallest_ttl() {
        let message = response(
            "api.stripe.example",
            &[
                record("api.stripe.example", 5, 300, &labels("edge.cdn.example")),
                record("edge.cdn.example", 5, 60, &labels("pop7.cdn.example")),
                record("pop7.cdn.example", 1, 30, &[203, 0, 113, 10]),
            ],
        );
        let resolved = parse_udp(&message).unwrap();
        assert_eq!(
            resolved,
            vec![Resolution {
                name: "api.stripe.example".into(),
                address: "203.0.113.10".parse().unwrap(),
                ttl_secs: 30,
            }]
        );
    }

    #[test]
    fn several_addresses_of_one_name_share_its_chain_and_keep_their_own_ttls() {
        let message = response(
            "shop.example",
            &[
                record("shop.example", 5, 40, &labels("lb.cdn.example")),
                record("lb.cdn.example", 1, 300, &[203, 0, 113, 1]),
                record("lb.cdn.example", 1, 20, &[203, 0, 113, 2]),
                record("other.example", 1, 50, &[198, 51, 100, 7]),
                record("lb.cdn.example", 1, 60, &[203, 0, 113, 3]),
            ],
        );
        let resolved: Vec<(String, String, u32)> = parse_udp(&message)
            .unwrap()
            .into_iter()
            .map(|r| (r.name.to_string(), r.address.to_string(), r.ttl_secs))
            .collect();
        let expect = |name: &str, address: &str, ttl| (name.to_owned(), address.to_owned(), ttl);
        assert_eq!(
            resolved,
            [
                expect("shop.example", "203.0.113.1", 40),
                expect("shop.example", "203.0.113.2", 20),
                expect("other.example", "198.51.100.7", 50),
                expect("shop.example", "203.0.113.3", 40),
            ]
        );
    }

    #[test]
    fn aaaa_answers_are_read() {
        let mut v6 = [0u8; 16];
        v6[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        v6[15] = 0x10;
        let message = response("v6.example", &[record("v6.example", 28, 120, &v6)]);
        let resolved = parse_udp(&message).unwrap();
        assert_eq!(resolved[0].address, "2001:db8::10".parse::<IpAddr>().unwrap());
        assert_eq!(resolved[0].ttl_secs, 120);
    }

    #[test]
    fn tcp_dns_needs_its_length_prefix_and_the_whole_message() {
        let message = response("a.example", &[record("a.example", 1, 5, &[198, 51, 100, 1])]);
        let mut framed = u16::try_from(message.len()).unwrap().to_be_bytes().to_vec();
        framed.extend_from_slice(&message);
        assert_eq!(parse_tcp(&framed).unwrap().len(), 1);
        assert_eq!(parse_tcp(&framed[..framed.len() - 1]), Err(DnsSkip::Malformed));
    }

    #[test]
    fn queries_and_garbage_are_told_apart() {
        let mut query = response("a.example", &[]);
        query[2] = 0x01; // QR bit clear: a query
        assert_eq!(parse_udp(&query), Err(DnsSkip::Query));
        assert_eq!(parse_udp(&[0xff; 7]), Err(DnsSkip::Malformed));
    }
}
