//! Trims full Kubernetes objects (k8s-openapi types) to the model identity and policy need.
//!
//! Shared by the snapshot loader and the live watcher so both produce identical events. A value
//! that cannot be read (a malformed IP, a port out of range) is an error naming the object and
//! the field, never a panic; the caller counts it.

use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use k8s_openapi::api::networking::v1 as networking;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{
    ContainerPort, EndpointSlice, Labels, Namespace, NetworkPolicy, Node, NodeAddress, ObjectKey,
    Pod, PodPhase, Service, ServicePort, SliceEndpoint, SlicePort, TargetPort,
};
use crate::flow::key::Protocol;

/// Why an object could not be trimmed: which object, which field, what value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} '{object}': {field} {problem}")]
pub struct TrimError {
    pub kind: &'static str,
    pub object: String,
    pub field: &'static str,
    pub problem: String,
}

struct Ctx<'a> {
    kind: &'static str,
    meta: &'a ObjectMeta,
}

impl Ctx<'_> {
    fn error(&self, field: &'static str, problem: String) -> TrimError {
        let object = match &self.meta.namespace {
            Some(ns) => format!("{ns}/{}", self.name()),
            None => self.name().to_owned(),
        };
        TrimError { kind: self.kind, object, field, problem }
    }

    fn name(&self) -> &str {
        self.meta.name.as_deref().unwrap_or("")
    }

    fn require_name(&self) -> Result<String, TrimError> {
        match self.meta.name.as_deref() {
            Some(name) if !name.is_empty() => Ok(name.to_owned()),
            _ => Err(self.error("metadata.name", "is missing".into())),
        }
    }

    fn namespace(&self) -> String {
        // Objects listed without a namespace live in "default", as kubectl apply would put them.
        self.meta.namespace.clone().unwrap_or_else(|| "default".to_owned())
    }

    fn ip(&self, field: &'static str, text: &str) -> Result<IpAddr, TrimError> {
        text.parse().map_err(|_| self.error(field, format!("'{text}' is not an IP address")))
    }

    fn port(&self, field: &'static str, value: i32) -> Result<u16, TrimError> {
        u16::try_from(value)
            .ok()
            .filter(|port| *port != 0)
            .ok_or_else(|| self.error(field, format!("'{value}' is not a port (1-65535)")))
    }

    fn protocol(&self, field: &'static str, value: Option<&str>) -> Result<Protocol, TrimError> {
        match value {
            None => Ok(Protocol::Tcp),
            Some(text) => Protocol::parse_l4(text)
                .ok_or_else(|| self.error(field, format!("'{text}' is not TCP, UDP or SCTP"))),
        }
    }
}

fn labels(meta: &ObjectMeta) -> Labels {
    meta.labels.clone().unwrap_or_default()
}

pub fn namespace(object: &core::Namespace) -> Result<Namespace, TrimError> {
    let ctx = Ctx { kind: "Namespace", meta: &object.metadata };
    Ok(Namespace { name: ctx.require_name()?, labels: labels(&object.metadata) })
}

pub fn pod(object: &core::Pod) -> Result<Pod, TrimError> {
    let ctx = Ctx { kind: "Pod", meta: &object.metadata };
    let name = ctx.require_name()?;
    let spec = object.spec.as_ref();
    let status = object.status.as_ref();
    let mut ips = Vec::new();
    if let Some(status) = status {
        for pod_ip in status.pod_ips.iter().flatten() {
            ips.push(ctx.ip("status.podIPs", &pod_ip.ip)?);
        }
        if ips.is_empty()
            && let Some(ip) = status.pod_ip.as_deref().filter(|ip| !ip.is_empty())
        {
            ips.push(ctx.ip("status.podIP", ip)?);
        }
    }
    let phase = match status.and_then(|s| s.phase.as_deref()) {
        Some("Pending") => PodPhase::Pending,
        Some("Running") => PodPhase::Running,
        Some("Succeeded") => PodPhase::Succeeded,
        Some("Failed") => PodPhase::Failed,
        _ => PodPhase::Unknown,
    };
    let mut ports = Vec::new();
    for container in spec.map(|s| s.containers.iter()).into_iter().flatten() {
        for port in container.ports.iter().flatten() {
            ports.push(ContainerPort {
                name: port.name.clone(),
                port: ctx.port("spec.containers[].ports[].containerPort", port.container_port)?,
                protocol: ctx
                    .protocol("spec.containers[].ports[].protocol", port.protocol.as_deref())?,
            });
        }
    }
    Ok(Pod {
        namespace: ctx.namespace(),
        name,
        labels: labels(&object.metadata),
        node: spec.and_then(|s| s.node_name.clone()),
        ips,
        host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
        phase,
        ports,
    })
}

