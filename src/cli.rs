//! The command line as clap types. Validated into a [`crate::config::Config`] in `config`;
//! nothing past `main` sees these.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

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

    /// Write logs to this file (the terminal belongs to the output). Level from RUST_LOG.
    #[arg(long, global = true, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The bundled demo: a node's capture and its cluster, replayed. No root, no cluster.
    Demo(DemoArgs),
    /// Replay a capture file (pcap or pcapng, any of Ethernet, Linux cooked v1/v2, raw IP).
    Replay(ReplayArgs),
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

    /// Cluster snapshot: what 'kubectl get namespaces,nodes,pods,services,endpointslices,networkpolicies -A -o yaml' prints.
    #[arg(long, value_name = "SNAPSHOT")]
    pub cluster: Option<PathBuf>,

    #[command(flatten)]
    pub output: OutputArgs,
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
