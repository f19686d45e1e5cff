//! The interactive loop: the terminal, the replay clock and the channels, around the pure engine
//! and App. One owner: this loop holds the engine and the App; a reader thread sends decoded
//! frames, a terminal thread sends events, a ticker paces redraws. The terminal is restored on
//! every way out: q, Ctrl-C, SIGTERM, an error, a panic.

use std::collections::VecDeque;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossterm::event::{DisableMouseCapture, EnableMouseCapture, Event};
use tokio::sync::mpsc;

use super::record::FrameRecorder;
use super::{ClusterGate, ReaderItem, RunError, read_source};
use crate::capture::live::{CaptureEvent, EventSink, FramePool, LiveCapture};
use crate::capture::{DecodedFrame, PacketSource};
use crate::cluster::ClusterEvent;
use crate::cluster::watch::{self, KubeSettings, WatchStatus, WatchUpdate};
use crate::config::LiveRunConfig;
use crate::engine::Engine;
use crate::record::pcapng::RecordError;
use crate::record::pcapng::rotation::{
    Progress, Recorder, RecordingPlan, RecordingSummary, view_events,
};
use crate::snapshot::FlowRecord;
use crate::time::Timestamp;
use crate::tui::app::{Action, App, Feed, ReplayPosition, Source, Speed};
use crate::tui::filter::Filter;
use crate::tui::theme::Theme;
use crate::tui::{ClusterFacts, keymap, views};

/// Redraws per second when nothing else happens.
const TICK: Duration = Duration::from_millis(250);
/// Most frames ingested per tick at `max` speed, so keys stay responsive.
const MAX_FRAMES_PER_TICK: usize = 500_000;

/// What the loop is told, from every producer.
enum Input {
    Terminal(Event),
    TerminalGone(String),
    Quit,
}

/// Packet time for a replay: anchored to the wall clock, scaled by the speed.
struct ReplayClock {
    anchor_wall: Instant,
    anchor_packet: Option<Timestamp>,
    speed: Speed,
    paused: bool,
}

impl ReplayClock {
    fn now(&self, wall: Instant) -> Option<Timestamp> {
        let anchor = self.anchor_packet?;
        if self.paused {
            return Some(anchor);
        }
        match self.speed {
            Speed::Max => Some(Timestamp(u64::MAX)),
            Speed::Times(x) => {
                Some(anchor.saturating_add(wall.duration_since(self.anchor_wall).mul_f64(x)))
            }
        }
    }

    /// Re-anchors at the current packet time, so speed and pause changes take effect from now.
    fn reanchor(&mut self, wall: Instant, reached: Timestamp) {
        self.anchor_packet = Some(reached.max(self.anchor_packet.unwrap_or_default()));
        self.anchor_wall = wall;
    }
}

pub struct Session {
    pub source_label: String,
    pub cluster_label: String,
    /// Which recorded cluster changes to apply as the replay reaches them.
    pub gate: ClusterGate,
    /// Live capture: no replay clock; time moves with the wall clock.
    pub live: bool,
    /// Watch the cluster through its API.
    pub kube: Option<KubeSettings>,
    /// Show this namespace at first (`-n`).
    pub namespace: Option<String>,
    /// Record while watching into this pcapng.
    pub record: Option<PathBuf>,
    /// Live: where emptied frame batches go back to be filled again.
    pub frame_pool: Option<FramePool>,
}

impl Session {
    /// Hands an emptied frame batch back to the live capture, to be filled again.
    fn give_back(&self, batch: Vec<DecodedFrame>) {
        if let Some(pool) = &self.frame_pool {
            pool.give(batch);
        }
    }
}

