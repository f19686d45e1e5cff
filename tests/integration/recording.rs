//! Recording formats end to end: the demo written as pcapng with its cluster view, read back by
//! tshark and by netwatch, cut short as a crash would leave it, rotated, and flow JSON Lines
//! read back.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use netwatch::capture::{Next, PacketSource};
use netwatch::cluster::{ClusterEvent, ClusterView, snapshot};
use netwatch::engine::Engine;
use netwatch::flow::TableLimits;
use netwatch::record::jsonl;
use netwatch::record::pcapng::{
    InterfaceDesc, Limits, PcapngWriter, Progress, Recorder, RecordingPlan, Rotation, WriterOptions,
};
use netwatch::record::pcapng_reader::{PcapngSource, TimedClusterEvent};
use netwatch::synth::{SECOND_NANOS, TimedFrame, linktype, scenario};
use netwatch::time::Timestamp;

/// A directory under the system temp dir, removed when the test ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let unique = format!(
            "netwatch-recording-{}-{}-{name}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(unique);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const INTERFACES: [&str; 2] = ["cni0", "eth0"];

fn interfaces() -> Vec<InterfaceDesc> {
    INTERFACES.iter().map(|name| InterfaceDesc::new(name, linktype::ETHERNET as u16)).collect()
}

/// Which interface the demo's frame `index` was captured on: both, taking turns.
fn interface_of(index: usize) -> u32 {
    (index % 2) as u32
}

fn demo_cluster() -> Vec<ClusterEvent> {
    snapshot::parse("demo-cluster.yaml", netwatch::demo::CLUSTER).unwrap().events
}

/// A NetworkPolicy created during the recording, as a watcher would report it.
fn policy_added() -> ClusterEvent {
    let yaml = r"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all-egress, namespace: payments}
spec:
  podSelector: {}
  policyTypes: [Egress]
";
    let loaded = snapshot::parse("policy.yaml", yaml).unwrap();
    let object = loaded
        .events
        .into_iter()
        .find_map(|event| match event {
            ClusterEvent::Reset(_, mut objects) if !objects.is_empty() => objects.pop(),
            _ => None,
        })
        .unwrap();
    ClusterEvent::Upsert(object)
}

fn start(frames: &[TimedFrame]) -> Timestamp {
    Timestamp(frames[0].ts_nanos)
}

/// When the policy is added: 30 s into the demo.
fn policy_time(frames: &[TimedFrame]) -> Timestamp {
    Timestamp(start(frames).0 + 30 * SECOND_NANOS)
}

/// Writes the demo with its cluster and the policy change; returns the bytes and, for each
/// block, the file length once it was written (the block boundaries) and whether it was a packet.
fn record_demo(frames: &[TimedFrame]) -> (Vec<u8>, Vec<(u64, bool)>) {
    let mut writer = PcapngWriter::new(
        Vec::new(),
        "demo.pcapng",
        &interfaces(),
        &demo_cluster(),
        start(frames),
        WriterOptions::default(),
    )
    .unwrap();
    let mut boundaries = vec![(writer.len_bytes(), false)];
    let mut policy_written = false;
    for (index, frame) in frames.iter().enumerate() {
        let ts = Timestamp(frame.ts_nanos);
        if !policy_written && ts >= policy_time(frames) {
            writer.write_cluster_event(policy_time(frames), &policy_added()).unwrap();
            boundaries.push((writer.len_bytes(), false));
            policy_written = true;
        }
        let len = frame.frame.len() as u32;
        writer.write_frame(interface_of(index), ts, &frame.frame, len).unwrap();
        boundaries.push((writer.len_bytes(), true));
    }
    (writer.finish().unwrap(), boundaries)
}

struct Read {
    frames: Vec<(Timestamp, u16, Vec<u8>)>,
    events: Vec<TimedClusterEvent>,
    interfaces: Vec<String>,
    warnings: Vec<String>,
}

