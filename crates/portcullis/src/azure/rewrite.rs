//! Keeping clients on the gateway: absolute URLs Azure hands out where its protocols put them
//! (`Azure-AsyncOperation` and `Operation-Location` headers, `Location` on a 201 or 202, and
//! the top-level `nextLink` / `@odata.nextLink` of a JSON answer) are rewritten from the
//! upstream's base to the gateway's, so SDK pollers and pagers keep going through it, and
//! each poll or page is evaluated again (azure-notes §4). Async operations:
//! <https://github.com/Azure/azure-resource-manager-rpc/blob/master/v1.0/async-api-reference.md>;
//! paging: <https://github.com/microsoft/api-guidelines/blob/vNext/azure/Guidelines.md#collections>.
//!
//! A rewritten URL carries a binding: an HMAC over what it lets its holder do, which is one
//! thing only: GET that exact URL (path and query), as the principal it was handed to,
//! until it expires. A page's binding is issued only when the page lies on the list's own
//! path, so the page is the list's own operation on the list's own scope: it can reach
//! nothing the list could not. A URL copied to another principal, altered, expired or used
//! with another method carries no valid binding and is judged by policy alone. Nothing the
//! agent stored in a resource (a `nextLink` property inside it, at any depth) is ever
//! signed: only a top-level link of the answer is read.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::identity::principal::Principal;

/// The query parameter that carries the binding.
pub const BINDING_PARAM: &str = "portcullis-binding";

/// What a binding continues; both are good for GET of one URL only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Continuation {
    /// The next page of a list the principal was allowed to read.
    Page,
    /// A long-running operation's status or result URL, from Azure's own headers.
    Poll,
}

impl Continuation {
    fn tag(self) -> char {
        match self {
            Continuation::Page => 'p',
            Continuation::Poll => 'o',
        }
    }

    fn of(tag: char) -> Option<Continuation> {
        match tag {
            'p' => Some(Continuation::Page),
            'o' => Some(Continuation::Poll),
            _ => None,
        }
    }

    /// How long a binding is good for: a pager walks its pages within minutes; an
    /// operation (a cluster, a database restore) may run for hours.
    pub fn lifetime(self) -> Duration {
        match self {
            Continuation::Page => Duration::from_secs(60 * 60),
            Continuation::Poll => Duration::from_secs(24 * 60 * 60),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Continuation::Page => "page",
            Continuation::Poll => "poll",
        }
    }
}

/// Seconds since the epoch, the clock bindings expire by.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Signs and checks bindings. The key is the gateway's (kept in its state directory).
pub struct Binder {
    key: Vec<u8>,
}

fn mac_for(key: &[u8], tenant: &str, object_id: &str, path: &str, query: &str) -> String {
    mac_parts(key, &[tenant, object_id, path, query])
}

