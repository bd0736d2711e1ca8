//! Mask: secrets in Azure's answers are replaced by placeholders before the agent sees them,
//! by the catalog (operations known to return secrets, and where) and by detectors
//! (secret-shaped strings anywhere). A placeholder names what it hides and carries a keyed
//! tag, `[masked:storage-keys:3f9a1c2e]`: for a catalogued secret a keyed hash of its
//! resource and value, so the same secret is recognised without being seen; for a detector's
//! finding, which may be text the agent chose and Azure echoed, a tag that says nothing about
//! the value (see [`Keying`]). Only a policy rule's `unmask:` lets a profile through.

pub mod catalog;
pub mod detect;
pub mod encoding;
mod scan;
pub mod stream;

use std::collections::BTreeSet;

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::azure::operation::{Operation, Scope};
use crate::policy::ActionPattern;
use catalog::{Profile, steps};
use detect::Detector;

/// Placeholders start so; values already masked are left alone.
pub const PLACEHOLDER_PREFIX: &str = "[masked:";

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MaskError {
    #[error("the answer should be JSON but is not, so it cannot be masked: {0}")]
    NotJson(String),
}

/// Under which key a plan's placeholders are tagged: per kind, and per origin, so that text
/// the agent chose can never be masked into a placeholder equal to a real secret's (issue 19,
/// finding 4: an agent had Azure echo `Password=guess` 2,000 times a request and compared
/// the tags with a Key Vault secret's). Every tag is an HMAC under the gateway's mask key
/// over a label, the kind and what the origin allows; the labels keep the origins apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keying {
    /// An answer for the agent. A catalogued field (which Azure, not the agent, filled) is
    /// tagged by its kind, the resource it came from (`place`: a digest of the operation's
    /// resource id, or vault and item name) and its value: stable across requests and
    /// replicas, so the same secret read twice, or both keys of a `listKeys`, show alike,
    /// and a rotation shows; but a value the agent wrote elsewhere (a probe secret of its
    /// own) never tags like another resource's secret. A detector's finding, which may be
    /// the agent's own text echoed (a 404 naming what it asked for,
    /// `checkNameAvailability`), is tagged by this answer's salt and the finding's place in
    /// it: never equal to anything outside this answer, nor to another finding in it,
    /// whatever the value.
    Answer { salt: [u8; 16], place: [u8; 32] },
    /// Text the gateway keeps (the audit store, approvals): stable per kind and value, so
    /// an auditor can tell equal values apart, under a label no agent-facing placeholder
    /// uses.
    Kept,
}

/// What to mask in one answer.
pub struct Plan {
    profiles: Vec<&'static Profile>,
    detectors: Vec<Detector>,
    /// For an ARM batch: each inner request's name and plan, in the batch's order. ARM
    /// answers a batch's requests in order, each answer carrying its request's name; an
    /// answer whose place and name do not both match a request is masked by every plan of
    /// the batch at once (`Masker::mask_json`).
    inner: Option<Vec<(String, Plan)>>,
    keying: Keying,
}

impl Plan {
    /// Whether anything at all may be masked (else the answer can stream untouched).
    pub fn is_empty(&self) -> bool {
        self.profiles.is_empty() && self.detectors.is_empty() && self.inner.is_none()
    }

    /// The detectors this plan runs.
    pub fn detectors(&self) -> &[Detector] {
        &self.detectors
    }

    /// Whether the answer must be inspected (the catalog says it carries secrets, or it is a
    /// batch of answers).
    pub fn has_profiles(&self) -> bool {
        !self.profiles.is_empty() || self.inner.is_some()
    }
}

/// The result of masking one answer.
#[derive(Debug, PartialEq)]
pub enum Masked {
    /// Nothing to mask: send the original bytes.
    Unchanged,
    Changed {
        body: Vec<u8>,
        count: usize,
        kinds: BTreeSet<String>,
    },
}

pub struct Masker {
    /// Keys the placeholders' tags, so they cannot be reversed by guessing offline.
    key: Vec<u8>,
    detectors: Vec<Detector>,
    /// The built-in catalog and the configured profiles.
    profiles: Vec<&'static Profile>,
    /// Each profile's action patterns, parsed once (not on every answer's plan).
    patterns: Vec<Vec<ActionPattern>>,
    /// Every detector: what the audit store runs over text it keeps.
    audit: Plan,
}

