//! Live capture on a node made of network namespaces: a bridge with a gateway, pod namespaces
//! on veths, an "external" namespace behind a routed uplink, and (with nft) a DNAT'd service
//! address. Traffic between them is counted once per flow however many interfaces saw it.
//!
//! The node is itself a namespace: the outer test creates it and runs this test binary inside
//! it (`ip netns exec`), so nothing is added to the host's own namespace and `/sys/class/net`
//! shows only the node's links. Every name carries the PID; a guard removes every namespace and
//! process on the way out, panics included. Traffic is bounded (counts, socket timeouts).

use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::time::{Duration, Instant};

use netwatch::capture::DecodedFrame;
use netwatch::capture::interfaces::{self, InterfaceClass, Selection, behind};
use netwatch::capture::live::{CaptureEvent, LiveCapture, LiveConfig};
use netwatch::engine::Engine;
use netwatch::flow::TableLimits;
use netwatch::flow::dedup::{Dedup, DedupLimits, PacketFacts, Sighting};
use netwatch::snapshot::FlowRecord;
use netwatch::time::Timestamp;

/// Set (to the name suffix) for the run inside the node namespace.
const INSIDE: &str = "NETWATCH_LIVE_NODE_SUFFIX";
const INNER_TEST: &str = "live_capture::inside_a_namespace_node";

#[test]
fn live_capture_on_a_namespace_node_counts_every_packet_once_and_follows_pods() {
    if std::env::var_os(INSIDE).is_some() {
        return;
    }
    if !crate::runs_as_root("the live capture test") {
        return;
    }
    let suffix = std::process::id().to_string();
    let mut guard = Guard::default();
    // The inner run's namespaces too, in case it dies before its own guard runs.
    guard.namespaces.extend((1..=4).map(|i| format!("nw{suffix}p{i}")));
    guard.namespaces.push(format!("nw{suffix}x"));
    let node = format!("nw{suffix}n");
    run(&["ip", "netns", "add", &node]);
    guard.namespaces.push(node.clone());
    let exe = std::env::current_exe().unwrap();
    let output = Command::new("ip")
        .args(["netns", "exec", &node])
        .arg(exe)
        .args(["--exact", INNER_TEST, "--ignored", "--nocapture", "--test-threads=1"])
        .env(INSIDE, &suffix)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    print!("{stdout}");
    eprint!("{stderr}");
    assert!(output.status.success(), "the run inside the node namespace failed");
    assert!(stdout.contains("1 passed"), "the inner test did not run");
}

/// Removes namespaces and ends processes this test started, even when it panics.
#[derive(Default)]
struct Guard {
    namespaces: Vec<String>,
    children: Vec<Child>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for namespace in self.namespaces.iter().rev() {
            let _ =
                Command::new("ip").args(["netns", "del", namespace]).stderr(Stdio::null()).status();
        }
    }
}

fn run(args: &[&str]) {
    let output = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        output.status.success(),
        "{} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn in_ns(ns: &str, args: &[&str]) {
    let mut all = vec!["ip", "netns", "exec", ns];
    all.extend_from_slice(args);
    run(&all);
}

const UDP_ECHO: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2]))); s.settimeout(20)
print("ready", flush=True)
for _ in range(int(sys.argv[3])):
    data, peer = s.recvfrom(4096)
    if sys.argv[4] == "echo": s.sendto(data, peer)
"#;

const UDP_CLIENT: &str = r#"
import socket, sys
src, sport, dst, dport, n, size, echo = sys.argv[1:8]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((src, int(sport))); s.settimeout(3)
for _ in range(int(n)):
    s.sendto(bytes(int(size)), (dst, int(dport)))
    if echo == "echo": s.recvfrom(4096)
"#;

const TCP_SERVER: &str = r#"
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(1); s.settimeout(20)
print("ready", flush=True)
c, _ = s.accept(); c.settimeout(5)
while c.recv(65536): pass
c.sendall(bytes(int(sys.argv[3]))); c.close()
"#;

const TCP_CLIENT: &str = r#"
import socket, sys
c = socket.socket(); c.settimeout(5)
c.bind((sys.argv[1], int(sys.argv[2]))); c.connect((sys.argv[3], int(sys.argv[4])))
c.sendall(bytes(int(sys.argv[5]))); c.shutdown(socket.SHUT_WR)
while c.recv(65536): pass
c.close()
"#;

