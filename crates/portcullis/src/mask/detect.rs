//! Detectors: secret-shaped substrings found anywhere in a text, whatever operation returned it.
//!
//! The catalog knows where Azure puts secrets in the answers it knows about; detectors are the
//! net under it, for secrets that show up in app settings, deployment outputs, logs or plain
//! bodies. The shapes are those of azure-notes §5 ("String shapes worth detecting anywhere"):
//!
//! - Storage: `DefaultEndpointsProtocol=https;AccountName=..;AccountKey=<88-char base64>`,
//!   <https://learn.microsoft.com/azure/storage/common/storage-configure-connection-string>
//! - SAS: `sv=..&se=..&sig=..`,
//!   <https://learn.microsoft.com/rest/api/storageservices/create-service-sas>
//! - Service Bus / Event Hubs: `Endpoint=sb://..;SharedAccessKeyName=..;SharedAccessKey=..`,
//!   <https://learn.microsoft.com/azure/service-bus-messaging/service-bus-sas>
//! - Cosmos DB: `AccountEndpoint=https://..;AccountKey=..`,
//!   <https://learn.microsoft.com/azure/cosmos-db/nosql/how-to-dotnet-get-started>
//! - App Configuration: `Endpoint=https://..azconfig.io;Id=..;Secret=..`,
//!   <https://learn.microsoft.com/azure/azure-app-configuration/rest-api-authentication-hmac>
//! - Azure Cache for Redis (StackExchange.Redis): `host:6380,password=..,ssl=True`,
//!   <https://stackexchange.github.io/StackExchange.Redis/Configuration>
//! - ADO.NET / SQL: `Server=..;User ID=..;Password=..;` (or `Pwd=`),
//!   <https://learn.microsoft.com/dotnet/api/system.data.sqlclient.sqlconnection.connectionstring>
//! - JWTs (RFC 7519 compact form), PEM private keys (RFC 7468), kubeconfig user credentials
//!   (<https://kubernetes.io/docs/concepts/configuration/organize-cluster-access-kubeconfig/>).
//!
//! No regex engine: each detector is a small scanner over bytes. Every pattern is delimited by
//! ASCII bytes, so every range returned starts and ends at a char boundary; `find` still checks
//! that before returning, so a mistake here drops a finding instead of panicking later.
//!
//! Extent rules, shared by the `Key=value` shapes: keys match ASCII-case-insensitively (Azure
//! SDKs parse connection strings so) and only at a key boundary (not after a letter, digit or
//! `_`, so `SharedAccessKeyName=` or `ClientSecret=` do not match; after `-` they do, so a
//! `Password=` right after a PEM block's `-----` is caught in the same pass); the value is what is
//! masked and ends at `;`, `"`, `'`, ASCII whitespace or the end of text, and also at `&`/`#`
//! for a SAS `sig`, at `,` for Redis. Empty values, `*`-only values, `<placeholder>` values and
//! values already masked (`[masked:..`) are not findings.

use serde::{Deserialize, Serialize};

/// One shape of secret. The serde and [`Detector::name`] spellings are the same, stable names:
/// they appear in placeholders and in configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Detector {
    /// The value of `AccountKey=` in a connection string without `AccountEndpoint=`.
    StorageConnectionString,
    /// The value of `sig=` in a query string that also has `sv=` or `se=` (only the signature
    /// is masked: the rest of a SAS says what it grants and is worth keeping readable).
    SasToken,
    /// The value of `SharedAccessKey=` (Service Bus, Event Hubs, Relay).
    ServiceBusConnectionString,
    /// The value of `AccountKey=` in a connection string with `AccountEndpoint=`.
    CosmosConnectionString,
    /// The value of `Secret=` in a connection string that also has `Id=`.
    AppConfigConnectionString,
    /// The value of `password=` right after a `,` (StackExchange.Redis options are
    /// comma-separated) or in a string naming `.redis.cache.`.
    RedisConnectionString,
    /// The value of any other `Password=`, and of `Pwd=`.
    AdoNetConnectionString,
    /// A whole compact JWT: `eyJ..` `.` `eyJ..` `.` signature.
    Jwt,
    /// A whole PEM block whose label ends in `PRIVATE KEY`, markers included.
    PemPrivateKey,
    /// The value of a kubeconfig `client-key-data:`, `token:`, `id-token:` or
    /// `refresh-token:` YAML key.
    KubeconfigCredential,
}

