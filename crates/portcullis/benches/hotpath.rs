//! What every request now pays besides policy, masking and recording: the per-principal
//! rate limit, the metrics, and the strict JSON read of a body (duplicate keys refused),
//! each beside its plain peer measured in the same run.
//!
//! Run: `cargo bench -p portcullis --bench hotpath`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
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

criterion_group!(benches, hotpath);
criterion_main!(benches);
