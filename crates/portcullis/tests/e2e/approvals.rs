//! Just-in-time approvals (issue 7): a request an `approve` rule matches is held until enough
//! approvers consent through the admin API, then forwarded once with the rule's credential;
//! denial, expiry, retries, quorum, grant windows, restarts, concurrent redemption, webhooks,
//! the event stream and the CLI. Everything on 127.0.0.1, each step bounded in time.

use std::future::Future;
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::leak;
use crate::{Env, Setup, client, prepare, send};

const STORAGE_API: &str = "api-version=2023-05-01";
pub(crate) const STORAGE_WRITE: &str = "Microsoft.Storage/storageAccounts/write";
/// The body of a storage account create, as bytes sent the same way every time.
pub(crate) const CREATE: &str =
    r#"{"location":"eastus","sku":{"name":"Standard_LRS"},"kind":"StorageV2"}"#;

/// A setup whose held requests wait at most `hold`, with `rules` after the test policy.
fn setup(hold: &str, rules: &'static str) -> Setup {
    Setup {
        rules,
        extra: leak(format!("approvals:\n  hold: {hold}\n")),
        ..Default::default()
    }
}

/// Panics (instead of hanging) when `f` takes longer than `secs`.
pub(crate) async fn within<T>(secs: u64, what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .unwrap_or_else(|_| panic!("{what}: not within {secs}s"))
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} in {h:?}"))
}

