//! A simulator of the Azure surfaces Portcullis fronts (Entra ID, Azure Resource Manager,
//! Key Vault, Microsoft Graph, managed identity), speaking their wire formats over TLS from
//! in-memory state, for tests and for `portcullis demo`.
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! let sim = azure_sim::Simulator::start(azure_sim::SimOptions::default()).await?;
//! println!("ARM, Entra and Key Vault at {}", sim.url());
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
// Handlers answer errors as ready-made responses; boxing them would buy nothing in a test double.
#![allow(clippy::result_large_err)]

pub mod arm;
pub mod auth;
pub mod calls;
pub mod config;
pub mod control;
pub mod entra;
pub mod faults;
pub mod graph;
pub mod keyvault;
pub mod server;
pub mod sim;
pub mod tls;
pub mod wire;
pub mod world;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use calls::{CallRecord, Caller, Service};
pub use config::{PrincipalKind, SimConfig};
pub use entra::token::MintRequest;
pub use faults::Faults;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// How to start a simulator.
pub struct SimOptions {
    pub config: SimConfig,
    /// Port 0 picks a free port.
    pub listen: SocketAddr,
    /// Where the CA is kept (and reused); without it, the CA lives in memory only.
    pub tls_dir: Option<PathBuf>,
    /// More names for the server certificate.
    pub extra_names: Vec<String>,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            config: SimConfig::default(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls_dir: None,
            extra_names: Vec::new(),
        }
    }
}

/// A running simulator. Dropping it stops it.
pub struct Simulator {
    sim: Arc<Sim>,
    addr: SocketAddr,
    ca_pem: String,
    ca_path: Option<PathBuf>,
    shutdown: watch::Sender<bool>,
}

use sim::Sim;

impl Simulator {
    /// Binds `options.listen` and serves until dropped or shut down.
    pub async fn start(options: SimOptions) -> Result<Simulator, StartError> {
        let listener =
            TcpListener::bind(options.listen)
                .await
                .map_err(|source| StartError::Bind {
                    addr: options.listen,
                    source,
                })?;
        Self::from_listener(listener, options).await
    }

