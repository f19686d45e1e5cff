//! Headless replay end to end: the bundled demo (golden, and field by field), a `tcpdump -i any`
//! style capture, and damaged files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use netwatch::synth::{self, TimedFrame};
use netwatch::time::Timestamp;

fn netwatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_netwatch")).args(args).output().unwrap()
}

fn records(output: &Output) -> Vec<Value> {
    String::from_utf8(output.stdout.clone())
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn demo_records() -> Vec<Value> {
    let output = netwatch(&["demo", "--headless", "-o", "json"]);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    records(&output)
}

/// The one record matching every `(json pointer, value)` pair.
fn find<'a>(records: &'a [Value], pairs: &[(&str, Value)]) -> &'a Value {
    let matches: Vec<&Value> = records
        .iter()
        .filter(|r| pairs.iter().all(|(pointer, value)| r.pointer(pointer) == Some(value)))
        .collect();
    assert_eq!(matches.len(), 1, "records matching {pairs:?}: {matches:#?}");
    matches[0]
}

#[test]
fn the_demo_output_is_the_golden_file() {
    let output = netwatch(&["demo", "--headless", "-o", "json"]);
    let stdout = String::from_utf8(output.stdout).unwrap();
    insta::assert_snapshot!("demo_flow_records", stdout);
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(
        stderr.trim_end(),
        "netwatch: 599 packets read, 593 decoded, 6 skipped (arp 6); 50 flows, 0 evicted; 9 DNS answers"
    );
}

#[test]
fn the_demo_names_the_stripe_egress_by_web_as_own_lookup_and_flags_the_leak() {
    let records = demo_records();
    let flow = find(&records, &[("/src/name", "web-a".into()), ("/dst/ip", "203.0.113.10".into())]);
    assert_eq!(flow["src"]["kind"], "pod");
    assert_eq!(flow["src"]["namespace"], "shop");
    assert_eq!(flow["src"]["node"], "n1");
    assert_eq!(flow["dst"]["kind"], "external");
    assert_eq!(flow["dst"]["port"], 443);
    assert_eq!(
        flow["dst"]["dns"], "api.stripe.example",
        "the name asked for, not the CNAME target"
    );
    assert_eq!(flow["dst"]["dns_source"], "own");
    assert_eq!(flow["dst"]["sni"], "api.stripe.example");
    assert_eq!(flow["protocol"], "TCP");
    assert_eq!(flow["tcp"], "closed");
    assert_eq!(flow["first_seen"], "2026-11-29T10:00:05.020000Z");
    assert_eq!(flow["verdict"]["egress"]["decision"], "deny");
    // Denied: the policies that isolate web-a for egress, none of which allows this.
    assert_eq!(
        flow["verdict"]["egress"]["policies"],
        serde_json::json!(["shop/allow-dns", "shop/allow-web-to-api", "shop/default-deny-egress"])
    );
    let reason = flow["verdict"]["egress"]["reason"].as_str().unwrap();
    assert!(reason.contains("no egress rule allows TCP 203.0.113.10:443"), "{reason}");
    assert_eq!(flow["verdict"]["ingress"]["decision"], "n/a");
    assert_eq!(flow["violation"], "egress");
    assert_eq!(flow["leak"], true);
    assert_eq!(flow["direct_ip"], false);
}

#[test]
fn the_demo_marks_direct_ip_egress_with_and_without_another_pods_name() {
    let records = demo_records();
    let borrowed =
        find(&records, &[("/src/name", "web-b".into()), ("/dst/ip", "203.0.113.10".into())]);
    assert_eq!(borrowed["dst"]["dns"], "api.stripe.example");
    assert_eq!(borrowed["dst"]["dns_source"], "other");
    assert_eq!(borrowed["direct_ip"], true);
    let bare = find(&records, &[("/dst/ip", "198.51.100.77".into())]);
    assert_eq!(bare["direct_ip"], true);
    assert!(bare["dst"].get("dns").is_none());
    assert_eq!(bare["dst"]["sni"], "www.example.com", "the Host it claimed is shown");
    let unanswered = find(&records, &[("/dst/ip", "203.0.113.99".into())]);
    assert_eq!(unanswered["tcp"], "no_reply");
    assert_eq!(unanswered["packets"], serde_json::json!({"tx": 4, "rx": 0}));
    assert_eq!(unanswered["leak"], false, "denied and not answered: enforced");
    // The dual-stack pod looked up over IPv4 and connected over IPv6: still its own lookup.
    let v6 = find(&records, &[("/dst/ip", "2001:db8::10".into())]);
    assert_eq!(v6["dst"]["dns"], "push.metrics.example");
    assert_eq!(v6["direct_ip"], false);
}

