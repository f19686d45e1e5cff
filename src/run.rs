//! The run loop: the one place where sources, the engine and the outputs are wired together.
//!
//! Effects live here and in `capture`: reading files, writing stdout and stderr. The engine
//! stays pure; replay drives it on packet time, so output is the same on every run.

mod interactive;
mod policy;
mod record;

use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::mpsc;
use std::thread;

use crate::capture::{self, interfaces::Selection};
use crate::capture::{CaptureError, DecodedFrame, FRAME_BATCH, FileSource, Next, PacketSource};
use crate::cluster::snapshot;
use crate::cluster::watch::{self, KubeSettings};
use crate::cluster::{ClusterEvent, Object, ResourceKind};
use crate::config::{ClusterSource, Config, Input, LiveRunConfig, Mode, ReplayConfig, View};
use crate::demo;
use crate::engine::{Engine, SWEEP_INTERVAL};
use crate::record::RecordWriter;
use crate::record::jsonl;
use crate::record::pcapng_reader::{self, PcapngSource};
use crate::snapshot::{FlowRecord, Stats};
use crate::time::Timestamp;

/// How a run failed, which decides the exit code.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Bad usage or bad input: exit 2. The message says what, where, and what to do.
    #[error("{0}")]
    BadInput(String),
    /// Something failed at run time: exit 1.
    #[error("{0}")]
    Runtime(String),
}

impl RunError {
    #[must_use]
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::BadInput(_) => 2,
            Self::Runtime(_) => 1,
        }
    }
}

impl From<CaptureError> for RunError {
    fn from(error: CaptureError) -> Self {
        Self::BadInput(error.to_string())
    }
}

/// Runs a validated configuration to completion.
pub fn run(config: Config) -> Result<(), RunError> {
    match config.command {
        Mode::Live(live) => run_live(&live),
        Mode::Interfaces { selection, cluster } => print_interfaces(&selection, &cluster),
        Mode::Snapshot { output, kube, timeout } => write_snapshot(&output, &kube, timeout),
        Mode::Replay(replay) => run_replay(&replay),
        Mode::Record(config) => record::run(&config),
        Mode::PolicyExplain(explain) => policy::explain(&explain),
        Mode::PolicyAudit(audit) => policy::audit(&audit),
    }
}

/// Live capture on this host into the interactive view.
fn run_live(config: &LiveRunConfig) -> Result<(), RunError> {
    let mut engine = Engine::new(config.limits);
    load_cluster(&mut engine, &config.cluster)?;
    engine.count_once_across_interfaces();
    let cluster_label = match &config.cluster {
        ClusterSource::Snapshot(path) => format!("snapshot {}", path.display()),
        _ if config.kube.is_some() => "connecting".to_owned(),
        _ => "none (--no-kube): no identities, no verdicts".to_owned(),
    };
    interactive::run_live(engine, config, &cluster_label)
}

/// `netwatch snapshot -o FILE`: lists the cluster through its API and writes the view in the
/// format `--cluster` reads, so a live session's identities can be kept with its capture.
fn write_snapshot(
    output: &Path,
    kube: &KubeSettings,
    timeout: std::time::Duration,
) -> Result<(), RunError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| RunError::Runtime(format!("cannot start the event loop: {e}")))?;
    let view = runtime.block_on(async {
        let client = watch::connect(kube).await.map_err(|e| RunError::BadInput(e.to_string()))?;
        let (sender, mut updates) = tokio::sync::mpsc::channel(256);
        let watchers = watch::spawn_watchers(client, sender);
        let mut view = crate::cluster::ClusterView::new();
        let mut status = watch::WatchStatus::new();
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                () = &mut deadline => {
                    watchers.abort();
                    return Err(RunError::Runtime(format!(
                        "the cluster was not listed within {}: {}",
                        humantime::format_duration(timeout),
                        status.summary()
                    )));
                }
                update = updates.recv() => {
                    let Some(update) = update else { break };
                    status.observe(&update);
                    if let watch::WatchUpdate::Event(event) = update {
                        view.apply(event);
                    }
                    if view.synced.len() == ResourceKind::ALL.len() {
                        break;
                    }
                }
            }
        }
        watchers.abort();
        Ok(view)
    })?;
    let yaml = crate::cluster::export::to_snapshot_yaml(&view);
    let written = if output.as_os_str() == "-" {
        io::stdout().write_all(yaml.as_bytes())
    } else {
        std::fs::write(output, &yaml)
    };
    written.map_err(|e| RunError::Runtime(format!("cannot write '{}': {e}", output.display())))?;
    eprintln!(
        "netwatch: wrote {} pods, {} services, {} policies to {}",
        view.pods.len(),
        view.services.len(),
        view.policies.len(),
        output.display()
    );
    Ok(())
}

