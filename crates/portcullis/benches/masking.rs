//! Masking a 10 MB ARM list answer: the byte pre-scan that decides whether anything needs
//! parsing (a list of VMs: nothing to mask), and full masking (a list of deployments whose
//! outputs the catalog masks, with connection strings for the detectors too), and the
//! streaming fast path over the VM list in 64 KiB chunks.
//!
//! Run: `cargo bench -p portcullis --bench masking`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use portcullis::azure::operation::name_arm;
use portcullis::mask::detect::{Detector, might_contain_secret};
use portcullis::mask::{Masked, Masker};
use serde_json::json;

const TARGET: usize = 10 * 1024 * 1024;

fn vm_list() -> Vec<u8> {
    let mut items = Vec::new();
    let mut size = 0;
    let mut i = 0;
    while size < TARGET {
        let vm = json!({
            "id": format!("/subscriptions/939af683-4677-56d7-afb7-06ead0701231/resourceGroups/demo-rg/providers/Microsoft.Compute/virtualMachines/vm{i}"),
            "name": format!("vm{i}"), "type": "Microsoft.Compute/virtualMachines", "location": "eastus",
            "tags": {"owner": "team-a", "costCenter": "1234"},
            "properties": {"vmId": "beef00d6-b203-5daf-a90a-e03f39f3fe4e", "hardwareProfile": {"vmSize": "Standard_B2s"},
                "storageProfile": {"imageReference": {"publisher": "Canonical", "offer": "ubuntu-24_04-lts", "sku": "server", "version": "latest"}},
                "provisioningState": "Succeeded"}
        });
        size += vm.to_string().len() + 1;
        items.push(vm);
        i += 1;
    }
    serde_json::to_vec(&json!({"value": items})).unwrap()
}

fn deployment_list() -> Vec<u8> {
    let mut items = Vec::new();
    let mut size = 0;
    let mut i = 0;
    let key = "A".repeat(86) + "==";
    while size < TARGET {
        let d = json!({
            "id": format!("/subscriptions/s/resourceGroups/demo-rg/providers/Microsoft.Resources/deployments/d{i}"),
            "name": format!("d{i}"), "type": "Microsoft.Resources/deployments",
            "properties": {"provisioningState": "Succeeded", "mode": "Incremental",
                "outputs": {"connection": {"type": "String", "value": format!("DefaultEndpointsProtocol=https;AccountName=sa{i};AccountKey={key}")}, "count": {"type": "Int", "value": i}},
                "parameters": {"note": {"type": "String", "value": format!("AccountKey={key}")}}}
        });
        size += d.to_string().len() + 1;
        items.push(d);
        i += 1;
    }
    serde_json::to_vec(&json!({"value": items})).unwrap()
}

fn bench(c: &mut Criterion) {
    let masker = Masker::new(b"bench".to_vec(), Detector::ALL.to_vec(), Vec::new());
    let vms = vm_list();
    let deployments = deployment_list();
    let mut g = c.benchmark_group("masking_10mb");
    g.sample_size(20);
    g.throughput(Throughput::Bytes(vms.len() as u64));
    g.bench_function("prescan_vm_list", |b| {
        b.iter(|| black_box(might_contain_secret(black_box(&vms))))
    });
    let list_vms = name_arm(
        &http::Method::GET,
        "/subscriptions/s/resourceGroups/demo-rg/providers/Microsoft.Compute/virtualMachines",
        "api-version=2024-07-01",
    )
    .unwrap();
    let plan = masker.plan(&list_vms, &[]);
    g.bench_function("mask_vm_list_nothing_to_mask", |b| {
        b.iter(|| {
            assert!(matches!(
                masker.mask_json(&plan, black_box(&vms)).unwrap(),
                Masked::Unchanged
            ))
        })
    });
    let shared = std::sync::Arc::new(Masker::new(
        b"bench".to_vec(),
        Detector::ALL.to_vec(),
        Vec::new(),
    ));
    g.bench_function("stream_vm_list_64k_chunks", |b| {
        b.iter(|| {
            let mut s = portcullis::mask::stream::StreamMasker::new(
                shared.clone(),
                shared.audit_plan(),
                None,
            );
            let mut out = Vec::with_capacity(vms.len());
            for chunk in vms.chunks(64 * 1024) {
                s.feed(chunk, &mut out).unwrap();
            }
            s.finish(&mut out).unwrap();
            black_box(out.len())
        })
    });
    g.throughput(Throughput::Bytes(deployments.len() as u64));
    let list_deployments = name_arm(
        &http::Method::GET,
        "/subscriptions/s/resourceGroups/demo-rg/providers/Microsoft.Resources/deployments",
        "api-version=2024-03-01",
    )
    .unwrap();
    let plan = masker.plan(&list_deployments, &[]);
    g.bench_function("mask_deployment_list", |b| {
        b.iter(|| {
            assert!(matches!(
                masker.mask_json(&plan, black_box(&deployments)).unwrap(),
                Masked::Changed { .. }
            ))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
