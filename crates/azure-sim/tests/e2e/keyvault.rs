//! Key Vault data plane: the bearer challenge, the secret lifecycle, paging, and both ways of
//! addressing a vault (by host and by path prefix).

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{Env, client, header, send};

const KV: &str = "https://vault.azure.net";
const V: &str = "api-version=7.4";

async fn kv(
    env: &Env,
    http: &reqwest::Client,
    base: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let token = env.token("portcullis-baseline", KV);
    let url = if path.starts_with("https://") {
        path.to_owned()
    } else {
        format!("{base}{path}")
    };
    let mut req = http.request(method, url).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let (s, _, b) = send(req).await;
    (s, b)
}

#[tokio::test]
async fn unauthenticated_requests_get_the_challenge() {
    let env = Env::start().await;
    let (s, h, body) = send(
        env.http
            .get(format!("{}/secrets?{V}", env.sim.vault_url("demo-kv"))),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let challenge = header(&h, "www-authenticate");
    assert_eq!(
        challenge,
        format!(
            "Bearer authorization=\"{}/{}\", resource=\"https://vault.azure.net\"",
            env.sim.url(),
            env.sim.tenant_id()
        )
    );
    assert_eq!(body["error"]["code"], "Unauthorized");
    let arm_token = env.token("portcullis-baseline", crate::ARM);
    let (s, h, _) = send(
        env.http
            .get(format!("{}/secrets?{V}", env.sim.vault_url("demo-kv")))
            .bearer_auth(arm_token),
    )
    .await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "an ARM token is not a Key Vault token"
    );
    assert!(h.get("www-authenticate").is_some());
}

