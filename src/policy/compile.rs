//! Compiles the view's NetworkPolicies into a [`PolicySet`]: selectors, CIDRs and ports parsed
//! and validated once, policies indexed by namespace, namespace selectors pre-matched.
//!
//! Validation follows what the API server would reject. An invalid piece never stops the rest:
//! a policy whose `podSelector` cannot be read is skipped (we cannot know whom it isolates); any
//! other invalid piece (a peer, a port, an ipBlock) is kept as a piece that matches nothing, so
//! the policy still isolates the pods it selects and the verdict errs towards deny. Every such
//! case is a [`Diagnostic`]. This module does not evaluate connections.

use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::networking::v1::{IPBlock, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use rustc_hash::FxHashMap;

use super::Diagnostic;
use super::selector::Selector;
use crate::cluster::{ClusterView, Labels, NetworkPolicy};
use crate::flow::key::Protocol;

/// The label every namespace carries implicitly (set by the API server since 1.21).
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Policies compiled once per cluster-view generation.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    pub(super) generation: u64,
    /// Sorted by namespace, then name, so explanations list policies in a stable order.
    pub(super) policies: Vec<CompiledPolicy>,
    /// Indexes into `policies`, by the policy's namespace: only these can isolate its pods.
    pub(super) by_namespace: FxHashMap<String, Vec<usize>>,
    /// Namespace name → column in `namespace_matches`.
    pub(super) namespace_ids: FxHashMap<String, usize>,
    /// Distinct namespace selectors; `namespace_matches[selector][namespace]`.
    pub(super) namespace_selectors: Vec<Selector>,
    pub(super) namespace_matches: Vec<Vec<bool>>,
    pub(super) diagnostics: Vec<Diagnostic>,
}

#[derive(Debug, Clone)]
pub(super) struct CompiledPolicy {
    /// `namespace/name`.
    pub key: String,
    pub namespace: String,
    pub pod_selector: Selector,
    /// `Some` when the policy isolates the pods it selects for ingress.
    pub ingress: Option<Vec<Rule>>,
    /// `Some` when the policy isolates the pods it selects for egress.
    pub egress: Option<Vec<Rule>>,
}

