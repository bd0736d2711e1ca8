//! Which Azure service a request is for, and its path in one canonical form.
//!
//! ARM is served at the listener's root (the gateway stands in for
//! `management.azure.com`); a vault's data plane at `/keyvault/{vault}/...` or, with a public
//! host configured, at `{vault}.vault.{public_host}`.
//!
//! The path is normalized once: each segment percent-decoded, refused if the decoding hides a
//! separator (`%2F`, `%5C`), a dot segment, a `;` parameter or a control character, then
//! re-encoded the same way for every request. Policy evaluates the decoded form and the
//! upstream receives its re-encoding, so what is forwarded is exactly what was evaluated.
//! Empty segments (`//`) are refused; one trailing `/` is dropped (Key Vault's SDKs send
//! `/secrets/{name}/` for "the latest version").

use std::fmt::Write;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Service {
    Arm,
    KeyVault { vault: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed {
    pub service: Service,
    /// Decoded path below the service root (ARM: the full path; Key Vault: below the vault).
    pub path: String,
    /// The same path, re-encoded: what the upstream receives.
    pub upstream_path: String,
    /// How the agent reached this service through the gateway: `https://{host}` or
    /// `https://{host}/keyvault/{vault}`. Rewritten URLs point here.
    pub gateway_base: String,
}

impl Routed {
    /// For a vault reached by its host name (`{vault}.vault.{public_host}[:port]`), the
    /// domain below the vault's label, port included (`vault.{public_host}[:port]`): what
    /// the Key Vault SDKs require the challenge's resource to name.
    pub fn vault_domain(&self) -> Option<&str> {
        let Service::KeyVault { vault } = &self.service else {
            return None;
        };
        self.gateway_base
            .strip_prefix("https://")?
            .get(vault.len()..)?
            .strip_prefix('.')
            .filter(|d| d.starts_with("vault.") && !d.contains('/'))
    }
}

/// Where the gateway's own status and result URLs of approvals live, at the ARM root.
/// Nothing below it is ever forwarded to Azure.
pub const APPROVAL_OPERATIONS: &str = "/portcullis/approvals/";

/// Whose path a request names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// An Azure service's: named as its operation, decided, forwarded.
    Azure,
    /// The gateway's own (an approval presented as a long-running operation): answered by
    /// the gateway, never forwarded.
    Gateway,
}

impl Routed {
    pub fn owner(&self) -> Owner {
        if self.service == Service::Arm && self.path.starts_with(APPROVAL_OPERATIONS) {
            Owner::Gateway
        } else {
            Owner::Azure
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("the request path is ambiguous or malformed: {0}")]
    Path(String),
    #[error("'{0}' is not a valid key vault name")]
    Vault(String),
}

const MAX_PATH: usize = 4096;

/// Characters kept as they are when a segment is re-encoded.
fn keep(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-._~!$&'()*+,=:@".contains(&c)
}

/// The bytes of a percent-encoded text; `None` for a malformed escape.
pub(crate) fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

fn decode_segment(seg: &str) -> Result<String, RouteError> {
    let out = percent_decode(seg)
        .ok_or_else(|| RouteError::Path(format!("bad percent-escape in '{seg}'")))?;
    let s =
        String::from_utf8(out).map_err(|_| RouteError::Path("a segment is not UTF-8".into()))?;
    if s.contains(['/', '\\', ';', '%']) || s.chars().any(char::is_control) {
        return Err(RouteError::Path(format!(
            "segment '{seg}' hides a separator, parameter or escape"
        )));
    }
    if s == "." || s == ".." {
        return Err(RouteError::Path("dot segments are not accepted".into()));
    }
    // Servers that strip a trailing dot or space (as Windows paths do) would read `vm1.` as
    // `vm1`: a name policy did not judge. No Azure resource name ends so.
    if s.ends_with(['.', ' ']) || s.starts_with(' ') {
        return Err(RouteError::Path(format!(
            "segment '{seg}' begins or ends with a space or ends with a dot"
        )));
    }
    Ok(s)
}

fn encode_segment(s: &str, out: &mut String) {
    for b in s.bytes() {
        if keep(b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// Splits, decodes and checks a path; returns (decoded, re-encoded).
pub fn normalize(path: &str) -> Result<(String, String), RouteError> {
    if path.len() > MAX_PATH {
        return Err(RouteError::Path("the path is too long".into()));
    }
    if !path.starts_with('/') {
        return Err(RouteError::Path("the path must start with '/'".into()));
    }
    let body = path
        .strip_suffix('/')
        .filter(|b| !b.is_empty())
        .unwrap_or(path);
    let mut decoded = String::with_capacity(body.len());
    let mut encoded = String::with_capacity(body.len());
    if body == "/" {
        return Ok(("/".into(), "/".into()));
    }
    for seg in body[1..].split('/') {
        if seg.is_empty() {
            return Err(RouteError::Path(
                "empty path segments ('//') are not accepted".into(),
            ));
        }
        let d = decode_segment(seg)?;
        decoded.push('/');
        decoded.push_str(&d);
        encoded.push('/');
        encode_segment(&d, &mut encoded);
    }
    // What is forwarded must pass this check too (escaping can triple a path's length).
    if encoded.len() > MAX_PATH {
        return Err(RouteError::Path("the path is too long".into()));
    }
    Ok((decoded, encoded))
}

/// Key Vault names: 3-24 characters, letters, digits and hyphens, starting with a letter.
pub fn valid_vault(name: &str) -> bool {
    (3..=24).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Routes a request by its `Host` and path.
pub fn route(host: &str, path: &str, public_host: Option<&str>) -> Result<Routed, RouteError> {
    let (decoded, encoded) = normalize(path)?;
    let host_only = host
        .rsplit_once(':')
        .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host, |(h, _)| h)
        .to_ascii_lowercase();
    if let Some(public) = public_host
        && let Some(vault) = host_only.strip_suffix(&format!(".vault.{public}"))
    {
        if !valid_vault(vault) {
            return Err(RouteError::Vault(vault.to_owned()));
        }
        return Ok(Routed {
            service: Service::KeyVault {
                vault: vault.to_owned(),
            },
            path: decoded,
            upstream_path: encoded,
            gateway_base: format!("https://{host}"),
        });
    }
    let mut segs = decoded.splitn(4, '/').skip(1);
    if segs
        .next()
        .is_some_and(|s| s.eq_ignore_ascii_case("keyvault"))
    {
        let vault = segs.next().unwrap_or_default().to_ascii_lowercase();
        if !valid_vault(&vault) {
            return Err(RouteError::Vault(vault));
        }
        let below = segs
            .next()
            .map(|s| format!("/{s}"))
            .unwrap_or_else(|| "/".into());
        let prefix_len = "/keyvault/".len() + vault.len();
        let upstream = encoded
            .get(prefix_len..)
            .filter(|s| !s.is_empty())
            .unwrap_or("/")
            .to_owned();
        return Ok(Routed {
            service: Service::KeyVault {
                vault: vault.clone(),
            },
            path: below,
            upstream_path: upstream,
            gateway_base: format!("https://{host}/keyvault/{vault}"),
        });
    }
    Ok(Routed {
        service: Service::Arm,
        path: decoded,
        upstream_path: encoded,
        gateway_base: format!("https://{host}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arm_at_the_root_and_vaults_by_prefix_or_host() {
        let r = route("gw:8443", "/subscriptions/s/resourceGroups/rg", None).unwrap();
        assert_eq!(r.service, Service::Arm);
        assert_eq!(r.gateway_base, "https://gw:8443");
        let r = route("gw:8443", "/keyvault/Demo-KV/secrets/x/", None).unwrap();
        assert_eq!(
            r.service,
            Service::KeyVault {
                vault: "demo-kv".into()
            }
        );
        assert_eq!(
            (r.path.as_str(), r.upstream_path.as_str()),
            ("/secrets/x", "/secrets/x")
        );
        assert_eq!(r.gateway_base, "https://gw:8443/keyvault/demo-kv");
        let r = route(
            "demo-kv.vault.gw.example:8443",
            "/secrets",
            Some("gw.example"),
        )
        .unwrap();
        assert_eq!(
            r.service,
            Service::KeyVault {
                vault: "demo-kv".into()
            }
        );
        assert_eq!(r.gateway_base, "https://demo-kv.vault.gw.example:8443");
        assert_eq!(r.vault_domain(), Some("vault.gw.example:8443"));
        let by_path = route("gw:8443", "/keyvault/demo-kv/secrets/x", Some("gw")).unwrap();
        assert_eq!(by_path.vault_domain(), None, "only the host form has one");
        let arm = route("gw", "/subscriptions/s", Some("gw")).unwrap();
        assert_eq!(arm.vault_domain(), None);
    }

    #[test]
    fn encodings_are_canonical_and_tricks_refused() {
        let (d, e) = normalize("/subscriptions/s/resourceGroups/demo%2Drg").unwrap();
        assert_eq!(d, "/subscriptions/s/resourceGroups/demo-rg");
        assert_eq!(
            e, "/subscriptions/s/resourceGroups/demo-rg",
            "escaped unreserved characters are decoded"
        );
        let (d, e) = normalize("/x/a%20b").unwrap();
        assert_eq!((d.as_str(), e.as_str()), ("/x/a b", "/x/a%20b"));
        for bad in [
            "/a%2Fb",
            "/a%2fb",
            "/a/../b",
            "/a/%2e%2e/b",
            "/a//b",
            "/a;x=1/b",
            "/a%5Cb",
            "/a%",
            "/a%zz",
            "/a%00b",
            "relative",
            "/a%25b",
            "/vms/vm1.",
            "/vms/vm1%2E",
            "/vms/vm1%20",
            "/vms/%20vm1",
            "/vms/vm1 ",
            "/a/%FF",
            "/a/%C0%AF",
        ] {
            assert!(normalize(bad).is_err(), "{bad}");
        }
        assert!(route("gw", "/keyvault/evil.com%23/secrets", None).is_err());
        assert!(route("gw", "/keyvault/169.254.169.254/secrets", None).is_err());
        assert!(
            route("x.vault.gw", "/secrets", Some("gw")).is_err(),
            "too short a vault name"
        );
    }
}
