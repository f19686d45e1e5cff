//! The live watcher against an API server running in this process (`api_server`), reached the
//! way a user reaches a cluster: through a kubeconfig file. Every wait is bounded; everything
//! listens on 127.0.0.1 only.

pub mod api_server;
mod https;
mod pki;

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use api_server::{ApiServer, ClusterState, Collection};
use netwatch::cluster::watch::{
    KubeSettings, ResourceState, WatchStatus, WatchUpdate, connect, spawn_watchers,
};
use netwatch::cluster::{ClusterEvent, ClusterView, IpOwner, ObjectKey, ResourceKind};
use netwatch::flow::key::Protocol;
use netwatch::policy::{Connection, Decision, PolicySet};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

const PATIENCE: Duration = Duration::from_secs(30);

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

pub fn namespace(name: &str) -> Value {
    json!({"metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}}})
}

pub fn pod(ns: &str, name: &str, app: &str, pod_ip: &str) -> Value {
    json!({
        "metadata": {"name": name, "namespace": ns, "labels": {"app": app}},
        "spec": {"nodeName": "n1", "containers": [{"name": "main", "image": "busybox",
                 "ports": [{"containerPort": 8080, "protocol": "TCP"}]}]},
        "status": {"phase": "Running", "podIP": pod_ip, "podIPs": [{"ip": pod_ip}]}
    })
}

fn service(ns: &str, name: &str, cluster_ip: &str, app: &str) -> Value {
    json!({
        "metadata": {"name": name, "namespace": ns},
        "spec": {"type": "ClusterIP", "clusterIP": cluster_ip, "clusterIPs": [cluster_ip],
                 "selector": {"app": app},
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}
    })
}

fn endpoint_slice(ns: &str, name: &str, service: &str, pod: &str, pod_ip: &str) -> Value {
    json!({
        "metadata": {"name": name, "namespace": ns,
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [pod_ip], "conditions": {"ready": true}, "nodeName": "n1",
                       "targetRef": {"kind": "Pod", "namespace": ns, "name": pod}}],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
    })
}

pub fn node(name: &str, address: &str) -> Value {
    json!({
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"]},
        "status": {"addresses": [{"type": "InternalIP", "address": address},
                                 {"type": "Hostname", "address": name}]}
    })
}

fn deny_ingress_to(ns: &str, name: &str, app: &str) -> Value {
    json!({
        "metadata": {"name": name, "namespace": ns},
        "spec": {"podSelector": {"matchLabels": {"app": app}}, "policyTypes": ["Ingress"]}
    })
}

/// A small shop: one of each kind.
fn shop() -> ClusterState {
    let mut state = ClusterState::default();
    state.put(Collection::Namespaces, namespace("shop"));
    state.put(Collection::Pods, pod("shop", "web", "web", "10.244.1.10"));
    state.put(Collection::Pods, pod("shop", "db", "db", "10.244.1.11"));
    state.put(Collection::Services, service("shop", "web", "10.96.0.10", "web"));
    state.put(
        Collection::EndpointSlices,
        endpoint_slice("shop", "web-x1", "web", "web", "10.244.1.10"),
    );
    state.put(Collection::Nodes, node("n1", "192.168.1.10"));
    state.put(Collection::NetworkPolicies, deny_ingress_to("shop", "lock-web", "web"));
    state
}

/// One kubeconfig context: its cluster and the credentials of its user.
struct Context<'a> {
    name: &'a str,
    /// `http://…` or `https://…`.
    server: String,
    /// `certificate-authority-data`: the CA that signed the server's certificate, PEM.
    ca_pem: Option<&'a str>,
    user: User<'a>,
}

enum User<'a> {
    Anonymous,
    Token(&'a str),
    Certificate { cert_pem: &'a str, key_pem: &'a str },
}

fn base64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// A kubeconfig of plain-HTTP clusters on these ports, one context each, no credentials.
pub fn write_kubeconfig(dir: &Path, contexts: &[(&str, u16)]) -> std::path::PathBuf {
    let contexts: Vec<Context> = contexts
        .iter()
        .map(|(name, port)| Context {
            name,
            server: format!("http://127.0.0.1:{port}"),
            ca_pem: None,
            user: User::Anonymous,
        })
        .collect();
    write_kubeconfig_of(dir, &contexts)
}

