//! `format()`: .NET composite formatting, which Azure's `format` uses.
//! <https://learn.microsoft.com/azure/azure-resource-manager/templates/template-functions-string#format>
//! <https://learn.microsoft.com/dotnet/standard/base-types/composite-formatting>

use serde_json::Value;

use super::MAX_GENERATED_CHARS;
use super::args::{as_int, at_least, str_arg};
use crate::arm::template::value::to_text;

pub(super) fn format(a: &[Value]) -> Result<Value, String> {
    at_least(a, 1)?;
    let fmt = str_arg(a, 0)?;
    dotnet_format(fmt, a.get(1..).unwrap_or_default()).map(Value::String)
}

/// .NET composite formatting, which Azure's `format` uses: `{index[,alignment][:spec]}`,
/// `{{`/`}}` escapes; integer specs D, X and N are supported.
fn dotnet_format(fmt: &str, args: &[Value]) -> Result<String, String> {
    let chars: Vec<char> = fmt.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        match c {
            '{' if chars.get(i + 1) == Some(&'{') => {
                out.push('{');
                i += 2;
            }
            '}' if chars.get(i + 1) == Some(&'}') => {
                out.push('}');
                i += 2;
            }
            '}' => {
                return Err(format!(
                    "unbalanced '}}' at position {i} in the format string"
                ));
            }
            '{' => {
                let Some(close) = chars
                    .get(i + 1..)
                    .and_then(|rest| rest.iter().position(|&ch| ch == '}'))
                else {
                    return Err(format!(
                        "unbalanced '{{' at position {i} in the format string"
                    ));
                };
                let item: String = chars
                    .get(i + 1..i + 1 + close)
                    .unwrap_or_default()
                    .iter()
                    .collect();
                let (head, spec) = match item.split_once(':') {
                    Some((h, s)) => (h, Some(s)),
                    None => (item.as_str(), None),
                };
                let (index_text, align) = match head.split_once(',') {
                    Some((ix, al)) => (ix, Some(al)),
                    None => (head, None),
                };
                let index: usize = index_text
                    .trim()
                    .parse()
                    .map_err(|_| format!("'{{{item}}}' is not a valid format item"))?;
                let arg = args.get(index).ok_or_else(|| {
                    format!(
                        "the format item {{{index}}} has no argument ({} given)",
                        args.len()
                    )
                })?;
                let text = format_arg(arg, spec)?;
                out.push_str(&align_text(text, align)?);
                i += close + 2;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(out)
}

fn align_text(text: String, align: Option<&str>) -> Result<String, String> {
    let Some(align) = align else {
        return Ok(text);
    };
    let width: i64 = align
        .trim()
        .parse()
        .map_err(|_| format!("'{align}' is not a valid alignment"))?;
    let target = usize::try_from(width.unsigned_abs())
        .ok()
        .filter(|w| *w <= MAX_GENERATED_CHARS)
        .ok_or_else(|| format!("the alignment {width} is too large"))?;
    let pad = " ".repeat(target.saturating_sub(text.chars().count()));
    Ok(if width < 0 { text + &pad } else { pad + &text })
}

fn format_arg(arg: &Value, spec: Option<&str>) -> Result<String, String> {
    let Some(spec) = spec.filter(|s| !s.is_empty()) else {
        return Ok(to_text(arg));
    };
    let Value::Number(_) = arg else {
        // .NET ignores format specs it cannot apply to the value's type.
        return Ok(to_text(arg));
    };
    let n = as_int(arg)?;
    let mut spec_chars = spec.chars();
    let kind = spec_chars.next().unwrap_or('G');
    let precision_text: String = spec_chars.collect();
    let precision: Option<usize> = if precision_text.is_empty() {
        None
    } else {
        Some(
            precision_text
                .parse()
                .ok()
                .filter(|p| *p <= 100)
                .ok_or_else(|| format!("the format specifier '{spec}' is not supported"))?,
        )
    };
    let p = precision.unwrap_or(0);
    Ok(match kind {
        'D' | 'd' => {
            let digits = n.unsigned_abs().to_string();
            let sign = if n < 0 { "-" } else { "" };
            format!("{sign}{digits:0>p$}")
        }
        'X' => format!("{n:0>p$X}"),
        'x' => format!("{n:0>p$x}"),
        'N' | 'n' => {
            let digits = n.unsigned_abs().to_string();
            let mut grouped = String::new();
            for (k, ch) in digits.chars().enumerate() {
                if k > 0 && (digits.len() - k) % 3 == 0 {
                    grouped.push(',');
                }
                grouped.push(ch);
            }
            let sign = if n < 0 { "-" } else { "" };
            let decimals = precision.unwrap_or(2);
            if decimals == 0 {
                format!("{sign}{grouped}")
            } else {
                format!("{sign}{grouped}.{}", "0".repeat(decimals))
            }
        }
        'G' | 'g' if precision.is_none() => n.to_string(),
        _ => return Err(format!("the format specifier '{spec}' is not supported")),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::arm::template::fixture::{err, ok};

    #[test]
    fn format_function() {
        assert_eq!(ok("[format('{0}-{1}', 'a', 2)]"), json!("a-2"));
        assert_eq!(ok("[format('{1}{0}{1}', 'a', 'b')]"), json!("bab"));
        assert_eq!(ok("[format('{{0}} {0}', true())]"), json!("{0} True"));
        assert_eq!(
            ok("[format('[{0,4}][{0,-4}]', 'ab')]"),
            json!("[  ab][ab  ]")
        );
        assert_eq!(
            ok("[format('{0:D4} {1:X} {2:N0} {2:N}', 7, 255, 1234567)]"),
            json!("0007 FF 1,234,567 1,234,567.00")
        );
        assert_eq!(ok("[format('{0:D3}', -5)]"), json!("-005"));
        assert_eq!(ok("[format('no items')]"), json!("no items"));
        assert_eq!(
            ok("[format('{0}', createArray(1, 'a'))]"),
            json!("[1,\"a\"]")
        );
        assert!(err("[format('{1}', 'a')]").contains("has no argument"));
        assert!(err("[format('{0', 'a')]").contains("unbalanced '{'"));
        assert!(err("[format('0}', 'a')]").contains("unbalanced '}'"));
        assert!(err("[format('{x}', 'a')]").contains("not a valid format item"));
        assert!(err("[format('{0:Q}', 1)]").contains("not supported"));
        assert!(err("[format('{0,99999999999}', 1)]").contains("too large"));
    }
}
