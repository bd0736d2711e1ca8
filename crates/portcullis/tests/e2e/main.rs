//! End-to-end tests of the gateway: a simulator and a gateway per test, each on a free
//! loopback port, talking real TLS; assertions on what the client got and on what the
//! simulator ("Azure") saw.

mod abuse;
mod approvals;
mod audit;
mod audit_attacks;
mod az;
mod batch;
mod bypass;
mod cli;
mod console;
mod crash;
mod credentials;
mod datapath;
mod demo;
mod deploy;
mod deployments;
mod exec;
mod failclosed;
mod hardening;
mod held;
mod identity;
mod lro;
mod masking;
mod names;
mod operability;
mod outcomes;
mod pg_restart;
mod policy_tools;
mod postgres;
mod replicas;
mod store;
mod tokens;

use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;

use azure_sim::{SimConfig, SimOptions, Simulator};
use portcullis::cli::serve::{Running, start};
use reqwest::{Method, StatusCode};
use serde_json::Value;

pub const API: &str = "api-version=2024-07-01";
pub const GATEWAY_API: &str = "api://portcullis";

/// A policy for tests: the demo's, plus VM writes in demo-rg.
pub const TEST_RULES: &str = r#"
  rules:
    - name: agents-write-vms
      effect: allow
      principals: [group:ai-agents]
      actions: [Microsoft.Compute/virtualMachines/write]
      scopes: ["/subscriptions/*/resourceGroups/demo-rg"]
"#;

pub struct Env {
    pub sim: Simulator,
    pub gw: Running,
    pub http: reqwest::Client,
    pub dir: PathBuf,
}

/// Writes what a credential needs into the test directory and returns its YAML (a flow map).
pub type CredentialSetup = Box<dyn Fn(&Simulator, &Path) -> String>;

/// A configuration fragment built at run time, as the `&'static str` [`Setup`] holds.
pub fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// A client configuration trusting the gateway's development CA, offering `alpn`.
pub fn tls_config(env: &Env, alpn: &[&[u8]]) -> std::sync::Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in
        rustls_pki_types::CertificateDer::pem_file_iter(env.gw.ca_file.as_ref().unwrap()).unwrap()
    {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    std::sync::Arc::new(config)
}

pub struct Setup {
    pub sim_config: SimConfig,
    /// The `baseline` credential; a client secret when absent.
    pub credential: Option<CredentialSetup>,
    /// Extra YAML under `policy:` after the include of the demo policy.
    pub rules: &'static str,
    pub public_host: Option<&'static str>,
    /// Use the multi-tenant authority (`common`) with this allow-list instead of the tenant.
    pub allowed_tenants: Option<Vec<String>>,
    /// More top-level YAML for the configuration.
    pub extra: &'static str,
    /// Accept `https://vault.{public_host}` as an audience too (host-routed vaults then
    /// challenge for it, as the Key Vault SDKs' default settings require).
    pub vault_audience: bool,
    /// Turn the approver console on, signing in through the simulator's
    /// `portcullis-console` app.
    pub console: bool,
    /// The admin listener's address (`127.0.0.1:0`: any free port).
    pub admin: Option<String>,
    /// Run the demo's own policy (`policies/demo.yaml` and the pack it includes) instead of
    /// the tests' `policy.yaml`.
    pub demo_policy: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            sim_config: SimConfig::default(),
            credential: None,
            rules: TEST_RULES,
            public_host: None,
            allowed_tenants: None,
            extra: "",
            vault_audience: false,
            console: false,
            admin: None,
            demo_policy: false,
        }
    }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

/// A client trusting the gateway's development CA, optionally resolving a name to it.
pub fn client(ca: &Path, resolve: Option<(&str, std::net::SocketAddr)>) -> reqwest::Client {
    let pem = std::fs::read(ca).unwrap();
    let mut b = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .tls_built_in_root_certs(false)
        .redirect(reqwest::redirect::Policy::none());
    if let Some((host, addr)) = resolve {
        b = b.resolve(host, addr);
    }
    b.build().unwrap()
}

