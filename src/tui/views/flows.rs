//! The flows table: one row per flow, violations standing out, only the visible window built.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Row as TableRow, Table};

use super::{bytes, clean, compact};
use crate::policy::{Decision, Direction};
use crate::record::{elide, fit_label, human_duration};
use crate::snapshot::FlowRecord;
use crate::tui::app::{App, Row, SortKey};
use crate::tui::theme::Theme;

/// The rows to draw for a table `height` rows tall: indices into `app.rows` in display order,
/// the position of the selection among them, and how many rows pass the filter. Selects the
/// window rather than sorting every row: O(n + k log k) for a window ending at rank k, on small
/// precomputed keys.
#[must_use]
pub fn visible_window(app: &App, height: usize) -> (Vec<usize>, Option<usize>, usize) {
    let filtered = app.filtered();
    let total = filtered.len();
    if total == 0 || height == 0 {
        return (Vec::new(), None, total);
    }
    let window = if app.sort_keys.len() == app.records.len() {
        // Keys were made once per feed or sort change: each frame only selects among them.
        let mut keyed: Vec<(SortKey, usize)> =
            filtered.iter().map(|i| (app.sort_keys[*i], *i)).collect();
        let selected_key = app
            .selected
            .and_then(|id| keyed.iter().find(|(_, i)| app.records[*i].flow_id == id).copied());
        window_of(&mut keyed, selected_key, height, |a, b| a.cmp(b))
    } else {
        let mut plain: Vec<usize> = filtered;
        let selected = app
            .selected
            .and_then(|id| plain.iter().copied().find(|i| app.records[*i].flow_id == id));
        window_of(&mut plain, selected, height, |a, b| app.compare(*a, *b))
    };
    let indices: Vec<usize> = window.0;
    (indices, window.1, total)
}

/// The window of `items` in sorted order that shows `selected`, and where it is in it.
fn window_of<T: Copy + IndexOf>(
    items: &mut [T],
    selected: Option<T>,
    height: usize,
    compare: impl Fn(&T, &T) -> std::cmp::Ordering,
) -> (Vec<usize>, Option<usize>) {
    // The selection's rank is the number of items that sort before it.
    let rank = selected.map_or(0, |s| items.iter().filter(|i| compare(i, &s).is_lt()).count());
    let offset = rank.saturating_sub(height - 1);
    let end = (offset + height).min(items.len());
    // Two selections and a sort of the window alone: O(n + height log height) wherever the
    // window is, even deep in the list.
    if offset > 0 {
        items.select_nth_unstable_by(offset, &compare);
    }
    let tail = &mut items[offset..];
    let take = end - offset;
    if take < tail.len() {
        tail.select_nth_unstable_by(take - 1, &compare);
    }
    tail[..take].sort_unstable_by(&compare);
    let window: Vec<usize> = tail[..take].iter().map(IndexOf::index).collect();
    let cursor = selected.and_then(|s| window.iter().position(|i| *i == s.index()));
    (window, cursor)
}

/// Items that know which row they stand for.
trait IndexOf {
    fn index(&self) -> usize;
}

impl IndexOf for usize {
    fn index(&self) -> usize {
        *self
    }
}

impl IndexOf for (SortKey, usize) {
    fn index(&self) -> usize {
        self.1
    }
}

/// The verdict cell's word and style.
#[must_use]
pub fn verdict_label(record: &FlowRecord, theme: Theme) -> (&'static str, Style) {
    match (record.leak, record.violation) {
        (true, Some(_)) => ("LEAK", theme.leak()),
        (_, Some(Direction::Egress)) => ("deny↑", theme.egress_violation()),
        (_, Some(Direction::Ingress)) => ("deny↓", theme.ingress_violation()),
        _ if record.direct_ip => ("direct", theme.direct_ip()),
        _ => {
            let sides = [record.verdict.egress.decision, record.verdict.ingress.decision];
            if sides.contains(&Decision::Partial) {
                ("partial", theme.warning())
            } else if sides.contains(&Decision::Allow) {
                ("allow", theme.allowed())
            } else if sides.contains(&Decision::Unrestricted) {
                ("open", Style::new())
            } else {
                ("·", theme.dim())
            }
        }
    }
}