pub(crate) fn code(h: &HeaderMap) -> &str {
    h.get("x-ms-error-code")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

pub(crate) fn account(env: &Env, name: &str) -> String {
    format!(
        "{}/providers/Microsoft.Storage/storageAccounts/{name}?{STORAGE_API}",
        env.rg()
    )
}

/// The agent PUTs exactly `body` (same bytes every time), optionally saying how long it
/// waits and which approval it redeems.
pub(crate) fn put_request(
    env: &Env,
    path: &str,
    body: &str,
    wait: Option<u64>,
    named: Option<&str>,
) -> reqwest::RequestBuilder {
    let mut r = env
        .http
        .put(env.url(path))
        .bearer_auth(env.token("agent"))
        .header("content-type", "application/json")
        .header("x-portcullis-reason", "e2e: needs a storage account")
        .body(body.to_owned());
    if let Some(w) = wait {
        r = r.header("x-portcullis-wait", w.to_string());
    }
    if let Some(id) = named {
        r = r.header("x-portcullis-approval", id);
    }
    r
}

async fn put(
    env: &Env,
    path: &str,
    body: &str,
    wait: Option<u64>,
    named: Option<&str>,
) -> (StatusCode, HeaderMap, Value) {
    within(
        20,
        "the agent's PUT",
        send(put_request(env, path, body, wait, named)),
    )
    .await
}

/// A PUT the agent does not wait for: answered at once, pending. Returns the approval id.
pub(crate) async fn held_pending(env: &Env, path: &str, body: &str) -> String {
    let (s, h, b) = put(env, path, body, Some(0), None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert_eq!(code(&h), "ApprovalPending", "{b}");
    let id = header(&h, "x-portcullis-approval").to_owned();
    assert_eq!(
        b["error"]["additionalInfo"][0]["type"],
        "PortcullisApproval"
    );
    assert_eq!(b["error"]["additionalInfo"][0]["info"]["approvalId"], id);
    assert_eq!(b["error"]["additionalInfo"][0]["info"]["status"], "pending");
    id
}

pub(crate) fn admin_url(env: &Env, path: &str) -> String {
    format!("https://{}{path}", env.gw.admin_addr)
}

/// A call to the admin API as `who` (no token when `None`).
async fn admin(
    env: &Env,
    who: Option<&str>,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, HeaderMap, Value) {
    let mut r = env.http.request(method, admin_url(env, path));
    if let Some(w) = who {
        r = r.bearer_auth(env.token(w));
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    within(15, "the admin API", send(r)).await
}

pub(crate) async fn vote(
    env: &Env,
    who: &str,
    id: &str,
    verb: &str,
    comment: &str,
) -> (StatusCode, HeaderMap, Value) {
    admin(
        env,
        Some(who),
        Method::POST,
        &format!("/api/approvals/{id}/{verb}"),
        Some(json!({ "comment": comment })),
    )
    .await
}

pub(crate) async fn approval(env: &Env, id: &str) -> Value {
    let (s, _, b) = admin(
        env,
        Some("alice"),
        Method::GET,
        &format!("/api/approvals/{id}"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b
}

/// Polls the pending list (as alice) until an approval for storage account `account_name` shows up.
pub(crate) async fn wait_pending(env: &Env, account_name: &str) -> Value {
    let started = Instant::now();
    loop {
        let (s, _, b) = admin(
            env,
            Some("alice"),
            Method::GET,
            "/api/approvals?status=pending",
            None,
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        if let Some(a) = b["value"].as_array().unwrap().iter().find(|a| {
            a["scope"]
                .as_str()
                .is_some_and(|s| s.ends_with(&format!("/{account_name}")))
        }) {
            return a.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no pending approval for {account_name}: {b}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The PUTs of this storage account the simulated ARM served since `since`.
pub(crate) fn puts_to(
    env: &Env,
    since: u64,
    account_name: &str,
) -> Vec<azure_sim::calls::CallRecord> {
    env.arm_calls(since)
        .into_iter()
        .filter(|c| c.method == "PUT" && c.path.ends_with(&format!("/{account_name}")))
        .collect()
}

fn caller(c: &azure_sim::calls::CallRecord) -> String {
    c.caller
        .as_ref()
        .and_then(|c| c.name.clone())
        .unwrap_or_default()
}

/// An approve rule for one storage account in demo-rg (written after the test policy, so
/// it decides for that account). Held, then refused while pending (`style: hold`): these
/// are the tests of holding (lro.rs tests the long-running presentation).
fn account_rule(name: &str, account_name: &str, approval: &str, more: &str) -> String {
    let approval = format!("{}, style: hold}}", approval.trim_end_matches('}'));
    format!(
        "    - name: {name}\n      effect: approve\n      principals: [group:ai-agents]\n      actions: [{STORAGE_WRITE}]\n      scopes: [\"/subscriptions/*/resourceGroups/demo-rg/providers/Microsoft.Storage/storageAccounts/{account_name}\"]\n      approval: {approval}\n      credential: elevated\n{more}"
    )
}

// === 1. held, approved while held, forwarded with the elevated credential; the audit trail ===

#[tokio::test]
async fn a_held_request_approved_while_held_is_forwarded_with_the_elevated_credential() {
    let alice = azure_sim::config::derived_id("principal", "alice");
    let env = Env::with(Setup {
        extra: leak(format!(
            "approvals:\n  hold: 120s\naudit:\n  readers: [\"user:{alice}\"]\n"
        )),
        ..Default::default()
    })
    .await;
    let path = account(&env, "heldapproved");
    let since = env.sim.last_call_seq();
    let started = Instant::now();
    let agent = tokio::spawn(send(put_request(&env, &path, CREATE, None, None)));

    let pending = wait_pending(&env, "heldapproved").await;
    let id = pending["id"].as_str().unwrap().to_owned();
    assert_eq!(pending["action"], STORAGE_WRITE);
    assert_eq!(pending["rule"], "hold-storage-create");
    assert_eq!(pending["may_decide"], true, "{pending}");
    assert_eq!(pending["quorum"], 1);
    assert_eq!(pending["reason"], "e2e: needs a storage account");
    assert_eq!(pending["request"]["method"], "PUT");
    assert!(
        pending["request"]["body"]
            .as_str()
            .unwrap()
            .contains("Standard_LRS"),
        "{pending}"
    );
    assert!(
        !pending["request"]["headers"]
            .to_string()
            .to_ascii_lowercase()
            .contains("bearer ey"),
        "no credential is shown to approvers: {pending}"
    );
    assert!(
        env.arm_calls(since).is_empty(),
        "nothing reaches Azure before the approval: {:?}",
        env.arm_calls(since)
    );
    assert!(!agent.is_finished(), "the agent's request is held open");

    let (s, _, b) = vote(&env, "alice", &id, "approve", "go ahead").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    // The vote's answer is the approval as it is after the vote: the held request, woken by
    // it, may already have used it.
    assert!(
        b["status"] == "approved" || b["status"] == "consumed",
        "{b}"
    );

    let (s, h, body) = within(10, "the held request", agent).await.unwrap();
    assert!(s.is_success(), "{s} {body}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "answered when approved, not at the end of the hold"
    );
    let puts = puts_to(&env, since, "heldapproved");
    assert_eq!(puts.len(), 1, "forwarded once: {puts:?}");
    assert_eq!(s.as_u16(), puts[0].status, "the agent got Azure's answer");
    assert_eq!(caller(&puts[0]), "portcullis-elevated");
    assert!(h.contains_key("x-portcullis-request-id"));
    assert_eq!(approval(&env, &id).await["status"], "consumed");

    // The audit trail: the approval's history, and the forwarded request names it.
    let (s, _, b) = admin(
        &env,
        Some("alice"),
        Method::GET,
        "/api/records?since=1h",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let records: Vec<&Value> = b["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| &l["record"])
        .collect();
    let of_approval: Vec<&&Value> = records
        .iter()
        .filter(|r| r["phase"] == "approval" && r["approval"] == id.as_str())
        .collect();
    let reasons: Vec<&str> = of_approval
        .iter()
        .map(|r| r["reason"].as_str().unwrap_or(""))
        .collect();
    assert!(
        reasons.iter().any(|r| r.ends_with(": created")),
        "{reasons:?}"
    );
    assert!(
        of_approval
            .iter()
            .any(|r| r["principal"] == alice.to_string()
                && r["reason"].as_str().unwrap().contains("go ahead")),
        "the vote is recorded with its voter and comment: {reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.ends_with(": consumed")),
        "{reasons:?}"
    );
    let request = records
        .iter()
        .find(|r| r["phase"] == "request" && r["method"] == "PUT")
        .expect("the forwarded request is recorded");
    assert_eq!(request["approval"], id.as_str(), "{request}");
    assert_eq!(request["decision"], "approve");
    assert!(
        request["reason"].as_str().unwrap().contains("approved by"),
        "{request}"
    );
    let response = records
        .iter()
        .find(|r| r["phase"] == "response" && r["method"] == "PUT")
        .expect("the answer is recorded");
    assert_eq!(response["approval"], id.as_str(), "{response}");
}

// === 2. denial ===

#[tokio::test]
async fn a_denied_request_is_refused_with_the_approvers_comment() {
    let env = Env::with(setup("10s", crate::TEST_RULES)).await;
    let path = account(&env, "helddenied");
    let since = env.sim.last_call_seq();
    let agent = tokio::spawn(send(put_request(&env, &path, CREATE, None, None)));
    let id = wait_pending(&env, "helddenied").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let comment = "not in this quarter's budget";
    let (s, _, b) = vote(&env, "bob", &id, "deny", comment).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["status"], "denied");

    let (s, h, body) = within(10, "the held request", agent).await.unwrap();
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(code(&h), "ApprovalDenied");
    assert_eq!(header(&h, "x-portcullis-approval"), id);
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains(comment), "{message}");
    assert_eq!(
        body["error"]["additionalInfo"][0]["info"]["status"],
        "denied"
    );

    // Naming the denied approval again: still denied, nothing forwarded; a vote after the
    // decision is a conflict.
    let (s, h, body) = put(&env, &path, CREATE, Some(0), Some(&id)).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(code(&h), "ApprovalDenied");
    let (s, _, b) = vote(&env, "alice", &id, "approve", "overrule").await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert!(env.arm_calls(since).is_empty(), "nothing was forwarded");
}

/// The documented way to wait is to resend the same request, the approval id being
/// optional: an agent polling that way must learn it was denied, not silently ask anew.
#[tokio::test]
async fn a_denied_request_resent_without_the_approval_id_is_told_it_was_denied() {
    let env = Env::with(setup("5s", crate::TEST_RULES)).await;
    let path = account(&env, "deniedpoll");
    let since = env.sim.last_call_seq();
    let id = held_pending(&env, &path, CREATE).await;
    let (s, _, b) = vote(&env, "alice", &id, "deny", "no new accounts today").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, h, body) = put(&env, &path, CREATE, Some(0), None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    let (_, _, list) = admin(&env, Some("alice"), Method::GET, "/api/approvals", None).await;
    assert_eq!(
        code(&h),
        "ApprovalDenied",
        "the same request, resent after its denial, got {} {}: approvers now see {} pending: {body}",
        code(&h),
        h.get("x-portcullis-approval")
            .map(|v| v.to_str().unwrap())
            .unwrap_or("-"),
        list["value"].as_array().unwrap().len()
    );
    assert_eq!(header(&h, "x-portcullis-approval"), id);
    assert!(puts_to(&env, since, "deniedpoll").is_empty());
}

// === 3. expiry ===

#[tokio::test]
async fn an_undecided_request_expires() {
    let rules = leak(format!(
        "  rules:\n{}",
        account_rule(
            "expires-fast",
            "expiring",
            "{approvers: [group:approvers], timeout: 2s}",
            ""
        )
    ));
    let env = Env::with(setup("60s", rules)).await;
    let path = account(&env, "expiring");
    let since = env.sim.last_call_seq();
    let started = Instant::now();
    let (s, h, body) = put(&env, &path, CREATE, None, None).await;
    let took = started.elapsed();
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(code(&h), "ApprovalExpired", "{body}");
    let id = header(&h, "x-portcullis-approval").to_owned();
    assert_eq!(
        body["error"]["additionalInfo"][0]["info"]["rule"],
        "expires-fast"
    );
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(30),
        "held until the approval expired (2s), not the whole hold (60s): {took:?}"
    );
    assert_eq!(approval(&env, &id).await["status"], "expired");
    // Too late to approve.
    let (s, _, b) = vote(&env, "alice", &id, "approve", "sorry, late").await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    // Naming it again: expired. Without naming it: a new approval.
    let (s, h, body) = put(&env, &path, CREATE, Some(0), Some(&id)).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(code(&h), "ApprovalExpired", "{body}");
    let fresh = held_pending(&env, &path, CREATE).await;
    assert_ne!(fresh, id);
    assert!(env.arm_calls(since).is_empty(), "nothing was forwarded");
}

// === 4. timeout, then retry after approval; consumed once ===

#[tokio::test]
async fn a_retry_after_approval_goes_through_once() {
    let env = Env::with(setup("5s", crate::TEST_RULES)).await;
    let path = account(&env, "retried");
    let since = env.sim.last_call_seq();
    let id = held_pending(&env, &path, CREATE).await;
    assert!(env.arm_calls(since).is_empty());

    let (s, _, b) = vote(&env, "alice", &id, "approve", "ok").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    // The same request again, not even naming the approval: it goes through.
    let (s, _, body) = put(&env, &path, CREATE, Some(0), None).await;
    assert!(s.is_success(), "{s} {body}");
    let puts = puts_to(&env, since, "retried");
    assert_eq!(puts.len(), 1, "{puts:?}");
    assert_eq!(caller(&puts[0]), "portcullis-elevated");
    assert_eq!(approval(&env, &id).await["status"], "consumed");

    // Once: the same request again is a new approval...
    let (s, h, body) = put(&env, &path, CREATE, Some(0), None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(code(&h), "ApprovalPending", "{body}");
    assert_ne!(header(&h, "x-portcullis-approval"), id, "a new approval");
    // ...and naming the used one is refused as consumed.
    let (s, h, body) = put(&env, &path, CREATE, Some(0), Some(&id)).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(code(&h), "ApprovalConsumed", "{body}");
    assert_eq!(puts_to(&env, since, "retried").len(), 1, "forwarded once");
}

// === 5. a different body is a different request ===

#[tokio::test]
async fn a_retry_with_a_different_body_is_a_new_approval_not_a_reuse() {
    let env = Env::with(setup("5s", crate::TEST_RULES)).await;
    let path = account(&env, "bodychange");
    let since = env.sim.last_call_seq();
    let first = held_pending(&env, &path, CREATE).await;
    let other =
        r#"{"location":"eastus","sku":{"name":"Premium_LRS"},"kind":"StorageV2","tags":{"x":"1"}}"#;
    let second = held_pending(&env, &path, other).await;
    assert_ne!(first, second, "another body asks for another approval");

    let (s, _, b) = vote(&env, "alice", &first, "approve", "the first one only").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    // The other body, naming the approved approval: not a reuse.
    let (s, h, body) = put(&env, &path, other, Some(0), Some(&first)).await;
    assert!(
        s == StatusCode::BAD_REQUEST || s == StatusCode::FORBIDDEN,
        "{s} {body}"
    );
    assert_eq!(code(&h), "ApprovalMismatch", "{body}");
    // Not naming it: its own approval, still pending.
    let (s, h, body) = put(&env, &path, other, Some(0), None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(code(&h), "ApprovalPending", "{body}");
    assert_eq!(header(&h, "x-portcullis-approval"), second);
    assert!(
        puts_to(&env, since, "bodychange").is_empty(),
        "the approved body was never sent"
    );
    assert_eq!(approval(&env, &first).await["status"], "approved");

    // The approved body goes through.
    let (s, _, body) = put(&env, &path, CREATE, Some(0), None).await;
    assert!(s.is_success(), "{s} {body}");
    assert_eq!(puts_to(&env, since, "bodychange").len(), 1);
}

// === 6. who may decide ===

#[tokio::test]
async fn the_requester_and_non_approvers_cannot_approve() {
    let env = Env::with(setup("5s", crate::TEST_RULES)).await;
    let path = account(&env, "selfapproval");
    let id = held_pending(&env, &path, CREATE).await;

    // The requester sees its own request, but may not decide it.
    let (s, _, b) = admin(
        &env,
        Some("agent"),
        Method::GET,
        &format!("/api/approvals/{id}"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["may_decide"], false);
    let (s, _, b) = vote(&env, "agent", &id, "approve", "trust me").await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert!(
        b["error"]["message"].as_str().unwrap().contains("own"),
        "{b}"
    );
    // Another app, not an approver.
    let (s, _, b) = vote(&env, "other-agent", &id, "approve", "me too").await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    // A user who is not an approver.
    let (s, _, b) = vote(&env, "carol", &id, "approve", "why not").await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    // An approver signed in through the agent's own application is the agent by another name.
    let agent_app = env
        .sim
        .config()
        .principal("agent")
        .unwrap()
        .app_id
        .unwrap()
        .to_string();
    let through_agent = env
        .sim
        .mint(azure_sim::MintRequest {
            principal: "alice".into(),
            audience: crate::GATEWAY_API.into(),
            version: None,
            lifetime_secs: None,
            not_before_offset_secs: 0,
            client_app: Some(agent_app),
            claims: Default::default(),
            unpublished_key: false,
        })
        .unwrap();
    let (s, _, b) = within(
        10,
        "vote",
        send(
            env.http
                .post(admin_url(&env, &format!("/api/approvals/{id}/approve")))
                .bearer_auth(through_agent)
                .json(&json!({"comment": "via the agent's app"})),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    // No token at all.
    let (s, _, b) = admin(
        &env,
        None,
        Method::POST,
        &format!("/api/approvals/{id}/approve"),
        Some(json!({})),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    // Someone who is neither requester nor approver does not even see it.
    let (s, _, b) = admin(
        &env,
        Some("other-agent"),
        Method::GET,
        &format!("/api/approvals/{id}"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");

    let a = approval(&env, &id).await;
    assert_eq!(a["status"], "pending", "{a}");
    assert_eq!(a["votes"], json!([]), "refused votes are not counted: {a}");
    let (s, h, body) = put(&env, &path, CREATE, Some(0), None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(code(&h), "ApprovalPending");
}

// === 7. quorum 2 ===

#[tokio::test]
async fn quorum_two_needs_two_distinct_approvers() {
    let rules = leak(format!(
        "  rules:\n{}{}",
        account_rule(
            "two-approvers",
            "quorumtwo",
            "{approvers: [group:approvers], quorum: 2, timeout: 10m}",
            ""
        ),
        account_rule(
            "two-approvers-or-one-no",
            "quorumdeny",
            "{approvers: [group:approvers], quorum: 2, timeout: 10m}",
            ""
        )
    ));
    let env = Env::with(setup("5s", rules)).await;
    let path = account(&env, "quorumtwo");
    let since = env.sim.last_call_seq();
    let id = held_pending(&env, &path, CREATE).await;
    assert_eq!(approval(&env, &id).await["quorum"], 2);

    let (s, _, b) = vote(&env, "alice", &id, "approve", "one").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["status"], "pending", "one of two: {b}");
    assert_eq!(b["approvals"], 1);
    // The same approver again does not count twice.
    let (s, _, b) = vote(&env, "alice", &id, "approve", "one again").await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    let (s, h, body) = put(&env, &path, CREATE, Some(0), None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(code(&h), "ApprovalPending");
    assert_eq!(body["error"]["additionalInfo"][0]["info"]["approvals"], 1);
    assert!(puts_to(&env, since, "quorumtwo").is_empty());

    let (s, _, b) = vote(&env, "bob", &id, "approve", "two").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["status"], "approved", "{b}");
    assert_eq!(b["approvals"], 2);
    let (s, _, body) = put(&env, &path, CREATE, Some(0), None).await;
    assert!(s.is_success(), "{s} {body}");
    let puts = puts_to(&env, since, "quorumtwo");
    assert_eq!(puts.len(), 1);
    assert_eq!(caller(&puts[0]), "portcullis-elevated");

    // One deny denies, whatever approvals came before it.
    let path = account(&env, "quorumdeny");
    let id = held_pending(&env, &path, CREATE).await;
    let (s, _, b) = vote(&env, "alice", &id, "approve", "fine by me").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, _, b) = vote(&env, "bob", &id, "deny", "not by me").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["status"], "denied", "{b}");
    let (s, h, body) = put(&env, &path, CREATE, Some(0), Some(&id)).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(code(&h), "ApprovalDenied", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not by me"),
        "{body}"
    );
    assert!(puts_to(&env, since, "quorumdeny").is_empty());
}

// === 8. grant window ===

#[tokio::test]
async fn a_grant_window_lets_the_same_action_on_the_same_scope_through() {
    let rules = leak(format!(
        "  rules:\n{}",
        account_rule(
            "grant-window",
            "granted",
            "{approvers: [group:approvers], timeout: 10m}",
            "      grant: {window: 10m}\n"
        )
    ));
    let env = Env::with(setup("60s", rules)).await;
    let path = account(&env, "granted");
    let since = env.sim.last_call_seq();
    let id = held_pending(&env, &path, CREATE).await;
    let (s, _, b) = vote(&env, "alice", &id, "approve", "for ten minutes").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, _, body) = put(&env, &path, CREATE, Some(0), None).await;
    assert!(s.is_success(), "{s} {body}");

    // Another request (another body) of the same action on the same scope: through, at once.
    let other = r#"{"location":"eastus","sku":{"name":"Standard_LRS"},"kind":"StorageV2","tags":{"pass":"2"}}"#;
    let started = Instant::now();
    let (s, h, body) = put(&env, &path, other, None, None).await;
    assert!(
        s.is_success(),
        "within the window: {s} {:?} {body}",
        code(&h)
    );
    assert!(started.elapsed() < Duration::from_secs(30), "not held");
    let puts = puts_to(&env, since, "granted");
    assert_eq!(puts.len(), 2, "{puts:?}");
    assert!(puts.iter().all(|p| caller(p) == "portcullis-elevated"));
    let (s, _, b) = admin(
        &env,
        Some("alice"),
        Method::GET,
        "/api/approvals?status=all",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        b["value"].as_array().unwrap().len(),
        1,
        "no new approval was asked for: {b}"
    );
    // Another scope (another account) is not covered by the window.
    let elsewhere = account(&env, "notgranted");
    held_pending(&env, &elsewhere, CREATE).await;
}

// === 9. restart with a pending approval ===

#[tokio::test]
async fn a_pending_approval_survives_a_restart() {
    let env = Env::with(setup("10s", crate::TEST_RULES)).await;
    let path = account(&env, "restarted");
    let since = env.sim.last_call_seq();
    // Held open when the gateway stops: that connection drops.
    let held = tokio::spawn(put_request(&env, &path, CREATE, None, None).send());
    let id = wait_pending(&env, "restarted").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let Env { sim, gw, dir, .. } = env;
    within(10, "shutdown", gw.shutdown()).await;
    let dropped = within(10, "the held request", held).await.unwrap();
    if let Ok(r) = &dropped {
        assert!(!r.status().is_success(), "not forwarded: {r:?}");
    }

    let cfg = portcullis::config::load(&dir.join("portcullis.yaml")).unwrap();
    let gw = within(20, "restart", portcullis::cli::serve::start(cfg))
        .await
        .unwrap();
    let http = client(gw.ca_file.as_ref().unwrap(), None);
    let env = Env { sim, gw, http, dir };
    let a = approval(&env, &id).await;
    assert_eq!(a["status"], "pending", "{a}");
    assert!(
        env.arm_calls(since).is_empty(),
        "nothing reached Azure across the restart"
    );
    let (s, _, b) = vote(&env, "alice", &id, "approve", "after the restart").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["status"], "approved");
    let (s, _, body) = put(&env, &path, CREATE, Some(0), Some(&id)).await;
    assert!(s.is_success(), "{s} {body}");
    let puts = puts_to(&env, since, "restarted");
    assert_eq!(puts.len(), 1);
    assert_eq!(caller(&puts[0]), "portcullis-elevated");
    within(10, "shutdown", env.gw.shutdown()).await;
}

// === 10. concurrent redemption ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_retries_redeem_an_approval_once() {
    let env = Env::with(setup("5s", crate::TEST_RULES)).await;
    // Naming the approval: exactly one of the retries is forwarded.
    let path = account(&env, "raced");
    let since = env.sim.last_call_seq();
    let id = held_pending(&env, &path, CREATE).await;
    let (s, _, b) = vote(&env, "alice", &id, "approve", "once").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (a, b) = tokio::join!(
        put(&env, &path, CREATE, Some(0), Some(&id)),
        put(&env, &path, CREATE, Some(0), Some(&id)),
    );
    let mut outcomes = [(a.0, code(&a.1).to_owned()), (b.0, code(&b.1).to_owned())];
    outcomes.sort_by_key(|(s, _)| s.as_u16());
    assert!(outcomes[0].0.is_success(), "{outcomes:?} {} {}", a.2, b.2);
    assert_eq!(outcomes[1].0, StatusCode::FORBIDDEN, "{outcomes:?}");
    assert_eq!(outcomes[1].1, "ApprovalConsumed", "{outcomes:?}");
    assert_eq!(puts_to(&env, since, "raced").len(), 1, "forwarded once");

    // Without naming it, several at once: still only one goes through; the others wait for
    // (new) approval or are told it was used.
    let path = account(&env, "racedmany");
    let id = held_pending(&env, &path, CREATE).await;
    let (s, _, b) = vote(&env, "alice", &id, "approve", "once").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let results = futures_join_all(
        (0..4)
            .map(|_| put(&env, &path, CREATE, Some(0), None))
            .collect(),
    )
    .await;
    let passed = results.iter().filter(|r| r.0.is_success()).count();
    assert_eq!(passed, 1, "{:?}", summarize(&results));
    assert!(
        results.iter().filter(|r| !r.0.is_success()).all(|r| {
            r.0 == StatusCode::FORBIDDEN
                && matches!(code(&r.1), "ApprovalConsumed" | "ApprovalPending")
        }),
        "{:?}",
        summarize(&results)
    );
    assert_eq!(puts_to(&env, since, "racedmany").len(), 1);
}

fn summarize(results: &[(StatusCode, HeaderMap, Value)]) -> Vec<(u16, String)> {
    results
        .iter()
        .map(|r| (r.0.as_u16(), code(&r.1).to_owned()))
        .collect()
}

/// Runs futures concurrently, in this task (no `futures` crate here).
async fn futures_join_all<T, F: Future<Output = T>>(futs: Vec<F>) -> Vec<T> {
    let mut set: Vec<std::pin::Pin<Box<F>>> = futs.into_iter().map(Box::pin).collect();
    let mut done: Vec<Option<T>> = set.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in set.iter_mut().zip(done.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    done.into_iter().map(Option::unwrap).collect()
}

// === 11. webhooks ===

/// What a webhook receiver got.
#[derive(Debug)]
pub(crate) struct Delivery {
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Delivery {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A webhook receiver on 127.0.0.1: answers 500 to the first `fail_first` deliveries, then
/// 200; sends every delivery it read to the channel.
pub(crate) async fn receiver(fail_first: usize) -> (u16, mpsc::UnboundedReceiver<Delivery>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::unbounded_channel();
    let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let (tx, served) = (tx.clone(), served.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                let (head, body) = loop {
                    let Ok(n) = socket.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                    let length = head
                        .lines()
                        .filter_map(|l| l.split_once(':'))
                        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
                        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + length {
                        let body =
                            String::from_utf8_lossy(&buf[end + 4..end + 4 + length]).into_owned();
                        break (head, body);
                    }
                };
                let headers = head
                    .lines()
                    .skip(1)
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                    .collect();
                let n = served.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let answer: &[u8] = if n < fail_first {
                    b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                } else {
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                };
                let _ = socket.write_all(answer).await;
                let _ = socket.shutdown().await;
                let _ = tx.send(Delivery { headers, body });
            });
        }
    });
    (port, rx)
}

/// A loopback port nothing listens on.
async fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

/// A loopback port that accepts connections and never answers.
async fn silent_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            open.push(s);
        }
    });
    port
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn signature_ok(secret: &str, d: &Delivery) -> bool {
    use hmac::{Hmac, Mac};
    let (Some(ts), Some(sig)) = (
        d.header("x-portcullis-timestamp"),
        d.header("x-portcullis-signature"),
    ) else {
        return false;
    };
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(ts.as_bytes());
    mac.update(b".");
    mac.update(d.body.as_bytes());
    sig == format!("sha256={}", hex(&mac.finalize().into_bytes()))
}

/// Starts a gateway for `setup` after writing `files` into its directory.
async fn env_with_files(setup: Setup, files: &[(&str, &str)]) -> Env {
    let (sim, dir) = prepare(setup).await;
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let config = dir.join("portcullis.yaml");
    let cfg = portcullis::config::load(&config).unwrap_or_else(|e| {
        panic!(
            "{e}\n{}",
            std::fs::read_to_string(&config).unwrap_or_default()
        )
    });
    let gw = portcullis::cli::serve::start(cfg).await.unwrap();
    let http = client(gw.ca_file.as_ref().unwrap(), None);
    Env { sim, gw, http, dir }
}

async fn next_event(rx: &mut mpsc::UnboundedReceiver<Delivery>, what: &str) -> Delivery {
    within(8, what, rx.recv()).await.expect("the receiver runs")
}

#[tokio::test]
async fn webhooks_get_signed_payloads_and_are_retried() {
    let secret = "e2e-webhook-secret-3f9a";
    // The receiver refuses the first delivery: it is retried.
    let (port, mut rx) = receiver(1).await;
    let dead = closed_port().await;
    let extra = leak(format!(
        "approvals:\n  hold: 5s\n  notify:\n    - {{url: \"http://127.0.0.1:{port}/hook\", format: json, secret: {{file: hook.secret}}}}\n    - {{url: \"http://127.0.0.1:{dead}/hook\", format: json}}\n"
    ));
    let env = env_with_files(
        Setup {
            extra,
            ..Default::default()
        },
        &[("hook.secret", secret)],
    )
    .await;
    let path = account(&env, "notified");
    let id = held_pending(&env, &path, CREATE).await;

    let first = next_event(&mut rx, "the first delivery").await;
    let retried = next_event(&mut rx, "the retried delivery").await;
    for d in [&first, &retried] {
        assert!(signature_ok(secret, d), "the signature verifies: {d:?}");
        let ts: i64 = d.header("x-portcullis-timestamp").unwrap().parse().unwrap();
        assert!(
            (chrono::Utc::now().timestamp() - ts).abs() < 60,
            "a fresh timestamp: {ts}"
        );
        assert!(
            d.header("content-type")
                .unwrap()
                .contains("application/json")
        );
        let v: Value = serde_json::from_str(&d.body).unwrap();
        assert_eq!(v["event"], "approval.created", "{v}");
        assert_eq!(v["approval"]["id"], id.as_str());
        assert_eq!(v["approval"]["action"], STORAGE_WRITE);
        assert_eq!(v["approval"]["status"], "pending");
        assert_eq!(v["approval"]["reason"], "e2e: needs a storage account");
    }
    assert_eq!(first.body, retried.body, "the same payload, retried");
    // A signature over another body does not verify.
    let forged = Delivery {
        headers: first.headers.clone(),
        body: first.body.replace("pending", "approved"),
    };
    assert!(!signature_ok(secret, &forged));

    let (s, _, b) = vote(&env, "alice", &id, "approve", "hooked").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let approved = next_event(&mut rx, "the approval's delivery").await;
    assert!(signature_ok(secret, &approved));
    let v: Value = serde_json::from_str(&approved.body).unwrap();
    assert_eq!(v["event"], "approval.approved", "{v}");
    assert_eq!(v["approval"]["id"], id.as_str());
    assert_eq!(v["approval"]["approvals"], 1);
}

#[tokio::test]
async fn failing_webhooks_do_not_block_approvals() {
    let (dead, silent) = (closed_port().await, silent_port().await);
    let extra = leak(format!(
        "approvals:\n  hold: 120s\n  notify:\n    - {{url: \"http://127.0.0.1:{dead}/hook\", format: json}}\n    - {{url: \"http://127.0.0.1:{silent}/hook\", format: slack}}\n    - {{url: \"http://127.0.0.1:{dead}/teams\", format: teams}}\n"
    ));
    let env = Env::with(Setup {
        extra,
        ..Default::default()
    })
    .await;
    let path = account(&env, "unhooked");
    let since = env.sim.last_call_seq();
    let started = Instant::now();
    let id = held_pending(&env, &path, CREATE).await;
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "answered promptly: {:?}",
        started.elapsed()
    );
    // Held open, approved, forwarded: all promptly, whatever the webhooks do.
    let started = Instant::now();
    let agent = tokio::spawn(send(put_request(&env, &path, CREATE, None, None)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (s, _, b) = vote(&env, "alice", &id, "approve", "no hooks needed").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, _, body) = within(10, "the held request", agent).await.unwrap();
    assert!(s.is_success(), "{s} {body}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "not blocked by the webhooks: {:?}",
        started.elapsed()
    );
    assert_eq!(puts_to(&env, since, "unhooked").len(), 1);
}

// === 12. the event stream ===

#[tokio::test]
async fn the_event_stream_announces_held_requests() {
    let env = Env::with(setup("5s", crate::TEST_RULES)).await;
    let mut events = within(
        10,
        "the event stream",
        env.http
            .get(admin_url(&env, "/api/approvals/events"))
            .bearer_auth(env.token("alice"))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(events.status(), StatusCode::OK);
    assert!(
        header(events.headers(), "content-type").starts_with("text/event-stream"),
        "{:?}",
        events.headers()
    );
    // Someone who may not see the approval gets a stream without it.
    let mut elsewhere = within(
        10,
        "another event stream",
        env.http
            .get(admin_url(&env, "/api/approvals/events"))
            .bearer_auth(env.token("other-agent"))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(elsewhere.status(), StatusCode::OK);
    let path = account(&env, "streamed");
    let id = held_pending(&env, &path, CREATE).await;

    let mut text = String::new();
    let mut find = async |status: &str| -> Value {
        loop {
            // Complete events only: up to a blank line.
            while let Some(end) = text.find("\n\n") {
                let event: String = text.drain(..end + 2).collect();
                if event.lines().any(|l| l == "event: approval")
                    && let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: "))
                {
                    let v: Value = serde_json::from_str(data).unwrap();
                    if v["id"] == id.as_str() && v["status"] == status {
                        assert!(event.lines().any(|l| l == format!("id: {id}")), "{event}");
                        return v;
                    }
                }
            }
            let chunk = within(8, "an approval event", events.chunk())
                .await
                .unwrap()
                .expect("the stream stays open");
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    };
    let created = find("pending").await;
    assert_eq!(created["action"], STORAGE_WRITE);
    assert_eq!(created["may_decide"], true, "{created}");
    let (s, _, b) = vote(&env, "alice", &id, "approve", "streamed").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let approved = find("approved").await;
    assert_eq!(approved["approvals"], 1);
    let mut seen = String::new();
    while let Ok(Ok(Some(chunk))) =
        tokio::time::timeout(Duration::from_millis(700), elsewhere.chunk()).await
    {
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(
        !seen.contains(&id),
        "other-agent's stream shows an approval it may not see: {seen}"
    );

    // Without a token there is no stream.
    let (s, _, _) = admin(&env, None, Method::GET, "/api/approvals/events", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

// === 13. the CLI ===

async fn cli(args: Vec<String>) -> (bool, String) {
    within(
        30,
        "portcullis approvals",
        tokio::task::spawn_blocking(move || {
            crate::outcome(
                crate::portcullis_cli()
                    .args(&args)
                    .env_remove("PORTCULLIS_ADMIN_URL")
                    .env_remove("PORTCULLIS_TOKEN")
                    .env_remove("PORTCULLIS_CA"),
            )
        }),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn the_cli_lists_and_approves() {
    let env = Env::with(setup("5s", crate::TEST_RULES)).await;
    let path = account(&env, "clistore");
    let since = env.sim.last_call_seq();
    let id = held_pending(&env, &path, CREATE).await;
    let common = |who: &str| -> Vec<String> {
        vec![
            "--admin-url".into(),
            format!("https://{}", env.gw.admin_addr),
            "--token".into(),
            env.token(who),
            "--ca-file".into(),
            env.gw.ca_file.as_ref().unwrap().display().to_string(),
        ]
    };
    let args = |who: &str, cmd: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = vec!["approvals".into()];
        v.extend(cmd.iter().map(|s| s.to_string()));
        v.extend(common(who));
        v
    };

    let (ok, out) = cli(args("alice", &["list"])).await;
    assert!(ok, "{out}");
    let line = out
        .lines()
        .find(|l| l.contains(&id))
        .unwrap_or_else(|| panic!("the pending approval is listed:\n{out}"));
    assert!(
        line.contains("pending") && line.contains(STORAGE_WRITE),
        "{line}"
    );
    assert!(line.contains("you"), "alice may decide it: {line}");
    let (ok, out) = cli(args("alice", &["list", "--ids"])).await;
    assert!(ok && out.lines().any(|l| l.trim() == id), "{out}");
    let (ok, out) = cli(args("alice", &["show", &id])).await;
    assert!(ok && out.contains("e2e: needs a storage account"), "{out}");

    // The requester cannot approve through the CLI either.
    let (ok, out) = cli(args("agent", &["approve", &id, "--comment", "mine"])).await;
    assert!(!ok && out.contains("403"), "{out}");

    let (ok, out) = cli(args("alice", &["approve", &id, "--comment", "ok"])).await;
    assert!(ok, "{out}");
    assert!(out.contains("approved"), "{out}");
    let a = approval(&env, &id).await;
    assert_eq!(a["status"], "approved", "{a}");
    assert_eq!(a["votes"][0]["comment"], "ok");
    let (ok, out) = cli(args("alice", &["list"])).await;
    assert!(ok && !out.contains(&id), "no longer pending:\n{out}");

    let (s, _, body) = put(&env, &path, CREATE, Some(0), None).await;
    assert!(s.is_success(), "{s} {body}");
    assert_eq!(puts_to(&env, since, "clistore").len(), 1);

    // `list --wait` follows: a request held after it started shows up.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args("bob", &["list", "--wait"]))
        .env_remove("PORTCULLIS_ADMIN_URL")
        .env_remove("PORTCULLIS_TOKEN")
        .env_remove("PORTCULLIS_CA")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, mut lines) = mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    // The header line says the list is printed and the stream is (about to be) followed.
    let first = within(15, "the list's header", lines.recv()).await;
    assert!(first.is_some_and(|l| l.contains("ID")), "a table header");
    // The stream is subscribed just after the header: a request held once it is shows up.
    // (Retried a few times, in case the stream was not subscribed yet.)
    let mut found = None;
    for attempt in 0..5 {
        let later = account(&env, &format!("clilater{attempt}"));
        let new_id = held_pending(&env, &later, CREATE).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while let Ok(Some(line)) = tokio::time::timeout_at(deadline, lines.recv()).await {
            if line.contains(&new_id) {
                found = Some(line);
                break;
            }
        }
        if found.is_some() {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let line = found.expect("list --wait printed the new approval");
    assert!(line.contains("pending"), "{line}");
}

// === more: races, lifetimes, masking, capacity, other principals ===

/// The same request sent several times at once asks for one approval, not one per copy
/// ("a retry of the same request waits again").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_requests_sent_at_once_share_one_approval() {
    let env = Env::with(setup("5s", crate::TEST_RULES)).await;
    let mut report = Vec::new();
    for round in 0..5 {
        let path = account(&env, &format!("dupes{round}"));
        let results = futures_join_all(
            (0..8)
                .map(|_| put(&env, &path, CREATE, Some(0), None))
                .collect(),
        )
        .await;
        let mut ids: Vec<String> = results
            .iter()
            .map(|r| header(&r.1, "x-portcullis-approval").to_owned())
            .collect();
        assert!(results.iter().all(|r| code(&r.1) == "ApprovalPending"));
        ids.sort();
        ids.dedup();
        report.push(ids.len());
    }
    let (_, _, b) = admin(&env, Some("alice"), Method::GET, "/api/approvals", None).await;
    let pending = b["value"].as_array().unwrap().len();
    assert_eq!(
        report,
        vec![1; 5],
        "distinct approvals per round of 8 identical requests (approvers see {pending} pending for 5 requests)"
    );
}

/// An approval approved but not used before it expires: the same request does not pass
/// whether or not it names the approval (the store's `live_approval` says an approval past
/// its expiry can no longer pass).
#[tokio::test]
async fn an_unused_approval_past_its_expiry_passes_neither_named_nor_unnamed() {
    let rules = leak(format!(
        "  rules:\n{}",
        account_rule(
            "short-lived",
            "lateuse",
            "{approvers: [group:approvers], timeout: 2s}",
            ""
        )
    ));
    let env = Env::with(setup("5s", rules)).await;
    let path = account(&env, "lateuse");
    let since = env.sim.last_call_seq();
    let id = held_pending(&env, &path, CREATE).await;
    let (s, _, b) = vote(&env, "alice", &id, "approve", "use it soon").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let expires = chrono::DateTime::parse_from_rfc3339(b["expires"].as_str().unwrap()).unwrap();
    let left = (expires.with_timezone(&chrono::Utc) - chrono::Utc::now())
        .to_std()
        .unwrap_or_default();
    tokio::time::sleep(left + Duration::from_millis(700)).await;

    let (unnamed, h, body) = put(&env, &path, CREATE, Some(0), None).await;
    let unnamed_code = code(&h).to_owned();
    let other = h
        .get("x-portcullis-approval")
        .map(|v| v.to_str().unwrap().to_owned());
    assert!(!unnamed.is_success(), "{unnamed} {body}");
    assert_ne!(other.as_deref(), Some(id.as_str()), "{body}");
    let (named, h, body) = put(&env, &path, CREATE, Some(0), Some(&id)).await;
    assert!(
        !named.is_success(),
        "naming approval {id} after its expiry forwarded the request ({named}), while the same request without the name got {unnamed} {unnamed_code} (a new approval {other:?}); the approval is now {}",
        approval(&env, &id).await["status"]
    );
    assert_eq!(code(&h), "ApprovalExpired", "{body}");
    assert!(puts_to(&env, since, "lateuse").is_empty());
}

/// What approvers see of a held request has its secrets masked, and the state database
/// never holds them; the forward still carries the body as sent.
#[tokio::test]
async fn held_request_bodies_are_masked_for_approvers() {
    let rules = "  rules:\n    - name: hold-one-vm\n      effect: approve\n      principals: [group:ai-agents]\n      actions: [Microsoft.Compute/virtualMachines/write]\n      scopes: [\"/subscriptions/*/resourceGroups/demo-rg/providers/Microsoft.Compute/virtualMachines/heldvm\"]\n      approval: {approvers: [group:approvers], style: hold}\n      credential: elevated\n";
    let env = Env::with(setup("5s", rules)).await;
    let password = "Held-P@ssw0rd-never-shown-7731";
    let path = format!(
        "{}/providers/Microsoft.Compute/virtualMachines/heldvm?{}",
        env.rg(),
        crate::API
    );
    let body = json!({"location": "eastus", "properties": {"osProfile": {"adminUsername": "u", "adminPassword": password}}}).to_string();
    let since = env.sim.last_call_seq();
    let id = held_pending(&env, &path, &body).await;
    let a = approval(&env, &id).await;
    let shown = a["request"]["body"].as_str().unwrap();
    assert!(shown.contains("[masked:vm-admin-password:"), "{shown}");
    assert!(!a.to_string().contains(password), "{a}");
    let state = env.dir.join("state");
    for file in ["audit.db", "audit.db-wal"] {
        let bytes = crate::audit::read_elsewhere(&state.join(file));
        assert!(
            !bytes
                .windows(password.len())
                .any(|w| w == password.as_bytes()),
            "the clear password reached {file}"
        );
    }
    let (s, _, b) = vote(&env, "alice", &id, "approve", "ok").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, _, answer) = put(&env, &path, &body, Some(0), None).await;
    assert!(s.is_success(), "{s} {answer}");
    let puts: Vec<_> = env
        .arm_calls(since)
        .into_iter()
        .filter(|c| c.method == "PUT")
        .collect();
    assert_eq!(puts.len(), 1);
    assert_eq!(caller(&puts[0]), "portcullis-elevated");
}

/// A client that hangs up while held leaves the approval pending and redeemable.
#[tokio::test]
async fn a_client_that_disconnects_while_held_can_redeem_later() {
    let env = Env::with(setup("10s", crate::TEST_RULES)).await;
    let path = account(&env, "hungup");
    let since = env.sim.last_call_seq();
    let agent = tokio::spawn(send(put_request(&env, &path, CREATE, None, None)));
    let id = wait_pending(&env, "hungup").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    agent.abort();
    let _ = agent.await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(approval(&env, &id).await["status"], "pending");
    let (s, _, b) = vote(&env, "alice", &id, "approve", "later").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert!(puts_to(&env, since, "hungup").is_empty());
    let (s, _, body) = put(&env, &path, CREATE, Some(0), None).await;
    assert!(s.is_success(), "{s} {body}");
    assert_eq!(puts_to(&env, since, "hungup").len(), 1);
}

/// Beyond `approvals.max_held`, a held request is answered at once (pending) instead of
/// waiting; those already held are not disturbed.
#[tokio::test]
async fn beyond_max_held_requests_are_answered_at_once() {
    let env = Env::with(Setup {
        extra: "approvals:\n  hold: 60s\n  max_held: 1\n",
        ..Default::default()
    })
    .await;
    let first = account(&env, "heldfirst");
    let since = env.sim.last_call_seq();
    let agent = tokio::spawn(send(put_request(&env, &first, CREATE, None, None)));
    let id = wait_pending(&env, "heldfirst").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let started = Instant::now();
    let (s, h, body) = put(&env, &account(&env, "heldsecond"), CREATE, None, None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(code(&h), "ApprovalPending");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "not held: {:?}",
        started.elapsed()
    );
    let (s, _, b) = vote(&env, "alice", &id, "approve", "ok").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, _, body) = within(10, "the held request", agent).await.unwrap();
    assert!(s.is_success(), "{s} {body}");
    assert_eq!(puts_to(&env, since, "heldfirst").len(), 1);
}

/// An approval binds its principal: another agent sending the same request cannot use it.
#[tokio::test]
async fn another_principal_cannot_redeem_an_approval() {
    let env = Env::with(setup("5s", crate::TEST_RULES)).await;
    let path = account(&env, "notyours");
    let since = env.sim.last_call_seq();
    let id = held_pending(&env, &path, CREATE).await;
    let (s, _, b) = vote(&env, "alice", &id, "approve", "for agent only").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let as_other = |named: Option<&str>| {
        let mut r = env
            .http
            .put(env.url(&path))
            .bearer_auth(env.token("overage-agent"))
            .header("content-type", "application/json")
            .header("x-portcullis-reason", "e2e: needs a storage account")
            .header("x-portcullis-wait", "0")
            .body(CREATE);
        if let Some(id) = named {
            r = r.header("x-portcullis-approval", id);
        }
        within(15, "overage-agent's PUT", send(r))
    };
    let (s, h, body) = as_other(Some(&id)).await;
    assert!(!s.is_success(), "{s} {body}");
    assert_eq!(code(&h), "ApprovalMismatch", "{body}");
    let (s, h, body) = as_other(None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(code(&h), "ApprovalPending", "{body}");
    assert_ne!(header(&h, "x-portcullis-approval"), id);
    assert!(puts_to(&env, since, "notyours").is_empty());
    assert_eq!(approval(&env, &id).await["status"], "approved");
}

// === 12. many approvals others decide ===

#[tokio::test]
async fn an_approver_finds_theirs_behind_hundreds_they_may_not_see() {
    let env = Env::with(setup("120s", crate::TEST_RULES)).await;
    let id = held_pending(&env, &account(&env, "behindmany"), CREATE).await;
    // 600 newer approvals that only another team decides, straight into the store.
    pending_elsewhere(&env, 600, "other-team", |_| {
        (
            "00000000-0000-0000-0000-00000000aaaa".into(),
            "00000000-0000-0000-0000-00000000bbbb",
        )
    })
    .await;
    let (s, _, b) = admin(&env, Some("alice"), Method::GET, "/api/approvals", None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let ids: Vec<&str> = b["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [id.as_str()], "alice sees hers, and only hers");
}

// === 13. one agent cannot bury everyone's approvals (issue 19, finding 6) ===

/// The approvers group of the simulator's default configuration (alice and bob).
const APPROVERS: &str = "a56b8840-25ef-5cbf-a75b-1178c095c637";

/// Setting a secret in demo-kv waits for approval too (Key Vault's requests are held).
const KV_APPROVE: &str = "    - name: hold-secret-writes\n      effect: approve\n      principals: [group:ai-agents]\n      data_actions: [Microsoft.KeyVault/vaults/secrets/setSecret/action]\n      scopes: [\"vault:demo-kv\"]\n      approval: {approvers: [group:approvers], quorum: 1, timeout: 10m}\n";

/// `n` pending approvals (`{prefix}-0000`...), newer than anything held so far, straight
/// into the store: the `i`th by the principal `who(i)` names, decided by the group it names.
async fn pending_elsewhere(
    env: &Env,
    n: usize,
    prefix: &str,
    who: impl Fn(usize) -> (String, &'static str),
) {
    let store = portcullis::audit::store::Store::open(&env.dir.join("state/audit.db"))
        .await
        .unwrap();
    let later = chrono::Utc::now() + chrono::Duration::seconds(5);
    for i in 0..n {
        let (principal, approvers) = who(i);
        let a: portcullis::approval::Approval = serde_json::from_value(json!({
            "id": format!("{prefix}-{i:04}"),
            "status": "pending",
            "principal": principal,
            "principal_app": null,
            "principal_name": "another agent",
            "action": STORAGE_WRITE,
            "scope": format!("/subscriptions/s/resourceGroups/other/providers/Microsoft.Storage/storageAccounts/{prefix}{i}"),
            "rule": prefix,
            "rule_reason": "another rule",
            "request": {"method": "PUT", "path": "/", "query": "", "headers": [], "body": null},
            "digest": format!("{prefix}{i}"),
            "reason": null,
            "approvers": [format!("group:{approvers}")],
            "quorum": 1,
            "credential": null,
            "grant_window_secs": null,
            "session": "other",
            "created": (later + chrono::Duration::milliseconds(i as i64)).to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "expires": "2099-01-01T00:00:00.000000Z",
            "decided": null,
            "consumed": null,
            "votes": []
        }))
        .unwrap();
        assert_eq!(
            store
                .insert_approval(&a, 0, &portcullis::audit_time())
                .await
                .unwrap(),
            portcullis::approval::store::Inserted::New
        );
    }
}

/// Every pending approval alice may decide, following `nextLink` from the first page; and
/// how many pages that took.
async fn all_pending_pages(env: &Env) -> (Vec<String>, usize) {
    let mut ids = Vec::new();
    let mut pages = 0;
    let mut next = Some("/api/approvals?status=pending".to_owned());
    while let Some(path) = next {
        let (s, _, b) = admin(env, Some("alice"), Method::GET, &path, None).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        pages += 1;
        assert!(pages < 50, "nextLink never ends");
        ids.extend(
            b["value"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["id"].as_str().unwrap().to_owned()),
        );
        next = b["nextLink"].as_str().map(str::to_owned);
    }
    (ids, pages)
}

#[tokio::test]
async fn one_agent_holding_past_its_cap_gets_429_and_cannot_bury_anothers_approval() {
    let env = Env::with(Setup {
        console: true,
        rules: leak(format!("{}{KV_APPROVE}", crate::TEST_RULES)),
        extra: "approvals:\n  hold: 60s\n  max_pending_per_principal: 5\nlimits:\n  rate_per_principal: 0\n",
        ..Default::default()
    })
    .await;
    let since = env.sim.calls_since(0).len() as u64;
    // Another agent's request waits first.
    let (s, h, b) = within(
        15,
        "overage-agent's PUT",
        send(
            env.http
                .put(env.url(&account(&env, "otheragents")))
                .bearer_auth(env.token("overage-agent"))
                .header("content-type", "application/json")
                .header("x-portcullis-wait", "0")
                .body(CREATE),
        ),
    )
    .await;
    assert_eq!(code(&h), "ApprovalPending", "{s} {b}");
    let others = header(&h, "x-portcullis-approval").to_owned();

    // Then one agent floods: 30 distinct requests for approval at once.
    let mut flood = tokio::task::JoinSet::new();
    for i in 0..30 {
        let req = put_request(
            &env,
            &account(&env, &format!("flood{i}")),
            CREATE,
            Some(0),
            None,
        );
        flood.spawn(send(req));
    }
    let (mut pending, mut capped) = (0, 0);
    while let Some(r) = flood.join_next().await {
        let (s, h, b) = r.unwrap();
        match s {
            StatusCode::FORBIDDEN => {
                assert_eq!(code(&h), "ApprovalPending", "{b}");
                pending += 1;
            }
            StatusCode::TOO_MANY_REQUESTS => {
                // ARM's shape: the code in the body and in x-ms-error-code, and Retry-After.
                assert_eq!(code(&h), "TooManyPendingApprovals", "{b}");
                assert_eq!(b["error"]["code"], "TooManyPendingApprovals", "{b}");
                let message = b["error"]["message"].as_str().unwrap();
                assert!(message.contains("(5)"), "{message}");
                assert_eq!(header(&h, "retry-after"), "10");
                assert_eq!(header(&h, "x-ms-failure-cause"), "gateway");
                assert!(h.get("x-portcullis-approval").is_none());
                capped += 1;
            }
            other => panic!("{other}: {b}"),
        }
    }
    assert_eq!(
        (pending, capped),
        (5, 25),
        "the cap is 5 pending per principal"
    );
    assert!(
        env.azure_calls(since).iter().all(|c| c.method != "PUT"),
        "nothing reached Azure"
    );
    // In Key Vault's shape for a vault request.
    let (s, h, b) = within(
        15,
        "a secret write past the cap",
        send(
            env.http
                .put(env.url("/keyvault/demo-kv/secrets/capped?api-version=7.4"))
                .bearer_auth(env.token("agent"))
                .header("x-portcullis-wait", "0")
                .json(&json!({"value": "capped-secret-value"})),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{b}");
    assert_eq!(b["error"]["code"], "Throttled", "{b}");
    assert_eq!(
        b["error"]["innererror"]["code"], "TooManyPendingApprovals",
        "{b}"
    );
    assert_eq!(header(&h, "retry-after"), "10");

    // Many other agents' approvals arrive after it, more than any one page shows.
    // (26 agents, each under any per-principal cap; alice may decide them all.)
    pending_elsewhere(&env, 510, "many-agents", |i| {
        (
            format!("00000000-0000-0000-0000-0000000000{:02}", i % 26),
            APPROVERS,
        )
    })
    .await;

    // The approver still reaches the other agent's approval, through the API's pages...
    let (ids, pages) = all_pending_pages(&env).await;
    assert!(
        ids.contains(&others),
        "the other agent's approval is listed"
    );
    assert_eq!(ids.len(), 1 + 5 + 510, "each pending approval once");
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "no approval on two pages");
    assert!(pages > 1, "{pages}");

    // ...and through the console's, following its link to older approvals.
    let http = crate::console::browserless(&env);
    let (session, _, _) = crate::console::sign_in(&env, &http, "alice").await;
    let mut path = "/console/approvals".to_owned();
    let mut seen = 0;
    loop {
        let (status, html) = crate::console::page(&env, &http, &session, &path).await;
        assert_eq!(status, StatusCode::OK, "{html}");
        seen += 1;
        if html.contains(&others) {
            break;
        }
        let more = html
            .split("<p class=\"more\">")
            .nth(1)
            .and_then(|m| m.split("href=\"").nth(1))
            .and_then(|m| m.split('"').next())
            .unwrap_or_else(|| {
                panic!("page {seen} hides the other agent's approval and links to no more:\n{html}")
            });
        assert!(seen < 30, "the pages never end");
        path = more.replace("&#38;", "&");
    }
    assert!(seen > 1, "found beyond the first page");

    // Operators see what waits, store-wide.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = env
            .http
            .get(admin_url(&env, "/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if metrics.contains("portcullis_approvals_pending 516")
            && metrics.contains("portcullis_approvals_capped_total 26")
        {
            break;
        }
        assert!(Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
