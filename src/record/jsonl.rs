//! Flow records read back from JSON Lines — the contract in DESIGN.md that `--flows`, headless
//! `-o json` and `record` write — so `netwatch replay FILE.jsonl` shows them again.
//!
//! It owns parsing only: it streams lines from any `BufRead` and never touches files itself.
//! A line that is not a flow record is reported with its number and why, and the rest is read:
//! never a panic, never a silent skip. Blank lines are not records and not errors.

use std::fmt;
use std::io::BufRead;

use crate::snapshot::FlowRecord;

/// A line that is not a flow record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    /// From 1, as editors count.
    pub line: usize,
    pub reason: String,
}

impl fmt::Display for BadLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

/// Parses one line of JSON Lines into a flow record.
pub fn parse_line(text: &str) -> Result<FlowRecord, String> {
    serde_json::from_str(text).map_err(|e| {
        let message = e.to_string();
        // serde_json appends "at line 1 column N": the line is ours to give, the column is useful.
        message.replace(" at line 1 column ", " at column ")
    })
}

/// The records of a JSON Lines stream, one item per non-blank line, read lazily. A read error
/// ends the stream after one `BadLine` saying so.
pub fn records<R: BufRead>(reader: R) -> Records<R> {
    Records { reader, line: 0, buffer: Vec::new(), done: false }
}

/// Reads a whole stream: the records, and the lines that were not records.
pub fn read<R: BufRead>(reader: R) -> (Vec<FlowRecord>, Vec<BadLine>) {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for item in records(reader) {
        match item {
            Ok(record) => good.push(record),
            Err(line) => bad.push(line),
        }
    }
    (good, bad)
}

/// One warning line for the lines skipped in `origin`, naming the first few; `None` if none.
#[must_use]
pub fn summarize(origin: &str, bad: &[BadLine]) -> Option<String> {
    const SHOWN: usize = 3;
    let first = bad.first()?;
    let mut text = format!(
        "{origin}: {} line{} not flow records, skipped: {first}",
        bad.len(),
        if bad.len() == 1 { " is" } else { "s are" }
    );
    for line in bad.iter().skip(1).take(SHOWN - 1) {
        text.push_str(&format!("; {line}"));
    }
    if bad.len() > SHOWN {
        text.push_str(&format!("; and {} more", bad.len() - SHOWN));
    }
    Some(text)
}

/// The iterator [`records`] returns.
#[derive(Debug)]
pub struct Records<R> {
    reader: R,
    line: usize,
    buffer: Vec<u8>,
    done: bool,
}

impl<R: BufRead> Iterator for Records<R> {
    type Item = Result<FlowRecord, BadLine>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            self.buffer.clear();
            self.line += 1;
            match self.reader.read_until(b'\n', &mut self.buffer) {
                Ok(0) => self.done = true,
                Ok(_) => {
                    let Ok(text) = std::str::from_utf8(&self.buffer) else {
                        return Some(Err(BadLine {
                            line: self.line,
                            reason: "not UTF-8 text".to_owned(),
                        }));
                    };
                    let text = text.trim();
                    if text.is_empty() {
                        continue;
                    }
                    return Some(
                        parse_line(text).map_err(|reason| BadLine { line: self.line, reason }),
                    );
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(BadLine {
                        line: self.line,
                        reason: format!("cannot read: {e}"),
                    }));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECORD: &str = r#"{"first_seen":"2026-11-29T10:00:00.123456Z","last_seen":"2026-11-29T10:00:02.500000Z","protocol":"TCP","src":{"ip":"10.244.1.10","port":43122,"kind":"pod","namespace":"shop","name":"web-a","node":"n1"},"dst":{"ip":"203.0.113.10","port":443,"kind":"external","dns":"api.example.com","dns_source":"own","sni":"api.example.com"},"service":"shop/api","packets":{"tx":12,"rx":10},"bytes":{"tx":1830,"rx":9120},"tcp":"established","interfaces":["veth1a2b3c"],"verdict":{"egress":{"decision":"deny","policies":["shop/default-deny-egress"],"reason":"no rule"},"ingress":{"decision":"n/a","policies":[],"reason":"destination is not a pod"}},"violation":"egress","leak":true,"direct_ip":false}"#;

    #[test]
    fn a_record_reads_back_and_writes_out_the_same_line() {
        let record = parse_line(RECORD).unwrap();
        assert_eq!(record.src.name.as_deref(), Some("web-a"));
        assert_eq!(record.verdict.ingress.decision, crate::policy::Decision::NotApplicable);
        assert_eq!(serde_json::to_string(&record).unwrap(), RECORD);
    }

    #[test]
    fn bad_lines_are_counted_with_their_numbers_and_the_rest_is_read() {
        let input = format!("{RECORD}\n\nnot json\n{{\"protocol\":\"TCP\"}}\n{RECORD}\r\n");
        let (good, bad) = read(input.as_bytes());
        assert_eq!(good.len(), 2);
        assert_eq!(bad.iter().map(|b| b.line).collect::<Vec<_>>(), vec![3, 4]);
        assert!(bad[1].reason.contains("missing field"), "{}", bad[1].reason);
        let summary = summarize("flows.jsonl", &bad).unwrap();
        assert!(summary.starts_with("flows.jsonl: 2 lines are not flow records"), "{summary}");
        assert!(summary.contains("line 3: "), "{summary}");
    }

    #[test]
    fn a_bad_timestamp_or_non_utf8_line_is_a_bad_line_not_a_panic() {
        let late = RECORD.replace("2026-11-29T10:00:00.123456Z", "yesterday");
        let mut input = late.into_bytes();
        input.extend_from_slice(b"\n\xff\xfe{}\n");
        let (good, bad) = read(&input[..]);
        assert!(good.is_empty());
        assert_eq!(bad.len(), 2);
        assert!(bad[0].reason.contains("'yesterday'"), "{}", bad[0].reason);
        assert_eq!(bad[1].reason, "not UTF-8 text");
    }

    #[test]
    fn absent_optional_fields_read_as_unknown() {
        let minimal = r#"{"first_seen":"2026-11-29T10:00:00Z","last_seen":"2026-11-29T10:00:00Z","protocol":47,"src":{"ip":"10.0.0.1","kind":"unknown"},"dst":{"ip":"10.0.0.2","kind":"unknown"},"packets":{"tx":1,"rx":0},"bytes":{"tx":60,"rx":0},"interfaces":[],"verdict":{"egress":{"decision":"unrestricted","policies":[],"reason":""},"ingress":{"decision":"allow","policies":[],"reason":""}},"leak":false,"direct_ip":false}"#;
        let record = parse_line(minimal).unwrap();
        assert_eq!(record.protocol, crate::flow::Protocol::Other(47));
        assert_eq!(record.violation, None);
        assert_eq!(record.tcp, None);
        assert_eq!(record.src.port, None);
    }
}
