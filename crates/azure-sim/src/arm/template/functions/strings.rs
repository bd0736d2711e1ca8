//! String functions, and `json()`, `string()` and `base64()` conversions. Strings are measured
//! in Unicode scalar values, not UTF-16 code units.
//! <https://learn.microsoft.com/azure/azure-resource-manager/templates/template-functions-string>

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;

use super::MAX_GENERATED_CHARS;
use super::args::{all_same_error, arity, at_least, int_arg, str_arg};
use crate::arm::template::value::{to_text, type_name};

pub(super) fn concat(a: &[Value]) -> Result<Value, String> {
    at_least(a, 1)?;
    if a.iter().any(Value::is_array) {
        let mut out = Vec::new();
        for (i, v) in a.iter().enumerate() {
            match v {
                Value::Array(items) => out.extend(items.iter().cloned()),
                Value::Null => {}
                other => return Err(all_same_error(i, "array", other)),
            }
        }
        return Ok(Value::Array(out));
    }
    let mut out = String::new();
    for (i, v) in a.iter().enumerate() {
        if v.is_object() {
            return Err(format!(
                "argument {} must be a string, integer, boolean or array, got an object",
                i + 1
            ));
        }
        out.push_str(&to_text(v));
    }
    Ok(Value::String(out))
}

pub(super) fn to_lower(a: &[Value]) -> Result<Value, String> {
    arity(a, 1, 1)?;
    Ok(Value::String(str_arg(a, 0)?.to_lowercase()))
}

pub(super) fn to_upper(a: &[Value]) -> Result<Value, String> {
    arity(a, 1, 1)?;
    Ok(Value::String(str_arg(a, 0)?.to_uppercase()))
}

pub(super) fn string(a: &[Value]) -> Result<Value, String> {
    arity(a, 1, 1)?;
    Ok(Value::String(a.first().map(to_text).unwrap_or_default()))
}

pub(super) fn replace(a: &[Value]) -> Result<Value, String> {
    arity(a, 3, 3)?;
    let (s, old, new) = (str_arg(a, 0)?, str_arg(a, 1)?, str_arg(a, 2)?);
    if old.is_empty() {
        return Err("the string to replace must not be empty".into());
    }
    Ok(Value::String(s.replace(old, new)))
}

pub(super) fn substring(a: &[Value]) -> Result<Value, String> {
    arity(a, 2, 3)?;
    let chars: Vec<char> = str_arg(a, 0)?.chars().collect();
    let start = int_arg(a, 1)?;
    let len = match a.get(2) {
        Some(_) => int_arg(a, 2)?,
        None => (chars.len() as i64).saturating_sub(start),
    };
    let end = start.checked_add(len);
    match (
        usize::try_from(start),
        end.and_then(|e| usize::try_from(e).ok()),
    ) {
        (Ok(s), Some(e)) if len >= 0 => match chars.get(s..e) {
            Some(part) => Ok(Value::String(part.iter().collect())),
            None => Err(substring_range_error(start, len, chars.len())),
        },
        _ => Err(substring_range_error(start, len, chars.len())),
    }
}

pub(super) fn split(a: &[Value]) -> Result<Value, String> {
    arity(a, 2, 2)?;
    let s = str_arg(a, 0)?;
    let seps: Vec<&str> = match a.get(1) {
        Some(Value::String(d)) => vec![d.as_str()],
        Some(Value::Array(ds)) => ds
            .iter()
            .map(|d| d.as_str().ok_or("the delimiters must be strings"))
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(format!(
                "argument 2 must be a string or an array of strings, got {}",
                type_name(other)
            ));
        }
        None => Vec::new(),
    };
    Ok(Value::Array(
        split_multi(s, &seps)
            .into_iter()
            .map(Value::String)
            .collect(),
    ))
}

pub(super) fn trim(a: &[Value]) -> Result<Value, String> {
    arity(a, 1, 1)?;
    Ok(Value::String(str_arg(a, 0)?.trim().to_owned()))
}

pub(super) fn starts_with(a: &[Value]) -> Result<Value, String> {
    search(a, |hay, needle| Value::Bool(hay.starts_with(needle)))
}