/// A kubeconfig as kubectl writes it; the first context is the current one.
fn write_kubeconfig_of(dir: &Path, contexts: &[Context]) -> std::path::PathBuf {
    let mut text = String::from("apiVersion: v1\nkind: Config\nclusters:\n");
    for context in contexts {
        text.push_str(&format!(
            "- name: {}\n  cluster:\n    server: {}\n",
            context.name, context.server
        ));
        if let Some(ca) = context.ca_pem {
            text.push_str(&format!("    certificate-authority-data: {}\n", base64(ca)));
        }
    }
    text.push_str("users:\n");
    for context in contexts {
        text.push_str(&format!("- name: {}-user\n", context.name));
        match &context.user {
            User::Anonymous => text.push_str("  user: {}\n"),
            User::Token(token) => text.push_str(&format!("  user:\n    token: {token}\n")),
            User::Certificate { cert_pem, key_pem } => text.push_str(&format!(
                "  user:\n    client-certificate-data: {}\n    client-key-data: {}\n",
                base64(cert_pem),
                base64(key_pem)
            )),
        }
    }
    text.push_str("contexts:\n");
    for context in contexts {
        text.push_str(&format!(
            "- name: {0}\n  context:\n    cluster: {0}\n    user: {0}-user\n",
            context.name
        ));
    }
    text.push_str(&format!("current-context: {}\n", contexts[0].name));
    let path = dir.join("kubeconfig");
    std::fs::write(&path, text).unwrap();
    path
}

/// The run loop's side, reduced to what the tests look at: the view, the status, and every
/// cluster event in order.
struct Watching {
    updates: mpsc::Receiver<WatchUpdate>,
    task: JoinHandle<()>,
    view: ClusterView,
    status: WatchStatus,
    events: Vec<ClusterEvent>,
    _dir: tempfile::TempDir,
}

/// How many kinds the watcher reports as reconnecting.
fn reconnecting_kinds(status: &WatchStatus) -> usize {
    ResourceKind::ALL
        .iter()
        .filter(|k| matches!(status.state(**k), ResourceState::Reconnecting { .. }))
        .count()
}

impl Watching {
    async fn start(contexts: &[(&str, u16)], context: Option<&str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = write_kubeconfig(dir.path(), contexts);
        Self::with_kubeconfig(dir, kubeconfig, context).await
    }

