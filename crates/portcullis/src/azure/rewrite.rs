//! Keeping clients on the gateway: absolute URLs Azure hands out (`Azure-AsyncOperation`,
//! `Location`, `Operation-Location` headers; `nextLink` / `@odata.nextLink` in JSON bodies)
//! are rewritten from the upstream's base to the gateway's, so SDK pollers and pagers keep
//! going through it, and each poll or page is evaluated again (azure-notes §4).
//!
//! Each rewritten URL carries a binding: an HMAC over the principal and the URL, so a poll
//! or page is recognised as the continuation of something this principal was allowed to
//! start. A URL copied to another principal, or altered, carries no valid binding and is
//! judged by policy alone.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::identity::principal::Principal;

/// The query parameter that carries the binding.
pub const BINDING_PARAM: &str = "portcullis-binding";

/// Signs and checks bindings. The key is the gateway's (kept in its state directory).
pub struct Binder {
    key: Vec<u8>,
}

fn mac(key: &[u8], principal: &Principal, path: &str, query: &str) -> String {
    mac_for(key, &principal.tenant_id, &principal.object_id, path, query)
}

fn mac_for(key: &[u8], tenant: &str, object_id: &str, path: &str, query: &str) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    for part in [tenant, object_id, path, query] {
        m.update(part.as_bytes());
        m.update(b"\n");
    }
    let tag = m.finalize().into_bytes();
    tag[..16].iter().map(|b| format!("{b:02x}")).collect()
}

impl Binder {
    pub fn new(key: Vec<u8>) -> Binder {
        Binder { key }
    }

    /// Splits our parameter off a query: (the query without it, the binding if present).
    pub fn split(query: &str) -> (String, Option<String>) {
        let mut binding = None;
        let rest: Vec<&str> = query
            .split('&')
            .filter(|pair| match pair.split_once('=') {
                Some((k, v)) if k == BINDING_PARAM => {
                    binding = Some(v.to_owned());
                    false
                }
                _ => !pair.is_empty(),
            })
            .collect();
        (rest.join("&"), binding)
    }

    /// Whether `binding` was issued to `principal` for this path and query.
    pub fn verify(&self, principal: &Principal, path: &str, query: &str, binding: &str) -> bool {
        self.verify_for(
            &principal.tenant_id,
            &principal.object_id,
            path,
            query,
            binding,
        )
    }

    /// A binding for a URL of the gateway's own (an approval's status URL) issued to the
    /// principal `tenant`/`object_id`.
    pub fn sign_for(&self, tenant: &str, object_id: &str, path: &str, query: &str) -> String {
        mac_for(&self.key, tenant, object_id, path, query)
    }

    /// Whether `binding` was issued to `tenant`/`object_id` for this path and query.
    pub fn verify_for(
        &self,
        tenant: &str,
        object_id: &str,
        path: &str,
        query: &str,
        binding: &str,
    ) -> bool {
        let expected = mac_for(&self.key, tenant, object_id, path, query);
        crate::secret::same(expected.as_bytes(), binding.as_bytes())
    }

    /// Rewrites `url` if it points at `upstream_base`; `None` leaves it as it is.
    /// `path_of` maps the path below the upstream base to the path below the gateway base
    /// (identity for ARM).
    pub fn rewrite(
        &self,
        url: &str,
        upstream_base: &url::Url,
        gateway_base: &str,
        principal: &Principal,
    ) -> Option<String> {
        let u = url::Url::parse(url).ok()?;
        if u.scheme() != upstream_base.scheme()
            || !u
                .host_str()?
                .eq_ignore_ascii_case(upstream_base.host_str()?)
            || u.port_or_known_default() != upstream_base.port_or_known_default()
        {
            return None;
        }
        let base_path = upstream_base.path().trim_end_matches('/');
        let below = u.path().strip_prefix(base_path)?;
        if !below.is_empty() && !below.starts_with('/') {
            return None;
        }
        let below = if below.is_empty() { "/" } else { below };
        let (query, _) = Self::split(u.query().unwrap_or(""));
        let gateway = url::Url::parse(gateway_base).ok()?;
        let gateway_path = format!("{}{below}", gateway.path().trim_end_matches('/'));
        let binding = mac(&self.key, principal, &gateway_path, &query);
        let sep = if query.is_empty() { "" } else { "&" };
        Some(format!(
            "{}{below}?{query}{sep}{BINDING_PARAM}={binding}",
            gateway_base.trim_end_matches('/')
        ))
    }
}

