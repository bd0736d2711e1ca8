//! Decision time against policies of 10, 200 and 2,000 rules, without and with a CEL
//! condition on the request body. Rules spread over twenty provider namespaces, as a real
//! policy would; the decision sees only the indexed candidates.
//!
//! Run: `cargo bench -p portcullis --bench policy`.

use std::collections::BTreeSet;
use std::hint::black_box;
use std::path::Path;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use portcullis::azure::operation::name_arm;
use portcullis::config::policy::validate_policy;
use portcullis::config::raw::RawPolicy;
use portcullis::identity::principal::{Principal, PrincipalKind};
use portcullis::policy::condition::{Body, Facts};

const NAMESPACES: &[&str] = &[
    "Microsoft.Compute",
    "Microsoft.Storage",
    "Microsoft.KeyVault",
    "Microsoft.Network",
    "Microsoft.Web",
    "Microsoft.Sql",
    "Microsoft.DocumentDB",
    "Microsoft.ContainerService",
    "Microsoft.Insights",
    "Microsoft.Authorization",
    "Microsoft.Resources",
    "Microsoft.EventHub",
    "Microsoft.ServiceBus",
    "Microsoft.Cache",
    "Microsoft.Search",
    "Microsoft.CognitiveServices",
    "Microsoft.ContainerRegistry",
    "Microsoft.OperationalInsights",
    "Microsoft.AppConfiguration",
    "Microsoft.ManagedIdentity",
];

fn policy_yaml(n: usize, body_condition: bool) -> String {
    let mut y = String::from(
        "aliases:\n  groups: {agents: 11111111-1111-1111-1111-111111111111}\nrules:\n",
    );
    for i in 0..n {
        let ns = NAMESPACES[i % NAMESPACES.len()];
        let effect = ["allow", "deny", "allow", "approve"][i % 4];
        let approval = if effect == "approve" {
            "    approval: {approvers: [group:agents]}\n"
        } else {
            ""
        };
        let when = if body_condition {
            "    when: \"request.body.location != 'westeurope'\"\n"
        } else {
            ""
        };
        y.push_str(&format!(
            "  - name: r{i}\n    effect: {effect}\n    principals: [group:agents]\n    actions: [{ns}/type{}/*]\n    scopes: [/subscriptions/*/resourceGroups/rg{}]\n{approval}{when}",
            i % 7,
            i % 5
        ));
    }
    y
}

fn bench(c: &mut Criterion) {
    let principal = Principal {
        tenant_id: "t".into(),
        object_id: "o".into(),
        kind: PrincipalKind::App,
        app_id: Some("a".into()),
        groups: vec!["11111111-1111-1111-1111-111111111111".into()],
        roles: vec![],
        display_name: None,
        token_version: 2,
    };
    let op = name_arm(
        &http::Method::PUT,
        "/subscriptions/s/resourceGroups/rg0/providers/Microsoft.Compute/type0/vm1",
        "api-version=2024-07-01",
    )
    .unwrap();
    let headers = http::HeaderMap::new();
    let body = Body::Json(
        serde_json::json!({"location": "eastus", "properties": {"hardwareProfile": {"vmSize": "Standard_B1s"}}}),
    );
    let mut group = c.benchmark_group("policy_decision");
    for n in [10, 200, 2000] {
        for body_condition in [false, true] {
            let raw: RawPolicy = serde_saphyr::from_str(&policy_yaml(n, body_condition)).unwrap();
            let checked =
                validate_policy("bench.yaml", Path::new("."), raw, Some(&BTreeSet::new()));
            assert!(checked.errors.is_empty(), "{:?}", checked.errors);
            let policy = checked.policy;
            let label = if body_condition {
                "body_condition"
            } else {
                "no_condition"
            };
            group.bench_with_input(BenchmarkId::new(label, n), &n, |b, _| {
                b.iter(|| {
                    let facts = Facts::new(&principal, &op, "PUT", "/", "", &headers, &body);
                    black_box(policy.decide_with(black_box(&principal), black_box(&op), &facts))
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
