//! Hardening, round two (issue 19), each test written as the attack a hostile agent made with
//! the documented interfaces only: what it stores in Azure comes back in answers, and what
//! the gateway signs, rewrites or shows an approver is attack surface.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{API, Env};

const RG_API: &str = "api-version=2022-09-01";

/// The path and query of `url` (the gateway's or the simulator's), on the gateway.
fn on_gateway(env: &Env, url: &str) -> String {
    let u = url::Url::parse(url).unwrap();
    let q = u.query().map(|q| format!("?{q}")).unwrap_or_default();
    env.url(&format!("{}{q}", u.path()))
}

/// An agent that may write VMs stores a `nextLink` in one (a tag: ARM keeps it), reads the
/// VM back, and tries the link it got for writes and reads outside its scope. Before the
/// fix every `nextLink` at any depth came back signed, and the signature turned the default
/// deny into an allow for any method: the agent created a resource group it may not touch.
#[tokio::test]
async fn a_next_link_stored_in_a_resource_is_never_signed() {
    let env = Env::start().await;
    let sub = env.sim.subscription_id();
    let target = format!("/subscriptions/{sub}/resourceGroups/evil-rg?{RG_API}");
    let vm = format!(
        "{}/providers/Microsoft.Compute/virtualMachines/vm-links?{API}",
        env.rg()
    );
    let stored = format!("{}{target}", env.sim.url());
    let (s, _, b) = env
        .agent(
            Method::PUT,
            &vm,
            Some(json!({"location": "eastus", "tags": {"nextLink": stored},
                "properties": {"hardwareProfile": {"vmSize": "Standard_B1s"}, "nextLink": stored}})),
        )
        .await;
    assert!(s.is_success(), "{s} {b}");
    let (s, _, got) = env.agent(Method::GET, &vm, None).await;
    assert_eq!(s, StatusCode::OK, "{got}");
    for link in [&got["tags"]["nextLink"], &got["properties"]["nextLink"]] {
        let link = link.as_str().unwrap();
        assert_eq!(link, stored, "data is not rewritten, nor signed");
        let since = env.sim.last_call_seq();
        // The link as it came, then moved onto the gateway: policy alone judges it.
        for url in [
            on_gateway(&env, link),
            link.replace(env.sim.url(), &env.url("")),
        ] {
            let (s, _, b) = env
                .agent(Method::PUT, &url, Some(json!({"location": "eastus"})))
                .await;
            assert_eq!(s, StatusCode::FORBIDDEN, "{url}: {b}");
            assert_eq!(b["error"]["code"], "AuthorizationFailed", "{b}");
            let (s, _, b) = env.agent(Method::GET, &url, None).await;
            assert_eq!(s, StatusCode::FORBIDDEN, "{url}: {b}");
        }
        assert!(env.arm_calls(since).is_empty(), "nothing reached Azure");
    }
}