/// `netwatch interfaces`: every interface, its class, whether it is captured and why, and with a
/// cluster snapshot the pod behind each veth (matched by routed address or peer index).
fn print_interfaces(selection: &Selection, cluster: &ClusterSource) -> Result<(), RunError> {
    let interfaces = capture::interfaces::list(selection)
        .map_err(|e| RunError::Runtime(format!("cannot list network interfaces: {e}")))?;
    let view = load_view(cluster)?;
    let table = capture::interfaces::render_table(&interfaces, |info| {
        info.routed_addresses.iter().find_map(|ip| {
            view.owners(*ip).iter().find_map(|owner| match owner {
                crate::cluster::IpOwner::Pod(key) => Some(key.to_string()),
                _ => None,
            })
        })
    });
    print!("{table}");
    Ok(())
}

/// A replay input, recognised by its first bytes.
enum Opened {
    /// Classic pcap (or anything else libpcap reads), through libpcap.
    Pcap(FileSource),
    /// pcapng, with netwatch's recorded cluster view when it has one.
    Pcapng(Box<PcapngSource>),
    /// Flow records (JSON Lines), as `--headless -o json` or `record --flows` wrote them.
    FlowLines(std::path::PathBuf),
}

fn open_input(input: &Input) -> Result<Opened, RunError> {
    let path = match input {
        Input::Demo => {
            return Ok(Opened::Pcap(FileSource::from_bytes("demo.pcap", demo::CAPTURE)?));
        }
        Input::File(path) => path,
    };
    let mut prefix = [0u8; 4];
    let read = std::fs::File::open(path)
        .and_then(|mut file| io::Read::read(&mut file, &mut prefix))
        .map_err(|e| RunError::BadInput(format!("cannot read '{}': {e}", path.display())))?;
    let prefix = &prefix[..read];
    if pcapng_reader::is_pcapng(prefix) {
        return Ok(Opened::Pcapng(Box::new(PcapngSource::open(path)?)));
    }
    if prefix.first() == Some(&b'{') {
        return Ok(Opened::FlowLines(path.clone()));
    }
    Ok(Opened::Pcap(FileSource::open(path)?))
}

fn run_replay(config: &ReplayConfig) -> Result<(), RunError> {
    match open_input(&config.input)? {
        Opened::Pcap(source) => replay_source(config, source),
        Opened::Pcapng(source) => replay_source(config, *source),
        Opened::FlowLines(path) => replay_flow_lines(config, &path),
    }
}

/// Which recorded cluster changes a replay applies: none when `--cluster` names the view, and
/// no NetworkPolicy changes when `--policies` pins them (a what-if replay).
#[derive(Debug, Clone, Copy)]
pub struct ClusterGate {
    pub recorded: bool,
    pub pinned_policies: bool,
}

impl ClusterGate {
    #[must_use]
    pub fn admit(self, event: &ClusterEvent) -> bool {
        let kind = match event {
            ClusterEvent::Reset(kind, _)
            | ClusterEvent::Delete(kind, _)
            | ClusterEvent::Synced(kind) => *kind,
            ClusterEvent::Upsert(object) => object.kind(),
        };
        self.recorded && !(self.pinned_policies && kind == ResourceKind::NetworkPolicy)
    }
}