/// Runs the TUI over a replayed file until the user quits.
pub fn run<S: PacketSource + Send + 'static>(
    engine: Engine,
    source: S,
    session: &Session,
) -> Result<(), RunError> {
    let (item_sender, items) = mpsc::channel::<ReaderItem>(16);
    let reader = std::thread::Builder::new()
        .name("netwatch-read".into())
        .spawn(move || {
            read_source(
                source,
                crate::capture::FRAME_BATCH,
                || Vec::with_capacity(crate::capture::FRAME_BATCH),
                |item| item_sender.blocking_send(item).is_ok(),
            );
        })
        .map_err(|e| RunError::Runtime(format!("cannot start the capture reader: {e}")))?;
    let result = in_terminal(engine, items, session);
    if reader.join().is_err() {
        return Err(RunError::Runtime("the capture reader thread panicked".into()));
    }
    result.map(|_| ())
}

/// Runs the TUI on live capture until the user quits. The capture's events reach the loop as
/// its items, turned so on the capture's supervisor thread.
pub fn run_live(
    engine: Engine,
    config: &LiveRunConfig,
    cluster_label: &str,
) -> Result<(), RunError> {
    // Room for bursts while the view draws (128 batches of up to 1024 frames); past it the
    // supervisor waits, and the kernel buffer takes the rest.
    let (item_sender, items) = mpsc::channel::<ReaderItem>(128);
    let sink = LoopItems { items: item_sender };
    let capture =
        LiveCapture::start(config.capture.clone(), sink).map_err(|e| match e.exit_code() {
            2 => RunError::BadInput(e.to_string()),
            _ => RunError::Runtime(e.to_string()),
        })?;
    let session = Session {
        source_label: "live".to_owned(),
        cluster_label: cluster_label.to_owned(),
        gate: ClusterGate { recorded: false, pinned_policies: false },
        live: true,
        kube: config.kube.clone(),
        namespace: config.namespace.clone(),
        record: config.record.clone(),
        frame_pool: Some(capture.frame_pool()),
    };
    let result = in_terminal(engine, items, &session);
    capture.stop();
    let summary = result?;
    if let Some(summary) = summary {
        eprintln!("netwatch: {summary}");
    }
    Ok(())
}

/// What frames go into, as the loop holds it: the engine, the recording when one is running,
/// flows ended since the last draw, and the newest time reached.
struct Intake {
    engine: Engine,
    recording: Option<FrameRecorder>,
    /// The line to print on the way out about a recording that ended early.
    recorded: Option<String>,
    ended: Vec<FlowRecord>,
    reached: Timestamp,
}

impl Intake {
    /// One frame in, after the flows it makes due; a message for the status line if the
    /// recording ended.
    fn frame(&mut self, frame: DecodedFrame) -> Option<String> {
        let _ = self.engine.advance_if_due(frame.ts, |record| {
            self.ended.push(record);
            Ok::<(), ()>(())
        });
        self.reached = self.reached.max(frame.ts);
        let step = self
            .recording
            .as_mut()
            .map(|recorder| recorder.write(&frame, self.engine.interface_names()));
        self.engine.ingest_decoded(frame.ts, frame.interface, frame.decoded);
        step.and_then(|step| self.recording_step(step))
    }

    /// Takes in a step of the recording (a frame, cluster changes, a tick): one that reached a
    /// limit or failed ends the recording, which is closed with what it wrote so far. Returns
    /// the status line that says so.
    fn recording_step(&mut self, step: Result<Progress, RecordError>) -> Option<String> {
        let why = match step {
            Ok(Progress::Continue) => return None,
            Ok(Progress::Stopped(reason)) => reason.to_string(),
            Err(error) => error.to_string(),
        };
        let recording = self.recording.take()?;
        let status = format!("recording stopped: {why}");
        let closed = match recording.recorder.finish() {
            Ok(summary) => recorded_line(&summary),
            Err(error) => format!("closing the recording failed too: {error}"),
        };
        self.recorded = Some(format!("{status}; {closed}"));
        Some(status)
    }

    /// Cluster changes read from a recording, as far as the gate lets them through.
    fn apply_cluster(&mut self, events: Vec<ClusterEvent>, gate: ClusterGate) {
        for event in events.into_iter().filter(|e| gate.admit(e)) {
            self.engine.apply(event);
        }
    }

