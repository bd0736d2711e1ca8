//! Names where people read: the requester and the approvers of an approval by name, kind and
//! id in the agent's refusal, the admin API, a webhook, the CLI tables and an ARM 403; names
//! from Graph for an app whose token carries ids only, and from the policy's aliases for
//! groups; a Graph outage that leaves ids with "(name unavailable)" and delays nothing past
//! its bound; and names an agent's owner chose to be hostile, cleaned everywhere.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::approvals::{
    CREATE, Delivery, account, admin_url, code, held_pending, receiver, within,
};
use super::{Env, Setup, leak, prepare};

/// The directory's name for the bulk group (not aliased in the test policy).
const BULK: &str = "bulk-group-001";

fn oid(env: &Env, principal: &str) -> String {
    env.sim
        .config()
        .principal(principal)
        .unwrap()
        .object_id
        .to_string()
}

fn group_id(name: &str) -> String {
    azure_sim::config::derived_id("group", name).to_string()
}

/// The test policy, plus a held network write whose approvers are the aliased group and a
/// group only the directory names.
fn rules() -> &'static str {
    leak(format!(
        r#"  rules:
    - name: agents-write-vms
      effect: allow
      principals: [group:ai-agents]
      actions: [Microsoft.Compute/virtualMachines/write]
      scopes: ["/subscriptions/*/resourceGroups/demo-rg"]
    - name: hold-network-writes
      effect: approve
      principals: [group:ai-agents]
      actions: [Microsoft.Network/virtualNetworks/write]
      scopes: ["/subscriptions/*/resourceGroups/demo-rg"]
      approval: {{approvers: [group:approvers, "group:{}"], quorum: 1, timeout: 10m, style: hold}}
"#,
        group_id(BULK)
    ))
}

async fn start_with_webhook(setup: Setup) -> (Env, tokio::sync::mpsc::UnboundedReceiver<Delivery>) {
    let (port, rx) = receiver(0).await;
    let extra = leak(format!(
        "approvals:\n  hold: 5s\n  notify:\n    - {{url: \"http://127.0.0.1:{port}/hook\", format: json}}\n    - {{url: \"http://127.0.0.1:{port}/slack\", format: slack}}\naudit:\n  readers: [\"group:{}\"]\n",
        group_id("approvers")
    ));
    let (sim, dir) = prepare(Setup { extra, ..setup }).await;
    let cfg = portcullis::config::load(&dir.join("portcullis.yaml")).unwrap();
    let gw = portcullis::cli::serve::start(cfg).await.unwrap();
    let http = super::client(gw.ca_file.as_ref().unwrap(), None);
    (Env { sim, gw, http, dir }, rx)
}

/// The first JSON and the first Slack delivery of an event (they arrive in either order).
async fn deliveries(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Delivery>) -> (Value, String) {
    let (mut json, mut slack) = (None, None);
    while json.is_none() || slack.is_none() {
        let d = within(10, "a webhook delivery", rx.recv()).await.unwrap();
        let v: Value = serde_json::from_str(&d.body).unwrap();
        match v["text"].as_str() {
            Some(t) => slack = slack.or(Some(t.to_owned())),
            None => json = json.or(Some(v)),
        }
    }
    (json.unwrap(), slack.unwrap())
}

async fn admin_get(env: &Env, who: &str, path: &str) -> Value {
    let r = env
        .http
        .get(admin_url(env, path))
        .bearer_auth(env.token(who))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{path}");
    r.json().await.unwrap()
}

async fn cli(args: Vec<String>) -> (bool, String) {
    within(
        30,
        "portcullis",
        tokio::task::spawn_blocking(move || {
            crate::outcome(
                crate::portcullis_cli()
                    .args(&args)
                    .env_remove("PORTCULLIS_ADMIN_URL")
                    .env_remove("PORTCULLIS_TOKEN")
                    .env_remove("PORTCULLIS_CA")
                    .env_remove("PORTCULLIS_STORE"),
            )
        }),
    )
    .await
    .unwrap()
}

