//! Two gateway processes on one PostgreSQL: a request held on A is approved through B and
//! released on A (woken by NOTIFY: the periodic recheck is set far beyond the clients'
//! timeout); the same approval redeemed at once on A and B passes once; both chains verify.
//! A replica killed (SIGKILL) under load loses no record of an answer it gave, the other
//! keeps serving, and both chains verify. Replicas that share `keys:` honour each other's
//! rewritten poll URLs and mask alike; one with keys of its own does not.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::crash::Gateway;
use crate::store::{Schema, pg_url};
use crate::{API, GATEWAY_API, Setup, prepare, send};

/// Gateways A and B started from the test directory's configuration, sharing its store
/// (and keys, when written), B with a state directory of its own.
pub(crate) async fn two_replicas(dir: &std::path::Path) -> (Gateway, Gateway) {
    let config = std::fs::read_to_string(dir.join("portcullis.yaml")).unwrap();
    assert!(config.contains("state_dir: state\n"));
    std::fs::write(
        dir.join("portcullis-b.yaml"),
        config.replace("state_dir: state\n", "state_dir: state-b\n"),
    )
    .unwrap();
    let a = Gateway::spawn_config(dir, "portcullis.yaml", "a.log").await;
    let b = Gateway::spawn_config(dir, "portcullis-b.yaml", "b.log").await;
    (a, b)
}

