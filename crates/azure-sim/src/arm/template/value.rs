//! JSON values as the template language sees them: type names for messages, .NET's text
//! rendering, equality by value, and property and index access.

use serde_json::{Map, Value};

pub(super) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Template text for a value, as .NET (and so Azure) renders it in `concat`, `format` and
/// `string`: booleans are `True`/`False`, null is empty, arrays and objects are JSON.
pub(super) fn to_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        other => serde_json::to_string(other).unwrap_or_default(),
    }
}

/// Numbers compare by value (`1` equals `1.0`), unlike `Value`'s `==`.
pub(super) fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i == j,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_eq(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// The entry named `name`: spelled the same, or else in another case, as Azure matches names.
pub(super) fn find_ci<'m>(
    map: &'m Map<String, Value>,
    name: &str,
) -> Option<(&'m String, &'m Value)> {
    map.get_key_value(name)
        .or_else(|| map.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)))
}

/// `value.name`: object properties are matched case-insensitively.
pub(super) fn property(value: Value, name: &str) -> Result<Value, String> {
    match value {
        Value::Object(mut map) => {
            let key = find_ci(&map, name).map(|(k, _)| k.clone());
            match key.and_then(|k| map.remove(&k)) {
                Some(v) => Ok(v),
                None => Err(format!(
                    "the property '{name}' doesn't exist, available properties are '{}'",
                    map.keys()
                        .map(String::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            }
        }
        other => Err(format!(
            "cannot read the property '{name}' of {} value",
            article_type(&other)
        )),
    }
}

/// `value[key]`: an array element by position, or an object property by name.
pub(super) fn index(value: Value, key: &Value) -> Result<Value, String> {
    match (value, key) {
        (Value::Array(items), Value::Number(n)) => {
            let len = items.len();
            n.as_i64()
                .and_then(|i| usize::try_from(i).ok())
                .and_then(|i| items.into_iter().nth(i))
                .ok_or_else(|| {
                    format!("the index {n} is out of range for an array of length {len}")
                })
        }
        (v @ Value::Object(_), Value::String(k)) => property(v, k),
        (v, k) => Err(format!(
            "cannot index {} value with {} value",
            article_type(&v),
            article_type(k)
        )),
    }
}

/// The type name with its article, for messages: "an array", "a string".
pub(super) fn article_type(v: &Value) -> String {
    let t = type_name(v);
    match t {
        "array" | "object" | "integer" => format!("an {t}"),
        "null" => "a null".into(),
        _ => format!("a {t}"),
    }
}
