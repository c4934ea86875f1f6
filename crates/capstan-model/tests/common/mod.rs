//! Helpers shared by the integration tests.
#![allow(dead_code)]

use capstan_model::{Object, parse_fragment_yaml, parse_object_yaml};
use serde_json::Value;

/// The YAML text as a JSON value, read the same way the model reads it.
pub fn yaml_value(yaml: &str) -> Value {
    parse_fragment_yaml::<Value>(yaml).expect("fixture is valid YAML")
}

/// Drops what Argo CD itself omits when it writes an object: nulls, `false`, `0`, empty
/// strings, lists and maps (recursively, leaving list elements in place).
pub fn normalise(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut out = serde_json::Map::new();
            for (k, v) in map {
                let v = normalise(v);
                if !is_empty(&v) {
                    out.insert(k.clone(), v);
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(normalise).collect()),
        other => other.clone(),
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// Parses `yaml`, writes the object back as YAML, and checks that
/// - parsing the output gives the same object, and
/// - the output, read as plain YAML, equals the input after normalisation.
///
/// Returns the parsed object.
pub fn assert_round_trip(yaml: &str) -> Object {
    let object = parse_object_yaml(yaml).unwrap_or_else(|e| panic!("fixture parses: {e}"));
    let written = object.to_yaml().expect("serialises");
    let reparsed = parse_object_yaml(&written)
        .unwrap_or_else(|e| panic!("output parses: {e}\n--- output ---\n{written}"));
    assert_eq!(object, reparsed, "object changed through YAML:\n{written}");
    let original = normalise(&yaml_value(yaml));
    let output = normalise(&yaml_value(&written));
    assert_eq!(
        original, output,
        "output differs from input:\n--- input ---\n{yaml}\n--- output ---\n{written}"
    );
    let json = serde_json::to_string(&object).expect("serialises to JSON");
    let from_json = capstan_model::parse_object_json(&json).expect("JSON output parses");
    assert_eq!(object, from_json, "object changed through JSON");
    object
}

/// The keys of a JSON object, in order.
pub fn keys(value: &Value) -> Vec<String> {
    value
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}
