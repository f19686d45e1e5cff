//! Connections to a Service address (ClusterIP, external/load-balancer IP, or a node IP plus a
//! nodePort): kube-proxy rewrites them to one ready backend, and policy sees the rewritten
//! connection, so each backend is judged with the port translated through `targetPort`, and the
//! per-backend answers are folded into one per side (allow, deny, or partial).
//!
//! This module only routes and folds; the judging itself is `evaluate`'s.

use std::net::IpAddr;

use super::compile::PolicySet;
use super::describe;
use super::evaluate::{End, PeerEnd, Side};
use super::{Connection, Decision, SideVerdict, Verdict};
use crate::cluster::{ClusterView, IpOwner, Pod, Service, ServicePort, TargetPort};

/// How many backend names a reason lists before "and N more".
const NAMES_SHOWN: usize = 5;

/// The service that owns `connection`'s destination port as a nodePort, if any.
pub(super) fn by_node_port<'a>(
    view: &'a ClusterView,
    connection: &Connection,
) -> Option<&'a Service> {
    let port = connection.dst_port?;
    view.services.values().find(|service| {
        service.ports.iter().any(|p| p.node_port == Some(port) && p.protocol == connection.protocol)
    })
}

/// One ready backend: its address (of the connection's family when it has several), its pod if
/// known, and the port the connection arrives on after translation.
struct Backend<'a> {
    ip: IpAddr,
    pod: Option<&'a Pod>,
    port: u16,
}

impl Backend<'_> {
    fn name(&self) -> String {
        match self.pod {
            Some(pod) => format!("{}/{}", pod.namespace, pod.name),
            None => self.ip.to_string(),
        }
    }
}

pub(super) fn evaluate(
    set: &PolicySet,
    view: &ClusterView,
    connection: &Connection,
    src: End<'_>,
    service: &Service,
    via_node_port: bool,
) -> Verdict {
    let key = format!("{}/{}", service.namespace, service.name);
    let service_port = service.ports.iter().find(|p| {
        p.protocol == connection.protocol
            && connection.dst_port.is_some()
            && if via_node_port {
                p.node_port == connection.dst_port
            } else {
                Some(p.port) == connection.dst_port
            }
    });
    let Some(service_port) = service_port else {
        let port = connection.dst_port.map(|p| format!(" port {p}")).unwrap_or_default();
        let reason = format!("service {key} has no {}{port}", connection.protocol);
        return Verdict::not_evaluated(&reason);
    };
    let (backends, unresolved) = backends(view, service, service_port, connection.dst);
    if backends.is_empty() {
        let reason = if unresolved.is_empty() {
            format!("service {key} has no ready endpoints")
        } else {
            format!(
                "service {key}: targetPort of port {} resolves on no ready endpoint ({})",
                service_port.port,
                describe::list(&unresolved, NAMES_SHOWN)
            )
        };
        return Verdict::not_evaluated(&reason);
    }

    let src_peer = PeerEnd { ip: connection.src, pod: src.selectable_pod() };
    let mut egress = Vec::new();
    let mut ingress = Vec::new();
    for backend in &backends {
        let name = backend.name();
        let dst_peer = PeerEnd { ip: backend.ip, pod: backend.pod.filter(|pod| !pod.host_network) };
        let port = Some(backend.port);
        let side = match src {
            End::Pod(pod) => {
                set.judge(view, &Side::egress(pod, dst_peer, connection.protocol, port))
            }
            other => SideVerdict::not_applicable(other.not_governed("source")),
        };
        egress.push((name.clone(), side));
        let side = match backend.pod {
            Some(pod) if pod.host_network => {
                SideVerdict::not_applicable(End::HostNetworkPod(pod).not_governed("backend"))
            }
            Some(pod) => set.judge(view, &Side::ingress(pod, src_peer, connection.protocol, port)),
            None => SideVerdict::not_applicable(format!("backend {name} is not a pod")),
        };
        ingress.push((name, side));
    }
    let prefix = format!(
        "via service {key} ({} {}→{})",
        connection.protocol,
        connection.dst_port.unwrap_or_default(),
        target_label(service_port)
    );
    Verdict { egress: fold(&prefix, &egress), ingress: fold(&prefix, &ingress) }
}

fn target_label(port: &ServicePort) -> String {
    match &port.target_port {
        None => port.port.to_string(),
        Some(TargetPort::Number(number)) => number.to_string(),
        Some(TargetPort::Name(name)) => format!("'{name}'"),
    }
}

