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

/// A file under `tests/fixtures`.
pub fn fixture(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(relative)
}
