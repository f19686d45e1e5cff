//! Writes a [`ClusterView`] back out as `kubectl get -o yaml`-shaped text (`kind: List`), for
//! `netwatch snapshot -o FILE`: the file [`snapshot::parse`](super::snapshot::parse) reads back
//! into the same view.
//!
//! It owns the model → k8s-openapi mapping, the inverse of `trim`, with only the fields `trim`
//! reads. It is pure: the caller writes the file. It must not add anything the model does not
//! hold, so a snapshot never claims more than netwatch saw.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use k8s_openapi::api::networking::v1 as networking;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Value, json};

use super::{ClusterView, EndpointSlice, Labels, Node, Pod, Service, TargetPort};
use crate::flow::key::Protocol;

/// The whole view as one YAML `List`, objects in a stable order (kind, then namespace/name).
#[must_use]
pub fn to_snapshot_yaml(view: &ClusterView) -> String {
    let mut items: Vec<Value> = Vec::new();
    items.extend(view.namespaces.values().map(|ns| {
        typed(&core::Namespace { metadata: meta(None, &ns.name, &ns.labels), ..Default::default() })
    }));
    items.extend(view.nodes.values().map(|node| typed(&export_node(node))));
    items.extend(view.pods.values().map(|pod| typed(&export_pod(pod))));
    items.extend(view.services.values().map(|service| typed(&export_service(service))));
    items.extend(view.endpoint_slices.values().map(|slice| typed(&export_slice(slice))));
    items.extend(view.policies.values().map(|policy| {
        typed(&networking::NetworkPolicy {
            metadata: meta(Some(&policy.namespace), &policy.name, &Labels::new()),
            spec: Some(policy.spec.clone()),
        })
    }));
    let list = json!({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": items});
    // Serializing a JSON value to YAML cannot fail: every key is a string.
    serde_yaml_ng::to_string(&list).unwrap_or_default()
}

/// An object with its `apiVersion` and `kind`, which k8s-openapi adds on serialization.
fn typed<T: serde::Serialize>(object: &T) -> Value {
    serde_json::to_value(object).unwrap_or(Value::Null)
}

fn meta(namespace: Option<&str>, name: &str, labels: &Labels) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        labels: (!labels.is_empty()).then(|| labels.clone()),
        ..Default::default()
    }
}

fn protocol(protocol: Protocol) -> Option<String> {
    Some(protocol.name().into_owned())
}

fn export_node(node: &Node) -> core::Node {
    let cidrs: Vec<String> = node.pod_cidrs.iter().map(ToString::to_string).collect();
    core::Node {
        metadata: meta(None, &node.name, &node.labels),
        spec: Some(core::NodeSpec {
            pod_cidr: cidrs.first().cloned(),
            pod_cidrs: (!cidrs.is_empty()).then_some(cidrs),
            ..Default::default()
        }),
        status: Some(core::NodeStatus {
            addresses: Some(
                node.addresses
                    .iter()
                    .map(|a| core::NodeAddress { type_: a.kind.clone(), address: a.ip.to_string() })
                    .collect(),
            ),
            ..Default::default()
        }),
    }
}