#[test]
fn the_demo_resolves_services_node_ports_and_host_network() {
    let records = demo_records();
    let dns: Vec<&Value> =
        records.iter().filter(|r| r["service"] == "kube-system/kube-dns").collect();
    assert!(dns.len() >= 6, "DNS lookups go to the kube-dns service");
    assert!(dns.iter().all(|r| r["dst"]["kind"] == "service"));
    let node_port = find(&records, &[("/dst/port", 30080.into())]);
    assert_eq!(node_port["service"], "shop/web");
    assert_eq!(node_port["src"]["kind"], "external");
    let api_server = find(&records, &[("/dst/port", 6443.into())]);
    assert_eq!(api_server["src"]["kind"], "node");
    assert_eq!(api_server["tcp"], "established", "left open at the end of the capture");
    let scrapes: Vec<&Value> = records
        .iter()
        .filter(|r| r["src"]["name"] == "prometheus-0" && r["dst"]["port"] == 9090)
        .collect();
    assert_eq!(scrapes.len(), 4);
    for scrape in scrapes {
        assert_eq!(scrape["violation"], "ingress");
        assert_eq!(
            scrape["verdict"]["ingress"]["policies"],
            serde_json::json!(["payments/ledger-ingress"])
        );
    }
    let fragmented = find(&records, &[("/dst/port", 8125.into())]);
    assert_eq!(fragmented["packets"]["tx"], 3, "three fragments, one flow");
    assert_eq!(fragmented["bytes"]["tx"], 3000 + 8 + 3 * 20);
}

pub(crate) fn write_capture(
    name: &str,
    linktype: u32,
    frames: &[TimedFrame],
) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("netwatch-test-{}-{name}", std::process::id()));
    let mut file = std::fs::File::create(&path).unwrap();
    synth::write_pcap(&mut file, linktype, frames).unwrap();
    path
}

fn tcpdump_any_frames() -> Vec<TimedFrame> {
    let t0 = 1_795_946_400 * synth::SECOND_NANOS;
    let (client, server) =
        ("10.244.1.10:40000".parse().unwrap(), "10.244.1.11:8080".parse().unwrap());
    let frames = [
        synth::tcp(client, server, 0x02, 100, 0, &[]),
        synth::tcp(server, client, 0x12, 500, 101, &[]),
        synth::tcp(client, server, 0x10, 101, 501, &[]),
        synth::tcp(client, server, 0x18, 101, 501, &synth::http_request("api", "/")),
        synth::tcp(server, client, 0x11, 501, 150, &[]),
    ];
    frames
        .iter()
        .enumerate()
        .map(|(i, frame)| TimedFrame {
            ts_nanos: t0 + i as u64 * synth::MILLI_NANOS,
            frame: synth::to_linux_sll2(frame, 4),
        })
        .collect()
}

#[test]
fn a_tcpdump_any_capture_in_linux_cooked_v2_replays() {
    let path = write_capture("any.pcap", synth::linktype::LINUX_SLL2, &tcpdump_any_frames());
    let output = netwatch(&["replay", path.to_str().unwrap(), "--headless", "-o", "json"]);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(output.status.code(), Some(0));
    let records = records(&output);
    assert_eq!(records.len(), 1);
    let flow = &records[0];
    assert_eq!(flow["src"]["port"], 40000);
    assert_eq!(flow["dst"]["http_host"], "api");
    assert_eq!(flow["packets"], serde_json::json!({"tx": 3, "rx": 2}));
    assert_eq!(flow["tcp"], "closing");
    assert_eq!(flow["src"]["kind"], "unknown", "no cluster: a private address is not external");
}

/// A pod's HTTPS exchange with an outside server as `tcpdump -i any` on the node records it:
/// each packet on the pod's veth (kernel index 7) and on the uplink (index 3), where it shows
/// the router's MACs and a TTL one lower than where it entered the node (the pod's packets
/// enter on the veth, the replies on the uplink). Returns the frames and one copy's
/// (client packets, server packets, client bytes, server bytes), bytes as IP lengths.
pub(crate) fn tcpdump_any_pod_to_external() -> (Vec<TimedFrame>, [u64; 4]) {
    let (frames, counts) = pod_to_external_seen_twice();
    let cooked = frames
        .into_iter()
        .map(|(ifindex, f)| TimedFrame {
            ts_nanos: f.ts_nanos,
            frame: synth::to_linux_sll2(&f.frame, ifindex),
        })
        .collect();
    (cooked, counts)
}

