//! Rendering: a pure function of the App onto a ratatui frame. Nothing here blocks, reads the
//! clock or the environment; the header, tabs and footer frame every screen.

mod detail;
mod flows;
mod lists;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

use super::app::{App, Row, Screen, SortColumn};
use super::keymap::KEYS;
use super::theme::Theme;
use crate::decode::sanitize_name;
use crate::record::human_bytes;

pub use flows::{verdict_label, visible_window};
pub use lists::{aggregate_filter, list_len};

/// Smallest usable terminal.
pub const MIN_WIDTH: u16 = 60;
pub const MIN_HEIGHT: u16 = 12;

/// Draws the whole screen.
/// Flow rows a terminal `height` lines tall shows at once (what PgUp/PgDn move by): the
/// layout's header, tabs and footer, and the table's title and column header, taken off.
#[must_use]
pub fn page_rows(height: u16) -> usize {
    usize::from(height.saturating_sub(2 + 1 + 1 + 3)).max(1)
}

pub fn render(app: &App, theme: Theme, frame: &mut Frame<'_>) {
    let area = frame.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let text = format!(
            "terminal too small: {}×{} (netwatch needs {MIN_WIDTH}×{MIN_HEIGHT}); enlarge it or press q",
            area.width, area.height
        );
        frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: true }), area);
        return;
    }
    let [header, tabs, body, footer] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(area);
    render_header(app, theme, frame, header);
    render_tabs(app, theme, frame, tabs);
    match app.screen {
        Screen::Flows => flows::render(app, theme, frame, body),
        Screen::Detail => detail::render(app, theme, frame, body),
        Screen::Pods | Screen::Namespaces | Screen::Policies => {
            lists::render(app, theme, frame, body)
        }
        Screen::Help => render_help(theme, frame, body),
    }
    render_footer(app, theme, frame, footer);
}

fn render_header(app: &App, theme: Theme, frame: &mut Frame<'_>, area: Rect) {
    let source = &app.source;
    let sep = Span::styled(" │ ", theme.dim());
    let mut first = vec![
        Span::styled(" netwatch", theme.header()),
        sep.clone(),
        Span::raw(clean(&source.host)),
        sep.clone(),
        Span::raw(format!("capture {}", clean(&source.captures.join(",")))),
        sep.clone(),
        Span::raw(format!("cluster {}", clean(&source.cluster))),
    ];
    if let Some(file) = &source.recording {
        first.push(sep.clone());
        first.push(Span::styled(format!("● REC {}", clean(file)), theme.egress_violation()));
    }
    if app.paused {
        first.push(sep.clone());
        first.push(Span::styled("PAUSED", theme.warning()));
    }
    let stats = &app.stats;
    let live = &app.records[..app.live_rows];
    let violations = live.iter().filter(|r| r.violation.is_some()).count();
    let leaks = live.iter().filter(|r| r.leak).count();
    let mut second = vec![
        Span::raw(format!(" {:.0} pkt/s", app.packets_per_sec)),
        sep.clone(),
        Span::raw(format!("drops {}", source.drops)),
        sep.clone(),
        Span::raw(format!("flows {} (evicted {})", stats.flows_active, stats.flows_evicted)),
        sep.clone(),
        Span::styled(
            format!("violations {violations} · leaks {leaks}"),
            if violations > 0 { theme.egress_violation() } else { Style::new() },
        ),
    ];
    if let Some(replay) = source.replay {
        second.push(sep);
        let at = replay.at.rfc3339();
        let clock = at.get(11..19).unwrap_or(&at);
        let state = if replay.finished { " (end of capture)" } else { "" };
        second.push(Span::raw(format!("replay {clock} {}{state}", app.speed.label())));
    }
    frame.render_widget(Paragraph::new(vec![Line::from(first), Line::from(second)]), area);
}

