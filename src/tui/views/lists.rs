//! Pods, Namespaces and Policies: traffic aggregated from the flow rows, and every policy with
//! the pods it selects, the flows it decided, and the audit findings.

use std::collections::BTreeMap;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Paragraph, Row as TableRow, Table, Wrap};

use super::{bytes, clean, compact};
use crate::identity::EndpointKind;
use crate::policy::Decision;
use crate::tui::app::{App, Screen};
use crate::tui::theme::Theme;

/// Traffic of one pod or namespace.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Aggregate {
    pub name: String,
    pub flows: usize,
    pub sent: u64,
    pub received: u64,
    pub rate: f64,
    pub external: usize,
    pub violations: usize,
}

/// Aggregates the flow rows by pod (`ns/name`) or by namespace, busiest first.
#[must_use]
pub fn aggregates(app: &App, by_namespace: bool) -> Vec<Aggregate> {
    let mut groups: BTreeMap<String, (Aggregate, std::collections::BTreeSet<std::net::IpAddr>)> =
        BTreeMap::new();
    for row in app.rows() {
        let record = row.record;
        // A flow inside one group (two pods of a namespace) counts for it once.
        let mut source_key = None;
        for (endpoint, is_source) in [(&record.src, true), (&record.dst, false)] {
            let Some(namespace) = &endpoint.namespace else { continue };
            if !by_namespace && endpoint.kind != EndpointKind::Pod {
                continue;
            }
            let key = if by_namespace {
                namespace.clone()
            } else {
                format!("{namespace}/{}", endpoint.name.as_deref().unwrap_or("?"))
            };
            if is_source {
                source_key = Some(key.clone());
            } else if source_key.as_ref() == Some(&key) {
                continue;
            }
            let (aggregate, external) = groups.entry(key.clone()).or_default();
            aggregate.name = key;
            aggregate.flows += 1;
            let (sent, received) = if is_source {
                (record.bytes.tx, record.bytes.rx)
            } else {
                (record.bytes.rx, record.bytes.tx)
            };
            aggregate.sent += sent;
            aggregate.received += received;
            if !row.ended {
                aggregate.rate += record.rates.0 + record.rates.1;
            }
            if record.violation.is_some() {
                aggregate.violations += 1;
            }
            if is_source && record.dst.kind == EndpointKind::External {
                external.insert(record.dst.ip);
            }
        }
    }
    let mut list: Vec<Aggregate> = groups
        .into_values()
        .map(|(mut aggregate, external)| {
            aggregate.external = external.len();
            aggregate
        })
        .collect();
    list.sort_by(|a, b| {
        b.violations
            .cmp(&a.violations)
            .then((b.sent + b.received).cmp(&(a.sent + a.received)))
            .then(a.name.cmp(&b.name))
    });
    list
}

/// The filter text that Enter on a Pods or Namespaces row applies to the flows screen.
#[must_use]
pub fn aggregate_filter(app: &App, index: usize) -> Option<String> {
    let by_namespace = match app.screen {
        Screen::Pods => false,
        Screen::Namespaces => true,
        _ => return None,
    };
    let aggregate = aggregates(app, by_namespace).into_iter().nth(index)?;
    // A pod's row: that pod exactly (not every pod whose name contains it, nor a flow whose
    // other end is in the namespace).
    Some(if by_namespace {
        format!("ns:{}", aggregate.name)
    } else {
        format!("pod:{}", aggregate.name)
    })
}

/// Rows of the current list screen.
#[must_use]
pub fn list_len(app: &App) -> usize {
    match app.screen {
        Screen::Pods => aggregates(app, false).len(),
        Screen::Namespaces => aggregates(app, true).len(),
        Screen::Policies => app.cluster.policies.len(),
        _ => 0,
    }
}

pub fn render(app: &App, theme: Theme, frame: &mut Frame<'_>, area: Rect) {
    match app.screen {
        Screen::Policies => render_policies(app, theme, frame, area),
        screen => render_aggregates(app, theme, frame, area, screen == Screen::Namespaces),
    }
}

fn highlight(n: usize, app: &App, theme: Theme) -> Style {
    if n == app.list_index { theme.selected() } else { Style::new() }
}

/// The first row to show so that the selected one is on screen.
fn scroll(app: &App, height: usize) -> usize {
    app.list_index.saturating_sub(height.saturating_sub(1))
}

