//! Gateway throughput with recording on and off. One process holds the Azure simulator and
//! two gateways built from the same configuration (the demo's policy), each on its own
//! loopback port over real TLS: one records as configured (durable SQLite, group commit),
//! the other has its recorder replaced by one that keeps nothing, so every other step of
//! a request (authentication, policy, forwarding, masking, rendering the audit records) is
//! the same. The same closed-loop load (C concurrent clients, each sending its next request
//! when the last answer is read) drives both, alternating on and off in every round so that
//! noise on a shared machine hits both alike; the table shows medians across rounds.
//!
//! Everything listens on 127.0.0.1 and lives in a temporary directory, removed at the end.
//! Knobs (environment): `RECORDING_ROUNDS` (default 5), `RECORDING_SECS` per run (default
//! 2), `RECORDING_CONCURRENCY` (default `16,64`), `RECORDING_ENDPOINTS` (default `arm,kv`),
//! `RECORDING_HTTP2=1` (one multiplexed connection per client instead of one HTTP/1.1
//! connection per concurrent request), `RECORDING_ISOLATED_WRITER=1` (a third gateway,
//! recording like the first, but built on a runtime of its own thread, so its audit writer
//! task does not queue behind the request tasks: an experiment on what limits recording).
//!
//! Run: `cargo bench -p portcullis --bench recording`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use azure_sim::{SimOptions, Simulator};
use portcullis::audit::writer::Recorder;
use portcullis::server::{self, Listeners};
use tokio::net::TcpListener;
use tokio::sync::watch;

const DEMO_POLICY: &str = include_str!("../../../policies/demo.yaml");
const AGENT_BASELINE: &str = include_str!("../../../policies/agent-baseline.yaml");
const GATEWAY_API: &str = "api://portcullis";

struct Settings {
    rounds: usize,
    run: Duration,
    concurrency: Vec<usize>,
    endpoints: Vec<String>,
    http2: bool,
    isolated_writer: bool,
}

impl Settings {
    fn from_env() -> Settings {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let list = |k: &str, d: &str| -> Vec<String> {
            var(k)
                .unwrap_or_else(|| d.to_owned())
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        };
        Settings {
            rounds: var("RECORDING_ROUNDS").map_or(5, |v| v.parse().expect("RECORDING_ROUNDS")),
            run: Duration::from_secs_f64(
                var("RECORDING_SECS").map_or(2.0, |v| v.parse().expect("RECORDING_SECS")),
            ),
            concurrency: list("RECORDING_CONCURRENCY", "16,64")
                .iter()
                .map(|c| c.parse().expect("RECORDING_CONCURRENCY"))
                .collect(),
            endpoints: list("RECORDING_ENDPOINTS", "arm,kv"),
            http2: var("RECORDING_HTTP2").is_some_and(|v| v == "1"),
            isolated_writer: var("RECORDING_ISOLATED_WRITER").is_some_and(|v| v == "1"),
        }
    }
}

/// A temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_dir() -> TempDir {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!(
        "pc-bench-recording-{}-{nanos:x}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir.canonicalize().unwrap())
}

/// The gateway's configuration in front of the simulator, as `portcullis demo` writes it,
/// with its own state directory.
fn config_yaml(sim: &Simulator, state_dir: &str) -> String {
    let api = sim.config().api_for(GATEWAY_API).unwrap().app_id;
    let app = |name: &str| {
        sim.config()
            .principal(name)
            .and_then(|p| p.app_id)
            .unwrap()
            .to_string()
    };
    format!(
        r#"listen:
  gateway: "127.0.0.1:0"
  admin: "127.0.0.1:0"
state_dir: {state_dir}
identity:
  authority: {sim}
  tenant: {tenant}
  audiences: [{GATEWAY_API}, {api}]
  ca_file: sim/ca.pem
upstream:
  arm_url: {sim}
  keyvault_url: "{sim}/keyvault/{{vault}}"
  ca_file: sim/ca.pem
  default_credential: baseline
  credentials:
    baseline:
      type: client_secret
      client_id: {baseline}
      client_secret: {{file: baseline.secret}}
    elevated:
      type: client_secret
      client_id: {elevated}
      client_secret: {{file: elevated.secret}}
policy:
  include: policy.yaml
# One agent drives every client: its per-principal rate limit would measure itself.
limits:
  rate_per_principal: 0
"#,
        sim = sim.url(),
        tenant = sim.tenant_id(),
        baseline = app("portcullis-baseline"),
        elevated = app("portcullis-elevated"),
    )
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Mode {
    /// Recording as configured.
    On,
    /// The recorder keeps nothing.
    Off,
    /// Recording as configured, the writer on its own thread's runtime.
    Isolated,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::On => "on",
            Mode::Off => "off",
            Mode::Isolated => "isolated",
        }
    }

    fn records(self) -> bool {
        self != Mode::Off
    }
}

