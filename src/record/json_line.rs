//! The JSON Lines encoder of flow records: the same bytes `serde_json` writes for a
//! [`FlowRecord`], several times faster.
//!
//! Why not serde alone: on a replay, serde_json spent a third of all instructions here, most of
//! it escaping the field names and the verdict's sentences one byte at a time. This encoder
//! writes field names as literals, copies strings that need no escape whole, and writes a shared
//! verdict once per run instead of once per record. serde_json stays the reference: strings that
//! need escapes go through it, and tests check every record shape against it byte for byte, so
//! the contract in DESIGN.md has one definition (the serde derives in `snapshot.rs`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::flow::Protocol;
use crate::identity::EndpointKind;
use crate::policy::Verdict;
use crate::snapshot::{EndpointRecord, FlowRecord, NameSource, TxRx};
use crate::time::Timestamp;

/// Verdicts kept encoded at most: a run has few distinct ones (they are shared per connection
/// kind), and a cluster change makes new ones, so the cache starts over when it fills.
const MAX_CACHED_VERDICTS: usize = 4096;

/// Encodes flow records as JSON, remembering the encoding of each shared verdict.
#[derive(Default)]
pub struct JsonLineEncoder {
    /// By the verdict's address; the `Arc` kept here holds the address for this entry.
    verdicts: FxHashMap<usize, (Arc<Verdict>, Box<[u8]>)>,
}

impl JsonLineEncoder {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends the record's JSON (no newline) to `out`. Fails only if serde_json fails on a
    /// string or a verdict, which it does not for values in memory; the error is passed on
    /// rather than a field dropped from the contract.
    pub fn encode(&mut self, record: &FlowRecord, out: &mut Vec<u8>) -> serde_json::Result<()> {
        // Every field named: one added to the record does not compile until it is written here.
        let FlowRecord {
            first_seen,
            last_seen,
            protocol,
            src,
            dst,
            service,
            backend,
            packets,
            bytes,
            tcp,
            interfaces,
            verdict,
            violation,
            leak,
            direct_ip,
            flow_id: _,
            rates: _,
        } = record;
        out.extend_from_slice(b"{\"first_seen\":");
        push_timestamp(out, *first_seen);
        out.extend_from_slice(b",\"last_seen\":");
        push_timestamp(out, *last_seen);
        out.extend_from_slice(b",\"protocol\":");
        push_protocol(out, *protocol);
        out.extend_from_slice(b",\"src\":");
        push_endpoint(out, src)?;
        out.extend_from_slice(b",\"dst\":");
        push_endpoint(out, dst)?;
        if let Some(service) = service {
            out.extend_from_slice(b",\"service\":");
            push_str(out, service)?;
        }
        if let Some(backend) = backend {
            out.extend_from_slice(b",\"backend\":");
            push_endpoint(out, backend)?;
        }
        out.extend_from_slice(b",\"packets\":");
        push_tx_rx(out, *packets);
        out.extend_from_slice(b",\"bytes\":");
        push_tx_rx(out, *bytes);
        if let Some(tcp) = tcp {
            out.extend_from_slice(b",\"tcp\":\"");
            out.extend_from_slice(tcp.name().as_bytes());
            out.push(b'"');
        }
        out.extend_from_slice(b",\"interfaces\":[");
        for (i, interface) in interfaces.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            push_str(out, interface)?;
        }
        out.extend_from_slice(b"],\"verdict\":");
        self.push_verdict(out, verdict)?;
        out.extend_from_slice(b",\"violation\":");
        match violation {
            Some(direction) => {
                out.push(b'"');
                out.extend_from_slice(direction.name().as_bytes());
                out.push(b'"');
            }
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"leak\":");
        push_bool(out, *leak);
        out.extend_from_slice(b",\"direct_ip\":");
        push_bool(out, *direct_ip);
        out.push(b'}');
        Ok(())
    }

    fn push_verdict(
        &mut self,
        out: &mut Vec<u8>,
        verdict: &Arc<Verdict>,
    ) -> serde_json::Result<()> {
        let address = Arc::as_ptr(verdict) as usize;
        if let Some((_, encoded)) = self.verdicts.get(&address) {
            out.extend_from_slice(encoded);
            return Ok(());
        }
        if self.verdicts.len() >= MAX_CACHED_VERDICTS {
            self.verdicts.clear();
        }
        let start = out.len();
        serde_json::to_writer(&mut *out, &**verdict)?;
        let encoded = out[start..].to_vec().into_boxed_slice();
        self.verdicts.insert(address, (Arc::clone(verdict), encoded));
        Ok(())
    }
}

