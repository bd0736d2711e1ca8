//! Webhook notifications when an approval is created, decided or expires: generic JSON
//! (signed with HMAC-SHA256), Slack incoming webhooks, and Microsoft Teams workflows
//! (an Adaptive Card). Sent from a queue by background tasks with retries and backoff; a
//! slow or failing receiver never blocks or loses an approval (the approval is in the store;
//! only the notification is late or, after the retries, dropped with an error logged).

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::{Semaphore, mpsc};

use super::model::Approval;
use crate::secret::Secret;

/// Notifications waiting to be sent; beyond this, new ones are dropped (logged).
const QUEUE: usize = 10_000;
/// Deliveries in flight at once.
const PARALLEL: usize = 32;
const ATTEMPTS: u32 = 5;
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Slack,
    Teams,
}

#[derive(Debug, Clone)]
pub struct Webhook {
    pub url: String,
    pub format: Format,
    /// Signs JSON payloads (`x-portcullis-signature`).
    pub secret: Option<Secret>,
}

#[derive(Clone)]
pub struct Notifier {
    tx: Option<mpsc::Sender<(String, Arc<Approval>)>>,
}

impl Notifier {
    pub fn none() -> Notifier {
        Notifier { tx: None }
    }

    pub fn start(
        hooks: Vec<Webhook>,
        client: reqwest::Client,
        console_url: Option<String>,
    ) -> Notifier {
        if hooks.is_empty() {
            return Notifier::none();
        }
        let (tx, mut rx) = mpsc::channel::<(String, Arc<Approval>)>(QUEUE);
        let hooks = Arc::new(hooks);
        let slots = Arc::new(Semaphore::new(PARALLEL));
        tokio::spawn(async move {
            while let Some((event, a)) = rx.recv().await {
                for i in 0..hooks.len() {
                    let Ok(permit) = slots.clone().acquire_owned().await else {
                        return;
                    };
                    let (hook, client, a) = (hooks[i].clone(), client.clone(), a.clone());
                    let payload = payload(hook.format, &event, &a, console_url.as_deref());
                    tokio::spawn(async move {
                        deliver(&client, &hook, &payload, &a.id).await;
                        drop(permit);
                    });
                }
            }
        });
        Notifier { tx: Some(tx) }
    }

    /// Queues a notification; never waits.
    pub fn send(&self, event: &str, a: Arc<Approval>) {
        if let Some(tx) = &self.tx
            && tx.try_send((event.to_owned(), a.clone())).is_err()
        {
            tracing::error!(approval = %a.id, event, "the notification queue is full; this notification is dropped");
        }
    }
}

async fn deliver(client: &reqwest::Client, hook: &Webhook, payload: &Value, id: &str) {
    let body = payload.to_string();
    let mut backoff = FIRST_BACKOFF;
    for attempt in 1..=ATTEMPTS {
        let mut req = client
            .post(&hook.url)
            .timeout(TIMEOUT)
            .header("content-type", "application/json")
            .body(body.clone());
        if let Some(secret) = &hook.secret {
            let timestamp = chrono::Utc::now().timestamp().to_string();
            req = req
                .header("x-portcullis-timestamp", &timestamp)
                .header("x-portcullis-signature", sign(secret, &timestamp, &body));
        }
        match req.send().await {
            Ok(r) if r.status().is_success() => return,
            Ok(r) => {
                tracing::warn!(approval = id, url = %redact_url(&hook.url), status = r.status().as_u16(), attempt, "a webhook refused a notification")
            }
            Err(e) => {
                tracing::warn!(approval = id, url = %redact_url(&hook.url), error = %e.without_url(), attempt, "a webhook could not be reached")
            }
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
    }
    tracing::error!(approval = id, url = %redact_url(&hook.url), "a notification was dropped after {ATTEMPTS} attempts");
}

/// Webhook URLs often carry their credential in the path (Slack, Teams): logs show only the
/// scheme and host.
fn redact_url(u: &str) -> String {
    url::Url::parse(u)
        .map(|u| format!("{}://{}/…", u.scheme(), u.host_str().unwrap_or("?")))
        .unwrap_or_else(|_| "(unparseable)".into())
}

/// `sha256=<hex>` of HMAC-SHA256(secret, "{timestamp}.{body}"): receivers recompute it and
/// reject stale timestamps, so a captured payload cannot be replayed later.
pub fn sign(secret: &Secret, timestamp: &str, body: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()).expect("any key length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!(
        "sha256={}",
        crate::audit::chain::hex(&mac.finalize().into_bytes())
    )
}

/// The approval's page in the console, where approvers decide it.
fn link(console_url: Option<&str>, id: &str) -> Option<String> {
    console_url.map(|c| format!("{}/console/approvals/{id}", c.trim_end_matches('/')))
}

