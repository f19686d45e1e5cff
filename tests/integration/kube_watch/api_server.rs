//! A Kubernetes API server small enough to read, inside the test process: list and watch of the
//! six collections netwatch uses, over HTTP/1.1 or HTTPS on 127.0.0.1.
//!
//! It speaks what kube-rs's watcher sends and expects: `GET <collection>` answers a `…List` with
//! `metadata.resourceVersion`; `GET <collection>?watch=true&resourceVersion=N` answers a chunked
//! stream of `{"type":…,"object":…}` lines for every change after N, a BOOKMARK first when
//! `allowWatchBookmarks=true`, and an ERROR event carrying a 410 `Status` when N is older than the
//! compacted history. A forbidden collection answers 403 with the API server's `Status` body.
//! Every response closes its connection, so no keep-alive bookkeeping is needed.
//!
//! [`Security`] makes it check what a real API server checks: TLS (rustls; with a client
//! certificate verifier, a client without a certificate from that CA fails the handshake) and a
//! bearer token (anything else is answered 401 with a `Status`, as kube-apiserver does).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// One of the six collections: its path, object kind and apiVersion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Collection {
    Namespaces,
    Pods,
    Services,
    EndpointSlices,
    Nodes,
    NetworkPolicies,
}

impl Collection {
    pub const ALL: [Self; 6] = [
        Self::Namespaces,
        Self::Pods,
        Self::Services,
        Self::EndpointSlices,
        Self::Nodes,
        Self::NetworkPolicies,
    ];

    fn path(self) -> &'static str {
        match self {
            Self::Namespaces => "/api/v1/namespaces",
            Self::Pods => "/api/v1/pods",
            Self::Services => "/api/v1/services",
            Self::EndpointSlices => "/apis/discovery.k8s.io/v1/endpointslices",
            Self::Nodes => "/api/v1/nodes",
            Self::NetworkPolicies => "/apis/networking.k8s.io/v1/networkpolicies",
        }
    }

    fn kind(self) -> &'static str {
        match self {
            Self::Namespaces => "Namespace",
            Self::Pods => "Pod",
            Self::Services => "Service",
            Self::EndpointSlices => "EndpointSlice",
            Self::Nodes => "Node",
            Self::NetworkPolicies => "NetworkPolicy",
        }
    }

    fn api_version(self) -> &'static str {
        match self {
            Self::EndpointSlices => "discovery.k8s.io/v1",
            Self::NetworkPolicies => "networking.k8s.io/v1",
            _ => "v1",
        }
    }

    fn resource(self) -> &'static str {
        self.path().rsplit('/').next().unwrap_or("")
    }

    fn from_path(path: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.path() == path)
    }
}

/// What the server holds: the objects, the change history watches replay, and the faults the
/// test asks for.
#[derive(Debug, Default)]
pub struct ClusterState {
    resource_version: u64,
    objects: BTreeMap<Collection, BTreeMap<String, Value>>,
    history: Vec<(u64, Collection, &'static str, Value)>,
    /// A watch from a resourceVersion below this gets 410 Gone: etcd compacted the changes after it.
    compacted_below: u64,
    forbidden: BTreeSet<Collection>,
}

impl ClusterState {
    /// Adds or replaces an object (ADDED or MODIFIED for running watches).
    pub fn put(&mut self, collection: Collection, mut object: Value) {
        self.resource_version += 1;
        let rv = self.resource_version;
        object["kind"] = json!(collection.kind());
        object["apiVersion"] = json!(collection.api_version());
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        let key = object_key(&object);
        let objects = self.objects.entry(collection).or_default();
        let change = if objects.contains_key(&key) { "MODIFIED" } else { "ADDED" };
        objects.insert(key, object.clone());
        self.history.push((rv, collection, change, object));
    }

    /// Deletes an object (DELETED for running watches).
    pub fn delete(&mut self, collection: Collection, key: &str) {
        let Some(mut object) = self.objects.entry(collection).or_default().remove(key) else {
            return;
        };
        self.resource_version += 1;
        let rv = self.resource_version;
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.history.push((rv, collection, "DELETED", object));
    }

    /// Changes the objects without telling any watch, as if the events fell out of a compacted
    /// history: only a relist can see the result.
    pub fn delete_silently(&mut self, collection: Collection, key: &str) {
        self.objects.entry(collection).or_default().remove(key);
        self.resource_version += 1;
        self.compact();
    }