/// Rewrites the `nextLink`s of a JSON body in place, byte for byte: only the link strings
/// change, so numbers, key order and everything else arrive exactly as Azure sent them.
pub fn rewrite_body_links(
    body: &[u8],
    rewrite: &dyn Fn(&str) -> Option<String>,
) -> Option<Vec<u8>> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let mut links = Vec::new();
    collect_links(&value, &mut links, 0);
    if links.is_empty() {
        return None;
    }
    let mut out = body.to_vec();
    for old in links {
        let Some(new) = rewrite(&old) else { continue };
        let (from, to) = (
            serde_json::to_string(&old).ok()?,
            serde_json::to_string(&new).ok()?,
        );
        out = replace_all(&out, from.as_bytes(), to.as_bytes());
    }
    Some(out)
}

fn collect_links(v: &serde_json::Value, out: &mut Vec<String>, depth: usize) {
    if depth > 64 {
        return;
    }
    match v {
        serde_json::Value::Object(map) => {
            for (k, x) in map {
                if (k == "nextLink" || k == "@odata.nextLink") && x.is_string() {
                    out.push(x.as_str().unwrap_or_default().to_owned());
                } else {
                    collect_links(x, out, depth + 1);
                }
            }
        }
        serde_json::Value::Array(items) => {
            items.iter().for_each(|x| collect_links(x, out, depth + 1))
        }
        _ => {}
    }
}

fn replace_all(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::principal::PrincipalKind;

    fn p(oid: &str) -> Principal {
        Principal {
            tenant_id: "t".into(),
            object_id: oid.into(),
            kind: PrincipalKind::App,
            app_id: None,
            groups: vec![],
            roles: vec![],
            display_name: None,
            token_version: 2,
        }
    }

    #[test]
    fn rewrites_upstream_urls_and_binds_them_to_the_principal() {
        let b = Binder::new(b"k".to_vec());
        let up = url::Url::parse("https://management.azure.com").unwrap();
        let out = b.rewrite("https://management.azure.com/subscriptions/s/providers/Microsoft.Compute/locations/eastus/operations/1?api-version=2024-07-01", &up, "https://gw:8443", &p("a")).unwrap();
        assert!(out.starts_with("https://gw:8443/subscriptions/s/providers/Microsoft.Compute/locations/eastus/operations/1?api-version=2024-07-01&portcullis-binding="), "{out}");
        let u = url::Url::parse(&out).unwrap();
        let (q, binding) = Binder::split(u.query().unwrap());
        assert_eq!(q, "api-version=2024-07-01");
        assert!(b.verify(&p("a"), u.path(), &q, binding.as_deref().unwrap()));
        assert!(
            !b.verify(&p("b"), u.path(), &q, binding.as_deref().unwrap()),
            "another principal's binding"
        );
        assert!(
            !b.verify(
                &p("a"),
                "/subscriptions/other",
                &q,
                binding.as_deref().unwrap()
            ),
            "another path"
        );
        assert!(
            b.rewrite("https://evil.example/x", &up, "https://gw", &p("a"))
                .is_none()
        );
        assert!(
            b.rewrite(
                "https://management.azure.com.evil.example/x",
                &up,
                "https://gw",
                &p("a")
            )
            .is_none()
        );
    }

    #[test]
    fn vault_links_with_default_ports_and_prefixes() {
        let b = Binder::new(b"k".to_vec());
        let up = url::Url::parse("https://demo-kv.vault.azure.net").unwrap();
        let out = b
            .rewrite(
                "https://demo-kv.vault.azure.net:443/secrets?api-version=7.4&$skiptoken=x",
                &up,
                "https://gw/keyvault/demo-kv",
                &p("a"),
            )
            .unwrap();
        assert!(out.starts_with("https://gw/keyvault/demo-kv/secrets?api-version=7.4&$skiptoken=x&portcullis-binding="), "{out}");
        let sim = url::Url::parse("https://127.0.0.1:8440/keyvault/demo-kv").unwrap();
        let out = b
            .rewrite(
                "https://127.0.0.1:8440/keyvault/demo-kv/secrets?a=1",
                &sim,
                "https://gw/keyvault/demo-kv",
                &p("a"),
            )
            .unwrap();
        assert!(
            out.starts_with("https://gw/keyvault/demo-kv/secrets?a=1&"),
            "{out}"
        );
        assert!(
            b.rewrite(
                "https://127.0.0.1:8440/keyvault/demo-kv2/secrets",
                &sim,
                "https://gw/keyvault/demo-kv",
                &p("a")
            )
            .is_none()
        );
    }

    #[test]
    fn body_links_change_and_nothing_else() {
        let body =
            br#"{"value":[{"n":1.50,"big":12345678901234567890}],"nextLink":"https://up/x?s=1"}"#;
        let out =
            rewrite_body_links(body, &|u| Some(u.replace("https://up", "https://gw"))).unwrap();
        assert_eq!(
            out,
            br#"{"value":[{"n":1.50,"big":12345678901234567890}],"nextLink":"https://gw/x?s=1"}"#
                .to_vec()
        );
        assert!(rewrite_body_links(br#"{"value":[]}"#, &|_| None).is_none());
    }
}
