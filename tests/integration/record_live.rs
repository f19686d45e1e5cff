//! `netwatch record` on a live interface (loopback: the only traffic a test may make outside its
//! own namespaces), stopped by SIGTERM: the file is complete, tshark reads it, and the flows the
//! test made are in it and in the flow records. Needs root, as CI runs.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A TCP server on loopback answering `connections` clients "world" to their "hello".
fn loopback_server(connections: usize) -> (u16, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        for stream in listener.incoming().take(connections) {
            let mut stream = stream.unwrap();
            let mut buffer = [0u8; 5];
            stream.read_exact(&mut buffer).unwrap();
            stream.write_all(b"world").unwrap();
        }
    });
    (port, server)
}

/// `connections` short conversations with the loopback server.
fn talk(port: u16, connections: usize) {
    for _ in 0..connections {
        let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
        client.write_all(b"hello").unwrap();
        let mut reply = [0u8; 5];
        client.read_exact(&mut reply).unwrap();
    }
}

/// The recording file appears once the interface is open: traffic after that is captured.
fn wait_until_created(path: &std::path::Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !path.exists() {
        assert!(Instant::now() < deadline, "the recording did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
}

#[test]
fn a_live_recording_stopped_by_sigterm_is_complete_and_holds_the_flows() {
    if !crate::runs_as_root("the live recording test") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("netwatch-live-record-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pcapng = dir.join("lo.pcapng");
    let flows = dir.join("lo.jsonl");
    let (port, server) = loopback_server(3);
    let child = Command::new(env!("CARGO_BIN_EXE_netwatch"))
        .args([
            "record",
            "-i",
            "lo",
            "-w",
            pcapng.to_str().unwrap(),
            "--flows",
            flows.to_str().unwrap(),
        ])
        .args(["--filter", &format!("tcp port {port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until_created(&pcapng);
    talk(port, 3);
    server.join().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let terminated =
        Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(terminated.success());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("recorded"), "{stderr}");

    let tshark = Command::new("tshark")
        .args(["-r", pcapng.to_str().unwrap(), "-T", "fields", "-e", "frame.interface_name"])
        .output()
        .unwrap();
    assert!(tshark.status.success(), "{}", String::from_utf8_lossy(&tshark.stderr));
    let packets = String::from_utf8_lossy(&tshark.stdout).lines().filter(|l| *l == "lo").count();
    assert!(packets >= 3 * 8, "three connections' packets, on lo: {packets}");

    let records: Vec<Value> = std::fs::read_to_string(&flows)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ours = records.iter().filter(|r| r["dst"]["port"] == port).count();
    assert_eq!(ours, 3, "{records:#?}");
    let replayed = Command::new(env!("CARGO_BIN_EXE_netwatch"))
        .args(["replay", pcapng.to_str().unwrap(), "--headless", "-o", "json"])
        .output()
        .unwrap();
    let replayed: Vec<Value> = String::from_utf8_lossy(&replayed.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(replayed.iter().filter(|r| r["dst"]["port"] == port).count(), 3);
    for (live, again) in records.iter().zip(&replayed) {
        assert_eq!(live["packets"], again["packets"], "replay counts what live counted");
        assert_eq!(live["bytes"], again["bytes"]);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn recording_from_the_live_view_writes_what_was_watched() {
    if !crate::runs_as_root("the live view recording test") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("netwatch-tui-record-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pcapng = dir.join("watched.pcapng");
    let (port, server) = loopback_server(2);
    let script = format!(
        "{} -i lo --no-kube --filter 'tcp port {port}' --record {} 2>{}; echo NETWATCH-EXITED $?; sleep 30",
        env!("CARGO_BIN_EXE_netwatch"),
        pcapng.display(),
        dir.join("stderr").display()
    );
    let tmux = crate::terminal::Tmux { socket: format!("netwatch-record-{}", std::process::id()) };
    tmux.run(&["new-session", "-d", "-s", "main", "-x", "140", "-y", "30", &script]);
    tmux.wait_for("● REC");
    talk(port, 2);
    server.join().unwrap();
    tmux.wait_for("flows 2");
    tmux.keys(&["q"]);
    let after = tmux.wait_for("NETWATCH-EXITED");
    assert!(after.contains("NETWATCH-EXITED 0"), "{after}");
    let stderr = std::fs::read_to_string(dir.join("stderr")).unwrap();
    assert!(stderr.contains("recorded"), "{stderr}");
    let tshark = Command::new("tshark")
        .args(["-r", pcapng.to_str().unwrap(), "-T", "fields", "-e", "tcp.dstport"])
        .output()
        .unwrap();
    assert!(tshark.status.success(), "{}", String::from_utf8_lossy(&tshark.stderr));
    let to_server =
        String::from_utf8_lossy(&tshark.stdout).lines().filter(|l| *l == port.to_string()).count();
    assert!(to_server >= 2 * 4, "both connections' packets to the server: {to_server}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_recording_killed_with_sigkill_is_readable_up_to_its_last_flush() {
    if !crate::runs_as_root("the live recording test") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("netwatch-killed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pcapng = dir.join("killed.pcapng");
    let (port, server) = loopback_server(2);
    let mut child = Command::new(env!("CARGO_BIN_EXE_netwatch"))
        .args(["record", "-i", "lo", "--no-kube", "-w", pcapng.to_str().unwrap()])
        .args(["--filter", &format!("tcp port {port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until_created(&pcapng);
    talk(port, 2);
    server.join().unwrap();
    // Past the one-second flush interval, then no chance to close the file.
    std::thread::sleep(Duration::from_millis(1600));
    child.kill().unwrap();
    child.wait().unwrap();

    let tshark = Command::new("tshark").args(["-r", pcapng.to_str().unwrap()]).output().unwrap();
    let stderr = String::from_utf8_lossy(&tshark.stderr).to_lowercase();
    assert!(!stderr.contains("cut short") && !stderr.contains("malformed"), "{stderr}");
    let output = Command::new(env!("CARGO_BIN_EXE_netwatch"))
        .args(["replay", pcapng.to_str().unwrap(), "--headless", "-o", "json"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let flows = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["dst"]["port"] == port)
        .count();
    assert_eq!(flows, 2, "both connections were flushed before the kill");
    std::fs::remove_dir_all(&dir).unwrap();
}
