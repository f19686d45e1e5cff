//! The pure pipeline: frames and cluster events in, flow records out.
//!
//! decode → flow table → names → identity → verdict. The engine owns the flow table, the DNS
//! name book, the cluster view and the compiled policies; the run loop owns the engine. No I/O
//! and no clock: every call takes the time it should act at.

use std::time::Duration;

use crate::capture::{DecodedFrame, Frame};
use crate::cluster::{ClusterEvent, ClusterView};
use crate::decode::{self, RequestName, SkipReason, dns};
use crate::flow::dedup::{Dedup, DedupLimits, PacketFacts, Sighting};
use crate::flow::table::EndReason;
use crate::flow::{ClosedAs, Flow, FlowKey, FlowTable, Protocol, TableLimits};
use crate::identity;
use crate::names::NameBook;
use crate::policy::PolicySet;
use crate::snapshot::{FlowRecord, Stats};
use crate::time::Timestamp;

/// How often (packet time) idle flows and stale names are swept.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

pub struct Engine {
    table: FlowTable,
    names: NameBook,
    view: ClusterView,
    policies: PolicySet,
    policy_diagnostics: Vec<String>,
    /// Verdicts, valid for one cluster-view generation.
    verdicts: VerdictCache,
    interface_names: Vec<String>,
    frames: u64,
    decoded: u64,
    skipped: [u64; SkipReason::ALL.len()],
    dns_responses: u64,
    dns_malformed: u64,
    cluster_skipped: std::collections::BTreeMap<String, u64>,
    input_ended: bool,
    /// The count-once rule, for sources that see a packet on several interfaces.
    dedup: Option<Dedup>,
    /// When [`advance_if_due`](Self::advance_if_due) next sweeps (packet time).
    next_sweep: Option<Timestamp>,
    /// The latest packet time, watched for the clock stepping back.
    clock: PacketClock,
    /// The table's list of ended flows, traded each sweep (see [`FlowTable::swap_ended`]).
    ended: Vec<(Flow, EndReason)>,
}

/// The fields a record is made from, borrowed one by one: a caller may hold a flow of the table
/// (or fill a list from it) meanwhile, which a `&mut self` method would not allow. The view is
/// brought up to date first (verdicts are cached per view), so no record is made from a stale one.
macro_rules! record_context {
    ($engine:expr) => {{
        refresh_cluster(
            &mut $engine.view,
            &mut $engine.policies,
            &mut $engine.policy_diagnostics,
            &mut $engine.verdicts,
        );
        RecordContext {
            view: &$engine.view,
            policies: &$engine.policies,
            verdicts: &mut $engine.verdicts,
            interface_names: &$engine.interface_names,
            input_ended: $engine.input_ended,
        }
    }};
}

impl Engine {
    #[must_use]
    pub fn new(limits: TableLimits) -> Self {
        let view = ClusterView::new();
        let (policies, _) = PolicySet::compile(&view);
        Self {
            table: FlowTable::new(limits),
            names: NameBook::new(),
            view,
            policies,
            policy_diagnostics: Vec::new(),
            verdicts: VerdictCache::default(),
            interface_names: Vec::new(),
            frames: 0,
            decoded: 0,
            skipped: [0; SkipReason::ALL.len()],
            dns_responses: 0,
            dns_malformed: 0,
            cluster_skipped: std::collections::BTreeMap::new(),
            input_ended: false,
            dedup: None,
            next_sweep: None,
            clock: PacketClock::default(),
            ended: Vec::new(),
        }
    }

    /// Counts each packet once across interfaces (live capture on veths, bridge and uplink):
    /// copies are recognised, not counted, and a DNAT'd copy names the Service's backend.
    pub fn count_once_across_interfaces(&mut self) {
        self.dedup = Some(Dedup::new(DedupLimits::default()));
    }

    /// Names the capture interfaces, by the index frames carry.
    pub fn set_interfaces(&mut self, names: Vec<String>) {
        self.interface_names = names;
    }

    /// Names the capture interface `index` (one that attached during a live capture); the
    /// indices before it that have no name yet stay unnamed.
    pub fn name_interface(&mut self, index: u16, name: String) {
        let index = usize::from(index);
        if self.interface_names.len() <= index {
            self.interface_names.resize(index + 1, String::new());
        }
        self.interface_names[index] = name;
    }

