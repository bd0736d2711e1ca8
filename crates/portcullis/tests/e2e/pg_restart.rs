//! The gateway on a private PostgreSQL server that the test runs itself (initdb into a
//! temporary directory), reached over TLS only: pg_hba.conf rejects plain TCP, so a gateway
//! that serves spoke TLS, and one given the wrong CA (or no TLS) fails closed. The server is
//! then stopped for real mid-run: the gateway refuses requests (503 AuditUnavailable),
//! forwards nothing and reports itself unready; started again on the same port, service
//! resumes by itself and the chain in the database verifies.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use reqwest::{Method, StatusCode};

use crate::crash::Gateway;
use crate::{GATEWAY_API, Setup, outcome, portcullis_cli, prepare, send};

/// The newest PostgreSQL server binaries installed (`/usr/lib/postgresql/<version>/bin`).
fn pg_bin_dir() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).expect(
        "PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb) are needed for this \
         test: install the Debian `postgresql` package (.ci/run does)",
    )
}

/// A self-signed CA and the PEM of its certificate.
fn ca(name: &str) -> (CertificateParams, KeyPair, String) {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    let key = KeyPair::generate().unwrap();
    let pem = params.self_signed(&key).unwrap().pem();
    (params, key, pem)
}

/// A private PostgreSQL cluster on 127.0.0.1 (a free port), TLS only for TCP, run as the
/// `postgres` OS user from a temporary directory; stopped (`-m immediate`) and removed when
/// dropped, so a failing test leaves nothing behind.
struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
}

