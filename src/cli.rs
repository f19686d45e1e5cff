//! The command line as clap types. Validated into a [`crate::config::Config`] in `config`;
//! nothing past `main` sees these.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

mod kubectl_help;

/// The command as the kubectl plugin runs it: the same flags and commands, named
/// `kubectl netwatch`, with its top-level help in kubectl's layout.
#[must_use]
pub fn plugin_command() -> clap::Command {
    let mut command = Cli::command().bin_name("kubectl netwatch");
    command.build();
    let help = kubectl_help::render(&command);
    command.override_help(help)
}

#[derive(Debug, Parser)]
#[command(
    name = "netwatch",
    version,
    about = "Live network flows of a container host or Kubernetes node: who talks to whom, by name, and whether NetworkPolicy allows it",
    after_help = "Run 'netwatch demo' to see it on the bundled capture and cluster (no root, no cluster needed)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Live capture on this host (when no command is given).
    #[command(flatten)]
    pub live: LiveArgs,

    /// Write logs to this file (the terminal belongs to the output). Level from RUST_LOG.
    #[arg(long, global = true, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct LiveArgs {
    /// Capture on this interface (repeatable; globs like 'veth*'; 'any' for all). Default: the pod-facing interfaces.
    #[arg(short = 'i', long = "interface", value_name = "IFACE")]
    pub interfaces: Vec<String>,

    /// A BPF filter applied on every interface, e.g. 'not port 22'.
    #[arg(long, value_name = "BPF")]
    pub filter: Option<String>,

    #[command(flatten)]
    pub buffers: BufferArgs,

    /// libpcap immediate mode: each packet handed over as it arrives (lowest latency, several times the CPU). Default: kernel blocks of at most 40 ms.
    #[arg(long)]
    pub immediate: bool,

    /// Cluster snapshot for identities and verdicts, instead of watching the cluster.
    #[arg(long, value_name = "SNAPSHOT", conflicts_with_all = ["no_kube", "kubeconfig", "context"])]
    pub cluster: Option<PathBuf>,

    #[command(flatten)]
    pub kube: KubeArgs,

    /// Run without the cluster: no identities, no verdicts.
    #[arg(long, conflicts_with_all = ["kubeconfig", "context"])]
    pub no_kube: bool,

    /// Show this namespace's flows (kubectl's -n); the filter can be changed with '/'.
    #[arg(short = 'n', long = "namespace", value_name = "NAMESPACE")]
    pub namespace: Option<String>,

    /// Record while you watch: every packet and the cluster view into this pcapng (shown in the header).
    #[arg(long, value_name = "FILE.pcapng")]
    pub record: Option<PathBuf>,

    /// All namespaces (kubectl's -A): the default.
    #[arg(short = 'A', long = "all-namespaces", conflicts_with = "namespace")]
    pub all_namespaces: bool,

    #[command(flatten)]
    pub table: TableArgs,
}

/// Kernel capture buffers: per interface, and over all of them.
#[derive(Debug, Args)]
pub struct BufferArgs {
    /// Kernel capture buffer per interface, e.g. 32MiB.
    #[arg(long, value_name = "SIZE", default_value = "32MiB")]
    pub buffer_size: String,

    /// Most kernel buffer over all interfaces; past it new interfaces get what remains (at least 2MiB).
    #[arg(long, value_name = "SIZE", default_value = "1GiB")]
    pub buffer_total: String,
}

/// How to reach the cluster, as kubectl takes it.
#[derive(Debug, Args)]
pub struct KubeArgs {
    /// Kubeconfig file (else KUBECONFIG, ~/.kube/config, or the in-cluster service account).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,

    /// Kubeconfig context to use.
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The bundled demo: a node's capture and its cluster, replayed. No root, no cluster.
    Demo(DemoArgs),
    /// Replay a capture (pcap, pcapng, a netwatch recording) or flow records (JSON Lines).
    Replay(ReplayArgs),
    /// Write the cluster view (from the API) as a snapshot that --cluster reads back.
    Snapshot(SnapshotArgs),
    /// What would be captured on this host, and why: every interface with its class.
    Interfaces(InterfacesArgs),
    /// Record headless: packets into pcapng with the cluster view inside, flow records into JSON Lines.
    Record(RecordArgs),
    /// NetworkPolicy answers on a cluster snapshot: explain one connection, audit the cluster.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// The verdict for one connection (or a batch of them), with the deciding policies.
    Explain(ExplainArgs),
    /// Pods with unrestricted egress or ingress, namespaces without default deny, and more.
    Audit(AuditArgs),
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Cluster snapshot ('kubectl get … -o yaml' output) holding the pods and policies.
    #[arg(long, value_name = "SNAPSHOT")]
    pub cluster: PathBuf,

    /// The source: 'namespace/pod' or an IP address.
    #[arg(long, value_name = "SRC", required_unless_present = "batch", conflicts_with = "batch")]
    pub from: Option<String>,

    /// The destination: 'namespace/pod', 'namespace/service' or an IP address.
    #[arg(long, value_name = "DST", required_unless_present = "batch", conflicts_with = "batch")]
    pub to: Option<String>,

    /// The destination port.
    #[arg(long, value_name = "N", required_unless_present = "batch", conflicts_with = "batch")]
    pub port: Option<u16>,

