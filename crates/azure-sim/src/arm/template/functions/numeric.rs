//! Integer arithmetic and `range()`: 64-bit integers, overflow is an error rather than a wrap.
//! <https://learn.microsoft.com/azure/azure-resource-manager/templates/template-functions-numeric>

use serde_json::Value;

use super::args::{arity, as_int, at_least, int_arg};

/// Azure's limit for `range()`.
const MAX_RANGE_COUNT: i64 = 10_000;

pub(super) fn add(a: &[Value]) -> Result<Value, String> {
    let (x, y) = two_integers(a)?;
    fits(x.checked_add(y))
}

pub(super) fn sub(a: &[Value]) -> Result<Value, String> {
    let (x, y) = two_integers(a)?;
    fits(x.checked_sub(y))
}

pub(super) fn mul(a: &[Value]) -> Result<Value, String> {
    let (x, y) = two_integers(a)?;
    fits(x.checked_mul(y))
}

pub(super) fn div(a: &[Value]) -> Result<Value, String> {
    let (x, y) = two_integers(a)?;
    fits(x.checked_div(divisor(y)?))
}

pub(super) fn mod_(a: &[Value]) -> Result<Value, String> {
    let (x, y) = two_integers(a)?;
    fits(x.checked_rem(divisor(y)?))
}

fn two_integers(a: &[Value]) -> Result<(i64, i64), String> {
    arity(a, 2, 2)?;
    Ok((int_arg(a, 0)?, int_arg(a, 1)?))
}

fn divisor(y: i64) -> Result<i64, String> {
    if y == 0 {
        Err("division by zero".into())
    } else {
        Ok(y)
    }
}

fn fits(result: Option<i64>) -> Result<Value, String> {
    result
        .map(Value::from)
        .ok_or_else(|| "the result does not fit a 64-bit integer".into())
}

pub(super) fn min(a: &[Value]) -> Result<Value, String> {
    min_or_max(a, true)
}

pub(super) fn max(a: &[Value]) -> Result<Value, String> {
    min_or_max(a, false)
}

/// Integers given as arguments, or as one array.
fn min_or_max(a: &[Value], min: bool) -> Result<Value, String> {
    at_least(a, 1)?;
    let items = match a {
        [Value::Array(items)] => items.as_slice(),
        _ => a,
    };
    let mut best: Option<i64> = None;
    for v in items {
        let n = as_int(v)?;
        best = Some(match best {
            Some(b) if min => b.min(n),
            Some(b) => b.max(n),
            None => n,
        });
    }
    best.map(Value::from)
        .ok_or_else(|| "the array must not be empty".into())
}

pub(super) fn range(a: &[Value]) -> Result<Value, String> {
    arity(a, 2, 2)?;
    let (start, count) = (int_arg(a, 0)?, int_arg(a, 1)?);
    if !(0..=MAX_RANGE_COUNT).contains(&count) {
        return Err(format!("the count must be between 0 and {MAX_RANGE_COUNT}"));
    }
    if start.saturating_add(count) > i64::from(i32::MAX) {
        return Err("the start index plus the count must not exceed 2147483647".into());
    }
    Ok(Value::Array(
        (start..start + count).map(Value::from).collect(),
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::arm::template::fixture::{err, ok};

    #[test]
    fn numbers() {
        assert_eq!(ok("[range(5, 3)]"), json!([5, 6, 7]));
        assert!(err("[range(0, 10001)]").contains("between 0 and 10000"));
        assert_eq!(ok("[min(3, 1, 2)]"), json!(1));
        assert_eq!(ok("[max(createArray(3, 9, 2))]"), json!(9));
        assert!(err("[max(createArray())]").contains("not be empty"));
        assert_eq!(ok("[add(2, 3)]"), json!(5));
        assert_eq!(ok("[sub(2, 3)]"), json!(-1));
        assert_eq!(ok("[mul(4, 3)]"), json!(12));
        assert_eq!(ok("[div(7, 2)]"), json!(3));
        assert_eq!(ok("[mod(7, 2)]"), json!(1));
        assert!(err("[div(1, 0)]").contains("division by zero"));
        assert!(err("[mod(1, 0)]").contains("division by zero"));
        assert!(err("[add(9223372036854775807, 1)]").contains("64-bit"));
        assert!(err("[div(-9223372036854775808, -1)]").contains("64-bit"));
        assert!(err("[add('1', 2)]").contains("must be an integer"));
    }
}
