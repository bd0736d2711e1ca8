//! Two gateway processes on one PostgreSQL: a request held on A is approved through B and
//! released on A (woken by NOTIFY: the periodic recheck is set far beyond the clients'
//! timeout); the same approval redeemed at once on A and B passes once; both chains verify.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::crash::Gateway;
use crate::store::{Schema, pg_url};
use crate::{GATEWAY_API, Setup, prepare, send};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_approvals_through_postgres() {
    let schema = Schema::new();
    let extra: &'static str = Box::leak(
        format!(
            "store:\n  url: \"{}\"\n  schema: {}\napprovals:\n  hold: 60s\n  recheck: 300s\n",
            pg_url(),
            schema.0
        )
        .into_boxed_str(),
    );
    let (sim, dir) = prepare(Setup {
        extra,
        ..Setup::default()
    })
    .await;
    let config = std::fs::read_to_string(dir.join("portcullis.yaml")).unwrap();
    assert!(config.contains("state_dir: state\n"));
    std::fs::write(
        dir.join("portcullis-b.yaml"),
        config.replace("state_dir: state\n", "state_dir: state-b\n"),
    )
    .unwrap();
    let a = Gateway::spawn_config(&dir, "portcullis.yaml", "a.log").await;
    let b = Gateway::spawn_config(&dir, "portcullis-b.yaml", "b.log").await;
    let agent = sim.token("agent", GATEWAY_API).unwrap();
    let alice = sim.token("alice", GATEWAY_API).unwrap();
    let rg = format!(
        "/subscriptions/{}/resourceGroups/demo-rg",
        sim.subscription_id()
    );
    let sa = |gw: &Gateway, name: &str| {
        format!(
            "https://{}{rg}/providers/Microsoft.Storage/storageAccounts/{name}?api-version=2023-05-01",
            gw.addr
        )
    };
    let puts = |name: &str| {
        sim.calls_since(0)
            .into_iter()
            .filter(|c| c.method == "PUT" && c.path.contains(&format!("storageAccounts/{name}")))
            .collect::<Vec<_>>()
    };

    // Held on A (the client gives up after 10 s; the hold is 60 s and the recheck 300 s, so
    // only a notification from B can release it in time).
    let held = tokio::spawn(send(
        a.http
            .put(sa(&a, "onreplicaa"))
            .bearer_auth(&agent)
            .json(&json!({"location": "eastus"})),
    ));
    let deadline = Instant::now() + Duration::from_secs(20);
    let id = loop {
        let (s, _, body) = send(
            b.http
                .get(format!("https://{}/api/approvals", b.admin))
                .bearer_auth(&alice),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        if let Some(x) = body["value"].as_array().unwrap().iter().find(|x| {
            x["scope"]
                .as_str()
                .is_some_and(|s| s.ends_with("/onreplicaa"))
        }) {
            break x["id"].as_str().unwrap().to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "B never saw A's approval:\n{}",
            a.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        puts("onreplicaa").is_empty(),
        "nothing forwarded before the approval"
    );
    let (s, _, body) = send(
        b.http
            .post(format!("https://{}/api/approvals/{id}/approve", b.admin))
            .bearer_auth(&alice)
            .json(&json!({"comment": "approved on B"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (s, _, body) = held.await.unwrap();
    assert!(s.is_success(), "released on A: {s} {body}\n{}", a.log());
    let forwarded = puts("onreplicaa");
    assert_eq!(forwarded.len(), 1);
    assert_eq!(
        forwarded[0].caller.as_ref().and_then(|c| c.name.as_deref()),
        Some("portcullis-elevated")
    );

    // One approval, redeemed at once on both replicas: it passes once.
    let (s, h, body) = send(
        a.http
            .put(sa(&a, "raced"))
            .bearer_auth(&agent)
            .header("x-portcullis-wait", "0")
            .json(&json!({"location": "eastus"})),
    )
    .await;
    assert_eq!(h["x-ms-error-code"], "ApprovalPending", "{s} {body}");
    let id = h["x-portcullis-approval"].to_str().unwrap().to_owned();
    let (s, _, body) = send(
        a.http
            .post(format!("https://{}/api/approvals/{id}/approve", a.admin))
            .bearer_auth(&alice)
            .json(&json!({"comment": "once"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let retry = |gw: &Gateway| {
        send(
            gw.http
                .put(sa(gw, "raced"))
                .bearer_auth(&agent)
                .header("x-portcullis-approval", &id)
                .header("x-portcullis-wait", "0")
                .json(&json!({"location": "eastus"})),
        )
    };
    let (on_a, on_b) = tokio::join!(retry(&a), retry(&b));
    let passed = [&on_a, &on_b].iter().filter(|r| r.0.is_success()).count();
    assert_eq!(
        passed, 1,
        "A: {:?} {}; B: {:?} {}",
        on_a.0, on_a.2, on_b.0, on_b.2
    );
    let loser = if on_a.0.is_success() { &on_b } else { &on_a };
    assert_eq!(
        loser.1["x-ms-error-code"], "ApprovalConsumed",
        "{}",
        loser.2
    );
    assert_eq!(puts("raced").len(), 1, "forwarded once");

    // Both replicas' chains, in the one store, verify.
    a.terminate().await;
    b.terminate().await;
    let (ok, text) = crate::outcome(
        crate::portcullis_cli()
            .args([
                "audit",
                "verify",
                "--store",
                &pg_url(),
                "--schema",
                &schema.0,
            ])
            .arg("--public-key")
            .arg(dir.join("state/audit-signing.key.pub"))
            .arg("--public-key")
            .arg(dir.join("state-b/audit-signing.key.pub")),
    );
    assert!(ok, "{text}");
    assert_eq!(text.matches("chain intact").count(), 2, "{text}");
}