fn mac_parts(key: &[u8], parts: &[&str]) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    for part in parts {
        m.update(part.as_bytes());
        m.update(b"\n");
    }
    let tag = m.finalize().into_bytes();
    tag[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// The MAC of a continuation binding. Its first part keeps it apart from the bindings of the
/// gateway's own approval URLs (`sign_for`), which cover other fields.
fn continuation_mac(
    key: &[u8],
    kind: Continuation,
    expires: u64,
    principal: &Principal,
    path: &str,
    query: &str,
) -> String {
    let (kind, expires) = (kind.tag().to_string(), expires.to_string());
    mac_parts(
        key,
        &[
            "portcullis continuation v2",
            &kind,
            &expires,
            &principal.tenant_id,
            &principal.object_id,
            "GET",
            path,
            query,
        ],
    )
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

    /// A binding for GET of `path?query` by `principal`, good until `expires` (seconds since
    /// the epoch): `{kind}{expires}-{mac}`.
    pub fn bind(
        &self,
        kind: Continuation,
        principal: &Principal,
        path: &str,
        query: &str,
        expires: u64,
    ) -> String {
        let mac = continuation_mac(&self.key, kind, expires, principal, path, query);
        format!("{}{expires}-{mac}", kind.tag())
    }

    /// What `binding` continues, if it was issued to `principal` for GET of exactly this path
    /// and query and has not expired at `now`.
    pub fn verify(
        &self,
        principal: &Principal,
        method: &http::Method,
        path: &str,
        query: &str,
        binding: &str,
        now: u64,
    ) -> Option<Continuation> {
        if method != http::Method::GET {
            return None;
        }
        let mut chars = binding.chars();
        let kind = Continuation::of(chars.next()?)?;
        let (expires, mac) = chars.as_str().split_once('-')?;
        if expires.is_empty() || expires.len() > 20 || !expires.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let expires: u64 = expires.parse().ok()?;
        // A binding from a clock far ahead, or forged with a far expiry, is no binding.
        if expires < now || expires > now.saturating_add(kind.lifetime().as_secs() + 300) {
            return None;
        }
        let expected = continuation_mac(&self.key, kind, expires, principal, path, query);
        crate::secret::same(expected.as_bytes(), mac.as_bytes()).then_some(kind)
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

    /// Rewrites `url` if it points at `upstream_base`; `None` leaves it as it is. The
    /// rewritten URL is bound as `kind` for `principal` until `now` plus the kind's lifetime,
    /// except a page outside `list_path` (the decoded path of the list that handed it out,
    /// below the service root): that one is rewritten unbound, and judged by policy alone.
    #[allow(clippy::too_many_arguments)]
    pub fn rewrite(
        &self,
        url: &str,
        upstream_base: &url::Url,
        gateway_base: &str,
        principal: &Principal,
        kind: Continuation,
        list_path: &str,
        now: u64,
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
        let sep = if query.is_empty() { "" } else { "&" };
        let base = gateway_base.trim_end_matches('/');
        let same_list = || {
            crate::azure::route::normalize(below)
                .is_ok_and(|(decoded, _)| decoded.eq_ignore_ascii_case(list_path))
        };
        if kind == Continuation::Page && !same_list() {
            let q = if query.is_empty() { "" } else { "?" };
            return Some(format!("{base}{below}{q}{query}"));
        }
        let expires = now.saturating_add(kind.lifetime().as_secs());
        let binding = self.bind(kind, principal, &gateway_path, &query, expires);
        Some(format!(
            "{base}{below}?{query}{sep}{BINDING_PARAM}={binding}"
        ))
    }
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

    const NOW: u64 = 1_800_000_000;
    const LIST: &str = "/subscriptions/s/resourceGroups/rg/resources";

    fn rewrite(
        b: &Binder,
        url: &str,
        up: &str,
        gw: &str,
        who: &str,
        kind: Continuation,
    ) -> Option<String> {
        let up = url::Url::parse(up).unwrap();
        b.rewrite(url, &up, gw, &p(who), kind, LIST, NOW)
    }

    /// (path, query without the binding, binding) of a rewritten URL.
    fn parts(out: &str) -> (String, String, String) {
        let u = url::Url::parse(out).unwrap();
        let (q, binding) = Binder::split(u.query().unwrap_or(""));
        (u.path().to_owned(), q, binding.unwrap_or_default())
    }

    #[test]
    fn a_poll_url_is_bound_to_its_principal_its_url_get_and_a_lifetime() {
        let b = Binder::new(b"k".to_vec());
        let out = rewrite(&b, "https://management.azure.com/subscriptions/s/providers/Microsoft.Compute/locations/eastus/operations/1?api-version=2024-07-01", "https://management.azure.com", "https://gw:8443", "a", Continuation::Poll).unwrap();
        assert!(out.starts_with("https://gw:8443/subscriptions/s/providers/Microsoft.Compute/locations/eastus/operations/1?api-version=2024-07-01&portcullis-binding=o"), "{out}");
        let (path, q, binding) = parts(&out);
        assert_eq!(q, "api-version=2024-07-01");
        let get = http::Method::GET;
        assert_eq!(
            b.verify(&p("a"), &get, &path, &q, &binding, NOW),
            Some(Continuation::Poll)
        );
        assert_eq!(
            b.verify(&p("b"), &get, &path, &q, &binding, NOW),
            None,
            "another principal"
        );
        assert_eq!(
            b.verify(&p("a"), &get, "/subscriptions/other", &q, &binding, NOW),
            None,
            "another path"
        );
        assert_eq!(
            b.verify(
                &p("a"),
                &get,
                &path,
                "api-version=2025-01-01",
                &binding,
                NOW
            ),
            None,
            "another query"
        );
        for m in [
            http::Method::PUT,
            http::Method::PATCH,
            http::Method::POST,
            http::Method::DELETE,
            http::Method::HEAD,
        ] {
            assert_eq!(
                b.verify(&p("a"), &m, &path, &q, &binding, NOW),
                None,
                "{m} is not GET"
            );
        }
        let life = Continuation::Poll.lifetime().as_secs();
        assert!(
            b.verify(&p("a"), &get, &path, &q, &binding, NOW + life)
                .is_some()
        );
        assert_eq!(
            b.verify(&p("a"), &get, &path, &q, &binding, NOW + life + 1),
            None,
            "expired"
        );
        // The expiry is under the MAC: moving it forward breaks the binding.
        let later = binding.replacen(
            &format!("o{}", NOW + life),
            &format!("o{}", NOW + life + 3600),
            1,
        );
        assert_ne!(later, binding);
        assert_eq!(
            b.verify(&p("a"), &get, &path, &q, &later, NOW),
            None,
            "extended"
        );
        // So is the kind.
        let as_page = binding.replacen('o', "p", 1);
        assert_eq!(
            b.verify(&p("a"), &get, &path, &q, &as_page, NOW),
            None,
            "kind changed"
        );
        // A binding signed for a far future (a key that leaked, a clock far ahead) is refused.
        let far = b.bind(Continuation::Poll, &p("a"), &path, &q, NOW + 10 * life);
        assert_eq!(b.verify(&p("a"), &get, &path, &q, &far, NOW), None);
        // The gateway's own approval bindings are another domain.
        let own = b.sign_for("t", "a", &path, &q);
        assert_eq!(b.verify(&p("a"), &get, &path, &q, &own, NOW), None);
        for junk in [
            "",
            "o",
            "o-",
            "x1-00",
            "o99999999999999999999999-00",
            "o1800000001-zz",
        ] {
            assert_eq!(
                b.verify(&p("a"), &get, &path, &q, junk, NOW),
                None,
                "{junk:?}"
            );
        }
        assert!(
            rewrite(
                &b,
                "https://evil.example/x",
                "https://management.azure.com",
                "https://gw",
                "a",
                Continuation::Poll
            )
            .is_none()
        );
        assert!(
            rewrite(
                &b,
                "https://management.azure.com.evil.example/x",
                "https://management.azure.com",
                "https://gw",
                "a",
                Continuation::Poll
            )
            .is_none()
        );
        assert!(
            rewrite(
                &b,
                "https://management.azure.com:8443/x",
                "https://management.azure.com",
                "https://gw",
                "a",
                Continuation::Poll
            )
            .is_none(),
            "another port"
        );
    }

    #[test]
    fn a_page_is_bound_only_on_the_lists_own_path() {
        let b = Binder::new(b"k".to_vec());
        let up = "https://management.azure.com";
        // Azure's next page: the list's path, in any case, with a skip token.
        let out = rewrite(&b, "https://management.azure.com/subscriptions/s/resourcegroups/RG/resources?api-version=2021-04-01&%24skiptoken=x", up, "https://gw", "a", Continuation::Page).unwrap();
        let (path, q, binding) = parts(&out);
        assert!(binding.starts_with('p'), "{out}");
        assert_eq!(
            b.verify(&p("a"), &http::Method::GET, &path, &q, &binding, NOW),
            Some(Continuation::Page)
        );
        let life = Continuation::Page.lifetime().as_secs();
        assert_eq!(
            b.verify(
                &p("a"),
                &http::Method::GET,
                &path,
                &q,
                &binding,
                NOW + life + 1
            ),
            None
        );
        // A link elsewhere (what an agent could store in a resource): rewritten, unbound.
        for elsewhere in [
            "https://management.azure.com/subscriptions/s/resourceGroups/other/providers/Microsoft.Compute/virtualMachines/vm1?api-version=2024-07-01",
            "https://management.azure.com/subscriptions/s/resourceGroups/rg/resources/../../other/resources?x=1",
            "https://management.azure.com/subscriptions/s/resourceGroups/rg/resources/x",
        ] {
            let out = rewrite(&b, elsewhere, up, "https://gw", "a", Continuation::Page).unwrap();
            assert!(!out.contains(BINDING_PARAM), "{out}");
            assert!(out.starts_with("https://gw/"), "{out}");
        }
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
                Continuation::Page,
                "/secrets",
                NOW,
            )
            .unwrap();
        assert!(out.starts_with("https://gw/keyvault/demo-kv/secrets?api-version=7.4&$skiptoken=x&portcullis-binding=p"), "{out}");
        let sim = url::Url::parse("https://127.0.0.1:8440/keyvault/demo-kv").unwrap();
        let out = b
            .rewrite(
                "https://127.0.0.1:8440/keyvault/demo-kv/secrets?a=1",
                &sim,
                "https://gw/keyvault/demo-kv",
                &p("a"),
                Continuation::Page,
                "/secrets",
                NOW,
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
                &p("a"),
                Continuation::Page,
                "/secrets",
                NOW,
            )
            .is_none()
        );
    }
}
