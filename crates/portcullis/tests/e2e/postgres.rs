//! The gateway on PostgreSQL: it serves, holds and releases approvals, and fails closed
//! while the database is unreachable (a TCP proxy in front of it is cut), then resumes by
//! itself; `/readyz` follows the store.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;

use crate::store::{Schema, pg_url};
use crate::{Env, Setup, send};

/// A TCP proxy to PostgreSQL that the test can cut and restore.
struct Proxy {
    port: u16,
    up: Arc<std::sync::atomic::AtomicBool>,
    conns: Arc<Mutex<tokio::task::JoinSet<()>>>,
}

impl Proxy {
    async fn start() -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let conns = Arc::new(Mutex::new(tokio::task::JoinSet::new()));
        let (up2, conns2) = (up.clone(), conns.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if !up2.load(std::sync::atomic::Ordering::SeqCst) {
                    continue; // dropped: the connection is refused
                }
                conns2.lock().await.spawn(async move {
                    if let Ok(mut server) = TcpStream::connect("127.0.0.1:5432").await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Proxy { port, up, conns }
    }

    /// Cuts every connection and refuses new ones.
    async fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        self.conns.lock().await.abort_all();
    }

    fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_the_gateway_holds_and_releases_and_fails_closed_while_the_database_is_away() {
    let proxy = Proxy::start().await;
    let schema = Schema::new();
    let url = pg_url().replace("127.0.0.1:5432", &format!("127.0.0.1:{}", proxy.port));
    let extra: &'static str = Box::leak(
        format!(
            "store:\n  url: \"{url}\"\n  schema: {}\napprovals:\n  hold: 30s\n",
            schema.0
        )
        .into_boxed_str(),
    );
    let env = Env::with(Setup {
        extra,
        ..Default::default()
    })
    .await;
    let rg = format!("{}?api-version=2022-09-01", env.rg());
    let ready = || {
        send(
            env.http
                .get(format!("https://{}/readyz", env.gw.admin_addr)),
        )
    };
    let (s, _, body) = ready().await;
    assert_eq!(
        (s, body["store"].as_str()),
        (StatusCode::OK, Some("postgres")),
        "{body}"
    );
    assert_eq!(env.agent(Method::GET, &rg, None).await.0, StatusCode::OK);

    // The database goes away: nothing is forwarded unrecorded, and the gateway says so.
    proxy.cut().await;
    let since = env.sim.last_call_seq();
    let (s, h, body) = env.agent(Method::GET, &rg, None).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(h["x-ms-error-code"], "AuditUnavailable");
    assert!(
        env.arm_calls(since).is_empty(),
        "nothing reached Azure while the store was down"
    );
    assert_eq!(ready().await.0, StatusCode::SERVICE_UNAVAILABLE);

    // Back: service resumes by itself.
    proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if env.agent(Method::GET, &rg, None).await.0 == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "the gateway did not recover");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(ready().await.0, StatusCode::OK);

    // A held request, approved through the admin API, goes through once.
    let sa = format!(
        "{}/providers/Microsoft.Storage/storageAccounts/pgheld?api-version=2023-05-01",
        env.rg()
    );
    let put = || {
        env.http
            .put(env.url(&sa))
            .bearer_auth(env.token("agent"))
            .json(&json!({"location": "eastus"}))
    };
    let (s, h, body) = send(put().header("x-portcullis-wait", "0")).await;
    assert_eq!(h["x-ms-error-code"], "ApprovalPending", "{s} {body}");
    let id = h["x-portcullis-approval"].to_str().unwrap().to_owned();
    let (s, _, body) = send(
        env.http
            .post(format!(
                "https://{}/api/approvals/{id}/approve",
                env.gw.admin_addr
            ))
            .bearer_auth(env.token("alice"))
            .json(&json!({"comment": "on postgres"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (s, _, body) = send(put()).await;
    assert!(s.is_success(), "{s} {body}");

    // The chain in PostgreSQL verifies.
    env.gw.recorder.checkpoint().await.unwrap();
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
            .arg(env.dir.join("state/audit-signing.key.pub")),
    );
    assert!(ok && text.contains("chain intact"), "{text}");

    // Sessions are read from PostgreSQL too, and the signing key's public half is printable.
    let (ok, text) = crate::outcome(crate::portcullis_cli().args([
        "sessions",
        "list",
        "--store",
        &pg_url(),
        "--schema",
        &schema.0,
    ]));
    let agent = env
        .sim
        .config()
        .principal("agent")
        .unwrap()
        .object_id
        .to_string();
    assert!(ok && text.contains(&agent), "{text}");
    let (ok, text) = crate::outcome(
        crate::portcullis_cli()
            .args(["audit", "public-key"])
            .arg(env.dir.join("state/audit-signing.key")),
    );
    let public = std::fs::read_to_string(env.dir.join("state/audit-signing.key.pub")).unwrap();
    assert!(ok && text.trim() == public.trim(), "{text}");
}
