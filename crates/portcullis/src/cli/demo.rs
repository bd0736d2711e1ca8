//! `portcullis demo`: the whole product on one machine with no Azure account. It starts the
//! Azure simulator, writes a real configuration for the gateway in front of it, starts the
//! gateway with the demo policy (a copy of `policies/demo.yaml` the user may edit, or the
//! user's own with `--policy`), mints demo tokens, and prints the tour: `tour.sh`, the same
//! text README.md carries under "A tour" (a test keeps the two equal).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use azure_sim::{SimOptions, Simulator};
use sha2::{Digest, Sha256};

use super::serve;
use crate::config;

/// The demo's policy, as shipped.
const DEMO_POLICY: &str = include_str!("../../../../policies/demo.yaml");
/// The pack the demo policy includes.
const AGENT_BASELINE: &str = include_str!("../../../../policies/agent-baseline.yaml");
/// The tour the demo prints, word for word as README.md's "A tour".
const TOUR: &str = include_str!("tour.sh");
/// Where the demo keeps its files unless `--dir` says otherwise; the tour's first line loads
/// `{DEFAULT_DIR}/demo.env`.
const DEFAULT_DIR: &str = ".portcullis/demo";
/// Digests of the policy copies the demo wrote, so that it replaces only copies nobody edited.
const SHIPPED_DIGESTS: &str = "shipped.sha256";

