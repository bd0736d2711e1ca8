//! `portcullis audit verify`: checks every instance's hash chain in the audit store and names
//! the first record that was modified, removed, inserted or reordered.

use std::path::PathBuf;

use anyhow::bail;

use crate::audit::chain::verify;
use crate::audit::store::Store;

#[derive(clap::Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(clap::Subcommand)]
enum AuditCommand {
    /// Verify the hash chains; exit 1 if anything is wrong.
    Verify {
        /// The gateway's state directory (holding audit.db).
        #[arg(long, conflicts_with = "db")]
        state_dir: Option<PathBuf>,
        /// The audit database itself.
        #[arg(long)]
        db: Option<PathBuf>,
    },
}

pub async fn run(args: AuditArgs) -> anyhow::Result<()> {
    match args.command {
        AuditCommand::Verify { state_dir, db } => {
            let path = match (db, state_dir) {
                (Some(db), _) => db,
                (None, Some(dir)) => dir.join("audit.db"),
                (None, None) => bail!("give --state-dir or --db"),
            };
            if !path.exists() {
                bail!("{} does not exist", path.display());
            }
            let store = Store::open(&path).await?;
            let mut bad = 0;
            for instance in store.instances().await? {
                match verify(&store.chain(&instance).await?) {
                    Ok(n) => println!("ok: {instance}: {n} records, chain intact"),
                    Err(e) => {
                        bad += 1;
                        println!("TAMPERED: {e}");
                    }
                }
            }
            if bad > 0 {
                bail!("{bad} chain(s) failed verification");
            }
            Ok(())
        }
    }
}
