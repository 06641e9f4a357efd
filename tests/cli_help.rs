//! The CLI's `--help` texts, kept as a snapshot: a renamed or undocumented flag shows up as a diff.
//! Refresh after an intended change with `TROUPE_UPDATE_SNAPSHOTS=1 cargo test --test cli_help`.

use std::process::Command;

const COMMANDS: &[&str] = &[
    "",
    "validate",
    "plan",
    "apply",
    "serve",
    "status",
    "rooms",
    "ops",
    "demo-room",
    "schema",
];

fn help(command: &str) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_troupe"));
    if !command.is_empty() {
        cmd.arg(command);
    }
    // Values of the environment show up in help ([env: X=value]): keep them out.
    for (key, _) in std::env::vars() {
        if key.starts_with("TROUPE_") || key == "NO_COLOR" {
            cmd.env_remove(key);
        }
    }
    let out = cmd.arg("--help").output().unwrap();
    assert!(out.status.success(), "troupe {command} --help failed");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn help_texts_match_the_snapshot() {
    let mut all = String::new();
    for c in COMMANDS {
        all.push_str(&format!("==== troupe {c} --help\n{}\n", help(c)));
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/help.txt");
    if std::env::var_os("TROUPE_UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, &all).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        expected == all,
        "--help changed; if intended, run TROUPE_UPDATE_SNAPSHOTS=1 cargo test --test cli_help\n{}",
        similar::TextDiff::from_lines(&expected, &all)
            .unified_diff()
            .header("snapshot", "now")
    );
}

#[test]
fn every_flag_is_documented() {
    for c in COMMANDS {
        let text = help(c);
        for line in text.lines() {
            let l = line.trim_start();
            if l.starts_with("--")
                || (l.starts_with('-') && l.chars().nth(1).is_some_and(|c| c.is_ascii_alphabetic()))
            {
                // clap prints the description on the same line or on the next ones; a bare flag
                // line followed by another flag means no documentation.
                let idx = text.lines().position(|x| x == line).unwrap();
                let next = text.lines().nth(idx + 1).unwrap_or("").trim_start();
                let same_line_doc = l.split("  ").filter(|s| !s.trim().is_empty()).count() > 1;
                assert!(
                    same_line_doc || (!next.is_empty() && !next.starts_with('-')),
                    "troupe {c}: undocumented flag {l:?}"
                );
            }
        }
    }
}