/// The approval in the admin API, for tools.
fn api_link(console_url: Option<&str>, id: &str) -> Option<String> {
    console_url.map(|c| format!("{}/api/approvals/{id}", c.trim_end_matches('/')))
}

/// "delete virtual machine vm1 in demo-rg" (`DELETE`).
fn words(a: &Approval) -> String {
    format!(
        "{} ({})",
        crate::azure::words::in_words(&a.action, &a.scope),
        a.request.method
    )
}

fn headline(event: &str, a: &Approval) -> String {
    // The name with its kind and id: a copycat name cannot pass for another principal.
    let who = a.requester();
    match event {
        "created" => format!("{who} asks to {}", words(a)),
        "approved" => format!("Approved: {} by {who}", words(a)),
        "denied" => format!("Denied: {} by {who}", words(a)),
        "expired" => format!("Expired without a decision: {} by {who}", words(a)),
        other => format!("{other}: {} by {who}", words(a)),
    }
}

/// Slack's mrkdwn reads `<...>` as links and mentions: `&`, `<` and `>` are escaped
/// (<https://api.slack.com/reference/surfaces/formatting#escaping>).
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Adaptive Cards render a Markdown subset in TextBlocks and FactSets: the characters that
/// make links and emphasis are escaped with a backslash.
fn teams_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(
            c,
            '\\' | '[' | ']' | '(' | ')' | '*' | '_' | '~' | '`' | '#' | '<' | '>' | '!'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

pub fn payload(format: Format, event: &str, a: &Approval, console_url: Option<&str>) -> Value {
    let link = link(console_url, &a.id);
    let text = headline(event, a);
    let reason = a
        .reason
        .clone()
        .unwrap_or_else(|| "(no reason given)".into());
    // The risky settings, in a line; the console shows them all with the whole body.
    let flagged: Vec<String> = a
        .request
        .highlights
        .iter()
        .filter_map(|h| Some(format!("{} = {} ({})", h.path, h.value, h.risk.as_ref()?)))
        .collect();
    let risks = match flagged.len() {
        0..=5 => flagged.join("; "),
        n => format!(
            "{}; and {} more in the console",
            flagged[..5].join("; "),
            n - 5
        ),
    };
    match format {
        Format::Json => json!({
            "event": format!("approval.{event}"),
            "approval": {
                "id": a.id,
                "status": a.status,
                "principal": a.principal,
                "principal_name": a.principal_name,
                "principal_kind": a.principal_kind,
                "requester": a.requester(),
                "action": a.action,
                "scope": a.scope,
                "rule": a.rule,
                "reason": a.reason,
                "approvers": a.approvers,
                "approver_names": a.approvers_shown(),
                "quorum": a.quorum,
                "approvals": a.approvals(),
                "created": a.created,
                "expires": a.expires,
                "request": {"method": a.request.method, "path": a.request.path,
                    "risks": a.request.highlights.iter().filter(|h| h.risk.is_some()).collect::<Vec<_>>()},
            },
            "link": link,
            "api": api_link(console_url, &a.id),
            "summary": text,
        }),
        Format::Slack => {
            // The agent chose much of this text: escaped, so it cannot become a link.
            let e = slack_escape;
            let mut t = format!(
                "*{}*\nReason: {}\nApprovers: {}\nApproval `{}`",
                e(&text),
                e(&reason),
                e(&a.approvers_shown().join(", ")),
                a.id
            );
            if !risks.is_empty() {
                t.push_str(&format!("\nSettings to check: {}", e(&risks)));
            }
            if let Some(l) = &link {
                t.push_str(&format!(" <{l}|open>"));
            }
            json!({"text": t})
        }
        Format::Teams => {
            let mut card = json!({
                "type": "AdaptiveCard",
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "version": "1.4",
                "body": [
                    {"type": "TextBlock", "text": teams_escape(&text), "weight": "Bolder", "wrap": true},
                    {"type": "FactSet", "facts": [
                        {"title": "Action", "value": teams_escape(&a.action)},
                        {"title": "Scope", "value": teams_escape(&a.scope)},
                        {"title": "Approvers", "value": teams_escape(&a.approvers_shown().join(", "))},
                        {"title": "Reason", "value": teams_escape(&reason)},
                        {"title": "Settings to check", "value": if risks.is_empty() { "none flagged".to_owned() } else { teams_escape(&risks) }},
                        {"title": "Approval", "value": a.id},
                        {"title": "Expires", "value": a.expires},
                    ]},
                ],
            });
            if let Some(l) = &link {
                card["actions"] = json!([{"type": "Action.OpenUrl", "title": "Open", "url": l}]);
            }
            json!({
                "type": "message",
                "attachments": [{
                    "contentType": "application/vnd.microsoft.card.adaptive",
                    "content": card,
                }],
            })
        }
    }
}
