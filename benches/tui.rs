//! Building and rendering one TUI frame with 100,000 flows in the table (issue 4's target:
//! ≤ 5 ms median): filter, select the visible window, build its rows, draw on a 160×48 buffer.
//! And what the live view does every tick before drawing, with 100,000 flows in the engine:
//! every flow's record, handed to the App as its rows.

use criterion::{Criterion, criterion_group, criterion_main};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use netwatch::capture::{DecodedFrame, Frame};
use netwatch::decode::LinkType;
use netwatch::engine::Engine;
use netwatch::flow::TableLimits;
use netwatch::snapshot::FlowRecord;
use netwatch::time::Timestamp;
use netwatch::tui::app::{Action, App, Feed};
use netwatch::tui::fixtures::demo_app;
use netwatch::tui::theme::Theme;
use netwatch::tui::views;

const FLOWS: usize = 100_000;

/// The demo's flows, copied with fresh ids and ports until there are `FLOWS` of them.
fn big_app() -> App {
    let demo = demo_app();
    let templates: Vec<FlowRecord> = demo.records.clone();
    let live: Vec<FlowRecord> = (0..FLOWS)
        .map(|n| {
            let mut record = templates[n % templates.len()].clone();
            record.flow_id = n as u64 + 1;
            record.src.port = Some(10_000 + (n % 50_000) as u16);
            record.bytes.tx += n as u64;
            record.rates = ((n % 977) as f64, (n % 313) as f64);
            record
        })
        .collect();
    let mut app = App::new(true);
    app.apply_feed(Feed { now: demo.now, live, cluster: demo.cluster.clone(), ..Feed::default() });
    app
}

/// Resident memory of this process, from /proc (Linux), in MiB.
fn resident_mib() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0.0);
    pages * 4096.0 / (1024.0 * 1024.0)
}

fn render(c: &mut Criterion) {
    let before = resident_mib();
    let mut app = big_app();
    eprintln!("App with {FLOWS} flows: {:.0} MiB resident more", resident_mib() - before);
    let mut terminal = Terminal::new(TestBackend::new(160, 48)).expect("a test terminal");
    let theme = Theme::new(false);
    let mut group = c.benchmark_group("tui_100k_flows");
    group.sample_size(30);
    group.bench_function("flows_screen", |b| {
        b.iter(|| terminal.draw(|frame| views::render(&app, theme, frame)).map(|_| ()));
    });
    app.update(Action::Down);
    app.update(Action::Down);
    app.update(Action::CycleSort);
    group.bench_function("flows_screen_sorted_by_rate", |b| {
        b.iter(|| terminal.draw(|frame| views::render(&app, theme, frame)).map(|_| ()));
    });
    group.finish();
}

/// An engine holding `FLOWS` UDP flows (distinct source address and port pairs).
fn busy_engine() -> (Engine, Timestamp) {
    let mut engine = Engine::new(TableLimits::default());
    let start = 1_700_000_000_000_000_000u64;
    for n in 0..FLOWS {
        let mut frame = vec![0u8; 14 + 20 + 8 + 32];
        frame[12..14].copy_from_slice(&[0x08, 0x00]);
        frame[14] = 0x45;
        frame[16..18].copy_from_slice(&(20u16 + 8 + 32).to_be_bytes());
        frame[22] = 64;
        frame[23] = 17;
        frame[26..30].copy_from_slice(&[10, 1, (n >> 8) as u8, n as u8]);
        frame[30..34].copy_from_slice(&[10, 99, 0, 3]);
        frame[34..36].copy_from_slice(&(1024 + (n % 60_000) as u16).to_be_bytes());
        frame[36..38].copy_from_slice(&53u16.to_be_bytes());
        frame[38..40].copy_from_slice(&(8u16 + 32).to_be_bytes());
        let ts = Timestamp(start + n as u64 * 1_000);
        let frame = Frame {
            ts,
            interface: 0,
            linktype: Some(LinkType::Ethernet),
            data: &frame,
            wire_len: 74,
        };
        let decoded = DecodedFrame::from_frame(&frame);
        engine.ingest_decoded(decoded.ts, decoded.interface, decoded.decoded);
    }
    (engine, Timestamp(start + 200_000_000))
}

fn live_tick(c: &mut Criterion) {
    let (mut engine, now) = busy_engine();
    let mut app = App::new(false);
    let mut group = c.benchmark_group("live_view_tick_100k_flows");
    group.sample_size(10);
    group.bench_function("records_to_rows", |b| {
        b.iter(|| {
            // As the live view does: last tick's emptied list, filled again.
            let mut live = app.take_spare_live();
            engine.live_records_into(now, &mut live);
            assert_eq!(live.len(), FLOWS);
            app.apply_feed(Feed { now, live, ..Feed::default() });
        });
    });
    group.finish();
}

criterion_group!(benches, render, live_tick);
criterion_main!(benches);
