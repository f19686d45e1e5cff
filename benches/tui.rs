//! Building and rendering one TUI frame with 100,000 flows in the table (issue 4's target:
//! ≤ 5 ms median): filter, select the visible window, build its rows, draw on a 160×48 buffer.

use criterion::{Criterion, criterion_group, criterion_main};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use netwatch::snapshot::FlowRecord;
use netwatch::tui::app::{Action, App, Feed};
use netwatch::tui::fixtures::demo_app;
use netwatch::tui::theme::Theme;
use netwatch::tui::views;

const FLOWS: usize = 100_000;

/// The demo's flows, copied with fresh ids and ports until there are `FLOWS` of them.
fn big_app() -> App {
    let demo = demo_app();
    let templates: Vec<FlowRecord> = demo.rows.iter().map(|row| row.record.clone()).collect();
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

criterion_group!(benches, render);
criterion_main!(benches);
