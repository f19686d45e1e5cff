//! The live cluster watcher: one kube-rs `watcher` per kind netwatch uses, each object trimmed
//! on arrival, all merged into one channel of [`WatchUpdate`]s for the run loop.
//!
//! It owns the mapping from kube-rs watcher events to [`ClusterEvent`]s (an initial list becomes
//! one `Reset` then `Synced`, exactly as a snapshot file does) and the per-kind connection state
//! shown in the header. It must not hold the view: the run loop applies the events, and
//! [`WatchStatus`] is a plain value the run loop folds updates into. Resuming from
//! `resourceVersion`, relisting on 410 Gone and backing off on errors are kube-rs's; this module
//! only reports them.

use std::collections::BTreeMap;
use std::fmt;
use std::fmt::Debug;
use std::time::SystemTime;

use futures::StreamExt;
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use k8s_openapi::api::networking::v1 as networking;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::trim::{self, TrimError};
use super::{ClusterEvent, Object, ObjectKey, ResourceKind};

mod kubeconfig;

pub use kubeconfig::{KubeSettings, WatchError, connect};

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

/// Starts one watcher per kind on `client`, all sending into `sender`. The task ends when every
/// watcher has stopped, which happens only once the receiver is dropped.
pub fn spawn_watchers(client: kube::Client, sender: mpsc::Sender<WatchUpdate>) -> JoinHandle<()> {
    tokio::spawn(async move {
        tokio::join!(
            watch_kind::<core::Namespace>(
                Api::all(client.clone()),
                ResourceKind::Namespace,
                |o| trim::namespace(o).map(Object::Namespace),
                sender.clone(),
            ),
            watch_kind::<core::Pod>(
                Api::all(client.clone()),
                ResourceKind::Pod,
                |o| trim::pod(o).map(Object::Pod),
                sender.clone(),
            ),
            watch_kind::<core::Service>(
                Api::all(client.clone()),
                ResourceKind::Service,
                |o| trim::service(o).map(Object::Service),
                sender.clone(),
            ),
            watch_kind::<discovery::EndpointSlice>(
                Api::all(client.clone()),
                ResourceKind::EndpointSlice,
                |o| trim::endpoint_slice(o).map(Object::EndpointSlice),
                sender.clone(),
            ),
            watch_kind::<core::Node>(
                Api::all(client.clone()),
                ResourceKind::Node,
                |o| trim::node(o).map(Object::Node),
                sender.clone(),
            ),
            watch_kind::<networking::NetworkPolicy>(
                Api::all(client),
                ResourceKind::NetworkPolicy,
                |o| trim::network_policy(o).map(Object::NetworkPolicy),
                sender,
            ),
        );
    })
}

/// Runs one kind's watcher until the receiver goes away.
async fn watch_kind<K>(
    api: Api<K>,
    kind: ResourceKind,
    trim: impl Fn(&K) -> Result<Object, TrimError>,
    sender: mpsc::Sender<WatchUpdate>,
) where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let mut mapper = KindMapper::new(kind);
    let mut stream = watcher(api, watcher::Config::default()).default_backoff().boxed();
    if sender.send(WatchUpdate::State(kind, ResourceState::Connecting)).await.is_err() {
        return;
    }
    while let Some(item) = stream.next().await {
        let updates = match item {
            Ok(event) => mapper.event(event, &trim),
            Err(error) => mapper.failure(&error, SystemTime::now()),
        };
        for update in updates {
            if sender.send(update).await.is_err() {
                return;
            }
        }
    }
}

/// One kind's bookkeeping between kube-rs events and ours: the buffer of an initial list and
/// the last state sent, so a state is reported only when it changes.
struct KindMapper<K> {
    kind: ResourceKind,
    buffer: Option<Vec<Object>>,
    state: ResourceState,
    listed_once: bool,
    _object: std::marker::PhantomData<fn(K)>,
}

impl<K: Resource> KindMapper<K> {
    fn new(kind: ResourceKind) -> Self {
        Self {
            kind,
            buffer: None,
            state: ResourceState::Connecting,
            listed_once: false,
            _object: std::marker::PhantomData,
        }
    }