fn approvals_cli(env: &Env, who: &str, cmd: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = vec!["approvals".into()];
    v.extend(cmd.iter().map(|s| s.to_string()));
    v.extend([
        "--admin-url".into(),
        format!("https://{}", env.gw.admin_addr),
        "--token".into(),
        env.token(who),
        "--ca-file".into(),
        env.gw.ca_file.as_ref().unwrap().display().to_string(),
    ]);
    v
}

fn vnet(env: &Env, name: &str) -> String {
    format!(
        "{}/providers/Microsoft.Network/virtualNetworks/{name}?api-version=2023-09-01",
        env.rg()
    )
}

fn vm(env: &Env, name: &str) -> String {
    format!(
        "{}/providers/Microsoft.Compute/virtualMachines/{name}?api-version=2024-07-01",
        env.rg()
    )
}

#[tokio::test]
async fn an_approval_names_its_requester_and_approvers_everywhere_a_person_reads() {
    let (env, mut rx) = start_with_webhook(Setup {
        rules: rules(),
        ..Default::default()
    })
    .await;
    let agent = oid(&env, "agent");
    let approvers = group_id("approvers");
    let bulk = group_id(BULK);
    let requester = format!("build-agent (app, {agent})");
    let approver_names = vec![
        format!("approvers (group, {approvers})"),
        format!("{BULK} (group, {bulk})"),
    ];

    // The agent's own refusal: the approvers by alias and by the directory's name.
    let (s, h, b) = within(
        20,
        "the held PUT",
        env.call(
            Some(&env.token("agent")),
            Method::PUT,
            &vnet(&env, "named-net"),
            Some(serde_json::json!({"location": "eastus"})),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert_eq!(code(&h), "ApprovalPending", "{b}");
    let message = b["error"]["message"].as_str().unwrap();
    for name in &approver_names {
        assert!(message.contains(name.as_str()), "{message}");
    }
    assert!(!message.contains("group:"), "{message}");
    let info = &b["error"]["additionalInfo"][0]["info"];
    assert_eq!(info["requester"], requester.as_str(), "{b}");
    assert_eq!(info["approverNames"], serde_json::json!(approver_names));
    assert_eq!(
        info["approvers"],
        serde_json::json!([format!("group:{approvers}"), format!("group:{bulk}")]),
        "the ids stay as they were"
    );
    let id = b["error"]["additionalInfo"][0]["info"]["approvalId"]
        .as_str()
        .unwrap()
        .to_owned();

    // The admin API: names beside the ids.
    let a = admin_get(&env, "alice", &format!("/api/approvals/{id}")).await;
    assert_eq!(a["principal"], agent.as_str(), "{a}");
    assert_eq!(a["principal_name"], "build-agent", "{a}");
    assert_eq!(a["principal_kind"], "app", "{a}");
    assert_eq!(a["requester"], requester.as_str(), "{a}");
    assert_eq!(
        a["approver_names"],
        serde_json::json!(approver_names),
        "{a}"
    );

    // The webhooks: the JSON payload's names, and Slack's headline.
    let (v, text) = deliveries(&mut rx).await;
    assert_eq!(v["approval"]["requester"], requester.as_str(), "{v}");
    assert_eq!(
        v["approval"]["approver_names"],
        serde_json::json!(approver_names)
    );
    assert!(
        v["summary"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{requester} asks to")),
        "{v}"
    );
    assert!(
        text.contains(&requester) && text.contains(&approver_names[1]),
        "{text}"
    );

    // The CLI: the list's requester column and the detail.
    let (ok, out) = cli(approvals_cli(&env, "alice", &["list"])).await;
    assert!(ok, "{out}");
    let line = out
        .lines()
        .find(|l| l.contains(&id))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains(&format!("build-agent (app) {}", &agent[..8])),
        "{line}"
    );
    let (ok, out) = cli(approvals_cli(&env, "alice", &["show", &id])).await;
    assert!(ok, "{out}");
    assert!(out.contains(&format!("requester    {requester}")), "{out}");
    assert!(out.contains(&approver_names.join(", ")), "{out}");

    // An ARM 403 names the client by name and kind, the object id beside it.
    let (s, _, b) = env
        .call(
            Some(&env.token("agent")),
            Method::DELETE,
            &vm(&env, "vm1"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    let message = b["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!(
            "The client 'build-agent (app)' with object id '{agent}'"
        )),
        "{message}"
    );

    // `sessions list` reads the store: the name recorded beside the id.
    let (s, _, _) = env
        .call(
            Some(&env.token("agent")),
            Method::GET,
            &vm(&env, "vm1"),
            None,
        )
        .await;
    assert!(s.is_success() || s == StatusCode::NOT_FOUND, "{s}");
    let records = env.audit_records().await;
    assert!(
        records
            .iter()
            .any(|r| r.principal_name.as_deref() == Some("build-agent (app)")),
        "a record names its principal"
    );
    let state = env.dir.join("state").display().to_string();
    let (ok, out) = cli(vec![
        "sessions".into(),
        "list".into(),
        "--state-dir".into(),
        state,
    ])
    .await;
    assert!(ok, "{out}");
    assert!(out.contains("PRINCIPAL"), "{out}");
    assert!(
        out.contains(&format!("build-agent (app) {}", &agent[..8])),
        "{out}"
    );
    // And the admin API's session list, for readers.
    let sessions = admin_get(&env, "alice", "/api/sessions").await;
    assert!(
        sessions["value"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["principal"] == agent.as_str() && s["principal_name"] == "build-agent (app)"),
        "{sessions}"
    );
}

#[tokio::test]
async fn a_graph_outage_leaves_ids_and_delays_nothing_past_its_bound() {
    let env = Env::with(Setup {
        extra: "approvals:\n  hold: 5s\n",
        ..Default::default()
    })
    .await;
    let agent = oid(&env, "agent");
    // Graph answers nothing for 30 s; everything else in the simulator is well.
    env.sim
        .set_faults(azure_sim::faults::Faults {
            path_prefix: Some("/v1.0/".into()),
            latency_ms: 30_000,
            ..Default::default()
        })
        .unwrap();

    let started = Instant::now();
    let id = held_pending(&env, &account(&env, "outage"), CREATE).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "held and answered within the lookup's bound: {:?}",
        started.elapsed()
    );
    let a = admin_get(&env, "alice", &format!("/api/approvals/{id}")).await;
    assert_eq!(a["principal"], agent.as_str());
    assert_eq!(
        a["requester"],
        format!("{agent} (app, name unavailable)").as_str(),
        "{a}"
    );
    // The approvers' names come from the policy, which needs no Graph.
    assert_eq!(
        a["approver_names"],
        serde_json::json!([format!("approvers (group, {})", group_id("approvers"))])
    );

    // A refusal is not held up either (Graph rests after the failure).
    let started = Instant::now();
    let (s, _, b) = env
        .call(
            Some(&env.token("agent")),
            Method::DELETE,
            &vm(&env, "vm1"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(
        b["error"]["message"].as_str().unwrap().contains(&format!(
            "The client 'app (name unavailable)' with object id '{agent}'"
        )),
        "{b}"
    );
    // Allowed requests pass as ever.
    let (s, _, b) = env
        .call(
            Some(&env.token("agent")),
            Method::GET,
            &vm(&env, "vm1"),
            None,
        )
        .await;
    assert!(s.is_success() || s == StatusCode::NOT_FOUND, "{s} {b}");
}

#[tokio::test]
async fn hostile_names_are_cleaned_and_never_stand_without_the_id() {
    // The agent's owner named its app registration to look like a person, approved, with
    // markup, a terminal escape, a new line, a right-to-left override and ten kilobytes.
    let hostile = format!(
        "Alice Example\u{202E}\x1b[2J<script>alert(1)</script>\napproved by security{}",
        "A".repeat(10_000)
    );
    let mut sim_config = azure_sim::SimConfig::default();
    for p in &mut sim_config.principals {
        if p.name == "agent" {
            p.display_name = hostile.clone();
        }
    }
    let (env, mut rx) = start_with_webhook(Setup {
        sim_config,
        ..Default::default()
    })
    .await;
    let agent = oid(&env, "agent");
    let id = held_pending(&env, &account(&env, "hostile"), CREATE).await;

    let a = admin_get(&env, "alice", &format!("/api/approvals/{id}")).await;
    let name = a["principal_name"].as_str().unwrap();
    assert!(name.starts_with("Alice Example[2J<script>"), "{name}");
    assert!(
        name.chars().count() <= 65,
        "capped: {} chars",
        name.chars().count()
    );
    for c in name.chars() {
        assert!(
            !c.is_control() && !('\u{202A}'..='\u{202E}').contains(&c),
            "{c:?} in {name:?}"
        );
    }
    let requester = a["requester"].as_str().unwrap();
    assert!(
        requester.ends_with(&format!("(app, {agent})")),
        "the id beside the name: {requester}"
    );

    // Slack: no markup, no link, the id beside the name.
    let (_, text) = deliveries(&mut rx).await;
    assert!(
        !text.contains("<script>") && text.contains("&lt;script&gt;"),
        "{text}"
    );
    assert!(text.contains(&format!("(app, {agent})")), "{text}");
    assert!(
        !text.contains('\u{202E}') && !text.contains('\x1b'),
        "{text}"
    );

    // The CLI's table: nothing that moves a terminal's cursor, and the id.
    let (ok, out) = cli(approvals_cli(&env, "alice", &["list"])).await;
    assert!(ok, "{out}");
    assert!(
        !out.contains('\x1b') && !out.contains('\u{202E}'),
        "{out:?}"
    );
    let line = out.lines().find(|l| l.contains(&id)).unwrap();
    assert!(line.contains(&agent[..8]), "{line}");
}

#[tokio::test]
async fn the_console_shows_names_escaped_and_with_their_ids() {
    let mut sim_config = azure_sim::SimConfig::default();
    for p in &mut sim_config.principals {
        if p.name == "agent" {
            p.display_name = "<b>Alice Example</b>\u{202E}\u{200B}".into();
        }
    }
    let env = Env::with_admin_port(|port| Setup {
        sim_config: sim_config.clone(),
        console: true,
        admin: Some(format!("127.0.0.1:{port}")),
        extra: leak(format!(
            "approvals:\n  hold: 120s\n  console_url: https://127.0.0.1:{port}\naudit:\n  readers: [\"group:{}\"]\n",
            group_id("approvers")
        )),
        ..Default::default()
    })
    .await;
    let agent = oid(&env, "agent");
    let id = held_pending(&env, &account(&env, "consolenames"), CREATE).await;

    let http = super::console::browserless(&env);
    let (session, _, _) = super::console::sign_in(&env, &http, "alice").await;
    let (status, html) =
        super::console::page(&env, &http, &session, &format!("/console/approvals/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!html.contains("<b>Alice"), "markup is escaped");
    assert!(
        html.contains("&#60;b&#62;Alice Example&#60;/b&#62; (app)"),
        "{html}"
    );
    assert!(!html.contains('\u{202E}') && !html.contains('\u{200B}'));
    assert!(html.contains(&agent), "the id beside the name");
    assert!(
        html.contains(&format!("approvers (group, {})", group_id("approvers"))),
        "{html}"
    );

    // The sessions list: the name recorded (or found) beside the whole id.
    let (status, list) = super::console::page(&env, &http, &session, "/console/sessions").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        list.contains(&format!(
            "&#60;b&#62;Alice Example&#60;/b&#62; (app) {agent}"
        )),
        "{list}"
    );
}