fn read_source<R: std::io::Read>(mut source: PcapngSource<R>) -> Read {
    let mut frames = Vec::new();
    let mut events = source.take_cluster_events();
    while let Next::Packet(frame) = source.next_frame() {
        frames.push((frame.ts, frame.interface, frame.data.to_vec()));
    }
    events.extend(source.take_cluster_events());
    Read { frames, events, interfaces: source.interfaces(), warnings: source.take_warnings() }
}

fn read_bytes(bytes: Vec<u8>) -> Read {
    read_source(PcapngSource::from_bytes("demo.pcapng", bytes).unwrap())
}

fn expected_frames(frames: &[TimedFrame]) -> Vec<(Timestamp, u16, Vec<u8>)> {
    frames
        .iter()
        .enumerate()
        .map(|(i, f)| (Timestamp(f.ts_nanos), interface_of(i) as u16, f.frame.clone()))
        .collect()
}

/// tshark's view of a file: one `(interface name, malformed)` line per record; fails on any
/// complaint on stderr.
fn tshark_records(path: &Path) -> Vec<(String, String)> {
    let output = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(path)
        .args(["-T", "fields", "-E", "separator=|"])
        .args(["-e", "frame.interface_name", "-e", "_ws.malformed"])
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run tshark ({e}): install it (Debian/Ubuntu: apt-get install tshark)")
        });
    let stderr = String::from_utf8_lossy(&output.stderr);
    let complaints: Vec<&str> = stderr.lines().filter(|l| !l.contains("Running as user")).collect();
    assert!(output.status.success(), "tshark failed on {}: {stderr}", path.display());
    assert!(complaints.is_empty(), "tshark complained about {}: {complaints:?}", path.display());
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let (name, malformed) = line.split_once('|').unwrap();
            (name.to_owned(), malformed.to_owned())
        })
        .collect()
}

#[test]
fn tshark_reads_the_recording_without_warnings_and_counts_every_packet_on_its_interface() {
    let frames = scenario::demo();
    let (bytes, _) = record_demo(&frames);
    let dir = TempDir::new("tshark");
    let path = dir.join("demo.pcapng");
    std::fs::write(&path, &bytes).unwrap();
    let records = tshark_records(&path);
    // Wireshark lists each custom block as a record without an interface; packets have one.
    let packets: Vec<&String> =
        records.iter().map(|(name, _)| name).filter(|name| !name.is_empty()).collect();
    assert_eq!(packets.len(), frames.len(), "tshark counts exactly the packets written");
    for (index, name) in packets.iter().enumerate() {
        assert_eq!(name.as_str(), INTERFACES[interface_of(index) as usize], "packet {index}");
    }
    assert!(records.iter().all(|(_, malformed)| malformed.is_empty()), "nothing malformed");
    let custom_blocks = records.len() - packets.len();
    assert_eq!(custom_blocks, 2, "the view at the start and the policy change, one block each");
}

#[test]
fn tshark_reads_a_cluster_view_split_over_several_blocks() {
    let big_view: Vec<ClusterEvent> = (0..40).flat_map(|_| demo_cluster()).collect();
    let frames = scenario::demo();
    let mut writer = PcapngWriter::new(
        Vec::new(),
        "big.pcapng",
        &interfaces(),
        &big_view,
        start(&frames),
        WriterOptions::default(),
    )
    .unwrap();
    let len = frames[0].frame.len() as u32;
    writer.write_frame(0, start(&frames), &frames[0].frame, len).unwrap();
    let bytes = writer.finish().unwrap();
    let dir = TempDir::new("big");
    let path = dir.join("big.pcapng");
    std::fs::write(&path, &bytes).unwrap();
    let records = tshark_records(&path);
    assert!(records.len() > 3, "the view takes several blocks: {}", records.len());
    assert_eq!(records.iter().filter(|(name, _)| !name.is_empty()).count(), 1);
    let read = read_bytes(bytes);
    assert!(read.warnings.is_empty(), "{:?}", read.warnings);
    assert_eq!(read.events.len(), big_view.len());
}

