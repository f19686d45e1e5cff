//! Replay: a capture, a recording or flow records through the engine, headless or into the
//! interactive view. Recognises the input by its first bytes, applies a recording's cluster
//! changes as it reaches them (unless `--cluster` or `--policies` pin the view), and reads on
//! its own thread, as live capture does.

use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::mpsc;
use std::thread;

use super::{RunError, interactive, load_cluster, read_snapshot};
use crate::capture::{DecodedFrame, FileSource, PacketSource};
use crate::cluster::snapshot;
use crate::cluster::{ClusterEvent, Object, ResourceKind};
use crate::config::{ClusterSource, Input, ReplayConfig, View};
use crate::demo;
use crate::engine::Engine;
use crate::record::RecordWriter;
use crate::record::jsonl;
use crate::record::pcapng_reader::{self, PcapngSource};
use crate::snapshot::{FlowRecord, Stats};
use crate::time::Timestamp;

mod reader;

use reader::Reader;
pub(crate) use reader::{ReaderFailed, ReaderItem, read_source};

/// Flow records handed to the output thread at a time.
const RECORD_BATCH: usize = 256;
/// Frames per batch from a headless replay's reader to its engine.
const REPLAY_BATCH: usize = 4096;

/// A replay input, recognised by its first bytes.
pub(super) enum Opened {
    /// Classic pcap (or anything else libpcap reads), through libpcap.
    Pcap(FileSource),
    /// pcapng, with netwatch's recorded cluster view when it has one.
    Pcapng(Box<PcapngSource>),
    /// Flow records (JSON Lines), as `--headless -o json` or `record --flows` wrote them.
    FlowLines(std::path::PathBuf),
}