fn render_tabs(app: &App, theme: Theme, frame: &mut Frame<'_>, area: Rect) {
    let mut spans = vec![Span::raw(" ")];
    for (n, screen) in Screen::TABS.iter().enumerate() {
        let label = format!("{} {} ", n + 1, screen.title());
        let style = if *screen == app.tab { theme.selected() } else { theme.dim() };
        spans.push(Span::styled(label, style));
        spans.push(Span::raw(" "));
    }
    let arrow = if app.descending { "↓" } else { "↑" };
    let mut right = format!("sort {} {arrow}", app.sort.name());
    if !app.filter.is_empty() {
        right.push_str(&format!(" │ filter {}", clean(app.filter.text())));
    }
    if app.violations_only {
        right.push_str(" │ violations only");
    }
    spans.push(Span::styled(right, theme.dim()));
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn render_footer(app: &App, theme: Theme, frame: &mut Frame<'_>, area: Rect) {
    let line = if let Some(text) = &app.filter_input {
        let mut spans = vec![
            Span::styled("/", theme.header()),
            Span::raw(clean(text)),
            Span::styled("▏", theme.dim()),
        ];
        if let Some(error) = &app.filter_error {
            spans.push(Span::styled(format!("  {error}"), theme.warning()));
        }
        Line::from(spans)
    } else if let Some(status) = &app.status {
        Line::from(Span::styled(format!(" {}", clean(status)), theme.warning()))
    } else {
        let hints = match app.screen {
            Screen::Detail | Screen::Help => " Esc back · q quit",
            _ => {
                " Enter detail · / filter · v violations · s/S sort · p pause · Tab screens · ? help · q quit"
            }
        };
        Line::from(Span::styled(hints, theme.dim()))
    };
    frame.render_widget(Paragraph::new(line), area);
}

fn render_help(theme: Theme, frame: &mut Frame<'_>, area: Rect) {
    let mut lines = vec![Line::from(Span::styled(" Keys", theme.title())), Line::raw("")];
    for (keys, what) in KEYS {
        lines.push(Line::from(vec![
            Span::styled(format!(" {keys:<15}"), theme.header()),
            Span::raw(*what),
        ]));
    }
    lines.push(Line::raw(""));
    lines.push(Line::from(Span::styled(
        " Verdicts: leak = denied yet answered (the CNI is not enforcing) · deny↑ egress · deny↓ ingress · direct = external IP no DNS answer named",
        theme.dim(),
    )));
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), area);
}

/// Display text from the wire or the cluster, made safe for the terminal.
#[must_use]
pub fn clean(text: &str) -> String {
    sanitize_name(text)
}

/// Compact counts for narrow cells: `512`, `1.2K`, `3.4M`.
#[must_use]
pub fn compact(value: f64) -> String {
    const UNITS: [&str; 5] = ["", "K", "M", "G", "T"];
    let mut value = value.max(0.0);
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 { format!("{value:.0}") } else { format!("{value:.1}{}", UNITS[unit]) }
}

/// Orders two rows by one column, ascending.
#[must_use]
pub fn sort_key_cmp(column: SortColumn, a: Row<'_>, b: Row<'_>) -> std::cmp::Ordering {
    let (ra, rb) = (a.record, b.record);
    match column {
        SortColumn::Verdict => severity(a)
            .cmp(&severity(b))
            .then((ra.bytes.tx + ra.bytes.rx).cmp(&(rb.bytes.tx + rb.bytes.rx))),
        SortColumn::Rate => (ra.rates.0 + ra.rates.1).total_cmp(&(rb.rates.0 + rb.rates.1)),
        SortColumn::Bytes => (ra.bytes.tx + ra.bytes.rx).cmp(&(rb.bytes.tx + rb.bytes.rx)),
        SortColumn::Packets => {
            (ra.packets.tx + ra.packets.rx).cmp(&(rb.packets.tx + rb.packets.rx))
        }
        // Older flows have the greater age.
        SortColumn::Age => rb.first_seen.cmp(&ra.first_seen),
        SortColumn::Source => ra.src.label().cmp(&rb.src.label()),
        SortColumn::Destination => ra.dst.label().cmp(&rb.dst.label()),
    }
}

/// How much a row needs attention: leaks, then egress and ingress violations, then direct IP.
pub(crate) fn severity(row: Row<'_>) -> u8 {
    let record = row.record;
    let base = match (record.leak, record.violation) {
        (true, Some(_)) => 4,
        (_, Some(crate::policy::Direction::Egress)) => 3,
        (_, Some(crate::policy::Direction::Ingress)) => 2,
        _ if record.direct_ip => 1,
        _ => 0,
    };
    // Ended flows sort below live ones of the same kind.
    base * 2 + u8::from(!row.ended)
}

/// `human_bytes` for totals in cells.
fn bytes(value: u64) -> String {
    human_bytes(value)
}