#[test]
fn the_reader_gives_back_the_frames_interface_names_and_cluster_events_with_their_times() {
    let frames = scenario::demo();
    let (bytes, _) = record_demo(&frames);
    let read = read_bytes(bytes);
    assert!(read.warnings.is_empty(), "{:?}", read.warnings);
    assert_eq!(read.interfaces, INTERFACES.map(str::to_owned));
    assert_eq!(read.frames, expected_frames(&frames));
    let mut expected: Vec<TimedClusterEvent> = demo_cluster()
        .into_iter()
        .map(|event| TimedClusterEvent { ts: start(&frames), event })
        .collect();
    expected.push(TimedClusterEvent { ts: policy_time(&frames), event: policy_added() });
    assert_eq!(read.events, expected);
}

#[test]
fn a_file_cut_anywhere_reads_up_to_the_cut_with_one_warning_saying_where() {
    let frames = scenario::demo();
    let (bytes, boundaries) = record_demo(&frames);
    let expected = expected_frames(&frames);
    let mut cuts: Vec<u64> = (0..400).map(|i| i * 7919 % bytes.len() as u64).collect();
    // Either side of the policy change, and of the last packet.
    let policy_at = boundaries.iter().position(|(_, packet)| !packet).unwrap();
    for &(end, _) in &boundaries[policy_at.max(1)..policy_at + 2] {
        cuts.extend([end - 1, end, end + 1]);
    }
    cuts.extend([bytes.len() as u64 - 1, bytes.len() as u64]);
    for cut in cuts {
        if cut < 4 {
            continue;
        }
        let read = read_bytes(bytes[..cut as usize].to_vec());
        let whole = boundaries.iter().filter(|(end, packet)| *packet && *end <= cut).count();
        assert_eq!(read.frames, expected[..whole], "cut at byte {cut}");
        let at_boundary = boundaries.iter().any(|(end, _)| *end == cut);
        if at_boundary {
            assert!(read.warnings.is_empty(), "cut at block boundary {cut}: {:?}", read.warnings);
        } else {
            assert_eq!(read.warnings.len(), 1, "cut at byte {cut}: {:?}", read.warnings);
            assert!(read.warnings[0].contains("cut short at byte"), "{:?}", read.warnings);
        }
    }
}

#[test]
fn after_a_kill_the_file_on_disk_holds_everything_up_to_the_last_flush() {
    let frames = scenario::demo();
    let dir = TempDir::new("kill");
    let path = dir.join("live.pcapng");
    let mut writer =
        PcapngWriter::create(&path, &interfaces(), &demo_cluster(), start(&frames)).unwrap();
    let half = frames.len() / 2;
    for (index, frame) in frames[..half].iter().enumerate() {
        let len = frame.frame.len() as u32;
        writer
            .write_frame(interface_of(index), Timestamp(frame.ts_nanos), &frame.frame, len)
            .unwrap();
    }
    let last = Timestamp(frames[half - 1].ts_nanos);
    assert!(writer.flush_if_due(last.saturating_add(std::time::Duration::from_secs(1))).unwrap());
    // Written after the flush and never flushed: what a kill -9 loses.
    writer.write_frame(0, last, &frames[half].frame, 60).unwrap();
    // Read while the writer is still alive, as the file stands after the process is killed.
    let read = read_source(PcapngSource::open(&path).unwrap());
    assert!(read.warnings.is_empty(), "{:?}", read.warnings);
    assert_eq!(read.frames, expected_frames(&frames)[..half]);
    assert_eq!(read.events.len(), demo_cluster().len());
    drop(writer);
}

