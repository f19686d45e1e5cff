//! What the watchers report and what the header shows of it: the per-kind connection state,
//! and [`WatchStatus`], the plain value the run loop folds updates into. No I/O here.

use std::collections::BTreeMap;
use std::time::SystemTime;

use crate::cluster::{ClusterEvent, ResourceKind};

/// What the watcher tells the run loop.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchUpdate {
    /// A change to apply to the `ClusterView`.
    Event(ClusterEvent),
    /// The connection state of one kind changed.
    State(ResourceKind, ResourceState),
    /// An object that could not be trimmed was left out; the message names it and the field.
    Skipped(ResourceKind, String),
}

/// The connection state of one watched kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceState {
    /// No answer from the API server yet.
    Connecting,
    /// Listing (the first time, or again after a 410 Gone).
    Syncing,
    /// Listed, and watching for changes.
    Synced,
    /// The last request failed; kube-rs retries with backoff. `since` is the first failure.
    Reconnecting { since: SystemTime, why: String },
    /// The API server answered 403: the service account or user lacks `verb` on the resource.
    Forbidden { verb: &'static str },
    /// The API server answered 401: the credentials themselves were rejected.
    Unauthorized,
}

impl ResourceState {
    /// How the state reads for one kind, e.g. `reconnecting since 2026-11-29T10:00:02Z (…)`.
    #[must_use]
    pub fn describe(&self, kind: ResourceKind) -> String {
        match self {
            Self::Connecting => "connecting".to_owned(),
            Self::Syncing => "syncing".to_owned(),
            Self::Synced => "synced".to_owned(),
            Self::Reconnecting { since, why } => {
                format!("reconnecting since {} ({why})", humantime::format_rfc3339_seconds(*since))
            }
            Self::Forbidden { verb } => format!(
                "forbidden: {} (missing verb '{verb}'; apply assets/rbac.yaml)",
                resource_name(kind)
            ),
            Self::Unauthorized => format!(
                "unauthorized: {} (credentials rejected; check the kubeconfig user or token)",
                resource_name(kind)
            ),
        }
    }

    fn is_denied(&self) -> bool {
        matches!(self, Self::Forbidden { .. } | Self::Unauthorized)
    }
}

/// The resource as RBAC and kubectl name it.
#[must_use]
pub fn resource_name(kind: ResourceKind) -> &'static str {
    match kind {
        ResourceKind::Namespace => "namespaces",
        ResourceKind::Pod => "pods",
        ResourceKind::Service => "services",
        ResourceKind::EndpointSlice => "endpointslices.discovery.k8s.io",
        ResourceKind::Node => "nodes",
        ResourceKind::NetworkPolicy => "networkpolicies.networking.k8s.io",
    }
}

/// Every kind's state and the count of skipped objects: what the header shows. A plain value
/// the run loop owns and feeds with [`observe`](Self::observe).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchStatus {
    states: BTreeMap<ResourceKind, ResourceState>,
    skipped: u64,
    last_skipped: Option<String>,
}

impl Default for WatchStatus {
    fn default() -> Self {
        Self {
            states: ResourceKind::ALL.map(|kind| (kind, ResourceState::Connecting)).into(),
            skipped: 0,
            last_skipped: None,
        }
    }
}

impl WatchStatus {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Folds one update in; cluster events leave the status unchanged.
    pub fn observe(&mut self, update: &WatchUpdate) {
        match update {
            WatchUpdate::Event(_) => {}
            WatchUpdate::State(kind, state) => {
                self.states.insert(*kind, state.clone());
            }
            WatchUpdate::Skipped(_, why) => {
                self.skipped += 1;
                self.last_skipped = Some(why.clone());
            }
        }
    }

    #[must_use]
    pub fn state(&self, kind: ResourceKind) -> &ResourceState {
        self.states.get(&kind).unwrap_or(&ResourceState::Connecting)
    }

    /// Objects left out because they could not be read, and the last reason.
    #[must_use]
    pub fn skipped(&self) -> (u64, Option<&str>) {
        (self.skipped, self.last_skipped.as_deref())
    }

    /// One line per kind: `pods: synced`, `nodes: forbidden: nodes (…)`.
    #[must_use]
    pub fn lines(&self) -> Vec<String> {
        ResourceKind::ALL
            .iter()
            .map(|kind| format!("{}: {}", resource_name(*kind), self.state(*kind).describe(*kind)))
            .collect()
    }

    /// The header's one string. Denied kinds come first because only the user can fix them;
    /// then a failing connection; then progress: `connecting`, `syncing N/6`, `synced`.
    #[must_use]
    pub fn summary(&self) -> String {
        let total = ResourceKind::ALL.len();
        let synced =
            ResourceKind::ALL.iter().filter(|k| *self.state(**k) == ResourceState::Synced).count();
        let denied: Vec<String> = ResourceKind::ALL
            .iter()
            .filter(|kind| self.state(**kind).is_denied())
            .map(|kind| self.state(*kind).describe(*kind))
            .collect();
        let mut summary = if !denied.is_empty() {
            format!("{}; {synced}/{total} synced", denied.join("; "))
        } else if let Some((kind, state)) = ResourceKind::ALL
            .iter()
            .map(|kind| (*kind, self.state(*kind)))
            .filter(|(_, state)| matches!(state, ResourceState::Reconnecting { .. }))
            .min_by_key(|(_, state)| match state {
                ResourceState::Reconnecting { since, .. } => Some(*since),
                _ => None,
            })
        {
            format!("{}: {}", resource_name(kind), state.describe(kind))
        } else if synced == total {
            "synced".to_owned()
        } else if ResourceKind::ALL.iter().all(|k| *self.state(*k) == ResourceState::Connecting) {
            "connecting".to_owned()
        } else {
            format!("syncing {synced}/{total}")
        };
        if self.skipped > 0 {
            summary.push_str(&format!(", {} unreadable object(s) skipped", self.skipped));
        }
        summary
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_counts_synced_kinds_and_then_says_synced() {
        let mut status = WatchStatus::new();
        assert_eq!(status.summary(), "connecting");
        status.observe(&WatchUpdate::State(ResourceKind::Pod, ResourceState::Synced));
        status.observe(&WatchUpdate::State(ResourceKind::Node, ResourceState::Syncing));
        assert_eq!(status.summary(), "syncing 1/6");
        for kind in ResourceKind::ALL {
            status.observe(&WatchUpdate::State(kind, ResourceState::Synced));
        }
        assert_eq!(status.summary(), "synced");
        status.observe(&WatchUpdate::Skipped(ResourceKind::Pod, "Pod 'a/b': bad".into()));
        assert_eq!(status.summary(), "synced, 1 unreadable object(s) skipped");
    }
}
