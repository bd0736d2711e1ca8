//! The properties, as checks that panic when one fails. Shared, word for word, by the
//! property tests beside this file (proptest shrinks a failing input) and by the fuzz targets
//! in `fuzz/` (libFuzzer records it as a crash): docs/fuzzing.md.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use http::Method;
use serde_json::Value;

use portcullis::azure::batch;
use portcullis::azure::operation::{self, Operation, Plane};
use portcullis::azure::route::{self, Service};
use portcullis::config;
use portcullis::config::raw::{RawConfig, RawCredential, RawPolicy, RawSecret, RawSecretOrText};
use portcullis::mask::catalog::OwnedProfile;
use portcullis::mask::detect::Detector;
use portcullis::mask::stream::{LinkRewrite, StreamMasker};
use portcullis::mask::{Masked, Masker, Plan};

/// The Resource Manager host an absolute inner batch URL may name.
pub const ARM_HOST: &str = "management.azure.com";

/// The public host for `{vault}.vault.{public_host}` routing.
pub const PUBLIC_HOST: &str = "gw.example";

// === routing and naming ===

/// Characters a re-encoded segment keeps as they are (RFC 3986 pchar less `%`).
fn kept(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,=:@".contains(&b)
}

/// The longest path `normalize` accepts.
pub const MAX_PATH: usize = 4096;

/// Whether a re-encoded path is longer than [`MAX_PATH`], so that normalizing it again is
/// refused: finding F4 of docs/fuzzing.md. The fuzz targets skip what is already known.
pub fn known_f4(encoded: &str) -> bool {
    encoded.len() > MAX_PATH
}

/// What `normalize` accepted: a canonical decoded path and its canonical encoding.
/// `skip_known` skips the re-normalization checks for finding F4.
pub fn check_normalized(input: &str, decoded: &str, encoded: &str, skip_known: bool) {
    assert!(decoded.starts_with('/'), "decoded {decoded:?} of {input:?}");
    assert!(encoded.starts_with('/'), "encoded {encoded:?} of {input:?}");
    if decoded == "/" {
        assert_eq!(encoded, "/", "the root of {input:?}");
    } else {
        let segs: Vec<&str> = decoded[1..].split('/').collect();
        let enc: Vec<&str> = encoded[1..].split('/').collect();
        assert_eq!(
            segs.len(),
            enc.len(),
            "{input:?}: decoded {decoded:?} and encoded {encoded:?} differ in segments"
        );
        for (seg, e) in segs.iter().zip(&enc) {
            assert!(
                !seg.is_empty(),
                "{input:?}: an empty segment in {decoded:?}"
            );
            assert!(
                *seg != "." && *seg != "..",
                "{input:?}: a dot segment in {decoded:?}"
            );
            assert!(
                !seg.contains(['\\', ';', '%']) && !seg.chars().any(char::is_control),
                "{input:?}: segment {seg:?} hides a separator, parameter, escape or control"
            );
            // The encoding: kept characters and upper-case escapes only, no smuggled slash.
            let bytes = e.as_bytes();
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i] == b'%' {
                    let hex = &e[i + 1..i + 3];
                    assert!(
                        hex.bytes()
                            .all(|h| h.is_ascii_digit() || (b'A'..=b'F').contains(&h)),
                        "{input:?}: escape %{hex} in {encoded:?}"
                    );
                    assert!(
                        !matches!(hex, "2F" | "5C" | "25" | "3B"),
                        "{input:?}: %{hex} smuggled into {encoded:?}"
                    );
                    i += 3;
                } else {
                    assert!(
                        kept(bytes[i]),
                        "{input:?}: raw {:?} in {encoded:?}",
                        bytes[i]
                    );
                    i += 1;
                }
            }
        }
    }
    if skip_known && known_f4(encoded) {
        return;
    }
    // Idempotent: the re-encoding (what the upstream receives) reads back as exactly what
    // was evaluated, and so does the decoded form (nothing is ever decoded twice).
    assert_eq!(
        route::normalize(encoded),
        Ok((decoded.to_owned(), encoded.to_owned())),
        "re-normalizing the encoding of {input:?}"
    );
    assert_eq!(
        route::normalize(decoded),
        Ok((decoded.to_owned(), encoded.to_owned())),
        "re-normalizing the decoded form of {input:?}"
    );
}

