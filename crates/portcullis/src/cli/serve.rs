//! `portcullis serve --config FILE`: the gateway, until SIGINT or SIGTERM.

use std::path::PathBuf;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config;
use crate::server::{self, Listeners};

#[derive(clap::Args)]
pub struct ServeArgs {
    /// The YAML configuration file.
    #[arg(long, short, env = "PORTCULLIS_CONFIG")]
    config: PathBuf,
}

/// Binds, builds and serves a configuration; returns the shutdown switch and the server task.
pub async fn start(cfg: config::Config) -> anyhow::Result<Running> {
    for w in &cfg.warnings {
        tracing::warn!(warning = %w, "configuration warning");
    }
    let gateway = TcpListener::bind(cfg.listen_gateway)
        .await
        .with_context(|| format!("binding the gateway listener {}", cfg.listen_gateway))?;
    let admin = TcpListener::bind(cfg.listen_admin)
        .await
        .with_context(|| format!("binding the admin listener {}", cfg.listen_admin))?;
    let gateway_addr = gateway.local_addr()?;
    let admin_addr = admin.local_addr()?;
    let (grace, delay) = (cfg.shutdown_grace, cfg.shutdown_delay);
    let built = server::build::build(cfg).await?;
    let approvals = built.gateway.approvals.clone();
    let recorder = built.gateway.recorder.clone();
    let (stop, rx) = watch::channel(false);
    let sweeper = built.gateway.approvals.spawn_sweeper(rx.clone());
    // Hot reload of the policy: SIGHUP, or a change to the configuration or its policy files.
    let reloader = server::reload::spawn(
        built.gateway.clone(),
        built.sources,
        std::time::Duration::from_secs(1),
        rx.clone(),
    );
    let task = tokio::spawn(server::run(
        Listeners { gateway, admin },
        built.tls,
        built.gateway,
        built.admin,
        rx,
        grace,
    ));
    Ok(Running {
        stop,
        task,
        reloader,
        sweeper,
        recorder,
        approvals,
        delay,
        gateway_addr,
        admin_addr,
        ca_file: built.ca_file,
        lock: built.lock,
    })
}

pub struct Running {
    pub stop: watch::Sender<bool>,
    pub task: tokio::task::JoinHandle<()>,
    pub reloader: tokio::task::JoinHandle<()>,
    pub sweeper: tokio::task::JoinHandle<()>,
    pub recorder: crate::audit::writer::Recorder,
    pub approvals: std::sync::Arc<crate::approval::Approvals>,
    /// How long to keep accepting once unready.
    pub delay: std::time::Duration,
    pub gateway_addr: std::net::SocketAddr,
    pub admin_addr: std::net::SocketAddr,
    pub ca_file: Option<PathBuf>,
    /// The state directory and audit chain, held until [`Running::shutdown`] has sealed the
    /// chain, so a second gateway on them is refused.
    pub lock: crate::audit::lock::WriterLock,
}

impl Running {
    /// Graceful: readiness turns false and held requests are let go undecided, their
    /// approvals pending in the store: a request whose approval is presented as a
    /// long-running operation (`approval.style` async, or auto for operations Azure clients
    /// poll) is answered `202` with its status URL, which any replica sharing the store
    /// answers, before or after a restart; any other is answered `503 GatewayShuttingDown`
    /// with `Retry-After`, and its retry waits for the same approval, on any replica. The
    /// listeners stop accepting; in-flight requests get `listen.shutdown_grace` to finish;
    /// the audit writer commits what it was given and seals the chain.
    pub async fn shutdown(self) -> Stopped {
        let held = self.approvals.drain();
        if !self.delay.is_zero() {
            tracing::info!(delay = ?self.delay, "draining: unready, still accepting");
            tokio::time::sleep(self.delay).await;
        }
        let _ = self.stop.send(true);
        let _ = self.task.await;
        let _ = self.reloader.await;
        let _ = self.sweeper.await;
        // Seal what was written: a signed checkpoint of the chain's head.
        if let Err(e) = self.recorder.checkpoint().await {
            tracing::error!(error = %e, "the audit chain could not be sealed at shutdown");
        }
        drop(self.lock);
        Stopped {
            held,
            let_go: self.approvals.let_go(),
        }
    }
}

/// What a shutdown did with the requests held for approval.
#[derive(Debug, Clone, Copy)]
pub struct Stopped {
    /// Held open when shutdown began.
    pub held: usize,
    /// How the held requests let go because of shutdown were answered (those held when it
    /// began, and pending retries that came during `shutdown_delay`).
    pub let_go: crate::approval::service::LetGo,
}

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let crate::approval::service::LetGo {
            accepted,
            unavailable,
        } = self.let_go;
        write!(f, "{} request(s) held for approval", self.held)?;
        if accepted + unavailable == 0 {
            return f.write_str(" at shutdown");
        }
        write!(
            f,
            " at shutdown; answered {accepted} with 202 and a status URL (polls go on, on any replica), \
             {unavailable} with 503 GatewayShuttingDown (the client retries); their approvals stay pending"
        )
    }
}

/// Waits for Ctrl-C (SIGINT) or SIGTERM; says which.
pub async fn wait_for_signal() -> anyhow::Result<&'static str> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.map(|()| "Ctrl-C").map_err(Into::into),
            _ = term.recv() => Ok("SIGTERM"),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await?;
        Ok("Ctrl-C")
    }
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let cfg = config::load(&args.config)?;
    let rules = cfg.policy.rules.len();
    let running = start(cfg).await?;
    eprintln!(
        "portcullis: gateway on https://{}, admin on https://{}, policy from {} ({rules} rules)",
        running.gateway_addr,
        running.admin_addr,
        args.config.display()
    );
    if let Some(ca) = &running.ca_file {
        eprintln!(
            "portcullis: development CA at {} (clients must trust it)",
            ca.display()
        );
    }
    let signal = wait_for_signal().await?;
    eprintln!("portcullis: {signal}: stopping");
    let stopped = running.shutdown().await;
    eprintln!("portcullis: stopped; {stopped}");
    Ok(())
}