pub(super) fn open_input(input: &Input) -> Result<Opened, RunError> {
    let path = match input {
        Input::Demo => {
            return Ok(Opened::Pcap(FileSource::from_bytes("demo.pcap", demo::CAPTURE)?));
        }
        Input::File(path) => path,
    };
    // The input is opened twice (its first bytes say which reader takes it): a pipe would lose
    // them to the first open.
    let kind = std::fs::metadata(path)
        .map_err(|e| RunError::BadInput(format!("cannot read '{}': {e}", path.display())))?;
    if !kind.is_file() {
        return Err(RunError::BadInput(format!(
            "'{}' is not a regular file: give a saved capture (for a stream, save it first \
             with `tcpdump -w FILE`, or capture live with `netwatch -i IFACE`)",
            path.display()
        )));
    }
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

pub(super) fn run_replay(config: &ReplayConfig) -> Result<(), RunError> {
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
    let recorded = source.take_cluster_events();
    let interfaces = source.interfaces();
    let more_than_once = source.sees_packets_more_than_once();
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
    if let Some(path) = &config.policies {
        cluster_label.push_str(&format!(", policies from {}", path.display()));
    }
    let format = match config.view {
        View::Headless(format) => format,
        View::Interactive => {
            let session = interactive::Session {
                source_label: interfaces.join(","),
                cluster_label,
                gate,
                live: false,
                kube: None,
                namespace: None,
                record: None,
                frame_pool: None,
            };
            let engine = replay_engine(config, recorded, gate, interfaces, more_than_once)?;
            return interactive::run(engine, source, &session);
        }
    };
    // Reading starts first: the engine's making (its tables' first memory, a snapshot to
    // parse) would otherwise hold back the reader, which a replay waits on as much as on it.
    let reader = Reader::spawn(source)
        .map_err(|e| RunError::Runtime(format!("cannot start the reader: {e}")))?;
    let mut engine = replay_engine(config, recorded, gate, interfaces, more_than_once)?;
    // Records become text on a thread of their own: serialising them is a large part of the
    // engine thread's work, and that thread is the one a replay waits on.
    // Room for bursts (a sweep ends thousands of flows at once) so neither side waits on the
    // other: about 8k records.
    let (records, batches) = mpsc::sync_channel::<Vec<FlowRecord>>(32);
    // Written batches come back, as frame batches do to the reader: a new one per batch made
    // the allocator fault in fresh pages. They come back full: the records are dropped where
    // they were made, so their strings are freed to the engine's own heap, and their shared
    // verdict's count is not passed between the threads' caches at every record.
    let (written_back, written) = mpsc::channel::<Vec<FlowRecord>>();
    let writer = thread::Builder::new().name("netwatch-write".into()).spawn(move || {
        let stdout = io::stdout();
        let mut writer =
            RecordWriter::new(BufWriter::with_capacity(1 << 16, stdout.lock()), format);
        for batch in batches {
            for record in &batch {
                writer.write(record)?;
            }
            // The engine may have finished and gone: then the batch is simply dropped.
            let _ = written_back.send(batch);
        }
        writer.flush()
    });
    let writer =
        writer.map_err(|e| RunError::Runtime(format!("cannot start the output writer: {e}")))?;
    let mut pending = Vec::with_capacity(RECORD_BATCH);
    let hung_up = || io::Error::other("the output writer stopped");
    let result = replay_from(reader, &mut engine, gate, |record| {
        pending.push(record);
        if pending.len() >= RECORD_BATCH {
            let empty = match written.try_recv() {
                Ok(mut batch) => {
                    batch.clear();
                    batch
                }
                Err(_) => Vec::with_capacity(RECORD_BATCH),
            };
            let full = std::mem::replace(&mut pending, empty);
            records.send(full).map_err(|_| hung_up())?;
        }
        Ok(())
    })
    .and_then(|source| {
        records.send(pending).map_err(|_| hung_up())?;
        Ok(source)
    });
    drop(records);
    // The engine's memory is freed while the writer still encodes the last records (the reader
    // is done: a core is free), not after it.
    let stats = engine.stats();
    drop(engine);
    let written =
        writer.join().unwrap_or_else(|_| Err(io::Error::other("the output writer panicked")));
    // The writer's own error says why it stopped (`| head` closing the pipe, a full disk).
    let flushed = written.and(result).map(|mut source| {
        for warning in source.take_warnings() {
            eprintln!("netwatch: warning: {warning}");
        }
    });
    match flushed {
        Err(e) if e.get_ref().is_some_and(|inner| inner.is::<ReaderFailed>()) => {
            return Err(RunError::Runtime(e.to_string()));
        }
        Err(e) => return Err(RunError::output(&e)),
        Ok(()) => {}
    }
    print_summary(&stats);
    Ok(())
}

/// The engine of a replay: the cluster (`--cluster`, or the view recorded in the capture), the
/// policies of a what-if replay, and the capture's interfaces.
fn replay_engine(
    config: &ReplayConfig,
    recorded: Vec<ClusterEvent>,
    gate: ClusterGate,
    interfaces: Vec<String>,
    more_than_once: bool,
) -> Result<Engine, RunError> {
    let mut engine = Engine::new(config.limits);
    load_cluster(&mut engine, &config.cluster)?;
    for event in recorded {
        if gate.admit(&event) {
            engine.apply(event);
        }
    }
    if let Some(path) = &config.policies {
        engine.apply(ClusterEvent::Reset(ResourceKind::NetworkPolicy, load_policies(path)?));
        // The user's policies are the whole list: complete, as a watcher's after its list.
        engine.apply(ClusterEvent::Synced(ResourceKind::NetworkPolicy));
    }
    engine.set_interfaces(interfaces);
    if more_than_once {
        engine.count_once_across_interfaces();
    }
    Ok(engine)
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
            written.map_err(|e| RunError::output(&e))?;
            eprintln!("netwatch: {} flow records read, {} bad lines", records.len(), bad.len());
            Ok(())
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

/// Replays a source through the engine on packet time, handing each ended flow's record to
/// `emit` as it ends and every remaining flow at the end, oldest first. Reading and decoding run
/// on their own thread, as live capture threads do, so the two cores share the work.
pub fn replay<S: PacketSource + Send + 'static>(
    source: S,
    engine: &mut Engine,
    gate: ClusterGate,
    emit: impl FnMut(FlowRecord) -> io::Result<()>,
) -> io::Result<S> {
    replay_from(Reader::spawn(source)?, engine, gate, emit)
}

/// [`replay`] from a reader already started.
fn replay_from<S: PacketSource + Send + 'static>(
    reader: Reader<S>,
    engine: &mut Engine,
    gate: ClusterGate,
    mut emit: impl FnMut(FlowRecord) -> io::Result<()>,
) -> io::Result<S> {
    let Reader { items, recycle, thread: reader } = reader;
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
            ReaderItem::Interfaces(names) => {
                engine.set_interfaces(names);
                continue;
            }
            ReaderItem::Attached { index, name } => {
                engine.name_interface(index, name);
                continue;
            }
            ReaderItem::Drops(_) | ReaderItem::Warning(_) => continue,
        };
        let mut batch = batch;
        for DecodedFrame { ts, interface, decoded, .. } in &mut batch {
            if let Err(e) = engine.advance_if_due(*ts, &mut emit) {
                result = Err(e);
                break 'items;
            }
            last_ts = last_ts.max(*ts);
            engine.ingest_in_place(*ts, *interface, decoded);
        }
        // Back to the reader, which fills it anew (see `Engine::ingest_in_place`,
        // `read_source`). It may have finished and gone: then the batch is simply dropped.
        let _ = recycle.send(batch);
    }
    // Dropping the receiver (on error) makes the reader stop at its next send.
    drop(items);
    let joined = reader.join();
    result?;
    // Even when the reader failed, the flows of the frames it had handed over are handed out.
    engine.finish(last_ts, emit)?;
    joined.map_err(|_| io::Error::other(ReaderFailed))
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

#[cfg(test)]
mod tests;
