//! Identity: what an IP address (and port) is — pod, service, node, host network, external, or
//! unknown — according to the cluster view.
//!
//! Pure lookups on an indexed [`ClusterView`]; names learned from DNS are attached by the engine,
//! which knows who asked.

use std::net::IpAddr;

use serde::Serialize;

use crate::cluster::{ClusterView, IpOwner, ObjectKey};
use crate::flow::key::Protocol;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum EndpointKind {
    Pod,
    Service,
    Node,
    Host,
    External,
    Unknown,
}

/// What one end of a flow is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub kind: EndpointKind,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub node: Option<String>,
}

impl Identity {
    fn of_kind(kind: EndpointKind) -> Self {
        Self { kind, namespace: None, name: None, node: None }
    }

    fn object(kind: EndpointKind, key: &ObjectKey, node: Option<String>) -> Self {
        Self { kind, namespace: key.namespace.clone(), name: Some(key.name.clone()), node }
    }

    /// `namespace/name` for namespaced objects, the name alone otherwise.
    #[must_use]
    pub fn qualified_name(&self) -> Option<String> {
        match (&self.namespace, &self.name) {
            (Some(ns), Some(name)) => Some(format!("{ns}/{name}")),
            (None, Some(name)) => Some(name.clone()),
            _ => None,
        }
    }
}

/// Resolves `ip:port` against the view. Call `view.reindex()` after changes first.
#[must_use]
pub fn resolve(view: &ClusterView, ip: IpAddr, port: u16, protocol: Protocol) -> Identity {
    let owners = view.owners(ip);
    // A virtual service address wins: it is what the client dialled. An external IP shared
    // with a node is the Service only on the Service's ports.
    for owner in owners {
        let service = match owner {
            IpOwner::ServiceClusterIp(key) => Some(key),
            IpOwner::ServiceExternalIp(key)
                if crate::cluster::external_ip_names_service(
                    view,
                    ip,
                    key,
                    Some((protocol, port)),
                ) =>
            {
                Some(key)
            }
            _ => None,
        };
        if let Some(key) = service {
            return Identity::object(EndpointKind::Service, key, None);
        }
    }
    for owner in owners {
        if let IpOwner::Pod(key) = owner {
            let node = view.pods.get(key).and_then(|pod| pod.node.clone());
            return Identity::object(EndpointKind::Pod, key, node);
        }
    }
    let node_name = owners.iter().find_map(|owner| match owner {
        IpOwner::Node(name) => Some(name.clone()),
        _ => None,
    });
    if node_name.is_some()
        && port != 0
        && let Some(service) = node_port_service(view, port, protocol)
    {
        return Identity::object(EndpointKind::Service, &service, None);
    }
    // Host-network pods share the node's address: the port says which one it is.
    let host_pods: Vec<&ObjectKey> = owners
        .iter()
        .filter_map(|owner| match owner {
            IpOwner::HostNetworkPod(key) => Some(key),
            _ => None,
        })
        .collect();
    let listening = host_pods.iter().find(|key| {
        view.pods
            .get(key)
            .is_some_and(|pod| pod.ports.iter().any(|p| p.port == port && p.protocol == protocol))
    });
    if let Some(key) = listening {
        let node = view.pods.get(key).and_then(|pod| pod.node.clone());
        return Identity::object(EndpointKind::Host, key, node);
    }
    if let Some(name) = node_name {
        return Identity {
            kind: EndpointKind::Node,
            namespace: None,
            name: Some(name.clone()),
            node: Some(name),
        };
    }
    if let Some(key) = host_pods.first() {
        // A host-network pod's address with no Node object listed: the host, named by its node.
        let node = view.pods.get(key).and_then(|pod| pod.node.clone());
        return Identity { kind: EndpointKind::Host, namespace: None, name: node.clone(), node };
    }
    if let Some(node) = view.node_for_pod_cidr(ip) {
        // The first address of a node's pod CIDR is its bridge gateway: the node itself.
        return if node.is_bridge_gateway(ip) {
            Identity {
                kind: EndpointKind::Node,
                namespace: None,
                name: Some(node.name.clone()),
                node: Some(node.name.clone()),
            }
        } else {
            Identity { node: Some(node.name.clone()), ..Identity::of_kind(EndpointKind::Unknown) }
        };
    }
    if is_local_scope(ip) || (view.is_empty() && !is_global(ip)) {
        return Identity::of_kind(EndpointKind::Unknown);
    }
    Identity::of_kind(EndpointKind::External)
}

fn node_port_service(view: &ClusterView, port: u16, protocol: Protocol) -> Option<ObjectKey> {
    view.services.values().find_map(|service| {
        service
            .ports
            .iter()
            .any(|p| p.node_port == Some(port) && p.protocol == protocol)
            .then(|| service.key())
    })
}

