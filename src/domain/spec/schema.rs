//! JSON Schema of the scheduler document, generated from the serde types.
//!
//! Must hold: the schema is derived from [`Scheduler`] alone (never edited by hand), so editors
//! and CI validating against `schema/scheduler.schema.json` accept exactly what the loader parses.
//! Range and cross-field rules live in [`super::validate`]; the schema covers shape and types.

use super::Scheduler;

/// The JSON Schema of one scheduler document.
pub fn scheduler_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(Scheduler);
    schema.to_value()
}

/// The committed form of a schema: pretty JSON and a trailing newline.
pub fn render(schema: &serde_json::Value) -> String {
    let mut text = serde_json::to_string_pretty(schema).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_refuses_unknown_fields_and_requires_the_essentials() {
        let schema = scheduler_schema();
        assert_eq!(
            schema["additionalProperties"],
            serde_json::Value::Bool(false)
        );
        let required: Vec<&str> = schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str())
            .collect();
        for field in ["name", "game", "portRange", "spec"] {
            assert!(
                required.contains(&field),
                "{field} should be required: {required:?}"
            );
        }
    }
}
