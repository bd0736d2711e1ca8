//! Identity at the gateway: which tokens pass, which are refused (and reach nothing), key
//! rotation mid-run, both token versions, and group overage resolved through Graph.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::{Env, GATEWAY_API};

fn mint(env: &Env, body: serde_json::Value) -> String {
    let m: azure_sim::MintRequest = serde_json::from_value(body).unwrap();
    env.sim.mint(m).unwrap()
}

#[tokio::test]
async fn bad_tokens_get_401_and_reach_nothing() {
    let env = Env::start().await;
    let rg = format!("{}?api-version=2022-09-01", env.rg());
    // Warm the key cache so the refusals below are about the tokens, not about fetching.
    let (s, _, _) = env.agent(Method::GET, &rg, None).await;
    assert_eq!(s, StatusCode::OK);
    let since = env.sim.last_call_seq();
    let cases: Vec<(&str, Option<String>)> = vec![
        ("no token", None),
        (
            "expired",
            Some(mint(
                &env,
                json!({"principal": "agent", "audience": GATEWAY_API, "lifetime_secs": -600, "not_before_offset_secs": -1200}),
            )),
        ),
        (
            "not yet valid",
            Some(mint(
                &env,
                json!({"principal": "agent", "audience": GATEWAY_API, "not_before_offset_secs": 900, "lifetime_secs": 3600}),
            )),
        ),
        (
            "another API's audience",
            Some(mint(
                &env,
                json!({"principal": "agent", "audience": "api://portcullis-v1"}),
            )),
        ),
        (
            "an ARM token",
            Some(
                env.sim
                    .token("agent", "https://management.azure.com/")
                    .unwrap(),
            ),
        ),
        (
            "a Key Vault token",
            Some(env.sim.token("agent", "https://vault.azure.net").unwrap()),
        ),
        (
            "an unknown kid",
            Some(mint(
                &env,
                json!({"principal": "agent", "audience": GATEWAY_API, "unpublished_key": true}),
            )),
        ),
        (
            "another tenant",
            Some(mint(
                &env,
                json!({"principal": "agent", "audience": GATEWAY_API, "claims": {"tid": "99999999-9999-9999-9999-999999999999"}}),
            )),
        ),
        (
            "a tampered payload",
            Some({
                let t = env.token("agent");
                let parts: Vec<&str> = t.split('.').collect();
                let other = env.token("alice");
                format!(
                    "{}.{}.{}",
                    parts[0],
                    other.split('.').nth(1).unwrap(),
                    parts[2]
                )
            }),
        ),
        ("garbage", Some("not.a.jwt".into())),
    ];
    for (what, token) in cases {
        let (s, h, body) = env.call(token.as_deref(), Method::GET, &rg, None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{what}: {body}");
        let code = body["error"]["code"].as_str().unwrap();
        assert!(
            code == "InvalidAuthenticationToken" || code == "AuthenticationFailed",
            "{what}: {code}"
        );
        assert!(
            h.get("www-authenticate")
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("Bearer authorization_uri="),
            "{what}"
        );
    }
    let reached: Vec<_> = env
        .sim
        .calls_since(since)
        .into_iter()
        .filter(|c| c.service == azure_sim::Service::Arm)
        .collect();
    assert!(reached.is_empty(), "nothing reached ARM: {reached:?}");
}

#[tokio::test]
async fn rotation_mid_run_keeps_valid_tokens_working() {
    let env = Env::start().await;
    let rg = format!("{}?api-version=2022-09-01", env.rg());
    let before = env.token("agent");
    let (s, _, _) = env.call(Some(&before), Method::GET, &rg, None).await;
    assert_eq!(s, StatusCode::OK);
    env.sim.rotate_keys(false);
    let after = env.token("agent");
    assert_ne!(
        before.split('.').next(),
        after.split('.').next(),
        "a new kid signs"
    );
    for t in [&after, &before, &after] {
        let (s, _, body) = env.call(Some(t), Method::GET, &rg, None).await;
        assert_eq!(s, StatusCode::OK, "{body}");
    }
    // Unknown kids do not make the gateway hammer the JWKS endpoint.
    let since = env.sim.last_call_seq();
    for _ in 0..5 {
        let bogus = mint(
            &env,
            json!({"principal": "agent", "audience": GATEWAY_API, "unpublished_key": true}),
        );
        let (s, _, _) = env.call(Some(&bogus), Method::GET, &rg, None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    let fetches = env
        .sim
        .calls_since(since)
        .iter()
        .filter(|c| c.path.contains("/discovery/"))
        .count();
    assert!(fetches <= 1, "{fetches} key fetches for 5 unknown kids");
}

#[tokio::test]
async fn v1_and_v2_tokens_and_group_overage() {
    let env = Env::start().await;
    let rg = format!("{}?api-version=2022-09-01", env.rg());
    let v1 = mint(
        &env,
        json!({"principal": "agent", "audience": GATEWAY_API, "version": 1}),
    );
    let (s, _, body) = env.call(Some(&v1), Method::GET, &rg, None).await;
    assert_eq!(s, StatusCode::OK, "v1: {body}");
    let (s, _, body) = env
        .call(Some(&env.token("agent")), Method::GET, &rg, None)
        .await;
    assert_eq!(s, StatusCode::OK, "v2: {body}");
    // The overage agent's token lists no groups; Graph says it is in ai-agents.
    let since = env.sim.last_call_seq();
    let (s, _, body) = env
        .call(Some(&env.token("overage-agent")), Method::GET, &rg, None)
        .await;
    assert_eq!(s, StatusCode::OK, "overage: {body}");
    // Group lookups only: the gateway also asks Graph for the app's display name, beside
    // the request, for the records' readers.
    let memberships = |since| {
        env.sim
            .calls_since(since)
            .into_iter()
            .filter(|c| {
                c.service == azure_sim::Service::Graph && c.path.ends_with("getMemberObjects")
            })
            .count()
    };
    assert_eq!(memberships(since), 1);
    let (s, _, _) = env
        .call(Some(&env.token("overage-agent")), Method::GET, &rg, None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(memberships(since), 1, "the groups are cached");
}

#[tokio::test]
async fn a_multi_tenant_authority_checks_the_issuer_for_the_tokens_tenant() {
    let probe = Env::start().await;
    let tenant = probe.sim.tenant_id();
    drop(probe);
    let env = Env::with(crate::Setup {
        allowed_tenants: Some(vec![tenant.clone()]),
        ..crate::Setup::default()
    })
    .await;
    let rg = format!("{}?api-version=2022-09-01", env.rg());
    for version in [1, 2] {
        let t = mint(
            &env,
            json!({"principal": "agent", "audience": GATEWAY_API, "version": version}),
        );
        let (s, _, body) = env.call(Some(&t), Method::GET, &rg, None).await;
        assert_eq!(s, StatusCode::OK, "v{version}: {body}");
    }
    let other = "99999999-9999-9999-9999-999999999999";
    let env = Env::with(crate::Setup {
        allowed_tenants: Some(vec![other.into()]),
        ..crate::Setup::default()
    })
    .await;
    let (s, _, body) = env
        .call(Some(&env.token("agent")), Method::GET, &rg, None)
        .await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "a tenant outside the allow-list: {body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("tenant"),
        "{body}"
    );
}

#[tokio::test]
async fn an_unreachable_key_set_keeps_the_last_good_keys_and_fails_closed_without_any() {
    let env = Env::start().await;
    let rg = format!("{}?api-version=2022-09-01", env.rg());
    let discovery: String = format!("/{}/discovery", env.sim.tenant_id());
    // Keys cached, then the key endpoint fails: tokens signed by known keys still pass.
    let old = env.token("agent");
    let (s, _, _) = env.call(Some(&old), Method::GET, &rg, None).await;
    assert_eq!(s, StatusCode::OK);
    env.sim
        .set_faults(azure_sim::Faults {
            path_prefix: Some(discovery.clone()),
            error_rate: 1.0,
            error_status: Some(503),
            ..Default::default()
        })
        .unwrap();
    env.sim.rotate_keys(false);
    let (s, _, body) = env.agent(Method::GET, &rg, None).await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "a new kid cannot be fetched: {body}"
    );
    let (s, _, body) = env.call(Some(&old), Method::GET, &rg, None).await;
    assert_eq!(s, StatusCode::OK, "the last good keys are kept: {body}");

    // A fresh gateway that never got keys refuses with 503 rather than let anything through.
    let cold = Env::start().await;
    cold.sim
        .set_faults(azure_sim::Faults {
            path_prefix: Some(format!("/{}/discovery", cold.sim.tenant_id())),
            error_rate: 1.0,
            error_status: Some(503),
            ..Default::default()
        })
        .unwrap();
    let (s, h, body) = cold
        .agent(
            Method::GET,
            &format!("{}?api-version=2022-09-01", cold.rg()),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "AuthenticationUnavailable");
    assert!(h.get("retry-after").is_some());
    assert!(
        cold.sim
            .calls_since(0)
            .iter()
            .all(|c| c.service != azure_sim::Service::Arm)
    );
}