/// Loopback, link-local, multicast, unspecified: never "external", whatever the cluster.
fn is_local_scope(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_unspecified()
                || v4.is_broadcast()
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_multicast()
                || v6.is_unspecified()
                || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

/// Without a cluster to say what is inside, only globally routed addresses are external.
fn is_global(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_private() || a == 100 && (64..128).contains(&b) || is_local_scope(ip))
        }
        // fc00::/7 is unique-local, the IPv6 private range.
        IpAddr::V6(v6) => (v6.segments()[0] & 0xfe00) != 0xfc00 && !is_local_scope(ip),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{
        ClusterEvent, ContainerPort, Labels, Node, NodeAddress, Object, Pod, PodPhase, Service,
        ServicePort,
    };

    fn view() -> ClusterView {
        let mut view = ClusterView::new();
        let pod = |name: &str, ip: &str, host_network: bool, ports: Vec<ContainerPort>| Pod {
            namespace: "kube-system".into(),
            name: name.into(),
            labels: Labels::new(),
            node: Some("n1".into()),
            ips: vec![ip.parse().unwrap()],
            host_network,
            phase: PodPhase::Running,
            ports,
        };
        view.apply(ClusterEvent::Upsert(Object::Pod(pod(
            "coredns-1",
            "10.244.1.2",
            false,
            vec![],
        ))));
        view.apply(ClusterEvent::Upsert(Object::Pod(pod(
            "node-exporter",
            "10.0.0.11",
            true,
            vec![ContainerPort {
                name: Some("metrics".into()),
                port: 9100,
                protocol: Protocol::Tcp,
            }],
        ))));
        view.apply(ClusterEvent::Upsert(Object::Node(Node {
            name: "n1".into(),
            labels: Labels::new(),
            addresses: vec![NodeAddress {
                kind: "InternalIP".into(),
                ip: "10.0.0.11".parse().unwrap(),
            }],
            pod_cidrs: vec!["10.244.1.0/24".parse().unwrap()],
        })));
        view.apply(ClusterEvent::Upsert(Object::Service(Service {
            namespace: "shop".into(),
            name: "web".into(),
            service_type: "NodePort".into(),
            cluster_ips: vec!["10.96.0.20".parse().unwrap()],
            external_ips: vec![],
            load_balancer_ips: vec!["198.51.100.5".parse().unwrap()],
            ports: vec![ServicePort {
                name: None,
                port: 80,
                protocol: Protocol::Tcp,
                node_port: Some(30080),
                target_port: None,
            }],
            selector: None,
        })));
        view.reindex();
        view
    }

    fn kind_of(view: &ClusterView, ip: &str, port: u16) -> (EndpointKind, Option<String>) {
        let id = resolve(view, ip.parse().unwrap(), port, Protocol::Tcp);
        (id.kind, id.qualified_name())
    }

    /// A load-balancer IP that is a node's own address (k3s ServiceLB): the Service on its
    /// ports, the node (or its host-network pod) on every other.
    #[test]
    fn a_node_address_that_is_also_a_load_balancer_ip_is_the_service_only_on_its_ports() {
        let mut view = view();
        let mut web = view.services[&ObjectKey::namespaced("shop", "web")].clone();
        web.load_balancer_ips = vec!["10.0.0.11".parse().unwrap()];
        view.apply(ClusterEvent::Upsert(Object::Service(web)));
        view.reindex();
        assert_eq!(
            kind_of(&view, "10.0.0.11", 80),
            (EndpointKind::Service, Some("shop/web".into()))
        );
        assert_eq!(kind_of(&view, "10.0.0.11", 22), (EndpointKind::Node, Some("n1".into())));
        assert_eq!(
            kind_of(&view, "10.0.0.11", 9100),
            (EndpointKind::Host, Some("kube-system/node-exporter".into()))
        );
    }

    #[test]
    fn every_kind_of_address_is_told_apart() {
        let view = view();
        assert_eq!(
            kind_of(&view, "10.244.1.2", 53),
            (EndpointKind::Pod, Some("kube-system/coredns-1".into()))
        );
        assert_eq!(
            kind_of(&view, "10.96.0.20", 80),
            (EndpointKind::Service, Some("shop/web".into()))
        );
        assert_eq!(
            kind_of(&view, "198.51.100.5", 80),
            (EndpointKind::Service, Some("shop/web".into()))
        );
        assert_eq!(
            kind_of(&view, "10.0.0.11", 30080),
            (EndpointKind::Service, Some("shop/web".into()))
        );
        assert_eq!(
            kind_of(&view, "10.0.0.11", 9100),
            (EndpointKind::Host, Some("kube-system/node-exporter".into()))
        );
        assert_eq!(kind_of(&view, "10.0.0.11", 22), (EndpointKind::Node, Some("n1".into())));
        assert_eq!(kind_of(&view, "10.244.1.1", 0), (EndpointKind::Node, Some("n1".into())));
        assert_eq!(kind_of(&view, "10.244.1.99", 80).0, EndpointKind::Unknown);
        assert_eq!(kind_of(&view, "203.0.113.10", 443).0, EndpointKind::External);
        assert_eq!(kind_of(&view, "169.254.169.254", 80).0, EndpointKind::Unknown);
    }

    #[test]
    fn without_a_cluster_only_global_addresses_are_external() {
        let view = ClusterView::new();
        assert_eq!(kind_of(&view, "172.17.0.2", 80).0, EndpointKind::Unknown);
        assert_eq!(kind_of(&view, "203.0.113.10", 443).0, EndpointKind::External);
        assert_eq!(kind_of(&view, "fd00::1", 443).0, EndpointKind::Unknown);
        assert_eq!(kind_of(&view, "2001:db8::10", 443).0, EndpointKind::External);
    }
}
