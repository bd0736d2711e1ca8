//! JSON read the way the strictest reader downstream would agree with: a key written twice
//! in one object, or twice in different case, is refused. Parsers disagree on such input
//! (the first or the last wins; ARM's reader matches property names without regard to case),
//! so what the gateway judged could differ from what Azure runs.

use serde::Deserialize;
use serde_json::{Map, Value};

const DUPLICATE: &str = "a key is written twice in one object (perhaps in different case)";

#[derive(Debug, thiserror::Error)]
pub enum StrictError {
    #[error("{DUPLICATE}")]
    Duplicate,
    #[error("not JSON: {0}")]
    NotJson(String),
}

/// Parses `bytes`, refusing duplicate keys (exact or differing only in ASCII case).
pub fn parse(bytes: &[u8]) -> Result<Value, StrictError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let v = Strict::deserialize(&mut de).map_err(classify)?.0;
    de.end().map_err(classify)?;
    Ok(v)
}

fn classify(e: serde_json::Error) -> StrictError {
    if e.to_string().contains(DUPLICATE) {
        StrictError::Duplicate
    } else {
        StrictError::NotJson(e.to_string())
    }
}

/// `obj[key]`, matching the key without regard to ASCII case (as ARM does); unambiguous for
/// objects read by `parse`.
pub fn get<'a>(obj: &'a Value, key: &str) -> Option<&'a Value> {
    let o = obj.as_object()?;
    o.get(key).or_else(|| {
        o.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Visitor).map(Strict)
    }
}

struct Visitor;

impl<'de> serde::de::Visitor<'de> for Visitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        // Small objects (most) are checked by comparing with the keys so far, without
        // allocating; larger ones switch to a set of folded keys.
        let mut folded: Option<std::collections::HashSet<String>> = None;
        while let Some(k) = map.next_key::<String>()? {
            let duplicate = match &mut folded {
                None if out.len() < 16 => out.keys().any(|e| e.eq_ignore_ascii_case(&k)),
                None => {
                    let mut set: std::collections::HashSet<String> =
                        out.keys().map(|e| e.to_ascii_lowercase()).collect();
                    let dup = !set.insert(k.to_ascii_lowercase());
                    folded = Some(set);
                    dup
                }
                Some(set) => !set.insert(k.to_ascii_lowercase()),
            };
            if duplicate {
                return Err(serde::de::Error::custom(DUPLICATE));
            }
            let Strict(v) = map.next_value()?;
            out.insert(k, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_in_any_case_are_refused() {
        assert!(parse(br#"{"a": 1, "b": {"c": [1, {"d": 2}]}}"#).is_ok());
        for bad in [
            &br#"{"a": 1, "a": 2}"#[..],
            br#"{"mode": "Incremental", "Mode": "Complete"}"#,
            br#"{"x": [{"k": 1, "K": 2}]}"#,
            br#"{"k0":0,"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9,"k10":10,"k11":11,"k12":12,"k13":13,"k14":14,"k15":15,"k16":16,"K3":3}"#,
            br#"{"k0":0,"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9,"k10":10,"k11":11,"k12":12,"k13":13,"k14":14,"k15":15,"K15":16}"#,
        ] {
            assert!(matches!(parse(bad), Err(StrictError::Duplicate)), "{bad:?}");
        }
        assert!(matches!(
            parse(b"{\"a\": 1} x"),
            Err(StrictError::NotJson(_))
        ));
        let v = parse(br#"{"Mode": "Complete"}"#).unwrap();
        assert_eq!(get(&v, "mode"), Some(&Value::from("Complete")));
    }
}
