//! The official Azure SDKs for Python drive the simulator directly (no gateway): paging,
//! the long-running-operation poller, and Key Vault's challenge-based authentication.

use std::path::PathBuf;
use std::process::Command;

use azure_sim::{SimOptions, Simulator};
use serde_json::Value;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The interpreter with the pinned SDKs: `PORTCULLIS_PYTHON`, else the repo's `.venv`
/// (which `scripts/test` prepares), else `python3`.
pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("PORTCULLIS_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = repo_root().join(".venv/bin/python");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_sdks_drive_the_simulator() {
    let dir = std::env::temp_dir().join(format!("sim-sdk-{}", uuid::Uuid::new_v4()));
    let sim = Simulator::start(SimOptions {
        tls_dir: Some(dir.clone()),
        ..SimOptions::default()
    })
    .await
    .unwrap();
    let app = sim
        .config()
        .principal("portcullis-baseline")
        .unwrap()
        .clone();
    let since = sim.last_call_seq();
    let script = repo_root().join("tests/python/sim_sdk.py");
    let out = tokio::task::spawn_blocking({
        let (url, tenant, sub) = (sim.url().to_owned(), sim.tenant_id(), sim.subscription_id());
        let expected = sim.secret_value("demo-kv", "db-password").unwrap();
        let ca = sim.ca_path().unwrap().clone();
        move || {
            Command::new(python())
                .arg(script)
                .env("SIM_URL", url)
                .env("SIM_TENANT", tenant)
                .env("SIM_SUBSCRIPTION", sub)
                .env("SIM_CLIENT_ID", app.app_id.unwrap().to_string())
                .env("SIM_CLIENT_SECRET", app.secret.unwrap())
                .env("SIM_EXPECTED_SECRET", expected)
                .env("REQUESTS_CA_BUNDLE", ca)
                .env("AZURE_CORE_DISABLE_TELEMETRY", "1")
                .output()
                .expect(
                    "python runs (scripts/test prepares .venv with tests/python/requirements.txt)",
                )
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the SDK script failed\nstdout: {stdout}\nstderr: {stderr}"
    );
    let seen: Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(
        seen["groups"],
        serde_json::json!(["demo-rg", "network-rg", "shared-rg"])
    );
    assert!(
        seen["group_pages"].as_array().unwrap().len() >= 2,
        "the pager followed nextLink: {seen}"
    );
    assert_eq!(seen["vm_created"], "Succeeded");
    assert_eq!(seen["vm_list"], serde_json::json!(["sdk-vm", "vm1"]));
    assert_eq!(seen["vm_power"], serde_json::json!(["PowerState/stopped"]));
    assert_eq!(seen["vm_after_delete"], "ResourceNotFound");
    assert_eq!(seen["secret_matches"], true);
    assert_eq!(
        seen["secret_names"],
        serde_json::json!(["db-password", "openai-api-key", "storage-connection-string"])
    );
    assert_eq!(seen["secret_written_version"], true);
    assert_eq!(
        sim.secret_value("demo-kv", "sdk-written").as_deref(),
        Some("written-by-sdk")
    );

    // The SDKs really polled: at least one status poll answered InProgress before Succeeded.
    let calls = sim.calls_since(since);
    let polls = calls
        .iter()
        .filter(|c| c.path.contains("/operations/"))
        .count();
    assert!(
        polls >= 4,
        "create and delete were each polled more than once ({polls} polls)"
    );
    let arm_callers: Vec<_> = calls
        .iter()
        .filter(|c| c.service == azure_sim::Service::Arm)
        .filter_map(|c| c.caller.as_ref())
        .collect();
    assert!(!arm_callers.is_empty());
    assert!(
        arm_callers
            .iter()
            .all(|c| c.name.as_deref() == Some("portcullis-baseline"))
    );
    let _ = std::fs::remove_dir_all(dir);
}
