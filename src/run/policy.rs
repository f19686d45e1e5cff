//! `netwatch policy explain|audit`: the policy engine on a cluster snapshot, for people and for
//! scripts. Reads the snapshot and the batch input, writes answers; the verdicts come from the
//! pure engine in `policy`.

use std::io::{self, BufRead, Write};
use std::net::IpAddr;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{RunError, load_view};
use crate::cluster::{ClusterView, ObjectKey};
use crate::config::{AuditConfig, ExplainConfig, ExplainInput, ReportFormat};
use crate::flow::Protocol;
use crate::policy::{self, Connection, Decision, PolicySet, Verdict};

/// One question: may `from` open `protocol` `port` to `to`?
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Query {
    from: String,
    to: String,
    #[serde(default = "default_protocol")]
    protocol: String,
    port: u16,
}

fn default_protocol() -> String {
    "TCP".to_owned()
}

pub fn explain(config: &ExplainConfig) -> Result<(), RunError> {
    let view = load_view(&config.cluster)?;
    let (set, diagnostics) = PolicySet::compile(&view);
    for diagnostic in &diagnostics {
        eprintln!("netwatch: warning: NetworkPolicy {diagnostic}");
    }
    let stdout = io::stdout();
    let mut out = stdout.lock();
    match &config.input {
        ExplainInput::One { from, to, protocol, port } => {
            let query = Query {
                from: from.clone(),
                to: to.clone(),
                protocol: protocol.clone(),
                port: *port,
            };
            let answer = answer(&view, &set, &query).map_err(RunError::BadInput)?;
            let written = match config.format {
                ReportFormat::Json => writeln!(out, "{}", answer.json),
                ReportFormat::Text => write!(out, "{}", answer.text),
            };
            written.map_err(write_error)
        }
        ExplainInput::Batch(path) => {
            let reader: Box<dyn BufRead> = if path.as_os_str() == "-" {
                Box::new(io::stdin().lock())
            } else {
                let file = std::fs::File::open(path).map_err(|e| {
                    RunError::BadInput(format!("cannot read batch file '{}': {e}", path.display()))
                })?;
                Box::new(io::BufReader::new(file))
            };
            let bad = explain_batch(&view, &set, reader, &mut out)?;
            if bad > 0 {
                return Err(RunError::BadInput(format!(
                    "{bad} batch line(s) could not be answered; each has an \"error\" line in the output"
                )));
            }
            Ok(())
        }
    }
}

