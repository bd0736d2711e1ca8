//! Entra ID: discovery, JWKS, tokens in both formats verified against the published keys,
//! key rotation, managed identity, Graph group resolution.

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{ARM, Env, send};

async fn get_json(env: &Env, path: &str) -> Value {
    let (s, _, body) = send(env.http.get(env.url(path))).await;
    assert_eq!(s, StatusCode::OK, "{path}: {body}");
    body
}

/// Verifies a token the way a relying party does: metadata → JWKS → key by kid.
async fn verify(env: &Env, token: &str, v2: bool, audience: &str) -> Value {
    let tid = env.sim.tenant_id();
    let meta_path = if v2 {
        format!("/{tid}/v2.0/.well-known/openid-configuration")
    } else {
        format!("/{tid}/.well-known/openid-configuration")
    };
    let meta = get_json(env, &meta_path).await;
    let jwks_uri = meta["jwks_uri"].as_str().unwrap();
    let (_, _, jwks) = send(env.http.get(jwks_uri)).await;
    let header = jsonwebtoken::decode_header(token).unwrap();
    let kid = header.kid.expect("kid");
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .expect("kid is published");
    let key =
        DecodingKey::from_rsa_components(jwk["n"].as_str().unwrap(), jwk["e"].as_str().unwrap())
            .unwrap();
    let mut v = Validation::new(Algorithm::RS256);
    v.set_audience(&[audience]);
    v.set_issuer(&[meta["issuer"].as_str().unwrap()]);
    jsonwebtoken::decode::<Value>(token, &key, &v)
        .expect("token verifies")
        .claims
}

async fn client_credentials(env: &Env, principal: &str, scope: &str) -> (StatusCode, Value) {
    let p = env.sim.config().principal(principal).unwrap();
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", &p.app_id.unwrap().to_string()),
        ("client_secret", p.secret.as_deref().unwrap()),
        ("scope", scope),
    ];
    let url = env.url(&format!("/{}/oauth2/v2.0/token", env.sim.tenant_id()));
    let (s, _, body) = send(env.http.post(url).form(&form)).await;
    (s, body)
}

#[tokio::test]
async fn discovery_documents_name_the_tenant_issuers() {
    let env = Env::start().await;
    let tid = env.sim.tenant_id();
    let v1 = get_json(&env, &format!("/{tid}/.well-known/openid-configuration")).await;
    assert_eq!(v1["issuer"], format!("https://sts.windows.net/{tid}/"));
    assert!(
        v1["jwks_uri"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/{tid}/discovery/keys"))
    );
    let v2 = get_json(
        &env,
        &format!("/{tid}/v2.0/.well-known/openid-configuration"),
    )
    .await;
    assert_eq!(v2["issuer"], format!("{}/{tid}/v2.0", env.sim.url()));
    assert!(
        v2["jwks_uri"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/{tid}/discovery/v2.0/keys"))
    );
    let common = get_json(&env, "/common/v2.0/.well-known/openid-configuration").await;
    assert_eq!(
        common["issuer"],
        format!("{}/{{tenantid}}/v2.0", env.sim.url())
    );
    let jwks = get_json(&env, &format!("/{tid}/discovery/v2.0/keys")).await;
    assert!(
        jwks["keys"].as_array().unwrap().len() >= 2,
        "at least two published keys"
    );
    let (s, _, body) = send(
        env.http
            .get(env.url("/not-a-tenant/v2.0/.well-known/openid-configuration")),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS90002")
    );
}

#[tokio::test]
async fn client_credentials_issue_v1_tokens_for_arm_and_v2_for_the_gateway_api() {
    let env = Env::start().await;
    let agent = env.sim.config().principal("agent").unwrap().clone();
    let (s, body) =
        client_credentials(&env, "agent", "https://management.azure.com/.default").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_in"].as_i64().unwrap() > 3000);
    let claims = verify(
        &env,
        body["access_token"].as_str().unwrap(),
        false,
        "https://management.azure.com",
    )
    .await;
    assert_eq!(claims["ver"], "1.0");
    assert_eq!(claims["appid"], agent.app_id.unwrap().to_string());
    assert_eq!(claims["appidacr"], "1");
    assert_eq!(claims["oid"], agent.object_id.to_string());
    assert_eq!(claims["tid"], env.sim.tenant_id());
    assert_eq!(claims["idtyp"], "app");
    assert_eq!(claims["roles"], json!(["Agent.Invoke"]));
    assert_eq!(claims["groups"], json!(agent.groups));
    for c in ["iat", "nbf", "exp", "uti"] {
        assert!(claims.get(c).is_some(), "claim {c}");
    }
    assert_ne!(
        claims["sub"], claims["oid"],
        "sub is pairwise, never the oid"
    );

    let (s, body) = client_credentials(&env, "agent", "api://portcullis/.default").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let api = env
        .sim
        .config()
        .api_for("api://portcullis")
        .unwrap()
        .clone();
    let claims = verify(
        &env,
        body["access_token"].as_str().unwrap(),
        true,
        &api.app_id.to_string(),
    )
    .await;
    assert_eq!(claims["ver"], "2.0");
    assert_eq!(claims["azp"], agent.app_id.unwrap().to_string());
    assert!(claims.get("appid").is_none());
}

#[tokio::test]
async fn token_endpoint_refuses_bad_clients_in_entras_shape() {
    let env = Env::start().await;
    let tid = env.sim.tenant_id();
    let url = env.url(&format!("/{tid}/oauth2/v2.0/token"));
    let agent = env.sim.config().principal("agent").unwrap().clone();
    let app_id = agent.app_id.unwrap().to_string();
    let cases = [
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", app_id.as_str()),
                ("client_secret", "wrong"),
                ("scope", "https://management.azure.com/.default"),
            ],
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "AADSTS7000215",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", "00000000-0000-0000-0000-000000000000"),
                ("client_secret", "x"),
                ("scope", "https://management.azure.com/.default"),
            ],
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            "AADSTS700016",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", app_id.as_str()),
                ("client_secret", agent.secret.as_deref().unwrap()),
                ("scope", "https://unknown.example/.default"),
            ],
            StatusCode::BAD_REQUEST,
            "invalid_resource",
            "AADSTS500011",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", app_id.as_str()),
                ("client_secret", agent.secret.as_deref().unwrap()),
                ("scope", "https://management.azure.com/user_impersonation"),
            ],
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "AADSTS1002012",
        ),
        (
            vec![("grant_type", "password"), ("client_id", app_id.as_str())],
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "AADSTS70003",
        ),
    ];
    for (form, status, error, code) in cases {
        let (s, _, body) = send(env.http.post(&url).form(&form)).await;
        assert_eq!(s, status, "{form:?}: {body}");
        assert_eq!(body["error"], error);
        assert!(
            body["error_description"]
                .as_str()
                .unwrap()
                .starts_with(code),
            "{body}"
        );
        assert!(
            !body.to_string().contains(agent.secret.as_deref().unwrap()),
            "no secret echoed"
        );
    }
}

