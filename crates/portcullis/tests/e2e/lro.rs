//! A pending approval presented as a long-running operation (`approval.style: auto`, the
//! default, for operations Azure clients poll): after the hold the agent gets ARM's 202
//! with the gateway's own status and result URLs, bound to it; the official Python SDK's
//! and the az CLI's pollers wait for the approver; once approved, the first poll forwards
//! the request (once) and then follows Azure's own operation. Other principals get 403,
//! forged URLs 404; the held request is sealed at rest and gone once used or refused; the
//! status URL works on another replica and after a restart.

use std::process::Stdio;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::crash::Gateway;
use crate::store::{Schema, pg_url};
use crate::{Env, GATEWAY_API, Setup, TEST_RULES, leak, prepare, send};

/// The hold before a pending approval is answered as a long-running operation, and the
/// Retry-After the gateway asks pollers for.
const HOLD_SECS: u64 = 2;
const EXTRA: &str = "approvals:\n  hold: 2s\n  retry_after: 1s\n";

/// The test policy, plus (in shared-rg): agents' storage creates held for approval (style
/// left at its default, auto) and their reads; another agent that may create VMs there
/// and whose deletes are held; one account held the old way (`style: hold`).
fn rules() -> &'static str {
    let other = azure_sim::config::derived_id("app", "other-agent");
    leak(format!(
        r#"{TEST_RULES}    - name: lro-storage-in-shared-rg
      effect: approve
      principals: [group:ai-agents]
      actions: [Microsoft.Storage/storageAccounts/write]
      scopes: ["/subscriptions/*/resourceGroups/shared-rg"]
      approval: {{approvers: [group:approvers], quorum: 1, timeout: 10m}}
      credential: elevated
    - name: hold-style-account
      effect: approve
      principals: [group:ai-agents]
      actions: [Microsoft.Storage/storageAccounts/write]
      scopes: ["/subscriptions/*/resourceGroups/shared-rg/providers/Microsoft.Storage/storageAccounts/heldstyle"]
      approval: {{approvers: [group:approvers], quorum: 1, timeout: 10m, style: hold}}
      credential: elevated
    - name: lro-listkeys-in-shared-rg
      effect: approve
      principals: [group:ai-agents]
      actions: [Microsoft.Storage/storageAccounts/listKeys/action]
      scopes: ["/subscriptions/*/resourceGroups/shared-rg"]
      approval: {{approvers: [group:approvers], quorum: 1, timeout: 10m}}
    - name: async-key-regeneration
      effect: approve
      principals: [group:ai-agents]
      actions: [Microsoft.Storage/storageAccounts/regenerateKey/action]
      scopes: ["/subscriptions/*/resourceGroups/shared-rg"]
      approval: {{approvers: [group:approvers], style: async}}
    - name: async-batches
      effect: approve
      principals: [group:ai-agents]
      actions: [Microsoft.Resources/batch/action]
      scopes: ["*"]
      approval: {{approvers: [group:approvers], style: async}}
    - name: agents-read-shared-rg-storage
      effect: allow
      principals: [group:ai-agents]
      actions: [Microsoft.Storage/storageAccounts/read]
      scopes: ["/subscriptions/*/resourceGroups/shared-rg"]
    - name: agents-check-names
      effect: allow
      principals: [group:ai-agents]
      actions: [Microsoft.Storage/checknameavailability/read, Microsoft.Resources/subscriptions/read, Microsoft.Resources/subscriptions/resourceGroups/read]
      scopes: ["/"]
    - name: other-agent-vms-in-shared-rg
      effect: allow
      principals: [app:{other}]
      actions: [Microsoft.Compute/virtualMachines/write, Microsoft.Compute/virtualMachines/read]
      scopes: ["/subscriptions/*/resourceGroups/shared-rg"]
    - name: one-vm-create-needs-approval
      effect: approve
      principals: [app:{other}]
      actions: [Microsoft.Compute/virtualMachines/write]
      scopes: ["/subscriptions/*/resourceGroups/shared-rg/providers/Microsoft.Compute/virtualMachines/sdkheldvm"]
      approval: {{approvers: [group:approvers], quorum: 1, timeout: 10m}}
    - name: other-agent-vm-deletes-need-approval
      effect: approve
      principals: [app:{other}]
      actions: [Microsoft.Compute/virtualMachines/delete]
      scopes: ["/subscriptions/*/resourceGroups/shared-rg"]
      approval: {{approvers: [group:approvers], quorum: 1, timeout: 10m}}
"#
    ))
}

