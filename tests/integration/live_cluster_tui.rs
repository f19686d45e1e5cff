//! The whole live path at once: `netwatch -i lo --kubeconfig FILE` in a real terminal (tmux),
//! capturing TCP the test makes on loopback between two "pods" (127.0.0.11 and 127.0.0.12),
//! named and judged by the cluster the in-test API server serves. The cluster changes under it:
//! a deny-all-egress policy arrives, then the destination pod is deleted and its IP handed to a
//! new pod; the screen must follow each change. Needs root, as CI runs; loopback only.
//!
//! Each phase talks to its own port on the destination, so a row's `TCP/<port>` says which phase
//! made it: a row can then only pass for the flow the phase created.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use crate::kube_watch::api_server::{ApiServer, ClusterState, Collection};
use crate::kube_watch::{namespace, node, pod, write_kubeconfig};
use crate::terminal::Tmux;

const WEB: &str = "127.0.0.11";
const DB: &str = "127.0.0.12";
/// The issue allows 2 s for a cluster change to show; a loaded CI machine gets more, bounded.
const CHANGE_PATIENCE: Duration = Duration::from_secs(10);

#[test]
fn the_live_view_names_pods_and_follows_policy_and_ip_reuse_from_the_api() {
    if !crate::runs_as_root("the live cluster view test") {
        return;
    }
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let api = ApiThread::start(shop());
    let kubeconfig = write_kubeconfig(dir.path(), &[("test", api.server().port)]);
    let mut traffic = Traffic::start(4);
    let [before_port, held_port, after_policy_port, after_reuse_port] =
        <[u16; 4]>::try_from(traffic.ports.clone()).unwrap();
    let netwatch = Netwatch::start(dir.path(), &kubeconfig, &format!("tcp and host {DB}"));

    // 1. Synced, then flows between the two pods carry their names; nothing is denied yet.
    netwatch.wait("the header to read synced", Duration::from_secs(20), |screen| {
        screen.contains("cluster synced")
    });
    for _ in 0..3 {
        traffic.converse(before_port);
        std::thread::sleep(Duration::from_millis(300));
    }
    traffic.hold(held_port);
    // Closed on screen: the cluster changes below must come after netwatch saw them close.
    let screen = netwatch.wait("the pods' flows", Duration::from_secs(10), |screen| {
        let before = rows(screen, before_port);
        before.len() == 3
            && before.iter().all(|row| state(row) == "closed")
            && rows(screen, held_port).iter().map(|row| state(row)).eq(["established"])
    });
    for row in rows(&screen, before_port).iter().chain(&rows(&screen, held_port)) {
        assert!(row.contains("shop/web") && row.contains("shop/db"), "{row}\n{screen}");
        assert_eq!(verdict(row), "open", "no policy yet: {row}\n{screen}");
    }
    assert!(screen.contains("violations 0"), "{screen}");

    // 2. Deny all egress from web. The held connection is not touched, yet its verdict must
    // change: it was answered, so it is a leak (loopback enforces nothing).
    let changed = Instant::now();
    api.server().change(|s| s.put(Collection::NetworkPolicies, deny_egress("shop", "web")));
    let screen = netwatch.wait("the held flow to turn into a leak", CHANGE_PATIENCE, |screen| {
        rows(screen, held_port).iter().any(|row| verdict(row) == "LEAK")
    });
    eprintln!("the policy showed on the held flow after {:?}", changed.elapsed());
    assert!(header_count(&screen, "violations") >= 1, "{screen}");
    // Flows that closed before the policy keep the verdict they ended with.
    assert!(rows(&screen, before_port).iter().all(|row| verdict(row) == "open"), "{screen}");
    // A new connection is judged by the new policy.
    let screen = netwatch.converse_until(
        &mut traffic,
        after_policy_port,
        "a new flow judged by the policy",
        |rows| rows.iter().any(|row| verdict(row) == "LEAK" && row.contains("shop/db")),
    );
    assert!(rows(&screen, after_policy_port).iter().all(|row| verdict(row) == "LEAK"), "{screen}");
    netwatch.wait("the new flows to close", Duration::from_secs(10), |screen| {
        rows(screen, after_policy_port).iter().all(|row| state(row) == "closed")
    });

    // 3. The db pod goes; a cache pod gets its IP. A new flow to that IP is the cache's, and so
    // is the open one; the conversations that closed while db had the IP stay db's.
    api.server().change(|s| {
        s.delete(Collection::Pods, "shop/db");
        s.put(Collection::Pods, labelled_pod("cache", DB));
    });
    let screen = netwatch.converse_until(
        &mut traffic,
        after_reuse_port,
        "a new flow to the reused IP named by its new pod",
        |rows| rows.iter().any(|row| row.contains("shop/web") && row.contains("shop/cache")),
    );
    let reused = rows(&screen, after_reuse_port);
    assert!(reused.iter().all(|row| !row.contains("shop/db")), "the old pod's name: {screen}");
    assert!(reused.iter().all(|row| verdict(row) == "LEAK"), "web's egress is still denied");
    let held = rows(&screen, held_port);
    assert!(held.len() == 1 && held[0].contains("shop/cache"), "the open flow: {screen}");
    let closed_before = [rows(&screen, before_port), rows(&screen, after_policy_port)].concat();
    assert!(closed_before.len() > 3, "three before the policy, one or more after: {screen}");
    assert!(closed_before.iter().all(|row| row.contains("shop/db")), "{screen}");

    // 4. q quits cleanly.
    netwatch.quit_cleanly();
    assert!(started.elapsed() < Duration::from_secs(60), "took {:?}", started.elapsed());
}

