//! Where replay's time goes: the same capture through each stage in turn, on one thread, so
//! each line is that stage's cost on top of the one before. `cargo run --release --example
//! replay_stages -- FILE`. The side-by-side benchmark is `scripts/bench-replay.sh`.

use std::io::{self, Write};
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use netwatch::capture::{DecodedFrame, FileSource, Next, PacketSource};
use netwatch::engine::Engine;
use netwatch::flow::TableLimits;
use netwatch::record::{Format, RecordWriter};
use netwatch::time::Timestamp;

fn main() -> anyhow::Result<()> {
    let path = std::env::args().nth(1).context("usage: replay_stages FILE")?;
    let path = Path::new(&path);
    let read = stage("read (FileSource)", path, |_| {})?;
    let decode = stage("read + decode", path, |frame| {
        std::hint::black_box(DecodedFrame::from_frame(frame));
    })?;
    let mut engine = Engine::new(TableLimits::default());
    let unwritten = stage("read + decode + engine (no output)", path, |frame| {
        let _ = engine.advance_if_due(frame.ts, |_| Ok::<(), ()>(()));
        engine.ingest(frame);
    })?;
    let started = Instant::now();
    let _ = engine.finish(Timestamp::default(), |_| Ok::<(), ()>(()));
    let unwritten = unwritten + started.elapsed().as_secs_f64();
    let mut engine = Engine::new(TableLimits::default());
    let mut sink = RecordWriter::new(io::sink(), Format::Json);
    let mut records = 0u64;
    let flows = stage("read + decode + engine + JSON", path, |frame| {
        let _ = engine.advance_if_due(frame.ts, |r| {
            records += 1;
            sink.write(&r)
        });
        engine.ingest(frame);
    })?;
    let started = Instant::now();
    let _ = engine.finish(Timestamp::default(), |r| {
        records += 1;
        sink.write(&r)
    });
    let finish = started.elapsed().as_secs_f64();
    let mut out = io::stdout().lock();
    writeln!(out, "{records} records; finish (remaining flows' records) {finish:.3} s")?;
    writeln!(
        out,
        "decode {:.3} s, engine {:.3} s, JSON {:.3} s",
        decode - read,
        unwritten - decode,
        flows + finish - unwritten
    )?;
    Ok(())
}

/// Reads the whole file, handing each frame to `each`; prints and returns the seconds taken.
fn stage(
    label: &str,
    path: &Path,
    mut each: impl FnMut(&netwatch::capture::Frame<'_>),
) -> anyhow::Result<f64> {
    let mut source = FileSource::open(path)?;
    let started = Instant::now();
    let mut packets = 0u64;
    loop {
        match source.next_frame() {
            Next::Packet(frame) => {
                packets += 1;
                each(&frame);
            }
            Next::Idle => {}
            Next::End => break,
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    println!("{label:<34} {packets} packets in {seconds:.3} s");
    Ok(seconds)
}