/// Records the demo through a `Recorder` and returns the files it left.
fn record_rotating(dir: &TempDir, rotation: Rotation) -> (Vec<PathBuf>, Vec<TimedFrame>) {
    let frames = scenario::demo();
    let plan = RecordingPlan { rotation, limits: Limits::default(), writer: Default::default() };
    let base = dir.join("ring.pcapng");
    let mut recorder =
        Recorder::create(&base, &interfaces(), &demo_cluster(), start(&frames), plan).unwrap();
    let mut policy_written = false;
    for (index, frame) in frames.iter().enumerate() {
        let ts = Timestamp(frame.ts_nanos);
        if !policy_written && ts >= policy_time(&frames) {
            recorder.write_cluster_events(policy_time(&frames), &[policy_added()]).unwrap();
            policy_written = true;
        }
        let len = frame.frame.len() as u32;
        let progress = recorder.write_frame(interface_of(index), ts, &frame.frame, len).unwrap();
        assert_eq!(progress, Progress::Continue);
    }
    let summary = recorder.finish().unwrap();
    assert_eq!(summary.packets, frames.len() as u64);
    (summary.files, frames)
}

fn view_of(events: &[TimedClusterEvent]) -> ClusterView {
    let mut view = ClusterView::new();
    for event in events {
        view.apply(event.event.clone());
    }
    view
}

#[test]
fn rotated_files_are_each_complete_and_together_hold_every_packet_once() {
    let dir = TempDir::new("rotate");
    let rotation = Rotation { max_file_bytes: Some(64_000), ..Rotation::default() };
    let (files, frames) = record_rotating(&dir, rotation);
    assert!(files.len() >= 5, "{files:?}");
    let mut all = Vec::new();
    let mut changes = 0;
    for (number, file) in files.iter().enumerate() {
        assert!(std::fs::metadata(file).unwrap().len() <= 64_000, "{}", file.display());
        let read = read_source(PcapngSource::open(file).unwrap());
        assert!(read.warnings.is_empty(), "{}: {:?}", file.display(), read.warnings);
        assert_eq!(read.interfaces, INTERFACES.map(str::to_owned));
        // Every file opens with the whole view as it stood: with the policy once it was added.
        let first_ts = read.frames[0].0;
        let head: Vec<TimedClusterEvent> =
            read.events.iter().filter(|e| e.ts <= first_ts).cloned().collect();
        let view = view_of(&head);
        assert!(view.pods.len() > 5, "file {number} carries the pods");
        let has_policy = view.policies.keys().any(|k| k.name == "deny-all-egress");
        assert_eq!(has_policy, first_ts > policy_time(&frames), "file {number}");
        changes += read.events.len() - head.len();
        let packets = tshark_records(file).iter().filter(|(name, _)| !name.is_empty()).count();
        assert_eq!(packets, read.frames.len(), "tshark agrees on {}", file.display());
        all.extend(read.frames);
    }
    assert_eq!(all, expected_frames(&frames), "no packet lost or duplicated at the boundaries");
    assert_eq!(changes, 1, "the policy change is recorded once, in the file it happened in");
}

#[test]
fn rotation_by_time_with_a_file_count_keeps_the_newest_files() {
    let dir = TempDir::new("ring");
    let rotation = Rotation {
        every: Some(std::time::Duration::from_secs(10)),
        keep_files: Some(2),
        ..Rotation::default()
    };
    let (files, frames) = record_rotating(&dir, rotation);
    assert_eq!(files.len(), 2);
    let on_disk = std::fs::read_dir(&dir.0).unwrap().count();
    assert_eq!(on_disk, 2, "older files were removed");
    let mut tail = Vec::new();
    for file in &files {
        let read = read_source(PcapngSource::open(file).unwrap());
        assert!(read.warnings.is_empty(), "{:?}", read.warnings);
        let span = read.frames.last().unwrap().0.since(read.frames[0].0);
        assert!(span < std::time::Duration::from_secs(10), "{span:?}");
        tail.extend(read.frames);
    }
    let expected = expected_frames(&frames);
    assert_eq!(tail, expected[expected.len() - tail.len()..], "the newest packets, in order");
}