// === impl Detector ===

impl Detector {
    /// Every detector, in the order that breaks ties between findings starting at one byte.
    pub const ALL: &'static [Detector] = &[
        Detector::StorageConnectionString,
        Detector::SasToken,
        Detector::ServiceBusConnectionString,
        Detector::CosmosConnectionString,
        Detector::AppConfigConnectionString,
        Detector::RedisConnectionString,
        Detector::AdoNetConnectionString,
        Detector::Jwt,
        Detector::PemPrivateKey,
        Detector::KubeconfigCredential,
    ];

    /// Stable name used in placeholders and configuration, e.g. "storage-connection-string".
    pub fn name(self) -> &'static str {
        match self {
            Detector::StorageConnectionString => "storage-connection-string",
            Detector::SasToken => "sas-token",
            Detector::ServiceBusConnectionString => "service-bus-connection-string",
            Detector::CosmosConnectionString => "cosmos-connection-string",
            Detector::AppConfigConnectionString => "app-config-connection-string",
            Detector::RedisConnectionString => "redis-connection-string",
            Detector::AdoNetConnectionString => "ado-net-connection-string",
            Detector::Jwt => "jwt",
            Detector::PemPrivateKey => "pem-private-key",
            Detector::KubeconfigCredential => "kubeconfig-credential",
        }
    }

    fn rank(self) -> usize {
        Detector::ALL
            .iter()
            .position(|d| *d == self)
            .unwrap_or(usize::MAX)
    }
}

/// A secret found in `text`: the byte range of the secret value to replace (always at
/// char boundaries), and which detector found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub start: usize,
    pub end: usize,
    pub detector: Detector,
}

/// Placeholders written by the masker start so (see `mask/mod.rs`); a value already masked is
/// left alone, so masking twice changes nothing.
const ALREADY_MASKED: &[u8] = b"[masked:";

/// How far around a key we look for the rest of its connection string (`AccountEndpoint=`,
/// `Id=`, `sv=`). Real connection strings and SAS queries fit; the bound keeps pathological
/// inputs linear.
const CONTEXT_WINDOW: usize = 512;

/// The shortest JWT part we accept: `{"alg":"none"}` is 19 base64url chars; shorter `eyJ..`
/// runs are far more likely to be something else.
const JWT_MIN_PART: usize = 16;

/// All non-overlapping findings, in order, of the enabled detectors.
///
/// Where findings overlap they are merged into one, named by the earlier (at the same start
/// the longer, then the one first in [`Detector::ALL`]).
pub fn find(text: &str, enabled: &[Detector]) -> Vec<Finding> {
    let b = text.as_bytes();
    if enabled.is_empty() || !might_contain_secret(b) {
        return Vec::new();
    }
    let on = |d: Detector| enabled.contains(&d);
    let mut found = Vec::new();
    if on(Detector::StorageConnectionString) || on(Detector::CosmosConnectionString) {
        account_keys(b, &mut found);
    }
    if on(Detector::SasToken) {
        sas_signatures(b, &mut found);
    }
    if on(Detector::ServiceBusConnectionString) {
        for (_, v) in key_values(b, b"sharedaccesskey", b"") {
            found.push(finding(v, Detector::ServiceBusConnectionString));
        }
    }
    if on(Detector::AppConfigConnectionString) {
        app_config_secrets(b, &mut found);
    }
    if on(Detector::RedisConnectionString) || on(Detector::AdoNetConnectionString) {
        passwords(b, &mut found);
    }
    if on(Detector::Jwt) {
        jwts(b, &mut found);
    }
    if on(Detector::PemPrivateKey) {
        pem_private_keys(b, &mut found);
    }
    if on(Detector::KubeconfigCredential) {
        kubeconfig_credentials(b, &mut found);
    }

    found.retain(|f| {
        on(f.detector)
            && f.start < f.end
            && f.end <= text.len()
            && text.is_char_boundary(f.start)
            && text.is_char_boundary(f.end)
    });
    found.sort_by_key(|f| (f.start, usize::MAX - f.end, f.detector.rank()));
    // Overlapping findings are merged, so what either covers is masked: dropping the later
    // one whole would let its end through (a PEM key starting inside a password's value).
    let mut kept: Vec<Finding> = Vec::with_capacity(found.len());
    for f in found {
        match kept.last_mut() {
            Some(last) if f.start < last.end => last.end = last.end.max(f.end),
            _ => kept.push(f),
        }
    }
    kept
}