    fn event(
        &mut self,
        event: watcher::Event<K>,
        trim: &impl Fn(&K) -> Result<Object, TrimError>,
    ) -> Vec<WatchUpdate> {
        let mut updates = Vec::new();
        match event {
            watcher::Event::Init => {
                self.buffer = Some(Vec::new());
                self.set_state(ResourceState::Syncing, &mut updates);
            }
            watcher::Event::InitApply(object) => match trim(&object) {
                Ok(trimmed) => self.buffer.get_or_insert_with(Vec::new).push(trimmed),
                Err(error) => updates.push(WatchUpdate::Skipped(self.kind, error.to_string())),
            },
            watcher::Event::InitDone => {
                let objects = self.buffer.take().unwrap_or_default();
                updates.push(WatchUpdate::Event(ClusterEvent::Reset(self.kind, objects)));
                updates.push(WatchUpdate::Event(ClusterEvent::Synced(self.kind)));
                self.listed_once = true;
                self.set_state(ResourceState::Synced, &mut updates);
            }
            watcher::Event::Apply(object) => {
                match trim(&object) {
                    Ok(trimmed) => updates.push(WatchUpdate::Event(ClusterEvent::Upsert(trimmed))),
                    Err(error) => updates.push(WatchUpdate::Skipped(self.kind, error.to_string())),
                }
                self.recovered(&mut updates);
            }
            watcher::Event::Delete(object) => {
                let key = self.key(&object);
                updates.push(WatchUpdate::Event(ClusterEvent::Delete(self.kind, key)));
                self.recovered(&mut updates);
            }
        }
        updates
    }

    fn failure(&mut self, error: &watcher::Error, now: SystemTime) -> Vec<WatchUpdate> {
        let mut updates = Vec::new();
        let state = match classify(error) {
            Failure::Forbidden { verb } => ResourceState::Forbidden { verb },
            Failure::Unauthorized => ResourceState::Unauthorized,
            Failure::Retry(why) => {
                // Keep the first failure's time: "since" is how long the view has been stale.
                let since = match &self.state {
                    ResourceState::Reconnecting { since, .. } => *since,
                    _ => now,
                };
                ResourceState::Reconnecting { since, why }
            }
        };
        tracing::warn!(kind = %self.kind, %error, "watch failed");
        self.set_state(state, &mut updates);
        updates
    }

    /// A change arrived after a failure: the watch resumed without a relist.
    fn recovered(&mut self, updates: &mut Vec<WatchUpdate>) {
        if self.listed_once {
            self.set_state(ResourceState::Synced, updates);
        }
    }

    fn set_state(&mut self, state: ResourceState, updates: &mut Vec<WatchUpdate>) {
        if self.state != state {
            self.state = state.clone();
            updates.push(WatchUpdate::State(self.kind, state));
        }
    }