/// The same exchange as Ethernet frames, each with the kernel index of the interface it was
/// seen on (7 the veth, 3 the uplink).
fn pod_to_external_seen_twice() -> (Vec<(u32, TimedFrame)>, [u64; 4]) {
    let t0 = 1_795_946_400 * synth::SECOND_NANOS;
    let (pod, web) = ("10.244.7.12:40004".parse().unwrap(), "203.0.113.10:443".parse().unwrap());
    let mut timeline = synth::Timeline::new();
    let request = synth::tls_client_hello("api.example.com");
    timeline.tcp_session(pod, web, t0, &request, &[0x17; 1800], true);
    let (uplink_mac, gateway_mac) = ([2, 0, 0xc6, 0x33, 0x64, 1], [2, 0, 0xc6, 0x33, 0x64, 2]);
    let mut counts = [0u64; 4];
    let mut frames = Vec::new();
    for original in timeline.frames() {
        let from_pod = original.frame[14 + 12..14 + 16] == [10, 244, 7, 12];
        let ip_len = (original.frame.len() - 14) as u64;
        let side = usize::from(!from_pod);
        counts[side] += 1;
        counts[2 + side] += ip_len;
        let (first, first_if, second, second_if) = if from_pod {
            let out = synth::forwarded(&original.frame, uplink_mac, gateway_mac);
            (original.frame.clone(), 7, out, 3)
        } else {
            let pod_mac = synth::mac_for("10.244.7.12".parse().unwrap()).octets();
            let inbound = synth::forwarded(&original.frame, gateway_mac, uplink_mac);
            let to_pod = synth::forwarded(&original.frame, [2, 0, 10, 244, 7, 1], pod_mac);
            (inbound, 3, to_pod, 7)
        };
        let ts = original.ts_nanos;
        frames.push((first_if, TimedFrame { ts_nanos: ts, frame: first }));
        frames.push((
            second_if,
            TimedFrame { ts_nanos: ts + 20 * synth::MICRO_NANOS, frame: second },
        ));
    }
    (frames, counts)
}

#[test]
fn a_tcpdump_any_capture_counts_a_packet_seen_on_veth_and_uplink_once() {
    let (frames, [tx, rx, tx_bytes, rx_bytes]) = tcpdump_any_pod_to_external();
    let path = write_capture("any-twice.pcap", synth::linktype::LINUX_SLL2, &frames);
    let output = netwatch(&["replay", path.to_str().unwrap(), "--headless", "-o", "json"]);
    std::fs::remove_file(&path).unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let records = records(&output);
    assert_eq!(records.len(), 1, "one flow, not one per interface: {records:#?}");
    let flow = &records[0];
    assert_eq!(flow["src"]["ip"], "10.244.7.12");
    assert_eq!(flow["dst"]["ip"], "203.0.113.10");
    assert_eq!(flow["dst"]["sni"], "api.example.com");
    assert_eq!(flow["packets"], serde_json::json!({"tx": tx, "rx": rx}));
    assert_eq!(flow["bytes"], serde_json::json!({"tx": tx_bytes, "rx": rx_bytes}));
    assert_eq!(flow["interfaces"], serde_json::json!(["if7", "if3"]));
    let copies = tx + rx;
    assert!(
        stderr.contains(&format!("{} packets read, {copies} decoded", 2 * copies))
            && stderr.contains(&format!("; {copies} copies seen on a second interface")),
        "{stderr}"
    );
}

#[test]
fn a_truncated_capture_yields_what_came_before_and_one_warning_saying_where() {
    let path = write_capture("cut.pcap", synth::linktype::ETHERNET, &synth::scenario::demo());
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let output = netwatch(&["replay", path.to_str().unwrap(), "--headless", "-o", "json"]);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(output.status.code(), Some(0), "what could be read was read");
    let stderr = String::from_utf8(output.stderr.clone()).unwrap();
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("warning")).collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(warnings[0].contains("damaged after packet"), "{stderr}");
    assert!(!records(&output).is_empty());
}

#[test]
fn table_output_marks_violations_and_direct_ip() {
    let output = netwatch(&["demo", "--headless"]);
    let table = String::from_utf8(output.stdout).unwrap();
    let header = table.lines().next().unwrap();
    assert!(header.starts_with("VERDICT"), "{header}");
    let leak = table
        .lines()
        .find(|l| l.contains("shop/web-b") && l.contains("api.stripe.example"))
        .unwrap();
    assert!(leak.starts_with("LEAK-egress"), "{leak}");
    assert!(leak.ends_with("direct-ip,name-from-other-client"), "{leak}");
}