struct Gw {
    addr: std::net::SocketAddr,
    client: reqwest::Client,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    /// For `Mode::Isolated`: dropping it ends the writer's thread.
    writer_thread: Option<tokio::sync::oneshot::Sender<()>>,
}

/// Builds the gateway on a current-thread runtime of a thread of its own, where the tasks
/// `build` spawns (the audit writer among them) then run.
async fn build_on_own_thread(
    cfg: portcullis::config::Config,
) -> (server::build::Built, tokio::sync::oneshot::Sender<()>) {
    let (built_tx, built_rx) = tokio::sync::oneshot::channel();
    let (keep, stopped) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let built = server::build::build(cfg).await.unwrap();
            if built_tx.send(built).is_ok() {
                let _ = stopped.await;
            }
        });
        rt.shutdown_timeout(Duration::from_secs(1));
    });
    (
        built_rx
            .await
            .expect("the writer's thread built the gateway"),
        keep,
    )
}

/// Builds and serves a gateway from `config`; with `Mode::Off` its recorder keeps nothing.
async fn start_gateway(config: &Path, mode: Mode, http2: bool) -> Gw {
    let cfg = portcullis::config::load(config).unwrap_or_else(|e| panic!("{e}"));
    let gateway = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = gateway.local_addr().unwrap();
    let (built, writer_thread) = if mode == Mode::Isolated {
        let (built, keep) = build_on_own_thread(cfg).await;
        (built, Some(keep))
    } else {
        (server::build::build(cfg).await.unwrap(), None)
    };
    let gw = match mode {
        Mode::On | Mode::Isolated => built.gateway,
        Mode::Off => {
            let mut gw = Arc::try_unwrap(built.gateway)
                .unwrap_or_else(|_| panic!("a freshly built gateway has one owner"));
            // Dropping the configured recorder stops its writer.
            gw.recorder = Recorder::discard();
            Arc::new(gw)
        }
    };
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(server::run(
        Listeners { gateway, admin },
        built.tls,
        gw,
        built.admin,
        rx,
        std::time::Duration::from_secs(5),
    ));
    let pem = std::fs::read(built.ca_file.expect("a development CA")).unwrap();
    let mut client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .tls_built_in_root_certs(false)
        .no_proxy()
        .pool_max_idle_per_host(1024)
        .timeout(Duration::from_secs(30));
    client = if http2 {
        client.http2_prior_knowledge()
    } else {
        client.http1_only()
    };
    Gw {
        addr,
        client: client.build().unwrap(),
        stop,
        task,
        writer_thread,
    }
}

/// One run's outcome.
struct Run {
    requests: usize,
    errors: usize,
    per_second: f64,
    p50: Duration,
    p99: Duration,
}

