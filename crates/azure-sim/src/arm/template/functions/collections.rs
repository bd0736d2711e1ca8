//! Array and object functions; most of them also take strings, as Azure's do.
//! <https://learn.microsoft.com/azure/azure-resource-manager/templates/template-functions-array>
//! <https://learn.microsoft.com/azure/azure-resource-manager/templates/template-functions-object>

use serde_json::{Map, Value};

use super::args::{all_same_error, arity, arity_message, at_least, int_arg};
use crate::arm::template::value::{json_eq, to_text, type_name};

pub(super) fn create_array(a: &[Value]) -> Result<Value, String> {
    Ok(Value::Array(a.to_vec()))
}

pub(super) fn create_object(a: &[Value]) -> Result<Value, String> {
    if !a.len().is_multiple_of(2) {
        return Err("expects pairs of key and value arguments".into());
    }
    let mut out = Map::new();
    for pair in a.chunks(2) {
        if let [k, v] = pair {
            let Value::String(k) = k else {
                return Err(format!("object keys must be strings, got {}", type_name(k)));
            };
            out.insert(k.clone(), v.clone());
        }
    }
    Ok(Value::Object(out))
}

pub(super) fn array(a: &[Value]) -> Result<Value, String> {
    arity(a, 1, 1)?;
    Ok(match a.first() {
        Some(Value::Array(items)) => Value::Array(items.clone()),
        Some(other) => Value::Array(vec![other.clone()]),
        None => Value::Array(Vec::new()),
    })
}

pub(super) fn length(a: &[Value]) -> Result<Value, String> {
    arity(a, 1, 1)?;
    match a.first() {
        Some(Value::String(s)) => Ok(Value::from(s.chars().count())),
        Some(Value::Array(v)) => Ok(Value::from(v.len())),
        Some(Value::Object(m)) => Ok(Value::from(m.len())),
        Some(other) => Err(format!(
            "argument 1 must be a string, array or object, got {}",
            type_name(other)
        )),
        None => Err(arity_message(1, 1, 0)),
    }
}

pub(super) fn empty(a: &[Value]) -> Result<Value, String> {
    arity(a, 1, 1)?;
    match a.first() {
        Some(Value::Null) => Ok(Value::Bool(true)),
        Some(Value::String(s)) => Ok(Value::Bool(s.is_empty())),
        Some(Value::Array(v)) => Ok(Value::Bool(v.is_empty())),
        Some(Value::Object(m)) => Ok(Value::Bool(m.is_empty())),
        Some(other) => Err(format!(
            "argument 1 must be a string, array, object or null, got {}",
            type_name(other)
        )),
        None => Err(arity_message(1, 1, 0)),
    }
}

pub(super) fn contains(a: &[Value]) -> Result<Value, String> {
    arity(a, 2, 2)?;
    let item = a.get(1).unwrap_or(&Value::Null);
    match a.first() {
        Some(Value::String(s)) => match item {
            Value::String(_) | Value::Number(_) | Value::Bool(_) => {
                Ok(Value::Bool(s.contains(&to_text(item))))
            }
            other => Err(format!(
                "the item to find in a string must be a string or an integer, got {}",
                type_name(other)
            )),
        },
        Some(Value::Array(v)) => Ok(Value::Bool(v.iter().any(|e| json_eq(e, item)))),
        // Object keys are matched case-insensitively, as Azure documents.
        Some(Value::Object(m)) => match item {
            Value::String(k) => Ok(Value::Bool(m.keys().any(|mk| mk.eq_ignore_ascii_case(k)))),
            other => Err(format!(
                "the key to find in an object must be a string, got {}",
                type_name(other)
            )),
        },
        Some(other) => Err(format!(
            "argument 1 must be a string, array or object, got {}",
            type_name(other)
        )),
        None => Err(arity_message(2, 2, 0)),
    }
}

pub(super) fn union(a: &[Value]) -> Result<Value, String> {
    at_least(a, 1)?;
    match a {
        [Value::Object(_), ..] => {
            let mut out = Map::new();
            for (i, v) in a.iter().enumerate() {
                let Value::Object(m) = v else {
                    return Err(all_same_error(i, "object", v));
                };
                deep_merge(&mut out, m);
            }
            Ok(Value::Object(out))
        }
        [Value::Array(_), ..] => {
            let mut out: Vec<Value> = Vec::new();
            for (i, v) in a.iter().enumerate() {
                let Value::Array(items) = v else {
                    return Err(all_same_error(i, "array", v));
                };
                for item in items {
                    if !out.iter().any(|o| json_eq(o, item)) {
                        out.push(item.clone());
                    }
                }
            }
            Ok(Value::Array(out))
        }
        _ => Err("the arguments must be all objects or all arrays".into()),
    }
}

pub(super) fn intersection(a: &[Value]) -> Result<Value, String> {
    at_least(a, 2)?;
    match a {
        [Value::Object(first), rest @ ..] => {
            let mut out = first.clone();
            for (i, v) in rest.iter().enumerate() {
                let Value::Object(m) = v else {
                    return Err(all_same_error(i + 1, "object", v));
                };
                out.retain(|k, val| m.get(k).is_some_and(|o| json_eq(o, val)));
            }
            Ok(Value::Object(out))
        }
        [Value::Array(first), rest @ ..] => {
            let mut out: Vec<Value> = Vec::new();
            for item in first {
                if !out.iter().any(|o| json_eq(o, item)) {
                    out.push(item.clone());
                }
            }
            for (i, v) in rest.iter().enumerate() {
                let Value::Array(items) = v else {
                    return Err(all_same_error(i + 1, "array", v));
                };
                out.retain(|o| items.iter().any(|e| json_eq(e, o)));
            }
            Ok(Value::Array(out))
        }
        _ => Err("the arguments must be all objects or all arrays".into()),
    }
}

