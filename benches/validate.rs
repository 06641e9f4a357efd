//! `troupe validate` on a repository of 1,000 scheduler files, each the whole production pod of
//! fleets-example/arena-ranked.yaml: the release binary run end to end (start, read every file,
//! parse, validate, report), several times. The promise: under 1 s.
//!
//! Run: `cargo bench --bench validate` (`FILES=N`, `RUNS=N` to change the size and the count).
//! Under `cargo test` it only checks that it builds and that one small repository validates.

use std::process::Command;
use std::time::{Duration, Instant};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let files = if bench { env("FILES", 1000) } else { 3 };
    let runs = if bench { env("RUNS", 10) } else { 1 };
    let dir = tempfile::tempdir().unwrap();
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fleets-example/arena-ranked.yaml"
    ))
    .expect("fleets-example/arena-ranked.yaml");
    for i in 0..files {
        let yaml = example.replace("name: arena-ranked", &format!("name: ranked-{i:04}"));
        std::fs::write(dir.path().join(format!("ranked-{i:04}.yaml")), yaml).unwrap();
    }
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            let out = Command::new(env!("CARGO_BIN_EXE_troupe"))
                .arg("validate")
                .arg(dir.path())
                .output()
                .unwrap();
            let took = start.elapsed();
            assert!(
                out.status.success(),
                "validate failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            took
        })
        .collect();
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "validate: {files} full-pod files: median {:.0} ms (min {:.0}, max {:.0}) over {runs} runs",
        ms(times[times.len() / 2]),
        ms(times[0]),
        ms(times[times.len() - 1])
    );
}
