//! The deployment examples that ship in `deploy/`, loaded by the code that would run them:
//! the production configuration through the gateway's configuration loader (and started on
//! PostgreSQL, probed, drained and verified), the Kubernetes manifest parsed as the
//! multi-document YAML it is with the configuration in its ConfigMap loaded from the tree
//! the Deployment mounts, and the systemd unit checked against the configuration (and by
//! `systemd-analyze verify` where that exists). Each cross-check is one a user would
//! otherwise find broken in production: a probe on the wrong port, a Secret key the
//! configuration does not read, a stop timeout shorter than the drain.
//!
//! Paths: the configuration uses paths relative to its own directory, so a copy in a
//! temporary directory loads as it would in `/etc/portcullis`. Only absolute paths are
//! re-rooted under the temporary directory (mount paths, `state_dir` when the gateway
//! really starts, the database CA in the store URL), because writing to `/etc` or
//! `/var/lib` of the machine running the tests is not an option.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use portcullis::config::{self, Config, ConfigError, CredentialConfig, StoreSettings, TlsSource};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use serde_json::Value;

use crate::store::{Schema, pg_url};
use crate::{outcome, portcullis_cli};

/// The configuration files a deployment installs in `/etc/portcullis`, and where each
/// comes from in the repository.
const CONFIG_FILES: [(&str, &str); 3] = [
    ("portcullis.yaml", "deploy/portcullis.yaml"),
    ("policy.yaml", "deploy/policy.yaml"),
    ("agent-baseline.yaml", "deploy/agent-baseline.yaml"),
];

/// Where the Azure Workload Identity webhook mounts the federated token in a pod labelled
/// `azure.workload.identity/use: "true"`, and names it in `AZURE_FEDERATED_TOKEN_FILE`.
const WEBHOOK_TOKEN_FILE: &str = "/var/run/secrets/azure/tokens/azure-identity-token";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn temp_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "pc-deploy-{what}-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// `path` re-rooted under `root` (`/etc/x` → `root/etc/x`).
fn under(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

/// Loads a configuration file as `portcullis::config::load` does (read, parse against the
/// file's directory, remember the file for hot reload), but with the environment a
/// deployment would give the process, from a map: tests run side by side in one process
/// environment, and the point is to know exactly which variables the file needs.
fn load(path: &Path, env: &BTreeMap<String, String>) -> Result<Config, ConfigError> {
    load_recording(path, env, &RefCell::new(BTreeSet::new()))
}

fn load_recording(
    path: &Path,
    env: &BTreeMap<String, String>,
    asked: &RefCell<BTreeSet<String>>,
) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let lookup = |k: &str| {
        asked.borrow_mut().insert(k.to_owned());
        env.get(k).cloned()
    };
    let mut cfg = config::parse(
        &text,
        &path.display().to_string(),
        path.parent().unwrap(),
        &lookup,
    )?;
    cfg.source_path = Some(path.to_path_buf());
    Ok(cfg)
}

fn load_ok(path: &Path, env: &BTreeMap<String, String>) -> Config {
    let cfg = load(path, env).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    cfg
}

/// The variables the file cannot load without: every one it read that, taken away, makes
/// loading fail with a message naming it.
fn required_env(path: &Path, env: &BTreeMap<String, String>) -> BTreeSet<String> {
    let asked = RefCell::new(BTreeSet::new());
    load_recording(path, env, &asked).unwrap_or_else(|e| panic!("{e}"));
    let mut required = BTreeSet::new();
    for var in asked.into_inner() {
        if !env.contains_key(&var) {
            continue;
        }
        let mut without = env.clone();
        without.remove(&var);
        if let Err(e) = load(path, &without) {
            assert!(e.to_string().contains(&var), "{var}: {e}");
            required.insert(var);
        }
    }
    required
}

