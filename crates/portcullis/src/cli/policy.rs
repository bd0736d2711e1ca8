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

use crate::azure::operation::{self, Operation};
use crate::azure::route::{self, Service};
use crate::config::policy::{Checked, check_file};
use crate::identity::principal::{Principal, PrincipalKind};
use crate::policy::condition::{Body, Facts};
use crate::policy::{Decision, Effect, PrincipalMatcher};

#[derive(clap::Args)]
pub struct PolicyArgs {
    #[command(subcommand)]
    command: PolicyCommand,
}

#[derive(clap::Subcommand)]
enum PolicyCommand {
    /// Validate policy files (or configuration files' policies); exit 1 on errors.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Name a request as its Azure operation and show the decision and why.
    Explain {
        /// A configuration or policy file.
        #[arg(long)]
        config: PathBuf,
        /// Principal attributes as rules write them (group:ai-agents, role:X, app:ID,
        /// user:ID, tenant:ID); repeat for several.
        #[arg(long = "principal", conflicts_with = "token")]
        principals: Vec<String>,
        /// An access token to read the principal from (not verified: explain is offline).
        #[arg(long)]
        token: Option<String>,
        /// 'METHOD PATH?QUERY', e.g. 'DELETE /subscriptions/.../virtualMachines/vm1?api-version=2024-07-01'.
        #[arg(long)]
        request: String,
        /// A JSON body for conditions that read request.body.
        #[arg(long)]
        body: Option<PathBuf>,
        /// The Host the request was sent to (for {vault}.vault.{public_host} routing).
        #[arg(long, default_value = "gateway")]
        host: String,
    },
    /// Run policy test files; exit 1 on any failure.
    Test {
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
                None => principal_from_attributes(&checked, &principals)?,
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
            let (op, decision) = evaluate(&checked, &principal, &request, &host, body)?;
            print!("{}", explanation(&principal, &op, &decision));
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
                for e in errors {
                    println!("{e}");
                }
                println!("error: {} is not valid", f.display());
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} file(s) failed", files.len());
    }
    Ok(())
}

/// A principal made of the attributes rules match on.
pub fn principal_from_attributes(
    checked: &Checked,
    attributes: &[String],
) -> anyhow::Result<Principal> {
    let mut p = Principal {
        tenant_id: "00000000-0000-0000-0000-000000000000".into(),
        object_id: "00000000-0000-0000-0000-000000000001".into(),
        kind: PrincipalKind::App,
        app_id: None,
        groups: Vec::new(),
        roles: Vec::new(),
        display_name: Some("explained principal".into()),
        token_version: 2,
    };
    for a in attributes {
        match checked.resolve(a).map_err(anyhow::Error::msg)? {
            PrincipalMatcher::Group(g) => p.groups.push(g),
            PrincipalMatcher::Role(r) => p.roles.push(r),
            PrincipalMatcher::App(id) => p.app_id = Some(id),
            PrincipalMatcher::User(id) => {
                p.object_id = id;
                p.kind = PrincipalKind::User;
            }
            PrincipalMatcher::Tenant(t) => p.tenant_id = t,
            PrincipalMatcher::Any => bail!("'*' is not an attribute of a principal"),
        }
    }
    Ok(p)
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

/// Names the request and decides it.
pub fn evaluate(
    checked: &Checked,
    p: &Principal,
    request: &str,
    host: &str,
    body: Option<Value>,
) -> anyhow::Result<(Operation, Decision)> {
    let (method, target) = request
        .trim()
        .split_once(' ')
        .context("the request is 'METHOD PATH?QUERY'")?;
    let method: http::Method = method
        .trim()
        .to_ascii_uppercase()
        .parse()
        .context("not an HTTP method")?;
    let target = target.trim();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let routed = route::route(host, path, None).map_err(|e| anyhow::anyhow!("{e}"))?;
    let op = match &routed.service {
        Service::Arm => operation::name_arm(&method, &routed.path, query),
        Service::KeyVault { vault } => {
            operation::name_keyvault(&method, vault, &routed.path, query)
        }
    }
    .map_err(|e| {
        anyhow::anyhow!(
            "the request cannot be named as an Azure operation (the gateway refuses it): {e}"
        )
    })?;
    let body = body.map_or(Body::Absent, Body::Json);
    let headers = http::HeaderMap::new();
    // A deployment is judged as the gateway judges it: each resource of its template too.
    let deployment = match (&body, method == http::Method::PUT) {
        (Body::Json(doc), true)
            if op
                .action
                .eq_ignore_ascii_case("Microsoft.Resources/deployments/write") =>
        {
            Some(
                crate::azure::deployment::parse(&routed.path, doc)
                    .map_err(|e| anyhow::anyhow!("the gateway refuses this deployment: {e}"))?,
            )
        }
        _ => None,
    };
    let deployment_facts = deployment.as_ref().map(|d| d.facts());
    let facts = Facts::new(
        p,
        &op,
        method.as_str(),
        &routed.path,
        query,
        &headers,
        &body,
    )
    .with_deployment(deployment_facts.as_ref());
    let decision = checked.policy.decide_with(p, &op, &facts);
    let (Some(d), Some(df)) = (&deployment, &deployment_facts) else {
        return Ok((op, decision));
    };
    if decision.effect == crate::policy::Effect::Deny {
        return Ok((op, decision));
    }
    let judged = crate::policy::bundle::decide(
        &|p| p.to_owned(),
        &checked.policy,
        p,
        decision,
        &d.operations,
        crate::policy::bundle::Bundle::Deployment {
            operation: &op,
            deployment: d,
            facts: df,
        },
    );
    let decision = match judged {
        Ok((d, _)) => d,
        Err((crate::policy::bundle::Refusal::Denied { decision, .. }, _)) => *decision,
        Err((crate::policy::bundle::Refusal::Invalid { message, .. }, _)) => {
            let mut d = crate::policy::Decision::allow(message);
            d.effect = crate::policy::Effect::Deny;
            d
        }
    };
    Ok((op, decision))
}

fn effect_word(e: Effect) -> &'static str {
    match e {
        Effect::Allow => "ALLOW",
        Effect::Approve => "APPROVAL REQUIRED",
        Effect::Deny => "DENY",
    }
}