/// A poll URL Azure handed the agent is good for GET of that URL only: the same binding
/// with another method, on another URL, or for another principal is judged by policy alone.
#[tokio::test]
async fn a_poll_binding_is_good_for_get_of_its_own_url_only() {
    let env = Env::start().await;
    let vm = format!(
        "{}/providers/Microsoft.Compute/virtualMachines/vm-poll?{API}",
        env.rg()
    );
    let (s, h, b) = env
        .agent(
            Method::PUT,
            &vm,
            Some(json!({"location": "eastus", "properties": {"hardwareProfile": {"vmSize": "Standard_B1s"}}})),
        )
        .await;
    assert!(s.is_success(), "{s} {b}");
    let poll = h
        .get("azure-asyncoperation")
        .expect("a VM create is a long-running operation")
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        poll.starts_with(&env.url("/")) && poll.contains("portcullis-binding=o"),
        "{poll}"
    );
    // The poll itself works.
    let (s, _, b) = env.agent(Method::GET, &poll, None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let since = env.sim.last_call_seq();
    for method in [Method::PUT, Method::PATCH, Method::DELETE, Method::POST] {
        let (s, _, b) = env
            .agent(method.clone(), &poll, Some(json!({"properties": {}})))
            .await;
        // POST names no operation on an operation's URL: refused before policy.
        assert!(
            s == StatusCode::FORBIDDEN || (method == Method::POST && s == StatusCode::BAD_REQUEST),
            "{method}: {s} {b}"
        );
    }
    // The binding moved onto another URL.
    let u = url::Url::parse(&poll).unwrap();
    let binding = u
        .query_pairs()
        .find(|(k, _)| k == "portcullis-binding")
        .unwrap()
        .1
        .into_owned();
    let sub = env.sim.subscription_id();
    let elsewhere = env.url(&format!(
        "/subscriptions/{sub}/resourceGroups/evil-rg?{RG_API}&portcullis-binding={binding}"
    ));
    let (s, _, b) = env.agent(Method::GET, &elsewhere, None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    // Another principal (in no group) with the same URL.
    let other = env.token("other-agent");
    let (s, _, b) = env.call(Some(&other), Method::GET, &poll, None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert!(env.arm_calls(since).is_empty(), "nothing reached Azure");
}

/// A list's own next page is bound, and the page is the list's operation on the list's
/// scope; the binding is of no use for anything but reading that page.
#[tokio::test]
async fn a_page_binding_continues_the_list_and_nothing_else() {
    let env = Env::start().await;
    let list = format!("{}/resources?api-version=2021-04-01&$top=1", env.rg());
    let (s, _, page) = env.agent(Method::GET, &list, None).await;
    assert_eq!(s, StatusCode::OK, "{page}");
    let next = page["nextLink"].as_str().expect("a next page").to_owned();
    assert!(next.contains("portcullis-binding=p"), "{next}");
    let (s, _, b) = env.agent(Method::GET, &next, None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let since = env.sim.last_call_seq();
    for method in [Method::PUT, Method::DELETE, Method::POST] {
        let (s, _, b) = env.agent(method.clone(), &next, Some(json!({}))).await;
        assert!(
            s == StatusCode::FORBIDDEN || s == StatusCode::BAD_REQUEST,
            "{method}: {s} {b}"
        );
    }
    assert!(env.arm_calls(since).is_empty(), "nothing reached Azure");
}

/// The last audit record of an action.
async fn last_of(env: &Env, action: &str) -> Value {
    let records = env.audit_records().await;
    let r = records
        .iter()
        .rev()
        .find(|r| r.action.as_deref() == Some(action))
        .expect("a record");
    serde_json::to_value(r).unwrap()
}

/// Two inner requests of one name, `listKeys` and a GET: before the fix the answers were
/// masked by name, the last duplicate's plan won, and both keys came back (and were
/// recorded) in clear. Azure's batch answers each request by name; two of one name are
/// refused before anything is forwarded.
#[tokio::test]
async fn a_batch_with_two_requests_of_one_name_is_refused() {
    let env = Env::start().await;
    let sa = format!(
        "{}/providers/Microsoft.Storage/storageAccounts/demostorage01",
        env.rg()
    );
    let keys = env.sim.storage_keys(&sa);
    let since = env.sim.last_call_seq();
    for (first, second) in [("x", "x"), ("x", "X")] {
        let body = json!({"requests": [
            {"name": first, "httpMethod": "POST", "url": format!("{sa}/listKeys?api-version=2023-05-01")},
            {"name": second, "httpMethod": "GET", "url": format!("{sa}?api-version=2023-05-01")},
        ]});
        let (s, _, b) = env
            .agent(Method::POST, "/batch?api-version=2020-06-01", Some(body))
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
        assert_eq!(b["error"]["code"], "InvalidBatchRequest", "{b}");
        assert!(
            b["error"]["message"]
                .as_str()
                .unwrap()
                .contains("same name"),
            "{b}"
        );
        for k in &keys {
            assert!(!b.to_string().contains(k.as_str()), "{b}");
        }
    }
    assert!(env.arm_calls(since).is_empty(), "nothing reached Azure");
    let r = last_of(&env, "Microsoft.Resources/batch/action").await;
    assert_eq!(r["phase"], "refused", "{r}");
    let all = serde_json::to_string(&env.audit_records().await).unwrap();
    for k in &keys {
        assert!(!all.contains(k.as_str()), "a key in the audit store");
    }
}

/// An absolute inner URL on the Resource Manager host but another port is another service:
/// refused, as another host is.
#[tokio::test]
async fn a_batch_url_on_another_port_of_the_arm_host_is_refused() {
    let env = Env::start().await;
    let sim = url::Url::parse(env.sim.url()).unwrap();
    let host = sim.host_str().unwrap();
    let since = env.sim.last_call_seq();
    for authority in [
        format!("{host}:1"),
        host.to_owned(),
        "management.azure.com:8443".to_owned(),
    ] {
        let body = json!({"requests": [
            {"name": "a", "httpMethod": "GET", "url": format!("https://{authority}{}?{RG_API}", env.rg())},
        ]});
        let (s, _, b) = env
            .agent(Method::POST, "/batch?api-version=2020-06-01", Some(body))
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{authority}: {b}");
        assert_eq!(b["error"]["code"], "InvalidBatchRequest", "{b}");
    }
    // The upstream's own authority, port included, is the Resource Manager host.
    let body = json!({"requests": [
        {"name": "a", "httpMethod": "GET", "url": format!("https://{host}:{}{}?{RG_API}", sim.port().unwrap(), env.rg())},
    ]});
    let (s, _, b) = env
        .agent(Method::POST, "/batch?api-version=2020-06-01", Some(body))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let batches = env.arm_calls(since);
    assert_eq!(
        batches.iter().filter(|c| c.path == "/batch").count(),
        1,
        "only the last batch was forwarded: {batches:?}"
    );
}

/// A held PUT whose 70 KB tag pushes three weakening settings past the first 64 KiB: before
/// the fix the approver saw the first 65,536 characters with no sign of a cut, and the
/// account was then created with all three. Now the approver sees the whole body, and the
/// settings first (API, CLI and console).
#[tokio::test]
async fn the_approver_sees_the_whole_body_and_the_risky_settings_first() {
    let env = crate::console::console_env(None).await;
    let filler = "x".repeat(70_000);
    let body = json!({
        "location": "eastus", "kind": "StorageV2", "sku": {"name": "Standard_LRS"},
        "tags": {"description": filler},
        "properties": {
            "allowBlobPublicAccess": true,
            "minimumTlsVersion": "TLS1_0",
            "networkAcls": {"defaultAction": "Allow"},
        },
    })
    .to_string();
    // The console's setup runs the demo's policy: a storage create waits as a long-running
    // operation (202), not ApprovalPending.
    let path = crate::approvals::account(&env, "widelyopen");
    let (s, h, b) = crate::send(crate::approvals::put_request(
        &env,
        &path,
        &body,
        Some(0),
        None,
    ))
    .await;
    assert_eq!(s, reqwest::StatusCode::ACCEPTED, "{b}");
    let id = h["x-portcullis-approval"].to_str().unwrap().to_owned();
    let a = crate::approvals::approval(&env, &id).await;
    let shown = a["request"]["body"].as_str().unwrap();
    let doc: Value = serde_json::from_str(shown).expect("the whole body, as JSON");
    assert_eq!(doc["tags"]["description"].as_str().unwrap().len(), 70_000);
    assert_eq!(doc["properties"]["allowBlobPublicAccess"], true);
    assert_eq!(doc["properties"]["networkAcls"]["defaultAction"], "Allow");
    let flagged: Vec<&str> = a["request"]["highlights"]
        .as_array()
        .expect("highlights")
        .iter()
        .take_while(|h| h["risk"].is_string())
        .map(|h| h["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        flagged,
        [
            "properties.allowBlobPublicAccess",
            "properties.minimumTlsVersion",
            "properties.networkAcls.defaultAction"
        ],
        "{}",
        a["request"]["highlights"]
    );

    // The console card puts the risky ones before the decision, and holds the body whole.
    let http = crate::console::browserless(&env);
    let (session, _, _) = crate::console::sign_in(&env, &http, "alice").await;
    let (s, html) =
        crate::console::page(&env, &http, &session, &format!("/console/approvals/{id}")).await;
    assert_eq!(s, StatusCode::OK);
    let settings = html
        .find("Settings to check first")
        .expect("the settings section");
    assert!(
        settings < html.find("class=\"approve\"").unwrap(),
        "the risky settings come before the decision"
    );
    assert!(html.contains("anyone on the internet may read public containers"));
    assert!(html.contains("TLS older than 1.2 is accepted"));
    assert!(html.contains("network rules let every address in"));
    assert!(html.contains(&filler), "the body is shown whole");

    // And the CLI (off the test's runtime thread, which serves the gateway).
    let mut cli = crate::portcullis_cli();
    cli.args(["approvals", "show", &id, "--admin-url"])
        .arg(format!("https://{}", env.gw.admin_addr))
        .arg("--ca-file")
        .arg(env.gw.ca_file.as_ref().unwrap())
        .env("PORTCULLIS_TOKEN", env.token("alice"));
    let (ok, out) = tokio::task::spawn_blocking(move || crate::outcome(&mut cli))
        .await
        .unwrap();
    assert!(ok, "{out}");
    assert!(
        out.contains("properties.networkAcls.defaultAction = \"Allow\""),
        "{}",
        &out[..out.len().min(2000)]
    );
}

/// A body that cannot be shown to a person (not text) is never held: nothing is approved
/// unseen.
#[tokio::test]
async fn a_body_that_cannot_be_shown_is_not_held() {
    let env = Env::start().await;
    let since = env.sim.last_call_seq();
    let r = env
        .http
        .put(env.url(&crate::approvals::account(&env, "binarybody")))
        .bearer_auth(env.token("agent"))
        .header("content-type", "application/octet-stream")
        .header("x-portcullis-wait", "0")
        .body(vec![0xff, 0xfe, 0x00, 0x80, 0x81]);
    let (s, _, b) = crate::send(r).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(b["error"]["code"], "RequestNotShowable", "{b}");
    assert!(env.arm_calls(since).is_empty());
    let (s, _, list) = env
        .http
        .get(format!("https://{}/api/approvals", env.gw.admin_addr))
        .bearer_auth(env.token("alice"))
        .send()
        .await
        .map(|r| (r.status(), (), r))
        .unwrap();
    assert_eq!(s, StatusCode::OK);
    let list: Value = list.json().await.unwrap();
    assert_eq!(list["value"].as_array().map(Vec::len), Some(0), "{list}");
}

/// The digest an approval is bound to is shown to approvers and in the API. A plain hash of
/// the request would let anyone who sees it test guesses of a secret the body carries
/// (the sibling of finding 4's oracle); it is keyed with the gateway's mask key.
#[tokio::test]
async fn an_approvals_digest_is_no_oracle_for_the_body_it_covers() {
    use sha2::Digest;
    let env = Env::start().await;
    let path = crate::approvals::account(&env, "digestprobe");
    let body = r#"{"location":"eastus","tags":{"note":"hunter2"}}"#;
    let id = crate::approvals::held_pending(&env, &path, body).await;
    let a = crate::approvals::approval(&env, &id).await;
    let shown = a["digest"].as_str().expect("a digest");
    let (p, q) = path.split_once('?').unwrap();
    let mut plain = sha2::Sha256::new();
    plain.update(format!("Arm\nPUT\n{p}\n{q}\n"));
    plain.update(b"content-type:application/json\n");
    plain.update(body.as_bytes());
    let plain: String = plain
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_ne!(shown, plain, "the digest is a plain hash of the request");
    assert_eq!(shown.len(), 64, "{shown}");
    // The same request again is still recognised as the same approval.
    let again = crate::approvals::held_pending(&env, &path, body).await;
    assert_eq!(again, id);
}
