//! A JSON Schema (2020-12) checker for the subset `docs/admin-api.yaml`
//! uses: `$ref`, `type`, `enum`, `const`, `properties`, `required`,
//! `additionalProperties`, `items`, `minItems`, `maxItems`, `minimum`,
//! `maximum`, `allOf` and `oneOf`; annotations are skipped. A keyword it
//! does not know is a problem, not skipped, so a schema cannot lean on a
//! rule this check would silently ignore. (The `jsonschema` crate covers
//! the whole standard, but even without its default features it brings
//! about 30 crates into the test build for these fourteen keywords.)

use serde_json::Value;

/// Keywords that describe and assert nothing.
const ANNOTATIONS: &[&str] = &[
    "$comment",
    "default",
    "deprecated",
    "description",
    "example",
    "examples",
    "format",
    "readOnly",
    "title",
    "writeOnly",
];

/// What is wrong with `value` against `schema`, one line per problem, each
/// naming where (`$.checks.redis`). `$ref`s point into `root`, as
/// `#/components/schemas/Name`.
pub(crate) fn problems(root: &Value, schema: &Value, value: &Value) -> Vec<String> {
    let mut found = Vec::new();
    check(root, schema, value, "$", &mut found);
    found
}

/// The node a `#/a/b` reference names in `root`.
pub(crate) fn pointer<'a>(root: &'a Value, reference: &str) -> Option<&'a Value> {
    let path = reference.strip_prefix('#')?;
    root.pointer(path)
}

/// `node`, or what its `$ref` (followed as long as there is one) names.
pub(crate) fn resolve<'a>(root: &'a Value, node: &'a Value) -> &'a Value {
    let mut node = node;
    for _ in 0..32 {
        match node.get("$ref").and_then(Value::as_str) {
            Some(reference) => {
                node = pointer(root, reference)
                    .unwrap_or_else(|| panic!("{reference} names nothing in the document"));
            }
            None => return node,
        }
    }
    panic!("a $ref loop")
}

/// Keywords this checker applies, in the order of the module's doc.
const ASSERTIONS: &[&str] = &[
    "$ref",
    "type",
    "enum",
    "const",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "minItems",
    "maxItems",
    "minimum",
    "maximum",
    "allOf",
    "oneOf",
];

/// Keywords in `schema` and every schema inside it that this checker does
/// not know, each with where: for the schemas no answer reaches.
pub(crate) fn unknown_keywords(schema: &Value, at: &str) -> Vec<String> {
    let mut found = Vec::new();
    let Some(keywords) = schema.as_object() else {
        return found;
    };
    for (keyword, rule) in keywords {
        let inner = format!("{at}/{keyword}");
        match keyword.as_str() {
            "properties" => {
                for (name, property) in rule.as_object().into_iter().flatten() {
                    found.extend(unknown_keywords(property, &format!("{inner}/{name}")));
                }
            }
            "items" | "additionalProperties" => found.extend(unknown_keywords(rule, &inner)),
            "allOf" | "oneOf" => {
                for (i, part) in rule.as_array().into_iter().flatten().enumerate() {
                    found.extend(unknown_keywords(part, &format!("{inner}/{i}")));
                }
            }
            known if ASSERTIONS.contains(&known) || ANNOTATIONS.contains(&known) => {}
            _ => found.push(inner),
        }
    }
    found
}

