//! `troupe schema`: write the JSON Schemas under `schema/` (or check that they are fresh).
//!
//! Must hold: every schema is generated from the Rust types, written as pretty JSON with a
//! trailing newline, and `--check` fails when a committed copy differs, so CI catches a type
//! change whose schema was not regenerated. To publish another schema, add it to [`schemas`].

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

pub use crate::domain::spec::scheduler_schema;
use crate::domain::spec::schema::render;

/// Write (or check) the JSON Schemas of Troupe's file formats.
#[derive(Debug, Clone, clap::Args)]
pub struct SchemaArgs {
    /// Directory the schema files are written to (or compared with, with --check).
    #[arg(long, value_name = "DIR", default_value = "schema")]
    pub out_dir: PathBuf,
    /// Write nothing; exit 1 when a file on disk differs from the generated schema.
    #[arg(long)]
    pub check: bool,
}

/// Every published schema: file name under the schema directory, and the schema.
pub fn schemas() -> Vec<(&'static str, serde_json::Value)> {
    vec![
        ("scheduler.schema.json", scheduler_schema()),
        ("plan.schema.json", crate::domain::plan::plan_schema()),
        (
            "saved-plan.schema.json",
            serde_json::to_value(schemars::schema_for!(crate::domain::plan::saved::SavedPlan))
                .expect("a schema serialises"),
        ),
    ]
}

/// The schema files that differ from the generated ones (missing counts as different).
pub fn stale(out_dir: &Path) -> Vec<PathBuf> {
    schemas()
        .into_iter()
        .map(|(name, schema)| (out_dir.join(name), render(&schema)))
        .filter(|(path, text)| std::fs::read_to_string(path).ok().as_deref() != Some(text.as_str()))
        .map(|(path, _)| path)
        .collect()
}

pub fn run(args: SchemaArgs) -> anyhow::Result<ExitCode> {
    if args.check {
        let stale = stale(&args.out_dir);
        for path in &stale {
            anstream::eprintln!(
                "{} is stale or missing: run `troupe schema` and commit it",
                path.display()
            );
        }
        return Ok(if stale.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("cannot create {}", args.out_dir.display()))?;
    for (name, schema) in schemas() {
        let path = args.out_dir.join(name);
        std::fs::write(&path, render(&schema))
            .with_context(|| format!("cannot write {}", path.display()))?;
        anstream::println!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed schemas match the types; regenerate with `troupe schema` when this fails.
    #[test]
    fn committed_schemas_are_fresh() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema");
        assert_eq!(
            stale(&dir),
            Vec::<PathBuf>::new(),
            "run `cargo run -- schema` and commit schema/"
        );
    }

    #[test]
    fn write_then_check_passes_and_an_edit_fails_the_check() {
        let dir = tempfile::tempdir().expect("tempdir");
        let args = SchemaArgs {
            out_dir: dir.path().join("schema"),
            check: false,
        };
        assert_eq!(
            run(SchemaArgs {
                check: true,
                ..args.clone()
            })
            .expect("check"),
            ExitCode::FAILURE
        );
        assert_eq!(run(args.clone()).expect("write"), ExitCode::SUCCESS);
        assert_eq!(
            run(SchemaArgs {
                check: true,
                ..args.clone()
            })
            .expect("check"),
            ExitCode::SUCCESS
        );
        let file = args.out_dir.join("scheduler.schema.json");
        let text = std::fs::read_to_string(&file).expect("written");
        assert!(text.ends_with("}\n"));
        std::fs::write(&file, text.replace("\"Scheduler\"", "\"Edited\"")).expect("edit");
        assert_eq!(
            run(SchemaArgs {
                check: true,
                ..args
            })
            .expect("check"),
            ExitCode::FAILURE
        );
    }
}