/// A fast pre-check: false means `find` would certainly return nothing.
///
/// One pass over the bytes, looking only at the last byte of each marker (`=` or the `D` of
/// a percent-encoded `%3D`, `:`, the third letter of a JWT's start, the `N` of `-----BEGIN`)
/// and comparing the bytes before it, case-insensitively (blanks before `=` and `:`
/// skipped): every detector needs one of these markers, so a body without any skips the
/// scanners (and the UTF-8 check) entirely.
pub fn might_contain_secret(bytes: &[u8]) -> bool {
    const KEYS: &[&[u8]] = &[
        b"accountkey",
        b"sig",
        b"sharedaccesskey",
        b"secret",
        b"password",
        b"pwd",
    ];
    // kubeconfig keys: YAML `token:`, JSON `"token":`, JSON kept in JSON `\"token\":`.
    const COLON: &[&[u8]] = &[
        b"key-data",
        b"token",
        b"key-data\"",
        b"token\"",
        b"key-data\\\"",
        b"token\\\"",
    ];
    let key_before = |head: &[u8], keys: &[&[u8]]| keys.iter().any(|k| ends_with_ci(head, k));
    (0..bytes.len()).any(|i| {
        let head = &bytes[..i];
        match bytes[i] {
            b'=' => key_before(trim_blanks(head), KEYS),
            b'D' | b'd' => {
                (ends_with_ci(head, b"%3") && key_before(&head[..head.len() - 2], KEYS))
                    || (ends_with_ci(head, b"%253") && key_before(&head[..head.len() - 4], KEYS))
            }
            b':' => key_before(trim_blanks(head), COLON),
            b'J' | b'j' => ends_with_ci(head, b"ey"),
            b'A' => head.ends_with(b"ey") && jwt_may_start(&head[..head.len() - 2]),
            b'o' | b'0' | b'k' => head.ends_with(b"ew") && jwt_may_start(&head[..head.len() - 2]),
            b'N' | b'n' => ends_with_ci(head, b"-----begi"),
            _ => false,
        }
    })
}

/// Whether a JWT may start after `head` (not inside a longer base64url run or after a `.`).
fn jwt_may_start(head: &[u8]) -> bool {
    head.last().is_none_or(|c| !is_b64url(*c) && *c != b'.')
}

fn trim_blanks(mut head: &[u8]) -> &[u8] {
    while let [rest @ .., b' ' | b'\t'] = head {
        head = rest;
    }
    head
}

/// The pre-check for a JSON string's (or body's) raw bytes: an escape may spell any marker
/// or the blanks around it (`\u0041ccountKey=`, `Password\t=`), so a string holding one must
/// be decoded to be checked.
pub fn might_contain_secret_json(raw: &[u8]) -> bool {
    raw.contains(&b'\\') || might_contain_secret(raw)
}

/// Replaces each finding in `text` with `replacement(detector, secret_str)`; returns None if
/// nothing was found.
pub fn redact(
    text: &str,
    enabled: &[Detector],
    replacement: &mut dyn FnMut(Detector, &str) -> String,
) -> Option<String> {
    // Masking a finding can change what the text around it says (a `}` inside a masked
    // value no longer closes the object a later `"token"` sits in), so the text is read
    // again until nothing more is found: what comes out is masked as a whole, and masking
    // it again changes nothing. Ordinary text settles in one or two passes; text built to
    // need more has everything from its first remaining finding on masked at the last.
    const PASSES: usize = 8;
    let mut current: Option<String> = None;
    for pass in 0..PASSES {
        let now = current.as_deref().unwrap_or(text);
        let findings = find(now, enabled);
        let Some(first) = findings.first() else {
            break;
        };
        let mut out = String::with_capacity(now.len());
        if pass + 1 == PASSES {
            out.push_str(now.get(..first.start).unwrap_or_default());
            let rest = now.get(first.start..).unwrap_or_default();
            out.push_str(&replacement(first.detector, rest));
            current = Some(out);
            break;
        }
        let mut at = 0;
        for f in &findings {
            // `find` only returns in-bounds, char-boundary ranges; `get` keeps that a
            // non-panic.
            let (Some(before), Some(secret)) = (now.get(at..f.start), now.get(f.start..f.end))
            else {
                continue;
            };
            out.push_str(before);
            out.push_str(&replacement(f.detector, secret));
            at = f.end;
        }
        out.push_str(now.get(at..).unwrap_or_default());
        if out == now {
            break;
        }
        current = Some(out);
    }
    current
}

