//! `kubectl netwatch --help` in kubectl's layout (`kubectl get --help`): a one-line
//! description, `Examples:`, `Available Commands:`, `Options:` with every flag written as
//! `    -n, --namespace='':` above its tab-indented description, then `Usage:`.
//!
//! The options are read from the clap command itself, so a flag added to `Cli` shows up here
//! without anyone remembering to. Rendering only: parsing stays clap's.

use clap::{ArgAction, Command};

const DESCRIPTION: &str = "Watch the live network flows of a node: who talks to whom, by name, and \
                           whether NetworkPolicy allows it.";

const DETAILS: &str = "Captures on the node's pod-facing interfaces (it needs root there), names \
                       both ends of every flow from the cluster (pods, services, nodes, DNS names \
                       seen on the wire) and marks each flow the cluster's NetworkPolicies do not \
                       allow. The cluster is watched through your kubeconfig, as kubectl reaches \
                       it; recordings replay anywhere.";

const EXAMPLES: &[(&str, &[&str])] = &[
    ("Watch this node's flows, cluster from the current kubeconfig context", &["kubectl netwatch"]),
    ("Only the flows of namespace 'shop'", &["kubectl netwatch -n shop"]),
    (
        "Another cluster: a kubeconfig file and a context in it",
        &["kubectl netwatch --kubeconfig ~/.kube/prod --context prod-eu"],
    ),
    (
        "Capture on the pod veths only, leaving SSH out",
        &["kubectl netwatch -i 'veth*' --filter 'not port 22'"],
    ),
    (
        "Record while watching, then replay the recording anywhere",
        &["kubectl netwatch --record node.pcapng", "kubectl netwatch replay node.pcapng"],
    ),
    (
        "Why is this connection allowed? Ask a snapshot of the cluster",
        &[
            "kubectl netwatch snapshot -o cluster.yaml",
            "kubectl netwatch policy explain --cluster cluster.yaml --from shop/web --to shop/db --port 5432",
        ],
    ),
    ("The bundled demo: no root, no cluster", &["kubectl netwatch demo"]),
];

/// Where descriptions wrap, counting the leading tab as 8 columns.
const WIDTH: usize = 100;

/// The help text of `command`, which must be built (`Command::build`) so that `--help` and
/// `--version` are among its arguments.
#[must_use]
pub fn render(command: &Command) -> String {
    let name = "kubectl netwatch";
    let mut out = format!("{DESCRIPTION}\n\n");
    for line in wrap(DETAILS, WIDTH - 1) {
        out.push_str(&format!(" {line}\n"));
    }
    out.push_str("\nExamples:\n");
    for (index, (comment, commands)) in EXAMPLES.iter().enumerate() {
        if index > 0 {
            out.push('\n');
        }
        out.push_str(&format!("  # {comment}\n"));
        for example in *commands {
            out.push_str(&format!("  {example}\n"));
        }
    }

    let commands: Vec<&Command> =
        command.get_subcommands().filter(|c| !c.is_hide_set() && c.get_name() != "help").collect();
    if !commands.is_empty() {
        out.push_str("\nAvailable Commands:\n");
        let width = commands.iter().map(|c| c.get_name().len()).max().unwrap_or(0);
        for sub in &commands {
            let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
            out.push_str(&format!("  {:<width$}   {about}\n", sub.get_name()));
        }
    }

    out.push_str("\nOptions:\n");
    let mut flags: Vec<&clap::Arg> =
        command.get_arguments().filter(|a| !a.is_hide_set() && !a.is_positional()).collect();
    // kubectl (cobra) sorts flags by long name.
    flags.sort_by_key(|a| a.get_long().map_or_else(|| a.get_id().to_string(), str::to_owned));
    for (index, flag) in flags.iter().enumerate() {
        if index > 0 {
            out.push('\n');
        }
        out.push_str(&format!("    {}:\n", flag_head(flag)));
        let mut help = flag.get_long_help().or_else(|| flag.get_help()).map(ToString::to_string);
        // clap drops a one-sentence doc comment's final period; kubectl's descriptions keep it.
        if let Some(text) = help.as_mut().filter(|t| !t.is_empty() && !t.ends_with('.')) {
            text.push('.');
        }
        for line in wrap(help.as_deref().unwrap_or(""), WIDTH - 8) {
            out.push_str(&format!("\t{line}\n"));
        }
    }

    out.push_str(&format!("\nUsage:\n  {name} [flags] [options]\n"));
    if !commands.is_empty() {
        out.push_str(&format!("  {name} <command> [flags] [options]\n"));
        out.push_str(&format!(
            "\nUse \"{name} <command> --help\" for more information about a given command.\n"
        ));
    }
    out
}

/// `-n, --namespace=''`, `--max-flows=200000`, `-A, --all-namespaces=false`, `-i, --interface=[]`:
/// the flag as kubectl prints it, with its default.
fn flag_head(flag: &clap::Arg) -> String {
    let long = flag.get_long().map_or_else(|| flag.get_id().to_string(), str::to_owned);
    let names = match flag.get_short() {
        Some(short) => format!("-{short}, --{long}"),
        None => format!("--{long}"),
    };
    let defaults: Vec<String> =
        flag.get_default_values().iter().map(|v| v.to_string_lossy().into_owned()).collect();
    let value = match flag.get_action() {
        ArgAction::SetTrue | ArgAction::Help | ArgAction::HelpShort | ArgAction::HelpLong => {
            "false".to_owned()
        }
        ArgAction::Version => "false".to_owned(),
        ArgAction::SetFalse => "true".to_owned(),
        ArgAction::Count => "0".to_owned(),
        ArgAction::Append => format!("[{}]", defaults.join(",")),
        _ => match defaults.first() {
            // Numbers bare, everything else quoted, as pflag prints int and string flags.
            Some(value) if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                value.clone()
            }
            Some(value) => format!("'{value}'"),
            None => "''".to_owned(),
        },
    };
    format!("{names}={value}")
}

/// Greedy word wrap; a word longer than `width` gets a line of its own.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_read_as_kubectl_prints_them() {
        let mut command = Command::new("t")
            .arg(clap::Arg::new("namespace").short('n').long("namespace"))
            .arg(clap::Arg::new("all").short('A').long("all-namespaces").action(ArgAction::SetTrue))
            .arg(clap::Arg::new("max").long("max-flows").default_value("200000"))
            .arg(clap::Arg::new("size").long("buffer-size").default_value("32MiB"))
            .arg(clap::Arg::new("iface").short('i').long("interface").action(ArgAction::Append));
        command.build();
        let heads: Vec<String> = command.get_arguments().map(flag_head).collect();
        for expected in [
            "-n, --namespace=''",
            "-A, --all-namespaces=false",
            "--max-flows=200000",
            "--buffer-size='32MiB'",
            "-i, --interface=[]",
            "-h, --help=false",
        ] {
            assert!(heads.iter().any(|h| h == expected), "{expected} in {heads:?}");
        }
    }

    #[test]
    fn wrapping_keeps_every_word_and_the_width() {
        let text = "one two three four five six seven eight nine ten eleven twelve";
        let lines = wrap(text, 14);
        assert!(lines.iter().all(|l| l.chars().count() <= 14), "{lines:?}");
        assert_eq!(lines.join(" "), text);
        assert_eq!(wrap("", 10), Vec::<String>::new());
        assert_eq!(wrap("averyveryverylongword x", 5), vec!["averyveryverylongword", "x"]);
    }
}
