//! Reading a function's arguments: arity, and arguments of the type a function expects, with
//! the messages Azure's own say (`expects 2 arguments but got 1`, `argument 1 must be …`).

use serde_json::Value;

use crate::arm::template::value::type_name;

pub(in crate::arm::template) fn arity_message(min: usize, max: usize, got: usize) -> String {
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    if min == max {
        format!("expects {min} argument{} but got {got}", plural(min))
    } else if max == usize::MAX {
        format!(
            "expects at least {min} argument{} but got {got}",
            plural(min)
        )
    } else {
        format!("expects {min} to {max} arguments but got {got}")
    }
}

pub(super) fn arity(a: &[Value], min: usize, max: usize) -> Result<(), String> {
    if (min..=max).contains(&a.len()) {
        Ok(())
    } else {
        Err(arity_message(min, max, a.len()))
    }
}

pub(super) fn at_least(a: &[Value], min: usize) -> Result<(), String> {
    arity(a, min, usize::MAX)
}

pub(super) fn str_arg(a: &[Value], i: usize) -> Result<&str, String> {
    match a.get(i) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(format!(
            "argument {} must be a string, got {}",
            i + 1,
            type_name(other)
        )),
        None => Err(format!("argument {} is missing", i + 1)),
    }
}

pub(super) fn as_int(v: &Value) -> Result<i64, String> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e18)
                    .map(|f| f as i64)
            })
            .ok_or_else(|| format!("the number {n} is not a 64-bit integer")),
        other => Err(format!("expected an integer, got {}", type_name(other))),
    }
}

pub(super) fn int_arg(a: &[Value], i: usize) -> Result<i64, String> {
    match a.get(i) {
        Some(v @ Value::Number(_)) => as_int(v),
        Some(other) => Err(format!(
            "argument {} must be an integer, got {}",
            i + 1,
            type_name(other)
        )),
        None => Err(format!("argument {} is missing", i + 1)),
    }
}

pub(super) fn bool_arg(a: &[Value], i: usize) -> Result<bool, String> {
    match a.get(i) {
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(format!(
            "argument {} must be a boolean, got {}",
            i + 1,
            type_name(other)
        )),
        None => Err(format!("argument {} is missing", i + 1)),
    }
}

pub(super) fn all_strs(a: &[Value]) -> Result<Vec<&str>, String> {
    (0..a.len()).map(|i| str_arg(a, i)).collect()
}

pub(super) fn all_same_error(i: usize, want: &str, got: &Value) -> String {
    format!(
        "argument {} must be an {want} like the first one, got {}",
        i + 1,
        type_name(got)
    )
}

#[cold]
pub(in crate::arm::template) fn not_boolean(what: &str, got: &Value) -> String {
    format!("{what} must be a boolean, got {}", type_name(got))
}

/// The one name `parameters()` and `variables()` take.
pub(in crate::arm::template) fn single_name(values: &[Value]) -> Result<&str, String> {
    arity(values, 1, 1)?;
    str_arg(values, 0)
}