    /// The capture interfaces' names, by the index frames carry ("" for an index not named).
    #[must_use]
    pub fn interface_names(&self) -> &[String] {
        &self.interface_names
    }

    /// The cluster view as last applied. Its IP index may lag behind applied changes until the
    /// next flow starts or records are made; [`cluster_and_policies`](Self::cluster_and_policies)
    /// brings it up to date.
    #[must_use]
    pub fn view(&self) -> &ClusterView {
        &self.view
    }

    /// The cluster view's generation: it changes whenever the view does.
    #[must_use]
    pub fn cluster_generation(&self) -> u64 {
        self.view.generation()
    }

    /// The indexed view and the policies compiled from it, brought up to date.
    pub fn cluster_and_policies(&mut self) -> (&ClusterView, &PolicySet) {
        self.refresh_cluster();
        (&self.view, &self.policies)
    }

    /// Applies a cluster change. Verdicts and identities follow on the next records.
    pub fn apply(&mut self, event: ClusterEvent) {
        self.view.apply(event);
    }

    /// Counts what a snapshot loader skipped, so the summary shows it.
    pub fn note_cluster_skips(&mut self, skipped: &crate::cluster::SkipCounts) {
        for (kind, count) in &skipped.unknown_kinds {
            *self.cluster_skipped.entry(kind.clone()).or_default() += count;
        }
    }

    /// Folds one captured frame into the flows (decoding it here: the single-threaded path).
    pub fn ingest(&mut self, frame: &Frame<'_>) {
        let DecodedFrame { ts, interface, decoded, .. } = DecodedFrame::from_frame(frame);
        self.ingest_decoded(ts, interface, decoded);
    }

    /// Folds one packet decoded elsewhere (a capture or reader thread) into the flows.
    pub fn ingest_decoded(
        &mut self,
        ts: Timestamp,
        interface: u16,
        mut decoded: Result<decode::Summary, SkipReason>,
    ) {
        self.ingest_in_place(ts, interface, &mut decoded);
    }

    /// [`ingest_decoded`](Self::ingest_decoded), leaving the payload bytes the frame kept where
    /// they are: a replay hands its batches back to the reader, which frees them on its own
    /// heap as it reuses the batch (freed here, each went back to the reader's heap the slow
    /// way, and the reader took fresh memory meanwhile). A long DNS message read where it was
    /// decoded is taken out.
    pub fn ingest_in_place(
        &mut self,
        ts: Timestamp,
        interface: u16,
        decoded: &mut Result<decode::Summary, SkipReason>,
    ) {
        self.frames += 1;
        // Every mode sees packets, not every mode sweeps on packet time (a live recording).
        self.follow_clock(ts);
        let summary = match decoded {
            Ok(summary) => summary,
            Err(reason) => {
                self.skipped[reason.index()] += 1;
                return;
            }
        };
        // How the packet was counted and how it was seen, when a binding rewrote it.
        let mut rewritten = None;
        // Without count-once (one interface), the frame's own packet: copied out, it was a
        // cost of every packet.
        let counted;
        let packet = match self.dedup.as_mut() {
            None => &summary.packet,
            Some(dedup) => {
                let mut packet = summary.packet;
                match dedup.observe(&PacketFacts::of(&packet, Some(packet.ttl)), interface, ts) {
                    Sighting::First { count_as, seen_as } => {
                        // A reply from a backend is counted under the Service address the
                        // client used.
                        (packet.src, packet.src_port) = (count_as.src.ip, count_as.src.port);
                        (packet.dst, packet.dst_port) = (count_as.dst.ip, count_as.dst.port);
                        rewritten = seen_as.map(|seen| (count_as, seen));
                    }
                    Sighting::Copy { counted_as, seen_as, .. } => {
                        let key =
                            FlowKey::canonical(packet.protocol, counted_as.src, counted_as.dst).0;
                        if let Some(flow) = self.table.get_mut(&key) {
                            if !flow.interfaces.contains(&interface) {
                                flow.interfaces.push(interface);
                            }
                            if flow.backend.is_none() {
                                flow.backend =
                                    backend_of(flow.responder(), counted_as, seen_as).map(Box::new);
                            }
                        }
                        return;
                    }
                }
                counted = packet;
                &counted
            }
        };
        match summary.app.take_dns() {
            Some(Ok(resolutions)) => {
                self.dns_responses += 1;
                self.names.learn(packet.dst, &resolutions, ts);
            }
            Some(Err(dns::DnsSkip::Malformed)) => self.dns_malformed += 1,
            Some(Err(dns::DnsSkip::Query)) | None => {}
        }
        let wire = rewritten.map(|(_, seen)| (seen.src.ip, seen.dst.ip));
        let Some((flow, ingested)) =
            self.table.ingest_seen_as(packet, wire.as_ref(), interface, ts)
        else {
            self.skipped[SkipReason::OrphanFragment.index()] += 1;
            return;
        };
        self.decoded += 1;
        // Only when there is one: the field lies outside the cache lines a packet touches.
        if let Some((counted, seen)) = rewritten
            && flow.backend.is_none()
        {
            flow.backend = backend_of(flow.responder(), counted, seen).map(Box::new);
        }
        if ingested.new_flow {
            // The name needs the current pod index; a no-op when the view did not change.
            self.view.reindex();
            let learned = learned_name(&self.names, &self.view, flow, ts);
            flow.set_responder_name(learned);
        }
        if ingested.from_initiator
            && !flow.payload_inspected
            && summary.payload_len > 0
            && packet.protocol == Protocol::Tcp
        {
            // Only the first payload: SNI and Host are at the very start of a connection.
            flow.payload_inspected = true;
            match summary.app.request_name() {
                Some(RequestName::Sni(sni)) => flow.sni = Some(sni),
                Some(RequestName::HttpHost(host)) => flow.http_host = Some(host),
                None => {}
            }
        }
        if ingested.closed {
            debug_assert!(flow.closed_as.is_none(), "a flow closes once: it never reopens");
            // Fields apart from the table, so the flow stays borrowed (not looked up again).
            let mut context = record_context!(self);
            let verdict = current_verdict(&mut context, &connection_of(flow));
            let protocol = flow.key.protocol;
            let (initiator, responder) = (flow.initiator(), flow.responder());
            flow.closed_as = Some(Box::new(ClosedAs {
                verdict,
                initiator: identity::resolve(&self.view, initiator.ip, initiator.port, protocol),
                responder: identity::resolve(&self.view, responder.ip, responder.port, protocol),
            }));
        }
    }