impl Keying {
    /// A fresh answer's keying for `op`'s resource, its salt never used again.
    fn answer(op: Option<&Operation>) -> Keying {
        use sha2::Digest;
        let scope = op.map(|op| &op.scope);
        // ARM ids and Key Vault names compare case-insensitively; a secret's versions are
        // one place (Key Vault names the secret, not the version).
        let place = match scope {
            Some(Scope {
                resource_id: Some(id),
                ..
            }) => id.to_ascii_lowercase(),
            Some(s) => format!(
                "vault:{}/{}/{}",
                s.vault.as_deref().unwrap_or_default(),
                s.resource_type.as_deref().unwrap_or_default(),
                s.resource_name.as_deref().unwrap_or_default()
            )
            .to_ascii_lowercase(),
            None => "/".to_owned(),
        };
        Keying::Answer {
            salt: rand::random(),
            place: Sha256::digest(place.as_bytes()).into(),
        }
    }
}

/// Whether `name` is something `unmask:` may name.
pub fn is_maskable_name(name: &str) -> bool {
    name == "*"
        || catalog::PROFILES.iter().any(|p| p.name == name)
        || Detector::ALL.iter().any(|d| d.name() == name)
}

impl Masker {
    pub fn new(
        key: Vec<u8>,
        detectors: Vec<Detector>,
        configured: Vec<catalog::OwnedProfile>,
    ) -> Masker {
        let mut profiles: Vec<&'static Profile> = catalog::PROFILES.iter().collect();
        profiles.extend(configured.into_iter().map(catalog::OwnedProfile::leak));
        // A pattern that does not parse matches nothing, as `catalog::profiles_among` treats it.
        let patterns = profiles
            .iter()
            .map(|p| {
                p.actions
                    .iter()
                    .filter_map(|a| ActionPattern::parse(a).ok())
                    .collect()
            })
            .collect();
        Masker {
            key,
            detectors,
            profiles,
            patterns,
            audit: Plan {
                profiles: Vec::new(),
                detectors: Detector::ALL.to_vec(),
                inner: None,
                keying: Keying::Kept,
            },
        }
    }

    /// The plan for an operation's answer; `unmask` comes from the deciding policy rule.
    pub fn plan(&self, op: &Operation, unmask: &[String]) -> Plan {
        let lets_through = |name: &str| unmask.iter().any(|u| u == "*" || u == name);
        let action = op.action.to_ascii_lowercase();
        Plan {
            profiles: self
                .profiles
                .iter()
                .zip(&self.patterns)
                .filter(|(p, patterns)| {
                    patterns.iter().any(|pat| pat.matches(&action)) && !lets_through(p.name)
                })
                .map(|(p, _)| *p)
                .collect(),
            detectors: self
                .detectors
                .iter()
                .copied()
                .filter(|d| !lets_through(d.name()))
                .collect(),
            inner: None,
            keying: Keying::answer(Some(op)),
        }
    }

    /// What the audit store runs over text it keeps (URLs, headers, bodies): every
    /// detector, whatever configuration or policy turned off for agents.
    pub fn audit_plan(&self) -> &Plan {
        &self.audit
    }

    /// The plan for a batch's answer: each inner answer is masked as if it came alone.
    pub fn plan_batch(&self, inner: &[(String, Operation)], unmask: &[String]) -> Plan {
        let lets_through = |name: &str| unmask.iter().any(|u| u == "*" || u == name);
        Plan {
            profiles: Vec::new(),
            detectors: self
                .detectors
                .iter()
                .copied()
                .filter(|d| !lets_through(d.name()))
                .collect(),
            inner: Some(
                inner
                    .iter()
                    .map(|(name, op)| (name.clone(), self.plan(op, unmask)))
                    .collect(),
            ),
            keying: Keying::answer(None),
        }
    }

    /// The placeholder for a catalogued field's `value` (or a request secret kept).
    pub(crate) fn catalogued(&self, keying: Keying, kind: &str, value: &str) -> String {
        match keying {
            Keying::Answer { place, .. } => self.tag(
                &[b"catalog", &place, kind.as_bytes(), value.as_bytes()],
                kind,
            ),
            Keying::Kept => self.tag(&[b"kept", kind.as_bytes(), value.as_bytes()], kind),
        }
    }

    /// The placeholder for a detector's finding, the `ordinal`th masked in this answer.
    pub(crate) fn detected(
        &self,
        keying: Keying,
        kind: &str,
        value: &str,
        ordinal: usize,
    ) -> String {
        match keying {
            Keying::Answer { salt, .. } => self.tag(
                &[
                    b"detected",
                    &salt,
                    &(ordinal as u64).to_be_bytes(),
                    kind.as_bytes(),
                ],
                kind,
            ),
            Keying::Kept => self.tag(&[b"kept", kind.as_bytes(), value.as_bytes()], kind),
        }
    }

