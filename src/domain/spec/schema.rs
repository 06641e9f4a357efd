//! JSON Schema of the scheduler document, generated from the serde types.
//!
//! Must hold: the schema is derived from [`Scheduler`] alone (never edited by hand), so editors
//! and CI validating against `schema/scheduler.schema.json` accept exactly what the loader parses.
//! Range and cross-field rules live in [`super::validate`]; the schema covers shape and types.
//! The Kubernetes types of the pod fields come with their own schemas (from the Kubernetes
//! OpenAPI document); two things are added to them here, as the loader enforces them: unknown
//! fields are refused everywhere, and a pod field Troupe passes through carries the description
//! Kubernetes gives that field.

use serde_json::Value;

use super::{Container, RoomSpec, Scheduler};

/// The JSON Schema of one scheduler document.
pub fn scheduler_schema() -> Value {
    let mut schema = schemars::schema_for!(Scheduler).to_value();
    if let Some(defs) = schema.get_mut("$defs").and_then(Value::as_object_mut) {
        describe_like(
            defs.get_mut("RoomSpec"),
            schemars::schema_for!(k8s_openapi::api::core::v1::PodSpec).to_value(),
            RoomSpec::POD_FIELDS,
        );
        describe_like(
            defs.get_mut("Container"),
            schemars::schema_for!(k8s_openapi::api::core::v1::Container).to_value(),
            Container::POD_FIELDS,
        );
        if let Some(port) = defs.get_mut("ContainerPort") {
            container_port_forms(port);
        }
        for def in defs.values_mut() {
            refuse_unknown_fields(def);
        }
    }
    refuse_unknown_fields(&mut schema);
    schema
}

/// Give each of `fields` (serde names, snake case) in `ours` the description `theirs` has for it.
fn describe_like(ours: Option<&mut Value>, theirs: Value, fields: &[&str]) {
    let Some(props) = ours
        .and_then(|o| o.get_mut("properties"))
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    for field in fields {
        let name = super::camel_case(field);
        let description = theirs["properties"][&name]["description"].clone();
        if let (Some(prop), Value::String(_)) = (props.get_mut(&name), &description) {
            prop["description"] = description;
        }
    }
}

/// A port takes `port` or Kubernetes' `containerPort` (a serde alias, which schemars does not
/// see), exactly one; `hostPort` is Troupe's and never valid.
fn container_port_forms(port: &mut Value) {
    let props = &mut port["properties"];
    props["containerPort"] = props["port"].clone();
    props["hostPort"] = serde_json::json!({
        "description": props["hostPort"]["description"].clone(),
        "not": {},
    });
    port["required"] = serde_json::json!(["name"]);
    port["oneOf"] = serde_json::json!([{"required": ["port"]}, {"required": ["containerPort"]}]);
}

/// An object schema with named properties and no rule for others refuses others.
fn refuse_unknown_fields(schema: &mut Value) {
    if let Some(obj) = schema.as_object_mut()
        && obj.contains_key("properties")
        && !obj.contains_key("additionalProperties")
    {
        obj.insert("additionalProperties".into(), Value::Bool(false));
    }
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
