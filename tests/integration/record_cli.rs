//! `netwatch record` and `netwatch replay` of what it wrote, as a user runs them: the recording
//! alone replays with its identities, tshark reads it, cluster changes recorded mid-way take
//! effect when the replay reaches them, `--policies` re-evaluates it, and flow JSONL replays.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

use netwatch::capture::{Next, PacketSource};
use netwatch::cluster::{ClusterEvent, Object, snapshot};
use netwatch::record::pcapng::{InterfaceDesc, PcapngWriter};
use netwatch::record::pcapng_reader::PcapngSource;
use netwatch::synth;
use netwatch::time::Timestamp;

fn netwatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_netwatch")).args(args).output().unwrap()
}

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("netwatch-record-{}-{name}", std::process::id()))
}

fn asset(name: &str) -> String {
    format!("{}/assets/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn json_lines(output: &Output) -> Vec<Value> {
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Flow records without the interface names, which differ between a file and a recording.
fn without_interfaces(mut records: Vec<Value>) -> Vec<Value> {
    for record in &mut records {
        record.as_object_mut().unwrap().remove("interfaces");
    }
    records
}

#[test]
fn a_recording_replays_alone_with_the_identities_it_was_made_with_and_tshark_counts_its_packets() {
    let pcapng = temp("demo.pcapng");
    let flows = temp("demo.jsonl");
    let output = netwatch(&[
        "record",
        "--read",
        &asset("demo.pcap"),
        "--cluster",
        &asset("demo-cluster.yaml"),
        "-w",
        pcapng.to_str().unwrap(),
        "--flows",
        flows.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stderr).contains("recorded 599 packets"));

    let tshark = Command::new("tshark")
        .args(["-r", pcapng.to_str().unwrap(), "-T", "fields", "-e", "frame.interface_name"])
        .output()
        .expect("tshark runs (the test command installs it)");
    assert!(tshark.status.success(), "{}", String::from_utf8_lossy(&tshark.stderr));
    let stderr = String::from_utf8_lossy(&tshark.stderr);
    assert!(!stderr.to_lowercase().contains("warn"), "{stderr}");
    let named =
        String::from_utf8_lossy(&tshark.stdout).lines().filter(|l| *l == "demo.pcap").count();
    assert_eq!(named, 599, "every packet, on its named interface");

    let replayed =
        json_lines(&netwatch(&["replay", pcapng.to_str().unwrap(), "--headless", "-o", "json"]));
    let demo = json_lines(&netwatch(&["demo", "--headless", "-o", "json"]));
    assert_eq!(
        without_interfaces(replayed),
        without_interfaces(demo.clone()),
        "no --cluster needed"
    );

    let recorded_flows =
        json_lines(&netwatch(&["replay", flows.to_str().unwrap(), "--headless", "-o", "json"]));
    assert_eq!(recorded_flows, demo, "flow JSONL replays to the same records");
    std::fs::remove_file(&pcapng).unwrap();
    std::fs::remove_file(&flows).unwrap();
}

/// A recording of the demo begun at `path` (its cluster view written, no packets yet), the
/// demo's frames, and the cluster they were made with.
fn demo_recording(
    path: &std::path::Path,
) -> (PcapngWriter, Vec<synth::TimedFrame>, snapshot::LoadedSnapshot) {
    let loaded = snapshot::parse("demo-cluster.yaml", netwatch::demo::CLUSTER).unwrap();
    let frames = synth::scenario::demo();
    let start = Timestamp(frames[0].ts_nanos);
    let writer =
        PcapngWriter::create(path, &[InterfaceDesc::new("veth-demo", 1)], &loaded.events, start)
            .unwrap();
    (writer, frames, loaded)
}

/// An ingress policy for the ledger that also lets monitoring scrape it.
fn allow_monitoring_to_ledger() -> netwatch::cluster::NetworkPolicy {
    let policy: k8s_openapi::api::networking::v1::NetworkPolicy = serde_yaml_ng::from_str(
        "metadata: {name: allow-monitoring, namespace: payments}
spec:
  podSelector: {matchLabels: {app: ledger}}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}}]
    ports: [{port: 9090}]",
    )
    .unwrap();
    netwatch::cluster::trim::network_policy(&policy).unwrap()
}

/// The cluster events a recording carries, in order, with their times.
fn recorded_events(path: &std::path::Path) -> Vec<(Timestamp, ClusterEvent)> {
    let mut source = PcapngSource::open(path).unwrap();
    let mut events: Vec<_> =
        source.take_cluster_events().into_iter().map(|timed| (timed.ts, timed.event)).collect();
    while let Next::Packet(_) = source.next_frame() {}
    events.extend(source.take_cluster_events().into_iter().map(|timed| (timed.ts, timed.event)));
    events
}