pub(super) fn coalesce(a: &[Value]) -> Result<Value, String> {
    at_least(a, 1)?;
    Ok(a.iter()
        .find(|v| !v.is_null())
        .cloned()
        .unwrap_or(Value::Null))
}

pub(super) fn first(a: &[Value]) -> Result<Value, String> {
    first_or_last(a, false)
}

pub(super) fn last(a: &[Value]) -> Result<Value, String> {
    first_or_last(a, true)
}

fn first_or_last(a: &[Value], last: bool) -> Result<Value, String> {
    arity(a, 1, 1)?;
    match a.first() {
        Some(Value::Array(v)) => Ok(if last { v.last() } else { v.first() }
            .cloned()
            .unwrap_or(Value::Null)),
        Some(Value::String(s)) => Ok(Value::String(
            if last {
                s.chars().next_back()
            } else {
                s.chars().next()
            }
            .map(String::from)
            .unwrap_or_default(),
        )),
        Some(other) => Err(format!(
            "argument 1 must be an array or a string, got {}",
            type_name(other)
        )),
        None => Err(arity_message(1, 1, 0)),
    }
}

pub(super) fn skip(a: &[Value]) -> Result<Value, String> {
    skip_or_take(a, true)
}

pub(super) fn take(a: &[Value]) -> Result<Value, String> {
    skip_or_take(a, false)
}

fn skip_or_take(a: &[Value], skip: bool) -> Result<Value, String> {
    arity(a, 2, 2)?;
    let n = usize::try_from(int_arg(a, 1)?.max(0)).unwrap_or(usize::MAX);
    match a.first() {
        Some(Value::Array(v)) => Ok(Value::Array(if skip {
            v.iter().skip(n).cloned().collect()
        } else {
            v.iter().take(n).cloned().collect()
        })),
        Some(Value::String(s)) => Ok(Value::String(if skip {
            s.chars().skip(n).collect()
        } else {
            s.chars().take(n).collect()
        })),
        Some(other) => Err(format!(
            "argument 1 must be an array or a string, got {}",
            type_name(other)
        )),
        None => Err(arity_message(2, 2, 0)),
    }
}

/// Azure's `union` merges nested objects recursively; any other value is replaced.
fn deep_merge(into: &mut Map<String, Value>, from: &Map<String, Value>) {
    for (k, v) in from {
        match (into.get_mut(k), v) {
            (Some(Value::Object(existing)), Value::Object(incoming)) => {
                deep_merge(existing, incoming);
            }
            _ => {
                into.insert(k.clone(), v.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::arm::template::fixture::{err, ok};

    #[test]
    fn collections() {
        assert_eq!(ok("[length('héllo')]"), json!(5));
        assert_eq!(ok("[length(createArray(1, 2))]"), json!(2));
        assert_eq!(ok("[length(createObject('a', 1))]"), json!(1));
        assert!(err("[length(1)]").contains("must be a string, array or object"));
        assert_eq!(ok("[empty('')]"), json!(true));
        assert_eq!(ok("[empty(createArray())]"), json!(true));
        assert_eq!(ok("[empty(createObject())]"), json!(true));
        assert_eq!(ok("[empty(null())]"), json!(true));
        assert_eq!(ok("[empty('x')]"), json!(false));
        assert_eq!(ok("[contains('OneTwo', 'Two')]"), json!(true));
        assert_eq!(ok("[contains('OneTwo', 'two')]"), json!(false));
        assert_eq!(ok("[contains(createArray(1, 'a'), 'a')]"), json!(true));
        assert_eq!(ok("[contains(createObject('Key', 1), 'KEY')]"), json!(true));
        assert_eq!(ok("[contains('a1', 1)]"), json!(true));
        assert!(err("[createObject('a')]").contains("pairs"));
        assert!(err("[createObject(1, 2)]").contains("keys must be strings"));
        assert_eq!(
            ok(
                "[union(createObject('a', 1, 'n', createObject('x', 1, 'y', 1)), createObject('b', 2, 'n', createObject('y', 2)))]"
            ),
            json!({"a": 1, "n": {"x": 1, "y": 2}, "b": 2})
        );
        assert_eq!(
            ok("[union(createArray(1, 2), createArray(2, 3))]"),
            json!([1, 2, 3])
        );
        assert!(err("[union(createObject(), createArray())]").contains("must be an object"));
        assert_eq!(
            ok("[intersection(createObject('a', 1, 'b', 2), createObject('a', 1, 'b', 3))]"),
            json!({"a": 1})
        );
        assert_eq!(
            ok("[intersection(createArray(1, 2, 2), createArray(2, 3))]"),
            json!([2])
        );
        assert_eq!(ok("[coalesce(null(), null(), 'x', 'y')]"), json!("x"));
        assert_eq!(ok("[coalesce(null())]"), Value::Null);
        assert_eq!(ok("[first(createArray('a', 'b'))]"), json!("a"));
        assert_eq!(ok("[last(createArray('a', 'b'))]"), json!("b"));
        assert_eq!(ok("[first('héllo')]"), json!("h"));
        assert_eq!(ok("[last('')]"), json!(""));
        assert_eq!(ok("[first(createArray())]"), Value::Null);
        assert_eq!(ok("[skip(createArray(1, 2, 3), 1)]"), json!([2, 3]));
        assert_eq!(ok("[take('hello', 2)]"), json!("he"));
        assert_eq!(ok("[take('hello', -2)]"), json!(""));
        assert_eq!(ok("[array('a')]"), json!(["a"]));
    }
}