// === scanners ===

fn finding((start, end): (usize, usize), detector: Detector) -> Finding {
    Finding {
        start,
        end,
        detector,
    }
}

/// `AccountKey=` belongs to Cosmos when its connection string also names `AccountEndpoint=`,
/// to Storage otherwise (Storage strings say `AccountName=`/`BlobEndpoint=`).
fn account_keys(b: &[u8], found: &mut Vec<Finding>) {
    for (key, value) in key_values(b, b"accountkey", b"") {
        let (lo, hi) = segment(b, key);
        let detector = if find_param(&b[lo..hi], b"accountendpoint") {
            Detector::CosmosConnectionString
        } else {
            Detector::StorageConnectionString
        };
        found.push(finding(value, detector));
    }
}

/// `sig=` alone is too common a word to mask; with `sv=` (service version) or `se=` (expiry)
/// in the same query it is a SAS. Only the signature is masked. The query is the whole URL
/// around it (bounded by whitespace, quotes and angle brackets, however long: `sv=` may come
/// long after `sig=`), read once per URL so many signatures stay linear; a SAS URL
/// percent-encoded inside another URL (`sig%3D..%26sv%3D..`) counts.
fn sas_signatures(b: &[u8], found: &mut Vec<Finding>) {
    // The value ends where its query does (also at `<`, `>`), so masking it cannot join the
    // query to the next one and change what a second pass sees.
    let mut url: Option<(usize, usize, bool)> = None;
    for (key, value) in key_values(b, b"sig", b"&#<>") {
        let is_sas = match url {
            Some((lo, hi, is_sas)) if lo <= key && key < hi => is_sas,
            _ => {
                let (lo, hi) = url_around(b, key);
                let query = &b[lo..hi];
                let is_sas = find_param(query, b"sv") || find_param(query, b"se");
                url = Some((lo, hi, is_sas));
                is_sas
            }
        };
        if is_sas {
            found.push(finding(value, Detector::SasToken));
        }
    }
}

/// `Secret=` is masked only beside `Id=`, the App Configuration access key pair.
fn app_config_secrets(b: &[u8], found: &mut Vec<Finding>) {
    for (key, value) in key_values(b, b"secret", b"") {
        let (lo, hi) = segment(b, key);
        if find_param(&b[lo..hi], b"id") {
            found.push(finding(value, Detector::AppConfigConnectionString));
        }
    }
}

/// `password=` is Redis when it follows a `,` or the string names a Redis cache host; the
/// Redis value also ends at `,`. Everything else (and every `Pwd=`) is ADO.NET.
fn passwords(b: &[u8], found: &mut Vec<Finding>) {
    for (key, start) in assignments(b, b"password") {
        let (lo, hi) = segment(b, key);
        let redis =
            (key > 0 && b[key - 1] == b',') || find_ci(&b[lo..hi], b".redis.cache.", 0).is_some();
        if redis {
            if let Some(v) = value_at(b, start, b",") {
                found.push(finding(v, Detector::RedisConnectionString));
            }
        } else if let Some(v) = value_at(b, start, b"") {
            found.push(finding(v, Detector::AdoNetConnectionString));
        }
    }
    for (_, v) in key_values(b, b"pwd", b"") {
        found.push(finding(v, Detector::AdoNetConnectionString));
    }
}

