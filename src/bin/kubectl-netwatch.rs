//! `kubectl netwatch …`: the kubectl plugin entry. kubectl passes the arguments through
//! unchanged; the plugin runs the same program under its plugin name, with kubectl-style help.

/// mimalloc: flow records are built on one thread and freed on another (the output writer),
/// which glibc's allocator handles poorly (measured: a tenth of replay's engine time).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args = std::iter::once("kubectl netwatch".into()).chain(std::env::args_os().skip(1));
    std::process::exit(netwatch::run::plugin_main_with_args(args));
}
