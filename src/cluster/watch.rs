//! The live cluster watcher: one kube-rs `watcher` per kind netwatch uses, each object trimmed
//! on arrival, all merged into one channel of [`WatchUpdate`]s for the run loop.
//!
//! It owns the mapping from kube-rs watcher events to [`ClusterEvent`]s (an initial list becomes
//! one `Reset` then `Synced`, exactly as a snapshot file does) and the per-kind connection state
//! shown in the header. It must not hold the view: the run loop applies the events, and
//! [`WatchStatus`] is a plain value the run loop folds updates into. Resuming from
//! `resourceVersion`, relisting on 410 Gone and backing off on errors are kube-rs's; this module
//! only reports them, and notices (`accepted`) when a resumed watch is back.

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

mod accepted;
mod kubeconfig;
mod status;

pub use kubeconfig::{KubeSettings, WatchClient, WatchError, connect};
pub use status::{ResourceState, WatchStatus, WatchUpdate, resource_name};

/// Starts one watcher per kind on `client`, all sending into `sender`. The task ends when every
/// watcher has stopped, which happens only once the receiver is dropped.
pub fn spawn_watchers(client: WatchClient, sender: mpsc::Sender<WatchUpdate>) -> JoinHandle<()> {
    let WatchClient { client, accepted } = client;
    tokio::spawn(async move {
        tokio::join!(
            watch_kind::<core::Namespace>(
                Api::all(client.clone()),
                ResourceKind::Namespace,
                accepted.subscribe(ResourceKind::Namespace),
                |o| trim::namespace(o).map(Object::Namespace),
                sender.clone(),
            ),
            watch_kind::<core::Pod>(
                Api::all(client.clone()),
                ResourceKind::Pod,
                accepted.subscribe(ResourceKind::Pod),
                |o| trim::pod(o).map(Object::Pod),
                sender.clone(),
            ),
            watch_kind::<core::Service>(
                Api::all(client.clone()),
                ResourceKind::Service,
                accepted.subscribe(ResourceKind::Service),
                |o| trim::service(o).map(Object::Service),
                sender.clone(),
            ),
            watch_kind::<discovery::EndpointSlice>(
                Api::all(client.clone()),
                ResourceKind::EndpointSlice,
                accepted.subscribe(ResourceKind::EndpointSlice),
                |o| trim::endpoint_slice(o).map(Object::EndpointSlice),
                sender.clone(),
            ),
            watch_kind::<core::Node>(
                Api::all(client.clone()),
                ResourceKind::Node,
                accepted.subscribe(ResourceKind::Node),
                |o| trim::node(o).map(Object::Node),
                sender.clone(),
            ),
            watch_kind::<networking::NetworkPolicy>(
                Api::all(client),
                ResourceKind::NetworkPolicy,
                accepted.subscribe(ResourceKind::NetworkPolicy),
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
    mut accepted: tokio::sync::watch::Receiver<u64>,
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
    loop {
        // Biased: an accepted watch is noted before the events it carries, so a 410 or a
        // change that follows it is the last word. A watch that failed may have been accepted
        // in the very poll that read its failure (a 200 and then a 410): that acceptance is
        // seen now and dropped, or after the backoff it would say the stale view is current.
        let updates = tokio::select! {
            biased;
            Ok(()) = accepted.changed() => mapper.watch_accepted(),
            item = stream.next() => match item {
                Some(Ok(event)) => mapper.event(event, &trim),
                Some(Err(error)) => {
                    accepted.borrow_and_update();
                    mapper.failure(&error, SystemTime::now())
                }
                None => return,
            },
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

    /// The API server accepted a watch. kube-rs watches only once listed, so after a failure
    /// this is the watch resuming from its resourceVersion: the view is current again even if
    /// nothing changed (kube-rs yields nothing for a bookmark). A relist under way stays
    /// `Syncing`.
    fn watch_accepted(&mut self) -> Vec<WatchUpdate> {
        let mut updates = Vec::new();
        if self.state != ResourceState::Syncing {
            self.recovered(&mut updates);
        }
        updates
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
            Some(e) => {
                let cause = error_chain(e);
                match tls_hint(&cause) {
                    Some(hint) => format!("{verb} failed: {cause}; {hint}"),
                    None => format!("{verb} failed: {cause}"),
                }
            }
            None => format!("{verb} failed"),
        })),
    }
}

/// What to check when TLS is what failed. rustls's wording names the fault but not where it
/// is configured, and for a kubeconfig that is always one of two fields.
fn tls_hint(cause: &str) -> Option<&'static str> {
    if cause.contains("invalid peer certificate") {
        Some("check certificate-authority in the kubeconfig")
    } else if cause.contains("CertificateRequired")
        || cause.contains("alert: BadCertificate")
        || cause.contains("alert: UnknownCA")
    {
        Some("check client-certificate in the kubeconfig")
    } else {
        None
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
    fn tls_failures_say_which_kubeconfig_field_to_check() {
        assert_eq!(
            tls_hint("invalid peer certificate: UnknownIssuer"),
            Some("check certificate-authority in the kubeconfig")
        );
        assert_eq!(
            tls_hint("received fatal alert: CertificateRequired"),
            Some("check client-certificate in the kubeconfig")
        );
        assert_eq!(tls_hint("Connection refused (os error 111)"), None);
    }

    /// A pods mapper that has listed once and then lost its watch.
    fn listed_then_failed() -> KindMapper<core::Pod> {
        let mut mapper = KindMapper::<core::Pod>::new(ResourceKind::Pod);
        let trim = |o: &core::Pod| trim::pod(o).map(Object::Pod);
        mapper.event(watcher::Event::Init, &trim);
        mapper.event(watcher::Event::InitDone, &trim);
        let error = watcher::Error::WatchStartFailed(api_error(503));
        let updates = mapper.failure(&error, SystemTime::UNIX_EPOCH);
        assert!(matches!(
            updates.as_slice(),
            [WatchUpdate::State(ResourceKind::Pod, ResourceState::Reconnecting { .. })]
        ));
        mapper
    }

    #[test]
    fn a_change_after_a_failure_returns_the_kind_to_synced() {
        let mut mapper = listed_then_failed();
        let trim = |o: &core::Pod| trim::pod(o).map(Object::Pod);
        let mut pod = core::Pod::default();
        pod.metadata.name = Some("web".into());
        pod.metadata.namespace = Some("shop".into());
        let updates = mapper.event(watcher::Event::Apply(pod.clone()), &trim);
        assert_eq!(
            updates.last(),
            Some(&WatchUpdate::State(ResourceKind::Pod, ResourceState::Synced))
        );
        mapper.failure(&watcher::Error::WatchFailed(api_error(500)), SystemTime::UNIX_EPOCH);
        let updates = mapper.event(watcher::Event::Delete(pod), &trim);
        assert_eq!(
            updates.last(),
            Some(&WatchUpdate::State(ResourceKind::Pod, ResourceState::Synced))
        );
    }

    #[test]
    fn a_watch_resumed_without_a_change_returns_the_kind_to_synced() {
        let mut mapper = listed_then_failed();
        let mut status = WatchStatus::new();
        for kind in ResourceKind::ALL {
            status.observe(&WatchUpdate::State(kind, ResourceState::Synced));
        }
        status.observe(&WatchUpdate::State(
            ResourceKind::Pod,
            ResourceState::Reconnecting { since: SystemTime::UNIX_EPOCH, why: "down".into() },
        ));
        assert!(status.summary().starts_with("pods: reconnecting since"), "{}", status.summary());
        for update in mapper.watch_accepted() {
            status.observe(&update);
        }
        assert_eq!(status.summary(), "synced");
        assert!(mapper.watch_accepted().is_empty(), "a state is sent only when it changes");
    }

    #[test]
    fn an_accepted_watch_does_not_cut_a_relist_short() {
        let mut fresh = KindMapper::<core::Pod>::new(ResourceKind::Pod);
        assert!(fresh.watch_accepted().is_empty(), "never listed: still connecting");
        let mut mapper = listed_then_failed();
        let trim = |o: &core::Pod| trim::pod(o).map(Object::Pod);
        mapper.event(watcher::Event::Init, &trim);
        assert!(mapper.watch_accepted().is_empty());
        assert_eq!(mapper.state, ResourceState::Syncing);
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
