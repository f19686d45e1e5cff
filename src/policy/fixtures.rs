//! Test fixtures: a small shop cluster built through `ClusterEvent`s, as the snapshot loader and
//! the watcher would build it, plus policies written as the YAML users apply.
//!
//! ```text
//! namespaces  shop {team: shop}   ops {team: ops, project: myproject}   other {team: other}
//!             default, kube-system: not in the view (implicit name label only)
//! nodes       n1 192.168.0.11     n2 192.168.0.12
//! shop        web-a 10.244.1.10 {app: web, role: frontend} n1   web-b 10.244.1.11 (same labels)
//!             api-1 10.244.1.20 {app: api} http=8080 metrics=9090 n1
//!             api-2 10.244.2.21 {app: api} http=8081 n2
//!             db 10.244.1.30 {role: db} redis=6379 n1
//!             web-6 10.244.1.12 + fd00::12 {app: web6} n1
//!             host-agent 192.168.0.12 hostNetwork {app: agent} n2
//!             sctp 10.244.2.50 {app: sctp} n2      done 10.244.1.99 (Succeeded)
//! ops         monitor 10.244.3.40 {app: monitor, role: frontend}   batch 10.244.3.43 {app: batch}
//! other       client 10.244.3.41 {role: frontend}
//! default     client 10.244.3.42 {role: frontend}
//! kube-system coredns 10.244.3.53 {k8s-app: kube-dns} dns=UDP 53 dns-tcp=TCP 53
//! services    shop/api 10.96.0.10:80 → 'http', nodePort 30080; ready api-1, api-2 (+1 not ready)
//!             shop/db 10.96.0.30:6379 (no targetPort); shop/empty 10.96.0.99:80, no endpoints
//! ```

use std::net::IpAddr;

use k8s_openapi::api::networking::v1::NetworkPolicySpec;

use super::Connection;
use crate::cluster::{
    ClusterEvent, ClusterView, ContainerPort, EndpointSlice, Labels, Namespace, NetworkPolicy,
    Node, NodeAddress, Object, ObjectKey, Pod, PodPhase, Service, ServicePort, SliceEndpoint,
    TargetPort,
};
use crate::flow::key::Protocol;

pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

pub fn ip(text: &str) -> IpAddr {
    text.parse().expect("fixture IP")
}

pub fn pod(ns: &str, name: &str, ips: &[&str], pairs: &[(&str, &str)], node: &str) -> Pod {
    Pod {
        namespace: ns.into(),
        name: name.into(),
        labels: labels(pairs),
        node: Some(node.into()),
        ips: ips.iter().map(|text| ip(text)).collect(),
        host_network: false,
        phase: PodPhase::Running,
        ports: vec![],
    }
}

fn port(name: &str, number: u16, protocol: Protocol) -> ContainerPort {
    ContainerPort { name: Some(name.into()), port: number, protocol }
}

fn service(name: &str, cluster_ip: &str, port: u16, target: Option<TargetPort>) -> Service {
    Service {
        namespace: "shop".into(),
        name: name.into(),
        service_type: "NodePort".into(),
        cluster_ips: vec![ip(cluster_ip)],
        external_ips: vec![],
        load_balancer_ips: vec![],
        ports: vec![ServicePort {
            name: Some("web".into()),
            port,
            protocol: Protocol::Tcp,
            node_port: (name == "api").then_some(30080),
            target_port: target,
        }],
        selector: None,
    }
}

pub fn endpoint(address: &str, pod: Option<&str>, ready: bool) -> SliceEndpoint {
    SliceEndpoint {
        addresses: vec![ip(address)],
        ready,
        pod: pod.map(|name| ObjectKey::namespaced("shop", name)),
        node: None,
    }
}

