//! Fail-closed, one test per way a decision or a safeguard can fail: a condition that
//! cannot be evaluated (in a deny, an approve and an allow rule; or one that is not a
//! boolean, names an unknown variable, reads a body that is not JSON or too large, or reads
//! `deployment` on a request that is not one), signing keys out of reach, an answer that
//! cannot be checked for secrets, an audit store that cannot commit, and the gateway's own
//! upstream credential refused. Each asserts the refusal is ARM-shaped, that nothing reached
//! the simulator ("Azure") where nothing may, and that the refusal was recorded.

use portcullis::audit::record::{AuditRecord, Phase};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::leak;
use crate::{API, Env, Setup, TEST_RULES, send};

/// The test policy plus `more` rules (YAML list items under `rules:`), and `head` (YAML
/// under `policy:`, before the rules).
fn with_rules(head: &str, more: &str) -> Setup {
    Setup {
        rules: leak(format!("{head}{TEST_RULES}{more}")),
        ..Setup::default()
    }
}

fn vm(env: &Env, name: &str) -> String {
    format!(
        "{}/providers/Microsoft.Compute/virtualMachines/{name}",
        env.rg()
    )
}

fn vm_body() -> Value {
    json!({"location": "eastus", "properties": {"hardwareProfile": {"vmSize": "Standard_B1s"}}})
}

/// Asserts the answer is the gateway's own refusal in ARM's error shape with `code`, and
/// returns its request id.
fn arm_refusal(status: StatusCode, h: &HeaderMap, body: &Value, code: &str) -> String {
    assert_eq!(body["error"]["code"], code, "{status}: {body}");
    assert_eq!(h["x-ms-error-code"], code, "{body}");
    assert_eq!(h["x-ms-failure-cause"], "gateway", "{body}");
    assert!(
        h["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"),
        "{h:?}"
    );
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.len() > 20, "a message that says why: {body}");
    h["x-ms-request-id"].to_str().unwrap().to_owned()
}

/// The refusal recorded for `request_id`.
async fn recorded_refusal(env: &Env, request_id: &str) -> AuditRecord {
    let all = env.audit_records().await;
    all.into_iter()
        .find(|r| r.request_id == request_id && r.phase == Phase::Refused)
        .unwrap_or_else(|| panic!("no refusal recorded for request {request_id}"))
}

/// A PUT of a VM as the agent; `body` is sent as JSON text (or as given, when not JSON).
async fn put_vm(env: &Env, name: &str, body: &str) -> (StatusCode, HeaderMap, Value) {
    send(
        env.http
            .put(env.url(&format!("{}?{API}", vm(env, name))))
            .bearer_auth(env.token("agent"))
            .header("content-type", "application/json")
            .header("x-portcullis-wait", "0")
            .body(body.to_owned()),
    )
    .await
}

/// A POST of a VM action as the agent, with a JSON body or none.
async fn post_vm(
    env: &Env,
    name: &str,
    action: &str,
    body: Option<Value>,
) -> (StatusCode, HeaderMap, Value) {
    env.agent(
        Method::POST,
        &format!("{}/{action}?{API}", vm(env, name)),
        body,
    )
    .await
}

// === (1) a deny rule whose condition cannot be evaluated: the deny applies ===

