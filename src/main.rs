//! `netwatch`: parse, validate, run; the exit code says how it went (0 ok, 1 runtime failure,
//! 2 bad usage or input).

/// mimalloc: flow records are built on one thread and freed on another (the output writer),
/// which glibc's allocator handles poorly (measured: a tenth of replay's engine time).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(netwatch::run::main_with_args(std::env::args_os()));
}
