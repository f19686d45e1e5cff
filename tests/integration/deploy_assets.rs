//! The deployment files under `assets/`: RBAC grants exactly what the watcher reads, the
//! DaemonSet runs with only the capabilities capture needs, and the krew manifest is a template
//! with no hand-written checksum.

use std::collections::BTreeSet;

use serde_json::Value;

fn documents(relative: &str) -> Vec<Value> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|document| serde::Deserialize::deserialize(document).unwrap())
        .filter(|value: &Value| !value.is_null())
        .collect()
}

fn of_kind<'a>(documents: &'a [Value], kind: &str) -> &'a Value {
    documents.iter().find(|d| d["kind"] == kind).unwrap_or_else(|| panic!("no {kind}"))
}

fn strings(value: &Value) -> BTreeSet<String> {
    value.as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect()
}

#[test]
fn the_cluster_role_grants_get_list_watch_on_exactly_the_six_watched_resources() {
    let rbac = documents("assets/rbac.yaml");
    let mut granted = BTreeSet::new();
    for rule in of_kind(&rbac, "ClusterRole")["rules"].as_array().unwrap() {
        assert_eq!(strings(&rule["verbs"]), strings(&serde_json::json!(["get", "list", "watch"])));
        assert!(rule.get("nonResourceURLs").is_none() && rule.get("resourceNames").is_none());
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                granted.insert(format!("{resource}.{group}"));
            }
        }
    }
    let expected: BTreeSet<String> = [
        "namespaces.",
        "pods.",
        "services.",
        "nodes.",
        "endpointslices.discovery.k8s.io",
        "networkpolicies.networking.k8s.io",
    ]
    .map(str::to_owned)
    .into();
    assert_eq!(granted, expected);

    let account = of_kind(&rbac, "ServiceAccount");
    assert_eq!(account["metadata"]["name"], "netwatch");
    assert_eq!(account["metadata"]["namespace"], "netwatch");
    let binding = of_kind(&rbac, "ClusterRoleBinding");
    assert_eq!(binding["roleRef"]["name"], of_kind(&rbac, "ClusterRole")["metadata"]["name"]);
    assert_eq!(binding["subjects"][0]["kind"], "ServiceAccount");
    assert_eq!(binding["subjects"][0]["name"], "netwatch");
    assert_eq!(binding["subjects"][0]["namespace"], "netwatch");
}

fn assert_least_privilege(container: &Value) {
    let security = &container["securityContext"];
    assert_eq!(strings(&security["capabilities"]["drop"]), ["ALL".to_owned()].into());
    assert_eq!(
        strings(&security["capabilities"]["add"]),
        ["NET_ADMIN".to_owned(), "NET_RAW".to_owned()].into()
    );
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert!(security.get("privileged").is_none_or(|p| p == false));
    assert!(container["resources"]["requests"].is_object());
    assert!(container["resources"]["limits"]["memory"].is_string());
}

#[test]
fn the_daemonset_records_on_every_node_with_only_net_raw_and_net_admin() {
    let daemonset = documents("assets/daemonset.yaml");
    let pod = &of_kind(&daemonset, "DaemonSet")["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(pod["serviceAccountName"], "netwatch");
    let container = &pod["containers"][0];
    assert_least_privilege(container);
    let args: Vec<&str> =
        container["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert_eq!(args[0], "record");
    assert!(args.windows(2).any(|w| w == ["-w", "/recordings/node.pcapng"]));
    // A ring bounds the disk, across restarts too; an unrotated flow file would not be.
    assert!(args.windows(2).any(|w| w == ["--keep", "10"]));
    assert!(!args.contains(&"--flows"));
    let mount = &container["volumeMounts"][0];
    assert_eq!(mount["mountPath"], "/recordings");
    assert!(pod["volumes"].as_array().unwrap().iter().any(|v| v["name"] == mount["name"]));

    let debug = documents("assets/debug-pod.yaml");
    let debug_pod = &of_kind(&debug, "Pod")["spec"];
    assert_eq!(debug_pod["serviceAccountName"], "netwatch");
    assert_least_privilege(&debug_pod["containers"][0]);
}

#[test]
fn the_krew_manifest_is_a_release_bot_template_without_handwritten_checksums() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/krew/netwatch.yaml");
    let template = std::fs::read_to_string(path).unwrap();
    assert!(template.contains("{{addURIAndSha"));
    assert!(!template.contains("sha256:"), "checksums come from krew-release-bot");
    // Render the template as the bot would, with a stand-in checksum, and read it.
    let rendered: String = template
        .lines()
        .map(|line| match line.trim_start().strip_prefix("{{addURIAndSha \"") {
            Some(rest) => {
                let indent = &line[..line.len() - line.trim_start().len()];
                let uri = rest.split('"').next().unwrap().replace("{{ .TagName }}", "v0.1.0");
                format!("{indent}uri: {uri}\n{indent}sha256: {}\n", "0".repeat(64))
            }
            None => format!("{}\n", line.replace("{{ .TagName }}", "v0.1.0")),
        })
        .collect();
    let plugin: Value = serde_yaml_ng::from_str(&rendered).unwrap();
    assert_eq!(plugin["apiVersion"], "krew.googlecontainertools.github.com/v1alpha2");
    assert_eq!(plugin["kind"], "Plugin");
    let platform = &plugin["spec"]["platforms"][0];
    assert_eq!(platform["selector"]["matchLabels"]["os"], "linux");
    assert_eq!(platform["selector"]["matchLabels"]["arch"], "amd64");
    assert_eq!(platform["bin"], "kubectl-netwatch");
    assert!(
        platform["uri"]
            .as_str()
            .unwrap()
            .starts_with("https://github.com/netwatch/netwatch/releases/download/v0.1.0/")
    );
}