/// Starts a simulator and writes a test directory with its `portcullis.yaml` for `setup`
/// (listening on free loopback ports, state in `state/`); returns both, starting no gateway.
pub async fn prepare(setup: Setup) -> (Simulator, PathBuf) {
    let dir = std::env::temp_dir().join(format!("pc-e2e-{}", uuid_like()));
    std::fs::create_dir_all(&dir).unwrap();
    let sim = Simulator::start(SimOptions {
        config: setup.sim_config,
        tls_dir: Some(dir.join("sim")),
        ..SimOptions::default()
    })
    .await
    .unwrap();
    let app = |n: &str| sim.config().principal(n).unwrap().clone();
    write(
        &dir.join("baseline.secret"),
        app("portcullis-baseline").secret.as_deref().unwrap(),
    );
    write(
        &dir.join("elevated.secret"),
        app("portcullis-elevated").secret.as_deref().unwrap(),
    );
    if setup.demo_policy {
        write(
            &dir.join("policy.yaml"),
            include_str!("../../../../policies/demo.yaml"),
        );
        write(
            &dir.join("agent-baseline.yaml"),
            include_str!("../../../../policies/agent-baseline.yaml"),
        );
    } else {
        write(&dir.join("policy.yaml"), include_str!("policy.yaml"));
    }
    let api = sim.config().api_for(GATEWAY_API).unwrap().app_id;
    let credential = match &setup.credential {
        Some(make) => make(&sim, &dir),
        None => format!(
            "{{type: client_secret, tenant: {}, client_id: {}, client_secret: {{file: baseline.secret}}}}",
            sim.tenant_id(),
            app("portcullis-baseline").app_id.unwrap()
        ),
    };
    let tenant = match &setup.allowed_tenants {
        Some(list) => format!("common\n  allowed_tenants: [{}]", list.join(", ")),
        None => sim.tenant_id(),
    };
    let public_host = setup
        .public_host
        .map(|h| format!("public_host: {h}\n"))
        .unwrap_or_default();
    let vault_audience = match (setup.vault_audience, setup.public_host) {
        (true, Some(h)) => format!(", \"https://vault.{h}\""),
        _ => String::new(),
    };
    let console = if setup.console {
        write(
            &dir.join("console.secret"),
            app("portcullis-console").secret.as_deref().unwrap(),
        );
        format!(
            "console:\n  client_id: {}\n  client_secret: {{file: console.secret}}\n",
            app("portcullis-console").app_id.unwrap()
        )
    } else {
        String::new()
    };
    let yaml = format!(
        "listen: {{gateway: \"127.0.0.1:0\", admin: \"{admin}\"}}\n{public_host}state_dir: state\nidentity:\n  authority: {sim}\n  tenant: {tenant}\n  audiences: [{GATEWAY_API}, {api}{vault_audience}]\n  ca_file: sim/ca.pem\n  groups_overage: {{graph_url: {sim}, credential: baseline}}\nupstream:\n  arm_url: {sim}\n  keyvault_url: \"{sim}/keyvault/{{vault}}\"\n  ca_file: sim/ca.pem\n  credentials:\n    baseline: {credential}\n    elevated: {{type: client_secret, tenant: {tid}, client_id: {elevated}, client_secret: {{file: elevated.secret}}}}\n{console}{extra}policy:\n  include: policy.yaml\n{rules}",
        sim = sim.url(),
        admin = setup.admin.as_deref().unwrap_or("127.0.0.1:0"),
        rules = setup.rules,
        extra = setup.extra,
        tid = sim.tenant_id(),
        elevated = app("portcullis-elevated").app_id.unwrap(),
    );
    write(&dir.join("portcullis.yaml"), &yaml);
    (sim, dir)
}