fn replay_source<S: PacketSource + Send + 'static>(
    config: &ReplayConfig,
    mut source: S,
) -> Result<(), RunError> {
    let mut engine = Engine::new(config.limits);
    let recorded = source.take_cluster_events();
    let gate = ClusterGate {
        recorded: matches!(config.cluster, ClusterSource::None),
        pinned_policies: config.policies.is_some(),
    };
    let mut cluster_label = match &config.cluster {
        ClusterSource::None if recorded.is_empty() => "none".to_owned(),
        ClusterSource::None => "recorded in the capture".to_owned(),
        ClusterSource::Demo => "snapshot demo-cluster.yaml".to_owned(),
        ClusterSource::Snapshot(path) => format!("snapshot {}", path.display()),
    };
    load_cluster(&mut engine, &config.cluster)?;
    for event in recorded {
        if gate.admit(&event) {
            engine.apply(event);
        }
    }
    if let Some(path) = &config.policies {
        engine.apply(ClusterEvent::Reset(ResourceKind::NetworkPolicy, load_policies(path)?));
        cluster_label.push_str(&format!(", policies from {}", path.display()));
    }
    engine.set_interfaces(source.interfaces());
    let format = match config.view {
        View::Headless(format) => format,
        View::Interactive => {
            let session = interactive::Session {
                source_label: source.interfaces().join(","),
                cluster_label,
                gate,
                live: false,
                kube: None,
                namespace: None,
                record: None,
            };
            return interactive::run(engine, source, &session);
        }
    };
    let stdout = io::stdout();
    let mut writer = RecordWriter::new(BufWriter::with_capacity(1 << 16, stdout.lock()), format);
    let result = replay(source, &mut engine, gate, |record| writer.write(record));
    let flushed = result.and_then(|mut source| {
        for warning in source.take_warnings() {
            eprintln!("netwatch: warning: {warning}");
        }
        writer.flush()
    });
    match flushed {
        // A reader that went away (`| head`) is not a failure.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
        Err(e) => return Err(RunError::Runtime(format!("cannot write output: {e}"))),
        Ok(()) => {}
    }
    print_summary(&engine.stats());
    Ok(())
}

/// Replays flow records: printed again (headless) or shown in the interactive view.
fn replay_flow_lines(config: &ReplayConfig, path: &Path) -> Result<(), RunError> {
    let file = std::fs::File::open(path)
        .map_err(|e| RunError::BadInput(format!("cannot read '{}': {e}", path.display())))?;
    let (records, bad) = jsonl::read(io::BufReader::new(file));
    let origin = path.display().to_string();
    if let Some(warning) = jsonl::summarize(&origin, &bad) {
        eprintln!("netwatch: warning: {warning}");
    }
    if config.policies.is_some() || !matches!(config.cluster, ClusterSource::None) {
        eprintln!(
            "netwatch: warning: flow records carry their verdicts; --cluster and --policies apply to packet captures"
        );
    }
    match config.view {
        View::Interactive => interactive::show_records(records, &origin),
        View::Headless(format) => {
            let stdout = io::stdout();
            let mut writer = RecordWriter::new(BufWriter::new(stdout.lock()), format);
            let written = records
                .iter()
                .try_for_each(|record| writer.write(record))
                .and_then(|()| writer.flush());
            match written {
                Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
                    Err(RunError::Runtime(format!("cannot write output: {e}")))
                }
                _ => {
                    eprintln!(
                        "netwatch: {} flow records read, {} bad lines",
                        records.len(),
                        bad.len()
                    );
                    Ok(())
                }
            }
        }
    }
}

/// NetworkPolicies from a file or a directory of YAML/JSON files, for a what-if replay.
fn load_policies(path: &Path) -> Result<Vec<Object>, RunError> {
    let files: Vec<std::path::PathBuf> = if path.is_dir() {
        let entries = std::fs::read_dir(path)
            .map_err(|e| RunError::BadInput(format!("cannot read '{}': {e}", path.display())))?;
        let mut files: Vec<_> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml" || e == "json"))
            .collect();
        files.sort();
        files
    } else {
        vec![path.to_owned()]
    };
    let mut policies = Vec::new();
    for file in &files {
        let text = read_snapshot(file)?;
        let loaded = snapshot::parse(&file.display().to_string(), &text).map_err(|e| {
            RunError::BadInput(format!(
                "{e}; --policies takes NetworkPolicy YAML (a file or a directory)"
            ))
        })?;
        for event in loaded.events {
            if let ClusterEvent::Reset(ResourceKind::NetworkPolicy, objects) = event {
                policies.extend(objects);
            }
        }
    }
    if policies.is_empty() {
        return Err(RunError::BadInput(format!(
            "no NetworkPolicy found in '{}'; --policies takes NetworkPolicy YAML (a file or a directory of them)",
            path.display()
        )));
    }
    Ok(policies)
}

