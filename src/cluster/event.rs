//! Cluster changes as a small event enum, folded into the view by the pure [`ClusterView::apply`].
//!
//! The snapshot loader and the live watcher both produce these, so a snapshot replays exactly
//! like a watch that listed the same objects.

use std::fmt;

use super::{ClusterView, EndpointSlice, Namespace, NetworkPolicy, Node, ObjectKey, Pod, Service};

/// The six kinds netwatch watches.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum ResourceKind {
    Namespace,
    Pod,
    Service,
    EndpointSlice,
    Node,
    NetworkPolicy,
}

impl ResourceKind {
    pub const ALL: [Self; 6] = [
        Self::Namespace,
        Self::Pod,
        Self::Service,
        Self::EndpointSlice,
        Self::Node,
        Self::NetworkPolicy,
    ];

    /// The API `kind` string.
    #[must_use]
    pub fn kind_name(self) -> &'static str {
        match self {
            Self::Namespace => "Namespace",
            Self::Pod => "Pod",
            Self::Service => "Service",
            Self::EndpointSlice => "EndpointSlice",
            Self::Node => "Node",
            Self::NetworkPolicy => "NetworkPolicy",
        }
    }
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind_name())
    }
}

/// One trimmed object of a watched kind.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Object {
    Namespace(Namespace),
    Pod(Pod),
    Service(Service),
    EndpointSlice(EndpointSlice),
    Node(Node),
    NetworkPolicy(NetworkPolicy),
}

impl Object {
    #[must_use]
    pub fn kind(&self) -> ResourceKind {
        match self {
            Self::Namespace(_) => ResourceKind::Namespace,
            Self::Pod(_) => ResourceKind::Pod,
            Self::Service(_) => ResourceKind::Service,
            Self::EndpointSlice(_) => ResourceKind::EndpointSlice,
            Self::Node(_) => ResourceKind::Node,
            Self::NetworkPolicy(_) => ResourceKind::NetworkPolicy,
        }
    }

    #[must_use]
    pub fn key(&self) -> ObjectKey {
        match self {
            Self::Namespace(ns) => ObjectKey::cluster(&ns.name),
            Self::Pod(pod) => pod.key(),
            Self::Service(service) => service.key(),
            Self::EndpointSlice(slice) => ObjectKey::namespaced(&slice.namespace, &slice.name),
            Self::Node(node) => ObjectKey::cluster(&node.name),
            Self::NetworkPolicy(policy) => policy.key(),
        }
    }
}

/// A change to the cluster view.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum ClusterEvent {
    /// A (re)list: every object of this kind is replaced by these, atomically.
    Reset(ResourceKind, Vec<Object>),
    /// One object was added or modified.
    Upsert(Object),
    /// One object was deleted.
    Delete(ResourceKind, ObjectKey),
    /// The kind has completed its initial list; the view of it is now complete.
    Synced(ResourceKind),
}

impl ClusterView {
    /// Folds one event into the view. Pure: no I/O, and idempotent for repeated upserts.
    pub fn apply(&mut self, event: ClusterEvent) {
        match event {
            ClusterEvent::Reset(kind, objects) => {
                self.clear(kind);
                for object in objects {
                    self.insert(object);
                }
            }
            ClusterEvent::Upsert(object) => self.insert(object),
            ClusterEvent::Delete(kind, key) => self.remove(kind, &key),
            ClusterEvent::Synced(kind) => {
                if self.synced.contains(&kind) {
                    return;
                }
                // Verdicts wait for the policies and namespaces to be listed: a new generation
                // makes them be judged again.
                self.synced.push(kind);
            }
        }
        self.touch();
    }

    fn clear(&mut self, kind: ResourceKind) {
        match kind {
            ResourceKind::Namespace => self.namespaces.clear(),
            ResourceKind::Pod => self.pods.clear(),
            ResourceKind::Service => self.services.clear(),
            ResourceKind::EndpointSlice => self.endpoint_slices.clear(),
            ResourceKind::Node => self.nodes.clear(),
            ResourceKind::NetworkPolicy => self.policies.clear(),
        }
    }

    fn insert(&mut self, object: Object) {
        let key = object.key();
        match object {
            Object::Namespace(ns) => {
                self.namespaces.insert(key.name, ns);
            }
            Object::Pod(pod) => {
                self.pods.insert(key, pod);
            }
            Object::Service(service) => {
                self.services.insert(key, service);
            }
            Object::EndpointSlice(slice) => {
                self.endpoint_slices.insert(key, slice);
            }
            Object::Node(node) => {
                self.nodes.insert(key.name, node);
            }
            Object::NetworkPolicy(policy) => {
                self.policies.insert(key, policy);
            }
        }
    }

    fn remove(&mut self, kind: ResourceKind, key: &ObjectKey) {
        match kind {
            ResourceKind::Namespace => {
                self.namespaces.remove(&key.name);
            }
            ResourceKind::Pod => {
                self.pods.remove(key);
            }
            ResourceKind::Service => {
                self.services.remove(key);
            }
            ResourceKind::EndpointSlice => {
                self.endpoint_slices.remove(key);
            }
            ResourceKind::Node => {
                self.nodes.remove(&key.name);
            }
            ResourceKind::NetworkPolicy => {
                self.policies.remove(key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{IpOwner, Labels, PodPhase};

    fn pod(name: &str, ip: &str, phase: PodPhase) -> Pod {
        Pod {
            namespace: "shop".into(),
            name: name.into(),
            labels: Labels::new(),
            node: Some("n1".into()),
            ips: vec![ip.parse().unwrap()],
            host_network: false,
            phase,
            ports: vec![],
        }
    }

    #[test]
    fn a_deleted_pod_no_longer_owns_its_ip() {
        let mut view = ClusterView::new();
        view.apply(ClusterEvent::Upsert(Object::Pod(pod("web", "10.244.1.5", PodPhase::Running))));
        view.reindex();
        assert_eq!(view.owners("10.244.1.5".parse().unwrap()).len(), 1);
        view.apply(ClusterEvent::Delete(ResourceKind::Pod, ObjectKey::namespaced("shop", "web")));
        view.reindex();
        assert!(view.owners("10.244.1.5".parse().unwrap()).is_empty());
    }

    #[test]
    fn a_finished_pod_does_not_shadow_the_new_owner_of_its_ip() {
        let mut view = ClusterView::new();
        view.apply(ClusterEvent::Reset(
            ResourceKind::Pod,
            vec![
                Object::Pod(pod("job-1", "10.244.1.7", PodPhase::Succeeded)),
                Object::Pod(pod("api", "10.244.1.7", PodPhase::Running)),
            ],
        ));
        view.reindex();
        assert_eq!(
            view.owners("10.244.1.7".parse().unwrap()),
            &[IpOwner::Pod(ObjectKey::namespaced("shop", "api"))]
        );
    }

    #[test]
    fn reset_replaces_every_object_of_its_kind_and_bumps_the_generation() {
        let mut view = ClusterView::new();
        view.apply(ClusterEvent::Upsert(Object::Pod(pod("old", "10.244.1.8", PodPhase::Running))));
        let before = view.generation();
        view.apply(ClusterEvent::Reset(
            ResourceKind::Pod,
            vec![Object::Pod(pod("new", "10.244.1.9", PodPhase::Running))],
        ));
        assert!(view.generation() > before);
        assert_eq!(view.pods.len(), 1);
        assert!(view.pods.contains_key(&ObjectKey::namespaced("shop", "new")));
    }
}
