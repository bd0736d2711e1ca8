//! `portcullis audit verify|export|prune`: check every instance's hash chain and signed
//! checkpoints, stream records out for a SIEM, and apply retention by hand.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::audit::anchor::Anchor;
use crate::audit::checkpoint::public_path;
use crate::audit::store::Store;
use crate::audit::verifier::{Expected, Report, verify_store};
use crate::time::time_arg;

#[derive(clap::Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    command: AuditCommand,
}

/// Where the audit database is.
#[derive(clap::Args)]
struct StoreArgs {
    /// The gateway's state directory (holding audit.db).
    #[arg(long, conflicts_with = "db")]
    state_dir: Option<PathBuf>,
    /// The audit database itself.
    #[arg(long, conflicts_with = "store")]
    db: Option<PathBuf>,
    /// A PostgreSQL store (`postgres://...`) instead of a SQLite file.
    #[arg(long, env = "PORTCULLIS_STORE", hide_env_values = true)]
    store: Option<String>,
    /// The PostgreSQL schema the tables are in.
    #[arg(long, requires = "store")]
    schema: Option<String>,
}

#[derive(clap::Subcommand)]
enum AuditCommand {
    /// Verify the hash chains and signed checkpoints; exit 1 if anything is wrong.
    Verify {
        #[command(flatten)]
        store: StoreArgs,
        /// A trusted checkpoint public key (64 hex characters, or a file holding it);
        /// repeatable. Default: `audit-signing.key.pub` in the state directory.
        #[arg(long = "public-key")]
        public_keys: Vec<String>,
        /// Pin what this verification sees, and hold the store to it next time: a file (kept
        /// away from the gateway's host) with each instance's latest signed checkpoint. Read
        /// when it exists, and rewritten only when everything verifies. Catches chains cut
        /// back past the pin, rewritten before it, or removed whole.
        #[arg(long)]
        anchor: Option<PathBuf>,
    },
    /// Stream records in time order (all instances merged), one JSON object per line.
    Export {
        #[command(flatten)]
        store: StoreArgs,
        /// From this time: RFC 3339 (`2026-11-29T09:00:00Z`), a date, or an age (`24h`).
        #[arg(long)]
        since: String,
        /// Until this time (exclusive), same forms.
        #[arg(long)]
        until: Option<String>,
        /// Only `jsonl` for now.
        #[arg(long, default_value = "jsonl")]
        format: String,
        /// Write here instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Make a checkpoint signing key (for `audit.signing_key_file`) and its public half
    /// (`FILE.pub`, for `audit verify --public-key`); refuses to overwrite.
    Keygen {
        /// Where the signing key goes (mode 0600).
        out: PathBuf,
    },
    /// Print the public half of a checkpoint signing key, for verifiers.
    PublicKey {
        /// The signing key file (64 hex characters).
        signing_key: PathBuf,
    },
    /// Remove records older than an age, up to the latest signed checkpoint before it, as
    /// sealed segments (what the gateway does by itself with `audit.retention`).
    Prune {
        #[command(flatten)]
        store: StoreArgs,
        /// Records older than this age go (e.g. `90d`), or before this time (RFC 3339, a
        /// date).
        #[arg(long)]
        older_than: String,
        /// The checkpoint signing key, which signs the retention mark (a mark nobody signed
        /// fails verification). Default: `audit-signing.key` in the state directory.
        #[arg(long)]
        signing_key: Option<PathBuf>,
    },
}

impl StoreArgs {
    async fn open(&self) -> anyhow::Result<Store> {
        if let Some(url) = &self.store {
            return Ok(Store::open_postgres(url, self.schema.as_deref()).await?);
        }
        open(self.state_dir.as_deref(), self.db.as_deref()).await
    }
}

/// The audit database named on the command line; it must exist.
pub(crate) async fn open(state_dir: Option<&Path>, db: Option<&Path>) -> anyhow::Result<Store> {
    let path = match (db, state_dir) {
        (Some(db), _) => db.to_path_buf(),
        (None, Some(dir)) => dir.join("audit.db"),
        (None, None) => bail!("give --state-dir, --db or --store"),
    };
    if !path.exists() {
        bail!("{} does not exist", path.display());
    }
    Ok(Store::open(&path).await?)
}

fn trusted_keys(given: &[String], store: &StoreArgs) -> anyhow::Result<Vec<String>> {
    let mut keys = Vec::new();
    for k in given {
        let text = if Path::new(k).exists() {
            std::fs::read_to_string(k).with_context(|| format!("reading {k}"))?
        } else {
            k.clone()
        };
        keys.push(text.trim().to_ascii_lowercase());
    }
    if keys.is_empty()
        && let Some(dir) = &store.state_dir
    {
        let default = public_path(&dir.join("audit-signing.key"));
        if let Ok(text) = std::fs::read_to_string(&default) {
            keys.push(text.trim().to_ascii_lowercase());
        }
    }
    Ok(keys)
}

pub async fn run(args: AuditArgs) -> anyhow::Result<()> {
    match args.command {
        AuditCommand::Verify {
            store,
            public_keys,
            anchor,
        } => {
            let keys = trusted_keys(&public_keys, &store)?;
            let pinned = anchor.as_deref().map(Anchor::load).transpose()?.flatten();
            let mut expected = Expected {
                anchor: pinned.clone(),
                ..Default::default()
            };
            // The state directory names its own instance: its chain must be in the store.
            if let Some(dir) = &store.state_dir
                && let Ok(id) = std::fs::read_to_string(dir.join("instance.id"))
                && !id.trim().is_empty()
            {
                expected.instances.push(id.trim().to_owned());
            }
            let db = store.open().await?;
            let report = verify_store(&db, &keys, &expected).await?;
            print_report(&report);
            let bad = report.failures();
            if let Some(path) = &anchor {
                if bad > 0 {
                    println!("anchor {}: left as it was", path.display());
                } else {
                    let now = report.anchor();
                    if pinned.as_ref() != Some(&now) {
                        now.save(path)?;
                    }
                    println!(
                        "anchor {}: {} ({} instance(s) pinned at their latest signed checkpoint)",
                        path.display(),
                        if pinned.is_some() {
                            "holds, updated"
                        } else {
                            "created"
                        },
                        now.instances.len()
                    );
                }
            }
            if bad > 0 {
                bail!("{bad} failure(s) in the audit store");
            }
            Ok(())
        }
        AuditCommand::Export {
            store,
            since,
            until,
            format,
            output,
        } => {
            if format != "jsonl" {
                bail!("--format {format}: only jsonl is supported");
            }
            let since = time_arg(&since)?;
            let until = until.as_deref().map(time_arg).transpose()?;
            let db = store.open().await?;
            let total = db.count(&since, until.as_deref()).await?;
            let mut out: Box<dyn Write> = match &output {
                Some(path) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(path)
                        .with_context(|| format!("creating {}", path.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            // A progress bar only where a person watches (stderr is a terminal).
            let bar = if std::io::stderr().is_terminal() {
                let bar = indicatif::ProgressBar::new(total as u64);
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{bar:40} {pos}/{len} records {per_sec} eta {eta}",
                    )
                    .expect("a valid template"),
                );
                bar
            } else {
                indicatif::ProgressBar::hidden()
            };
            let mut cursor = None;
            let mut written = 0u64;
            loop {
                let page = db
                    .page(&since, until.as_deref(), cursor.as_ref(), 1000)
                    .await?;
                let Some(last) = page.last() else { break };
                cursor = Some(last.cursor());
                for link in &page {
                    writeln!(out, "{}", link.to_json_line())?;
                }
                written += page.len() as u64;
                bar.inc(page.len() as u64);
            }
            out.flush()?;
            bar.finish_and_clear();
            eprintln!("exported {written} records");
            Ok(())
        }
        AuditCommand::Keygen { out } => {
            if out.exists() {
                bail!("{} exists; not overwriting a signing key", out.display());
            }
            let key = crate::audit::checkpoint::load_or_create(&out, true)?;
            println!(
                "{} (public key {}, also in {})",
                out.display(),
                crate::audit::chain::hex(key.verifying_key().as_bytes()),
                crate::audit::checkpoint::public_path(&out).display()
            );
            Ok(())
        }
        AuditCommand::PublicKey { signing_key } => {
            let key = crate::audit::checkpoint::load_or_create(&signing_key, false)?;
            println!(
                "{}",
                crate::audit::chain::hex(key.verifying_key().as_bytes())
            );
            Ok(())
        }
        AuditCommand::Prune {
            store,
            older_than,
            signing_key,
        } => {
            let before = time_arg(&older_than)?;
            let key_path = match (&signing_key, &store.state_dir) {
                (Some(k), _) => k.clone(),
                (None, Some(dir)) => dir.join("audit-signing.key"),
                (None, None) => bail!("give --signing-key: it signs the retention marks"),
            };
            let key = crate::audit::checkpoint::load_or_create(&key_path, false)?;
            let db = store.open().await?;
            for instance in db.instances().await? {
                match db.prune(&instance, &before, &key).await? {
                    Some(mark) => println!(
                        "{instance}: removed records through {} ({} records), sealed by its checkpoint",
                        mark.through_seq, mark.records
                    ),
                    None => println!(
                        "{instance}: nothing older than {before} is sealed by a checkpoint"
                    ),
                }
            }
            Ok(())
        }
    }
}

/// One line per chain (`ok:` or `TAMPERED:`), each naming its instance, and under an intact
/// chain what holds its tail.
fn print_report(report: &Report) {
    for problem in &report.store_problems {
        println!("TAMPERED: {problem}");
    }
    for o in &report.outcomes {
        let instance = &o.instance;
        match &o.result {
            Ok(v) => {
                let pruned = v.pruned_through.map_or(String::new(), |n| {
                    format!(", records 1..={n} removed by retention (sealed)")
                });
                println!(
                    "ok: {instance}: {} records, {} signed checkpoints, chain intact{pruned}",
                    v.records, v.checkpoints
                );
                if let Some(c) = &v.last_checkpoint {
                    println!(
                        "    last signed checkpoint: record {} at {} (signature {}…)",
                        c.seq,
                        c.time,
                        c.signature.get(..16).unwrap_or(&c.signature)
                    );
                    if v.head > c.seq {
                        println!(
                            "    records {}..={} follow it: only the hash chain holds them",
                            c.seq + 1,
                            v.head
                        );
                    }
                }
            }
            Err(e) => println!("TAMPERED: {e}"),
        }
    }
}
