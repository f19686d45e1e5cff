//! netwatch's integration tests: one binary, a module per area. Fixtures live in
//! `tests/fixtures`; every input here is something a user could hand netwatch.

mod boundary;
mod cli;
mod snapshot_loading;

use std::path::PathBuf;

/// A file under `tests/fixtures`.
pub fn fixture(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(relative)
}