/// A CA, and a server certificate it issued for localhost (what a TLS Secret holds).
struct Tls {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn tls() -> Tls {
    let mut ca = CertificateParams::default();
    ca.distinguished_name
        .push(DnType::CommonName, "portcullis deploy test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    let ca_key = KeyPair::generate().unwrap();
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = params
        .signed_by(&key, &Issuer::from_params(&ca, &ca_key))
        .unwrap();
    Tls {
        ca_pem,
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// Runs the shipped `deploy/make-keys.sh` into `dir`: the keys every test layout uses come
/// from it, so a script whose output the gateway cannot read fails here.
fn make_keys(dir: &Path) {
    let (ok, out) = outcome(
        std::process::Command::new("sh")
            .arg(repo().join("deploy/make-keys.sh"))
            .arg(dir),
    );
    assert!(
        ok,
        "deploy/make-keys.sh (needs openssl, od and tr) failed:\n{out}"
    );
    // It refuses to overwrite keys replicas share.
    let (again, out) = outcome(
        std::process::Command::new("sh")
            .arg(repo().join("deploy/make-keys.sh"))
            .arg(dir),
    );
    assert!(!again && out.contains("not overwriting"), "{out}");
}

/// `/etc/portcullis` as the systemd example installs it, under `root`: the three
/// configuration files from deploy/, the keys from make-keys.sh, a certificate, and the
/// database's CA. Returns the configuration file and the certificate.
fn etc_layout(root: &Path) -> (PathBuf, Tls) {
    let etc = under(root, "/etc/portcullis");
    for (name, source) in CONFIG_FILES {
        write(&etc.join(name), &read(source));
    }
    make_keys(&etc.join("keys"));
    let tls = tls();
    write(&etc.join("tls/tls.crt"), &tls.cert_pem);
    write(&etc.join("tls/tls.key"), &tls.key_pem);
    write(&etc.join("tls/db-ca.pem"), &tls.ca_pem);
    (etc.join("portcullis.yaml"), tls)
}

/// The environment the Kubernetes example gives the process (and the systemd one: the
/// same two variables) with a database URL of the documented shape.
fn deployment_env(store_url: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("PORTCULLIS_STORE_URL".to_owned(), store_url.to_owned()),
        (
            "AZURE_FEDERATED_TOKEN_FILE".to_owned(),
            WEBHOOK_TOKEN_FILE.to_owned(),
        ),
    ])
}

fn decode_key(path: &Path) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(std::fs::read_to_string(path).unwrap().trim())
        .unwrap()
}

#[test]
fn the_production_configuration_loads_with_real_azure_defaults_and_shared_keys() {
    // The shipped pack is copied beside the configuration; the copy must be the pack.
    assert_eq!(
        read("deploy/agent-baseline.yaml"),
        read("policies/agent-baseline.yaml"),
        "deploy/agent-baseline.yaml must be a copy of policies/agent-baseline.yaml"
    );
    let root = temp_dir("load");
    let (path, _tls) = etc_layout(&root);
    let etc = path.parent().unwrap().to_path_buf();
    let env = deployment_env(
        "postgres://portcullis:pw@db.example.com:5432/portcullis?sslmode=verify-full&sslrootcert=/etc/portcullis/tls/db-ca.pem",
    );
    let cfg = load_ok(&path, &env);

    // Exactly the two variables the file's header names, and the deployments provide.
    assert_eq!(
        required_env(&path, &env),
        BTreeSet::from([
            "AZURE_FEDERATED_TOKEN_FILE".to_owned(),
            "PORTCULLIS_STORE_URL".to_owned()
        ])
    );

    // Listening for a load balancer and the kubelet's probes; real Entra ID and Azure.
    assert!(cfg.listen_gateway.ip().is_unspecified() && cfg.listen_admin.ip().is_unspecified());
    assert_eq!(cfg.identity.authority, "https://login.microsoftonline.com");
    assert!(matches!(
        &cfg.identity.tenant,
        config::TenantMode::Single(_)
    ));
    assert!(
        cfg.identity
            .audiences
            .iter()
            .any(|a| a.starts_with("api://")),
        "{:?}",
        cfg.identity.audiences
    );
    assert!(cfg.identity.overage.is_some(), "group overage is resolved");
    assert_eq!(cfg.upstream.arm_url, "https://management.azure.com");
    assert_eq!(cfg.upstream.arm_resource, "https://management.azure.com");
    assert_eq!(cfg.upstream.vault_url("kv1"), "https://kv1.vault.azure.net");
    assert_eq!(cfg.upstream.keyvault_resource, "https://vault.azure.net");

    // Two workload identities, distinct, both exchanging the webhook's token.
    assert_eq!(cfg.upstream.default_credential, "baseline");
    let ids: Vec<&str> = ["baseline", "elevated"]
        .iter()
        .map(|name| match &cfg.upstream.credentials[*name] {
            CredentialConfig::WorkloadIdentity {
                client_id,
                token_file,
                authority,
                ..
            } => {
                assert_eq!(token_file, Path::new(WEBHOOK_TOKEN_FILE));
                assert_eq!(authority, "https://login.microsoftonline.com");
                client_id.as_str()
            }
            other => panic!("{name}: {other:?}"),
        })
        .collect();
    assert_ne!(
        ids[0], ids[1],
        "baseline and elevated are different identities"
    );

    // Shared state: PostgreSQL from the environment; keys and the signing key from files.
    match &cfg.store {
        StoreSettings::Postgres { url, schema } => {
            assert_eq!(url.expose(), env["PORTCULLIS_STORE_URL"]);
            assert!(schema.is_some());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        cfg.keys.url_binding.as_deref(),
        Some(&decode_key(&etc.join("keys/url-binding.key"))[..])
    );
    assert_eq!(
        cfg.keys.mask.as_deref(),
        Some(&decode_key(&etc.join("keys/mask.key"))[..])
    );
    assert!(cfg.keys.url_binding.as_ref().unwrap().len() >= 32);
    assert_eq!(cfg.audit.signing_key, etc.join("keys/audit-signing.key"));
    assert!(
        !cfg.audit.generate_key,
        "the signing key is given, never generated per replica"
    );
    assert!(!cfg.audit.fail_open);
    assert!(!cfg.audit.readers.is_empty());
    // make-keys.sh's public half is the one the gateway's key has: what verifiers trust.
    let key = portcullis::audit::checkpoint::load_or_create(&cfg.audit.signing_key, false)
        .unwrap_or_else(|e| panic!("{e}"));
    let public: String = key
        .verifying_key()
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        public,
        std::fs::read_to_string(etc.join("keys/audit-signing.key.pub"))
            .unwrap()
            .trim()
    );
    match &cfg.tls {
        TlsSource::Files { cert, key } => {
            assert!(
                cert.starts_with(&etc) && cert.exists(),
                "{}",
                cert.display()
            );
            assert!(key.starts_with(&etc) && key.exists(), "{}", key.display());
        }
        other => panic!("a production gateway has its own certificate: {other:?}"),
    }
    assert_eq!(cfg.state_dir, Path::new("/var/lib/portcullis"));
    assert_eq!(cfg.shutdown_grace, Duration::from_secs(25));
    assert_eq!(cfg.shutdown_delay, Duration::from_secs(10));
    assert!(cfg.approvals.console_url.is_some());

    // The policy decides as its tests say (the elevated identity forwards approved
    // changes), through the CLI a user runs.
    write(
        &etc.join("policy.test.yaml"),
        &read("deploy/policy.test.yaml"),
    );
    let (ok, out) = outcome(
        portcullis_cli()
            .args(["policy", "test"])
            .arg(etc.join("policy.test.yaml")),
    );
    assert!(ok && out.contains(" 0 failed"), "{out}");
    let (ok, out) = outcome(portcullis_cli().args(["policy", "check"]).arg(&path));
    assert!(ok && out.contains("0 warnings"), "{out}");
    // Which identity forwards: approved changes the elevated one, reads the baseline one.
    let rg = "/subscriptions/88888888-8888-8888-8888-888888888888/resourceGroups/agents-rg";
    for (request, elevated) in [
        (
            format!(
                "PUT {rg}/providers/Microsoft.Storage/storageAccounts/sa1?api-version=2023-05-01"
            ),
            true,
        ),
        (
            "PUT /keyvault/agents-kv/secrets/s1?api-version=7.4".to_owned(),
            true,
        ),
        (format!("GET {rg}?api-version=2022-09-01"), false),
    ] {
        let (ok, out) = outcome(
            portcullis_cli()
                .args(["policy", "explain", "--config"])
                .arg(&path)
                .args(["--principal", "group:agents", "--request", &request]),
        );
        assert!(ok, "{out}");
        assert_eq!(
            out.contains("credential  elevated"),
            elevated,
            "{request}:\n{out}"
        );
    }
    std::fs::remove_dir_all(&root).unwrap();
}

/// `GET` on the admin or gateway listener, trusting `ca`.
async fn get(http: &reqwest::Client, addr: SocketAddr, path: &str) -> (u16, String) {
    let r = http
        .get(format!("https://localhost:{}{path}", addr.port()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn the_production_configuration_runs_on_postgres_drains_and_its_chain_verifies() {
    let root = temp_dir("run");
    let (path, tls) = etc_layout(&root);
    let etc = path.parent().unwrap().to_path_buf();
    // The test database (trust authentication on loopback) stands in for the documented
    // `postgres://...?sslmode=verify-full` URL; TLS to PostgreSQL has its own test.
    let mut cfg = load_ok(&path, &deployment_env(&pg_url()));
    // Re-rooted, because they are absolute or fixed: ports 8443/9443 on every interface
    // and /var/lib/portcullis are the machine's, not the test's; and the schema must be
    // this run's own, as other runs share the database.
    let schema = Schema::new();
    let state = root.join("var/lib/portcullis");
    cfg.listen_gateway = "127.0.0.1:0".parse().unwrap();
    cfg.listen_admin = "127.0.0.1:0".parse().unwrap();
    cfg.state_dir = state.clone();
    let StoreSettings::Postgres { url, .. } = cfg.store.clone() else {
        panic!("{:?}", cfg.store)
    };
    cfg.store = StoreSettings::Postgres {
        url,
        schema: Some(schema.0.clone()),
    };
    let delay = cfg.shutdown_delay;
    let gw = portcullis::cli::serve::start(cfg)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(
        gw.ca_file.is_none(),
        "the configured certificate, not a development CA"
    );
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(tls.ca_pem.as_bytes()).unwrap())
        .tls_built_in_root_certs(false)
        .resolve("localhost", gw.admin_addr)
        .build()
        .unwrap();

    // What the probes and Prometheus ask, with no token, over the configured certificate.
    let (status, body) = get(&http, gw.admin_addr, "/healthz").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = get(&http, gw.admin_addr, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    let ready: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["store"], "postgres", "{body}");
    let (status, body) = get(&http, gw.admin_addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(body.contains("portcullis_build_info"), "{body}");
    // An agent without a token is refused (and recorded), on the gateway listener.
    let agent = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(tls.ca_pem.as_bytes()).unwrap())
        .tls_built_in_root_certs(false)
        .resolve("localhost", gw.gateway_addr)
        .build()
        .unwrap();
    let (status, body) = get(
        &agent,
        gw.gateway_addr,
        "/subscriptions?api-version=2022-12-01",
    )
    .await;
    assert_eq!(status, 401, "{body}");

    // SIGTERM's path: unready at once while still answering (the load balancer's cue),
    // then drained within shutdown_delay + shutdown_grace.
    let admin = gw.admin_addr;
    let started = std::time::Instant::now();
    let stopping = tokio::spawn(gw.shutdown());
    let mut draining = false;
    while started.elapsed() < delay {
        let (status, body) = get(&http, admin, "/readyz").await;
        if status == 503 && body.contains("draining") {
            draining = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(draining, "/readyz says draining during shutdown_delay");
    tokio::time::timeout(Duration::from_secs(60), stopping)
        .await
        .expect("the gateway stops within shutdown_delay + shutdown_grace")
        .unwrap();
    assert!(
        started.elapsed() >= delay,
        "it kept accepting for shutdown_delay"
    );

    // With every key configured, the per-replica state is the instance id alone: an
    // emptyDir (or StateDirectory) loses nothing else.
    let files: BTreeSet<String> = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files, BTreeSet::from(["instance.id".to_owned()]));

    // The chain in PostgreSQL verifies with make-keys.sh's public key, as documented, and
    // not with another.
    let verify = |key: &Path| {
        outcome(
            portcullis_cli()
                .args([
                    "audit",
                    "verify",
                    "--store",
                    &pg_url(),
                    "--schema",
                    &schema.0,
                ])
                .arg("--public-key")
                .arg(key),
        )
    };
    let (ok, out) = verify(&etc.join("keys/audit-signing.key.pub"));
    assert!(ok, "{out}");
    let signed = out
        .split_once(" signed checkpoint")
        .and_then(|(before, _)| before.rsplit(' ').next())
        .and_then(|n| n.parse::<u32>().ok());
    assert!(signed.is_some_and(|n| n >= 1), "{out}");
    let other = root.join("other");
    make_keys(&other);
    let (ok, out) = verify(&other.join("audit-signing.key.pub"));
    assert!(!ok && out.contains("not trusted"), "{out}");
    std::fs::remove_dir_all(&root).unwrap();
}

/// The Secrets docs/deployment.md tells users to create: name → keys, with the literal
/// values it gives (`--from-literal=KEY=VALUE`).
fn documented_secrets(docs: &str) -> BTreeMap<String, BTreeMap<String, Option<String>>> {
    let joined = docs.replace("\\\n", " ");
    let mut found = BTreeMap::new();
    for line in joined.lines() {
        // `kubectl [-n NAMESPACE] create secret KIND NAME ...`
        let Some((_, command)) = line
            .split_once("kubectl ")
            .and_then(|(_, rest)| rest.split_once("create secret "))
        else {
            continue;
        };
        let words: Vec<&str> = command.split_whitespace().collect();
        let (kind, name) = (words[0], words[1]);
        let mut keys = BTreeMap::new();
        if kind == "tls" {
            keys.insert("tls.crt".to_owned(), None);
            keys.insert("tls.key".to_owned(), None);
        }
        for w in &words[2..] {
            if let Some(spec) = w.strip_prefix("--from-file=") {
                let key = match spec.split_once('=') {
                    Some((k, _)) => k,
                    None => spec.rsplit('/').next().unwrap(),
                };
                keys.insert(key.to_owned(), None);
            } else if let Some(spec) = w.strip_prefix("--from-literal=") {
                let (k, v) = spec.split_once('=').unwrap();
                keys.insert(k.to_owned(), Some(v.trim_matches('\'').to_owned()));
            }
        }
        found.insert(name.to_owned(), keys);
    }
    found
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in the manifest"))
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

/// Whether every `matchLabels`/selector label is on the pod.
fn selects(selector: &Value, pod_labels: &Value) -> bool {
    let selector = selector.as_object().unwrap();
    !selector.is_empty() && selector.iter().all(|(k, v)| pod_labels[k] == *v)
}

#[test]
fn the_kubernetes_manifest_mounts_and_probes_what_its_configuration_says() {
    let text = read("deploy/kubernetes/portcullis.yaml");
    let docs: Vec<Value> = serde_saphyr::from_multiple::<Value>(&text)
        .unwrap_or_else(|e| panic!("deploy/kubernetes/portcullis.yaml: {e}"))
        .into_iter()
        .filter(|d| !d.is_null())
        .collect();
    for d in &docs {
        assert!(
            d["apiVersion"].is_string()
                && d["kind"].is_string()
                && d["metadata"]["name"].is_string(),
            "{d}"
        );
        if d["kind"] != "Namespace" {
            assert_eq!(
                d["metadata"]["namespace"], "portcullis",
                "{}",
                d["metadata"]
            );
        }
    }
    let documented = documented_secrets(&read("docs/deployment.md"));
    let deployment = find(&docs, "Deployment", "portcullis");
    let pod = &deployment["spec"]["template"];
    let labels = &pod["metadata"]["labels"];
    let spec = &pod["spec"];
    let containers = spec["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    assert!(
        deployment["spec"]["replicas"].as_u64().unwrap() >= 2,
        "N replicas"
    );
    assert!(selects(
        &deployment["spec"]["selector"]["matchLabels"],
        labels
    ));

    // The command line is one the gateway's CLI accepts, naming a mounted file.
    let argv: Vec<String> = c["command"]
        .as_array()
        .unwrap()
        .iter()
        .chain(c["args"].as_array().unwrap())
        .map(|a| s(a).to_owned())
        .collect();
    portcullis::cli::Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    let config_path = &argv[argv.iter().position(|a| a == "--config").unwrap() + 1];

    // The pod's filesystem, as its volumes would make it: ConfigMap items from the
    // manifest, Secret items as the documented `kubectl create secret` commands make them
    // (contents made here: keys by make-keys.sh, a test certificate).
    let root = temp_dir("k8s");
    let keys_dir = root.join("made-keys");
    make_keys(&keys_dir);
    let tls = tls();
    let secret_value = |name: &str, key: &str| -> String {
        let keys = documented
            .get(name)
            .unwrap_or_else(|| panic!("Secret {name} is neither in the manifest nor documented (kubectl create secret ... {name})"));
        assert!(
            keys.contains_key(key),
            "Secret {name}: docs/deployment.md does not create key {key}"
        );
        match (name, key) {
            ("portcullis-tls", "tls.crt") => tls.cert_pem.clone(),
            ("portcullis-tls", "tls.key") => tls.key_pem.clone(),
            ("portcullis-store", "db-ca.pem") => tls.ca_pem.clone(),
            ("portcullis-keys", file) => std::fs::read_to_string(keys_dir.join(file))
                .unwrap_or_else(|e| panic!("make-keys.sh makes no {file}: {e}")),
            _ => keys[key]
                .clone()
                .unwrap_or_else(|| panic!("Secret {name}/{key}: no value in the docs")),
        }
    };
    let volumes = spec["volumes"].as_array().unwrap();
    let mut writable = Vec::new();
    for m in c["volumeMounts"].as_array().unwrap() {
        let v = volumes
            .iter()
            .find(|v| v["name"] == m["name"])
            .unwrap_or_else(|| panic!("no volume {}", m["name"]));
        let at = under(&root, s(&m["mountPath"]));
        std::fs::create_dir_all(&at).unwrap();
        let mut items: Vec<(&str, &str, &Value)> = Vec::new();
        if let Some(p) = v.get("projected") {
            for src in p["sources"].as_array().unwrap() {
                for kind in ["configMap", "secret"] {
                    if let Some(x) = src.get(kind) {
                        items.push((kind, s(&x["name"]), &x["items"]));
                    }
                }
            }
        }
        if let Some(x) = v.get("configMap") {
            items.push(("configMap", s(&x["name"]), &x["items"]));
        }
        if let Some(x) = v.get("secret") {
            items.push(("secret", s(&x["secretName"]), &x["items"]));
        }
        if v.get("emptyDir").is_some() && m["readOnly"] != true {
            writable.push(s(&m["mountPath"]).to_owned());
        }
        for (kind, name, list) in items {
            let list = list
                .as_array()
                .unwrap_or_else(|| panic!("{name}: list the items mounted"));
            for item in list {
                let (key, rel) = (s(&item["key"]), s(&item["path"]));
                let content = if kind == "configMap" {
                    s(&find(&docs, "ConfigMap", name)["data"][key]).to_owned()
                } else {
                    secret_value(name, key)
                };
                write(&at.join(rel), &content);
            }
        }
    }

    // The ConfigMap carries the shipped files verbatim.
    let cm = find(&docs, "ConfigMap", "portcullis-config");
    for (name, source) in CONFIG_FILES {
        assert_eq!(
            s(&cm["data"][name]),
            read(source),
            "ConfigMap {name} differs from {source}"
        );
    }

    // The process's environment: the container's, plus what Azure Workload Identity's
    // webhook injects for a labelled pod with an annotated service account.
    let sa = find(&docs, "ServiceAccount", s(&spec["serviceAccountName"]));
    let annotations = &sa["metadata"]["annotations"];
    let mut env = BTreeMap::new();
    if labels["azure.workload.identity/use"] == "true" {
        env.insert(
            "AZURE_FEDERATED_TOKEN_FILE".to_owned(),
            WEBHOOK_TOKEN_FILE.to_owned(),
        );
        env.insert(
            "AZURE_AUTHORITY_HOST".to_owned(),
            "https://login.microsoftonline.com/".to_owned(),
        );
        for (var, annotation) in [
            ("AZURE_CLIENT_ID", "azure.workload.identity/client-id"),
            ("AZURE_TENANT_ID", "azure.workload.identity/tenant-id"),
        ] {
            if let Some(v) = annotations[annotation].as_str() {
                env.insert(var.to_owned(), v.to_owned());
            }
        }
    }
    for e in c["env"].as_array().unwrap() {
        let value = match (&e["value"], &e["valueFrom"]["secretKeyRef"]) {
            (Value::String(v), _) => v.clone(),
            (_, r) if r.is_object() => secret_value(s(&r["name"]), s(&r["key"])),
            _ => panic!("env {e}: a value or a secretKeyRef"),
        };
        env.insert(s(&e["name"]).to_owned(), value);
    }
    assert_eq!(env["PORTCULLIS_LOG_FORMAT"], "json");

    // The configuration in the ConfigMap, loaded from where the Deployment mounts it.
    let path = under(&root, config_path);
    let cfg = load_ok(&path, &env);

    // Its files are the Secrets' items: the relative paths and the projected paths agree.
    let etc = path.parent().unwrap();
    match &cfg.tls {
        TlsSource::Files { cert, key } => assert!(cert.exists() && key.exists()),
        other => panic!("{other:?}"),
    }
    assert!(cfg.audit.signing_key.starts_with(etc) && cfg.audit.signing_key.exists());
    assert!(cfg.keys.url_binding.is_some() && cfg.keys.mask.is_some());
    let StoreSettings::Postgres { url, .. } = &cfg.store else {
        panic!("{:?}", cfg.store)
    };
    // The documented store URL is one the PostgreSQL driver takes, verifying the server
    // against a CA file that the pod has.
    let options: sqlx::postgres::PgConnectOptions = url.expose().parse().unwrap();
    assert!(matches!(
        options.get_ssl_mode(),
        sqlx::postgres::PgSslMode::VerifyFull
    ));
    let root_cert = url
        .expose()
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("sslrootcert="))
        .expect("the store URL names the database's CA (sslrootcert=)");
    assert!(
        under(&root, root_cert).exists(),
        "{root_cert} is not mounted"
    );
    // The state directory is writable in a read-only root filesystem.
    assert!(
        writable.iter().any(|w| Path::new(w) == cfg.state_dir),
        "state_dir {} is not a writable mount: {writable:?}",
        cfg.state_dir.display()
    );
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);

    // The workload identity the webhook announces is the baseline credential.
    match &cfg.upstream.credentials["baseline"] {
        CredentialConfig::WorkloadIdentity {
            client_id, tenant, ..
        } => {
            assert_eq!(annotations["azure.workload.identity/client-id"], *client_id);
            assert_eq!(annotations["azure.workload.identity/tenant-id"], *tenant);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(spec["automountServiceAccountToken"], false);

    // Ports: the container's, the probes', the Services', Prometheus' and the listeners'.
    assert!(cfg.listen_gateway.ip().is_unspecified() && cfg.listen_admin.ip().is_unspecified());
    let port_of = |p: &Value| -> u16 {
        match p {
            Value::Number(n) => n.as_u64().unwrap() as u16,
            Value::String(name) => c["ports"]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["name"] == name.as_str())
                .unwrap_or_else(|| panic!("no container port named {name}"))["containerPort"]
                .as_u64()
                .unwrap() as u16,
            other => panic!("port {other}"),
        }
    };
    let container_ports: BTreeSet<u16> = c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["containerPort"].as_u64().unwrap() as u16)
        .collect();
    assert_eq!(
        container_ports,
        BTreeSet::from([cfg.listen_gateway.port(), cfg.listen_admin.port()])
    );
    for (probe, path) in [
        ("readinessProbe", "/readyz"),
        ("livenessProbe", "/healthz"),
        ("startupProbe", "/healthz"),
    ] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        assert_eq!(
            get["scheme"], "HTTPS",
            "{probe}: the admin listener is TLS only"
        );
        assert_eq!(port_of(&get["port"]), cfg.listen_admin.port(), "{probe}");
    }
    let annotations = &pod["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/path"], "/metrics");
    assert_eq!(annotations["prometheus.io/scheme"], "https");
    assert_eq!(
        annotations["prometheus.io/port"],
        cfg.listen_admin.port().to_string()
    );
    let gateway_service = find(&docs, "Service", "portcullis");
    assert_eq!(
        port_of(&gateway_service["spec"]["ports"][0]["targetPort"]),
        cfg.listen_gateway.port()
    );
    let admin_service = find(&docs, "Service", "portcullis-admin");
    assert_eq!(
        port_of(&admin_service["spec"]["ports"][0]["targetPort"]),
        cfg.listen_admin.port()
    );
    for d in docs.iter().filter(|d| d["kind"] == "Service") {
        assert!(selects(&d["spec"]["selector"], labels), "{}", d["metadata"]);
    }

    // Stopping: the kubelet waits longer than the gateway drains.
    let grace = spec["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(
        grace > (cfg.shutdown_delay + cfg.shutdown_grace).as_secs(),
        "terminationGracePeriodSeconds {grace} <= shutdown_delay + shutdown_grace"
    );
    let pdb = find(&docs, "PodDisruptionBudget", "portcullis");
    assert!(selects(&pdb["spec"]["selector"]["matchLabels"], labels));
    assert!(
        pdb["spec"]["maxUnavailable"].as_u64().unwrap()
            < deployment["spec"]["replicas"].as_u64().unwrap()
    );

    // Least privilege for the container.
    assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(
        c["securityContext"]["capabilities"]["drop"],
        serde_json::json!(["ALL"])
    );
    assert!(
        c["resources"]["requests"].is_object() && c["resources"]["limits"]["memory"].is_string()
    );
    std::fs::remove_dir_all(&root).unwrap();
}

/// A unit file's `[Service]` (or other section's) entries, in order, repeated keys kept.
fn unit_entries(text: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not key=value: {line}"));
        out.push((section.clone(), k.trim().to_owned(), v.trim().to_owned()));
    }
    out
}