pub fn render(app: &App, theme: Theme, frame: &mut Frame<'_>, area: Rect) {
    let wide = area.width >= 120;
    let height = usize::from(area.height.saturating_sub(3));
    let (window, cursor, total) = visible_window(app, height);
    let mut widths = vec![
        Constraint::Length(7),
        Constraint::Fill(2),
        Constraint::Fill(3),
        Constraint::Length(9),
        Constraint::Length(11),
        Constraint::Length(6),
    ];
    let mut header = vec!["VERDICT", "SOURCE", "DESTINATION", "PROTO", "RATE ↑/↓", "AGE"];
    if wide {
        widths.extend([Constraint::Length(9), Constraint::Length(9), Constraint::Length(11)]);
        header.extend(["BYTES", "PKTS", "STATE"]);
    }
    // Column widths for eliding labels: what the fills get of the space left.
    let fixed: u16 = if wide { 7 + 9 + 11 + 6 + 9 + 9 + 11 + 8 } else { 7 + 9 + 11 + 6 + 5 };
    let flexible = usize::from(area.width.saturating_sub(fixed + 2));
    let source_width = flexible * 2 / 5;
    let destination_width = flexible - source_width;
    let rows: Vec<TableRow<'_>> = window
        .iter()
        .enumerate()
        .map(|(n, index)| {
            let row = app.row(*index);
            // A row's style replaces the one it had: the selection goes on top of the dimming.
            let ended = if row.ended { theme.ended() } else { Style::new() };
            let style = if Some(n) == cursor { ended.patch(theme.selected()) } else { ended };
            flow_row(app, row, theme, wide, source_width, destination_width).style(style)
        })
        .collect();
    let title = format!(" Flows {}/{} ", window.len().min(total), total);
    let table = Table::new(rows, widths)
        .header(TableRow::new(header).style(theme.title()))
        .block(Block::new().borders(Borders::TOP).title(title).border_style(theme.dim()));
    frame.render_widget(table, area);
    if total == 0 {
        let empty = if app.records.is_empty() {
            " waiting for packets…"
        } else {
            " no flow matches the filter (Esc clears it)"
        };
        let line_area = Rect { y: area.y + 2, height: 1, ..area };
        frame.render_widget(Line::from(Span::styled(empty, theme.dim())), line_area);
    }
}

fn flow_row<'a>(
    app: &App,
    row: Row<'a>,
    theme: Theme,
    wide: bool,
    source_width: usize,
    destination_width: usize,
) -> TableRow<'a> {
    let record = row.record;
    let (word, verdict_style) = verdict_label(record, theme);
    let marker = if record.direct_ip && record.violation.is_some() { " !IP" } else { "" };
    let destination = fit_label(&record.dst, destination_width.saturating_sub(marker.len()));
    let port = record.dst.port.map_or_else(
        || record.protocol.name().into_owned(),
        |p| format!("{}/{p}", record.protocol.name()),
    );
    let rate = format!("{}/{}", compact(record.rates.0), compact(record.rates.1));
    let age = human_duration(app.now.since(record.first_seen));
    let mut cells = vec![
        Cell::new(word).style(verdict_style),
        Cell::new(clean(&fit_label(&record.src, source_width))),
        Cell::new(Line::from(vec![
            Span::raw(clean(&destination)),
            Span::styled(marker, theme.direct_ip()),
        ])),
        Cell::new(port),
        Cell::new(rate),
        Cell::new(elide(&age, 6)),
    ];
    if wide {
        let state = record.tcp.map_or("", crate::flow::TcpState::name);
        cells.extend([
            Cell::new(bytes(record.bytes.tx + record.bytes.rx)),
            Cell::new(compact((record.packets.tx + record.packets.rx) as f64)),
            Cell::new(if row.ended { "ended" } else { state }),
        ]);
    }
    TableRow::new(cells)
}
