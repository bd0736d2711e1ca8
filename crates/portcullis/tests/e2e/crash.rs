//! The audit trail under failure: the gateway process killed (SIGKILL) under load keeps a
//! record of every answer an agent received, and its chain verifies and continues after a
//! restart; a store at its size cap refuses requests (503) and forwards nothing.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use portcullis::audit::chain::Link;
use portcullis::audit::record::Phase;
use portcullis::audit::store::Store;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::{API, Env, Setup, prepare, verify_cli};

/// Every record in the store, by instance, in chain order.
async fn all_links(state: &Path) -> Vec<Link> {
    let store = Store::open(&state.join("audit.db")).await.unwrap();
    let mut links = Vec::new();
    for instance in store.instances().await.unwrap() {
        links.extend(store.chain(&instance).await.unwrap());
    }
    links
}

/// A `portcullis serve` process; killed (SIGKILL) when dropped, so a failing test leaves
/// nothing running.
pub(crate) struct Gateway {
    pub(crate) child: Child,
    pub(crate) addr: SocketAddr,
    pub(crate) admin: SocketAddr,
    pub(crate) http: reqwest::Client,
    log: PathBuf,
}

impl Gateway {
    /// Starts `portcullis serve --config DIR/portcullis.yaml`, its log (stderr) in
    /// `DIR/<log>`, and waits until it says where it listens.
    pub(crate) async fn spawn(dir: &Path, log: &str) -> Gateway {
        Self::spawn_config(dir, "portcullis.yaml", log).await
    }

    /// The same, with another configuration file in `dir`.
    pub(crate) async fn spawn_config(dir: &Path, config: &str, log: &str) -> Gateway {
        Self::spawn_env(dir, config, log, &[]).await
    }

