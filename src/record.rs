//! Writers of flow records: JSON Lines (the contract in DESIGN.md) and an aligned table for
//! people. Both stream: a record is written when its flow ends, so memory stays flat however
//! long the input.

pub mod json_line;
pub mod jsonl;
pub mod pcapng;
pub mod pcapng_reader;

use std::io::{self, Write};
use std::time::Duration;

use crate::policy::{Decision, Direction};
use crate::snapshot::{EndpointRecord, FlowRecord, NameSource};

/// The headless output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Table,
}

/// Writes flow records in one format.
pub struct RecordWriter<W: Write> {
    out: W,
    format: Format,
    wrote_header: bool,
    /// One JSON line is built here and handed to `out` in one `write_all`: a record written
    /// piece by piece costs a `Write` call per piece on a buffered (or boxed) writer.
    line: Vec<u8>,
    encoder: json_line::JsonLineEncoder,
}

const SOURCE_WIDTH: usize = 30;
const DESTINATION_WIDTH: usize = 44;

impl<W: Write> RecordWriter<W> {
    pub fn new(out: W, format: Format) -> Self {
        Self {
            out,
            format,
            wrote_header: false,
            line: Vec::with_capacity(1024),
            encoder: json_line::JsonLineEncoder::new(),
        }
    }

    pub fn write(&mut self, record: &FlowRecord) -> io::Result<()> {
        match self.format {
            Format::Json => {
                self.line.clear();
                self.encoder.encode(record, &mut self.line)?;
                self.line.push(b'\n');
                self.out.write_all(&self.line)
            }
            Format::Table => {
                if !self.wrote_header {
                    self.wrote_header = true;
                    writeln!(
                        self.out,
                        "{:<12} {:<SOURCE_WIDTH$} {:<DESTINATION_WIDTH$} {:<6} {:>5} {:>11} {:>15} {:>8} {:<11} NOTES",
                        "VERDICT",
                        "SOURCE",
                        "DESTINATION",
                        "PROTO",
                        "PORT",
                        "PKTS tx/rx",
                        "BYTES tx/rx",
                        "DURATION",
                        "STATE",
                    )?;
                }
                self.write_row(record)
            }
        }
    }

    fn write_row(&mut self, record: &FlowRecord) -> io::Result<()> {
        let state = record.tcp.map_or("", crate::flow::TcpState::name);
        let row = format!(
            "{:<12} {:<SOURCE_WIDTH$} {:<DESTINATION_WIDTH$} {:<6} {:>5} {:>11} {:>15} {:>8} {:<11} {}",
            verdict_mark(record),
            fit_label(&record.src, SOURCE_WIDTH),
            fit_label(&record.dst, DESTINATION_WIDTH),
            record.protocol.name(),
            record.dst.port.map_or_else(|| "-".to_owned(), |p| p.to_string()),
            format!("{}/{}", record.packets.tx, record.packets.rx),
            format!("{}/{}", human_bytes(record.bytes.tx), human_bytes(record.bytes.rx)),
            human_duration(record.last_seen.since(record.first_seen)),
            state,
            notes(record),
        );
        writeln!(self.out, "{}", row.trim_end())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// The verdict column: the strongest thing to say about a flow.
#[must_use]
pub fn verdict_mark(record: &FlowRecord) -> &'static str {
    match record.violation {
        Some(Direction::Egress) if record.leak => "LEAK-egress",
        Some(Direction::Ingress) if record.leak => "LEAK-ingress",
        Some(Direction::Egress) => "DENY-egress",
        Some(Direction::Ingress) => "DENY-ingress",
        None => {
            let sides = [record.verdict.egress.decision, record.verdict.ingress.decision];
            if sides.contains(&Decision::Partial) {
                "partial"
            } else if sides.contains(&Decision::Allow) {
                "allow"
            } else if sides.contains(&Decision::Unrestricted) {
                "open"
            } else {
                "-"
            }
        }
    }
}

/// An endpoint's label cut to `width`, keeping what identifies it: a name shown with its address
/// keeps the address while the name stays readable, else drops it; `namespace/name` shortens the
/// namespace before the name.
#[must_use]
pub fn fit_label(endpoint: &EndpointRecord, width: usize) -> String {
    let label = endpoint.label();
    if label.chars().count() <= width {
        return label;
    }
    let address = format!(" ({})", endpoint.ip);
    if let Some(name) = label.strip_suffix(&address) {
        let address_len = address.chars().count();
        return if width >= address_len + 12 {
            format!("{}{address}", elide(name, width - address_len))
        } else {
            elide(name, width)
        };
    }
    elide_qualified(&label, width)
}

/// Shortens `namespace/name` by cutting the namespace first (`kube-s…/coredns-674b8`), then
/// dropping it (`…/coredns-674b8`), then eliding the middle of the name.
fn elide_qualified(text: &str, width: usize) -> String {
    let Some((head, tail)) = text.split_once('/') else { return elide(text, width) };
    let tail_len = tail.chars().count();
    if tail_len + 5 <= width {
        let head: String = head.chars().take(width - tail_len - 2).collect();
        return format!("{head}…/{tail}");
    }
    if tail_len + 2 <= width {
        return format!("…/{tail}");
    }
    elide(tail, width)
}

/// Notes that do not fit a verdict: direct-IP egress, a name learned from another client.
fn notes(record: &FlowRecord) -> String {
    let mut notes = Vec::new();
    if record.direct_ip {
        notes.push("direct-ip");
    }
    if record.dst.dns_source == Some(NameSource::Other) {
        notes.push("name-from-other-client");
    }
    notes.join(",")
}

/// Cuts a label to `width` characters, keeping both ends (`kube-system/core…-7d8f`).
#[must_use]
pub fn elide(text: &str, width: usize) -> String {
    let count = text.chars().count();
    if count <= width || width < 3 {
        return text.to_owned();
    }
    let head = (width - 1) / 2;
    let tail = width - 1 - head;
    let start: String = text.chars().take(head).collect();
    let end: String = text.chars().skip(count - tail).collect();
    format!("{start}…{end}")
}

#[must_use]
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    #[allow(clippy::cast_precision_loss)] // for display
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1}{}", UNITS[unit])
}

/// A duration rounded for a table cell: milliseconds below a second, whole seconds above.
#[must_use]
pub fn human_duration(duration: Duration) -> String {
    let rounded = if duration < Duration::from_secs(1) {
        Duration::from_millis(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
    } else {
        Duration::from_secs(duration.as_secs())
    };
    if rounded.is_zero() {
        return "0s".to_owned();
    }
    humantime::format_duration(rounded).to_string().replace(' ', "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualified_names_lose_their_namespace_first() {
        assert_eq!(elide_qualified("monitoring/prometheus-0", 17), "mon…/prometheus-0");
        assert_eq!(elide_qualified("monitoring/prometheus-0", 15), "…/prometheus-0");
        assert_eq!(
            elide_qualified("kube-system/coredns-674b8bbfcf-4xk8m", 20),
            "coredns-6…bfcf-4xk8m"
        );
    }

    #[test]
    fn long_labels_keep_both_ends() {
        assert_eq!(elide("kube-system/coredns-7d8f9c-abcde", 15), "kube-sy…c-abcde");
        assert_eq!(elide("short", 15), "short");
    }

    #[test]
    fn sizes_and_durations_read_like_a_person_wrote_them() {
        assert_eq!(human_bytes(512), "512B");
        assert_eq!(human_bytes(1536), "1.5KiB");
        assert_eq!(human_duration(Duration::from_millis(1234)), "1s");
        assert_eq!(human_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(human_duration(Duration::from_secs(125)), "2m5s");
    }
}
