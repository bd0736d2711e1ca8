//! `portcullis demo` from the outside: it starts, writes its environment file, prints
//! README.md's tour word for word, and every command of the tour, run as written through
//! bash, does what the tour says.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The tour: the file the demo includes and prints, and README.md carries.
const TOUR: &str = include_str!("../../src/cli/tour.sh");

/// A running `portcullis demo` (ports chosen at start), in its own directory; stopped and
/// removed when dropped.
struct Demo {
    child: Child,
    /// Where it runs: the tour's relative paths (`.portcullis/demo/demo.env`, `.venv-az`)
    /// are relative to it.
    cwd: PathBuf,
    /// What it printed up to "Press Ctrl-C".
    printed: String,
}

impl Demo {
    fn start(name: &str, extra: &[&str]) -> Demo {
        let cwd = std::env::temp_dir().join(format!("pc-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&cwd);
        std::fs::create_dir_all(&cwd).unwrap();
        Demo::start_in(cwd, extra)
    }

    fn start_in(cwd: PathBuf, extra: &[&str]) -> Demo {
        let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args([
                "demo",
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
                "--sim-listen",
                "127.0.0.1:0",
            ])
            .args(extra)
            .current_dir(&cwd)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut printed = String::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let last = line.starts_with("Press Ctrl-C");
            printed.push_str(&line);
            printed.push('\n');
            if last {
                break;
            }
        }
        Demo {
            child,
            cwd,
            printed,
        }
    }

    fn dir(&self) -> PathBuf {
        self.cwd.join(".portcullis/demo")
    }

    /// A value of demo.env.
    fn env(&self, key: &str) -> String {
        let env = std::fs::read_to_string(self.dir().join("demo.env")).unwrap();
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("{key} in demo.env:\n{env}"))
            .to_owned()
    }

    /// Runs a script through bash in the demo's directory, as pasted into a terminal:
    /// aliases expand, and errors are in the output, where a person sees them.
    fn bash(&self, script: &str, limit: Duration) -> String {
        let mut child = Command::new("bash")
            .arg("-c")
            .arg(format!("shopt -s expand_aliases\nexec 2>&1\n{script}"))
            .current_dir(&self.cwd)
            // What the tour sets up itself must not come from the test's environment.
            .env_remove("PORTCULLIS_TOKEN")
            .env_remove("PORTCULLIS_URL")
            .env_remove("PORTCULLIS_ADMIN_URL")
            .env_remove("PORTCULLIS_CA")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut out = String::new();
            let _ = stdout.read_to_string(&mut out);
            out
        });
        let deadline = Instant::now() + limit;
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the script did not finish within {limit:?}:\n{script}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        reader.join().unwrap()
    }

    /// Stops the demo and keeps its directory, for the next one.
    fn keep_dir(mut self) -> PathBuf {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::mem::take(&mut self.cwd)
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !self.cwd.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.cwd);
        }
    }
}

/// The tour cut into its steps: a step is a run of comment lines and the commands under
/// them, named by its first comment line (the first step sets the environment up).
fn tour_steps() -> Vec<(String, String)> {
    let mut steps: Vec<(String, String)> = Vec::new();
    let mut in_comment = false;
    for line in TOUR.lines() {
        let comment = line.starts_with('#');
        if comment && !in_comment {
            steps.push((line.trim_start_matches("# ").to_owned(), String::new()));
        }
        in_comment = comment;
        let step = &mut steps.last_mut().expect("the tour starts with a comment").1;
        step.push_str(line);
        step.push('\n');
    }
    steps
}