    /// Serves on an already bound listener.
    pub async fn from_listener(
        listener: TcpListener,
        options: SimOptions,
    ) -> Result<Simulator, StartError> {
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: options.listen,
            source,
        })?;
        let ca = match &options.tls_dir {
            Some(dir) => {
                tls::DevCa::load_or_create(dir, "Azure simulator CA (Portcullis development)")?
            }
            None => tls::DevCa::generate("Azure simulator CA (Portcullis development)")?,
        };
        let mut names: Vec<String> = tls::DEFAULT_SERVER_NAMES
            .iter()
            .map(|s| s.to_string())
            .collect();
        names.extend(options.extra_names.iter().cloned());
        let ip = addr.ip().to_string();
        if !addr.ip().is_unspecified() && !names.contains(&ip) {
            names.push(ip);
        }
        let identity = ca.issue_server(&names)?;
        let server_config = identity.server_config()?;
        let ca_path = match &options.tls_dir {
            Some(dir) => {
                let path = dir.join("ca.pem");
                let server_path = dir.join("server.pem");
                std::fs::write(&server_path, &identity.cert_pem).map_err(|source| {
                    StartError::Write {
                        path: server_path,
                        source,
                    }
                })?;
                Some(path)
            }
            None => None,
        };
        let host = match addr.ip() {
            ip if ip.is_unspecified() => format!("127.0.0.1:{}", addr.port()),
            std::net::IpAddr::V6(v6) => format!("[{v6}]:{}", addr.port()),
            std::net::IpAddr::V4(v4) => format!("{v4}:{}", addr.port()),
        };
        let sim = Arc::new(Sim::new(options.config, format!("https://{host}")));
        let (shutdown, rx) = watch::channel(false);
        tokio::spawn(server::run(listener, server_config, sim.clone(), rx));
        Ok(Simulator {
            sim,
            addr,
            ca_pem: ca.cert_pem().to_owned(),
            ca_path,
            shutdown,
        })
    }

    /// `https://127.0.0.1:{port}`: ARM, Entra (the authority), Graph and Key Vault by path.
    pub fn url(&self) -> &str {
        &self.sim.base_url
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The CA certificate clients must trust.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Where the CA certificate was written, when a TLS directory was given.
    pub fn ca_path(&self) -> Option<&PathBuf> {
        self.ca_path.as_ref()
    }

    pub fn config(&self) -> &SimConfig {
        &self.sim.config
    }

    pub fn tenant_id(&self) -> String {
        self.sim.config.tenant_id.to_string()
    }

    pub fn subscription_id(&self) -> String {
        self.sim.config.subscription_id.to_string()
    }

    /// A vault's data-plane URL by path prefix (loopback use).
    pub fn vault_url(&self, vault: &str) -> String {
        format!("{}/keyvault/{vault}", self.sim.base_url)
    }

    pub fn mint(&self, request: MintRequest) -> Result<String, entra::token::MintError> {
        entra::token::mint(&self.sim, request).map(|t| t.token)
    }

    /// Signs a JWS signing input (`header.payload`, as given: padding, odd alphabets,
    /// duplicate keys and all) with the current signing key, RS256, and returns the compact
    /// token. For tests that a relying party refuses hostile tokens the real key signed on
    /// their shape, not merely on their signature. The signing `kid` is `published_kids()[0]`.
    pub fn sign_compact(&self, signing_input: &str) -> String {
        let key = self.sim.keys.signer();
        let signature = jsonwebtoken::crypto::sign(
            signing_input.as_bytes(),
            &key.encoding,
            jsonwebtoken::Algorithm::RS256,
        )
        .expect("RS256 signing with a generated key does not fail");
        format!("{signing_input}.{signature}")
    }

    /// A token for `principal` on `audience`, with the API's own version and lifetime.
    pub fn token(
        &self,
        principal: &str,
        audience: &str,
    ) -> Result<String, entra::token::MintError> {
        self.mint(MintRequest {
            principal: principal.to_owned(),
            audience: audience.to_owned(),
            version: None,
            lifetime_secs: None,
            not_before_offset_secs: 0,
            client_app: None,
            claims: Default::default(),
            unpublished_key: false,
        })
    }

    /// Registers a certificate (PEM) as a credential of app `principal`; returns its
    /// SHA-256 thumbprint. The app can then authenticate with certificate assertions.
    pub fn register_certificate(
        &self,
        principal: &str,
        pem: &str,
    ) -> Result<String, entra::assertion::RegisterError> {
        self.sim.credentials.add_certificate(principal, pem)
    }

    /// Trusts tokens from `issuer` with subject `subject` as app `principal` (workload
    /// identity federation). The simulator verifies only tokens it issued itself.
    pub fn add_federated_credential(&self, principal: &str, issuer: &str, subject: &str) {
        self.sim.credentials.add_federated(
            principal,
            entra::assertion::Federated {
                issuer: issuer.to_owned(),
                subject: subject.to_owned(),
            },
        );
    }

    /// The v2 issuer (`{url}/{tenant}/v2.0`), e.g. to trust it for federated credentials.
    pub fn v2_issuer(&self) -> String {
        self.sim.v2_issuer()
    }

    /// Rotates the signing key; returns the new signing `kid`.
    pub fn rotate_keys(&self, retire_previous: bool) -> String {
        self.sim.keys.rotate(retire_previous)
    }

    pub fn published_kids(&self) -> Vec<String> {
        self.sim.keys.kids()
    }

    pub fn set_faults(&self, faults: Faults) -> Result<(), faults::FaultError> {
        self.sim.faults.set(faults)
    }

    /// Every request served after sequence number `since` (0: all kept).
    pub fn calls_since(&self, since: u64) -> Vec<CallRecord> {
        self.sim.calls.since(since)
    }

    pub fn last_call_seq(&self) -> u64 {
        self.sim.calls.last_seq()
    }

    /// The current value of a Key Vault secret (tests use it to check masking).
    pub fn secret_value(&self, vault: &str, name: &str) -> Option<String> {
        let world = self.sim.world();
        let v = world.vaults.get(&vault.to_ascii_lowercase())?;
        v.get(name)
            .and_then(|s| s.versions.last())
            .map(|v| v.value.clone())
    }

    /// A storage account's current keys.
    pub fn storage_keys(&self, account_id: &str) -> Vec<String> {
        let world = self.sim.world();
        world
            .storage_keys
            .get(&account_id.to_ascii_lowercase())
            .map(|k| k.iter().map(|k| k.value.clone()).collect())
            .unwrap_or_default()
    }

    /// Whether a resource (by ARM id) exists.
    pub fn resource_exists(&self, id: &str) -> bool {
        self.sim
            .world()
            .resources
            .contains_key(&id.to_ascii_lowercase())
    }

    /// The description `/_sim/state` gives, plus every app's client secret and the managed
    /// identity header: for the state file a separate process reads. Handle as a credential.
    pub fn state_with_credentials(&self) -> Value {
        let mut state = control::state(&self.sim);
        state["ca_pem"] = json!(self.ca_pem);
        state["ca_path"] = json!(self.ca_path);
        state["identity_header"] = json!(self.sim.config.identity_header);
        state["client_secrets"] = self
            .sim
            .config
            .principals
            .iter()
            .filter_map(|p| Some((p.name.clone(), json!(p.secret.as_ref()?))))
            .collect::<serde_json::Map<_, _>>()
            .into();
        state
    }

    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.shutdown();
    }
}