/// What every successful naming looks like.
pub fn check_operation(op: &Operation) {
    assert!(op.action.is_ascii(), "{op:?}");
    assert!(!op.action.contains('*'), "{op:?}");
    assert!(op.action.split('/').all(|p| !p.is_empty()), "{op:?}");
    assert_eq!(
        op.scope.resource_id.is_some(),
        op.plane == Plane::Control,
        "{op:?}"
    );
    if let Some(id) = &op.scope.resource_id {
        assert!(id.starts_with('/'), "{op:?}");
    }
}

/// A request line: route it (with and without a public host), normalize its path, and name
/// it as ARM (and as Key Vault where it routes there). `skip_known`: see [`check_normalized`].
pub fn route_and_name(method: &str, host: &str, target: &str, skip_known: bool) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let normalized = route::normalize(path);
    if let Ok((decoded, encoded)) = &normalized {
        check_normalized(path, decoded, encoded, skip_known);
    }
    let method = Method::from_bytes(method.as_bytes()).ok();
    for public in [None, Some(PUBLIC_HOST)] {
        let Ok(r) = route::route(host, path, public) else {
            continue;
        };
        let Ok((decoded, encoded)) = &normalized else {
            panic!("{path:?} routed, but normalize refuses it");
        };
        // What is forwarded reads back as exactly what is evaluated.
        if skip_known && known_f4(&r.upstream_path) {
            continue;
        }
        assert_eq!(
            route::normalize(&r.upstream_path),
            Ok((r.path.clone(), r.upstream_path.clone())),
            "{host:?} {path:?}: the forwarded path is not the evaluated one"
        );
        match &r.service {
            Service::Arm => {
                assert_eq!((&r.path, &r.upstream_path), (decoded, encoded));
            }
            Service::KeyVault { vault } => {
                assert!(route::valid_vault(vault), "{vault:?}");
                assert!(
                    r.path == "/" || decoded.ends_with(r.path.as_str()),
                    "{path:?}: {:?} is not the tail of {decoded:?}",
                    r.path
                );
                if let Some(m) = &method
                    && let Ok(op) = operation::name_keyvault(m, vault, &r.path, query)
                {
                    check_operation(&op);
                }
            }
        }
    }
    if let (Some(m), Ok((decoded, _))) = (&method, &normalized)
        && let Ok(op) = operation::name_arm(m, decoded, query)
    {
        check_operation(&op);
        // Naming is a function of the request.
        assert_eq!(operation::name_arm(m, decoded, query), Ok(op));
    }
}

// === batches ===

/// Whether an absolute inner URL has a `?` before the first `/` after its authority
/// (`https://management.azure.com?x=/subscriptions/...`): finding F1 of docs/fuzzing.md,
/// judged on a path that is not the URL's. The fuzz targets skip what is already known.
pub fn known_f1(url: &str) -> bool {
    url.find("://").is_some_and(|i| {
        let rest = &url[i + 3..];
        rest.find('?')
            .is_some_and(|q| rest.find('/').is_none_or(|s| q < s))
    })
}

/// A batch body: whatever `batch::parse` accepts, it accepts whole, with every inner path in
/// normalized form, every inner request named as if it were sent alone, and judged on the
/// path a URL parser finds in its URL. `skip_known` skips that last check for finding F1,
/// and the re-normalization of long paths for F4.
pub fn batch_parse(bytes: &[u8], skip_known: bool) {
    let Ok(doc) = serde_json::from_slice::<Value>(bytes) else {
        return;
    };
    let Ok(inner) = batch::parse(&doc, &[ARM_HOST.to_owned()]) else {
        return;
    };
    let requests = doc["requests"]
        .as_array()
        .expect("an accepted batch has requests");
    assert_eq!(inner.len(), requests.len(), "every request, or none");
    assert!(!inner.is_empty() && inner.len() <= batch::MAX_INNER);
    for (i, r) in inner.iter().zip(requests) {
        let (decoded, encoded) = route::normalize(&i.path)
            .unwrap_or_else(|e| panic!("inner path {:?} does not re-normalize: {e}", i.path));
        assert_eq!(decoded, i.path, "inner path {:?} is not normalized", i.path);
        check_normalized(&i.path, &decoded, &encoded, skip_known);
        check_operation(&i.operation);
        assert!(
            !i.operation
                .action
                .eq_ignore_ascii_case("Microsoft.Resources/batch/action"),
            "a batch inside a batch"
        );
        assert_eq!(
            operation::name_arm(&i.method, &i.path, &i.query).as_ref(),
            Ok(&i.operation),
            "named differently than if sent alone"
        );
        // The path judged is the path a URL parser finds in the inner URL.
        let url = r
            .get("url")
            .or_else(|| r.get("relativeUrl"))
            .and_then(Value::as_str)
            .expect("an accepted request has a url");
        if skip_known && known_f1(url) {
            continue;
        }
        let absolute = if url.starts_with('/') {
            format!("https://{ARM_HOST}{url}")
        } else {
            url.to_owned()
        };
        let parsed = url::Url::parse(&absolute)
            .unwrap_or_else(|e| panic!("accepted inner url {url:?} does not parse: {e}"));
        let (seen, _) = route::normalize(parsed.path()).unwrap_or_else(|e| {
            panic!(
                "inner url {url:?}: its path as parsed, {:?}, is refused: {e}",
                parsed.path()
            )
        });
        assert_eq!(
            seen, i.path,
            "inner url {url:?}: judged as {:?}, but its path is {:?}",
            i.path, seen
        );
    }
}

