//! `netwatch record` from live interfaces: the capture, the cluster watched alongside, and the
//! stop signals, into the same engine and recorder as a file's.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use super::super::{RunError, load_cluster};
use super::{
    FrameRecorder, ProgressLine, ends, flow_writer, flush_flows, print_summary, record_error,
    wall_now, write_error, write_flow,
};
use crate::capture::live::{CaptureEvent, FramePool, LiveCapture, LiveConfig};
use crate::cluster::watch::{self, KubeSettings, WatchStatus, WatchUpdate};
use crate::config::RecordConfig;
use crate::engine::Engine;
use crate::record::pcapng::rotation::{Recorder, StopReason, view_events};
use crate::snapshot::FlowRecord;

/// Records live capture until a limit is reached or Ctrl-C / SIGTERM, then closes the file
/// cleanly. Frames come with their bytes; the flow stage counts each packet once.
pub(super) fn record_live(config: &RecordConfig) -> Result<(), RunError> {
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
    let drops = if drops > 0 { format!(", {drops} dropped by the kernel") } else { String::new() };
    let finished = recorder.map(|recorder| recorder.recorder.finish());
    print_summary(finished, stopped, &engine.stats(), &drops)
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

#[cfg(test)]
mod tests;