fn export_pod(pod: &Pod) -> core::Pod {
    let ports: Vec<core::ContainerPort> = pod
        .ports
        .iter()
        .map(|port| core::ContainerPort {
            name: port.name.clone(),
            container_port: i32::from(port.port),
            protocol: protocol(port.protocol),
            ..Default::default()
        })
        .collect();
    let phase = match pod.phase {
        super::PodPhase::Pending => Some("Pending"),
        super::PodPhase::Running => Some("Running"),
        super::PodPhase::Succeeded => Some("Succeeded"),
        super::PodPhase::Failed => Some("Failed"),
        super::PodPhase::Unknown => None,
    };
    core::Pod {
        metadata: meta(Some(&pod.namespace), &pod.name, &pod.labels),
        spec: Some(core::PodSpec {
            node_name: pod.node.clone(),
            host_network: pod.host_network.then_some(true),
            // The model keeps ports, not containers: one container carries them all.
            containers: vec![core::Container {
                name: "main".to_owned(),
                ports: (!ports.is_empty()).then_some(ports),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: Some(core::PodStatus {
            phase: phase.map(str::to_owned),
            pod_ip: pod.ips.first().map(ToString::to_string),
            pod_ips: (!pod.ips.is_empty())
                .then(|| pod.ips.iter().map(|ip| core::PodIP { ip: ip.to_string() }).collect()),
            ..Default::default()
        }),
    }
}

fn export_service(service: &Service) -> core::Service {
    let ips = |ips: &[std::net::IpAddr]| -> Option<Vec<String>> {
        (!ips.is_empty()).then(|| ips.iter().map(ToString::to_string).collect())
    };
    let ports = service
        .ports
        .iter()
        .map(|port| core::ServicePort {
            name: port.name.clone(),
            port: i32::from(port.port),
            protocol: protocol(port.protocol),
            node_port: port.node_port.map(i32::from),
            target_port: port.target_port.as_ref().map(|target| match target {
                TargetPort::Number(number) => IntOrString::Int(i32::from(*number)),
                TargetPort::Name(name) => IntOrString::String(name.clone()),
            }),
            ..Default::default()
        })
        .collect::<Vec<_>>();
    let ingress = (!service.load_balancer_ips.is_empty()).then(|| {
        service
            .load_balancer_ips
            .iter()
            .map(|ip| core::LoadBalancerIngress { ip: Some(ip.to_string()), ..Default::default() })
            .collect()
    });
    core::Service {
        metadata: meta(Some(&service.namespace), &service.name, &Labels::new()),
        spec: Some(core::ServiceSpec {
            type_: Some(service.service_type.clone()),
            cluster_ip: service.cluster_ips.first().map(ToString::to_string),
            cluster_ips: ips(&service.cluster_ips),
            external_ips: ips(&service.external_ips),
            selector: service.selector.clone().map(BTreeMap::from_iter),
            ports: (!ports.is_empty()).then_some(ports),
            ..Default::default()
        }),
        status: ingress.map(|ingress| core::ServiceStatus {
            load_balancer: Some(core::LoadBalancerStatus { ingress: Some(ingress) }),
            ..Default::default()
        }),
    }
}

fn export_slice(slice: &EndpointSlice) -> discovery::EndpointSlice {
    let mut labels = Labels::new();
    if let Some(service) = &slice.service {
        labels.insert("kubernetes.io/service-name".to_owned(), service.clone());
    }
    let first = slice.endpoints.iter().flat_map(|e| e.addresses.first()).next();
    let address_type = if first.is_some_and(std::net::IpAddr::is_ipv6) { "IPv6" } else { "IPv4" };
    discovery::EndpointSlice {
        metadata: meta(Some(&slice.namespace), &slice.name, &labels),
        address_type: address_type.to_owned(),
        endpoints: slice
            .endpoints
            .iter()
            .map(|endpoint| discovery::Endpoint {
                addresses: endpoint.addresses.iter().map(ToString::to_string).collect(),
                conditions: Some(discovery::EndpointConditions {
                    ready: Some(endpoint.ready),
                    ..Default::default()
                }),
                node_name: endpoint.node.clone(),
                target_ref: endpoint.pod.as_ref().map(|pod| core::ObjectReference {
                    kind: Some("Pod".to_owned()),
                    namespace: pod.namespace.clone(),
                    name: Some(pod.name.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect(),
        ports: (!slice.ports.is_empty()).then(|| {
            slice
                .ports
                .iter()
                .map(|port| discovery::EndpointPort {
                    name: port.name.clone(),
                    port: port.port.map(i32::from),
                    protocol: protocol(port.protocol),
                    ..Default::default()
                })
                .collect()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::snapshot;

    fn reload(view: &ClusterView) -> ClusterView {
        let text = to_snapshot_yaml(view);
        let loaded = snapshot::parse("export", &text).unwrap();
        assert!(loaded.skipped.unknown_kinds.is_empty(), "{text}");
        let mut reloaded = ClusterView::new();
        for event in loaded.events {
            reloaded.apply(event);
        }
        reloaded
    }

    fn assert_same(view: &ClusterView, reloaded: &ClusterView) {
        assert_eq!(view.namespaces, reloaded.namespaces);
        assert_eq!(view.pods, reloaded.pods);
        assert_eq!(view.services, reloaded.services);
        assert_eq!(view.endpoint_slices, reloaded.endpoint_slices);
        assert_eq!(view.nodes, reloaded.nodes);
        assert_eq!(view.policies, reloaded.policies);
    }

    #[test]
    fn a_headless_service_and_a_pod_without_ip_or_phase_read_back_unchanged() {
        use crate::cluster::{ClusterEvent, Object, ObjectKey, PodPhase, SliceEndpoint};
        let mut view = ClusterView::new();
        view.apply(ClusterEvent::Upsert(Object::Pod(Pod {
            namespace: "shop".into(),
            name: "pending".into(),
            labels: Labels::new(),
            node: None,
            ips: vec![],
            host_network: false,
            phase: PodPhase::Unknown,
            ports: vec![],
        })));
        view.apply(ClusterEvent::Upsert(Object::Service(Service {
            namespace: "shop".into(),
            name: "headless".into(),
            service_type: "ClusterIP".into(),
            cluster_ips: vec![],
            external_ips: vec!["203.0.113.7".parse().unwrap()],
            load_balancer_ips: vec![],
            ports: vec![],
            selector: None,
        })));
        view.apply(ClusterEvent::Upsert(Object::EndpointSlice(EndpointSlice {
            namespace: "shop".into(),
            name: "headless-v6".into(),
            service: Some("headless".into()),
            endpoints: vec![SliceEndpoint {
                addresses: vec!["fd00::5".parse().unwrap()],
                ready: false,
                pod: Some(ObjectKey::namespaced("shop", "pending")),
                node: None,
            }],
            ports: vec![],
        })));
        assert_same(&view, &reload(&view));
    }

    #[test]
    fn the_kubectl_fixture_reads_back_as_the_same_view() {
        let text = include_str!("../../tests/fixtures/cluster/kubectl-list.yaml");
        let mut view = ClusterView::new();
        for event in snapshot::parse("fixture", text).unwrap().events {
            view.apply(event);
        }
        assert!(!view.pods.is_empty() && !view.services.is_empty());
        assert_same(&view, &reload(&view));
    }
}