// === configuration and policy ===

/// A directory that does not exist: every relative file a configuration names fails to
/// read (even through `..`), so the loaders never touch a real file.
pub const BASE: &str = "/nonexistent-portcullis-fuzz/config";

fn fuzz_env(k: &str) -> Option<String> {
    // The Azure conventions stay unset; any other variable a secret names is set.
    (!k.starts_with("AZURE_") && !k.starts_with("IDENTITY_")).then(|| format!("value-of-{k}"))
}

fn relative(p: &Path) -> bool {
    p.is_relative()
}

fn secret_relative(s: &RawSecret) -> bool {
    match s {
        RawSecret::Env(_) => true,
        RawSecret::File(p) => relative(p),
    }
}

fn text_relative(s: &RawSecretOrText) -> bool {
    match s {
        RawSecretOrText::Text(_) => true,
        RawSecretOrText::Secret(s) => secret_relative(s),
    }
}

/// Whether every file that validating `raw` reads is relative to [`BASE`] (so cannot be
/// read): an absolute path could name `/dev/zero` or a pipe and hang the check, which would
/// say nothing about the loader.
pub fn reads_only_relative(raw: &RawConfig) -> bool {
    raw.upstream.credentials.values().all(|c| match c {
        RawCredential::ClientSecret { client_secret, .. } => secret_relative(client_secret),
        RawCredential::ClientCertificate {
            certificate_file, ..
        } => relative(certificate_file),
        RawCredential::WorkloadIdentity { .. } => true,
        RawCredential::ManagedIdentity {
            identity_header, ..
        } => identity_header.as_ref().is_none_or(secret_relative),
    }) && raw.store.as_ref().is_none_or(|s| text_relative(&s.url))
        && raw.keys.url_binding.as_ref().is_none_or(secret_relative)
        && raw.keys.mask.as_ref().is_none_or(secret_relative)
        && raw
            .approvals
            .notify
            .iter()
            .all(|w| text_relative(&w.url) && w.secret.as_ref().is_none_or(secret_relative))
        && raw.policy.include.as_deref().is_none_or(relative)
}

/// YAML text through every loader that reads it: the generic read `policy check` starts
/// with, the whole configuration (`config::parse`), and a policy file (`validate_policy`).
pub fn config_and_policy(text: &str) {
    let _ = serde_saphyr::from_str::<Value>(text);
    let base = PathBuf::from(BASE);
    if let Ok(raw) = serde_saphyr::from_str::<RawConfig>(text)
        && reads_only_relative(&raw)
    {
        match config::parse(text, "fuzz.yaml", &base, &fuzz_env) {
            Ok(_) => {}
            Err(config::ConfigError::Invalid(list)) => {
                assert!(!list.is_empty(), "refused without a reason");
                for m in &list {
                    assert!(
                        m.starts_with("fuzz.yaml"),
                        "a problem without its file: {m}"
                    );
                }
            }
            Err(_) => {}
        }
    }
    if let Ok(raw) = serde_saphyr::from_str::<RawPolicy>(text)
        && raw.include.as_deref().is_none_or(relative)
    {
        let credentials: BTreeSet<String> = ["baseline".to_owned()].into();
        let checked = config::policy::validate_policy("fuzz.yaml", &base, raw, Some(&credentials));
        for m in checked.errors.iter().chain(&checked.warnings) {
            assert!(
                m.starts_with("fuzz.yaml:"),
                "a problem without its place: {m}"
            );
        }
    }
}