/// Namespace shop with two pods on loopback addresses, a node, no policies.
fn shop() -> ClusterState {
    let mut state = ClusterState::default();
    state.put(Collection::Namespaces, namespace("shop"));
    state.put(Collection::Pods, labelled_pod("web", WEB));
    state.put(Collection::Pods, labelled_pod("db", DB));
    state.put(Collection::Nodes, node("n1", "192.168.1.10"));
    state
}

fn labelled_pod(name: &str, ip: &str) -> Value {
    pod("shop", name, name, ip)
}

/// Selects `app` in `ns` for egress and allows nothing: deny all egress.
fn deny_egress(ns: &str, app: &str) -> Value {
    json!({
        "metadata": {"name": format!("deny-egress-{app}"), "namespace": ns},
        "spec": {"podSelector": {"matchLabels": {"app": app}}, "policyTypes": ["Egress"]}
    })
}

/// The screen's flow rows to `port` on the destination.
fn rows(screen: &str, port: u16) -> Vec<String> {
    let proto = format!("TCP/{port}");
    screen
        .lines()
        .filter(|line| line.split_whitespace().any(|word| word == proto))
        .map(str::to_owned)
        .collect()
}

/// A row's verdict cell: its first word.
fn verdict(row: &str) -> &str {
    row.split_whitespace().next().unwrap_or("")
}

/// A row's TCP state cell (or "ended"): its last word.
fn state(row: &str) -> &str {
    row.split_whitespace().last().unwrap_or("")
}

/// The number after `label` in the header, e.g. `violations 2`.
fn header_count(screen: &str, label: &str) -> u64 {
    let mut words = screen.split_whitespace().skip_while(|word| *word != label);
    words.nth(1).and_then(|n| n.parse().ok()).unwrap_or(0)
}

/// The API server on a runtime of its own thread: the test's blocking waits must not starve the
/// watches netwatch holds open. Dropping it stops the runtime and joins the thread.
struct ApiThread {
    server: Option<ApiServer>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ApiThread {
    fn start(state: ClusterState) -> Self {
        let (started, server) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime =
                tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                started.send(ApiServer::start(0, state).await).unwrap();
                let _ = stopped.await;
            });
        });
        let server = server.recv_timeout(Duration::from_secs(10)).unwrap();
        Self { server: Some(server), stop: Some(stop), thread: Some(thread) }
    }

    fn server(&self) -> &ApiServer {
        self.server.as_ref().unwrap()
    }
}

impl Drop for ApiThread {
    fn drop(&mut self) {
        drop(self.server.take());
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Listeners on the destination pod's address, one per port, and clients bound to the source
/// pod's address, all on a runtime driven only while the test talks. Dropping it closes every
/// socket.
struct Traffic {
    runtime: tokio::runtime::Runtime,
    ports: Vec<u16>,
    held: Vec<TcpStream>,
}

impl Traffic {
    fn start(listeners: usize) -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let ports = runtime.block_on(async {
            let mut ports = Vec::new();
            for _ in 0..listeners {
                let listener = TcpListener::bind((DB, 0)).await.unwrap();
                ports.push(listener.local_addr().unwrap().port());
                tokio::spawn(answer(listener));
            }
            ports
        });
        Self { runtime, ports, held: Vec::new() }
    }

    /// One short conversation: hello, world, close.
    fn converse(&mut self, port: u16) {
        let stream = self.runtime.block_on(talk(port));
        self.runtime.block_on(close(stream));
    }

    /// A conversation left open: its flow stays established.
    fn hold(&mut self, port: u16) {
        let stream = self.runtime.block_on(talk(port));
        self.held.push(stream);
    }
}

async fn answer(listener: TcpListener) {
    while let Ok((mut stream, _)) = listener.accept().await {
        tokio::spawn(async move {
            let mut hello = [0u8; 5];
            if stream.read_exact(&mut hello).await.is_ok() {
                let _ = stream.write_all(b"world").await;
                // Until the client closes: a held conversation stays open on both sides.
                let _ = stream.read(&mut [0u8; 1]).await;
            }
        });
    }
}

async fn talk(port: u16) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(WEB.parse().unwrap(), 0)).unwrap();
    let conversation = async {
        let mut stream = socket.connect(SocketAddr::new(DB.parse().unwrap(), port)).await?;
        stream.write_all(b"hello").await?;
        stream.read_exact(&mut [0u8; 5]).await?;
        Ok::<_, std::io::Error>(stream)
    };
    tokio::time::timeout(Duration::from_secs(5), conversation)
        .await
        .expect("the loopback conversation finishes")
        .unwrap()
}

