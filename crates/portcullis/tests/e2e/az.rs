//! The az CLI (PyPI `azure-cli`, pinned in tests/python/requirements-az.txt) through
//! `portcullis exec`: `az login --identity` takes the agent's gateway token from exec's
//! managed-identity endpoint, and the cloud exec registers points Resource Manager at the
//! gateway. Listing works, a denied delete fails with a readable error, storage keys arrive
//! masked, and a create held for approval completes when an approver approves.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::{Env, Setup, TEST_RULES, leak};

/// The test policy, plus what `az login` and `az group list` read: the subscriptions and
/// the subscription's resource groups.
pub(crate) fn rules() -> &'static str {
    leak(format!(
        r#"{TEST_RULES}    - name: agents-list-subscriptions-and-groups
      effect: allow
      principals: [group:ai-agents]
      actions: [Microsoft.Resources/subscriptions/read, Microsoft.Resources/subscriptions/resourceGroups/read]
      scopes: ["/"]
    # `az storage account create` asks whether the name is free first.
    - name: agents-check-names
      effect: allow
      principals: [group:ai-agents]
      actions: [Microsoft.Storage/checknameavailability/read]
      scopes: ["/"]
"#
    ))
}

/// The az CLI: `PORTCULLIS_AZ`, else the repo's `.venv-az` (which `scripts/test` prepares).
fn az() -> PathBuf {
    if let Ok(p) = std::env::var("PORTCULLIS_AZ") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv-az/bin/az")
}

/// `sh -c SCRIPT` under `portcullis exec`, with `az` on the PATH and logged in.
pub(crate) fn exec(env: &Env, script: &str) -> Command {
    let az = az();
    assert!(
        az.exists(),
        "the az CLI is not installed at {} (scripts/test installs it)",
        az.display()
    );
    let token_file = env.dir.join("agent.token");
    std::fs::write(&token_file, env.token("agent")).unwrap();
    let path = format!(
        "{}:{}",
        az.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // By name, as agents reach it: exec derives the vaults' host names (for az,
    // `{vault}.vault.localhost:{port}`) from the gateway's.
    let gateway = format!("https://localhost:{}", env.gw.gateway_addr.port());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    cmd.args(["exec", "--gateway", &gateway, "--ca"])
        .arg(env.gw.ca_file.clone().unwrap())
        .arg("--token-command")
        .arg(format!("cat '{}'", token_file.display()))
        .args(["--", "sh", "-c"])
        .arg(format!(
            "az login --identity --allow-no-subscriptions -o none && {script}"
        ))
        .env("PATH", path)
        .env("AZURE_CORE_NO_COLOR", "1")
        .env("AZURE_CORE_ONLY_SHOW_ERRORS", "1");
    cmd
}

fn run(env: &Env, script: &str) -> Output {
    exec(env, script).output().unwrap()
}

pub(crate) fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_az_cli_lists_is_refused_and_sees_masked_keys() {
    // Vaults by host name: `{vault}.vault.localhost` resolves to this machine (RFC 6761;
    // scripts/test makes sure it does). az turns the SDK's challenge check off itself, so
    // no extra audience is needed.
    let env = Env::with(Setup {
        rules: rules(),
        public_host: Some("localhost"),
        ..Default::default()
    })
    .await;
    let since = env.sim.last_call_seq();
    let out = tokio::task::block_in_place(|| {
        run(
            &env,
            "az group list --query '[].name' -o tsv && echo --- && \
             az vm list -g demo-rg --query '[].name' -o tsv && echo --- && \
             az storage account keys list -g demo-rg -n demostorage01 --query '[0].value' -o tsv && echo --- && \
             az keyvault secret show --vault-name demo-kv -n db-password --query value -o tsv && echo --- && \
             az keyvault secret list --vault-name demo-kv --query '[].name' -o tsv",
        )
    });
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let parts: Vec<&str> = stdout.split("---").map(str::trim).collect();
    assert!(parts[0].lines().any(|l| l == "demo-rg"), "{stdout}");
    assert_eq!(parts[1], "vm1", "{stdout}");
    assert!(
        parts[2].starts_with("[masked:storage-keys:"),
        "the key is masked: {stdout}"
    );
    let keys = env.sim.storage_keys(&format!(
        "{}/providers/Microsoft.Storage/storageAccounts/demostorage01",
        env.rg()
    ));
    assert!(keys.iter().all(|k| !stdout.contains(k.as_str())));
    let clear = env.sim.secret_value("demo-kv", "db-password").unwrap();
    assert!(
        parts[3].starts_with("[masked:keyvault-secret:") && !stdout.contains(&clear),
        "the secret is masked: {stdout}"
    );
    assert!(parts[4].lines().any(|l| l == "db-password"), "{stdout}");

    let out = tokio::task::block_in_place(|| run(&env, "az vm delete -g demo-rg -n vm1 --yes"));
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "the delete is refused");
    assert!(
        stderr.contains("AuthorizationFailed")
            && stderr.contains("Microsoft.Compute/virtualMachines/delete")
            && stderr.contains("no-vm-deletes"),
        "a readable refusal naming the action and the rule: {stderr}"
    );
    let calls = env.arm_calls(since);
    assert!(!calls.iter().any(|c| c.method == "DELETE"), "{calls:?}");
    assert!(
        calls
            .iter()
            .all(|c| c.caller.as_ref().and_then(|p| p.name.as_deref()) != Some("agent")),
        "Azure never saw the agent's identity"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_az_create_held_for_approval_completes_when_approved() {
    let env = Env::with(Setup {
        rules: rules(),
        ..Default::default()
    })
    .await;
    let mut child = exec(
        &env,
        "az storage account create -g demo-rg -n azheldsa -l eastus --sku Standard_LRS \
         --kind StorageV2 --query provisioningState -o tsv",
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let admin = |path: &str| format!("https://{}{path}", env.gw.admin_addr);
    let deadline = Instant::now() + Duration::from_secs(60);
    let id = loop {
        let (s, _, list) = crate::send(
            env.http
                .get(admin("/api/approvals?status=pending"))
                .bearer_auth(env.token("alice")),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{list}");
        if let Some(a) = list["value"].as_array().unwrap().iter().find(|a| {
            a["scope"]
                .as_str()
                .is_some_and(|s| s.ends_with("/azheldsa"))
        }) {
            break a["id"].as_str().unwrap().to_owned();
        }
        if child.try_wait().unwrap().is_some() || Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "the az create was never held: {}\n{}",
                text(&out.stdout),
                text(&out.stderr)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (s, _, v) = crate::send(
        env.http
            .post(admin(&format!("/api/approvals/{id}/approve")))
            .bearer_auth(env.token("alice"))
            .json(&serde_json::json!({"comment": "ok"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(stdout.trim(), "Succeeded", "{stderr}");
}