    /// Forgets the history: every watch that resumes from before now gets 410 Gone.
    pub fn compact(&mut self) {
        self.history.clear();
        self.compacted_below = self.resource_version;
    }

    pub fn forbid(&mut self, collection: Collection) {
        self.forbidden.insert(collection);
    }
}

fn object_key(object: &Value) -> String {
    let name = object["metadata"]["name"].as_str().unwrap_or("");
    match object["metadata"]["namespace"].as_str() {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_owned(),
    }
}

/// What a client must bring. The default: nothing (plain HTTP, no credentials).
#[derive(Clone, Default)]
pub struct Security {
    /// Serve HTTPS with this configuration (and its client certificate verifier, if any).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Answer 401 unless the request carries `Authorization: Bearer <token>`.
    pub token: Option<String>,
}

/// A running server. Dropping it stops it.
pub struct ApiServer {
    pub port: u16,
    state: Arc<Mutex<ClusterState>>,
    /// Why TLS handshakes failed, as the server saw it.
    tls_failures: Arc<Mutex<Vec<String>>>,
    /// Bumped on every change so open watches look at the history again.
    changed: watch::Sender<u64>,
    /// Bumped to end every open watch stream (a dropped connection).
    cut: watch::Sender<u64>,
    accept: JoinHandle<()>,
}

impl ApiServer {
    /// Starts on `port` (0: any free port) with `state`, over plain HTTP, open to anyone.
    pub async fn start(port: u16, state: ClusterState) -> Self {
        Self::start_with(port, state, Security::default()).await
    }

    /// Starts on `port` (0: any free port) with `state`, checking `security`.
    pub async fn start_with(port: u16, state: ClusterState, security: Security) -> Self {
        let state = Arc::new(Mutex::new(state));
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (changed, _) = watch::channel(0);
        let (cut, _) = watch::channel(0);
        let tls_failures = Arc::new(Mutex::new(Vec::new()));
        let acceptor = security.tls.map(tokio_rustls::TlsAcceptor::from);
        let token = security.token;
        let accept = tokio::spawn({
            let state = state.clone();
            let changed = changed.clone();
            let cut = cut.clone();
            let tls_failures = tls_failures.clone();
            async move {
                let mut connections = tokio::task::JoinSet::new();
                while let Ok((stream, _)) = listener.accept().await {
                    let state = state.clone();
                    let changed = changed.subscribe();
                    let cut = cut.subscribe();
                    let acceptor = acceptor.clone();
                    let token = token.clone();
                    let tls_failures = tls_failures.clone();
                    connections.spawn(async move {
                        let Some(acceptor) = acceptor else {
                            let _ = serve(stream, token, state, changed, cut).await;
                            return;
                        };
                        match acceptor.accept(stream).await {
                            Ok(stream) => {
                                let _ = serve(stream, token, state, changed, cut).await;
                            }
                            Err(error) => tls_failures.lock().unwrap().push(error.to_string()),
                        }
                    });
                }
            }
        });
        Self { port, state, tls_failures, changed, cut, accept }
    }

    /// Why TLS handshakes with this server failed, so far.
    pub fn tls_failures(&self) -> Vec<String> {
        self.tls_failures.lock().unwrap().clone()
    }

    /// Changes the cluster and wakes the open watches.
    pub fn change(&self, edit: impl FnOnce(&mut ClusterState)) {
        edit(&mut self.state.lock().unwrap());
        self.changed.send_modify(|n| *n += 1);
    }

    /// Ends every open watch stream, as a load balancer dropping idle connections would.
    pub fn cut_watches(&self) {
        self.cut.send_modify(|n| *n += 1);
    }

