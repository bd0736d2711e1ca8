//! The command line: one file per command group.

pub mod approvals;
pub mod audit;
mod demo;
pub mod exec;
pub mod policy;
pub mod serve;
pub mod sessions;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "portcullis",
    version,
    about = "An identity-aware gateway between AI agents and Azure",
    after_help = "Logs: --log-format text (for people) or json (one object per line, for collectors); \
                  levels from RUST_LOG (default: info for serve, warn otherwise)."
)]
pub struct Cli {
    /// Log lines as text (the default) or json.
    // Global, so every subcommand's help lists it: one line there, values in the text.
    #[arg(
        long,
        global = true,
        env = "PORTCULLIS_LOG_FORMAT",
        default_value = "text",
        value_name = "FORMAT",
        hide_default_value = true,
        hide_possible_values = true
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run everything on this machine with no Azure account: the embedded Azure simulator
    /// and the gateway in front of it, with a tour to paste (README.md, "A tour").
    Demo(demo::DemoArgs),
    /// Run the gateway with a configuration file.
    Serve(serve::ServeArgs),
    /// Check, explain and test policies.
    Policy(policy::PolicyArgs),
    /// Verify, export and prune the audit trail.
    Audit(audit::AuditArgs),
    /// See, approve and deny held requests (through the admin API).
    Approvals(approvals::ApprovalsArgs),
    /// List and replay agents' sessions from the audit trail.
    Sessions(sessions::SessionsArgs),
    /// Run a command (the az CLI, a Python agent, a shell) wired to the gateway: a local
    /// managed-identity token endpoint handing out the agent's token, the gateway's CA, a
    /// private az configuration.
    Exec(exec::ExecArgs),
    /// Print the same wiring as `exec` for a shell to source; serves the token endpoint until
    /// stopped.
    Env(exec::EnvArgs),
}

/// How a failed command's error is printed: `error: ` once, then the error and its causes
/// (`context: cause`), never a backtrace.
pub fn error_text(e: &anyhow::Error) -> String {
    format!("error: {e:#}")
}

pub async fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    let default_level = match cli.command {
        Command::Serve(_) => "info",
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| default_level.into());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        // Each line: time, level, message and fields, and the request span (`request_id`).
        LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
    match cli.command {
        Command::Demo(args) => demo::run(args).await,
        Command::Serve(args) => serve::run(args).await,
        Command::Policy(args) => policy::run(args),
        Command::Audit(args) => audit::run(args).await,
        Command::Approvals(args) => approvals::run(args).await,
        Command::Sessions(args) => sessions::run(args).await,
        Command::Exec(args) => return exec::exec(args).await,
        Command::Env(args) => exec::env(args).await,
    }
    .map(|()| std::process::ExitCode::SUCCESS)
}
