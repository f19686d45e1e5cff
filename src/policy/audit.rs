//! The cluster-wide audit behind `netwatch policy audit`: which pods no policy isolates, which
//! namespaces lack a default deny, which policies select nothing, which egress rules are open to
//! the whole internet, which named ports resolve nowhere, and what failed to compile.
//!
//! It reads the view and a compiled [`PolicySet`] and returns a report; it never evaluates
//! connections and prints nothing itself (its `Display` is the human form, serde the JSON one).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;

use super::compile::{CompiledPolicy, Peer, PolicySet, PortSpec, Rule};
use super::{Diagnostic, Direction};
use crate::cluster::{ClusterView, Pod};
use crate::flow::key::Protocol;

/// An egress rule that allows traffic to every address: `0.0.0.0/0`, `::/0`, or no `to` at all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpenEgressRule {
    pub policy: String,
    pub rule: usize,
    /// The open block (`0.0.0.0/0`, `::/0`, with its exceptions) or `any peer` for a rule
    /// without `to`.
    pub peer: String,
}

/// A named port in a rule that no pod it could apply to defines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NamedPortFinding {
    pub policy: String,
    pub direction: Direction,
    pub rule: usize,
    pub port: String,
    pub protocol: Protocol,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AuditReport {
    /// Running pods (pod network, not finished) that no policy isolates for egress.
    pub unrestricted_egress: Vec<String>,
    /// Running pods (pod network, not finished) that no policy isolates for ingress.
    pub unrestricted_ingress: Vec<String>,
    /// Namespaces where no policy selects every pod for ingress without allowing everything.
    pub namespaces_without_default_deny_ingress: Vec<String>,
    /// The same for egress.
    pub namespaces_without_default_deny_egress: Vec<String>,
    pub policies_selecting_no_pod: Vec<String>,
    pub open_egress_rules: Vec<OpenEgressRule>,
    pub unresolved_named_ports: Vec<NamedPortFinding>,
    pub invalid: Vec<Diagnostic>,
}

/// Audits the view's pods and namespaces against the compiled set.
#[must_use]
pub fn audit(view: &ClusterView, set: &PolicySet) -> AuditReport {
    let mut report = AuditReport { invalid: set.diagnostics().to_vec(), ..AuditReport::default() };
    let governed: Vec<&Pod> =
        view.pods.values().filter(|pod| !pod.host_network && !pod.phase.is_terminated()).collect();
    for pod in &governed {
        let isolated = |direction: Direction| {
            set.in_namespace(&pod.namespace).any(|policy| {
                policy.rules(direction).is_some() && policy.pod_selector.matches(&pod.labels)
            })
        };
        if !isolated(Direction::Egress) {
            report.unrestricted_egress.push(format!("{}/{}", pod.namespace, pod.name));
        }
        if !isolated(Direction::Ingress) {
            report.unrestricted_ingress.push(format!("{}/{}", pod.namespace, pod.name));
        }
    }

    let mut namespaces: BTreeSet<&str> = view.namespaces.keys().map(String::as_str).collect();
    namespaces.extend(governed.iter().map(|pod| pod.namespace.as_str()));
    for namespace in namespaces {
        let default_deny = |direction: Direction| {
            set.in_namespace(namespace).any(|policy| {
                policy.pod_selector.is_everything()
                    && policy.rules(direction).is_some_and(|rules| !rules.iter().any(Rule::is_open))
            })
        };
        if !default_deny(Direction::Ingress) {
            report.namespaces_without_default_deny_ingress.push(namespace.to_owned());
        }
        if !default_deny(Direction::Egress) {
            report.namespaces_without_default_deny_egress.push(namespace.to_owned());
        }
    }

    let mut by_namespace: BTreeMap<&str, Vec<&Pod>> = BTreeMap::new();
    for pod in &governed {
        by_namespace.entry(pod.namespace.as_str()).or_default().push(pod);
    }
    for policy in &set.policies {
        let selected: Vec<&Pod> = by_namespace
            .get(policy.namespace.as_str())
            .into_iter()
            .flatten()
            .copied()
            .filter(|pod| policy.pod_selector.matches(&pod.labels))
            .collect();
        if selected.is_empty() {
            report.policies_selecting_no_pod.push(policy.key.clone());
        }
        for (index, rule) in policy.egress.iter().flatten().enumerate() {
            open_egress(&mut report, policy, index, rule);
        }
        named_ports(&mut report, set, view, policy, &selected, &governed);
    }
    report
}