pub fn explanation(p: &Principal, op: &Operation, d: &Decision) -> String {
    let mut out = String::new();
    let kind = match p.kind {
        PrincipalKind::User => "user",
        PrincipalKind::App => "app",
        PrincipalKind::ManagedIdentity => "managed identity",
    };
    out.push_str(&format!(
        "principal   {kind} {} (tenant {})\n",
        p.object_id, p.tenant_id
    ));
    if !p.groups.is_empty() {
        out.push_str(&format!("  groups    {}\n", p.groups.join(", ")));
    }
    if !p.roles.is_empty() {
        out.push_str(&format!("  roles     {}\n", p.roles.join(", ")));
    }
    let plane = match op.plane {
        operation::Plane::Control => "control plane",
        operation::Plane::Data => "data plane",
    };
    out.push_str(&format!("operation   {} ({plane})\n", op.action));
    out.push_str(&format!(
        "scope       {}\n",
        crate::policy::scope_display(op)
    ));
    out.push_str(&format!("decision    {}", effect_word(d.effect)));
    match &d.rule {
        Some(r) => out.push_str(&format!(" by rule '{r}'\n")),
        None => out.push_str(" (no rule matched: default deny)\n"),
    }
    out.push_str(&format!("reason      {}\n", d.reason));
    if let Some(c) = &d.credential {
        out.push_str(&format!("credential  {c}\n"));
    }
    if let Some(a) = &d.approval {
        out.push_str(&format!(
            "approvers   {} (quorum {}, timeout {}s)\n",
            a.approvers_display.join(", "),
            a.quorum,
            a.timeout.as_secs()
        ));
    }
    for n in &d.nearest {
        out.push_str(
            &format!(
                "nearest     rule '{}' ({:?}): {}\n",
                n.rule, n.effect, n.why
            )
            .replace("(Allow)", "(allow)")
            .replace("(Deny)", "(deny)")
            .replace("(Approve)", "(approve)"),
        );
    }
    for a in &d.audit {
        out.push_str(&format!("audit       {a}\n"));
    }
    out
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
            anyhow::anyhow!(
                "{}",
                e.to_string().replace("<input>", &f.display().to_string())
            )
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
            let outcome = principal_from_attributes(&checked, &case.principal)
                .and_then(|p| evaluate(&checked, &p, &case.request, &case.host, case.body.clone()));
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
                            "expected {} {}, got {} by {} ({})",
                            case.expect,
                            case.rule
                                .as_deref()
                                .map(|r| format!("by '{r}'"))
                                .unwrap_or_default(),
                            effect_word(d.effect).to_lowercase(),
                            d.rule.as_deref().unwrap_or("the default deny"),
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