// === masking ===

/// A masker and the plans the mask checks choose from.
pub struct MaskFixture {
    pub masker: Arc<Masker>,
    /// (name, plan); `None` is the masker's audit plan. The first [`STREAMABLE`] have no
    /// catalog profile, so the streaming masker stands for them.
    plans: Vec<(&'static str, Option<Plan>)>,
}

impl MaskFixture {
    pub fn len(&self) -> usize {
        self.plans.len()
    }

    /// The plan called `name` (see [`mask_fixture`]).
    pub fn named(&self, name: &str) -> &Plan {
        let which = self
            .plans
            .iter()
            .position(|(n, _)| *n == name)
            .expect("a plan of the fixture");
        self.plan(which).1
    }

    pub fn plan(&self, which: usize) -> (&'static str, &Plan) {
        let (name, plan) = &self.plans[which % self.plans.len()];
        (name, plan.as_ref().unwrap_or(self.masker.audit_plan()))
    }
}

/// How many of the fixture's plans (the first ones) have no catalog profile.
pub const STREAMABLE: usize = 4;

fn arm(method: Method, path: &str) -> Operation {
    operation::name_arm(&method, path, "api-version=2024-01-01").expect("a known operation")
}

const RG: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg";

/// The masker (every detector, plus one configured profile) and its plans; built once.
pub fn mask_fixture() -> &'static MaskFixture {
    static FIXTURE: OnceLock<MaskFixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let profile = OwnedProfile {
            name: "fuzz-profile".into(),
            actions: vec!["Microsoft.Fuzz/*".into()],
            paths: vec![
                "secret".into(),
                "*.password".into(),
                "items[*].key".into(),
                "=a.b".into(),
            ],
        };
        let masker = Arc::new(Masker::new(
            b"fuzz-key".to_vec(),
            Detector::ALL.to_vec(),
            vec![profile],
        ));
        let vm = arm(
            Method::GET,
            &format!("{RG}/providers/Microsoft.Compute/virtualMachines/vm1"),
        );
        let list_keys = arm(
            Method::POST,
            &format!("{RG}/providers/Microsoft.Storage/storageAccounts/sa1/listKeys"),
        );
        let deployment = arm(
            Method::GET,
            &format!("{RG}/providers/Microsoft.Resources/deployments/d1"),
        );
        let custom = arm(
            Method::GET,
            &format!("{RG}/providers/Microsoft.Fuzz/things/t1"),
        );
        let secret =
            operation::name_keyvault(&Method::GET, "kv1", "/secrets/s1", "api-version=7.4")
                .expect("a known operation");
        let plans = vec![
            // Detectors only: what the streaming masker stands for.
            ("detectors", Some(masker.plan(&vm, &[]))),
            ("audit", None),
            ("unmask-jwt", Some(masker.plan(&vm, &["jwt".into()]))),
            ("unmask-all", Some(masker.plan(&list_keys, &["*".into()]))),
            // Catalog profiles (the one-pass scanner).
            ("storage-keys", Some(masker.plan(&list_keys, &[]))),
            ("deployment-outputs", Some(masker.plan(&deployment, &[]))),
            ("keyvault-secret", Some(masker.plan(&secret, &[]))),
            ("configured-profile", Some(masker.plan(&custom, &[]))),
            // A batch (the tree path): `a` and `b` are known, other names get every profile.
            (
                "batch",
                Some(masker.plan_batch(&[("a".into(), list_keys), ("b".into(), deployment)], &[])),
            ),
        ];
        MaskFixture { masker, plans }
    })
}

fn body_of(m: Masked, input: &[u8]) -> Vec<u8> {
    match m {
        Masked::Unchanged => input.to_vec(),
        Masked::Changed { body, count, kinds } => {
            assert!(
                count > 0 && !kinds.is_empty(),
                "changed, but nothing counted"
            );
            body
        }
    }
}

