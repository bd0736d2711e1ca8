//! `portcullis exec`: an agent written with the official Azure SDKs and their default
//! managed-identity credential runs unmodified (but for `base_url`) through the gateway: the
//! token endpoint hands it the agent's gateway token, the CA is trusted, paging works, and a
//! create completes through the SDK's poller, storage keys and a Key Vault secret arrive
//! masked, and a denied delete raises the SDK's own `HttpResponseError` with
//! `AuthorizationFailed`.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::{Env, Setup, TEST_RULES, leak};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The interpreter with the pinned SDKs: `PORTCULLIS_PYTHON`, else the repo's `.venv`
/// (which `scripts/test` prepares), else `python3`.
fn python() -> PathBuf {
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

/// `portcullis exec --gateway GATEWAY ... -- python tests/python/agent_sdk.py` as `who`
/// (their gateway token comes from `--token-command`), in `AGENT_SUBSCRIPTION`.
pub(crate) fn agent_sdk(env: &Env, gateway: &str, who: &str) -> Command {
    let token_file = env.dir.join(format!("{who}.token"));
    std::fs::write(&token_file, env.token(who)).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    cmd.args(["exec", "--gateway", gateway, "--ca"])
        .arg(env.gw.ca_file.clone().unwrap())
        .arg("--token-command")
        .arg(format!("cat '{}'", token_file.display()))
        .arg("--")
        .arg(python())
        .arg(repo_root().join("tests/python/agent_sdk.py"))
        .env("AGENT_SUBSCRIPTION", env.sim.subscription_id())
        .env_remove("PORTCULLIS_AGENT_TOKEN");
    cmd
}

/// The agent's last line of output, the JSON it prints of what it saw; it must have
/// succeeded.
pub(crate) fn what_the_agent_saw(out: &std::process::Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sdk_agent_runs_unmodified_under_portcullis_exec() {
    // Vaults by host name too: `{vault}.vault.localhost` resolves to this machine (RFC 6761;
    // scripts/test makes sure it does), and `https://vault.localhost` is an audience, so the
    // Key Vault SDK's default settings accept the gateway's challenge.
    let env = Env::with(Setup {
        rules: leak(format!(
            "{TEST_RULES}    - name: agents-list-groups\n      effect: allow\n      principals: [group:ai-agents]\n      actions: [Microsoft.Resources/subscriptions/resourceGroups/read]\n      scopes: [\"/subscriptions/*\"]\n"
        )),
        public_host: Some("localhost"),
        vault_audience: true,
        ..Setup::default()
    })
    .await;
    let port = env.gw.gateway_addr.port();
    let since = env.sim.last_call_seq();
    let mut agent = agent_sdk(&env, &format!("https://localhost:{port}"), "agent");
    agent.env(
        "AGENT_VAULT_URL",
        format!("https://demo-kv.vault.localhost:{port}"),
    );
    let out = tokio::task::spawn_blocking(move || agent.output().unwrap())
        .await
        .unwrap();
    let seen = what_the_agent_saw(&out);
    assert_eq!(
        seen["resources"],
        serde_json::json!(["demo-kv", "demostorage01", "vm1"]),
        "{seen}"
    );
    assert!(
        seen["pages"].as_u64().unwrap() >= 2,
        "the pager followed nextLinks: {seen}"
    );
    assert_eq!(seen["created"]["state"], "Succeeded", "{seen}");
    assert!(
        seen["storage_key"]
            .as_str()
            .unwrap()
            .starts_with("[masked:storage-keys:"),
        "{seen}"
    );
    let clear = env.sim.secret_value("demo-kv", "db-password").unwrap();
    let secret = seen["secret"].as_str().unwrap();
    assert!(
        secret.starts_with("[masked:keyvault-secret:") && !secret.contains(&clear),
        "{seen}"
    );
    let by_host = seen["secret_by_host"].as_str().unwrap();
    assert!(
        by_host.starts_with("[masked:keyvault-secret:") && !by_host.contains(&clear),
        "{seen}"
    );
    assert!(
        seen["secret_names_by_host"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == "db-password"),
        "the vault's list, paged by host name: {seen}"
    );
    assert_eq!(
        seen["groups"],
        serde_json::json!(["demo-rg", "network-rg", "shared-rg"]),
        "{seen}"
    );
    assert!(seen["group_pages"].as_u64().unwrap() >= 2, "{seen}");
    assert_eq!(seen["delete"]["status"], 403, "{seen}");
    assert_eq!(seen["delete"]["code"], "AuthorizationFailed", "{seen}");
    let calls = env.arm_calls(since);
    assert!(
        !calls.iter().any(|c| c.method == "DELETE"),
        "the delete never reached Azure"
    );
    assert!(
        calls
            .iter()
            .filter(|c| c.path.ends_with("/resources"))
            .all(|c| c
                .caller
                .as_ref()
                .is_some_and(|p| p.name.as_deref() == Some("portcullis-baseline"))),
        "Azure saw the gateway's identity: {calls:?}"
    );

    // Without a token source, exec refuses to start the agent.
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["exec", "--gateway", &env.url(""), "--", "true"])
        .env_remove("PORTCULLIS_AGENT_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("PORTCULLIS_AGENT_TOKEN"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sdk_create_held_for_approval_completes_when_an_approver_approves() {
    let env = Env::start().await;
    let since = env.sim.last_call_seq();
    let child = agent_sdk(&env, &env.url(""), "agent")
        .env("AGENT_SCENARIO", "held")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Another process (this test) sees the held request and approves it.
    let admin = |path: String| format!("https://{}{path}", env.gw.admin_addr);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let id = loop {
        let (s, _, list) = crate::send(
            env.http
                .get(admin("/api/approvals?status=pending".into()))
                .bearer_auth(env.token("alice")),
        )
        .await;
        assert_eq!(s, reqwest::StatusCode::OK, "{list}");
        if let Some(a) = list["value"].as_array().unwrap().iter().find(|a| {
            a["scope"]
                .as_str()
                .is_some_and(|s| s.ends_with("/agentheldsa"))
        }) {
            assert_eq!(a["reason"], "the agent needs a bucket", "{a}");
            break a["id"].as_str().unwrap().to_owned();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the SDK's create was never held"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let (s, _, v) = crate::send(
        env.http
            .post(admin(format!("/api/approvals/{id}/approve")))
            .bearer_auth(env.token("alice"))
            .json(&serde_json::json!({"comment": "go"})),
    )
    .await;
    assert_eq!(s, reqwest::StatusCode::OK, "{v}");
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let seen = what_the_agent_saw(&out);
    assert_eq!(seen["held"]["state"], "Succeeded", "{seen}");
    let puts: Vec<_> = env
        .arm_calls(since)
        .into_iter()
        .filter(|c| c.method == "PUT" && c.path.ends_with("/agentheldsa"))
        .collect();
    assert_eq!(puts.len(), 1, "forwarded once: {puts:?}");
    assert_eq!(
        puts[0].caller.as_ref().and_then(|c| c.name.as_deref()),
        Some("portcullis-elevated"),
        "with the rule's elevated identity"
    );
}

/// `portcullis env` prints the same wiring for a shell and serves the token endpoint until
/// stopped; the endpoint answers only with its header.
/// Where policy allows both, the SDK's pollers create and delete a VM, and the delete
/// reaches Azure (as the gateway). The demo policy's baseline denies every delete to the
/// ai-agents group, so this agent is another application, allowed by its client id in
/// shared-rg only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sdk_agent_creates_and_deletes_where_policy_allows_it() {
    let app = azure_sim::config::derived_id("app", "other-agent");
    let env = Env::with(Setup {
        rules: leak(format!(
            "{TEST_RULES}    - name: scratch-vms-in-shared-rg\n      effect: allow\n      principals: [app:{app}]\n      actions: [Microsoft.Compute/virtualMachines/write, Microsoft.Compute/virtualMachines/delete, Microsoft.Compute/virtualMachines/read]\n      scopes: [\"/subscriptions/*/resourceGroups/shared-rg\"]\n"
        )),
        ..Setup::default()
    })
    .await;
    let since = env.sim.last_call_seq();
    let mut agent = agent_sdk(&env, &env.url(""), "other-agent");
    agent.env("AGENT_SCENARIO", "create-and-delete");
    let out = tokio::task::spawn_blocking(move || agent.output().unwrap())
        .await
        .unwrap();
    let seen = what_the_agent_saw(&out);
    assert_eq!(seen["created"], "Succeeded", "{seen}");
    assert_eq!(seen["left"], serde_json::json!([]), "{seen}");
    let deletes: Vec<_> = env
        .arm_calls(since)
        .into_iter()
        .filter(|c| c.method == "DELETE")
        .collect();
    assert_eq!(deletes.len(), 1, "{deletes:?}");
    assert!(
        deletes[0]
            .path
            .ends_with("/virtualMachines/agent-scratch-vm")
            && deletes[0]
                .caller
                .as_ref()
                .is_some_and(|p| p.name.as_deref() == Some("portcullis-baseline")),
        "the delete reached Azure as the gateway: {deletes:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_prints_the_wiring_and_serves_tokens_until_stopped() {
    use std::io::BufRead;
    let env = Env::start().await;
    let token = env.token("agent");
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["env", "--gateway", &env.url("")])
        .env("PORTCULLIS_AGENT_TOKEN", &token)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = child.stdout.take().unwrap();
    let _child = Killed(child);
    let mut vars = std::collections::HashMap::new();
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let (k, v) = line
            .strip_prefix("export ")
            .and_then(|l| l.split_once('='))
            .unwrap_or_else(|| panic!("not an export line: {line}"));
        vars.insert(k.to_owned(), v.trim_matches('\'').to_owned());
        // Nine settings without a CA (four more with one); the command then keeps serving.
        if vars.len() == 9 {
            break;
        }
    }
    assert_eq!(vars["PORTCULLIS_URL"], env.url(""));
    assert!(
        std::path::Path::new(&vars["AZURE_CONFIG_DIR"])
            .join("clouds.config")
            .exists()
    );
    let http = reqwest::Client::new();
    let url = format!(
        "{}?api-version=2019-08-01&resource=https://management.azure.com",
        vars["IDENTITY_ENDPOINT"]
    );
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401, "no header, no token");
    let r = http
        .get(&url)
        .header("X-IDENTITY-HEADER", &vars["IDENTITY_HEADER"])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["access_token"], token.as_str());
    assert_eq!(body["token_type"], "Bearer");
}