    /// Takes what a reader item says about the input (interface names, drops, a warning for
    /// `status`) and hands back what it carries for the caller to place: frames and recorded
    /// cluster changes (at once when live, on the replay clock when replaying).
    fn take_item(
        &mut self,
        item: ReaderItem,
        drops: &mut u64,
        status: &mut Option<String>,
    ) -> Option<Carried> {
        match item {
            ReaderItem::Frames(frames) => return Some(Carried::Frames(frames)),
            ReaderItem::Cluster(events) => return Some(Carried::Cluster(events)),
            ReaderItem::Interfaces(names) => self.engine.set_interfaces(names),
            ReaderItem::Attached { index, name } => self.engine.name_interface(index, name),
            ReaderItem::Drops(total) => *drops = total,
            ReaderItem::Warning(warning) => *status = Some(warning),
        }
        None
    }
}

/// The part of a reader item that goes into the engine.
enum Carried {
    Frames(Vec<DecodedFrame>),
    Cluster(Vec<ClusterEvent>),
}

/// What a recording wrote, for the line printed once the terminal is given back.
fn recorded_line(summary: &RecordingSummary) -> String {
    let files: Vec<String> = summary.files.iter().map(|f| f.display().to_string()).collect();
    format!(
        "recorded {} packets, {} into {}",
        summary.packets,
        crate::record::human_bytes(summary.bytes),
        files.join(", ")
    )
}

/// Capture events become loop items: frames and attached interfaces as they are (a name keeps
/// its index for good: frames may follow a detach), stats as total drops.
/// Done on the capture's supervisor thread as it sends: a thread in between only to convert
/// them moved every batch across one more core.
struct LoopItems {
    items: mpsc::Sender<ReaderItem>,
}

impl EventSink for LoopItems {
    fn deliver(&mut self, event: CaptureEvent) -> bool {
        let item = match event {
            CaptureEvent::Frames(frames) => ReaderItem::Frames(frames),
            CaptureEvent::Attached { index, interface } => {
                ReaderItem::Attached { index, name: interface.name }
            }
            CaptureEvent::Detached { .. } => return true,
            CaptureEvent::Stats(stats) => {
                ReaderItem::Drops(crate::capture::live::total_drops(&stats))
            }
            CaptureEvent::Warning(warning) => ReaderItem::Warning(warning),
        };
        // The supervisor is a plain thread, never inside the loop's runtime: blocking is fine.
        self.items.blocking_send(item).is_ok()
    }
}

/// Runs the loop with the terminal taken; returns a line to print once it is given back (what a
/// recording wrote).
fn in_terminal(
    engine: Engine,
    items: mpsc::Receiver<ReaderItem>,
    session: &Session,
) -> Result<Option<String>, RunError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| RunError::Runtime(format!("cannot start the event loop: {e}")))?;
    let theme = Theme::new(std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()));
    let mut terminal = ratatui::init();
    let previous_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let _ = crossterm::execute!(io::stdout(), DisableMouseCapture);
        previous_hook(info);
    }));
    let _ = crossterm::execute!(io::stdout(), EnableMouseCapture);
    let result = runtime.block_on(event_loop(&mut terminal, engine, items, session, theme));
    let _ = crossterm::execute!(io::stdout(), DisableMouseCapture);
    ratatui::restore();
    result
}

async fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    mut engine: Engine,
    mut items: mpsc::Receiver<ReaderItem>,
    session: &Session,
    theme: Theme,
) -> Result<Option<String>, RunError> {
    let (input_sender, mut inputs) = mpsc::unbounded_channel::<Input>();
    spawn_terminal_reader(input_sender.clone());
    spawn_signal_watch(input_sender);

    let mut app = App::new(!session.live);
    if let Some(namespace) = &session.namespace
        && let Ok(filter) = Filter::parse(&format!("ns:{namespace}"))
    {
        app.filter = filter;
    }
    // The cluster watch: its updates arrive on their own channel; its state is the header's.
    let (watch_sender, mut watch_updates) = mpsc::channel::<WatchUpdate>(1024);
    let mut watch_status = WatchStatus::new();
    let mut cluster_label = session.cluster_label.clone();
    let mut watchers = None;
    let recording = match &session.record {
        Some(path) => {
            let view = engine.cluster_and_policies().0;
            let now = Timestamp::from_system_time(std::time::SystemTime::now());
            let recorder =
                Recorder::create(path, &[], &view_events(view), now, RecordingPlan::default())
                    .map_err(|e| RunError::Runtime(e.to_string()))?;
            Some(FrameRecorder::new(recorder))
        }
        None => None,
    };
    if let Some(settings) = &session.kube {
        match watch::connect(settings).await {
            Ok(client) => watchers = Some(watch::spawn_watchers(client, watch_sender)),
            Err(error) => cluster_label = format!("none: {error}"),
        }
    }
    let mut drops = 0u64;
    let mut clock = ReplayClock {
        anchor_wall: Instant::now(),
        anchor_packet: None,
        speed: Speed::Times(1.0),
        paused: false,
    };
    // Frames and recorded cluster changes in file order, waiting for the replay clock.
    let mut pending: VecDeque<Pending> = VecDeque::new();
    let mut input_done = false;
    let mut facts = Arc::new(ClusterFacts::default());
    let mut ticker = tokio::time::interval(TICK);
    // A loop that fell behind draws once, not once for every tick it missed.
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last_tick = Instant::now();
    let mut intake = Intake {
        engine,
        recording,
        recorded: None,
        ended: Vec::new(),
        reached: Timestamp::default(),
    };
    let mut step_to: Option<Timestamp> = None;
    // Live frames ingested as they arrived since the last draw.
    let mut arrived = 0usize;

    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            // Live frames go into the engine as they arrive, while they are still warm in the
            // cache, rather than queued for the next draw (and the memory that queue took).
            item = items.recv(), if session.live && !input_done => {
                // Live items come only this way (the tick's pull is for replays), so nothing
                // waits in `pending` and frames keep their order.
                let Some(item) = item else {
                    input_done = true;
                    continue;
                };
                match intake.take_item(item, &mut drops, &mut app.status) {
                    Some(Carried::Frames(mut batch)) => {
                        arrived += batch.len();
                        for frame in batch.drain(..) {
                            if let Some(status) = intake.frame(frame) {
                                app.status = Some(status);
                            }
                        }
                        session.give_back(batch);
                    }
                    Some(Carried::Cluster(events)) => intake.apply_cluster(events, session.gate),
                    None => {}
                }
                continue;
            }
            update = watch_updates.recv(), if watchers.is_some() => {
                if let Some(update) = update {
                    watch_status.observe(&update);
                    cluster_label = watch_status.summary();
                    if let WatchUpdate::Event(event) = update {
                        if let Some(recording) = intake.recording.as_mut() {
                            let now = Timestamp::from_system_time(std::time::SystemTime::now());
                            let step = recording.recorder.write_cluster_events(now, std::slice::from_ref(&event));
                            if let Some(status) = intake.recording_step(step.map(|()| Progress::Continue)) {
                                app.status = Some(status);
                            }
                        }
                        intake.engine.apply(event);
                    }
                }
                continue;
            }
            input = inputs.recv() => match input {
                Some(Input::Terminal(event)) => {
                    if matches!(event, Event::Resize(..)) {
                        draw(terminal, &mut app, theme)?;
                        continue;
                    }
                    let Some(action) = keymap::action_for(&event, app.filter_input.is_some()) else { continue };
                    let now = Instant::now();
                    match action {
                        Action::Faster | Action::Slower | Action::TogglePause => clock.reanchor(now, intake.reached),
                        Action::Step if app.paused => step_to = Some(intake.reached.saturating_add(Duration::from_secs(1))),
                        _ => {}
                    }
                    app.update(action);
                    if !session.live {
                        clock.speed = app.speed;
                    }
                    clock.paused = app.paused;
                    if app.quit {
                        break;
                    }
                    if step_to.is_none() {
                        draw(terminal, &mut app, theme)?;
                        continue;
                    }
                }
                Some(Input::TerminalGone(reason)) => {
                    app.status = Some(format!("terminal input failed: {reason}"));
                }
                Some(Input::Quit) | None => break,
            },
        }
        // A replay: pull what has arrived, then ingest every frame due on the replay clock.
        while !session.live && pending.len() < MAX_FRAMES_PER_TICK {
            match items.try_recv() {
                Ok(item) => match intake.take_item(item, &mut drops, &mut app.status) {
                    Some(Carried::Frames(batch)) => {
                        pending.extend(batch.into_iter().map(Pending::Frame));
                    }
                    Some(Carried::Cluster(events)) => pending.push_back(Pending::Cluster(events)),
                    None => {}
                },
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    input_done = true;
                    break;
                }
            }
        }
        let wall = Instant::now();
        if clock.anchor_packet.is_none()
            && let Some(first) = pending.iter().find_map(Pending::ts)
        {
            clock.anchor_packet = Some(first);
            clock.anchor_wall = wall;
        }
        let target = step_to.take().or_else(|| clock.now(wall)).unwrap_or_default();
        let mut ingested = 0usize;
        while let Some(next) = pending.front() {
            if next.ts().is_some_and(|ts| ts > target) || ingested >= MAX_FRAMES_PER_TICK {
                break;
            }
            let frame = match pending.pop_front() {
                Some(Pending::Frame(frame)) => frame,
                Some(Pending::Cluster(events)) => {
                    intake.apply_cluster(events, session.gate);
                    continue;
                }
                None => break,
            };
            if let Some(status) = intake.frame(frame) {
                app.status = Some(status);
            }
            ingested += 1;
        }
        // Those taken as they arrived (live) count toward this draw's rate too.
        ingested += std::mem::take(&mut arrived);
        if session.live {
            // Idle flows end on the wall clock even when no packet arrives.
            let now = Timestamp::from_system_time(std::time::SystemTime::now());
            if let Some(recorder) = intake.recording.as_mut() {
                let step = recorder.recorder.tick(now);
                if let Some(status) = intake.recording_step(step) {
                    app.status = Some(status);
                }
            }
            let _ = intake.engine.advance(now, |record| {
                intake.ended.push(record);
                Ok::<(), ()>(())
            });
            intake.reached = intake.reached.max(now);
        }
        if app.paused {
            clock.reanchor(wall, intake.reached);
        }
        let finished = input_done && pending.is_empty();
        let engine = &mut intake.engine;
        if engine.cluster_generation() != facts.generation
            || facts.policies.is_empty() && !engine.view().policies.is_empty()
        {
            let (view, set) = engine.cluster_and_policies();
            facts = Arc::new(ClusterFacts::from_view(view, set));
        }
        let elapsed = wall.duration_since(last_tick).as_secs_f64().max(1e-3);
        last_tick = wall;
        #[allow(clippy::cast_precision_loss)] // a rate for display
        let packets_per_sec = ingested as f64 / elapsed;
        let mut live = app.take_spare_live();
        engine.live_records_into(intake.reached, &mut live);
        let feed = Feed {
            now: intake.reached,
            live,
            ended: std::mem::take(&mut intake.ended),
            stats: engine.stats(),
            source: Source {
                host: if session.live { host_name() } else { "replay".to_owned() },
                captures: if session.live {
                    vec![format!(
                        "{} interfaces",
                        engine.interface_names().iter().filter(|n| !n.is_empty()).count()
                    )]
                } else {
                    vec![session.source_label.clone()]
                },
                cluster: cluster_label.clone(),
                recording: session
                    .record
                    .as_ref()
                    .filter(|_| intake.recording.is_some())
                    .map(|p| p.display().to_string()),
                replay: (!session.live).then_some(ReplayPosition {
                    at: intake.reached,
                    speed: clock.speed,
                    finished,
                }),
                drops,
            },
            cluster: facts.clone(),
            packets_per_sec,
        };
        app.apply_feed(feed);
        draw(terminal, &mut app, theme)?;
    }
    if let Some(watchers) = watchers {
        watchers.abort();
    }
    let Some(recording) = intake.recording else { return Ok(intake.recorded) };
    let summary = recording.recorder.finish().map_err(|e| RunError::Runtime(e.to_string()))?;
    Ok(Some(recorded_line(&summary)))
}