    /// Moves time to `now`: idle flows end, stale names are forgotten. Hands `emit` the record
    /// of each flow that ended (expired, or evicted since the last call), one at a time so that
    /// memory does not grow with the number of ended flows.
    pub fn advance<E>(
        &mut self,
        now: Timestamp,
        emit: impl FnMut(FlowRecord) -> Result<(), E>,
    ) -> Result<(), E> {
        self.table.advance(now);
        self.names.expire(now);
        self.emit_ended(now, emit)
    }

    /// [`advance`](Self::advance), when a [`SWEEP_INTERVAL`] of packet time has passed since the
    /// last sweep it made: called before each packet, it sweeps about once a second of capture.
    /// Returns whether it swept.
    pub fn advance_if_due<E>(
        &mut self,
        now: Timestamp,
        emit: impl FnMut(FlowRecord) -> Result<(), E>,
    ) -> Result<bool, E> {
        // Not yet due, unless the clock stepped back (then it sweeps; flows and names follow);
        // a frame merely late is not a step.
        if !self.follow_clock(now) && self.next_sweep.is_some_and(|at| now < at) {
            return Ok(false);
        }
        self.next_sweep = Some(now.saturating_add(SWEEP_INTERVAL));
        self.advance(now, emit).map(|()| true)
    }

    /// Watches packet time for a step back, which the flows, count-once and the names learned
    /// from DNS follow: the one watch, so they agree on when time stepped. Packet time only: a
    /// live view also sweeps on the wall clock, and frames that lag it by a second would each
    /// look like a step. Whether it stepped.
    fn follow_clock(&mut self, now: Timestamp) -> bool {
        let before = self.clock.latest();
        let stepped = self.clock.stepped_back(now);
        if stepped {
            self.table.step_back(now);
            if let Some(dedup) = self.dedup.as_mut() {
                dedup.step_back(now);
            }
            self.names.step_back(before.since(now));
        }
        stepped
    }

