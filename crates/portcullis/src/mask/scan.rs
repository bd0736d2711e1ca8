//! Masking without rebuilding the document: one pass over the JSON bytes, tracking the path
//! of each string, replacing only the strings to mask and copying everything else exactly
//! as Azure sent it (numbers, spacing, key order, escapes). Faster than parsing into a tree
//! and writing it out again, and byte-exact by construction.
//!
//! The input is checked as JSON first (`serde::de::IgnoredAny`: no allocation), so the
//! scanner itself may assume well-formed input; a document that is not JSON is an error.

use std::collections::BTreeSet;

use super::catalog::steps;
use super::detect::{self, Detector};
use super::{Keying, MaskError, Masked, Masker, PLACEHOLDER_PREFIX, Plan};

#[derive(Clone, Copy)]
enum Seg<'a> {
    Key(&'a [u8]),
    /// A key with escapes, decoded.
    OwnedKey(usize),
    Index,
}

/// A compiled catalog path.
struct Path {
    steps: Vec<String>,
    strings_only: bool,
    kind: &'static str,
}

struct Scanner<'a, 'm> {
    src: &'a [u8],
    pos: usize,
    masker: &'m Masker,
    paths: Vec<Path>,
    detectors: &'m [Detector],
    /// Under which key placeholders are tagged (`Plan::keying`).
    keying: Keying,
    /// Decoded keys that had escapes, referenced by `Seg::OwnedKey`.
    owned_keys: Vec<String>,
    /// (start, end, replacement JSON string) of every string to replace, in order.
    replacements: Vec<(usize, usize, String)>,
    count: usize,
    kinds: BTreeSet<String>,
    /// A string that had to be checked could not be decoded.
    undecodable: bool,
}