    /// The same, with environment variables set (after the defaults, so they win).
    pub(crate) async fn spawn_env(
        dir: &Path,
        config: &str,
        log: &str,
        vars: &[(&str, &str)],
    ) -> Gateway {
        let log = dir.join(log);
        let child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .arg("serve")
            .arg("--config")
            .arg(dir.join(config))
            .env("RUST_LOG", "warn")
            .envs(vars.iter().copied())
            .env("NO_COLOR", "1")
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut gw = Gateway {
            child,
            addr: "127.0.0.1:0".parse().unwrap(),
            admin: "127.0.0.1:0".parse().unwrap(),
            http: reqwest::Client::new(),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(&gw.log).unwrap_or_default();
            let addr = text
                .lines()
                .find_map(|l| l.strip_prefix("portcullis: gateway on https://"))
                .and_then(|rest| rest.split(',').next());
            let ca = text.lines().find_map(|l| {
                l.strip_prefix("portcullis: development CA at ")
                    .and_then(|rest| rest.split(" (").next())
            });
            let admin = text
                .lines()
                .find_map(|l| l.split_once(", admin on https://"))
                .and_then(|(_, a)| a.split(',').next())
                .map(str::trim);
            if let (Some(addr), Some(admin), Some(ca)) = (addr, admin, ca) {
                gw.addr = addr.parse().unwrap();
                gw.admin = admin.parse().unwrap();
                gw.http = reqwest::Client::builder()
                    .add_root_certificate(
                        reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap(),
                    )
                    .tls_built_in_root_certs(false)
                    .timeout(Duration::from_secs(10))
                    .pool_max_idle_per_host(32)
                    .build()
                    .unwrap();
                return gw;
            }
            if let Some(status) = gw.child.try_wait().unwrap() {
                panic!("the gateway exited ({status}) before listening:\n{text}");
            }
            assert!(
                Instant::now() < deadline,
                "the gateway did not say where it listens:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM (a graceful stop, which seals the chain with a checkpoint), then waits.
    pub(crate) async fn terminate(mut self) -> std::process::ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the gateway did not stop on SIGTERM:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What one request got: its status and the gateway's request id, when the whole answer was
/// received; `None` when it failed (connection refused or reset, body cut off).
async fn attempt(req: reqwest::RequestBuilder) -> Option<(StatusCode, String)> {
    let resp = req.send().await.ok()?;
    let status = resp.status();
    let h = resp.headers();
    // Forwarded answers carry the gateway's id in `x-portcullis-request-id`; the gateway's
    // own refusals carry it in `x-ms-request-id`.
    let id = h
        .get("x-portcullis-request-id")
        .or_else(|| {
            h.get("x-ms-failure-cause")
                .filter(|c| *c == "gateway")
                .and(h.get("x-ms-request-id"))
        })
        .map(|v| v.to_str().unwrap().to_owned());
    resp.bytes().await.ok()?;
    Some((status, id.expect("every answer names its request")))
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    ReadGroup,
    ReadSecret,
    WriteVm,
}

/// The requests of the load: reads of a resource group and of a Key Vault secret, and
/// small VM writes.
#[derive(Clone)]
struct Load {
    token: String,
    rg: String,
}

impl Load {
    fn build(
        &self,
        http: &reqwest::Client,
        addr: SocketAddr,
        kind: Kind,
        n: usize,
    ) -> reqwest::RequestBuilder {
        let rg = &self.rg;
        let (method, path) = match kind {
            Kind::ReadGroup => (Method::GET, format!("{rg}?api-version=2022-09-01")),
            Kind::ReadSecret => (
                Method::GET,
                "/keyvault/demo-kv/secrets/db-password?api-version=7.4".to_owned(),
            ),
            Kind::WriteVm => (
                Method::PUT,
                format!("{rg}/providers/Microsoft.Compute/virtualMachines/crash-{n}?{API}"),
            ),
        };
        let r = http
            .request(method, format!("https://{addr}{path}"))
            .bearer_auth(&self.token);
        match kind {
            Kind::WriteVm => r.json(&json!({"location": "eastus", "tags": {"n": n.to_string()}})),
            _ => r,
        }
    }

    fn request(&self, gw: &Gateway, kind: Kind, n: usize) -> reqwest::RequestBuilder {
        self.build(&gw.http, gw.addr, kind, n)
    }
}

/// An answer received in full: what was asked, its status and the gateway's request id.
type Answer = (Kind, StatusCode, String);

/// Sends `load` through `gw` from `clients` concurrent clients for `time`, then kills the
/// gateway (SIGKILL) with requests in flight; returns the answers received in full.
async fn load_then_kill(gw: Gateway, load: &Load, clients: usize, time: Duration) -> Vec<Answer> {
    let killed = Arc::new(AtomicBool::new(false));
    let give_up = Instant::now() + time + Duration::from_secs(15);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let killed = killed.clone();
        let load = load.clone();
        let (http, addr) = (gw.http.clone(), gw.addr);
        // Each client sends one request after another until the gateway is gone.
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            let mut failed_before_kill = 0usize;
            for i in 0.. {
                let kind = [Kind::ReadGroup, Kind::ReadSecret, Kind::WriteVm][(c + i) % 3];
                let was_killed = killed.load(Ordering::SeqCst);
                match attempt(load.build(&http, addr, kind, c * 100_000 + i)).await {
                    Some((status, id)) => got.push((kind, status, id)),
                    None if !was_killed && !killed.load(Ordering::SeqCst) => {
                        failed_before_kill += 1;
                    }
                    None => {}
                }
                if was_killed || Instant::now() > give_up {
                    break;
                }
            }
            (got, failed_before_kill)
        }));
    }
    tokio::time::sleep(time).await;
    let mut gw = gw;
    // Flagged first, so no failure the kill causes is taken for one before it.
    killed.store(true, Ordering::SeqCst);
    gw.child.kill().unwrap(); // SIGKILL on Unix
    gw.child.wait().unwrap();
    let log = gw.log();
    drop(gw);
    let mut answered = Vec::new();
    let mut failed_before_kill = 0;
    for t in tasks {
        let (got, failed) = tokio::time::timeout(Duration::from_secs(30), t)
            .await
            .expect("the clients stop once the gateway is gone")
            .unwrap();
        answered.extend(got);
        failed_before_kill += failed;
    }
    assert_eq!(
        failed_before_kill, 0,
        "requests failed before the kill\n{log}"
    );
    let statuses: HashMap<u16, usize> = answered.iter().fold(HashMap::new(), |mut m, a| {
        *m.entry(a.1.as_u16()).or_default() += 1;
        m
    });
    assert!(
        answered.iter().all(|a| a.1.is_success()),
        "under load every request is served: {statuses:?}\n{log}"
    );
    assert!(
        answered.len() >= 30,
        "too few answers to prove anything: {} ({statuses:?})\n{log}",
        answered.len()
    );
    answered
}

