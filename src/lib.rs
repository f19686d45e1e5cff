//! netwatch: live network flows of a container host or Kubernetes node, with both ends named and
//! every flow checked against the cluster's NetworkPolicies.
//!
//! The pipeline, each stage in its own module (see `DESIGN.md` in the shared docs):
//!
//! ```text
//! capture ─► decode ─► flow ─► identity/names ─► policy ─► snapshot ─► views
//! ```
//!
//! * [`capture`]: packet sources behind one trait: capture files and live interfaces.
//! * [`decode`]: raw frame bytes → one small [`decode::Packet`], and the payload that matters
//!   (DNS messages, a ClientHello's SNI, an HTTP Host) for the flow stage to read.
//! * [`flow`]: bidirectional flows, TCP state, rates, expiry and a hard cap.
//! * [`cluster`]: the cluster model, the `ClusterEvent`s that change it, the snapshot loader.
//! * [`identity`] and [`names`]: IP → pod/service/node/host/external; DNS-learned names.
//! * [`policy`]: NetworkPolicy verdicts with the policies that decide them.
//! * [`engine`] and [`snapshot`]: the pure pipeline and the immutable rows views read.
//! * [`record`]: flow record (JSON Lines) and table writers; pcapng recordings, written and read.
//! * [`run`]: the one event loop; the only place where effects are wired together.
//! * [`cli`] and [`config`]: clap types, validated into a `Config` nothing past `main` sees clap.
//! * [`synth`]: builds real, checksummed frames for the bundled demo, tests and benchmarks.
//!
//! Everything except `capture`, `run`, `main`, the file side of `record` (writing and rotating
//! files) and `cluster::watch` (the API server) is pure: plain data in, plain data out, time
//! passed in as a value.

/// mimalloc for everything that links the library (both binaries, the tests, the benchmarks):
/// decoded frames and flow records cross between threads in batches (reader → engine → output
/// writer, and back to be reused), which glibc's allocator handled poorly (measured: a tenth of
/// replay's engine time).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod capture;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod decode;
pub mod demo;
pub mod engine;
pub mod flow;
pub mod identity;
pub mod names;
pub mod policy;
pub mod record;
pub mod run;
pub mod snapshot;
pub mod synth;
pub mod time;
pub mod tui;
