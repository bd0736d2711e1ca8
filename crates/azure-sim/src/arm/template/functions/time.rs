//! `utcNow()`, and the .NET date formats it takes.
//! <https://learn.microsoft.com/azure/azure-resource-manager/templates/template-functions-date#utcnow>

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::Deployment;
use super::args::{arity, str_arg};
use crate::arm::template::section::Section;

pub(super) fn utc_now(d: &Deployment<'_>, a: &[Value]) -> Result<Value, String> {
    d.section.require(&[Section::ParameterDefault])?;
    arity(a, 0, 1)?;
    let fmt = if a.is_empty() { "" } else { str_arg(a, 0)? };
    format_time(SystemTime::now(), fmt).map(Value::String)
}

struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    nanos: u32,
}

/// Howard Hinnant's days-to-civil algorithm; avoids a date crate for one function.
fn civil(time: SystemTime) -> Civil {
    let (secs, nanos) = match time.duration_since(UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2),
            d.subsec_nanos(),
        ),
        Err(_) => (0, 0),
    };
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    Civil {
        year,
        month,
        day,
        hour: (sod / 3600) as u32,
        minute: (sod % 3600 / 60) as u32,
        second: (sod % 60) as u32,
        nanos,
    }
}

/// `utcNow(format)`: Azure's default is `yyyyMMddTHHmmssZ`; the standard formats `u`, `s`
/// and `o` and the custom tokens y, M, d, H, m, s, f are supported.
fn format_time(time: SystemTime, fmt: &str) -> Result<String, String> {
    let pattern = match fmt {
        "" => "yyyyMMdd'T'HHmmss'Z'",
        "u" => "yyyy-MM-dd HH:mm:ss'Z'",
        "s" => "yyyy-MM-dd'T'HH:mm:ss",
        "o" | "O" => "yyyy-MM-dd'T'HH:mm:ss.fffffff'Z'",
        f if f.chars().count() == 1 => {
            return Err(format!("the date format '{f}' is not supported"));
        }
        f => f,
    };
    let t = civil(time);
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        let mut run = 1;
        while chars.get(i + run) == Some(&c) {
            run += 1;
        }
        match c {
            '\'' | '"' => {
                let Some(len) = chars
                    .get(i + 1..)
                    .and_then(|rest| rest.iter().position(|&ch| ch == c))
                else {
                    return Err(format!("unterminated quote in the date format '{fmt}'"));
                };
                out.extend(chars.get(i + 1..i + 1 + len).unwrap_or_default());
                i += len + 2;
                continue;
            }
            '\\' => {
                if let Some(&next) = chars.get(i + 1) {
                    out.push(next);
                }
                i += 2;
                continue;
            }
            'y' => match run {
                4 => out.push_str(&format!("{:04}", t.year)),
                2 => out.push_str(&format!("{:02}", t.year.rem_euclid(100))),
                _ => return Err(format!("the date format '{fmt}' is not supported")),
            },
            'M' | 'd' | 'H' | 'm' | 's' if run <= 2 => {
                let v = match c {
                    'M' => t.month,
                    'd' => t.day,
                    'H' => t.hour,
                    'm' => t.minute,
                    _ => t.second,
                };
                out.push_str(&if run == 2 {
                    format!("{v:02}")
                } else {
                    v.to_string()
                });
            }
            'f' if run <= 7 => {
                let digits = format!("{:09}", t.nanos);
                out.push_str(digits.get(..run).unwrap_or_default());
            }
            c if c.is_ascii_alphabetic() => {
                return Err(format!("the date format '{fmt}' is not supported"));
            }
            c => out.extend(std::iter::repeat_n(c, run)),
        }
        i += run;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::format_time;

    #[test]
    fn time_formatting() {
        let t = UNIX_EPOCH + std::time::Duration::new(1_700_000_000, 123_456_789);
        assert_eq!(format_time(t, "").unwrap(), "20231114T221320Z");
        assert_eq!(format_time(t, "u").unwrap(), "2023-11-14 22:13:20Z");
        assert_eq!(format_time(t, "s").unwrap(), "2023-11-14T22:13:20");
        assert_eq!(format_time(t, "o").unwrap(), "2023-11-14T22:13:20.1234567Z");
        assert_eq!(format_time(t, "yy/M/d H:m").unwrap(), "23/11/14 22:13");
        assert!(format_time(t, "hh").is_err());
        assert!(format_time(t, "q").is_err());
        assert!(format_time(t, "yyyy'T").is_err());
        let leap = UNIX_EPOCH + std::time::Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(format_time(leap, "yyyy-MM-dd").unwrap(), "2000-02-29");
    }
}