/// Kills `portcullis serve` (SIGKILL) three times while 16 clients keep it busy: every
/// answer a client received in full has its record after each crash, the chain verifies,
/// each restarted gateway continues the same chain, and a graceful stop then seals it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_gateway_keeps_a_record_of_every_answer_it_gave() {
    const CLIENTS: usize = 16;
    const ROUNDS: usize = 3;
    const LOAD: Duration = Duration::from_millis(1000);
    let started = Instant::now();
    let (sim, dir) = prepare(Setup {
        // Checkpoints are signed during the load too, so crashes land among them.
        extra: "audit:\n  checkpoint_every: 1s\nlimits:\n  rate_per_principal: 0\n",
        ..Setup::default()
    })
    .await;
    let state = dir.join("state");
    let load = Load {
        token: sim.token("agent", crate::GATEWAY_API).unwrap(),
        rg: format!(
            "/subscriptions/{}/resourceGroups/demo-rg",
            sim.subscription_id()
        ),
    };
    let mut answered: Vec<Answer> = Vec::new();
    let mut report = Vec::new();
    for round in 1..=ROUNDS {
        let gw = Gateway::spawn(&dir, &format!("gateway-{round}.log")).await;
        // Warm up (tokens, keys, connections): each kind once, in full.
        for (i, kind) in [Kind::ReadGroup, Kind::ReadSecret, Kind::WriteVm]
            .into_iter()
            .enumerate()
        {
            let got = attempt(load.request(&gw, kind, round * 10_000_000 + i)).await;
            let (status, id) = got.unwrap_or_else(|| panic!("{kind:?} failed:\n{}", gw.log()));
            assert!(status.is_success(), "{kind:?}: {status}\n{}", gw.log());
            answered.push((kind, status, id));
        }
        let got = load_then_kill(gw, &load, CLIENTS, LOAD).await;
        let n = got.len();
        answered.extend(got);

        // Every answer received in full, in this round or before, has its record.
        let links = all_links(&state).await;
        let instances: HashSet<&str> = links.iter().map(|l| l.instance.as_str()).collect();
        assert_eq!(instances.len(), 1, "one gateway, one chain (round {round})");
        let mut asked: HashMap<&str, i64> = HashMap::new();
        let mut finals: HashMap<&str, (i64, Phase, Option<u16>)> = HashMap::new();
        for l in &links {
            match l.record.phase {
                Phase::Request => {
                    asked.insert(&l.record.request_id, l.seq);
                }
                phase => {
                    finals.insert(&l.record.request_id, (l.seq, phase, l.record.status));
                }
            }
        }
        // Its request record, then its response record with the status the client got.
        let missing: Vec<_> = answered
            .iter()
            .filter(
                |(_, status, id)| match (asked.get(id.as_str()), finals.get(id.as_str())) {
                    (Some(a), Some(&(r, Phase::Response, s))) => {
                        s != Some(status.as_u16()) || r < *a
                    }
                    _ => true,
                },
            )
            .collect();
        assert!(
            missing.is_empty(),
            "round {round}: {} of {} answers have no response record (or a different status) \
             after the crash: {:?}",
            missing.len(),
            answered.len(),
            &missing[..missing.len().min(5)]
        );
        // What was forwarded and never answered was in flight at a kill: at most one per
        // client per crash.
        let unanswered = asked.keys().filter(|id| !finals.contains_key(*id)).count();
        assert!(
            unanswered <= CLIENTS * round,
            "{unanswered} requests forwarded without an answer record"
        );
        let (ok, out) = verify_cli(&state);
        assert!(ok, "after crash {round}:\n{out}");
        report.push(format!(
            "round {round}: {n} answers, {} records, {unanswered} forwarded without an answer; {}",
            links.len(),
            out.trim()
        ));
    }
    let before_restart = all_links(&state).await.len();

    // A restart continues the same chain, and a graceful stop signs its head.
    let gw = Gateway::spawn(&dir, "gateway-last.log").await;
    let (status, id) = attempt(load.request(&gw, Kind::ReadGroup, 0))
        .await
        .unwrap_or_else(|| panic!("after the restart:\n{}", gw.log()));
    assert_eq!(status, StatusCode::OK);
    let log = gw.log();
    let stopped = gw.terminate().await;
    assert!(stopped.success(), "{stopped}\n{log}");
    let links = all_links(&state).await;
    assert_eq!(
        links
            .iter()
            .map(|l| &l.instance)
            .collect::<HashSet<_>>()
            .len(),
        1,
        "the restarted gateway continues its chain"
    );
    let last = links.last().unwrap();
    assert_eq!(last.seq as usize, links.len());
    assert_eq!(links.len(), before_restart + 2, "request and response");
    assert_eq!(
        (last.record.request_id.as_str(), last.record.phase),
        (id.as_str(), Phase::Response)
    );
    let (ok, out) = verify_cli(&state);
    assert!(ok, "after the restart:\n{out}");
    assert!(
        !out.contains("no checkpoint yet"),
        "the graceful stop signed the chain: {out}"
    );
    let store = Store::open(&state.join("audit.db")).await.unwrap();
    let checkpoints = store.checkpoints(&last.instance).await.unwrap();
    assert_eq!(
        checkpoints.last().map(|c| (c.seq, c.hash.as_str())),
        Some((last.seq, last.hash.as_str())),
        "the last checkpoint seals the last record"
    );
    report.push(format!("after the restart: {}", out.trim()));
    eprintln!(
        "crash: {} answers in all; {:?}\n{}",
        answered.len(),
        started.elapsed(),
        report.join("\n")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// With `audit.max_db_bytes`, a full store refuses requests with 503 `AuditUnavailable` and
/// forwards nothing; what was written still verifies.
#[tokio::test]
async fn a_full_store_refuses_and_forwards_nothing() {
    let env = Env::with(Setup {
        extra: "audit:\n  max_db_bytes: 1048576\n",
        ..Setup::default()
    })
    .await;
    let token = env.token("agent");
    // Records keep up to 64 KiB of a body, of the request and of the answer (Azure echoes
    // the resource): about 128 KiB a request.
    let filler = "lorem ipsum dolor sit amet ".repeat(2500);
    let mut created = Vec::new();
    let mut cut_off = Vec::new();
    let mut refused = None;
    for i in 0..40 {
        let vm = format!(
            "{}/providers/Microsoft.Compute/virtualMachines/fill-{i}?{API}",
            env.rg()
        );
        let since = env.sim.last_call_seq();
        let resp = env
            .http
            .put(env.url(&vm))
            .bearer_auth(&token)
            .json(&json!({"location": "eastus", "tags": {"i": i.to_string()}, "properties": {"description": filler}}))
            .send()
            .await
            .expect("the gateway answers");
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.bytes().await;
        let reached_arm = env
            .sim
            .calls_since(since)
            .iter()
            .any(|c| c.service == azure_sim::Service::Arm);
        match (status, body) {
            (StatusCode::CREATED | StatusCode::OK, Ok(_)) => {
                assert!(reached_arm);
                created.push(
                    headers["x-portcullis-request-id"]
                        .to_str()
                        .unwrap()
                        .to_owned(),
                );
            }
            // The request's record was committed and it was forwarded, but the answer's
            // record did not fit: the answer is cut off.
            (_, Err(e)) => cut_off.push((i, status, reached_arm, e.to_string())),
            (StatusCode::SERVICE_UNAVAILABLE, Ok(body)) => {
                refused = Some((i, headers, reached_arm, body));
                break;
            }
            (s, Ok(body)) => panic!("{s}: {}", String::from_utf8_lossy(&body)),
        }
    }
    let Some((i, headers, reached_arm, body)) = refused else {
        panic!(
            "40 large writes fit in a 1 MiB store ({} created)",
            created.len()
        );
    };
    let body = String::from_utf8_lossy(&body);
    assert_eq!(headers["x-ms-error-code"], "AuditUnavailable", "{body}");
    assert!(!reached_arm, "request {i} was refused, yet reached Azure");
    assert!(
        created.len() >= 3,
        "the store filled too early: {} created",
        created.len()
    );
    assert!(
        !env.sim.resource_exists(&format!(
            "{}/providers/Microsoft.Compute/virtualMachines/fill-{i}",
            env.rg()
        )),
        "the refused write was made"
    );
    // The cap refuses records that do not fit, not requests: a small read's records may
    // still fit (they do today). If it is refused, it too reaches nothing.
    let since = env.sim.last_call_seq();
    let (s, h, _) = env
        .agent(
            Method::GET,
            &format!("{}?api-version=2022-09-01", env.rg()),
            None,
        )
        .await;
    let reached = env.sim.calls_since(since);
    assert!(
        s == StatusCode::OK
            || (s == StatusCode::SERVICE_UNAVAILABLE && h["x-ms-error-code"] == "AuditUnavailable"),
        "{s}"
    );
    if s == StatusCode::SERVICE_UNAVAILABLE {
        assert!(reached.iter().all(|c| c.service != azure_sim::Service::Arm));
    }

    let state = env.dir.join("state");
    // Sizes by stat only: opening and closing the database file in this process (which
    // holds SQLite connections to it) would drop its POSIX locks.
    let size = |name: &str| std::fs::metadata(state.join(name)).map_or(0, |m| m.len());
    let (db, wal) = (size("audit.db"), size("audit.db-wal"));
    let links = all_links(&state).await;
    let refusal = links
        .iter()
        .find(|l| l.record.request_id == headers["x-ms-request-id"].to_str().unwrap())
        .map(|l| (l.record.phase, l.record.status));
    assert!(
        links
            .iter()
            .all(|l| !l.record.url.contains(&format!("fill-{i}?"))
                || l.record.phase == Phase::Refused),
        "the refused write has no request record"
    );
    let answered: HashSet<&str> = links
        .iter()
        .filter(|l| l.record.phase == Phase::Response)
        .map(|l| l.record.request_id.as_str())
        .collect();
    for id in &created {
        assert!(answered.contains(id.as_str()), "no answer record for {id}");
    }
    let (ok, out) = verify_cli(&state);
    assert!(ok, "{out}");
    eprintln!(
        "disk full: {} created, cut off: {cut_off:?}, refused at {i} (its record: {refusal:?}); \
         then a read: {s}; audit.db {db} bytes, audit.db-wal {wal} bytes, {} records",
        created.len(),
        links.len()
    );
}
