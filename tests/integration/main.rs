//! netwatch's integration tests: one binary, a module per area. Fixtures live in
//! `tests/fixtures`; every input here is something a user could hand netwatch.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic: that is a failure

mod boundary;
mod cli;
mod decode_frames;
mod deploy_assets;
mod kube_watch;
mod live_capture;
mod live_cluster_tui;
mod policy_cli;
mod record_cli;
mod record_live;
mod recording;
mod replay;
mod snapshot_loading;
mod terminal;
mod tui_screens;

use std::path::PathBuf;

/// Whether a test that needs root (network namespaces, CAP_NET_RAW) can run. Otherwise it is
/// skipped, which fails under `CI` (CI runs as root).
pub fn runs_as_root(test: &str) -> bool {
    let root = std::fs::read_to_string("/proc/self/status").ok().is_some_and(|status| {
        let uids = status.lines().find_map(|line| line.strip_prefix("Uid:"));
        uids.and_then(|uids| uids.split_whitespace().nth(1)) == Some("0")
    });
    if !root {
        assert!(std::env::var_os("CI").is_none(), "CI must run {test} as root");
        skipped(test, "needs root: run ./test as root");
    }
    root
}

/// A test that could not run here says so, and names itself in the file `NETWATCH_SKIPPED`
/// names when set: `./test` lists them, so that they are not passed off as passed.
pub fn skipped(test: &str, why: &str) {
    eprintln!("skipped: {test} ({why})");
    if let Some(path) = std::env::var_os("NETWATCH_SKIPPED") {
        use std::io::Write as _;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(path);
        if let Ok(mut log) = log {
            let _ = writeln!(log, "{test} ({why})");
        }
    }
}

/// A file under `tests/fixtures`.
pub fn fixture(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(relative)
}
