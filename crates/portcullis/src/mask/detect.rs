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
        for (_, v) in key_values(b, b"sharedaccesskey=", b"") {
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
/// One pass over the bytes, looking only at the last byte of each marker (`=`, `:`, `J`, `N`)
/// and comparing the bytes before it, case-insensitively: every detector needs one of these
/// markers, so a body without any skips the scanners (and the UTF-8 check) entirely.
pub fn might_contain_secret(bytes: &[u8]) -> bool {
    const EQ: &[&[u8]] = &[
        b"accountkey=",
        b"sig=",
        b"sharedaccesskey=",
        b"secret=",
        b"password=",
        b"pwd=",
    ];
    const COLON: &[&[u8]] = &[b"key-data:", b"token:"];
    (0..bytes.len()).any(|i| {
        let head = &bytes[..=i];
        let markers: &[&[u8]] = match bytes[i] {
            b'=' => EQ,
            b':' => COLON,
            b'J' | b'j' => &[b"eyj"],
            b'N' | b'n' => &[b"-----begin"],
            _ => return false,
        };
        markers.iter().any(|m| ends_with_ci(head, m))
    })
}

/// Replaces each finding in `text` with `replacement(detector, secret_str)`; returns None if
/// nothing was found.
pub fn redact(
    text: &str,
    enabled: &[Detector],
    replacement: &mut dyn FnMut(Detector, &str) -> String,
) -> Option<String> {
    let findings = find(text, enabled);
    if findings.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for f in findings {
        // `find` only returns in-bounds, char-boundary ranges; `get` keeps that a non-panic.
        let (Some(before), Some(secret)) = (text.get(at..f.start), text.get(f.start..f.end)) else {
            continue;
        };
        out.push_str(before);
        out.push_str(&replacement(f.detector, secret));
        at = f.end;
    }
    out.push_str(text.get(at..).unwrap_or_default());
    Some(out)
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
    for (key, value) in key_values(b, b"accountkey=", b"") {
        let (lo, hi) = segment(b, key);
        let detector = if find_param(&b[lo..hi], b"accountendpoint=") {
            Detector::CosmosConnectionString
        } else {
            Detector::StorageConnectionString
        };
        found.push(finding(value, detector));
    }
}

/// `sig=` alone is too common a word to mask; with `sv=` (service version) or `se=` (expiry)
/// in the same query it is a SAS. Only the signature is masked.
fn sas_signatures(b: &[u8], found: &mut Vec<Finding>) {
    // The value ends where its query does (also at `<`, `>`), so masking it cannot join the
    // query to the next one and change what a second pass sees.
    for (key, value) in key_values(b, b"sig=", b"&#<>") {
        let (lo, hi) = segment(b, key);
        let query = &b[lo..hi];
        if find_param(query, b"sv=") || find_param(query, b"se=") {
            found.push(finding(value, Detector::SasToken));
        }
    }
}

/// `Secret=` is masked only beside `Id=`, the App Configuration access key pair.
fn app_config_secrets(b: &[u8], found: &mut Vec<Finding>) {
    for (key, value) in key_values(b, b"secret=", b"") {
        let (lo, hi) = segment(b, key);
        if find_param(&b[lo..hi], b"id=") {
            found.push(finding(value, Detector::AppConfigConnectionString));
        }
    }
}

/// `password=` is Redis when it follows a `,` or the string names a Redis cache host; the
/// Redis value also ends at `,`. Everything else (and every `Pwd=`) is ADO.NET.
fn passwords(b: &[u8], found: &mut Vec<Finding>) {
    for (key, _) in key_values(b, b"password=", b"") {
        let (lo, hi) = segment(b, key);
        let redis =
            (key > 0 && b[key - 1] == b',') || find_ci(&b[lo..hi], b".redis.cache.", 0).is_some();
        if redis {
            let start = key + b"password=".len();
            if let Some(v) = value_at(b, start, b",") {
                found.push(finding(v, Detector::RedisConnectionString));
            }
        } else if let Some(v) = value_at(b, key + b"password=".len(), b"") {
            found.push(finding(v, Detector::AdoNetConnectionString));
        }
    }
    for (_, v) in key_values(b, b"pwd=", b"") {
        found.push(finding(v, Detector::AdoNetConnectionString));
    }
}

/// Compact JWTs: three base64url parts, the first two JSON objects (so `eyJ`, base64 of `{"`),
/// each at least [`JWT_MIN_PART`] long, not inside a longer base64url run.
fn jwts(b: &[u8], found: &mut Vec<Finding>) {
    let mut i = 0;
    while let Some(at) = find_cs(b, b"eyJ", i) {
        i = at + 1;
        if at > 0 && (is_b64url(b[at - 1]) || b[at - 1] == b'.') {
            continue;
        }
        let header_end = b64url_run(b, at);
        if header_end - at < JWT_MIN_PART || b.get(header_end) != Some(&b'.') {
            continue;
        }
        let payload = header_end + 1;
        let payload_end = b64url_run(b, payload);
        if !b[payload..].starts_with(b"eyJ")
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
/// (`RSA`, `EC`, `ENCRYPTED`, `OPENSSH`, PKCS#8 plain). A block without its END marker is
/// still a key: it is masked up to the next `"` (so a JSON text keeps its shape) or the end.
fn pem_private_keys(b: &[u8], found: &mut Vec<Finding>) {
    const BEGIN: &[u8] = b"-----BEGIN ";
    let mut i = 0;
    while let Some(at) = find_cs(b, BEGIN, i) {
        i = at + 1;
        let label_start = at + BEGIN.len();
        let label_len = b[label_start..]
            .iter()
            .take(64)
            .take_while(|c| c.is_ascii_uppercase() || **c == b' ')
            .count();
        let label = &b[label_start..label_start + label_len];
        if !label.ends_with(b"PRIVATE KEY") || !b[label_start + label_len..].starts_with(b"-----") {
            continue;
        }
        let body = label_start + label_len + 5;
        let mut end_marker = b"-----END ".to_vec();
        end_marker.extend_from_slice(label);
        end_marker.extend_from_slice(b"-----");
        let end = match find_cs(b, &end_marker, body) {
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
}

// === byte helpers ===

/// Every `key` (lowercase, ending in `=`) at a key boundary, with its value range.
fn key_values<'a>(
    b: &'a [u8],
    key: &'static [u8],
    extra_terminators: &'static [u8],
) -> impl Iterator<Item = (usize, (usize, usize))> + 'a {
    let mut i = 0;
    std::iter::from_fn(move || {
        while let Some(at) = find_ci(b, key, i) {
            i = at + 1;
            if !is_key_boundary(b, at) {
                continue;
            }
            if let Some(v) = value_at(b, at + key.len(), extra_terminators) {
                return Some((at, v));
            }
        }
        None
    })
}

/// The value starting at `start`, up to the first terminator; None when it is not a secret.
fn value_at(b: &[u8], start: usize, extra_terminators: &[u8]) -> Option<(usize, usize)> {
    let rest = b.get(start..)?;
    let len = rest
        .iter()
        .take_while(|c| {
            !(c.is_ascii_whitespace() || b";\"'".contains(c) || extra_terminators.contains(c))
        })
        .count();
    (!is_non_secret(&rest[..len])).then_some((start, start + len))
}

/// Values that are obviously not secrets: nothing, `***`, `<your-key>`, or already masked.
fn is_non_secret(value: &[u8]) -> bool {
    value.is_empty()
        || value.iter().all(|c| *c == b'*')
        || (value.len() >= 2 && value.starts_with(b"<") && value.ends_with(b">"))
        || value.starts_with(ALREADY_MASKED)
}

/// A key starts a parameter when the byte before it cannot continue an identifier.
fn is_key_boundary(b: &[u8], at: usize) -> bool {
    at == 0 || !(b[at - 1].is_ascii_alphanumeric() || b[at - 1] == b'_')
}

/// The connection string or URL around `at`: bounded by whitespace, quotes or angle brackets,
/// and by [`CONTEXT_WINDOW`] either way.
fn segment(b: &[u8], at: usize) -> (usize, usize) {
    let stop = |c: &u8| c.is_ascii_whitespace() || b"\"'<>".contains(c);
    let floor = at.saturating_sub(CONTEXT_WINDOW);
    let lo = b[floor..at]
        .iter()
        .rposition(stop)
        .map_or(floor, |p| floor + p + 1);
    let ceil = at.saturating_add(CONTEXT_WINDOW).min(b.len());
    let hi = b[at..ceil].iter().position(stop).map_or(ceil, |p| at + p);
    (lo, hi)
}

/// Whether `seg` holds `key` (lowercase) as a parameter, i.e. at a key boundary.
fn find_param(seg: &[u8], key: &[u8]) -> bool {
    let mut i = 0;
    while let Some(at) = find_ci(seg, key, i) {
        if is_key_boundary(seg, at) {
            return true;
        }
        i = at + 1;
    }
    false
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
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| from + p)
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
mod tests {
    use super::*;

    const STORAGE_KEY: &str =
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
    const JWT: &str = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhZ2VudC0xIiwiYXVkIjoiYXBpOi8vcG9ydGN1bGxpcyJ9.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
    const RSA_PEM: &str = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo\n4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0\n-----END RSA PRIVATE KEY-----";
    const EC_PEM: &str = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIIrYSSNQFaA2Hwf1duRSxKtLYX5CB04fSeQ6tF1aY/PuoAoGCCqGSM49\n-----END EC PRIVATE KEY-----";

    /// (text, detector, the secret it must find).
    fn samples() -> Vec<(String, Detector, String)> {
        vec![
            (
                format!(
                    "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={STORAGE_KEY};EndpointSuffix=core.windows.net"
                ),
                Detector::StorageConnectionString,
                STORAGE_KEY.to_string(),
            ),
            (
                "https://acct.blob.core.windows.net/c/b?sv=2022-11-02&ss=b&srt=sco&sp=rl&se=2030-01-01T00%3A00%3A00Z&sig=abc%2Bdef%3D".into(),
                Detector::SasToken,
                "abc%2Bdef%3D".into(),
            ),
            (
                "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=abcDEF123+/=".into(),
                Detector::ServiceBusConnectionString,
                "abcDEF123+/=".into(),
            ),
            (
                "AccountEndpoint=https://x.documents.azure.com:443/;AccountKey=C2y6yDjf5R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw==;".into(),
                Detector::CosmosConnectionString,
                "C2y6yDjf5R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw==".into(),
            ),
            (
                "Endpoint=https://x.azconfig.io;Id=xyz;Secret=abc+/=".into(),
                Detector::AppConfigConnectionString,
                "abc+/=".into(),
            ),
            (
                "x.redis.cache.windows.net:6380,password=abc123=,ssl=True,abortConnect=False".into(),
                Detector::RedisConnectionString,
                "abc123=".into(),
            ),
            (
                "Server=tcp:x;Database=d;User ID=u;Password=p@ss;Encrypt=True".into(),
                Detector::AdoNetConnectionString,
                "p@ss".into(),
            ),
            (
                "Driver={ODBC};Server=x;Uid=u;Pwd=hunter2;".into(),
                Detector::AdoNetConnectionString,
                "hunter2".into(),
            ),
            (
                format!("Authorization: Bearer {JWT}\r\n"),
                Detector::Jwt,
                JWT.to_string(),
            ),
            (
                format!("key:\n{RSA_PEM}\nafter"),
                Detector::PemPrivateKey,
                RSA_PEM.to_string(),
            ),
            (
                format!("{{\"pem\":\"{}\"}}", EC_PEM.replace('\n', "\\n")),
                Detector::PemPrivateKey,
                EC_PEM.replace('\n', "\\n"),
            ),
            (
                "users:\n- name: admin\n  user:\n    client-certificate-data: Q0VSVA==\n    client-key-data: LS0tLS1CRUdJTiBSU0E=\n".into(),
                Detector::KubeconfigCredential,
                "LS0tLS1CRUdJTiBSU0E=".into(),
            ),
            (
                "users:\n- name: sa\n  user:\n    token: \"abcdef.0123456789abcdef\"\n".into(),
                Detector::KubeconfigCredential,
                "abcdef.0123456789abcdef".into(),
            ),
        ]
    }

    fn secrets<'a>(text: &'a str, enabled: &[Detector]) -> Vec<(Detector, &'a str)> {
        find(text, enabled)
            .into_iter()
            .map(|f| (f.detector, &text[f.start..f.end]))
            .collect()
    }

    fn mask(text: &str, enabled: &[Detector]) -> Option<String> {
        redact(text, enabled, &mut |d, _| format!("[masked:{}]", d.name()))
    }

    #[test]
    fn each_detector_finds_its_sample_and_redact_keeps_the_rest() {
        for (text, detector, secret) in samples() {
            assert_eq!(
                secrets(&text, Detector::ALL),
                vec![(detector, secret.as_str())],
                "in {text:?}"
            );
            let masked = mask(&text, Detector::ALL).expect("something masked");
            assert!(!masked.contains(&secret), "{masked}");
            let placeholder = format!("[masked:{}]", detector.name());
            assert_eq!(masked, text.replacen(&secret, &placeholder, 1));
        }
    }

    #[test]
    fn disabled_detectors_do_not_fire() {
        for (text, detector, _) in samples() {
            let others: Vec<Detector> = Detector::ALL
                .iter()
                .copied()
                .filter(|d| *d != detector)
                .collect();
            assert_eq!(find(&text, &others), vec![], "{detector:?} in {text:?}");
            assert_eq!(mask(&text, &[]), None);
        }
    }

    #[test]
    fn pre_check_is_true_whenever_find_finds() {
        for (text, _, _) in samples() {
            assert!(might_contain_secret(text.as_bytes()), "{text:?}");
        }
        assert!(!might_contain_secret(
            b"{\"name\":\"vm1\",\"location\":\"westeurope\"}"
        ));
        assert!(might_contain_secret(b"PASSWORD=x"));
    }

    #[test]
    fn names_are_the_serde_spelling() {
        use serde::de::{IntoDeserializer, value::Error};
        for d in Detector::ALL {
            let parsed = Detector::deserialize(d.name().into_deserializer());
            assert_eq!(parsed, Ok::<_, Error>(*d));
        }
    }

    #[test]
    fn large_bodies_stay_linear() {
        // Many markers, no secrets: the context window keeps this fast.
        let text = "sig=;secret=;Id=;password=;sv=;".repeat(40_000);
        let started = std::time::Instant::now();
        assert_eq!(find(&text, Detector::ALL), vec![]);
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn obvious_non_secrets_are_left_alone() {
        for text in [
            "Password=;User ID=u",
            "Password=",
            "AccountKey=<your-account-key>",
            "Password=****;",
            "AccountKey=[masked:storage-connection-string:3f9a1c2e];",
            "SharedAccessKeyName=RootManageSharedAccessKey;",
            "ClientSecret=abc",
            "Secret=abc without an id",
            "the sig=abc of a letter",
            "Please paste your token: here",
            "tokens: 5",
            "eyJhbGciOiJIUzI1NiJ9.notajwt.x",
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----",
            "token: null",
            "",
        ] {
            assert_eq!(find(text, Detector::ALL), vec![], "{text:?}");
        }
    }

    #[test]
    fn masking_twice_changes_nothing() {
        for (text, _, _) in samples() {
            let once = mask(&text, Detector::ALL).unwrap();
            // Placeholders for whole-token shapes (JWT, PEM) contain no marker at all.
            if let Some(twice) = mask(&once, Detector::ALL) {
                assert_eq!(twice, once, "{text:?}");
            }
        }
    }

    #[test]
    fn several_secrets_in_one_text_are_all_found_in_order() {
        let text = format!(
            "a=1 AccountKey={STORAGE_KEY} then {JWT} and Password=x;Pwd=y and ?sv=1&sig=zz"
        );
        let found: Vec<Detector> = find(&text, Detector::ALL)
            .iter()
            .map(|f| f.detector)
            .collect();
        assert_eq!(
            found,
            vec![
                Detector::StorageConnectionString,
                Detector::Jwt,
                Detector::AdoNetConnectionString,
                Detector::AdoNetConnectionString,
                Detector::SasToken,
            ]
        );
    }

    #[test]
    fn sas_inside_a_connection_string_and_keys_are_case_insensitive() {
        let text = "BlobEndpoint=https://a.blob.core.windows.net/;SharedAccessSignature=sv=2022-11-02&ss=b&sig=S1G%3D";
        assert_eq!(
            secrets(text, Detector::ALL),
            vec![(Detector::SasToken, "S1G%3D")]
        );
        assert_eq!(
            secrets("accountkey=abc==;", Detector::ALL),
            vec![(Detector::StorageConnectionString, "abc==")]
        );
        assert_eq!(
            secrets("PWD=x y", Detector::ALL),
            vec![(Detector::AdoNetConnectionString, "x")]
        );
    }

    #[test]
    fn kubeconfig_variants() {
        let yaml = "users:\n- name: a\n  user:\n    auth-provider:\n      config:\n        id-token: eyJabc\n        refresh-token: 'r3fr35h'\n- user:\n    token: plain\n";
        assert_eq!(
            secrets(yaml, Detector::ALL),
            vec![
                (Detector::KubeconfigCredential, "eyJabc"),
                (Detector::KubeconfigCredential, "r3fr35h"),
                (Detector::KubeconfigCredential, "plain"),
            ]
        );
        // YAML kept in a JSON string, line breaks escaped.
        let escaped = r#"{"kubeconfig":"users:\n- user:\n    token: abc123\n"}"#;
        assert_eq!(
            secrets(escaped, Detector::ALL),
            vec![(Detector::KubeconfigCredential, "abc123")]
        );
        // A service-account token is also a JWT: one finding, not two overlapping ones.
        let sa = format!("    token: {JWT}\n");
        assert_eq!(find(&sa, Detector::ALL).len(), 1);
    }

    #[test]
    fn pem_without_end_marker_is_masked_to_the_closing_quote() {
        let text = "{\"k\":\"-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBg\",\"n\":1}";
        assert_eq!(
            secrets(text, Detector::ALL),
            vec![(
                Detector::PemPrivateKey,
                "-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBg"
            )]
        );
    }

    #[test]
    fn multibyte_text_around_and_inside_secrets() {
        let text = format!(
            "é日本🔑Password=pä😀ss;é AccountKey=日本;Secret=é Id=x;Secret=ü\n🔑token: ñ\n{JWT}é"
        );
        let found = find(&text, Detector::ALL);
        for f in &found {
            assert!(text.is_char_boundary(f.start) && text.is_char_boundary(f.end));
        }
        assert_eq!(
            secrets(&text, Detector::ALL)[..2],
            [
                (Detector::AdoNetConnectionString, "pä😀ss"),
                (Detector::StorageConnectionString, "日本")
            ]
        );
        let masked = mask(&text, Detector::ALL).unwrap();
        assert!(masked.starts_with("é日本🔑Password=[masked:"));
        assert!(masked.ends_with("[masked:jwt]é"));
    }

    /// A small xorshift generator: deterministic, no dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn fuzz_never_panics_and_ranges_are_sound() {
        const FRAGMENTS: &[&str] = &[
            "AccountKey=",
            "AccountEndpoint=",
            "é",
            "日",
            "😀",
            ";",
            ",",
            "&",
            "?",
            "\"",
            "'",
            " ",
            "\n",
            "\\n",
            "eyJ",
            ".",
            "eyJhbGciOiJIUzI1NiJ9",
            "-----BEGIN ",
            "-----END ",
            "RSA PRIVATE KEY",
            "-----",
            "sig=",
            "sv=",
            "se=",
            "SharedAccessKey=",
            "Id=",
            "Secret=",
            "password=",
            "Pwd=",
            "PASSWORD=",
            ".redis.cache.",
            "token:",
            "  - ",
            "client-key-data:",
            "id-token: ",
            "[masked:",
            "<",
            ">",
            "*",
            "=",
            ":",
            "-",
        ];
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..2_000 {
            let mut text = String::new();
            for _ in 0..rng.below(40) {
                if rng.below(4) == 0 {
                    let len = rng.below(30);
                    for _ in 0..len {
                        text.push((b' ' + rng.below(95) as u8) as char);
                    }
                } else {
                    text.push_str(FRAGMENTS[rng.below(FRAGMENTS.len())]);
                }
            }
            let found = find(&text, Detector::ALL);
            let mut last_end = 0;
            for f in &found {
                assert!(f.start < f.end && f.end <= text.len(), "{f:?} in {text:?}");
                assert!(f.start >= last_end, "overlap {f:?} in {text:?}");
                assert!(text.is_char_boundary(f.start) && text.is_char_boundary(f.end));
                last_end = f.end;
            }
            if !found.is_empty() {
                assert!(might_contain_secret(text.as_bytes()), "{text:?}");
                assert!(mask(&text, Detector::ALL).is_some());
            }
            let subset = [Detector::ALL[rng.below(Detector::ALL.len())]];
            for f in find(&text, &subset) {
                assert_eq!(f.detector, subset[0]);
            }
        }
    }
}