/// Answers each A query with one address (TTL 300).
const DNS_SERVER: &str = r#"
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 53)); s.settimeout(20)
address = socket.inet_aton(sys.argv[2])
print("ready", flush=True)
for _ in range(int(sys.argv[3])):
    q, peer = s.recvfrom(512)
    end = 12
    while q[end] != 0: end += q[end] + 1
    header = q[:2] + b"\x81\x80" + struct.pack(">HHHH", 1, 1, 0, 0)
    answer = b"\xc0\x0c\x00\x01\x00\x01" + struct.pack(">IH", 300, 4) + address
    s.sendto(header + q[12:end + 5] + answer, peer)
"#;

const DNS_CLIENT: &str = r#"
import socket, struct, sys
src, sport, name, server = sys.argv[1:5]
labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
q = struct.pack(">HHHHHH", 0x4e57, 0x0100, 1, 0, 0, 0) + labels + b"\x00" + struct.pack(">HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((src, int(sport))); s.settimeout(3)
s.sendto(q, (server, 53)); s.recvfrom(512)
"#;

/// The node: names, and the guard that removes what was built.
struct Node {
    suffix: String,
    guard: Guard,
}

impl Node {
    fn pod(&self, i: u32) -> String {
        format!("nw{}p{i}", self.suffix)
    }
    fn pod_veth(&self, i: u32) -> String {
        format!("nwv{}p{i}", self.suffix)
    }
    fn external(&self) -> String {
        format!("nw{}x", self.suffix)
    }
    fn bridge(&self) -> String {
        format!("nwbr{}", self.suffix)
    }
    fn uplink(&self) -> String {
        format!("nwu{}", self.suffix)
    }

    fn build(suffix: &str) -> Self {
        let mut node = Self { suffix: suffix.to_owned(), guard: Guard::default() };
        run(&["ip", "link", "set", "lo", "up"]);
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").unwrap();
        let bridge = node.bridge();
        run(&["ip", "link", "add", &bridge, "type", "bridge"]);
        run(&["ip", "addr", "add", "10.244.7.1/24", "dev", &bridge]);
        run(&["ip", "link", "set", &bridge, "up"]);
        for i in 1..=3 {
            node.add_pod(i);
        }
        let external = node.external();
        let uplink = node.uplink();
        run(&["ip", "netns", "add", &external]);
        node.guard.namespaces.push(external.clone());
        run(&[
            "ip", "link", "add", &uplink, "type", "veth", "peer", "name", "eth0", "netns",
            &external,
        ]);
        run(&["ip", "addr", "add", "198.51.100.1/24", "dev", &uplink]);
        run(&["ip", "link", "set", &uplink, "up"]);
        run(&["ip", "route", "add", "default", "via", "198.51.100.2"]);
        in_ns(&external, &["ip", "link", "set", "lo", "up"]);
        in_ns(&external, &["ip", "addr", "add", "198.51.100.2/24", "dev", "eth0"]);
        in_ns(&external, &["ip", "link", "set", "eth0", "up"]);
        in_ns(&external, &["ip", "addr", "add", "203.0.113.10/32", "dev", "lo"]);
        in_ns(&external, &["ip", "addr", "add", "203.0.113.53/32", "dev", "lo"]);
        in_ns(&external, &["ip", "route", "add", "10.244.7.0/24", "via", "198.51.100.1"]);
        node
    }

    /// A pod on the bridge: pods 1, 2 and 4 on the /24; pod 3 routed through the gateway
    /// (a /32, as routed CNIs do), so a service's replies from it are routed and un-DNAT'd.
    fn add_pod(&mut self, i: u32) {
        let (pod, veth) = (self.pod(i), self.pod_veth(i));
        run(&["ip", "netns", "add", &pod]);
        self.guard.namespaces.push(pod.clone());
        run(&["ip", "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &pod]);
        run(&["ip", "link", "set", &veth, "master", &self.bridge(), "up"]);
        let address = format!("10.244.7.{}", 10 + i);
        in_ns(&pod, &["ip", "link", "set", "lo", "up"]);
        in_ns(&pod, &["ip", "link", "set", "eth0", "up"]);
        if i == 3 {
            in_ns(&pod, &["ip", "addr", "add", &format!("{address}/32"), "dev", "eth0"]);
            in_ns(&pod, &["ip", "route", "add", "10.244.7.1", "dev", "eth0"]);
        } else {
            in_ns(&pod, &["ip", "addr", "add", &format!("{address}/24"), "dev", "eth0"]);
        }
        in_ns(&pod, &["ip", "route", "add", "default", "via", "10.244.7.1"]);
    }

    fn remove_pod(&mut self, i: u32) {
        let pod = self.pod(i);
        run(&["ip", "netns", "del", &pod]);
        self.guard.namespaces.retain(|ns| *ns != pod);
    }

    /// Starts a Python server in a namespace and waits until it listens.
    fn serve(&mut self, ns: &str, script: &str, args: &[&str]) {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, "python3", "-c", script])
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "a server in {ns} did not start");
        self.guard.children.push(child);
    }

    /// Runs a Python client to completion.
    fn client(&self, ns: &str, script: &str, args: &[&str]) {
        let mut all = vec!["ip", "netns", "exec", ns, "python3", "-c", script];
        all.extend_from_slice(args);
        run(&all);
    }
}

