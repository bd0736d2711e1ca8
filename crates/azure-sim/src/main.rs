//! `azure-sim serve`: the simulator as its own process.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "azure-sim",
    version,
    about = "A simulator of Entra ID, ARM, Key Vault and Graph for testing Portcullis"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the simulator over TLS until interrupted.
    Serve {
        /// Address to listen on. Keep it on loopback: the control endpoints are unauthenticated.
        #[arg(long, default_value = "127.0.0.1:8440")]
        listen: SocketAddr,
        /// Directory for the CA (ca.pem, kept across starts) and the state file.
        #[arg(long)]
        tls_dir: Option<PathBuf>,
        /// YAML configuration (principals, APIs, paging, LRO pacing).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Where to write the state (URLs, ids, client secrets) as JSON, mode 0600.
        /// Defaults to TLS_DIR/sim.json when --tls-dir is given.
        #[arg(long)]
        state_file: Option<PathBuf>,
        /// No artificial delays: long-running operations finish on the first poll.
        #[arg(long)]
        fast: bool,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let Command::Serve {
        listen,
        tls_dir,
        config,
        state_file,
        fast,
    } = Cli::parse().command;
    let mut cfg = match &config {
        Some(path) => azure_sim::SimConfig::load(path)?,
        None => azure_sim::SimConfig::default(),
    };
    if fast {
        cfg = cfg.fast();
    }
    let sim = azure_sim::Simulator::start(azure_sim::SimOptions {
        config: cfg,
        listen,
        tls_dir: tls_dir.clone(),
        extra_names: Vec::new(),
    })
    .await?;
    let state_file = state_file.or_else(|| tls_dir.as_ref().map(|d| d.join("sim.json")));
    if let Some(path) = &state_file {
        let state = serde_json::to_string_pretty(&sim.state_with_credentials())?;
        write_private(path, &state).with_context(|| format!("writing {}", path.display()))?;
    }
    eprintln!("azure-sim listening on {}", sim.url());
    eprintln!("  tenant        {}", sim.tenant_id());
    eprintln!("  subscription  {}", sim.subscription_id());
    if let Some(ca) = sim.ca_path() {
        eprintln!("  CA            {}", ca.display());
    }
    if let Some(path) = &state_file {
        eprintln!(
            "  state         {} (contains client secrets)",
            path.display()
        );
    }
    tokio::signal::ctrl_c().await?;
    sim.shutdown();
    Ok(())
}

fn write_private(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(contents.as_bytes())
}