pub fn service(object: &core::Service) -> Result<Service, TrimError> {
    let ctx = Ctx { kind: "Service", meta: &object.metadata };
    let name = ctx.require_name()?;
    let spec = object.spec.clone().unwrap_or_default();
    let mut cluster_ips = Vec::new();
    let listed = spec.cluster_ips.clone().unwrap_or_default();
    for text in listed.iter().chain(spec.cluster_ip.iter()) {
        // "None" marks a headless service: it has no virtual IP of its own.
        if text.is_empty() || text == "None" {
            continue;
        }
        let ip = ctx.ip("spec.clusterIPs", text)?;
        if !cluster_ips.contains(&ip) {
            cluster_ips.push(ip);
        }
    }
    let mut external_ips = Vec::new();
    for text in spec.external_ips.iter().flatten() {
        external_ips.push(ctx.ip("spec.externalIPs", text)?);
    }
    let mut load_balancer_ips = Vec::new();
    let ingress = object
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref());
    for entry in ingress.into_iter().flatten() {
        if let Some(text) = entry.ip.as_deref() {
            load_balancer_ips.push(ctx.ip("status.loadBalancer.ingress[].ip", text)?);
        }
    }
    let mut ports = Vec::new();
    for port in spec.ports.iter().flatten() {
        let target_port = match &port.target_port {
            None => None,
            Some(IntOrString::Int(number)) => {
                Some(TargetPort::Number(ctx.port("spec.ports[].targetPort", *number)?))
            }
            Some(IntOrString::String(name)) => match name.parse::<i32>() {
                Ok(number) => {
                    Some(TargetPort::Number(ctx.port("spec.ports[].targetPort", number)?))
                }
                Err(_) => Some(TargetPort::Name(name.clone())),
            },
        };
        ports.push(ServicePort {
            name: port.name.clone(),
            port: ctx.port("spec.ports[].port", port.port)?,
            protocol: ctx.protocol("spec.ports[].protocol", port.protocol.as_deref())?,
            node_port: port.node_port.map(|p| ctx.port("spec.ports[].nodePort", p)).transpose()?,
            target_port,
        });
    }
    Ok(Service {
        namespace: ctx.namespace(),
        name,
        service_type: spec.type_.clone().unwrap_or_else(|| "ClusterIP".to_owned()),
        cluster_ips,
        external_ips,
        load_balancer_ips,
        ports,
        selector: spec.selector.clone().filter(|s| !s.is_empty()),
    })
}

pub fn endpoint_slice(object: &discovery::EndpointSlice) -> Result<EndpointSlice, TrimError> {
    let ctx = Ctx { kind: "EndpointSlice", meta: &object.metadata };
    let name = ctx.require_name()?;
    let mut endpoints = Vec::new();
    // FQDN slices carry host names, not addresses: nothing for an IP index.
    let is_ip = object.address_type != "FQDN";
    for endpoint in object.endpoints.iter().filter(|_| is_ip) {
        let mut addresses = Vec::new();
        for text in &endpoint.addresses {
            addresses.push(ctx.ip("endpoints[].addresses", text)?);
        }
        let pod =
            endpoint.target_ref.as_ref().filter(|r| r.kind.as_deref() == Some("Pod")).and_then(
                |r| {
                    Some(ObjectKey::namespaced(
                        r.namespace.as_deref().unwrap_or(&ctx.namespace()),
                        r.name.as_deref()?,
                    ))
                },
            );
        endpoints.push(SliceEndpoint {
            addresses,
            // Unset `ready` means ready, as the API documents.
            ready: endpoint.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true),
            pod,
            node: endpoint.node_name.clone(),
        });
    }
    let mut ports = Vec::new();
    for port in object.ports.iter().flatten() {
        ports.push(SlicePort {
            name: port.name.clone(),
            port: port.port.map(|p| ctx.port("ports[].port", p)).transpose()?,
            protocol: ctx.protocol("ports[].protocol", port.protocol.as_deref())?,
        });
    }
    Ok(EndpointSlice {
        namespace: ctx.namespace(),
        service: object
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("kubernetes.io/service-name").cloned()),
        name,
        endpoints,
        ports,
    })
}

pub fn node(object: &core::Node) -> Result<Node, TrimError> {
    let ctx = Ctx { kind: "Node", meta: &object.metadata };
    let name = ctx.require_name()?;
    let mut addresses = Vec::new();
    for address in object.status.as_ref().and_then(|s| s.addresses.as_ref()).into_iter().flatten() {
        // Hostname entries hold names, not IPs.
        if let Ok(ip) = address.address.parse() {
            addresses.push(NodeAddress { kind: address.type_.clone(), ip });
        }
    }
    let spec = object.spec.clone().unwrap_or_default();
    let mut pod_cidrs: Vec<IpNet> = Vec::new();
    for text in spec.pod_cidrs.iter().flatten().chain(spec.pod_cidr.iter()) {
        let cidr: IpNet = text
            .parse()
            .map_err(|_| ctx.error("spec.podCIDRs", format!("'{text}' is not a CIDR")))?;
        if !pod_cidrs.contains(&cidr) {
            pod_cidrs.push(cidr);
        }
    }
    Ok(Node { name, labels: labels(&object.metadata), addresses, pod_cidrs })
}

pub fn network_policy(object: &networking::NetworkPolicy) -> Result<NetworkPolicy, TrimError> {
    let ctx = Ctx { kind: "NetworkPolicy", meta: &object.metadata };
    Ok(NetworkPolicy {
        namespace: ctx.namespace(),
        name: ctx.require_name()?,
        spec: object.spec.clone().unwrap_or_default(),
    })
}
