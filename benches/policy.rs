//! Policy engine benchmarks: compile and evaluate on a generated cluster of 5,000 pods in 100
//! namespaces with 1,000 policies (10 per namespace: default deny, DNS, same-namespace,
//! cross-namespace, ipBlock, named and ranged ports). Targets: compile ≤ 200 ms, median
//! evaluation ≤ 5 µs.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{Criterion, criterion_group, criterion_main};
use k8s_openapi::api::networking::v1::NetworkPolicySpec;
use netwatch::cluster::{
    ClusterEvent, ClusterView, ContainerPort, Labels, Namespace, NetworkPolicy, Object, Pod,
    PodPhase,
};
use netwatch::flow::key::Protocol;
use netwatch::policy::{Connection, PolicySet};

const NAMESPACES: usize = 100;
const PODS_PER_NAMESPACE: usize = 50;

fn labels(pairs: &[(&str, String)]) -> Labels {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
}

fn pod_ip(namespace: usize, index: usize) -> IpAddr {
    let [a, b] = u16::try_from(namespace * PODS_PER_NAMESPACE + index).unwrap_or(0).to_be_bytes();
    IpAddr::V4(Ipv4Addr::new(10, 244, a, b))
}

fn policies(ns: &str, team: usize) -> Vec<(String, String)> {
    let other = (team + 1) % 10;
    vec![
        ("default-deny".into(), "podSelector: {}\npolicyTypes: [Ingress, Egress]".into()),
        ("allow-dns".into(), "podSelector: {}\npolicyTypes: [Egress]\negress:\n- to:\n  - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kube-system}}\n    podSelector: {matchLabels: {k8s-app: kube-dns}}\n  ports: [{protocol: UDP, port: 53}, {protocol: TCP, port: 53}]".into()),
        ("web-from-anywhere".into(), "podSelector: {matchLabels: {tier: web}}\ningress: [{ports: [{port: http}]}]".into()),
        ("api-from-web".into(), "podSelector: {matchLabels: {tier: api}}\ningress: [{from: [{podSelector: {matchLabels: {tier: web}}}], ports: [{port: 8080}]}]".into()),
        ("db-from-api".into(), "podSelector: {matchLabels: {tier: db}}\ningress: [{from: [{podSelector: {matchExpressions: [{key: tier, operator: In, values: [api, batch]}]}}], ports: [{port: 5432}]}]".into()),
        ("web-egress-api".into(), "podSelector: {matchLabels: {tier: web}}\npolicyTypes: [Egress]\negress: [{to: [{podSelector: {matchLabels: {tier: api}}}], ports: [{port: 8080}]}]".into()),
        ("api-egress-db".into(), "podSelector: {matchLabels: {tier: api}}\npolicyTypes: [Egress]\negress: [{to: [{podSelector: {matchLabels: {tier: db}}}], ports: [{port: 5432}]}]".into()),
        ("from-partner".into(), format!("podSelector: {{matchLabels: {{tier: api}}}}\ningress: [{{from: [{{namespaceSelector: {{matchLabels: {{team: team-{other}}}}}, podSelector: {{matchLabels: {{tier: web}}}}}}]}}]")),
        ("api-to-internet".into(), "podSelector: {matchLabels: {tier: api}}\npolicyTypes: [Egress]\negress: [{to: [{ipBlock: {cidr: 0.0.0.0/0, except: [10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16]}}], ports: [{port: 443}]}]".into()),
        (format!("{ns}-batch-ranges"), "podSelector: {matchLabels: {tier: batch}}\npolicyTypes: [Egress]\negress: [{to: [{ipBlock: {cidr: 10.0.0.0/8}}], ports: [{port: 30000, endPort: 32767}]}]".into()),
    ]
}

fn cluster() -> ClusterView {
    let mut view = ClusterView::new();
    let tiers = ["web", "api", "db", "batch", "web"];
    for n in 0..NAMESPACES {
        let ns = format!("ns-{n:03}");
        let team = n % 10;
        view.apply(ClusterEvent::Upsert(Object::Namespace(Namespace {
            name: ns.clone(),
            labels: labels(&[("team", format!("team-{team}"))]),
        })));
        for p in 0..PODS_PER_NAMESPACE {
            let tier = tiers[p % tiers.len()];
            view.apply(ClusterEvent::Upsert(Object::Pod(Pod {
                namespace: ns.clone(),
                name: format!("{tier}-{p}"),
                labels: labels(&[("tier", tier.into()), ("app", format!("app-{}", p % 7))]),
                node: Some(format!("node-{}", p % 20)),
                ips: vec![pod_ip(n, p)],
                host_network: false,
                phase: PodPhase::Running,
                ports: vec![ContainerPort {
                    name: Some("http".into()),
                    port: 8080,
                    protocol: Protocol::Tcp,
                }],
            })));
        }
        for (name, yaml) in policies(&ns, team) {
            let spec: NetworkPolicySpec =
                serde_yaml_ng::from_str(&yaml).expect("bench policy YAML");
            view.apply(ClusterEvent::Upsert(Object::NetworkPolicy(NetworkPolicy {
                namespace: ns.clone(),
                name,
                spec,
            })));
        }
    }
    view.reindex();
    view
}

/// A deterministic spread of pod-to-pod (same and cross namespace) and pod-to-internet
/// connections on the ports the policies mention.
fn connections() -> Vec<Connection> {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |bound: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        usize::try_from(seed % bound as u64).unwrap_or(0)
    };
    let ports = [8080, 5432, 443, 53, 31000, 22];
    (0..4096)
        .map(|i| {
            let (sn, sp) = (next(NAMESPACES), next(PODS_PER_NAMESPACE));
            let dst = if i % 4 == 0 {
                IpAddr::V4(Ipv4Addr::new(203, 0, 113, u8::try_from(next(250)).unwrap_or(1)))
            } else if i % 4 == 1 {
                pod_ip(sn, next(PODS_PER_NAMESPACE))
            } else {
                pod_ip(next(NAMESPACES), next(PODS_PER_NAMESPACE))
            };
            Connection {
                src: pod_ip(sn, sp),
                dst,
                protocol: Protocol::Tcp,
                dst_port: Some(ports[next(ports.len())]),
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let view = cluster();
    assert_eq!(view.pods.len(), 5_000);
    assert_eq!(view.policies.len(), 1_000);
    c.bench_function("policy compile (5k pods, 100 ns, 1k policies)", |b| {
        b.iter(|| PolicySet::compile(black_box(&view)));
    });
    let (set, diagnostics) = PolicySet::compile(&view);
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    let connections = connections();
    let mut index = 0;
    c.bench_function("policy evaluate (one connection)", |b| {
        b.iter(|| {
            index = (index + 1) % connections.len();
            set.evaluate(black_box(&view), black_box(&connections[index]))
        });
    });
    c.bench_function("policy audit", |b| {
        b.iter(|| netwatch::policy::audit(black_box(&view), &set))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
