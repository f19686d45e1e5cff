//! The immutable rows every view reads: flow records (the JSON Lines contract of DESIGN.md) and
//! run statistics.
//!
//! Field names here are the contract: a change is a version bump in the README.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::flow::{Protocol, TcpState};
use crate::identity::EndpointKind;
use crate::policy::{Direction, Verdict};
use crate::time::Timestamp;

/// One end of a flow as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointRecord {
    pub ip: std::net::IpAddr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    pub kind: EndpointKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The name DNS gave this address to the other end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns: Option<String>,
    /// `own`: the other end's own lookup returned `dns`; `other`: only another client's did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_source: Option<NameSource>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_host: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NameSource {
    Own,
    Other,
}

/// Per-direction pair: `tx` from the initiator, `rx` back to it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxRx {
    pub tx: u64,
    pub rx: u64,
}

/// One flow, as the headless printer, the recorder and every view see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowRecord {
    #[serde(serialize_with = "rfc3339", deserialize_with = "crate::time::deserialize_rfc3339")]
    pub first_seen: Timestamp,
    #[serde(serialize_with = "rfc3339", deserialize_with = "crate::time::deserialize_rfc3339")]
    pub last_seen: Timestamp,
    pub protocol: Protocol,
    pub src: EndpointRecord,
    pub dst: EndpointRecord,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The backend a Service address was translated to, when a copy on its interface showed it.
    /// Boxed: few records have one, and every record is made, sent and encoded whole.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub backend: Option<Box<EndpointRecord>>,
    pub packets: TxRx,
    pub bytes: TxRx,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpState>,
    pub interfaces: Vec<String>,
    pub verdict: std::sync::Arc<Verdict>,
    pub violation: Option<Direction>,
    pub leak: bool,
    pub direct_ip: bool,
    /// Not part of the record: the table's flow id, for views that keep a selection.
    #[serde(skip)]
    pub flow_id: u64,
    /// Not part of the record: bytes per second over the rate window, tx and rx.
    #[serde(skip)]
    pub rates: (f64, f64),
}

fn rfc3339<S: serde::Serializer>(ts: &Timestamp, serializer: S) -> Result<S::Ok, S::Error> {
    // Formatted straight into the output: no string per timestamp.
    serializer.collect_str(&ts.rfc3339_display())
}

/// Counts of everything the pipeline saw, for the summary line and the header.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Frames handed to decode.
    pub frames: u64,
    /// Frames that became packets in a flow.
    pub decoded: u64,
    /// Frames skipped, by reason name.
    pub skipped: BTreeMap<&'static str, u64>,
    /// DNS responses read, and payloads on port 53 that were not DNS.
    pub dns_responses: u64,
    pub dns_malformed: u64,
    /// Copies of packets already counted on another interface (live capture), not counted again.
    pub copies_across_interfaces: u64,
    /// Flows started, in the table now, expired, evicted under the cap.
    pub flows_total: u64,
    pub flows_active: u64,
    pub flows_expired: u64,
    pub flows_evicted: u64,
    /// Cluster objects the snapshot skipped because netwatch does not use their kind.
    pub cluster_skipped: BTreeMap<String, u64>,
    /// NetworkPolicies that could not be compiled, with why.
    pub policy_diagnostics: Vec<String>,
}

impl Stats {
    /// The one-line summary printed on stderr at the end of a headless run.
    #[must_use]
    pub fn summary_line(&self) -> String {
        let skipped_total: u64 = self.skipped.values().sum();
        let mut line = format!(
            "{} packets read, {} decoded, {} skipped",
            self.frames, self.decoded, skipped_total
        );
        if skipped_total > 0 {
            let kinds: Vec<String> = self
                .skipped
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            line.push_str(&format!(" ({})", kinds.join(", ")));
        }
        line.push_str(&format!(
            "; {} flows, {} evicted; {} DNS answers",
            self.flows_total, self.flows_evicted, self.dns_responses
        ));
        if self.copies_across_interfaces > 0 {
            line.push_str(&format!(
                "; {} copies seen on a second interface, counted once",
                self.copies_across_interfaces
            ));
        }
        if self.dns_malformed > 0 {
            line.push_str(&format!(", {} malformed DNS", self.dns_malformed));
        }
        line
    }
}

impl EndpointRecord {
    /// A short human label: `ns/pod`, `svc ns/name`, `node n1`, a DNS name with its address, …
    #[must_use]
    pub fn label(&self) -> String {
        let qualified = match (&self.namespace, &self.name) {
            (Some(ns), Some(name)) => Some(format!("{ns}/{name}")),
            (None, Some(name)) => Some(name.clone()),
            _ => None,
        };
        match (self.kind, qualified) {
            (EndpointKind::Pod, Some(name)) => name,
            (EndpointKind::Service, Some(name)) => format!("svc {name}"),
            (EndpointKind::Node, Some(name)) => format!("node {name}"),
            (EndpointKind::Host, Some(name)) => format!("host {name}"),
            _ => match self.dns.as_deref().or(self.sni.as_deref()).or(self.http_host.as_deref()) {
                Some(name) => format!("{name} ({})", self.ip),
                None => self.ip.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    /// Records are made, sent between threads and held by the view by the hundred thousand:
    /// the rare backend is boxed (a record was 640 bytes with it inline).
    #[test]
    fn a_record_stays_small() {
        let size = std::mem::size_of::<super::FlowRecord>();
        assert!(size <= 480, "{size} bytes");
    }
}
