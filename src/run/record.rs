//! `netwatch record`: packets into pcapng with the cluster view inside, flow records into JSON
//! Lines, from a capture file (`--read`) or live interfaces (`LiveRecording`), through one engine
//! and recorder.

use std::io::{self, BufWriter, IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;

use super::{ClusterGate, Opened, RunError, load_cluster, open_input};
use crate::capture::live::{CaptureEvent, FramePool, LiveCapture, LiveConfig};
use crate::capture::{DecodedFrame, Frame, Next, PacketSource};
use crate::cluster::ClusterEvent;
use crate::cluster::watch::{self, KubeSettings, WatchStatus, WatchUpdate};
use crate::config::{ClusterSource, Input, RecordConfig};
use crate::engine::Engine;
use crate::record::pcapng::rotation::{Progress, Recorder, StopReason, view_events};
use crate::record::pcapng::{InterfaceDesc, RecordError};
use crate::record::{Format, RecordWriter, human_bytes};
use crate::snapshot::FlowRecord;
use crate::time::Timestamp;

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
    let stats = engine.stats();
    match recorder {
        Some(recorder) => {
            let summary = recorder.finish().map_err(record_error)?;
            let files: Vec<String> =
                summary.files.iter().map(|f| f.display().to_string()).collect();
            let why =
                stopped.or(summary.stopped).map(|r| format!(" (stopped: {r})")).unwrap_or_default();
            eprintln!(
                "netwatch: recorded {} packets, {} into {}{why}; {} flows",
                summary.packets,
                human_bytes(summary.bytes),
                files.join(", "),
                stats.flows_total
            );
        }
        None => eprintln!("netwatch: {}", stats.summary_line()),
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

/// Records live capture until a limit is reached or Ctrl-C / SIGTERM, then closes the file
/// cleanly. Frames come with their bytes; the flow stage counts each packet once.
fn record_live(config: &RecordConfig) -> Result<(), RunError> {
    let mut engine = Engine::new(config.limits);
    load_cluster(&mut engine, &config.cluster)?;
    engine.count_once_across_interfaces();
    let capture_config = LiveConfig {
        selection: config.selection.clone(),
        filter: config.filter.clone(),
        snaplen: config.plan.writer.snaplen,
        keep_bytes: config.pcapng.is_some(),
        ..LiveConfig::default()
    };
    let (sender, events) = mpsc::sync_channel::<CaptureEvent>(64);
    let capture = LiveCapture::start(capture_config, sender).map_err(|e| match e.exit_code() {
        2 => RunError::BadInput(e.to_string()),
        _ => RunError::Runtime(e.to_string()),
    })?;
    let stop = watch_for_stop_signals();
    let cluster_updates = config.kube.clone().map(watch_cluster);
    let mut flows = flow_writer(config)?;
    let mut emit = |record: FlowRecord| write_flow(&mut flows, &record);
    let mut watch_status = WatchStatus::new();
    let progress = ProgressLine::new();
    let mut session = LiveRecording {
        engine,
        recorder: None,
        frame_pool: capture.frame_pool(),
        drops: 0,
        stopped: None,
        failure: None,
    };
    if let Some(path) = &config.pcapng {
        let view = session.engine.cluster_and_policies().0;
        let created = Recorder::create(path, &[], &view_events(view), wall_now(), config.plan);
        session.recorder = Some(FrameRecorder::new(created.map_err(record_error)?));
    }
    // An error ends the capture like Ctrl-C does (the capture is stopped and drained below,
    // so its supervisor never waits on a full channel nobody reads), then it is reported.
    while !stop.load(Ordering::Relaxed) {
        match events.recv_timeout(Duration::from_millis(200)) {
            Ok(event) => session.take(event),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if session.ended() {
            break;
        }
        let now = wall_now();
        // Cluster changes go into the file at the time they arrived, and into the flow stage.
        for update in cluster_updates.iter().flat_map(|updates| updates.try_iter()) {
            watch_status.observe(&update);
            if let WatchUpdate::Event(event) = update {
                if let Some(recorder) = session.recorder.as_mut()
                    && let Err(e) =
                        recorder.recorder.write_cluster_events(now, std::slice::from_ref(&event))
                {
                    session.failure = Some(record_error(e));
                    break;
                }
                session.engine.apply(event);
            }
        }
        if session.ended() {
            break;
        }
        if let Err(e) = session.engine.advance(now, &mut emit) {
            session.failure = Some(write_error(e));
            break;
        }
        if let Some(recorder) = session.recorder.as_mut() {
            let ticked = recorder.recorder.tick(now);
            if ends(ticked, &mut session.stopped, &mut session.failure) {
                break;
            }
        }
        progress.show(&session.engine, session.recorder.as_ref().map(|r| &r.recorder));
    }
    // The capture sends what it still holds as it stops: take it in (recorded and counted, unless
    // a limit or an error ended the recording) until it hangs up, then join its threads.
    capture.request_stop();
    for event in events.iter() {
        session.take(event);
    }
    capture.stop();
    let LiveRecording { mut engine, recorder, drops, stopped, failure, .. } = session;
    if let Some(failure) = failure {
        return Err(failure);
    }
    if config.kube.is_some() {
        eprintln!("netwatch: cluster: {}", watch_status.summary());
    }
    engine.finish(wall_now(), &mut emit).map_err(write_error)?;
    flush_flows(&mut flows).map_err(write_error)?;
    progress.clear();
    let stats = engine.stats();
    let drops = if drops > 0 { format!(", {drops} dropped by the kernel") } else { String::new() };
    match recorder {
        Some(recorder) => {
            let summary = recorder.recorder.finish().map_err(record_error)?;
            let files: Vec<String> =
                summary.files.iter().map(|f| f.display().to_string()).collect();
            let why =
                stopped.or(summary.stopped).map(|r| format!(" (stopped: {r})")).unwrap_or_default();
            eprintln!(
                "netwatch: recorded {} packets, {} into {}{why}; {} flows{drops}",
                summary.packets,
                human_bytes(summary.bytes),
                files.join(", "),
                stats.flows_total
            );
        }
        None => eprintln!("netwatch: {}{drops}", stats.summary_line()),
    }
    Ok(())
}

/// A live recording in progress: the flow stage, the file, and how it ended, if it did.
struct LiveRecording {
    engine: Engine,
    recorder: Option<FrameRecorder>,
    frame_pool: FramePool,
    drops: u64,
    /// A limit was reached.
    stopped: Option<StopReason>,
    /// A write failed.
    failure: Option<RunError>,
}

impl LiveRecording {
    fn ended(&self) -> bool {
        self.stopped.is_some() || self.failure.is_some()
    }

    /// Takes one event from the capture, while running and while draining it at the end alike.
    /// Frames are recorded and counted until the recording ends; their batch always goes back
    /// to the pool, also when the recording ended within it.
    fn take(&mut self, event: CaptureEvent) {
        match event {
            CaptureEvent::Frames(mut frames) => {
                for frame in frames.drain(..) {
                    if self.ended() {
                        break; // a limit or an error ended the recording: the rest is not taken in
                    }
                    if let Some(recorder) = self.recorder.as_mut() {
                        let written = recorder.write(&frame, self.engine.interface_names());
                        if ends(written, &mut self.stopped, &mut self.failure) {
                            break;
                        }
                    }
                    self.engine.ingest_decoded(frame.ts, frame.interface, frame.decoded);
                }
                self.frame_pool.give(frames);
            }
            CaptureEvent::Attached { index, interface } => {
                self.engine.name_interface(index, interface.name);
            }
            CaptureEvent::Stats(stats) => self.drops = crate::capture::live::total_drops(&stats),
            CaptureEvent::Warning(warning) => eprintln!("netwatch: warning: {warning}"),
            CaptureEvent::Detached { .. } => {}
        }
    }
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

/// Watches the cluster on a thread of its own; updates arrive on the returned channel. A cluster
/// that cannot be reached is one warning: the recording goes on without identities.
fn watch_cluster(settings: KubeSettings) -> mpsc::Receiver<WatchUpdate> {
    let (sender, updates) = mpsc::channel();
    let spawned = std::thread::Builder::new().name("netwatch-kube".into()).spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
            return;
        };
        runtime.block_on(async move {
            let client = match watch::connect(&settings).await {
                Ok(client) => client,
                Err(error) => {
                    eprintln!("netwatch: warning: recording without the cluster view: {error}");
                    return;
                }
            };
            let (watch_sender, mut watch_updates) = tokio::sync::mpsc::channel(1024);
            let watchers = watch::spawn_watchers(client, watch_sender);
            while let Some(update) = watch_updates.recv().await {
                if sender.send(update).is_err() {
                    break;
                }
            }
            watchers.abort();
        });
    });
    if let Err(error) = spawned {
        tracing::warn!("cannot watch the cluster: {error}");
    }
    updates
}

/// Ctrl-C and SIGTERM end a live recording cleanly: the flag is checked between batches.
fn watch_for_stop_signals() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let spawned = std::thread::Builder::new().name("netwatch-signals".into()).spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
            return;
        };
        runtime.block_on(async {
            let kind = tokio::signal::unix::SignalKind::terminate();
            let Ok(mut terminate) = tokio::signal::unix::signal(kind) else { return };
            tokio::select! {
                _ = terminate.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        });
        flag.store(true, Ordering::Relaxed);
    });
    if let Err(error) = spawned {
        tracing::warn!("cannot watch for Ctrl-C and SIGTERM: {error}");
    }
    stop
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

#[cfg(test)]
mod tests;
