//! The built binary in a real terminal: `netwatch demo` under tmux (its own server socket), keys
//! sent as a person would, the screen read back, and the terminal checked after it quits.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// A private tmux server, killed when the test ends however it ends.
pub struct Tmux {
    pub socket: String,
}

impl Tmux {
    pub fn run(&self, args: &[&str]) -> String {
        let output = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux runs (the test command installs it: apt-get install tmux)");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    pub fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "main"])
    }

    pub fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "main"];
        args.extend(keys);
        self.run(&args);
    }

    /// Waits (bounded) until the screen shows `text`.
    pub fn wait_for(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let screen = self.screen();
            if screen.contains(text) {
                return screen;
            }
            assert!(Instant::now() < deadline, "waited for {text:?}; the screen shows:\n{screen}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        // kill-server leaves the socket file behind: remove it as well.
        let socket = self.run(&["display-message", "-p", "#{socket_path}"]);
        let _ = Command::new("tmux").args(["-L", &self.socket, "kill-server"]).output();
        if !socket.trim().is_empty() {
            let _ = std::fs::remove_file(socket.trim());
        }
    }
}

#[test]
fn the_demo_runs_in_a_real_terminal_answers_keys_and_restores_the_terminal() {
    let stty_file: PathBuf =
        std::env::temp_dir().join(format!("netwatch-stty-{}", std::process::id()));
    let binary = env!("CARGO_BIN_EXE_netwatch");
    let script = format!(
        "stty -a > {before}.before; {binary} demo; echo NETWATCH-EXITED $?; stty -a > {after}; sleep 30",
        before = stty_file.display(),
        after = stty_file.display()
    );
    let tmux = Tmux { socket: format!("netwatch-test-{}", std::process::id()) };
    tmux.run(&["new-session", "-d", "-s", "main", "-x", "120", "-y", "40", &script]);

    let screen = tmux.wait_for("1 Flows");
    assert!(screen.contains("cluster snapshot demo-cluster.yaml"), "{screen}");
    tmux.keys(&["+", "+", "+", "+", "+", "+"]);
    tmux.wait_for("LEAK");

    tmux.keys(&["/"]);
    tmux.keys(&["-l", "ns:payments"]);
    tmux.keys(&["Enter"]);
    let filtered = tmux.wait_for("filter ns:payments");
    let rows: Vec<&str> =
        filtered.lines().filter(|l| l.contains("TCP/") || l.contains("SCTP/")).collect();
    assert!(!rows.is_empty(), "{filtered}");
    assert!(rows.iter().all(|l| l.contains("payments") || l.contains("ledger")), "{filtered}");
    tmux.keys(&["Escape"]);

    tmux.keys(&["Enter"]);
    tmux.wait_for("Connection");
    tmux.keys(&["Escape"]);
    tmux.keys(&["2"]);
    tmux.wait_for("Pods (");
    tmux.keys(&["4"]);
    tmux.wait_for("Audit");
    tmux.keys(&["?"]);
    tmux.wait_for("this help");
    tmux.keys(&["q"]);
    let after = tmux.wait_for("NETWATCH-EXITED");
    assert!(after.contains("NETWATCH-EXITED 0"), "{after}");

    // The shell creates the file before stty has written to it: wait for its content.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string(&stty_file).unwrap_or_default().contains("echo")
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let before = std::fs::read_to_string(stty_file.with_extension("before")).unwrap_or_default();
    let restored = std::fs::read_to_string(&stty_file).unwrap_or_default();
    let _ = std::fs::remove_file(&stty_file);
    let _ = std::fs::remove_file(stty_file.with_extension("before"));
    let modes = |text: &str| -> Vec<String> {
        text.split_whitespace()
            .filter(|w| ["icanon", "-icanon", "echo", "-echo"].contains(w))
            .map(str::to_owned)
            .collect()
    };
    assert!(!modes(&before).is_empty(), "stty printed modes: {before}");
    assert_eq!(modes(&restored), modes(&before), "the terminal modes are as they were");
    assert!(!after.contains("1 Flows"), "the alternate screen was left:\n{after}");
}
