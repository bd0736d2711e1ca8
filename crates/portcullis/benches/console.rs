//! The console's pending list: rendering 100 approvals as HTML cards (what an approver's
//! browser re-fetches on every change) against serializing the same 100 as JSON (what the
//! admin API answers), measured in the same run.

use criterion::{Criterion, criterion_group, criterion_main};
use portcullis::approval::Approval;
use portcullis::console::Viewer;
use portcullis::identity::principal::{Principal, PrincipalKind};
use serde_json::json;

fn approvals(n: usize) -> Vec<Approval> {
    (0..n)
        .map(|i| {
            serde_json::from_value(json!({
                "id": format!("0b7c6a52-5d2e-4f7a-9f5e-{i:012}"),
                "status": "pending",
                "principal": "cce2ff68-ca77-5d79-a056-8bccfa005666",
                "principal_app": "93eb7a24-8c57-53d1-b2c8-7c2f4313a384",
                "principal_name": null,
                "action": "Microsoft.Storage/storageAccounts/write",
                "scope": format!("/subscriptions/939af683-4677-56d7-afb7-06ead0701231/resourceGroups/demo-rg/providers/Microsoft.Storage/storageAccounts/account{i}"),
                "rule": "hold-storage-create",
                "rule_reason": "rule 'hold-storage-create' (policy.yaml:28) holds for approval Microsoft.Storage/storageAccounts/write",
                "request": {
                    "method": "PUT",
                    "path": format!("/subscriptions/939af683-4677-56d7-afb7-06ead0701231/resourceGroups/demo-rg/providers/Microsoft.Storage/storageAccounts/account{i}"),
                    "query": "api-version=2023-05-01",
                    "headers": [["content-type", "application/json"]],
                    "body": "{\"location\":\"eastus\",\"sku\":{\"name\":\"Standard_LRS\"},\"kind\":\"StorageV2\",\"tags\":{\"owner\":\"<script>alert(1)</script>\"}}"
                },
                "digest": "9f2c",
                "reason": "the nightly export needs a bucket",
                "approvers": ["group:a56b8840-25ef-5cbf-a75b-1178c095c637"],
                "quorum": 1,
                "credential": "elevated",
                "grant_window_secs": null,
                "session": "token-ab04b0311d407b09-20261129T172205.379Z",
                "created": "2026-11-29T17:22:05.379000Z",
                "expires": "2099-11-29T17:32:05.379000Z",
                "decided": null,
                "consumed": null,
                "votes": []
            }))
            .expect("a valid approval")
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let list = approvals(100);
    let viewer = Viewer {
        principal: Principal {
            tenant_id: "e19931f5-fd95-5a25-94d8-eaf2702ce353".into(),
            object_id: "20070f80-8fe7-53e1-91f2-c19325e5f95d".into(),
            kind: PrincipalKind::User,
            app_id: Some("1bd0e1e9-2069-5e03-b2fc-5c737025a777".into()),
            groups: vec!["a56b8840-25ef-5cbf-a75b-1178c095c637".into()],
            roles: Vec::new(),
            display_name: Some("alice".into()),
            token_version: 2,
        },
        csrf: "Qm9vbGVhbiBjc3JmIHRva2VuIGZvciB0aGUgYmVuY2g".into(),
        reader: true,
    };
    let html = portcullis::console::pages::cards_html(&list, &viewer).unwrap();
    // What an agent put in its request is text on the page, never markup.
    assert!(html.contains("&#60;script&#62;alert(1)&#60;/script&#62;"));
    assert!(!html.contains("<script>"));
    assert_eq!(html.matches("class=\"approve\"").count(), 100);
    let mut g = c.benchmark_group("console_pending_100");
    g.bench_function("html_cards", |b| {
        b.iter(|| portcullis::console::pages::cards_html(&list, &viewer).unwrap())
    });
    g.bench_function("api_json", |b| {
        b.iter(|| serde_json::to_string(&list).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
