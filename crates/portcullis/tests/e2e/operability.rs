//! Running the gateway as a service: Prometheus metrics on the admin listener, JSON logs
//! that carry each request's id and no secrets, and a graceful SIGTERM (held requests are
//! let go with a retryable 503, in-flight requests finish, the chain is sealed).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::crash::Gateway;
use crate::{API, GATEWAY_API, Setup, prepare, send, verify_cli};

/// The value of one sample line (`name{labels} value`) in a Prometheus text page.
fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn metrics(gw: &Gateway) -> String {
    let resp = gw
        .http
        .get(format!("https://{}/metrics", gw.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    resp.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_json_logs_and_a_graceful_sigterm() {
    let (sim, dir) = prepare(Setup {
        extra: "approvals:\n  hold: 60s\n",
        ..Default::default()
    })
    .await;
    // `prepare` writes one listen line; give it a shutdown grace.
    let config = std::fs::read_to_string(dir.join("portcullis.yaml"))
        .unwrap()
        .replace(
            "listen: {gateway: \"127.0.0.1:0\", admin: \"127.0.0.1:0\"}",
            "listen: {gateway: \"127.0.0.1:0\", admin: \"127.0.0.1:0\", shutdown_grace: 20s}",
        );
    std::fs::write(dir.join("portcullis.yaml"), config).unwrap();
    let gw = Gateway::spawn_env(
        &dir,
        "portcullis.yaml",
        "gateway.log",
        &[("RUST_LOG", "info"), ("PORTCULLIS_LOG_FORMAT", "json")],
    )
    .await;
    let token = sim.token("agent", GATEWAY_API).unwrap();
    let rg = format!(
        "https://{}/subscriptions/{}/resourceGroups/demo-rg",
        gw.addr,
        sim.subscription_id()
    );
    let mut ids = HashSet::new();
    let mut call = async |req: reqwest::RequestBuilder| {
        let (status, headers, body) = send(req.bearer_auth(&token)).await;
        let id = headers["x-portcullis-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        ids.insert(id);
        (status, body)
    };

    // Allowed, denied, masked.
    let (s, b) = call(gw.http.get(format!("{rg}?{API}"))).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = call(gw.http.delete(format!(
        "{rg}/providers/Microsoft.Compute/virtualMachines/vm1?{API}"
    )))
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    let clear = sim.secret_value("demo-kv", "db-password").unwrap();
    let (s, b) = call(gw.http.get(format!(
        "https://{}/keyvault/demo-kv/secrets/db-password?api-version=7.4",
        gw.addr
    )))
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert!(!b.to_string().contains(&clear));
    // Unauthenticated: refused before policy.
    let (s, _, _) = send(gw.http.get(format!("{rg}?{API}"))).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    let page = metrics(&gw).await;
    let series = |decision: &str, action: &str, status: u16| {
        format!(
            "portcullis_requests_total{{decision=\"{decision}\",action=\"{action}\",status=\"{status}\"}}"
        )
    };
    let count = |s: String| sample(&page, &s).unwrap_or_else(|| panic!("no {s} in\n{page}"));
    assert_eq!(
        count(series(
            "allow",
            "microsoft.resources/subscriptions/resourcegroups/read",
            200
        )),
        1.0
    );
    assert_eq!(
        count(series(
            "deny",
            "microsoft.compute/virtualmachines/delete",
            403
        )),
        1.0
    );
    assert_eq!(
        count(series(
            "allow",
            "microsoft.keyvault/vaults/secrets/getsecret/action",
            200
        )),
        1.0
    );
    assert_eq!(count(series("none", "-", 401)), 1.0);
    assert!(count("portcullis_masked_values_total".into()) >= 1.0);
    assert!(
        count("portcullis_masked_responses_total{kind=\"keyvault-secret\"}".into()) >= 1.0,
        "{page}"
    );
    // Six records: request and response of the two forwarded calls, one refusal each
    // for the denied and the unauthenticated one.
    assert_eq!(
        count("portcullis_audit_records_total".into()),
        6.0,
        "{page}"
    );
    assert!(count("portcullis_audit_commit_duration_seconds_count".into()) >= 1.0);
    assert_eq!(
        count("portcullis_request_duration_seconds_count{decision=\"allow\"}".into()),
        2.0
    );
    assert_eq!(
        count("portcullis_upstream_duration_seconds_count".into()),
        2.0
    );
    assert_eq!(count("portcullis_held_requests".into()), 0.0);
    assert_eq!(count("portcullis_jwks_refresh_failures_total".into()), 0.0);

    // A request held for approval, and a slow one in flight, when SIGTERM comes.
    let held = tokio::spawn(send(
        gw.http
            .put(format!(
                "{rg}/providers/Microsoft.Storage/storageAccounts/heldatstop?api-version=2023-05-01"
            ))
            .bearer_auth(&token)
            .json(&json!({"location": "eastus"})),
    ));
    let deadline = Instant::now() + Duration::from_secs(20);
    while sample(&metrics(&gw).await, "portcullis_held_requests") != Some(1.0) {
        assert!(Instant::now() < deadline, "the request was never held");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sim.set_faults(azure_sim::faults::Faults {
        path_prefix: Some("/subscriptions/".into()),
        latency_ms: 1500,
        ..Default::default()
    })
    .unwrap();
    let before = sample(&metrics(&gw).await, "portcullis_audit_records_total").unwrap();
    let slow = tokio::spawn(send(
        gw.http
            .get(format!("{rg}/resources?{API}"))
            .bearer_auth(&token),
    ));
    // Its request record is committed before it is forwarded: it is in flight.
    while sample(&metrics(&gw).await, "portcullis_audit_records_total") == Some(before) {
        assert!(Instant::now() < deadline, "the slow request never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log_path = dir.join("gateway.log");
    let status = gw.terminate().await;
    assert!(status.success(), "a graceful stop exits 0: {status}");

    let (s, h, b) = held.await.unwrap();
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{b}");
    assert_eq!(b["error"]["code"], "GatewayShuttingDown", "{b}");
    // One line at start (where, and the policy), one at the signal, one when stopped,
    // saying what the held request was answered.
    let said = std::fs::read_to_string(&log_path).unwrap();
    let said: Vec<&str> = said
        .lines()
        .filter(|l| l.starts_with("portcullis: "))
        .collect();
    let rules = portcullis::config::load(&dir.join("portcullis.yaml"))
        .unwrap()
        .policy
        .rules
        .len();
    assert!(
        said[0].ends_with(&format!(
            ", policy from {} ({rules} rules)",
            dir.join("portcullis.yaml").display()
        )),
        "{said:?}"
    );
    assert!(said.contains(&"portcullis: SIGTERM: stopping"), "{said:?}");
    assert_eq!(
        said.last(),
        Some(
            &"portcullis: stopped; 1 request(s) held for approval at shutdown; answered 0 with 202 and a status URL (polls go on, on any replica), 1 with 503 GatewayShuttingDown (the client retries); their approvals stay pending"
        ),
        "{said:?}"
    );
    assert_eq!(h["retry-after"], "1");
    let approval = h["x-portcullis-approval"].to_str().unwrap().to_owned();
    assert!(
        b["error"]["message"].as_str().unwrap().contains(&approval),
        "{b}"
    );
    let (s, _, b) = slow.await.unwrap();
    assert_eq!(s, StatusCode::OK, "the request in flight finished: {b}");
    assert!(
        !sim.calls_since(0)
            .iter()
            .any(|c| c.path.contains("heldatstop")),
        "nothing held reached Azure"
    );

    // The log: one JSON object per line; each request's line names it; no secrets.
    let log = std::fs::read_to_string(log_path).unwrap();
    let mut logged = HashSet::new();
    for line in log.lines().filter(|l| l.starts_with('{')) {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            v["timestamp"].is_string() && v["level"].is_string(),
            "{line}"
        );
        if v["message"] == "request" {
            let id = v["span"]["request_id"]
                .as_str()
                .unwrap_or_else(|| panic!("{line}"));
            logged.insert(id.to_owned());
            assert!(v["status"].is_u64() && v["decision"].is_string(), "{line}");
        }
    }
    assert!(
        ids.is_subset(&logged),
        "every request is logged with its id: {ids:?} vs {logged:?}"
    );
    assert!(!log.contains(&clear), "no secret value in the log");
    assert!(
        !log.contains(&token[token.len() - 40..]),
        "no token in the log"
    );
    assert!(
        log.contains("\"message\":\"masked secrets in the answer\""),
        "{log}"
    );

    // Sealed: the chain verifies, every record under the final checkpoint.
    let (ok, out) = verify_cli(&dir.join("state"));
    assert!(ok, "{out}");
    let store = portcullis::audit::store::Store::open(&dir.join("state/audit.db"))
        .await
        .unwrap();
    for instance in store.instances().await.unwrap() {
        let chain = store.chain(&instance).await.unwrap();
        let sealed = store
            .checkpoints(&instance)
            .await
            .unwrap()
            .last()
            .unwrap()
            .seq;
        assert_eq!(
            sealed,
            chain.last().unwrap().seq,
            "the last checkpoint covers the last record"
        );
    }
}

/// A certificate issued by a fresh CA for 127.0.0.1: (CA PEM, certificate PEM, key PEM).
fn issue(ca_name: &str) -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let mut ca = CertificateParams::default();
    ca.distinguished_name.push(DnType::CommonName, ca_name);
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    let ca_key = KeyPair::generate().unwrap();
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = params
        .signed_by(&key, &Issuer::from_params(&ca, &ca_key))
        .unwrap();
    (ca_pem, cert.pem(), key.serialize_pem())
}

/// A renewed certificate is served without a restart; a broken renewal is refused and the
/// old certificate stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_is_served_without_a_restart() {
    let (sim, dir) = prepare(Setup::default()).await;
    let (ca1, cert1, key1) = issue("first CA");
    let (ca2, cert2, key2) = issue("second CA");
    std::fs::write(dir.join("tls.crt"), &cert1).unwrap();
    std::fs::write(dir.join("tls.key"), &key1).unwrap();
    let config = std::fs::read_to_string(dir.join("portcullis.yaml")).unwrap();
    std::fs::write(
        dir.join("portcullis.yaml"),
        format!("tls: {{cert_file: tls.crt, key_file: tls.key}}\n{config}"),
    )
    .unwrap();
    // The helper waits for the development CA line, which a configured certificate does
    // not print: start it by hand.
    let log = dir.join("gateway.log");
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _child = Killed(
        std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(["serve", "--config"])
            .arg(dir.join("portcullis.yaml"))
            .env("RUST_LOG", "info")
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let addr = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(a) = text
            .lines()
            .find_map(|l| l.strip_prefix("portcullis: gateway on https://"))
            .and_then(|r| r.split(',').next())
        {
            break a.to_owned();
        }
        assert!(Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let client = |ca: &str| {
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
            .tls_built_in_root_certs(false)
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
    };
    let token = sim.token("agent", GATEWAY_API).unwrap();
    let url = format!(
        "https://{addr}/subscriptions/{}/resourceGroups/demo-rg?{API}",
        sim.subscription_id()
    );
    let works = async |ca: &str| {
        client(ca)
            .get(&url)
            .bearer_auth(&token)
            .send()
            .await
            .is_ok_and(|r| r.status() == StatusCode::OK)
    };
    assert!(works(&ca1).await);
    assert!(
        !works(&ca2).await,
        "the second CA is not trusted for the first certificate"
    );

    // A broken renewal (a key that does not match) is refused: the first one stays.
    std::fs::write(dir.join("tls.key"), &key2).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("does not load") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the broken renewal was not noticed: {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(works(&ca1).await, "the old certificate still serves");

    // The whole renewal: new connections get the new certificate.
    std::fs::write(dir.join("tls.crt"), &cert2).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !works(&ca2).await {
        assert!(
            Instant::now() < deadline,
            "the renewed certificate was not served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!works(&ca1).await);
}
