//! Masking end to end: secrets Azure returns never reach the agent in clear, unless a rule
//! unmasks them for that principal; what has nothing to mask is untouched.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{API, Env};

/// A client of the simulator itself, to put things into "Azure" behind the gateway's back.
fn sim_client(env: &Env) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(env.sim.ca_pem().as_bytes()).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(ca)
        .tls_built_in_root_certs(false)
        .build()
        .unwrap()
}

fn is_placeholder(v: &Value, kind: &str) -> bool {
    v.as_str()
        .is_some_and(|s| s.starts_with(&format!("[masked:{kind}:")) && s.ends_with(']'))
}

#[tokio::test]
async fn key_vault_secret_values_are_masked() {
    let env = Env::start().await;
    let clear = env.sim.secret_value("demo-kv", "db-password").unwrap();
    let (s, _, a) = env
        .agent(
            Method::GET,
            "/keyvault/demo-kv/secrets/db-password?api-version=7.4",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{a}");
    assert!(is_placeholder(&a["value"], "keyvault-secret"), "{a}");
    assert!(
        !a.to_string().contains(&clear),
        "the clear value never reaches the agent"
    );
    assert!(
        a["id"].as_str().unwrap().contains("/secrets/db-password/"),
        "the rest of the bundle stays"
    );
    let (_, _, b) = env
        .agent(
            Method::GET,
            "/keyvault/demo-kv/secrets/db-password/?api-version=7.4",
            None,
        )
        .await;
    assert_eq!(
        a["value"], b["value"],
        "the same secret gives the same placeholder"
    );
    let (_, _, c) = env
        .agent(
            Method::GET,
            "/keyvault/demo-kv/secrets/openai-api-key?api-version=7.4",
            None,
        )
        .await;
    assert_ne!(
        a["value"], c["value"],
        "different secrets, different placeholders"
    );
}

#[tokio::test]
async fn storage_keys_and_sas_are_masked_unless_a_rule_unmasks_them() {
    let env = Env::start().await;
    let sa = format!(
        "{}/providers/Microsoft.Storage/storageAccounts/demostorage01",
        env.rg()
    );
    let keys = env.sim.storage_keys(&sa);
    let (s, _, body) = env
        .agent(
            Method::POST,
            &format!("{sa}/listKeys?api-version=2023-05-01"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    for k in &keys {
        assert!(!body.to_string().contains(k.as_str()), "{body}");
    }
    assert!(
        is_placeholder(&body["keys"][0]["value"], "storage-keys"),
        "{body}"
    );
    assert_eq!(body["keys"][0]["keyName"], "key1");
    let (s, _, sas) = env.agent(Method::POST, &format!("{sa}/listAccountSas?api-version=2023-05-01"), Some(json!({"signedServices": "b", "signedResourceTypes": "sco", "signedPermission": "r", "signedExpiry": "2030-01-01T00:00:00Z"}))).await;
    assert_eq!(s, StatusCode::OK, "{sas}");
    assert!(
        is_placeholder(&sas["accountSasToken"], "storage-sas"),
        "{sas}"
    );

    // The rule for overage-agent unmasks storage keys: it sees them in clear.
    let (s, _, body) = env
        .call(
            Some(&env.token("overage-agent")),
            Method::POST,
            &format!("{sa}/listKeys?api-version=2023-05-01"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        body["keys"][0]["value"].as_str(),
        Some(keys[0].as_str()),
        "unmasked for the named principal only"
    );
}

#[tokio::test]
async fn deployment_outputs_and_secret_shaped_strings_are_masked() {
    let env = Env::start().await;
    // Put things straight into "Azure", behind the gateway's back.
    let sim_http = sim_client(&env);
    let arm = env
        .sim
        .token("portcullis-baseline", "https://management.azure.com/")
        .unwrap();
    let key = env.sim.storage_keys(&format!(
        "{}/providers/Microsoft.Storage/storageAccounts/demostorage01",
        env.rg()
    ))[0]
        .clone();
    let template = json!({"resources": [], "outputs": {"cs": {"type": "string", "value": format!("DefaultEndpointsProtocol=https;AccountName=demostorage01;AccountKey={key};EndpointSuffix=core.windows.net")}, "plain": {"type": "string", "value": "hello"}}});
    let dep = format!(
        "{}{}/providers/Microsoft.Resources/deployments/outputs?api-version=2024-03-01",
        env.sim.url(),
        env.rg()
    );
    let r = sim_http
        .put(&dep)
        .bearer_auth(&arm)
        .json(&json!({"properties": {"mode": "Incremental", "template": template}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let tag = format!("{}{}?api-version=2022-09-01", env.sim.url(), env.rg());
    let r = sim_http.patch(&tag).bearer_auth(&arm).json(&json!({"tags": {"conn": format!("AccountName=x;AccountKey={key}"), "owner": "team-a"}})).send().await.unwrap();
    assert_eq!(r.status(), 200);

    let (s, _, d) = env
        .agent(
            Method::GET,
            &format!(
                "{}/providers/Microsoft.Resources/deployments/outputs?api-version=2024-03-01",
                env.rg()
            ),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{d}");
    assert!(
        is_placeholder(
            &d["properties"]["outputs"]["cs"]["value"],
            "deployment-outputs"
        ),
        "{d}"
    );
    assert!(!d.to_string().contains(&key));
    env.sim
        .set_faults(azure_sim::Faults {
            force_encoding: Some("gzip".into()),
            ..Default::default()
        })
        .unwrap();
    let (s, _, d) = env
        .agent(
            Method::GET,
            &format!(
                "{}/providers/Microsoft.Resources/deployments/outputs?api-version=2024-03-01",
                env.rg()
            ),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "gzip: {d}");
    assert!(
        is_placeholder(
            &d["properties"]["outputs"]["cs"]["value"],
            "deployment-outputs"
        ),
        "gzip: {d}"
    );
    env.sim.set_faults(azure_sim::Faults::default()).unwrap();
    let (s, _, g) = env
        .agent(
            Method::GET,
            &format!("{}?api-version=2022-09-01", env.rg()),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let conn = g["tags"]["conn"].as_str().unwrap();
    assert!(
        conn.starts_with("AccountName=x;AccountKey=[masked:"),
        "a detector found the key in a tag: {conn}"
    );
    assert!(!conn.contains(&key));
    assert_eq!(g["tags"]["owner"], "team-a");
}

#[tokio::test]
async fn answers_with_nothing_to_mask_are_byte_identical() {
    let env = Env::start().await;
    let vm = format!(
        "{}/providers/Microsoft.Compute/virtualMachines/vm1?{API}",
        env.rg()
    );
    let token = env.token("agent");
    let via_gateway = env
        .http
        .get(env.url(&vm))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let sim_http = sim_client(&env);
    let arm = env
        .sim
        .token("portcullis-baseline", "https://management.azure.com/")
        .unwrap();
    let direct = sim_http
        .get(format!("{}{vm}", env.sim.url()))
        .bearer_auth(&arm)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(via_gateway, direct);
}

#[tokio::test]
async fn encoded_answers_are_decoded_masked_and_sent_unencoded() {
    let env = Env::start().await;
    let clear = env.sim.secret_value("demo-kv", "db-password").unwrap();
    let sa = format!(
        "{}/providers/Microsoft.Storage/storageAccounts/demostorage01",
        env.rg()
    );
    let keys = env.sim.storage_keys(&sa);
    // Keys, metadata and the upstream tokens are fetched before Azure starts encoding.
    let (s, _, _) = env
        .agent(
            Method::GET,
            "/keyvault/demo-kv/secrets?api-version=7.4",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, _) = env
        .agent(
            Method::GET,
            &format!("{}?api-version=2022-09-01", env.rg()),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    for coding in ["gzip", "deflate", "br"] {
        env.sim
            .set_faults(azure_sim::Faults {
                force_encoding: Some(coding.into()),
                ..Default::default()
            })
            .unwrap();
        let resp = env
            .http
            .get(env.url("/keyvault/demo-kv/secrets/db-password?api-version=7.4"))
            .bearer_auth(env.token("agent"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{coding}");
        assert!(
            resp.headers().get("content-encoding").is_none(),
            "{coding}: sent unencoded"
        );
        let length: usize = resp.headers()["content-length"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let body = resp.bytes().await.unwrap();
        assert_eq!(
            length,
            body.len(),
            "{coding}: Content-Length fits the new body"
        );
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert!(
            is_placeholder(&v["value"], "keyvault-secret"),
            "{coding}: {v}"
        );
        assert!(!String::from_utf8_lossy(&body).contains(&clear));

        let (s, _, listed) = env
            .agent(
                Method::POST,
                &format!("{sa}/listKeys?api-version=2023-05-01"),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{coding}: {listed}");
        assert!(
            !listed.to_string().contains(keys[0].as_str()),
            "{coding}: {listed}"
        );
        let (s, _, sas) = env.agent(Method::POST, &format!("{sa}/listAccountSas?api-version=2023-05-01"), Some(json!({"signedServices": "b", "signedResourceTypes": "sco", "signedPermission": "r", "signedExpiry": "2030-01-01T00:00:00Z"}))).await;
        assert_eq!(s, StatusCode::OK, "{coding}: {sas}");
        assert!(
            is_placeholder(&sas["accountSasToken"], "storage-sas"),
            "{coding}: {sas}"
        );
        // Nothing to mask, but paging still works through an encoded answer.
        let (s, _, page) = env
            .agent(
                Method::GET,
                &format!("{}/resources?api-version=2021-04-01", env.rg()),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{coding}");
        assert!(
            page["nextLink"]
                .as_str()
                .unwrap()
                .starts_with(&env.url("/")),
            "{coding}: {page}"
        );
    }
}

#[tokio::test]
async fn batch_answers_are_masked_per_inner_request() {
    let env = Env::start().await;
    let sa = format!(
        "{}/providers/Microsoft.Storage/storageAccounts/demostorage01",
        env.rg()
    );
    let keys = env.sim.storage_keys(&sa);
    let body = json!({"requests": [
        {"name": "keys", "httpMethod": "POST", "url": format!("https://management.azure.com{sa}/listKeys?api-version=2023-05-01")},
        {"name": "group", "httpMethod": "GET", "relativeUrl": format!("{}?api-version=2022-09-01", env.rg())},
        {"httpMethod": "POST", "url": format!("{sa}/listKeys?api-version=2023-05-01")},
    ]});
    for coding in [None, Some("gzip")] {
        let (s, _, _) = env
            .agent(
                Method::GET,
                &format!("{}?api-version=2022-09-01", env.rg()),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        env.sim
            .set_faults(azure_sim::Faults {
                force_encoding: coding.map(str::to_owned),
                ..Default::default()
            })
            .unwrap();
        let (s, _, out) = env
            .agent(
                Method::POST,
                "/batch?api-version=2020-06-01",
                Some(body.clone()),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{coding:?}: {out}");
        let text = out.to_string();
        for k in &keys {
            assert!(
                !text.contains(k.as_str()),
                "{coding:?}: a key survived in {text}"
            );
        }
        let r = out["responses"].as_array().unwrap();
        assert!(
            is_placeholder(&r[0]["content"]["keys"][0]["value"], "storage-keys"),
            "{coding:?}: {out}"
        );
        assert_eq!(
            r[1]["content"]["name"], "demo-rg",
            "the group's answer is intact"
        );
        assert_eq!(r[1]["content"]["tags"]["environment"], "demo");
        assert!(
            is_placeholder(&r[2]["content"]["keys"][1]["value"], "storage-keys"),
            "unnamed inner requests are masked too: {out}"
        );
        env.sim.set_faults(azure_sim::Faults::default()).unwrap();
    }
}

#[tokio::test]
async fn answers_too_large_to_check_are_withheld() {
    let env = Env::with(crate::Setup {
        extra: "masking: {max_body_bytes: 200, disabled_detectors: [jwt]}\n",
        ..crate::Setup::default()
    })
    .await;
    let since = env.sim.last_call_seq();
    let (s, h, body) = env
        .agent(
            Method::GET,
            "/keyvault/demo-kv/secrets/db-password?api-version=7.4",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(h["x-ms-error-code"], "GatewayResponseNotMaskable");
    assert!(
        !body
            .to_string()
            .contains(&env.sim.secret_value("demo-kv", "db-password").unwrap())
    );
    assert!(
        env.sim
            .calls_since(since)
            .iter()
            .any(|c| c.path.ends_with("/secrets/db-password")),
        "Azure answered; the gateway withheld it"
    );
}

#[tokio::test]
async fn profiles_from_the_configuration_mask_too() {
    let env = Env::with(crate::Setup {
        extra: "masking:\n  profiles:\n    - {name: vnet-shared-secret, actions: [Microsoft.Network/virtualNetworks/read], paths: [properties.sharedSecret]}\n",
        ..crate::Setup::default()
    })
    .await;
    let sim_http = sim_client(&env);
    let arm = env
        .sim
        .token("portcullis-baseline", "https://management.azure.com/")
        .unwrap();
    let vnet = format!(
        "{}/providers/Microsoft.Network/virtualNetworks/vnet1?api-version=2024-01-01",
        env.rg()
    );
    let r = sim_http.put(format!("{}{vnet}", env.sim.url())).bearer_auth(&arm).json(&json!({"location": "eastus", "properties": {"sharedSecret": "vnet-s3cret-value", "addressSpace": {"addressPrefixes": ["10.0.0.0/16"]}}})).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let (s, _, got) = env.agent(Method::GET, &vnet, None).await;
    assert_eq!(s, StatusCode::OK, "{got}");
    assert!(
        is_placeholder(&got["properties"]["sharedSecret"], "vnet-shared-secret"),
        "{got}"
    );
    assert_eq!(
        got["properties"]["addressSpace"]["addressPrefixes"][0],
        "10.0.0.0/16"
    );
}

// === issue 19: placeholders are no oracle, agent text is never stored in clear, and the
// detectors know the shapes they missed ===

/// The 8 hex digits of a placeholder.
fn tag_of(placeholder: &str) -> &str {
    let inner = placeholder.trim_end_matches(']');
    &inner[inner.rfind(':').map_or(0, |i| i + 1)..]
}

/// Every placeholder in `text`.
fn placeholders(text: &str) -> Vec<String> {
    text.match_indices("[masked:")
        .filter_map(|(at, _)| {
            text[at..]
                .find(']')
                .map(|end| text[at..=at + end].to_owned())
        })
        .collect()
}

/// Issue 19, finding 4. The agent reads a secret (a placeholder), then has Azure echo its
/// guesses back (Key Vault's 404 names the secret asked for, ARM's the resource): the
/// detectors mask each guess, and none of those placeholders may equal the secret's, even
/// the right guess's. On the old code the right guess gave the secret's very tag.
#[tokio::test]
async fn an_echoed_guess_never_matches_a_secrets_placeholder() {
    let env = Env::start().await;
    let clear = env.sim.secret_value("demo-kv", "db-password").unwrap();
    let (s, _, a) = env
        .agent(
            Method::GET,
            "/keyvault/demo-kv/secrets/db-password?api-version=7.4",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{a}");
    let real = a["value"].as_str().unwrap().to_owned();
    assert!(is_placeholder(&a["value"], "keyvault-secret"), "{a}");
    // The same secret read again keeps its placeholder (what placeholders are for).
    let (_, _, again) = env
        .agent(
            Method::GET,
            "/keyvault/demo-kv/secrets/db-password?api-version=7.4",
            None,
        )
        .await;
    assert_eq!(
        again["value"], a["value"],
        "a catalogued secret's placeholder is stable"
    );

    let guesses = format!("Password=wrong-1%20Password={clear}%20Pwd={clear}%20Password=wrong-2");
    for path in [
        format!("/keyvault/demo-kv/secrets/{guesses}?api-version=7.4"),
        format!(
            "{}/providers/Microsoft.Compute/virtualMachines/{guesses}?{API}",
            env.rg()
        ),
    ] {
        let (s, _, echo) = env.agent(Method::GET, &path, None).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}: {echo}");
        let text = echo.to_string();
        assert!(
            !text.contains(&clear),
            "{path}: the guess is masked: {text}"
        );
        let shown = placeholders(&text);
        assert!(shown.len() >= 4, "{path}: every guess is masked: {text}");
        for p in &shown {
            assert_ne!(
                tag_of(p),
                tag_of(&real),
                "{path}: an echoed guess has the secret's tag ({p} vs {real}): the placeholder is an oracle"
            );
        }
    }
}

/// Issue 19, finding 7. Secret-shaped text the agent puts anywhere (the path, hence the
/// record's scope and a held request's path; the session header; its reason; a header; the
/// query) is masked before anything is stored: the audit store and the approvals in the
/// state database never hold it in clear, whatever was refused, forwarded or held.
#[tokio::test]
async fn secret_shaped_text_from_the_agent_is_never_stored_in_clear() {
    let env = Env::with(crate::Setup {
        extra: "approvals:\n  hold: 5s\n",
        ..crate::Setup::default()
    })
    .await;
    // One distinct value per place, so a failure names the place that leaked.
    let s = |place: &str| format!("Clear-{place}-7f3a9c");
    let session = format!("Password={}", s("session"));
    let call = |method: Method, path: String, reason: Option<String>| {
        let mut r = env
            .http
            .request(method, env.url(&path))
            .bearer_auth(env.token("agent"))
            .header("x-portcullis-session", session.clone())
            .header("x-portcullis-wait", "0")
            .header("x-custom-note", format!("Password={}", s("header")));
        if let Some(reason) = reason {
            r = r.header("x-portcullis-reason", reason);
        }
        r
    };
    let vm = |place: &str| {
        format!(
            "{}/providers/Microsoft.Compute/virtualMachines/Password={}?{API}&note=Pwd={}",
            env.rg(),
            s(place),
            s(&format!("{place}-query"))
        )
    };
    // Forwarded (allowed read, Azure answers 404 naming it).
    let (st, _, b) = crate::send(call(Method::GET, vm("read"), None)).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{b}");
    // Refused by a deny rule, and by no rule at all (another group).
    let (st, _, b) = crate::send(call(Method::DELETE, vm("denied"), None)).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{b}");
    let other = format!(
        "/subscriptions/{}/resourceGroups/Password={}/providers/Microsoft.Compute/virtualMachines/x?{API}",
        env.sim.subscription_id(),
        s("default-deny")
    );
    let (st, _, b) = crate::send(call(Method::GET, other, None)).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{b}");
    // Held for approval (answered at once: pending).
    let held = format!(
        "{}/providers/Microsoft.Storage/storageAccounts/Password={}?api-version=2023-05-01&x=Pwd={}",
        env.rg(),
        s("held"),
        s("held-query")
    );
    let (st, h, b) = crate::send(
        call(
            Method::PUT,
            held,
            Some(format!("rotating Password={}", s("reason"))),
        )
        .header("content-type", "application/json")
        .body(r#"{"location":"eastus","sku":{"name":"Standard_LRS"},"kind":"StorageV2"}"#),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{b}");
    assert_eq!(h["x-ms-error-code"], "ApprovalPending", "{b}");

    let state = env.dir.join("state");
    let mut leaked = Vec::new();
    for file in ["audit.db", "audit.db-wal"] {
        let bytes = crate::audit::read_elsewhere(&state.join(file));
        for place in [
            "session",
            "header",
            "read",
            "read-query",
            "denied",
            "denied-query",
            "default-deny",
            "held",
            "held-query",
            "reason",
        ] {
            let needle = s(place);
            if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                leaked.push(format!("{place} in {file}"));
            }
        }
    }
    assert!(leaked.is_empty(), "stored in clear: {leaked:?}");
    // The records are still there, with their placeholders.
    let records = env.audit_records().await;
    assert!(
        records
            .iter()
            .any(|r| r.session.starts_with("Password=[masked:")),
        "{records:#?}"
    );
}

/// Issue 19, finding 8. Shapes the detectors missed, put into "Azure" behind the gateway's
/// back (resource group tags) and read through the gateway: each secret part is masked.
#[tokio::test]
async fn detectors_mask_the_shapes_they_missed() {
    let env = Env::start().await;
    let sim_http = sim_client(&env);
    let arm = env
        .sim
        .token("portcullis-baseline", "https://management.azure.com/")
        .unwrap();
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let jwt = format!(
        "{}.{}.c2lnbmF0dXJlLW9mLXRoZS1qd3QtZTJl",
        b64(r#"{ "alg": "HS256", "typ": "JWT" }"#),
        b64(r#"{ "sub": "agent-spaced-jwt-payload" }"#)
    );
    // (tag, value, the secret part that must not come back)
    let shapes: Vec<(&str, String, String)> = vec![
        ("quoted", "Server=db;Password='qu0ted;v4lue-e2e'".into(), "v4lue-e2e".into()),
        ("spaced", "Server=db; Password = sp4ced-e2e".into(), "sp4ced-e2e".into()),
        ("jwt", jwt.clone(), "c2lnbmF0dXJlLW9mLXRoZS1qd3QtZTJl".into()),
        (
            "pgp",
            "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQOYBGPgpPr1v4teE2E\n-----END PGP PRIVATE KEY BLOCK-----".into(),
            "lQOYBGPgpPr1v4teE2E".into(),
        ),
        (
            "lower-pem",
            "-----begin private key-----\nMIIl0werPemE2E\n-----end private key-----".into(),
            "MIIl0werPemE2E".into(),
        ),
        ("key-spaced", "AccountName=a; AccountKey = sp4cedAcc0untKeyE2E==".into(), "sp4cedAcc0untKeyE2E".into()),
        ("key-quoted", "AccountName=a;AccountKey=\"qu0tedAcc0untKeyE2E==\"".into(), "qu0tedAcc0untKeyE2E".into()),
        (
            "sas-encoded",
            "https://login.example/cb?redirect=https%3A%2F%2Fa.blob.core.windows.net%2Fc%3Fsv%3D2022-11-02%26sig%3DencS1gE2E%252B%253D".into(),
            "encS1gE2E".into(),
        ),
        (
            "sas-far",
            format!("https://a.blob.core.windows.net/c/b?sig=farS1gE2E%3D&rscd={}&sv=2022-11-02", "x".repeat(600)),
            "farS1gE2E".into(),
        ),
        (
            "kubeconfig-json",
            r#"{"apiVersion":"v1","users":[{"name":"u","user":{"token":"kubeT0kenJsonE2E"}}]}"#.into(),
            "kubeT0kenJsonE2E".into(),
        ),
    ];
    let tags: serde_json::Map<String, Value> = shapes
        .iter()
        .map(|(k, v, _)| ((*k).to_owned(), Value::from(v.clone())))
        .collect();
    let url = format!("{}{}?api-version=2022-09-01", env.sim.url(), env.rg());
    let r = sim_http
        .patch(&url)
        .bearer_auth(&arm)
        .json(&json!({ "tags": tags }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (s, _, g) = env
        .agent(
            Method::GET,
            &format!("{}?api-version=2022-09-01", env.rg()),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{g}");
    let mut missed = Vec::new();
    for (tag, _, secret) in &shapes {
        let got = g["tags"][*tag].as_str().unwrap_or_default();
        if got.contains(secret.as_str()) || !got.contains("[masked:") {
            missed.push(format!("{tag}: {got}"));
        }
    }
    assert!(missed.is_empty(), "not masked: {missed:#?}");
    // The audit store keeps what the agent got: no clear secret there either.
    let state = env.dir.join("state");
    for file in ["audit.db", "audit.db-wal"] {
        let bytes = crate::audit::read_elsewhere(&state.join(file));
        for (tag, _, secret) in &shapes {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{tag} reached {file} in clear"
            );
        }
    }
}

/// A client of the gateway speaking only `version` (HTTP/1.1, or HTTP/2 over TLS's ALPN).
fn speaking(env: &Env, http2: bool) -> reqwest::Client {
    let pem = std::fs::read(env.gw.ca_file.as_ref().unwrap()).unwrap();
    let b = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .tls_built_in_root_certs(false);
    if http2 {
        b.http2_prior_knowledge()
    } else {
        b.http1_only()
    }
    .build()
    .unwrap()
}

/// `HEAD` on a secret (issue 19, finding 9b) answered 502 over HTTP/1.1 and reset the
/// stream over HTTP/2. It answers as Key Vault does, without a body (200, or 404 for none),
/// on both; the length of the clear answer does not leave the gateway, and no record holds
/// the value.
#[tokio::test]
async fn head_on_a_secret_answers_like_key_vault_without_a_body_on_http1_and_http2() {
    let env = Env::start().await;
    let clear = env.sim.secret_value("demo-kv", "db-password").unwrap();
    let agent = env.token("agent");
    for http2 in [false, true] {
        let http = speaking(&env, http2);
        for (name, status) in [("db-password", 200), ("no-such-secret", 404)] {
            let url = env.url(&format!("/keyvault/demo-kv/secrets/{name}?api-version=7.4"));
            let resp = http
                .head(&url)
                .bearer_auth(&agent)
                .send()
                .await
                .unwrap_or_else(|e| panic!("http2={http2} HEAD {name}: {e:?}"));
            let version = resp.version();
            let headers = resp.headers().clone();
            assert_eq!(
                resp.status().as_u16(),
                status,
                "http2={http2} HEAD {name}: {headers:?}"
            );
            assert_eq!(
                version,
                if http2 {
                    reqwest::Version::HTTP_2
                } else {
                    reqwest::Version::HTTP_11
                }
            );
            let body = resp.bytes().await.unwrap();
            assert!(body.is_empty(), "http2={http2}: a HEAD answer has no body");
            if status == 200 {
                // The masked GET's length, if any: never the clear answer's.
                let get = http.get(&url).bearer_auth(&agent).send().await.unwrap();
                let masked = get.bytes().await.unwrap().len();
                if let Some(length) = headers.get("content-length") {
                    assert_eq!(
                        length.to_str().unwrap().parse::<usize>().unwrap(),
                        masked,
                        "http2={http2}: HEAD's Content-Length is the masked answer's"
                    );
                }
            }
        }
    }
    // The rest of HEAD's uses answer the same way on both: a list of secrets (metadata),
    // ARM's existence checks (204, 404), and a refusal, which carries no body either.
    let rg = env.rg();
    let other = env.token("other-agent");
    for http2 in [false, true] {
        let http = speaking(&env, http2);
        for (path, token, status) in [
            (
                "/keyvault/demo-kv/secrets?api-version=7.4".to_owned(),
                &agent,
                200,
            ),
            (format!("{rg}?api-version=2022-09-01"), &agent, 204),
            (
                format!(
                    "{rg}/providers/Microsoft.Storage/storageAccounts/nosuchsa?api-version=2023-05-01"
                ),
                &agent,
                404,
            ),
            (
                "/keyvault/demo-kv/secrets/db-password?api-version=7.4".to_owned(),
                &other,
                403,
            ),
        ] {
            let resp = http
                .head(env.url(&path))
                .bearer_auth(token)
                .send()
                .await
                .unwrap_or_else(|e| panic!("http2={http2} HEAD {path}: {e:?}"));
            assert_eq!(resp.status().as_u16(), status, "http2={http2} HEAD {path}");
            assert!(
                resp.bytes().await.unwrap().is_empty(),
                "http2={http2} HEAD {path}"
            );
        }
    }
    let records = env.audit_records().await;
    let heads: Vec<_> = records
        .iter()
        .filter(|r| r.method == "HEAD" && r.url.contains("/secrets/db-password"))
        .collect();
    assert!(heads.len() >= 4, "{heads:?}");
    for r in &heads {
        assert_eq!(
            r.action.as_deref(),
            Some("Microsoft.KeyVault/vaults/secrets/getSecret/action"),
            "{r:?}"
        );
    }
    let text = serde_json::to_string(&records).unwrap();
    assert!(!text.contains(&clear), "no record holds the value");
}