fn check(root: &Value, schema: &Value, value: &Value, at: &str, found: &mut Vec<String>) {
    let Some(keywords) = schema.as_object() else {
        match schema {
            Value::Bool(true) => {}
            Value::Bool(false) => found.push(format!("{at}: nothing is allowed here")),
            other => found.push(format!("{at}: {other} is not a schema")),
        }
        return;
    };
    for (keyword, rule) in keywords {
        match keyword.as_str() {
            "$ref" => match rule.as_str().and_then(|r| pointer(root, r)) {
                Some(target) => check(root, target, value, at, found),
                None => found.push(format!("{at}: $ref {rule} names nothing")),
            },
            "type" => {
                let names: Vec<&str> = match rule {
                    Value::String(one) => vec![one.as_str()],
                    Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
                    _ => vec![],
                };
                if !names.iter().any(|name| is_type(value, name)) {
                    found.push(format!("{at}: {value} is not of type {rule}"));
                }
            }
            "enum" => {
                if !rule
                    .as_array()
                    .is_some_and(|allowed| allowed.contains(value))
                {
                    found.push(format!("{at}: {value} is not one of {rule}"));
                }
            }
            "const" => {
                if rule != value {
                    found.push(format!("{at}: {value} is not {rule}"));
                }
            }
            "properties" => {
                if let (Some(object), Some(properties)) = (value.as_object(), rule.as_object()) {
                    for (name, property) in properties {
                        if let Some(field) = object.get(name) {
                            check(root, property, field, &format!("{at}.{name}"), found);
                        }
                    }
                }
            }
            "required" => {
                if let Some(object) = value.as_object() {
                    for name in rule.as_array().into_iter().flatten() {
                        let name = name.as_str().unwrap_or_default();
                        if !object.contains_key(name) {
                            found.push(format!("{at}: `{name}` is missing"));
                        }
                    }
                }
            }
            "additionalProperties" => {
                if let Some(object) = value.as_object() {
                    let declared = keywords.get("properties").and_then(Value::as_object);
                    for (name, field) in object {
                        if !declared.is_some_and(|d| d.contains_key(name)) {
                            check(root, rule, field, &format!("{at}.{name}"), found);
                        }
                    }
                }
            }
            "items" => {
                for (i, item) in value.as_array().into_iter().flatten().enumerate() {
                    check(root, rule, item, &format!("{at}[{i}]"), found);
                }
            }
            "minItems" | "maxItems" => {
                if let (Some(items), Some(bound)) = (value.as_array(), rule.as_u64()) {
                    let len = items.len() as u64;
                    if (keyword == "minItems" && len < bound)
                        || (keyword == "maxItems" && len > bound)
                    {
                        found.push(format!("{at}: {len} items, {keyword} is {bound}"));
                    }
                }
            }
            "minimum" | "maximum" => {
                if let (Some(number), Some(bound)) = (value.as_f64(), rule.as_f64())
                    && ((keyword == "minimum" && number < bound)
                        || (keyword == "maximum" && number > bound))
                {
                    found.push(format!("{at}: {number} is past its {keyword} {bound}"));
                }
            }
            "allOf" => {
                for part in rule.as_array().into_iter().flatten() {
                    check(root, part, value, at, found);
                }
            }
            "oneOf" => {
                let matching = rule
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|part| problems(root, part, value).is_empty())
                    .count();
                if matching != 1 {
                    found.push(format!(
                        "{at}: {value} matches {matching} of oneOf's schemas, not 1"
                    ));
                }
            }
            other if ANNOTATIONS.contains(&other) => {}
            other => found.push(format!(
                "{at}: the schema uses `{other}`, which this checker does not know: teach it, \
                 or keep to the keywords it lists"
            )),
        }
    }
}

fn is_type(value: &Value, name: &str) -> bool {
    match name {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "string" => value.is_string(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        "number" => value.is_number(),
        // 2020-12: a number with no fractional part, 1.0 included.
        "integer" => {
            value.is_i64() || value.is_u64() || value.as_f64().is_some_and(|n| n.fract() == 0.0)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_subset_is_checked_and_unknown_keywords_are_problems() {
        let root = json!({ "defs": { "level": { "enum": ["ok", "bad"] } } });
        let schema = json!({
            "type": "object",
            "required": ["a", "level"],
            "additionalProperties": false,
            "properties": {
                "a": { "type": ["integer", "null"], "minimum": 0 },
                "level": { "$ref": "#/defs/level" },
                "list": { "type": "array", "items": { "type": "string" }, "maxItems": 2 }
            }
        });
        assert_eq!(
            problems(&root, &schema, &json!({ "a": 1.0, "level": "ok" })),
            Vec::<String>::new()
        );
        assert_eq!(
            problems(
                &root,
                &schema,
                &json!({ "a": null, "level": "ok", "list": [] })
            ),
            Vec::<String>::new()
        );
        for (bad, expected) in [
            (json!({ "level": "ok" }), "`a` is missing"),
            (json!({ "a": 1.5, "level": "ok" }), "not of type"),
            (json!({ "a": -1, "level": "ok" }), "minimum"),
            (json!({ "a": 1, "level": "meh" }), "not one of"),
            (
                json!({ "a": 1, "level": "ok", "b": 2 }),
                "nothing is allowed",
            ),
            (json!({ "a": 1, "level": "ok", "list": [1] }), "$.list[0]"),
            (
                json!({ "a": 1, "level": "ok", "list": ["x", "y", "z"] }),
                "maxItems",
            ),
            (json!([]), "not of type"),
        ] {
            let found = problems(&root, &schema, &bad);
            assert!(
                found.iter().any(|p| p.contains(expected)),
                "{bad}: {found:?}"
            );
        }
        let unknown = json!({ "type": "string", "pattern": "^a" });
        assert!(problems(&root, &unknown, &json!("a"))[0].contains("`pattern`"));
        let one_of = json!({ "oneOf": [{ "type": "null" }, { "type": "object" }] });
        assert!(problems(&root, &one_of, &json!(null)).is_empty());
        assert!(!problems(&root, &one_of, &json!(1)).is_empty());
    }
}