/// The az CLI for the tour's last step (`PORTCULLIS_AZ`, else the repository's `.venv-az`),
/// or why that step cannot run here.
fn az() -> Result<PathBuf, String> {
    let az = std::env::var_os("PORTCULLIS_AZ")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv-az/bin/az"));
    if !az.exists() {
        return Err(format!(
            "no az CLI at {} (set PORTCULLIS_AZ, or make .venv-az: python3 -m venv .venv-az && \
             .venv-az/bin/pip install -r tests/python/requirements-az.txt)",
            az.display()
        ));
    }
    // az reaches the vault by host name, as in Azure.
    let resolves = Command::new("getent")
        .args(["hosts", "demo-kv.vault.localhost"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !resolves {
        return Err(
            "*.localhost names do not resolve here (scripts/test sets that up: \
                    nss-myhostname)"
                .into(),
        );
    }
    Ok(az)
}

#[test]
fn the_readme_carries_the_tour_the_demo_prints() {
    let readme = include_str!("../../../../README.md");
    assert!(
        readme.contains(&format!("```sh\n{TOUR}```\n<!-- /tour -->\n")),
        "README.md's tour is not crates/portcullis/src/cli/tour.sh: copy the file between the \
         README's tour markers"
    );
    for (what, banned) in [
        ("rebuilds the debug profile", "cargo run"),
        ("depends on a checkout's build", "target/"),
    ] {
        assert!(!TOUR.contains(banned), "the tour {what}: {banned}");
    }
}

#[cfg(unix)]
#[test]
fn the_tour_works_as_written() {
    let demo = Demo::start("tour", &[]);
    assert!(
        demo.printed.contains(&format!("\n\n{TOUR}\n")),
        "the demo prints README.md's tour word for word:\n{}",
        demo.printed
    );
    assert!(
        demo.printed.contains(&format!(
            "Policy: {}/policy.yaml (policies/demo.yaml as shipped",
            demo.dir().canonicalize().unwrap().display()
        )),
        "the demo says which policy it runs:\n{}",
        demo.printed
    );
    let mut steps = tour_steps();
    let names: Vec<String> = steps.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(
        names.len(),
        14,
        "the tour's steps, each checked below: {names:#?}"
    );
    let az_step = steps.pop().unwrap();
    assert!(az_step.0.starts_with("an unmodified az CLI"), "{az_step:?}");
    let az_runs = match az() {
        // The tour finds az in .venv-az, in the directory it is pasted in.
        Ok(az) => {
            std::os::unix::fs::symlink(
                az.parent().unwrap().parent().unwrap(),
                demo.cwd.join(".venv-az"),
            )
            .unwrap();
            steps.push(az_step);
            true
        }
        Err(why) => {
            eprintln!("skipping the tour's az step: {why}");
            false
        }
    };
    // One bash, as one paste: a marker before each step cuts the output into the steps'.
    let script: String = steps
        .iter()
        .enumerate()
        .map(|(i, (_, text))| format!("printf '@@step %d\\n' {i}\n{text}"))
        .collect();
    let out = demo.bash(&script, Duration::from_secs(300));
    let outputs: Vec<&str> = out.split("@@step ").skip(1).collect();
    assert_eq!(outputs.len(), steps.len(), "{out}");
    let output = |name: &str| -> &str {
        let i = steps
            .iter()
            .position(|(n, _)| n.starts_with(name))
            .unwrap_or_else(|| panic!("a step '{name}' in {names:#?}"));
        let (number, text) = outputs[i].split_once('\n').unwrap();
        assert_eq!(number, i.to_string());
        text
    };

    let setup = output("the demo's URLs");
    assert!(setup.is_empty(), "the set-up is silent: {setup}");
    let list = output("an agent in ai-agents lists demo-rg");
    assert!(list.contains("\"vm1\""), "resources: {list}");
    assert!(
        list.contains(&format!("\"{}/subscriptions/", demo.env("PORTCULLIS_URL"))),
        "a nextLink through the gateway: {list}"
    );
    let delete = output("deleting the VM");
    assert!(
        delete.contains("\"code\": \"AuthorizationFailed\"")
            && delete.contains("Microsoft.Compute/virtualMachines/delete"),
        "ARM's refusal, naming the action: {delete}"
    );
    let strangers = output("an agent in no group");
    assert_eq!(
        strangers.lines().collect::<Vec<_>>(),
        ["\"AuthorizationFailed\"", "\"AuthenticationFailed\""],
        "{strangers}"
    );
    let secret = output("Key Vault through the gateway");
    assert!(
        secret.trim().starts_with("\"[masked:keyvault-secret:"),
        "a secret's value is masked: {secret}"
    );
    let held = output("creating a storage account");
    let headers: Vec<&str> = held.lines().collect();
    assert!(
        headers.len() == 3
            && headers[0].starts_with("HTTP/")
            && headers[0].contains(" 202")
            && headers.iter().any(|h| {
                h.to_ascii_lowercase().starts_with(&format!(
                    "azure-asyncoperation: {}/",
                    demo.env("PORTCULLIS_URL")
                ))
            }),
        "the create is held, and answered as a long-running operation: {held}"
    );
    let approval = headers
        .iter()
        .find_map(|h| h.strip_prefix("x-portcullis-approval: "))
        .unwrap_or_else(|| panic!("the agent is given the approval's id: {held}"));
    let approved = output("alice (PORTCULLIS_TOKEN");
    let (list, vote) = approved.trim_end().rsplit_once('\n').unwrap_or_default();
    assert!(
        list.contains(approval) && list.contains("Microsoft.Storage/storageAccounts/write"),
        "the approver sees the held create: {approved}"
    );
    assert!(
        vote.contains("approved"),
        "and approves that one: {approved}"
    );
    let resent = output("the same request again");
    assert_eq!(resent.trim(), "202", "the resend goes through: {resent}");
    let explain = output("why? ask the policy");
    assert!(
        explain.contains("Microsoft.Storage/storageAccounts/write")
            && explain.contains("'demo-approve-storage-create'")
            && explain.contains("credential  elevated"),
        "{explain}"
    );
    let calls = output("what reached \"Azure\"");
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
    assert!(
        creates.len() == 1 && creates[0].contains("\"caller\":\"portcullis-elevated\""),
        "the approved create reached Azure once, with the elevated identity: {calls}"
    );
    let record = output("all of it is on the record");
    assert!(
        record.contains("✗ refused") && record.contains("DELETE") && record.contains("403"),
        "{record}"
    );
    assert!(
        record.contains("[masked:keyvault-secret:") && !record.contains("\"value\":\"s3cr"),
        "the answers' bodies, masked: {record}"
    );
    assert!(
        record.contains("◆ approval") && record.contains("voted approve"),
        "the approval's history is in the session: {record}"
    );
    assert!(record.contains("chain intact"), "{record}");
    let sessions = output("the same trail through the admin API");
    let agent = demo.env("AGENT_OID");
    let tour_session = sessions
        .lines()
        .find(|l| l.contains(&format!("\"id\":\"tour@{agent}\"")))
        .unwrap_or_else(|| panic!("approvers read the tour's session: {sessions}"));
    let metrics = output("what operators graph");
    assert!(
        metrics.contains(
            "portcullis_requests_total{decision=\"deny\",action=\"microsoft.compute/virtualmachines/delete\",status=\"403\"} 1"
        ),
        "the metrics count the tour's refusal: {metrics}"
    );
    if az_runs {
        let az_out = output("an unmodified az CLI");
        assert!(
            az_out.contains("\"[masked:keyvault-secret:"),
            "az reads the secret, masked: {az_out}"
        );
        assert!(
            az_out.contains("AuthorizationFailed"),
            "az's delete is refused: {az_out}"
        );
    }
    for key in [
        "PORTCULLIS_URL",
        "PORTCULLIS_ADMIN_URL",
        "PORTCULLIS_CA",
        "SIM_URL",
        "SIM_CA",
        "DEMO_SUBSCRIPTION",
        "AGENT_TOKEN",
        "AGENT_OID",
        "OTHER_AGENT_TOKEN",
        "APPROVER_TOKEN",
        "APPROVER2_TOKEN",
        "PORTCULLIS_TOKEN",
        "DEMO_DIR",
    ] {
        demo.env(key);
    }
    assert_eq!(
        Path::new(&demo.env("PORTCULLIS_BIN_DIR")),
        Path::new(env!("CARGO_BIN_EXE_portcullis"))
            .parent()
            .unwrap(),
        "the tour runs the binary the demo runs as"
    );

    // A held request is its own outcome, neither allowed nor refused; held, approved and sent
    // again, the create counts as it happened: once held, once allowed after approval.
    assert!(
        record.contains("⏸ held")
            && record
                .lines()
                .any(|l| l == "5 requests: 3 allowed (1 after approval), 1 held, 1 refused"),
        "the replay counts the create held, then allowed after approval: {record}"
    );
    assert!(
        tour_session.contains("\"requests\":5")
            && tour_session.contains("\"allowed\":3")
            && tour_session.contains("\"after_approval\":1")
            && tour_session.contains("\"held\":1")
            && tour_session.contains("\"refused\":1"),
        "the admin API counts the create held, then allowed after approval: {tour_session}"
    );
}

/// The demo runs a policy the user gives it, and never overwrites its copy of the shipped
/// policy once someone edited it.
#[test]
fn the_demo_runs_a_given_policy_and_keeps_an_edited_copy() {
    let first = Demo::start("policy", &["--exit-after-tour"]);
    let copy = first.dir().join("policy.yaml");
    let shipped = include_str!("../../../../policies/demo.yaml");
    assert_eq!(std::fs::read_to_string(&copy).unwrap(), shipped);
    let edited = format!("{shipped}\n# mine\n");
    std::fs::write(&copy, &edited).unwrap();
    let cwd = first.keep_dir();
    let second = Demo::start_in(cwd.clone(), &["--exit-after-tour"]);
    assert_eq!(
        std::fs::read_to_string(&copy).unwrap(),
        edited,
        "the edit survives a restart"
    );
    assert!(
        second
            .printed
            .contains("policy.yaml (edited: the demo left policy.yaml as you changed it"),
        "{}",
        second.printed
    );
    let cwd = second.keep_dir();

    // The user's own policy: VM deletes allowed, which the shipped policy denies.
    let mine = cwd.join("mine.yaml");
    std::fs::write(
        &mine,
        format!(
            "aliases:\n  groups:\n    ai-agents: {}\nrules:\n  - name: agents-delete-vms\n    \
             effect: allow\n    principals: [group:ai-agents]\n    actions: \
             [Microsoft.Compute/virtualMachines/delete]\n    scopes: \
             [\"/subscriptions/*/resourceGroups/demo-rg\"]\n",
            azure_sim::config::derived_id("group", "ai-agents")
        ),
    )
    .unwrap();
    let demo = Demo::start_in(cwd, &["--policy", "mine.yaml"]);
    assert!(
        demo.printed.contains(&format!(
            "Policy: {} (--policy)",
            mine.canonicalize().unwrap().display()
        )),
        "{}",
        demo.printed
    );
    let setup = tour_steps().remove(0).1;
    let out = demo.bash(
        &format!(
            "{setup}pc -X DELETE -H \"Authorization: Bearer $AGENT_TOKEN\" -o /dev/null -w '%{{http_code}}\\n' \
             \"$RG/providers/Microsoft.Compute/virtualMachines/vm1?api-version=2024-07-01\"\n"
        ),
        Duration::from_secs(60),
    );
    assert!(
        out.trim() == "200" || out.trim() == "202",
        "the given policy decides: {out}"
    );
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