    /// Stops the server: the listener closes and every connection is dropped. Returns the
    /// state so a restarted server can go on from it.
    pub async fn stop(mut self) -> (u16, ClusterState) {
        let port = self.port;
        let accept = std::mem::replace(&mut self.accept, tokio::spawn(async {}));
        accept.abort();
        let _ = accept.await;
        let state = std::mem::take(&mut *self.state.lock().unwrap());
        (port, state)
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    token: Option<String>,
    state: Arc<Mutex<ClusterState>>,
    changed: watch::Receiver<u64>,
    cut: watch::Receiver<u64>,
) -> std::io::Result<()> {
    let mut stream = BufReader::new(stream);
    let mut request_line = String::new();
    stream.read_line(&mut request_line).await?;
    let mut authorization = None;
    loop {
        let mut header = String::new();
        if stream.read_line(&mut header).await? == 0 || header == "\r\n" {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("authorization")
        {
            authorization = Some(value.trim().to_owned());
        }
    }
    let target = request_line.split_whitespace().nth(1).unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let query: BTreeMap<&str, &str> =
        query.split('&').filter_map(|pair| pair.split_once('=')).collect();
    let mut stream = stream.into_inner();
    if let Some(token) = token
        && authorization.as_deref() != Some(format!("Bearer {token}").as_str())
    {
        let body = status(401, "Unauthorized", "Unauthorized");
        return respond(&mut stream, "401 Unauthorized", &body).await;
    }
    let Some(collection) = Collection::from_path(path) else {
        let body = status(404, "NotFound", &format!("the server could not find '{path}'"));
        return respond(&mut stream, "404 Not Found", &body).await;
    };
    let watching = query.get("watch").is_some_and(|w| *w == "true" || *w == "1");
    let verb = if watching { "watch" } else { "list" };
    if state.lock().unwrap().forbidden.contains(&collection) {
        let message = format!(
            "{} is forbidden: User \"system:serviceaccount:netwatch:netwatch\" cannot {verb} \
             resource \"{}\" at the cluster scope",
            collection.resource(),
            collection.resource()
        );
        return respond(&mut stream, "403 Forbidden", &status(403, "Forbidden", &message)).await;
    }
    if !watching {
        let body = {
            let state = state.lock().unwrap();
            let items: Vec<Value> = state
                .objects
                .get(&collection)
                .map(|objects| objects.values().cloned().collect())
                .unwrap_or_default();
            json!({
                "kind": format!("{}List", collection.kind()),
                "apiVersion": collection.api_version(),
                "metadata": {"resourceVersion": state.resource_version.to_string()},
                "items": items,
            })
        };
        return respond(&mut stream, "200 OK", &body).await;
    }
    let from: u64 = query.get("resourceVersion").and_then(|rv| rv.parse().ok()).unwrap_or(0);
    let bookmarks = query.get("allowWatchBookmarks").is_some_and(|b| *b == "true");
    watch_stream(&mut stream, collection, from, bookmarks, state, changed, cut).await
}

async fn watch_stream<S: AsyncWrite + Unpin>(
    stream: &mut S,
    collection: Collection,
    from: u64,
    bookmarks: bool,
    state: Arc<Mutex<ClusterState>>,
    mut changed: watch::Receiver<u64>,
    mut cut: watch::Receiver<u64>,
) -> std::io::Result<()> {
    stream
        .write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
              Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        )
        .await?;
    let (expired, current) = {
        let state = state.lock().unwrap();
        (from < state.compacted_below, state.resource_version)
    };
    if expired {
        let gone = status(410, "Expired", &format!("too old resource version: {from}"));
        chunk(stream, &json!({"type": "ERROR", "object": gone})).await?;
        return stream.write_all(b"0\r\n\r\n").await;
    }
    if bookmarks {
        let bookmark = json!({"type": "BOOKMARK", "object": {
            "kind": collection.kind(), "apiVersion": collection.api_version(),
            "metadata": {"resourceVersion": current.max(from).to_string()}}});
        chunk(stream, &bookmark).await?;
    }
    let mut cursor = from;
    loop {
        changed.borrow_and_update();
        let pending: Vec<(u64, Value)> = {
            let state = state.lock().unwrap();
            state
                .history
                .iter()
                .filter(|(rv, c, _, _)| *rv > cursor && *c == collection)
                .map(|(rv, _, change, object)| (*rv, json!({"type": change, "object": object})))
                .collect()
        };
        for (rv, event) in pending {
            chunk(stream, &event).await?;
            cursor = rv;
        }
        tokio::select! {
            result = changed.changed() => if result.is_err() { break },
            _ = cut.changed() => break,
        }
    }
    stream.write_all(b"0\r\n\r\n").await
}

async fn chunk<S: AsyncWrite + Unpin>(stream: &mut S, value: &Value) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(value).unwrap();
    line.push(b'\n');
    stream.write_all(format!("{:x}\r\n", line.len()).as_bytes()).await?;
    stream.write_all(&line).await?;
    stream.write_all(b"\r\n").await?;
    stream.flush().await
}

async fn respond<S: AsyncWrite + Unpin>(
    stream: &mut S,
    status_line: &str,
    body: &Value,
) -> std::io::Result<()> {
    let body = serde_json::to_vec(body).unwrap();
    let head = format!(
        "HTTP/1.1 {status_line}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&body).await?;
    stream.shutdown().await
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}
