//! The cluster view at scale: applying the initial sync of 50,000 pods and 5,000 policies (with
//! the IP index rebuilt once), as the watcher delivers it. Memory is measured by
//! `examples/cluster_memory.rs`, since criterion measures time only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "cluster/synthetic.rs"]
mod synthetic;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use netwatch::cluster::ClusterView;

fn initial_sync(c: &mut Criterion) {
    let mut group = c.benchmark_group("cluster");
    group.sample_size(10);
    group.bench_function("initial sync 50k pods + 5k policies, apply + reindex", |b| {
        b.iter_batched(
            || synthetic::initial_sync(50_000, 5_000),
            |events| {
                let mut view = ClusterView::new();
                for event in events {
                    view.apply(event);
                }
                view.reindex();
                view
            },
            BatchSize::LargeInput,
        );
    });
    group.finish();
}

criterion_group!(benches, initial_sync);
criterion_main!(benches);