impl<'a> Scanner<'a, '_> {
    fn ws(&mut self) {
        while self.pos < self.src.len()
            && matches!(self.src[self.pos], b' ' | b'\t' | b'\n' | b'\r')
        {
            self.pos += 1;
        }
    }

    /// The end (exclusive) of the string starting at `self.pos` (a `"`).
    fn string_end(&self) -> usize {
        let mut i = self.pos + 1;
        while i < self.src.len() {
            match self.src[i] {
                b'\\' => i += 2,
                b'"' => return i + 1,
                _ => i += 1,
            }
        }
        self.src.len()
    }

    fn seg_matches(&self, step: &str, seg: Seg<'_>) -> bool {
        match seg {
            _ if step == "*" => true,
            Seg::Key(k) => k.eq_ignore_ascii_case(step.as_bytes()),
            Seg::OwnedKey(i) => self.owned_keys[i].eq_ignore_ascii_case(step),
            Seg::Index => false,
        }
    }

    /// The profile whose path selects a string at `path`, if any.
    fn selected(&self, path: &[Seg<'_>]) -> Option<&'static str> {
        self.paths.iter().find_map(|p| {
            let exact = p.steps.len() == path.len();
            let within = p.steps.len() < path.len() && !p.strings_only;
            ((exact || within)
                && p.steps
                    .iter()
                    .zip(path)
                    .all(|(s, seg)| self.seg_matches(s, *seg)))
            .then_some(p.kind)
        })
    }

    fn value(&mut self, path: &mut Vec<Seg<'a>>) {
        self.ws();
        match self.src.get(self.pos) {
            Some(b'{') => {
                self.pos += 1;
                loop {
                    self.ws();
                    if self.src.get(self.pos) == Some(&b'}') {
                        self.pos += 1;
                        return;
                    }
                    let start = self.pos;
                    let end = self.string_end();
                    let raw = &self.src[start + 1..end - 1];
                    let seg = if raw.contains(&b'\\') {
                        let decoded: String =
                            serde_json::from_slice(&self.src[start..end]).unwrap_or_default();
                        self.owned_keys.push(decoded);
                        Seg::OwnedKey(self.owned_keys.len() - 1)
                    } else {
                        // The key is borrowed from the source, which outlives the scan.
                        let src: &'a [u8] = self.src;
                        Seg::Key(&src[start + 1..end - 1])
                    };
                    self.pos = end;
                    self.ws();
                    self.pos += 1; // ':'
                    path.push(seg);
                    self.value(path);
                    path.pop();
                    self.ws();
                    if self.src.get(self.pos) == Some(&b',') {
                        self.pos += 1;
                    }
                }
            }
            Some(b'[') => {
                self.pos += 1;
                loop {
                    self.ws();
                    if self.src.get(self.pos) == Some(&b']') {
                        self.pos += 1;
                        return;
                    }
                    path.push(Seg::Index);
                    self.value(path);
                    path.pop();
                    self.ws();
                    if self.src.get(self.pos) == Some(&b',') {
                        self.pos += 1;
                    }
                }
            }
            Some(b'"') => {
                let (start, end) = (self.pos, self.string_end());
                self.pos = end;
                self.string(start, end, path);
            }
            Some(_) => {
                while self.pos < self.src.len()
                    && !matches!(
                        self.src[self.pos],
                        b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'
                    )
                {
                    self.pos += 1;
                }
            }
            None => {}
        }
    }

    fn string(&mut self, start: usize, end: usize, path: &[Seg<'_>]) {
        let raw = &self.src[start..end];
        let kind = self.selected(path);
        let detect = !self.detectors.is_empty() && detect::might_contain_secret_json(raw);
        if kind.is_none() && !detect {
            return;
        }
        let Ok(text) = serde_json::from_slice::<String>(raw) else {
            // A catalogued or secret-shaped string that cannot be decoded (a lone surrogate
            // escape, a byte that is not UTF-8) cannot be checked: the answer is withheld.
            self.undecodable = true;
            return;
        };
        if text.starts_with(PLACEHOLDER_PREFIX) {
            return;
        }
        let replacement = match kind {
            Some(kind) => {
                self.count += 1;
                self.kinds.insert(kind.to_owned());
                self.masker.catalogued(self.keying, kind, &text)
            }
            None => {
                let (masker, kinds, count) = (self.masker, &mut self.kinds, &mut self.count);
                let keying = self.keying;
                match detect::redact(&text, self.detectors, &mut |d, secret| {
                    *count += 1;
                    kinds.insert(d.name().to_owned());
                    masker.detected(keying, d.name(), secret, *count)
                }) {
                    Some(r) => r,
                    None => return,
                }
            }
        };
        self.replacements.push((
            start,
            end,
            serde_json::to_string(&replacement).expect("a string serializes"),
        ));
    }
}

/// Masks `body` by the plan's profiles (catalog paths) and detectors, in one pass.
pub fn mask(masker: &Masker, plan: &Plan, body: &[u8]) -> Result<Masked, MaskError> {
    let (profiles, detectors) = (&plan.profiles, &plan.detectors[..]);
    serde_json::from_slice::<serde::de::IgnoredAny>(body)
        .map_err(|e| MaskError::NotJson(e.to_string()))?;
    let paths = profiles
        .iter()
        .flat_map(|p| {
            p.paths.iter().map(|path| {
                let (steps, strings_only) = steps(path);
                Path {
                    steps: steps.into_iter().map(str::to_owned).collect(),
                    strings_only,
                    kind: p.name,
                }
            })
        })
        .collect();
    let mut s = Scanner {
        src: body,
        pos: 0,
        masker,
        paths,
        detectors,
        keying: plan.keying,
        owned_keys: Vec::new(),
        replacements: Vec::new(),
        count: 0,
        kinds: BTreeSet::new(),
        undecodable: false,
    };
    let mut path = Vec::new();
    s.value(&mut path);
    if s.undecodable {
        return Err(MaskError::NotJson(
            "a string that may hold a secret cannot be decoded".into(),
        ));
    }
    if s.replacements.is_empty() {
        return Ok(Masked::Unchanged);
    }
    let mut out = Vec::with_capacity(body.len());
    let mut at = 0;
    for (start, end, replacement) in &s.replacements {
        out.extend_from_slice(&body[at..*start]);
        out.extend_from_slice(replacement.as_bytes());
        at = *end;
    }
    out.extend_from_slice(&body[at..]);
    Ok(Masked::Changed {
        body: out,
        count: s.count,
        kinds: s.kinds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mask::catalog::{PROFILES, Profile};

    fn plan(profiles: Vec<&'static Profile>) -> Plan {
        Plan {
            profiles,
            detectors: Vec::new(),
            inner: None,
            keying: Keying::Answer {
                salt: [0; 16],
                place: [0; 32],
            },
        }
    }

    #[test]
    fn only_masked_strings_change_byte_for_byte() {
        let m = Masker::new(b"k".to_vec(), Detector::ALL.to_vec(), Vec::new());
        let storage = plan(
            PROFILES
                .iter()
                .filter(|p| p.name == "storage-keys")
                .collect(),
        );
        let body = br#"{ "keys" : [ {"keyName":"key1", "value": "c2VjcmV0\u0031", "n": 1.50, "e": 1e3} ], "x\u0079": -0.0 }"#;
        let Masked::Changed {
            body: out, count, ..
        } = mask(&m, &storage, body).unwrap()
        else {
            panic!("masked")
        };
        let text = String::from_utf8(out).unwrap();
        assert_eq!(count, 1);
        let placeholder = m.catalogued(storage.keying, "storage-keys", "c2VjcmV01");
        assert_eq!(
            text,
            format!(
                r#"{{ "keys" : [ {{"keyName":"key1", "value": "{placeholder}", "n": 1.50, "e": 1e3}} ], "x\u0079": -0.0 }}"#
            )
        );
        assert!(
            mask(&m, &storage, b"{\"keys\": [").is_err(),
            "not JSON is an error"
        );
    }

    #[test]
    fn escaped_keys_and_strings_only_paths() {
        let m = Masker::new(b"k".to_vec(), Detector::ALL.to_vec(), Vec::new());
        let kv = plan(
            PROFILES
                .iter()
                .filter(|p| p.name == "keyvault-secret")
                .collect(),
        );
        let list = br#"{"value":[{"id":"https://kv/secrets/a"}],"nextLink":null}"#;
        assert_eq!(
            mask(&m, &kv, list).unwrap(),
            Masked::Unchanged,
            "=value only masks a string"
        );
        let bundle = br#"{"v\u0061lue":"s3cret","id":"x"}"#;
        let Masked::Changed { body, .. } = mask(&m, &kv, bundle).unwrap() else {
            panic!("escaped key")
        };
        assert!(!String::from_utf8(body).unwrap().contains("s3cret"));
    }
}