impl CompiledPolicy {
    pub fn rules(&self, direction: super::Direction) -> Option<&[Rule]> {
        match direction {
            super::Direction::Ingress => self.ingress.as_deref(),
            super::Direction::Egress => self.egress.as_deref(),
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct Rule {
    /// `None`: no `from`/`to`, or an empty list — every peer.
    pub peers: Option<Vec<Peer>>,
    /// `None`: no `ports`, or an empty list — every port and protocol.
    pub ports: Option<Vec<PortMatch>>,
}

impl Rule {
    /// Whether the rule allows everything (an "allow all" rule).
    pub fn is_open(&self) -> bool {
        self.peers.is_none() && self.ports.is_none()
    }
}

#[derive(Debug, Clone)]
pub(super) enum Peer {
    /// Pods selected by `pods`, in the policy's own namespace (`namespaces: None`) or in the
    /// namespaces a namespace selector picks (an id into `PolicySet::namespace_selectors`).
    Pods {
        namespaces: Option<(usize, Selector)>,
        pods: Selector,
    },
    Block(IpBlockMatch),
    /// An invalid peer: matches nothing.
    Invalid,
}

#[derive(Debug, Clone)]
pub(super) struct IpBlockMatch {
    pub cidr: IpNet,
    pub except: Vec<IpNet>,
}

impl IpBlockMatch {
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.cidr.contains(&ip) && !self.except.iter().any(|net| net.contains(&ip))
    }
}

#[derive(Debug, Clone)]
pub(super) struct PortMatch {
    pub protocol: Protocol,
    pub port: PortSpec,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PortSpec {
    /// No `port`: every port of the protocol.
    Any,
    /// `port`, or `port`..=`endPort`.
    Range(u16, u16),
    /// A named container port, resolved on the destination pod.
    Named(String),
    /// An invalid entry: matches nothing.
    Invalid,
}

impl PolicySet {
    /// Compiles every policy of the view; invalid pieces become diagnostics (see module docs).
    #[must_use]
    pub fn compile(view: &ClusterView) -> (Self, Vec<Diagnostic>) {
        let mut set = Self { generation: view.generation(), ..Self::default() };
        let mut namespaces: Vec<&str> = view.namespaces.keys().map(String::as_str).collect();
        namespaces.extend(view.pods.values().map(|pod| pod.namespace.as_str()));
        namespaces.extend(view.policies.values().map(|policy| policy.namespace.as_str()));
        namespaces.sort_unstable();
        namespaces.dedup();
        for (id, name) in namespaces.iter().enumerate() {
            set.namespace_ids.insert((*name).to_owned(), id);
        }
        let namespace_labels: Vec<Labels> =
            namespaces.iter().map(|name| namespace_labels(view, name)).collect();

        let mut diagnostics = Vec::new();
        let mut selector_ids: FxHashMap<Selector, usize> = FxHashMap::default();
        for policy in view.policies.values() {
            let mut compiler = Compiler {
                key: format!("{}/{}", policy.namespace, policy.name),
                diagnostics: &mut diagnostics,
                selector_ids: &mut selector_ids,
                selectors: &mut set.namespace_selectors,
            };
            if let Some(compiled) = compiler.policy(policy) {
                set.policies.push(compiled);
            }
        }
        set.policies.sort_by(|a, b| (&a.namespace, &a.key).cmp(&(&b.namespace, &b.key)));
        for (index, policy) in set.policies.iter().enumerate() {
            set.by_namespace.entry(policy.namespace.clone()).or_default().push(index);
        }
        set.namespace_matches = set
            .namespace_selectors
            .iter()
            .map(|selector| {
                namespace_labels.iter().map(|labels| selector.matches(labels)).collect()
            })
            .collect();
        set.diagnostics.clone_from(&diagnostics);
        (set, diagnostics)
    }

    /// The view generation this set was compiled from.
    #[must_use]
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// What compiling found invalid (the same list [`compile`](Self::compile) returned).
    #[must_use]
    pub fn diagnostics(&self) -> &[Diagnostic] {
        &self.diagnostics
    }

    /// How many policies were compiled (skipped ones excluded).
    #[must_use]
    pub fn len(&self) -> usize {
        self.policies.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// The compiled policies of one namespace, in name order.
    pub(super) fn in_namespace<'a>(
        &'a self,
        namespace: &str,
    ) -> impl Iterator<Item = &'a CompiledPolicy> + 'a {
        self.by_namespace
            .get(namespace)
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .filter_map(|index| self.policies.get(*index))
    }

    /// Whether namespace selector `id` picks `namespace`: from the table built at compile time,
    /// or, for a namespace that appeared since, by matching its labels now.
    pub(super) fn namespace_selected(
        &self,
        view: &ClusterView,
        id: usize,
        selector: &Selector,
        namespace: &str,
    ) -> bool {
        let cached = self
            .namespace_ids
            .get(namespace)
            .and_then(|column| self.namespace_matches.get(id)?.get(*column));
        match cached {
            Some(matched) => *matched,
            None => selector.matches(&namespace_labels(view, namespace)),
        }
    }
}

/// A namespace's labels plus the implicit name label, which even a namespace the view has not
/// seen carries.
pub(super) fn namespace_labels(view: &ClusterView, name: &str) -> Labels {
    let mut labels = view.namespaces.get(name).map(|ns| ns.labels.clone()).unwrap_or_default();
    labels.insert(NAMESPACE_NAME_LABEL.to_owned(), name.to_owned());
    labels
}

struct Compiler<'a> {
    key: String,
    diagnostics: &'a mut Vec<Diagnostic>,
    selector_ids: &'a mut FxHashMap<Selector, usize>,
    selectors: &'a mut Vec<Selector>,
}

impl Compiler<'_> {
    fn report(&mut self, field: &str, problem: &str) {
        self.diagnostics
            .push(Diagnostic { policy: self.key.clone(), message: format!("{field}: {problem}") });
    }

    fn policy(&mut self, policy: &NetworkPolicy) -> Option<CompiledPolicy> {
        let spec = &policy.spec;
        let pod_selector = match Selector::compile(spec.pod_selector.as_ref()) {
            Ok(selector) => selector,
            Err(error) => {
                let field = format!("spec.podSelector.{}", error.field);
                self.report(&field, &format!("{}; policy skipped", error.problem));
                return None;
            }
        };
        let (mut isolates_ingress, mut isolates_egress) = (false, false);
        match spec.policy_types.as_deref() {
            // Upstream defaulting: Ingress always, Egress only if there are egress rules.
            None | Some([]) => {
                isolates_ingress = true;
                isolates_egress = spec.egress.as_ref().is_some_and(|rules| !rules.is_empty());
            }
            Some(types) => {
                for (index, kind) in types.iter().enumerate() {
                    match kind.as_str() {
                        "Ingress" => isolates_ingress = true,
                        "Egress" => isolates_egress = true,
                        other => self.report(
                            &format!("spec.policyTypes[{index}]"),
                            &format!("'{other}' is not Ingress or Egress; ignored"),
                        ),
                    }
                }
            }
        }
        let ingress = isolates_ingress.then(|| {
            let rules = spec.ingress.as_deref().unwrap_or_default();
            rules
                .iter()
                .enumerate()
                .map(|(i, rule)| {
                    let field = format!("spec.ingress[{i}]");
                    self.rule(&field, "from", rule.from.as_deref(), rule.ports.as_deref())
                })
                .collect()
        });
        let egress = isolates_egress.then(|| {
            let rules = spec.egress.as_deref().unwrap_or_default();
            rules
                .iter()
                .enumerate()
                .map(|(i, rule)| {
                    let field = format!("spec.egress[{i}]");
                    self.rule(&field, "to", rule.to.as_deref(), rule.ports.as_deref())
                })
                .collect()
        });
        Some(CompiledPolicy {
            key: self.key.clone(),
            namespace: policy.namespace.clone(),
            pod_selector,
            ingress,
            egress,
        })
    }

    fn rule(
        &mut self,
        field: &str,
        peers_name: &str,
        peers: Option<&[NetworkPolicyPeer]>,
        ports: Option<&[NetworkPolicyPort]>,
    ) -> Rule {
        let peers = peers.filter(|list| !list.is_empty()).map(|list| {
            list.iter()
                .enumerate()
                .map(|(i, peer)| self.peer(&format!("{field}.{peers_name}[{i}]"), peer))
                .collect()
        });
        let ports = ports.filter(|list| !list.is_empty()).map(|list| {
            list.iter()
                .enumerate()
                .map(|(i, port)| self.port(&format!("{field}.ports[{i}]"), port))
                .collect()
        });
        Rule { peers, ports }
    }

    fn peer(&mut self, field: &str, peer: &NetworkPolicyPeer) -> Peer {
        let has_selector = peer.pod_selector.is_some() || peer.namespace_selector.is_some();
        if let Some(block) = &peer.ip_block {
            if has_selector {
                self.report(
                    field,
                    "ipBlock cannot be combined with a selector; peer matches nothing",
                );
                return Peer::Invalid;
            }
            return self.ip_block(&format!("{field}.ipBlock"), block);
        }
        if !has_selector {
            self.report(
                field,
                "names no podSelector, namespaceSelector or ipBlock; peer matches nothing",
            );
            return Peer::Invalid;
        }
        let pods = match Selector::compile(peer.pod_selector.as_ref()) {
            Ok(selector) => selector,
            Err(error) => {
                let message = format!("{}; peer matches nothing", error.problem);
                self.report(&format!("{field}.podSelector.{}", error.field), &message);
                return Peer::Invalid;
            }
        };
        let namespaces = match peer.namespace_selector.as_ref().map(|s| Selector::compile(Some(s)))
        {
            None => None,
            Some(Ok(selector)) => Some((self.intern(&selector), selector)),
            Some(Err(error)) => {
                let message = format!("{}; peer matches nothing", error.problem);
                self.report(&format!("{field}.namespaceSelector.{}", error.field), &message);
                return Peer::Invalid;
            }
        };
        Peer::Pods { namespaces, pods }
    }

    fn intern(&mut self, selector: &Selector) -> usize {
        if let Some(id) = self.selector_ids.get(selector) {
            return *id;
        }
        let id = self.selectors.len();
        self.selectors.push(selector.clone());
        self.selector_ids.insert(selector.clone(), id);
        id
    }

    fn ip_block(&mut self, field: &str, block: &IPBlock) -> Peer {
        let Ok(cidr) = block.cidr.trim().parse::<IpNet>() else {
            let problem = format!("'{}' is not a CIDR; peer matches nothing", block.cidr);
            self.report(&format!("{field}.cidr"), &problem);
            return Peer::Invalid;
        };
        let cidr = cidr.trunc();
        let mut except = Vec::new();
        for (i, text) in block.except.iter().flatten().enumerate() {
            let parsed = text.trim().parse::<IpNet>().map(|net| net.trunc());
            match parsed {
                Ok(net) if cidr.contains(&net) && net != cidr => except.push(net),
                Ok(_) => {
                    let problem =
                        format!("'{text}' is not inside cidr '{cidr}'; peer matches nothing");
                    self.report(&format!("{field}.except[{i}]"), &problem);
                    return Peer::Invalid;
                }
                Err(_) => {
                    let problem = format!("'{text}' is not a CIDR; peer matches nothing");
                    self.report(&format!("{field}.except[{i}]"), &problem);
                    return Peer::Invalid;
                }
            }
        }
        Peer::Block(IpBlockMatch { cidr, except })
    }

    fn port(&mut self, field: &str, port: &NetworkPolicyPort) -> PortMatch {
        let protocol = match port.protocol.as_deref() {
            None => Protocol::Tcp,
            Some(text) => match Protocol::parse_l4(text) {
                Some(protocol) => protocol,
                None => {
                    let problem =
                        format!("'{text}' is not TCP, UDP or SCTP; entry matches nothing");
                    self.report(&format!("{field}.protocol"), &problem);
                    return PortMatch { protocol: Protocol::Tcp, port: PortSpec::Invalid };
                }
            },
        };
        let spec = self.port_spec(field, port);
        PortMatch { protocol, port: spec }
    }

    fn port_spec(&mut self, field: &str, port: &NetworkPolicyPort) -> PortSpec {
        let number = match &port.port {
            None => {
                if let Some(end) = port.end_port {
                    let problem = format!("'{end}' needs a numeric port; entry matches nothing");
                    self.report(&format!("{field}.endPort"), &problem);
                    return PortSpec::Invalid;
                }
                return PortSpec::Any;
            }
            Some(IntOrString::Int(value)) => i64::from(*value),
            Some(IntOrString::String(text)) => match text.parse::<i64>() {
                Ok(value) => value,
                Err(_) if is_port_name(text) => {
                    if let Some(end) = port.end_port {
                        let problem = format!(
                            "'{end}' cannot be used with the named port '{text}'; entry matches nothing"
                        );
                        self.report(&format!("{field}.endPort"), &problem);
                        return PortSpec::Invalid;
                    }
                    return PortSpec::Named(text.clone());
                }
                Err(_) => {
                    let problem = format!(
                        "'{text}' is not a port number (1-65535) or a port name \
                         (1-15 lowercase letters, digits, '-'); entry matches nothing"
                    );
                    self.report(&format!("{field}.port"), &problem);
                    return PortSpec::Invalid;
                }
            },
        };
        let Some(start) = u16::try_from(number).ok().filter(|p| *p != 0) else {
            let problem =
                format!("'{number}' is not a port number (1-65535); entry matches nothing");
            self.report(&format!("{field}.port"), &problem);
            return PortSpec::Invalid;
        };
        let end = match port.end_port {
            None => start,
            Some(end) => match u16::try_from(end).ok().filter(|end| *end >= start) {
                Some(end) => end,
                None => {
                    let problem = format!(
                        "'{end}' must be a port number not below port {start}; entry matches nothing"
                    );
                    self.report(&format!("{field}.endPort"), &problem);
                    return PortSpec::Invalid;
                }
            },
        };
        PortSpec::Range(start, end)
    }
}

/// An IANA service name, as Kubernetes validates container port names: 1–15 characters of
/// lowercase letters, digits and '-', at least one letter, no leading, trailing or double '-'.
fn is_port_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 15
        && text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && text.bytes().any(|b| b.is_ascii_lowercase())
        && !text.starts_with('-')
        && !text.ends_with('-')
        && !text.contains("--")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_names_follow_the_iana_service_name_rules() {
        assert!(is_port_name("http"));
        assert!(is_port_name("dns-tcp"));
        assert!(!is_port_name("HTTP"));
        assert!(!is_port_name("a--b"));
        assert!(!is_port_name("-a"));
        assert!(!is_port_name("1234"));
        assert!(!is_port_name("a-very-long-port-name"));
    }
}