/// Loads a cluster snapshot into the engine.
fn load_cluster(engine: &mut Engine, source: &ClusterSource) -> Result<(), RunError> {
    let Some(loaded) = load_snapshot(source)? else { return Ok(()) };
    engine.note_cluster_skips(&loaded.skipped);
    for event in loaded.events {
        engine.apply(event);
    }
    Ok(())
}

/// Reads and parses a snapshot; `None` when there is none to read.
fn load_snapshot(source: &ClusterSource) -> Result<Option<snapshot::LoadedSnapshot>, RunError> {
    let (origin, text) = match source {
        ClusterSource::None => return Ok(None),
        ClusterSource::Demo => ("demo-cluster.yaml".to_owned(), demo::CLUSTER.to_owned()),
        ClusterSource::Snapshot(path) => (path.display().to_string(), read_snapshot(path)?),
    };
    let loaded = snapshot::parse(&origin, &text).map_err(|e| {
        RunError::BadInput(format!(
            "{e}; --cluster takes the output of 'kubectl get namespaces,nodes,pods,services,endpointslices,networkpolicies -A -o yaml'"
        ))
    })?;
    Ok(Some(loaded))
}

/// A cluster view from a snapshot, indexed and ready for lookups.
fn load_view(source: &ClusterSource) -> Result<crate::cluster::ClusterView, RunError> {
    let mut view = crate::cluster::ClusterView::new();
    if let Some(loaded) = load_snapshot(source)? {
        for event in loaded.events {
            view.apply(event);
        }
    }
    view.reindex();
    Ok(view)
}

fn read_snapshot(path: &Path) -> Result<String, RunError> {
    std::fs::read_to_string(path).map_err(|e| {
        RunError::BadInput(format!("cannot read cluster snapshot '{}': {e}", path.display()))
    })
}

/// What the reader thread hands the loop, in file order.
pub(crate) enum ReaderItem {
    Frames(Vec<DecodedFrame>),
    /// Cluster changes recorded before the next frame.
    Cluster(Vec<ClusterEvent>),
    /// Live: the capture interfaces' names by index, after one attached.
    Interfaces(Vec<String>),
    /// Live: packets the kernel dropped so far, over all interfaces.
    Drops(u64),
    /// Live: something the user should know (an interface that failed, …).
    Warning(String),
}

/// Replays a source through the engine on packet time, handing each ended flow's record to
/// `emit` as it ends and every remaining flow at the end, oldest first. Reading and decoding run
/// on their own thread, as live capture threads do, so the two cores share the work.
pub fn replay<S: PacketSource + Send + 'static>(
    source: S,
    engine: &mut Engine,
    gate: ClusterGate,
    mut emit: impl FnMut(&FlowRecord) -> io::Result<()>,
) -> io::Result<S> {
    let (sender, items) = mpsc::sync_channel::<ReaderItem>(8);
    let reader = thread::Builder::new()
        .name("netwatch-read".into())
        .spawn(move || read_source(source, |item| sender.send(item).is_ok()))?;
    let mut next_sweep: Option<Timestamp> = None;
    let mut last_ts = Timestamp::default();
    let mut result = Ok(());
    'items: for item in items.iter() {
        let batch = match item {
            ReaderItem::Frames(batch) => batch,
            ReaderItem::Cluster(events) => {
                for event in events.into_iter().filter(|e| gate.admit(e)) {
                    engine.apply(event);
                }
                continue;
            }
            ReaderItem::Interfaces(_) | ReaderItem::Drops(_) | ReaderItem::Warning(_) => continue,
        };
        for DecodedFrame { ts, interface, decoded, .. } in batch {
            if next_sweep.is_none_or(|at| ts >= at) {
                if let Err(e) = engine.advance(ts, &mut emit) {
                    result = Err(e);
                    break 'items;
                }
                next_sweep = Some(ts.saturating_add(SWEEP_INTERVAL));
            }
            last_ts = last_ts.max(ts);
            engine.ingest_decoded(ts, interface, decoded);
        }
    }
    // Dropping the receiver (on error) makes the reader stop at its next send.
    drop(items);
    let source =
        reader.join().map_err(|_| io::Error::other("the capture reader thread panicked"))?;
    result?;
    engine.finish(last_ts, emit)?;
    Ok(source)
}