#[test]
fn replaying_the_recording_with_its_own_cluster_view_names_endpoints_as_the_demo_does() {
    let frames = scenario::demo();
    let mut writer = PcapngWriter::new(
        Vec::new(),
        "demo.pcapng",
        &[InterfaceDesc::new("eth0", linktype::ETHERNET as u16)],
        &demo_cluster(),
        start(&frames),
        WriterOptions::default(),
    )
    .unwrap();
    for frame in &frames {
        let len = frame.frame.len() as u32;
        writer.write_frame(0, Timestamp(frame.ts_nanos), &frame.frame, len).unwrap();
    }
    let mut source = PcapngSource::from_bytes("demo.pcapng", writer.finish().unwrap()).unwrap();
    let mut engine = Engine::new(TableLimits::default());
    for event in source.take_cluster_events() {
        engine.apply(event.event);
    }
    engine.set_interfaces(source.interfaces());
    let mut lines = Vec::new();
    let gate = netwatch::run::ClusterGate { recorded: true, pinned_policies: false };
    netwatch::run::replay(source, &mut engine, gate, |record| {
        lines.push(serde_json::to_string(&record).unwrap());
        Ok(())
    })
    .unwrap();
    let demo = demo_json_lines();
    let demo: Vec<String> =
        demo.lines().map(|line| line.replace(r#"["demo.pcap"]"#, r#"["eth0"]"#)).collect();
    assert_eq!(lines, demo);
}

fn demo_json_lines() -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_netwatch"))
        .args(["demo", "--headless", "-o", "json"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn the_demo_flow_records_read_back_and_write_out_identically() {
    let text = demo_json_lines();
    let (records, bad) = jsonl::read(text.as_bytes());
    assert!(bad.is_empty(), "{bad:?}");
    assert_eq!(records.len(), text.lines().count());
    let rewritten: Vec<String> =
        records.iter().map(|record| serde_json::to_string(record).unwrap()).collect();
    assert_eq!(rewritten, text.lines().collect::<Vec<_>>());
}

#[test]
fn a_recording_stops_before_passing_max_size_or_duration_and_leaves_a_valid_file() {
    let frames = scenario::demo();
    let limits = [
        Limits { max_bytes: Some(50_000), duration: None },
        Limits { max_bytes: None, duration: Some(std::time::Duration::from_secs(10)) },
    ];
    for limits in limits {
        let dir = TempDir::new("limits");
        let path = dir.join("limited.pcapng");
        let plan =
            RecordingPlan { rotation: Rotation::default(), limits, writer: Default::default() };
        let mut recorder =
            Recorder::create(&path, &interfaces(), &demo_cluster(), start(&frames), plan).unwrap();
        let mut written = 0;
        for (index, frame) in frames.iter().enumerate() {
            let len = frame.frame.len() as u32;
            let ts = Timestamp(frame.ts_nanos);
            match recorder.write_frame(interface_of(index), ts, &frame.frame, len).unwrap() {
                Progress::Continue => written += 1,
                Progress::Stopped(reason) => {
                    let text = reason.to_string();
                    assert!(text.contains("--max-size") || text.contains("--duration"), "{text}");
                    break;
                }
            }
        }
        assert!(0 < written && written < frames.len(), "{limits:?}: {written}");
        let summary = recorder.finish().unwrap();
        assert!(summary.stopped.is_some());
        let read = read_source(PcapngSource::open(&path).unwrap());
        assert!(read.warnings.is_empty(), "{:?}", read.warnings);
        assert_eq!(read.frames, expected_frames(&frames)[..written]);
        if let Some(max) = limits.max_bytes {
            assert!(std::fs::metadata(&path).unwrap().len() <= max);
        }
        if let Some(duration) = limits.duration {
            assert!(read.frames.last().unwrap().0 < start(&frames).saturating_add(duration));
        }
    }
}

#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_is_a_clear_error() {
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
    let error = PcapngWriter::new(
        full,
        "/dev/full",
        &interfaces(),
        &demo_cluster(),
        Timestamp(0),
        WriterOptions::default(),
    )
    .unwrap_err();
    let message = error.to_string();
    assert!(message.starts_with("cannot write '/dev/full': No space left on device"), "{message}");
    assert!(message.contains("the file is valid"), "{message}");
}
