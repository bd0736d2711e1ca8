//! What recording costs in the store: the latency of one record committed alone (a request
//! waiting for its own commit), and records per second when N requests record at once and
//! the writer commits them in groups. The store is the gateway's own: SQLite, WAL,
//! `synchronous = FULL` (an fsync per commit), in a temporary directory on the same disk
//! as the system's temp dir.
//!
//! Each throughput sample is closed-loop: N tasks each record, wait for the commit, and
//! record again, as N concurrent requests would. Criterion's elements per second are
//! records per second. At the end of each group the bench prints how many records it
//! wrote in total (warm-up included). Each commit is one fsync of `audit.db-wal` (WAL
//! checkpoints add a few more), so counting fsyncs gives the average batch size the writer
//! achieves: run one group under
//! `perf stat -e syscalls:sys_enter_fsync target/release/deps/audit-* --bench 'tasks/64$'`
//! (or `strace -f -y -e trace=fsync`, slower, to tell the WAL's fsyncs from the database's)
//! and divide the records written by the fsyncs.
//!
//! Run: `cargo bench -p portcullis --bench audit`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use portcullis::audit::record::{AuditRecord, Phase};
use portcullis::audit::store::Store;
use portcullis::audit::writer::{Recorder, WriterOptions};
use sha2::Digest;

/// Concurrent recording tasks for the throughput group.
const CONCURRENCY: &[usize] = &[1, 16, 64, 256];

/// A temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "pc-bench-audit-{what}-{}-{nanos:x}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A masked request body of about 1 KiB, as a VM create would leave in the store.
fn masked_body() -> String {
    let body = serde_json::json!({
        "location": "eastus",
        "tags": {"owner": "team-a", "costCenter": "1234", "agent": "planner-7"},
        "properties": {
            "hardwareProfile": {"vmSize": "Standard_B2s"},
            "storageProfile": {
                "imageReference": {"publisher": "Canonical", "offer": "ubuntu-24_04-lts", "sku": "server", "version": "latest"},
                "osDisk": {"createOption": "FromImage", "managedDisk": {"storageAccountType": "Premium_LRS"}}
            },
            "osProfile": {
                "computerName": "vm-agent-01",
                "adminUsername": "azureuser",
                "adminPassword": "[masked:password:5c1d9e0a]",
                "customData": "[masked:custom-data:a8e2f417]",
                "linuxConfiguration": {"disablePasswordAuthentication": false}
            },
            "networkProfile": {"networkInterfaces": [{
                "id": "/subscriptions/939af683-4677-56d7-afb7-06ead0701231/resourceGroups/demo-rg/providers/Microsoft.Network/networkInterfaces/vm-agent-01-nic",
                "properties": {"primary": true}
            }]},
            "diagnosticsProfile": {"bootDiagnostics": {"enabled": true, "storageUri": "https://diagstore.blob.core.windows.net/?sv=2022-11-02&sig=[masked:sas-signature:0b7c44d1]"}}
        }
    });
    let text = body.to_string();
    assert!(
        (900..1300).contains(&text.len()),
        "the body is about 1 KiB ({} bytes)",
        text.len()
    );
    text
}

/// Builds records as the gateway does for a VM create: every field a forwarded request's
/// record has.
struct Records {
    body: String,
    digest: String,
}

impl Records {
    fn new() -> Records {
        let body = masked_body();
        let digest = portcullis::audit::chain::hex(&sha2::Sha256::digest(body.as_bytes()));
        Records { body, digest }
    }

