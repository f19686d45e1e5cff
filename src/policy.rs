//! The NetworkPolicy engine: compiles the cluster's `networking.k8s.io/v1` NetworkPolicies once
//! per view generation ([`PolicySet::compile`]) and answers, for one connection, whether the
//! source may send it (egress) and the destination may receive it (ingress), naming the
//! policies that decide and why ([`PolicySet::evaluate`]); [`audit`] lists what no policy
//! protects.
//!
//! Semantics are upstream's: a pod is isolated for a direction only by policies of its own
//! namespace that select it and carry that policy type; policies are allow-lists that add up;
//! host-network pods are not governed; a Service address is judged through its ready backends.
//! The module is pure: it reads a [`ClusterView`](crate::cluster::ClusterView) and returns
//! values — no files, sockets, clock or threads, and no panics on any policy, however malformed.
//!
//! Invalid policies never stop the rest: a policy whose `podSelector` cannot be read is skipped;
//! any other invalid piece (peer, port, ipBlock) matches nothing while the policy still isolates,
//! so mistakes err towards deny; each is a [`Diagnostic`].
//!
//! * `selector`: label selectors, compiled once.
//! * `compile`: validation, diagnostics, the per-namespace index, namespace-selector cache.
//! * `evaluate`: one side (egress or ingress) of one connection.
//! * `service`: Service addresses and nodePorts, judged through their backends.
//! * `describe`: the wording of reasons.
//! * `audit`: the cluster-wide report.
//! * tests: `cases` (the semantics table), `invalid_cases`, `fixtures` (the shop cluster).

mod audit;
mod compile;
mod describe;
mod evaluate;
mod selector;
mod service;

#[cfg(test)]
mod cases;
#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod invalid_cases;

use std::net::IpAddr;

use serde::Serialize;

pub use audit::{AuditReport, NamedPortFinding, OpenEgressRule, audit};
pub use compile::{NAMESPACE_NAME_LABEL, PolicySet};
pub use selector::Selector;

use crate::flow::key::Protocol;

/// The outcome for one side of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// The pod is isolated for this direction and some rule allows the connection.
    Allow,
    /// The pod is isolated for this direction and no rule allows the connection.
    Deny,
    /// No policy isolates the pod for this direction: everything is allowed.
    Unrestricted,
    /// A Service address whose backends disagree: some allow, some deny.
    Partial,
    /// NetworkPolicy does not govern this side (not a pod, host network, no backends).
    #[serde(rename = "n/a")]
    NotApplicable,
}

impl Decision {
    /// Whether the connection gets through on this side.
    #[must_use]
    pub fn permits(self) -> bool {
        matches!(self, Self::Allow | Self::Unrestricted)
    }
}

/// The decision for one direction, with the deciding policies (`namespace/name`, sorted) and a
/// sentence saying why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct SideVerdict {
    pub decision: Decision,
    pub policies: Vec<String>,
    pub reason: String,
}

impl SideVerdict {
    #[must_use]
    pub fn not_applicable(reason: impl Into<String>) -> Self {
        Self { decision: Decision::NotApplicable, policies: Vec::new(), reason: reason.into() }
    }
}

/// Both sides of one connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Verdict {
    pub egress: SideVerdict,
    pub ingress: SideVerdict,
}

impl Verdict {
    /// A verdict that was not computed (no cluster, policies not synced, …): both sides n/a.
    #[must_use]
    pub fn not_evaluated(reason: &str) -> Self {
        Self {
            egress: SideVerdict::not_applicable(reason),
            ingress: SideVerdict::not_applicable(reason),
        }
    }

    /// The direction policy denies, egress first (the source's own policy speaks first).
    #[must_use]
    pub fn violation(&self) -> Option<Direction> {
        if self.egress.decision == Decision::Deny {
            Some(Direction::Egress)
        } else if self.ingress.decision == Decision::Deny {
            Some(Direction::Ingress)
        } else {
            None
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Egress,
    Ingress,
}

impl Direction {
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Egress => "egress",
            Self::Ingress => "ingress",
        }
    }
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One connection attempt: what a flow record asks about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Connection {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub protocol: Protocol,
    /// `None` for protocols without ports (ICMP, …).
    pub dst_port: Option<u16>,
}

/// A policy (or part of one) that could not be compiled: `policy` is `namespace/name`,
/// `message` names the field, quotes the bad value and says what was done instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{policy}: {message}")]
pub struct Diagnostic {
    pub policy: String,
    pub message: String,
}

#[cfg(test)]
mod api_tests {
    use super::*;

    fn side(decision: Decision) -> SideVerdict {
        SideVerdict { decision, policies: vec![], reason: String::new() }
    }

    #[test]
    fn the_violation_is_egress_first_then_ingress() {
        let both = Verdict { egress: side(Decision::Deny), ingress: side(Decision::Deny) };
        assert_eq!(both.violation(), Some(Direction::Egress));
        let ingress = Verdict { egress: side(Decision::Allow), ingress: side(Decision::Deny) };
        assert_eq!(ingress.violation(), Some(Direction::Ingress));
        let partial =
            Verdict { egress: side(Decision::Partial), ingress: side(Decision::Unrestricted) };
        assert_eq!(partial.violation(), None);
        assert_eq!(Verdict::not_evaluated("no cluster").violation(), None);
    }

    #[test]
    fn verdicts_serialize_with_the_flow_record_names() {
        let verdict = Verdict::not_evaluated("destination is not a pod");
        let json = serde_json::to_value(&verdict).expect("serializes");
        assert_eq!(
            json,
            serde_json::json!({
                "egress": {"decision": "n/a", "policies": [], "reason": "destination is not a pod"},
                "ingress": {"decision": "n/a", "policies": [], "reason": "destination is not a pod"},
            })
        );
        assert_eq!(
            serde_json::to_value(Decision::Unrestricted).expect("serializes"),
            "unrestricted"
        );
        assert_eq!(serde_json::to_value(Direction::Egress).expect("serializes"), "egress");
    }

    #[test]
    fn an_empty_view_compiles_to_an_empty_set_that_answers_not_applicable() {
        let mut view = crate::cluster::ClusterView::new();
        view.reindex();
        let (set, diagnostics) = PolicySet::compile(&view);
        assert!(set.is_empty() && diagnostics.is_empty());
        let connection = Connection {
            src: "10.0.0.1".parse().expect("test IP"),
            dst: "10.0.0.2".parse().expect("test IP"),
            protocol: Protocol::Tcp,
            dst_port: Some(80),
        };
        let verdict = set.evaluate(&view, &connection);
        assert_eq!(verdict.egress.decision, Decision::NotApplicable);
        assert_eq!(verdict.ingress.reason, "destination is not a pod");
    }
}
