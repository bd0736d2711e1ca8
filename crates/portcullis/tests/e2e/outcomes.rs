//! Held as its own outcome (issue 21, point 3): a request held for approval is counted as
//! held, not refused; once approved and forwarded it also counts as allowed after approval.
//! Over real sockets: the gateway, the admin API, `/metrics` and `portcullis sessions`.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::approvals::{CREATE, account, code, put_request, vote, within};
use crate::{Env, Setup, leak, send};

const SESSION: &str = "outcomes";

/// One request of the agent's session, without a body.
async fn agent(env: &Env, method: Method, path: &str) -> StatusCode {
    let r = env
        .http
        .request(method, env.url(path))
        .bearer_auth(env.token("agent"))
        .header("x-portcullis-session", SESSION);
    within(20, "the agent's request", send(r)).await.0
}

#[tokio::test]
async fn held_approved_and_denied_requests_are_counted_apart() {
    let alice = azure_sim::config::derived_id("principal", "alice");
    let env = Env::with(Setup {
        extra: leak(format!(
            "approvals:\n  hold: 5s\naudit:\n  readers: [\"user:{alice}\"]\n"
        )),
        ..Default::default()
    })
    .await;
    // Held (hold style: refused ApprovalPending at once), sent again while pending (the
    // same approval), approved, then sent again: one request, allowed after approval.
    let put = |path: String| {
        let r =
            put_request(&env, &path, CREATE, Some(0), None).header("x-portcullis-session", SESSION);
        async move {
            let (s, h, b) = within(20, "the agent's PUT", send(r)).await;
            let id = h
                .get("x-portcullis-approval")
                .map(|v| v.to_str().unwrap().to_owned());
            (s, code(&h).to_owned(), id, b)
        }
    };
    let later = account(&env, "approvedlater");
    let (s, c, id, b) = put(later.clone()).await;
    assert_eq!(
        (s, c.as_str()),
        (StatusCode::FORBIDDEN, "ApprovalPending"),
        "{b}"
    );
    let id = id.unwrap();
    let (s, c, again, b) = put(later.clone()).await;
    assert_eq!(
        (s, c.as_str()),
        (StatusCode::FORBIDDEN, "ApprovalPending"),
        "{b}"
    );
    assert_eq!(
        again.as_deref(),
        Some(id.as_str()),
        "a retry waits for the same approval"
    );
    let (s, _, b) = vote(&env, "alice", &id, "approve", "fine").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, _, _, b) = put(later).await;
    assert!(s.is_success(), "{s} {b}");
    // Held and never decided.
    let (s, c, _, b) = put(account(&env, "neverdecided")).await;
    assert_eq!(
        (s, c.as_str()),
        (StatusCode::FORBIDDEN, "ApprovalPending"),
        "{b}"
    );
    // Denied by policy; allowed.
    let vm = format!(
        "{}/providers/Microsoft.Compute/virtualMachines/vm1?api-version=2024-07-01",
        env.rg()
    );
    assert_eq!(
        agent(&env, Method::DELETE, &vm).await,
        StatusCode::FORBIDDEN
    );
    let rg = format!("{}?api-version=2022-09-01", env.rg());
    assert_eq!(agent(&env, Method::GET, &rg).await, StatusCode::OK);

    // Five requests as the trail counts them: the approved one held (its two tries are one
    // held request) and then allowed after approval; one held and never decided; a denial.
    // The admin API.
    let admin = |path: &str| {
        env.http
            .get(format!("https://{}{path}", env.gw.admin_addr))
            .bearer_auth(env.token("alice"))
    };
    let (s, _, body) = send(admin("/api/sessions")).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let ours: Vec<&Value> = body["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| {
            v["id"]
                .as_str()
                .is_some_and(|id| id.starts_with("outcomes@"))
        })
        .collect();
    assert_eq!(ours.len(), 1, "{body}");
    let s0 = ours[0];
    assert_eq!(
        (
            &s0["requests"],
            &s0["allowed"],
            &s0["after_approval"],
            &s0["held"],
            &s0["refused"]
        ),
        (&5.into(), &2.into(), &1.into(), &2.into(), &1.into()),
        "{s0}"
    );
    for (decision, found) in [("held", 1), ("refused", 1), ("allow", 1)] {
        let (s, _, b) = send(admin(&format!("/api/sessions?decision={decision}"))).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(
            b["value"].as_array().unwrap().len(),
            found,
            "{decision}: {b}"
        );
    }

    let (s, _, b) = send(admin("/api/sessions?decision=hold")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(b["error"]["code"], "InvalidParameter", "{b}");

    // The metrics: held apart from refused.
    let (s, _, page) = {
        let r = env
            .http
            .get(format!("https://{}/metrics", env.gw.admin_addr))
            .send()
            .await
            .unwrap();
        (r.status(), (), r.text().await.unwrap())
    };
    assert_eq!(s, StatusCode::OK);
    let count = |outcome: &str| {
        page.lines()
            .find_map(|l| {
                l.strip_prefix(&format!(
                    "portcullis_request_outcomes_total{{outcome=\"{outcome}\"}} "
                ))?
                .parse::<f64>()
                .ok()
            })
            .unwrap_or(0.0)
    };
    assert_eq!(count("held"), 3.0, "{page}");
    assert_eq!(count("allowed_after_approval"), 1.0, "{page}");
    assert_eq!(count("refused"), 1.0, "{page}");
    assert!(count("allowed") >= 1.0, "{page}");

    // The CLI, on the same store.
    let state = env.dir.join("state");
    let cli = |args: &[&str]| {
        let mut c = crate::portcullis_cli();
        c.args(args).arg("--state-dir").arg(&state);
        crate::outcome(&mut c)
    };
    let (ok, out) = cli(&["sessions", "replay", SESSION]);
    assert!(ok, "{out}");
    assert_eq!(out.matches("⏸ held").count(), 3, "{out}");
    assert_eq!(out.matches("✗ refused").count(), 1, "{out}");
    assert_eq!(
        out.lines().last(),
        Some("5 requests: 2 allowed (1 after approval), 2 held, 1 refused"),
        "{out}"
    );
    let (ok, out) = cli(&["sessions", "list"]);
    assert!(ok, "{out}");
    let header = out.lines().next().unwrap();
    assert!(
        header
            .split_whitespace()
            .collect::<Vec<_>>()
            .ends_with(&["REQUESTS", "ALLOWED", "HELD", "REFUSED"]),
        "{out}"
    );
    let row = out.lines().find(|l| l.starts_with("outcomes@")).unwrap();
    assert!(
        row.split_whitespace()
            .collect::<Vec<_>>()
            .ends_with(&["5", "2", "2", "1"]),
        "{out}"
    );
    let (ok, out) = cli(&["sessions", "list", "--decision", "held"]);
    assert!(ok && out.contains("outcomes@"), "{out}");
    let (ok, out) = cli(&["sessions", "list", "--decision", "hold"]);
    assert!(
        !ok && out.contains("held"),
        "an unknown decision is refused: {out}"
    );
    env.gw.shutdown().await;
}