fn render_aggregates(
    app: &App,
    theme: Theme,
    frame: &mut Frame<'_>,
    area: Rect,
    by_namespace: bool,
) {
    let list = aggregates(app, by_namespace);
    let height = usize::from(area.height.saturating_sub(3));
    let skip = scroll(app, height);
    let rows: Vec<TableRow<'_>> = list
        .iter()
        .enumerate()
        .skip(skip)
        .take(height)
        .map(|(n, a)| {
            let style = if a.violations > 0 { theme.egress_violation() } else { Style::new() };
            TableRow::new(vec![
                clean(&a.name),
                a.flows.to_string(),
                bytes(a.sent),
                bytes(a.received),
                compact(a.rate),
                a.external.to_string(),
                a.violations.to_string(),
            ])
            .style(style.patch(highlight(n, app, theme)))
        })
        .collect();
    let title = if by_namespace { " Namespaces " } else { " Pods " };
    let table = Table::new(
        rows,
        [
            Constraint::Fill(1),
            Constraint::Length(6),
            Constraint::Length(9),
            Constraint::Length(9),
            Constraint::Length(8),
            Constraint::Length(9),
            Constraint::Length(10),
        ],
    )
    .header(
        TableRow::new(["NAME", "FLOWS", "SENT", "RECEIVED", "B/S", "EXTERNAL", "VIOLATIONS"])
            .style(theme.title()),
    )
    .block(
        Block::new()
            .borders(Borders::TOP)
            .title(format!("{title}({}) — Enter shows their flows ", list.len()))
            .border_style(theme.dim()),
    );
    frame.render_widget(table, area);
}

fn render_policies(app: &App, theme: Theme, frame: &mut Frame<'_>, area: Rect) {
    let audit_height =
        u16::try_from(app.cluster.audit.len() + 1).unwrap_or(u16::MAX).min(area.height / 2).max(3);
    let [top, bottom] =
        Layout::vertical([Constraint::Min(4), Constraint::Length(audit_height)]).areas(area);
    let height = usize::from(top.height.saturating_sub(3));
    let skip = scroll(app, height);
    let rows: Vec<TableRow<'_>> = app
        .cluster
        .policies
        .iter()
        .enumerate()
        .skip(skip)
        .take(height)
        .map(|(n, policy)| {
            let decided = |decision: Decision| {
                app.records
                    .iter()
                    .filter(|r| {
                        let verdict = &r.verdict;
                        [&verdict.egress, &verdict.ingress].iter().any(|side| {
                            side.decision == decision && side.policies.contains(&policy.key)
                        })
                    })
                    .count()
            };
            TableRow::new(vec![
                clean(&policy.key),
                policy.types.clone(),
                policy.selected_pods.to_string(),
                decided(Decision::Allow).to_string(),
                decided(Decision::Deny).to_string(),
            ])
            .style(highlight(n, app, theme))
        })
        .collect();
    let table = Table::new(
        rows,
        [
            Constraint::Fill(1),
            Constraint::Length(16),
            Constraint::Length(6),
            Constraint::Length(8),
            Constraint::Length(8),
        ],
    )
    .header(TableRow::new(["POLICY", "TYPES", "PODS", "ALLOWED", "DENIED"]).style(theme.title()))
    .block(
        Block::new()
            .borders(Borders::TOP)
            .title(format!(" Policies ({}) ", app.cluster.policies.len()))
            .border_style(theme.dim()),
    );
    frame.render_widget(table, top);
    let lines: Vec<Line<'_>> =
        app.cluster.audit.iter().map(|line| Line::raw(format!(" {}", clean(line)))).collect();
    let audit = Paragraph::new(lines)
        .wrap(Wrap { trim: false })
        .block(Block::new().borders(Borders::TOP).title(" Audit ").border_style(theme.dim()));
    frame.render_widget(audit, bottom);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::app::Feed;
    use crate::tui::fixtures::demo_app;

    /// A flow between two pods of one namespace is one flow of that namespace, its bytes sent
    /// and received once; each pod has it once.
    #[test]
    fn a_flow_inside_a_namespace_counts_once_for_it() {
        let mut record = demo_app().records[0].clone();
        for (end, name) in [(&mut record.src, "web"), (&mut record.dst, "db")] {
            end.kind = EndpointKind::Pod;
            end.namespace = Some("shop".into());
            end.name = Some(name.into());
        }
        record.bytes.tx = 100;
        record.bytes.rx = 7;
        let mut app = App::new(true);
        app.apply_feed(Feed { live: vec![record], ..Feed::default() });
        let shop = aggregates(&app, true);
        assert_eq!(shop.len(), 1);
        assert_eq!((shop[0].flows, shop[0].sent, shop[0].received), (1, 100, 7));
        let pods = aggregates(&app, false);
        let flows: Vec<_> = pods.iter().map(|a| (a.name.as_str(), a.flows)).collect();
        assert_eq!(flows, [("shop/db", 1), ("shop/web", 1)]);
    }
}
