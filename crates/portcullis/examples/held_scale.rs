//! Held-approval scale, for the load harness (`scripts/bench.sh`): sends `--held` requests
//! that policy holds for approval, all at once, waits until the gateway holds every one,
//! reads the gateway's memory, then approves them through the admin API and times until
//! every request has completed. Prints one JSON line.
//!
//! Tokens come from `AGENT_TOKEN` (a principal the policy holds) and `APPROVER_TOKEN`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use serde_json::{Value, json};

#[derive(Parser)]
struct Args {
    /// The gateway's agent-facing URL.
    #[arg(long)]
    gateway: String,
    /// The gateway's admin URL.
    #[arg(long)]
    admin: String,
    /// The gateway's CA certificate (PEM).
    #[arg(long)]
    ca: std::path::PathBuf,
    /// The gateway's process id, for its memory.
    #[arg(long)]
    pid: u32,
    #[arg(long, default_value_t = 10_000)]
    held: usize,
    /// Connections the requests use: one per request when equal to --held (HTTP/1.1),
    /// else HTTP/2 streams spread over this many connections.
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    #[arg(long)]
    subscription: String,
    /// Approvals decided at once.
    #[arg(long, default_value_t = 32)]
    approve_parallel: usize,
}

fn status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn client(ca: &reqwest::Certificate, h2: bool, pool: usize) -> anyhow::Result<reqwest::Client> {
    let b = reqwest::Client::builder()
        .add_root_certificate(ca.clone())
        .tls_built_in_root_certs(false)
        .pool_max_idle_per_host(pool)
        .timeout(Duration::from_secs(1200));
    Ok(if h2 {
        b.http2_prior_knowledge()
    } else {
        b.http1_only()
    }
    .build()?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let agent = std::env::var("AGENT_TOKEN").context("AGENT_TOKEN")?;
    let approver = std::env::var("APPROVER_TOKEN").context("APPROVER_TOKEN")?;
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&args.ca)?)?;
    let h2 = args.connections < args.held;
    let clients: Vec<reqwest::Client> = if h2 {
        (0..args.connections.max(1))
            .map(|_| client(&ca, true, 1))
            .collect::<Result<_, _>>()?
    } else {
        vec![client(&ca, false, args.held)?]
    };
    let admin = client(&ca, false, args.approve_parallel)?;
    let rg = format!(
        "/subscriptions/{}/resourceGroups/bench-rg",
        args.subscription
    );

    // One request first: keys fetched, tokens and the store warm.
    let warm = admin
        .get(format!("{}/readyz", args.admin))
        .send()
        .await?
        .status();
    if !warm.is_success() {
        bail!("the gateway is not ready: {warm}");
    }
    let before = status_kib(args.pid, "VmRSS");

    let started = Instant::now();
    let mut requests = tokio::task::JoinSet::new();
    for i in 0..args.held {
        let req = clients[i % clients.len()]
            .put(format!(
                "{}{rg}/providers/Microsoft.Storage/storageAccounts/held{i}?api-version=2023-05-01",
                args.gateway
            ))
            .bearer_auth(&agent)
            .json(&json!({"location": "eastus", "sku": {"name": "Standard_LRS"}}));
        requests.spawn(async move { req.send().await.map(|r| r.status()) });
    }

    // Held: the gateway's held-requests gauge says how many wait.
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let metrics = admin
            .get(format!("{}/metrics", args.admin))
            .send()
            .await?
            .text()
            .await?;
        let held = metrics
            .lines()
            .find_map(|l| l.strip_prefix("portcullis_held_requests "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0) as usize;
        if held >= args.held {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {held} of {} held after 600 s", args.held);
        }
        if let Some(done) = requests.try_join_next() {
            bail!("a request finished before approval: {:?}", done?);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let hold_s = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let peak = status_kib(args.pid, "VmRSS");

    // Approve them all, through the API an approver uses (it lists up to 500 at a time).
    let releasing = Instant::now();
    let slots = Arc::new(tokio::sync::Semaphore::new(args.approve_parallel));
    let mut approved = 0usize;
    loop {
        let list: Value = admin
            .get(format!(
                "{}/api/approvals?status=pending&limit=500",
                args.admin
            ))
            .bearer_auth(&approver)
            .send()
            .await?
            .json()
            .await?;
        let ids: Vec<String> = list["value"]
            .as_array()
            .context("the approvals list")?
            .iter()
            .filter_map(|a| a["id"].as_str().map(str::to_owned))
            .collect();
        if ids.is_empty() {
            break;
        }
        let mut votes = tokio::task::JoinSet::new();
        for id in ids {
            let (admin, approver, slots) = (admin.clone(), approver.clone(), slots.clone());
            let url = format!("{}/api/approvals/{id}/approve", args.admin);
            votes.spawn(async move {
                let _slot = slots.acquire_owned().await;
                admin
                    .post(url)
                    .bearer_auth(approver)
                    .json(&json!({"comment": "held-approval scale"}))
                    .send()
                    .await
                    .map(|r| r.status())
            });
        }
        while let Some(v) = votes.join_next().await {
            let status = v??;
            if !status.is_success() {
                bail!("an approval was refused: {status}");
            }
            approved += 1;
        }
    }
    let approve_s = releasing.elapsed().as_secs_f64();
    let mut completed = 0usize;
    while let Some(r) = requests.join_next().await {
        let status = r??;
        if !status.is_success() {
            bail!("a held request ended with {status}");
        }
        completed += 1;
    }
    let release_s = releasing.elapsed().as_secs_f64();
    if completed != args.held || approved != args.held {
        bail!(
            "{completed} completed and {approved} approved of {}",
            args.held
        );
    }
    let kib_per_held = peak.saturating_sub(before) as f64 / args.held as f64;
    println!(
        "{}",
        json!({
            "held": args.held,
            "connections": if h2 { args.connections } else { args.held },
            "http2": h2,
            "hold_s": hold_s,
            "rss_before_mib": before as f64 / 1024.0,
            "peak_rss_mib": peak as f64 / 1024.0,
            "kib_per_held": kib_per_held,
            "approve_parallel": args.approve_parallel,
            "approve_s": approve_s,
            "release_s": release_s,
            "completed": completed,
        })
    );
    Ok(())
}
