//! `portcullis demo`: the whole product on one machine with no Azure account. It starts the
//! Azure simulator, writes a real configuration for the gateway in front of it (the demo
//! policy is `policies/demo.yaml`), starts the gateway, mints demo tokens, and prints a
//! tour of ready-to-paste commands.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use azure_sim::{SimOptions, Simulator};

use super::serve;
use crate::config;

/// The demo's policy, as shipped.
const DEMO_POLICY: &str = include_str!("../../../../policies/demo.yaml");
/// The pack the demo policy includes.
const AGENT_BASELINE: &str = include_str!("../../../../policies/agent-baseline.yaml");

#[derive(clap::Args)]
pub struct DemoArgs {
    /// The gateway's agent-facing listener.
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// The gateway's admin listener.
    #[arg(long, default_value = "127.0.0.1:9443")]
    admin_listen: SocketAddr,
    /// Where the simulator listens (loopback only: its control endpoints are unauthenticated).
    #[arg(long, default_value = "127.0.0.1:8440")]
    sim_listen: SocketAddr,
    /// Directory for the demo's configuration, CAs, secrets and state.
    #[arg(long, default_value = ".portcullis/demo")]
    dir: PathBuf,
    /// Also write the KEY=value lines (URLs, CA path, tokens) here; they are always written
    /// to DIR/demo.env.
    #[arg(long)]
    env_file: Option<PathBuf>,
    /// Stop after printing the tour (for scripted checks).
    #[arg(long, hide = true)]
    exit_after_tour: bool,
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
        .open(path)
        .and_then(|mut f| f.write_all(contents.as_bytes()))
        .with_context(|| format!("writing {}", path.display()))
}