/// Answers every line; a bad line gets an error line and the rest go on. Returns the bad count.
fn explain_batch(
    view: &ClusterView,
    set: &PolicySet,
    reader: impl BufRead,
    out: &mut impl Write,
) -> Result<usize, RunError> {
    let mut bad = 0;
    // Split on newlines as bytes: a line that is not UTF-8 is one bad line, not the end.
    for (index, line) in reader.split(b'\n').enumerate() {
        let line_number = index + 1;
        let line = line.map_err(|e| RunError::BadInput(format!("cannot read batch input: {e}")))?;
        let line =
            String::from_utf8(line).map_err(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        let line = match line {
            Ok(line) => line,
            Err(lossy) => {
                bad += 1;
                let error = "not UTF-8 text";
                writeln!(out, "{}", json!({"line": line_number, "input": lossy, "error": error}))
                    .map_err(write_error)?;
                continue;
            }
        };
        let line = line.strip_suffix('\r').unwrap_or(&line);
        if line.trim().is_empty() {
            continue;
        }
        let result = serde_json::from_str::<Query>(line)
            .map_err(|e| format!("not a query object ({e}); expected {{\"from\": \"ns/pod\"|\"IP\", \"to\": \"ns/pod\"|\"IP\", \"protocol\": \"TCP\", \"port\": 80}}"))
            .and_then(|query| answer(view, set, &query));
        let output = match result {
            Ok(answer) => answer.json,
            Err(error) => {
                bad += 1;
                json!({"line": line_number, "input": line, "error": error})
            }
        };
        writeln!(out, "{output}").map_err(write_error)?;
    }
    Ok(bad)
}

struct Answer {
    json: Value,
    text: String,
}

fn answer(view: &ClusterView, set: &PolicySet, query: &Query) -> Result<Answer, String> {
    let protocol = Protocol::parse_l4(&query.protocol)
        .ok_or_else(|| format!("protocol '{}' is not TCP, UDP or SCTP", query.protocol))?;
    if query.port == 0 {
        return Err("port '0' is not a port (1-65535)".into());
    }
    let (src, src_label) = endpoint(view, &query.from, "from")?;
    let (dst, dst_label) = endpoint(view, &query.to, "to")?;
    if src.is_ipv4() != dst.is_ipv4() {
        return Err(format!(
            "'{}' ({src}) and '{}' ({dst}) are of different IP families",
            query.from, query.to
        ));
    }
    let connection = Connection { src, dst, protocol, dst_port: Some(query.port) };
    let verdict = set.evaluate(view, &connection);
    let allowed = allowed(&verdict);
    let mut object = Map::new();
    object.insert("from".into(), json!(query.from));
    object.insert("to".into(), json!(query.to));
    object.insert("protocol".into(), json!(protocol.name()));
    object.insert("port".into(), json!(query.port));
    object.insert("egress".into(), json!(verdict.egress));
    object.insert("ingress".into(), json!(verdict.ingress));
    object.insert("allowed".into(), json!(allowed));
    let text = format!(
        "{src_label} → {dst_label} {protocol}/{port}\n  egress:  {}\n  ingress: {}\n  {}\n",
        side_text(&verdict.egress),
        side_text(&verdict.ingress),
        if allowed { "allowed".to_owned() } else { format!("DENIED ({})", denied_sides(&verdict)) },
        port = query.port,
    );
    Ok(Answer { json: Value::Object(object), text })
}

/// A connection gets through when neither side denies it, even partly.
fn allowed(verdict: &Verdict) -> bool {
    let blocks = |d: Decision| matches!(d, Decision::Deny | Decision::Partial);
    !blocks(verdict.egress.decision) && !blocks(verdict.ingress.decision)
}

fn denied_sides(verdict: &Verdict) -> String {
    let mut sides = Vec::new();
    for (name, side) in [("egress", &verdict.egress), ("ingress", &verdict.ingress)] {
        if matches!(side.decision, Decision::Deny | Decision::Partial) {
            sides.push(name);
        }
    }
    sides.join(" and ")
}

fn side_text(side: &policy::SideVerdict) -> String {
    let decision = serde_json::to_value(side.decision)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    if side.policies.is_empty() {
        format!("{decision} — {}", side.reason)
    } else {
        format!("{decision} — {} [{}]", side.reason, side.policies.join(", "))
    }
}

/// `namespace/pod` (or `namespace/service`) or an IP, to an address and a label.
fn endpoint(view: &ClusterView, text: &str, which: &str) -> Result<(IpAddr, String), String> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok((ip, ip.to_string()));
    }
    let Some((namespace, name)) = text.split_once('/') else {
        return Err(format!("--{which} '{text}' is neither 'namespace/pod' nor an IP address"));
    };
    let key = ObjectKey::namespaced(namespace, name);
    if let Some(pod) = view.pods.get(&key) {
        let ip = pod.ips.first().ok_or_else(|| {
            format!("pod '{text}' has no IP in the snapshot (phase {:?})", pod.phase)
        })?;
        return Ok((*ip, format!("{text} ({ip})")));
    }
    if let Some(ip) = view.services.get(&key).and_then(|service| service.cluster_ips.first()) {
        return Ok((*ip, format!("svc {text} ({ip})")));
    }
    Err(format!("no pod or service '{text}' in the cluster snapshot"))
}

pub fn audit(config: &AuditConfig) -> Result<(), RunError> {
    let view = load_view(&config.cluster)?;
    let (set, diagnostics) = PolicySet::compile(&view);
    for diagnostic in &diagnostics {
        eprintln!("netwatch: warning: NetworkPolicy {diagnostic}");
    }
    let report = policy::audit(&view, &set);
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let written = match config.format {
        ReportFormat::Json => serde_json::to_writer_pretty(&mut out, &report)
            .map_err(io::Error::other)
            .and_then(|()| writeln!(out)),
        ReportFormat::Text => write!(out, "{report}"),
    };
    written.map_err(write_error)
}

fn write_error(error: io::Error) -> RunError {
    RunError::output(&error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::fixtures::cluster_with;

    /// A line that is not UTF-8 is one bad line: the lines after it are still answered.
    #[test]
    fn a_line_that_is_not_text_is_one_bad_line() {
        let view = cluster_with(&[]);
        let (set, _) = PolicySet::compile(&view);
        let input: &[u8] =
            b"{\"from\":\"\xff\"}\r\n{\"from\":\"10.244.1.10\",\"to\":\"10.244.1.30\",\"port\":6379}\n";
        let mut out = Vec::new();
        let bad = explain_batch(&view, &set, input, &mut out).unwrap();
        assert_eq!(bad, 1);
        let lines: Vec<serde_json::Value> = out
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["line"], 1);
        assert_eq!(lines[0]["error"], "not UTF-8 text");
        assert!(lines[1].get("error").is_none(), "{}", lines[1]);
    }
}
