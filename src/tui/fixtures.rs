//! Test data for the TUI: the bundled demo, run through the real engine.

use std::sync::Arc;

use crate::cluster::snapshot;
use crate::engine::Engine;
use crate::flow::TableLimits;
use crate::snapshot::FlowRecord;
use crate::time::Timestamp;

use super::ClusterFacts;
use super::app::{App, Feed, ReplayPosition, Source, Speed};

/// The engine after the whole demo capture, with the demo cluster loaded.
#[must_use]
pub fn demo_engine() -> (Engine, Timestamp) {
    let mut engine = Engine::new(TableLimits::default());
    let loaded =
        snapshot::parse("demo-cluster.yaml", crate::demo::CLUSTER).expect("the demo cluster loads");
    for event in loaded.events {
        engine.apply(event);
    }
    engine.set_interfaces(vec!["demo.pcap".into()]);
    let mut last = Timestamp::default();
    for frame in crate::synth::scenario::demo() {
        let ts = Timestamp(frame.ts_nanos);
        engine.ingest(&frame.as_frame());
        last = ts;
    }
    (engine, last)
}

/// Every demo flow's record, as the end of the capture sees them.
#[must_use]
pub fn demo_records() -> Vec<FlowRecord> {
    let (mut engine, last) = demo_engine();
    engine.live_records(last)
}

/// An App showing the demo at the end of its capture, first row selected.
#[must_use]
pub fn demo_app() -> App {
    let (mut engine, last) = demo_engine();
    let live = engine.live_records(last);
    let (view, set) = engine.cluster_and_policies();
    let cluster = Arc::new(ClusterFacts::from_view(view, set));
    let mut app = App::new(true);
    app.apply_feed(Feed {
        now: last,
        live,
        ended: Vec::new(),
        stats: engine.stats(),
        source: Source {
            host: "replay".into(),
            captures: vec!["demo.pcap".into()],
            cluster: "snapshot demo-cluster.yaml".into(),
            recording: None,
            replay: Some(ReplayPosition { at: last, speed: Speed::Times(1.0), finished: true }),
            drops: 0,
        },
        cluster,
        packets_per_sec: 0.0,
    });
    app
}
