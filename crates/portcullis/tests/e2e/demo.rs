//! `portcullis demo` from the outside: it starts, writes its environment file, and every
//! command of its printed tour does what the tour says.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn the_demo_tour_works_as_printed() {
    let dir = std::env::temp_dir().join(format!("pc-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--sim-listen",
            "127.0.0.1:0",
            "--dir",
        ])
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut tour = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if line.starts_with("Press Ctrl-C") {
            break;
        }
        tour.push(line);
    }
    let env_line = tour
        .iter()
        .find(|l| l.trim_start().starts_with("set -a;"))
        .expect("the tour says how to load the environment")
        .trim()
        .to_owned();
    let alias = tour
        .iter()
        .find(|l| l.trim_start().starts_with("alias pc="))
        .unwrap()
        .trim()
        .to_owned();
    let commands: Vec<String> = tour
        .iter()
        .map(|l| l.trim())
        .filter(|l| {
            l.starts_with("pc ")
                || l.starts_with("curl ")
                || l.starts_with(env!("CARGO_BIN_EXE_portcullis"))
        })
        .map(str::to_owned)
        .collect();
    assert_eq!(commands.len(), 17, "{tour:#?}");
    let run = |cmd: &str| {
        let script = format!("shopt -s expand_aliases\n{env_line}\n{alias}\n{cmd}\n");
        let out = Command::new("bash").arg("-c").arg(script).output().unwrap();
        assert!(
            out.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let outputs: Vec<String> = commands.iter().map(|c| run(c)).collect();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        outputs[0].contains("\"vm1\"") || outputs[0].contains("\"demo-kv\""),
        "resources: {}",
        outputs[0]
    );
    assert!(
        outputs[0].contains("https://localhost:"),
        "a nextLink through the gateway: {}",
        outputs[0]
    );
    assert_eq!(outputs[1].trim(), "\"Succeeded\"");
    assert_eq!(outputs[2].trim(), "\"AuthorizationFailed\"");
    assert!(
        outputs[3].contains("demo-kv.vault.azure.net/secrets/db-password"),
        "{}",
        outputs[3]
    );
    assert!(
        outputs[4].trim().starts_with("\"[masked:keyvault-secret:"),
        "a secret's value is masked: {}",
        outputs[4]
    );
    assert!(
        outputs[5].starts_with("HTTP/")
            && outputs[5].contains(" 202")
            && outputs[5]
                .to_ascii_lowercase()
                .contains("azure-asyncoperation: https://localhost:")
            && outputs[5].contains("x-portcullis-approval: "),
        "a storage account create is held, and presented as a long-running operation: {}",
        outputs[5]
    );
    assert!(
        outputs[6].contains("Microsoft.Storage/storageAccounts/write")
            && outputs[6].contains("you"),
        "the approver sees it and may decide it: {}",
        outputs[6]
    );
    assert!(outputs[7].contains("is now approved"), "{}", outputs[7]);
    assert!(
        outputs[8].starts_with("202"),
        "the retry went through: {}",
        outputs[8]
    );
    assert_eq!(outputs[9].trim(), "\"AuthorizationFailed\"");
    assert_eq!(outputs[10].trim(), "\"AuthenticationFailed\"");
    let calls = &outputs[11];
    assert!(
        calls.contains("\"caller\":\"portcullis-baseline\""),
        "{calls}"
    );
    assert!(
        !calls.contains("\"caller\":\"agent\""),
        "Azure never saw the agent: {calls}"
    );
    let creates: Vec<&str> = calls
        .lines()
        .filter(|l| l.contains("storageAccounts/agentstore") && l.contains("\"PUT\""))
        .collect();
    assert_eq!(
        creates.len(),
        1,
        "the approved create reached Azure once: {calls}"
    );
    assert!(
        creates[0].contains("\"caller\":\"portcullis-elevated\""),
        "with the elevated identity: {calls}"
    );
    // The tour's own session, on the record.
    assert!(outputs[12].contains("tour"), "{}", outputs[12]);
    let replay = &outputs[13];
    assert!(
        replay.contains("✗ refused") && replay.contains("DELETE") && replay.contains("403"),
        "{replay}"
    );
    assert!(
        replay.contains("[masked:keyvault-secret:"),
        "the answer's body, masked: {replay}"
    );
    assert!(
        replay.contains("◆ approval") && replay.contains("voted approve"),
        "the approval's history is in the session: {replay}"
    );
    // The held create is held, not refused; approved and sent again, it is one request,
    // allowed after approval (issue 21).
    assert!(replay.contains("⏸ held"), "{replay}");
    let count = replay.lines().last().unwrap_or_default();
    assert!(
        count.ends_with(" refused") && count.contains(" allowed (1 after approval), 0 held, "),
        "{replay}"
    );
    assert!(outputs[14].contains("chain intact"), "{}", outputs[14]);
    assert!(
        outputs[15].contains("\"id\":\"tour@"),
        "approvers read sessions through the admin API: {}",
        outputs[15]
    );
    assert!(
        outputs[16].contains(
            "portcullis_requests_total{decision=\"deny\",action=\"microsoft.compute/virtualmachines/delete\",status=\"403\"} 1"
        ),
        "the metrics count the tour's refusal: {}",
        outputs[16]
    );
    let env = std::fs::read_to_string(dir.join("demo.env")).unwrap();
    for key in [
        "PORTCULLIS_URL=",
        "PORTCULLIS_ADMIN_URL=",
        "PORTCULLIS_CA=",
        "SIM_URL=",
        "DEMO_SUBSCRIPTION=",
        "AGENT_TOKEN=",
        "OTHER_AGENT_TOKEN=",
        "APPROVER_TOKEN=",
        "APPROVER2_TOKEN=",
    ] {
        assert!(env.contains(key), "{key} in demo.env");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_shipped_demo_policy_names_the_simulators_groups() {
    let policy = include_str!("../../../../policies/demo.yaml");
    for group in ["ai-agents", "approvers"] {
        let id = azure_sim::config::derived_id("group", group).to_string();
        assert!(
            policy.contains(&format!("{group}: {id}")),
            "{group} is {id} in the simulator"
        );
    }
}

/// The README's first command is `cargo run --release -- demo` at the workspace root, where
/// two packages have binaries: without `default-run` cargo refuses to choose.
#[test]
fn cargo_run_at_the_root_runs_the_gateway() {
    let out = std::process::Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let pkg = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "portcullis")
        .unwrap();
    assert_eq!(pkg["default_run"], "portcullis");
}

/// SIGHUP reloads the policy of a running gateway (the file-change path is tested in
/// `policy_tools::hot_reload_under_load`).
#[cfg(unix)]
#[test]
fn sighup_reloads_the_policy() {
    use std::io::Read;
    use std::time::{Duration, Instant};
    let dir = std::env::temp_dir().join(format!("pc-hup-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--sim-listen",
            "127.0.0.1:0",
            "--dir",
        ])
        .arg(&dir)
        .env("RUST_LOG", "portcullis=info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    for line in BufReader::new(stdout).lines() {
        if line.unwrap().starts_with("Press Ctrl-C") {
            break;
        }
    }
    let status = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut stderr = child.stderr.take().unwrap();
    // Read the log until it says so, or a deadline passes.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut seen = String::new();
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            if seen.contains("policy reloaded") {
                let _ = tx.send(());
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let reloaded = rx
        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        .is_ok();
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(reloaded, "the gateway logged no reload after SIGHUP");
}