/// Receives one capture's events, keeping when each arrived.
struct Collector {
    receiver: Receiver<CaptureEvent>,
    events: Vec<(Instant, CaptureEvent)>,
    ended: bool,
}

impl Collector {
    fn pump(&mut self) {
        loop {
            match self.receiver.try_recv() {
                Ok(event) => self.events.push((Instant::now(), event)),
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Disconnected) => {
                    self.ended = true;
                    return;
                }
            }
        }
    }

    /// Waits (pumping) until an event matches; when it arrived.
    fn wait_for(&mut self, within: Duration, matches: impl Fn(&CaptureEvent) -> bool) -> Instant {
        let deadline = Instant::now() + within;
        loop {
            self.pump();
            if let Some((at, _)) = self.events.iter().find(|(_, event)| matches(event)) {
                return *at;
            }
            assert!(Instant::now() < deadline, "no matching capture event within {within:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn drain(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.ended && Instant::now() < deadline {
            self.pump();
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(self.ended, "the capture did not end");
    }

    fn frames(&self) -> impl Iterator<Item = &DecodedFrame> {
        self.events
            .iter()
            .filter_map(|(_, e)| match e {
                CaptureEvent::Frames(frames) => Some(frames.iter()),
                _ => None,
            })
            .flatten()
    }

    fn index_of(&self, name: &str) -> u16 {
        self.events
            .iter()
            .find_map(|(_, e)| match e {
                CaptureEvent::Attached { index, interface } if interface.name == name => {
                    Some(*index)
                }
                _ => None,
            })
            .unwrap_or_else(|| panic!("'{name}' was never attached"))
    }

    fn warnings(&self) -> Vec<&str> {
        self.events
            .iter()
            .filter_map(|(_, e)| match e {
                CaptureEvent::Warning(text) => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Frames and bytes of one conversation (either direction) captured on one interface.
    fn seen_on(&self, interface: u16, a: (&str, u16), b: (&str, u16)) -> (u64, u64) {
        let (a, b) = ((a.0.parse::<IpAddr>().unwrap(), a.1), (b.0.parse::<IpAddr>().unwrap(), b.1));
        self.frames()
            .filter(|frame| frame.interface == interface)
            .filter_map(|frame| frame.decoded.as_ref().ok())
            .filter(|s| {
                let (src, dst) =
                    ((s.packet.src, s.packet.src_port), (s.packet.dst, s.packet.dst_port));
                (src, dst) == (a, b) || (src, dst) == (b, a)
            })
            .fold((0, 0), |(n, bytes), s| (n + 1, bytes + u64::from(s.packet.ip_len)))
    }

    /// The flow records: frames counted once (the dedup rule), then through the engine.
    fn records(&self) -> Vec<FlowRecord> {
        let mut engine = Engine::new(TableLimits::default());
        let mut dedup = Dedup::new(DedupLimits::default());
        let mut names: Vec<String> = Vec::new();
        let mut last = Timestamp::default();
        for (_, event) in &self.events {
            match event {
                CaptureEvent::Attached { index, interface } => {
                    let index = usize::from(*index);
                    if names.len() <= index {
                        names.resize(index + 1, String::new());
                    }
                    names[index].clone_from(&interface.name);
                    engine.set_interfaces(names.clone());
                }
                CaptureEvent::Frames(frames) => {
                    for frame in frames {
                        let decoded = match &frame.decoded {
                            Ok(summary) => {
                                let facts = PacketFacts::of(&summary.packet, None);
                                match dedup.observe(&facts, frame.interface, frame.ts) {
                                    Sighting::Copy { .. } => continue,
                                    Sighting::First { count_as, .. } => {
                                        let mut summary = summary.clone();
                                        summary.packet.src = count_as.src.ip;
                                        summary.packet.src_port = count_as.src.port;
                                        summary.packet.dst = count_as.dst.ip;
                                        summary.packet.dst_port = count_as.dst.port;
                                        Ok(summary)
                                    }
                                }
                            }
                            Err(reason) => Err(*reason),
                        };
                        last = last.max(frame.ts);
                        engine.ingest_decoded(frame.ts, frame.interface, decoded);
                    }
                }
                _ => {}
            }
        }
        let mut records = Vec::new();
        engine
            .finish(last, |record| {
                records.push(record.clone());
                Ok::<_, ()>(())
            })
            .unwrap();
        records
    }
}

fn start(selection: Selection) -> (LiveCapture, Collector) {
    let (sender, receiver) = mpsc::sync_channel(4096);
    let config = LiveConfig { selection, ..LiveConfig::default() };
    let capture = LiveCapture::start(config, sender).unwrap();
    (capture, Collector { receiver, events: Vec::new(), ended: false })
}

fn flow<'a>(records: &'a [FlowRecord], src: (&str, u16), dst: (&str, u16)) -> &'a FlowRecord {
    records
        .iter()
        .find(|r| {
            (r.src.ip.to_string().as_str(), r.src.port.unwrap_or(0)) == src
                && (r.dst.ip.to_string().as_str(), r.dst.port.unwrap_or(0)) == dst
        })
        .unwrap_or_else(|| panic!("no flow {src:?} → {dst:?}"))
}

fn has_flow(records: &[FlowRecord], a: (&str, u16), b: (&str, u16)) -> bool {
    records.iter().any(|r| {
        let src = (r.src.ip.to_string(), r.src.port.unwrap_or(0));
        let dst = (r.dst.ip.to_string(), r.dst.port.unwrap_or(0));
        let (a, b) = ((a.0.to_owned(), a.1), (b.0.to_owned(), b.1));
        (src == a && dst == b) || (src == b && dst == a)
    })
}

fn have_nft() -> bool {
    Command::new("nft").arg("--version").output().is_ok_and(|o| o.status.success())
}

const P1: &str = "10.244.7.11";
const P2: &str = "10.244.7.12";
const P3: &str = "10.244.7.13";
const P4: &str = "10.244.7.14";
const SERVICE: &str = "10.96.7.10";
const WEB: &str = "203.0.113.10";
const DNS: &str = "203.0.113.53";

#[test]
#[ignore = "runs inside the namespace node made by live_capture_on_a_namespace_node_…"]
fn inside_a_namespace_node() {
    let Ok(suffix) = std::env::var(INSIDE) else { return };
    let mut node = Node::build(&suffix);
    let dnat = have_nft();
    if dnat {
        run(&["nft", "add", "table", "ip", "nwnat"]);
        run(&["nft", "add chain ip nwnat pre { type nat hook prerouting priority -100; }"]);
        run(&[
            "nft",
            &format!("add rule ip nwnat pre ip daddr {SERVICE} tcp dport 80 dnat to {P3}:8080"),
        ]);
    } else {
        eprintln!(
            "note: nft is not installed; the service (DNAT) part is replaced by a direct connection"
        );
    }

    // What would be captured by default, and why: the pod veths only.
    let survey = interfaces::list(&Selection::PodFacing).unwrap();
    let class_of =
        |name: &str| survey.iter().find(|i| i.name == name).map(|i| (i.class, i.captured));
    for i in 1..=3 {
        assert_eq!(class_of(&node.pod_veth(i)), Some((InterfaceClass::PodVeth, true)));
    }
    assert_eq!(class_of(&node.bridge()), Some((InterfaceClass::Bridge, false)));
    assert_eq!(class_of(&node.uplink()), Some((InterfaceClass::Uplink, false)));
    assert_eq!(class_of("lo"), Some((InterfaceClass::Loopback, false)));

    // Two captures of the same traffic: the default one (pod veths), and one that adds the
    // bridge and the uplink, whose extra copies must be recognised too.
    let (pod_facing, mut by_default) = start(Selection::PodFacing);
    let every = Selection::Named(vec![format!("nwv{suffix}*"), node.bridge(), node.uplink()]);
    let (everything, mut with_bridge) = start(every);
    // And libpcap's `any` device: one capture, frames named by their interface.
    let (any, mut through_any) = start(Selection::Any);

    let (p1, p2, p3, external) = (node.pod(1), node.pod(2), node.pod(3), node.external());
    node.serve(&p2, UDP_ECHO, &[P2, "9000", "20", "echo"]);
    node.serve(&p1, UDP_ECHO, &[P1, "9001", "5", "sink"]);
    node.serve(&p3, TCP_SERVER, &[P3, "8080", "2000"]);
    node.serve(&external, DNS_SERVER, &[DNS, WEB, "1"]);
    node.serve(&external, TCP_SERVER, &[WEB, "443", "100"]);

    node.client(&p1, UDP_CLIENT, &[P1, "40001", P2, "9000", "20", "100", "echo"]);
    let service = if dnat { (SERVICE, 80) } else { (P3, 8080) };
    node.client(&p1, TCP_CLIENT, &[P1, "40002", service.0, &service.1.to_string(), "3000"]);
    node.client(&p2, DNS_CLIENT, &[P2, "40003", "api.example.com", DNS]);
    node.client(&p2, TCP_CLIENT, &[P2, "40004", WEB, "443", "500"]);

    // Hot-plug: a pod that arrives during the capture is attached within 2 s, and one that
    // leaves is detached quietly.
    let p4_veth = node.pod_veth(4);
    let added = Instant::now();
    node.add_pod(4);
    let attached = by_default.wait_for(
        Duration::from_secs(3),
        |e| matches!(e, CaptureEvent::Attached { interface, .. } if interface.name == p4_veth),
    );
    assert!(attached - added < Duration::from_secs(2), "attached after {:?}", attached - added);
    for capture in [&mut with_bridge, &mut through_any] {
        capture.wait_for(
            Duration::from_secs(3),
            |e| matches!(e, CaptureEvent::Attached { interface, .. } if interface.name == p4_veth),
        );
    }
    let p4 = node.pod(4);
    node.client(&p4, UDP_CLIENT, &[P4, "40005", P1, "9001", "5", "50", "sink"]);
    std::thread::sleep(Duration::from_millis(200));
    let removed = Instant::now();
    node.remove_pod(4);
    let detached = by_default.wait_for(
        Duration::from_secs(3),
        |e| matches!(e, CaptureEvent::Detached { name, .. } if *name == p4_veth),
    );
    assert!(detached - removed < Duration::from_secs(2), "detached after {:?}", detached - removed);
    std::thread::sleep(Duration::from_millis(1200));

    pod_facing.stop();
    everything.stop();
    any.stop();
    by_default.drain();
    with_bridge.drain();
    through_any.drain();

    // The removed pod's veth keeps its counts in the totals, in the entry of interfaces gone:
    // in the stats sent after it went and before the capture stopped, that entry is its alone.
    let after_removal = by_default
        .events
        .iter()
        .skip_while(|(_, e)| !matches!(e, CaptureEvent::Detached { name, .. } if *name == p4_veth))
        .find_map(|(_, e)| match e {
            CaptureEvent::Stats(stats) => Some(stats),
            _ => None,
        })
        .expect("stats after the pod went");
    let gone = after_removal.iter().find(|s| s.index == u16::MAX).expect("interfaces gone");
    let p4_sent = 5;
    assert!(gone.received >= p4_sent, "the removed pod's datagrams: {gone:?}");
    let still_attached: u64 =
        after_removal.iter().filter(|s| s.index != u16::MAX).map(|s| s.received).sum();
    assert!(still_attached > gone.received, "only p4's counts are in it: {after_removal:?}");

    let captures = [
        ("pod-facing", &by_default),
        ("with bridge and uplink", &with_bridge),
        ("any", &through_any),
    ];
    for (label, capture) in captures {
        assert_eq!(capture.warnings(), Vec::<&str>::new(), "{label}");
        let stats: Vec<_> = capture
            .events
            .iter()
            .filter_map(|(_, e)| match e {
                CaptureEvent::Stats(stats) => Some(stats),
                _ => None,
            })
            .flatten()
            .collect();
        assert!(!stats.is_empty(), "{label}: no stats");
        assert!(stats.iter().all(|s| s.dropped == 0), "{label}: drops {stats:?}");

        let records = capture.records();
        // UDP echo pod to pod: each datagram seen on both veths, counted once.
        let echo = flow(&records, (P1, 40001), (P2, 9000));
        assert_eq!((echo.packets.tx, echo.packets.rx), (20, 20), "{label}");
        assert_eq!((echo.bytes.tx, echo.bytes.rx), (20 * 128, 20 * 128), "{label}");
        let p1_veth = capture.index_of(&node.pod_veth(1));
        let p2_veth = capture.index_of(&node.pod_veth(2));
        assert_eq!(capture.seen_on(p1_veth, (P1, 40001), (P2, 9000)).0, 40, "{label}");
        assert_eq!(capture.seen_on(p2_veth, (P1, 40001), (P2, 9000)).0, 40, "{label}");

        // Through the service: one flow to the service address, counted as the client's veth
        // saw it; the backend's copies (another destination) are not a second flow.
        let to_service = flow(&records, (P1, 40002), service);
        let (packets, bytes) = capture.seen_on(p1_veth, (P1, 40002), service);
        assert!(packets >= 6, "{label}: {packets}");
        assert_eq!(to_service.packets.tx + to_service.packets.rx, packets, "{label}");
        assert_eq!(to_service.bytes.tx + to_service.bytes.rx, bytes, "{label}");
        if dnat {
            assert!(!has_flow(&records, (P1, 40002), (P3, 8080)), "{label}: backend flow");
        }

        // DNS from the pod, then a connection to the name's address: the name is learned.
        let query = flow(&records, (P2, 40003), (DNS, 53));
        assert_eq!((query.packets.tx, query.packets.rx), (1, 1), "{label}");
        let web = flow(&records, (P2, 40004), (WEB, 443));
        assert_eq!(web.dst.dns.as_deref(), Some("api.example.com"), "{label}");
        let (packets, bytes) = capture.seen_on(p2_veth, (P2, 40004), (WEB, 443));
        assert_eq!(web.packets.tx + web.packets.rx, packets, "{label}");
        assert_eq!(web.bytes.tx + web.bytes.rx, bytes, "{label}");

        // The pod that came and went.
        let late = flow(&records, (P4, 40005), (P1, 9001));
        assert_eq!((late.packets.tx, late.packets.rx, late.bytes.tx), (5, 0, 5 * 78), "{label}");
    }
    // The uplink and the bridge did see the external traffic: copies were recognised.
    let uplink = with_bridge.index_of(&node.uplink());
    assert!(with_bridge.seen_on(uplink, (P2, 40004), (WEB, 443)).0 > 0);

    pods_are_named_behind_their_veths(&node);

    // A total buffer budget smaller than three full buffers: the first pod veth gets the
    // per-interface size, the next what remains, the last the floor; one warning says so.
    let (sender, receiver) = mpsc::sync_channel(4096);
    let config = LiveConfig { buffer_total: 40 << 20, ..LiveConfig::default() };
    let tight = LiveCapture::start(config, sender).unwrap();
    let mut budgeted = Collector { receiver, events: Vec::new(), ended: false };
    budgeted.wait_for(Duration::from_secs(3), |e| matches!(e, CaptureEvent::Stats(_)));
    tight.stop();
    budgeted.drain();
    let sizes: Vec<(String, u32)> = budgeted
        .events
        .iter()
        .find_map(|(_, e)| match e {
            CaptureEvent::Stats(stats) => {
                Some(stats.iter().map(|s| (s.name.clone(), s.buffer_bytes >> 20)).collect())
            }
            _ => None,
        })
        .unwrap();
    let expected: Vec<(String, u32)> =
        [(1, 32), (2, 8), (3, 2)].iter().map(|(i, mib)| (node.pod_veth(*i), *mib)).collect();
    assert_eq!(sizes, expected);
    let warnings = budgeted.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].starts_with("--buffer-total 40.0MiB is used up"), "{}", warnings[0]);

    // A capture with nothing to capture yet (no interface matches), asked to stop as the
    // views ask before draining what is in flight, ends now, not at its next poll or stats two
    // minutes away: no capture thread wakes its supervisor, the request does.
    let (sender, receiver) = mpsc::sync_channel(4096);
    let minutes = Duration::from_secs(120);
    let config = LiveConfig {
        selection: Selection::Named(vec!["nwlater*".into()]),
        poll_interval: minutes,
        stats_interval: minutes,
        ..LiveConfig::default()
    };
    let idle = LiveCapture::start(config, sender).unwrap();
    let mut stopping = Collector { receiver, events: Vec::new(), ended: false };
    // The supervisor must be in its wait first (stopped sooner, it would not wait, and the
    // test would pass without the wake it is for).
    match FUTEX {
        Some(futex) => assert!(
            sits_in_a_futex_wait("netwatch-capture", futex, Duration::from_secs(5)),
            "the capture's supervisor never settled into its wait"
        ),
        // Elsewhere the wait cannot be seen: time for it.
        None => std::thread::sleep(Duration::from_millis(300)),
    }
    idle.request_stop();
    stopping.drain();
    drop(idle);
    drop(node);
}