/// A simulator and a test directory whose configuration keeps its store in a fresh
/// PostgreSQL schema, with `more` YAML.
async fn on_postgres(more: &str) -> (Schema, azure_sim::Simulator, std::path::PathBuf) {
    let schema = Schema::new();
    let extra = crate::leak(format!(
        "store:\n  url: \"{}\"\n  schema: {}\n{more}",
        pg_url(),
        schema.0
    ));
    let (sim, dir) = prepare(Setup {
        extra,
        ..Setup::default()
    })
    .await;
    (schema, sim, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_approvals_through_postgres() {
    // Replicas share their keys (docs/deployment.md): an approval's digest is keyed with
    // `keys.mask`, so a resend on B is recognised as the request approved on A.
    let more = format!("approvals:\n  hold: 60s\n  recheck: 300s\n{SHARED_KEYS}");
    let (schema, sim, dir) = on_postgres(crate::leak(more)).await;
    write_shared_keys(&dir);
    let (a, b) = two_replicas(&dir).await;
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

/// One agent sending requests for approval to two replicas at once cannot together pass
/// its cap on pending approvals (issue 19, finding 6): the count is the shared store's, and
/// the count and the insert are one locked transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_together_hold_no_more_than_the_cap_of_pending_approvals() {
    let (schema, sim, dir) = on_postgres(
        "approvals:\n  hold: 60s\n  max_pending_per_principal: 4\nlimits:\n  rate_per_principal: 0\n",
    )
    .await;
    let (a, b) = two_replicas(&dir).await;
    let agent = sim.token("agent", GATEWAY_API).unwrap();
    let rg = format!(
        "/subscriptions/{}/resourceGroups/demo-rg",
        sim.subscription_id()
    );
    let mut sent = tokio::task::JoinSet::new();
    for i in 0..24 {
        let gw = if i % 2 == 0 { &a } else { &b };
        let req = gw
            .http
            .put(format!(
                "https://{}{rg}/providers/Microsoft.Storage/storageAccounts/race{i}?api-version=2023-05-01",
                gw.addr
            ))
            .bearer_auth(&agent)
            .header("x-portcullis-wait", "0")
            .json(&json!({"location": "eastus"}));
        sent.spawn(send(req));
    }
    let (mut pending, mut capped) = (0, 0);
    while let Some(r) = sent.join_next().await {
        let (s, h, body) = r.unwrap();
        match s {
            StatusCode::FORBIDDEN => {
                assert_eq!(h["x-ms-error-code"], "ApprovalPending", "{body}");
                pending += 1;
            }
            StatusCode::TOO_MANY_REQUESTS => {
                assert_eq!(h["x-ms-error-code"], "TooManyPendingApprovals", "{body}");
                capped += 1;
            }
            other => panic!("{other}: {body}\n{}\n{}", a.log(), b.log()),
        }
    }
    assert_eq!(
        (pending, capped),
        (4, 20),
        "four pending across both replicas"
    );
    let store = portcullis::audit::store::Store::open_postgres(&pg_url(), Some(&schema.0))
        .await
        .unwrap();
    assert_eq!(
        store
            .pending_approvals(&portcullis::audit_time())
            .await
            .unwrap(),
        4
    );
    a.terminate().await;
    b.terminate().await;
}

/// Which replica a request went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Replica {
    A,
    B,
}

/// An answer a client received in full with a 2xx status: what it carried as its
/// `x-ms-client-request-id`, the gateway's request id, and whether it was sent after A
/// was killed.
#[derive(Debug)]
struct Ack {
    replica: Replica,
    marker: String,
    status: StatusCode,
    id: String,
    after_kill: bool,
}

/// Sends a request and reads its answer to the end: its status and the gateway's request
/// id when it is a 2xx; otherwise the status if an answer came in full (`None` when the
/// exchange failed: connection refused or reset, body cut off) and what went wrong.
async fn complete(
    req: reqwest::RequestBuilder,
) -> Result<(StatusCode, String), (Option<StatusCode>, String)> {
    let resp = req
        .send()
        .await
        .map_err(|e| (None, format!("send: {e:?}")))?;
    let status = resp.status();
    let id = resp
        .headers()
        .get("x-portcullis-request-id")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = resp
        .bytes()
        .await
        .map_err(|e| (None, format!("{status}, body: {e:?}")))?;
    match id {
        Some(id) if status.is_success() => Ok((status, id)),
        _ => Err((
            Some(status),
            format!(
                "{status} (request id {id:?}): {}",
                String::from_utf8_lossy(&body)
            ),
        )),
    }
}

/// `kill -9` of replica A while 16 clients keep A and B busy: every answer A gave in full
/// has its request and response records in the shared store, B keeps answering (A's
/// clients fail over to it), every answer B gave has its records, and `audit verify`
/// finds both chains intact: A's simply ends where it was killed, after its last signed
/// checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_under_load_loses_no_answered_record_and_the_other_keeps_serving() {
    use std::collections::{HashMap, HashSet};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use portcullis::audit::record::Phase;
    use portcullis::audit::store::Store;
    use reqwest::Method;

    const CLIENTS: usize = 16;
    /// Answers from A, and then from B after the kill, before each phase may end.
    const BEFORE_KILL_ON_A: usize = 100;
    const AFTER_KILL_ON_B: usize = 100;
    let started = Instant::now();
    let schema = Schema::new();
    let extra: &'static str = Box::leak(
        format!(
            // Checkpoints are signed during the load, so the kill lands after some.
            "store:\n  url: \"{}\"\n  schema: {}\naudit:\n  checkpoint_every: 1s\nlimits:\n  rate_per_principal: 0\n",
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
    let (mut a, b) = two_replicas(&dir).await;
    let instance = |state: &str| {
        std::fs::read_to_string(dir.join(state).join("instance.id"))
            .unwrap()
            .trim()
            .to_owned()
    };
    let (a_instance, b_instance) = (instance("state"), instance("state-b"));
    assert_ne!(a_instance, b_instance);
    let store = Store::open_postgres(&pg_url(), Some(&schema.0))
        .await
        .expect("PostgreSQL on 127.0.0.1:5432 (database test) is reachable");

    // The load: reads of a resource group and of a Key Vault secret, and small VM writes,
    // each with a marker of its own in `x-ms-client-request-id` (kept on request records).
    let token = sim.token("agent", crate::GATEWAY_API).unwrap();
    let rg = format!(
        "/subscriptions/{}/resourceGroups/demo-rg",
        sim.subscription_id()
    );
    let build = move |http: &reqwest::Client, gw: std::net::SocketAddr, n: usize, marker: &str| {
        let (method, path) = match n % 3 {
            0 => (Method::GET, format!("{rg}?api-version=2022-09-01")),
            1 => (
                Method::GET,
                "/keyvault/demo-kv/secrets/db-password?api-version=7.4".to_owned(),
            ),
            _ => (
                Method::PUT,
                format!("{rg}/providers/Microsoft.Compute/virtualMachines/kill9-{n}?{API}"),
            ),
        };
        let r = http
            .request(method.clone(), format!("https://{gw}{path}"))
            .bearer_auth(&token)
            .header("x-ms-client-request-id", marker);
        if method == Method::PUT {
            r.json(&json!({"location": "eastus", "tags": {"marker": marker}}))
        } else {
            r
        }
    };
    let build = Arc::new(build);
    let targets = [(a.http.clone(), a.addr), (b.http.clone(), b.addr)];

    // Warm up (tokens, keys, connections): each kind once on each replica.
    let mut acks = Vec::new();
    for (replica, (http, addr)) in [Replica::A, Replica::B].into_iter().zip(&targets) {
        for n in 0..3 {
            let marker = format!("kill9-warm-{replica:?}-{n}");
            let n = (replica as usize + 1) * 9_000_000 + n;
            let (status, id) = complete(build(http, *addr, n, &marker))
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "warm-up on {replica:?}: {e:?}\nA:\n{}\nB:\n{}",
                        a.log(),
                        b.log()
                    )
                });
            acks.push(Ack {
                replica,
                marker,
                status,
                id,
                after_kill: false,
            });
        }
    }

    // 16 clients, half on A and half on B, each sending one request after another; A's
    // fail over to B once A is gone.
    let killed = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let acked_on_a = Arc::new(AtomicUsize::new(0));
    let acked_on_b_after = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (killed, stop, build, targets) =
            (killed.clone(), stop.clone(), build.clone(), targets.clone());
        let (acked_on_a, acked_on_b_after) = (acked_on_a.clone(), acked_on_b_after.clone());
        tasks.push(tokio::spawn(async move {
            let mut on = if c % 2 == 0 { Replica::A } else { Replica::B };
            let mut acks = Vec::new();
            // Requests cut off by the kill (on A), and failures that should not be.
            let mut cut = Vec::new();
            let mut failures = Vec::new();
            for i in 0.. {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let after_kill = killed.load(Ordering::SeqCst);
                if after_kill {
                    on = Replica::B;
                }
                let marker = format!("kill9-{c}-{i}");
                let (http, addr) = &targets[on as usize];
                match complete(build(http, *addr, c * 100_000 + i, &marker)).await {
                    Ok((status, id)) => {
                        match (on, after_kill) {
                            (Replica::A, _) => acked_on_a.fetch_add(1, Ordering::SeqCst),
                            (Replica::B, true) => acked_on_b_after.fetch_add(1, Ordering::SeqCst),
                            (Replica::B, false) => 0,
                        };
                        acks.push(Ack {
                            replica: on,
                            marker,
                            status,
                            id,
                            after_kill,
                        });
                    }
                    // Flagged before the kill: a failure it caused always sees the flag.
                    Err((None, _)) if on == Replica::A && killed.load(Ordering::SeqCst) => {
                        cut.push(marker);
                    }
                    Err((_, e)) => failures.push(format!("{on:?} {marker}: {e}")),
                }
            }
            (acks, cut, failures)
        }));
    }

    // A serves for a while, and signs at least one checkpoint; then it is killed.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Past the checkpoint a writer signs at record 0 before a chain's first record.
        let signed = store
            .checkpoints(&a_instance)
            .await
            .unwrap()
            .iter()
            .filter(|c| c.seq >= 1)
            .count();
        if signed >= 1 && acked_on_a.load(Ordering::SeqCst) >= BEFORE_KILL_ON_A {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "A answered {} requests and signed {signed} checkpoints in 20 s\n{}",
            acked_on_a.load(Ordering::SeqCst),
            a.log()
        );
    }
    killed.store(true, Ordering::SeqCst);
    a.child.kill().unwrap(); // SIGKILL
    a.child.wait().unwrap();
    let killed_at = Instant::now();

    // B keeps serving, A's clients included.
    let deadline = Instant::now() + Duration::from_secs(20);
    while killed_at.elapsed() < Duration::from_secs(2)
        || acked_on_b_after.load(Ordering::SeqCst) < AFTER_KILL_ON_B
    {
        assert!(
            Instant::now() < deadline,
            "B answered {} requests in the 20 s after the kill\n{}",
            acked_on_b_after.load(Ordering::SeqCst),
            b.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let mut cut = HashSet::new();
    let mut failures = Vec::new();
    for t in tasks {
        let (got, c, f) = tokio::time::timeout(Duration::from_secs(30), t)
            .await
            .expect("the clients stop")
            .unwrap();
        acks.extend(got);
        cut.extend(c);
        failures.extend(f);
    }
    assert!(
        failures.is_empty(),
        "{} requests failed other than on A at the kill: {:?}\nA:\n{}\nB:\n{}",
        failures.len(),
        &failures[..failures.len().min(5)],
        a.log(),
        b.log()
    );
    assert!(
        cut.len() <= CLIENTS / 2,
        "at most one request per client of A is cut off: {}",
        cut.len()
    );
    let count = |r: Replica, after: bool| {
        acks.iter()
            .filter(|x| x.replica == r && x.after_kill == after)
            .count()
    };
    assert_eq!(count(Replica::A, true), 0, "A answered after its kill");
    let (on_a, on_b_before, on_b_after) = (
        count(Replica::A, false),
        count(Replica::B, false),
        count(Replica::B, true),
    );
    assert!(on_b_after >= AFTER_KILL_ON_B, "{on_b_after}");

    // Read back with B still running: every answer received in full has its request record
    // (carrying its marker, under the id the client was given) and then its response record
    // with the status the client got, in the chain of the replica that gave it.
    let mut chains = HashMap::new();
    for (replica, instance) in [(Replica::A, &a_instance), (Replica::B, &b_instance)] {
        chains.insert(replica, store.chain(instance).await.unwrap());
    }
    assert_eq!(
        store.instances().await.unwrap().len(),
        2,
        "one chain per replica"
    );
    struct Seen {
        request: Option<(i64, String)>,
        response: Option<(i64, Option<u16>)>,
    }
    let mut by_marker: HashMap<(Replica, String), Seen> = HashMap::new();
    for (replica, links) in &chains {
        let mut marker_of = HashMap::new();
        for l in links.iter().filter(|l| l.record.phase == Phase::Request) {
            let marker = l
                .record
                .headers
                .iter()
                .find(|(k, _)| k == "x-ms-client-request-id")
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("a request record without its marker: {}", l.text));
            marker_of.insert(l.record.request_id.clone(), marker.clone());
            let seen = by_marker.entry((*replica, marker)).or_insert(Seen {
                request: None,
                response: None,
            });
            assert!(seen.request.is_none(), "a marker recorded twice");
            seen.request = Some((l.seq, l.record.request_id.clone()));
        }
        for l in links.iter().filter(|l| l.record.phase != Phase::Request) {
            assert_eq!(l.record.phase, Phase::Response, "{}", l.text);
            let marker = &marker_of[&l.record.request_id];
            let seen = by_marker.get_mut(&(*replica, marker.clone())).unwrap();
            assert!(seen.response.is_none(), "two answers recorded for {marker}");
            seen.response = Some((l.seq, l.record.status));
        }
    }
    let lost: Vec<&Ack> = acks
        .iter()
        .filter(|x| {
            !matches!(
                by_marker.get(&(x.replica, x.marker.clone())),
                Some(Seen {
                    request: Some((asked, id)),
                    response: Some((answered, status)),
                }) if *id == x.id && answered > asked && *status == Some(x.status.as_u16())
            )
        })
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged answers have no request and response record: {:?}",
        lost.len(),
        acks.len(),
        &lost[..lost.len().min(5)]
    );
    // Nothing else: B's chain holds exactly what B answered; A's, what it answered and at
    // most the requests the kill cut off.
    let acked: HashSet<(Replica, &str)> = acks
        .iter()
        .map(|x| (x.replica, x.marker.as_str()))
        .collect();
    let (mut unanswered_on_a, mut recorded_not_received) = (0, 0);
    for ((replica, marker), seen) in &by_marker {
        if acked.contains(&(*replica, marker.as_str())) {
            continue;
        }
        assert_eq!(*replica, Replica::A, "B recorded {marker}, never answered");
        assert!(
            cut.contains(marker),
            "A recorded {marker}, neither answered nor cut off"
        );
        // Its answer's record may be there: it is committed before the answer's last frame
        // leaves, and the kill can fall in between.
        if seen.response.is_some() {
            recorded_not_received += 1;
        } else {
            unanswered_on_a += 1;
        }
    }

    // B stops gracefully, sealing its chain; A's chain ends where it was killed, after its
    // last signed checkpoint. Both verify.
    let stopped = b.terminate().await;
    assert!(stopped.success(), "{stopped}");
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
    let mut sealed = HashMap::new();
    for (replica, instance) in [(Replica::A, &a_instance), (Replica::B, &b_instance)] {
        let len = chains[&replica].len() as i64;
        let checkpoints = store.checkpoints(instance).await.unwrap();
        let last = checkpoints.last().map_or(0, |c| c.seq);
        let line = format!(
            "ok: {instance}: {len} records, {} signed checkpoints, chain intact",
            checkpoints.len()
        );
        assert!(
            text.lines().any(|l| l == line),
            "{replica:?}: {line}\n{text}"
        );
        sealed.insert(replica, (len, checkpoints.len(), last));
    }
    assert!(!text.contains("no checkpoint yet"), "{text}");
    let (a_len, _, a_last) = sealed[&Replica::A];
    assert!(a_last >= 1 && a_last <= a_len, "{:?}", sealed[&Replica::A]);
    let (b_len, _, b_last) = sealed[&Replica::B];
    assert_eq!(b_last, b_len, "the graceful stop sealed B's chain");
    eprintln!(
        "kill -9 of A: A answered {on_a} in full before the kill ({} cut off: \
         {unanswered_on_a} with a request record only, {recorded_not_received} with their answer's \
         record too); B answered {on_b_before} before and {on_b_after} after; \
         chains (records, checkpoints, last sealed): A {:?}, B {:?}; {:?}\n{}",
        cut.len(),
        sealed[&Replica::A],
        sealed[&Replica::B],
        started.elapsed(),
        text.trim()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Replicas configured with the same `keys:` follow each other's rewritten poll URLs and
/// mask a secret with the same placeholder; a replica with keys of its own cannot (which
/// is why deployments must share them).
/// `keys:` naming the files [`write_shared_keys`] writes.
pub(crate) const SHARED_KEYS: &str =
    "keys:\n  url_binding: {file: url-binding.b64}\n  mask: {file: mask.b64}\n";

/// Fresh random keys for [`SHARED_KEYS`] in `dir`.
pub(crate) fn write_shared_keys(dir: &std::path::Path) {
    use base64::Engine;
    for name in ["url-binding.b64", "mask.b64"] {
        let key: [u8; 32] = rand::random();
        std::fs::write(
            dir.join(name),
            base64::engine::general_purpose::STANDARD.encode(key),
        )
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_sharing_keys_honour_each_others_links_and_placeholders() {
    let schema = Schema::new();
    let keys = SHARED_KEYS;
    let extra: &'static str = Box::leak(
        format!(
            "store:\n  url: \"{}\"\n  schema: {}\n{keys}",
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
    write_shared_keys(&dir);
    let config = std::fs::read_to_string(dir.join("portcullis.yaml")).unwrap();
    let other = |state: &str, shared: bool| {
        let c = config.replace("state_dir: state\n", &format!("state_dir: {state}\n"));
        if shared { c } else { c.replace(keys, "") }
    };
    std::fs::write(dir.join("portcullis-b.yaml"), other("state-b", true)).unwrap();
    std::fs::write(dir.join("portcullis-c.yaml"), other("state-c", false)).unwrap();
    let a = Gateway::spawn_config(&dir, "portcullis.yaml", "a.log").await;
    let b = Gateway::spawn_config(&dir, "portcullis-b.yaml", "b.log").await;
    let c = Gateway::spawn_config(&dir, "portcullis-c.yaml", "c.log").await;
    let token = sim.token("agent", GATEWAY_API).unwrap();
    let get = async |gw: &Gateway, url: &str| send(gw.http.get(url).bearer_auth(&token)).await;

    // A VM create on A: its poll URL (outside demo-rg, so allowed only as a bound
    // continuation) is followed on B and on C.
    let vm = format!(
        "https://{}/subscriptions/{}/resourceGroups/demo-rg/providers/Microsoft.Compute/virtualMachines/shared-keys-vm?{API}",
        a.addr,
        sim.subscription_id()
    );
    let (s, h, created) = send(
        a.http
            .put(&vm)
            .bearer_auth(&token)
            .json(&json!({"location": "eastus", "properties": {"hardwareProfile": {"vmSize": "Standard_B1s"}}})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let poll = h["azure-asyncoperation"].to_str().unwrap().to_owned();
    assert!(poll.contains("portcullis-binding="), "{poll}");
    let on = |gw: &Gateway| poll.replace(&a.addr.to_string(), &gw.addr.to_string());
    let (s, _, body) = get(&b, &on(&b)).await;
    assert_eq!(s, StatusCode::OK, "B honours A's poll URL: {body}");
    assert!(body["status"].is_string(), "{body}");
    let (s, _, body) = get(&c, &on(&c)).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "C has a key of its own: {body}");

    let secret = |gw: &Gateway| {
        format!(
            "https://{}/keyvault/demo-kv/secrets/db-password?api-version=7.4",
            gw.addr
        )
    };
    let mut placeholders = Vec::new();
    for gw in [&a, &b, &c] {
        let (s, _, body) = get(gw, &secret(gw)).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        let v = body["value"].as_str().unwrap().to_owned();
        assert!(v.starts_with("[masked:"), "{v}");
        placeholders.push(v);
    }
    assert_eq!(placeholders[0], placeholders[1], "A and B mask alike");
    assert_ne!(
        placeholders[0], placeholders[2],
        "C keys its placeholders itself"
    );
}
