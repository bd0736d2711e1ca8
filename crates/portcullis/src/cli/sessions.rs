//! `portcullis sessions list|replay`: what an agent did, grouped as sessions and replayed in
//! order from the audit store.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::bail;

use crate::audit::chain::Link;
use crate::audit::record::Phase;
use crate::audit::store::Store;

#[derive(clap::Args)]
pub struct SessionsArgs {
    #[command(subcommand)]
    command: SessionsCommand,
    /// The gateway's state directory (holding audit.db).
    #[arg(long, global = true, default_value = ".portcullis/demo/state")]
    state_dir: PathBuf,
}

#[derive(clap::Subcommand)]
enum SessionsCommand {
    /// Sessions, newest last.
    List {
        /// Only sessions of this principal (object id).
        #[arg(long)]
        principal: Option<String>,
        /// Only sessions with a request decided so (allow, deny, approve) or refused.
        #[arg(long)]
        decision: Option<String>,
    },
    /// One session's timeline.
    Replay {
        id: String,
        /// Show the (masked) request bodies too.
        #[arg(long)]
        bodies: bool,
    },
}

async fn records(state_dir: &std::path::Path) -> anyhow::Result<Vec<Link>> {
    let path = state_dir.join("audit.db");
    if !path.exists() {
        bail!("{} does not exist", path.display());
    }
    Ok(Store::open(&path).await?.all().await?)
}

pub async fn run(args: SessionsArgs) -> anyhow::Result<()> {
    let all = records(&args.state_dir).await?;
    match args.command {
        SessionsCommand::List {
            principal,
            decision,
        } => {
            let mut sessions: BTreeMap<String, Vec<&Link>> = BTreeMap::new();
            for l in &all {
                sessions
                    .entry(l.record.session.clone())
                    .or_default()
                    .push(l);
            }
            let mut rows: Vec<(&String, &Vec<&Link>)> = sessions
                .iter()
                .filter(|(_, ls)| {
                    principal.as_ref().is_none_or(|p| {
                        ls.iter()
                            .any(|l| l.record.principal.as_deref() == Some(p.as_str()))
                    })
                })
                .filter(|(_, ls)| {
                    decision.as_ref().is_none_or(|d| {
                        ls.iter().any(|l| {
                            l.record.decision.as_deref() == Some(d.as_str())
                                || (d == "refused" && l.record.phase == Phase::Refused)
                        })
                    })
                })
                .collect();
            rows.sort_by(|a, b| a.1[0].record.time.cmp(&b.1[0].record.time));
            println!(
                "{:<28} {:<38} {:<27} {:>8} {:>8}",
                "SESSION", "PRINCIPAL", "STARTED", "REQUESTS", "REFUSED"
            );
            for (id, ls) in rows {
                let principal = ls
                    .iter()
                    .find_map(|l| l.record.principal.clone())
                    .unwrap_or_else(|| "-".into());
                let requests = ls
                    .iter()
                    .filter(|l| l.record.phase != Phase::Response)
                    .count();
                let refused = ls
                    .iter()
                    .filter(|l| l.record.phase == Phase::Refused)
                    .count();
                println!(
                    "{id:<28} {principal:<38} {:<27} {requests:>8} {refused:>8}",
                    ls[0].record.time
                );
            }
        }
        SessionsCommand::Replay { id, bodies } => {
            let timeline: Vec<&Link> = all.iter().filter(|l| l.record.session == id).collect();
            if timeline.is_empty() {
                bail!("no session '{id}'");
            }
            for l in timeline {
                let r = &l.record;
                let phase = match r.phase {
                    Phase::Request => "→ sent",
                    Phase::Response => "← answer",
                    Phase::Refused => "✗ refused",
                };
                println!(
                    "{}  {phase:<10} {:<6} {}  {}  {}  {}  {}",
                    r.time,
                    r.method,
                    r.url,
                    r.action.as_deref().unwrap_or("-"),
                    r.decision.as_deref().unwrap_or("-"),
                    r.status.map_or("-".to_owned(), |s| s.to_string()),
                    r.latency_ms.map_or(String::new(), |ms| format!("{ms} ms")),
                );
                if r.phase == Phase::Refused
                    && let Some(reason) = &r.reason
                {
                    println!("      reason: {reason}");
                }
                if bodies && let Some(body) = &r.body {
                    println!("      body: {body}");
                }
            }
        }
    }
    Ok(())
}
