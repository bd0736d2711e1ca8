//! `portcullis approvals list|show|approve|deny`: the approvals API from a terminal.
//! The admin URL, the caller's token and the CA come from flags or the environment
//! (`PORTCULLIS_ADMIN_URL`, `PORTCULLIS_TOKEN`, `PORTCULLIS_CA`).

use std::path::PathBuf;

use anyhow::{Context, bail};
use serde_json::{Value, json};

#[derive(clap::Args)]
pub struct ApprovalsArgs {
    #[command(subcommand)]
    command: ApprovalsCommand,
    /// The gateway's admin listener.
    #[arg(long, global = true, env = "PORTCULLIS_ADMIN_URL")]
    admin_url: Option<String>,
    /// Your Entra ID access token for the gateway (never the agent's).
    #[arg(long, global = true, env = "PORTCULLIS_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// A CA certificate (PEM) to trust for the admin listener.
    #[arg(long, global = true, env = "PORTCULLIS_CA")]
    ca_file: Option<PathBuf>,
}

#[derive(clap::Subcommand)]
enum ApprovalsCommand {
    /// Approvals you may see (pending by default).
    List {
        /// pending, approved, denied, expired, consumed or all.
        #[arg(long, default_value = "pending")]
        status: String,
        /// Only the ids, one per line.
        #[arg(long)]
        ids: bool,
        /// Keep going: print approvals as they are created or change.
        #[arg(long)]
        wait: bool,
    },
    /// One approval, with the request as the agent sent it (secrets masked).
    Show {
        /// The approval's id, as `approvals list` shows it.
        id: String,
    },
    /// Approve a held request.
    Approve {
        /// The approval's id, as `approvals list` shows it.
        id: String,
        /// Why: kept with the vote in the audit trail.
        #[arg(long, short)]
        comment: Option<String>,
    },
    /// Deny a held request.
    Deny {
        /// The approval's id, as `approvals list` shows it.
        id: String,
        /// Why: kept with the vote in the audit trail, and told to the agent in its refusal.
        #[arg(long, short)]
        comment: Option<String>,
    },
}

struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    fn new(args: &ApprovalsArgs) -> anyhow::Result<Api> {
        let base = args
            .admin_url
            .clone()
            .context("give --admin-url or set PORTCULLIS_ADMIN_URL")?;
        let token = args.token.clone().context(
            "give --token or set PORTCULLIS_TOKEN (your own Entra ID token for the gateway)",
        )?;
        let mut b = reqwest::Client::builder().use_rustls_tls();
        for cert in rustls_native_certs::load_native_certs().certs {
            if let Ok(c) = reqwest::Certificate::from_der(&cert) {
                b = b.add_root_certificate(c);
            }
        }
        if let Some(ca) = &args.ca_file {
            let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
            for c in reqwest::Certificate::from_pem_bundle(&pem)? {
                b = b.add_root_certificate(c);
            }
        }
        Ok(Api {
            http: b.build()?,
            base: base.trim_end_matches('/').to_owned(),
            token,
        })
    }

    async fn call(&self, req: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let resp = req.bearer_auth(&self.token).send().await?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let code = body["error"]["code"].as_str().unwrap_or("Error");
            let message = body["error"]["message"].as_str().unwrap_or("");
            bail!("{} {code}: {message}", status.as_u16());
        }
        Ok(body)
    }
}

/// "build-agent (app)": the requester's name with its kind, as the API gives them.
fn requester_label(a: &Value) -> Option<String> {
    let name = a["principal_name"].as_str()?;
    Some(match a["principal_kind"].as_str() {
        Some("managed_identity") => format!("{name} (managed identity)"),
        Some(kind) => format!("{name} ({kind})"),
        None => name.to_owned(),
    })
}

/// A text field for the terminal: no control or invisible characters.
fn text(v: &Value) -> String {
    crate::identity::names::printable(v.as_str().unwrap_or("-"))
}

fn row(a: &Value) -> String {
    format!(
        "{:<36}  {:<9} {:<4} {:<52} {:<46} {:>3}/{:<3} {}",
        a["id"].as_str().unwrap_or("-"),
        a["status"].as_str().unwrap_or("-"),
        if a["may_decide"] == json!(true) {
            "you"
        } else {
            ""
        },
        a["action"].as_str().unwrap_or("-"),
        super::sessions::principal_cell(a["principal"].as_str(), requester_label(a).as_deref()),
        a["approvals"],
        a["quorum"],
        a["expires"].as_str().unwrap_or("-"),
    )
}

fn header() -> String {
    format!(
        "{:<36}  {:<9} {:<4} {:<52} {:<46} {:>7} {}",
        "ID", "STATUS", "CAN", "ACTION", "REQUESTER", "VOTES", "EXPIRES"
    )
}