/// The shop cluster without policies.
pub fn cluster() -> ClusterView {
    let mut view = ClusterView::new();
    let mut add = |object| view.apply(ClusterEvent::Upsert(object));
    for (name, pairs) in [
        ("shop", &[("team", "shop")][..]),
        ("ops", &[("team", "ops"), ("project", "myproject")][..]),
        ("other", &[("team", "other")][..]),
    ] {
        add(Object::Namespace(Namespace { name: name.into(), labels: labels(pairs) }));
    }
    for (name, address, pod_cidr) in
        [("n1", "192.168.0.11", "10.244.1.0/24"), ("n2", "192.168.0.12", "10.244.2.0/24")]
    {
        add(Object::Node(Node {
            name: name.into(),
            labels: Labels::new(),
            addresses: vec![NodeAddress { kind: "InternalIP".into(), ip: ip(address) }],
            pod_cidrs: vec![pod_cidr.parse().expect("a CIDR")],
        }));
    }
    let frontend = [("app", "web"), ("role", "frontend")];
    let mut api_1 = pod("shop", "api-1", &["10.244.1.20"], &[("app", "api")], "n1");
    api_1.ports = vec![port("http", 8080, Protocol::Tcp), port("metrics", 9090, Protocol::Tcp)];
    let mut api_2 = pod("shop", "api-2", &["10.244.2.21"], &[("app", "api")], "n2");
    api_2.ports = vec![port("http", 8081, Protocol::Tcp)];
    let mut db = pod("shop", "db", &["10.244.1.30"], &[("role", "db")], "n1");
    db.ports = vec![port("redis", 6379, Protocol::Tcp)];
    let mut agent = pod("shop", "host-agent", &["192.168.0.12"], &[("app", "agent")], "n2");
    agent.host_network = true;
    let mut done = pod("shop", "done", &["10.244.1.99"], &[("app", "web")], "n1");
    done.phase = PodPhase::Succeeded;
    let mut coredns =
        pod("kube-system", "coredns", &["10.244.3.53"], &[("k8s-app", "kube-dns")], "n2");
    coredns.ports = vec![port("dns", 53, Protocol::Udp), port("dns-tcp", 53, Protocol::Tcp)];
    for pod in [
        pod("shop", "web-a", &["10.244.1.10"], &frontend, "n1"),
        pod("shop", "web-b", &["10.244.1.11"], &frontend, "n1"),
        pod("shop", "web-6", &["10.244.1.12", "fd00::12"], &[("app", "web6")], "n1"),
        pod("shop", "sctp", &["10.244.2.50"], &[("app", "sctp")], "n2"),
        pod("ops", "monitor", &["10.244.3.40"], &[("app", "monitor"), ("role", "frontend")], "n2"),
        pod("ops", "batch", &["10.244.3.43"], &[("app", "batch")], "n2"),
        pod("other", "client", &["10.244.3.41"], &[("role", "frontend")], "n2"),
        pod("default", "client", &["10.244.3.42"], &[("role", "frontend")], "n2"),
        api_1,
        api_2,
        db,
        agent,
        done,
        coredns,
    ] {
        add(Object::Pod(pod));
    }
    add(Object::Service(service("api", "10.96.0.10", 80, Some(TargetPort::Name("http".into())))));
    add(Object::Service(service("db", "10.96.0.30", 6379, None)));
    add(Object::Service(service("empty", "10.96.0.99", 80, None)));
    add(Object::EndpointSlice(EndpointSlice {
        namespace: "shop".into(),
        name: "api-abc".into(),
        service: Some("api".into()),
        endpoints: vec![
            endpoint("10.244.1.20", Some("api-1"), true),
            endpoint("10.244.2.21", Some("api-2"), true),
            endpoint("10.244.9.9", None, false),
        ],
        ports: vec![],
    }));
    add(Object::EndpointSlice(EndpointSlice {
        namespace: "shop".into(),
        name: "db-xyz".into(),
        service: Some("db".into()),
        endpoints: vec![endpoint("10.244.1.30", Some("db"), true)],
        ports: vec![],
    }));
    view
}

/// A policy from the YAML of its `spec`.
pub fn policy(ns: &str, name: &str, spec: &str) -> Object {
    let spec: NetworkPolicySpec = serde_yaml_ng::from_str(spec).expect("fixture policy YAML");
    Object::NetworkPolicy(NetworkPolicy { namespace: ns.into(), name: name.into(), spec })
}

/// The shop cluster with these policies (`(namespace, name, spec YAML)`), indexed.
pub fn cluster_with(policies: &[(&str, &str, &str)]) -> ClusterView {
    let mut view = cluster();
    for (ns, name, spec) in policies {
        view.apply(ClusterEvent::Upsert(policy(ns, name, spec)));
    }
    view.reindex();
    view
}

pub fn tcp(src: &str, dst: &str, port: u16) -> Connection {
    Connection { src: ip(src), dst: ip(dst), protocol: Protocol::Tcp, dst_port: Some(port) }
}

pub fn connection(src: &str, dst: &str, protocol: Protocol, port: Option<u16>) -> Connection {
    Connection { src: ip(src), dst: ip(dst), protocol, dst_port: port }
}