/// The gateway configuration the demo runs, pointing at the simulator.
fn demo_config(sim: &Simulator, args: &DemoArgs) -> String {
    let api = sim
        .config()
        .api_for("api://portcullis")
        .expect("the simulator registers the gateway's API")
        .app_id;
    let app = |name: &str| {
        sim.config()
            .principal(name)
            .and_then(|p| p.app_id)
            .map(|a| a.to_string())
            .unwrap_or_default()
    };
    format!(
        r#"# Written by `portcullis demo`: the gateway in front of the Azure simulator.
listen:
  gateway: "{listen}"
  admin: "{admin}"
state_dir: state
# Vaults are also served at https://{{vault}}.vault.localhost (*.localhost is this
# machine, RFC 6761), so Key Vault clients reach them by host name, as in Azure.
public_host: localhost

identity:
  authority: {sim}
  tenant: {tenant}
  # The gateway's API, its client id, and what host-named vaults challenge for.
  audiences: [api://portcullis, {api}, "https://vault.localhost"]
  ca_file: sim/ca.pem
  # Microsoft Graph, for groups past a token's limit and for the names people read
  # (apps' tokens to the gateway carry ids only).
  groups_overage: {{graph_url: {sim}, credential: baseline}}

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

audit:
  # Approvers may read the audit trail through the admin API.
  readers: ["group:{approvers}"]

# The approver console (on the admin listener, /console): people sign in through the
# simulator's sign-in page, as through Entra ID with the console's app registration.
console:
  client_id: {console}
  client_secret: {{file: console.secret}}
{console_url}"#,
        listen = args.listen,
        admin = args.admin_listen,
        sim = sim.url(),
        tenant = sim.tenant_id(),
        baseline = app("portcullis-baseline"),
        elevated = app("portcullis-elevated"),
        approvers = azure_sim::config::derived_id("group", "approvers"),
        console = app("portcullis-console"),
        // Where browsers reach it (the redirect URI is under it); on a port chosen at start,
        // the console takes it from the request instead.
        console_url = match args.admin_listen.port() {
            0 => String::new(),
            port => format!("  url: https://localhost:{port}\n"),
        },
    )
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    for (what, addr) in [
        ("--listen", args.listen),
        ("--admin-listen", args.admin_listen),
        ("--sim-listen", args.sim_listen),
    ] {
        if !addr.ip().is_loopback() {
            anyhow::bail!(
                "the demo listens on loopback only; {what} {addr} is not a loopback address"
            );
        }
    }
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let dir = args.dir.canonicalize()?;
    let sim = Simulator::start(SimOptions {
        listen: args.sim_listen,
        tls_dir: Some(dir.join("sim")),
        ..SimOptions::default()
    })
    .await
    .context("starting the Azure simulator")?;
    for name in ["baseline", "elevated", "console"] {
        let secret = sim
            .config()
            .principal(&format!("portcullis-{name}"))
            .and_then(|p| p.secret.clone())
            .context("the simulator has the gateway's apps")?;
        write_private(&dir.join(format!("{name}.secret")), &secret)?;
    }
    std::fs::write(dir.join("policy.yaml"), DEMO_POLICY)?;
    std::fs::write(dir.join("agent-baseline.yaml"), AGENT_BASELINE)?;
    let config_path = dir.join("portcullis.yaml");
    std::fs::write(&config_path, demo_config(&sim, &args))?;
    let cfg = config::load(&config_path)?;
    let running = serve::start(cfg).await.context("starting the gateway")?;
    let ca = running
        .ca_file
        .clone()
        .context("the demo gateway uses its development CA")?;
    // By name: `portcullis exec` derives the vaults' host names from it.
    let gw = format!("https://localhost:{}", running.gateway_addr.port());
    let admin = format!("https://{}", running.admin_addr);
    let console = format!("https://localhost:{}/console", running.admin_addr.port());
    let token = |p: &str| sim.token(p, "api://portcullis");
    let sub = sim.subscription_id();
    let env = [
        ("PORTCULLIS_URL", gw.clone()),
        ("PORTCULLIS_ADMIN_URL", admin.clone()),
        ("PORTCULLIS_CA", ca.display().to_string()),
        ("SIM_URL", sim.url().to_owned()),
        ("SIM_CA", dir.join("sim/ca.pem").display().to_string()),
        ("DEMO_SUBSCRIPTION", sub.clone()),
        ("AGENT_TOKEN", token("agent")?),
        // The agent's object id: its named sessions are `{name}@{AGENT_OID}`.
        (
            "AGENT_OID",
            sim.config()
                .principal("agent")
                .map(|p| p.object_id.to_string())
                .context("the demo simulator has an agent")?,
        ),
        ("OTHER_AGENT_TOKEN", token("other-agent")?),
        ("APPROVER_TOKEN", token("alice")?),
        ("APPROVER2_TOKEN", token("bob")?),
        // What `portcullis approvals` uses: the person at the terminal is an approver.
        ("PORTCULLIS_TOKEN", token("alice")?),
    ];
    let lines: String = env.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    let env_path = dir.join("demo.env");
    write_private(&env_path, &lines)?;
    if let Some(extra) = &args.env_file {
        write_private(extra, &lines)?;
    }
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "portcullis".into());
    print_tour(&gw, &sub, &env_path, &config_path, &exe, &dir.join("state"));
    println!("The approver console: {console}");
    println!(
        "  (sign in as Alice or Bob on the simulator's page; the browser warns about the demo's"
    );
    println!(
        "  own CA, {}: trust it, or accept the warning)",
        ca.display()
    );
    println!();
    if args.exit_after_tour {
        running.shutdown().await;
        return Ok(());
    }
    println!("Press Ctrl-C to stop.");
    serve::wait_for_signal().await?;
    running.shutdown().await;
    Ok(())
}