/// Closes and waits for the server's close, so the flow is complete (closed) on the wire.
async fn close(mut stream: TcpStream) {
    stream.shutdown().await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut [0u8; 1])).await;
}

/// netwatch live in a tmux pane of its own. Dropping it ends netwatch by its PID if it still
/// runs, then the tmux server; on a failure it prints netwatch's stderr and log.
struct Netwatch {
    tmux: Tmux,
    pid: u32,
    stderr: PathBuf,
    log: PathBuf,
}

impl Netwatch {
    fn start(dir: &Path, kubeconfig: &Path, filter: &str) -> Self {
        let stderr = dir.join("stderr");
        let log = dir.join("netwatch.log");
        // The shell reports the exit status: tmux itself may leave an exited pane unreaped.
        let command = format!(
            "{} -i lo --kubeconfig {} --filter '{filter}' --log-file {} 2>{}; \
             echo NETWATCH-EXITED $?; sleep 30",
            env!("CARGO_BIN_EXE_netwatch"),
            kubeconfig.display(),
            log.display(),
            stderr.display()
        );
        let tmux = Tmux { socket: format!("netwatch-cluster-tui-{}", std::process::id()) };
        let mut args = vec!["new-session", "-d", "-s", "main", "-x", "160", "-y", "50"];
        args.extend(["-e", "RUST_LOG=info,kube=debug", &command]);
        tmux.run(&args);
        let shell = tmux.run(&["display-message", "-p", "-t", "main", "#{pane_pid}"]);
        let shell: u32 = shell.trim().parse().unwrap_or_else(|_| panic!("no pane PID: {shell:?}"));
        let deadline = Instant::now() + Duration::from_secs(10);
        let pid = loop {
            if let Some(pid) = netwatch_child_of(shell) {
                break pid;
            }
            assert!(Instant::now() < deadline, "netwatch did not start:\n{}", tmux.screen());
            std::thread::sleep(Duration::from_millis(20));
        };
        Self { tmux, pid, stderr, log }
    }

    /// Waits (bounded) until the screen satisfies `done`; returns that screen.
    fn wait(&self, what: &str, patience: Duration, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + patience;
        loop {
            let screen = self.tmux.screen();
            if done(&screen) {
                return screen;
            }
            assert!(Instant::now() < deadline, "waited {patience:?} for {what}:\n{screen}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Makes a short conversation to `port` every second until the rows to `port` satisfy
    /// `done`, within [`CHANGE_PATIENCE`]: the watch event may land just after a conversation.
    fn converse_until(
        &self,
        traffic: &mut Traffic,
        port: u16,
        what: &str,
        done: impl Fn(&[String]) -> bool,
    ) -> String {
        let deadline = Instant::now() + CHANGE_PATIENCE;
        let mut last: Option<Instant> = None;
        loop {
            if last.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
                traffic.converse(port);
                last = Some(Instant::now());
            }
            let screen = self.tmux.screen();
            if done(&rows(&screen, port)) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "waited {CHANGE_PATIENCE:?} for {what} (TCP/{port}):\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn quit_cleanly(&self) {
        self.tmux.keys(&["q"]);
        let screen = self.wait("netwatch to exit", Duration::from_secs(10), |screen| {
            screen.contains("NETWATCH-EXITED")
        });
        let stderr = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        assert!(screen.contains("NETWATCH-EXITED 0"), "{screen}\n{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(!screen.contains("1 Flows"), "the alternate screen was left:\n{screen}");
    }

    fn running(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .is_ok_and(|stat| stat.contains("(netwatch)") && !stat.contains(") Z "))
    }
}

/// The process named netwatch whose parent is `parent`, from /proc.
fn netwatch_child_of(parent: u32) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
        // "pid (comm) state ppid …": the name may hold spaces, so split after its ')'.
        let (name, rest) = stat.rsplit_once(')')?;
        let ppid: u32 = rest.split_whitespace().nth(1)?.parse().ok()?;
        (name.ends_with("(netwatch") && ppid == parent).then_some(pid)
    })
}

impl Drop for Netwatch {
    fn drop(&mut self) {
        if self.running() {
            let pid = self.pid.to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            let deadline = Instant::now() + Duration::from_secs(3);
            while self.running() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if self.running() {
                let _ = Command::new("kill").args(["-KILL", &pid]).status();
            }
        }
        if std::thread::panicking() {
            let mut err = std::io::stderr();
            for file in [&self.stderr, &self.log] {
                let text = std::fs::read_to_string(file).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                let _ = writeln!(err, "--- {} (last lines)", file.display());
                for line in tail.iter().rev() {
                    let _ = writeln!(err, "{line}");
                }
            }
        }
    }
}