    fn key(&self, object: &K) -> ObjectKey {
        match self.kind {
            ResourceKind::Namespace | ResourceKind::Node => ObjectKey::cluster(&object.name_any()),
            _ => ObjectKey::namespaced(
                object.namespace().as_deref().unwrap_or("default"),
                &object.name_any(),
            ),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Failure {
    Forbidden { verb: &'static str },
    Unauthorized,
    Retry(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Forbidden { verb } => write!(f, "forbidden ({verb})"),
            Self::Unauthorized => f.write_str("unauthorized"),
            Self::Retry(why) => f.write_str(why),
        }
    }
}

/// What a watcher error means for the user: denied (only they can fix it) or transient.
fn classify(error: &watcher::Error) -> Failure {
    let (verb, status, client_error) = match error {
        watcher::Error::InitialListFailed(e) => ("list", api_status(e), Some(e)),
        watcher::Error::WatchStartFailed(e) | watcher::Error::WatchFailed(e) => {
            ("watch", api_status(e), Some(e))
        }
        watcher::Error::WatchError(status) => ("watch", Some(status.as_ref()), None),
        watcher::Error::NoResourceVersion => {
            return Failure::Retry("the API server sent no resourceVersion".to_owned());
        }
    };
    match status.map(|s| (s.code, s)) {
        Some((401, _)) => Failure::Unauthorized,
        Some((403, _)) => Failure::Forbidden { verb },
        Some((410, _)) => Failure::Retry("resourceVersion expired; relisting".to_owned()),
        Some((429, _)) => Failure::Retry("throttled by the API server (429)".to_owned()),
        Some((code, status)) => {
            Failure::Retry(shorten(&format!("{verb} failed: {code} {}", status.message)))
        }
        None => Failure::Retry(shorten(&match client_error {
            Some(e) => format!("{verb} failed: {}", error_chain(e)),
            None => format!("{verb} failed"),
        })),
    }
}

fn api_status(error: &kube::Error) -> Option<&kube::core::Status> {
    match error {
        kube::Error::Api(status) => Some(status.as_ref()),
        _ => None,
    }
}

/// The innermost causes say what happened ("Connection refused"); the outer ones say where.
fn error_chain(error: &kube::Error) -> String {
    let mut parts = vec![error.to_string()];
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.iter().any(|part| part.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.last().cloned().unwrap_or_default()
}

fn shorten(text: &str) -> String {
    const LIMIT: usize = 120;
    if text.chars().count() <= LIMIT {
        return text.to_owned();
    }
    let mut short: String = text.chars().take(LIMIT - 1).collect();
    short.push('…');
    short
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16) -> kube::Error {
        let status = kube::core::Status::failure("denied", "Forbidden").with_code(code);
        kube::Error::Api(Box::new(status))
    }

    #[test]
    fn a_403_on_list_names_the_resource_and_the_missing_verb() {
        let mut mapper = KindMapper::<core::Pod>::new(ResourceKind::Pod);
        let error = watcher::Error::InitialListFailed(api_error(403));
        let updates = mapper.failure(&error, SystemTime::UNIX_EPOCH);
        let mut status = WatchStatus::new();
        for update in &updates {
            status.observe(update);
        }
        assert_eq!(
            status.state(ResourceKind::Pod).describe(ResourceKind::Pod),
            "forbidden: pods (missing verb 'list'; apply assets/rbac.yaml)"
        );
        assert!(status.summary().starts_with("forbidden: pods (missing verb 'list'"));
    }

    #[test]
    fn repeated_failures_keep_the_time_of_the_first() {
        let mut mapper = KindMapper::<core::Pod>::new(ResourceKind::Pod);
        let first = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(60);
        let later = first + std::time::Duration::from_secs(30);
        mapper.failure(&watcher::Error::WatchStartFailed(api_error(500)), first);
        mapper.failure(&watcher::Error::WatchStartFailed(api_error(503)), later);
        assert!(
            matches!(mapper.state, ResourceState::Reconnecting { since, .. } if since == first)
        );
        assert_eq!(
            mapper.state.describe(ResourceKind::Pod),
            "reconnecting since 1970-01-01T00:01:00Z (watch failed: 503 denied)"
        );
    }

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

    #[test]
    fn an_initial_list_becomes_one_reset_then_synced_and_bad_objects_are_counted() {
        let mut mapper = KindMapper::<core::Namespace>::new(ResourceKind::Namespace);
        let trim = |o: &core::Namespace| trim::namespace(o).map(Object::Namespace);
        let mut good = core::Namespace::default();
        good.metadata.name = Some("shop".into());
        let nameless = core::Namespace::default();
        let mut updates = mapper.event(watcher::Event::Init, &trim);
        updates.extend(mapper.event(watcher::Event::InitApply(good), &trim));
        updates.extend(mapper.event(watcher::Event::InitApply(nameless), &trim));
        updates.extend(mapper.event(watcher::Event::InitDone, &trim));
        let events: Vec<_> = updates
            .iter()
            .filter_map(|u| match u {
                WatchUpdate::Event(e) => Some(e.clone()),
                _ => None,
            })
            .collect();
        assert!(
            matches!(&events[0], ClusterEvent::Reset(ResourceKind::Namespace, objects) if objects.len() == 1)
        );
        assert_eq!(events[1], ClusterEvent::Synced(ResourceKind::Namespace));
        assert!(
            updates.iter().any(|u| matches!(u, WatchUpdate::Skipped(ResourceKind::Namespace, _)))
        );
        assert!(
            updates.contains(&WatchUpdate::State(ResourceKind::Namespace, ResourceState::Synced))
        );
    }
}
