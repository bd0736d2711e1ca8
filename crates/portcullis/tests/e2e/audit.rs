//! Recording: every request is recorded (forwarded ones before they are forwarded), no clear
//! secret reaches the store, the chain verifies, and tampering is named.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::{API, Env, verify_cli};

/// A file's bytes, read by another process: opening and closing a SQLite file in a process
/// that holds connections to it drops that process's POSIX locks (a known SQLite hazard).
pub fn read_elsewhere(path: &std::path::Path) -> Vec<u8> {
    std::process::Command::new("cat")
        .arg(path)
        .output()
        .map(|o| o.stdout)
        .unwrap_or_default()
}

#[tokio::test]
async fn every_request_is_recorded_without_secrets_and_tampering_is_named() {
    let env = Env::start().await;
    let password = "Adm1n-P@ssw0rd-never-stored";
    let vm = format!(
        "{}/providers/Microsoft.Compute/virtualMachines/audited?{API}",
        env.rg()
    );
    let (s, _, _) = env.agent(Method::PUT, &vm, Some(json!({"location": "eastus", "properties": {"osProfile": {"adminUsername": "u", "adminPassword": password}}}))).await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _, secret) = env
        .agent(
            Method::GET,
            "/keyvault/demo-kv/secrets/db-password?api-version=7.4",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{secret}");
    let (s, _, _) = env.agent(Method::DELETE, &vm, None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _, _) = env.call(None, Method::GET, &vm, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    let state = env.dir.join("state");
    let db = read_elsewhere(&state.join("audit.db"));
    let wal = read_elsewhere(&state.join("audit.db-wal"));
    for planted in [
        password.to_owned(),
        env.sim.secret_value("demo-kv", "db-password").unwrap(),
    ] {
        let found = |hay: &[u8]| hay.windows(planted.len()).any(|w| w == planted.as_bytes());
        assert!(
            !found(&db) && !found(&wal),
            "a clear secret reached the audit store"
        );
    }
    let store = portcullis::audit::store::Store::open(&state.join("audit.db"))
        .await
        .unwrap();
    let instance = store.instances().await.unwrap().pop().unwrap();
    let chain = store.chain(&instance).await.unwrap();
    let phases: Vec<_> = chain
        .iter()
        .map(|l| (l.record.phase, l.record.status))
        .collect();
    use portcullis::audit::record::Phase::*;
    assert!(
        phases.contains(&(Request, None)) && phases.contains(&(Response, Some(201))),
        "{phases:?}"
    );
    assert!(
        phases.contains(&(Refused, Some(403))) && phases.contains(&(Refused, Some(401))),
        "{phases:?}"
    );
    let put = chain
        .iter()
        .find(|l| l.record.method == "PUT" && l.record.phase == Request)
        .unwrap();
    assert!(
        put.record
            .body
            .as_deref()
            .unwrap()
            .contains("[masked:vm-admin-password:"),
        "{:?}",
        put.record.body
    );
    let (ok, out) = verify_cli(&state);
    assert!(ok, "{out}");

    // The store refuses edits; someone who removes the guard and edits a record is caught.
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", state.join("audit.db").display()))
        .await
        .unwrap();
    assert!(
        sqlx::query("UPDATE audit_records SET record = '{}' WHERE seq = 1")
            .execute(&pool)
            .await
            .is_err(),
        "append-only"
    );
    sqlx::query("DROP TRIGGER audit_records_no_update")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE audit_records SET record = replace(record, 'PUT', 'GET') WHERE seq = 1")
        .execute(&pool)
        .await
        .unwrap();
    let (ok, out) = verify_cli(&state);
    assert!(!ok && out.contains("record 1 was modified"), "{out}");
    sqlx::query("DROP TRIGGER audit_records_no_delete")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM audit_records WHERE seq = 1")
        .execute(&pool)
        .await
        .unwrap();
    let (ok, out) = verify_cli(&state);
    assert!(!ok && out.contains("record 1 is missing"), "{out}");
}

#[tokio::test]
async fn when_the_store_cannot_commit_nothing_is_forwarded() {
    let env = Env::start().await;
    let rg = format!("{}?api-version=2022-09-01", env.rg());
    let (s, _, _) = env.agent(Method::GET, &rg, None).await;
    assert_eq!(s, StatusCode::OK);
    // Break the store under the running gateway.
    let db = env.dir.join("state/audit.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query("ALTER TABLE audit_records RENAME TO audit_records_gone")
        .execute(&pool)
        .await
        .unwrap();
    let since = env.sim.last_call_seq();
    let (s, h, body) = env.agent(Method::GET, &rg, None).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(h["x-ms-error-code"], "AuditUnavailable");
    assert!(
        env.arm_calls(since).is_empty(),
        "nothing was forwarded unrecorded"
    );
    // Back again: service resumes by itself.
    sqlx::query("ALTER TABLE audit_records_gone RENAME TO audit_records")
        .execute(&pool)
        .await
        .unwrap();
    let (s, _, _) = env.agent(Method::GET, &rg, None).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn a_scripted_session_replays_in_order() {
    let env = Env::start().await;
    let token = env.token("agent");
    let go = |method: reqwest::Method, path: String, auth: bool| {
        let mut r = env
            .http
            .request(method, env.url(&path))
            .header("x-portcullis-session", "review-42");
        if auth {
            r = r.bearer_auth(&token);
        }
        crate::send(r)
    };
    let vm = format!(
        "{}/providers/Microsoft.Compute/virtualMachines/vm1?{API}",
        env.rg()
    );
    assert_eq!(go(Method::GET, vm.clone(), true).await.0, StatusCode::OK);
    assert_eq!(
        go(
            Method::GET,
            "/keyvault/demo-kv/secrets/db-password?api-version=7.4".into(),
            true
        )
        .await
        .0,
        StatusCode::OK
    );
    assert_eq!(
        go(Method::DELETE, vm.clone(), true).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        go(
            Method::GET,
            format!(
                "{}/providers/Microsoft.Compute/virtualMachines/vm1",
                env.rg()
            ),
            true
        )
        .await
        .0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        go(Method::GET, vm.clone(), false).await.0,
        StatusCode::UNAUTHORIZED
    );
    // A path the gateway will not read at all (an encoded slash) is refused and recorded too.
    assert_eq!(
        go(
            Method::GET,
            format!("{}%2F..%2Fother-rg?{API}", env.rg()),
            true
        )
        .await
        .0,
        StatusCode::BAD_REQUEST
    );

    let state = env.dir.join("state");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(args)
            .arg("--state-dir")
            .arg(&state)
            .env("RUST_BACKTRACE", "0")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let list = run(&["sessions", "list"]);
    assert!(list.contains("review-42"), "{list}");
    let replay = run(&["sessions", "replay", "review-42"]);
    let mut lines: Vec<&str> = replay
        .lines()
        .filter(|l| !l.trim_start().starts_with("reason:"))
        .collect();
    assert_eq!(
        lines.pop(),
        Some("4 requests: 2 allowed (0 after approval), 0 held, 2 refused"),
        "{replay}"
    );
    let kinds: Vec<&str> = lines
        .iter()
        .map(|l| {
            if l.contains("→ sent") {
                "sent"
            } else if l.contains("← answer") {
                "answer"
            } else {
                "refused"
            }
        })
        .collect();
    // What was refused before the gateway knew who sent it (no token; a path it does not
    // route) is not in the named session: a name is its principal's (audit/session.rs).
    assert_eq!(
        kinds,
        ["sent", "answer", "sent", "answer", "refused", "refused"],
        "{replay}"
    );
    assert!(
        lines[4].contains("DELETE") && lines[4].contains("403"),
        "{replay}"
    );
    assert!(lines[5].contains("400"), "{replay}");
    assert!(!replay.contains(&env.sim.secret_value("demo-kv", "db-password").unwrap()));
    // Those are recorded all the same, in their token's session.
    let all = env.audit_records().await;
    for (status, part) in [(401, "virtualMachines/vm1"), (400, "%2F..%2Fother-rg")] {
        let r = all
            .iter()
            .find(|r| r.status == Some(status) && r.url.contains(part))
            .unwrap_or_else(|| panic!("no {status} record for {part}"));
        assert!(!r.session.starts_with("review-42"), "{r:?}");
    }
}

/// Runs the CLI; returns (success, stdout + stderr).
fn cli(args: &[&str], more: &[&std::ffi::OsStr]) -> (bool, String) {
    crate::outcome(crate::portcullis_cli().args(args).args(more))
}

async fn records_of(state: &std::path::Path) -> Vec<portcullis::audit::chain::Link> {
    let store = portcullis::audit::store::Store::open(&state.join("audit.db"))
        .await
        .unwrap();
    let mut all = Vec::new();
    for i in store.instances().await.unwrap() {
        all.extend(store.chain(&i).await.unwrap());
    }
    all
}

#[tokio::test]
async fn answers_are_recorded_masked_with_headers_redacted_and_digests() {
    use sha2::Digest;
    let env = Env::start().await;
    let secret = env.sim.secret_value("demo-kv", "db-password").unwrap();
    let resp = env
        .http
        .get(env.url("/keyvault/demo-kv/secrets/db-password?api-version=7.4"))
        .bearer_auth(env.token("agent"))
        .header("x-portcullis-session", "answers")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let id = resp.headers()["x-portcullis-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let got = resp.bytes().await.unwrap();
    let all = records_of(&env.dir.join("state")).await;
    let mine: Vec<_> = all.iter().filter(|l| l.record.request_id == id).collect();
    assert_eq!(mine.len(), 2, "a request record and an answer record");
    let (req, ans) = (&mine[0].record, &mine[1].record);
    let header = |h: &[(String, String)], name: &str| {
        h.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    };
    assert_eq!(
        header(&req.headers, "authorization").as_deref(),
        Some("[redacted]")
    );
    assert_eq!(ans.status, Some(200));
    assert!(header(&ans.headers, "content-type").is_some());
    let body = ans.body.as_deref().unwrap();
    assert!(body.contains("[masked:"), "{body}");
    assert!(!body.contains(&secret));
    // The digest names exactly what the agent got.
    assert_eq!(
        ans.body_digest.as_deref().unwrap(),
        portcullis::audit::chain::hex(&sha2::Sha256::digest(&got))
    );
    assert_eq!(ans.body_bytes, Some(got.len() as u64));
    assert!(ans.upstream_ms.is_some() && ans.latency_ms.is_some());
}

/// A copy of the audit store to tamper with (`VACUUM INTO` folds the WAL in).
async fn copy_store(state: &std::path::Path, name: &str) -> (std::path::PathBuf, sqlx::SqlitePool) {
    let src = sqlx::SqlitePool::connect(&format!("sqlite://{}", state.join("audit.db").display()))
        .await
        .unwrap();
    let dst = state.join(format!("{name}.db"));
    sqlx::query(&format!("VACUUM INTO '{}'", dst.display()))
        .execute(&src)
        .await
        .unwrap();
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", dst.display()))
        .await
        .unwrap();
    for t in [
        "audit_records_no_update",
        "audit_records_no_delete",
        "audit_checkpoints_no_update",
    ] {
        sqlx::query(&format!("DROP TRIGGER {t}"))
            .execute(&pool)
            .await
            .unwrap();
    }
    (dst, pool)
}

#[tokio::test]
async fn signed_checkpoints_catch_swaps_truncation_and_rewritten_chains() {
    let env = Env::start().await;
    let rg = format!("{}?api-version=2022-09-01", env.rg());
    for _ in 0..4 {
        assert_eq!(env.agent(Method::GET, &rg, None).await.0, StatusCode::OK);
    }
    env.gw.recorder.checkpoint().await.unwrap();
    let state = env.dir.join("state");
    let public = state.join("audit-signing.key.pub");
    let (ok, out) = cli(&["audit", "verify", "--state-dir"], &[state.as_os_str()]);
    // Two: the one the writer signs before a chain's first record, and this one.
    assert!(
        ok && out.contains("8 records, 2 signed checkpoints"),
        "{out}"
    );
    let verify = |db: &std::path::Path| {
        cli(
            &["audit", "verify", "--db"],
            &[db.as_os_str(), "--public-key".as_ref(), public.as_os_str()],
        )
    };

    // Two records swapped.
    let (db, pool) = copy_store(&state, "swapped").await;
    for (from, to) in [(3, -1), (4, 3), (-1, 4)] {
        sqlx::query("UPDATE audit_records SET seq = ? WHERE seq = ?")
            .bind(to)
            .bind(from)
            .execute(&pool)
            .await
            .unwrap();
    }
    let (ok, out) = verify(&db);
    assert!(
        !ok && out.contains("record 3 does not follow record 2"),
        "{out}"
    );

    // The last records cut off: the checkpoint still names them.
    let (db, pool) = copy_store(&state, "truncated").await;
    sqlx::query("DELETE FROM audit_records WHERE seq > 5")
        .execute(&pool)
        .await
        .unwrap();
    let (ok, out) = verify(&db);
    assert!(
        !ok && out.contains("records 6..=8 are missing: the chain was truncated"),
        "{out}"
    );

    // A record edited and every later hash recomputed: the chain holds, the signature does not.
    let (db, pool) = copy_store(&state, "rewritten").await;
    let rows: Vec<(String, i64, String)> =
        sqlx::query_as("SELECT instance, seq, record FROM audit_records ORDER BY seq")
            .fetch_all(&pool)
            .await
            .unwrap();
    let mut prev = portcullis::audit::chain::GENESIS.to_owned();
    for (instance, seq, text) in rows {
        let text = if seq == 2 {
            text.replace("\"GET\"", "\"HEAD\"")
        } else {
            text
        };
        let h = portcullis::audit::chain::hash(&instance, seq, &prev, &text);
        sqlx::query("UPDATE audit_records SET record = ?, prev_hash = ?, hash = ? WHERE seq = ?")
            .bind(&text)
            .bind(&prev)
            .bind(&h)
            .bind(seq)
            .execute(&pool)
            .await
            .unwrap();
        prev = h;
    }
    let (ok, out) = verify(&db);
    assert!(!ok && out.contains("the chain was rewritten"), "{out}");

    // A checkpoint edited to match: its signature breaks.
    sqlx::query("UPDATE audit_checkpoints SET hash = ?")
        .bind(&prev)
        .execute(&pool)
        .await
        .unwrap();
    let (ok, out) = verify(&db);
    assert!(!ok && out.contains("the signature does not match"), "{out}");

    // And a checkpoint signed by someone else's key is not trusted.
    let stranger = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let (ok, out) = cli(
        &["audit", "verify", "--state-dir"],
        &[
            state.as_os_str(),
            "--public-key".as_ref(),
            portcullis::audit::chain::hex(stranger.verifying_key().as_bytes()).as_ref(),
        ],
    );
    assert!(!ok && out.contains("not trusted"), "{out}");
}

#[tokio::test]
async fn retention_removes_sealed_segments_and_what_remains_verifies() {
    let env = Env::with(crate::Setup {
        extra: "audit:\n  checkpoint_every: 1s\n  retention: 1s\n",
        ..Default::default()
    })
    .await;
    let rg = format!("{}?api-version=2022-09-01", env.rg());
    for _ in 0..3 {
        assert_eq!(env.agent(Method::GET, &rg, None).await.0, StatusCode::OK);
    }
    let state = env.dir.join("state");
    let store = portcullis::audit::store::Store::open(&state.join("audit.db"))
        .await
        .unwrap();
    let instance = store.instances().await.unwrap().pop().unwrap();
    // The writer checkpoints every second and removes what is older than a second, up to a
    // checkpoint; wait (bounded) for it.
    let mut pruned = None;
    for _ in 0..100 {
        pruned = store.pruned(&instance).await.unwrap();
        if pruned.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let pruned = pruned.expect("retention removed a segment within 10 s");
    assert!(pruned.through_seq >= 6, "{pruned:?}");
    assert_eq!(env.agent(Method::GET, &rg, None).await.0, StatusCode::OK);
    let chain = store.chain(&instance).await.unwrap();
    assert!(chain.first().unwrap().seq > pruned.through_seq);
    let (ok, out) = cli(&["audit", "verify", "--state-dir"], &[state.as_os_str()]);
    assert!(ok && out.contains("removed by retention (sealed)"), "{out}");
    // Records no mark covers can still not be deleted.
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", state.join("audit.db").display()))
        .await
        .unwrap();
    let last = chain.last().unwrap().seq;
    assert!(
        sqlx::query("DELETE FROM audit_records WHERE seq = ?")
            .bind(last)
            .execute(&pool)
            .await
            .is_err()
    );
    // Nor can a retention mark be taken back.
    assert!(
        sqlx::query("DELETE FROM audit_pruned")
            .execute(&pool)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn export_streams_every_record_in_time_order() {
    let env = Env::start().await;
    let rg = format!("{}?api-version=2022-09-01", env.rg());
    assert_eq!(env.agent(Method::GET, &rg, None).await.0, StatusCode::OK);
    let (s, _, _) = env
        .agent(
            Method::GET,
            "/keyvault/demo-kv/secrets/db-password?api-version=7.4",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        env.call(None, Method::GET, &rg, None).await.0,
        StatusCode::UNAUTHORIZED
    );
    let state = env.dir.join("state");
    let file = env.dir.join("export.jsonl");
    let (ok, out) = cli(
        &[
            "audit",
            "export",
            "--since",
            "1h",
            "--format",
            "jsonl",
            "--state-dir",
        ],
        &[state.as_os_str(), "--output".as_ref(), file.as_os_str()],
    );
    assert!(ok && out.contains("exported 5 records"), "{out}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains(&env.sim.secret_value("demo-kv", "db-password").unwrap()));
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    let times: Vec<&str> = lines
        .iter()
        .map(|l| l["record"]["time"].as_str().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    assert!(
        lines
            .iter()
            .all(|l| l["hash"].as_str().unwrap().len() == 64)
    );
    // --until before anything happened: nothing.
    let (ok, out) = cli(
        &[
            "audit",
            "export",
            "--since",
            "2h",
            "--until",
            "1h",
            "--state-dir",
        ],
        &[state.as_os_str()],
    );
    assert!(ok && out.contains("exported 0 records"), "{out}");
    let (ok, out) = cli(
        &["audit", "export", "--since", "yesterday-ish", "--state-dir"],
        &[state.as_os_str()],
    );
    assert!(!ok && out.contains("is not a time"), "{out}");
}

#[tokio::test]
async fn the_admin_api_shows_sessions_to_audit_readers_only() {
    let alice = azure_sim::config::derived_id("principal", "alice");
    let extra: &'static str =
        Box::leak(format!("audit:\n  readers: [\"user:{alice}\"]\n").into_boxed_str());
    let env = Env::with(crate::Setup {
        extra,
        ..Default::default()
    })
    .await;
    let rg = format!("{}?api-version=2022-09-01", env.rg());
    for _ in 0..3 {
        let r = env
            .http
            .get(env.url(&rg))
            .bearer_auth(env.token("agent"))
            .header("x-portcullis-session", "api-review");
        assert_eq!(crate::send(r).await.0, StatusCode::OK);
    }
    let admin = |path: &str| format!("https://{}{path}", env.gw.admin_addr);
    let as_who = |who: Option<&str>, path: &str| {
        let mut r = env.http.get(admin(path));
        if let Some(w) = who {
            r = r.bearer_auth(env.token(w));
        }
        crate::send(r)
    };
    let (s, _, body) = as_who(None, "/api/sessions").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{body}");
    let (s, _, body) = as_who(Some("agent"), "/api/sessions").await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "AuthorizationFailed");
    let (s, _, body) = as_who(Some("alice"), "/api/sessions?since=1h").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let session = body["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| {
            v["id"]
                .as_str()
                .is_some_and(|id| id.starts_with("api-review@"))
        })
        .unwrap();
    assert_eq!(session["requests"], 3);
    // Asked for by the name the agent gave it.
    let (s, _, body) = as_who(Some("alice"), "/api/sessions/api-review").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body["id"], session["id"]);
    assert_eq!(body["records"].as_array().unwrap().len(), 6);
    let (s, _, _) = as_who(Some("alice"), "/api/sessions/nope").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Records, paged.
    let mut next = Some("/api/records?since=1h&limit=4".to_owned());
    let mut seen = 0;
    while let Some(path) = next.take() {
        let (s, _, body) = as_who(Some("alice"), &path).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        seen += body["value"].as_array().unwrap().len();
        next = body["nextLink"].as_str().map(str::to_owned);
        assert!(seen <= 100, "paging must end");
    }
    assert_eq!(seen, 6);
    let (s, _, body) = as_who(Some("alice"), "/api/records?since=whenever").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn fail_open_forwards_unrecorded_only_when_chosen() {
    let env = Env::with(crate::Setup {
        extra: "audit:\n  on_failure: fail_open\n",
        ..Default::default()
    })
    .await;
    let rg = format!("{}?api-version=2022-09-01", env.rg());
    let db = env.dir.join("state/audit.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query("ALTER TABLE audit_records RENAME TO audit_records_gone")
        .execute(&pool)
        .await
        .unwrap();
    let since = env.sim.last_call_seq();
    let (s, _, body) = env.agent(Method::GET, &rg, None).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert!(
        !env.arm_calls(since).is_empty(),
        "forwarded although unrecorded, as configured"
    );
}

/// Agent B naming agent A's session (`x-portcullis-session`) wrote into it (issue 19,
/// finding 9a). A named session is its principal's own: B lands in a session of its own,
/// whether it names A's session by the name A chose or by its whole id, and so does a
/// request refused before it is authenticated; A's replay holds only A's requests.
#[tokio::test]
async fn another_agent_naming_a_session_does_not_write_into_it() {
    let alice = azure_sim::config::derived_id("principal", "alice");
    let a_oid = azure_sim::config::derived_id("principal", "agent").to_string();
    let b_oid = azure_sim::config::derived_id("principal", "overage-agent").to_string();
    let extra = crate::leak(format!("audit:\n  readers: [\"user:{alice}\"]\n"));
    let env = Env::with(crate::Setup {
        extra,
        ..Default::default()
    })
    .await;
    let rg = format!("{}?api-version=2022-09-01", env.rg());
    let get = |token: Option<String>, session: &str| {
        let mut r = env
            .http
            .get(env.url(&rg))
            .header("x-portcullis-session", session);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        crate::send(r)
    };
    // A works in its session.
    assert_eq!(
        get(Some(env.token("agent")), "incident-7").await.0,
        StatusCode::OK
    );
    let a_session = format!("incident-7@{a_oid}");
    // B names it, by name and by its whole id; someone without a valid token names it too.
    assert_eq!(
        get(Some(env.token("overage-agent")), "incident-7").await.0,
        StatusCode::OK
    );
    assert_eq!(
        get(Some(env.token("overage-agent")), &a_session).await.0,
        StatusCode::OK
    );
    assert_eq!(
        get(Some("not-a-token".into()), &a_session).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(get(None, &a_session).await.0, StatusCode::UNAUTHORIZED);

    let admin = |path: &str| {
        crate::send(
            env.http
                .get(format!("https://{}{path}", env.gw.admin_addr))
                .bearer_auth(env.token("alice")),
        )
    };
    // A reviewer finds A's session among A's and replays it: only A is in it.
    let (s, _, body) = admin(&format!("/api/sessions?since=1h&principal={a_oid}")).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let found = body["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_owned())
        .find(|id| id.starts_with("incident-7"))
        .unwrap_or_else(|| panic!("A's session is listed: {body}"));
    let (s, _, body) = admin(&format!("/api/sessions/{found}")).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let records = body["records"].as_array().unwrap();
    for r in records {
        assert_eq!(
            r["record"]["principal"], a_oid,
            "only A in A's session: {r}"
        );
    }
    assert_eq!(records.len(), 2, "A's request and its answer only: {body}");
    assert_eq!(found, a_session, "A's name, then A's object id");
    // B's went to B's own sessions.
    let (s, _, body) = admin("/api/sessions?since=1h").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let ids: Vec<&str> = body["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&format!("incident-7@{b_oid}").as_str()),
        "{ids:?}"
    );
    assert!(
        ids.contains(&format!("incident-7@{a_oid}@{b_oid}").as_str()),
        "{ids:?}"
    );
    // Two principals used the name: asking by the name alone says which sessions there are.
    let (s, _, body) = admin("/api/sessions/incident-7").await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "AmbiguousSession");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&a_session) && message.contains(&b_oid),
        "{message}"
    );
}
