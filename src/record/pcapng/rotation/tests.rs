use super::*;

fn file(bytes: u64, packets: u64, started_secs: u64) -> FileState {
    FileState { bytes, packets, started: Timestamp::from_secs(started_secs) }
}

#[test]
fn sizes_take_decimal_and_binary_units_and_quote_bad_ones() {
    assert_eq!(parse_size("100MB"), Ok(100_000_000));
    assert_eq!(parse_size("500mb"), Ok(500_000_000));
    assert_eq!(parse_size("2GiB"), Ok(2 << 30));
    assert_eq!(parse_size("4096"), Ok(4096));
    assert_eq!(parse_size("10 kB"), Ok(10_000));
    let error = parse_size("lots").unwrap_err();
    assert!(error.contains("'lots'") && error.contains("100MB"), "{error}");
    assert!(parse_size("0MB").is_err());
    assert!(parse_size("99999999999999TB").is_err());
}

#[test]
fn a_file_rotates_before_a_packet_would_take_it_past_the_size() {
    let rotation = Rotation { max_file_bytes: Some(1000), ..Rotation::default() };
    let now = Timestamp::from_secs(10);
    assert!(!rotation.is_due(&file(900, 3, 0), now, 100));
    assert!(rotation.is_due(&file(901, 3, 0), now, 100));
}

#[test]
fn a_file_always_takes_one_packet_however_large() {
    let rotation = Rotation { max_file_bytes: Some(100), ..Rotation::default() };
    assert!(!rotation.is_due(&file(500, 0, 0), Timestamp::from_secs(1), 10_000));
}

#[test]
fn a_file_rotates_once_it_spans_the_interval() {
    let rotation = Rotation { every: Some(Duration::from_secs(3600)), ..Rotation::default() };
    assert!(!rotation.is_due(&file(10, 1, 0), Timestamp::from_secs(3599), 10));
    assert!(rotation.is_due(&file(10, 1, 0), Timestamp::from_secs(3600), 10));
}

#[test]
fn rotated_files_are_numbered_and_a_ring_removes_the_oldest() {
    let rotation = Rotation { max_file_bytes: Some(100), every: None, keep_files: Some(3) };
    let base = Path::new("out/capture.pcapng");
    assert_eq!(rotation.file_path(base, 7), Path::new("out/capture-00007.pcapng"));
    assert_eq!(Rotation::default().file_path(base, 1), base);
    assert_eq!(rotation.keep(), Some(3));
    assert_eq!(Rotation::default().keep(), None);
}

/// A ring of `keep` files that rotates after every frame.
fn ring_of(keep: u32) -> RecordingPlan {
    RecordingPlan {
        rotation: Rotation { max_file_bytes: Some(1), every: None, keep_files: Some(keep) },
        ..RecordingPlan::default()
    }
}

/// A recording at `base` with one Ethernet interface, and that interface's id.
fn recorder_on_eth0(base: &Path, plan: RecordingPlan, start: Timestamp) -> (Recorder, u32) {
    let mut recorder = Recorder::create(base, &[], &[], start, plan).unwrap();
    let id = recorder.add_interface(super::super::InterfaceDesc::new("eth0", 1)).unwrap();
    (recorder, id)
}

/// One 60-byte frame at each of `seconds` after `start`, each taken in.
fn write_seconds(
    recorder: &mut Recorder,
    id: u32,
    start: Timestamp,
    seconds: std::ops::Range<u64>,
) {
    for n in seconds {
        let at = start.saturating_add(Duration::from_secs(n));
        assert_eq!(recorder.write_frame(id, at, &[0u8; 60], 60).unwrap(), Progress::Continue);
    }
}

/// The names of the files in `dir`, sorted.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A restarted recording (a DaemonSet pod) continues the numbering instead of overwriting
/// the first files, and its ring keeps the newest of both runs' files.
#[test]
fn a_restarted_ring_continues_the_numbering_and_keeps_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("node.pcapng");
    let plan = ring_of(3);
    let start = Timestamp::from_secs(1_800_000_000);
    let run = |packets: u64| {
        let (mut recorder, id) = recorder_on_eth0(&base, plan, start);
        write_seconds(&mut recorder, id, start, 0..packets);
        recorder.finish().unwrap().files
    };
    let left = || names_in(dir.path());
    // Not this rotation's: a dated archive beside it is neither adopted nor removed.
    std::fs::write(dir.path().join("node-20250101.pcapng"), b"archive").unwrap();
    let first = run(2);
    assert_eq!(first.last(), Some(&plan.rotation.file_path(&base, 2)));
    let second = run(2);
    assert_eq!(second.first(), Some(&plan.rotation.file_path(&base, 3)), "{second:?}");
    let kept = ["node-00002.pcapng", "node-00003.pcapng", "node-00004.pcapng"];
    assert_eq!(left(), [&kept[..], &["node-20250101.pcapng"]].concat());
    // A run that ends before its first rotation (a crash loop) still keeps the ring.
    run(0);
    let kept = ["node-00003.pcapng", "node-00004.pcapng", "node-00005.pcapng"];
    assert_eq!(left(), [&kept[..], &["node-20250101.pcapng"]].concat());
}

