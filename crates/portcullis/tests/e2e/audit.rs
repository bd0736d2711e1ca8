//! Recording: every request is recorded (forwarded ones before they are forwarded), no clear
//! secret reaches the store, the chain verifies, and tampering is named.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::{API, Env};

fn verify_cli(state: &std::path::Path) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["audit", "verify", "--state-dir"])
        .arg(state)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
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
    let db = std::fs::read(state.join("audit.db")).unwrap();
    let wal = std::fs::read(state.join("audit.db-wal")).unwrap_or_default();
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
        env.sim
            .calls_since(since)
            .iter()
            .all(|c| c.service != azure_sim::Service::Arm),
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
    let lines: Vec<&str> = replay
        .lines()
        .filter(|l| !l.trim_start().starts_with("reason:"))
        .collect();
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
    assert_eq!(
        kinds,
        [
            "sent", "answer", "sent", "answer", "refused", "refused", "refused"
        ],
        "{replay}"
    );
    assert!(
        lines[4].contains("DELETE") && lines[4].contains("403"),
        "{replay}"
    );
    assert!(
        lines[5].contains("400") && lines[6].contains("401"),
        "{replay}"
    );
    assert!(!replay.contains(&env.sim.secret_value("demo-kv", "db-password").unwrap()));
}
