//! The run loop: the one place where sources, the engine and the outputs are wired together.
//!
//! Effects live here and in `capture`: reading files, writing stdout and stderr. The engine
//! stays pure; replay drives it on packet time, so output is the same on every run.
//! `replay` (headless and input recognition), `interactive` (the TUI loop, live and replay),
//! `record` and `policy` hold the commands; this file dispatches, and holds live mode,
//! `interfaces`, `snapshot` and the cluster-snapshot loading they share.

mod interactive;
mod policy;
mod record;
mod replay;

pub use replay::{ClusterGate, replay};
use replay::{Opened, open_input, run_replay};
pub(crate) use replay::{ReaderItem, read_source};

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::Path;

use crate::capture::CaptureError;
use crate::capture::interfaces::behind;
use crate::capture::live::budget::{self, BufferBudget};
use crate::capture::{self, interfaces::Selection};
use crate::cluster::ResourceKind;
use crate::cluster::snapshot;
use crate::cluster::watch::{self, KubeSettings};
use crate::config::{ClusterSource, Config, LiveRunConfig, Mode};
use crate::demo;
use crate::engine::Engine;

/// How a run failed, which decides the exit code.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Bad usage or bad input: exit 2. The message says what, where, and what to do.
    #[error("{0}")]
    BadInput(String),
    /// Something failed at run time: exit 1.
    #[error("{0}")]
    Runtime(String),
    /// The output's reader went away (`| head` closed the pipe): not a failure, exit 0.
    #[error("the output was closed")]
    OutputClosed,
}

impl RunError {
    #[must_use]
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::BadInput(_) => 2,
            Self::Runtime(_) => 1,
            Self::OutputClosed => 0,
        }
    }

    /// A failed write of the run's output: its reader going away (`| head`) ends the run
    /// quietly; anything else is a failure.
    pub(crate) fn output(error: &std::io::Error) -> Self {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            return Self::OutputClosed;
        }
        Self::Runtime(format!("cannot write output: {error}"))
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
        Mode::Interfaces { selection, cluster, buffer_bytes, buffer_total } => {
            let budget = BufferBudget::new(buffer_bytes, buffer_total);
            print_interfaces(&selection, &cluster, budget)
        }
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
fn print_interfaces(
    selection: &Selection,
    cluster: &ClusterSource,
    budget: BufferBudget,
) -> Result<(), RunError> {
    let interfaces = capture::interfaces::list(selection)
        .map_err(|e| RunError::Runtime(format!("cannot list network interfaces: {e}")))?;
    let view = load_view(cluster)?;
    let buffers: std::collections::HashMap<(&str, u32), u32> = interfaces
        .iter()
        .zip(budget::plan(&interfaces, selection, budget))
        .filter_map(|(info, bytes)| Some(((info.name.as_str(), info.ifindex), bytes?)))
        .collect();
    let buffer_for = |info: &capture::interfaces::InterfaceInfo| {
        let bytes = buffers.get(&(info.name.as_str(), info.ifindex))?;
        Some(crate::record::human_bytes(u64::from(*bytes)))
    };
    // Addresses behind each pod veth besides its routes (bridge CNIs); only worth reading
    // when there is a cluster to name them.
    let mut behind: BTreeMap<u32, Vec<std::net::IpAddr>> = BTreeMap::new();
    if !matches!(cluster, ClusterSource::None) {
        let found =
            [behind::via_bridge_tables(&interfaces), behind::via_peer_namespaces(&interfaces)];
        for (ifindex, ips) in found.into_iter().flatten() {
            behind.entry(ifindex).or_default().extend(ips);
        }
    }
    let table = capture::interfaces::render_table(&interfaces, buffer_for, |info| {
        let learned = behind.get(&info.ifindex).into_iter().flatten();
        info.routed_addresses.iter().chain(learned).find_map(|ip| {
            view.owners(*ip).iter().find_map(|owner| match owner {
                crate::cluster::IpOwner::Pod(key) => Some(key.to_string()),
                _ => None,
            })
        })
    });
    print!("{table}");
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

/// The `netwatch` binary's entry: parse, validate, run, and map failures to exit codes.
pub fn main_with_args(args: impl IntoIterator<Item = std::ffi::OsString>) -> i32 {
    main_with_command(<crate::cli::Cli as clap::CommandFactory>::command(), args)
}

/// `kubectl netwatch …`: the same program, its help in kubectl's layout.
pub fn plugin_main_with_args(args: impl IntoIterator<Item = std::ffi::OsString>) -> i32 {
    main_with_command(crate::cli::plugin_command(), args)
}

/// What both binaries share once they have chosen their command line.
fn main_with_command(
    command: clap::Command,
    args: impl IntoIterator<Item = std::ffi::OsString>,
) -> i32 {
    use clap::FromArgMatches;
    let parsed = command.try_get_matches_from(args).and_then(|matches| {
        let misplaced = live_options_before_a_command(&matches);
        crate::cli::Cli::from_arg_matches(&matches).map(|cli| (cli, misplaced))
    });
    let cli = match parsed {
        Ok((_, Some(misplaced))) => {
            eprintln!("netwatch: error: {misplaced}");
            return 2;
        }
        Ok((cli, None)) => cli,
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
        Ok(()) | Err(RunError::OutputClosed) => 0,
        Err(error) => {
            eprintln!("netwatch: error: {error}");
            error.exit_code()
        }
    }
}

/// The live-capture options apply when no command is given; before a command they would be
/// ignored (`netwatch --cluster c.yaml replay x.pcap` would replay with no cluster), so they
/// are an error that says where they go.
fn live_options_before_a_command(matches: &clap::ArgMatches) -> Option<String> {
    let (command, _) = matches.subcommand()?;
    let live = <crate::cli::LiveArgs as clap::Args>::augment_args(clap::Command::new("live"));
    let given: Vec<String> = live
        .get_arguments()
        .filter(|arg| {
            matches.value_source(arg.get_id().as_str())
                == Some(clap::parser::ValueSource::CommandLine)
        })
        .map(|arg| match (arg.get_long(), arg.get_short()) {
            (Some(long), _) => format!("--{long}"),
            (None, Some(short)) => format!("-{short}"),
            (None, None) => arg.get_id().to_string(),
        })
        .collect();
    (!given.is_empty()).then(|| {
        format!(
            "{} before '{command}' would be ignored: options go after the command ('{command} --help' lists its own)",
            given.join(", ")
        )
    })
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
