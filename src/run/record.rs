//! `netwatch record`: packets into pcapng with the cluster view inside, flow records into JSON
//! Lines, from a capture file (`--read`) or live interfaces (`live`), through one engine
//! and recorder.

use std::io::{self, BufWriter, IsTerminal, Write};
use std::time::Instant;

use rustc_hash::FxHashMap;

use super::{ClusterGate, Opened, RunError, load_cluster, open_input};
use crate::capture::{DecodedFrame, Frame, Next, PacketSource};
use crate::cluster::ClusterEvent;
use crate::config::{ClusterSource, Input, RecordConfig};
use crate::engine::Engine;
use crate::record::pcapng::rotation::{
    Progress, Recorder, RecordingSummary, StopReason, view_events,
};
use crate::record::pcapng::{InterfaceDesc, RecordError};
use crate::record::{Format, RecordWriter, human_bytes};
use crate::snapshot::{FlowRecord, Stats};
use crate::time::Timestamp;

mod live;

use live::record_live;

pub fn run(config: &RecordConfig) -> Result<(), RunError> {
    let Some(input) = &config.input else { return record_live(config) };
    match open_input(&Input::File(input.clone()))? {
        Opened::Pcap(source) => record(config, source),
        Opened::Pcapng(source) => record(config, *source),
        Opened::FlowLines(_) => Err(RunError::BadInput(format!(
            "'{}' holds flow records, not packets; record needs a pcap or pcapng capture",
            input.display()
        ))),
    }
}

/// Where flow records go: a file, stdout, or nowhere.
fn flow_writer(config: &RecordConfig) -> Result<Option<RecordWriter<Box<dyn Write>>>, RunError> {
    let Some(path) = &config.flows else { return Ok(None) };
    let out: Box<dyn Write> = if path.as_os_str() == "-" {
        Box::new(BufWriter::new(io::stdout()))
    } else {
        let file = std::fs::File::create(path)
            .map_err(|e| RunError::Runtime(format!("cannot create '{}': {e}", path.display())))?;
        Box::new(BufWriter::new(file))
    };
    Ok(Some(RecordWriter::new(out, Format::Json)))
}

fn record<S: PacketSource>(config: &RecordConfig, mut source: S) -> Result<(), RunError> {
    let mut engine = Engine::new(config.limits);
    load_cluster(&mut engine, &config.cluster)?;
    // A recording's own cluster view is kept unless --cluster names another one.
    let gate = ClusterGate {
        recorded: matches!(config.cluster, ClusterSource::None),
        pinned_policies: false,
    };
    for event in source.take_cluster_events().into_iter().filter(|e| gate.admit(e)) {
        engine.apply(event);
    }
    engine.set_interfaces(source.interfaces());
    if source.sees_packets_more_than_once() {
        engine.count_once_across_interfaces();
    }
    let mut flows = flow_writer(config)?;
    let mut emit = |record: FlowRecord| write_flow(&mut flows, &record);
    let mut recorder: Option<Recorder> = None;
    // Capture interface index → the recording's interface id, added as interfaces first appear.
    let mut interface_ids: FxHashMap<u16, u32> = FxHashMap::default();
    let mut last = Timestamp::default();
    let mut stopped = None;
    let mut skipped_linktype = 0u64;
    let progress = ProgressLine::new();
    // The frame is copied out so the source can be asked for the cluster changes recorded
    // before it, which must precede it in the new file too.
    let mut data = Vec::new();
    loop {
        let (ts, interface, linktype, wire_len) = match source.next_frame() {
            Next::Packet(frame) => {
                data.clear();
                data.extend_from_slice(frame.data);
                (frame.ts, frame.interface, frame.linktype, frame.wire_len)
            }
            Next::Idle => continue,
            Next::End => break,
        };
        // A file names its interfaces as it meets them (`tcpdump -i any`).
        if let Some(names) = source.take_new_interfaces() {
            engine.set_interfaces(names);
        }
        let events: Vec<_> =
            source.take_cluster_events().into_iter().filter(|e| gate.admit(e)).collect();
        take_cluster_changes(&mut engine, &mut recorder, config, events, ts)?;
        if let Some(recorder) = recorder.as_mut() {
            match linktype {
                Some(linktype) => {
                    let id = recording_interface(
                        &mut interface_ids,
                        recorder,
                        (interface, linktype.number()),
                        engine.interface_names(),
                    )
                    .map_err(record_error)?;
                    if let Progress::Stopped(reason) =
                        recorder.write_frame(id, ts, &data, wire_len).map_err(record_error)?
                    {
                        stopped = Some(reason);
                        break;
                    }
                }
                None => skipped_linktype += 1,
            }
        }
        if engine.advance_if_due(ts, &mut emit).map_err(write_error)? {
            if let Some(recorder) = recorder.as_mut()
                && let Progress::Stopped(reason) = recorder.tick(ts).map_err(record_error)?
            {
                stopped = Some(reason);
                break;
            }
            progress.show(&engine, recorder.as_ref());
        }
        engine.ingest(&Frame { ts, interface, linktype, data: &data, wire_len });
        last = last.max(ts);
    }
    // Cluster changes recorded after the last packet, or in a file with none at all: the new
    // file is written all the same, with them in it.
    let events: Vec<_> =
        source.take_cluster_events().into_iter().filter(|e| gate.admit(e)).collect();
    if stopped.is_none() {
        // A file with no packets at all is written all the same, made now.
        let ts = if recorder.is_some() { last } else { wall_now() };
        take_cluster_changes(&mut engine, &mut recorder, config, events, ts)?;
    } else {
        // The recording stopped at a limit: the flows still open follow them all the same.
        for event in events {
            engine.apply(event);
        }
    }
    engine.finish(last, &mut emit).map_err(write_error)?;
    flush_flows(&mut flows).map_err(write_error)?;
    progress.clear();
    for warning in source.take_warnings() {
        eprintln!("netwatch: warning: {warning}");
    }
    if skipped_linktype > 0 {
        eprintln!(
            "netwatch: warning: {skipped_linktype} packets of an unsupported link type were not recorded"
        );
    }
    print_summary(recorder.map(Recorder::finish), stopped, &engine.stats(), "")
}