pub(super) fn ends_with(a: &[Value]) -> Result<Value, String> {
    search(a, |hay, needle| Value::Bool(hay.ends_with(needle)))
}

pub(super) fn index_of(a: &[Value]) -> Result<Value, String> {
    search(a, |hay, needle| Value::from(find_chars(hay, needle, false)))
}

pub(super) fn last_index_of(a: &[Value]) -> Result<Value, String> {
    search(a, |hay, needle| Value::from(find_chars(hay, needle, true)))
}

/// `startsWith`, `endsWith`, `indexOf` and `lastIndexOf`: Azure compares these
/// case-insensitively.
fn search(a: &[Value], found: fn(&[char], &[char]) -> Value) -> Result<Value, String> {
    arity(a, 2, 2)?;
    let hay: Vec<char> = str_arg(a, 0)?.to_lowercase().chars().collect();
    let needle: Vec<char> = str_arg(a, 1)?.to_lowercase().chars().collect();
    Ok(found(&hay, &needle))
}

pub(super) fn pad_left(a: &[Value]) -> Result<Value, String> {
    arity(a, 2, 3)?;
    let text = match a.first() {
        Some(Value::String(s)) => s.clone(),
        Some(v @ Value::Number(_)) => to_text(v),
        Some(other) => {
            return Err(format!(
                "argument 1 must be a string or an integer, got {}",
                type_name(other)
            ));
        }
        None => String::new(),
    };
    let total = int_arg(a, 1)?;
    let total = usize::try_from(total)
        .ok()
        .filter(|t| *t <= MAX_GENERATED_CHARS)
        .ok_or_else(|| format!("the total length must be between 0 and {MAX_GENERATED_CHARS}"))?;
    let pad = match a.get(2) {
        None => ' ',
        Some(_) => {
            let p = str_arg(a, 2)?;
            let mut it = p.chars();
            match (it.next(), it.next()) {
                (Some(c), None) => c,
                _ => return Err("the padding must be exactly one character".into()),
            }
        }
    };
    let missing = total.saturating_sub(text.chars().count());
    Ok(Value::String(
        std::iter::repeat_n(pad, missing)
            .chain(text.chars())
            .collect(),
    ))
}

pub(super) fn base64(a: &[Value]) -> Result<Value, String> {
    arity(a, 1, 1)?;
    Ok(Value::String(BASE64.encode(str_arg(a, 0)?)))
}

pub(super) fn base64_to_string(a: &[Value]) -> Result<Value, String> {
    decode_base64(a).map(Value::String)
}

pub(super) fn base64_to_json(a: &[Value]) -> Result<Value, String> {
    parse_json(&decode_base64(a)?)
}

fn decode_base64(a: &[Value]) -> Result<String, String> {
    arity(a, 1, 1)?;
    let bytes = BASE64
        .decode(str_arg(a, 0)?.trim())
        .map_err(|e| format!("the value is not valid base64: {e}"))?;
    String::from_utf8(bytes).map_err(|_| "the decoded value is not valid utf-8".to_owned())
}

pub(super) fn json(a: &[Value]) -> Result<Value, String> {
    arity(a, 1, 1)?;
    parse_json(str_arg(a, 0)?)
}

fn parse_json(text: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|e| format!("the value is not valid json: {e}"))
}

fn substring_range_error(start: i64, len: i64, total: usize) -> String {
    format!(
        "the start index {start} and length {len} must refer to a location within the string of length {total}"
    )
}

/// Character index of `needle` in `hay`, or -1, like .NET's `IndexOf`/`LastIndexOf`.
fn find_chars(hay: &[char], needle: &[char], last: bool) -> i64 {
    if needle.is_empty() {
        return if last { hay.len() as i64 } else { 0 };
    }
    let mut hits = hay
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle);
    let hit = if last { hits.next_back() } else { hits.next() };
    hit.map_or(-1, |(i, _)| i as i64)
}