/// systemd's time spans as this unit writes them: `50`, `50s`, `2min`.
fn timespan(v: &str) -> Duration {
    let (n, unit) = v.split_at(v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len()));
    let n: u64 = n.parse().unwrap_or_else(|_| panic!("time span {v}"));
    match unit.trim() {
        "" | "s" | "sec" => Duration::from_secs(n),
        "min" | "m" => Duration::from_secs(n * 60),
        other => panic!("time span unit {other}"),
    }
}

/// `KEY=VALUE` lines of an EnvironmentFile (comments and blank lines skipped).
fn environment_file(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("not KEY=VALUE: {l}"));
            (k.to_owned(), v.trim_matches('"').to_owned())
        })
        .collect()
}

#[test]
fn the_systemd_unit_runs_the_example_layout_and_outwaits_the_drain() {
    let unit_text = read("deploy/systemd/portcullis.service");
    let entries = unit_entries(&unit_text);
    let all = |key: &str| -> Vec<&str> {
        entries
            .iter()
            .filter(|(sec, k, _)| sec == "Service" && k == key)
            .map(|(_, _, v)| v.as_str())
            .collect()
    };
    let one = |key: &str| -> &str {
        all(key)
            .last()
            .copied()
            .unwrap_or_else(|| panic!("[Service] has no {key}="))
    };
    assert!(
        entries
            .iter()
            .any(|(sec, k, v)| sec == "Install" && k == "WantedBy" && v == "multi-user.target")
    );

    // ExecStart: a command line the CLI accepts, reading the example's configuration.
    let argv: Vec<&str> = one("ExecStart").split_whitespace().collect();
    assert_eq!(argv[0], "/usr/local/bin/portcullis");
    portcullis::cli::Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    let config_path = argv[argv.iter().position(|a| *a == "--config").unwrap() + 1];
    let in_repo = config_path
        .strip_prefix("/etc/portcullis/")
        .and_then(|name| CONFIG_FILES.iter().find(|(n, _)| *n == name))
        .unwrap_or_else(|| {
            panic!("{config_path} is not one of deploy/'s files in /etc/portcullis")
        });
    assert!(repo().join(in_repo.1).exists());

    // The layout the unit's header describes, with the EnvironmentFile's variables.
    let root = temp_dir("systemd");
    let (path, _tls) = etc_layout(&root);
    assert_eq!(path, under(&root, config_path));
    let env_path = one("EnvironmentFile");
    assert_eq!(env_path, "/etc/portcullis/portcullis.env");
    let mut env = environment_file(&read("deploy/systemd/portcullis.env"));
    for assignment in all("Environment") {
        let (k, v) = assignment.split_once('=').unwrap();
        env.insert(k.to_owned(), v.to_owned());
    }
    assert_eq!(
        env.get("PORTCULLIS_LOG_FORMAT").map(String::as_str),
        Some("json")
    );
    let cfg = load_ok(&path, &env);
    let required = required_env(&path, &env);
    assert!(required.contains("PORTCULLIS_STORE_URL"), "{required:?}");
    let StoreSettings::Postgres { url, .. } = &cfg.store else {
        panic!("{:?}", cfg.store)
    };
    let options: sqlx::postgres::PgConnectOptions = url.expose().parse().unwrap();
    assert!(matches!(
        options.get_ssl_mode(),
        sqlx::postgres::PgSslMode::VerifyFull
    ));
    let root_cert = url
        .expose()
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("sslrootcert="))
        .expect("the store URL names the database's CA");
    assert!(
        under(&root, root_cert).exists(),
        "{root_cert} is not in the layout"
    );

    // Stopping outlasts the drain; reloading is the policy reload.
    assert_eq!(one("KillSignal"), "SIGTERM");
    let stop = timespan(one("TimeoutStopSec"));
    assert!(
        stop > cfg.shutdown_delay + cfg.shutdown_grace,
        "TimeoutStopSec {stop:?} <= shutdown_delay + shutdown_grace"
    );
    assert_eq!(one("Restart"), "on-failure");
    assert!(
        one("ExecReload").ends_with("kill -HUP $MAINPID"),
        "{}",
        one("ExecReload")
    );
    assert_eq!(one("Type"), "exec", "the gateway does not send sd_notify");

    // Its user and its state.
    let user = one("User");
    let sysusers = read("deploy/systemd/portcullis.sysusers");
    assert!(
        sysusers
            .lines()
            .any(|l| l.split_whitespace().take(2).eq(["u", user])),
        "portcullis.sysusers does not create {user}"
    );
    assert_eq!(
        Path::new("/var/lib").join(one("StateDirectory")),
        cfg.state_dir
    );
    assert!(
        all("ReadWritePaths")
            .iter()
            .any(|p| Path::new(p) == cfg.state_dir)
    );
    let max_held = cfg.approvals.max_held as u64;
    assert!(
        one("LimitNOFILE").parse::<u64>().unwrap() > max_held,
        "a descriptor per held request"
    );

    // Sandboxing; no capabilities, since both ports are above 1024.
    for (key, value) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("PrivateTmp", "yes"),
        ("ProtectHome", "yes"),
        ("CapabilityBoundingSet", ""),
        ("AmbientCapabilities", ""),
    ] {
        assert_eq!(one(key), value, "{key}");
    }
    assert!(cfg.listen_gateway.port() >= 1024 && cfg.listen_admin.port() >= 1024);

    // systemd's own reading of the unit, where systemd is installed. It insists that the
    // binary exists, so ExecStart points at the one this test built (the only rewrite).
    match which("systemd-analyze") {
        None => eprintln!("systemd-analyze is not installed: skipping `systemd-analyze verify`"),
        Some(analyze) => {
            let dir = root.join("unit");
            let unit = dir.join("portcullis.service");
            write(
                &unit,
                &unit_text.replace(
                    "/usr/local/bin/portcullis",
                    env!("CARGO_BIN_EXE_portcullis"),
                ),
            );
            let (ok, out) = outcome(
                std::process::Command::new(analyze)
                    .args(["verify", "--man=no"])
                    .arg(&unit),
            );
            // It exits 0 on unknown keys and bad values too, only saying so: any word about
            // this unit is a failure.
            let about_unit: Vec<&str> = out.lines().filter(|l| l.contains("portcullis")).collect();
            assert!(
                ok && about_unit.is_empty(),
                "systemd-analyze verify:\n{out}"
            );
        }
    }
    std::fs::remove_dir_all(&root).unwrap();
}