/// How a JWT's header and payload start: base64 of `{"`, or of `{` and whitespace
/// (`{ "`, `{\n`, `{\r`, `{\t`), since a JOSE header is JSON and may be spaced.
const JWT_STARTS: &[&[u8]] = &[b"eyJ", b"eyA", b"ewo", b"ew0", b"ewk"];

fn is_jwt_part(b: &[u8], at: usize) -> bool {
    JWT_STARTS
        .iter()
        .any(|p| b[at.min(b.len())..].starts_with(p))
}

/// Compact JWTs: three base64url parts, the first two JSON objects (so `eyJ`, base64 of `{"`,
/// or another [`JWT_STARTS`]), each at least [`JWT_MIN_PART`] long, not inside a longer
/// base64url run.
fn jwts(b: &[u8], found: &mut Vec<Finding>) {
    let mut i = 0;
    while let Some(at) = find_cs(b, b"e", i) {
        i = at + 1;
        if !is_jwt_part(b, at) || (at > 0 && (is_b64url(b[at - 1]) || b[at - 1] == b'.')) {
            continue;
        }
        let header_end = b64url_run(b, at);
        if header_end - at < JWT_MIN_PART || b.get(header_end) != Some(&b'.') {
            continue;
        }
        let payload = header_end + 1;
        let payload_end = b64url_run(b, payload);
        if !is_jwt_part(b, payload)
            || payload_end - payload < JWT_MIN_PART
            || b.get(payload_end) != Some(&b'.')
        {
            continue;
        }
        let sig = payload_end + 1;
        let sig_end = b64url_run(b, sig);
        if sig_end - sig < JWT_MIN_PART {
            continue;
        }
        found.push(finding((at, sig_end), Detector::Jwt));
        i = sig_end;
    }
}

/// `-----BEGIN <label>-----` .. `-----END <label>-----` for labels ending in `PRIVATE KEY`
/// (`RSA`, `EC`, `ENCRYPTED`, `OPENSSH`, PKCS#8 plain) or `PRIVATE KEY BLOCK` (an OpenPGP
/// armored secret key, RFC 4880 §6.2), in any case (some tools write lower case). A block
/// without its END marker is still a key: it is masked up to the next `"` (so a JSON text
/// keeps its shape) or the end.
fn pem_private_keys(b: &[u8], found: &mut Vec<Finding>) {
    const BEGIN: &[u8] = b"-----begin ";
    let mut i = 0;
    while let Some(at) = find_ci(b, BEGIN, i) {
        i = at + 1;
        let label_start = at + BEGIN.len();
        let label_len = b[label_start..]
            .iter()
            .take(64)
            .take_while(|c| c.is_ascii_alphabetic() || **c == b' ')
            .count();
        let label = &b[label_start..label_start + label_len];
        let private =
            ends_with_ci(label, b"private key") || ends_with_ci(label, b"private key block");
        if !private || !b[label_start + label_len..].starts_with(b"-----") {
            continue;
        }
        let body = label_start + label_len + 5;
        let mut end_marker = b"-----end ".to_vec();
        end_marker.extend_from_slice(label);
        end_marker.extend_from_slice(b"-----");
        let end = match find_ci(b, &end_marker, body) {
            Some(e) => e + end_marker.len(),
            None => find_cs(b, b"\"", body).unwrap_or(b.len()),
        };
        found.push(finding((at, end), Detector::PemPrivateKey));
        i = end;
    }
}