impl Env {
    /// Every audit record in the gateway's store, chain by chain, each in chain order.
    pub async fn audit_records(&self) -> Vec<portcullis::audit::record::AuditRecord> {
        let store = portcullis::audit::store::Store::open(&self.dir.join("state/audit.db"))
            .await
            .unwrap();
        let mut all = Vec::new();
        for i in store.instances().await.unwrap() {
            all.extend(store.chain(&i).await.unwrap().into_iter().map(|l| l.record));
        }
        all
    }

    pub async fn start() -> Env {
        Self::with(Setup::default()).await
    }

    pub async fn with(setup: Setup) -> Env {
        Self::starting(setup).await.unwrap()
    }

    /// A gateway whose configuration names its admin listener's port before it starts (the
    /// console's own URL and sign-in redirect): `setup` is given a port that was free a
    /// moment ago. A test running beside this one can take it first; then the gateway cannot
    /// bind it, and another port is tried.
    pub async fn with_admin_port(mut setup: impl FnMut(u16) -> Setup) -> Env {
        let mut last = None;
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .unwrap()
                .port();
            match Self::starting(setup(port)).await {
                Ok(env) => return env,
                Err(e) if format!("{e:#}").contains("Address already in use") => last = Some(e),
                Err(e) => panic!("{e:#}"),
            }
        }
        panic!("no free admin port in five tries: {:#}", last.unwrap())
    }

    async fn starting(setup: Setup) -> anyhow::Result<Env> {
        let (sim, dir) = prepare(setup).await;
        let config = dir.join("portcullis.yaml");
        let cfg = portcullis::config::load(&config).unwrap_or_else(|e| {
            panic!(
                "{e}\n{}",
                std::fs::read_to_string(&config).unwrap_or_default()
            )
        });
        let gw = start(cfg).await?;
        let http = client(gw.ca_file.as_ref().unwrap(), None);
        Ok(Env { sim, gw, http, dir })
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.gw.gateway_addr)
    }

    pub fn rg(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/demo-rg",
            self.sim.subscription_id()
        )
    }

    pub fn token(&self, principal: &str) -> String {
        self.sim.token(principal, GATEWAY_API).unwrap()
    }

    pub async fn call(
        &self,
        token: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let url = if path.starts_with("https://") {
            path.to_owned()
        } else {
            self.url(path)
        };
        let mut req = self.http.request(method, url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        send(req).await
    }

    /// What reached the simulated ARM since the call log's `since`.
    /// The ARM and Key Vault requests the simulator served since `since` (not the
    /// gateway's own token and Graph calls).
    pub fn azure_calls(&self, since: u64) -> Vec<azure_sim::calls::CallRecord> {
        self.sim
            .calls_since(since)
            .into_iter()
            .filter(|c| {
                matches!(
                    c.service,
                    azure_sim::Service::Arm | azure_sim::Service::KeyVault
                )
            })
            .collect()
    }

    pub fn arm_calls(&self, since: u64) -> Vec<azure_sim::calls::CallRecord> {
        self.sim
            .calls_since(since)
            .into_iter()
            .filter(|c| c.service == azure_sim::Service::Arm)
            .collect()
    }

    pub async fn agent(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let t = self.token("agent");
        self.call(Some(&t), method, path, body).await
    }
}

pub async fn send(req: reqwest::RequestBuilder) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let resp = req.send().await.expect("the gateway answers");
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    (status, headers, body)
}

/// The `portcullis` binary, quiet about backtraces.
pub fn portcullis_cli() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"));
    c.env("RUST_BACKTRACE", "0");
    c
}

/// Runs a command to its end: whether it succeeded, and what it said (stdout, then stderr).
pub fn outcome(cmd: &mut std::process::Command) -> (bool, String) {
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `portcullis audit verify --state-dir STATE`.
pub fn verify_cli(state: &std::path::Path) -> (bool, String) {
    outcome(
        portcullis_cli()
            .args(["audit", "verify", "--state-dir"])
            .arg(state),
    )
}

fn uuid_like() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{n:x}-{}", std::process::id())
}