/// When the recording first has the allow-monitoring policy (added, or in a list of them).
fn policy_added_at(events: &[(Timestamp, ClusterEvent)]) -> Option<Timestamp> {
    let is_it = |object: &Object| matches!(object, Object::NetworkPolicy(p) if p.name == "allow-monitoring");
    events.iter().find_map(|(ts, event)| match event {
        ClusterEvent::Upsert(object) if is_it(object) => Some(*ts),
        ClusterEvent::Reset(_, objects) if objects.iter().any(is_it) => Some(*ts),
        _ => None,
    })
}

/// `record --read` of a recording whose cluster changed after its last packet, and of one with
/// no packets at all: the view and the change reach the new recording either way (the end of
/// the input is its own step, apart from the one before each packet).
#[test]
fn record_read_keeps_the_changes_after_the_last_packet_and_the_view_of_a_file_without_packets() {
    let late = temp("late-change.pcapng");
    let (mut writer, frames, loaded) = demo_recording(&late);
    let start = Timestamp(frames[0].ts_nanos);
    let mut last = start;
    for frame in &frames {
        last = Timestamp(frame.ts_nanos);
        writer
            .write_frame(0, last, &frame.frame, u32::try_from(frame.frame.len()).unwrap())
            .unwrap();
    }
    let after = last.saturating_add(std::time::Duration::from_secs(1));
    let upsert = ClusterEvent::Upsert(Object::NetworkPolicy(allow_monitoring_to_ledger()));
    writer.write_cluster_event(after, &upsert).unwrap();
    writer.finish().unwrap();
    let empty = temp("no-packets.pcapng");
    let mut writer = PcapngWriter::create(&empty, &[], &loaded.events, start).unwrap();
    writer.write_cluster_event(after, &upsert).unwrap();
    writer.finish().unwrap();

    for (input, packets) in [(&late, frames.len()), (&empty, 0)] {
        let out = temp("rerecorded.pcapng");
        let output =
            netwatch(&["record", "--read", input.to_str().unwrap(), "-w", out.to_str().unwrap()]);
        assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(&format!("recorded {packets} packets")), "{stderr}");
        let events = recorded_events(&out);
        let pods = |events: &[(Timestamp, ClusterEvent)]| -> usize {
            events
                .iter()
                .map(|(_, event)| match event {
                    ClusterEvent::Reset(_, objects) => {
                        objects.iter().filter(|o| matches!(o, Object::Pod(_))).count()
                    }
                    ClusterEvent::Upsert(Object::Pod(_)) => 1,
                    _ => 0,
                })
                .sum()
        };
        assert!(pods(&events) > 0, "the view is in the new recording");
        assert_eq!(pods(&events), pods(&recorded_events(input)), "every pod of it");
        let added = policy_added_at(&events).expect("the change after the last packet is in it");
        if packets > 0 {
            assert_eq!(added, last, "at the end of the packets");
        }
        std::fs::remove_file(&out).unwrap();
    }
    std::fs::remove_file(&late).unwrap();
    std::fs::remove_file(&empty).unwrap();
}

/// The demo recorded with an ingress policy for the ledger added 20 s in, that also lets
/// monitoring scrape it.
fn recording_with_a_policy_added_midway() -> PathBuf {
    let path = temp("midway.pcapng");
    let (mut writer, frames, _) = demo_recording(&path);
    let start = Timestamp(frames[0].ts_nanos);
    let policy = allow_monitoring_to_ledger();
    let added_at = start.saturating_add(std::time::Duration::from_secs(20));
    let mut added = false;
    for frame in &frames {
        let ts = Timestamp(frame.ts_nanos);
        if !added && ts >= added_at {
            writer
                .write_cluster_event(
                    ts,
                    &ClusterEvent::Upsert(Object::NetworkPolicy(policy.clone())),
                )
                .unwrap();
            added = true;
        }
        writer.write_frame(0, ts, &frame.frame, u32::try_from(frame.frame.len()).unwrap()).unwrap();
    }
    writer.finish().unwrap();
    path
}