/// kubeconfig `users[].user` credentials, in block YAML: the key starts its line (after
/// indentation and an optional `- `; a literal `\n` counts as a line break, for YAML held in a
/// JSON string), a space follows the colon, and the plain or quoted scalar after it is masked.
/// `null`, `~` and block scalars (`|`, `>`) are skipped.
fn kubeconfig_credentials(b: &[u8], found: &mut Vec<Finding>) {
    const KEYS: &[&[u8]] = &[b"client-key-data:", b"token:"];
    for key in KEYS {
        let mut i = 0;
        while let Some(at) = find_cs(b, key, i) {
            i = at + 1;
            // `token:` also ends `id-token:` and `refresh-token:` (auth-provider config).
            let mut line_key = at;
            for prefix in [&b"id-"[..], b"refresh-"] {
                if *key == b"token:" && b[..at].ends_with(prefix) {
                    line_key = at - prefix.len();
                }
            }
            if !starts_yaml_line(b, line_key) {
                continue;
            }
            let mut v = at + key.len();
            if !matches!(b.get(v), Some(b' ' | b'\t')) {
                continue;
            }
            while matches!(b.get(v), Some(b' ' | b'\t')) {
                v += 1;
            }
            let range = match b.get(v) {
                Some(&q @ (b'"' | b'\'')) => {
                    let start = v + 1;
                    let len = b[start..]
                        .iter()
                        .take_while(|c| **c != q && **c != b'\n' && **c != b'\r')
                        .count();
                    (start, start + len)
                }
                _ => {
                    let len = b[v..]
                        .iter()
                        .take_while(|c| !c.is_ascii_whitespace() && !b"\"'\\,}".contains(c))
                        .count();
                    (v, v + len)
                }
            };
            let value = &b[range.0..range.1];
            let block_scalar = value.starts_with(b"|") || value.starts_with(b">");
            if is_non_secret(value) || matches!(value, b"null" | b"~") || block_scalar {
                continue;
            }
            found.push(finding(range, Detector::KubeconfigCredential));
        }
    }
    kubeconfig_json_credentials(b, found);
}

/// The same credentials in a kubeconfig written as JSON (`kubectl config view -o json`, or
/// JSON kept in a string): `"token": "..."` in an object that is the value of `"user"` (or
/// of an auth provider's `"config"`). Only the string value is masked.
fn kubeconfig_json_credentials(b: &[u8], found: &mut Vec<Finding>) {
    const KEYS: &[&[u8]] = &[
        b"\"client-key-data\"",
        b"\"token\"",
        b"\"id-token\"",
        b"\"refresh-token\"",
    ];
    for key in KEYS {
        let mut i = 0;
        while let Some(at) = find_cs(b, key, i) {
            i = at + 1;
            let mut v = skip_blanks(b, at + key.len());
            if b.get(v) != Some(&b':') {
                continue;
            }
            v = skip_blanks(b, v + 1);
            if b.get(v) != Some(&b'"') || !in_user_object(b, at) {
                continue;
            }
            let start = v + 1;
            let mut end = start;
            while end < b.len() && b[end] != b'"' {
                end += if b[end] == b'\\' { 2 } else { 1 };
            }
            let end = end.min(b.len());
            if !is_non_secret(&b[start..end]) {
                found.push(finding((start, end), Detector::KubeconfigCredential));
            }
        }
    }
}

/// Whether the JSON object around `at` is the value of a `"user"` or `"config"` key: the
/// nearest `{` before `at` (not past a `}`: a nested object closes there) follows one.
fn in_user_object(b: &[u8], at: usize) -> bool {
    let floor = at.saturating_sub(CONTEXT_WINDOW);
    let Some(open) = b[floor..at]
        .iter()
        .rposition(|c| matches!(c, b'{' | b'}'))
        .map(|p| floor + p)
        .filter(|p| b[*p] == b'{')
    else {
        return false;
    };
    let mut j = open;
    while j > 0 && b[j - 1].is_ascii_whitespace() {
        j -= 1;
    }
    if j == 0 || b[j - 1] != b':' {
        return false;
    }
    j -= 1;
    while j > 0 && b[j - 1].is_ascii_whitespace() {
        j -= 1;
    }
    b[..j].ends_with(b"\"user\"") || b[..j].ends_with(b"\"config\"")
}

fn skip_blanks(b: &[u8], mut at: usize) -> usize {
    while matches!(b.get(at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        at += 1;
    }
    at
}

// === byte helpers ===

/// Every `key` (a lowercase name) assigned at a key boundary, with its value range.
fn key_values<'a>(
    b: &'a [u8],
    key: &'static [u8],
    extra_terminators: &'static [u8],
) -> impl Iterator<Item = (usize, (usize, usize))> + 'a {
    assignments(b, key)
        .filter_map(move |(at, start)| value_at(b, start, extra_terminators).map(|v| (at, v)))
}

