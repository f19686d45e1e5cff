//! The floor for capture-file benchmarks: open a file with libpcap (the `pcap` crate) and only
//! count packets and bytes. `cargo run --release --example pcap_count -- FILE`.
//!
//! Anything netwatch does on top of reading the file is measured against this.

use std::time::Instant;

use anyhow::Context;

fn main() -> anyhow::Result<()> {
    let path = std::env::args().nth(1).context("usage: pcap_count FILE")?;
    let started = Instant::now();
    let mut capture =
        pcap::Capture::from_file(&path).with_context(|| format!("cannot open '{path}'"))?;
    let (mut packets, mut bytes) = (0u64, 0u64);
    loop {
        match capture.next_packet() {
            Ok(packet) => {
                packets += 1;
                bytes += u64::from(packet.header.len);
            }
            Err(pcap::Error::NoMorePackets) => break,
            Err(e) => return Err(e).with_context(|| format!("cannot read '{path}'")),
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    println!("{packets} packets, {bytes} bytes in {seconds:.3} s");
    Ok(())
}