#[tokio::test]
async fn rotation_publishes_a_new_signer_and_retiring_invalidates_old_tokens() {
    let env = Env::start().await;
    let before = env.sim.published_kids();
    let old = env.token("portcullis-baseline", ARM);
    let (s, _, body) = send(env.http.post(env.url("/_sim/keys/rotate")).json(&json!({}))).await;
    assert_eq!(s, StatusCode::OK);
    let new_kid = body["signing_kid"].as_str().unwrap().to_owned();
    assert!(!before.contains(&new_kid));
    let after = env.sim.published_kids();
    assert!(
        before.iter().all(|k| after.contains(k)),
        "old keys stay published"
    );
    let fresh = env.token("portcullis-baseline", ARM);
    assert_eq!(
        jsonwebtoken::decode_header(&fresh).unwrap().kid.unwrap(),
        new_kid
    );
    let groups = format!("{}/resourcegroups?api-version=2022-09-01", env.sub());
    for t in [&old, &fresh] {
        let (s, _, _) = send(env.http.get(env.url(&groups)).bearer_auth(t)).await;
        assert_eq!(s, StatusCode::OK);
    }
    env.sim.rotate_keys(true);
    let (s, _, body) = send(env.http.get(env.url(&groups)).bearer_auth(&old)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "InvalidAuthenticationToken");
}

#[tokio::test]
async fn managed_identity_endpoints_follow_imds_and_app_service_protocols() {
    let env = Env::start().await;
    let url = env.url("/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://management.azure.com/");
    let (s, _, body) = send(env.http.get(&url)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "no Metadata header: {body}");
    let (s, _, _) = send(
        env.http
            .get(&url)
            .header("Metadata", "true")
            .header("X-Forwarded-For", "10.0.0.1"),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "a forwarded request is refused");
    let (s, _, body) = send(env.http.get(&url).header("Metadata", "true")).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert!(
        body["expires_in"].is_string() && body["expires_on"].is_string(),
        "IMDS numbers are strings"
    );
    let claims = verify(
        &env,
        body["access_token"].as_str().unwrap(),
        false,
        "https://management.azure.com/",
    )
    .await;
    assert_eq!(
        claims["oid"],
        env.sim
            .config()
            .principal("gateway-identity")
            .unwrap()
            .object_id
            .to_string()
    );
    assert!(
        claims["xms_mirid"]
            .as_str()
            .unwrap()
            .contains("userAssignedIdentities/gateway-identity")
    );

    let state = env.sim.state_with_credentials();
    let header = state["identity_header"].as_str().unwrap();
    let url = env.url("/msi/token?api-version=2019-08-01&resource=https://vault.azure.net");
    let (s, _, _) = send(env.http.get(&url).header("X-IDENTITY-HEADER", "wrong")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _, body) = send(env.http.get(&url).header("X-IDENTITY-HEADER", header)).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    verify(
        &env,
        body["access_token"].as_str().unwrap(),
        false,
        "https://vault.azure.net",
    )
    .await;
}