/// The closing line: what was recorded where, and why it stopped, or the flows alone without a
/// file. `extra` ends it (a live capture's kernel drops).
fn print_summary(
    finished: Option<Result<RecordingSummary, RecordError>>,
    stopped: Option<StopReason>,
    stats: &Stats,
    extra: &str,
) -> Result<(), RunError> {
    match finished {
        Some(finished) => {
            let summary = finished.map_err(record_error)?;
            let files: Vec<String> =
                summary.files.iter().map(|f| f.display().to_string()).collect();
            let why =
                stopped.or(summary.stopped).map(|r| format!(" (stopped: {r})")).unwrap_or_default();
            eprintln!(
                "netwatch: recorded {} packets, {} into {}{why}; {} flows{extra}",
                summary.packets,
                human_bytes(summary.bytes),
                files.join(", "),
                stats.flows_total
            );
        }
        None => eprintln!("netwatch: {}{extra}", stats.summary_line()),
    }
    Ok(())
}

/// Cluster changes read from the input before a frame (or after the last one): the recording is
/// made at the first such step, with the view as it stood, the changes go into it at `ts`, and
/// then into the flow stage.
fn take_cluster_changes(
    engine: &mut Engine,
    recorder: &mut Option<Recorder>,
    config: &RecordConfig,
    events: Vec<ClusterEvent>,
    ts: Timestamp,
) -> Result<(), RunError> {
    if let Some(path) = &config.pcapng
        && recorder.is_none()
    {
        let view = engine.cluster_and_policies().0;
        let created = Recorder::create(path, &[], &view_events(view), ts, config.plan);
        *recorder = Some(created.map_err(record_error)?);
    }
    if let Some(recorder) = recorder.as_mut()
        && !events.is_empty()
    {
        recorder.write_cluster_events(ts, &events).map_err(record_error)?;
    }
    for event in events {
        engine.apply(event);
    }
    Ok(())
}

/// Live frames into a recording: each capture interface gets the recording's interface id the
/// first time one of its frames arrives, under the name the capture announced for it.
pub(super) struct FrameRecorder {
    pub recorder: Recorder,
    ids: FxHashMap<u16, u32>,
}

impl FrameRecorder {
    pub(super) fn new(recorder: Recorder) -> Self {
        Self { recorder, ids: FxHashMap::default() }
    }