    /// TCP, UDP or SCTP.
    #[arg(long, value_name = "PROTOCOL", default_value = "TCP")]
    pub protocol: String,

    /// Answer many: one JSON query per line, '{"from":…,"to":…,"protocol":"TCP","port":80}'; '-' reads stdin.
    #[arg(long, value_name = "FILE")]
    pub batch: Option<PathBuf>,

    /// Output format (a batch always answers in JSON Lines).
    #[arg(short = 'o', long = "output", value_enum, default_value_t = ReportArg::Text)]
    pub format: ReportArg,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Cluster snapshot ('kubectl get … -o yaml' output).
    #[arg(long, value_name = "SNAPSHOT")]
    pub cluster: PathBuf,

    #[arg(short = 'o', long = "output", value_enum, default_value_t = ReportArg::Text)]
    pub format: ReportArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportArg {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub table: TableArgs,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The capture to replay: pcap or pcapng.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// Cluster snapshot: what 'kubectl get namespaces,nodes,pods,services,endpointslices,networkpolicies -A -o yaml' prints. Replaces the view a netwatch recording carries.
    #[arg(long, value_name = "SNAPSHOT")]
    pub cluster: Option<PathBuf>,

    /// What-if: evaluate against these NetworkPolicies (a YAML file or a directory of them) instead of the recorded or snapshot ones.
    #[arg(long, value_name = "FILE|DIR")]
    pub policies: Option<PathBuf>,

    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub table: TableArgs,
}

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// The YAML file to write ('-' for stdout).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: PathBuf,

    #[command(flatten)]
    pub kube: KubeArgs,

    /// Give up if the cluster has not been listed within this long.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct InterfacesArgs {
    /// Select as live capture would with these -i values.
    #[arg(short = 'i', long = "interface", value_name = "IFACE")]
    pub interfaces: Vec<String>,

    /// Cluster snapshot: name the pod behind each veth.
    #[arg(long, value_name = "SNAPSHOT")]
    pub cluster: Option<PathBuf>,

    /// The kernel buffers live capture would give each interface.
    #[command(flatten)]
    pub buffers: BufferArgs,
}

#[derive(Debug, Args)]
pub struct RecordArgs {
    /// The pcapng file to write (with --rotate: the name its numbered files are made from).
    #[arg(
        short = 'w',
        long = "write",
        value_name = "FILE.pcapng",
        required_unless_present = "flows"
    )]
    pub write: Option<PathBuf>,

    /// Also write flow records (JSON Lines) as flows end, and the rest at the end; '-' is stdout.
    #[arg(long, value_name = "FILE.jsonl")]
    pub flows: Option<PathBuf>,

    /// Record packets from this capture file instead of live interfaces (like tcpdump -r):
    /// turns any capture plus a snapshot into a self-contained recording.
    #[arg(
        short = 'r',
        long = "read",
        value_name = "CAPTURE",
        conflicts_with_all = ["no_kube", "kubeconfig", "context"]
    )]
    pub read: Option<PathBuf>,

    /// Cluster snapshot to embed ('kubectl get … -o yaml' output).
    #[arg(long, value_name = "SNAPSHOT", conflicts_with_all = ["kubeconfig", "context"])]
    pub cluster: Option<PathBuf>,

    /// Live: capture on this interface (repeatable; globs; 'any'). Default: the pod-facing interfaces.
    #[arg(short = 'i', long = "interface", value_name = "IFACE", conflicts_with = "read")]
    pub interfaces: Vec<String>,

    /// Live: a BPF filter applied on every interface.
    #[arg(long, value_name = "BPF", conflicts_with = "read")]
    pub filter: Option<String>,

    /// Live: how to reach the cluster whose view is recorded (unless --cluster or --no-kube).
    #[command(flatten)]
    pub kube: KubeArgs,

    /// Live: record without the cluster view.
    #[arg(long, conflicts_with_all = ["cluster", "kubeconfig", "context"])]
    pub no_kube: bool,

    /// Bytes kept of each packet (default: all of it).
    #[arg(long, value_name = "BYTES", default_value_t = 262_144)]
    pub snaplen: u32,

    /// Stop after this long (packet time), e.g. 10m.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,

    /// Stop once this much is written over all files, e.g. 500MB.
    #[arg(long, value_name = "SIZE")]
    pub max_size: Option<String>,

    /// Start a new file when one reaches this size, e.g. 100MB.
    #[arg(long, value_name = "SIZE")]
    pub rotate: Option<String>,

    /// Start a new file after this long, e.g. 1h.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub rotate_every: Option<Duration>,

    /// With rotation: keep only the newest N files.
    #[arg(long, value_name = "N")]
    pub keep: Option<u32>,

    #[command(flatten)]
    pub table: TableArgs,
}

#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Print flow records instead of opening the interactive view.
    #[arg(long)]
    pub headless: bool,

    /// Output format when headless.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// One flow record per line (JSON Lines): the documented contract.
    Json,
    /// Aligned columns for people.
    Table,
}

#[derive(Debug, Args)]
pub struct TableArgs {
    /// Most flows held at once; past it the least recently seen are evicted (and counted).
    #[arg(long, value_name = "N", default_value_t = 200_000)]
    pub max_flows: usize,

    /// A flow with no packets for this long ends (e.g. 30s, 2m).
    #[arg(long, value_name = "DURATION", default_value = "2m", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,
}
