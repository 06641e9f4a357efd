//! The committed JSON Schema of the scheduler document matches the Rust types.
//! When this fails, regenerate with `troupe schema` and commit `schema/`.

use std::path::Path;

use troupe::domain::spec::{scheduler_schema, schema::render};

#[test]
fn committed_scheduler_schema_is_fresh() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/scheduler.schema.json");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == render(&scheduler_schema()),
        "{} is stale or missing: run `troupe schema` and commit it",
        path.display()
    );
}