fn draw(
    terminal: &mut ratatui::DefaultTerminal,
    app: &mut App,
    theme: Theme,
) -> Result<(), RunError> {
    // PgUp/PgDn move by what the terminal shows now.
    if let Ok(size) = terminal.size() {
        app.page = views::page_rows(size.height);
    }
    terminal
        .draw(|frame| views::render(app, theme, frame))
        .map(|_| ())
        .map_err(|e| RunError::Runtime(format!("cannot draw on the terminal: {e}")))
}

/// This host's name, for the header.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|name| name.trim().to_owned())
        .unwrap_or_else(|_| "this host".to_owned())
}

/// A frame, or recorded cluster changes, waiting for the replay clock.
enum Pending {
    Frame(DecodedFrame),
    Cluster(Vec<ClusterEvent>),
}

impl Pending {
    /// Cluster changes have no time of their own: they apply before the next frame.
    fn ts(&self) -> Option<Timestamp> {
        match self {
            Self::Frame(frame) => Some(frame.ts),
            Self::Cluster(_) => None,
        }
    }
}

/// Shows flow records read from a file: the same screens, nothing moving.
pub fn show_records(records: Vec<FlowRecord>, origin: &str) -> Result<(), RunError> {
    let theme = Theme::new(std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()));
    let mut app = records_app(records, origin);
    let mut terminal = ratatui::init();
    let result = (|| loop {
        draw(&mut terminal, &mut app, theme)?;
        let event = crossterm::event::read()
            .map_err(|e| RunError::Runtime(format!("cannot read the terminal: {e}")))?;
        if let Some(action) = keymap::action_for(&event, app.filter_input.is_some()) {
            app.update(action);
        }
        if app.quit {
            return Ok(());
        }
    })();
    ratatui::restore();
    result
}

