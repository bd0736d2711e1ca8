//! `portcullis sessions list|replay`: what an agent did, grouped as sessions and replayed in
//! order from the audit store.

use std::path::PathBuf;

use anyhow::bail;

use crate::audit::record::{Outcome, Phase, Tally};
use crate::audit::store::{FoundSession, SessionFilter};

#[derive(clap::Args)]
pub struct SessionsArgs {
    #[command(subcommand)]
    command: SessionsCommand,
    /// The gateway's state directory (holding audit.db).
    #[arg(long, global = true, default_value = ".portcullis/demo/state")]
    state_dir: PathBuf,
    /// A PostgreSQL store (`postgres://...`) instead of the state directory's SQLite file.
    #[arg(long, global = true, env = "PORTCULLIS_STORE", hide_env_values = true)]
    store: Option<String>,
    /// The PostgreSQL schema the tables are in.
    #[arg(long, global = true, requires = "store")]
    schema: Option<String>,
}

#[derive(clap::Subcommand)]
enum SessionsCommand {
    /// Sessions, newest last.
    List {
        /// Only sessions of this principal (object id).
        #[arg(long)]
        principal: Option<String>,
        /// Only sessions active since: RFC 3339, a date, or an age (`24h`).
        #[arg(long)]
        since: Option<String>,
        /// Only sessions with a request decided so (allow, deny, approve), held for approval
        /// (held) or refused by the gateway (refused).
        #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(crate::audit::store::DECISIONS))]
        decision: Option<String>,
    },
    /// One session's timeline.
    Replay {
        /// The session: its id as `sessions list` shows it, or the name the agent gave it
        /// (`x-portcullis-session`).
        id: String,
        /// Show the (masked) request and answer bodies too.
        #[arg(long)]
        bodies: bool,
    },
}

pub async fn run(args: SessionsArgs) -> anyhow::Result<()> {
    let store = match &args.store {
        Some(url) => crate::audit::store::Store::open_postgres(url, args.schema.as_deref()).await?,
        None => super::audit::open(Some(&args.state_dir), None).await?,
    };
    match args.command {
        SessionsCommand::List {
            principal,
            since,
            decision,
        } => {
            let filter = SessionFilter {
                principal,
                since: since.as_deref().map(crate::time::time_arg).transpose()?,
                decision,
                newest: None,
            };
            println!(
                "{:<44} {:<46} {:<27} {:>8} {:>7} {:>4} {:>7}",
                "SESSION", "PRINCIPAL", "STARTED", "REQUESTS", "ALLOWED", "HELD", "REFUSED"
            );
            for s in store.sessions(&filter).await? {
                println!(
                    "{:<44} {:<46} {:<27} {:>8} {:>7} {:>4} {:>7}",
                    s.id,
                    principal_cell(s.principal.as_deref(), s.principal_name.as_deref()),
                    s.started,
                    s.requests,
                    s.allowed,
                    s.held,
                    s.refused
                );
            }
        }
        SessionsCommand::Replay { id, bodies } => {
            let timeline = match store.find_session(&id).await? {
                FoundSession::One(_, links) => links,
                FoundSession::Several(ids) => bail!(
                    "several principals named a session '{id}'; replay one of: {}",
                    ids.join(", ")
                ),
                FoundSession::None => bail!("no session '{id}'"),
            };
            let tally = Tally::of(timeline.iter().map(|l| &l.record));
            for l in timeline {
                let r = &l.record;
                let phase = match (r.phase, r.outcome()) {
                    (_, Some(Outcome::Held)) => "⏸ held",
                    (Phase::Request, _) => "→ sent",
                    (Phase::Response, _) => "← answer",
                    (Phase::Refused | Phase::Held, _) => "✗ refused",
                    (Phase::Approval, _) => "◆ approval",
                };
                let upstream = r
                    .upstream_ms
                    .map_or(String::new(), |ms| format!(" (Azure {ms} ms)"));
                println!(
                    "{}  {phase:<10} {:<6} {}  {}  {}  {}  {}{upstream}",
                    r.time,
                    r.method,
                    r.url,
                    r.action.as_deref().unwrap_or("-"),
                    r.decision.as_deref().unwrap_or("-"),
                    r.status.map_or("-".to_owned(), |s| s.to_string()),
                    r.latency_ms.map_or(String::new(), |ms| format!("{ms} ms")),
                );
                if matches!(r.phase, Phase::Refused | Phase::Held | Phase::Approval)
                    && let Some(reason) = &r.reason
                {
                    println!("      reason: {reason}");
                }
                if bodies && let Some(body) = &r.body {
                    let cut = r
                        .body_bytes
                        .filter(|n| *n as usize > body.len())
                        .map_or(String::new(), |n| {
                            format!(" [first {} of {n} bytes]", body.len())
                        });
                    println!("      body{cut}: {body}");
                }
            }
            println!("{}", tally.line());
        }
    }
    Ok(())
}

/// A principal in a table: "build-agent (app) 93eb7a24" (the name as recorded, cleaned again
/// for the terminal and cut to fit, then the id's first characters), or the whole id and
/// "(name unavailable)".
pub(super) fn principal_cell(id: Option<&str>, name: Option<&str>) -> String {
    use crate::identity::names::{clean, short_id};
    let Some(id) = id else {
        return "-".to_owned();
    };
    match name.and_then(clean) {
        Some(n) => {
            let n: String = if n.chars().count() > 36 {
                n.chars().take(35).chain(['…']).collect()
            } else {
                n
            };
            format!("{n} {}", short_id(id))
        }
        None => format!("{id} (name unavailable)"),
    }
}

#[cfg(test)]
mod tests {
    use super::principal_cell;

    #[test]
    fn principals_are_named_in_tables() {
        let id = "93eb7a24-0000-4000-8000-000000000001";
        assert_eq!(
            principal_cell(Some(id), Some("build-agent (app)")),
            "build-agent (app) 93eb7a24"
        );
        assert_eq!(
            principal_cell(Some(id), None),
            format!("{id} (name unavailable)")
        );
        let cell = principal_cell(Some(id), Some("\x1b[2J\u{202E}x\ny"));
        assert_eq!(
            cell, "[2Jx y 93eb7a24",
            "no escape, override or new line reaches a terminal"
        );
        let long = principal_cell(Some(id), Some(&"n".repeat(500)));
        assert!(long.chars().count() <= 36 + 9, "{long}");
        assert_eq!(principal_cell(None, Some("x")), "-");
    }
}