    /// The input is over: every remaining flow ends, and `emit` gets their records, oldest first.
    pub fn finish<E>(
        &mut self,
        now: Timestamp,
        mut emit: impl FnMut(FlowRecord) -> Result<(), E>,
    ) -> Result<(), E> {
        self.input_ended = true;
        let remaining = self.table.finish();
        self.emit_ended(now, &mut emit)?;
        // The view may have changed since the last flow ended: the context catches up.
        let mut context = record_context!(self);
        for flow in remaining.iter() {
            emit(record(&mut context, flow, now))?;
        }
        Ok(())
    }

    /// Records of the flows still in the table, for views that show the live state.
    pub fn live_records(&mut self, now: Timestamp) -> Vec<FlowRecord> {
        let mut records = Vec::new();
        self.live_records_into(now, &mut records);
        records
    }

    /// [`live_records`](Self::live_records) into `out` (emptied first), whose room is reused:
    /// the live view asks every tick, and a new list of 100k records each time made the
    /// allocator fault in and clear fresh pages for most of the tick's cost.
    pub fn live_records_into(&mut self, now: Timestamp, out: &mut Vec<FlowRecord>) {
        let mut ctx = record_context!(self);
        out.clear();
        out.extend(self.table.flows().map(|flow| record(&mut ctx, flow, now)));
    }

    fn emit_ended<E>(
        &mut self,
        now: Timestamp,
        mut emit: impl FnMut(FlowRecord) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut ended = std::mem::take(&mut self.ended);
        self.table.swap_ended(&mut ended);
        if ended.is_empty() {
            self.ended = ended;
            return Ok(());
        }
        let mut context = record_context!(self);
        let mut result = Ok(());
        for (flow, reason) in &ended {
            // An evicted flow is reported as of its last packet, not of the flood.
            let at = if *reason == EndReason::Evicted { flow.last_seen } else { now };
            result = emit(record(&mut context, flow, at));
            if result.is_err() {
                break;
            }
        }
        // Dropped now (their records are out), not at the next sweep; the list keeps its room.
        ended.clear();
        self.ended = ended;
        result
    }

    /// Rebuilds the IP index and recompiles policies if the cluster view changed.
    fn refresh_cluster(&mut self) {
        refresh_cluster(
            &mut self.view,
            &mut self.policies,
            &mut self.policy_diagnostics,
            &mut self.verdicts,
        );
    }

    /// Everything counted so far.
    #[must_use]
    pub fn stats(&self) -> Stats {
        let skipped = SkipReason::ALL
            .iter()
            .map(|reason| (reason.name(), self.skipped[reason.index()]))
            .filter(|(_, n)| *n > 0)
            .collect();
        Stats {
            frames: self.frames,
            decoded: self.decoded,
            skipped,
            dns_responses: self.dns_responses,
            dns_malformed: self.dns_malformed,
            copies_across_interfaces: self.dedup.as_ref().map_or(0, |d| d.counts().copies),
            flows_total: self.table.flows_started(),
            flows_active: self.table.len() as u64,
            flows_expired: self.table.expired_total,
            flows_evicted: self.table.evicted_total,
            cluster_skipped: self.cluster_skipped.clone(),
            policy_diagnostics: self.policy_diagnostics.clone(),
        }
    }
}

/// The latest packet time seen, watched for the clock stepping back (NTP on a live node, or a
/// bogus stamp first). The engine keeps the one watch and tells the flow table, count-once
/// and the names to start over from the new time, as measured from the old one nothing new
/// would be kept or end.
#[derive(Debug, Clone, Copy, Default)]
struct PacketClock {
    latest: Timestamp,
}

impl PacketClock {
    /// How far time must go back to count as a step, not a late packet (1 s).
    const STEP_NANOS: u64 = 1_000_000_000;

    /// Takes `now` in; true when it stepped back past the latest time (which becomes `now`).
    fn stepped_back(&mut self, now: Timestamp) -> bool {
        let stepped = now.0.saturating_add(Self::STEP_NANOS) < self.latest.0;
        self.latest = if stepped { now } else { self.latest.max(now) };
        stepped
    }

    #[must_use]
    fn latest(self) -> Timestamp {
        self.latest
    }
}

mod record;

use record::{
    RecordContext, VerdictCache, backend_of, connection_of, current_verdict, learned_name, record,
    refresh_cluster,
};

#[cfg(test)]
mod tests;
