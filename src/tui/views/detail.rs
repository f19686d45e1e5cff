//! One flow in full: both ends with labels and where their names came from, counters, a rate
//! sparkline, and the policy explanation for egress and ingress.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Sparkline, Wrap};

use super::{bytes, clean, compact, verdict_label};
use crate::policy::SideVerdict;
use crate::record::human_duration;
use crate::snapshot::{EndpointRecord, NameSource};
use crate::tui::app::App;
use crate::tui::theme::Theme;

pub fn render(app: &App, theme: Theme, frame: &mut Frame<'_>, area: Rect) {
    let Some(row) = app.selected_row() else {
        let text = Paragraph::new(" The selected flow is gone. Esc goes back to the flows.");
        frame.render_widget(text.block(Block::new().borders(Borders::TOP).title(" Detail ")), area);
        return;
    };
    let record = &row.record;
    let (word, style) = verdict_label(record, theme);
    let title = format!(
        " {} {} → {} ",
        record.protocol.name(),
        clean(&record.src.label()),
        clean(&record.dst.label())
    );
    let mut lines = vec![
        Line::from(vec![
            Span::styled(format!(" {word} "), style),
            Span::raw(if record.leak {
                "  denied by policy, yet answered: the CNI is not enforcing"
            } else {
                ""
            }),
            Span::styled(
                if record.direct_ip {
                    "  direct-IP egress: no DNS answer to this pod named the address"
                } else {
                    ""
                },
                theme.direct_ip(),
            ),
        ]),
        Line::raw(""),
    ];
    lines.extend(endpoint_lines("Source", &record.src, app, theme));
    lines.extend(endpoint_lines("Destination", &record.dst, app, theme));
    if let Some(service) = &record.service {
        lines.push(field("Service", clean(service), theme));
    }
    let state = if row.ended {
        "ended".to_owned()
    } else {
        record.tcp.map_or("-", crate::flow::TcpState::name).to_owned()
    };
    lines.push(field(
        "Connection",
        format!(
            "{state}, first {}, last {}, lasted {}",
            clock(record.first_seen),
            clock(record.last_seen),
            human_duration(record.last_seen.since(record.first_seen))
        ),
        theme,
    ));
    lines.push(field(
        "Counters",
        format!(
            "sent {} pkts {}  ·  received {} pkts {}  ·  now {}B/s ↑ {}B/s ↓",
            record.packets.tx,
            bytes(record.bytes.tx),
            record.packets.rx,
            bytes(record.bytes.rx),
            compact(record.rates.0),
            compact(record.rates.1)
        ),
        theme,
    ));
    lines.push(field("Seen on", clean(&record.interfaces.join(", ")), theme));
    lines.push(Line::raw(""));
    lines.extend(side_lines("Egress", &record.verdict.egress, theme));
    lines.extend(side_lines("Ingress", &record.verdict.ingress, theme));

    let [text_area, spark_area] =
        Layout::vertical([Constraint::Min(5), Constraint::Length(4)]).areas(area);
    let paragraph = Paragraph::new(lines)
        .wrap(Wrap { trim: false })
        .block(Block::new().borders(Borders::TOP).title(clean(&title)).border_style(theme.dim()));
    frame.render_widget(paragraph, text_area);
    let history: Vec<u64> =
        app.history.get(&record.flow_id).map(|h| h.iter().copied().collect()).unwrap_or_default();
    let sparkline = Sparkline::default().data(&history).style(theme.header()).block(
        Block::new()
            .borders(Borders::TOP)
            .title(" rate, bytes/s (one sample per refresh) ")
            .border_style(theme.dim()),
    );
    frame.render_widget(sparkline, spark_area);
}

fn field(name: &str, value: String, theme: Theme) -> Line<'static> {
    Line::from(vec![Span::styled(format!(" {name:<12}"), theme.title()), Span::raw(value)])
}

fn clock(ts: crate::time::Timestamp) -> String {
    let text = ts.rfc3339();
    text.get(11..23).map_or(text.clone(), str::to_owned)
}

fn endpoint_lines(
    name: &str,
    endpoint: &EndpointRecord,
    app: &App,
    theme: Theme,
) -> Vec<Line<'static>> {
    let kind = format!("{:?}", endpoint.kind).to_ascii_lowercase();
    let address = match endpoint.port {
        Some(port) if endpoint.ip.is_ipv6() => format!("[{}]:{port}", endpoint.ip),
        Some(port) => format!("{}:{port}", endpoint.ip),
        None => endpoint.ip.to_string(),
    };
    let mut text = format!("{kind} {}  {address}", clean(&endpoint.label()));
    if let Some(node) = &endpoint.node {
        text.push_str(&format!("  on node {}", clean(node)));
    }
    let mut lines = vec![field(name, text, theme)];
    let qualified =
        endpoint.namespace.as_ref().zip(endpoint.name.as_ref()).map(|(ns, n)| format!("{ns}/{n}"));
    if let Some(labels) = qualified.and_then(|q| app.cluster.labels.get(&q)) {
        lines.push(field("", format!("labels {}", clean(labels)), theme));
    }
    if let Some(dns) = &endpoint.dns {
        let how = match endpoint.dns_source {
            Some(NameSource::Other) => {
                "from another client's DNS answer: this pod did not look it up"
            }
            _ => "from this client's own DNS answer",
        };
        lines.push(field("", format!("dns {} ({how})", clean(dns)), theme));
    }
    if let Some(sni) = &endpoint.sni {
        lines.push(field("", format!("tls sni {} (ClientHello)", clean(sni)), theme));
    }
    if let Some(host) = &endpoint.http_host {
        lines.push(field("", format!("http host {} (request header)", clean(host)), theme));
    }
    lines
}

fn side_lines(name: &str, side: &SideVerdict, theme: Theme) -> Vec<Line<'static>> {
    let decision = serde_json::to_value(side.decision)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let style = match side.decision {
        crate::policy::Decision::Deny => theme.egress_violation(),
        crate::policy::Decision::Allow => theme.allowed(),
        _ => theme.title(),
    };
    let mut lines = vec![Line::from(vec![
        Span::styled(format!(" {name:<12}"), theme.title()),
        Span::styled(decision, style),
        Span::raw(if side.policies.is_empty() {
            String::new()
        } else {
            format!("  by {}", side.policies.join(", "))
        }),
    ])];
    lines.push(Line::raw(format!("              {}", clean(&side.reason))));
    lines
}
