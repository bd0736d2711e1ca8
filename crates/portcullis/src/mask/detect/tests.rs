use super::*;

const STORAGE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const JWT: &str = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhZ2VudC0xIiwiYXVkIjoiYXBpOi8vcG9ydGN1bGxpcyJ9.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
const RSA_PEM: &str = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo\n4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0\n-----END RSA PRIVATE KEY-----";
/// Header `{ "alg": "HS256", "typ": "JWT" }`, payload `{\n "sub": "agent-1" }`.
const SPACED_JWT: &str = "eyAiYWxnIjogIkhTMjU2IiwgInR5cCI6ICJKV1QiIH0.ewogInN1YiI6ICJhZ2VudC0xIiB9.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
const PGP: &str = "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQOYBGPgpPr1v4te\n=abcd\n-----END PGP PRIVATE KEY BLOCK-----";
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
        // Issue 19, finding 8: shapes the detectors missed.
        (
            "Server=db;Password='qu0ted;''value';Encrypt=True".into(),
            Detector::AdoNetConnectionString,
            "qu0ted;''value".into(),
        ),
        (
            "Server=db; Password = sp4ced".into(),
            Detector::AdoNetConnectionString,
            "sp4ced".into(),
        ),
        (
            format!("Authorization: Bearer {SPACED_JWT}\r\n"),
            Detector::Jwt,
            SPACED_JWT.to_string(),
        ),
        (
            format!("key: {PGP}"),
            Detector::PemPrivateKey,
            PGP.to_string(),
        ),
        (
            "-----begin private key-----\nMIIlower\n-----end private key-----".into(),
            Detector::PemPrivateKey,
            "-----begin private key-----\nMIIlower\n-----end private key-----".into(),
        ),
        (
            "AccountName=a; AccountKey = abc+def==; EndpointSuffix=core.windows.net".into(),
            Detector::StorageConnectionString,
            "abc+def==".into(),
        ),
        (
            "AccountName=a;AccountKey=\"abc+def==\";".into(),
            Detector::StorageConnectionString,
            "abc+def==".into(),
        ),
        (
            "https://login.example/cb?redirect=https%3A%2F%2Fa.blob.core.windows.net%2Fc%3Fsv%3D2022-11-02%26sig%3Dabc%252B%253D%26x%3D1".into(),
            Detector::SasToken,
            "abc%252B%253D".into(),
        ),
        (
            format!("https://a.blob.core.windows.net/c/b?sig=far%2B%3D&rscd={}&sv=2022-11-02", "x".repeat(700)),
            Detector::SasToken,
            "far%2B%3D".into(),
        ),
        (
            r#"{"apiVersion":"v1","users":[{"name":"u","user":{"token" : "kubeT0ken"}}]}"#.into(),
            Detector::KubeconfigCredential,
            "kubeT0ken".into(),
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

/// How long scanning `make(n)` takes: the best of two runs, so a busy machine slows both
/// sizes alike.
fn scan_time(make: &dyn Fn(usize) -> String, n: usize) -> std::time::Duration {
    let text = make(n);
    (0..2)
        .map(|_| {
            let started = std::time::Instant::now();
            let _ = find(&text, Detector::ALL);
            started.elapsed()
        })
        .min()
        .expect("two runs")
}

/// Scanning four times the text takes about four times as long, not sixteen: the scan is
/// linear. A ratio, not a deadline, so a slow or loaded machine does not fail it.
fn assert_linear(make: &dyn Fn(usize) -> String) {
    let (small, large) = (scan_time(make, 5_000), scan_time(make, 20_000));
    assert!(
        large < small * 10 + std::time::Duration::from_millis(50),
        "{:?}: 4x the text took {large:?} against {small:?}",
        &make(1)
    );
}

#[test]
fn large_bodies_stay_linear() {
    // Many markers, no secrets: the context window keeps this fast.
    let text = "sig=;secret=;Id=;password=;sv=;".repeat(40_000);
    assert_eq!(find(&text, Detector::ALL), vec![]);
    assert_linear(&|n| "sig=;secret=;Id=;password=;sv=;".repeat(n));
    // Quotes that open and never close, one long URL full of signatures, JSON keys:
    // each scan stops at the next quote, each URL is read once.
    assert_linear(&|n| "Password='".repeat(n));
    assert_linear(&|n| "Password=\\\"x ".repeat(n));
    assert_linear(&|n| format!("https://a/b?{}sv=1", "sig=a&".repeat(n)));
    assert_linear(&|n| "{\"user\":{\"token\" : ".repeat(n));
    assert_linear(&|n| "eyAx.".repeat(n));
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
        // Raw JSON text around an empty password, and blanks with nothing after them.
        r#"{"a":"Password=","b":"x"}"#,
        r#"{"a":"Password=", "b":"x"}"#,
        "Password = ;",
        // A `token` outside a kubeconfig user, and `sig` inside a word.
        r#"{"auth":{"token":"abc"}}"#,
        "the design = good, sv=1",
        "-----BEGIN PGP PUBLIC KEY BLOCK-----\nmQINBF\n-----END PGP PUBLIC KEY BLOCK-----",
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
    let text =
        format!("a=1 AccountKey={STORAGE_KEY} then {JWT} and Password=x;Pwd=y and ?sv=1&sig=zz");
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

/// Found by `cargo fuzz run mask_json` (issue 19's 10-minute run): a `}` inside the
/// first masked token value had closed the `"user"` object for the later tokens, so a
/// second masking found one the first had let through.
#[test]
fn masking_settles_when_a_masked_value_hid_a_later_one() {
    let text = "roperties\":\u{4}\tproperties\":{\"id-toke{\"cs\";H\"}}}/}*{{en\"\"outpucs\";H\"}}}}*{{\"user\":{:\"\"token\":\"}*{{\"\"token\":\"\"token\":\"y2\u{3}{";
    let mut tag = |d: Detector, _: &str| format!("[masked:{}:0000abcd]", d.name());
    let once = redact(text, Detector::ALL, &mut tag).expect("something to mask");
    assert!(!once.contains("y2"), "{once}");
    assert_eq!(redact(&once, Detector::ALL, &mut tag), None, "{once}");
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
        " = ",
        "%3D",
        "%253D",
        "%26",
        "\\\"",
        "''",
        "eyAiYWxnIjogIkhTMjU2In0",
        "ewogInN1YiI6ICJ4In0",
        "\"token\"",
        "\"user\":{",
        "-----begin ",
        "private key",
        "PGP PRIVATE KEY BLOCK",
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
