//! The pipeline's per-packet cost, from memory: decode alone, and decode → flow table → names →
//! identity → records with the demo cluster loaded. The whole-file comparison with the pcap
//! floor and tshark is `scripts/bench-replay.sh`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use netwatch::cluster::snapshot;
use netwatch::decode::{LinkType, decode};
use netwatch::engine::Engine;
use netwatch::flow::TableLimits;
use netwatch::flow::dedup::{Dedup, DedupLimits, PacketFacts};
use netwatch::synth::{TimedFrame, bench_capture};
use netwatch::time::Timestamp;

const PACKETS: usize = 200_000;

fn frames() -> Vec<TimedFrame> {
    bench_capture(PACKETS, 7).collect()
}

fn pipeline(c: &mut Criterion) {
    let frames = frames();
    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Elements(PACKETS as u64));
    group.sample_size(10);
    group.bench_function("decode", |b| {
        b.iter(|| {
            let mut decoded = 0usize;
            for frame in &frames {
                decoded += usize::from(decode(Some(LinkType::Ethernet), &frame.frame).is_ok());
            }
            decoded
        });
    });
    let cluster =
        snapshot::parse("demo-cluster.yaml", netwatch::demo::CLUSTER).expect("demo cluster loads");
    group.bench_function("ingest_and_records", |b| {
        b.iter(|| {
            let mut engine = Engine::new(TableLimits::default());
            for event in cluster.events.clone() {
                engine.apply(event);
            }
            let mut records = 0usize;
            let mut last = Timestamp::default();
            for (i, frame) in frames.iter().enumerate() {
                let ts = Timestamp(frame.ts_nanos);
                if i % 4096 == 0 {
                    let _ = engine.advance(ts, |_| {
                        records += 1;
                        Ok::<(), ()>(())
                    });
                }
                engine.ingest(&frame.as_frame());
                last = ts;
            }
            let _ = engine.finish(last, |_| {
                records += 1;
                Ok::<(), ()>(())
            });
            records
        });
    });
    // Counting once, as a live capture runs it: every packet once (one interface), and every
    // packet twice (the source pod's veth, then the destination's a few microseconds later).
    let facts: Vec<(Timestamp, PacketFacts)> = frames
        .iter()
        .filter_map(|frame| {
            let packet = decode(Some(LinkType::Ethernet), &frame.frame).ok()?.packet;
            Some((Timestamp(frame.ts_nanos), PacketFacts::of(&packet, Some(packet.ttl))))
        })
        .collect();
    group.bench_function("dedup_one_interface", |b| {
        b.iter(|| {
            let mut dedup = Dedup::new(DedupLimits::default());
            for (ts, packet) in &facts {
                dedup.observe(packet, 0, *ts);
            }
            dedup.counts().copies
        });
    });
    group.bench_function("dedup_two_interfaces", |b| {
        b.iter(|| {
            let mut dedup = Dedup::new(DedupLimits::default());
            for (ts, packet) in &facts {
                dedup.observe(packet, 0, *ts);
                dedup.observe(packet, 1, Timestamp(ts.0 + 5_000));
            }
            dedup.counts().copies
        });
    });
    group.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
