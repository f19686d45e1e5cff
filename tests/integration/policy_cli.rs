//! `netwatch policy explain|audit` as scripts use them.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::fixture;

fn run(args: &[&str], stdin: &str) -> (Option<i32>, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_netwatch"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    (
        output.status.code(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[test]
fn a_batch_answers_every_good_line_flags_bad_ones_and_exits_2() {
    let cluster = fixture("cluster/kubectl-list.yaml");
    let input = concat!(
        r#"{"from":"shop/web-7c9d8b6f5d-x2k9p","to":"203.0.113.10","protocol":"TCP","port":443}"#,
        "\n",
        r#"{"from":"shop/nope","to":"203.0.113.10","port":443}"#,
        "\n",
        r#"{"from":"10.0.0.99","to":"shop/web-7c9d8b6f5d-x2k9p","protocol":"udp","port":8080}"#,
        "\n"
    );
    let (code, stdout, stderr) =
        run(&["policy", "explain", "--cluster", cluster.to_str().unwrap(), "--batch", "-"], input);
    assert_eq!(code, Some(2), "{stderr}");
    let lines: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);

    let denied = &lines[0];
    assert_eq!(denied["from"], "shop/web-7c9d8b6f5d-x2k9p", "the input object comes back");
    assert_eq!(denied["egress"]["decision"], "deny");
    assert_eq!(denied["egress"]["policies"], serde_json::json!(["shop/default-deny-egress"]));
    assert_eq!(denied["ingress"]["decision"], "n/a");
    assert_eq!(denied["allowed"], false);

    assert_eq!(lines[1]["line"], 2);
    assert!(lines[1]["error"].as_str().unwrap().contains("'shop/nope'"), "{}", lines[1]);

    let open = &lines[2];
    assert_eq!(open["ingress"]["decision"], "unrestricted");
    assert_eq!(open["egress"]["decision"], "n/a");
    assert_eq!(open["allowed"], true);
    assert!(stderr.contains("1 batch line(s)"), "{stderr}");
}

#[test]
fn explain_prints_a_sentence_naming_the_deciding_policy() {
    let cluster = fixture("cluster/kubectl-list.yaml");
    let (code, stdout, _) = run(
        &[
            "policy",
            "explain",
            "--cluster",
            cluster.to_str().unwrap(),
            "--from",
            "shop/web-7c9d8b6f5d-x2k9p",
            "--to",
            "203.0.113.10",
            "--port",
            "443",
        ],
        "",
    );
    assert_eq!(code, Some(0));
    assert!(stdout.contains("isolated for egress by shop/default-deny-egress"), "{stdout}");
    assert!(stdout.contains("DENIED (egress)"), "{stdout}");
}

#[test]
fn audit_lists_unprotected_pods_and_namespaces_in_json() {
    let cluster = fixture("cluster/kubectl-list.yaml");
    let (code, stdout, _) =
        run(&["policy", "audit", "--cluster", cluster.to_str().unwrap(), "-o", "json"], "");
    assert_eq!(code, Some(0));
    let report: Value = serde_json::from_str(&stdout).unwrap();
    // The hostNetwork kube-proxy pod is not governed by policy, so it is not listed.
    assert_eq!(report["unrestricted_ingress"], serde_json::json!(["shop/web-7c9d8b6f5d-x2k9p"]));
    assert_eq!(report["unrestricted_egress"], serde_json::json!([]));
    assert_eq!(report["namespaces_without_default_deny_ingress"], serde_json::json!(["shop"]));
    assert_eq!(report["namespaces_without_default_deny_egress"], serde_json::json!([]));
}

/// `policy explain --batch … | head`: the reader going away ends the run quietly, exit 0.
#[test]
fn a_closed_output_ends_a_batch_quietly() {
    let cluster = fixture("cluster/kubectl-list.yaml");
    let mut child = Command::new(env!("CARGO_BIN_EXE_netwatch"))
        .args(["policy", "explain", "--cluster", cluster.to_str().unwrap(), "--batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let line =
        r#"{"from":"shop/web-7c9d8b6f5d-x2k9p","to":"203.0.113.10","protocol":"TCP","port":443}"#;
    let input = format!("{line}\n").repeat(20_000);
    // It may stop reading once its output is gone: a write error here is expected.
    let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
}
