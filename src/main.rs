//! `netwatch`: parse, validate, run; the exit code says how it went (0 ok, 1 runtime failure,
//! 2 bad usage or input).

fn main() {
    std::process::exit(netwatch::run::main_with_args(std::env::args_os()));
}