fn push_endpoint(out: &mut Vec<u8>, end: &EndpointRecord) -> serde_json::Result<()> {
    // Every field named, as in `encode`.
    let EndpointRecord { ip, port, kind, namespace, name, node, dns, dns_source, sni, http_host } =
        end;
    out.extend_from_slice(b"{\"ip\":");
    push_ip(out, *ip);
    if let Some(port) = port {
        out.extend_from_slice(b",\"port\":");
        push_u64(out, u64::from(*port));
    }
    out.extend_from_slice(b",\"kind\":\"");
    out.extend_from_slice(endpoint_kind_name(*kind).as_bytes());
    out.push(b'"');
    let texts = [
        (&b",\"namespace\":"[..], namespace),
        (b",\"name\":", name),
        (b",\"node\":", node),
        (b",\"dns\":", dns),
    ];
    for (key, value) in texts {
        if let Some(value) = value {
            out.extend_from_slice(key);
            push_str(out, value)?;
        }
    }
    if let Some(source) = dns_source {
        out.extend_from_slice(b",\"dns_source\":\"");
        out.extend_from_slice(name_source_name(*source).as_bytes());
        out.push(b'"');
    }
    for (key, value) in [(&b",\"sni\":"[..], sni), (b",\"http_host\":", http_host)] {
        if let Some(value) = value {
            out.extend_from_slice(key);
            push_str(out, value)?;
        }
    }
    out.push(b'}');
    Ok(())
}

fn push_tx_rx(out: &mut Vec<u8>, pair: TxRx) {
    out.extend_from_slice(b"{\"tx\":");
    push_u64(out, pair.tx);
    out.extend_from_slice(b",\"rx\":");
    push_u64(out, pair.rx);
    out.push(b'}');
}

/// A JSON string: copied whole when nothing in it needs an escape (serde_json escapes control
/// characters, `"` and `\` only), else escaped by serde_json itself.
fn push_str(out: &mut Vec<u8>, text: &str) -> serde_json::Result<()> {
    if text.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
        Ok(())
    } else {
        serde_json::to_writer(&mut *out, text)
    }
}

fn push_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

fn push_bool(out: &mut Vec<u8>, value: bool) {
    out.extend_from_slice(if value { b"true" } else { b"false" });
}

fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    out.push(b'"');
    match ip {
        IpAddr::V4(v4) => push_ipv4(out, v4),
        IpAddr::V6(v6) => push_ipv6(out, v6),
    }
    out.push(b'"');
}

/// Dotted decimal, as std's `Display` writes it.
fn push_ipv4(out: &mut Vec<u8>, v4: Ipv4Addr) {
    let mut digits = itoa::Buffer::new();
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        out.extend_from_slice(digits.format(octet).as_bytes());
    }
}

/// An IPv6 address as std's `Display` writes it (RFC 5952: lowercase hex, the longest run of
/// two or more zero groups, the first of equals, as `::`; IPv4-mapped as `::ffff:a.b.c.d`),
/// without the formatting machinery, which cost more than the rest of a record.
fn push_ipv6(out: &mut Vec<u8>, v6: Ipv6Addr) {
    if let Some(v4) = v6.to_ipv4_mapped() {
        out.extend_from_slice(b"::ffff:");
        push_ipv4(out, v4);
        return;
    }
    let groups = v6.segments();
    let (mut zeros_at, mut zeros_len, mut run_at, mut run_len) = (0, 0, 0, 0);
    for (i, group) in groups.iter().enumerate() {
        if *group == 0 {
            if run_len == 0 {
                run_at = i;
            }
            run_len += 1;
            if run_len > zeros_len {
                (zeros_at, zeros_len) = (run_at, run_len);
            }
        } else {
            run_len = 0;
        }
    }
    if zeros_len > 1 {
        push_hex_groups(out, &groups[..zeros_at]);
        out.extend_from_slice(b"::");
        push_hex_groups(out, &groups[zeros_at + zeros_len..]);
    } else {
        push_hex_groups(out, &groups);
    }
}

fn push_hex_groups(out: &mut Vec<u8>, groups: &[u16]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, group) in groups.iter().enumerate() {
        if i > 0 {
            out.push(b':');
        }
        let mut started = false;
        for shift in [12, 8, 4, 0] {
            let nibble = (group >> shift) & 0xf;
            if nibble != 0 || started || shift == 0 {
                started = true;
                out.push(HEX[usize::from(nibble)]);
            }
        }
    }
}

fn push_timestamp(out: &mut Vec<u8>, ts: Timestamp) {
    out.push(b'"');
    ts.push_rfc3339(out);
    out.push(b'"');
}

fn push_protocol(out: &mut Vec<u8>, protocol: Protocol) {
    out.push(b'"');
    out.extend_from_slice(protocol.name().as_bytes());
    out.push(b'"');
}

fn endpoint_kind_name(kind: EndpointKind) -> &'static str {
    match kind {
        EndpointKind::Pod => "pod",
        EndpointKind::Service => "service",
        EndpointKind::Node => "node",
        EndpointKind::Host => "host",
        EndpointKind::External => "external",
        EndpointKind::Unknown => "unknown",
    }
}

fn name_source_name(source: NameSource) -> &'static str {
    match source {
        NameSource::Own => "own",
        NameSource::Other => "other",
    }
}

#[cfg(test)]
mod tests;
