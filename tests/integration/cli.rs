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

/// Live-capture options before a command would be ignored (kubectl users put flags right after
/// the plugin's name): exit 2, naming them; a global option there is fine.
#[test]
fn live_options_before_a_command_are_refused_not_ignored() {
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/demo.pcap");
    let output = netwatch(&["--cluster", "c.yaml", "replay", demo, "--headless"]);
    assert_eq!(output.status.code(), Some(2));
    let text = stderr(&output);
    assert!(
        text.starts_with("netwatch: error: --cluster before 'replay' would be ignored"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 1, "one clear line: {text}");
    let log = std::env::temp_dir().join(format!("netwatch-log-{}", std::process::id()));
    let output = netwatch(&[
        "--log-file",
        log.to_str().unwrap(),
        "replay",
        demo,
        "--headless",
        "-o",
        "json",
    ]);
    let _ = std::fs::remove_file(&log);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

#[test]
fn a_pipe_is_refused_with_what_to_do_instead() {
    let fifo = std::env::temp_dir().join(format!("netwatch-fifo-{}", std::process::id()));
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo runs");
    assert!(made.success());
    let output = netwatch(&["replay", fifo.to_str().unwrap(), "--headless"]);
    let _ = std::fs::remove_file(&fifo);
    assert_eq!(output.status.code(), Some(2));
    let text = stderr(&output);
    assert!(text.contains("is not a regular file") && text.contains("tcpdump -w"), "{text}");
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

fn kubectl_netwatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kubectl-netwatch")).args(args).output().unwrap()
}

/// An `Options:` entry: `    -n, --namespace='':` above tab-indented description lines.
struct OptionEntry {
    short: Option<String>,
    long: String,
    default: String,
    description: Vec<String>,
}

fn option_entries(section: &[&str]) -> Vec<OptionEntry> {
    let mut entries: Vec<OptionEntry> = Vec::new();
    for line in section {
        if let Some(head) = line.strip_prefix("    ") {
            let head = head.strip_suffix(':').unwrap_or_else(|| panic!("no ':' after {line:?}"));
            let (names, default) = head.split_once('=').expect("flag=default");
            let (short, long) = match names.split_once(", ") {
                Some((short, long)) => (Some(short.to_owned()), long),
                None => (None, names),
            };
            assert!(long.starts_with("--"), "{line:?}");
            entries.push(OptionEntry {
                short,
                long: long.to_owned(),
                default: default.to_owned(),
                description: Vec::new(),
            });
        } else if let Some(text) = line.strip_prefix('\t') {
            entries.last_mut().expect("a description under a flag").description.push(text.into());
        } else {
            assert!(line.is_empty(), "unexpected line in Options: {line:?}");
        }
    }
    entries
}

#[test]
fn kubectl_netwatch_help_is_laid_out_like_kubectls_and_lists_every_flag() {
    let output = kubectl_netwatch(&["--help"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(kubectl_netwatch(&["-h"]).stdout, output.stdout, "-h is the same help");
    let lines: Vec<&str> = text.lines().collect();

    // One line of description, then the sections in kubectl's order, each title alone.
    assert!(lines[0].ends_with('.') && !lines[0].starts_with(' ') && lines[1].is_empty());
    let at = |title: &str| {
        lines.iter().position(|l| *l == title).unwrap_or_else(|| panic!("no {title}:\n{text}"))
    };
    let (examples, commands, options, usage) =
        (at("Examples:"), at("Available Commands:"), at("Options:"), at("Usage:"));
    assert!(examples < commands && commands < options && options < usage, "{text}");

    let example_lines = &lines[examples + 1..commands - 1];
    let mut invocations = 0;
    for line in example_lines {
        assert!(
            line.is_empty() || line.starts_with("  # ") || line.starts_with("  kubectl netwatch"),
            "example lines are indented comments or commands: {line:?}"
        );
        invocations += usize::from(line.starts_with("  kubectl netwatch"));
    }
    assert!(invocations >= 5, "{text}");
    for command in ["demo", "replay", "snapshot", "record", "policy", "interfaces"] {
        assert!(
            lines[commands + 1..options].iter().any(|l| l.starts_with(&format!("  {command} "))),
            "{command} listed:\n{text}"
        );
    }
    assert_eq!(lines[usage + 1], "  kubectl netwatch [flags] [options]");

    let entries = option_entries(&lines[options + 1..usage - 1]);
    for entry in &entries {
        assert!(!entry.description.is_empty(), "{} has a description", entry.long);
    }
    let longs: Vec<&str> = entries.iter().map(|e| e.long.as_str()).collect();
    let mut sorted = longs.clone();
    sorted.sort_unstable();
    assert_eq!(longs, sorted, "sorted by name, as kubectl sorts them");
    let head = |long: &str| {
        entries.iter().find(|e| e.long == long).map(|e| {
            let names = e.short.as_ref().map_or(e.long.clone(), |s| format!("{s}, {}", e.long));
            format!("{names}={}", e.default)
        })
    };
    assert_eq!(head("--namespace").as_deref(), Some("-n, --namespace=''"));
    assert_eq!(head("--all-namespaces").as_deref(), Some("-A, --all-namespaces=false"));
    assert_eq!(head("--kubeconfig").as_deref(), Some("--kubeconfig=''"));
    assert_eq!(head("--context").as_deref(), Some("--context=''"));
    assert_eq!(head("--interface").as_deref(), Some("-i, --interface=[]"));
    assert_eq!(head("--max-flows").as_deref(), Some("--max-flows=200000"));

    // Every flag the plugin's parser knows is listed, under its short name too...
    let mut command = netwatch::cli::plugin_command();
    command.build();
    for arg in command.get_arguments().filter(|a| !a.is_positional()) {
        let long = format!("--{}", arg.get_long().expect("every flag has a long name"));
        let entry = entries.iter().find(|e| e.long == long);
        let entry = entry.unwrap_or_else(|| panic!("{long} missing from the help:\n{text}"));
        assert_eq!(entry.short, arg.get_short().map(|s| format!("-{s}")), "{long}");
    }
    // ...and every flag listed is one the plugin accepts.
    for entry in entries.iter().filter(|e| !matches!(e.long.as_str(), "--help" | "--version")) {
        let mut args = vec![entry.long.clone()];
        if entry.default != "false" {
            let value = entry.default.trim_matches(|c| c == '\'' || c == '[' || c == ']');
            args.push(if value.is_empty() { "x".to_owned() } else { value.to_owned() });
        }
        args.push("--help".to_owned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = kubectl_netwatch(&args);
        assert_eq!(output.status.code(), Some(0), "{args:?}: {}", stderr(&output));
    }
}

#[test]
fn kubectl_netwatch_subcommand_help_names_the_plugin() {
    let output = kubectl_netwatch(&["replay", "--help"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("kubectl netwatch replay"), "{text}");
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
