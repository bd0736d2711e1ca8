//! Assembling a gateway from its validated configuration: clients, caches, credentials,
//! the URL-binding key, and the TLS identity.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::azure::rewrite::Binder;
use crate::config::{Config, TenantMode};
use crate::identity::Authenticator;
use crate::identity::directory::Directory;
use crate::identity::jwks::KeyCache;
use crate::identity::overage::GroupResolver;
use crate::mask::Masker;
use crate::pipeline::Gateway;
use crate::upstream::client::HttpClient;
use crate::upstream::credential::TokenProvider;

/// How often every known key set and metadata document is refreshed.
const KEY_REFRESH: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Client(#[from] crate::upstream::client::ClientError),
    #[error(transparent)]
    Tls(#[from] super::tls::TlsError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Audit(#[from] crate::audit::store::StoreError),
    #[error(transparent)]
    AuditWriter(#[from] crate::audit::writer::StartError),
    #[error("audit signing key: {0}")]
    AuditKey(#[from] crate::audit::checkpoint::KeyError),
    #[error(transparent)]
    Lock(#[from] crate::audit::lock::LockError),
}

pub struct Built {
    pub gateway: Arc<Gateway>,
    /// What the admin listener serves from beside the gateway.
    pub admin: super::admin::AdminParts,
    /// What the reloader watches: the policy's files and the TLS certificate.
    pub sources: super::reload::Sources,
    pub tls: Arc<rustls::ServerConfig>,
    /// The development CA clients must trust, when the gateway generated its certificate.
    pub ca_file: Option<PathBuf>,
    /// This gateway's hold on its state directory and audit chain: keep it until the chain
    /// is sealed at shutdown.
    pub lock: crate::audit::lock::WriterLock,
}

/// A 32-byte key kept in the state directory (mode 0600), created on first start, so
/// restarts keep what it signed valid.
fn state_key(dir: &Path, name: &str) -> Result<Vec<u8>, BuildError> {
    let path = dir.join(name);
    let io = |source| BuildError::Io {
        path: path.clone(),
        source,
    };
    if let Ok(existing) = std::fs::read(&path)
        && existing.len() >= 32
    {
        return Ok(existing);
    }
    std::fs::create_dir_all(dir).map_err(|source| BuildError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let key: [u8; 32] = rand::random();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    use std::io::Write;
    options
        .open(&path)
        .and_then(|mut f| f.write_all(&key))
        .map_err(io)?;
    Ok(key.to_vec())
}

pub async fn build(config: Config) -> Result<Built, BuildError> {
    // Before anything else in the state directory is read or created: one gateway per
    // directory. Its `instance.id`, locked, names this gateway's audit chain.
    let (dir_lock, instance) = crate::audit::lock::DirLock::acquire(&config.state_dir)?;
    let cas: Vec<PathBuf> = config
        .identity
        .ca_file
        .iter()
        .chain(config.upstream.ca_file.iter())
        .cloned()
        .collect();
    let http = HttpClient::new(&cas, config.upstream.timeout)?;
    let keys = Arc::new(KeyCache::new(http.clone()));
    keys.spawn_background_refresh(KEY_REFRESH);
    let mut upstream = config.upstream;
    let credential_names: std::collections::BTreeSet<String> =
        upstream.credentials.keys().cloned().collect();
    let credentials: HashMap<_, _> = std::mem::take(&mut upstream.credentials)
        .into_iter()
        .collect();
    let tokens = Arc::new(TokenProvider::new(http.clone(), credentials));
    let groups = config
        .identity
        .overage
        .clone()
        .map(|o| GroupResolver::new(o, http.clone(), tokens.clone()));
    // Display names through the same Graph credential, for people to read.
    let directory = Directory::new(
        config
            .identity
            .overage
            .clone()
            .map(|o| (o, http.clone(), tokens.clone())),
    );
    let challenge_authority = match &config.identity.tenant {
        TenantMode::Single(t) | TenantMode::Multi(t) => {
            format!("{}/{t}", config.identity.authority)
        }
    };
    let audience = config
        .identity
        .audiences
        .first()
        .cloned()
        .unwrap_or_default();
    let vault_audience = config.public_host.as_ref().is_some_and(|h| {
        let vault = format!("https://vault.{h}");
        config
            .identity
            .audiences
            .iter()
            .any(|a| a.trim_end_matches('/') == vault)
    });
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    if let Some(h) = &config.public_host {
        names.push(h.clone());
        names.push(format!("*.vault.{h}"));
    }
    let ip = config.listen_gateway.ip();
    if !ip.is_unspecified() && !names.contains(&ip.to_string()) {
        names.push(ip.to_string());
    }
    let super::tls::ServerTls {
        config: tls,
        ca_file,
        certificate,
    } = super::tls::server_config(&config.tls, &names)?;
    // Signs rewritten poll and page URLs.
    let binding_key = match &config.keys.url_binding {
        Some(k) => k.clone(),
        None => state_key(&config.state_dir, "url-binding.key")?,
    };
    // Seals held requests kept for approvals presented as long-running operations; derived
    // from the binding key, which replicas already share.
    let sealer = crate::approval::lro::Sealer::derive(&binding_key);
    let binder = Arc::new(Binder::new(binding_key.clone()));
    // Keys the hashes in masking placeholders.
    let masker = Arc::new(Masker::new(
        match &config.keys.mask {
            Some(k) => k.clone(),
            None => state_key(&config.state_dir, "mask.key")?,
        },
        config.masking.detectors.clone(),
        config.masking.profiles.clone(),
    ));
    // The audit store and its one writer.
    let store = match &config.store {
        crate::config::StoreSettings::Sqlite(path) => {
            crate::audit::store::Store::open_with(path, config.audit.max_db_bytes).await?
        }
        crate::config::StoreSettings::Postgres { url, schema } => {
            crate::audit::store::Store::open_postgres(url.expose(), schema.as_deref()).await?
        }
    };
    let lock = dir_lock.with_chain(&store, &instance).await?;
    let signing_key = crate::audit::checkpoint::load_or_create(
        &config.audit.signing_key,
        config.audit.generate_key,
    )?;
    let recorder = crate::audit::writer::Recorder::start(
        store.clone(),
        instance,
        crate::audit::writer::WriterOptions {
            checkpoint_every: config.audit.checkpoint_every,
            retention: config.audit.retention,
            signing_key,
        },
    )
    .await?
    .keeping(keeping(&masker));
    let approvals = crate::approval::Approvals::new(
        store.clone(),
        recorder.clone(),
        crate::approval::notify::Notifier::start(
            config.approvals.notify.clone(),
            webhook_client(&config.approvals.notify_cas)?,
            config
                .approvals
                .console_url
                .clone()
                .or_else(|| config.console.as_ref().and_then(|c| c.url.clone())),
        ),
        crate::approval::service::ApprovalsConfig {
            hold: config.approvals.hold,
            max_held: config.approvals.max_held,
            max_pending_per_principal: config.approvals.max_pending_per_principal,
            recheck: config.approvals.recheck,
            retry_after: config.approvals.retry_after,
            long_running: crate::approval::lro::LroTable::new(
                config.approvals.long_running.clone(),
            ),
            sealer,
        },
    );
    if config.audit.fail_open {
        tracing::warn!(
            "audit.on_failure is fail_open: requests whose audit record cannot be committed \
             WILL BE FORWARDED UNRECORDED. Do not run this in production."
        );
    }
    let console = match config.console.clone() {
        Some(settings) => Some(Arc::new(crate::console::Console::new(
            settings,
            &config.identity.authority,
            config.identity.tenant.path(),
            webhook_client(config.identity.ca_file.as_slice())?,
            &binding_key,
        ))),
        None => None,
    };
    let gateway = Gateway {
        auth: Authenticator::new(config.identity, keys, groups).with_directory(directory),
        policy: arc_swap::ArcSwap::from_pointee(config.policy),
        upstream,
        tokens,
        http,
        binder,
        masker,
        recorder,
        approvals,
        sessions: crate::audit::session::Sessions::new(config.audit.session_idle),
        audit: config.audit.clone(),
        max_answer_bytes: config.masking.max_body_bytes,
        vault_audience,
        public_host: config.public_host,
        challenge_authority,
        audience,
        limiter: crate::ratelimit::RateLimiter::new(
            config.limits.rate_per_principal,
            config.limits.burst_per_principal,
        ),
        limits: config.limits,
    };
    Ok(Built {
        gateway: Arc::new(gateway),
        admin: super::admin::AdminParts { store, console },
        sources: super::reload::Sources {
            policy: config
                .source_path
                .map(|config_path| super::reload::PolicySource {
                    config_path,
                    credentials: credential_names,
                }),
            certificate,
        },
        tls,
        ca_file,
        lock,
    })
}

/// The client webhooks are sent with: the system's roots plus any configured CAs.
/// What the audit store and approvals keep of agents' text: every detector, whatever the
/// configuration turned off for answers, with placeholders tagged for keeping.
fn keeping(masker: &Arc<Masker>) -> crate::audit::record::Keep {
    let masker = masker.clone();
    crate::audit::record::Keep::new(move |text| {
        match masker.mask_text(masker.audit_plan(), text.as_bytes()) {
            crate::mask::Masked::Changed { body, .. } => {
                Some(String::from_utf8_lossy(&body).into_owned())
            }
            crate::mask::Masked::Unchanged => None,
        }
    })
}

fn webhook_client(extra: &[PathBuf]) -> Result<reqwest::Client, BuildError> {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .redirect(reqwest::redirect::Policy::none());
    for cert in rustls_native_certs::load_native_certs().certs {
        if let Ok(c) = reqwest::Certificate::from_der(&cert) {
            b = b.add_root_certificate(c);
        }
    }
    for path in extra {
        let pem = std::fs::read(path).map_err(|source| BuildError::Io {
            path: path.clone(),
            source,
        })?;
        for c in reqwest::Certificate::from_pem_bundle(&pem).unwrap_or_default() {
            b = b.add_root_certificate(c);
        }
    }
    b.build().map_err(|e| BuildError::Io {
        path: PathBuf::from("(webhook client)"),
        source: std::io::Error::other(e),
    })
}