/// Streams `body` through a fresh streaming masker in chunks cut at `cuts`.
pub fn stream(
    masker: &Arc<Masker>,
    plan: &Plan,
    rewrite: Option<LinkRewrite>,
    body: &[u8],
    cuts: &[usize],
) -> Option<Vec<u8>> {
    let mut s = StreamMasker::new(masker.clone(), plan, rewrite);
    let mut out = Vec::new();
    let mut at = 0;
    for &cut in cuts.iter().chain(std::iter::once(&body.len())) {
        let cut = cut.clamp(at, body.len());
        s.feed(&body[at..cut], &mut out).ok()?;
        at = cut;
    }
    s.finish(&mut out).ok()?;
    Some(out)
}

fn rewrite() -> LinkRewrite {
    Box::new(|u: &str| {
        u.strip_prefix("https://up/")
            .map(|rest| format!("https://gw/{rest}"))
    })
}

/// A body masked by plan `which`: never a panic; JSON stays JSON; masking is idempotent;
/// the streaming masker, however the body is cut, gives what the whole-body masker gives.
/// `skip_known` leaves out the comparison on JSON whose strings cannot all be decoded (a
/// lone surrogate escape, a byte that is not UTF-8): finding F2 of docs/fuzzing.md; and
/// idempotence, which F5, F6 and F7 break in several ways (masking changes the context a
/// detector reads), so that a run looks for anything else.
pub fn mask(which: usize, body: &[u8], cut: usize, step: usize, skip_known: bool) {
    let fx = mask_fixture();
    let which = which % fx.len();
    let (name, plan) = fx.plan(which);
    let m = &fx.masker;
    // `json`: a document serde_json reads; `grammar`: JSON by its grammar, strings that
    // cannot be decoded included (what the one-pass scanner accepts).
    let json = serde_json::from_slice::<Value>(body).is_ok();
    let grammar = serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok();
    let compare = if skip_known { json } else { grammar };

    let masked = m.mask_json(plan, body);
    if json {
        assert!(masked.is_ok(), "{name}: JSON refused: {masked:?}");
    }
    if let Ok(masked) = masked {
        let out = body_of(masked, body);
        if json {
            assert!(
                serde_json::from_slice::<Value>(&out).is_ok(),
                "{name}: the masked answer is no longer JSON: {}",
                String::from_utf8_lossy(&out)
            );
        }
        let again = m
            .mask_json(plan, &out)
            .unwrap_or_else(|e| panic!("{name}: the masked answer is refused: {e}"));
        if !skip_known {
            assert_eq!(
                String::from_utf8_lossy(&body_of(again, &out)),
                String::from_utf8_lossy(&out),
                "{name}: masking the masked answer changed it"
            );
        }
        if which < STREAMABLE && compare {
            // The whole-body masker has no nextLink rewrite: stream without one.
            let step = step.max(1);
            let cuts_one = [cut % (body.len() + 1)];
            let cuts_step: Vec<usize> = (step..body.len()).step_by(step).collect();
            for cuts in [&[][..], &cuts_one[..], &cuts_step[..]] {
                let streamed = stream(m, plan, None, body, cuts);
                assert_eq!(
                    streamed.as_deref().map(String::from_utf8_lossy),
                    Some(String::from_utf8_lossy(&out)),
                    "{name}: streamed in chunks cut at {cuts:?}, the answer differs"
                );
            }
        }
    }

    // Streaming alone (any bytes, with nextLink rewriting): the cut never matters.
    if which < STREAMABLE {
        let step = step.max(1);
        let whole = stream(m, plan, Some(rewrite()), body, &[]);
        let cuts_one = [cut % (body.len() + 1)];
        let cuts_step: Vec<usize> = (step..body.len()).step_by(step).collect();
        for cuts in [&cuts_one[..], &cuts_step[..]] {
            let other = stream(m, plan, Some(rewrite()), body, cuts);
            assert_eq!(
                other.as_deref().map(String::from_utf8_lossy),
                whole.as_deref().map(String::from_utf8_lossy),
                "{name}: streaming with cuts at {cuts:?} differs from streaming whole"
            );
        }
        if let Some(out) = &whole
            && json
        {
            assert!(
                serde_json::from_slice::<Value>(out).is_ok(),
                "{name}: streamed JSON broke"
            );
        }
    }

    // Text answers: never a panic, and idempotent.
    let text = body_of(m.mask_text(plan, body), body);
    let again = body_of(m.mask_text(plan, &text), &text);
    if !skip_known {
        assert_eq!(
            String::from_utf8_lossy(&again),
            String::from_utf8_lossy(&text),
            "{name}: masking the masked text changed it"
        );
    }
}
