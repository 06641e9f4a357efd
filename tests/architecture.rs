//! The layering in `src/lib.rs` holds: the domain imports no I/O crate and reads no clock, and
//! nothing below the command line and HTTP imports them.

use std::path::{Path, PathBuf};

/// Crates and std modules that do I/O (or wait on it): none of them belongs in the domain.
/// (`k8s_openapi` is not one: plain data types, the pod fields a room template passes through.)
const IO: &[&str] = &[
    "tokio",
    "tokio_util",
    "kube",
    "axum",
    "tower",
    "hyper",
    "hyper_util",
    "reqwest",
    "git2",
    "notify",
    "rustix",
    "std::fs",
    "std::net",
    "std::process",
    "std::thread",
    "std::env",
    "SystemTime",
    "Instant::now",
];

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

/// Lines of `file` outside its `#[cfg(test)]` module (tests may write files).
fn code_lines(file: &Path) -> Vec<(usize, String)> {
    let text = std::fs::read_to_string(file).unwrap();
    text.lines()
        .take_while(|l| !l.starts_with("#[cfg(test)]"))
        .enumerate()
        .map(|(i, l)| (i + 1, l.to_string()))
        .collect()
}

fn mentions(line: &str, name: &str) -> bool {
    let code = line.split("//").next().unwrap_or("");
    code.match_indices(name).any(|(i, _)| {
        let before = code[..i].chars().next_back();
        let after = code[i + name.len()..].chars().next();
        let boundary = |c: Option<char>| c.is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        boundary(before) && boundary(after)
    })
}

fn offenders(dir: &str, forbidden: &[&str]) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut out = Vec::new();
    for file in rust_files(&root) {
        if file.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        for (n, line) in code_lines(&file) {
            for name in forbidden {
                if mentions(&line, name) {
                    out.push(format!("{}:{n}: {name}: {}", file.display(), line.trim()));
                }
            }
        }
    }
    out
}

#[test]
fn the_domain_does_no_io_and_reads_no_clock() {
    let found = offenders("src/domain", IO);
    assert!(found.is_empty(), "I/O in the domain:\n{}", found.join("\n"));
}

#[test]
fn only_the_edges_import_the_command_line_and_http() {
    for dir in [
        "src/domain",
        "src/state",
        "src/runtime",
        "src/source",
        "src/controller",
    ] {
        let found = offenders(dir, &["crate::cli", "crate::http", "crate::app"]);
        assert!(
            found.is_empty(),
            "{dir} imports an edge:\n{}",
            found.join("\n")
        );
    }
}

#[test]
fn the_check_sees_a_forbidden_import() {
    assert!(mentions("use tokio::sync::watch;", "tokio"));
    assert!(mentions(
        "    let t = std::time::SystemTime::now();",
        "SystemTime"
    ));
    assert!(!mentions(
        "use crate::domain::spec; // not tokio here",
        "tokio"
    ));
    assert!(!mentions("let tokio_like = 1;", "tokio"));
}

#[test]
fn http_handlers_go_through_the_controllers_interfaces() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http");
    let mut found = Vec::new();
    for file in rust_files(&root) {
        // The forwarders are an adapter of the fleet's status changes, not a handler.
        if file.file_name().is_some_and(|n| n == "forward.rs") {
            continue;
        }
        for (n, line) in code_lines(&file) {
            let code = line.split("//").next().unwrap_or("");
            if code.contains(".fleet") || code.contains(".registry") {
                found.push(format!("{}:{n}: {}", file.display(), line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "handlers reach past controller::Controller and controller::Rooms:\n{}",
        found.join("\n")
    );
}