/// Every `key` (a lowercase name) at a key boundary followed by an `=`, with where its value
/// starts. The `=` may have blanks around it (`Password = x`) or be percent-encoded once or
/// twice (`sig%3D`, `sig%253D`: a URL inside a URL's query).
fn assignments<'a>(b: &'a [u8], key: &'static [u8]) -> impl Iterator<Item = (usize, usize)> + 'a {
    let mut i = 0;
    std::iter::from_fn(move || {
        while let Some(at) = find_ci(b, key, i) {
            i = at + 1;
            if !is_key_boundary(b, at) {
                continue;
            }
            if let Some(start) = after_equals(b, at + key.len()) {
                return Some((at, start));
            }
        }
        None
    })
}

/// Where a value starts, when an `=` (maybe spaced, maybe percent-encoded) is at `at`.
fn after_equals(b: &[u8], at: usize) -> Option<usize> {
    let rest = b.get(at..)?;
    for encoded in [&b"%3d"[..], b"%253d"] {
        if rest.len() >= encoded.len() && rest[..encoded.len()].eq_ignore_ascii_case(encoded) {
            return Some(at + encoded.len());
        }
    }
    let blanks = |from: usize| {
        from + b[from..]
            .iter()
            .take(8)
            .take_while(|c| matches!(c, b' ' | b'\t'))
            .count()
    };
    let eq = blanks(at);
    (b.get(eq) == Some(&b'=')).then(|| blanks(eq + 1))
}

/// The value starting at `start`, up to the first terminator; None when it is not a secret.
/// A value in quotes (`'..'`, `".."`, or `\"..\"` in JSON text) runs to its closing quote,
/// separators included (ADO.NET quotes values holding `;`, doubling a quote inside). A
/// percent-encoded `&`, `;`, quote or space (`%26`, `%3B`, `%22`, `%27`, `%20`, or the same
/// encoded twice) ends a value too.
fn value_at(b: &[u8], start: usize, extra_terminators: &[u8]) -> Option<(usize, usize)> {
    let rest = b.get(start..)?;
    let mut plain_from = start;
    // In JSON text (a value opened by `\"`) a `\` starts an escape: the value ends before it,
    // so masking never splits an escape.
    let mut in_json_text = false;
    for quote in [&b"\\\""[..], b"\"", b"'"] {
        if rest.starts_with(quote) {
            if let Some(v) = quoted(b, start + quote.len(), quote) {
                return (!is_non_secret(&b[v.0..v.1])).then_some(v);
            }
            // Not a quoted value. A `"` here is where a JSON text's string ends (in JSON
            // text a quote inside is `\"`): nothing to mask. A lone `'` or `\"` is read past.
            if quote != b"\"" {
                plain_from = start + quote.len();
                in_json_text = quote.len() == 2;
            }
            break;
        }
    }
    let rest = &b[plain_from..];
    let mut len = 0;
    while len < rest.len() {
        let c = rest[len];
        if c.is_ascii_whitespace()
            || b";\"'".contains(&c)
            || extra_terminators.contains(&c)
            || (in_json_text && c == b'\\')
        {
            break;
        }
        if c == b'%' && encoded_terminator(&rest[len..]) {
            break;
        }
        len += 1;
    }
    (!is_non_secret(&rest[..len])).then_some((plain_from, plain_from + len))
}

/// The inside of a quoted value starting at `from`, when its closing `quote` is followed by
/// what may follow a value (a separator, a blank, the end, or a JSON string's end) and it
/// does not start like JSON after a string (`,`, `:`, `}`, `]`): what a raw JSON text's
/// `"Password=","b":1` would otherwise look like.
fn quoted(b: &[u8], from: usize, quote: &[u8]) -> Option<(usize, usize)> {
    let mut at = from;
    let close = loop {
        let q = find_cs(b, quote, at)?;
        if b[q + quote.len()..].starts_with(quote) {
            at = q + 2 * quote.len(); // a doubled quote is a quote inside the value
        } else {
            break q;
        }
    };
    let after = b.get(close + quote.len());
    let ends = after.is_none_or(|c| c.is_ascii_whitespace() || b";,\"'\\&)".contains(c));
    let json_like = b.get(from).is_some_and(|c| b",:}]".contains(c));
    (ends && !json_like).then_some((from, close))
}