/// The reader thread's work: frames → decoded summaries in batches, with recorded cluster
/// changes in between, until the source ends or `send` says the loop hung up. Returns the
/// source so its warnings can be shown.
pub(crate) fn read_source<S: PacketSource>(
    mut source: S,
    mut send: impl FnMut(ReaderItem) -> bool,
) -> S {
    let mut batch = Vec::with_capacity(FRAME_BATCH);
    loop {
        match source.next_frame() {
            Next::Packet(frame) => {
                let decoded = DecodedFrame::from_frame(&frame);
                let events = source.take_cluster_events();
                if !events.is_empty() {
                    let frames = std::mem::replace(&mut batch, Vec::with_capacity(FRAME_BATCH));
                    if (!frames.is_empty() && !send(ReaderItem::Frames(frames)))
                        || !send(ReaderItem::Cluster(events))
                    {
                        return source;
                    }
                }
                batch.push(decoded);
                if batch.len() == FRAME_BATCH
                    && !send(ReaderItem::Frames(std::mem::replace(
                        &mut batch,
                        Vec::with_capacity(FRAME_BATCH),
                    )))
                {
                    return source;
                }
            }
            // A file never idles; a live source would be waited on by the interactive loop.
            Next::Idle => {}
            Next::End => break,
        }
    }
    if !batch.is_empty() && !send(ReaderItem::Frames(batch)) {
        return source;
    }
    let events = source.take_cluster_events();
    if !events.is_empty() {
        send(ReaderItem::Cluster(events));
    }
    source
}

fn print_summary(stats: &Stats) {
    let mut stderr = io::stderr().lock();
    let _ = writeln!(stderr, "netwatch: {}", stats.summary_line());
    if !stats.cluster_skipped.is_empty() {
        let kinds: Vec<String> =
            stats.cluster_skipped.iter().map(|(k, n)| format!("{k} {n}")).collect();
        let _ = writeln!(
            stderr,
            "netwatch: cluster snapshot: skipped kinds not used: {}",
            kinds.join(", ")
        );
    }
    for diagnostic in &stats.policy_diagnostics {
        let _ = writeln!(stderr, "netwatch: warning: NetworkPolicy {diagnostic}");
    }
}

/// The entry both binaries share: parse, validate, run, and map failures to exit codes.
pub fn main_with_args(args: impl IntoIterator<Item = std::ffi::OsString>) -> i32 {
    use clap::Parser;
    let cli = match crate::cli::Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() { 2 } else { 0 };
        }
    };
    let config = match Config::try_from(cli) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("netwatch: error: {error}");
            return 2;
        }
    };
    if let Err(error) = init_logging(config.log_file.as_deref()) {
        eprintln!("netwatch: error: {error}");
        return 2;
    }
    match run(config) {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("netwatch: error: {error}");
            error.exit_code()
        }
    }
}

/// Logs go to `--log-file` when given; else to stderr only when RUST_LOG asks for them.
fn init_logging(log_file: Option<&Path>) -> Result<(), String> {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    if let Some(path) = log_file {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("cannot open log file '{}': {e}", path.display()))?;
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .with_writer(file)
            .try_init();
    } else if std::env::var_os("RUST_LOG").is_some() {
        let _ =
            tracing_subscriber::fmt().with_env_filter(filter).with_writer(io::stderr).try_init();
    }
    Ok(())
}