#[tokio::test]
async fn a_deny_rule_whose_condition_fails_at_runtime_applies() {
    let env = Env::with(with_rules(
        "",
        r#"    - name: deny-flagged-vm-writes
      effect: deny
      principals: ["*"]
      actions: [Microsoft.Compute/virtualMachines/write]
      scopes: ["*"]
      when: "request.body.x.y > 1"
"#,
    ))
    .await;
    // When the condition can be decided and is false, the VM write is allowed: the refusals
    // below are the condition's failure, not the rule alone.
    let mut ok = vm_body();
    ok["x"] = json!({"y": 0});
    let (s, _, b) = put_vm(&env, "fc-deny-ok", &ok.to_string()).await;
    assert!(s.is_success(), "{s}: {b}");

    let mut type_error = vm_body();
    type_error["x"] = json!({"y": "high"});
    for (what, name, body) in [
        ("a missing field", "fc-deny-missing", vm_body()),
        ("a type error", "fc-deny-type", type_error),
    ] {
        let since = env.sim.last_call_seq();
        let (s, h, b) = put_vm(&env, name, &body.to_string()).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{what}: {b}");
        let id = arm_refusal(s, &h, &b, "AuthorizationFailed");
        let message = b["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("deny-flagged-vm-writes")
                && message.contains("could not be evaluated")
                && message.contains("fail closed"),
            "{what}: {message}"
        );
        assert_eq!(
            b["error"]["additionalInfo"][0]["info"]["rule"], "deny-flagged-vm-writes",
            "{b}"
        );
        assert!(
            env.arm_calls(since).is_empty(),
            "{what}: nothing reached Azure"
        );
        assert!(!env.sim.resource_exists(&vm(&env, name)));
        let r = recorded_refusal(&env, &id).await;
        assert_eq!(
            (r.status, r.decision.as_deref(), r.rule.as_deref()),
            (Some(403), Some("deny"), Some("deny-flagged-vm-writes")),
            "{what}: {r:?}"
        );
        assert!(
            r.reason
                .as_deref()
                .unwrap_or_default()
                .contains("fail closed"),
            "{r:?}"
        );
    }
}

// === (2) an approve rule whose condition cannot be evaluated: held, not allowed ===

