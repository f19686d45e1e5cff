//! Evaluates one connection against a compiled [`PolicySet`]: who the two ends are, and for each
//! side that is a pod, whether its policies isolate it and which rule (if any) allows the traffic.
//!
//! Pod labels are matched against policy selectors here, at evaluation time: a namespace holds a
//! handful of policies, so this is cheap, and it keeps memory proportional to policies rather
//! than pods × policies. Service addresses are handed to `service`; reasons are worded by
//! `describe`. Nothing here mutates the set or the view.

use std::net::IpAddr;

use super::compile::{CompiledPolicy, Peer, PolicySet, PortMatch, PortSpec, Rule};
use super::describe;
use super::{Connection, Decision, Direction, SideVerdict, Verdict, service};
use crate::cluster::{ClusterView, IpOwner, Pod, Service};
use crate::flow::key::Protocol;

/// What an address is, as far as policy cares.
#[derive(Debug, Clone, Copy)]
pub(super) enum End<'a> {
    Pod(&'a Pod),
    HostNetworkPod(&'a Pod),
    Service(&'a Service),
    Node(&'a str),
    Unknown,
}

impl<'a> End<'a> {
    /// Classifies `ip`, preferring the most specific owner: a pod, a service, a host-network
    /// pod, a node.
    /// `service` is the protocol and port dialled, for a destination: an external IP that a
    /// node shares is the Service only on the Service's ports.
    pub fn of(view: &'a ClusterView, ip: IpAddr, service: Option<(Protocol, u16)>) -> Self {
        let owners = view.owners(ip);
        let mut best = Self::Unknown;
        for owner in owners {
            let candidate = match owner {
                IpOwner::Pod(key) => view.pods.get(key).map(Self::Pod),
                IpOwner::HostNetworkPod(key) => view.pods.get(key).map(Self::HostNetworkPod),
                IpOwner::ServiceClusterIp(key) => view.services.get(key).map(Self::Service),
                IpOwner::ServiceExternalIp(key) => {
                    crate::cluster::external_ip_names_service(view, ip, key, service)
                        .then(|| view.services.get(key).map(Self::Service))
                        .flatten()
                }
                IpOwner::Node(name) => Some(Self::Node(name.as_str())),
            };
            if let Some(candidate) = candidate
                && candidate.rank() < best.rank()
            {
                best = candidate;
            }
        }
        best
    }

    fn rank(&self) -> u8 {
        match self {
            Self::Pod(_) => 0,
            // A Service address (on the Service's port, for an external IP a node shares) is
            // what the client dialled, as identities say too.
            Self::Service(_) => 1,
            Self::HostNetworkPod(_) => 2,
            Self::Node(_) => 3,
            Self::Unknown => 4,
        }
    }

    /// The pod a pod selector can match: host-network pods are never matched by selectors.
    pub fn selectable_pod(&self) -> Option<&'a Pod> {
        match self {
            Self::Pod(pod) => Some(pod),
            _ => None,
        }
    }

    /// Why this end has no verdict of its own; `role` is "source" or "destination".
    pub fn not_governed(&self, role: &str) -> String {
        match self {
            Self::HostNetworkPod(pod) => format!(
                "{role} {}/{} uses the host network, which NetworkPolicy does not govern",
                pod.namespace, pod.name
            ),
            Self::Node(name) => format!("{role} is not a pod (node {name})"),
            Self::Service(service) => {
                format!("{role} is not a pod (service {}/{})", service.namespace, service.name)
            }
            Self::Pod(_) | Self::Unknown => format!("{role} is not a pod"),
        }
    }
}

/// The other end of a side's traffic: its address on the wire, and the pod behind it if any.
#[derive(Debug, Clone, Copy)]
pub(super) struct PeerEnd<'a> {
    pub ip: IpAddr,
    pub pod: Option<&'a Pod>,
}

/// One side to judge: `subject` is the pod whose policies apply; `port_owner` the pod whose
/// container ports resolve named ports (the destination).
#[derive(Debug, Clone, Copy)]
pub(super) struct Side<'a> {
    pub direction: Direction,
    pub subject: &'a Pod,
    pub peer: PeerEnd<'a>,
    pub protocol: Protocol,
    pub port: Option<u16>,
    pub port_owner: Option<&'a Pod>,
}

impl<'a> Side<'a> {
    pub fn egress(
        subject: &'a Pod,
        peer: PeerEnd<'a>,
        protocol: Protocol,
        port: Option<u16>,
    ) -> Self {
        Self { direction: Direction::Egress, subject, peer, protocol, port, port_owner: peer.pod }
    }

