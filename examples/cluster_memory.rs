//! Resident memory and time of the cluster view holding 50,000 pods and 5,000 NetworkPolicies
//! (synthetic, through `ClusterView::apply`), read from /proc/self/statm. Linux only.
//!
//! `cargo run --example cluster_memory [PODS POLICIES]`; targets: ≤ 150 MB, ≤ 2 s.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../benches/cluster/synthetic.rs"]
mod synthetic;

use std::time::Instant;

use netwatch::cluster::ClusterView;

/// Resident set size in bytes (second field of statm, in pages; pages are 4 KiB on Linux/x86).
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm (Linux)");
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|f| f.parse().ok()).unwrap_or(0);
    pages * 4096
}

fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>().expect("a count"));
    let pods = args.next().unwrap_or(50_000);
    let policies = args.next().unwrap_or(5_000);
    let before = rss_bytes();
    let events = synthetic::initial_sync(pods, policies);
    let started = Instant::now();
    let mut view = ClusterView::new();
    for event in events {
        view.apply(event);
    }
    view.reindex();
    let elapsed = started.elapsed();
    let after = rss_bytes();
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    println!(
        "{pods} pods, {policies} policies: view holds {} pods, {} policies; RSS {:.1} MiB → {:.1} MiB \
         (+{:.1} MiB); initial sync applied and indexed in {elapsed:.2?}",
        view.pods.len(),
        view.policies.len(),
        mib(before),
        mib(after),
        mib(after.saturating_sub(before)),
    );
}