/// Past file 99999 the number takes six digits. A restart adopts only five-digit numbers
/// (a dated archive of six digits is not the ring's), and writes over nothing: it goes on
/// after the six-digit files its last run left.
#[test]
fn a_restarted_ring_past_99999_writes_over_nothing_and_leaves_archives_alone() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("node.pcapng");
    let plan = ring_of(2);
    assert_eq!(plan.rotation.file_path(&base, 100_000), dir.path().join("node-100000.pcapng"));
    let names = ["node-99999.pcapng", "node-100000.pcapng", "node-202501.pcapng"];
    for name in names.iter().chain(&["node-20250101.pcapng"]) {
        std::fs::write(dir.path().join(name), b"earlier").unwrap();
    }
    assert_eq!(plan.rotation.existing(&base), [99_999]);
    let start = Timestamp::from_secs(1_800_000_000);
    let (mut recorder, id) = recorder_on_eth0(&base, plan, start);
    let written = |n: u32| dir.path().join(format!("node-{n}.pcapng"));
    assert_eq!(std::fs::read(written(100_000)).unwrap(), b"earlier", "not written over");
    write_seconds(&mut recorder, id, start, 0..2);
    let files = recorder.finish().unwrap().files;
    assert_eq!(files, [written(100_001), written(100_002)]);
    let left = names_in(dir.path());
    // The ring of two keeps 100001 and 100002 (99999, the earlier run's it adopted, went);
    // 100000, skipped and not adopted, stays for the user, as the archives do.
    let expected = [
        "node-100000.pcapng",
        "node-100001.pcapng",
        "node-100002.pcapng",
        "node-202501.pcapng",
        "node-20250101.pcapng",
    ];
    assert_eq!(left, expected);
}

/// A number whose file exists (another run's, or an archive's) is skipped while rotating,
/// and it is not the ring's: the ring still holds `--keep` files, and the skipped file stays.
#[test]
fn a_ring_skips_a_taken_number_and_still_keeps_its_count() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("node.pcapng");
    let plan = ring_of(2);
    let start = Timestamp::from_secs(1_800_000_000);
    let (mut recorder, id) = recorder_on_eth0(&base, plan, start);
    // Made while the ring runs (a file there at the start would be an earlier run's).
    let taken = plan.rotation.file_path(&base, 3);
    std::fs::write(&taken, b"someone else's").unwrap();
    write_seconds(&mut recorder, id, start, 0..6);
    let files = recorder.finish().unwrap().files;
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(!files.contains(&taken));
    assert_eq!(std::fs::read(&taken).unwrap(), b"someone else's");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 3);
}

/// A ring whose oldest file was deleted by hand (to make room) goes on recording.
#[test]
fn a_ring_goes_on_when_its_oldest_file_is_already_gone() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("ring.pcapng");
    let plan = ring_of(1);
    let start = Timestamp::from_secs(1_800_000_000);
    let (mut recorder, id) = recorder_on_eth0(&base, plan, start);
    write_seconds(&mut recorder, id, start, 0..1);
    std::fs::remove_file(plan.rotation.file_path(&base, 1)).unwrap();
    write_seconds(&mut recorder, id, start, 1..4);
    let summary = recorder.finish().unwrap();
    assert_eq!(summary.files.len(), 1, "{:?}", summary.files);
}

#[test]
fn limits_stop_at_the_duration_or_before_passing_the_size() {
    let limits = Limits { max_bytes: Some(1000), duration: Some(Duration::from_secs(600)) };
    let start = Timestamp::from_secs(100);
    assert_eq!(limits.stop_reason(start, 900, Timestamp::from_secs(200), 100), None);
    assert_eq!(
        limits.stop_reason(start, 901, Timestamp::from_secs(200), 100),
        Some(StopReason::MaxSize(1000))
    );
    assert_eq!(
        limits.stop_reason(start, 0, Timestamp::from_secs(700), 1),
        Some(StopReason::Duration(Duration::from_secs(600)))
    );
}
