//! Writes the bundled demo capture, `assets/demo.pcap`, from `synth::scenario::demo()`.
//!
//! Run after changing the scenario or the builders: `cargo run --example make_demo`. The
//! `demo` module's tests fail until the asset matches the code again.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use anyhow::Context;
use netwatch::synth::{self, linktype};

fn main() -> anyhow::Result<()> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo.pcap");
    let frames = synth::scenario::demo();
    let file =
        File::create(&path).with_context(|| format!("cannot create '{}'", path.display()))?;
    let mut out = BufWriter::new(file);
    synth::write_pcap(&mut out, linktype::ETHERNET, &frames)
        .with_context(|| format!("cannot write '{}'", path.display()))?;
    out.into_inner().map_err(|e| e.into_error()).context("cannot flush the capture")?;
    println!("wrote {} packets to {}", frames.len(), path.display());
    Ok(())
}
