//! The flow filter typed after `/`: free words and `field:value` terms, `!` to negate; every
//! term must hold. Pure: parses text, tests records.
//!
//! Fields: `ns:` (either end's namespace), `pod:` (part of either end's pod name, or `ns/name`
//! for that one pod), `svc:` (service),
//! `node:`, `ip:`, `port:` (either end), `proto:`, `dns:` (DNS name, SNI or Host), `kind:`
//! (either end's kind), `verdict:` (allow, deny, leak, open, partial, egress, ingress, direct).
//! A free word matches names, namespaces, IPs and DNS names.

use crate::policy::{Decision, Direction};
use crate::snapshot::{EndpointRecord, FlowRecord};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Field {
    Any,
    Namespace,
    Pod,
    Service,
    Node,
    Ip,
    Port,
    Protocol,
    Dns,
    Kind,
    Verdict,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Term {
    field: Field,
    value: String,
    negated: bool,
}

/// A parsed filter. The empty filter matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    text: String,
    terms: Vec<Term>,
}

/// A term the filter cannot use, quoted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown filter field '{0}': use ns, pod, svc, node, ip, port, proto, dns, kind or verdict"
)]
pub struct FilterError(pub String);

impl Filter {
    /// Parses filter text. Matching is case-insensitive.
    pub fn parse(text: &str) -> Result<Self, FilterError> {
        let mut terms = Vec::new();
        for word in text.split_whitespace() {
            let (negated, word) = match word.strip_prefix('!') {
                Some(rest) => (true, rest),
                None => (false, word),
            };
            // An IPv6 address has colons but is a free word, not a field term.
            let field_term =
                word.split_once(':').filter(|_| word.parse::<std::net::IpAddr>().is_err());
            let (field, value) = match field_term {
                Some((name, value)) => {
                    let field = match name.to_ascii_lowercase().as_str() {
                        "ns" | "namespace" => Field::Namespace,
                        "pod" => Field::Pod,
                        "svc" | "service" => Field::Service,
                        "node" => Field::Node,
                        "ip" => Field::Ip,
                        "port" => Field::Port,
                        "proto" | "protocol" => Field::Protocol,
                        "dns" | "name" => Field::Dns,
                        "kind" => Field::Kind,
                        "verdict" | "v" => Field::Verdict,
                        other => return Err(FilterError(other.to_owned())),
                    };
                    (field, value)
                }
                None => (Field::Any, word),
            };
            if value.is_empty() {
                continue;
            }
            terms.push(Term { field, value: value.to_ascii_lowercase(), negated });
        }
        Ok(Self { text: text.to_owned(), terms })
    }

    #[must_use]
    pub fn text(&self) -> &str {
        &self.text
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// Whether a flow passes every term.
    #[must_use]
    pub fn matches(&self, record: &FlowRecord) -> bool {
        self.terms.iter().all(|term| term_matches(term, record) != term.negated)
    }
}

fn contains(haystack: Option<&str>, needle: &str) -> bool {
    haystack.is_some_and(|h| h.to_ascii_lowercase().contains(needle))
}

fn either(record: &FlowRecord, test: impl Fn(&EndpointRecord) -> bool) -> bool {
    test(&record.src) || test(&record.dst)
}

fn term_matches(term: &Term, record: &FlowRecord) -> bool {
    let value = term.value.as_str();
    match term.field {
        Field::Namespace => either(record, |e| {
            e.namespace.as_deref().is_some_and(|ns| ns.eq_ignore_ascii_case(value))
        }),
        // `ns/name` is that one pod exactly; a bare word is part of a pod's name.
        Field::Pod => either(record, |e| {
            e.kind == crate::identity::EndpointKind::Pod
                && match value.split_once('/') {
                    Some((namespace, name)) => {
                        e.namespace.as_deref().is_some_and(|ns| ns.eq_ignore_ascii_case(namespace))
                            && e.name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(name))
                    }
                    None => contains(e.name.as_deref(), value),
                }
        }),
        Field::Service => contains(record.service.as_deref(), value),
        Field::Node => either(record, |e| contains(e.node.as_deref(), value)),
        Field::Ip => either(record, |e| e.ip.to_string().starts_with(value)),
        Field::Port => value
            .parse::<u16>()
            .is_ok_and(|port| record.src.port == Some(port) || record.dst.port == Some(port)),
        Field::Protocol => record.protocol.name().eq_ignore_ascii_case(value),
        Field::Dns => either(record, |e| {
            contains(e.dns.as_deref(), value)
                || contains(e.sni.as_deref(), value)
                || contains(e.http_host.as_deref(), value)
        }),
        Field::Kind => either(record, |e| {
            serde_json::to_value(e.kind)
                .ok()
                .and_then(|v| v.as_str().map(|s| s == value))
                .unwrap_or(false)
        }),
        Field::Verdict => verdict_matches(record, value),
        Field::Any => {
            either(record, |e| {
                contains(e.namespace.as_deref(), value)
                    || contains(e.name.as_deref(), value)
                    || contains(e.node.as_deref(), value)
                    || e.ip.to_string().contains(value)
                    || contains(e.dns.as_deref(), value)
                    || contains(e.sni.as_deref(), value)
                    || contains(e.http_host.as_deref(), value)
            }) || contains(record.service.as_deref(), value)
        }
    }
}

