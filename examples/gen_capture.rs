//! Writes a benchmark capture: `cargo run --release --example gen_capture -- --packets 1000000
//! --out /tmp/bench.pcap [--seed 1]`.
//!
//! Streams `synth::bench_capture` into a classic pcap file (Ethernet, nanosecond timestamps)
//! without holding the frames in memory.

use std::fs::File;
use std::io::BufWriter;

use anyhow::{Context, bail};
use netwatch::synth::{self, PcapWriter, linktype};

struct Args {
    packets: usize,
    seed: u64,
    out: String,
}

fn parse_args() -> anyhow::Result<Args> {
    let usage = "usage: gen_capture --packets N --out FILE [--seed S]";
    let mut packets = None;
    let mut seed = 1;
    let mut out = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(|| format!("'{flag}' needs a value\n{usage}"));
        match flag.as_str() {
            "--packets" => {
                let text = value()?;
                packets = Some(
                    text.parse().with_context(|| format!("--packets '{text}' is not a count"))?,
                );
            }
            "--seed" => {
                let text = value()?;
                seed = text.parse().with_context(|| format!("--seed '{text}' is not a number"))?;
            }
            "--out" => out = Some(value()?),
            "-h" | "--help" => {
                println!("{usage}");
                std::process::exit(0);
            }
            other => bail!("unknown argument '{other}'\n{usage}"),
        }
    }
    match (packets, out) {
        (Some(packets), Some(out)) => Ok(Args { packets, seed, out }),
        _ => bail!("--packets and --out are required\n{usage}"),
    }
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let file = File::create(&args.out).with_context(|| format!("cannot create '{}'", args.out))?;
    let mut writer = PcapWriter::new(BufWriter::with_capacity(1 << 20, file), linktype::ETHERNET)?;
    let (mut packets, mut bytes) = (0u64, 0u64);
    for frame in synth::bench_capture(args.packets, args.seed) {
        packets += 1;
        bytes += frame.frame.len() as u64;
        writer.write(&frame).with_context(|| format!("cannot write '{}'", args.out))?;
    }
    writer.finish().with_context(|| format!("cannot flush '{}'", args.out))?;
    println!("wrote {packets} packets, {bytes} bytes of frames to {}", args.out);
    Ok(())
}
