//! The sections of the configuration that stand on their own: audit, the approver console,
//! approvals and the listener's limits, each from its raw shape to the model with its
//! defaults and problems (`validate.rs` calls them).

use std::path::Path;
use std::time::Duration;

use super::model::*;
use super::raw::*;
use super::validate::{Env, Problems, read_secret};
use crate::ids::is_guid;

/// A positive duration setting (`30s`, `10m`...); `default` when absent or wrong (a wrong one
/// is reported as `key`).
fn positive_duration(
    p: &mut Problems<'_>,
    key: &str,
    value: Option<&str>,
    default: Duration,
) -> Duration {
    match value.map(crate::time::duration) {
        None => default,
        Some(Ok(d)) if !d.is_zero() => d,
        Some(Ok(_)) => {
            p.at(None, format!("{key} must be positive"));
            default
        }
        Some(Err(e)) => {
            p.at(None, format!("{key}: {e}"));
            default
        }
    }
}

pub(super) fn audit(
    p: &mut Problems<'_>,
    ra: RawAudit,
    base: &Path,
    state_dir: &Path,
) -> AuditConfig {
    let mut duration = |what: &str, value: Option<String>, default: u64| {
        positive_duration(
            p,
            &format!("audit.{what}"),
            value.as_deref(),
            Duration::from_secs(default),
        )
    };
    let session_idle = duration("session_idle", ra.session_idle, 30 * 60);
    let checkpoint_every = duration("checkpoint_every", ra.checkpoint_every, 60);
    let retention = ra
        .retention
        .is_some()
        .then(|| duration("retention", ra.retention, 0));
    let fail_open = match ra.on_failure.as_deref() {
        None | Some("fail_closed") => false,
        Some("fail_open") => true,
        Some(other) => {
            p.at(
                None,
                format!("audit.on_failure: '{other}' is not fail_closed or fail_open"),
            );
            false
        }
    };
    let body_cap = ra.body_cap_bytes.unwrap_or(64 * 1024);
    if ra.max_db_bytes.is_some_and(|b| b < 1024 * 1024) {
        p.at(None, "audit.max_db_bytes must be at least 1 MiB");
    }
    let mut readers = Vec::new();
    for r in &ra.readers {
        match crate::policy::PrincipalMatcher::parse(&Default::default(), r) {
            Ok(m) => readers.push(m),
            Err(e) => p.at(None, format!("audit.readers: {e}")),
        }
    }
    AuditConfig {
        readers,
        fail_open,
        body_cap,
        session_idle,
        checkpoint_every,
        generate_key: ra.signing_key_file.is_none(),
        signing_key: ra
            .signing_key_file
            .map_or_else(|| state_dir.join("audit-signing.key"), |f| base.join(f)),
        retention,
        max_db_bytes: ra.max_db_bytes,
    }
}

pub(super) fn console(
    p: &mut Problems<'_>,
    rc: super::raw::RawConsole,
    base: &Path,
    env: Env<'_>,
    console_url: Option<&str>,
    audience: Option<&str>,
) -> super::model::ConsoleSettings {
    if !is_guid(&rc.client_id) {
        p.at(
            None,
            "console.client_id must be the console app registration's application (client) id, a GUID",
        );
    }
    let url = rc
        .url
        .as_deref()
        .or(console_url)
        .map(|u| u.trim_end_matches('/').to_owned());
    if let Some(u) = &url {
        match url::Url::parse(u) {
            Ok(parsed)
                if parsed.scheme() == "https"
                    && parsed.path() == "/"
                    && parsed.username().is_empty()
                    && parsed.password().is_none()
                    && parsed.query().is_none()
                    && parsed.fragment().is_none() => {}
            _ => p.at(
                None,
                format!("console.url: '{u}' is not an https URL of a host (like https://gateway.example.com:9443)"),
            ),
        }
    }
    let session_lifetime = match rc.session_lifetime.as_deref().map(crate::time::duration) {
        None => Duration::from_secs(8 * 3600),
        Some(Ok(d)) if !d.is_zero() && d <= Duration::from_secs(7 * 24 * 3600) => d,
        Some(Ok(_)) => {
            p.at(None, "console.session_lifetime: between 1s and 7 days");
            Duration::from_secs(8 * 3600)
        }
        Some(Err(e)) => {
            p.at(None, format!("console.session_lifetime: {e}"));
            Duration::from_secs(8 * 3600)
        }
    };
    let scope = rc.scope.unwrap_or_else(|| {
        format!(
            "{}/.default",
            audience.unwrap_or_default().trim_end_matches('/')
        )
    });
    super::model::ConsoleSettings {
        client_id: rc.client_id.to_ascii_lowercase(),
        client_secret: rc
            .client_secret
            .as_ref()
            .map(|s| read_secret(p, env, base, s, "console.client_secret")),
        url,
        scope,
        session_lifetime,
    }
}

