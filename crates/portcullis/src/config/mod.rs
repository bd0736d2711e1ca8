//! Configuration in three steps: `raw` mirrors the YAML file (unknown keys refused with
//! their line and column), `validate` checks it and applies defaults and the Azure
//! environment conventions, `model` is what the rest of the gateway uses.

pub mod model;
pub mod policy;
pub mod raw;
mod sections;
pub mod validate;

use std::path::Path;

pub use model::*;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Parse(String),
    #[error("{} problem(s) in the configuration:\n  {}", .0.len(), .0.join("\n  "))]
    Invalid(Vec<String>),
}

/// A YAML parse error as the gateway prints it: naming `file`, without the parser's own
/// `error: ` prefix (the command line adds one to whatever fails).
pub fn yaml_error(e: &impl std::fmt::Display, file: &str) -> String {
    let text = e.to_string().replace("<input>", file);
    match text.strip_prefix("error: ") {
        Some(rest) => rest.to_owned(),
        None => text,
    }
}

/// Parses YAML text; `file` names it in messages. Relative paths resolve against `base`.
pub fn parse(
    text: &str,
    file: &str,
    base: &Path,
    env: validate::Env<'_>,
) -> Result<Config, ConfigError> {
    let raw: raw::RawConfig =
        serde_saphyr::from_str(text).map_err(|e| ConfigError::Parse(yaml_error(&e, file)))?;
    validate::validate(raw, file, base, env).map_err(ConfigError::Invalid)
}

/// Loads a configuration file, reading the process environment.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut config = parse(&text, &path.display().to_string(), &base, &|k| {
        std::env::var(k).ok()
    })?;
    config.source_path = Some(path.to_path_buf());
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TENANT: &str = "11111111-2222-3333-4444-555555555555";

    fn env(k: &str) -> Option<String> {
        (k == "BASELINE_SECRET").then(|| "s3cr3t".to_owned())
    }

    fn minimal(extra: &str) -> String {
        format!(
            "identity:\n  tenant: {TENANT}\n  audiences: [api://portcullis]\nupstream:\n  credentials:\n    baseline:\n      type: client_secret\n      client_id: app\n      client_secret: {{env: BASELINE_SECRET}}\n{extra}"
        )
    }

    #[test]
    fn a_minimal_file_gets_the_defaults() {
        let c = parse(&minimal(""), "gw.yaml", Path::new("/etc/pc"), &env).unwrap();
        assert_eq!(c.listen_gateway.to_string(), "127.0.0.1:8443");
        assert_eq!(c.identity.authority, "https://login.microsoftonline.com");
        assert_eq!(c.identity.allowed_tenants, vec![TENANT]);
        assert_eq!(c.identity.clock_skew.as_secs(), 60);
        assert_eq!(c.upstream.default_credential, "baseline");
        assert_eq!(c.upstream.vault_url("kv1"), "https://kv1.vault.azure.net");
        match &c.upstream.credentials["baseline"] {
            CredentialConfig::ClientSecret { secret, tenant, .. } => {
                assert_eq!(secret.expose(), "s3cr3t");
                assert_eq!(tenant, TENANT);
            }
            other => panic!("{other:?}"),
        }
        assert!(!format!("{c:?}").contains("s3cr3t"), "secrets never print");
    }

    #[test]
    fn limits_keys_and_graph_clouds_have_defaults_and_checks() {
        let c = parse(&minimal(""), "gw.yaml", Path::new("/etc/pc"), &env).unwrap();
        assert_eq!(c.limits.max_body_arm, 4 * 1024 * 1024);
        assert_eq!(c.shutdown_grace.as_secs(), 25);
        assert!(c.keys.url_binding.is_none());
        let sovereign = minimal("").replace(
            "  audiences: [api://portcullis]\n",
            "  audiences: [api://portcullis]\n  groups_overage: {graph_url: https://graph.microsoft.us, credential: baseline}\n",
        );
        let c = parse(&sovereign, "gw.yaml", Path::new("."), &env).unwrap();
        let o = c.identity.overage.as_ref().unwrap();
        assert_eq!(o.graph_resource, "https://graph.microsoft.us");
        let err = parse(
            &minimal("limits: {max_header_bytes: 100, rate_per_principal: -1}\nkeys: {mask: {env: BASELINE_SECRET}}\n"),
            "gw.yaml",
            Path::new("."),
            &env,
        )
        .unwrap_err()
        .to_string();
        for needle in ["max_header_bytes", "rate_per_principal", "keys.mask"] {
            assert!(err.contains(needle), "{needle}: {err}");
        }
    }

    #[test]
    fn long_running_operations_and_retry_after() {
        let c = parse(&minimal(""), "gw.yaml", Path::new("."), &env).unwrap();
        assert_eq!(c.approvals.retry_after.as_secs(), 10);
        assert!(c.approvals.long_running.is_empty());
        let c = parse(
            &minimal("approvals:\n  retry_after: 3s\n  long_running:\n    - {action: Contoso.Widgets/widgets/write, method: put, answer: 201}\n"),
            "gw.yaml",
            Path::new("."),
            &env,
        )
        .unwrap();
        assert_eq!(c.approvals.retry_after.as_secs(), 3);
        assert_eq!(c.approvals.long_running[0].method, "PUT");
        let err = parse(
            &minimal("approvals:\n  retry_after: 0s\n  long_running:\n    - {action: Contoso.Widgets/widgets/read, method: GET, answer: 202}\n    - {action: Contoso.Widgets/widgets/write, method: PUT, answer: 200}\n"),
            "gw.yaml",
            Path::new("."),
            &env,
        )
        .unwrap_err()
        .to_string();
        for needle in [
            "approvals.retry_after",
            "approvals.long_running[0]: method 'GET'",
            "approvals.long_running[1]: answer 200 is not 201 or 202",
        ] {
            assert!(err.contains(needle), "{needle}: {err}");
        }
    }

    #[test]
    fn unknown_keys_name_their_place() {
        let err = parse(&minimal("bogus: 1\n"), "gw.yaml", Path::new("."), &env)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("gw.yaml:10:1") || err.contains("line 10"),
            "{err}"
        );
        assert!(err.contains("bogus"), "{err}");
    }

    #[test]
    fn problems_are_reported_together_with_lines() {
        let text = minimal(
            "policy:\n  rules:\n    - name: r1\n      effect: maybe\n      principals: [group:nobody]\n      actions: [read]\n      scopes: []\n",
        );
        let err = parse(&text, "gw.yaml", Path::new("."), &env).unwrap_err();
        let ConfigError::Invalid(list) = err else {
            panic!("{err}")
        };
        assert!(
            list.iter()
                .any(|m| m.starts_with("gw.yaml:12:") && m.contains("effect 'maybe'")),
            "{list:?}"
        );
        assert!(
            list.iter().any(|m| m.contains("nor a known alias")),
            "{list:?}"
        );
        assert!(
            list.iter().any(|m| m.contains("Namespace/type/verb")),
            "{list:?}"
        );
        assert!(list.iter().any(|m| m.contains("give scopes")), "{list:?}");
    }

    #[test]
    fn azure_audiences_and_missing_secrets_are_refused() {
        let text = minimal("").replace("[api://portcullis]", "[\"https://management.azure.com/\"]");
        let err = parse(&text, "gw.yaml", Path::new("."), &|_| None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("skip the gateway"), "{err}");
        assert!(err.contains("BASELINE_SECRET is not set"), "{err}");
    }
}
