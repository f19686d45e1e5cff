//! A synthetic cluster at scale, built as the watcher would deliver it: one `Reset` per kind of
//! trimmed objects. Shared by `benches/cluster.rs` and `examples/cluster_memory.rs`.

use netwatch::cluster::{
    ClusterEvent, ContainerPort, Labels, Namespace, NetworkPolicy, Object, Pod, PodPhase,
    ResourceKind,
};
use netwatch::flow::key::Protocol;

pub const NAMESPACES: usize = 500;

fn labels(pairs: &[(&str, String)]) -> Labels {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
}

/// The initial-list events of `pods` pods and `policies` NetworkPolicies over 500 namespaces.
pub fn initial_sync(pods: usize, policies: usize) -> Vec<ClusterEvent> {
    let namespaces = (0..NAMESPACES)
        .map(|n| {
            Object::Namespace(Namespace {
                name: format!("ns-{n}"),
                labels: labels(&[("kubernetes.io/metadata.name", format!("ns-{n}"))]),
            })
        })
        .collect();
    let pods = (0..pods)
        .map(|i| {
            let ip = std::net::Ipv4Addr::new(10, 200 + (i >> 16) as u8, (i >> 8) as u8, i as u8);
            Object::Pod(Pod {
                namespace: format!("ns-{}", i % NAMESPACES),
                name: format!("app-{}-{i:06}", i % 1000),
                labels: labels(&[
                    ("app", format!("app-{}", i % 1000)),
                    ("pod-template-hash", format!("{:010x}", i * 7919)),
                ]),
                node: Some(format!("node-{}", i % 200)),
                ips: vec![ip.into()],
                host_network: false,
                phase: PodPhase::Running,
                ports: vec![ContainerPort {
                    name: Some("http".into()),
                    port: 8080,
                    protocol: Protocol::Tcp,
                }],
            })
        })
        .collect();
    let policies = (0..policies)
        .map(|i| {
            let spec = serde_json::json!({
                "podSelector": {"matchLabels": {"app": format!("app-{}", i % 1000)}},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": format!("app-{}", (i + 1) % 1000)}}}],
                             "ports": [{"port": 8080, "protocol": "TCP"}]}],
                "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}]
            });
            Object::NetworkPolicy(NetworkPolicy {
                namespace: format!("ns-{}", i % NAMESPACES),
                name: format!("policy-{i:05}"),
                spec: serde_json::from_value(spec).unwrap_or_default(),
            })
        })
        .collect();
    vec![
        ClusterEvent::Reset(ResourceKind::Namespace, namespaces),
        ClusterEvent::Reset(ResourceKind::Pod, pods),
        ClusterEvent::Reset(ResourceKind::NetworkPolicy, policies),
    ]
}
