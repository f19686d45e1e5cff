//! The built binary as a user runs it: exit codes and the one-line errors of DESIGN.md.

use std::process::{Command, Output};

use crate::fixture;

fn netwatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_netwatch")).args(args).output().unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_missing_capture_is_bad_input_exit_2_with_the_path_quoted() {
    let output = netwatch(&["replay", "no-such-file.pcap", "--headless"]);
    assert_eq!(output.status.code(), Some(2));
    let text = stderr(&output);
    assert!(text.starts_with("netwatch: error: cannot read 'no-such-file.pcap'"), "{text}");
    assert_eq!(text.lines().count(), 1, "one clear line: {text}");
}

#[test]
fn a_file_that_is_not_a_capture_says_so_and_what_to_give_instead() {
    let path = fixture("cluster/no-kind.yaml");
    let output = netwatch(&["replay", path.to_str().unwrap(), "--headless"]);
    assert_eq!(output.status.code(), Some(2));
    let text = stderr(&output);
    assert!(text.contains("is not a pcap or pcapng capture"), "{text}");
    assert!(text.contains("tcpdump"), "{text}");
}

#[test]
fn an_invalid_cluster_snapshot_is_exit_2_naming_file_and_line() {
    let snapshot = fixture("cluster/bad-syntax.yaml");
    let output = netwatch(&["demo", "--headless"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let capture = std::env::temp_dir().join(format!("netwatch-cli-{}.pcap", std::process::id()));
    std::fs::write(&capture, netwatch::demo::CAPTURE).unwrap();
    let output = netwatch(&[
        "replay",
        capture.to_str().unwrap(),
        "--cluster",
        snapshot.to_str().unwrap(),
        "--headless",
    ]);
    std::fs::remove_file(&capture).unwrap();
    assert_eq!(output.status.code(), Some(2));
    let text = stderr(&output);
    assert!(text.contains("bad-syntax.yaml: line 9"), "{text}");
    assert!(text.contains("kubectl get"), "says what to give instead: {text}");
}

#[test]
fn bad_flag_values_are_usage_errors() {
    let output = netwatch(&["demo", "--idle-timeout", "soon"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("'soon'"), "{}", stderr(&output));
    let output = netwatch(&["demo", "--max-flows", "0"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--max-flows '0'"), "{}", stderr(&output));
}

#[test]
fn the_kubectl_plugin_binary_runs_the_same_program() {
    let output =
        Command::new(env!("CARGO_BIN_EXE_kubectl-netwatch")).arg("--help").output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stdout).contains("kubectl netwatch"));
}

#[test]
fn a_buffer_total_below_a_mebibyte_or_unreadable_is_a_usage_error_naming_the_flag() {
    for (value, says) in [("10KB", "must be at least 1MiB"), ("lots", "--buffer-total 'lots'")] {
        let output = netwatch(&["interfaces", "--buffer-total", value]);
        assert_eq!(output.status.code(), Some(2), "{value}");
        let text = stderr(&output);
        assert!(text.contains(says), "{value}: {text}");
        assert_eq!(text.lines().count(), 1, "{text}");
    }
    let output = netwatch(&["--buffer-total", "512KiB", "--no-kube"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--buffer-total '512KiB'"), "{}", stderr(&output));
}
