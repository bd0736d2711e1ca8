//! What every request now pays besides policy, masking and recording: the per-principal
//! rate limit, the metrics, and the strict JSON read of a body (duplicate keys refused),
//! each beside its plain peer measured in the same run; and naming the operation (ARM and
//! Key Vault) from the method and path.
//!
//! Run: `cargo bench -p portcullis --bench hotpath`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use http::Method;
use portcullis::azure::operation::{name_arm, name_keyvault};
use portcullis::metrics::METRICS;
use portcullis::ratelimit::RateLimiter;

fn body() -> Vec<u8> {
    // A VM create of about 2 KB, the size of a typical ARM write.
    let mut tags = serde_json::Map::new();
    for i in 0..40 {
        tags.insert(format!("tag{i}"), serde_json::json!(format!("value-{i}")));
    }
    serde_json::to_vec(&serde_json::json!({
        "location": "eastus",
        "tags": tags,
        "properties": {"hardwareProfile": {"vmSize": "Standard_B1s"},
            "storageProfile": {"imageReference": {"publisher": "Canonical", "offer": "ubuntu-24_04-lts", "sku": "server", "version": "latest"}},
            "osProfile": {"computerName": "vm1", "adminUsername": "azureuser"},
            "networkProfile": {"networkInterfaces": [{"id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkInterfaces/nic1"}]}}
    }))
    .unwrap()
}

fn hotpath(c: &mut Criterion) {
    let mut g = c.benchmark_group("hotpath");
    g.measurement_time(Duration::from_secs(3));
    let limiter = RateLimiter::new(1e12, 1e12);
    let principals: Vec<String> = (0..1000).map(|i| format!("principal-{i:04}")).collect();
    let mut i = 0;
    g.bench_function("rate limit take (1000 principals)", |b| {
        b.iter(|| {
            i = (i + 1) % principals.len();
            black_box(limiter.take(&principals[i]).is_ok())
        })
    });
    g.bench_function("metrics: one request counted", |b| {
        b.iter(|| {
            METRICS.request(
                "allowed",
                "allow",
                Some("Microsoft.Compute/virtualMachines/read"),
                200,
                Duration::from_micros(800),
            )
        })
    });
    let bytes = body();
    g.bench_function(format!("serde_json::from_slice ({} B)", bytes.len()), |b| {
        b.iter(|| black_box(serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()))
    });
    g.bench_function(format!("json::parse strict ({} B)", bytes.len()), |b| {
        b.iter(|| black_box(portcullis::json::parse(&bytes).unwrap()))
    });
    g.finish();
}

const SUB: &str = "/subscriptions/0b1f6471-1bf0-4dda-aec3-cb9272f09590/resourceGroups/rg-agents";

fn naming(c: &mut Criterion) {
    let mut g = c.benchmark_group("naming");
    g.measurement_time(Duration::from_secs(3));
    // (label, method, path, query, the action it names)
    let arm: [(&str, Method, String, &str, &str); 4] = [
        (
            "ARM: VM GET",
            Method::GET,
            format!("{SUB}/providers/Microsoft.Compute/virtualMachines/vm1"),
            "api-version=2024-07-01",
            "Microsoft.Compute/virtualMachines/read",
        ),
        (
            "ARM: nested resource (subnet PUT)",
            Method::PUT,
            format!("{SUB}/providers/Microsoft.Network/virtualNetworks/vnet1/subnets/default"),
            "api-version=2024-05-01",
            "Microsoft.Network/virtualNetworks/subnets/write",
        ),
        (
            "ARM: provider action (listKeys)",
            Method::POST,
            format!("{SUB}/providers/Microsoft.Storage/storageAccounts/sa1/listKeys"),
            "api-version=2023-05-01",
            "Microsoft.Storage/storageAccounts/listKeys/action",
        ),
        (
            "ARM: list in a resource group",
            Method::GET,
            format!("{SUB}/resources"),
            "api-version=2021-04-01&$top=100",
            "Microsoft.Resources/subscriptions/resourceGroups/resources/read",
        ),
    ];
    for (label, method, path, query, action) in &arm {
        assert_eq!(name_arm(method, path, query).unwrap().action, *action);
        g.bench_function(*label, |b| {
            b.iter(|| black_box(name_arm(method, black_box(path), query).unwrap()))
        });
    }
    let kv: [(&str, Method, &str); 2] = [
        ("Key Vault: secret GET", Method::GET, "/secrets/db-password"),
        (
            "Key Vault: secret version GET",
            Method::GET,
            "/secrets/db-password/4387e9f3d6e14c459867679a90fd0f79",
        ),
    ];
    for (label, method, path) in &kv {
        let op = name_keyvault(method, "demo-kv", path, "api-version=7.4").unwrap();
        assert_eq!(
            op.action,
            "Microsoft.KeyVault/vaults/secrets/getSecret/action"
        );
        g.bench_function(*label, |b| {
            b.iter(|| {
                black_box(
                    name_keyvault(method, "demo-kv", black_box(path), "api-version=7.4").unwrap(),
                )
            })
        });
    }
    g.finish();
}

criterion_group!(benches, hotpath, naming);
criterion_main!(benches);
