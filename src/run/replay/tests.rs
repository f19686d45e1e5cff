//! The reader thread's hand-over and a failing reader, on a source that hands out real frames.

use super::*;
use crate::capture::{Frame, Next};
use crate::decode::LinkType;

/// Hands out `left` frames (the n-th one stamped n ns after a fixed start); then ends, or
/// fails as a bug would (`fails`). A recording's cluster change (Pods synced) came before
/// frame `change_before`, if any (past the last frame: after it).
struct TestSource {
    frame: Vec<u8>,
    left: usize,
    fails: bool,
    change_before: Option<usize>,
    handed: usize,
    changes: Vec<ClusterEvent>,
}

const START: u64 = 1_800_000_000_000_000_000;

impl TestSource {
    fn new(frame: Vec<u8>, left: usize) -> Self {
        Self { frame, left, fails: false, change_before: None, handed: 0, changes: Vec::new() }
    }
}

impl PacketSource for TestSource {
    fn next_frame(&mut self) -> Next<'_> {
        if self.change_before == Some(self.handed) {
            self.changes.push(ClusterEvent::Synced(ResourceKind::Pod));
        }
        if self.left == 0 {
            assert!(!self.fails, "a bug in the source");
            return Next::End;
        }
        self.left -= 1;
        let ts = Timestamp(START + self.handed as u64);
        self.handed += 1;
        let linktype = Some(LinkType::Ethernet);
        let wire_len = u32::try_from(self.frame.len()).unwrap();
        Next::Packet(Frame { ts, interface: 0, linktype, data: &self.frame, wire_len })
    }

    fn interfaces(&self) -> Vec<String> {
        vec!["eth0".into()]
    }

    fn take_warnings(&mut self) -> Vec<String> {
        Vec::new()
    }

    fn take_cluster_events(&mut self) -> Vec<ClusterEvent> {
        std::mem::take(&mut self.changes)
    }
}

fn dns_frame() -> Vec<u8> {
    let addr = |text: &str| text.parse().unwrap();
    crate::synth::udp(addr("10.244.1.10:40000"), addr("10.244.2.20:53"), &[0; 20])
}

/// A frame of an earlier batch, as a batch handed back by the engine still holds it.
fn old_frame(ts: Timestamp, interface: u16) -> DecodedFrame {
    let data = dns_frame();
    let wire_len = u32::try_from(data.len()).unwrap();
    let linktype = Some(LinkType::Ethernet);
    DecodedFrame::from_frame(&Frame { ts, interface, linktype, data: &data, wire_len })
}

/// What the reader sent, in order: each batch as the numbers of its frames, a cluster
/// change as `None`. Batches come back holding old frames (numbered 1000), as from the engine.
fn items_read(source: TestSource, batch_frames: usize) -> Vec<Option<Vec<u64>>> {
    let old = old_frame(Timestamp(START + 1000), 0);
    let handed_back = || vec![old.clone(); 5];
    let mut items = Vec::new();
    read_source(source, batch_frames, handed_back, |item| {
        match item {
            ReaderItem::Frames(frames) => {
                items.push(Some(frames.iter().map(|f| f.ts.0 - START).collect()));
            }
            ReaderItem::Cluster(_) => items.push(None),
            _ => {}
        }
        true
    });
    items
}

/// A recorded cluster change is applied between the frames recorded before it and those
/// after it, mid-batch too: the batch so far goes first, then the change.
#[test]
fn a_recorded_cluster_change_goes_between_the_frames_before_and_after_it() {
    let mut source = TestSource::new(dns_frame(), 10);
    source.change_before = Some(6);
    let items = items_read(source, 4);
    assert_eq!(items, [Some(vec![0, 1, 2, 3]), Some(vec![4, 5]), None, Some(vec![6, 7, 8, 9])]);
    // Before the first frame, and after the last.
    let mut first = TestSource::new(dns_frame(), 3);
    first.change_before = Some(0);
    assert_eq!(items_read(first, 4), [None, Some(vec![0, 1, 2])]);
    let mut last = TestSource::new(dns_frame(), 3);
    last.change_before = Some(3);
    assert_eq!(items_read(last, 4), [Some(vec![0, 1, 2]), None]);
}

/// A batch handed back still holds the frames it carried (the engine reads them in place):
/// the reader writes new frames over them and drops those left over, so no frame goes out
/// twice.
#[test]
fn batches_handed_back_full_are_filled_anew() {
    let source = TestSource::new(dns_frame(), 10);
    let stale = old_frame(Timestamp(1), 7);
    // More old frames than the last batch has new ones: those left over must not go out.
    let handed_back = || vec![stale.clone(); 3];
    let mut sent = Vec::new();
    read_source(source, 4, handed_back, |item| {
        if let ReaderItem::Frames(frames) = item {
            sent.extend(frames.iter().map(|f| f.interface));
        }
        true
    });
    assert_eq!(sent, [0; 10], "each frame once, and none of a batch's earlier ones");
}

#[test]
fn a_reader_that_fails_is_its_own_error_and_the_flows_read_are_still_handed_out() {
    // One whole batch is handed over before the failure; the frames after it are lost.
    let source = TestSource { fails: true, ..TestSource::new(dns_frame(), REPLAY_BATCH + 100) };
    let mut engine = Engine::new(crate::flow::TableLimits::default());
    let gate = ClusterGate { recorded: true, pinned_policies: false };
    let mut records = Vec::new();
    let failed = replay(source, &mut engine, gate, |record| {
        records.push(record);
        Ok(())
    });
    let error = failed.err().expect("the reader's failure is reported");
    assert!(error.get_ref().is_some_and(|inner| inner.is::<ReaderFailed>()), "{error}");
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].packets.tx, REPLAY_BATCH as u64);
}
