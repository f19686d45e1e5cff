//! `kubectl netwatch …`: the kubectl plugin entry. kubectl passes the arguments through
//! unchanged; the plugin runs the same program under its plugin name, with kubectl-style help.

fn main() {
    let args = std::iter::once("kubectl netwatch".into()).chain(std::env::args_os().skip(1));
    std::process::exit(netwatch::run::plugin_main_with_args(args));
}
