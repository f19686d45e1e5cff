//! A live recording taking in frames, on a real recording file and frames with their bytes.

use std::time::Duration;

use super::*;
use crate::capture::{DecodedFrame, Frame};
use crate::decode::LinkType;
use crate::flow::TableLimits;
use crate::record::pcapng::rotation::{Limits, RecordingPlan};
use crate::time::Timestamp;

/// A limit reached within a batch: the frames after it are neither recorded nor counted, later
/// batches are not taken in, and every batch still goes back to the pool to be filled again.
#[test]
fn a_limit_reached_mid_batch_stops_taking_frames_and_the_batch_goes_back_to_the_pool() {
    let dir = tempfile::tempdir().unwrap();
    let start = Timestamp::from_secs(1_800_000_000);
    let limit = Duration::from_secs(3);
    let plan = RecordingPlan {
        limits: Limits { duration: Some(limit), max_bytes: None },
        ..RecordingPlan::default()
    };
    let recorder =
        Recorder::create(&dir.path().join("node.pcapng"), &[], &[], start, plan).unwrap();
    let frame_pool = FramePool::new(8);
    let mut session = LiveRecording {
        engine: Engine::new(TableLimits::default()),
        recorder: Some(FrameRecorder::new(recorder)),
        frame_pool: frame_pool.clone(),
        drops: 0,
        stopped: None,
        failure: None,
    };
    let addr = |text: &str| text.parse().unwrap();
    let bytes = crate::synth::udp(addr("10.244.1.10:40000"), addr("10.244.2.20:53"), &[0; 20]);
    // One frame a second from the start: the one at 3 s is past the limit.
    let batch_of = |seconds: std::ops::Range<u64>| {
        let mut batch = frame_pool.take();
        for second in seconds {
            batch.push(DecodedFrame::keeping_bytes(&Frame {
                ts: start.saturating_add(Duration::from_secs(second)),
                interface: 0,
                linktype: Some(LinkType::Ethernet),
                data: &bytes,
                wire_len: u32::try_from(bytes.len()).unwrap(),
            }));
        }
        batch
    };
    let first = batch_of(0..6);
    assert_eq!(frame_pool.spare_len(), 0);
    session.take(CaptureEvent::Frames(first));
    assert_eq!(session.stopped, Some(StopReason::Duration(limit)));
    assert_eq!(session.engine.stats().frames, 3, "the frames before the limit, no more");
    assert_eq!(frame_pool.spare_len(), 1, "the batch came back to the pool");
    let second = batch_of(6..8);
    session.take(CaptureEvent::Frames(second));
    assert_eq!(session.engine.stats().frames, 3, "nothing is taken in after the limit");
    assert_eq!(frame_pool.spare_len(), 1, "and so did the next one");
    let summary = session.recorder.take().unwrap().recorder.finish().unwrap();
    assert_eq!(summary.packets, 3);
}
