//! Guards DESIGN.md's first principle: the core is pure. The modules below take plain data and
//! return plain data; effects live in capture sources, the watcher, the recorder, run and main.

use std::path::Path;

/// Source files that must stay free of I/O, threads and the wall clock.
const PURE: &[&str] = &[
    "src/decode.rs",
    "src/decode",
    "src/flow.rs",
    "src/flow",
    "src/cluster.rs",
    "src/cluster/event.rs",
    "src/cluster/snapshot.rs",
    "src/cluster/trim.rs",
    "src/cluster/export.rs",
    "src/identity.rs",
    "src/names.rs",
    "src/policy.rs",
    "src/policy",
    "src/engine.rs",
    "src/snapshot.rs",
    "src/time.rs",
    "src/tui.rs",
    "src/tui",
];

/// What an effect looks like in source text.
const FORBIDDEN: &[&str] = &[
    "std::fs",
    "std::net::TcpStream",
    "std::net::UdpSocket",
    "std::thread",
    "SystemTime::now",
    "Instant::now",
    "tokio::",
    "std::process",
    "std::io::stdin",
    "std::io::stdout",
    "println!",
    "eprintln!",
];

fn rust_files(path: &Path, out: &mut Vec<std::path::PathBuf>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            rust_files(&entry.unwrap().path(), out);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_owned());
    }
}

#[test]
fn the_pure_core_does_no_io_and_reads_no_clock() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for entry in PURE {
        let path = root.join(entry);
        assert!(path.exists(), "{entry} moved: update this list and DESIGN.md together");
        rust_files(&path, &mut files);
    }
    let mut offences = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        // Test modules may do what they like.
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        for needle in FORBIDDEN {
            if code.contains(needle) {
                offences.push(format!("{}: {needle}", file.strip_prefix(root).unwrap().display()));
            }
        }
    }
    assert!(offences.is_empty(), "effects in the pure core:\n{}", offences.join("\n"));
}
