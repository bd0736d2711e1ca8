//! ARM batches: every inner request is named and judged as if sent alone. A batch runs only
//! if every request in it may; one deny refuses it (naming the inner request), one approve
//! holds it as one approval listing every inner request; a body the gateway cannot judge is
//! refused. The simulator's call log shows what got through.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::Env;

const BATCH: &str = "/batch?api-version=2020-06-01";

async fn batch(env: &Env, body: Value, wait: Option<u64>) -> (StatusCode, Value, Option<String>) {
    let mut req = env
        .http
        .post(env.url(BATCH))
        .bearer_auth(env.token("agent"))
        .json(&body);
    if let Some(w) = wait {
        req = req.header("x-portcullis-wait", w.to_string());
    }
    let (s, h, b) = crate::send(req).await;
    let approval = h
        .get("x-portcullis-approval")
        .map(|v| v.to_str().unwrap().to_owned());
    (s, b, approval)
}

/// The last audit record of a batch.
async fn last_record(env: &Env) -> Value {
    let store = portcullis::audit::store::Store::open(&env.dir.join("state/audit.db"))
        .await
        .unwrap();
    let instance = store.instances().await.unwrap().remove(0);
    let chain = store.chain(&instance).await.unwrap();
    let last = chain
        .iter()
        .rev()
        .find(|l| l.record.action.as_deref() == Some("Microsoft.Resources/batch/action"))
        .expect("a batch record");
    serde_json::to_value(&last.record).unwrap()
}

#[tokio::test]
async fn a_batch_of_allowed_requests_runs_and_each_is_recorded() {
    let env = Env::start().await;
    let since = env.sim.last_call_seq();
    let body = json!({"requests": [
        {"name": "group", "httpMethod": "GET", "url": format!("{}?api-version=2022-09-01", env.rg())},
        {"name": "vm", "httpMethod": "GET", "url": format!("https://management.azure.com{}/providers/Microsoft.Compute/virtualMachines/vm1?api-version=2024-07-01", env.rg())},
    ]});
    let (s, b, _) = batch(&env, body, None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["responses"].as_array().unwrap().len(), 2, "{b}");
    assert!(
        env.arm_calls(since).iter().any(|c| c.path == "/batch"),
        "the batch was forwarded"
    );
    let r = last_record(&env).await;
    let inner = r["inner"].as_array().expect("inner requests recorded");
    assert_eq!(inner.len(), 2, "{r}");
    assert_eq!(inner[0]["name"], "group");
    assert_eq!(
        inner[0]["action"],
        "Microsoft.Resources/subscriptions/resourceGroups/read"
    );
    assert_eq!(inner[1]["action"], "Microsoft.Compute/virtualMachines/read");
    assert!(
        inner
            .iter()
            .all(|i| i["decision"] == "allow" && i["rule"] == "agents-read-demo-rg"),
        "{r}"
    );
}