#[derive(clap::Args)]
pub struct DemoArgs {
    /// The gateway's agent-facing listener (loopback only; agents use https://localhost:PORT).
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// The gateway's admin listener: the approvals and audit API, the console, /metrics
    /// (loopback only).
    #[arg(long, default_value = "127.0.0.1:9443")]
    admin_listen: SocketAddr,
    /// Where the simulator listens (loopback only: its control endpoints are unauthenticated).
    #[arg(long, default_value = "127.0.0.1:8440")]
    sim_listen: SocketAddr,
    /// Directory for the demo's configuration, CAs, secrets, policy and state (the audit
    /// trail); created if missing, and kept between runs.
    #[arg(long, default_value = DEFAULT_DIR)]
    dir: PathBuf,
    /// Run this policy file instead of the demo's copy of policies/demo.yaml (its `include:`
    /// is relative to it). The gateway reloads it when it changes.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Also write the KEY=value lines (URLs, CA path, tokens) here; they are always written
    /// to DIR/demo.env.
    #[arg(long, value_name = "PATH")]
    env_file: Option<PathBuf>,
    /// Stop after printing the tour, instead of serving until Ctrl-C (for scripted checks).
    #[arg(long)]
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

/// The gateway configuration the demo runs, pointing at the simulator; `policy` is the
/// policy file (relative to the demo's directory, or absolute).
fn demo_config(sim: &Simulator, args: &DemoArgs, policy: &Path) -> String {
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
  include: {policy}

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
        // A JSON string is a YAML one, whatever characters the path holds.
        policy = serde_json::Value::from(policy.display().to_string()),
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

/// Which policy the demo runs, and why that one.
enum DemoPolicy {
    /// The user's own file (`--policy`).
    Given(PathBuf),
    /// The demo's copies of the shipped files, as shipped.
    Shipped,
    /// The demo's copies, of which these someone edited: left as they are.
    Edited(Vec<&'static str>),
}

impl DemoPolicy {
    /// The file the configuration includes, and what to tell the person at the terminal.
    fn describe(&self, dir: &Path) -> (PathBuf, String) {
        let copy = dir.join("policy.yaml");
        match self {
            DemoPolicy::Given(path) => (path.clone(), format!("{} (--policy)", path.display())),
            DemoPolicy::Shipped => (
                "policy.yaml".into(),
                format!(
                    "{} (policies/demo.yaml as shipped: edit it and the gateway reloads it; \
                     the demo keeps your edits)",
                    copy.display()
                ),
            ),
            DemoPolicy::Edited(names) => (
                "policy.yaml".into(),
                format!(
                    "{} (edited: the demo left {} as you changed {}; delete {} to get the \
                     shipped {} back)",
                    copy.display(),
                    names.join(" and "),
                    if names.len() == 1 { "it" } else { "them" },
                    if names.len() == 1 { "it" } else { "them" },
                    if names.len() == 1 { "file" } else { "files" },
                ),
            ),
        }
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    crate::audit::chain::hex(&Sha256::digest(bytes))
}

/// Writes the demo's copies of the shipped policy files into `dir`, except a copy someone
/// edited: a copy is (re)written only when it is absent or still byte for byte what the
/// demo wrote last (its digest is in DIR/shipped.sha256, in `sha256sum` format), so a newer
/// build's policy replaces an untouched copy and never a person's edits.
fn place_shipped_policy(dir: &Path) -> anyhow::Result<DemoPolicy> {
    let digests_path = dir.join(SHIPPED_DIGESTS);
    let mut digests: std::collections::BTreeMap<String, String> =
        match std::fs::read_to_string(&digests_path) {
            Ok(text) => text
                .lines()
                .filter_map(|l| l.split_once("  "))
                .map(|(digest, name)| (name.to_owned(), digest.to_owned()))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Default::default(),
            Err(e) => {
                return Err(e).with_context(|| format!("reading {}", digests_path.display()));
            }
        };
    let mut edited = Vec::new();
    for (name, shipped) in [
        ("policy.yaml", DEMO_POLICY),
        ("agent-baseline.yaml", AGENT_BASELINE),
    ] {
        let path = dir.join(name);
        let on_disk = match std::fs::read(&path) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        match on_disk {
            Some(bytes) if bytes == shipped.as_bytes() => {}
            Some(bytes) if digests.get(name) != Some(&sha256_hex(&bytes)) => {
                edited.push(name);
                continue;
            }
            _ => std::fs::write(&path, shipped)
                .with_context(|| format!("writing {}", path.display()))?,
        }
        digests.insert(name.to_owned(), sha256_hex(shipped.as_bytes()));
    }
    let lines: String = digests
        .iter()
        .map(|(name, digest)| format!("{digest}  {name}\n"))
        .collect();
    std::fs::write(&digests_path, lines)
        .with_context(|| format!("writing {}", digests_path.display()))?;
    Ok(if edited.is_empty() {
        DemoPolicy::Shipped
    } else {
        DemoPolicy::Edited(edited)
    })
}

/// A `KEY=value` line a POSIX shell reads back as written: values with anything beyond
/// URL and token characters (a path with a space) are single-quoted.
fn env_line(key: &str, value: &str) -> String {
    let plain = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_-.,/:@%+=~".contains(c));
    if plain {
        format!("{key}={value}\n")
    } else {
        format!("{key}='{}'\n", value.replace('\'', r"'\''"))
    }
}

/// The tour to print: README.md's, word for word, unless `--dir` moved demo.env.
fn tour(dir_arg: &Path, env_path: &Path) -> String {
    if dir_arg == Path::new(DEFAULT_DIR) {
        return TOUR.to_owned();
    }
    let quoted = env_line("x", &env_path.display().to_string());
    TOUR.replacen(
        &format!("{DEFAULT_DIR}/demo.env"),
        quoted.trim_end().trim_start_matches("x="),
        1,
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
    // Before anything starts: a --policy that is not there is the user's typo.
    let given_policy = match &args.policy {
        Some(p) => Some(
            p.canonicalize()
                .with_context(|| format!("--policy {}", p.display()))?,
        ),
        None => None,
    };
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
    let policy = match given_policy {
        Some(path) => DemoPolicy::Given(path),
        None => place_shipped_policy(&dir)?,
    };
    let (policy_file, policy_said) = policy.describe(&dir);
    let config_path = dir.join("portcullis.yaml");
    std::fs::write(&config_path, demo_config(&sim, &args, &policy_file))?;
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
    let bin_dir = std::env::current_exe()
        .context("the path of this binary")?
        .parent()
        .context("the directory of this binary")?
        .to_owned();
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
        // What the tour reads: the demo's directory (configuration, state), and the binary
        // the demo runs as, first on PATH, so that the tour never rebuilds it.
        ("DEMO_DIR", dir.display().to_string()),
        ("PORTCULLIS_BIN_DIR", bin_dir.display().to_string()),
    ];
    let lines: String = env.iter().map(|(k, v)| env_line(k, v)).collect();
    let env_path = dir.join("demo.env");
    write_private(&env_path, &lines)?;
    if let Some(extra) = &args.env_file {
        write_private(extra, &lines)?;
    }
    println!("Portcullis demo: the gateway is at {gw}, in front of a simulated Azure.");
    println!(
        "Configuration: {} (written at every start)",
        config_path.display()
    );
    println!("Policy: {policy_said}");
    println!();
    let here = std::env::current_dir().context("the current directory")?;
    println!(
        "In another terminal, in {}, paste the tour (README.md, \"A tour\"{}):",
        here.display(),
        if args.dir == Path::new(DEFAULT_DIR) {
            ""
        } else {
            ", loading --dir's demo.env"
        }
    );
    println!();
    print!("{}", tour(&args.dir, &env_path));
    println!();
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
    let signal = serve::wait_for_signal().await?;
    eprintln!("portcullis: {signal}: stopping");
    let stopped = running.shutdown().await;
    eprintln!("portcullis: stopped; {stopped}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pc-demo-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_shipped_policy_is_written_once_and_an_edit_is_kept() {
        let dir = scratch("edit");
        assert!(matches!(
            place_shipped_policy(&dir).unwrap(),
            DemoPolicy::Shipped
        ));
        let copy = dir.join("policy.yaml");
        assert_eq!(std::fs::read_to_string(&copy).unwrap(), DEMO_POLICY);
        assert!(matches!(
            place_shipped_policy(&dir).unwrap(),
            DemoPolicy::Shipped
        ));
        let mine = format!("{DEMO_POLICY}\n  # mine\n");
        std::fs::write(&copy, &mine).unwrap();
        match place_shipped_policy(&dir).unwrap() {
            DemoPolicy::Edited(names) => assert_eq!(names, ["policy.yaml"]),
            _ => panic!("an edited copy is the user's"),
        }
        assert_eq!(std::fs::read_to_string(&copy).unwrap(), mine);
        // Deleted, it comes back as shipped.
        std::fs::remove_file(&copy).unwrap();
        assert!(matches!(
            place_shipped_policy(&dir).unwrap(),
            DemoPolicy::Shipped
        ));
        assert_eq!(std::fs::read_to_string(&copy).unwrap(), DEMO_POLICY);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_copy_an_older_demo_wrote_is_replaced_by_the_shipped_one() {
        let dir = scratch("older");
        let older = "rules: []\n";
        std::fs::write(dir.join("agent-baseline.yaml"), older).unwrap();
        // Unrecorded, it may be anyone's: kept.
        assert!(matches!(
            place_shipped_policy(&dir).unwrap(),
            DemoPolicy::Edited(_)
        ));
        std::fs::write(
            dir.join(SHIPPED_DIGESTS),
            format!("{}  agent-baseline.yaml\n", sha256_hex(older.as_bytes())),
        )
        .unwrap();
        assert!(matches!(
            place_shipped_policy(&dir).unwrap(),
            DemoPolicy::Shipped
        ));
        assert_eq!(
            std::fs::read_to_string(dir.join("agent-baseline.yaml")).unwrap(),
            AGENT_BASELINE
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn env_lines_read_back_in_a_shell_as_written() {
        assert_eq!(
            env_line("SIM_URL", "https://127.0.0.1:8440"),
            "SIM_URL=https://127.0.0.1:8440\n"
        );
        assert_eq!(
            env_line("DEMO_DIR", "/home/A B/it's"),
            "DEMO_DIR='/home/A B/it'\\''s'\n"
        );
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "{}printf %s \"$DEMO_DIR\"",
                env_line("DEMO_DIR", "/home/A B/it's $HOME `x`")
            ))
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "/home/A B/it's $HOME `x`"
        );
    }

    #[test]
    fn the_tour_loads_the_env_file_of_the_dir_given() {
        let tour_default = tour(
            Path::new(DEFAULT_DIR),
            Path::new("/x/.portcullis/demo/demo.env"),
        );
        assert_eq!(tour_default, TOUR);
        assert!(TOUR.contains(&format!(". {DEFAULT_DIR}/demo.env;")));
        let moved = tour(
            Path::new("/tmp/my demo"),
            Path::new("/tmp/my demo/demo.env"),
        );
        assert!(moved.contains(". '/tmp/my demo/demo.env';"), "{moved}");
        assert!(!moved.contains(DEFAULT_DIR));
    }
}