    pub fn ingress(
        subject: &'a Pod,
        peer: PeerEnd<'a>,
        protocol: Protocol,
        port: Option<u16>,
    ) -> Self {
        Self {
            direction: Direction::Ingress,
            subject,
            peer,
            protocol,
            port,
            port_owner: Some(subject),
        }
    }
}

/// How a rule's peers matched the peer end.
enum PeerMatch {
    Any,
    Pod,
    /// An ipBlock matched; `cidr` is what to name when the address belongs to a pod.
    Block {
        cidr: String,
    },
}

impl PolicySet {
    /// The verdict for one connection. The view must be `reindex()`ed and should be the one the
    /// set was compiled from; a namespace added since is still matched, just more slowly.
    #[must_use]
    pub fn evaluate(&self, view: &ClusterView, connection: &Connection) -> Verdict {
        let src = End::of(view, connection.src, None);
        let dialled = connection.dst_port.map(|port| (connection.protocol, port));
        let dst = End::of(view, connection.dst, dialled);
        if let End::Service(svc) = dst {
            return service::evaluate(self, view, connection, src, svc, false);
        }
        if matches!(dst, End::Node(_) | End::HostNetworkPod(_))
            && let Some(svc) = service::by_node_port(view, connection)
        {
            return service::evaluate(self, view, connection, src, svc, true);
        }
        let src_peer = PeerEnd { ip: connection.src, pod: src.selectable_pod() };
        let dst_peer = PeerEnd { ip: connection.dst, pod: dst.selectable_pod() };
        let egress = match src {
            End::Pod(pod) => self.judge(
                view,
                &Side::egress(pod, dst_peer, connection.protocol, connection.dst_port),
            ),
            other => SideVerdict::not_applicable(other.not_governed("source")),
        };
        let ingress = match dst {
            End::Pod(pod) => self.judge(
                view,
                &Side::ingress(pod, src_peer, connection.protocol, connection.dst_port),
            ),
            other => SideVerdict::not_applicable(other.not_governed("destination")),
        };
        Verdict { egress, ingress }
    }

    /// The verdict for one side whose subject is a (pod-network) pod.
    pub(super) fn judge(&self, view: &ClusterView, side: &Side<'_>) -> SideVerdict {
        let subject = side.subject;
        let direction = side.direction;
        let isolating: Vec<&CompiledPolicy> = self
            .in_namespace(&subject.namespace)
            .filter(|policy| {
                policy.rules(direction).is_some() && policy.pod_selector.matches(&subject.labels)
            })
            .collect();
        if isolating.is_empty() {
            return SideVerdict {
                decision: Decision::Unrestricted,
                policies: Vec::new(),
                reason: format!(
                    "no NetworkPolicy in {} selects {}/{} for {direction}",
                    subject.namespace, subject.namespace, subject.name
                ),
            };
        }
        if let Some(reason) = always_allowed(view, side) {
            return SideVerdict { decision: Decision::Allow, policies: Vec::new(), reason };
        }

        let mut allowing: Vec<String> = Vec::new();
        let mut allowed_by: Vec<String> = Vec::new();
        let mut wrong_port: Option<String> = None;
        let mut wrong_peer: Option<String> = None;
        for policy in &isolating {
            let rules = policy.rules(direction).unwrap_or_default();
            for (index, rule) in rules.iter().enumerate() {
                let peer = self.rule_peer_match(view, policy, rule, side);
                let port = rule_port_match(rule, side);
                match (peer, port) {
                    (Some(how), true) => {
                        let mut text = format!("{} {direction} rule {index}", policy.key);
                        if let (PeerMatch::Block { cidr }, Some(pod)) = (&how, side.peer.pod) {
                            text.push_str(&format!(
                                " (ipBlock {cidr} matched the pod IP of {}/{})",
                                pod.namespace, pod.name
                            ));
                        }
                        allowing.push(policy.key.clone());
                        allowed_by.push(text);
                        break;
                    }
                    (Some(_), false) if wrong_port.is_none() => {
                        wrong_port = Some(format!(
                            "{} allows {} only",
                            policy.key,
                            describe::ports(rule.ports.as_deref())
                        ));
                    }
                    (None, true) if wrong_peer.is_none() => {
                        wrong_peer = Some(format!(
                            "{} allows {} only {} {}",
                            policy.key,
                            describe::ports(rule.ports.as_deref()),
                            if direction == Direction::Egress { "to" } else { "from" },
                            describe::peers(rule.peers.as_deref(), &policy.namespace)
                        ));
                    }
                    _ => {}
                }
            }
        }
        if !allowing.is_empty() {
            return SideVerdict {
                decision: Decision::Allow,
                policies: allowing,
                reason: format!("allowed by {}", allowed_by.join("; ")),
            };
        }
        let policies: Vec<String> = isolating.iter().map(|policy| policy.key.clone()).collect();
        let mut reason = format!(
            "{}/{} is isolated for {direction} by {}; no {direction} rule allows {}",
            subject.namespace,
            subject.name,
            policies.join(", "),
            describe::traffic(side)
        );
        let has_rules =
            isolating.iter().any(|p| !p.rules(direction).unwrap_or_default().is_empty());
        if let Some(miss) = wrong_port.or(wrong_peer) {
            reason.push_str("; ");
            reason.push_str(&miss);
        } else if !has_rules {
            match policies.as_slice() {
                [only] => reason.push_str(&format!(" ({only} has no {direction} rules: deny all)")),
                _ => reason.push_str(&format!(" (none of them has {direction} rules: deny all)")),
            }
        }
        SideVerdict { decision: Decision::Deny, policies, reason }
    }