/// The ready backends, deduplicated by address, and the names of those whose target port could
/// not be resolved.
fn backends<'a>(
    view: &'a ClusterView,
    service: &Service,
    port: &ServicePort,
    destination: IpAddr,
) -> (Vec<Backend<'a>>, Vec<String>) {
    let mut found: Vec<Backend<'a>> = Vec::new();
    let mut unresolved = Vec::new();
    let slices = view.endpoint_slices.values().filter(|slice| {
        slice.namespace == service.namespace && slice.service.as_deref() == Some(&service.name)
    });
    for slice in slices {
        for endpoint in slice.endpoints.iter().filter(|endpoint| endpoint.ready) {
            // kube-proxy translates a ClusterIP only to endpoints of its own family: a
            // dual-stack Service's other slice is not behind this address.
            let same_family =
                endpoint.addresses.iter().find(|ip| ip.is_ipv4() == destination.is_ipv4());
            let Some(ip) = same_family.copied() else {
                continue;
            };
            if found.iter().any(|backend| backend.ip == ip) {
                continue;
            }
            let pod = endpoint.pod.as_ref().and_then(|key| view.pods.get(key)).or_else(|| {
                view.owners(ip).iter().find_map(|owner| match owner {
                    IpOwner::Pod(key) | IpOwner::HostNetworkPod(key) => view.pods.get(key),
                    _ => None,
                })
            });
            let target = match &port.target_port {
                None => Some(port.port),
                Some(TargetPort::Number(number)) => Some(*number),
                // The name is resolved on each backend pod; the slice's port of the same name
                // (which the endpoints controller resolved) covers backends we know no pod for.
                Some(TargetPort::Name(name)) => pod
                    .and_then(|pod| {
                        pod.ports
                            .iter()
                            .find(|c| {
                                c.name.as_deref() == Some(name) && c.protocol == port.protocol
                            })
                            .map(|c| c.port)
                    })
                    .or_else(|| {
                        slice
                            .ports
                            .iter()
                            .find(|p| p.name == port.name && p.protocol == port.protocol)
                            .and_then(|p| p.port)
                    }),
            };
            match target {
                Some(target) => found.push(Backend { ip, pod, port: target }),
                None => {
                    unresolved.push(Backend { ip, pod, port: 0 }.name());
                }
            }
        }
    }
    (found, unresolved)
}

/// One backend's name and its verdict for the side being folded.
type BackendVerdict<'a> = &'a (String, SideVerdict);

/// Folds per-backend answers: allow when every governed backend permits, deny when none does,
/// partial otherwise; backends the side does not apply to are left out.
fn fold(prefix: &str, results: &[(String, SideVerdict)]) -> SideVerdict {
    let applicable: Vec<&(String, SideVerdict)> =
        results.iter().filter(|(_, v)| v.decision != Decision::NotApplicable).collect();
    if applicable.is_empty() {
        let reason = results.first().map_or("no backend", |(_, v)| v.reason.as_str());
        return SideVerdict::not_applicable(format!("{prefix}: {reason}"));
    }
    let (permitted, denied): (Vec<BackendVerdict<'_>>, Vec<BackendVerdict<'_>>) =
        applicable.iter().copied().partition(|(_, v)| v.decision.permits());
    let decision = if denied.is_empty() {
        if permitted.iter().any(|(_, v)| v.decision == Decision::Allow) {
            Decision::Allow
        } else {
            Decision::Unrestricted
        }
    } else if permitted.is_empty() {
        Decision::Deny
    } else {
        Decision::Partial
    };
    // Deciding policies: the allowing ones when all permit, the isolating ones when all deny,
    // both when the backends disagree.
    let mut policies: Vec<String> =
        applicable.iter().flat_map(|(_, v)| v.policies.iter().cloned()).collect();
    policies.sort();
    policies.dedup();
    let reason = match decision {
        Decision::Partial => {
            let allowed: Vec<String> = permitted.iter().map(|(name, _)| name.clone()).collect();
            let refused: Vec<String> = denied.iter().map(|(name, _)| name.clone()).collect();
            let first_denial = denied.first().map_or("", |(_, v)| v.reason.as_str());
            format!(
                "{prefix}: allowed for {} of {} backends ({}); denied for {} ({first_denial})",
                allowed.len(),
                applicable.len(),
                describe::list(&allowed, NAMES_SHOWN),
                describe::list(&refused, NAMES_SHOWN),
            )
        }
        _ => {
            let mut reasons: Vec<String> = Vec::new();
            for (_, verdict) in &applicable {
                if !reasons.contains(&verdict.reason) {
                    reasons.push(verdict.reason.clone());
                }
            }
            let count = applicable.len();
            let backends =
                if count == 1 { "1 backend".to_owned() } else { format!("{count} backends") };
            let shown = reasons.get(..3).unwrap_or(&reasons).join("; ");
            let more = reasons.len().saturating_sub(3);
            let more = if more > 0 { format!("; and {more} more") } else { String::new() };
            format!("{prefix}, {backends}: {shown}{more}")
        }
    };
    SideVerdict { decision, policies, reason }
}