fn which(binary: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(binary))
        .find(|p| p.is_file())
}

#[test]
fn the_documented_vm_credentials_replace_workload_identity() {
    // docs/deployment.md gives the block to paste over `upstream.credentials` on an Azure
    // VM (managed identities through IMDS); pasted, the file loads without the federated
    // token variable.
    let docs = read("docs/deployment.md");
    let (_, after) = docs
        .split_once("<!-- deploy.rs: vm-credentials -->")
        .expect("docs/deployment.md marks the VM credentials block");
    let block = after
        .split_once("```yaml\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(block, _)| block)
        .expect("a yaml block follows the marker");
    assert!(block.starts_with("  credentials:\n"), "{block}");
    let original = read("deploy/portcullis.yaml");
    let lines: Vec<&str> = original.lines().collect();
    let start = lines.iter().position(|l| *l == "  credentials:").unwrap();
    let end = (start + 1..lines.len())
        .find(|&i| {
            let l = lines[i];
            !l.trim().is_empty() && l.len() - l.trim_start().len() < 4
        })
        .unwrap();
    let pasted = format!(
        "{}\n{block}{}\n",
        lines[..start].join("\n"),
        lines[end..].join("\n")
    );
    let root = temp_dir("vm");
    let (path, _tls) = etc_layout(&root);
    write(&path, &pasted);
    let env = BTreeMap::from([(
        "PORTCULLIS_STORE_URL".to_owned(),
        "postgres://portcullis@db.example.com/portcullis?sslmode=verify-full".to_owned(),
    )]);
    let cfg = load_ok(&path, &env);
    for name in ["baseline", "elevated"] {
        match &cfg.upstream.credentials[name] {
            CredentialConfig::ManagedIdentity { client_id, .. } => assert!(client_id.is_some()),
            other => panic!("{name}: {other:?}"),
        }
    }
    std::fs::remove_dir_all(&root).unwrap();
}
