//! `layers check-config --schema`: the JSON Schema (draft 2020-12) of `layers.toml`, generated
//! from the configuration's own types (their doc comments are the settings' descriptions), for
//! editors that complete and check TOML against a schema (taplo, Even Better TOML).

use utoipa::OpenApi;

#[derive(utoipa::OpenApi)]
#[openapi(components(schemas(super::Config)))]
struct ConfigSchema;

pub fn json_schema() -> serde_json::Value {
    let components = ConfigSchema::openapi().components.map(|c| c.schemas).unwrap_or_default();
    let defs = serde_json::to_string(&components).unwrap_or_else(|_| "{}".to_owned());
    // The same schemas, referenced where a JSON Schema document keeps them.
    let defs: serde_json::Value =
        serde_json::from_str(&defs.replace("#/components/schemas/", "#/$defs/")).unwrap_or_default();
    let mut schema = serde_json::json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://layers.dev/schemas/layers.toml.json",
        "title": "layers.toml",
        "$ref": "#/$defs/Config",
        "$defs": defs,
    });
    // Every top-level setting is optional (each has a default or is checked by `check-config`).
    if let Some(config) = schema["$defs"]["Config"].as_object_mut() {
        config.remove("required");
        config.insert("additionalProperties".into(), serde_json::Value::Bool(false));
    }
    schema
}
