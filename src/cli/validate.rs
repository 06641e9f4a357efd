//! `troupe validate`: load a revision from git or a directory and report every problem in it.
//!
//! Must hold: every problem of the revision is printed (not just the first), each as
//! `file:line:column: path: message` with the file named as the user can open it (source path,
//! sub-path and file joined); the exit code is 0 for a valid revision and 1 otherwise, so CI can
//! gate on it. Printing happens here only; loading and checking are the spec and source layers.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anstyle::{AnsiColor, Style};
use anyhow::Context;
use serde::Serialize;

use super::git_auth::{GitAuthArgs, open_source};
use crate::domain::spec::{Document, LoadError, Located, load_documents};
use crate::source::{self, CommitInfo};

const ERROR: Style = AnsiColor::Red.on_default().bold();
const OK: Style = AnsiColor::Green.on_default().bold();

/// Check every scheduler file of a revision, as `plan` and `apply` would.
#[derive(Debug, Clone, clap::Args)]
pub struct ValidateArgs {
    /// Git repository (top of a work tree, or a bare repository) or directory of scheduler files,
    /// or a remote repository's URL (cloned into a temporary directory). A git repository is read
    /// at its last commit; a directory as it is on disk.
    #[arg(value_name = "SOURCE", default_value = ".", env = "TROUPE_SOURCE")]
    pub path: String,
    /// Branch to read (git only). Default: the branch HEAD points to.
    #[arg(long, env = "TROUPE_BRANCH")]
    pub branch: Option<String>,
    /// Directory inside the source that holds the scheduler files.
    #[arg(long = "path", value_name = "SUBPATH", env = "TROUPE_PATH")]
    pub subpath: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    #[command(flatten)]
    pub git: GitAuthArgs,
}

/// How `validate` prints its findings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One line per problem, then a summary line.
    Text,
    /// One JSON object: source, revision, schedulers found, errors.
    Json,
}

/// The outcome of validating one revision, ready to print.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub valid: bool,
    /// The source, as `describe()` puts it.
    pub source: String,
    pub revision: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<CommitInfo>,
    /// Scheduler files read.
    pub files: usize,
    /// Schedulers found (only when the revision is valid).
    pub schedulers: Vec<SchedulerSummary>,
    /// Every problem, in file, line, column order; files named as the user can open them.
    pub errors: Vec<Located>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SchedulerSummary {
    pub name: String,
    pub game: String,
    pub file: String,
    pub line: usize,
    /// The room template's content hash.
    pub version: String,
}

/// Load and check the revision `args` point at. Source failures (no such path, unknown branch)
/// are errors; problems in the files are the report.
pub fn check(args: &ValidateArgs) -> anyhow::Result<Report> {
    // A remote is cloned for this one read, and the clone removed after it.
    let cache = tempfile::tempdir().context("creating a temporary directory for the clone")?;
    let src = open_source(
        &args.path,
        args.branch.as_deref(),
        args.subpath.as_deref(),
        cache.path(),
        &args.git,
    )?;
    let snapshot = src
        .load()
        .with_context(|| format!("cannot load {}", src.describe()))?;
    // Files of a remote are named by their path in the repository.
    let base = match source::Location::parse(&args.path)? {
        source::Location::Local(path) => path,
        source::Location::Remote(_) => PathBuf::from("."),
    };
    let prefix = display_prefix(&base, args.subpath.as_deref());
    let shown = |file: &str| show(&prefix, file);
    let (schedulers, errors) = match load_documents(&snapshot.files) {
        Ok(docs) => (
            docs.iter().map(|d| summary(d, &shown(&d.file))).collect(),
            Vec::new(),
        ),
        Err(LoadError(errors)) => {
            let errors = errors
                .into_iter()
                .map(|e| Located {
                    file: shown(&e.file),
                    ..e
                })
                .collect();
            (Vec::new(), errors)
        }
    };
    Ok(Report {
        valid: errors.is_empty(),
        source: src.describe(),
        revision: snapshot.revision,
        commit: snapshot.commit,
        files: snapshot.files.len(),
        schedulers,
        errors,
    })
}

fn summary(doc: &Document, file: &str) -> SchedulerSummary {
    SchedulerSummary {
        name: doc.scheduler.name.clone(),
        game: doc.scheduler.game.clone(),
        file: file.to_string(),
        line: doc.line,
        version: doc.scheduler.version(),
    }
}