impl Cluster {
    /// Creates the cluster (server certificate issued by a fresh test CA, `ca.pem`; another
    /// CA that did not issue it, `wrong-ca.pem`) and starts it.
    fn start() -> Cluster {
        let bin = pg_bin_dir();
        let dir = std::env::temp_dir().join(format!("pc-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cluster = Cluster { bin, dir, port };
        let dir = &cluster.dir;

        let (ca_params, ca_key, ca_pem) = ca("portcullis test database CA");
        std::fs::write(dir.join("ca.pem"), ca_pem).unwrap();
        std::fs::write(dir.join("wrong-ca.pem"), ca("some other CA").2).unwrap();
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "127.0.0.1");
        let key = KeyPair::generate().unwrap();
        let cert = params
            .signed_by(&key, &Issuer::from_params(&ca_params, &ca_key))
            .unwrap();
        std::fs::write(dir.join("server.crt"), cert.pem()).unwrap();
        std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            let key = dir.join("server.key");
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        // initdb and postgres refuse to run as root: everything belongs to `postgres`.
        cluster.run(
            Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir),
        );
        cluster.run(
            cluster
                .as_postgres("initdb")
                .args([
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    "--no-sync",
                    "-D",
                ])
                .arg(dir.join("data")),
        );
        let d = dir.display();
        let conf = format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{d}'\n\
             ssl = on\nssl_cert_file = '{d}/server.crt'\nssl_key_file = '{d}/server.key'\n\
             fsync = off\n",
            port = cluster.port
        );
        let mut text = std::fs::read_to_string(dir.join("data/postgresql.conf")).unwrap();
        text.push_str(&conf);
        std::fs::write(dir.join("data/postgresql.conf"), text).unwrap();
        // Local (unix socket) for pg_ctl; over TCP, TLS or nothing.
        std::fs::write(
            dir.join("data/pg_hba.conf"),
            "local all all trust\n\
             hostnossl all all 0.0.0.0/0 reject\n\
             hostssl all all 0.0.0.0/0 trust\n",
        )
        .unwrap();
        cluster.resume();
        cluster
    }

    /// A command running `program` from the server binaries as the `postgres` OS user.
    fn as_postgres(&self, program: &str) -> Command {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"])
            .arg(self.bin.join(program))
            .current_dir(&self.dir)
            .stdin(Stdio::null());
        c
    }

    /// Runs `cmd`; panics with what it said if it fails.
    fn run(&self, cmd: &mut Command) -> String {
        let (ok, text) = outcome(cmd);
        assert!(
            ok,
            "{cmd:?} failed:\n{text}\nserver log:\n{}",
            std::fs::read_to_string(self.dir.join("pg.log")).unwrap_or_default()
        );
        text
    }

    /// `pg_ctl start`, waiting until the server accepts connections.
    fn resume(&self) {
        self.run(
            self.as_postgres("pg_ctl")
                .args(["-w", "-t", "30", "-D"])
                .arg(self.dir.join("data"))
                .arg("-l")
                .arg(self.dir.join("pg.log"))
                .arg("start"),
        );
    }

    /// `pg_ctl stop -m fast`: the server disconnects its clients and exits.
    fn stop(&self) {
        self.run(
            self.as_postgres("pg_ctl")
                .args(["-w", "-t", "30", "-m", "fast", "-D"])
                .arg(self.dir.join("data"))
                .arg("stop"),
        );
    }

    /// A query through the unix socket (as the superuser, trusted), its rows as text.
    fn query(&self, sql: &str) -> String {
        self.run(
            self.as_postgres("psql")
                .arg("-h")
                .arg(&self.dir)
                .args([
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "postgres",
                    "-d",
                    "postgres",
                ])
                .args(["-X", "-A", "-t", "-c", sql]),
        )
        .trim()
        .to_owned()
    }

    /// The URL of the database over TCP with `params` (`sslmode=...`).
    fn url(&self, params: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres?{params}",
            self.port
        )
    }

    /// Verifying TLS against `ca` (a file in the cluster's directory).
    fn tls_url(&self, ca: &str) -> String {
        self.url(&format!(
            "sslmode=verify-full&sslrootcert={}",
            self.dir.join(ca).display()
        ))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pg.log")).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self
            .as_postgres("pg_ctl")
            .args(["-w", "-t", "30", "-m", "immediate", "-D"])
            .arg(self.dir.join("data"))
            .arg("stop")
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `portcullis audit verify --store URL` with more arguments.
fn verify(url: &str, more: &[&std::ffi::OsStr]) -> (bool, String) {
    outcome(
        portcullis_cli()
            .args(["audit", "verify", "--store", url])
            .args(more),
    )
}

/// Runs `portcullis serve --config DIR/config` to its end (it must end within 30 s):
/// whether it succeeded, and its log.
async fn serve_to_end(dir: &Path, config: &str) -> (bool, String) {
    let log = dir.join(format!("{config}.log"));
    let mut child = portcullis_cli()
        .arg("serve")
        .arg("--config")
        .arg(dir.join(config))
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status.success(), std::fs::read_to_string(&log).unwrap());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the gateway did not stop:\n{}",
                std::fs::read_to_string(&log).unwrap()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_real_postgres_over_tls_the_gateway_fails_closed_while_it_restarts_and_resumes() {
    let cluster = Cluster::start();
    let url = cluster.tls_url("ca.pem");

    // TLS is required and verified: without it pg_hba.conf refuses the connection; with a
    // CA that did not issue the server's certificate, the client refuses the server.
    let (ok, text) = verify(&cluster.url("sslmode=disable"), &[]);
    assert!(!ok && text.contains("pg_hba.conf rejects"), "{text}");
    let wrong = cluster.tls_url("wrong-ca.pem");
    let (ok, text) = verify(&wrong, &[]);
    assert!(!ok && text.contains("invalid peer certificate"), "{text}");

    let (sim, dir) = prepare(Setup {
        extra: Box::leak(format!("store:\n  url: \"{url}\"\n").into_boxed_str()),
        ..Default::default()
    })
    .await;
    // A gateway given the wrong CA does not start.
    let config = std::fs::read_to_string(dir.join("portcullis.yaml")).unwrap();
    std::fs::write(
        dir.join("wrong-ca.yaml"),
        config
            .replace(&url, &wrong)
            .replace("state_dir: state\n", "state_dir: state-wrong-ca\n"),
    )
    .unwrap();
    let (ok, log) = serve_to_end(&dir, "wrong-ca.yaml").await;
    assert!(!ok && log.contains("invalid peer certificate"), "{log}");

    // With the right CA it serves, over TLS.
    let gw = Gateway::spawn_config(&dir, "portcullis.yaml", "gateway.log").await;
    let token = sim.token("agent", GATEWAY_API).unwrap();
    let rg = format!(
        "https://{}/subscriptions/{}/resourceGroups/demo-rg?api-version=2022-09-01",
        gw.addr,
        sim.subscription_id()
    );
    let get = || send(gw.http.request(Method::GET, &rg).bearer_auth(&token));
    let ready = || send(gw.http.get(format!("https://{}/readyz", gw.admin)));
    let (s, _, body) = ready().await;
    assert_eq!(
        (s, body["store"].as_str()),
        (StatusCode::OK, Some("postgres")),
        "{body}"
    );
    let (s, _, body) = get().await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        cluster.query(
            "SELECT bool_and(ssl), count(*) > 0 FROM pg_stat_ssl JOIN pg_stat_activity \
             USING (pid) WHERE client_addr IS NOT NULL"
        ),
        "t|t",
        "every TCP connection to the database is TLS"
    );

    // The server stops for real: nothing is forwarded unrecorded, and the gateway says so.
    // While the database refuses connections, each store operation waits out the pool's
    // acquire timeout, so the refusal is slow: this client allows for it.
    let patient = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(dir.join("state/tls/ca.pem")).unwrap())
                .unwrap(),
        )
        .tls_built_in_root_certs(false)
        .timeout(Duration::from_secs(90))
        .build()
        .unwrap();
    cluster.stop();
    let since = sim.last_call_seq();
    let down = Instant::now();
    let ((s, h, body), (ready_status, _, ready_body)) = tokio::join!(
        send(patient.get(&rg).bearer_auth(&token)),
        send(patient.get(format!("https://{}/readyz", gw.admin))),
    );
    eprintln!("refused after {:?} with the database down", down.elapsed());
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(h["x-ms-error-code"], "AuditUnavailable", "{body}");
    assert_eq!(
        (ready_status, ready_body["status"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("unready")),
        "{ready_body}"
    );
    assert!(
        sim.calls_since(since)
            .iter()
            .all(|c| c.service != azure_sim::Service::Arm),
        "nothing reached Azure while the database was down"
    );

    // Started again on the same port: service resumes by itself.
    cluster.resume();
    let back = Instant::now();
    let deadline = back + Duration::from_secs(30);
    loop {
        let (s, _, body) = get().await;
        if s == StatusCode::OK {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the gateway did not recover: {s} {body}\n{}\nserver log:\n{}",
            gw.log(),
            cluster.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("service resumed {:?} after the database", back.elapsed());
    assert_eq!(ready().await.0, StatusCode::OK);

    // A graceful stop seals the chain with a checkpoint; the chain in the database verifies.
    let log = gw.log();
    let status = gw.terminate().await;
    assert!(status.success(), "{status}\n{log}");
    let key = dir.join("state/audit-signing.key.pub");
    let (ok, text) = verify(&url, &["--public-key".as_ref(), key.as_os_str()]);
    assert!(
        ok && text.contains("chain intact") && !text.contains("no checkpoint"),
        "{text}"
    );
}
