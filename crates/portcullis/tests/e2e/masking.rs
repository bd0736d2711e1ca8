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
