//! End-to-end tests of the simulator over real TLS sockets: each test starts its own
//! simulator on a free loopback port and talks to it like an Azure client would.

mod arm;
mod entra;
mod faults;
mod keyvault;
mod python_sdk;

use azure_sim::{SimOptions, Simulator};
use reqwest::{Method, StatusCode};
use serde_json::Value;

pub const ARM: &str = "https://management.azure.com/";
pub const API: &str = "api-version=2024-07-01";

pub struct Env {
    pub sim: Simulator,
    pub http: reqwest::Client,
}

/// A client trusting the simulator's CA, optionally resolving a host name to it.
pub fn client(sim: &Simulator, resolve: Option<&str>) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(sim.ca_pem().as_bytes()).expect("the CA parses");
    let mut b = reqwest::Client::builder()
        .add_root_certificate(ca)
        .tls_built_in_root_certs(false)
        .redirect(reqwest::redirect::Policy::none());
    if let Some(host) = resolve {
        b = b.resolve(host, sim.addr());
    }
    b.build().expect("client builds")
}

impl Env {
    pub async fn start() -> Env {
        Self::with(SimOptions::default()).await
    }

    pub async fn with(options: SimOptions) -> Env {
        let sim = Simulator::start(options).await.expect("simulator starts");
        let http = client(&sim, None);
        Env { sim, http }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.sim.url())
    }

    pub fn sub(&self) -> String {
        format!("/subscriptions/{}", self.sim.subscription_id())
    }

    pub fn rg(&self) -> String {
        format!("{}/resourceGroups/demo-rg", self.sub())
    }

    pub fn token(&self, principal: &str, audience: &str) -> String {
        self.sim.token(principal, audience).expect("token mints")
    }

    /// An ARM call as the gateway's baseline identity; returns status, headers and JSON body.
    pub async fn arm(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Value>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let token = self.token("portcullis-baseline", ARM);
        let url = if path_and_query.starts_with("https://") {
            path_and_query.to_owned()
        } else {
            self.url(path_and_query)
        };
        let mut req = self.http.request(method, url).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        send(req).await
    }
}

pub async fn send(req: reqwest::RequestBuilder) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let resp = req.send().await.expect("request is answered");
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.expect("body reads");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    (status, headers, body)
}

pub fn header<'a>(h: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("header {name} missing in {h:?}"))
}
