//! The command line as a person meets it (issue 21, point 5), running the built binary:
//! errors printed once with one `error:` prefix and no backtrace whatever RUST_BACKTRACE
//! says, one error for a misspelled effect, `policy test`'s failure line, and every
//! argument described.

use std::path::PathBuf;

/// A scratch directory of this test's own.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pc-cli-{name}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `portcullis args` with RUST_BACKTRACE=1 (as many Rust users have it): whether it
/// succeeded, its stdout and its stderr.
fn run(args: &[&str]) -> (bool, String, String) {
    let out = crate::portcullis_cli()
        .env("RUST_BACKTRACE", "1")
        .env("RUST_LIB_BACKTRACE", "1")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn no_backtrace(text: &str) {
    for sign in ["Stack backtrace", "backtrace", "at /rustc/", "anyhow::"] {
        assert!(!text.contains(sign), "a backtrace ({sign}) in:\n{text}");
    }
}

const MISSPELLED: &str = "rules:\n  - name: storage-by-approval\n    effect: aprove\n    principals: ['*']\n    actions: [Microsoft.Storage/storageAccounts/write]\n    scopes: ['*']\n    approval: {approvers: ['*']}\n";

#[test]
fn policy_check_on_a_broken_file_prints_its_errors_once_and_no_backtrace() {
    let dir = scratch("check");
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, MISSPELLED).unwrap();
    let (ok, stdout, stderr) = run(&["policy", "check", bad.to_str().unwrap()]);
    assert!(!ok, "a broken file fails the check");
    // The error lines: one for the misspelled effect, and nothing it would cascade into.
    let problems: Vec<&str> = stdout.lines().filter(|l| l.contains("bad.yaml:")).collect();
    assert_eq!(
        problems,
        [format!(
            "{}:2: rule 'storage-by-approval': effect 'aprove' is not allow, approve or deny",
            bad.display()
        )],
        "{stdout}"
    );
    assert!(!stdout.contains("approval only applies"), "{stdout}");
    assert!(stdout.contains("invalid: "), "{stdout}");
    assert_eq!(
        stderr.trim_end(),
        "error: 1 of 1 file(s) failed",
        "{stderr}"
    );
    no_backtrace(&stdout);
    no_backtrace(&stderr);
}

#[test]
fn serve_prints_a_configuration_error_with_one_prefix_and_no_backtrace() {
    let dir = scratch("serve");
    let cfg = dir.join("portcullis.yaml");
    std::fs::write(
        &cfg,
        "listen: {gateway: \"127.0.0.1:0\"}\nstate_dir: state\nbogus: 1\n",
    )
    .unwrap();
    let (ok, stdout, stderr) = run(&["serve", "--config", cfg.to_str().unwrap()]);
    assert!(!ok);
    assert!(stdout.is_empty(), "{stdout}");
    let first = stderr.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("error: line 3 column 1: unknown field `bogus`"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("error:").count(), 1, "one prefix: {stderr}");
    assert!(!stderr.contains("Error:"), "{stderr}");
    assert!(
        stderr.contains("portcullis.yaml:3:1"),
        "the file and place: {stderr}"
    );
    no_backtrace(&stderr);
}

#[test]
fn policy_test_failures_read_plainly_without_a_backtrace() {
    let dir = scratch("ptest");
    std::fs::write(
        dir.join("policy.yaml"),
        "rules:\n  - name: no-deletes\n    effect: deny\n    principals: ['*']\n    actions: ['*/delete']\n    scopes: ['*']\n",
    )
    .unwrap();
    let request = "DELETE /subscriptions/s/resourceGroups/rg?api-version=2022-09-01";
    std::fs::write(
        dir.join("p.test.yaml"),
        format!(
            "policy: policy.yaml\ncases:\n  - name: deletes are refused\n    principal: ['user:11111111-2222-3333-4444-555555555555']\n    request: {request}\n    expect: deny\n    rule: no-deletes\n  - name: a wrong expectation\n    principal: ['user:11111111-2222-3333-4444-555555555555']\n    request: {request}\n    expect: allow\n  - name: a wrong rule\n    principal: ['user:11111111-2222-3333-4444-555555555555']\n    request: {request}\n    expect: deny\n    rule: something-else\n"
        ),
    )
    .unwrap();
    let file = dir.join("p.test.yaml");
    let (ok, stdout, stderr) = run(&["policy", "test", file.to_str().unwrap()]);
    assert!(!ok, "failing cases fail the command");
    let f = file.display();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[0],
        format!("ok    {f}: deletes are refused"),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with(&format!(
            "FAIL  {f}: a wrong expectation: expected allow, got deny by 'no-deletes' ("
        )),
        "{stdout}"
    );
    assert!(
        lines[2].starts_with(&format!(
            "FAIL  {f}: a wrong rule: expected deny by 'something-else', got deny by 'no-deletes' ("
        )),
        "{stdout}"
    );
    assert_eq!(lines[3], "policy: 1 passed, 2 failed", "{stdout}");
    assert_eq!(stderr.trim_end(), "error: 2 policy test case(s) failed");
    no_backtrace(&stdout);
    no_backtrace(&stderr);
}

/// Every argument and option of every subcommand says what it is, and the global log
/// option is one line wherever it shows.
#[test]
fn every_argument_is_described() {
    let (ok, top, _) = run(&["--help"]);
    assert!(ok, "{top}");
    let mut commands: Vec<Vec<String>> = Vec::new();
    let mut queue: Vec<Vec<String>> = vec![Vec::new()];
    while let Some(path) = queue.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let (ok, help, stderr) = run(&args);
        assert!(ok, "{args:?}: {stderr}");
        let mut section = "";
        for line in help.lines() {
            if !line.starts_with(' ') {
                section = line;
                continue;
            }
            let item = line.trim_start();
            match section {
                "Commands:" => {
                    let name = item.split_whitespace().next().unwrap();
                    if name != "help" {
                        let mut sub = path.clone();
                        sub.push(name.to_owned());
                        queue.push(sub);
                    }
                }
                // `demo`'s own arguments are another change's (issue 21, point 4).
                "Arguments:" | "Options:" if path.first().map(String::as_str) != Some("demo") => {
                    if !(item.starts_with('-') || item.starts_with('<')) {
                        continue; // a continued description
                    }
                    // `<NAME>  text` or `-x, --name <V>  text`: the text after two spaces.
                    let described = item
                        .split_once("  ")
                        .is_some_and(|(_, text)| !text.trim().is_empty());
                    assert!(described, "{args:?}: no description for `{item}`\n{help}");
                    if item.starts_with("--log-format") {
                        let words = item.split_whitespace().collect::<Vec<_>>().join(" ");
                        assert!(words.len() < 100, "{args:?}: `{words}` is long");
                    }
                }
                _ => {}
            }
        }
        commands.push(path);
    }
    assert!(commands.len() >= 20, "{commands:?}");
}
