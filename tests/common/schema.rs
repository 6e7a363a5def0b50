//! Real output checked against the published JSON Schema,
//! docs/schema/synscope.schema.json: every `--json` document against its
//! command's `*_document` definition, every `--ndjson` line against its
//! `*_line` definition (formats such as `ipv4` are checked too).

use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

fn schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/docs/schema/synscope.schema.json"
        );
        let text = std::fs::read_to_string(path).expect("docs/schema/synscope.schema.json");
        serde_json::from_str(&text).expect("the schema is JSON")
    })
}

/// `ping`, `scan`, `trace`, `path`, `dns`, `dns-bulk` → the definitions'
/// prefix.
fn prefix(command: &str) -> String {
    command.replace('-', "_")
}

/// The validator of the definition `def` (built once per test binary).
fn validator(def: &str) -> Arc<jsonschema::Validator> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<jsonschema::Validator>>>> = OnceLock::new();
    let mut cache = CACHE.get_or_init(Default::default).lock().unwrap();
    cache
        .entry(def.to_string())
        .or_insert_with(|| {
            let mut root = schema().clone();
            let m = root.as_object_mut().expect("the schema is an object");
            assert!(
                m["$defs"].get(def).is_some(),
                "docs/schema has no definition {def}"
            );
            m.remove("anyOf");
            m.insert("$ref".into(), Value::String(format!("#/$defs/{def}")));
            Arc::new(
                jsonschema::draft202012::options()
                    .should_validate_formats(true)
                    .build(&root)
                    .expect("the schema compiles"),
            )
        })
        .clone()
}

/// Asserts that `value` matches the definition `def` of the schema.
pub fn assert_matches(def: &str, value: &Value) {
    let errors: Vec<String> = validator(def)
        .iter_errors(value)
        .map(|e| format!("{} (at {})", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "output does not match docs/schema/synscope.schema.json#/$defs/{def}:\n{}\n{value}",
        errors.join("\n")
    );
}

/// Parses the one JSON document of `command --json` and checks it.
pub fn check_document(command: &str, text: &str) -> Value {
    let v: Value = serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("{command}: not one JSON document ({e}): {text}"));
    assert_matches(&format!("{}_document", prefix(command)), &v);
    v
}

/// Parses every line of `command --ndjson` and checks each.
pub fn check_lines(command: &str, text: &str) -> Vec<Value> {
    let def = format!("{}_line", prefix(command));
    text.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{command}: bad line ({e}): {l}"));
            assert_matches(&def, &v);
            v
        })
        .collect()
}

/// Parses a `--json` document of any command and checks it against its
/// command's definition (named by its `command` field).
pub fn check_report(text: &str) -> Value {
    let v: Value = serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("not one JSON document ({e}): {text}"));
    let command = match v["command"].as_str() {
        Some("dns") if v.get("errors").is_some() => "dns-bulk",
        Some(c) => c,
        None => panic!("a --json document without `command`: {v}"),
    };
    check_document(command, text)
}
