//! The approver console (issue 12), in a real browser: headless Chromium driven by
//! Playwright (`tests/browser/console.mjs`) signs in through the simulator's sign-in page,
//! while this side plays the agent and checks what reached Azure. The sign-in protocol's
//! refusals (state, code replay) and the pages' security headers are checked over HTTP here.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::approvals::{
    CREATE, Delivery, account, admin_url, code, put_request, puts_to, receiver, vote, wait_pending,
    within,
};
use crate::{Env, Setup, leak, send};

/// What the console tests run with: the demo's own policy and principals (the screenshots in
/// docs/images are of these), held requests wait 120 s (the browser decides well within),
/// alice and bob approve, carol reads the audit trail but approves nothing, and
/// notifications go to `hook` with links to the console.
pub(crate) async fn console_env(hook: Option<u16>) -> Env {
    let carol = azure_sim::config::derived_id("principal", "carol");
    let notify = hook.map_or(String::new(), |p| {
        format!("  notify:\n    - {{url: \"http://127.0.0.1:{p}/hook\", format: json}}\n")
    });
    Env::with_admin_port(|port| Setup {
        console: true,
        demo_policy: true,
        rules: "",
        admin: Some(format!("127.0.0.1:{port}")),
        extra: leak(format!(
            "approvals:\n  hold: 120s\n  console_url: https://127.0.0.1:{port}\n{notify}audit:\n  readers: [group:a56b8840-25ef-5cbf-a75b-1178c095c637, \"user:{carol}\"]\n"
        )),
        ..Default::default()
    })
    .await
}