/// .NET `String.Split(string[], None)`: at each position the first matching separator wins,
/// empty entries are kept, empty separators are ignored.
fn split_multi(s: &str, seps: &[&str]) -> Vec<String> {
    let seps: Vec<&str> = seps.iter().copied().filter(|d| !d.is_empty()).collect();
    if seps.is_empty() {
        return vec![s.to_owned()];
    }
    let mut out = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < s.len() {
        let rest = s.get(i..).unwrap_or_default();
        match seps.iter().find(|d| rest.starts_with(**d)) {
            Some(d) if s.is_char_boundary(i) => {
                out.push(s.get(start..i).unwrap_or_default().to_owned());
                i += d.len();
                start = i;
            }
            _ => i += rest.chars().next().map_or(1, char::len_utf8),
        }
    }
    out.push(s.get(start..).unwrap_or_default().to_owned());
    out
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::arm::template::fixture::{err, ok};

    #[test]
    fn strings() {
        assert_eq!(ok("[concat('a', 1, true(), null())]"), json!("a1True"));
        assert_eq!(
            ok("[concat(createArray(1), createArray(2, 3))]"),
            json!([1, 2, 3])
        );
        assert!(err("[concat(createArray(1), 'x')]").contains("must be an array"));
        assert!(err("[concat()]").contains("at least 1"));
        assert_eq!(ok("[string(5)]"), json!("5"));
        assert_eq!(ok("[string(createObject('a', 1))]"), json!("{\"a\":1}"));
        assert_eq!(ok("[string(false())]"), json!("False"));
        assert_eq!(ok("[int('-12')]"), json!(-12));
        assert!(err("[int('1.5')]").contains("not an integer"));
        assert_eq!(ok("[replace('a-b-c', '-', '')]"), json!("abc"));
        assert!(err("[replace('abc', '', 'x')]").contains("must not be empty"));
        assert_eq!(ok("[substring('hello', 1, 3)]"), json!("ell"));
        assert_eq!(ok("[substring('hello', 2)]"), json!("llo"));
        assert_eq!(ok("[substring('héllo', 1, 1)]"), json!("é"));
        assert!(err("[substring('hello', 4, 5)]").contains("within the string"));
        assert!(err("[substring('hello', -1, 1)]").contains("within the string"));
        assert!(
            err("[substring('hello', 9223372036854775807, 9223372036854775807)]")
                .contains("within the string")
        );
        assert_eq!(ok("[split('a,,b', ',')]"), json!(["a", "", "b"]));
        assert_eq!(
            ok("[split('a;b,c', createArray(',', ';'))]"),
            json!(["a", "b", "c"])
        );
        assert_eq!(ok("[split('héé', 'é')]"), json!(["h", "", ""]));
        assert_eq!(ok("[split('abc', '')]"), json!(["abc"]));
        assert_eq!(ok("[trim('  x  ')]"), json!("x"));
        assert_eq!(ok("[toLower('AbC')]"), json!("abc"));
        assert_eq!(ok("[base64('hello')]"), json!("aGVsbG8="));
        assert_eq!(ok("[base64ToString(base64('héllo'))]"), json!("héllo"));
        assert_eq!(ok("[base64ToJson(base64('{\"a\":1}')).a]"), json!(1));
        assert!(err("[base64ToString('***')]").contains("not valid base64"));
        assert_eq!(ok("[startsWith('Hello', 'he')]"), json!(true));
        assert_eq!(ok("[endsWith('Hello', 'LO')]"), json!(true));
        assert_eq!(ok("[indexOf('abcabc', 'C')]"), json!(2));
        assert_eq!(ok("[lastIndexOf('abcabc', 'c')]"), json!(5));
        assert_eq!(ok("[indexOf('abc', 'z')]"), json!(-1));
        assert_eq!(ok("[padLeft('7', 3, '0')]"), json!("007"));
        assert_eq!(ok("[padLeft(7, 2)]"), json!(" 7"));
        assert!(err("[padLeft('7', 3, '00')]").contains("exactly one character"));
        assert!(err("[padLeft('7', 2000000000)]").contains("between 0 and"));
        assert_eq!(ok("[json('[1, {\"a\": null}]')[1].a]"), Value::Null);
        assert!(err("[json('{')]").contains("not valid json"));
        assert!(err("[toLower(1)]").contains("argument 1 must be a string, got integer"));
    }
}