fn print_tour(gw: &str, sub: &str, env_path: &Path, config_path: &Path, exe: &str, state: &Path) {
    let rg = format!("{gw}/subscriptions/{sub}/resourceGroups/demo-rg");
    println!("Portcullis demo: the gateway is at {gw}, in front of a simulated Azure.");
    println!(
        "Configuration: {} (policy: policies/demo.yaml)",
        config_path.display()
    );
    println!();
    println!("In another terminal:");
    println!();
    println!("  set -a; . {}; set +a", env_path.display());
    println!("  alias pc='curl -s --cacert $PORTCULLIS_CA -H \"x-portcullis-session: tour\"'");
    println!();
    println!(
        "  # An agent in ai-agents lists what is in demo-rg (the gateway forwards with its own identity)"
    );
    println!(
        "  pc -H \"Authorization: Bearer $AGENT_TOKEN\" '{rg}/resources?api-version=2021-04-01' | jq '.value[].name, .nextLink'"
    );
    println!();
    println!("  # ... and reads the VM");
    println!(
        "  pc -H \"Authorization: Bearer $AGENT_TOKEN\" '{rg}/providers/Microsoft.Compute/virtualMachines/vm1?api-version=2024-07-01' | jq .properties.provisioningState"
    );
    println!();
    println!("  # Deleting it is denied by policy, in ARM's own error shape");
    println!(
        "  pc -X DELETE -H \"Authorization: Bearer $AGENT_TOKEN\" '{rg}/providers/Microsoft.Compute/virtualMachines/vm1?api-version=2024-07-01' | jq .error.code"
    );
    println!();
    println!(
        "  # Key Vault through the gateway, by path or by host name as in Azure: agents list and"
    );
    println!("  # read secrets, but values arrive masked");
    println!(
        "  pc -H \"Authorization: Bearer $AGENT_TOKEN\" '{gw}/keyvault/demo-kv/secrets?api-version=7.4' | jq '.value[].id'"
    );
    let vault = gw.replacen("https://", "https://demo-kv.vault.", 1);
    println!(
        "  pc -H \"Authorization: Bearer $AGENT_TOKEN\" '{vault}/secrets/db-password?api-version=7.4' | jq .value"
    );
    println!();
    let create = format!(
        "-X PUT -H \"Authorization: Bearer $AGENT_TOKEN\" -H 'content-type: application/json' -d '{{\"location\":\"eastus\"}}' '{rg}/providers/Microsoft.Storage/storageAccounts/agentstore?api-version=2023-05-01'"
    );
    println!(
        "  # Creating a storage account in demo-rg waits for an approver. Agents are held up to"
    );
    println!(
        "  # 60 s, then answered as Azure answers a long-running create: 202 and a status URL"
    );
    println!("  # their SDK polls until the approver decides. (This one says it will not wait.)");
    println!(
        "  pc {create} -H 'x-portcullis-wait: 0' -H 'x-portcullis-reason: the nightly export needs a bucket' -o /dev/null -D - | grep -iE '^(HTTP|azure-asyncoperation|x-portcullis-approval)'"
    );
    println!(
        "  # An approver (alice; PORTCULLIS_TOKEN in demo.env is hers) sees it and approves it"
    );
    println!("  {exe} approvals list");
    println!(
        "  {exe} approvals approve \"$({exe} approvals list --ids | head -1)\" --comment 'ok for the demo'"
    );
    println!(
        "  # The agent's SDK polls the status URL, or the agent sends the same request again: it"
    );
    println!("  # goes through once, with the elevated identity");
    println!("  pc {create} -o /dev/null -w '%{{http_code}} (Azure accepted the create)\\n'");
    println!();
    println!("  # An agent in no group is refused; no token at all gets ARM's 401");
    println!(
        "  pc -H \"Authorization: Bearer $OTHER_AGENT_TOKEN\" '{rg}?api-version=2022-09-01' | jq .error.code"
    );
    println!("  pc '{rg}?api-version=2022-09-01' | jq .error.code");
    println!();
    println!("  # What reached \"Azure\", and as whom: the gateway's identity, never the agent's");
    println!(
        "  curl -s --cacert $SIM_CA \"$SIM_URL/_sim/calls\" | jq -c '.calls[] | {{method, path, caller: .caller.name, status}}'"
    );
    println!();
    println!(
        "  # All of it is on the record: the agent's session, replayed (bodies masked), and the chain verified"
    );
    let state = state.display();
    println!("  {exe} sessions list --state-dir {state}");
    // A session an agent names is its own (`tour@{its object id}`): the other agent's
    // refusal above is in a `tour` of its own.
    println!("  {exe} sessions replay \"tour@$AGENT_OID\" --bodies --state-dir {state}");
    println!("  {exe} audit verify --state-dir {state}");
    println!("  # The same trail through the admin API, for approvers (audit.readers)");
    println!(
        "  pc -H \"Authorization: Bearer $APPROVER_TOKEN\" \"$PORTCULLIS_ADMIN_URL/api/sessions\" | jq -c '.value[] | {{id, requests, refused}}'"
    );
    println!("  # What operators graph: requests by decision, action and status (Prometheus)");
    println!("  pc \"$PORTCULLIS_ADMIN_URL/metrics\" | grep '^portcullis_requests_total'");
    println!();
}
