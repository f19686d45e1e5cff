//! The cluster snapshot loader on real-shaped `kubectl get -o yaml|json` output.

use netwatch::cluster::snapshot::{self, SnapshotError};
use netwatch::cluster::{ClusterEvent, ClusterView, IpOwner, ObjectKey, ResourceKind, TargetPort};
use netwatch::flow::Protocol;

use crate::fixture;

fn load(name: &str) -> Result<(ClusterView, snapshot::LoadedSnapshot), SnapshotError> {
    let text = std::fs::read_to_string(fixture(name)).unwrap();
    let loaded = snapshot::parse(name, &text)?;
    let mut view = ClusterView::new();
    for event in loaded.events.clone() {
        view.apply(event);
    }
    view.reindex();
    Ok((view, loaded))
}

#[test]
fn a_kubectl_list_loads_every_kind_netwatch_uses_and_counts_the_rest() {
    let (view, loaded) = load("cluster/kubectl-list.yaml").unwrap();
    assert_eq!(loaded.object_count, 8);
    assert_eq!(loaded.skipped.unknown_kinds.get("ConfigMap"), Some(&1));
    assert_eq!(loaded.skipped.unknown_kinds.get("ServiceAccount"), Some(&1));

    let web = &view.pods[&ObjectKey::namespaced("shop", "web-7c9d8b6f5d-x2k9p")];
    assert_eq!(
        web.ips,
        vec![
            "10.244.1.10".parse::<std::net::IpAddr>().unwrap(),
            "fd00:10:244:1::a".parse().unwrap()
        ]
    );
    assert_eq!(web.node.as_deref(), Some("n1"));
    assert_eq!(web.labels["app"], "web");
    assert_eq!(web.ports.len(), 2);
    assert_eq!(web.ports[1].protocol, Protocol::Tcp, "protocol defaults to TCP");

    let service = &view.services[&ObjectKey::namespaced("shop", "web")];
    assert_eq!(service.ports[0].node_port, Some(30080));
    assert_eq!(service.ports[0].target_port, Some(TargetPort::Name("http".into())));
    assert_eq!(
        service.load_balancer_ips,
        vec!["198.51.100.40".parse::<std::net::IpAddr>().unwrap()]
    );

    let node = &view.nodes["n1"];
    assert_eq!(node.pod_cidrs.len(), 2);
    assert_eq!(node.addresses.len(), 1, "the Hostname entry is not an IP");

    assert_eq!(view.namespaces["shop"].labels["team"], "storefront");
    assert_eq!(view.policies.len(), 1);
    let backends: Vec<_> = view.service_backends(&ObjectKey::namespaced("shop", "web")).collect();
    assert_eq!(backends.len(), 1);
    assert_eq!(backends[0].pod, Some(ObjectKey::namespaced("shop", "web-7c9d8b6f5d-x2k9p")));
}

#[test]
fn the_ip_index_knows_host_network_pods_and_ignores_finished_ones() {
    let (view, _) = load("cluster/kubectl-list.yaml").unwrap();
    let owners = view.owners("10.0.0.11".parse().unwrap());
    assert!(owners.contains(&IpOwner::Node("n1".into())));
    assert!(owners.contains(&IpOwner::HostNetworkPod(ObjectKey::namespaced(
        "kube-system",
        "kube-proxy-4vbfd"
    ))));
    assert!(
        view.owners("10.244.1.77".parse().unwrap()).is_empty(),
        "a Succeeded pod's IP may be reused"
    );
}

#[test]
fn the_loader_emits_what_a_watcher_would_a_reset_per_kind_then_synced() {
    let (_, loaded) = load("cluster/kubectl-list.yaml").unwrap();
    let resets = loaded.events.iter().filter(|e| matches!(e, ClusterEvent::Reset(..))).count();
    let synced: Vec<_> = loaded
        .events
        .iter()
        .filter_map(|e| match e {
            ClusterEvent::Synced(kind) => Some(*kind),
            _ => None,
        })
        .collect();
    assert_eq!(resets, 6);
    assert_eq!(synced, ResourceKind::ALL.to_vec());
}

#[test]
fn several_yaml_documents_load_and_a_headless_service_has_no_cluster_ip() {
    let (view, loaded) = load("cluster/multi-document.yaml").unwrap();
    assert_eq!(loaded.object_count, 2);
    assert!(view.services[&ObjectKey::namespaced("shop", "api")].cluster_ips.is_empty());
    assert_eq!(
        view.pods[&ObjectKey::namespaced("shop", "api-0")].ips.len(),
        1,
        "podIP alone is read"
    );
}

#[test]
fn json_output_of_kubectl_loads_like_yaml() {
    let yaml = std::fs::read_to_string(fixture("cluster/kubectl-list.yaml")).unwrap();
    let value: serde_json::Value = serde_yaml_ng::from_str(&yaml).unwrap();
    let json = serde_json::to_string_pretty(&value).unwrap();
    let from_json = snapshot::parse("list.json", &json).unwrap();
    let from_yaml = snapshot::parse("list.yaml", &yaml).unwrap();
    assert_eq!(from_json.events, from_yaml.events);
}

#[test]
fn invalid_yaml_is_reported_with_file_and_line() {
    let error = load("cluster/bad-syntax.yaml").unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, SnapshotError::Syntax { line: 9, .. }), "{message}");
    assert!(message.starts_with("cluster/bad-syntax.yaml: line 9"), "{message}");
}

#[test]
fn a_bad_ip_names_the_object_the_field_and_the_value() {
    let message = load("cluster/bad-ip.yaml").unwrap_err().to_string();
    assert_eq!(
        message,
        "cluster/bad-ip.yaml: Pod 'shop/web-a': status.podIP '10.244.1.300' is not an IP address"
    );
}

#[test]
fn an_object_that_does_not_match_the_schema_says_which() {
    let message = load("cluster/wrong-schema.yaml").unwrap_err().to_string();
    assert!(message.contains("Service 'api' does not match the Kubernetes schema"), "{message}");
}

#[test]
fn a_document_without_kind_is_not_mistaken_for_a_snapshot() {
    let message = load("cluster/no-kind.yaml").unwrap_err().to_string();
    assert!(message.contains("no 'kind'"), "{message}");
}

/// A typed list as the API serves it (`kubectl get --raw /api/v1/pods`): its items carry no
/// `kind` or `apiVersion` of their own.
#[test]
fn a_typed_list_from_the_api_loads_its_items_as_that_kind() {
    let text = r#"{"kind":"PodList","apiVersion":"v1","metadata":{},"items":[
        {"metadata":{"name":"a","namespace":"s"},"spec":{"containers":[{"name":"c"}]},
         "status":{"phase":"Running","podIP":"10.244.1.5","podIPs":[{"ip":"10.244.1.5"}]}}]}"#;
    let loaded = snapshot::parse("pods.json", text).unwrap();
    assert_eq!(loaded.object_count, 1);
    let mut view = ClusterView::new();
    for event in loaded.events {
        view.apply(event);
    }
    assert!(view.pods.contains_key(&ObjectKey::namespaced("s", "a")));
}
