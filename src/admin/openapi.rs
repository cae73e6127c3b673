//! `GET /_folio/openapi.json`: the admin API's OpenAPI 3.1 description.
//!
//! `docs/admin-api.yaml` is the one source: people read and edit YAML, and
//! the build embeds that file, so the binary serves exactly what the docs
//! say. It is turned into JSON on the first request and kept.

use std::sync::OnceLock;

use bytes::Bytes;

/// The description as written.
const SPEC_YAML: &str = include_str!("../../docs/admin-api.yaml");

/// The description as JSON, or why the embedded YAML could not be read (a
/// build that shipped a broken file: the unit test below keeps it out).
pub(super) fn json() -> Result<Bytes, String> {
    static JSON: OnceLock<Result<Bytes, String>> = OnceLock::new();
    JSON.get_or_init(|| to_json(SPEC_YAML)).clone()
}

fn to_json(yaml: &str) -> Result<Bytes, String> {
    let value: serde_json::Value = serde_yaml::from_str(yaml)
        .map_err(|e| format!("docs/admin-api.yaml is not valid YAML for JSON: {e}"))?;
    serde_json::to_vec(&value)
        .map(Bytes::from)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_description_is_openapi_3_1_as_json() {
        let spec: serde_json::Value = serde_json::from_slice(&json().unwrap()).unwrap();
        assert!(
            spec["openapi"].as_str().unwrap().starts_with("3.1."),
            "{}",
            spec["openapi"]
        );
        assert!(spec["paths"]["/_folio/purge"]["post"].is_object());
    }

    #[test]
    fn yaml_that_json_cannot_hold_is_an_error_not_a_panic() {
        // A mapping keyed by a mapping has no JSON form.
        assert!(to_json("? {a: 1}\n: b\n").is_err());
        assert!(to_json("a: [\n").is_err());
    }
}