/// The futex system call's number, as `/proc/*/syscall` shows it, where it is known here.
#[cfg(target_arch = "x86_64")]
const FUTEX: Option<&str> = Some("202");
#[cfg(any(target_arch = "aarch64", target_arch = "riscv64"))]
const FUTEX: Option<&str> = Some("98");
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64", target_arch = "riscv64")))]
const FUTEX: Option<&str> = None;

/// Whether this process's thread `name` is seen blocked in system call `futex` (where a
/// channel's timed receive sleeps) twice in a row, 20 ms apart, within `limit`.
fn sits_in_a_futex_wait(name: &str, futex: &str, limit: Duration) -> bool {
    // The kernel keeps 15 bytes of a thread's name.
    let comm = &name[..name.len().min(15)];
    let deadline = Instant::now() + limit;
    let mut in_a_row = 0;
    while Instant::now() < deadline {
        let waiting = threads_named(comm).any(|task| {
            std::fs::read_to_string(task.join("syscall"))
                .is_ok_and(|call| call.split_whitespace().next() == Some(futex))
        });
        in_a_row = if waiting { in_a_row + 1 } else { 0 };
        if in_a_row >= 2 {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// `netwatch interfaces --cluster` names the pod behind each veth of this bridge node, where
/// no per-pod route says it: from the kernel's ARP and bridge tables, and from the veth's peer
/// in the pod's named namespace, each checked on its own. Also shows the kernel buffer each
/// veth would get under a small `--buffer-total`.
fn pods_are_named_behind_their_veths(node: &Node) {
    // The node talks to each pod, so its ARP table and the bridge's forwarding table know them.
    for i in 1..=3 {
        let ip = format!("10.244.7.{}", 10 + i);
        run(&["python3", "-c", UDP_POKE, &ip]);
    }
    let survey = interfaces::list(&Selection::PodFacing).unwrap();
    let veth_index =
        |i: u32| survey.iter().find(|info| info.name == node.pod_veth(i)).unwrap().ifindex;
    let expected: std::collections::BTreeMap<u32, Vec<IpAddr>> = (1..=3)
        .map(|i| (veth_index(i), vec![format!("10.244.7.{}", 10 + i).parse().unwrap()]))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(3);
    let from_tables = loop {
        let found = behind::via_bridge_tables(&survey);
        if found == expected || Instant::now() > deadline {
            break found;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(from_tables, expected, "ARP + brforward + brport/port_no");
    assert_eq!(behind::via_peer_namespaces(&survey), expected, "peer index in the pod namespace");

    let snapshot = std::env::temp_dir().join(format!("netwatch-node-{}.yaml", node.suffix));
    let pods: Vec<String> = (1..=3)
        .map(|i| {
            format!(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: pod-{i}\n  namespace: shop\nspec:\n  containers:\n  - name: app\n    image: app\nstatus:\n  phase: Running\n  podIP: 10.244.7.{}\n",
                10 + i
            )
        })
        .collect();
    std::fs::write(&snapshot, pods.join("---\n")).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_netwatch"))
        .args(["interfaces", "--cluster", snapshot.to_str().unwrap(), "--buffer-total", "40MiB"])
        .output()
        .unwrap();
    std::fs::remove_file(&snapshot).unwrap();
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    for (i, buffer) in [(1, "32.0MiB"), (2, "8.0MiB"), (3, "2.0MiB")] {
        let row = table
            .lines()
            .find(|line| line.starts_with(&format!("{} ({})", node.pod_veth(i), node.bridge())))
            .unwrap_or_else(|| panic!("no row for pod veth {i}:\n{table}"));
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[2..7], ["pod", "veth", "yes", buffer, &format!("shop/pod-{i}")], "{row}");
    }
    let bridge = table.lines().find(|line| line.starts_with(&node.bridge())).unwrap();
    assert!(bridge.contains(" no ") && bridge.contains(" - "), "{bridge}");
}

/// Sends one UDP datagram from the node to a pod's discard port, so the node resolves it.
const UDP_POKE: &str = r#"
import socket, sys
socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"", (sys.argv[1], 9))
"#;

/// The `/proc` directories of this process's threads whose name starts with `prefix`.
fn threads_named(prefix: &str) -> impl Iterator<Item = std::path::PathBuf> {
    let tasks = std::fs::read_dir("/proc/self/task").into_iter().flatten().flatten();
    tasks.map(|task| task.path()).filter(move |task| {
        std::fs::read_to_string(task.join("comm")).is_ok_and(|comm| comm.trim().starts_with(prefix))
    })
}

/// CPU time (ns) of this process's threads whose name starts with `prefix`, from schedstat.
fn thread_cpu_ns(prefix: &str) -> u64 {
    threads_named(prefix)
        .filter_map(|task| std::fs::read_to_string(task.join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn this_thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|stat| stat.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|line| line.starts_with("VmHWM:"))?.to_owned();
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}

/// The netwatch side of `scripts/bench-live.sh`: captures the named interfaces for a while
/// (optionally counting once and folding into flows on this thread, as the run loop will) and
/// prints frames, libpcap's counts, CPU per thread group and peak memory.
/// `NETWATCH_BENCH="IFACE[,IFACE…];SECONDS;ENGINE(0|1)[;immediate]"`.
#[test]
#[ignore = "a measurement, run by scripts/bench-live.sh"]
fn measure_live_capture() {
    let Ok(spec) = std::env::var("NETWATCH_BENCH") else { return };
    let parts: Vec<&str> = spec.split(';').collect();
    let names = parts[0].split(',').map(str::to_owned).collect();
    let seconds: u64 = parts[1].parse().unwrap();
    let with_engine = parts[2] == "1";
    let immediate = parts.get(3) == Some(&"immediate");
    let (sender, receiver) = mpsc::sync_channel(64);
    let config =
        LiveConfig { selection: Selection::Named(names), immediate, ..LiveConfig::default() };
    let capture = LiveCapture::start(config, sender).unwrap();
    let frame_pool = capture.frame_pool();
    let mut engine = Engine::new(TableLimits::default());
    let mut dedup = Dedup::new(DedupLimits::default());
    let mut frames = 0u64;
    let mut copies = 0u64;
    let mut stats = Vec::new();
    // CPU is counted from the thousandth frame (the traffic has started: start-up and the
    // quiet second before are left out, as they are for tcpdump) to the end.
    let mut from: Option<(u64, u64, u64, u64)> = None;
    let end = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < end {
        match receiver.recv_timeout(Duration::from_millis(100)) {
            Ok(CaptureEvent::Frames(mut batch)) => {
                frames += batch.len() as u64;
                if from.is_none() && frames >= 1000 {
                    from = Some((
                        frames,
                        thread_cpu_ns("netwatch-cap-"),
                        thread_cpu_ns("netwatch-captur"),
                        this_thread_cpu_ns(),
                    ));
                }
                if with_engine {
                    for frame in batch.drain(..) {
                        if let Ok(summary) = &frame.decoded {
                            let facts = PacketFacts::of(&summary.packet, None);
                            if let Sighting::Copy { .. } =
                                dedup.observe(&facts, frame.interface, frame.ts)
                            {
                                copies += 1;
                                continue;
                            }
                        }
                        engine.ingest_decoded(frame.ts, frame.interface, frame.decoded);
                    }
                }
                frame_pool.give(batch);
            }
            Ok(CaptureEvent::Stats(latest)) => stats = latest,
            _ => {}
        }
    }
    let (from_frames, capture_from, supervisor_from, main_from) = from.unwrap_or_default();
    let capture_ns = thread_cpu_ns("netwatch-cap-").saturating_sub(capture_from);
    let supervisor_ns = thread_cpu_ns("netwatch-captur").saturating_sub(supervisor_from);
    let main_ns = this_thread_cpu_ns().saturating_sub(main_from);
    let measured = frames - from_frames;
    capture.stop();
    let received: u64 = stats.iter().map(|s| s.received).sum();
    let dropped: u64 = stats.iter().map(|s| s.dropped + s.if_dropped).sum();
    println!(
        "BENCH frames={frames} measured={measured} copies={copies} received={received} dropped={dropped} capture_cpu_ns={capture_ns} supervisor_cpu_ns={supervisor_ns} main_cpu_ns={main_ns} peak_rss_kib={}",
        peak_rss_kib()
    );
}

/// The sender of `scripts/bench-live.sh`: UDP datagrams at a rate (0: as fast as it can).
/// `NETWATCH_BLAST="SRC_IP,DST_IP:PORT,RATE,SECONDS,PAYLOAD_BYTES"`.
#[test]
#[ignore = "a traffic generator, run by scripts/bench-live.sh inside a pod namespace"]
fn blast_udp() {
    let Ok(spec) = std::env::var("NETWATCH_BLAST") else { return };
    let parts: Vec<&str> = spec.split(',').collect();
    let socket = std::net::UdpSocket::bind((parts[0], 0)).unwrap();
    socket.connect(parts[1]).unwrap();
    let rate: f64 = parts[2].parse().unwrap();
    let seconds: f64 = parts[3].parse().unwrap();
    let payload = vec![0u8; parts[4].parse().unwrap()];
    let start = Instant::now();
    let mut sent = 0u64;
    loop {
        let elapsed = start.elapsed().as_secs_f64();
        if elapsed >= seconds {
            break;
        }
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        if rate > 0.0 && sent >= (elapsed * rate) as u64 {
            std::thread::sleep(Duration::from_micros(100));
            continue;
        }
        if socket.send(&payload).is_ok() {
            sent += 1;
        }
    }
    println!("BLAST sent={sent} seconds={:.3}", start.elapsed().as_secs_f64());
}
