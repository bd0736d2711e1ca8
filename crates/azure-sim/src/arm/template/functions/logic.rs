//! Comparison, logic and conversion: `equals`, `less`…, `not`, `true`/`false`/`null`, `int`,
//! `bool`. (`if`, `and` and `or` choose which arguments to evaluate, so the evaluator runs them.)
//! <https://learn.microsoft.com/azure/azure-resource-manager/templates/template-functions-comparison>
//! <https://learn.microsoft.com/azure/azure-resource-manager/templates/template-functions-logical>

use std::cmp::Ordering;

use serde_json::Value;

use super::args::{arity, arity_message, as_int, bool_arg};
use crate::arm::template::value::{json_eq, type_name};

pub(super) fn int(a: &[Value]) -> Result<Value, String> {
    arity(a, 1, 1)?;
    match a.first() {
        Some(Value::String(s)) => s
            .trim()
            .parse::<i64>()
            .map(Value::from)
            .map_err(|_| format!("the string '{s}' is not an integer")),
        Some(v @ Value::Number(_)) => as_int(v).map(Value::from),
        Some(other) => Err(format!(
            "argument 1 must be a string or an integer, got {}",
            type_name(other)
        )),
        None => Err(arity_message(1, 1, 0)),
    }
}

pub(super) fn bool(a: &[Value]) -> Result<Value, String> {
    arity(a, 1, 1)?;
    match a.first() {
        Some(Value::Bool(b)) => Ok(Value::Bool(*b)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Value::Bool(true)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Value::Bool(false)),
        Some(v @ Value::Number(_)) => Ok(Value::Bool(as_int(v)? != 0)),
        Some(other) => Err(format!(
            "the value {other} cannot be converted to a boolean"
        )),
        None => Err(arity_message(1, 1, 0)),
    }
}

pub(super) fn true_(a: &[Value]) -> Result<Value, String> {
    arity(a, 0, 0)?;
    Ok(Value::Bool(true))
}

pub(super) fn false_(a: &[Value]) -> Result<Value, String> {
    arity(a, 0, 0)?;
    Ok(Value::Bool(false))
}

pub(super) fn null(a: &[Value]) -> Result<Value, String> {
    arity(a, 0, 0)?;
    Ok(Value::Null)
}

pub(super) fn not(a: &[Value]) -> Result<Value, String> {
    arity(a, 1, 1)?;
    Ok(Value::Bool(!bool_arg(a, 0)?))
}

pub(super) fn equals(a: &[Value]) -> Result<Value, String> {
    arity(a, 2, 2)?;
    Ok(Value::Bool(match (a.first(), a.get(1)) {
        (Some(x), Some(y)) => json_eq(x, y),
        _ => false,
    }))
}

pub(super) fn less(a: &[Value]) -> Result<Value, String> {
    compare(a, Ordering::is_lt)
}

pub(super) fn less_or_equals(a: &[Value]) -> Result<Value, String> {
    compare(a, Ordering::is_le)
}

pub(super) fn greater(a: &[Value]) -> Result<Value, String> {
    compare(a, Ordering::is_gt)
}

pub(super) fn greater_or_equals(a: &[Value]) -> Result<Value, String> {
    compare(a, Ordering::is_ge)
}

/// Two integers or two strings (ordinally), ordered and then tested.
fn compare(a: &[Value], test: fn(Ordering) -> bool) -> Result<Value, String> {
    arity(a, 2, 2)?;
    let ord = match (a.first(), a.get(1)) {
        (Some(Value::String(x)), Some(Value::String(y))) => x.cmp(y),
        (Some(x @ Value::Number(_)), Some(y @ Value::Number(_))) => as_int(x)?.cmp(&as_int(y)?),
        (x, y) => {
            return Err(format!(
                "both arguments must be integers or both strings, got {} and {}",
                x.map(type_name).unwrap_or("nothing"),
                y.map(type_name).unwrap_or("nothing")
            ));
        }
    };
    Ok(Value::Bool(test(ord)))
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::arm::template::fixture::{err, ok};

    #[test]
    fn logic_and_comparison() {
        assert_eq!(
            ok("[if(equals(1, 1), 'ok', parameters('missing'))]"),
            json!("ok")
        );
        assert_eq!(
            ok("[if(false(), parameters('missing'), 'ok')]"),
            json!("ok")
        );
        assert!(err("[if('x', 1, 2)]").contains("must be a boolean"));
        assert!(err("[if(true(), 1)]").contains("expects 3 arguments but got 2"));
        assert_eq!(ok("[and(true(), true(), false())]"), json!(false));
        assert_eq!(ok("[and(false(), parameters('missing'))]"), json!(false));
        assert_eq!(ok("[or(false(), true())]"), json!(true));
        assert_eq!(ok("[or(false(), false())]"), json!(false));
        assert!(err("[and(true())]").contains("at least 2"));
        assert!(err("[or(false(), 1)]").contains("argument 2 must be a boolean"));
        assert_eq!(ok("[not(equals('a', 'A'))]"), json!(true));
        assert_eq!(
            ok("[equals(createObject('a', createArray(1)), json('{\"a\":[1.0]}'))]"),
            json!(true)
        );
        assert_eq!(ok("[less(1, 2)]"), json!(true));
        assert_eq!(ok("[greaterOrEquals('b', 'a')]"), json!(true));
        assert_eq!(ok("[lessOrEquals(2, 2)]"), json!(true));
        assert_eq!(ok("[greater(1, 2)]"), json!(false));
        assert!(err("[less(1, 'a')]").contains("both arguments"));
        assert_eq!(ok("[null()]"), Value::Null);
        assert_eq!(ok("[bool('TRUE')]"), json!(true));
        assert_eq!(ok("[bool(0)]"), json!(false));
        assert!(err("[bool('yes')]").contains("cannot be converted"));
        assert!(err("[not(1)]").contains("must be a boolean"));
    }
}