/// C clients send `url` back to back until `length` has passed.
async fn drive(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    concurrency: usize,
    length: Duration,
) -> Run {
    let start = Instant::now();
    let deadline = start + length;
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, url, token) = (client.clone(), url.to_owned(), token.to_owned());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = 0;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let ok = match client.get(&url).bearer_auth(&token).send().await {
                        Ok(r) => {
                            let status = r.status();
                            r.bytes().await.is_ok() && status == reqwest::StatusCode::OK
                        }
                        Err(_) => false,
                    };
                    if ok {
                        latencies.push(t.elapsed());
                    } else {
                        errors += 1;
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.unwrap();
        latencies.extend(l);
        errors += e;
    }
    let elapsed = start.elapsed();
    latencies.sort();
    let pct = |p: f64| {
        if latencies.is_empty() {
            return Duration::ZERO;
        }
        latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)]
    };
    Run {
        requests: latencies.len(),
        errors,
        per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: pct(0.50),
        p99: pct(0.99),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn ms(d: f64) -> String {
    format!("{:.1}", d * 1e3)
}

async fn bench(settings: &Settings, dir: &Path) {
    let sim = Simulator::start(SimOptions {
        tls_dir: Some(dir.join("sim")),
        ..SimOptions::default()
    })
    .await
    .expect("starting the simulator");
    assert!(sim.addr().ip().is_loopback());
    for name in ["baseline", "elevated"] {
        let secret = sim
            .config()
            .principal(&format!("portcullis-{name}"))
            .and_then(|p| p.secret.clone())
            .unwrap();
        std::fs::write(dir.join(format!("{name}.secret")), secret).unwrap();
    }
    std::fs::write(dir.join("policy.yaml"), DEMO_POLICY).unwrap();
    std::fs::write(dir.join("agent-baseline.yaml"), AGENT_BASELINE).unwrap();
    let mut modes = vec![Mode::On, Mode::Off];
    if settings.isolated_writer {
        modes.push(Mode::Isolated);
    }
    let mut gateways = BTreeMap::new();
    for &mode in &modes {
        let config = dir.join(format!("portcullis-{}.yaml", mode.name()));
        std::fs::write(
            &config,
            config_yaml(&sim, &format!("state-{}", mode.name())),
        )
        .unwrap();
        gateways.insert(mode, start_gateway(&config, mode, settings.http2).await);
    }
    let token = sim.token("agent", GATEWAY_API).unwrap();
    let sub = sim.subscription_id();
    let paths: BTreeMap<&str, String> = [
        (
            "arm",
            format!("/subscriptions/{sub}/resourceGroups/demo-rg?api-version=2022-09-01"),
        ),
        (
            "kv",
            "/keyvault/demo-kv/secrets/db-password?api-version=7.4".to_owned(),
        ),
    ]
    .into_iter()
    .collect();
    let url = |mode: Mode, endpoint: &str| {
        let path = paths
            .get(endpoint)
            .unwrap_or_else(|| panic!("unknown endpoint {endpoint} (arm, kv)"));
        format!("https://{}{path}", gateways[&mode].addr)
    };

    // Every endpoint answers 200 through every gateway, and all are warm (connections,
    // upstream tokens, key sets).
    let max = settings.concurrency.iter().copied().max().unwrap_or(1);
    for endpoint in &settings.endpoints {
        for &mode in &modes {
            let gw = &gateways[&mode];
            let r = gw
                .client
                .get(url(mode, endpoint))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            let status = r.status();
            let body = r.text().await.unwrap_or_default();
            assert_eq!(
                status,
                reqwest::StatusCode::OK,
                "{endpoint} through the recording-{} gateway: {body}",
                mode.name()
            );
            drive(
                &gw.client,
                &url(mode, endpoint),
                &token,
                max,
                Duration::from_millis(500),
            )
            .await;
        }
    }

    println!(
        "recording on/off: {} rounds of {:.1} s per run, {}, on {} core(s)",
        settings.rounds,
        settings.run.as_secs_f64(),
        if settings.http2 {
            "HTTP/2 (one connection)"
        } else {
            "HTTP/1.1 (one connection per client)"
        },
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    let mut results: BTreeMap<(String, usize, Mode), Vec<Run>> = BTreeMap::new();
    for round in 0..settings.rounds {
        for endpoint in &settings.endpoints {
            for &c in &settings.concurrency {
                // Rotate which goes first, so a drift in the machine's speed hits all alike.
                let mut order = modes.clone();
                order.rotate_left(round % modes.len());
                for mode in order {
                    let run = drive(
                        &gateways[&mode].client,
                        &url(mode, endpoint),
                        &token,
                        c,
                        settings.run,
                    )
                    .await;
                    println!(
                        "  round {} {endpoint:>3} c={c:<3} recording {:<8}: {:>7.0} req/s  p50 {:>6} ms  p99 {:>6} ms  ({} requests, {} errors)",
                        round + 1,
                        mode.name(),
                        run.per_second,
                        ms(run.p50.as_secs_f64()),
                        ms(run.p99.as_secs_f64()),
                        run.requests,
                        run.errors
                    );
                    results
                        .entry((endpoint.clone(), c, mode))
                        .or_default()
                        .push(run);
                }
            }
        }
    }

    let pairs: Vec<(Mode, Mode)> = modes
        .iter()
        .filter(|m| m.records())
        .map(|&m| (m, Mode::Off))
        .collect();
    for (a, b) in pairs {
        println!();
        let (an, bn) = (a.name(), b.name());
        println!(
            "| request | concurrency | {an} req/s | {bn} req/s | {an}/{bn} throughput | {an} p50 ms | {bn} p50 ms | {an} p99 ms | {bn} p99 ms | errors |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for endpoint in &settings.endpoints {
            for &c in &settings.concurrency {
                let ra = &results[&(endpoint.clone(), c, a)];
                let rb = &results[&(endpoint.clone(), c, b)];
                let med =
                    |runs: &[Run], f: &dyn Fn(&Run) -> f64| median(runs.iter().map(f).collect());
                // Paired per round: each round's runs ran back to back.
                let ratio = median(
                    ra.iter()
                        .zip(rb)
                        .map(|(x, y)| x.per_second / y.per_second)
                        .collect(),
                );
                let errors: usize = ra.iter().chain(rb).map(|r| r.errors).sum();
                let name = match endpoint.as_str() {
                    "arm" => "ARM GET resource group",
                    "kv" => "Key Vault GET secret",
                    other => other,
                };
                println!(
                    "| {name} | {c} | {:.0} | {:.0} | {:.3} ({:+.1} %) | {} | {} | {} | {} | {errors} |",
                    med(ra, &|r| r.per_second),
                    med(rb, &|r| r.per_second),
                    ratio,
                    (ratio - 1.0) * 100.0,
                    ms(med(ra, &|r| r.p50.as_secs_f64())),
                    ms(med(rb, &|r| r.p50.as_secs_f64())),
                    ms(med(ra, &|r| r.p99.as_secs_f64())),
                    ms(med(rb, &|r| r.p99.as_secs_f64())),
                );
            }
        }
    }
    println!();
    println!(
        "throughput ratio: the median over rounds of each round's ratio; the other columns are medians over rounds."
    );

    for gw in gateways.into_values() {
        let _ = gw.stop.send(true);
        let _ = gw.task.await;
        drop(gw.writer_thread);
    }
    // What each gateway wrote: two records per forwarded request (the request before
    // forwarding, the answer before it completes), warm-up included.
    for &mode in &modes {
        let sent: usize = results
            .iter()
            .filter(|((_, _, m), _)| *m == mode)
            .flat_map(|(_, runs)| runs.iter().map(|r| r.requests + r.errors))
            .sum();
        let store = portcullis::audit::store::Store::open(
            &dir.join(format!("state-{}/audit.db", mode.name())),
        )
        .await
        .unwrap();
        println!(
            "audit store of the {} gateway: {} records ({sent} requests in the measured runs, warm-up not counted)",
            mode.name(),
            store.count("", None).await.unwrap()
        );
    }
    drop(sim);
}

fn main() {
    let settings = Settings::from_env();
    let dir = temp_dir();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(bench(&settings, &dir.0));
    // Background refreshes (key sets) never end by themselves.
    rt.shutdown_timeout(Duration::from_secs(2));
    drop(dir);
}