fn console_url(env: &Env) -> String {
    format!("https://{}", env.gw.admin_addr)
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// One browser scenario, running; its `WAIT`s are answered with [`Browser::answer`].
struct Browser {
    child: Child,
    stdin: ChildStdin,
    lines: std_mpsc::Receiver<String>,
    said: Vec<String>,
}

impl Browser {
    fn start(env: &Env, scenario: &str) -> Browser {
        let script = workspace().join("tests/browser/console.mjs");
        assert!(
            workspace()
                .join("tests/browser/node_modules/playwright-core")
                .exists(),
            "playwright-core is not installed: run ./scripts/test (it runs npm ci in tests/browser)"
        );
        let chromium =
            std::env::var("PORTCULLIS_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        assert!(
            std::path::Path::new(&chromium).exists(),
            "no Chromium at {chromium}: install Debian's chromium (./scripts/test does, as root) or set PORTCULLIS_CHROMIUM"
        );
        let mut child = Command::new("node")
            .arg(&script)
            .arg(scenario)
            .env("CONSOLE_URL", console_url(env))
            .env("CHROMIUM", chromium)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node runs");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std_mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Browser {
            child,
            stdin,
            lines,
            said: Vec::new(),
        }
    }

    /// The next line that starts with `prefix` (`WAIT held`, `DONE approved`); its rest.
    async fn expect(&mut self, prefix: &str) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = tokio::task::block_in_place(|| self.lines.recv_timeout(left));
            let line = match line {
                Ok(l) => l,
                Err(_) => {
                    let status = self.child.try_wait().ok().flatten();
                    panic!(
                        "the browser never said '{prefix}' (exit: {status:?}); it said:\n{}",
                        self.said.join("\n")
                    );
                }
            };
            self.said.push(line.clone());
            if let Some(rest) = line.strip_prefix(prefix) {
                let rest = rest.trim();
                return if rest.is_empty() {
                    Value::Null
                } else {
                    serde_json::from_str(rest).unwrap_or(Value::String(rest.to_owned()))
                };
            }
        }
    }

    fn answer(&mut self, v: Value) {
        writeln!(self.stdin, "{v}").expect("the browser script reads");
        self.stdin.flush().unwrap();
    }

    /// Waits for the scenario to end; it must succeed.
    async fn finish(mut self) {
        let status = tokio::task::block_in_place(|| {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            loop {
                if let Some(s) = self.child.try_wait().unwrap() {
                    return Some(s);
                }
                if std::time::Instant::now() > deadline {
                    let _ = self.child.kill();
                    return None;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        while let Ok(l) = self.lines.try_recv() {
            self.said.push(l);
        }
        assert!(
            status.is_some_and(|s| s.success()),
            "the browser scenario failed ({status:?}); it said:\n{}",
            self.said.join("\n")
        );
    }
}

/// What the explain form is asked: the agent deleting vm1 (the demo's policy denies it).
fn vm1_delete(env: &Env) -> String {
    format!(
        "DELETE {}/providers/Microsoft.Compute/virtualMachines/vm1?api-version=2024-07-01",
        env.rg()
    )
}

fn words(name: &str) -> String {
    format!("create or update storage account {name} in demo-rg")
}

/// What a hostile agent gives as its reason: markup, quotes, an attribute breakout.
const HOSTILE: &str = "<img src=x onerror=alert(1)>\"' onmouseover=alert(2) <b>approve me</b>";

/// The agent's request to create storage account `name`, giving `reason` (or the usual one).
fn asks(env: &Env, name: &str, reason: Option<&str>) -> reqwest::RequestBuilder {
    match reason {
        None => put_request(env, &account(env, name), CREATE, None, None),
        Some(r) => env
            .http
            .put(env.url(&account(env, name)))
            .bearer_auth(env.token("agent"))
            .header("content-type", "application/json")
            .header("x-portcullis-reason", r)
            .body(CREATE),
    }
}

/// The agent asks to create `name` without waiting (the demo's policy presents a storage
/// create as a long-running operation: 202); the approval's id.
async fn held(env: &Env, name: &str, reason: Option<&str>) -> String {
    let req = asks(env, name, reason).header("x-portcullis-wait", "0");
    let (s, h, b) = within(20, "the agent's PUT", send(req)).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let id = h["x-portcullis-approval"].to_str().unwrap().to_owned();
    wait_pending(env, name).await;
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approver_on_a_phone_sees_a_held_request_live_approves_it_and_the_agent_completes() {
    let env = console_env(None).await;
    let name = "consoleapproved";
    let path = account(&env, name);
    let mut browser = Browser::start(&env, "approve");
    let signed_in = browser.expect("DONE signed-in").await;
    assert_eq!(signed_in["user"], "alice", "{signed_in}");
    browser.expect("WAIT held").await;

    let since = env.sim.last_call_seq();
    let reason = "Nightly build needs a storage account for test artifacts (ticket 4711)";
    let agent = tokio::spawn(send(asks(&env, name, Some(reason))));
    wait_pending(&env, name).await;
    let scope = path.split('?').next().unwrap().to_owned();
    browser.answer(json!({ "words": words(name), "reason": reason, "scope": scope }));

    let first = browser.expect("DONE first-screen").await;
    assert!(
        first["approveBottom"].as_f64().unwrap() <= first["height"].as_f64().unwrap(),
        "Approve is within the first screen of the first card at 390 px: {first}"
    );
    let approved = browser.expect("DONE approved").await;
    let confirmation = approved["confirmation"].as_str().unwrap();
    assert!(
        confirmation.contains(&format!("You approved {}", words(name)))
            && confirmation.contains("1 of 1 approvals")
            && confirmation.contains("goes to Azure now, once"),
        "{confirmation}"
    );
    let (status, headers, body) = within(30, "the agent's held PUT", agent).await.unwrap();
    // Azure's real answer: the create runs as a long-running operation.
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert!(headers.contains_key("azure-asyncoperation") || headers.contains_key("location"));
    let puts = puts_to(&env, since, name);
    assert_eq!(puts.len(), 1, "forwarded once: {puts:?}");
    // Another request arrives: the live list is fetched again, and the confirmation stays.
    browser.expect("WAIT another").await;
    held(&env, "consolenext", None).await;
    browser.answer(json!({ "words": words("consolenext") }));
    let kept = browser.expect("DONE kept").await;
    assert_eq!(kept["reloads"], 0, "{kept}");
    browser.expect("WAIT forwarded").await;
    browser.answer(json!({}));
    browser.finish().await;

    // The audit trail names the approver and the comment the browser typed.
    let records = env.audit_records().await;
    let approval = records
        .iter()
        .filter(|r| r.phase == portcullis::audit::record::Phase::Approval)
        .map(|r| r.reason.clone().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(approval.contains("ok: ticket 4711"), "{approval}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approver_follows_the_notification_link_and_denies_with_a_comment() {
    let (hook, mut deliveries) = receiver(0).await;
    let env = console_env(Some(hook)).await;
    let name = "consoledenied";
    let path = account(&env, name);
    let since = env.sim.last_call_seq();
    let agent = tokio::spawn(send(put_request(&env, &path, CREATE, None, None)));
    let created: Delivery = within(10, "the notification", deliveries.recv())
        .await
        .unwrap();
    let payload: Value = serde_json::from_str(&created.body).unwrap();
    assert_eq!(payload["event"], "approval.created", "{payload}");
    let id = payload["approval"]["id"].as_str().unwrap();
    let link = payload["link"].as_str().unwrap();
    assert_eq!(
        link,
        format!("{}/console/approvals/{id}", console_url(&env)),
        "the link is the approval's page"
    );
    assert!(
        payload["summary"].as_str().unwrap().contains(&words(name)),
        "{payload}"
    );

    let mut browser = Browser::start(&env, "deny");
    browser.expect("WAIT link").await;
    browser.answer(json!({ "link": link, "words": words(name) }));
    let signed_in = browser.expect("DONE signed-in").await;
    assert!(
        signed_in["url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/console/approvals/{id}")),
        "back on the linked page after signing in: {signed_in}"
    );
    let denied = browser.expect("DONE denied").await;
    let confirmation = denied["confirmation"].as_str().unwrap();
    assert!(
        confirmation.contains(&format!("You denied {}", words(name)))
            && confirmation.contains("refused: nothing is sent to Azure"),
        "{confirmation}"
    );
    browser.finish().await;

    let (status, headers, body) = within(30, "the agent's held PUT", agent).await.unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(code(&headers), "ApprovalDenied", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not in prod"),
        "the approver's comment reaches the agent: {body}"
    );
    assert!(
        puts_to(&env, since, name).is_empty(),
        "nothing reached Azure"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_who_is_not_an_approver_sees_no_decision_buttons_and_agent_markup_as_text() {
    let env = console_env(None).await;
    let name = "consoleviewed";
    // A hostile agent: its reason is markup, and the browser must show it as text.
    held(&env, name, Some(HOSTILE)).await;

    let mut browser = Browser::start(&env, "nonapprover");
    browser.expect("WAIT held").await;
    browser.answer(json!({ "words": words(name), "reason": HOSTILE }));
    let seen = browser.expect("DONE no-buttons").await;
    assert_eq!(seen["buttons"], 0);
    assert_eq!(seen["why"], HOSTILE);
    browser.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vote_on_a_stale_page_says_it_was_not_counted() {
    let env = console_env(None).await;
    let name = "consolestale";
    let id = held(&env, name, None).await;
    let mut browser = Browser::start(&env, "stale");
    browser.expect("WAIT held").await;
    browser.answer(json!({ "id": id, "words": words(name) }));
    browser.expect("WAIT denied-elsewhere").await;
    let (s, _, b) = vote(&env, "bob", &id, "deny", "no").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    browser.answer(json!({}));
    let said = browser.expect("DONE not-counted").await;
    let text = said["text"].as_str().unwrap();
    assert!(
        text.contains("Not counted: Already decided")
            && text.contains(&format!("approval {id} is denied, not pending")),
        "{text}"
    );
    browser.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_posts_without_the_csrf_token_or_from_another_origin_are_refused() {
    let env = console_env(None).await;
    let name = "consoleforged";
    let id = held(&env, name, None).await;

    let mut browser = Browser::start(&env, "csrf");
    browser.expect("WAIT held").await;
    browser.answer(json!({ "id": id, "words": words(name) }));
    let forged = browser.expect("DONE forged").await;
    assert_eq!(forged["noToken"], 403, "{forged}");
    assert_eq!(forged["elsewhere"], 403, "{forged}");
    // From another site the browser itself withholds the SameSite=Lax cookie: signed out.
    assert_eq!(forged["crossSite"], 401, "{forged}");
    // Still pending: none of them voted.
    let pending = wait_pending(&env, name).await;
    assert_eq!(pending["id"], id.as_str());
    assert_eq!(pending["votes"], json!([]), "{pending}");
    browser.answer(json!({}));
    browser.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reviewer_filters_sessions_and_replays_the_agents_step_by_step() {
    let env = console_env(None).await;
    let agent = azure_sim::config::derived_id("principal", "agent");
    // The agent lists the resource group, then tries to delete a VM (policy refuses): one
    // token, one session.
    let token = env.token("agent");
    let (s, _, b) = env
        .call(
            Some(&token),
            reqwest::Method::GET,
            &format!("{}/resources?api-version=2021-04-01", env.rg()),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let vm = format!(
        "{}/providers/Microsoft.Compute/virtualMachines/vm1?api-version=2024-07-01",
        env.rg()
    );
    let (s, _, b) = env
        .call(Some(&token), reqwest::Method::DELETE, &vm, None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");

    let mut browser = Browser::start(&env, "replay");
    browser.expect("WAIT session").await;
    browser.answer(json!({ "principal": agent.to_string() }));
    let replayed = browser.expect("DONE replayed").await;
    assert!(replayed["steps"].as_u64().unwrap() >= 2, "{replayed}");
    assert!(
        replayed["text"]
            .as_str()
            .unwrap()
            .contains("baseline-no-deletes"),
        "the refusal names the rule: {replayed}"
    );
    browser.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_page_explains_a_decision() {
    let env = console_env(None).await;
    let mut browser = Browser::start(&env, "policy");
    browser.expect("WAIT ready").await;
    let vm = vm1_delete(&env);
    browser.answer(json!({ "request": vm }));
    let explained = browser.expect("DONE explained").await;
    let text = explained["text"].as_str().unwrap();
    assert!(text.to_ascii_lowercase().contains("deny"), "{text}");
    assert!(text.contains("baseline-no-deletes"), "{text}");
    assert!(
        text.contains("delete virtual machine vm1 in demo-rg"),
        "{text}"
    );
    browser.finish().await;
}

// ---- over HTTP: the sign-in protocol and the pages' headers --------------------------------

/// A client trusting both the gateway's and the simulator's CAs, following no redirects.
pub(crate) fn browserless(env: &Env) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .redirect(reqwest::redirect::Policy::none());
    for ca in [env.gw.ca_file.clone().unwrap(), env.dir.join("sim/ca.pem")] {
        let pem = std::fs::read(ca).unwrap();
        b = b.add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap());
    }
    b.build().unwrap()
}

fn location(r: &reqwest::Response) -> String {
    r.headers()["location"].to_str().unwrap().to_owned()
}

/// `name=value` of a `Set-Cookie` for `name`, and the whole header.
fn set_cookie(r: &reqwest::Response, name: &str) -> (String, String) {
    let h = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} cookie in {:?}", r.headers()));
    (h.split(';').next().unwrap().to_owned(), h)
}

/// Signs `user` in without a browser; returns the session cookie and the sign-in's pieces.
pub(crate) async fn sign_in(
    env: &Env,
    http: &reqwest::Client,
    user: &str,
) -> (String, String, String) {
    let start = http
        .get(format!(
            "{}/console/signin?next=/console/approvals",
            console_url(env)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), StatusCode::SEE_OTHER);
    let authorize = location(&start);
    let (signin, _) = set_cookie(&start, "__Host-portcullis-signin");
    let picked = http
        .post(&authorize)
        .form(&[("user", user)])
        .send()
        .await
        .unwrap();
    assert_eq!(
        picked.status(),
        StatusCode::FOUND,
        "{:?}",
        picked.text().await
    );
    let callback = location(&picked);
    let done = http
        .get(&callback)
        .header("cookie", &signin)
        .send()
        .await
        .unwrap();
    assert_eq!(
        done.status(),
        StatusCode::SEE_OTHER,
        "{:?}",
        done.text().await
    );
    let (session, attributes) = set_cookie(&done, "__Host-portcullis-console");
    for attr in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(attributes.contains(attr), "{attributes}");
    }
    assert!(!attributes.contains("Domain"), "host-only: {attributes}");
    (session, signin, callback)
}

#[tokio::test]
async fn sign_in_uses_pkce_and_a_host_only_secure_session_cookie() {
    let env = console_env(None).await;
    let http = browserless(&env);
    // Not signed in: sent to sign in, and back to the page asked for.
    let r = http
        .get(format!(
            "{}/console/sessions?decision=deny",
            console_url(&env)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        location(&r),
        "/console/signin?next=%2Fconsole%2Fsessions%3Fdecision%3Ddeny"
    );
    let start = http
        .get(format!("{}/console/signin", console_url(&env)))
        .send()
        .await
        .unwrap();
    let to = url::Url::parse(&location(&start)).unwrap();
    let q: std::collections::HashMap<_, _> = to.query_pairs().into_owned().collect();
    assert!(to.path().ends_with("/oauth2/v2.0/authorize"), "{to}");
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["code_challenge"].len(), 43, "a SHA-256, base64url");
    assert!(q["state"].len() >= 43 && q["nonce"].len() >= 43, "{q:?}");
    assert_eq!(
        q["redirect_uri"],
        format!("{}/console/callback", console_url(&env))
    );
    assert!(q["scope"].contains("openid"), "{q:?}");
    let (_, cookie) = set_cookie(&start, "__Host-portcullis-signin");
    for attr in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    assert!(!cookie.contains("Domain"), "host-only: {cookie}");

    let (session, _, _) = sign_in(&env, &http, "alice").await;
    let page = http
        .get(format!("{}/console/approvals", console_url(&env)))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let h = page.headers().clone();
    let csp = h["content-security-policy"].to_str().unwrap();
    for part in [
        "default-src 'none'",
        "script-src 'self'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ] {
        assert!(csp.contains(part), "{csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["cache-control"], "no-store");
    let html = page.text().await.unwrap();
    assert!(html.contains("Waiting for a decision"), "{html}");
    assert!(!html.contains("<script>"), "no inline scripts");
    // The store keeps the session's hash, not the cookie.
    let id = session.split_once('=').unwrap().1;
    let stored = portcullis::audit::store::Store::open(&env.dir.join("state/audit.db"))
        .await
        .unwrap();
    let kept = portcullis::console::session::find(&stored, id, &portcullis::audit_time())
        .await
        .unwrap()
        .expect("the session is stored");
    // It ends with the access token that proved who signed in (the simulator's tokens live
    // an hour), not after the configured 8 h.
    let ends = chrono::DateTime::parse_from_rfc3339(&kept.expires).unwrap();
    let left = ends.signed_duration_since(chrono::Utc::now()).num_seconds();
    assert!((0..=3700).contains(&left), "{left}");

    // Signing out ends the session everywhere.
    let page = http
        .get(format!("{}/console/approvals", console_url(&env)))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    let html = page.text().await.unwrap();
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let out = http
        .post(format!("{}/console/signout", console_url(&env)))
        .header("cookie", &session)
        .header("origin", console_url(&env))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    let (cleared, attributes) = set_cookie(&out, "__Host-portcullis-console");
    assert_eq!(cleared, "__Host-portcullis-console=");
    assert!(attributes.contains("Max-Age=0"), "{attributes}");
    let after = http
        .get(format!("{}/console/approvals", console_url(&env)))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), StatusCode::SEE_OTHER, "signed out");
}

#[tokio::test]
async fn a_callback_from_another_sign_in_or_a_replayed_code_is_refused() {
    let env = console_env(None).await;
    let http = browserless(&env);
    let (_, signin, callback) = sign_in(&env, &http, "alice").await;
    // The code again: single use at the identity provider.
    let again = http
        .get(&callback)
        .header("cookie", &signin)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::UNAUTHORIZED);
    assert!(again.text().await.unwrap().contains("already redeemed"));
    // Another browser's sign-in cookie: the state does not match.
    let other = http
        .get(format!("{}/console/signin", console_url(&env)))
        .send()
        .await
        .unwrap();
    let (other_cookie, _) = set_cookie(&other, "__Host-portcullis-signin");
    let r = http
        .get(&callback)
        .header("cookie", &other_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.headers().get("set-cookie").is_none(), "no session");
    // No sign-in cookie at all.
    let r = http.get(&callback).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // The admin API is unchanged: bearer tokens, not cookies.
    let r = http
        .get(admin_url(&env, "/api/approvals"))
        .header("cookie", &signin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_passes_wcag_checks_at_phone_and_desktop_widths() {
    let env = console_env(None).await;
    let name = "consoleaccessible";
    held(&env, name, None).await;
    let mut browser = Browser::start(&env, "accessibility");
    browser.expect("WAIT held").await;
    let vm = vm1_delete(&env);
    browser.answer(json!({ "words": words(name), "request": vm }));
    let audited = browser.expect("DONE audited").await;
    assert_eq!(audited["pages"], 11, "{audited}");
    assert_eq!(
        audited["violations"],
        json!({}),
        "axe-core found WCAG 2.1 A/AA violations"
    );
    browser.finish().await;
}

/// The console page `path` as the holder of `session` sees it.
pub(crate) async fn page(
    env: &Env,
    http: &reqwest::Client,
    session: &str,
    path: &str,
) -> (StatusCode, String) {
    let r = http
        .get(format!("{}{path}", console_url(env)))
        .header("cookie", session)
        .send()
        .await
        .unwrap();
    (r.status(), r.text().await.unwrap())
}

fn csrf_of(html: &str) -> String {
    html.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a page with a form")
        .to_owned()
}

#[tokio::test]
async fn the_requester_never_sees_decision_buttons_nor_can_post_a_vote() {
    // alice asks through her own (delegated) token for something approvers must approve;
    // she is an approver herself.
    let env = Env::with(Setup {
        console: true,
        rules: r#"
  rules:
    - name: people-ask-for-storage
      effect: approve
      principals: [group:approvers]
      actions: [Microsoft.Storage/storageAccounts/write]
      scopes: ["/subscriptions/*/resourceGroups/demo-rg"]
      approval: {approvers: [group:approvers], quorum: 1, timeout: 10m, style: hold}
"#,
        extra: "approvals:\n  hold: 120s\n",
        ..Default::default()
    })
    .await;
    let name = "aliceasks";
    let (s, h, b) = send(
        env.http
            .put(env.url(&account(&env, name)))
            .bearer_auth(env.token("alice"))
            .header("content-type", "application/json")
            .header("x-portcullis-wait", "0")
            .body(CREATE),
    )
    .await;
    assert_eq!(code(&h), "ApprovalPending", "{s} {b}");
    let id = h["x-portcullis-approval"].to_str().unwrap().to_owned();

    let http = browserless(&env);
    let (session, _, _) = sign_in(&env, &http, "alice").await;
    let (status, html) = page(&env, &http, &session, &format!("/console/approvals/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains(name), "she sees her own request");
    assert!(
        !html.contains("class=\"approve\""),
        "no approve button for the requester"
    );
    assert!(
        html.contains("the requester cannot approve its own request"),
        "{html}"
    );
    // Posting the form anyway, with a valid token and origin, is refused; nothing voted.
    let r = http
        .post(format!(
            "{}/console/approvals/{id}/approve",
            console_url(&env)
        ))
        .header("cookie", &session)
        .header("origin", console_url(&env))
        .form(&[("csrf", csrf_of(&html).as_str()), ("comment", "mine")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let (_, html) = page(&env, &http, &session, &format!("/console/approvals/{id}")).await;
    assert!(html.contains("0 of 1 approval(s)"), "{html}");
    // bob may.
    let (bob, _, _) = sign_in(&env, &http, "bob").await;
    let (_, html) = page(&env, &http, &bob, &format!("/console/approvals/{id}")).await;
    assert!(
        html.contains("class=\"approve\""),
        "an approver who is not the requester sees it"
    );
}

#[tokio::test]
async fn agent_text_is_shown_as_text_and_agent_named_sessions_link_safely() {
    let env = console_env(None).await;
    let name = "consolemarkup";
    // The agent names its session with characters that mean something in a URL, and says
    // why in markup.
    let session_id = "victim#x/../y?z";
    let (s, h, b) = send(
        env.http
            .put(env.url(&account(&env, name)))
            .bearer_auth(env.token("agent"))
            .header("content-type", "application/json")
            .header("x-portcullis-wait", "0")
            .header("x-portcullis-session", session_id)
            .header("x-portcullis-reason", "<img src=x onerror=alert(1)>\"'")
            .body(CREATE),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    assert!(h.contains_key("x-portcullis-approval"), "{h:?}");

    let http = browserless(&env);
    let (session, _, _) = sign_in(&env, &http, "alice").await;
    let (_, html) = page(&env, &http, &session, "/console/approvals").await;
    assert!(!html.contains("<img src=x"), "markup is escaped");
    assert!(
        html.contains("&#60;img src=x onerror=alert(1)&#62;"),
        "{html}"
    );
    // The session is the agent's own: its name, then its object id.
    let agent = azure_sim::config::derived_id("principal", "agent");
    let href = format!("/console/sessions/victim%23x%2F..%2Fy%3Fz%40{agent}");
    assert!(
        html.contains(&format!("href=\"{href}\"")),
        "the session link is encoded"
    );
    let (_, list) = page(&env, &http, &session, "/console/sessions").await;
    assert!(list.contains(&format!("href=\"{href}\"")), "{list}");
    let (status, timeline) = page(&env, &http, &session, &href).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        timeline.contains("victim#x/../y?z"),
        "the agent's own session opens"
    );
    assert!(timeline.contains(name));
    // Odd filter values are refused, not a crash.
    let (status, html) = page(
        &env,
        &http,
        &session,
        "/console/sessions?since=9000000000000",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{html}");
    let (status, _) = page(&env, &http, &session, "/console/sessions/%zz").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_vote_without_javascript_is_confirmed_on_the_page_it_leads_to_until_dismissed() {
    let env = console_env(None).await;
    let name = "consolenojs";
    let id = held(&env, name, Some(HOSTILE)).await;
    let http = browserless(&env);
    let (alice, _, _) = sign_in(&env, &http, "alice").await;
    let href = format!("/console/approvals/{id}");
    let (_, html) = page(&env, &http, &alice, &href).await;
    assert!(!html.contains("You approved"), "no vote yet: {html}");
    // The form as a browser without JavaScript posts it: no hx-request header.
    let r = http
        .post(format!("{}{href}/approve", console_url(&env)))
        .header("cookie", &alice)
        .header("origin", console_url(&env))
        .form(&[("csrf", csrf_of(&html).as_str()), ("comment", "fine")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let to = location(&r);
    assert_eq!(to, format!("{href}?voted=1#confirmations"));
    let (status, html) = page(&env, &http, &alice, to.split('#').next().unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    let said = html
        .split("class=\"confirmation confirmation-approved\"")
        .nth(1)
        .expect("a confirmation")
        .split("</div>")
        .next()
        .unwrap();
    assert!(
        said.contains(&format!(
            "<b>You approved</b> <a href=\"{href}\">{}</a>",
            words(name)
        )),
        "{said}"
    );
    // The agent stopped waiting (it was answered 202): its next poll takes the approval.
    assert!(
        said.contains("1 of 1 approvals; the held request goes to Azure now, once (if the agent has stopped waiting, its next identical request or status poll does"),
        "{said}"
    );
    // Dismissing it is a plain link back to the page without it.
    assert!(
        said.contains(&format!("<form method=\"get\" action=\"{href}\">")),
        "{said}"
    );
    let (_, again) = page(&env, &http, &alice, &href).await;
    assert!(!again.contains("You approved"), "dismissed");
    // The agent's markup is text everywhere on the page, the confirmation included.
    for raw in ["<img src=x", "<b>approve me", "\" onmouseover"] {
        assert!(!html.contains(raw), "{raw} unescaped");
    }
    assert!(html.contains("&#60;b&#62;approve me&#60;/b&#62;"), "{html}");
    // What a confirmation says comes from the approval, not the address: bob did not vote.
    let (bob, _, _) = sign_in(&env, &http, "bob").await;
    let (_, html) = page(&env, &http, &bob, &format!("{href}?voted=1")).await;
    assert!(!html.contains("You approved"), "{html}");
}