pub(super) fn approvals(
    p: &mut Problems<'_>,
    ra: RawApprovals,
    base: &Path,
    env: Env<'_>,
) -> ApprovalsSettings {
    let hold = match ra.hold.as_deref().map(crate::time::duration) {
        None => Duration::from_secs(60),
        Some(Ok(d)) if d <= Duration::from_secs(3600) => d,
        Some(Ok(_)) => {
            p.at(
                None,
                "approvals.hold: at most 1h (clients and proxies time out)",
            );
            Duration::from_secs(60)
        }
        Some(Err(e)) => {
            p.at(None, format!("approvals.hold: {e}"));
            Duration::from_secs(60)
        }
    };
    let max_held = ra.max_held.unwrap_or(10_000);
    let max_pending_per_principal = ra.max_pending_per_principal.unwrap_or(20);
    let recheck = match ra.recheck.as_deref().map(crate::time::duration) {
        None => Duration::from_secs(10),
        Some(Ok(d)) if !d.is_zero() => d,
        Some(Ok(_)) => {
            p.at(None, "approvals.recheck must be positive");
            Duration::from_secs(10)
        }
        Some(Err(e)) => {
            p.at(None, format!("approvals.recheck: {e}"));
            Duration::from_secs(10)
        }
    };
    let retry_after = match ra.retry_after.as_deref().map(crate::time::duration) {
        None => Duration::from_secs(10),
        Some(Ok(d)) if !d.is_zero() && d <= Duration::from_secs(600) => d,
        Some(Ok(_)) => {
            p.at(None, "approvals.retry_after: between 1s and 10m");
            Duration::from_secs(10)
        }
        Some(Err(e)) => {
            p.at(None, format!("approvals.retry_after: {e}"));
            Duration::from_secs(10)
        }
    };
    let mut long_running = Vec::new();
    for (i, l) in ra.long_running.iter().enumerate() {
        match crate::approval::lro::LroEntry::new(&l.action, &l.method, l.answer) {
            Ok(e) => long_running.push(e),
            Err(e) => p.at(None, format!("approvals.long_running[{i}]: {e}")),
        }
    }
    let mut notify = Vec::new();
    let mut notify_cas = Vec::new();
    for (i, w) in ra.notify.into_iter().enumerate() {
        let what = format!("approvals.notify[{i}]");
        let url = match &w.url {
            RawSecretOrText::Text(t) => t.clone(),
            RawSecretOrText::Secret(s) => read_secret(p, env, base, s, &format!("{what}.url"))
                .expose()
                .to_owned(),
        };
        match url::Url::parse(&url) {
            Ok(u) if u.scheme() == "https" || u.scheme() == "http" => {}
            _ => p.at(None, format!("{what}.url is not an http(s) URL")),
        }
        let format = match w.format.as_deref() {
            None | Some("json") => crate::approval::notify::Format::Json,
            Some("slack") => crate::approval::notify::Format::Slack,
            Some("teams") => crate::approval::notify::Format::Teams,
            Some(other) => {
                p.at(
                    None,
                    format!("{what}.format: '{other}' is not json, slack or teams"),
                );
                crate::approval::notify::Format::Json
            }
        };
        let secret = w
            .secret
            .as_ref()
            .map(|s| read_secret(p, env, base, s, &format!("{what}.secret")));
        if let Some(ca) = w.ca_file {
            notify_cas.push(base.join(ca));
        }
        notify.push(crate::approval::notify::Webhook {
            url,
            format,
            secret,
        });
    }
    ApprovalsSettings {
        hold,
        recheck,
        max_held,
        max_pending_per_principal,
        console_url: ra.console_url,
        notify,
        notify_cas,
        retry_after,
        long_running,
    }
}

pub(super) fn limits(p: &mut Problems<'_>, raw: RawLimits) -> Limits {
    let d = Limits::default();
    let mut duration = |what: &str, value: Option<String>, default: Duration| {
        positive_duration(p, &format!("limits.{what}"), value.as_deref(), default)
    };
    let header_timeout = duration("header_timeout", raw.header_timeout, d.header_timeout);
    let idle_timeout = duration("idle_timeout", raw.idle_timeout, d.idle_timeout);
    let body = raw.max_body_bytes.unwrap_or_default();
    let l = Limits {
        max_connections: raw.max_connections.unwrap_or(d.max_connections),
        header_timeout,
        idle_timeout,
        max_headers: raw.max_headers.unwrap_or(d.max_headers),
        max_header_bytes: raw.max_header_bytes.unwrap_or(d.max_header_bytes),
        max_body_arm: body.arm.unwrap_or(d.max_body_arm),
        max_body_keyvault: body.keyvault.unwrap_or(d.max_body_keyvault),
        rate_per_principal: raw.rate_per_principal.unwrap_or(d.rate_per_principal),
        burst_per_principal: raw.burst_per_principal.unwrap_or(d.burst_per_principal),
        admin_rate_per_client: raw.admin_rate_per_client.unwrap_or(d.admin_rate_per_client),
        admin_burst_per_client: raw
            .admin_burst_per_client
            .unwrap_or(d.admin_burst_per_client),
    };
    if l.max_connections == 0 || l.max_headers == 0 {
        p.at(
            None,
            "limits.max_connections and limits.max_headers must be positive",
        );
    }
    if l.max_header_bytes < 8192 {
        p.at(None, "limits.max_header_bytes must be at least 8192");
    }
    if !(l.rate_per_principal >= 0.0 && l.rate_per_principal.is_finite()) {
        p.at(
            None,
            "limits.rate_per_principal must be a number of requests per second, 0 for none",
        );
    }
    if !(l.burst_per_principal >= 1.0 && l.burst_per_principal.is_finite()) {
        p.at(None, "limits.burst_per_principal must be at least 1");
    }
    if !(l.admin_rate_per_client >= 0.0 && l.admin_rate_per_client.is_finite()) {
        p.at(
            None,
            "limits.admin_rate_per_client must be a number of requests per second, 0 for none",
        );
    }
    if !(l.admin_burst_per_client >= 1.0 && l.admin_burst_per_client <= f64::from(u32::MAX)) {
        p.at(None, "limits.admin_burst_per_client must be at least 1");
    }
    l
}