#[tokio::test]
async fn overage_tokens_point_elsewhere_and_graph_resolves_the_groups() {
    let env = Env::start().await;
    let token = env.token("overage-agent", "api://portcullis");
    let payload = token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert!(claims.get("groups").is_none());
    assert_eq!(claims["_claim_names"]["groups"], "src1");
    let p = env.sim.config().principal("overage-agent").unwrap().clone();
    let graph = env.token("portcullis-baseline", "https://graph.microsoft.com");
    let url = env.url(&format!(
        "/v1.0/servicePrincipals/{}/getMemberObjects",
        p.object_id
    ));
    let (s, _, body) = send(
        env.http
            .post(&url)
            .bearer_auth(&graph)
            .json(&json!({"securityEnabledOnly": false})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let got: Vec<String> = body["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    let want: Vec<String> = p.groups.iter().map(|g| g.to_string()).collect();
    assert_eq!(got, want);
    assert!(got.len() > 200);
    // An ARM token is not a Graph token.
    let arm = env.token("portcullis-baseline", ARM);
    let (s, _, _) = send(env.http.post(&url).bearer_auth(&arm).json(&json!({}))).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn minted_variants_for_hostile_token_tests() {
    let env = Env::start().await;
    let expired = env
        .sim
        .mint(azure_sim::MintRequest {
            principal: "agent".into(),
            audience: ARM.into(),
            version: None,
            lifetime_secs: Some(-600),
            not_before_offset_secs: -900,
            client_app: None,
            claims: Default::default(),
            unpublished_key: false,
        })
        .unwrap();
    let groups = env.url(&format!(
        "{}/resourcegroups?api-version=2022-09-01",
        env.sub()
    ));
    let (s, _, body) = send(env.http.get(&groups).bearer_auth(&expired)).await;
    assert_eq!(
        (s, body["error"]["code"].as_str().unwrap()),
        (StatusCode::UNAUTHORIZED, "ExpiredAuthenticationToken")
    );
    let (s, _, body) = send(
        env.http
            .post(env.url("/_sim/token"))
            .json(&json!({"principal": "agent", "audience": ARM, "unpublished_key": true})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let unknown_kid = body["access_token"].as_str().unwrap();
    let (s, _, _) = send(env.http.get(&groups).bearer_auth(unknown_kid)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let wrong_aud = env.token("agent", "api://portcullis");
    let (s, _, body) = send(env.http.get(&groups).bearer_auth(&wrong_aud)).await;
    assert_eq!(
        (s, body["error"]["code"].as_str().unwrap()),
        (
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationTokenAudience"
        )
    );
}

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn apps_are_named_in_tokens_for_microsofts_apis_only() {
    let env = Env::start().await;
    assert_eq!(
        claims_of(&env.token("agent", ARM))["app_displayname"],
        "build-agent"
    );
    // An organisation's own API gets ids only, as from Entra.
    assert!(
        claims_of(&env.token("agent", "api://portcullis"))
            .get("app_displayname")
            .is_none()
    );
    let alice = claims_of(&env.token("alice", "api://portcullis"));
    assert_eq!(alice["name"], "Alice Example");
}

#[tokio::test]
async fn graph_names_service_principals_and_groups_in_its_own_shapes() {
    let env = Env::start().await;
    let graph = env.token("portcullis-baseline", "https://graph.microsoft.com");
    let get = |path: String| {
        let url = env.url(&path);
        let req = env.http.get(url).bearer_auth(&graph);
        async move { send(req).await }
    };
    let agent = env.sim.config().principal("agent").unwrap().clone();
    let (s, _, body) = get(format!("/v1.0/servicePrincipals/{}", agent.object_id)).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["displayName"], "build-agent");
    assert_eq!(body["servicePrincipalType"], "Application");
    assert_eq!(body["appId"], agent.app_id.unwrap().to_string());
    assert!(
        body["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("#servicePrincipals/$entity")
    );
    let mi = env
        .sim
        .config()
        .principal("gateway-identity")
        .unwrap()
        .object_id;
    let (_, _, body) = get(format!("/v1.0/servicePrincipals/{mi}")).await;
    assert_eq!(body["servicePrincipalType"], "ManagedIdentity");

    let group = azure_sim::config::derived_id("group", "approvers");
    let (s, _, body) = get(format!("/v1.0/groups/{group}")).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["displayName"], "Cloud Approvers");
    assert_eq!(body["id"], group.to_string());

    // Graph's errors: an unknown object, a person asked for as a service principal, an id
    // that is not one, and a write.
    let alice = env.sim.config().principal("alice").unwrap().object_id;
    for path in [
        format!("/v1.0/groups/{}", uuid::Uuid::new_v4()),
        format!("/v1.0/servicePrincipals/{alice}"),
    ] {
        let (s, _, body) = get(path).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        assert_eq!(body["error"]["code"], "Request_ResourceNotFound", "{body}");
    }
    let (s, _, body) = get("/v1.0/groups/not-an-id".into()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "Request_BadRequest");
    let (s, _, _) = send(
        env.http
            .patch(env.url(&format!("/v1.0/groups/{group}")))
            .bearer_auth(&graph)
            .json(&json!({"displayName": "x"})),
    )
    .await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    // Without a Graph token, nothing.
    let (s, _, _) = send(env.http.get(env.url(&format!("/v1.0/groups/{group}")))).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}