/// Whether `rest` starts with a percent-encoded `&`, `;`, `"`, `'` or blank, once or twice.
fn encoded_terminator(rest: &[u8]) -> bool {
    let hex = match rest {
        [b'%', b'2', b'5', a, b2, ..] => [*a, *b2],
        [b'%', a, b2, ..] => [*a, *b2],
        _ => return false,
    };
    matches!(
        [hex[0], hex[1].to_ascii_uppercase()],
        [b'2', b'6'] | [b'3', b'B'] | [b'2', b'2'] | [b'2', b'7'] | [b'2', b'0']
    )
}

/// Values that are obviously not secrets: nothing, `***`, `<your-key>`, or already masked.
fn is_non_secret(value: &[u8]) -> bool {
    value.is_empty()
        || value.iter().all(|c| *c == b'*')
        || (value.len() >= 2 && value.starts_with(b"<") && value.ends_with(b">"))
        || value.starts_with(ALREADY_MASKED)
}

/// A key starts a parameter when the byte before it cannot continue an identifier, or is
/// the end of a percent-encoded separator (`%26`, `%3F`, `%3B`, `%20`, once or twice).
fn is_key_boundary(b: &[u8], at: usize) -> bool {
    if at == 0 || !(b[at - 1].is_ascii_alphanumeric() || b[at - 1] == b'_') {
        return true;
    }
    let head = &b[..at];
    [
        &b"%26"[..],
        b"%3f",
        b"%3b",
        b"%20",
        b"%2526",
        b"%253f",
        b"%253b",
    ]
    .iter()
    .any(|sep| ends_with_ci(head, sep))
}

/// The connection string or URL around `at`: bounded by whitespace, quotes or angle brackets,
/// and by [`CONTEXT_WINDOW`] either way.
fn segment(b: &[u8], at: usize) -> (usize, usize) {
    bounded(b, at, CONTEXT_WINDOW)
}

/// The URL around `at`, bounded as [`segment`] is but however long.
fn url_around(b: &[u8], at: usize) -> (usize, usize) {
    bounded(b, at, usize::MAX)
}

fn bounded(b: &[u8], at: usize, window: usize) -> (usize, usize) {
    let stop = |c: &u8| c.is_ascii_whitespace() || b"\"'<>".contains(c);
    let floor = at.saturating_sub(window);
    let lo = b[floor..at]
        .iter()
        .rposition(stop)
        .map_or(floor, |p| floor + p + 1);
    let ceil = at.saturating_add(window).min(b.len());
    let hi = b[at..ceil].iter().position(stop).map_or(ceil, |p| at + p);
    (lo, hi)
}

/// Whether `seg` assigns `key` (a lowercase name) as a parameter, i.e. at a key boundary.
fn find_param(seg: &[u8], key: &'static [u8]) -> bool {
    assignments(seg, key).next().is_some()
}

/// Whether only indentation and an optional `- ` sit between the line start and `at`.
fn starts_yaml_line(b: &[u8], at: usize) -> bool {
    let mut j = at;
    while j > 0 && matches!(b[j - 1], b' ' | b'\t') {
        j -= 1;
    }
    if j > 0 && b[j - 1] == b'-' {
        if j == at {
            return false; // `-token:` is not a list item
        }
        j -= 1;
        while j > 0 && matches!(b[j - 1], b' ' | b'\t') {
            j -= 1;
        }
    }
    j == 0 || matches!(b[j - 1], b'\n' | b'\r') || b[..j].ends_with(b"\\n")
}

fn is_b64url(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-' || c == b'_'
}

fn b64url_run(b: &[u8], from: usize) -> usize {
    from + b[from.min(b.len())..]
        .iter()
        .take_while(|c| is_b64url(**c))
        .count()
}

/// First case-sensitive occurrence of `needle` at or after `from`.
fn find_cs(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    // memchr's substring search (SIMD): a window-by-window compare was a quarter of the
    // time masking a deployment list took.
    memchr::memmem::find(hay.get(from..)?, needle).map(|p| from + p)
}

/// First ASCII-case-insensitive occurrence of `needle` at or after `from`.
fn find_ci(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
        .map(|p| from + p)
}

fn ends_with_ci(hay: &[u8], suffix: &[u8]) -> bool {
    hay.len() >= suffix.len() && hay[hay.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
}

#[cfg(test)]
mod tests;