fn setup() -> Setup {
    Setup {
        rules: rules(),
        extra: EXTRA,
        ..Setup::default()
    }
}

fn account_path(sub: &str, name: &str) -> String {
    format!(
        "/subscriptions/{sub}/resourceGroups/shared-rg/providers/Microsoft.Storage/storageAccounts/{name}?api-version=2023-05-01"
    )
}

fn header<'h>(h: &'h reqwest::header::HeaderMap, name: &str) -> &'h str {
    h.get(name)
        .unwrap_or_else(|| panic!("no {name} header: {h:?}"))
        .to_str()
        .unwrap()
}

/// A connection string with an account key: secret-shaped, so masked in the audit trail;
/// it must not be at rest in clear anywhere else either.
const KEY: &str =
    "Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmE=";

fn create_body() -> Value {
    json!({
        "location": "eastus",
        "sku": {"name": "Standard_LRS"},
        "kind": "StorageV2",
        "tags": {"conn": format!("DefaultEndpointsProtocol=https;AccountName=x;AccountKey={KEY}")},
    })
}

/// What a create answered as a long-running operation hands the agent.
struct Accepted {
    status_url: String,
    result_url: String,
    id: String,
}

/// The agent's storage account create in shared-rg, not waiting: answered 202 at once.
async fn accepted_create(env: &Env, name: &str) -> Accepted {
    let (s, h, body) = send(
        env.http
            .put(env.url(&account_path(&env.sim.subscription_id(), name)))
            .bearer_auth(env.token("agent"))
            .header("x-portcullis-wait", "0")
            .json(&create_body()),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{body}");
    Accepted {
        status_url: header(&h, "azure-asyncoperation").to_owned(),
        result_url: header(&h, "location").to_owned(),
        id: header(&h, "x-portcullis-approval").to_owned(),
    }
}

/// Every byte of the state store's files, to look for what must not be there.
fn store_bytes(state: &std::path::Path) -> Vec<u8> {
    let mut all = Vec::new();
    for f in ["audit.db", "audit.db-wal"] {
        if let Ok(b) = std::fs::read(state.join(f)) {
            all.extend(b);
        }
    }
    all
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Polls `url` as `token` until the status is terminal (deadline 30 s); returns the last
/// body.
async fn poll_until_done(http: &reqwest::Client, url: &str, token: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (s, _, body) = send(http.get(url).bearer_auth(token)).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        if body["status"] != "InProgress" {
            return body;
        }
        assert!(Instant::now() < deadline, "never finished: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_approval_is_answered_as_a_long_running_operation() {
    let env = Env::with(setup()).await;
    let sub = env.sim.subscription_id();
    let since = env.sim.last_call_seq();
    let puts = |name: &str| {
        env.arm_calls(since)
            .into_iter()
            .filter(|c| c.method == "PUT" && c.path.ends_with(&format!("/{name}")))
            .count()
    };
    let agent = env.token("agent");

    // Held for the hold (2 s), then ARM's first answer to a long-running create.
    let started = Instant::now();
    let (s, h, body) = send(
        env.http
            .put(env.url(&account_path(&sub, "lrohttp")))
            .bearer_auth(&agent)
            .json(&create_body()),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{body}");
    assert!(
        started.elapsed() >= Duration::from_secs(HOLD_SECS),
        "held first"
    );
    let status_url = header(&h, "azure-asyncoperation").to_owned();
    let result_url = header(&h, "location").to_owned();
    let id = header(&h, "x-portcullis-approval").to_owned();
    assert_eq!(header(&h, "retry-after"), "1");
    for u in [&status_url, &result_url] {
        assert!(
            u.starts_with(&env.url("/portcullis/approvals/")) && u.contains("portcullis-binding="),
            "{u}"
        );
    }
    assert_eq!(puts("lrohttp"), 0, "nothing reached Azure");

    // Pending: InProgress, with the approval and a message.
    let (s, h, body) = send(env.http.get(&status_url).bearer_auth(&agent)).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "InProgress", "{body}");
    assert_eq!(body["properties"]["approvalId"], id.as_str(), "{body}");
    assert!(
        body["properties"]["message"]
            .as_str()
            .unwrap()
            .contains("Waiting for approval"),
        "{body}"
    );
    assert_eq!(header(&h, "retry-after"), "1");
    let (s, h, _) = send(env.http.get(&result_url).bearer_auth(&agent)).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(header(&h, "location"), result_url);
    // A client that appends its api-version still polls (the query is not read).
    let (s, _, body) = send(
        env.http
            .get(format!("{status_url}&api-version=2023-05-01"))
            .bearer_auth(&agent),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "InProgress", "{body}");

    // Another principal: 403 in ARM's shape; a forged or unknown URL: 404.
    let other = env.token("other-agent");
    let (s, h, body) = send(env.http.get(&status_url).bearer_auth(&other)).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "AuthorizationFailed", "{body}");
    assert_eq!(header(&h, "x-ms-error-code"), "AuthorizationFailed");
    let flip = |u: &str| {
        let last = u.chars().last().unwrap();
        format!(
            "{}{}",
            &u[..u.len() - 1],
            if last == '0' { '1' } else { '0' }
        )
    };
    for forged in [
        flip(&status_url),
        status_url.replace(&id, &uuid_like()),
        status_url.replace("/status?", "/other?"),
        status_url.split('?').next().unwrap().to_owned(),
    ] {
        for token in [&agent, &other] {
            let (s, _, body) = send(env.http.get(&forged).bearer_auth(token)).await;
            assert_eq!(s, StatusCode::NOT_FOUND, "{forged}: {body}");
            assert_eq!(body["error"]["code"], "OperationNotFound", "{body}");
        }
    }
    // Never forwarded, whatever is appended.
    assert_eq!(puts("lrohttp"), 0);

    // At rest: sealed, no clear key anywhere in the store (the audit trail masks it).
    let state = env.dir.join("state");
    assert!(
        !contains(&store_bytes(&state), KEY),
        "the held request's key is not in the store in clear"
    );
    let store = portcullis::audit::store::Store::open(&state.join("audit.db"))
        .await
        .unwrap();
    assert!(store.operation(&id).await.unwrap().unwrap().has_request);

    // Approved: the first poll forwards it, once, with the rule's credential; concurrent
    // polls do not forward again.
    decide(&env, &id, "approve").await;
    let poll = || send(env.http.get(&status_url).bearer_auth(&agent));
    let (a, b, c) = tokio::join!(poll(), poll(), poll());
    for (s, _, body) in [&a, &b, &c] {
        assert_eq!(*s, StatusCode::OK, "{body}");
        assert!(
            matches!(body["status"].as_str(), Some("InProgress" | "Succeeded")),
            "{body}"
        );
    }
    let done = poll_until_done(&env.http, &status_url, &agent).await;
    assert_eq!(done["status"], "Succeeded", "{done}");
    let forwarded: Vec<_> = env
        .arm_calls(since)
        .into_iter()
        .filter(|c| c.method == "PUT" && c.path.ends_with("/lrohttp"))
        .collect();
    assert_eq!(forwarded.len(), 1, "forwarded once: {forwarded:?}");
    assert_eq!(
        forwarded[0].caller.as_ref().and_then(|c| c.name.as_deref()),
        Some("portcullis-elevated")
    );
    let (s, _, account) = send(env.http.get(&result_url).bearer_auth(&agent)).await;
    assert_eq!(s, StatusCode::OK, "{account}");
    assert_eq!(account["name"], "lrohttp", "{account}");
    assert_eq!(account["properties"]["provisioningState"], "Succeeded");
    assert_eq!(puts("lrohttp"), 1);
    assert!(
        !store.operation(&id).await.unwrap().unwrap().has_request,
        "the held request is gone once forwarded"
    );

    // On the record: the forward names its approval and who approved, like any approved
    // forward; its answer follows.
    let records = env.audit_records().await;
    let forward = records
        .iter()
        .find(|r| {
            r.phase == portcullis::audit::record::Phase::Request
                && r.approval.as_deref() == Some(id.as_str())
                && r.method == "PUT"
        })
        .expect("the forward is recorded");
    assert!(
        forward
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("approved by") && r.contains(&id)),
        "{forward:?}"
    );
    assert!(
        records
            .iter()
            .any(|r| r.phase == portcullis::audit::record::Phase::Held
                && r.approval.as_deref() == Some(id.as_str())
                && r.status == Some(202)),
        "the 202 is recorded, as held"
    );
    assert!(!contains(&store_bytes(&state), KEY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_operation_fails_with_approval_denied_and_its_request_is_dropped() {
    let env = Env::with(setup()).await;
    let since = env.sim.last_call_seq();
    let agent = env.token("agent");
    let Accepted {
        status_url,
        result_url,
        id,
    } = accepted_create(&env, "lrodenied").await;
    decide(&env, &id, "deny").await;
    let (s, _, body) = send(env.http.get(&status_url).bearer_auth(&agent)).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "Failed", "{body}");
    assert_eq!(body["error"]["code"], "ApprovalDenied", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("denied in a test"),
        "{body}"
    );
    let (s, h, body) = send(env.http.get(&result_url).bearer_auth(&agent)).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(header(&h, "x-ms-error-code"), "ApprovalDenied");
    assert!(
        env.arm_calls(since).iter().all(|c| c.method != "PUT"),
        "nothing reached Azure"
    );
    // The sweeper drops the held request of a settled approval (within its 2 s pass).
    let store = portcullis::audit::store::Store::open(&env.dir.join("state/audit.db"))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.operation(&id).await.unwrap().unwrap().has_request {
        assert!(
            Instant::now() < deadline,
            "the denied request is still kept"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_rule_chooses_how_a_pending_approval_is_presented() {
    let env = Env::with(setup()).await;
    let sub = env.sim.subscription_id();
    // `style: hold` on the rule: 403 ApprovalPending, as before.
    let (s, h, body) = env
        .call(
            Some(&env.token("agent")),
            Method::PUT,
            &account_path(&sub, "heldstyle"),
            Some(json!({"location": "eastus"})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(header(&h, "x-ms-error-code"), "ApprovalPending");
    assert!(h.get("azure-asyncoperation").is_none());
    // listKeys answers at once (clients do not poll it): style auto holds it as before.
    let (s, h, body) = send(
        env.http
            .post(env.url(&format!(
                "/subscriptions/{sub}/resourceGroups/shared-rg/providers/Microsoft.Storage/storageAccounts/x1/listKeys?api-version=2023-05-01"
            )))
            .bearer_auth(env.token("agent"))
            .header("x-portcullis-wait", "0"),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(header(&h, "x-ms-error-code"), "ApprovalPending");
    assert!(h.get("azure-asyncoperation").is_none());
    // `style: async` presents any operation so (regenerateKey answers at once in Azure)...
    let (s, h, body) = send(
        env.http
            .post(env.url(&format!(
                "/subscriptions/{sub}/resourceGroups/shared-rg/providers/Microsoft.Storage/storageAccounts/x1/regenerateKey?api-version=2023-05-01"
            )))
            .bearer_auth(env.token("agent"))
            .header("x-portcullis-wait", "0")
            .json(&json!({"keyName": "key1"})),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{body}");
    assert!(header(&h, "azure-asyncoperation").contains("/portcullis/approvals/"));
    // ...but never a batch: its answer is masked per inner request, by its own forward.
    let (s, h, body) = send(
        env.http
            .post(env.url("/batch?api-version=2020-06-01"))
            .bearer_auth(env.token("agent"))
            .header("x-portcullis-wait", "0")
            .json(&json!({"requests": [{"httpMethod": "GET", "relativeUrl": format!("{}?api-version=2022-09-01", env.rg())}]})),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(header(&h, "x-ms-error-code"), "ApprovalPending");
}

fn uuid_like() -> String {
    format!("{:032x}", rand::random::<u128>())
}

// === the official SDK and the az CLI wait in their own pollers ===

/// Waits until the approval for `scope_suffix` exists and its request was answered 201/202
/// (the hold ran out), then until twice the hold has passed since: an approver deciding
/// later than a held request could wait.
async fn approval_after_the_hold(env: &Env, scope_suffix: &str) -> String {
    let admin = |path: &str| format!("https://{}{path}", env.gw.admin_addr);
    let deadline = Instant::now() + Duration::from_secs(90);
    let (id, seen) = loop {
        let (s, _, list) = send(
            env.http
                .get(admin("/api/approvals?status=pending"))
                .bearer_auth(env.token("alice")),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{list}");
        if let Some(a) = list["value"].as_array().unwrap().iter().find(|a| {
            a["scope"]
                .as_str()
                .is_some_and(|s| s.ends_with(scope_suffix))
        }) {
            break (a["id"].as_str().unwrap().to_owned(), Instant::now());
        }
        assert!(Instant::now() < deadline, "never held: {scope_suffix}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    loop {
        let answered = env.audit_records().await.iter().any(|r| {
            r.approval.as_deref() == Some(id.as_str()) && matches!(r.status, Some(201 | 202))
        });
        if answered && seen.elapsed() >= Duration::from_secs(2 * HOLD_SECS) {
            return id;
        }
        assert!(Instant::now() < deadline, "never answered 201/202: {id}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// alice approves or denies (`verb`) through the admin API.
async fn decide(env: &Env, id: &str, verb: &str) {
    let comment = if verb == "approve" {
        "approved in a test"
    } else {
        "denied in a test"
    };
    let (s, _, v) = crate::approvals::vote(env, "alice", id, verb, comment).await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

/// Runs the SDK agent's `scenario` as `who` on `name` (the account, or the VM), decides
/// its approval (`approve` or `deny`) after twice the hold, and returns what it saw.
async fn sdk_waits(env: &Env, who: &str, scenario: &str, name: &str, verb: &str) -> Value {
    let child = crate::exec::agent_sdk(env, &env.url(""), who)
        .env("AGENT_SCENARIO", scenario)
        .env("AGENT_RESOURCE", name)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let id = approval_after_the_hold(env, &format!("/{name}")).await;
    decide(env, &id, verb).await;
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    crate::exec::what_the_agent_saw(&out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_poller_waits_for_the_approver_on_creates_and_a_delete() {
    let env = Env::with(setup()).await;
    let since = env.sim.last_call_seq();

    // begin_create of a storage account: approved after twice the hold.
    let seen = sdk_waits(&env, "agent", "lro-create", "sdklrosa", "approve").await;
    assert_eq!(seen["name"], "sdklrosa", "{seen}");
    assert_eq!(seen["state"], "Succeeded", "{seen}");
    let puts: Vec<_> = env
        .arm_calls(since)
        .into_iter()
        .filter(|c| c.method == "PUT" && c.path.ends_with("/sdklrosa"))
        .collect();
    assert_eq!(puts.len(), 1, "forwarded once: {puts:?}");

    // begin_create denied: the SDK raises HttpResponseError with our code.
    let seen = sdk_waits(&env, "agent", "lro-create", "sdkdeniedsa", "deny").await;
    assert_eq!(seen["error"]["code"], "ApprovalDenied", "{seen}");
    assert!(
        seen["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("denied")),
        "{seen}"
    );
    assert!(
        !env.arm_calls(since)
            .iter()
            .any(|c| c.method == "PUT" && c.path.ends_with("/sdkdeniedsa")),
        "a denied create never reached Azure"
    );

    // begin_delete of a VM (another agent, whose deletes are held): approved after twice
    // the hold, forwarded once, the VM is gone.
    let seen = sdk_waits(&env, "other-agent", "lro-delete", "agent-lro-vm", "approve").await;
    assert_eq!(seen["left"], json!([]), "{seen}");

    // begin_create_or_update of a VM held for approval: the gateway answers 201, as ARM
    // does for compute PUTs; the SDK reads the VM once the operation succeeded.
    let seen = sdk_waits(&env, "other-agent", "lro-vm-create", "sdkheldvm", "approve").await;
    assert_eq!(seen["name"], "sdkheldvm", "{seen}");
    assert_eq!(seen["state"], "Succeeded", "{seen}");
    let puts = env
        .arm_calls(since)
        .into_iter()
        .filter(|c| c.method == "PUT" && c.path.ends_with("/sdkheldvm"))
        .count();
    assert_eq!(puts, 1, "forwarded once");
    let deletes: Vec<_> = env
        .arm_calls(since)
        .into_iter()
        .filter(|c| c.method == "DELETE")
        .collect();
    assert_eq!(deletes.len(), 1, "forwarded once: {deletes:?}");
    assert!(deletes[0].path.ends_with("/virtualMachines/agent-lro-vm"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_az_cli_waits_for_the_approver_on_a_storage_account_create() {
    let env = Env::with(setup()).await;
    let since = env.sim.last_call_seq();
    let child = crate::az::exec(
        &env,
        "az storage account create -g shared-rg -n azlrosa -l eastus --sku Standard_LRS \
         --kind StorageV2 --query provisioningState -o tsv",
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let id = approval_after_the_hold(&env, "/azlrosa").await;
    decide(&env, &id, "approve").await;
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let (stdout, stderr) = (crate::az::text(&out.stdout), crate::az::text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(stdout.trim(), "Succeeded", "{stderr}");
    let puts = env
        .arm_calls(since)
        .into_iter()
        .filter(|c| c.method == "PUT" && c.path.ends_with("/azlrosa"))
        .count();
    assert_eq!(puts, 1, "forwarded once");
}

// === replicas and restarts ===

/// Two gateway processes sharing keys and a PostgreSQL store: the operation answered 202
/// on A is polled on B; after the approval, polls racing on both forward once; the result
/// is read on A.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_url_works_on_another_replica() {
    let schema = Schema::new();
    let extra = leak(format!(
        "store:\n  url: \"{}\"\n  schema: {}\n{}{EXTRA}",
        pg_url(),
        schema.0,
        crate::replicas::SHARED_KEYS
    ));
    let (sim, dir) = prepare(Setup {
        rules: rules(),
        extra,
        ..Setup::default()
    })
    .await;
    crate::replicas::write_shared_keys(&dir);
    let (a, b) = crate::replicas::two_replicas(&dir).await;
    let agent = sim.token("agent", GATEWAY_API).unwrap();
    let alice = sim.token("alice", GATEWAY_API).unwrap();
    let sub = sim.subscription_id();
    let (s, h, body) = send(
        a.http
            .put(format!(
                "https://{}{}",
                a.addr,
                account_path(&sub, "onreplicas")
            ))
            .bearer_auth(&agent)
            .header("x-portcullis-wait", "0")
            .json(&create_body()),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{body}\n{}", a.log());
    let on = |gw: &Gateway, url: &str| url.replace(&a.addr.to_string(), &gw.addr.to_string());
    let status_url = header(&h, "azure-asyncoperation").to_owned();
    let result_url = header(&h, "location").to_owned();
    let id = header(&h, "x-portcullis-approval").to_owned();
    let (s, _, body) = send(b.http.get(on(&b, &status_url)).bearer_auth(&agent)).await;
    assert_eq!(
        s,
        StatusCode::OK,
        "B serves A's status URL: {body}\n{}",
        b.log()
    );
    assert_eq!(body["status"], "InProgress", "{body}");
    let (s, _, body) = send(
        b.http
            .get(on(&b, &status_url))
            .bearer_auth(sim.token("other-agent", GATEWAY_API).unwrap()),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");

    let (s, _, v) = send(
        b.http
            .post(format!("https://{}/api/approvals/{id}/approve", b.admin))
            .bearer_auth(&alice)
            .json(&json!({"comment": "on B"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let poll = |gw: &Gateway| send(gw.http.get(on(gw, &status_url)).bearer_auth(&agent));
    let (on_a, on_b) = tokio::join!(poll(&a), poll(&b));
    for (s, _, body) in [&on_a, &on_b] {
        assert_eq!(*s, StatusCode::OK, "{body}\n{}\n{}", a.log(), b.log());
    }
    let done = poll_until_done(&b.http, &on(&b, &status_url), &agent).await;
    assert_eq!(done["status"], "Succeeded", "{done}");
    let puts = sim
        .calls_since(0)
        .into_iter()
        .filter(|c| c.method == "PUT" && c.path.ends_with("/onreplicas"))
        .count();
    assert_eq!(puts, 1, "forwarded once across replicas");
    let (s, _, account) = send(a.http.get(&result_url).bearer_auth(&agent)).await;
    assert_eq!(s, StatusCode::OK, "{account}");
    assert_eq!(account["name"], "onreplicas");
}

/// The approval, the sealed request and the handover are in the store: a gateway
/// restarted after the 202 forwards on the first poll after approval, and one restarted
/// again still answers the result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operation_survives_gateway_restarts() {
    let (sim, dir) = prepare(setup()).await;
    let agent = sim.token("agent", GATEWAY_API).unwrap();
    let alice = sim.token("alice", GATEWAY_API).unwrap();
    let sub = sim.subscription_id();
    let gw = Gateway::spawn(&dir, "first.log").await;
    let (s, h, body) = send(
        gw.http
            .put(format!(
                "https://{}{}",
                gw.addr,
                account_path(&sub, "restarted")
            ))
            .bearer_auth(&agent)
            .header("x-portcullis-wait", "0")
            .json(&create_body()),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{body}");
    let first = gw.addr.to_string();
    let status_url = header(&h, "azure-asyncoperation").to_owned();
    let result_url = header(&h, "location").to_owned();
    let id = header(&h, "x-portcullis-approval").to_owned();
    gw.terminate().await;

    let gw = Gateway::spawn(&dir, "second.log").await;
    let on = |gw: &Gateway, url: &str| url.replace(&first, &gw.addr.to_string());
    let (s, _, body) = send(gw.http.get(on(&gw, &status_url)).bearer_auth(&agent)).await;
    assert_eq!(s, StatusCode::OK, "{body}\n{}", gw.log());
    assert_eq!(body["status"], "InProgress", "{body}");
    let (s, _, v) = send(
        gw.http
            .post(format!("https://{}/api/approvals/{id}/approve", gw.admin))
            .bearer_auth(&alice)
            .json(&json!({"comment": "after a restart"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let done = poll_until_done(&gw.http, &on(&gw, &status_url), &agent).await;
    assert_eq!(done["status"], "Succeeded", "{done}\n{}", gw.log());
    gw.terminate().await;

    let gw = Gateway::spawn(&dir, "third.log").await;
    let (s, _, account) = send(gw.http.get(on(&gw, &result_url)).bearer_auth(&agent)).await;
    assert_eq!(s, StatusCode::OK, "{account}\n{}", gw.log());
    assert_eq!(account["name"], "restarted");
    let puts = sim
        .calls_since(0)
        .into_iter()
        .filter(|c| c.method == "PUT" && c.path.ends_with("/restarted"))
        .count();
    assert_eq!(puts, 1, "forwarded once");
    gw.terminate().await;
}

/// The agent sends the same request again after its 202 and after the approval: the retry
/// is held, passes and is forwarded (once); the operation's polls then say the approval
/// was used by that retry, and nothing more is forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_of_the_request_uses_the_approval_and_the_operation_says_so() {
    let env = Env::with(setup()).await;
    let sub = env.sim.subscription_id();
    let since = env.sim.last_call_seq();
    let agent = env.token("agent");
    let put = || {
        send(
            env.http
                .put(env.url(&account_path(&sub, "lroretried")))
                .bearer_auth(&agent)
                .header("x-portcullis-wait", "0")
                .json(&create_body()),
        )
    };
    let Accepted { status_url, id, .. } = accepted_create(&env, "lroretried").await;
    decide(&env, &id, "approve").await;
    let (s, h, body) = put().await;
    assert_eq!(s, StatusCode::ACCEPTED, "Azure's own 202: {body}");
    assert!(
        header(&h, "location").contains("portcullis-binding=")
            && !header(&h, "location").contains("/portcullis/approvals/"),
        "Azure's own operation, rewritten: {h:?}"
    );
    let (s, _, body) = send(env.http.get(&status_url).bearer_auth(&agent)).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "Failed", "{body}");
    assert_eq!(body["error"]["code"], "ApprovalConsumed", "{body}");
    let puts = env
        .arm_calls(since)
        .into_iter()
        .filter(|c| c.method == "PUT" && c.path.ends_with("/lroretried"))
        .count();
    assert_eq!(puts, 1, "forwarded once");
    let store = portcullis::audit::store::Store::open(&env.dir.join("state/audit.db"))
        .await
        .unwrap();
    assert!(!store.operation(&id).await.unwrap().unwrap().has_request);
}

/// Approved, but Azure cannot be reached when the first poll forwards it: the operation
/// fails with the gateway's error, and the approval is spent: later polls say the same,
/// and nothing is sent again once Azure is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operation_whose_forward_fails_says_so_and_is_not_sent_again() {
    let env = Env::with(setup()).await;
    let sub = env.sim.subscription_id();
    let agent = env.token("agent");
    let Accepted { status_url, id, .. } = accepted_create(&env, "lrofails").await;
    decide(&env, &id, "approve").await;
    env.sim
        .set_faults(azure_sim::Faults {
            path_prefix: Some(format!("/subscriptions/{sub}/resourceGroups/shared-rg")),
            drop_rate: 1.0,
            ..Default::default()
        })
        .unwrap();
    let since = env.sim.last_call_seq();
    let (s, _, body) = send(env.http.get(&status_url).bearer_auth(&agent)).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "Failed", "{body}");
    assert_eq!(body["error"]["code"], "BadGateway", "{body}");
    env.sim.set_faults(azure_sim::Faults::default()).unwrap();
    let (s, _, again) = send(env.http.get(&status_url).bearer_auth(&agent)).await;
    assert_eq!(s, StatusCode::OK, "{again}");
    assert_eq!(again["status"], "Failed", "{again}");
    assert!(
        env.arm_calls(since)
            .iter()
            .all(|c| !(c.method == "PUT" && c.path.ends_with("/lrofails") && c.status < 300)),
        "never created"
    );
    let (s, _, body) = env
        .call(
            Some(&agent),
            Method::GET,
            &account_path(&sub, "lrofails"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "not sent again: {body}");
}

/// Shutdown with requests held (issue 21, point 6), one per `approval.style`: the
/// long-running style answers its held request `202` with the status URL, which a
/// restarted gateway answers from the store (pending, then approved and forwarded once);
/// `style: hold` answers `503 GatewayShuttingDown` with `Retry-After: 1`, and the retry
/// after the restart waits for the same approval. The gateway's last line says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_held_at_shutdown_are_answered_per_style_and_survive_the_restart() {
    let (sim, dir) = prepare(Setup {
        rules: rules(),
        extra: "approvals:\n  hold: 60s\n  retry_after: 1s\n",
        ..Setup::default()
    })
    .await;
    let agent = sim.token("agent", GATEWAY_API).unwrap();
    let alice = sim.token("alice", GATEWAY_API).unwrap();
    let sub = sim.subscription_id();
    let gw = Gateway::spawn(&dir, "first.log").await;
    let first = gw.addr.to_string();
    // Held open (no x-portcullis-wait: the whole 60 s hold) when SIGTERM comes.
    let held = |name: &str| {
        tokio::spawn(send(
            gw.http
                .put(format!("https://{}{}", gw.addr, account_path(&sub, name)))
                .bearer_auth(&agent)
                .json(&create_body()),
        ))
    };
    let (lro, hold) = (held("heldatstop"), held("heldstyle"));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let page = gw
            .http
            .get(format!("https://{}/metrics", gw.admin))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if page.lines().any(|l| l == "portcullis_held_requests 2") {
            break;
        }
        assert!(Instant::now() < deadline, "never both held:\n{page}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = dir.join("first.log");
    assert!(gw.terminate().await.success(), "a graceful stop exits 0");

    // The long-running style: 202 and the gateway's own status and result URLs.
    let (s, h, body) = lro.await.unwrap();
    assert_eq!(s, StatusCode::ACCEPTED, "{body}");
    let status_url = header(&h, "azure-asyncoperation").to_owned();
    assert!(h.contains_key("location"), "{h:?}");
    let lro_id = header(&h, "x-portcullis-approval").to_owned();
    // `style: hold`: 503, retry.
    let (s, h, body) = hold.await.unwrap();
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "GatewayShuttingDown", "{body}");
    assert_eq!(header(&h, "retry-after"), "1");
    let hold_id = header(&h, "x-portcullis-approval").to_owned();
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(
        said.lines().any(|l| l == "portcullis: stopped; 2 request(s) held for approval at shutdown; answered 1 with 202 and a status URL (polls go on, on any replica), 1 with 503 GatewayShuttingDown (the client retries); their approvals stay pending"),
        "{said}"
    );
    let arm_puts = |name: &str| {
        sim.calls_since(0)
            .into_iter()
            .filter(|c| c.method == "PUT" && c.path.ends_with(&format!("/{name}")))
            .count()
    };
    assert_eq!(
        arm_puts("heldatstop") + arm_puts("heldstyle"),
        0,
        "nothing sent"
    );

    // Restarted: both approvals are pending in the store.
    let gw = Gateway::spawn(&dir, "second.log").await;
    let status_url = status_url.replace(&first, &gw.addr.to_string());
    let (s, _, body) = send(gw.http.get(&status_url).bearer_auth(&agent)).await;
    assert_eq!(s, StatusCode::OK, "{body}\n{}", gw.log());
    assert_eq!(body["status"], "InProgress", "{body}");
    let (s, h, body) = send(
        gw.http
            .put(format!(
                "https://{}{}",
                gw.addr,
                account_path(&sub, "heldstyle")
            ))
            .bearer_auth(&agent)
            .header("x-portcullis-wait", "0")
            .json(&create_body()),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "ApprovalPending", "{body}");
    assert_eq!(
        header(&h, "x-portcullis-approval"),
        hold_id,
        "the same approval"
    );
    for id in [&lro_id, &hold_id] {
        let (s, _, v) = send(
            gw.http
                .post(format!("https://{}/api/approvals/{id}/approve", gw.admin))
                .bearer_auth(&alice)
                .json(&json!({"comment": "after the restart"})),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    let done = poll_until_done(&gw.http, &status_url, &agent).await;
    assert_eq!(done["status"], "Succeeded", "{done}\n{}", gw.log());
    let (s, _, body) = send(
        gw.http
            .put(format!(
                "https://{}{}",
                gw.addr,
                account_path(&sub, "heldstyle")
            ))
            .bearer_auth(&agent)
            .header("x-portcullis-wait", "0")
            .json(&create_body()),
    )
    .await;
    assert!(s.is_success(), "{s} {body}");
    assert_eq!(
        (arm_puts("heldatstop"), arm_puts("heldstyle")),
        (1, 1),
        "each once"
    );
    gw.terminate().await;
}