#[tokio::test]
async fn one_denied_inner_request_refuses_the_whole_batch() {
    let env = Env::start().await;
    let since = env.sim.last_call_seq();
    let body = json!({"requests": [
        {"name": "harmless", "httpMethod": "GET", "url": format!("{}?api-version=2022-09-01", env.rg())},
        // The same delete the policy denies when sent alone, spelled another way.
        {"name": "sneaky", "httpMethod": "delete", "url": format!("{}/providers/microsoft.compute/VIRTUALMACHINES/vm1?api-version=2024-07-01", env.rg().to_uppercase())},
    ]});
    let (s, b, _) = batch(&env, body, None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert_eq!(b["error"]["code"], "AuthorizationFailed");
    let message = b["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("'sneaky'")
            && message.contains("Microsoft.Compute/virtualMachines/delete"),
        "{message}"
    );
    assert!(env.arm_calls(since).is_empty(), "nothing reached Azure");
    let r = last_record(&env).await;
    assert_eq!(r["phase"], "refused");
    assert_eq!(r["inner"][1]["decision"], "deny", "{r}");
    assert_eq!(r["inner"][1]["rule"], "no-vm-deletes", "{r}");
}

#[tokio::test]
async fn one_held_inner_request_holds_the_whole_batch_as_one_approval() {
    let env = Env::start().await;
    let since = env.sim.last_call_seq();
    let body = json!({"requests": [
        {"name": "look", "httpMethod": "GET", "url": format!("{}?api-version=2022-09-01", env.rg())},
        {"name": "create", "httpMethod": "PUT", "url": format!("{}/providers/Microsoft.Storage/storageAccounts/batchheld?api-version=2023-05-01", env.rg()),
         "content": {"location": "eastus", "sku": {"name": "Standard_LRS"}, "kind": "StorageV2"}},
    ]});
    let (s, b, id) = batch(&env, body.clone(), Some(0)).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert_eq!(b["error"]["code"], "ApprovalPending", "{b}");
    let id = id.expect("the approval's id");
    assert!(env.arm_calls(since).is_empty(), "nothing reached Azure");

    let admin = |path: String| {
        env.http
            .get(format!("https://{}{path}", env.gw.admin_addr))
            .bearer_auth(env.token("alice"))
    };
    let (s, _, a) = crate::send(admin(format!("/api/approvals/{id}"))).await;
    assert_eq!(s, StatusCode::OK, "{a}");
    let inner = a["inner"].as_array().expect("the approval lists the batch");
    assert_eq!(inner.len(), 2, "{a}");
    assert_eq!(inner[1]["name"], "create");
    assert_eq!(
        inner[1]["action"],
        "Microsoft.Storage/storageAccounts/write"
    );
    assert_eq!(inner[1]["decision"], "approve");
    assert_eq!(inner[0]["decision"], "allow");
    assert!(
        a["rule_reason"].as_str().unwrap().contains("'create'"),
        "{a}"
    );

    let (s, _, v) = crate::send(
        env.http
            .post(format!(
                "https://{}/api/approvals/{id}/approve",
                env.gw.admin_addr
            ))
            .bearer_auth(env.token("alice"))
            .json(&json!({"comment": "ok"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, b, _) = batch(&env, body, None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let calls = env.arm_calls(since);
    assert!(
        calls
            .iter()
            .any(|c| c.method == "PUT" && c.path.ends_with("/storageAccounts/batchheld")),
        "the approved batch ran: {calls:?}"
    );
}

#[tokio::test]
async fn batches_the_gateway_cannot_judge_are_refused() {
    let env = Env::start().await;
    let since = env.sim.last_call_seq();
    let vm = format!(
        "{}/providers/Microsoft.Compute/virtualMachines/vm1?api-version=2024-07-01",
        env.rg()
    );
    let cases = [
        ("not an object", json!(["x"])),
        ("no requests", json!({"requests": []})),
        (
            "another host",
            json!({"requests": [{"httpMethod": "GET", "url": format!("https://evil.example{vm}")}]}),
        ),
        (
            "a batch in a batch",
            json!({"requests": [{"httpMethod": "POST", "url": BATCH, "content": {"requests": []}}]}),
        ),
        (
            "an encoded slash",
            json!({"requests": [{"httpMethod": "DELETE", "url": vm.replace("/virtualMachines/", "/virtualMachines%2F")}]}),
        ),
        (
            "a dot segment",
            json!({"requests": [{"httpMethod": "DELETE", "url": format!("{}/providers/Microsoft.Compute/virtualMachines/x/../vm1?api-version=2024-07-01", env.rg())}]}),
        ),
        (
            "an unnamable method",
            json!({"requests": [{"httpMethod": "TRACE", "url": vm}]}),
        ),
    ];
    for (what, body) in cases {
        let (s, b, _) = batch(&env, body, None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{what}: {b}");
        assert_eq!(b["error"]["code"], "InvalidBatchRequest", "{what}: {b}");
    }
    // Not JSON at all.
    let (s, _, b) = crate::send(
        env.http
            .post(env.url(BATCH))
            .bearer_auth(env.token("agent"))
            .header("content-type", "application/json")
            .body("{\"requests\": [ oops"),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert!(env.arm_calls(since).is_empty(), "nothing reached Azure");
}