fn open_egress(report: &mut AuditReport, policy: &CompiledPolicy, index: usize, rule: &Rule) {
    let Some(peers) = &rule.peers else {
        report.open_egress_rules.push(OpenEgressRule {
            policy: policy.key.clone(),
            rule: index,
            peer: "any peer".to_owned(),
        });
        return;
    };
    for peer in peers {
        if let Peer::Block(block) = peer
            && block.cidr.prefix_len() == 0
        {
            let mut text = block.cidr.to_string();
            if !block.except.is_empty() {
                let except: Vec<String> = block.except.iter().map(ToString::to_string).collect();
                text = format!("{text} except {}", except.join(", "));
            }
            report.open_egress_rules.push(OpenEgressRule {
                policy: policy.key.clone(),
                rule: index,
                peer: text,
            });
        }
    }
}

/// A named port resolves on the destination: for ingress the pods the policy selects, for
/// egress the pods the rule's peers select (any pod when the rule names none).
fn named_ports(
    report: &mut AuditReport,
    set: &PolicySet,
    view: &ClusterView,
    policy: &CompiledPolicy,
    selected: &[&Pod],
    governed: &[&Pod],
) {
    for direction in [Direction::Ingress, Direction::Egress] {
        for (index, rule) in policy.rules(direction).unwrap_or_default().iter().enumerate() {
            for entry in rule.ports.iter().flatten() {
                let PortSpec::Named(name) = &entry.port else {
                    continue;
                };
                let defines = |pod: &&Pod| {
                    pod.ports.iter().any(|c| {
                        c.name.as_deref() == Some(name.as_str()) && c.protocol == entry.protocol
                    })
                };
                let resolves = match direction {
                    Direction::Ingress => selected.iter().any(defines),
                    Direction::Egress => governed
                        .iter()
                        .filter(|pod| peer_may_be(set, view, policy, rule, pod))
                        .any(defines),
                };
                if !resolves {
                    report.unresolved_named_ports.push(NamedPortFinding {
                        policy: policy.key.clone(),
                        direction,
                        rule: index,
                        port: name.clone(),
                        protocol: entry.protocol,
                    });
                }
            }
        }
    }
}

/// Whether `pod` could be a destination of an egress rule (ipBlocks may cover any pod IP).
fn peer_may_be(
    set: &PolicySet,
    view: &ClusterView,
    policy: &CompiledPolicy,
    rule: &Rule,
    pod: &Pod,
) -> bool {
    let Some(peers) = &rule.peers else {
        return true;
    };
    peers.iter().any(|peer| match peer {
        Peer::Pods { namespaces, pods } => {
            let namespace_ok = match namespaces {
                None => pod.namespace == policy.namespace,
                Some((id, selector)) => set.namespace_selected(view, *id, selector, &pod.namespace),
            };
            namespace_ok && pods.matches(&pod.labels)
        }
        Peer::Block(block) => pod.ips.iter().any(|ip| block.contains(*ip)),
        Peer::Invalid => false,
    })
}

impl fmt::Display for AuditReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        section(f, "Pods with unrestricted egress", &self.unrestricted_egress)?;
        section(f, "Pods with unrestricted ingress", &self.unrestricted_ingress)?;
        section(
            f,
            "Namespaces without a default-deny ingress policy",
            &self.namespaces_without_default_deny_ingress,
        )?;
        section(
            f,
            "Namespaces without a default-deny egress policy",
            &self.namespaces_without_default_deny_egress,
        )?;
        section(f, "Policies that select no pod", &self.policies_selecting_no_pod)?;
        let open: Vec<String> = self
            .open_egress_rules
            .iter()
            .map(|r| format!("{} egress rule {}: {}", r.policy, r.rule, r.peer))
            .collect();
        section(f, "Egress rules open to every address", &open)?;
        let named: Vec<String> = self
            .unresolved_named_ports
            .iter()
            .map(|n| {
                format!(
                    "{} {} rule {}: {} port '{}'",
                    n.policy, n.direction, n.rule, n.protocol, n.port
                )
            })
            .collect();
        section(f, "Named ports that resolve on no pod", &named)?;
        let invalid: Vec<String> = self.invalid.iter().map(ToString::to_string).collect();
        section(f, "Invalid policy fields", &invalid)
    }
}