#[cfg(test)]
mod tests {
    use crate::policy::Decision::{Allow, Deny, NotApplicable, Partial, Unrestricted};
    use crate::policy::fixtures::{cluster_with, tcp};
    use crate::policy::{PolicySet, Verdict};

    const WEB_A: &str = "10.244.1.10";
    const API: &str = "10.96.0.10";

    fn verdict(policies: &[(&str, &str, &str)], src: &str, dst: &str, port: u16) -> Verdict {
        let view = cluster_with(policies);
        let (set, diagnostics) = PolicySet::compile(&view);
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        set.evaluate(&view, &tcp(src, dst, port))
    }

    const API_FROM_FRONTEND: &str = "
podSelector: {matchLabels: {app: api}}
ingress: [{from: [{podSelector: {matchLabels: {role: frontend}}}], ports: [{port: http}]}]";
    const API_8080: &str = "
podSelector: {matchLabels: {app: api}}
ingress: [{ports: [{port: 8080}]}]";

    #[test]
    fn a_service_address_is_allowed_when_every_backend_allows_after_target_port_translation() {
        let v = verdict(&[("shop", "api-from-frontend", API_FROM_FRONTEND)], WEB_A, API, 80);
        assert_eq!(v.egress.decision, Unrestricted);
        assert_eq!(v.ingress.decision, Allow, "{}", v.ingress.reason);
        assert_eq!(v.ingress.policies, ["shop/api-from-frontend"]);
        assert!(v.ingress.reason.starts_with("via service shop/api (TCP 80→'http'), 2 backends: allowed by shop/api-from-frontend ingress rule 0"), "{}", v.ingress.reason);
    }

    /// A dual-stack Service: the IPv6 slice is not behind the IPv4 ClusterIP, so an egress
    /// rule for every IPv4 address allows the connection (not "partial" for the v6 backends).
    #[test]
    fn only_the_destination_family_endpoints_are_backends() {
        use crate::cluster::{ClusterEvent, EndpointSlice, Object};
        let mut view = cluster_with(&[
            ("shop", "deny-egress", "podSelector: {}\npolicyTypes: [Egress]"),
            (
                "shop",
                "to-v4",
                "podSelector: {}\npolicyTypes: [Egress]\negress: [{to: [{ipBlock: {cidr: 0.0.0.0/0}}]}]",
            ),
        ]);
        view.apply(ClusterEvent::Upsert(Object::EndpointSlice(EndpointSlice {
            namespace: "shop".into(),
            name: "api-v6".into(),
            service: Some("api".into()),
            endpoints: vec![crate::policy::fixtures::endpoint("fd00::20", Some("api-1"), true)],
            ports: vec![],
        })));
        let (set, _) = PolicySet::compile(&view);
        let v = set.evaluate(&view, &tcp(WEB_A, API, 80));
        assert_eq!(v.egress.decision, Allow, "{}", v.egress.reason);
        assert!(v.egress.reason.contains("2 backends"), "{}", v.egress.reason);
    }

    /// A node address that is also a Service's load-balancer IP: another port of it is the
    /// node, and default-deny egress denies it (not "no such port on the Service").
    #[test]
    fn another_port_of_a_node_address_used_as_a_load_balancer_ip_is_the_node() {
        use crate::cluster::{ClusterEvent, Object, ObjectKey};
        let mut view =
            cluster_with(&[("shop", "deny-egress", "podSelector: {}\npolicyTypes: [Egress]")]);
        let mut api = view.services[&ObjectKey::namespaced("shop", "api")].clone();
        api.load_balancer_ips = vec!["192.168.0.12".parse().unwrap()];
        view.apply(ClusterEvent::Upsert(Object::Service(api)));
        view.reindex();
        let (set, _) = PolicySet::compile(&view);
        let to_ssh = set.evaluate(&view, &tcp(WEB_A, "192.168.0.12", 22));
        assert_eq!(to_ssh.egress.decision, Deny, "{}", to_ssh.egress.reason);
        let to_service = set.evaluate(&view, &tcp(WEB_A, "192.168.0.12", 80));
        assert!(
            to_service.egress.reason.starts_with("via service shop/api"),
            "{}",
            to_service.egress.reason
        );
    }

