//! `portcullis policy check|explain|test`: the tools to trust a policy before it runs.
//!
//! - `check FILE...`: validates policy files (or the policy of configuration files) and
//!   prints warnings; exit 1 on errors.
//! - `explain --config FILE (--principal ATTR... | --token JWT) --request 'METHOD PATH'`:
//!   names the operation and prints the decision and why, offline.
//! - `test FILE...`: runs YAML test cases (principal + request → expected effect), like
//!   `opa test`; a summary line at the end, exit 1 on any failure.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;
use serde_json::Value;

use crate::config::policy::{Checked, check_file};
use crate::identity::principal::Principal;
use crate::policy::Effect;
use crate::policy::explain::{self, evaluate, explanation, principal_from_attributes};

#[derive(clap::Args)]
pub struct PolicyArgs {
    #[command(subcommand)]
    command: PolicyCommand,
}

#[derive(clap::Subcommand)]
enum PolicyCommand {
    /// Validate policy files (or configuration files' policies); exit 1 on errors.
    Check {
        /// Policy files, or configuration files (their policy is checked).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Name a request as its Azure operation and show the decision and why.
    Explain {
        /// A configuration or policy file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Principal attributes as rules write them (group:ai-agents, role:X, app:ID,
        /// user:ID, tenant:ID); repeat for several.
        #[arg(long = "principal", value_name = "ATTR", conflicts_with = "token")]
        principals: Vec<String>,
        /// An access token to read the principal from (not verified: explain is offline).
        #[arg(long)]
        token: Option<String>,
        /// 'METHOD PATH?QUERY', e.g. 'DELETE /subscriptions/.../virtualMachines/vm1?api-version=2024-07-01'.
        #[arg(long)]
        request: String,
        /// A file holding the request's JSON body, for conditions that read request.body.
        #[arg(long, value_name = "FILE")]
        body: Option<PathBuf>,
        /// The Host the request was sent to (for {vault}.vault.{public_host} routing).
        #[arg(long, default_value = "gateway")]
        host: String,
    },
    /// Run policy test files; exit 1 on any failure.
    Test {
        /// Test files: `policy:` (the policy under test, relative to the file) and `cases:`
        /// (docs/policy.md).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

pub fn run(args: PolicyArgs) -> anyhow::Result<()> {
    match args.command {
        PolicyCommand::Check { files } => check(&files),
        PolicyCommand::Explain {
            config,
            principals,
            token,
            request,
            body,
            host,
        } => {
            let checked = load(&config)?;
            let principal = match token {
                Some(t) => principal_from_token(&t)?,
                None => principal_from_attributes(&checked.policy.aliases, &principals)
                    .map_err(anyhow::Error::msg)?,
            };
            let body = match body {
                Some(path) => Some(
                    serde_json::from_str(
                        &std::fs::read_to_string(&path)
                            .with_context(|| format!("reading {}", path.display()))?,
                    )
                    .context("the body is not JSON")?,
                ),
                None => None,
            };
            let (op, decision) = evaluate(&checked.policy, &principal, &request, &host, body)?;
            print!(
                "{}",
                explanation(&checked.policy.aliases, &principal, &op, &decision)
            );
            Ok(())
        }
        PolicyCommand::Test { files } => test(&files),
    }
}

fn load(path: &Path) -> anyhow::Result<Checked> {
    check_file(path).map_err(|errors| {
        anyhow::anyhow!("{} problem(s):\n  {}", errors.len(), errors.join("\n  "))
    })
}

fn check(files: &[PathBuf]) -> anyhow::Result<()> {
    let mut failed = 0;
    for f in files {
        match check_file(f) {
            Ok(c) => {
                for w in &c.warnings {
                    println!("{w}");
                }
                println!(
                    "ok: {} ({} rules, {} warnings)",
                    f.display(),
                    c.policy.rules.len(),
                    c.warnings.len()
                );
            }
            Err(errors) => {
                failed += 1;
                for e in &errors {
                    println!("{e}");
                }
                println!("invalid: {} ({} problem(s))", f.display(), errors.len());
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} file(s) failed", files.len());
    }
    Ok(())
}

fn principal_from_token(token: &str) -> anyhow::Result<Principal> {
    let claims = crate::identity::jwt::unverified_claims(token)
        .map_err(|e| anyhow::anyhow!("the token cannot be read: {e}"))?;
    let tid = claims["tid"]
        .as_str()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let version = if claims["ver"] == "1.0" { 1 } else { 2 };
    let (p, overage) = crate::identity::jwt::principal(&claims, &tid, version)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if overage {
        eprintln!(
            "note: the token has a groups overage; its groups are not listed, so group rules will not match"
        );
    }
    eprintln!("note: the token is read, not verified (explain is offline)");
    Ok(p)
}

// === policy test ===

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    /// The policy (or configuration) under test, relative to the test file.
    policy: PathBuf,
    cases: Vec<TestCase>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestCase {
    name: String,
    principal: Vec<String>,
    request: String,
    #[serde(default)]
    body: Option<Value>,
    #[serde(default = "default_host")]
    host: String,
    expect: String,
    /// The rule expected to decide (or `default` for the default deny).
    rule: Option<String>,
}

fn default_host() -> String {
    "gateway".into()
}

/// Runs test files; returns (passed, failed) and prints a line per case.
pub fn run_tests(
    files: &[PathBuf],
    out: &mut dyn std::io::Write,
) -> anyhow::Result<(usize, usize)> {
    let (mut passed, mut failed) = (0, 0);
    for f in files {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        let t: TestFile = serde_saphyr::from_str(&text).map_err(|e| {
            anyhow::anyhow!(crate::config::yaml_error(&e, &f.display().to_string()))
        })?;
        let base = f.parent().map(Path::to_path_buf).unwrap_or_default();
        let checked = load(&base.join(&t.policy))?;
        for case in t.cases {
            let expected = match case.expect.as_str() {
                "allow" => Effect::Allow,
                "deny" => Effect::Deny,
                "approve" => Effect::Approve,
                other => bail!(
                    "{}: case '{}': expect '{other}' is not allow, approve or deny",
                    f.display(),
                    case.name
                ),
            };
            let outcome = principal_from_attributes(&checked.policy.aliases, &case.principal)
                .map_err(anyhow::Error::msg)
                .and_then(|p| {
                    evaluate(
                        &checked.policy,
                        &p,
                        &case.request,
                        &case.host,
                        case.body.clone(),
                    )
                    .map_err(anyhow::Error::from)
                });
            let verdict = match outcome {
                Ok((_, d)) => {
                    let rule_ok = match case.rule.as_deref() {
                        None => true,
                        Some("default") => d.rule.is_none(),
                        Some(r) => d.rule.as_deref() == Some(r),
                    };
                    if d.effect == expected && rule_ok {
                        Ok(())
                    } else {
                        Err(format!(
                            "expected {}{}, got {} by {} ({})",
                            case.expect,
                            case.rule
                                .as_deref()
                                .map(|r| format!(" by '{r}'"))
                                .unwrap_or_default(),
                            explain::verdict(d.effect).to_lowercase(),
                            d.rule
                                .as_deref()
                                .map_or("the default deny".to_owned(), |r| format!("'{r}'")),
                            d.reason
                        ))
                    }
                }
                Err(e) => Err(format!("could not evaluate: {e}")),
            };
            match verdict {
                Ok(()) => {
                    passed += 1;
                    writeln!(out, "ok    {}: {}", f.display(), case.name)?;
                }
                Err(why) => {
                    failed += 1;
                    writeln!(out, "FAIL  {}: {}: {why}", f.display(), case.name)?;
                }
            }
        }
    }
    Ok((passed, failed))
}

fn test(files: &[PathBuf]) -> anyhow::Result<()> {
    let (passed, failed) = run_tests(files, &mut std::io::stdout())?;
    println!("policy: {passed} passed, {failed} failed");
    if failed > 0 {
        bail!("{failed} policy test case(s) failed");
    }
    Ok(())
}