    /// Writes a frame that carries its bytes; frames without bytes are not recorded.
    pub(super) fn write(
        &mut self,
        frame: &DecodedFrame,
        names: &[String],
    ) -> Result<Progress, RecordError> {
        let Some(raw) = frame.raw.as_deref() else { return Ok(Progress::Continue) };
        let id = recording_interface(
            &mut self.ids,
            &mut self.recorder,
            (frame.interface, raw.linktype),
            names,
        )?;
        self.recorder.write_frame(id, frame.ts, &raw.data, raw.wire_len)
    }
}

/// The recording's id for capture interface `interface` of LINKTYPE `linktype`, described in
/// the file (named from `names`, by index) the first time a frame of it is written.
fn recording_interface(
    ids: &mut FxHashMap<u16, u32>,
    recorder: &mut Recorder,
    (interface, linktype): (u16, u16),
    names: &[String],
) -> Result<u32, RecordError> {
    if let Some(id) = ids.get(&interface) {
        return Ok(*id);
    }
    let name = names
        .get(usize::from(interface))
        .filter(|n| !n.is_empty())
        .cloned()
        .unwrap_or_else(|| format!("if{interface}"));
    let id = recorder.add_interface(InterfaceDesc::new(&name, linktype))?;
    ids.insert(interface, id);
    Ok(id)
}

/// The wall clock, as packet time: live recording is the one place that reads it.
fn wall_now() -> Timestamp {
    Timestamp::from_system_time(std::time::SystemTime::now())
}

/// Whether a step of a live recording ended it: a limit reached (`stopped`) or a write that
/// failed (`failure`).
fn ends(
    progress: Result<Progress, RecordError>,
    stopped: &mut Option<StopReason>,
    failure: &mut Option<RunError>,
) -> bool {
    match progress {
        Ok(Progress::Continue) => false,
        Ok(Progress::Stopped(reason)) => {
            *stopped = Some(reason);
            true
        }
        Err(e) => {
            *failure = Some(record_error(e));
            true
        }
    }
}

/// Writes a flow record, if flows are asked for. A reader that went away (`--flows - | head`)
/// ends the flow output, not the recording.
fn write_flow(
    flows: &mut Option<RecordWriter<Box<dyn Write>>>,
    record: &FlowRecord,
) -> io::Result<()> {
    with_flows(flows, |writer| writer.write(record))
}

/// Flushes the flow records, if flows are asked for; as [`write_flow`].
fn flush_flows(flows: &mut Option<RecordWriter<Box<dyn Write>>>) -> io::Result<()> {
    with_flows(flows, RecordWriter::flush)
}

/// `op` on the flow output while there is one; a reader that went away drops it quietly.
fn with_flows(
    flows: &mut Option<RecordWriter<Box<dyn Write>>>,
    op: impl FnOnce(&mut RecordWriter<Box<dyn Write>>) -> io::Result<()>,
) -> io::Result<()> {
    let Some(writer) = flows.as_mut() else { return Ok(()) };
    match op(writer) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
            *flows = None;
            Ok(())
        }
        done => done,
    }
}

fn record_error(error: RecordError) -> RunError {
    RunError::Runtime(error.to_string())
}

fn write_error(error: io::Error) -> RunError {
    RunError::Runtime(format!("cannot write flow records: {error}"))
}

/// Progress on stderr, once a second, only when stderr is a terminal.
struct ProgressLine {
    enabled: bool,
    last: std::cell::Cell<Option<Instant>>,
}

impl ProgressLine {
    fn new() -> Self {
        Self { enabled: io::stderr().is_terminal(), last: std::cell::Cell::new(None) }
    }

    fn show(&self, engine: &Engine, recorder: Option<&Recorder>) {
        if !self.enabled || self.last.get().is_some_and(|t| t.elapsed().as_secs() < 1) {
            return;
        }
        self.last.set(Some(Instant::now()));
        let stats = engine.stats();
        let size = recorder
            .map(|r| format!(", {} written", human_bytes(r.bytes_written())))
            .unwrap_or_default();
        eprint!(
            "\rnetwatch: {} packets, {} flows, {} evicted{size}   ",
            stats.frames, stats.flows_total, stats.flows_evicted
        );
    }

    fn clear(&self) {
        if self.enabled && self.last.get().is_some() {
            eprint!("\r\x1b[K");
        }
    }
}
