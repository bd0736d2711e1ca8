//! Token validation, cold and cached (issue 11: cached under 2 µs).
//!
//! The token is real: the Azure simulator (in this process, over TLS) signs it with its
//! RS256 key and publishes the key in its JWKS; the gateway's `KeyCache` fetches the
//! discovery document and the keys once, before anything is timed.
//!
//! - cold: `jwt::validate`, the full check (shape, claims, issuer, RS256 signature) with the
//!   keys already in memory: what every request paid before the cache.
//! - cached: `Authenticator::authenticate` on a token it has verified before.
//!
//! Neither path awaits anything once the keys are held, so each future is polled once
//! with a no-op waker instead of going through a runtime's `block_on`: what is measured
//! is the validation, not the executor. A future that is not ready fails the bench.
//!
//! Run: `cargo bench -p portcullis --bench identity`.

use std::hint::black_box;
use std::path::PathBuf;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use azure_sim::{MintRequest, SimOptions, Simulator};
use criterion::{Criterion, criterion_group, criterion_main};
use portcullis::config::{IdentityConfig, TenantMode};
use portcullis::identity::Authenticator;
use portcullis::identity::jwks::KeyCache;
use portcullis::identity::jwt;
use portcullis::upstream::client::HttpClient;

const API: &str = "api://portcullis";

/// Polls `f` once: the paths measured here complete without waiting.
fn ready<F: Future>(f: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(f).poll(&mut cx) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("the future waited: the keys were not all in memory"),
    }
}

/// A temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn identity(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let sim = rt
        .block_on(Simulator::start(SimOptions::default()))
        .unwrap();
    let dir = TempDir(std::env::temp_dir().join(format!(
        "pc-bench-identity-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4()
    )));
    std::fs::create_dir_all(&dir.0).unwrap();
    let ca = dir.0.join("ca.pem");
    std::fs::write(&ca, sim.ca_pem()).unwrap();
    let http = HttpClient::new(&[ca], Duration::from_secs(10)).unwrap();
    let cfg = IdentityConfig {
        authority: sim.url().to_owned(),
        tenant: TenantMode::Single(sim.tenant_id()),
        allowed_tenants: vec![sim.tenant_id()],
        audiences: vec![
            API.to_owned(),
            sim.config().api_for(API).unwrap().app_id.to_string(),
        ],
        versions: vec![1, 2],
        clock_skew: Duration::from_secs(60),
        ca_file: None,
        overage: None,
    };
    let keys = Arc::new(KeyCache::new(http));
    let auth = Authenticator::new(cfg.clone(), keys.clone(), None);
    // An hour's token, as Entra issues them for an agent (v2, the gateway's audience).
    let token = sim
        .mint(MintRequest {
            principal: "agent".into(),
            audience: API.into(),
            version: None,
            lifetime_secs: Some(3600),
            not_before_offset_secs: 0,
            client_app: None,
            claims: Default::default(),
            unpublished_key: false,
        })
        .unwrap();
    // Fetches the discovery document and the keys, and caches the token.
    rt.block_on(auth.authenticate(&token)).unwrap();
    assert_eq!(auth.cached_tokens(), 1);

    let mut g = c.benchmark_group("identity");
    g.bench_function(
        format!(
            "token validation, cold: jwt::validate ({} B token)",
            token.len()
        ),
        |b| b.iter(|| black_box(ready(jwt::validate(&cfg, &keys, black_box(&token))).unwrap())),
    );
    g.bench_function(
        format!(
            "token validation, cached: authenticate ({} B token)",
            token.len()
        ),
        |b| b.iter(|| black_box(ready(auth.authenticate(black_box(&token))).unwrap())),
    );
    g.finish();
    assert_eq!(auth.cached_tokens(), 1, "the cached token stayed cached");
    drop(sim);
}

criterion_group!(benches, identity);
criterion_main!(benches);