#[test]
fn a_policy_recorded_midway_changes_the_verdicts_of_flows_after_it() {
    let path = recording_with_a_policy_added_midway();
    let records =
        json_lines(&netwatch(&["replay", path.to_str().unwrap(), "--headless", "-o", "json"]));
    std::fs::remove_file(&path).unwrap();
    let mut scrapes: Vec<(String, String)> = records
        .iter()
        .filter(|r| r["dst"]["port"] == 9090)
        .map(|r| {
            (
                r["first_seen"].as_str().unwrap().to_owned(),
                r["verdict"]["ingress"]["decision"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    scrapes.sort();
    let decisions: Vec<&str> = scrapes.iter().map(|(_, d)| d.as_str()).collect();
    assert_eq!(decisions, ["deny", "deny", "allow", "allow"], "{scrapes:?}");
}

#[test]
fn policies_given_on_the_command_line_replace_the_recorded_ones() {
    let path = recording_with_a_policy_added_midway();
    let policies = temp("what-if.yaml");
    std::fs::write(
        &policies,
        "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all-egress, namespace: monitoring}
spec:
  podSelector: {}
  policyTypes: [Egress]
",
    )
    .unwrap();
    let records = json_lines(&netwatch(&[
        "replay",
        path.to_str().unwrap(),
        "--headless",
        "-o",
        "json",
        "--policies",
        policies.to_str().unwrap(),
    ]));
    std::fs::remove_file(&path).unwrap();
    std::fs::remove_file(&policies).unwrap();
    let from_monitoring: Vec<&Value> =
        records.iter().filter(|r| r["src"]["namespace"] == "monitoring").collect();
    assert!(!from_monitoring.is_empty());
    for record in &from_monitoring {
        if record["dst"]["kind"] == "pod" || record["dst"]["kind"] == "external" {
            assert_eq!(record["verdict"]["egress"]["decision"], "deny", "{record}");
        }
    }
    let shop = records
        .iter()
        .find(|r| r["src"]["name"] == "web-a" && r["dst"]["ip"] == "203.0.113.10")
        .unwrap();
    assert_eq!(
        shop["verdict"]["egress"]["decision"], "unrestricted",
        "the recorded shop policies are gone"
    );
}

#[test]
fn record_rejects_flow_records_as_input_and_bad_sizes_as_usage() {
    let output =
        netwatch(&["record", "--read", &asset("demo.pcap"), "-w", "x.pcapng", "--rotate", "lots"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--rotate 'lots'"));
}

#[test]
fn recording_a_tcpdump_any_capture_counts_each_packet_once_and_keeps_every_copy() {
    let (frames, [tx, rx, tx_bytes, rx_bytes]) = crate::replay::tcpdump_any_pod_to_external();
    let capture =
        crate::replay::write_capture("record-any.pcap", synth::linktype::LINUX_SLL2, &frames);
    let pcapng = temp("any.pcapng");
    let output = netwatch(&[
        "record",
        "--read",
        capture.to_str().unwrap(),
        "-w",
        pcapng.to_str().unwrap(),
        "--flows",
        "-",
    ]);
    std::fs::remove_file(&capture).unwrap();
    let records = json_lines(&output);
    let _ = std::fs::remove_file(&pcapng);
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(records[0]["packets"], serde_json::json!({"tx": tx, "rx": rx}));
    assert_eq!(records[0]["bytes"], serde_json::json!({"tx": tx_bytes, "rx": rx_bytes}));
    assert_eq!(records[0]["interfaces"], serde_json::json!(["if7", "if3"]));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("recorded {} packets", frames.len())), "{stderr}");
}

#[test]
fn flow_records_to_a_reader_that_went_away_do_not_cut_the_recording_short() {
    let pcapng = temp("gone-reader.pcapng");
    let mut child = Command::new(env!("CARGO_BIN_EXE_netwatch"))
        .args(["record", "--read", &asset("demo.pcap"), "-w", pcapng.to_str().unwrap()])
        .args(["--flows", "-"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // `--flows - | head -0`: the reader is gone before the first record.
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let _ = std::fs::remove_file(&pcapng);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("recorded 599 packets"), "{stderr}");
}

#[test]
fn a_capture_without_packets_still_makes_a_recording() {
    let empty = temp("empty.pcap");
    // A pcap global header (microsecond magic, v2.4, snaplen 65535, Ethernet) and no packets.
    let mut header = Vec::new();
    header.extend_from_slice(&0xa1b2_c3d4_u32.to_le_bytes());
    header.extend_from_slice(&2u16.to_le_bytes());
    header.extend_from_slice(&4u16.to_le_bytes());
    header.extend_from_slice(&[0; 8]);
    header.extend_from_slice(&65535u32.to_le_bytes());
    header.extend_from_slice(&1u32.to_le_bytes());
    std::fs::write(&empty, header).unwrap();
    let pcapng = temp("empty.pcapng");
    let output = netwatch(&[
        "record",
        "--read",
        empty.to_str().unwrap(),
        "--cluster",
        &asset("demo-cluster.yaml"),
        "-w",
        pcapng.to_str().unwrap(),
    ]);
    let _ = std::fs::remove_file(&empty);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let tshark = Command::new("tshark").args(["-r", pcapng.to_str().unwrap()]).output().unwrap();
    let _ = std::fs::remove_file(&pcapng);
    assert!(tshark.status.success(), "{}", String::from_utf8_lossy(&tshark.stderr));
    assert!(String::from_utf8_lossy(&output.stderr).contains("recorded 0 packets"));
}
