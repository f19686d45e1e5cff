//! The validated configuration: what `run` needs, with every user value checked. Built from the
//! clap types in `cli`; nothing past here sees clap.

use std::path::PathBuf;

use crate::capture::interfaces::Selection;
use crate::capture::live::LiveConfig;
use crate::cli::{
    BufferArgs, Cli, Command, KubeArgs, LiveArgs, OutputArgs, OutputFormat, PolicyCommand,
    RecordArgs, ReportArg, TableArgs,
};
use crate::cluster::watch::KubeSettings;
use crate::flow::TableLimits;
use crate::record::Format;
use crate::record::pcapng::rotation::{Limits, RecordingPlan, Rotation, parse_size};
use crate::record::pcapng::{DEFAULT_SNAPLEN, WriterOptions};

#[derive(Debug, Clone)]
pub struct Config {
    pub command: Mode,
    pub log_file: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub enum Mode {
    /// Live capture on this host, in the interactive view.
    Live(LiveRunConfig),
    Interfaces {
        selection: Selection,
        cluster: ClusterSource,
        /// Kernel buffer per interface and in total, as live capture would hand them out.
        buffer_bytes: u32,
        buffer_total: u64,
    },
    Snapshot {
        output: PathBuf,
        kube: KubeSettings,
        timeout: std::time::Duration,
    },
    Replay(ReplayConfig),
    Record(RecordConfig),
    PolicyExplain(ExplainConfig),
    PolicyAudit(AuditConfig),
}

#[derive(Debug, Clone)]
pub struct LiveRunConfig {
    pub capture: LiveConfig,
    pub cluster: ClusterSource,
    /// Watch the cluster through its API (unless a snapshot is given or --no-kube).
    pub kube: Option<KubeSettings>,
    /// The namespace to show at first (`-n`).
    pub namespace: Option<String>,
    /// Record while watching (`--record FILE`).
    pub record: Option<PathBuf>,
    pub limits: TableLimits,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordConfig {
    /// `None`: live interfaces.
    pub input: Option<PathBuf>,
    /// Live: which interfaces, and a BPF filter.
    pub selection: Selection,
    pub filter: Option<String>,
    /// Live: watch the cluster through its API and record its view and changes.
    pub kube: Option<KubeSettings>,
    pub cluster: ClusterSource,
    pub pcapng: Option<PathBuf>,
    /// `-` is stdout.
    pub flows: Option<PathBuf>,
    pub plan: RecordingPlan,
    pub limits: TableLimits,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExplainInput {
    One {
        from: String,
        to: String,
        protocol: String,
        port: u16,
    },
    /// A file of JSON queries, or `-` for stdin.
    Batch(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExplainConfig {
    pub cluster: ClusterSource,
    pub input: ExplainInput,
    pub format: ReportFormat,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    pub cluster: ClusterSource,
    pub format: ReportFormat,
}

/// Where packets come from in a replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    File(PathBuf),
    /// The capture bundled in the binary.
    Demo,
}

/// Where the cluster view comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterSource {
    None,
    Snapshot(PathBuf),
    /// The snapshot bundled in the binary.
    Demo,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum View {
    /// Records on stdout.
    Headless(Format),
    /// The terminal UI; until it lands, the table on stdout.
    Interactive,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayConfig {
    pub input: Input,
    pub cluster: ClusterSource,
    /// NetworkPolicies that replace the recorded or snapshot ones (what-if).
    pub policies: Option<PathBuf>,
    pub view: View,
    pub limits: TableLimits,
}

/// A user value that cannot be used: the message quotes it and says what to do.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl TryFrom<Cli> for Config {
    type Error = ConfigError;

    fn try_from(cli: Cli) -> Result<Self, Self::Error> {
        let command = match cli.command {
            None => Mode::Live(live_config(&cli.live)?),
            Some(Command::Snapshot(args)) => Mode::Snapshot {
                output: args.output,
                kube: kube_settings(&args.kube),
                timeout: args.timeout,
            },
            Some(Command::Interfaces(args)) => {
                let (buffer_bytes, buffer_total) = buffers(&args.buffers)?;
                Mode::Interfaces {
                    selection: Selection::from_names(&args.interfaces),
                    cluster: args.cluster.map_or(ClusterSource::None, ClusterSource::Snapshot),
                    buffer_bytes,
                    buffer_total,
                }
            }
            Some(Command::Demo(args)) => Mode::Replay(ReplayConfig {
                input: Input::Demo,
                cluster: ClusterSource::Demo,
                policies: None,
                view: view(&args.output),
                limits: limits(&args.table)?,
            }),
            Some(Command::Replay(args)) => Mode::Replay(ReplayConfig {
                input: Input::File(args.file),
                cluster: args.cluster.map_or(ClusterSource::None, ClusterSource::Snapshot),
                policies: args.policies,
                view: view(&args.output),
                limits: limits(&args.table)?,
            }),
            Some(Command::Record(args)) => Mode::Record(record_config(args)?),
            Some(Command::Policy(PolicyCommand::Explain(args))) => {
                let input = match (args.batch, args.from, args.to, args.port) {
                    (Some(path), ..) => ExplainInput::Batch(path),
                    (None, Some(from), Some(to), Some(port)) => {
                        ExplainInput::One { from, to, protocol: args.protocol, port }
                    }
                    _ => {
                        return Err(ConfigError(
                            "policy explain needs --from, --to and --port, or --batch FILE".into(),
                        ));
                    }
                };
                Mode::PolicyExplain(ExplainConfig {
                    cluster: ClusterSource::Snapshot(args.cluster),
                    input,
                    format: report_format(args.format),
                })
            }
            Some(Command::Policy(PolicyCommand::Audit(args))) => Mode::PolicyAudit(AuditConfig {
                cluster: ClusterSource::Snapshot(args.cluster),
                format: report_format(args.format),
            }),
        };
        Ok(Self { command, log_file: cli.log_file })
    }
}

fn live_config(args: &LiveArgs) -> Result<LiveRunConfig, ConfigError> {
    let (buffer_bytes, buffer_total) = buffers(&args.buffers)?;
    Ok(LiveRunConfig {
        capture: LiveConfig {
            selection: Selection::from_names(&args.interfaces),
            filter: args.filter.clone(),
            buffer_bytes,
            buffer_total,
            // Recording keeps whole packets; watching needs only their headers.
            snaplen: if args.record.is_some() {
                DEFAULT_SNAPLEN
            } else {
                LiveConfig::default().snaplen
            },
            keep_bytes: args.record.is_some(),
            immediate: args.immediate,
            ..LiveConfig::default()
        },
        cluster: args.cluster.clone().map_or(ClusterSource::None, ClusterSource::Snapshot),
        kube: (args.cluster.is_none() && !args.no_kube).then(|| kube_settings(&args.kube)),
        namespace: args.namespace.clone(),
        record: args.record.clone(),
        limits: limits(&args.table)?,
    })
}

/// `--buffer-size` (1MiB to 2GiB) and `--buffer-total` (at least 1MiB).
fn buffers(args: &BufferArgs) -> Result<(u32, u64), ConfigError> {
    let size = |flag: &str, text: &str| {
        parse_size(text).map_err(|e| ConfigError(format!("{flag} '{text}': {e}; e.g. '32MiB'")))
    };
    let per = size("--buffer-size", &args.buffer_size)?;
    // libpcap takes the size as a C int: 2GiB (less one byte) is the most it can be given.
    let buffer_bytes = (1 << 20..=2 << 30)
        .contains(&per)
        .then_some(per.min(i32::MAX as u64))
        .and_then(|bytes| u32::try_from(bytes).ok())
        .ok_or_else(|| {
            ConfigError(format!(
                "--buffer-size '{}' must be between 1MiB and 2GiB",
                args.buffer_size
            ))
        })?;
    let buffer_total = size("--buffer-total", &args.buffer_total)?;
    if buffer_total < 1 << 20 {
        return Err(ConfigError(format!(
            "--buffer-total '{}' must be at least 1MiB (e.g. '1GiB')",
            args.buffer_total
        )));
    }
    Ok((buffer_bytes, buffer_total))
}

fn kube_settings(args: &KubeArgs) -> KubeSettings {
    KubeSettings { kubeconfig: args.kubeconfig.clone(), context: args.context.clone() }
}

fn record_config(args: RecordArgs) -> Result<RecordConfig, ConfigError> {
    let size = |flag: &str, text: &Option<String>| -> Result<Option<u64>, ConfigError> {
        text.as_deref()
            .map(|t| {
                parse_size(t)
                    .map_err(|e| ConfigError(format!("{flag} '{t}': {e}; e.g. '100MB' or '2GiB'")))
            })
            .transpose()
    };
    if args.snaplen < 64 {
        return Err(ConfigError(format!(
            "--snaplen '{}' is too small to hold headers; use at least 64",
            args.snaplen
        )));
    }
    if args.snaplen > DEFAULT_SNAPLEN {
        return Err(ConfigError(format!(
            "--snaplen '{}' is more than libpcap keeps of a packet; use at most {DEFAULT_SNAPLEN}",
            args.snaplen
        )));
    }
    if args.keep == Some(0) {
        return Err(ConfigError("--keep '0' would keep no file; use at least 1".into()));
    }
    // A zero duration would record nothing, or start a file for every packet.
    for (flag, duration) in [("--duration", args.duration), ("--rotate-every", args.rotate_every)] {
        if duration.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError(format!("{flag} '0s' is no time at all; give e.g. '10m'")));
        }
    }
    let rotation = Rotation {
        max_file_bytes: size("--rotate", &args.rotate)?,
        every: args.rotate_every,
        keep_files: args.keep,
    };
    if args.keep.is_some() && !rotation.is_enabled() {
        return Err(ConfigError("--keep needs --rotate or --rotate-every".into()));
    }
    // The limits belong to the packet file: without one they would be taken and do nothing.
    if args.write.is_none() {
        let given = [
            ("--duration", args.duration.is_some()),
            ("--max-size", args.max_size.is_some()),
            ("--rotate", args.rotate.is_some()),
            ("--rotate-every", args.rotate_every.is_some()),
        ];
        if let Some((flag, _)) = given.iter().find(|(_, given)| *given) {
            return Err(ConfigError(format!(
                "{flag} limits the packet recording; give it a file with -w FILE.pcapng"
            )));
        }
    }
    let plan = RecordingPlan {
        rotation,
        limits: Limits { max_bytes: size("--max-size", &args.max_size)?, duration: args.duration },
        writer: WriterOptions { snaplen: args.snaplen, ..WriterOptions::default() },
    };
    Ok(RecordConfig {
        selection: Selection::from_names(&args.interfaces),
        filter: args.filter,
        kube: (args.read.is_none() && args.cluster.is_none() && !args.no_kube)
            .then(|| kube_settings(&args.kube)),
        input: args.read,
        cluster: args.cluster.map_or(ClusterSource::None, ClusterSource::Snapshot),
        pcapng: args.write,
        flows: args.flows,
        plan,
        limits: limits(&args.table)?,
    })
}

fn report_format(format: ReportArg) -> ReportFormat {
    match format {
        ReportArg::Text => ReportFormat::Text,
        ReportArg::Json => ReportFormat::Json,
    }
}

fn view(output: &OutputArgs) -> View {
    let format = match output.format {
        OutputFormat::Json => Format::Json,
        OutputFormat::Table => Format::Table,
    };
    if output.headless { View::Headless(format) } else { View::Interactive }
}

fn limits(args: &TableArgs) -> Result<TableLimits, ConfigError> {
    if args.max_flows == 0 {
        return Err(ConfigError("--max-flows '0' must be at least 1".into()));
    }
    if args.idle_timeout.is_zero() {
        return Err(ConfigError("--idle-timeout '0s' must be longer than zero, e.g. '30s'".into()));
    }
    Ok(TableLimits {
        max_flows: args.max_flows,
        idle_timeout: args.idle_timeout,
        ..TableLimits::default()
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn live(args: &[&str]) -> LiveConfig {
        let cli = crate::cli::Cli::try_parse_from(args).expect("the arguments parse");
        match Config::try_from(cli).expect("a valid configuration").command {
            Mode::Live(config) => config.capture,
            _ => panic!("no command is live capture"),
        }
    }

    /// Why validation refuses a command line that parses, if it does.
    fn refused(args: &[&str]) -> Option<String> {
        let cli = crate::cli::Cli::try_parse_from(args).expect("the arguments parse");
        Config::try_from(cli).err().map(|e| e.to_string())
    }

    #[test]
    fn recording_limits_without_a_packet_file_are_refused() {
        let error = refused(&["netwatch", "record", "--flows", "f.jsonl", "--duration", "10m"]);
        assert!(error.is_some_and(|e| e.contains("--duration") && e.contains("-w")));
        let error = refused(&["netwatch", "record", "--flows", "-", "--max-size", "1GB"]);
        assert!(error.is_some_and(|e| e.contains("--max-size")));
        assert_eq!(refused(&["netwatch", "record", "-w", "x.pcapng", "--duration", "10m"]), None);
    }

    /// Alternatives that exclude each other are refused, not one of them silently ignored.
    #[test]
    fn exclusive_cluster_sources_are_refused_together() {
        for args in [
            &["netwatch", "--cluster", "c.yaml", "--context", "prod"][..],
            &["netwatch", "--no-kube", "--kubeconfig", "k"],
            &["netwatch", "record", "-w", "x.pcapng", "--cluster", "c.yaml", "--context", "prod"],
            &["netwatch", "record", "-w", "x.pcapng", "--read", "c.pcap", "--no-kube"],
        ] {
            let error = crate::cli::Cli::try_parse_from(args).expect_err("refused");
            assert_eq!(error.kind(), clap::error::ErrorKind::ArgumentConflict, "{args:?}");
        }
    }

    #[test]
    fn zero_durations_and_a_snap_length_past_libpcaps_are_refused() {
        for flag in ["--duration", "--rotate-every"] {
            let error = refused(&["netwatch", "record", "-w", "x.pcapng", flag, "0s"]);
            assert!(error.is_some_and(|e| e.starts_with(&format!("{flag} '0s'"))), "{flag}");
        }
        let error = refused(&["netwatch", "record", "-w", "x.pcapng", "--snaplen", "300000"]);
        assert!(error.is_some_and(|e| e.contains("at most 262144")));
        assert_eq!(refused(&["netwatch", "record", "-w", "x.pcapng", "--snaplen", "262144"]), None);
    }

    #[test]
    fn the_buffer_size_goes_up_to_what_libpcap_takes() {
        let size = |text: &str| live(&["netwatch", "--buffer-size", text]).buffer_bytes;
        assert_eq!(size("1MiB"), 1 << 20);
        assert_eq!(size("2GiB"), i32::MAX as u32);
        for refused in ["512KiB", "3GiB", "4GiB"] {
            let cli = crate::cli::Cli::try_parse_from(["netwatch", "--buffer-size", refused])
                .expect("the arguments parse");
            let error = Config::try_from(cli).expect_err("refused").to_string();
            assert!(error.contains("between 1MiB and 2GiB"), "{refused}: {error}");
        }
    }

    #[test]
    fn live_capture_uses_kernel_blocks_unless_immediate_is_asked_for() {
        let blocks = live(&["netwatch", "-i", "eth0"]);
        assert!(!blocks.immediate);
        assert!(blocks.read_timeout < blocks.reorder_hold, "frames must arrive within the hold");
        assert!(live(&["netwatch", "-i", "eth0", "--immediate"]).immediate);
    }
}