fn verdict_matches(record: &FlowRecord, value: &str) -> bool {
    let sides = [record.verdict.egress.decision, record.verdict.ingress.decision];
    match value {
        "deny" | "denied" | "violation" => record.violation.is_some(),
        "egress" => record.violation == Some(Direction::Egress),
        "ingress" => record.violation == Some(Direction::Ingress),
        "leak" => record.leak,
        "direct" | "direct-ip" => record.direct_ip,
        "allow" | "allowed" => record.violation.is_none() && sides.contains(&Decision::Allow),
        "open" | "unrestricted" => {
            sides.contains(&Decision::Unrestricted) && record.violation.is_none()
        }
        "partial" => sides.contains(&Decision::Partial),
        "n/a" | "na" => sides.iter().all(|d| *d == Decision::NotApplicable),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::fixtures::demo_records;

    fn count(filter: &str) -> usize {
        let filter = Filter::parse(filter).unwrap();
        demo_records().iter().filter(|r| filter.matches(r)).count()
    }

    #[test]
    fn field_terms_select_by_namespace_port_protocol_and_verdict() {
        let all = demo_records().len();
        assert_eq!(count(""), all);
        assert!(count("ns:payments") > 0);
        assert_eq!(count("ns:payments") + count("!ns:payments"), all);
        assert_eq!(count("port:9090"), 4);
        assert!(count("proto:udp") >= 7);
        assert_eq!(count("verdict:ingress"), 4);
        assert!(count("verdict:leak") >= 3);
        assert_eq!(count("verdict:direct"), 3);
    }

    /// `pod:ns/name` is one pod, on one end: not another pod whose name contains it, nor a
    /// flow whose other end merely shares the namespace.
    #[test]
    fn a_qualified_pod_term_is_that_pod_exactly() {
        let web_a = count("pod:shop/web-a");
        assert!(web_a > 0);
        assert_eq!(count("pod:SHOP/WEB-A"), web_a, "case does not matter");
        assert_eq!(count("pod:shop/web"), 0, "no pod is named just web");
        assert!(count("pod:web") >= web_a, "a bare word is part of a name");
        assert_eq!(count("pod:payments/web-a"), 0);
    }

    #[test]
    fn free_words_match_names_ips_and_dns_names() {
        assert_eq!(count("stripe"), 2);
        assert_eq!(count("198.51.100.77"), 1);
        assert_eq!(count("dns:stripe port:443"), 2);
        assert_eq!(count("2001:db8::10"), 1, "an IPv6 address is a free word, not a field");
    }

    #[test]
    fn an_unknown_field_is_an_error_quoting_it() {
        assert_eq!(Filter::parse("colour:red").unwrap_err(), FilterError("colour".into()));
    }
}
