//! Recording throughput from memory, in bytes of pcapng per second: the writer on the benchmark
//! capture (200,000 frames) into a `Vec` and into `io::sink()` (target ≥ 1 GB/s), and the
//! reader — netwatch's pcapng reader against libpcap on the same packets as classic pcap, both
//! from a file in the page cache — and the whole headless replay of both, since a recording
//! must replay within 1.5× of the same packets as plain pcap.

use std::hint::black_box;
use std::io;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use netwatch::capture::{FileSource, Next, PacketSource};
use netwatch::cluster::{ClusterEvent, snapshot};
use netwatch::engine::Engine;
use netwatch::flow::TableLimits;
use netwatch::record::pcapng::{Destination, InterfaceDesc, PcapngWriter, WriterOptions};
use netwatch::record::pcapng_reader::PcapngSource;
use netwatch::synth::{TimedFrame, bench_capture, linktype, write_pcap};
use netwatch::time::Timestamp;

const PACKETS: usize = 200_000;

fn demo_cluster() -> Vec<ClusterEvent> {
    snapshot::parse("demo-cluster.yaml", netwatch::demo::CLUSTER)
        .expect("demo cluster loads")
        .events
}

fn write<D: Destination>(dest: D, frames: &[TimedFrame]) -> D {
    let interfaces = [InterfaceDesc::new("eth0", linktype::ETHERNET as u16)];
    let start = Timestamp(frames[0].ts_nanos);
    let mut writer = PcapngWriter::new(
        dest,
        "bench.pcapng",
        &interfaces,
        &demo_cluster(),
        start,
        WriterOptions::default(),
    )
    .expect("writes to memory");
    for frame in frames {
        let len = u32::try_from(frame.frame.len()).unwrap_or(u32::MAX);
        writer.write_frame(0, Timestamp(frame.ts_nanos), &frame.frame, len).expect("in memory");
    }
    writer.finish().expect("in memory")
}

fn count_frames(source: &mut impl PacketSource) -> usize {
    let mut count = 0;
    while let Next::Packet(frame) = source.next_frame() {
        count += black_box(frame.data.len()) & 1;
        count += 1;
    }
    count
}

fn recording(c: &mut Criterion) {
    let frames: Vec<TimedFrame> = bench_capture(PACKETS, 1).collect();
    let pcapng = write(Vec::new(), &frames);
    let mut pcap = Vec::new();
    write_pcap(&mut pcap, linktype::ETHERNET, &frames).expect("in memory");

    let mut group = c.benchmark_group("recording");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(pcapng.len() as u64));
    // The same vector every time, so the figure is the writer's and not the page faults of a
    // fresh 100 MB allocation.
    let mut reused = Vec::with_capacity(pcapng.len());
    group.bench_function("write_pcapng_to_vec", |b| {
        b.iter(|| {
            reused.clear();
            reused = write(std::mem::take(&mut reused), &frames);
            reused.len()
        });
    });
    group.bench_function("write_pcapng_to_sink", |b| b.iter(|| write(io::sink(), &frames)));
    group.bench_function("read_pcapng_from_memory", |b| {
        b.iter(|| {
            let mut source =
                PcapngSource::from_reader("bench.pcapng", &pcapng[..]).expect("pcapng");
            count_frames(&mut source)
        });
    });

    let dir = tempfile::tempdir().expect("a temporary directory");
    let pcapng_path = dir.path().join("bench.pcapng");
    let pcap_path = dir.path().join("bench.pcap");
    std::fs::write(&pcapng_path, &pcapng).expect("temporary file");
    std::fs::write(&pcap_path, &pcap).expect("temporary file");
    group.bench_function("read_pcapng_file_netwatch", |b| {
        b.iter(|| count_frames(&mut PcapngSource::open(&pcapng_path).expect("pcapng")));
    });
    group.throughput(Throughput::Bytes(pcap.len() as u64));
    group.bench_function("read_pcap_file_libpcap", |b| {
        b.iter(|| count_frames(&mut FileSource::open(&pcap_path).expect("pcap")));
    });
    group.finish();

    // The whole headless replay (reader thread, decode, engine, records) of the same packets:
    // the recording must stay within 1.5x of plain pcap.
    let mut group = c.benchmark_group("replay");
    group.sample_size(10);
    group.throughput(Throughput::Elements(PACKETS as u64));
    group.bench_function("pcap_libpcap", |b| {
        // The same cluster view, from the snapshot rather than the file.
        b.iter(|| replay(FileSource::open(&pcap_path).expect("pcap"), demo_cluster()));
    });
    group.bench_function("pcapng_netwatch", |b| {
        b.iter(|| {
            let mut source = PcapngSource::open(&pcapng_path).expect("pcapng");
            let events = source.take_cluster_events().into_iter().map(|e| e.event).collect();
            replay(source, events)
        });
    });
    group.finish();
}

/// Replays a source through the engine; returns how many records came out.
fn replay<S: PacketSource + Send + 'static>(source: S, events: Vec<ClusterEvent>) -> usize {
    let mut engine = Engine::new(TableLimits::default());
    for event in events {
        engine.apply(event);
    }
    engine.set_interfaces(source.interfaces());
    let mut records = 0;
    let gate = netwatch::run::ClusterGate { recorded: true, pinned_policies: false };
    netwatch::run::replay(source, &mut engine, gate, |_| {
        records += 1;
        Ok(())
    })
    .expect("replays");
    records
}

criterion_group!(benches, recording);
criterion_main!(benches);