/// Writes frames as pcapng: each `(interface, frame)` on the interface of that index, the
/// interfaces described as they are first used (as a live recording meets new veths).
fn write_pcapng(name: &str, interfaces: &[(&str, u16)], frames: &[(u32, TimedFrame)]) -> PathBuf {
    use netwatch::record::pcapng::{InterfaceDesc, PcapngWriter, WriterOptions};
    let path = std::env::temp_dir().join(format!("netwatch-test-{}-{name}", std::process::id()));
    let start = Timestamp(frames[0].1.ts_nanos);
    let mut writer =
        PcapngWriter::new(Vec::new(), name, &[], &[], start, WriterOptions::default()).unwrap();
    let mut described = 0;
    for (interface, frame) in frames {
        while described <= *interface {
            let (name, linktype) = interfaces[described as usize];
            writer.add_interface(InterfaceDesc::new(name, linktype)).unwrap();
            described += 1;
        }
        let len = frame.frame.len() as u32;
        writer.write_frame(*interface, Timestamp(frame.ts_nanos), &frame.frame, len).unwrap();
    }
    std::fs::write(&path, writer.finish().unwrap()).unwrap();
    path
}

fn the_one_flow_of(path: &Path) -> Value {
    let output = netwatch(&["replay", path.to_str().unwrap(), "--headless", "-o", "json"]);
    std::fs::remove_file(path).unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let records = records(&output);
    assert_eq!(records.len(), 1, "one flow, not one per interface: {records:#?}");
    records[0].clone()
}

#[test]
fn a_pcapng_of_several_interfaces_counts_a_packet_seen_on_two_of_them_once() {
    let (frames, [tx, rx, tx_bytes, rx_bytes]) = pod_to_external_seen_twice();
    // As netwatch records live: Ethernet frames, the veth and the uplink each an interface of
    // its own, the uplink described only when its first packet comes (hot-plug).
    let ethernet: Vec<(u32, TimedFrame)> =
        frames.iter().map(|(ifindex, f)| (u32::from(*ifindex != 7), f.clone())).collect();
    let recorded = write_pcapng("two.pcapng", &[("veth7", 1), ("eth0", 1)], &ethernet);
    let flow = the_one_flow_of(&recorded);
    assert_eq!(flow["packets"], serde_json::json!({"tx": tx, "rx": rx}));
    assert_eq!(flow["bytes"], serde_json::json!({"tx": tx_bytes, "rx": rx_bytes}));
    assert_eq!(flow["interfaces"], serde_json::json!(["veth7", "eth0"]));

    // `tcpdump -i any --pcapng`: one interface on file, the real ones in the cooked headers.
    let (cooked, _) = tcpdump_any_pod_to_external();
    let cooked: Vec<(u32, TimedFrame)> = cooked.into_iter().map(|f| (0, f)).collect();
    let any = write_pcapng("any.pcapng", &[("any", synth::linktype::LINUX_SLL2 as u16)], &cooked);
    let flow = the_one_flow_of(&any);
    assert_eq!(flow["packets"], serde_json::json!({"tx": tx, "rx": rx}));
    assert_eq!(flow["bytes"], serde_json::json!({"tx": tx_bytes, "rx": rx_bytes}));
    assert_eq!(flow["interfaces"], serde_json::json!(["if7", "if3"]));
}

/// A replay of thousands of flows hands the writer many batches of records, which come back to
/// be filled again: each flow is written once, as many records as the summary counts flows.
#[test]
fn a_headless_replay_of_many_flows_writes_each_flow_once() {
    let frames: Vec<TimedFrame> = synth::bench_capture(30_000, 7).collect();
    let path = write_capture("many-flows.pcap", synth::linktype::ETHERNET, &frames);
    let output = netwatch(&["replay", path.to_str().unwrap(), "--headless", "-o", "json"]);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let flows: usize = stderr
        .split("; ")
        .find_map(|part| part.strip_suffix(" flows, 0 evicted"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no flow count in {stderr}"));
    let records = records(&output);
    assert!(flows > 1000, "{flows} flows: many batches of records");
    assert_eq!(records.len(), flows);
    let mut ids: Vec<String> = records
        .iter()
        .map(|r| format!("{} {} {} {}", r["protocol"], r["src"], r["dst"], r["first_seen"]))
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), flows, "no record written twice");
}