/// Where the files of the source are, as the user wrote it (`.` adds nothing).
fn display_prefix(path: &Path, subpath: Option<&str>) -> PathBuf {
    let base = if path == Path::new(".") {
        PathBuf::new()
    } else {
        path.to_path_buf()
    };
    match subpath {
        Some(sub) => base.join(sub.trim_start_matches("./")),
        None => base,
    }
}

fn show(prefix: &Path, file: &str) -> String {
    if prefix.as_os_str().is_empty() {
        file.to_string()
    } else {
        prefix.join(file).display().to_string()
    }
}

/// The text form: one line per problem, then a summary line.
pub fn render_text(report: &Report) -> String {
    let mut out = String::new();
    for e in &report.errors {
        out.push_str(&format!("{e}\n"));
    }
    if report.valid {
        out.push_str(&format!(
            "{OK}ok{OK:#}: {} scheduler{} in {}\n",
            report.schedulers.len(),
            if report.schedulers.len() == 1 {
                ""
            } else {
                "s"
            },
            report.revision
        ));
    } else {
        let files = report
            .errors
            .iter()
            .map(|e| e.file.as_str())
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        out.push_str(&format!(
            "{ERROR}error{ERROR:#}: {} problem{} in {files} file{} of {}; nothing in this revision can be applied\n",
            report.errors.len(),
            if report.errors.len() == 1 { "" } else { "s" },
            if files == 1 { "" } else { "s" },
            report.revision
        ));
    }
    out
}

pub fn run(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let report = check(&args)?;
    match args.format {
        Format::Text => anstream::print!("{}", render_text(&report)),
        Format::Json => anstream::println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(if report.valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(path: &Path) -> ValidateArgs {
        ValidateArgs {
            path: path.display().to_string(),
            branch: None,
            subpath: None,
            format: Format::Text,
            git: GitAuthArgs {
                git_token_file: None,
                git_username: None,
                git_ssh_key_file: None,
            },
        }
    }

    /// Text without colour codes, as a pipe receives it.
    fn plain(text: &str) -> String {
        let mut out = Vec::new();
        let mut stream = anstream::StripStream::new(&mut out);
        std::io::Write::write_all(&mut stream, text.as_bytes()).expect("strip");
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn fleets_example_is_valid() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("fleets-example");
        let report = check(&args(&example)).expect("readable");
        assert!(report.valid, "{}", render_text(&report));
        assert!(report.schedulers.len() >= 3);
        let text = plain(&render_text(&report));
        assert!(
            text.starts_with(&format!(
                "ok: {} schedulers in dir-",
                report.schedulers.len()
            )),
            "{text}"
        );
    }

    #[test]
    fn every_problem_is_printed_with_the_file_as_given() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fleets = dir.path().join("fleets");
        std::fs::create_dir_all(&fleets).expect("mkdir");
        std::fs::write(fleets.join("a.yaml"), "name: Bad\n").expect("write");
        std::fs::write(fleets.join("b.yaml"), "name: [\n").expect("write");
        let report = check(&ValidateArgs {
            subpath: Some("fleets".into()),
            ..args(dir.path())
        })
        .expect("readable");
        assert!(!report.valid);
        let text = plain(&render_text(&report));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        let a = fleets.join("a.yaml").display().to_string();
        assert!(
            lines[0].starts_with(&format!("{a}:1:1: game: missing required field")),
            "{text}"
        );
        assert!(
            lines[1].starts_with(&fleets.join("b.yaml").display().to_string()),
            "{text}"
        );
        assert!(
            lines[2].starts_with("error: 2 problems in 2 files of dir-"),
            "{text}"
        );

        let json = serde_json::to_value(&report).expect("json");
        assert_eq!(json["valid"], false);
        assert_eq!(json["errors"][0]["path"], "game");
        assert_eq!(json["errors"][0]["line"], 1);
    }

    #[test]
    fn a_missing_source_is_an_error_not_a_report() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = check(&args(&dir.path().join("nope"))).expect_err("missing");
        assert!(
            format!("{err:#}").contains("cannot load directory"),
            "{err:#}"
        );
    }
}