fn show(a: &Value) {
    let line = |k: &str, v: &str| println!("{k:<12} {v}");
    line("id", a["id"].as_str().unwrap_or("-"));
    line("status", a["status"].as_str().unwrap_or("-"));
    // Server-made, from cleaned names, with the id: printed without any control character.
    line(
        "requester",
        &match a["requester"].as_str() {
            Some(_) => text(&a["requester"]),
            None => format!("{} (name unavailable)", text(&a["principal"])),
        },
    );
    line("action", a["action"].as_str().unwrap_or("-"));
    line("scope", a["scope"].as_str().unwrap_or("-"));
    line("reason", a["reason"].as_str().unwrap_or("(none given)"));
    line(
        "rule",
        &format!(
            "{}: {}",
            a["rule"].as_str().unwrap_or("-"),
            a["rule_reason"].as_str().unwrap_or("")
        ),
    );
    line(
        "approvers",
        &format!(
            "{} (quorum {}, {} so far)",
            a["approver_names"]
                .as_array()
                .filter(|v| !v.is_empty())
                .or(a["approvers"].as_array())
                .map(|v| v
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", "))
                .unwrap_or_default(),
            a["quorum"],
            a["approvals"]
        ),
    );
    line("created", a["created"].as_str().unwrap_or("-"));
    line("expires", a["expires"].as_str().unwrap_or("-"));
    let r = &a["request"];
    let q = r["query"].as_str().unwrap_or("");
    line(
        "request",
        &format!(
            "{} {}{}{q}",
            r["method"].as_str().unwrap_or("-"),
            r["path"].as_str().unwrap_or("-"),
            if q.is_empty() { "" } else { "?" }
        ),
    );
    for h in r["highlights"].as_array().into_iter().flatten() {
        let risk = h["risk"]
            .as_str()
            .map(|r| format!("  <- {r}"))
            .unwrap_or_default();
        line(
            "setting",
            &format!(
                "{} = {}{risk}",
                h["path"].as_str().unwrap_or("-"),
                h["value"].as_str().unwrap_or("-")
            ),
        );
    }
    if let Some(body) = r["body"].as_str() {
        line("body", body);
    }
    for v in a["votes"].as_array().into_iter().flatten() {
        line(
            "vote",
            &format!(
                "{} {} by {}{}",
                v["time"].as_str().unwrap_or("-"),
                v["vote"].as_str().unwrap_or("-"),
                text(if v["voter_display"].is_string() {
                    &v["voter_display"]
                } else {
                    &v["voter"]
                }),
                v["comment"]
                    .as_str()
                    .map(|c| format!(": {c}"))
                    .unwrap_or_default()
            ),
        );
    }
    if a["may_decide"] == json!(true) {
        println!(
            "\nYou may decide: portcullis approvals approve {0} | deny {0} --comment '...'",
            a["id"].as_str().unwrap_or("")
        );
    }
}

pub async fn run(args: ApprovalsArgs) -> anyhow::Result<()> {
    let api = Api::new(&args)?;
    match &args.command {
        ApprovalsCommand::List { status, ids, wait } => {
            // Every page: the API answers a page at a time, `nextLink` leading on.
            let mut list = Vec::new();
            let mut body = api
                .call(
                    api.http
                        .get(format!("{}/api/approvals", api.base))
                        .query(&[("status", status.as_str()), ("limit", "500")]),
                )
                .await?;
            loop {
                list.extend(body["value"].as_array().cloned().unwrap_or_default());
                let Some(next) = body["nextLink"].as_str() else {
                    break;
                };
                body = api
                    .call(api.http.get(format!("{}{next}", api.base)))
                    .await?;
            }
            if *ids {
                for a in &list {
                    println!("{}", a["id"].as_str().unwrap_or(""));
                }
            } else {
                println!("{}", header());
                for a in &list {
                    println!("{}", row(a));
                }
            }
            if *wait {
                follow(&api).await?;
            }
        }
        ApprovalsCommand::Show { id } => {
            let a = api
                .call(api.http.get(format!("{}/api/approvals/{id}", api.base)))
                .await?;
            show(&a);
        }
        ApprovalsCommand::Approve { id, comment } | ApprovalsCommand::Deny { id, comment } => {
            let (verb, done) = if matches!(args.command, ApprovalsCommand::Approve { .. }) {
                ("approve", "approved")
            } else {
                ("deny", "denied")
            };
            let a = api
                .call(
                    api.http
                        .post(format!("{}/api/approvals/{id}/{verb}", api.base))
                        .json(&json!({ "comment": comment })),
                )
                .await?;
            println!(
                "{done}: approval {id} is now {} ({}/{} approvals)",
                a["status"].as_str().unwrap_or("-"),
                a["approvals"],
                a["quorum"]
            );
        }
    }
    Ok(())
}

/// Follows the event stream, printing each change as a row, until interrupted.
async fn follow(api: &Api) -> anyhow::Result<()> {
    let mut resp = api
        .http
        .get(format!("{}/api/approvals/events", api.base))
        .bearer_auth(&api.token)
        .send()
        .await?;
    if !resp.status().is_success() {
        bail!("the event stream answered {}", resp.status());
    }
    let mut buf = String::new();
    while let Some(chunk) = resp.chunk().await? {
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: "))
                && let Ok(a) = serde_json::from_str::<Value>(data)
                && a.get("id").is_some()
            {
                println!("{}", row(&a));
            }
        }
    }
    Ok(())
}
