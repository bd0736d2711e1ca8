//! Policy hot reload, on SIGHUP and when the configuration file or a policy file it
//! includes changes (polled: editors that replace files by renaming are seen too).
//!
//! A new policy is validated in full first; only a valid one is swapped in, atomically, so
//! every request is decided by exactly one complete policy: the one loaded when it reached
//! the decision. An invalid one is refused and logged and counted; the old one stays.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::config::policy::{check_file_with, files_of};
use crate::pipeline::Gateway;

/// What the reloader watches, beside the gateway whose policy it swaps.
#[derive(Default)]
pub struct Sources {
    /// Where the policy is reloaded from (none for gateways built in code).
    pub policy: Option<PolicySource>,
    /// The configured TLS certificate, reloaded when renewed (none with the development CA).
    pub certificate: Option<Arc<super::tls::Certificate>>,
}

/// Where the running policy came from.
pub struct PolicySource {
    pub config_path: PathBuf,
    /// The running gateway's upstream credentials: a reloaded rule may name only these.
    pub credentials: BTreeSet<String>,
}

/// Loads the policy again; swaps it in if valid. Returns the number of rules.
pub fn reload(gw: &Gateway, source: Option<&PolicySource>) -> Result<usize, Vec<String>> {
    let Some(source) = source else {
        return Err(vec![
            "this gateway was not started from a configuration file".into(),
        ]);
    };
    match check_file_with(&source.config_path, Some(&source.credentials)) {
        Ok(checked) => {
            for w in &checked.warnings {
                tracing::warn!(warning = %w, "policy warning");
            }
            let rules = checked.policy.rules.len();
            gw.policy.store(Arc::new(checked.policy));
            crate::metrics::METRICS.policy_reloads.inc();
            tracing::info!(rules, "policy reloaded");
            Ok(rules)
        }
        Err(errors) => {
            crate::metrics::METRICS.policy_reload_failures.inc();
            tracing::error!(problems = %errors.join("; "), "policy reload refused; the previous policy stays");
            Err(errors)
        }
    }
}

/// What identifies a file's content cheaply: modification time and length.
fn fingerprint(files: &[PathBuf]) -> Vec<Option<(SystemTime, u64)>> {
    files
        .iter()
        .map(|f| {
            std::fs::metadata(f)
                .ok()
                .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()))
        })
        .collect()
}

/// Watches the policy's files every `every`, and SIGHUP, until `shutdown`.
pub fn spawn(
    gw: Arc<Gateway>,
    sources: Sources,
    every: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let source = sources.policy.as_ref();
        let mut files = source.map_or_else(Vec::new, |s| files_of(&s.config_path));
        let mut seen = fingerprint(&files);
        // A renewed certificate (cert-manager, certbot) is picked up the same way.
        let cert_files: Vec<PathBuf> = sources
            .certificate
            .as_ref()
            .map_or_else(Vec::new, |c| vec![c.cert.clone(), c.key.clone()]);
        let mut cert_seen = fingerprint(&cert_files);
        #[cfg(unix)]
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut tick = tokio::time::interval(every);
        loop {
            #[cfg(unix)]
            let signalled = async {
                match hangup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let signalled = std::future::pending::<Option<()>>();
            let forced = tokio::select! {
                _ = tick.tick() => false,
                _ = signalled => true,
                _ = shutdown.changed() => return,
            };
            if let Some(c) = &sources.certificate {
                let now = fingerprint(&cert_files);
                if forced || now != cert_seen {
                    cert_seen = now;
                    match c.reload() {
                        Ok(()) => {
                            tracing::info!(cert = %c.cert.display(), "TLS certificate reloaded")
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "the renewed TLS certificate does not load; the previous one stays")
                        }
                    }
                }
            }
            let Some(source) = source else {
                continue;
            };
            let now = fingerprint(&files);
            if forced || now != seen {
                // Remember what is about to be loaded *before* loading it: a change made while
                // the reload runs then differs at the next tick instead of being missed.
                seen = now;
                let _ = reload(&gw, Some(source));
                // The include chain may have changed with the files; a longer or shorter list
                // differs from `seen` and is loaded again at the next tick.
                files = files_of(&source.config_path);
            }
        }
    })
}