/// The view of a file of flow records: every record a row (not only the newest ended flows a
/// live view keeps), each with an id of its own (a record read back has none; the selection
/// and the detail screen follow flows by id).
fn records_app(mut records: Vec<FlowRecord>, origin: &str) -> App {
    for (id, record) in (1..).zip(records.iter_mut()) {
        record.flow_id = id;
    }
    let now = records.iter().map(|r| r.last_seen).max().unwrap_or_default();
    let mut app = App::new(true);
    app.apply_feed(Feed {
        now,
        live: records,
        source: Source {
            host: "flow records".to_owned(),
            captures: vec![origin.to_owned()],
            cluster: "as recorded".to_owned(),
            ..Source::default()
        },
        ..Feed::default()
    });
    app
}

/// Terminal events come from a blocking read on their own thread.
fn spawn_terminal_reader(sender: mpsc::UnboundedSender<Input>) {
    let spawned = std::thread::Builder::new().name("netwatch-keys".into()).spawn(move || {
        loop {
            match crossterm::event::read() {
                Ok(event) => {
                    if sender.send(Input::Terminal(event)).is_err() {
                        return;
                    }
                }
                Err(error) => {
                    let _ = sender.send(Input::TerminalGone(error.to_string()));
                    return;
                }
            }
        }
    });
    if let Err(error) = spawned {
        tracing::warn!("cannot read the terminal: {error}");
    }
}

/// SIGTERM and SIGINT end the loop like `q` does, so the terminal is restored.
fn spawn_signal_watch(sender: mpsc::UnboundedSender<Input>) {
    tokio::spawn(async move {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(error) => {
                    tracing::warn!("cannot watch SIGTERM: {error}");
                    return;
                }
            };
        tokio::select! {
            _ = terminate.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        let _ = sender.send(Input::Quit);
    });
}

#[cfg(test)]
mod tests;