    /// `[masked:{kind}:{tag}]`, the tag the first 4 bytes of an HMAC over `parts`, each
    /// length-prefixed so no two lists of parts hash the same bytes.
    /// A keyed digest (HMAC-SHA256 under the mask key, which replicas share) for what must
    /// be recognised again without being readable: a held request's digest is shown to
    /// approvers and in the API, and a plain hash of a body that carries a secret could be
    /// checked against guesses of it.
    pub fn keyed_digest(&self, label: &str) -> Hmac<Sha256> {
        let mut m = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        m.update(label.as_bytes());
        m.update(b"\n");
        m
    }

    fn tag(&self, parts: &[&[u8]], kind: &str) -> String {
        let mut m = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        for part in parts {
            m.update(&(part.len() as u64).to_be_bytes());
            m.update(part);
        }
        let tag = m.finalize().into_bytes();
        format!(
            "{PLACEHOLDER_PREFIX}{kind}:{:02x}{:02x}{:02x}{:02x}]",
            tag[0], tag[1], tag[2], tag[3]
        )
    }

    /// Masks a JSON answer; the bytes stay exactly as they were when nothing is masked.
    pub fn mask_json(&self, plan: &Plan, body: &[u8]) -> Result<Masked, MaskError> {
        if !plan.has_profiles()
            && (plan.detectors.is_empty() || !detect::might_contain_secret_json(body))
        {
            return Ok(Masked::Unchanged);
        }
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Masked::Unchanged);
        }
        if plan.inner.is_none() {
            // One answer: a single pass over the bytes, everything else copied exactly.
            return scan::mask(self, plan, body);
        }
        let mut doc: Value =
            serde_json::from_slice(body).map_err(|e| MaskError::NotJson(e.to_string()))?;
        let mut count = 0;
        let mut kinds = BTreeSet::new();
        match &plan.inner {
            // A batch: each inner answer by its own request's plan.
            Some(inner) => {
                // The strictest plan of the batch: every inner plan's profiles at once, for
                // an answer that cannot be matched to its request with certainty.
                let mut strictest = Plan {
                    profiles: Vec::new(),
                    detectors: plan.detectors.clone(),
                    inner: None,
                    keying: plan.keying,
                };
                for profile in inner.iter().flat_map(|(_, p)| &p.profiles) {
                    if !strictest.profiles.iter().any(|q| q.name == profile.name) {
                        strictest.profiles.push(profile);
                    }
                }
                if let Some(responses) = doc.get_mut("responses").and_then(Value::as_array_mut) {
                    for (i, r) in responses.iter_mut().enumerate() {
                        let name = r.get("name").and_then(|n| match n {
                            Value::String(s) => Some(s.clone()),
                            Value::Number(n) => Some(n.to_string()),
                            _ => None,
                        });
                        let p = match inner.get(i) {
                            Some((expected, p)) if name.as_deref() == Some(expected.as_str()) => p,
                            _ => &strictest,
                        };
                        if let Some(content) = r.get_mut("content") {
                            self.mask_value(p, content, &mut count, &mut kinds);
                        }
                    }
                }
                // Whatever else the batch answer holds, the detectors still read.
                let outer = Plan {
                    profiles: Vec::new(),
                    detectors: plan.detectors.clone(),
                    inner: None,
                    keying: plan.keying,
                };
                self.mask_value(&outer, &mut doc, &mut count, &mut kinds);
            }
            None => unreachable!("single answers are masked by the scanner"),
        }
        if count == 0 {
            return Ok(Masked::Unchanged);
        }
        let body = serde_json::to_vec(&doc).expect("a Value serializes");
        Ok(Masked::Changed { body, count, kinds })
    }

    fn mask_value(
        &self,
        plan: &Plan,
        doc: &mut Value,
        count: &mut usize,
        kinds: &mut BTreeSet<String>,
    ) {
        for profile in &plan.profiles {
            for path in profile.paths {
                let (steps, strings_only) = steps(path);
                let n = self.mask_path(doc, &steps, strings_only, profile.name, plan.keying);
                if n > 0 {
                    *count += n;
                    kinds.insert(profile.name.to_owned());
                }
            }
        }
        if !plan.detectors.is_empty() {
            self.mask_detected(doc, plan, count, kinds, 0);
        }
    }

    /// Masks the secrets an agent sends (a secret's value, a VM's admin password, a
    /// deployment's secure parameters), for whatever the gateway keeps or shows of a request
    /// (audit, approvals). The request forwarded to Azure is never changed.
    pub fn mask_request_json(&self, op: &Operation, body: &[u8]) -> Result<Masked, MaskError> {
        let action = op.action.to_ascii_lowercase();
        let mut paths: Vec<(&str, &str)> = Vec::new();
        if action.starts_with("microsoft.keyvault/vaults/secrets/") {
            // Data plane set-secret, and ARM's vaults/secrets PUT.
            paths.extend([
                ("=value", "keyvault-secret"),
                ("properties.value", "keyvault-secret"),
            ]);
        }
        if action == "microsoft.compute/virtualmachines/write" {
            paths.extend([
                ("properties.osProfile.adminPassword", "vm-admin-password"),
                ("properties.osProfile.customData", "vm-custom-data"),
            ]);
        }
        // Kept, never shown to the agent: the request's text is the agent's own.
        let plan = Plan {
            profiles: Vec::new(),
            detectors: self.detectors.clone(),
            inner: None,
            keying: Keying::Kept,
        };
        if paths.is_empty()
            && !action.starts_with("microsoft.resources/deployments/")
            && !detect::might_contain_secret_json(body)
        {
            return Ok(Masked::Unchanged);
        }
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Masked::Unchanged);
        }
        let mut doc: Value =
            serde_json::from_slice(body).map_err(|e| MaskError::NotJson(e.to_string()))?;
        let mut count = 0;
        let mut kinds = BTreeSet::new();
        for (path, kind) in paths {
            let (steps, strings_only) = steps(path);
            let n = self.mask_path(&mut doc, &steps, strings_only, kind, Keying::Kept);
            if n > 0 {
                count += n;
                kinds.insert(kind.to_owned());
            }
        }
        if action.starts_with("microsoft.resources/deployments/") {
            // Parameters the template declares secure (securestring, secureObject).
            let secure: Vec<String> = doc
                .pointer("/properties/template/parameters")
                .and_then(Value::as_object)
                .map(|p| {
                    p.iter()
                        .filter(|(_, d)| {
                            d["type"]
                                .as_str()
                                .is_some_and(|t| t.to_ascii_lowercase().starts_with("secure"))
                        })
                        .map(|(k, _)| k.to_ascii_lowercase())
                        .collect()
                })
                .unwrap_or_default();
            if let Some(params) = doc
                .pointer_mut("/properties/parameters")
                .and_then(Value::as_object_mut)
            {
                for (name, v) in params.iter_mut() {
                    if secure.contains(&name.to_ascii_lowercase())
                        && let Some(value) = v.get_mut("value")
                    {
                        let n = self.mask_all(value, "secure-parameter", Keying::Kept);
                        if n > 0 {
                            count += n;
                            kinds.insert("secure-parameter".to_owned());
                        }
                    }
                }
            }
        }
        self.mask_value(&plan, &mut doc, &mut count, &mut kinds);
        if count == 0 {
            return Ok(Masked::Unchanged);
        }
        Ok(Masked::Changed {
            body: serde_json::to_vec(&doc).expect("a Value serializes"),
            count,
            kinds,
        })
    }

    /// Masks secret-shaped strings in a text answer.
    pub fn mask_text(&self, plan: &Plan, body: &[u8]) -> Masked {
        if plan.detectors.is_empty() || !detect::might_contain_secret(body) {
            return Masked::Unchanged;
        }
        let Ok(text) = std::str::from_utf8(body) else {
            return Masked::Unchanged;
        };
        let mut kinds = BTreeSet::new();
        let mut count = 0;
        let out = detect::redact(text, &plan.detectors, &mut |d, secret| {
            count += 1;
            kinds.insert(d.name().to_owned());
            self.detected(plan.keying, d.name(), secret, count)
        });
        match out {
            Some(body) => Masked::Changed {
                body: body.into_bytes(),
                count,
                kinds,
            },
            None => Masked::Unchanged,
        }
    }

    fn mask_all(&self, v: &mut Value, kind: &str, keying: Keying) -> usize {
        match v {
            Value::String(s) if !s.starts_with(PLACEHOLDER_PREFIX) => {
                *s = self.catalogued(keying, kind, s);
                1
            }
            Value::Array(items) => items
                .iter_mut()
                .map(|x| self.mask_all(x, kind, keying))
                .sum(),
            Value::Object(map) => map
                .values_mut()
                .map(|x| self.mask_all(x, kind, keying))
                .sum(),
            _ => 0,
        }
    }

    fn mask_path(
        &self,
        v: &mut Value,
        steps: &[&str],
        strings_only: bool,
        kind: &str,
        keying: Keying,
    ) -> usize {
        let Some((first, rest)) = steps.split_first() else {
            return if strings_only && !v.is_string() {
                0
            } else {
                self.mask_all(v, kind, keying)
            };
        };
        match (v, *first) {
            (Value::Object(map), "*") => map
                .values_mut()
                .map(|x| self.mask_path(x, rest, strings_only, kind, keying))
                .sum(),
            (Value::Array(items), "*") => items
                .iter_mut()
                .map(|x| self.mask_path(x, rest, strings_only, kind, keying))
                .sum(),
            (Value::Object(map), key) => map
                .iter_mut()
                .filter(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, x)| self.mask_path(x, rest, strings_only, kind, keying))
                .sum(),
            _ => 0,
        }
    }

    fn mask_detected(
        &self,
        v: &mut Value,
        plan: &Plan,
        count: &mut usize,
        kinds: &mut BTreeSet<String>,
        depth: usize,
    ) {
        if depth > 256 {
            return;
        }
        match v {
            Value::String(s) if detect::might_contain_secret(s.as_bytes()) => {
                if let Some(out) = detect::redact(s, &plan.detectors, &mut |d, secret| {
                    *count += 1;
                    kinds.insert(d.name().to_owned());
                    self.detected(plan.keying, d.name(), secret, *count)
                }) {
                    *s = out;
                }
            }
            Value::Array(items) => items
                .iter_mut()
                .for_each(|x| self.mask_detected(x, plan, count, kinds, depth + 1)),
            Value::Object(map) => map
                .values_mut()
                .for_each(|x| self.mask_detected(x, plan, count, kinds, depth + 1)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn masker() -> Masker {
        Masker::new(b"property-key".to_vec(), Detector::ALL.to_vec(), Vec::new())
    }

    /// JSON with no secrets: names, numbers, booleans, nested objects and arrays.
    fn plain() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            "[a-z]{1,12}".prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<bool>().prop_map(Value::from),
            Just(Value::Null),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map("[a-z]{1,8}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// A 64-byte storage-style key (88 base64 characters), different every time.
    fn key() -> impl Strategy<Value = String> {
        prop::collection::vec(any::<u8>(), 64).prop_map(|b| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(b)
        })
    }

    fn list_keys() -> Operation {
        crate::azure::operation::name_arm(&http::Method::POST, "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/sa/listKeys", "api-version=2023-05-01").unwrap()
    }

    fn get_vm() -> Operation {
        crate::azure::operation::name_arm(
            &http::Method::GET,
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1",
            "api-version=2024-07-01",
        )
        .unwrap()
    }

    proptest! {
        /// Documents with nothing to mask come back byte for byte.
        #[test]
        fn plain_documents_are_untouched(doc in plain()) {
            let m = masker();
            let bytes = serde_json::to_vec(&doc).unwrap();
            prop_assert_eq!(m.mask_json(&m.plan(&get_vm(), &[]), &bytes).unwrap(), Masked::Unchanged);
        }

        /// Secrets planted at catalog paths and as connection strings anywhere never survive,
        /// and what comes out is still JSON.
        #[test]
        fn planted_secrets_never_survive(doc in plain(), k1 in key(), k2 in key(), cs_key in key(), depth in 0usize..3) {
            let m = masker();
            let mut carrier = doc.clone();
            // A connection string buried somewhere in the document.
            let cs = format!("DefaultEndpointsProtocol=https;AccountName=x;AccountKey={cs_key};EndpointSuffix=core.windows.net");
            let mut slot = json!({"note": cs});
            for _ in 0..depth {
                slot = json!({"nested": [slot]});
            }
            carrier = json!({"keys": [{"keyName": "key1", "value": k1}, {"keyName": "key2", "value": k2}], "extra": carrier, "buried": slot});
            let bytes = serde_json::to_vec(&carrier).unwrap();
            let out = match m.mask_json(&m.plan(&list_keys(), &[]), &bytes).unwrap() {
                Masked::Changed { body, .. } => body,
                Masked::Unchanged => panic!("secrets were planted"),
            };
            let text = String::from_utf8(out.clone()).unwrap();
            for secret in [&k1, &k2, &cs_key] {
                prop_assert!(!text.contains(secret.as_str()), "a planted secret survived");
            }
            prop_assert!(serde_json::from_slice::<Value>(&out).is_ok());
        }
    }
}