    fn rule_peer_match(
        &self,
        view: &ClusterView,
        policy: &CompiledPolicy,
        rule: &Rule,
        side: &Side<'_>,
    ) -> Option<PeerMatch> {
        let Some(peers) = &rule.peers else {
            return Some(PeerMatch::Any);
        };
        peers.iter().find_map(|peer| self.peer_match(view, policy, peer, side.peer))
    }

    fn peer_match(
        &self,
        view: &ClusterView,
        policy: &CompiledPolicy,
        peer: &Peer,
        end: PeerEnd<'_>,
    ) -> Option<PeerMatch> {
        match peer {
            Peer::Pods { namespaces, pods } => {
                let pod = end.pod?;
                let namespace_ok = match namespaces {
                    None => pod.namespace == policy.namespace,
                    Some((id, selector)) => {
                        self.namespace_selected(view, *id, selector, &pod.namespace)
                    }
                };
                (namespace_ok && pods.matches(&pod.labels)).then_some(PeerMatch::Pod)
            }
            // Matched against the address on the wire, pod IPs included (upstream e2e behaviour).
            Peer::Block(block) => block
                .contains(end.ip.to_canonical())
                .then(|| PeerMatch::Block { cidr: block.cidr.to_string() }),
            Peer::Invalid => None,
        }
    }
}

fn rule_port_match(rule: &Rule, side: &Side<'_>) -> bool {
    match &rule.ports {
        None => true,
        Some(ports) => ports.iter().any(|port| port_matches(port, side)),
    }
}

fn port_matches(entry: &PortMatch, side: &Side<'_>) -> bool {
    if entry.protocol != side.protocol {
        return false;
    }
    match &entry.port {
        PortSpec::Any => true,
        PortSpec::Range(start, end) => {
            side.port.is_some_and(|port| (*start..=*end).contains(&port))
        }
        // A named port means the destination pod's container port of that name and protocol;
        // a destination that is not a pod has no named ports.
        PortSpec::Named(name) => match (side.port_owner, side.port) {
            (Some(pod), Some(port)) => pod.ports.iter().any(|container| {
                container.name.as_deref() == Some(name.as_str())
                    && container.protocol == side.protocol
                    && container.port == port
            }),
            _ => false,
        },
        PortSpec::Invalid => false,
    }
}

/// Traffic no policy can block: a pod talking to itself, and a pod and its own node (by any of
/// the node's addresses, or its bridge gateway, where the kubelet's probes come from).
fn always_allowed(view: &ClusterView, side: &Side<'_>) -> Option<String> {
    let subject = side.subject;
    if side.peer.pod.is_some_and(|pod| std::ptr::eq(pod, subject))
        || subject.ips.contains(&side.peer.ip)
    {
        return Some(format!(
            "{}/{} talks to itself, which NetworkPolicy cannot block",
            subject.namespace, subject.name
        ));
    }
    let node = view.nodes.get(subject.node.as_deref()?)?;
    let ip = side.peer.ip;
    // The gateway address is the node's only while no pod has it: IPAM that ignores the
    // node's podCIDR (Calico, Cilium cluster-pool) may give it to a pod elsewhere.
    let gateway = || {
        node.is_bridge_gateway(ip)
            && !view.owners(ip).iter().any(|owner| matches!(owner, IpOwner::Pod(_)))
    };
    (node.addresses.iter().any(|address| address.ip == ip) || gateway()).then(|| {
        format!(
            "traffic between {}/{} and its own node {} is always allowed",
            subject.namespace, subject.name, node.name
        )
    })
}
