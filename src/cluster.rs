//! The cluster model: the trimmed objects identity and policy need, and an index by IP.
//!
//! Objects arrive as [`ClusterEvent`]s (from a snapshot file or, later, the live watcher) and are
//! folded in by the pure [`ClusterView::apply`]. This module owns no I/O; `snapshot` parses text
//! that the caller has read.

pub mod event;
pub mod export;
pub mod snapshot;
pub mod trim;
pub mod watch;

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::networking::v1::NetworkPolicySpec;
use rustc_hash::FxHashMap;

pub use event::{ClusterEvent, Object, ResourceKind};

use crate::flow::key::Protocol;

pub type Labels = BTreeMap<String, String>;

/// `namespace/name` of a namespaced object, or just `name` for cluster-scoped ones.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct ObjectKey {
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectKey {
    #[must_use]
    pub fn namespaced(namespace: &str, name: &str) -> Self {
        Self { namespace: Some(namespace.to_owned()), name: name.to_owned() }
    }

    #[must_use]
    pub fn cluster(name: &str) -> Self {
        Self { namespace: None, name: name.to_owned() }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{ns}/{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Namespace {
    pub name: String,
    pub labels: Labels,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PodPhase {
    Pending,
    Running,
    Succeeded,
    Failed,
    Unknown,
}

impl PodPhase {
    /// A finished pod keeps its IP in status, but the IP may already belong to a new pod.
    #[must_use]
    pub fn is_terminated(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ContainerPort {
    pub name: Option<String>,
    pub port: u16,
    pub protocol: Protocol,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    pub labels: Labels,
    pub node: Option<String>,
    pub ips: Vec<IpAddr>,
    pub host_network: bool,
    pub phase: PodPhase,
    pub ports: Vec<ContainerPort>,
}

impl Pod {
    #[must_use]
    pub fn key(&self) -> ObjectKey {
        ObjectKey::namespaced(&self.namespace, &self.name)
    }
}

/// A Service port's `targetPort`: a number or the name of a container port.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TargetPort {
    Number(u16),
    Name(String),
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ServicePort {
    pub name: Option<String>,
    pub port: u16,
    pub protocol: Protocol,
    pub node_port: Option<u16>,
    pub target_port: Option<TargetPort>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Service {
    pub namespace: String,
    pub name: String,
    pub service_type: String,
    pub cluster_ips: Vec<IpAddr>,
    pub external_ips: Vec<IpAddr>,
    pub load_balancer_ips: Vec<IpAddr>,
    pub ports: Vec<ServicePort>,
    /// `None` for a service without a selector (endpoints managed by hand).
    pub selector: Option<Labels>,
}

impl Service {
    #[must_use]
    pub fn key(&self) -> ObjectKey {
        ObjectKey::namespaced(&self.namespace, &self.name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SliceEndpoint {
    pub addresses: Vec<IpAddr>,
    pub ready: bool,
    /// The pod behind the endpoint (`targetRef`), when it is one.
    pub pod: Option<ObjectKey>,
    pub node: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SlicePort {
    pub name: Option<String>,
    pub port: Option<u16>,
    pub protocol: Protocol,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EndpointSlice {
    pub namespace: String,
    pub name: String,
    /// From the `kubernetes.io/service-name` label.
    pub service: Option<String>,
    pub endpoints: Vec<SliceEndpoint>,
    pub ports: Vec<SlicePort>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeAddress {
    /// `InternalIP`, `ExternalIP`, `Hostname`, …
    pub kind: String,
    pub ip: IpAddr,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Node {
    pub name: String,
    pub labels: Labels,
    pub addresses: Vec<NodeAddress>,
    pub pod_cidrs: Vec<IpNet>,
}

impl Service {
    /// Whether the Service has a port `port` of `protocol`.
    #[must_use]
    pub fn serves(&self, protocol: Protocol, port: u16) -> bool {
        self.ports.iter().any(|p| p.port == port && p.protocol == protocol)
    }
}

/// Whether a Service's external or load-balancer IP names it at `ip` for a connection to
/// `service` (protocol and port): yes when the Service has that port, or when nothing else
/// has the address. Such an IP is often a node's own (k3s ServiceLB, `externalIPs: [node]`):
/// the node's other ports are the node, not the Service. `service` is `None` for a source.
#[must_use]
pub fn external_ip_names_service(
    view: &ClusterView,
    ip: IpAddr,
    key: &ObjectKey,
    service: Option<(Protocol, u16)>,
) -> bool {
    let shared = view.owners(ip).iter().any(|owner| {
        matches!(owner, IpOwner::Node(_) | IpOwner::HostNetworkPod(_) | IpOwner::Pod(_))
    });
    !shared
        || service.is_some_and(|(protocol, port)| {
            view.services.get(key).is_some_and(|s| s.serves(protocol, port))
        })
}

impl Node {
    /// Whether `ip` is this node on its pods' network: the first address of a pod CIDR, which
    /// bridge CNIs (flannel, kubenet, k3s) give the bridge, and which the kubelet's probes of
    /// the node's pods come from.
    #[must_use]
    pub fn is_bridge_gateway(&self, ip: IpAddr) -> bool {
        self.pod_cidrs.iter().any(|cidr| cidr.hosts().next() == Some(ip))
    }
}

/// A NetworkPolicy: identity plus the spec, kept as the API defines it for the policy engine.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NetworkPolicy {
    pub namespace: String,
    pub name: String,
    pub spec: NetworkPolicySpec,
}

impl NetworkPolicy {
    #[must_use]
    pub fn key(&self) -> ObjectKey {
        ObjectKey::namespaced(&self.namespace, &self.name)
    }
}

/// What an IP address belongs to, as the index knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IpOwner {
    /// A pod on the pod network.
    Pod(ObjectKey),
    /// A pod with `hostNetwork: true`: it shares its node's address.
    HostNetworkPod(ObjectKey),
    /// A Service's ClusterIP (or one of its ClusterIPs).
    ServiceClusterIp(ObjectKey),
    /// A Service's load-balancer ingress IP or external IP.
    ServiceExternalIp(ObjectKey),
    /// A node address.
    Node(String),
}

/// Counts of what loading or applying skipped, shown to the user rather than silently dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SkipCounts {
    /// Objects of kinds netwatch does not use, by kind.
    pub unknown_kinds: BTreeMap<String, u64>,
}

/// The cluster as netwatch knows it: every object by key, and an index by IP address.
#[derive(Debug, Clone, Default)]
pub struct ClusterView {
    pub namespaces: BTreeMap<String, Namespace>,
    pub pods: BTreeMap<ObjectKey, Pod>,
    pub services: BTreeMap<ObjectKey, Service>,
    pub endpoint_slices: BTreeMap<ObjectKey, EndpointSlice>,
    pub nodes: BTreeMap<String, Node>,
    pub policies: BTreeMap<ObjectKey, NetworkPolicy>,
    /// Which kinds have completed their initial list.
    pub synced: Vec<ResourceKind>,
    /// Bumped on every change, so cached verdicts and identities know to recompute.
    generation: u64,
    ip_index: FxHashMap<IpAddr, Vec<IpOwner>>,
    indexed_generation: Option<u64>,
}

impl ClusterView {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    #[must_use]
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether the view holds anything at all (a run without a cluster has an empty view).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.pods.is_empty() && self.services.is_empty() && self.nodes.is_empty()
    }

    /// Rebuilds the IP index if the view changed since it was last built. Called once per batch
    /// of lookups, not per change, so a burst of watch events costs one rebuild.
    #[inline]
    pub fn reindex(&mut self) {
        if self.indexed_generation != Some(self.generation) {
            self.rebuild_index();
        }
    }

    /// Kept out of line: the engine checks for a change on every new flow, and one seldom came.
    #[cold]
    fn rebuild_index(&mut self) {
        let mut index: FxHashMap<IpAddr, Vec<IpOwner>> = FxHashMap::default();
        for node in self.nodes.values() {
            for address in &node.addresses {
                push_unique(&mut index, address.ip, IpOwner::Node(node.name.clone()));
            }
        }
        for pod in self.pods.values() {
            // A finished pod's IP may already belong to another pod: never index it.
            if pod.phase.is_terminated() {
                continue;
            }
            for ip in &pod.ips {
                let owner = if pod.host_network {
                    IpOwner::HostNetworkPod(pod.key())
                } else {
                    IpOwner::Pod(pod.key())
                };
                push_unique(&mut index, *ip, owner);
            }
        }
        for service in self.services.values() {
            for ip in &service.cluster_ips {
                push_unique(&mut index, *ip, IpOwner::ServiceClusterIp(service.key()));
            }
            for ip in service.load_balancer_ips.iter().chain(&service.external_ips) {
                push_unique(&mut index, *ip, IpOwner::ServiceExternalIp(service.key()));
            }
        }
        self.ip_index = index;
        self.indexed_generation = Some(self.generation);
    }

    /// Everything that claims `ip`. Call [`reindex`](Self::reindex) after changes first.
    #[must_use]
    pub fn owners(&self, ip: IpAddr) -> &[IpOwner] {
        self.ip_index.get(&ip).map_or(&[], Vec::as_slice)
    }

    /// The node whose pod CIDR holds `ip`, if any.
    #[must_use]
    pub fn node_for_pod_cidr(&self, ip: IpAddr) -> Option<&Node> {
        self.nodes.values().find(|node| node.pod_cidrs.iter().any(|cidr| cidr.contains(&ip)))
    }

    /// The ready backends of a service, from its EndpointSlices.
    pub fn service_backends<'a>(
        &'a self,
        service: &ObjectKey,
    ) -> impl Iterator<Item = &'a SliceEndpoint> + 'a {
        let service = service.clone();
        self.endpoint_slices
            .values()
            .filter(move |slice| {
                Some(slice.namespace.as_str()) == service.namespace.as_deref()
                    && slice.service.as_deref() == Some(service.name.as_str())
            })
            .flat_map(|slice| slice.endpoints.iter())
            .filter(|endpoint| endpoint.ready)
    }

    pub(crate) fn touch(&mut self) {
        self.generation += 1;
    }
}

fn push_unique(index: &mut FxHashMap<IpAddr, Vec<IpOwner>>, ip: IpAddr, owner: IpOwner) {
    let owners = index.entry(ip).or_default();
    if !owners.contains(&owner) {
        owners.push(owner);
    }
}