#[tokio::test]
async fn secret_lifecycle_by_path_prefix() {
    let env = Env::start().await;
    let base = env.sim.vault_url("demo-kv");
    let http = env.http.clone();
    let (s, body) = kv(
        &env,
        &http,
        &base,
        Method::GET,
        &format!("/secrets/db-password?{V}"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        body["value"].as_str(),
        env.sim.secret_value("demo-kv", "db-password").as_deref()
    );
    assert!(
        body["id"]
            .as_str()
            .unwrap()
            .starts_with("https://demo-kv.vault.azure.net/secrets/db-password/")
    );

    let (s, v1) = kv(
        &env,
        &http,
        &base,
        Method::PUT,
        &format!("/secrets/new-secret?{V}"),
        Some(json!({"value": "first", "contentType": "text/plain"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v1}");
    let (_, v2) = kv(
        &env,
        &http,
        &base,
        Method::PUT,
        &format!("/secrets/new-secret?{V}"),
        Some(json!({"value": "second"})),
    )
    .await;
    let (_, latest) = kv(
        &env,
        &http,
        &base,
        Method::GET,
        &format!("/secrets/NEW-SECRET?{V}"),
        None,
    )
    .await;
    assert_eq!(
        latest["value"], "second",
        "names are case-insensitive; GET gives the latest version"
    );
    let v1_version = v1["id"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let (_, old) = kv(
        &env,
        &http,
        &base,
        Method::GET,
        &format!("/secrets/new-secret/{v1_version}?{V}"),
        None,
    )
    .await;
    assert_eq!(old["value"], "first");
    let (_, versions) = kv(
        &env,
        &http,
        &base,
        Method::GET,
        &format!("/secrets/new-secret/versions?{V}"),
        None,
    )
    .await;
    assert_eq!(versions["value"].as_array().unwrap().len(), 2);
    assert!(
        versions.to_string().find("\"value\":\"first\"").is_none(),
        "lists never carry values"
    );

    let (s, updated) = kv(
        &env,
        &http,
        &base,
        Method::PATCH,
        &format!("/secrets/new-secret/{v1_version}?{V}"),
        Some(json!({"attributes": {"enabled": false}})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(updated["attributes"]["enabled"], false);
    let (s, err) = kv(
        &env,
        &http,
        &base,
        Method::GET,
        &format!("/secrets/new-secret/{v1_version}?{V}"),
        None,
    )
    .await;
    assert_eq!(
        (s, err["error"]["code"].as_str().unwrap()),
        (StatusCode::FORBIDDEN, "Forbidden")
    );

    let (s, backup) = kv(
        &env,
        &http,
        &base,
        Method::POST,
        &format!("/secrets/new-secret/backup?{V}"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, deleted) = kv(
        &env,
        &http,
        &base,
        Method::DELETE,
        &format!("/secrets/new-secret?{V}"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        deleted["recoveryId"]
            .as_str()
            .unwrap()
            .ends_with("/deletedsecrets/new-secret")
    );
    let (s, err) = kv(
        &env,
        &http,
        &base,
        Method::GET,
        &format!("/secrets/new-secret?{V}"),
        None,
    )
    .await;
    assert_eq!(
        (s, err["error"]["code"].as_str().unwrap()),
        (StatusCode::NOT_FOUND, "SecretNotFound")
    );
    let (s, _) = kv(
        &env,
        &http,
        &base,
        Method::PUT,
        &format!("/secrets/new-secret?{V}"),
        Some(json!({"value": "x"})),
    )
    .await;
    assert_eq!(
        s,
        StatusCode::CONFLICT,
        "a deleted name cannot be reused until purged"
    );
    let (s, d) = kv(
        &env,
        &http,
        &base,
        Method::GET,
        &format!("/deletedsecrets/new-secret?{V}"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(d["value"], "second");
    let (s, _) = kv(
        &env,
        &http,
        &base,
        Method::POST,
        &format!("/deletedsecrets/new-secret/recover?{V}"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (_, back) = kv(
        &env,
        &http,
        &base,
        Method::GET,
        &format!("/secrets/new-secret?{V}"),
        None,
    )
    .await;
    assert_eq!(back["value"], "second");
    kv(
        &env,
        &http,
        &base,
        Method::DELETE,
        &format!("/secrets/new-secret?{V}"),
        None,
    )
    .await;
    let (s, _) = kv(
        &env,
        &http,
        &base,
        Method::DELETE,
        &format!("/deletedsecrets/new-secret?{V}"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, restored) = kv(
        &env,
        &http,
        &base,
        Method::POST,
        &format!("/secrets/restore?{V}"),
        Some(json!({"value": backup["value"]})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{restored}");
    let (_, versions) = kv(
        &env,
        &http,
        &base,
        Method::GET,
        &format!("/secrets/new-secret/versions?{V}"),
        None,
    )
    .await;
    let enabled: Vec<bool> = versions["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["attributes"]["enabled"].as_bool().unwrap())
        .collect();
    assert_eq!(
        enabled,
        [false, true],
        "restore brings every version back, attributes included"
    );
    let (s, _) = kv(
        &env,
        &http,
        &base,
        Method::POST,
        &format!("/secrets/restore?{V}"),
        Some(json!({"value": "garbage"})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, err) = kv(
        &env,
        &http,
        &base,
        Method::GET,
        "/secrets/db-password",
        None,
    )
    .await;
    assert_eq!(
        (s, err["error"]["code"].as_str().unwrap()),
        (StatusCode::BAD_REQUEST, "BadParameter")
    );
    let _ = v2;
}

#[tokio::test]
async fn secret_lists_page_with_next_links() {
    let env = Env::start().await;
    let base = env.sim.vault_url("demo-kv");
    let http = env.http.clone();
    let mut next = Some(format!("{base}/secrets?{V}"));
    let (mut names, mut pages) = (Vec::new(), 0);
    while let Some(url) = next {
        let (s, body) = kv(&env, &http, &base, Method::GET, &url, None).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        pages += 1;
        for item in body["value"].as_array().unwrap() {
            assert!(item.get("value").is_none());
            names.push(
                item["id"]
                    .as_str()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .to_owned(),
            );
        }
        next = body["nextLink"].as_str().map(str::to_owned);
    }
    assert_eq!(
        names,
        ["db-password", "openai-api-key", "storage-connection-string"]
    );
    assert_eq!(pages, 2);
    let (s, _) = kv(
        &env,
        &http,
        &base,
        Method::GET,
        &format!("/secrets?{V}&maxresults=26"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn vaults_are_reachable_by_host_name() {
    let env = Env::start().await;
    let http = client(&env.sim, Some("demo-kv.vault.azure.net"));
    let base = format!("https://demo-kv.vault.azure.net:{}", env.sim.addr().port());
    let (s, body) = kv(
        &env,
        &http,
        &base,
        Method::GET,
        &format!("/secrets/openai-api-key?{V}"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        body["value"].as_str(),
        env.sim.secret_value("demo-kv", "openai-api-key").as_deref()
    );
    let (_, list) = kv(
        &env,
        &http,
        &base,
        Method::GET,
        &format!("/secrets?{V}"),
        None,
    )
    .await;
    assert!(
        list["nextLink"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{base}/secrets?")),
        "{list}"
    );
    let (s, err) = kv(
        &env,
        &http,
        &env.sim.vault_url("no-such-vault"),
        Method::GET,
        &format!("/secrets?{V}"),
        None,
    )
    .await;
    assert_eq!(
        (s, err["error"]["code"].as_str().unwrap()),
        (StatusCode::NOT_FOUND, "VaultNotFound")
    );
}

/// Key Vault answers a HEAD as the GET it names, without the body: 200 with the GET's
/// headers for a secret, 404 for none (it answered 405 here before, unlike Key Vault).
#[tokio::test]
async fn head_on_a_secret_answers_as_its_get_without_a_body() {
    let env = Env::start().await;
    let token = env.token("portcullis-baseline", KV);
    let base = env.sim.vault_url("demo-kv");
    for (name, status) in [
        ("db-password", StatusCode::OK),
        ("nosuch", StatusCode::NOT_FOUND),
    ] {
        let url = format!("{base}/secrets/{name}?{V}");
        let head = env
            .http
            .head(&url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(head.status(), status, "{name}");
        let length = head.headers().get("content-length").cloned();
        assert!(head.bytes().await.unwrap().is_empty(), "{name}: no body");
        let get = env.http.get(&url).bearer_auth(&token).send().await.unwrap();
        assert_eq!(get.status(), status, "{name}");
        let body = get.bytes().await.unwrap();
        assert_eq!(
            length.and_then(|l| l.to_str().ok()?.parse::<usize>().ok()),
            Some(body.len()),
            "{name}: the GET's Content-Length"
        );
    }
}