fn section(f: &mut fmt::Formatter<'_>, title: &str, items: &[String]) -> fmt::Result {
    if items.is_empty() {
        return writeln!(f, "{title}: none");
    }
    writeln!(f, "{title} ({}):", items.len())?;
    for item in items {
        writeln!(f, "  {item}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::fixtures::cluster_with;

    fn report() -> AuditReport {
        let view = cluster_with(&[
            ("shop", "default-deny-all", "podSelector: {}\npolicyTypes: [Ingress, Egress]"),
            (
                "shop",
                "allow-internet",
                "podSelector: {matchLabels: {app: web}}\npolicyTypes: [Egress]\negress: [{to: [{ipBlock: {cidr: 0.0.0.0/0, except: [10.0.0.0/8]}}, {ipBlock: {cidr: '::/0'}}]}]",
            ),
            ("shop", "nothing", "podSelector: {matchLabels: {app: ghost}}"),
            (
                "shop",
                "grpc",
                "podSelector: {matchLabels: {app: api}}\ningress: [{ports: [{port: grpc}, {port: http}]}]",
            ),
            (
                "ops",
                "allow-all",
                "podSelector: {}\ningress: [{}]\negress: [{}]\npolicyTypes: [Ingress, Egress]",
            ),
        ]);
        let (set, _) = PolicySet::compile(&view);
        audit(&view, &set)
    }

    #[test]
    fn unrestricted_pods_exclude_isolated_host_network_and_finished_pods() {
        let report = report();
        assert!(report.unrestricted_egress.contains(&"other/client".to_owned()));
        assert!(report.unrestricted_ingress.contains(&"kube-system/coredns".to_owned()));
        for pod in ["shop/web-a", "shop/host-agent", "shop/done", "ops/monitor"] {
            assert!(!report.unrestricted_egress.contains(&pod.to_owned()), "{pod}");
            assert!(!report.unrestricted_ingress.contains(&pod.to_owned()), "{pod}");
        }
    }

    #[test]
    fn an_allow_all_policy_is_not_a_default_deny() {
        let report = report();
        assert!(!report.namespaces_without_default_deny_ingress.contains(&"shop".to_owned()));
        assert!(!report.namespaces_without_default_deny_egress.contains(&"shop".to_owned()));
        for ns in ["ops", "other", "default", "kube-system"] {
            assert!(
                report.namespaces_without_default_deny_ingress.contains(&ns.to_owned()),
                "{ns}"
            );
            assert!(report.namespaces_without_default_deny_egress.contains(&ns.to_owned()), "{ns}");
        }
    }

    #[test]
    fn policies_open_rules_and_named_ports_that_match_nothing_are_reported() {
        let report = report();
        assert_eq!(report.policies_selecting_no_pod, ["shop/nothing"]);
        let open: Vec<String> = report
            .open_egress_rules
            .iter()
            .map(|r| format!("{} {} {}", r.policy, r.rule, r.peer))
            .collect();
        assert_eq!(
            open,
            [
                "ops/allow-all 0 any peer",
                "shop/allow-internet 0 0.0.0.0/0 except 10.0.0.0/8",
                "shop/allow-internet 0 ::/0"
            ]
        );
        assert_eq!(report.unresolved_named_ports.len(), 1);
        assert_eq!(report.unresolved_named_ports[0].port, "grpc");
        let text = report.to_string();
        assert!(text.contains("Policies that select no pod (1):\n  shop/nothing\n"), "{text}");
        assert!(text.contains("Named ports that resolve on no pod (1):\n  shop/grpc ingress rule 0: TCP port 'grpc'\n"), "{text}");
        let json = serde_json::to_value(&report).expect("serializes");
        assert_eq!(json["unresolved_named_ports"][0]["direction"], "ingress");
    }
}
