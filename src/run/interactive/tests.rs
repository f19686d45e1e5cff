use super::*;
use crate::capture::interfaces::{InterfaceClass, InterfaceInfo};
use crate::capture::live::InterfaceStats;
use crate::flow::TableLimits;
use crate::record::pcapng::rotation::StopReason;

fn attached(index: u16, name: &str) -> CaptureEvent {
    let interface = InterfaceInfo {
        name: name.to_owned(),
        ifindex: u32::from(index) + 10,
        class: InterfaceClass::PodVeth,
        captured: true,
        reason: String::new(),
        master: None,
        peer_ifindex: None,
        routed_addresses: Vec::new(),
    };
    CaptureEvent::Attached { index, interface }
}

fn stats(index: u16, dropped: u64, if_dropped: u64) -> InterfaceStats {
    InterfaceStats {
        index,
        name: format!("if{index}"),
        received: 100,
        dropped,
        if_dropped,
        buffer_bytes: 1 << 25,
    }
}

/// Capture events as the loop receives them: each attach as it is, nothing for a detach (an
/// index keeps its name, as frames may follow), and the drop total of the attached
/// interfaces and of those that went away.
#[test]
fn capture_events_become_loop_items() {
    let (sender, mut items) = mpsc::channel(16);
    let mut sink = LoopItems { items: sender };
    assert!(sink.deliver(attached(1, "veth1")));
    assert!(sink.deliver(attached(0, "cni0")));
    assert!(sink.deliver(CaptureEvent::Detached { index: 1, name: "veth1".into() }));
    assert!(sink.deliver(CaptureEvent::Stats(vec![
        stats(0, 2, 1),
        stats(crate::capture::live::DETACHED_INDEX, 4, 0),
    ])));
    assert!(sink.deliver(CaptureEvent::Warning("cannot open veth7".into())));
    let mut received = Vec::new();
    while let Ok(item) = items.try_recv() {
        received.push(match item {
            ReaderItem::Attached { index, name } => format!("attached {index} {name}"),
            ReaderItem::Drops(total) => format!("drops {total}"),
            ReaderItem::Warning(warning) => format!("warning {warning}"),
            ReaderItem::Frames(_) | ReaderItem::Cluster(_) | ReaderItem::Interfaces(_) => {
                "other".into()
            }
        });
    }
    assert_eq!(
        received,
        ["attached 1 veth1", "attached 0 cni0", "drops 7", "warning cannot open veth7",]
    );
    drop(items);
    assert!(!sink.deliver(attached(2, "veth2")), "the loop is gone: the capture stops");
}

/// A recording that reaches a limit or fails ends: it is closed with what it wrote, the
/// status line says why, and the line printed on the way out says what it kept.
#[test]
fn a_recording_that_stops_is_closed_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rec.pcapng");
    let now = Timestamp::from_secs(1_800_000_000);
    let recorder = Recorder::create(&path, &[], &[], now, RecordingPlan::default()).unwrap();
    let mut intake = Intake {
        engine: Engine::new(TableLimits::default()),
        recording: Some(FrameRecorder::new(recorder)),
        recorded: None,
        ended: Vec::new(),
        reached: now,
    };
    assert_eq!(intake.recording_step(Ok(Progress::Continue)), None);
    assert!(intake.recording.is_some());
    let limit = StopReason::Duration(Duration::from_secs(60));
    let status = intake.recording_step(Ok(Progress::Stopped(limit))).unwrap();
    assert_eq!(status, "recording stopped: recorded for --duration 1m");
    assert!(intake.recording.is_none());
    let recorded = intake.recorded.clone().unwrap();
    assert!(recorded.starts_with(&format!("{status}; recorded 0 packets")), "{recorded}");
    assert!(recorded.contains("rec.pcapng"), "{recorded}");
    assert!(std::fs::metadata(&path).unwrap().len() > 0, "closed with its header");
    assert_eq!(intake.recording_step(Ok(Progress::Stopped(limit))), None, "once");
}

/// A file of flow records: all of them listed (past the live view's 5,000 ended flows),
/// and the selection moves from one to the next (records read back all have id 0).
#[test]
fn a_file_of_flow_records_lists_every_record_and_the_selection_moves() {
    let template = crate::tui::fixtures::demo_app().records[0].clone();
    let mut records = vec![template; 6_000];
    for (n, record) in records.iter_mut().enumerate() {
        record.flow_id = 0;
        record.bytes.tx = n as u64;
    }
    let mut app = records_app(records, "flows.jsonl");
    assert_eq!(app.records.len(), 6_000);
    let first = app.selected;
    app.update(Action::Down);
    app.update(Action::Down);
    assert_ne!(app.selected, first);
    let order = app.visible_flows();
    assert_eq!(app.selected, Some(app.records[order[2]].flow_id));
}