    #[test]
    fn a_service_address_is_partial_when_only_some_backends_allow() {
        let v = verdict(&[("shop", "api-8080", API_8080)], WEB_A, API, 80);
        assert_eq!(v.ingress.decision, Partial, "{}", v.ingress.reason);
        assert_eq!(v.ingress.policies, ["shop/api-8080"]);
        assert!(
            v.ingress
                .reason
                .contains("allowed for 1 of 2 backends (shop/api-1); denied for shop/api-2"),
            "{}",
            v.ingress.reason
        );
        assert_eq!(v.violation(), None);
    }

    #[test]
    fn egress_to_a_service_is_partial_when_an_ip_block_covers_some_backends() {
        let policies = [
            ("shop", "default-deny-egress", "podSelector: {}\npolicyTypes: [Egress]"),
            (
                "shop",
                "allow-node-1-pods",
                "podSelector: {}\npolicyTypes: [Egress]\negress: [{to: [{ipBlock: {cidr: 10.244.1.0/24}}]}]",
            ),
        ];
        let v = verdict(&policies, WEB_A, API, 80);
        assert_eq!(v.egress.decision, Partial, "{}", v.egress.reason);
        assert_eq!(v.egress.policies, ["shop/allow-node-1-pods", "shop/default-deny-egress"]);
        assert_eq!(v.ingress.decision, Unrestricted);
    }

    #[test]
    fn a_service_address_is_denied_when_no_backend_allows() {
        let v = verdict(&[("shop", "deny", "podSelector: {}")], WEB_A, API, 80);
        assert_eq!(v.ingress.decision, Deny);
        assert_eq!(v.ingress.policies, ["shop/deny"]);
        assert_eq!(v.violation(), Some(crate::policy::Direction::Ingress));
    }

    #[test]
    fn a_named_egress_port_resolves_on_each_backend_of_a_service() {
        let policy = "podSelector: {matchLabels: {app: web}}\npolicyTypes: [Egress]\negress: [{ports: [{port: http}]}]";
        let v = verdict(&[("shop", "http", policy)], WEB_A, API, 80);
        assert_eq!(v.egress.decision, Allow, "{}", v.egress.reason);
        assert_eq!(v.egress.policies, ["shop/http"]);
    }

    #[test]
    fn a_service_without_ready_endpoints_is_not_applicable() {
        let v = verdict(&[("shop", "deny", "podSelector: {}")], WEB_A, "10.96.0.99", 80);
        assert_eq!(v.egress.decision, NotApplicable);
        assert_eq!(v.ingress.decision, NotApplicable);
        assert_eq!(v.ingress.reason, "service shop/empty has no ready endpoints");
    }

    #[test]
    fn a_port_the_service_does_not_expose_is_not_applicable() {
        let v = verdict(&[], WEB_A, API, 81);
        assert_eq!(v.ingress.decision, NotApplicable);
        assert_eq!(v.ingress.reason, "service shop/api has no TCP port 81");
    }

    #[test]
    fn a_service_port_without_target_port_keeps_its_port() {
        let policy = "podSelector: {matchLabels: {role: db}}\ningress: [{ports: [{port: 6379}]}]";
        let v = verdict(&[("shop", "db", policy)], WEB_A, "10.96.0.30", 6379);
        assert_eq!(v.ingress.decision, Allow, "{}", v.ingress.reason);
        assert_eq!(v.ingress.policies, ["shop/db"]);
    }

    #[test]
    fn a_node_ip_and_node_port_is_judged_through_the_service_backends() {
        let v = verdict(&[("shop", "api-8080", API_8080)], WEB_A, "192.168.0.12", 30080);
        assert_eq!(v.ingress.decision, Partial, "{}", v.ingress.reason);
        assert!(v.ingress.reason.contains("via service shop/api"), "{}", v.ingress.reason);
        let plain = verdict(&[("shop", "api-8080", API_8080)], WEB_A, "192.168.0.11", 30081);
        assert_eq!(plain.ingress.reason, "destination is not a pod (node n1)");
    }
}
