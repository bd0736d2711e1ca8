//! The data path: forwarding with the gateway's own identity, refusals in Azure's shapes,
//! long-running operations and paging through rewritten URLs, both Key Vault routes, and the
//! upstream token cache.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{API, Env, Setup, client, send};

fn header<'a>(h: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} in {h:?}"))
}

#[tokio::test]
async fn an_agent_reads_demo_rg_and_azure_sees_only_the_gateway() {
    let env = Env::start().await;
    let since = env.sim.last_call_seq();
    let (s, h, body) = env
        .agent(
            Method::GET,
            &format!("{}?api-version=2022-09-01", env.rg()),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["name"], "demo-rg");
    assert!(h.get("x-portcullis-request-id").is_some());
    let (s, _, vm) = env
        .agent(
            Method::GET,
            &format!(
                "{}/providers/Microsoft.Compute/virtualMachines/vm1?{API}",
                env.rg()
            ),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(vm["properties"]["provisioningState"], "Succeeded");
    let arm: Vec<_> = env
        .sim
        .calls_since(since)
        .into_iter()
        .filter(|c| c.service == azure_sim::Service::Arm)
        .collect();
    assert_eq!(arm.len(), 2, "{arm:?}");
    for c in arm {
        let caller = c.caller.expect("Azure saw an authenticated caller");
        assert_eq!(
            caller.name.as_deref(),
            Some("portcullis-baseline"),
            "the gateway's identity, never the agent's"
        );
    }
}

#[tokio::test]
async fn a_vm_delete_is_refused_in_arms_shape_and_never_forwarded() {
    let env = Env::start().await;
    let since = env.sim.last_call_seq();
    let vm = format!(
        "{}/providers/Microsoft.Compute/virtualMachines/vm1?{API}",
        env.rg()
    );
    let (s, h, body) = env.agent(Method::DELETE, &vm, None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(header(&h, "x-ms-error-code"), "AuthorizationFailed");
    assert_eq!(header(&h, "x-ms-failure-cause"), "gateway");
    assert_eq!(body["error"]["code"], "AuthorizationFailed");
    let message = body["error"]["message"].as_str().unwrap();
    let oid = env
        .sim
        .config()
        .principal("agent")
        .unwrap()
        .object_id
        .to_string();
    assert!(message.contains(&oid), "names the principal: {message}");
    assert!(
        message.contains("Microsoft.Compute/virtualMachines/delete"),
        "names the action: {message}"
    );
    assert!(
        message.contains("/resourceGroups/demo-rg/providers/Microsoft.Compute/virtualMachines/vm1"),
        "names the scope: {message}"
    );
    assert!(
        message.contains("no-vm-deletes"),
        "names the rule: {message}"
    );
    assert_eq!(
        body["error"]["additionalInfo"][0]["info"]["rule"],
        "no-vm-deletes"
    );
    // The rule by name, never where the gateway keeps its policy files.
    let policy_dir = env.dir.to_string_lossy().into_owned();
    let said = body.to_string();
    assert!(
        !said.contains(".yaml:") && !said.contains(&policy_dir),
        "the agent is not told the policy's file and line: {said}"
    );
    assert!(env.arm_calls(since).is_empty(), "nothing reached ARM");
    assert!(env.sim.resource_exists(&format!(
        "/subscriptions/{}/resourceGroups/demo-rg/providers/Microsoft.Compute/virtualMachines/vm1",
        env.sim.subscription_id()
    )));

    let (s, _, body) = env
        .call(Some(&env.token("other-agent")), Method::GET, &vm, None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("default deny"),
        "{body}"
    );
    let (s, _, body) = env
        .agent(
            Method::GET,
            &format!(
                "/subscriptions/{}/resourceGroups/shared-rg?api-version=2022-09-01",
                env.sim.subscription_id()
            ),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "reads outside demo-rg: {body}");
}

#[tokio::test]
async fn method_overrides_and_unnamable_requests_are_refused() {
    let env = Env::start().await;
    let vm = env.url(&format!(
        "{}/providers/Microsoft.Compute/virtualMachines/vm1?{API}",
        env.rg()
    ));
    let token = env.token("agent");
    for h in [
        "X-HTTP-Method-Override",
        "X-HTTP-Method",
        "X-Method-Override",
    ] {
        let (s, _, body) = send(env.http.get(&vm).bearer_auth(&token).header(h, "DELETE")).await;
        assert_eq!(
            (s, body["error"]["code"].as_str().unwrap()),
            (StatusCode::BAD_REQUEST, "MethodOverrideNotAllowed"),
            "{h}"
        );
    }
    let (s, _, body) = send(
        env.http
            .get(env.url(&format!(
                "{}/providers/Microsoft.Compute/virtualMachines/vm1",
                env.rg()
            )))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(
        (s, body["error"]["code"].as_str().unwrap()),
        (StatusCode::BAD_REQUEST, "UnrecognizedOperation"),
        "no api-version: {body}"
    );
    let (s, _, body) = send(
        env.http
            .get(env.url(&format!(
                "{}/providers/Microsoft.Compute/virtualMachines/vm1%2F..%2Fvm2?{API}",
                env.rg()
            )))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(
        (s, body["error"]["code"].as_str().unwrap()),
        (StatusCode::BAD_REQUEST, "InvalidRequestPath"),
        "{body}"
    );
}

#[tokio::test]
async fn a_vm_create_completes_through_rewritten_polling() {
    let env = Env::start().await;
    let vm = format!(
        "{}/providers/Microsoft.Compute/virtualMachines/agent-vm?{API}",
        env.rg()
    );
    let body = json!({"location": "eastus", "properties": {"hardwareProfile": {"vmSize": "Standard_B1s"}}});
    let (s, h, created) = env.agent(Method::PUT, &vm, Some(body)).await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let poll = header(&h, "azure-asyncoperation").to_owned();
    assert!(
        poll.starts_with(&env.url("/subscriptions/")),
        "the poll URL points at the gateway: {poll}"
    );
    assert!(poll.contains("portcullis-binding="), "{poll}");
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let (s, _, status) = env.agent(Method::GET, &poll, None).await;
        assert_eq!(s, StatusCode::OK, "the bound poll is allowed: {status}");
        statuses.push(status["status"].as_str().unwrap().to_owned());
        if statuses.last().unwrap() == "Succeeded" {
            break;
        }
    }
    assert_eq!(statuses, ["InProgress", "Succeeded"]);
    let (_, _, got) = env.agent(Method::GET, &vm, None).await;
    assert_eq!(got["properties"]["provisioningState"], "Succeeded");

    // The same poll URL in another principal's hands, or altered, is judged by policy alone.
    let (s, _, _) = env
        .call(Some(&env.token("other-agent")), Method::GET, &poll, None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let forged = poll.replace("portcullis-binding=", "portcullis-binding=00");
    let (s, _, _) = env.agent(Method::GET, &forged, None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn lists_page_through_rewritten_next_links() {
    let env = Env::start().await;
    let mut next = Some(env.url(&format!("{}/resources?api-version=2021-04-01", env.rg())));
    let (mut names, mut pages) = (Vec::new(), 0);
    while let Some(url) = next {
        let (s, _, body) = env.agent(Method::GET, &url, None).await;
        assert_eq!(s, StatusCode::OK, "{url}: {body}");
        pages += 1;
        names.extend(
            body["value"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["name"].as_str().unwrap().to_owned()),
        );
        next = body
            .get("nextLink")
            .and_then(Value::as_str)
            .map(str::to_owned);
        if let Some(n) = &next {
            assert!(
                n.starts_with(&env.url("/")),
                "nextLink points at the gateway: {n}"
            );
        }
    }
    names.sort();
    assert_eq!(names, ["demo-kv", "demostorage01", "vm1"]);
    assert!(pages >= 2);
}

#[tokio::test]
async fn key_vault_by_path_prefix_and_by_host() {
    let env = Env::with(Setup {
        public_host: Some("gw.test"),
        ..Setup::default()
    })
    .await;
    let clear = env.sim.secret_value("demo-kv", "db-password").unwrap();
    let (s, _, by_path) = env
        .agent(
            Method::GET,
            "/keyvault/demo-kv/secrets/db-password?api-version=7.4",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{by_path}");
    assert!(
        by_path["value"]
            .as_str()
            .unwrap()
            .starts_with("[masked:keyvault-secret:"),
        "{by_path}"
    );
    assert!(!by_path.to_string().contains(&clear));

    let by_host = client(
        env.gw.ca_file.as_ref().unwrap(),
        Some(("demo-kv.vault.gw.test", env.gw.gateway_addr)),
    );
    let url = format!(
        "https://demo-kv.vault.gw.test:{}/secrets/db-password/?api-version=7.4",
        env.gw.gateway_addr.port()
    );
    let (s, _, body) = send(by_host.get(&url).bearer_auth(env.token("agent"))).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        body["value"], by_path["value"],
        "the same secret by either route"
    );

    // Paging through the vault stays on the route the agent used.
    let (_, _, list) = send(
        by_host
            .get(format!(
                "https://demo-kv.vault.gw.test:{}/secrets?api-version=7.4",
                env.gw.gateway_addr.port()
            ))
            .bearer_auth(env.token("agent")),
    )
    .await;
    let next = list["nextLink"].as_str().unwrap();
    assert!(
        next.starts_with(&format!(
            "https://demo-kv.vault.gw.test:{}/secrets?",
            env.gw.gateway_addr.port()
        )),
        "{next}"
    );
    let (s, _, _) = send(by_host.get(next).bearer_auth(env.token("agent"))).await;
    assert_eq!(s, StatusCode::OK);

    // No token: Key Vault's challenge, naming the gateway's audience.
    let (s, h, body) = env
        .call(
            None,
            Method::GET,
            "/keyvault/demo-kv/secrets/db-password?api-version=7.4",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "Unauthorized");
    let challenge = header(&h, "www-authenticate");
    assert!(
        challenge.starts_with("Bearer authorization=\"")
            && challenge.contains("resource=\"api://portcullis\""),
        "{challenge}"
    );
    // Writing a secret is not in the demo policy: Key Vault's 403 shape.
    let (s, _, body) = env
        .agent(
            Method::PUT,
            "/keyvault/demo-kv/secrets/new?api-version=7.4",
            Some(json!({"value": "x"})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["code"], "Forbidden");
    assert_eq!(body["error"]["innererror"]["code"], "ForbiddenByRbac");
    assert!(env.sim.secret_value("demo-kv", "new").is_none());
}

#[tokio::test]
async fn upstream_tokens_are_cached_and_refreshed_before_expiry() {
    let count_token_calls = |env: &Env, since| {
        env.sim
            .calls_since(since)
            .iter()
            .filter(|c| c.service == azure_sim::Service::Entra && c.path.ends_with("/token"))
            .count()
    };
    // The agent's token names it, so the gateway asks Graph for no name (which would take a
    // Graph token from the same endpoint): only ARM's tokens are counted here.
    let named_agent = |env: &Env| {
        let mut claims = serde_json::Map::new();
        claims.insert("app_displayname".into(), json!("build-agent"));
        env.sim
            .mint(azure_sim::MintRequest {
                principal: "agent".into(),
                audience: crate::GATEWAY_API.into(),
                version: None,
                lifetime_secs: None,
                not_before_offset_secs: 0,
                client_app: None,
                claims,
                unpublished_key: false,
            })
            .unwrap()
    };
    let env = Env::start().await;
    let token = named_agent(&env);
    let since = env.sim.last_call_seq();
    for _ in 0..3 {
        let (s, _, _) = env
            .call(
                Some(&token),
                Method::GET,
                &format!("{}?api-version=2022-09-01", env.rg()),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK);
    }
    assert_eq!(
        count_token_calls(&env, since),
        1,
        "one token serves many requests"
    );

    // Tokens that expire within the refresh margin are renewed for every request.
    let cfg = azure_sim::SimConfig {
        token_lifetime_secs: 120,
        ..Default::default()
    };
    let env = Env::with(Setup {
        sim_config: cfg,
        ..Setup::default()
    })
    .await;
    let token = named_agent(&env);
    let since = env.sim.last_call_seq();
    for _ in 0..3 {
        let (s, _, _) = env
            .call(
                Some(&token),
                Method::GET,
                &format!("{}?api-version=2022-09-01", env.rg()),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK);
    }
    assert_eq!(
        count_token_calls(&env, since),
        3,
        "an expiring token is refreshed before use"
    );
}

#[tokio::test]
async fn the_admin_listener_answers_health_over_tls() {
    let env = Env::start().await;
    let url = format!("https://{}/healthz", env.gw.admin_addr);
    let (s, _, body) = send(env.http.get(&url)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body["status"], "ok");
    let (s, _, _) = send(
        env.http
            .get(format!("https://{}/subscriptions", env.gw.admin_addr)),
    )
    .await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "the admin listener never forwards to Azure"
    );
}

#[tokio::test]
async fn approve_rules_hold_the_request_and_nothing_is_forwarded() {
    let env = Env::start().await;
    let since = env.sim.last_call_seq();
    let sa = format!(
        "{}/providers/Microsoft.Storage/storageAccounts/heldstore?api-version=2023-05-01",
        env.rg()
    );
    // The agent will not wait: it is told at once that the request waits for approval.
    let (s, h, body) = send(
        env.http
            .put(env.url(&sa))
            .bearer_auth(env.token("agent"))
            .header("x-portcullis-wait", "0")
            .json(&json!({"location": "eastus"})),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(header(&h, "x-ms-error-code"), "ApprovalPending");
    let id = header(&h, "x-portcullis-approval").to_owned();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&id) && message.contains("Nothing was sent to Azure"),
        "{message}"
    );
    let info = &body["error"]["additionalInfo"][0];
    assert_eq!(info["type"], "PortcullisApproval");
    assert_eq!(info["info"]["rule"], "hold-storage-create");
    assert_eq!(info["info"]["status"], "pending");
    assert!(h.contains_key("retry-after"));
    assert!(env.arm_calls(since).is_empty(), "nothing was forwarded");
}

#[tokio::test]
async fn conditions_read_the_body_which_is_forwarded_unchanged_with_the_rules_credential() {
    let env = Env::start().await;
    let rg = format!("{}?api-version=2022-09-01", env.rg());
    let since = env.sim.last_call_seq();
    let (s, _, body) = env
        .agent(
            Method::PUT,
            &rg,
            Some(
                json!({"location": "eastus", "tags": {"reason": "cost report", "owner": "agent"}}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        body["tags"],
        json!({"reason": "cost report", "owner": "agent"}),
        "Azure received the body as sent"
    );
    let put = env
        .sim
        .calls_since(since)
        .into_iter()
        .find(|c| c.method == "PUT")
        .unwrap();
    assert_eq!(
        put.caller.unwrap().name.as_deref(),
        Some("portcullis-elevated"),
        "the rule's credential forwarded it"
    );

    // No reason: the condition cannot be evaluated (no such key), so the allow does not
    // apply (fail closed), and nothing reaches Azure.
    let since = env.sim.last_call_seq();
    let (s, _, body) = env
        .agent(Method::PUT, &rg, Some(json!({"location": "eastus"})))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("fail closed"),
        "{body}"
    );
    let (s, _, _) = env
        .agent(
            Method::PUT,
            &rg,
            Some(json!({"location": "eastus", "tags": {"reason": ""}})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "an empty reason is false");
    assert!(env.arm_calls(since).is_empty());
}
