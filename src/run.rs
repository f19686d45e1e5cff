//! The run loop: the one place where sources, the engine and the outputs are wired together.
//!
//! Effects live here and in `capture`: reading files, writing stdout and stderr. The engine
//! stays pure; replay drives it on packet time, so output is the same on every run.

mod interactive;
mod policy;

use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::mpsc;
use std::thread;

use crate::capture::{CaptureError, DecodedFrame, FRAME_BATCH, FileSource, Next, PacketSource};
use crate::cluster::snapshot;
use crate::config::{ClusterSource, Config, Input, Mode, ReplayConfig, View};
use crate::demo;
use crate::engine::{Engine, SWEEP_INTERVAL};
use crate::record::RecordWriter;
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
        Mode::Live => Err(RunError::BadInput(
            "live capture is not part of this build yet; run 'netwatch demo' or 'netwatch replay FILE'"
                .into(),
        )),
        Mode::Replay(replay) => run_replay(&replay),
        Mode::PolicyExplain(explain) => policy::explain(&explain),
        Mode::PolicyAudit(audit) => policy::audit(&audit),
    }
}

fn run_replay(config: &ReplayConfig) -> Result<(), RunError> {
    let mut engine = Engine::new(config.limits);
    load_cluster(&mut engine, &config.cluster)?;
    let source = match &config.input {
        Input::File(path) => FileSource::open(path)?,
        Input::Demo => FileSource::from_bytes("demo.pcap", demo::CAPTURE)?,
    };
    engine.set_interfaces(source.interfaces());
    let format = match config.view {
        View::Headless(format) => format,
        View::Interactive => {
            let session = interactive::Session {
                source_label: source.interfaces().join(","),
                cluster_label: match &config.cluster {
                    ClusterSource::None => "none".to_owned(),
                    ClusterSource::Demo => "snapshot demo-cluster.yaml".to_owned(),
                    ClusterSource::Snapshot(path) => format!("snapshot {}", path.display()),
                },
            };
            return interactive::run(engine, source, &session);
        }
    };
    let stdout = io::stdout();
    let mut writer = RecordWriter::new(BufWriter::with_capacity(1 << 16, stdout.lock()), format);
    let result = replay(source, &mut engine, |record| writer.write(record));
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

/// Replays a source through the engine on packet time, handing each ended flow's record to
/// `emit` as it ends and every remaining flow at the end, oldest first. Reading and decoding run
/// on their own thread, as live capture threads do, so the two cores share the work.
pub fn replay<S: PacketSource + Send + 'static>(
    source: S,
    engine: &mut Engine,
    mut emit: impl FnMut(&FlowRecord) -> io::Result<()>,
) -> io::Result<S> {
    let (sender, batches) = mpsc::sync_channel::<Vec<DecodedFrame>>(8);
    let reader = thread::Builder::new()
        .name("netwatch-read".into())
        .spawn(move || read_all(source, &sender))?;
    let mut next_sweep: Option<Timestamp> = None;
    let mut last_ts = Timestamp::default();
    let mut result = Ok(());
    'batches: for batch in batches.iter() {
        for DecodedFrame { ts, interface, decoded } in batch {
            if next_sweep.is_none_or(|at| ts >= at) {
                if let Err(e) = engine.advance(ts, &mut emit) {
                    result = Err(e);
                    break 'batches;
                }
                next_sweep = Some(ts.saturating_add(SWEEP_INTERVAL));
            }
            last_ts = last_ts.max(ts);
            engine.ingest_decoded(ts, interface, decoded);
        }
    }
    // Dropping the receiver (on error) makes the reader stop at its next send.
    drop(batches);
    let source =
        reader.join().map_err(|_| io::Error::other("the capture reader thread panicked"))?;
    result?;
    engine.finish(last_ts, emit)?;
    Ok(source)
}

/// The reader thread: frames → decoded summaries, in batches, until the source ends or the
/// engine side hangs up. Returns the source so its warnings can be shown.
fn read_all<S: PacketSource>(mut source: S, sender: &mpsc::SyncSender<Vec<DecodedFrame>>) -> S {
    let mut batch = Vec::with_capacity(FRAME_BATCH);
    loop {
        match source.next_frame() {
            Next::Packet(frame) => {
                batch.push(DecodedFrame::from_frame(&frame));
                if batch.len() == FRAME_BATCH
                    && sender
                        .send(std::mem::replace(&mut batch, Vec::with_capacity(FRAME_BATCH)))
                        .is_err()
                {
                    return source;
                }
            }
            // A file never idles; a live source would be waited on by the interactive loop.
            Next::Idle => {}
            Next::End => break,
        }
    }
    if !batch.is_empty() {
        let _ = sender.send(batch);
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
