//! Held-approval scale: 2,000 requests held at once by a gateway process, then approved:
//! every one completes, and the gateway's memory per held request stays bounded.

use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::crash::Gateway;
use crate::{GATEWAY_API, Setup, prepare};

const HELD: usize = 2000;

/// The gateway's resident memory, from /proc.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_held_requests_all_complete_once_approved_in_bounded_memory() {
    let (sim, dir) = prepare(Setup {
        // One agent sends them all at once, and one approver client approves them all: no
        // per-principal rate limit here, nor a per-client one on the admin listener.
        extra: "approvals:\n  hold: 300s\n  max_held: 5000\n  max_pending_per_principal: 0\nlimits:\n  rate_per_principal: 0\n  admin_rate_per_client: 0\n",
        ..Setup::default()
    })
    .await;
    let gw = Gateway::spawn(&dir, "gateway.log").await;
    let agent = sim.token("agent", GATEWAY_API).unwrap();
    let alice = sim.token("alice", GATEWAY_API).unwrap();
    let log = gw.log();
    let ca_path = log
        .lines()
        .find_map(|l| l.strip_prefix("portcullis: development CA at "))
        .and_then(|rest| rest.split(" (").next())
        .unwrap();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(ca_path).unwrap()).unwrap();
    // One connection per held request, as separate agents would have.
    let client = reqwest::Client::builder()
        .add_root_certificate(ca.clone())
        .tls_built_in_root_certs(false)
        .http1_only()
        .pool_max_idle_per_host(HELD)
        .timeout(Duration::from_secs(280))
        .build()
        .unwrap();
    let rg = format!(
        "/subscriptions/{}/resourceGroups/demo-rg",
        sim.subscription_id()
    );
    let url = |i: usize| {
        format!(
            "https://{}{rg}/providers/Microsoft.Storage/storageAccounts/held{i}?api-version=2023-05-01",
            gw.addr
        )
    };
    // Warm up (keys, tokens, the store) with one request that is allowed.
    let warm = client
        .get(format!("https://{}{rg}?api-version=2022-09-01", gw.addr))
        .bearer_auth(&agent)
        .send()
        .await
        .unwrap();
    assert_eq!(warm.status(), StatusCode::OK);
    let pid = gw.child.id();
    let before = rss_kib(pid);

    let started = Instant::now();
    let mut held = tokio::task::JoinSet::new();
    for i in 0..HELD {
        let req = client
            .put(url(i))
            .bearer_auth(&agent)
            .json(&serde_json::json!({"location": "eastus"}));
        held.spawn(async move { req.send().await.map(|r| r.status()) });
    }
    // Wait (bounded) until every one is held.
    let store = portcullis::audit::store::Store::open(&dir.join("state/audit.db"))
        .await
        .unwrap();
    let pending = || async {
        store
            .approvals(
                Some(portcullis::approval::Status::Pending),
                10 * HELD as i64,
            )
            .await
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    let ids = loop {
        let list = pending().await;
        if list.len() >= HELD {
            break list.into_iter().map(|a| a.id).collect::<Vec<_>>();
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {HELD} held after 120 s:\n{}",
            list.len(),
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let holding = started.elapsed();
    let peak = rss_kib(pid);

    // Alice approves them all, 32 at a time.
    let admin = reqwest::Client::builder()
        .add_root_certificate(ca)
        .tls_built_in_root_certs(false)
        .build()
        .unwrap();
    let approving = Instant::now();
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(32));
    let mut votes = tokio::task::JoinSet::new();
    for id in ids {
        let (admin, alice, slots) = (admin.clone(), alice.clone(), slots.clone());
        let url = format!("https://{}/api/approvals/{id}/approve", gw.admin);
        votes.spawn(async move {
            let _slot = slots.acquire().await.unwrap();
            admin
                .post(url)
                .bearer_auth(alice)
                .json(&serde_json::json!({"comment": "scale test"}))
                .send()
                .await
                .map(|r| r.status())
        });
    }
    while let Some(v) = votes.join_next().await {
        assert_eq!(v.unwrap().unwrap(), StatusCode::OK);
    }
    let mut done = 0;
    while let Some(r) = held.join_next().await {
        let status = r
            .unwrap()
            .unwrap_or_else(|e| panic!("a held request failed: {e}\n{}", gw.log()));
        assert!(status.is_success(), "{status}");
        done += 1;
    }
    let released = approving.elapsed();
    assert_eq!(done, HELD);
    assert_eq!(pending().await.len(), 0);
    let per_held = peak.saturating_sub(before) as f64 / HELD as f64;
    eprintln!(
        "held {HELD} requests in {holding:?}; gateway RSS {before} KiB before, {peak} KiB with all held ({per_held:.1} KiB per held request, connection included); all approved and completed in {released:?}"
    );
    // A bound, not a speed: a held request must not cost more than its connection and a
    // little state.
    assert!(per_held < 200.0, "{per_held:.1} KiB per held request");
    drop(sim);
}
