//! The policy tools from the outside: `portcullis policy check|explain|test` on the shipped
//! packs and on broken files, and every policy example in `docs/` loads.

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn portcullis(args: &[&str]) -> (bool, String) {
    crate::outcome(crate::portcullis_cli().args(args).current_dir(repo()))
}

#[test]
fn every_shipped_pack_passes_its_tests() {
    let tests: Vec<PathBuf> = std::fs::read_dir(repo().join("policies/tests"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".test.yaml"))
        .collect();
    assert!(
        tests.len() >= 3,
        "agent-baseline, read-only and demo have tests: {tests:?}"
    );
    let mut out = Vec::new();
    let (passed, failed) = portcullis::cli::policy::run_tests(&tests, &mut out).unwrap();
    assert_eq!(failed, 0, "{}", String::from_utf8_lossy(&out));
    assert!(passed >= 20);
    // Each pack is covered by a test file.
    for pack in ["agent-baseline", "read-only", "demo"] {
        assert!(
            tests
                .iter()
                .any(|t| t.file_name().unwrap().to_string_lossy().starts_with(pack)),
            "{pack} has no tests"
        );
    }
}

#[test]
fn policy_test_reports_failures_and_a_summary() {
    let dir = std::env::temp_dir().join(format!("pc-ptest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let policy = repo().join("policies/tests/read-only.yaml");
    std::fs::write(
        dir.join("wrong.test.yaml"),
        format!("policy: {}\ncases:\n  - name: a wrong expectation\n    principal: [group:readers]\n    request: PUT /subscriptions/s/resourceGroups/reports-rg?api-version=2022-09-01\n    expect: allow\n", policy.display()),
    )
    .unwrap();
    let (ok, out) = portcullis(&[
        "policy",
        "test",
        dir.join("wrong.test.yaml").to_str().unwrap(),
    ]);
    assert!(!ok, "a failing case fails the command");
    assert!(
        out.contains("FAIL") && out.contains("a wrong expectation"),
        "{out}"
    );
    assert!(out.contains("policy: 0 passed, 1 failed"), "{out}");
    let (ok, out) = portcullis(&["policy", "test", "policies/tests/read-only.test.yaml"]);
    assert!(ok, "{out}");
    assert!(out.contains("policy: 8 passed, 0 failed"), "{out}");
}

#[test]
fn policy_check_names_problems_and_fails() {
    let (ok, out) = portcullis(&[
        "policy",
        "check",
        "policies/demo.yaml",
        "policies/tests/agent-baseline.yaml",
        "policies/tests/read-only.yaml",
    ]);
    assert!(ok, "{out}");
    assert!(out.contains("ok: policies/demo.yaml"), "{out}");
    let dir = std::env::temp_dir().join(format!("pc-pcheck-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "rules:\n  - name: r\n    effect: allow\n    principals: ['*']\n    actions: [Microsoft.Compute/*]\n    scopes: ['*']\n    when: 'request.body.x =='\n").unwrap();
    let (ok, out) = portcullis(&["policy", "check", bad.to_str().unwrap()]);
    assert!(!ok);
    assert!(out.contains("bad.yaml:2: rule 'r': when: CEL"), "{out}");
    std::fs::write(
        &bad,
        "rules:\n  - name: r\n    effect: allow\n    colour: blue\n",
    )
    .unwrap();
    let (ok, out) = portcullis(&["policy", "check", bad.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        out.contains("line 4") && out.contains("colour"),
        "unknown keys name their place: {out}"
    );
}

#[test]
fn policy_explain_says_what_and_why() {
    let sub = "/subscriptions/00000000-0000-0000-0000-0000000000aa";
    let (ok, out) = portcullis(&[
        "policy",
        "explain",
        "--config",
        "policies/demo.yaml",
        "--principal",
        "group:ai-agents",
        "--request",
        &format!(
            "DELETE {sub}/resourceGroups/demo-rg/providers/Microsoft.Compute/virtualMachines/vm1?api-version=2024-07-01"
        ),
    ]);
    assert!(ok, "{out}");
    assert!(
        out.contains("operation   Microsoft.Compute/virtualMachines/delete (control plane)"),
        "{out}"
    );
    assert!(
        out.contains("decision    DENY by rule 'baseline-no-deletes'"),
        "{out}"
    );
    let (ok, out) = portcullis(&[
        "policy",
        "explain",
        "--config",
        "policies/demo.yaml",
        "--principal",
        "group:ai-agents",
        "--request",
        &format!(
            "PUT {sub}/resourceGroups/demo-rg/providers/Microsoft.Storage/storageAccounts/s1?api-version=2023-05-01"
        ),
    ]);
    assert!(ok, "{out}");
    assert!(
        out.contains("decision    APPROVAL REQUIRED by rule 'demo-approve-storage-create'"),
        "{out}"
    );
    assert!(out.contains("credential  elevated"), "{out}");
    // Groups and approvers by the policy's aliases, each with its id.
    let approvers = azure_sim::config::derived_id("group", "approvers");
    let agents = azure_sim::config::derived_id("group", "ai-agents");
    assert!(
        out.contains(&format!("approvers   approvers (group, {approvers})"))
            && out.contains(&format!("agents (group, {agents})"))
            && out.contains("principal   explained principal (app, "),
        "{out}"
    );
    let (ok, out) = portcullis(&[
        "policy",
        "explain",
        "--config",
        "policies/demo.yaml",
        "--principal",
        "group:approvers",
        "--request",
        &format!("GET {sub}/resourceGroups/demo-rg?api-version=2022-09-01"),
    ]);
    assert!(ok, "{out}");
    assert!(out.contains("default deny"), "{out}");
    let (ok, out) = portcullis(&[
        "policy",
        "explain",
        "--config",
        "policies/demo.yaml",
        "--principal",
        "group:ai-agents",
        "--request",
        "GET /nowhere",
    ]);
    assert!(!ok, "an unnamable request is refused: {out}");
}

/// Every ```yaml block in docs/ parses as what it shows (a configuration or a policy), and
/// every policy example validates.
#[test]
fn every_example_in_docs_loads() {
    let mut seen = 0;
    for entry in std::fs::read_dir(repo().join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "md") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for (i, block) in text.split("```yaml\n").skip(1).enumerate() {
            let yaml = block.split("\n```").next().unwrap();
            let name = format!("{}#{i}", path.display());
            let dir = std::env::temp_dir().join(format!(
                "pc-doc-{}-{i}-{}",
                std::process::id(),
                path.file_stem().unwrap().to_string_lossy()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            // Examples may include the shipped packs by name.
            for pack in std::fs::read_dir(repo().join("policies")).unwrap() {
                let pack = pack.unwrap().path();
                if pack.extension().is_some_and(|e| e == "yaml") {
                    std::fs::copy(&pack, dir.join(pack.file_name().unwrap())).unwrap();
                }
            }
            let file = dir.join("example.yaml");
            std::fs::write(&file, yaml).unwrap();
            if yaml.contains("\nidentity:")
                || yaml.starts_with("identity:")
                || yaml.contains("listen:")
            {
                // A configuration: its shape must parse (its secrets are not on this machine).
                let generic: Result<serde_json::Value, _> = serde_saphyr::from_str(yaml);
                assert!(generic.is_ok(), "{name}: {generic:?}");
            } else if yaml.contains("rules:") {
                let policy_part = if yaml.starts_with("policy:") {
                    yaml.replace("\n  ", "\n")
                        .trim_start_matches("policy:")
                        .to_owned()
                } else {
                    yaml.to_owned()
                };
                std::fs::write(&file, policy_part).unwrap();
                let checked = portcullis::config::policy::check_file(&file);
                assert!(checked.is_ok(), "{name}: {:?}", checked.err());
            }
            seen += 1;
        }
    }
    assert!(seen >= 3, "docs have examples ({seen})");
}

/// Hot reload under load: every request is answered, and decided by the old or the new
/// policy, whole; an invalid policy is refused and the running one stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_under_load() {
    use reqwest::{Method, StatusCode};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    // A load test: the per-principal rate limit (tested in abuse.rs) would refuse it.
    let env = Arc::new(
        crate::Env::with(crate::Setup {
            extra: "limits:\n  rate_per_principal: 0\n",
            ..crate::Setup::default()
        })
        .await,
    );
    let policy_file = env.dir.join("policy.yaml");
    let original = std::fs::read_to_string(&policy_file).unwrap();
    let vm = format!(
        "{}/providers/Microsoft.Compute/virtualMachines/vm1?api-version=2024-07-01",
        env.rg()
    );
    let rg = format!("{}?api-version=2022-09-01", env.rg());
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..6 {
        let (env, stop, vm, rg) = (env.clone(), stop.clone(), vm.clone(), rg.clone());
        workers.push(tokio::spawn(async move {
            let mut rules_seen = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) && n < 5000 {
                n += 1;
                let (s, _, body) = env.agent(Method::GET, &rg, None).await;
                assert_eq!(s, StatusCode::OK, "a read failed during reload: {body}");
                let (s, _, body) = env.agent(Method::DELETE, &vm, None).await;
                assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
                let rule = body["error"]["additionalInfo"][0]["info"]["rule"]
                    .as_str()
                    .unwrap_or("none")
                    .to_owned();
                assert!(
                    rule == "no-vm-deletes" || rule == "no-vm-deletes-v2",
                    "decided by a half-loaded policy? rule {rule}"
                );
                rules_seen.push(rule);
            }
            rules_seen
        }));
    }
    let decided_by = |rule: &'static str| {
        let env = env.clone();
        let vm = vm.clone();
        async move {
            let (_, _, body) = env.agent(Method::DELETE, &vm, None).await;
            body["error"]["additionalInfo"][0]["info"]["rule"] == rule
        }
    };
    // Replace the policy the way editors do: write aside, then rename over it.
    let write = |text: &str| {
        let aside = env.dir.join("policy.yaml.new");
        std::fs::write(&aside, text).unwrap();
        std::fs::rename(&aside, &policy_file).unwrap();
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    write(&original.replace("name: no-vm-deletes", "name: no-vm-deletes-v2"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !decided_by("no-vm-deletes-v2").await {
        assert!(
            Instant::now() < deadline,
            "the new policy was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let failures = portcullis::metrics::METRICS.policy_reload_failures.get();
    write(&original.replace("effect: deny", "effect: forbid-maybe"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while portcullis::metrics::METRICS.policy_reload_failures.get() == failures {
        assert!(
            Instant::now() < deadline,
            "the invalid policy was never looked at"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        decided_by("no-vm-deletes-v2").await,
        "an invalid policy leaves the running one in force"
    );
    stop.store(true, Ordering::Relaxed);
    let mut seen = Vec::new();
    for w in workers {
        seen.extend(w.await.unwrap());
    }
    assert!(
        seen.iter().any(|r| r == "no-vm-deletes"),
        "requests ran before the reload"
    );
    assert!(seen.iter().any(|r| r == "no-vm-deletes-v2"), "and after it");
}