    /// Watches through the kubeconfig `contexts` describe, from its first context.
    async fn start_with(contexts: &[Context<'_>]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = write_kubeconfig_of(dir.path(), contexts);
        Self::with_kubeconfig(dir, kubeconfig, None).await
    }

    async fn with_kubeconfig(
        dir: tempfile::TempDir,
        kubeconfig: std::path::PathBuf,
        context: Option<&str>,
    ) -> Self {
        let settings =
            KubeSettings { kubeconfig: Some(kubeconfig), context: context.map(str::to_owned) };
        let client = connect(&settings).await.unwrap();
        let (sender, updates) = mpsc::channel(256);
        let task = spawn_watchers(client, sender);
        Self {
            updates,
            task,
            view: ClusterView::new(),
            status: WatchStatus::new(),
            events: Vec::new(),
            _dir: dir,
        }
    }

    /// Applies updates until `done` holds; fails with the status if it does not within
    /// [`PATIENCE`].
    async fn until(&mut self, what: &str, done: impl Fn(&ClusterView, &WatchStatus) -> bool) {
        let waited = tokio::time::timeout(PATIENCE, async {
            loop {
                self.view.reindex();
                if done(&self.view, &self.status) {
                    return;
                }
                let Some(update) = self.updates.recv().await else { return };
                self.status.observe(&update);
                if let WatchUpdate::Event(event) = update {
                    self.events.push(event.clone());
                    self.view.apply(event);
                }
            }
        })
        .await;
        self.view.reindex();
        assert!(
            waited.is_ok() && done(&self.view, &self.status),
            "waited {PATIENCE:?} for {what}; status: {}; lines: {:?}",
            self.status.summary(),
            self.status.lines()
        );
    }

    async fn synced(&mut self) {
        self.until("every kind to sync", |_, status| status.summary() == "synced").await;
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn owned_by_pod(view: &ClusterView, address: &str, ns: &str, name: &str) -> bool {
    view.owners(ip(address)).contains(&IpOwner::Pod(ObjectKey::namespaced(ns, name)))
}

#[tokio::test]
async fn the_initial_sync_resets_and_syncs_each_of_the_six_kinds_with_trimmed_objects() {
    let server = ApiServer::start(0, shop()).await;
    let mut watching = Watching::start(&[("test", server.port)], None).await;
    watching.synced().await;
    for kind in ResourceKind::ALL {
        let reset = watching.events.iter().position(
            |e| matches!(e, ClusterEvent::Reset(k, objects) if *k == kind && !objects.is_empty()),
        );
        let synced = watching.events.iter().position(|e| *e == ClusterEvent::Synced(kind));
        assert!(
            matches!((reset, synced), (Some(r), Some(s)) if r < s),
            "{kind}: {:?}",
            watching.events
        );
    }
    let view = &watching.view;
    assert!(owned_by_pod(view, "10.244.1.10", "shop", "web"));
    assert_eq!(
        view.owners(ip("10.96.0.10")),
        &[IpOwner::ServiceClusterIp(ObjectKey::namespaced("shop", "web"))]
    );
    assert_eq!(view.owners(ip("192.168.1.10")), &[IpOwner::Node("n1".into())]);
    let web = &view.pods[&ObjectKey::namespaced("shop", "web")];
    assert_eq!(web.ports.len(), 1);
    assert_eq!(web.labels.get("app").map(String::as_str), Some("web"));
    assert_eq!(view.service_backends(&ObjectKey::namespaced("shop", "web")).count(), 1);
    assert!(view.namespaces.contains_key("shop"));
    assert!(view.policies.contains_key(&ObjectKey::namespaced("shop", "lock-web")));
    assert_eq!(view.synced.len(), 6);
}

#[tokio::test]
async fn added_modified_and_deleted_pods_reach_the_view() {
    let server = ApiServer::start(0, shop()).await;
    let mut watching = Watching::start(&[("test", server.port)], None).await;
    watching.synced().await;

    server.change(|s| s.put(Collection::Pods, pod("shop", "api", "api", "10.244.1.20")));
    watching.until("the added pod", |v, _| owned_by_pod(v, "10.244.1.20", "shop", "api")).await;

    server.change(|s| s.put(Collection::Pods, pod("shop", "api", "api", "10.244.1.21")));
    watching
        .until("the modified pod's new IP", |v, _| {
            owned_by_pod(v, "10.244.1.21", "shop", "api") && v.owners(ip("10.244.1.20")).is_empty()
        })
        .await;

    server.change(|s| s.delete(Collection::Pods, "shop/api"));
    watching.until("the deleted pod to go", |v, _| v.owners(ip("10.244.1.21")).is_empty()).await;
    assert!(owned_by_pod(&watching.view, "10.244.1.10", "shop", "web"), "others stay");
}

#[tokio::test]
async fn a_network_policy_added_mid_run_changes_the_verdict() {
    let server = ApiServer::start(0, shop()).await;
    let mut watching = Watching::start(&[("test", server.port)], None).await;
    watching.synced().await;
    let web_to_db = Connection {
        src: ip("10.244.1.10"),
        dst: ip("10.244.1.11"),
        protocol: Protocol::Tcp,
        dst_port: Some(5432),
    };
    let (before, _) = PolicySet::compile(&watching.view);
    assert_eq!(
        before.evaluate(&watching.view, &web_to_db).ingress.decision,
        Decision::Unrestricted
    );

    server.change(|s| s.put(Collection::NetworkPolicies, deny_ingress_to("shop", "lock-db", "db")));
    watching
        .until("the new policy", |v, _| {
            v.policies.contains_key(&ObjectKey::namespaced("shop", "lock-db"))
        })
        .await;
    let (after, _) = PolicySet::compile(&watching.view);
    let verdict = after.evaluate(&watching.view, &web_to_db);
    assert_eq!(verdict.ingress.decision, Decision::Deny);
    assert_eq!(verdict.ingress.policies, vec!["shop/lock-db".to_owned()]);
}

#[tokio::test]
async fn after_a_server_restart_the_watcher_reconnects_and_resyncs() {
    let server = ApiServer::start(0, shop()).await;
    let mut watching = Watching::start(&[("test", server.port)], None).await;
    watching.synced().await;

    let (port, mut state) = server.stop().await;
    watching
        .until("a kind to report reconnecting", |_, status| reconnecting_kinds(status) > 0)
        .await;
    assert!(
        watching.status.summary().contains("reconnecting since"),
        "{}",
        watching.status.summary()
    );

    // While it was down, a pod went away and another came; the restarted server's history
    // starts afresh, so the watcher must relist to see it.
    state.delete_silently(Collection::Pods, "shop/db");
    state.put(Collection::Pods, pod("shop", "cache", "cache", "10.244.1.30"));
    state.compact();
    let _server = ApiServer::start(port, state).await;
    watching
        .until("the resynced pods", |v, status| {
            status.summary() == "synced"
                && owned_by_pod(v, "10.244.1.30", "shop", "cache")
                && v.owners(ip("10.244.1.11")).is_empty()
        })
        .await;
}

/// The watch comes back from its resourceVersion and nothing changed meanwhile: the server sends
/// only a bookmark, kube-rs yields nothing, and still the header must leave "reconnecting".
#[tokio::test]
async fn a_watch_resumed_without_changes_reads_synced_again_without_a_relist() {
    let server = ApiServer::start(0, shop()).await;
    let mut watching = Watching::start(&[("test", server.port)], None).await;
    watching.synced().await;
    let resets = |events: &[ClusterEvent]| {
        events.iter().filter(|e| matches!(e, ClusterEvent::Reset(..))).count()
    };
    let resets_before = resets(&watching.events);

    let (port, state) = server.stop().await;
    watching
        .until("every kind to report reconnecting", |_, status| {
            reconnecting_kinds(status) == ResourceKind::ALL.len()
        })
        .await;
    let _server = ApiServer::start(port, state).await;
    watching.synced().await;
    assert_eq!(resets(&watching.events), resets_before, "resumed, not relisted");
    assert!(owned_by_pod(&watching.view, "10.244.1.11", "shop", "db"));
}

#[tokio::test]
async fn an_expired_resource_version_makes_the_watcher_relist() {
    let server = ApiServer::start(0, shop()).await;
    let mut watching = Watching::start(&[("test", server.port)], None).await;
    watching.synced().await;
    let resets_before = watching
        .events
        .iter()
        .filter(|e| matches!(e, ClusterEvent::Reset(ResourceKind::Pod, _)))
        .count();

    // The db pod vanishes from a history the watcher can no longer replay: 410, then a relist.
    server.change(|s| s.delete_silently(Collection::Pods, "shop/db"));
    server.cut_watches();
    // Until the relist is in, the pods are not "synced" again: the watch the API server accepted
    // before answering 410 is no sign that the view is current.
    let reconnecting = std::cell::Cell::new(false);
    let synced_while_stale = std::cell::Cell::new(false);
    watching
        .until("the relisted pods", |v, status| {
            let relisted = v.owners(ip("10.244.1.11")).is_empty();
            match status.state(ResourceKind::Pod) {
                ResourceState::Reconnecting { .. } => reconnecting.set(true),
                ResourceState::Synced if reconnecting.get() && !relisted => {
                    synced_while_stale.set(true);
                }
                _ => {}
            }
            relisted
        })
        .await;
    assert!(!synced_while_stale.get(), "the pods showed as synced before their relist");
    let resets_after = watching
        .events
        .iter()
        .filter(|e| matches!(e, ClusterEvent::Reset(ResourceKind::Pod, _)))
        .count();
    assert!(resets_after > resets_before, "the pods were listed again");
    watching.until("every kind to sync again", |_, status| status.summary() == "synced").await;
}

#[tokio::test]
async fn a_forbidden_resource_is_reported_by_name_while_the_others_sync() {
    let mut state = shop();
    state.forbid(Collection::Pods);
    let server = ApiServer::start(0, state).await;
    let mut watching = Watching::start(&[("test", server.port)], None).await;
    watching
        .until("five kinds synced and pods forbidden", |_, status| {
            status.state(ResourceKind::Pod) == &ResourceState::Forbidden { verb: "list" }
                && ResourceKind::ALL
                    .iter()
                    .filter(|k| **k != ResourceKind::Pod)
                    .all(|k| status.state(*k) == &ResourceState::Synced)
        })
        .await;
    assert_eq!(
        watching.status.summary(),
        "forbidden: pods (missing verb 'list'; apply assets/rbac.yaml); 5/6 synced"
    );
    assert!(watching.view.pods.is_empty());
    assert_eq!(watching.view.owners(ip("192.168.1.10")), &[IpOwner::Node("n1".into())]);
    drop(server);
}

#[tokio::test]
async fn the_context_flag_selects_the_cluster_of_that_context() {
    let mut first = ClusterState::default();
    first.put(Collection::Nodes, node("first-node", "192.168.1.1"));
    let mut second = ClusterState::default();
    second.put(Collection::Nodes, node("second-node", "192.168.2.1"));
    let first = ApiServer::start(0, first).await;
    let second = ApiServer::start(0, second).await;
    let contexts = [("first", first.port), ("second", second.port)];

    let mut chosen = Watching::start(&contexts, Some("second")).await;
    chosen.synced().await;
    assert_eq!(chosen.view.nodes.keys().collect::<Vec<_>>(), ["second-node"]);

    let mut current = Watching::start(&contexts, None).await;
    current.synced().await;
    assert_eq!(current.view.nodes.keys().collect::<Vec<_>>(), ["first-node"]);
}

#[tokio::test]
async fn an_unknown_context_is_an_error_that_says_how_to_list_contexts() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = write_kubeconfig(dir.path(), &[("only", 1)]);
    let settings = KubeSettings { kubeconfig: Some(kubeconfig), context: Some("nope".into()) };
    let error = connect(&settings).await.err().unwrap().to_string();
    assert!(
        error.contains("context 'nope'") && error.contains("kubectl config get-contexts"),
        "{error}"
    );
}

#[tokio::test]
async fn a_missing_kubeconfig_file_is_an_error_naming_it() {
    let settings =
        KubeSettings { kubeconfig: Some("/nonexistent/netwatch-kubeconfig".into()), context: None };
    let error = connect(&settings).await.err().unwrap().to_string();
    assert!(error.contains("'/nonexistent/netwatch-kubeconfig'"), "{error}");
}

#[test]
fn kubectl_plugin_list_finds_kubectl_netwatch() {
    let Ok(kubectl) = which_kubectl() else {
        crate::skipped("the kubectl plugin test", "kubectl is not installed");
        return;
    };
    let binary = Path::new(env!("CARGO_BIN_EXE_kubectl-netwatch"));
    let dir = binary.parent().unwrap();
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs = vec![dir.to_owned()];
    dirs.extend(std::env::split_paths(&path));
    let output = std::process::Command::new(kubectl)
        .args(["plugin", "list"])
        .env("PATH", std::env::join_paths(dirs).unwrap())
        .env("KUBECONFIG", "/dev/null")
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&output.stdout);
    assert!(
        listed.lines().any(|line| line.trim() == binary.display().to_string()),
        "kubectl plugin list did not list {}:\n{listed}\n{}",
        binary.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn which_kubectl() -> Result<std::path::PathBuf, ()> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|dir| dir.join("kubectl")).find(|p| p.is_file()).ok_or(())
}

/// Runs the built binary without blocking the runtime that serves the API.
async fn run_netwatch(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_netwatch")).args(&args).output().unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn netwatch_snapshot_writes_what_the_api_lists_in_the_format_cluster_reads() {
    let server = ApiServer::start(0, shop()).await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = write_kubeconfig(dir.path(), &[("test", server.port)]);
    let output_file = dir.path().join("snapshot.yaml");
    let args = [
        "snapshot",
        "-o",
        output_file.to_str().unwrap(),
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
    ];
    let output = run_netwatch(args.iter().map(|a| (*a).to_owned()).collect()).await;
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let text = std::fs::read_to_string(&output_file).unwrap();
    let loaded = netwatch::cluster::snapshot::parse("snapshot.yaml", &text).unwrap();
    let mut view = ClusterView::new();
    for event in loaded.events {
        view.apply(event);
    }
    view.reindex();
    assert_eq!(
        view.owners(ip("10.244.1.10")),
        &[IpOwner::Pod(ObjectKey::namespaced("shop", "web"))]
    );
    assert_eq!(view.policies.len(), 1);
    assert_eq!(view.services.len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn a_live_recording_carries_the_cluster_view_it_watched() {
    if !crate::runs_as_root("the live recording of a watched cluster") {
        return;
    }
    let server = ApiServer::start(0, shop()).await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = write_kubeconfig(dir.path(), &[("test", server.port)]);
    let recording = dir.path().join("node.pcapng");
    let args = [
        "record",
        "-i",
        "lo",
        "--filter",
        "port 9",
        "--duration",
        "2s",
        "-w",
        recording.to_str().unwrap(),
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
    ];
    let output = run_netwatch(args.iter().map(|a| (*a).to_owned()).collect()).await;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("cluster: synced"), "{stderr}");
    let mut source = netwatch::record::pcapng_reader::PcapngSource::open(&recording).unwrap();
    while !matches!(
        netwatch::capture::PacketSource::next_frame(&mut source),
        netwatch::capture::Next::End
    ) {}
    let mut view = ClusterView::new();
    for timed in source.take_cluster_events() {
        view.apply(timed.event);
    }
    view.reindex();
    assert_eq!(
        view.owners(ip("10.244.1.11")),
        &[IpOwner::Pod(ObjectKey::namespaced("shop", "db"))]
    );
    assert_eq!(view.synced.len(), 6, "every kind was listed before the recording ended");
    server.stop().await;
}