#[tokio::test]
async fn an_approve_rule_whose_condition_fails_at_runtime_holds() {
    let env = Env::with(with_rules(
        "",
        r#"    - name: hold-big-vms
      effect: approve
      principals: [group:ai-agents]
      actions: [Microsoft.Compute/virtualMachines/write]
      scopes: ["/subscriptions/*/resourceGroups/demo-rg"]
      when: "request.body.properties.hardwareProfile.vmSize.startsWith('Standard_D')"
      approval: {approvers: [group:approvers], quorum: 1, timeout: 10m, style: hold}
"#,
    ))
    .await;
    // Decidable and false: the VM write is allowed (agents-write-vms).
    let (s, _, b) = put_vm(&env, "fc-hold-ok", &vm_body().to_string()).await;
    assert!(s.is_success(), "{s}: {b}");

    let mut type_error = vm_body();
    type_error["properties"]["hardwareProfile"]["vmSize"] = json!(42);
    for (what, name, body) in [
        (
            "a missing field",
            "fc-hold-missing",
            json!({"location": "eastus"}),
        ),
        ("a type error", "fc-hold-type", type_error),
    ] {
        let since = env.sim.last_call_seq();
        let (s, h, b) = put_vm(&env, name, &body.to_string()).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{what}: {b}");
        let id = arm_refusal(s, &h, &b, "ApprovalPending");
        let info = &b["error"]["additionalInfo"][0]["info"];
        assert_eq!(info["rule"], "hold-big-vms", "{b}");
        assert!(
            info["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("could not be evaluated"),
            "{what}: the approver is told why: {b}"
        );
        assert!(
            env.arm_calls(since).is_empty(),
            "{what}: nothing reached Azure"
        );
        // Held, not refused: its approval is pending (issue 21).
        let r = env
            .audit_records()
            .await
            .into_iter()
            .find(|r| r.request_id == id && r.phase == Phase::Held)
            .unwrap_or_else(|| panic!("{what}: no held record for request {id}"));
        assert_eq!(
            (r.status, r.decision.as_deref(), r.rule.as_deref()),
            (Some(403), Some("approve"), Some("hold-big-vms")),
            "{what}: {r:?}"
        );
        assert_eq!(
            r.approval.as_deref(),
            info["approvalId"].as_str(),
            "{what}: the record names the approval"
        );
    }
}

// === (3) an allow rule whose condition cannot be evaluated: it does not apply ===

/// datapath.rs (`conditions_read_the_body_which_is_forwarded_unchanged_...`) shows this for
/// the shipped `tag-demo-rg-with-a-reason` rule (a missing field); this adds a type error,
/// the default deny naming the rule that did not apply, and the record.
#[tokio::test]
async fn an_allow_rule_whose_condition_fails_at_runtime_does_not_apply() {
    let env = Env::with(with_rules(
        "",
        r#"    - name: start-vms-with-a-reason
      effect: allow
      principals: [group:ai-agents]
      actions: [Microsoft.Compute/virtualMachines/start/action]
      scopes: ["/subscriptions/*/resourceGroups/demo-rg"]
      when: "request.body.reason.size() > 0"
"#,
    ))
    .await;
    for (what, body) in [
        ("no body (a missing field)", None),
        ("a type error", Some(json!({"reason": 5}))),
    ] {
        let since = env.sim.last_call_seq();
        let (s, h, b) = post_vm(&env, "vm1", "start", body).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{what}: {b}");
        let id = arm_refusal(s, &h, &b, "AuthorizationFailed");
        let message = b["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("default deny")
                && message.contains("start-vms-with-a-reason")
                && message.contains("does not apply (fail closed)"),
            "{what}: {message}"
        );
        assert!(
            env.arm_calls(since).is_empty(),
            "{what}: nothing reached Azure"
        );
        let r = recorded_refusal(&env, &id).await;
        assert_eq!(
            (r.status, r.decision.as_deref(), r.rule.as_deref()),
            (Some(403), Some("deny"), None),
            "{what}: {r:?}"
        );
    }
    // Decidable and true: the rule applies and the start is forwarded.
    let since = env.sim.last_call_seq();
    let (s, _, b) = post_vm(&env, "vm1", "start", Some(json!({"reason": "maintenance"}))).await;
    assert!(s.is_success(), "{s}: {b}");
    assert!(
        env.arm_calls(since)
            .iter()
            .any(|c| c.method == "POST" && c.path.ends_with("/vm1/start")),
        "the allowed start reached Azure"
    );
}

// === (4) other evaluation failures ===

/// A condition that gives a string, one that names an unknown variable, one that reads
/// `deployment` on a request that is not a deployment, and body conditions on a body that
/// is not JSON or larger than `policy.max_body_bytes`: each deny applies (each rule is
/// scoped to its own VM, so each refusal names its own cause); the same non-boolean
/// condition on an allow rule does not apply.
#[tokio::test]
async fn conditions_that_are_not_booleans_or_read_what_is_not_there_fail_closed() {
    let scoped = |name: &str, vm: &str, when: &str| {
        format!(
            "    - name: {name}\n      effect: deny\n      principals: [\"*\"]\n      actions: [Microsoft.Compute/virtualMachines/write]\n      scopes: [\"/subscriptions/*/resourceGroups/demo-rg/providers/Microsoft.Compute/virtualMachines/{vm}\"]\n      when: '{when}'\n"
        )
    };
    let rules = [
        scoped("deny-not-a-boolean", "fc-nonbool", "operation.resource_name"),
        scoped("deny-unknown-variable", "fc-unknown", "nosuch.flag == true"),
        scoped(
            "deny-deployment-facts",
            "fc-deployment",
            "deployment.resources.size() > 0",
        ),
        scoped("deny-body-not-json", "fc-notjson", "request.body.x.y > 1"),
        scoped("deny-body-too-large", "fc-toolarge", "request.body.x.y > 1"),
        "    - name: restart-when-not-a-boolean\n      effect: allow\n      principals: [group:ai-agents]\n      actions: [Microsoft.Compute/virtualMachines/restart/action]\n      scopes: [\"/subscriptions/*/resourceGroups/demo-rg\"]\n      when: 'operation.resource_name'\n".to_owned(),
    ]
    .concat();
    let env = Env::with(with_rules("  max_body_bytes: 1024\n", leak(rules))).await;

    let mut large = vm_body();
    large["x"] = json!({"y": 0});
    large["tags"] = json!({"padding": "p".repeat(2000)});
    let cases = [
        (
            "a string, not a boolean",
            "fc-nonbool",
            "deny-not-a-boolean",
            vm_body().to_string(),
            "not a boolean",
        ),
        (
            "an unknown variable",
            "fc-unknown",
            "deny-unknown-variable",
            vm_body().to_string(),
            "could not be evaluated",
        ),
        (
            "deployment facts on a VM write",
            "fc-deployment",
            "deny-deployment-facts",
            vm_body().to_string(),
            "could not be evaluated",
        ),
        (
            "a body that is not JSON",
            "fc-notjson",
            "deny-body-not-json",
            "location=eastus&x.y=0".to_owned(),
            "could not be evaluated",
        ),
        (
            "a body over policy.max_body_bytes",
            "fc-toolarge",
            "deny-body-too-large",
            large.to_string(),
            "could not be evaluated",
        ),
    ];
    for (what, name, rule, body, why) in cases {
        let since = env.sim.last_call_seq();
        let (s, h, b) = put_vm(&env, name, &body).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{what}: {b}");
        let id = arm_refusal(s, &h, &b, "AuthorizationFailed");
        let message = b["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(rule) && message.contains(why) && message.contains("fail closed"),
            "{what}: {message}"
        );
        assert!(
            env.arm_calls(since).is_empty(),
            "{what}: nothing reached Azure"
        );
        let r = recorded_refusal(&env, &id).await;
        assert_eq!(
            (r.status, r.decision.as_deref(), r.rule.as_deref()),
            (Some(403), Some("deny"), Some(rule)),
            "{what}: {r:?}"
        );
    }
    // The same VM writes with nothing undecidable pass (only agents-write-vms applies).
    let (s, _, b) = put_vm(&env, "fc-other", &vm_body().to_string()).await;
    assert!(s.is_success(), "{s}: {b}");

    // A non-boolean allow does not apply: default deny.
    let since = env.sim.last_call_seq();
    let (s, h, b) = post_vm(&env, "vm1", "restart", None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    let id = arm_refusal(s, &h, &b, "AuthorizationFailed");
    let message = b["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("default deny")
            && message.contains("restart-when-not-a-boolean")
            && message.contains("not a boolean"),
        "{message}"
    );
    assert!(env.arm_calls(since).is_empty());
    assert_eq!(recorded_refusal(&env, &id).await.status, Some(403));
}

// === (5) signing keys out of reach, none cached: 503 ===

/// identity.rs (`an_unreachable_key_set_keeps_the_last_good_keys_and_fails_closed_without_any`)
/// proves the 503 and that nothing reaches ARM; this adds the ARM shape, the record, and the
/// whole authority (metadata too) out of reach, not only the key set.
#[tokio::test]
async fn with_no_keys_and_the_authority_out_of_reach_requests_get_503_and_are_recorded() {
    for prefix in ["discovery", ""] {
        let env = Env::start().await;
        let path = format!("/{}/{prefix}", env.sim.tenant_id());
        env.sim
            .set_faults(azure_sim::Faults {
                path_prefix: Some(path.clone()),
                error_rate: 1.0,
                error_status: Some(503),
                ..Default::default()
            })
            .unwrap();
        let since = env.sim.last_call_seq();
        let (s, h, b) = put_vm(&env, "fc-nokeys", &vm_body().to_string()).await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{path}: {b}");
        let id = arm_refusal(s, &h, &b, "AuthenticationUnavailable");
        assert!(h.get("retry-after").is_some(), "{h:?}");
        let reached = env.sim.calls_since(since);
        assert!(
            reached
                .iter()
                .all(|c| matches!(c.service, azure_sim::Service::Entra)),
            "{path}: only the authority was asked: {reached:?}"
        );
        assert!(!env.sim.resource_exists(&vm(&env, "fc-nokeys")));
        let r = recorded_refusal(&env, &id).await;
        assert_eq!(r.status, Some(503), "{r:?}");
        assert_eq!(r.principal, None, "nobody was authenticated: {r:?}");
    }
}

// === (6) an answer that cannot be checked for secrets: withheld ===

/// masking.rs (`answers_too_large_to_check_are_withheld`) proves an answer larger than
/// `masking.max_body_bytes` is withheld. Here the answer is small on the wire but encoded
/// (gzip, forced by the simulator whatever the gateway asked for), and decodes past the
/// limit: it cannot be read whole, so it cannot be checked, so it is withheld.
#[tokio::test]
async fn an_encoded_answer_that_decodes_past_the_limit_is_withheld() {
    let env = Env::with(Setup {
        extra: "masking: {max_body_bytes: 4096}\n",
        ..Setup::default()
    })
    .await;
    // A secret larger than the limit once decoded, tiny once compressed.
    let secret = format!("s3cr3t-{}", "A".repeat(8000));
    let sim_http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(env.sim.ca_pem().as_bytes()).unwrap())
        .tls_built_in_root_certs(false)
        .build()
        .unwrap();
    let kv_token = env
        .sim
        .token("portcullis-baseline", "https://vault.azure.net")
        .unwrap();
    let r = sim_http
        .put(format!(
            "{}/keyvault/demo-kv/secrets/big-one?api-version=7.4",
            env.sim.url()
        ))
        .bearer_auth(&kv_token)
        .json(&json!({"value": secret}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    env.sim
        .set_faults(azure_sim::Faults {
            path_prefix: Some("/keyvault/demo-kv/secrets/big-one".into()),
            force_encoding: Some("gzip".into()),
            ..Default::default()
        })
        .unwrap();
    let since = env.sim.last_call_seq();
    let resp = env
        .http
        .get(env.url("/keyvault/demo-kv/secrets/big-one?api-version=7.4"))
        .bearer_auth(env.token("agent"))
        .send()
        .await
        .unwrap();
    let (s, h) = (resp.status(), resp.headers().clone());
    let text = resp.text().await.unwrap();
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{text}");
    assert_eq!(h["x-ms-error-code"], "GatewayResponseNotMaskable", "{text}");
    assert_eq!(h["x-ms-failure-cause"], "gateway");
    assert!(
        !text.contains("s3cr3t") && !text.contains(&"A".repeat(100)),
        "nothing of the secret reaches the agent: {text}"
    );
    let b: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(b["error"]["code"], "GatewayResponseNotMaskable");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("larger than 4096"),
        "{b}"
    );
    // Azure answered (the read was carried out); the gateway withheld the answer.
    let calls = env.sim.calls_since(since);
    assert!(
        calls
            .iter()
            .any(|c| c.path.ends_with("/secrets/big-one") && c.status == 200),
        "{calls:?}"
    );
    let id = h["x-ms-request-id"].to_str().unwrap();
    let r = recorded_refusal(&env, id).await;
    assert_eq!(r.status, Some(502), "{r:?}");
    let everything = serde_json::to_string(&env.audit_records().await).unwrap();
    assert!(
        !everything.contains("s3cr3t"),
        "the audit trail holds nothing of the secret"
    );
}

// === (7) the audit store cannot commit: 503, nothing forwarded ===

fn sample_sum(page: &str, prefix: &str, needle: &str) -> f64 {
    page.lines()
        .filter(|l| l.starts_with(prefix) && l.contains(needle))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// audit.rs (`when_the_store_cannot_commit_nothing_is_forwarded`, a SQLite table renamed
/// away), crash.rs (`a_full_store_refuses_and_forwards_nothing`, `audit.max_db_bytes`) and
/// postgres.rs (the database behind a cut proxy) prove the 503 and that nothing is
/// forwarded. This adds a write (so "nothing forwarded" means "nothing created"), the ARM
/// shape, and what "recorded" can mean when the store is what failed: the refusal cannot
/// be stored, so it is counted (`portcullis_requests_total{status="503"}`), and no record
/// claims it was forwarded once the store is back.
#[tokio::test]
async fn when_the_audit_store_cannot_commit_a_write_is_refused_and_counted() {
    let env = Env::start().await;
    let (s, _, _) = env
        .agent(
            Method::GET,
            &format!("{}?api-version=2022-09-01", env.rg()),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let metrics = || async {
        env.http
            .get(format!("https://{}/metrics", env.gw.admin_addr))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let before = sample_sum(
        &metrics().await,
        "portcullis_requests_total{",
        "status=\"503\"",
    );
    let db = env.dir.join("state/audit.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query("ALTER TABLE audit_records RENAME TO audit_records_away")
        .execute(&pool)
        .await
        .unwrap();
    let since = env.sim.last_call_seq();
    let (s, h, b) = put_vm(&env, "fc-nostore", &vm_body().to_string()).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{b}");
    let id = arm_refusal(s, &h, &b, "AuditUnavailable");
    assert!(env.arm_calls(since).is_empty(), "nothing was forwarded");
    assert!(!env.sim.resource_exists(&vm(&env, "fc-nostore")));
    let after = sample_sum(
        &metrics().await,
        "portcullis_requests_total{",
        "status=\"503\"",
    );
    assert!(
        after >= before + 1.0,
        "the refusal is counted: {before} → {after}"
    );

    sqlx::query("ALTER TABLE audit_records_away RENAME TO audit_records")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let (s, _, _) = env
        .agent(
            Method::GET,
            &format!("{}?api-version=2022-09-01", env.rg()),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "service resumes");
    assert!(
        env.audit_records()
            .await
            .iter()
            .all(|r| !(r.request_id == id && r.phase == Phase::Request)),
        "no record says the refused write was forwarded"
    );
}

// === (8) the gateway's own upstream credential refused: 502, nothing forwarded ===

/// credentials.rs (`an_unregistered_certificate_fails_closed`) proves this for a certificate
/// the directory does not know; here a client secret that is wrong, and a token endpoint
/// that fails, each with the ARM shape and the record.
#[tokio::test]
async fn when_the_upstream_credential_is_refused_nothing_is_forwarded() {
    // A wrong client secret file.
    let env = Env::with(Setup {
        credential: Some(Box::new(|sim: &azure_sim::Simulator, dir: &std::path::Path| {
            std::fs::write(dir.join("wrong.secret"), "not-the-secret").unwrap();
            format!(
                "{{type: client_secret, tenant: {}, client_id: {}, client_secret: {{file: wrong.secret}}}}",
                sim.tenant_id(),
                sim.config()
                    .principal("portcullis-baseline")
                    .unwrap()
                    .app_id
                    .unwrap()
            )
        })),
        ..Setup::default()
    })
    .await;
    check_credential_refusal(&env, "a wrong client secret").await;

    // The right secret, but the token endpoint fails.
    let env = Env::start().await;
    env.sim
        .set_faults(azure_sim::Faults {
            path_prefix: Some(format!("/{}/oauth2", env.sim.tenant_id())),
            error_rate: 1.0,
            error_status: Some(500),
            ..Default::default()
        })
        .unwrap();
    check_credential_refusal(&env, "a failing token endpoint").await;
}

async fn check_credential_refusal(env: &Env, what: &str) {
    let since = env.sim.last_call_seq();
    let (s, h, b) = put_vm(env, "fc-nocred", &vm_body().to_string()).await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{what}: {b}");
    let id = arm_refusal(s, &h, &b, "GatewayUpstreamCredentialFailed");
    let reached = env.sim.calls_since(since);
    assert!(
        reached.iter().all(|c| !matches!(
            c.service,
            azure_sim::Service::Arm | azure_sim::Service::KeyVault
        )),
        "{what}: nothing but the token endpoint was asked: {reached:?}"
    );
    assert!(!env.sim.resource_exists(&vm(env, "fc-nocred")));
    let r = recorded_refusal(env, &id).await;
    assert_eq!(r.status, Some(502), "{what}: {r:?}");
    // Policy allowed it, so its request was recorded (before the token was asked for);
    // the refusal follows it. The refusal itself carries no decision (only policy's own
    // refusals do): the request's record is where the decision is.
    let all = env.audit_records().await;
    let request = all
        .iter()
        .find(|r| r.request_id == id && r.phase == Phase::Request)
        .unwrap_or_else(|| panic!("{what}: no request record"));
    assert_eq!(
        request.decision.as_deref(),
        Some("allow"),
        "{what}: {request:?}"
    );
    assert!(
        all.iter()
            .all(|r| !(r.request_id == id && r.phase == Phase::Response)),
        "{what}: no answer recorded"
    );
}