    fn make(&self, i: u64) -> AuditRecord {
        let mut r = AuditRecord::new(
            format!("{:032x}", 0x5eed_0000_0000_u64 + i),
            "s-7f3c2a9e4b1d".to_owned(),
            Phase::Request,
            "PUT".to_owned(),
            "/subscriptions/939af683-4677-56d7-afb7-06ead0701231/resourceGroups/demo-rg/providers/Microsoft.Compute/virtualMachines/vm-agent-01?api-version=2024-07-01".to_owned(),
        );
        r.principal = Some("6f1c8e2a-3b4d-5e6f-8a9b-0c1d2e3f4a5b".to_owned());
        r.action = Some("Microsoft.Compute/virtualMachines/write".to_owned());
        r.scope = Some(
            "/subscriptions/939af683-4677-56d7-afb7-06ead0701231/resourceGroups/demo-rg".to_owned(),
        );
        r.decision = Some("allow".to_owned());
        r.rule = Some("agents-write-vms".to_owned());
        r.reason = Some("allowed by rule agents-write-vms".to_owned());
        r.headers = vec![
            ("host".to_owned(), "127.0.0.1:8443".to_owned()),
            ("authorization".to_owned(), "[redacted]".to_owned()),
            ("content-type".to_owned(), "application/json".to_owned()),
            ("accept".to_owned(), "*/*".to_owned()),
            (
                "user-agent".to_owned(),
                "azsdk-python-mgmt-compute/33.0.0".to_owned(),
            ),
            (
                "x-ms-client-request-id".to_owned(),
                "0d5e8a4c-1f2b-4c3d-9e8f-7a6b5c4d3e2f".to_owned(),
            ),
            (
                "x-portcullis-session".to_owned(),
                "planner-7/run-42".to_owned(),
            ),
            ("content-length".to_owned(), self.body.len().to_string()),
        ];
        r.body = Some(self.body.clone());
        r.body_digest = Some(self.digest.clone());
        r.body_bytes = Some(self.body.len() as u64);
        r.latency_ms = Some(3);
        r
    }
}

async fn recorder(dir: &TempDir) -> Recorder {
    let store = Store::open(&dir.0.join("audit.db")).await.unwrap();
    Recorder::start(
        store,
        "gw-bench".to_owned(),
        WriterOptions {
            checkpoint_every: Duration::from_secs(60),
            retention: None,
            signing_key: ed25519_dalek::SigningKey::from_bytes(&[7; 32]),
        },
    )
    .await
    .unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn single(c: &mut Criterion) {
    let rt = runtime();
    let dir = TempDir::new("single");
    let recorder = rt.block_on(recorder(&dir));
    let records = Records::new();
    let written = AtomicU64::new(0);
    let mut g = c.benchmark_group("audit/append");
    g.sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    g.throughput(Throughput::Elements(1));
    g.bench_function("one record, own commit", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let i = written.fetch_add(1, Ordering::Relaxed);
                    recorder.record(records.make(i)).await.unwrap();
                }
                start.elapsed()
            })
        })
    });
    g.finish();
    eprintln!(
        "audit/append: {} records written in total (warm-up included)",
        written.load(Ordering::Relaxed)
    );
    // Seal the chain before the directory goes.
    rt.block_on(recorder.checkpoint()).unwrap();
}

fn group_commit(c: &mut Criterion) {
    let rt = runtime();
    let records = Arc::new(Records::new());
    let mut g = c.benchmark_group("audit/group_commit");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for &n in CONCURRENCY {
        let dir = TempDir::new(&format!("group-{n}"));
        let recorder = rt.block_on(recorder(&dir));
        let written = Arc::new(AtomicU64::new(0));
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("tasks", n), &n, |b, &n| {
            // One iteration: each of the n tasks records one more record; the tasks run
            // for all iterations at once, so the writer sees a steady stream.
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    let tasks: Vec<_> = (0..n)
                        .map(|_| {
                            let (recorder, records, written) =
                                (recorder.clone(), records.clone(), written.clone());
                            tokio::spawn(async move {
                                for _ in 0..iters {
                                    let i = written.fetch_add(1, Ordering::Relaxed);
                                    recorder.record(records.make(i)).await.unwrap();
                                }
                            })
                        })
                        .collect();
                    for t in tasks {
                        t.await.unwrap();
                    }
                    start.elapsed()
                })
            })
        });
        eprintln!(
            "audit/group_commit/tasks/{n}: {} records written in total (warm-up included)",
            written.load(Ordering::Relaxed)
        );
        rt.block_on(recorder.checkpoint()).unwrap();
    }
    g.finish();
}

criterion_group!(benches, single, group_commit);
criterion_main!(benches);
