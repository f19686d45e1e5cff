//! The terminal UI: an [`app::App`] updated by pure functions, rendered by pure [`views`], with
//! keys mapped in [`keymap`] and colours in [`theme`]. The run loop (`run::interactive`) owns the
//! terminal, the clock and the channels; nothing in here does I/O.

pub mod app;
pub mod filter;
pub mod keymap;
pub mod theme;
pub mod views;

/// Demo data for tests and benchmarks: the bundled capture through the real engine.
pub mod fixtures;

use rustc_hash::FxHashMap;

use crate::cluster::ClusterView;
use crate::policy::{self, PolicySet, Selector};
use app::PolicyRow;

/// What the screens need from the cluster view, recomputed only when its generation changes.
#[derive(Debug, Clone, Default)]
pub struct ClusterFacts {
    pub generation: u64,
    pub policies: Vec<PolicyRow>,
    pub audit: Vec<String>,
    /// `namespace/pod` → `k=v, k=v`.
    pub labels: FxHashMap<String, String>,
}

impl ClusterFacts {
    #[must_use]
    pub fn from_view(view: &ClusterView, set: &PolicySet) -> Self {
        let policies = view
            .policies
            .values()
            .map(|policy| {
                let selector = Selector::compile(policy.spec.pod_selector.as_ref());
                let selected_pods = selector.map_or(0, |selector| {
                    view.pods
                        .values()
                        .filter(|pod| {
                            pod.namespace == policy.namespace
                                && !pod.host_network
                                && !pod.phase.is_terminated()
                                && selector.matches(&pod.labels)
                        })
                        .count()
                });
                let types = match &policy.spec.policy_types {
                    Some(types) if !types.is_empty() => types.join(","),
                    _ if policy.spec.egress.is_some() => "Ingress,Egress".to_owned(),
                    _ => "Ingress".to_owned(),
                };
                PolicyRow { key: policy.key().to_string(), types, selected_pods }
            })
            .collect();
        let audit = policy::audit(view, set).to_string().lines().map(str::to_owned).collect();
        let labels = view
            .pods
            .values()
            .map(|pod| {
                let text: Vec<String> =
                    pod.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                (pod.key().to_string(), text.join(", "))
            })
            .collect();
        Self { generation: view.generation(), policies, audit, labels }
    }
}
