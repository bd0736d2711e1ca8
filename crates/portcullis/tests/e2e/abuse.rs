//! Protocol abuse at the agent listener (`limits:`): request framing (Content-Length with
//! Transfer-Encoding, conflicting lengths, odd transfer codings), header count and size caps
//! on HTTP/1.1 and HTTP/2, body caps per service, slow request heads, idle connections, the
//! connection cap, per-principal rate limits and vault names that try to choose the upstream
//! host. Raw TLS sockets where the exact bytes matter; every wait bounded; each case checks
//! what reached the simulator ("Azure") and, for the pipeline's refusals, the audit trail.

use std::future::Future;
use std::io::Write as _;
use std::time::{Duration, Instant};

use azure_sim::calls::CallRecord;
use portcullis::audit::record::{AuditRecord, Phase};
use reqwest::{Method, StatusCode};
use rustls_pki_types::ServerName;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::{API, Env, Setup, TEST_RULES, send};
use crate::{leak, tls_config};

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

/// Panics (instead of hanging) when `f` takes longer than `secs`.
async fn within<T>(secs: u64, what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .unwrap_or_else(|_| panic!("{what}: not within {secs}s"))
}

/// A setup with `limits` (YAML lines under `limits:`) and more top-level YAML.
fn limits(limits: &str, more: &str) -> Setup {
    Setup {
        extra: leak(format!("limits:\n{limits}{more}")),
        ..Setup::default()
    }
}

// === raw TLS ===

async fn handshake(env: &Env, tcp: TcpStream, alpn: &[&[u8]]) -> std::io::Result<Tls> {
    TlsConnector::from(tls_config(env, alpn))
        .connect(ServerName::from(env.gw.gateway_addr.ip()), tcp)
        .await
}

async fn open_with(env: &Env, alpn: &[&[u8]]) -> Tls {
    within(10, "a TLS connection to the gateway", async {
        let tcp = TcpStream::connect(env.gw.gateway_addr).await.unwrap();
        handshake(env, tcp, alpn).await.unwrap()
    })
    .await
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// One HTTP/1.1 answer as it came off the wire.
#[derive(Debug)]
struct Reply {
    status: u16,
    /// Names lowercased.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn text(&self) -> String {
        format!(
            "{} {:?} {}",
            self.status,
            self.headers,
            String::from_utf8_lossy(&self.body)
        )
    }
}

/// An HTTP/1.1 connection over TLS, spoken byte by byte (or its reading half).
struct Conn<S = Tls> {
    s: S,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(env: &Env) -> Conn {
        Conn {
            s: open_with(env, &[b"http/1.1"]).await,
            buf: Vec::new(),
        }
    }
}

impl<S: AsyncWrite + Unpin> Conn<S> {
    async fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).await.unwrap();
        self.s.flush().await.unwrap();
    }
}

impl<S: AsyncRead + Unpin> Conn<S> {
    /// Reads more; the number of bytes (0: closed), or the error.
    async fn fill(&mut self) -> std::io::Result<usize> {
        let mut chunk = [0u8; 16384];
        let n = self.s.read(&mut chunk).await?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    async fn more(&mut self) {
        match self.fill().await {
            Ok(n) if n > 0 => {}
            other => panic!(
                "the connection ended mid-answer ({other:?}): {:?}",
                String::from_utf8_lossy(&self.buf)
            ),
        }
    }

    async fn line(&mut self) -> Vec<u8> {
        loop {
            if let Some(i) = find(&self.buf, b"\r\n") {
                let line = self.buf[..i].to_vec();
                self.buf.drain(..i + 2);
                return line;
            }
            self.more().await;
        }
    }

    /// The next answer (bounded); `None` when the connection closed before one began.
    async fn reply(&mut self) -> Option<Reply> {
        within(30, "an answer", self.reply_now()).await
    }

    async fn reply_now(&mut self) -> Option<Reply> {
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            match self.fill().await {
                Ok(n) if n > 0 => {}
                _ if self.buf.is_empty() => return None,
                other => panic!(
                    "the connection ended mid-head ({other:?}): {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        self.buf.drain(..head_end);
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP/1.1 answer: {head:?}"));
        let headers: Vec<(String, String)> = lines
            .filter(|l| !l.is_empty())
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let body = if let Some(len) = get("content-length") {
            let len: usize = len.parse().unwrap();
            while self.buf.len() < len {
                self.more().await;
            }
            self.buf.drain(..len).collect()
        } else if get("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
            let mut body = Vec::new();
            loop {
                let size_line = String::from_utf8_lossy(&self.line().await).into_owned();
                let size = usize::from_str_radix(size_line.split(';').next().unwrap().trim(), 16)
                    .unwrap_or_else(|_| panic!("bad chunk size {size_line:?}"));
                if size == 0 {
                    while !self.line().await.is_empty() {}
                    break;
                }
                while self.buf.len() < size + 2 {
                    self.more().await;
                }
                body.extend(self.buf.drain(..size));
                self.buf.drain(..2);
            }
            body
        } else if status < 200 || status == 204 || status == 304 {
            Vec::new()
        } else {
            while let Ok(n) = self.fill().await {
                if n == 0 {
                    break;
                }
            }
            std::mem::take(&mut self.buf)
        };
        Some(Reply {
            status,
            headers,
            body,
        })
    }

    /// Whether the gateway closes the connection (end of stream or reset) within `secs`;
    /// whatever it sends meanwhile is kept in `buf`.
    async fn closed_within(&mut self, secs: u64) -> bool {
        tokio::time::timeout(Duration::from_secs(secs), async {
            loop {
                match self.fill().await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await
        .is_ok()
    }
}

/// A request head (CRLF-terminated lines) for the gateway, with a bearer token when given.
fn head(env: &Env, method: &str, target: &str, token: Option<&str>, more: &[&str]) -> String {
    let mut h = format!(
        "{method} {target} HTTP/1.1\r\nHost: {}\r\n",
        env.gw.gateway_addr
    );
    if let Some(t) = token {
        h.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    for m in more {
        h.push_str(m);
        h.push_str("\r\n");
    }
    h.push_str("\r\n");
    h
}

/// `body` in chunks of at most `size` bytes, with the last chunk.
fn chunked(body: &[u8], size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for c in body.chunks(size) {
        out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// Sends `bytes` on a fresh connection and reads one answer.
async fn exchange(env: &Env, bytes: &[u8]) -> Option<Reply> {
    let mut c = Conn::open(env).await;
    c.send(bytes).await;
    c.reply().await
}

// === what reached Azure, what was recorded ===

fn paths(calls: &[CallRecord]) -> Vec<String> {
    calls
        .iter()
        .map(|c| format!("{} {} → {}", c.method, c.path, c.status))
        .collect()
}

/// The refusals recorded with this status whose URL contains `url_part`.
async fn refusals(env: &Env, status: u16, url_part: &str) -> Vec<AuditRecord> {
    env.audit_records()
        .await
        .into_iter()
        .filter(|r| {
            r.phase == Phase::Refused && r.status == Some(status) && r.url.contains(url_part)
        })
        .collect()
}

fn object_id(env: &Env, principal: &str) -> String {
    env.sim
        .config()
        .principal(principal)
        .unwrap()
        .object_id
        .to_string()
}

fn vm(env: &Env, name: &str) -> String {
    format!(
        "{}/providers/Microsoft.Compute/virtualMachines/{name}?{API}",
        env.rg()
    )
}

/// A VM body of exactly `len` bytes (padded in a property).
fn vm_body(len: usize) -> Vec<u8> {
    let (pre, post) = (
        r#"{"location":"eastus","properties":{"padding":""#,
        r#""}}"#,
    );
    let pad = len - pre.len() - post.len();
    let body = format!("{pre}{}{post}", "x".repeat(pad));
    assert_eq!(body.len(), len);
    body.into_bytes()
}

/// A Key Vault setSecret body of exactly `len` bytes.
fn secret_body(len: usize) -> Vec<u8> {
    let (pre, post) = (r#"{"value":""#, r#""}"#);
    let body = format!("{pre}{}{post}", "s".repeat(len - pre.len() - post.len()));
    assert_eq!(body.len(), len);
    body.into_bytes()
}

/// Successful PUTs of a path ending in `/{name}` that the simulator served since `since`.
fn puts_of(env: &Env, since: u64, name: &str) -> Vec<CallRecord> {
    env.azure_calls(since)
        .into_iter()
        .filter(|c| c.method == "PUT" && c.path.ends_with(&format!("/{name}")) && c.status < 300)
        .collect()
}

// === 1. framing ===

/// hyper does not refuse a request carrying both `Content-Length` and
/// `Transfer-Encoding: chunked`: it frames it by the chunked encoding (RFC 9112 §6.3),
/// drops the Content-Length and closes the connection after the answer. So the bytes the
/// Content-Length covered beyond the chunked body (here a second, "smuggled" request) are
/// never read as a request: they reach neither the pipeline nor Azure.
#[tokio::test]
async fn content_length_with_chunked_is_framed_as_chunked_and_nothing_is_smuggled() {
    let env = Env::start().await;
    let token = env.token("agent");
    let group = format!("{}?api-version=2022-09-01", env.rg());
    for te_first in [false, true] {
        let since = env.sim.last_call_seq();
        let smuggled = head(&env, "GET", &vm(&env, "smuggled"), Some(&token), &[]);
        let body = format!("0\r\n\r\n{smuggled}");
        let cl = format!("Content-Length: {}", body.len());
        let te = "Transfer-Encoding: chunked";
        let framing: [&str; 2] = if te_first { [te, &cl] } else { [&cl, te] };
        let outer = head(&env, "GET", &group, Some(&token), &framing);
        let mut c = Conn::open(&env).await;
        c.send(format!("{outer}{body}").as_bytes()).await;
        let first = c.reply().await.expect("an answer to the outer request");
        let closed = c.closed_within(10).await;
        let calls = env.azure_calls(since);
        assert_eq!(
            first.status,
            200,
            "te_first={te_first}: hyper frames the outer request by Transfer-Encoding and it is \
             served: {}",
            first.text()
        );
        assert_eq!(
            first.header("connection"),
            Some("close"),
            "te_first={te_first}: {}",
            first.text()
        );
        assert!(closed, "te_first={te_first}: the connection is closed");
        assert!(
            c.buf.is_empty(),
            "te_first={te_first}: no second answer: {:?}",
            String::from_utf8_lossy(&c.buf)
        );
        assert!(
            !calls.iter().any(|c| c.path.contains("smuggled")),
            "te_first={te_first}: the smuggled request reached Azure: {:?}",
            paths(&calls)
        );
        assert_eq!(
            calls.len(),
            1,
            "te_first={te_first}: only the outer GET: {:?}",
            paths(&calls)
        );
    }
    assert!(
        !env.audit_records()
            .await
            .iter()
            .any(|r| r.url.contains("smuggled")),
        "the smuggled request never reached the pipeline"
    );
}

#[tokio::test]
async fn two_different_content_lengths_are_refused_and_nothing_is_forwarded() {
    let env = Env::start().await;
    let token = env.token("agent");
    let body = br#"{"location":"eastus","tags":{"a":"b"}}"#;
    let since = env.sim.last_call_seq();
    for (i, lengths) in [
        vec![
            "Content-Length: 2".to_owned(),
            format!("Content-Length: {}", body.len()),
        ],
        vec![format!("Content-Length: {}, 2", body.len())],
        vec![
            format!("Content-Length: {}", body.len()),
            "Content-Length: 2".to_owned(),
        ],
    ]
    .into_iter()
    .enumerate()
    {
        let mut more: Vec<&str> = vec!["Content-Type: application/json"];
        more.extend(lengths.iter().map(String::as_str));
        let name = format!("twolengths{i}");
        let mut req = head(&env, "PUT", &vm(&env, &name), Some(&token), &more).into_bytes();
        req.extend_from_slice(body);
        let mut c = Conn::open(&env).await;
        c.send(&req).await;
        let reply = c.reply().await;
        let closed = c.closed_within(10).await;
        // hyper answers its parse error itself (400, empty body) and closes.
        let reply = reply.unwrap_or_else(|| panic!("{lengths:?}: no answer"));
        assert_eq!(reply.status, 400, "{lengths:?}: {}", reply.text());
        assert!(closed, "{lengths:?}: the connection is closed");
        assert!(
            env.audit_records()
                .await
                .iter()
                .all(|r| !r.url.contains(&name)),
            "{lengths:?}: refused by hyper, before the pipeline (so not in the audit trail)"
        );
    }
    assert!(
        env.azure_calls(since).is_empty(),
        "{:?}",
        paths(&env.azure_calls(since))
    );
}

#[tokio::test]
async fn transfer_codings_other_than_a_final_chunked_are_refused() {
    let env = Env::start().await;
    let token = env.token("agent");
    let since = env.sim.last_call_seq();
    let body = chunked(br#"{"location":"eastus"}"#, 8);
    for (i, te) in [
        "Transfer-Encoding: xchunked",
        "Transfer-Encoding: chunked, gzip",
        "Transfer-Encoding: identity",
        "Transfer-Encoding: chunk",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: xchunked",
        "Transfer-Encoding: chunked\r\nContent-Length: 5\r\nTransfer-Encoding: x",
    ]
    .into_iter()
    .enumerate()
    {
        let mut req = head(
            &env,
            "PUT",
            &vm(&env, &format!("coding{i}")),
            Some(&token),
            &["Content-Type: application/json", te],
        )
        .into_bytes();
        req.extend_from_slice(&body);
        let mut c = Conn::open(&env).await;
        c.send(&req).await;
        let reply = c.reply().await;
        let closed = c.closed_within(10).await;
        let reply = reply.unwrap_or_else(|| panic!("{te:?}: no answer"));
        assert_eq!(reply.status, 400, "{te:?}: {}", reply.text());
        assert!(closed, "{te:?}: the connection is closed");
    }
    assert!(
        env.azure_calls(since).is_empty(),
        "{:?}",
        paths(&env.azure_calls(since))
    );
}

/// `Transfer-Encoding: gzip, chunked` ends in chunked, so hyper takes it (only the chunked
/// coding is undone). The gateway must not forward a body whose other transfer coding it
/// silently dropped: refused, or at least not forwarded.
#[tokio::test]
async fn gzip_then_chunked_is_refused_or_not_forwarded() {
    let env = Env::start().await;
    let token = env.token("agent");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(br#"{"location":"eastus","tags":{"via":"gzip-te"}}"#)
        .unwrap();
    let body = chunked(&gz.finish().unwrap(), 16);
    let since = env.sim.last_call_seq();
    let mut req = head(
        &env,
        "PUT",
        &vm(&env, "gzipcoded"),
        Some(&token),
        &[
            "Content-Type: application/json",
            "Transfer-Encoding: gzip, chunked",
        ],
    )
    .into_bytes();
    req.extend_from_slice(&body);
    let reply = exchange(&env, &req).await;
    let calls = env.azure_calls(since);
    let shown = reply.as_ref().map(Reply::text);
    assert!(
        calls.is_empty(),
        "a body in a transfer coding the gateway did not undo was forwarded: Azure saw {:?}; \
         the agent got {shown:?}",
        paths(&calls)
    );
    if let Some(r) = reply {
        assert!(r.status >= 400, "{}", r.text());
    }
}

// === 2. header caps ===

const HEADER_CAPS: &str = "  max_headers: 50\n  max_header_bytes: 16384\n";

fn pads(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("X-Pad-{i}: v{i}")).collect()
}

#[tokio::test]
async fn too_many_headers_on_http1_are_refused_with_431() {
    let env = Env::with(limits(HEADER_CAPS, "")).await;
    let token = env.token("agent");
    let group = format!("{}?api-version=2022-09-01", env.rg());
    // Host and Authorization, plus the padding.
    let under = pads(38);
    let under: Vec<&str> = under.iter().map(String::as_str).collect();
    let r = exchange(
        &env,
        head(&env, "GET", &group, Some(&token), &under).as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "40 headers pass: {}", r.text());

    let since = env.sim.last_call_seq();
    let over = pads(58);
    let over: Vec<&str> = over.iter().map(String::as_str).collect();
    let mut c = Conn::open(&env).await;
    c.send(head(&env, "GET", &group, Some(&token), &over).as_bytes())
        .await;
    let r = c.reply().await.expect("an answer");
    assert_eq!(r.status, 431, "60 headers: {}", r.text());
    assert!(c.closed_within(10).await, "and the connection is closed");
    assert!(env.azure_calls(since).is_empty());
}

#[tokio::test]
async fn header_blocks_over_max_header_bytes_on_http1_are_refused_with_431() {
    let env = Env::with(limits(HEADER_CAPS, "")).await;
    let token = env.token("agent");
    let group = format!("{}?api-version=2022-09-01", env.rg());
    let under = format!("X-Pad: {}", "a".repeat(8000));
    let r = exchange(
        &env,
        head(&env, "GET", &group, Some(&token), &[&under]).as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "a head of ~10 KB passes: {}", r.text());

    let since = env.sim.last_call_seq();
    let over = format!("X-Pad: {}", "a".repeat(20_000));
    let mut c = Conn::open(&env).await;
    c.send(head(&env, "GET", &group, Some(&token), &[&over]).as_bytes())
        .await;
    let r = c.reply().await.expect("an answer");
    assert_eq!(r.status, 431, "a head over 16384 bytes: {}", r.text());
    assert!(c.closed_within(10).await, "and the connection is closed");
    assert!(env.azure_calls(since).is_empty());
}

/// A client speaking HTTP/2 (ALPN h2) and trusting the gateway's CA.
fn h2_client(env: &Env) -> reqwest::Client {
    let pem = std::fs::read(env.gw.ca_file.as_ref().unwrap()).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .tls_built_in_root_certs(false)
        .http2_prior_knowledge()
        .build()
        .unwrap()
}

/// On HTTP/2 the header block is capped by SETTINGS_MAX_HEADER_LIST_SIZE (= max_header_bytes):
/// the h2 server answers 431 itself and resets the stream; far over it, the connection is
/// closed (GOAWAY). The request never reaches the pipeline.
#[tokio::test]
async fn header_blocks_over_max_header_bytes_on_http2_are_refused() {
    let env = Env::with(limits(HEADER_CAPS, "")).await;
    let h2 = h2_client(&env);
    let token = env.token("agent");
    let group = env.url(&format!("{}?api-version=2022-09-01", env.rg()));
    let resp = within(
        20,
        "h2 under the cap",
        h2.get(&group)
            .bearer_auth(&token)
            .header("x-pad", "a".repeat(8000))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), StatusCode::OK);

    let since = env.sim.last_call_seq();
    let mut outcomes = Vec::new();
    for size in [20_000, 200_000] {
        let got = within(
            20,
            "h2 over the cap",
            h2.get(&group)
                .bearer_auth(&token)
                .header("x-pad", "a".repeat(size))
                .send(),
        )
        .await;
        let outcome = match got {
            Ok(r) => format!("{size}: {} {:?}", r.status(), r.version()),
            Err(e) => format!("{size}: error {e:?}"),
        };
        eprintln!("h2 header block of {size} bytes: {outcome}");
        outcomes.push(outcome);
    }
    assert!(
        outcomes[0].starts_with("20000: 431"),
        "just over the cap: 431 from the h2 server: {outcomes:?}"
    );
    assert!(
        outcomes[1].contains("431") || outcomes[1].contains("error"),
        "{outcomes:?}"
    );
    assert!(
        env.azure_calls(since).is_empty(),
        "{:?}",
        paths(&env.azure_calls(since))
    );
    assert!(
        env.audit_records()
            .await
            .iter()
            .all(|r| r.status != Some(431)),
        "refused before the pipeline"
    );
}

/// `max_headers` caps headers per request; on HTTP/2 too.
#[tokio::test]
async fn too_many_headers_on_http2_are_refused() {
    let env = Env::with(limits(HEADER_CAPS, "")).await;
    let h2 = h2_client(&env);
    let group = env.url(&format!("{}?api-version=2022-09-01", env.rg()));
    let since = env.sim.last_call_seq();
    let mut req = h2.get(&group).bearer_auth(env.token("agent"));
    for i in 0..60 {
        req = req.header(format!("x-pad-{i}"), format!("v{i}"));
    }
    let got = within(20, "h2 with 60 headers", req.send()).await;
    let outcome = match &got {
        Ok(r) => format!("{} {:?}", r.status(), r.version()),
        Err(e) => format!("error {e:?}"),
    };
    eprintln!("h2 with 61 headers (max_headers 50): {outcome}");
    let calls = env.azure_calls(since);
    assert!(
        got.as_ref().map_or(true, |r| r.status()
            == StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE),
        "61 headers with max_headers 50 on HTTP/2: {outcome}; Azure saw {:?}",
        paths(&calls)
    );
    assert!(calls.is_empty(), "{:?}", paths(&calls));
}

// === 3. body caps ===

const ARM_CAP: usize = 65536;
const KV_CAP: usize = 4096;

fn body_caps() -> Setup {
    Setup {
        extra: "limits:\n  max_body_bytes: {arm: 65536, keyvault: 4096}\n",
        rules: leak(format!(
            "{TEST_RULES}    - name: agents-set-secrets-for-tests\n      effect: allow\n      principals: [group:ai-agents]\n      data_actions: [Microsoft.KeyVault/vaults/secrets/setSecret/action]\n      scopes: [\"vault:demo-kv\"]\n"
        )),
        ..Setup::default()
    }
}

#[tokio::test]
async fn an_arm_body_declared_over_its_cap_is_413_and_never_forwarded() {
    let env = Env::with(body_caps()).await;
    let agent = object_id(&env, "agent");
    let since = env.sim.last_call_seq();
    let (s, h, b) = within(
        30,
        "the PUT",
        send(
            env.http
                .put(env.url(&vm(&env, "toolarge")))
                .bearer_auth(env.token("agent"))
                .header("content-type", "application/json")
                .body(vm_body(ARM_CAP + 1)),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{b}");
    assert_eq!(h["x-ms-error-code"], "RequestEntityTooLarge");
    assert_eq!(h["x-ms-failure-cause"], "gateway");
    assert_eq!(
        b["error"]["code"], "RequestEntityTooLarge",
        "ARM's shape: {b}"
    );
    assert!(
        b["error"]["message"].as_str().unwrap().contains("65536"),
        "{b}"
    );

    // Over HTTP/1.1, the declaration alone is enough: no byte of the body is sent.
    let mut c = Conn::open(&env).await;
    c.send(
        head(
            &env,
            "PUT",
            &vm(&env, "declaredonly"),
            Some(&env.token("agent")),
            &["Content-Type: application/json", "Content-Length: 70000"],
        )
        .as_bytes(),
    )
    .await;
    let r = c.reply().await.expect("an answer before any body byte");
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "RequestEntityTooLarge");

    let calls = env.azure_calls(since);
    assert!(calls.is_empty(), "{:?}", paths(&calls));
    for name in ["toolarge", "declaredonly"] {
        let refused = refusals(&env, 413, name).await;
        assert_eq!(refused.len(), 1, "{name}: {refused:?}");
        assert_eq!(refused[0].principal.as_deref(), Some(agent.as_str()));
        assert_eq!(refused[0].method, "PUT");
        assert!(
            env.audit_records()
                .await
                .iter()
                .all(|r| !(r.url.contains(name) && r.phase == Phase::Request)),
            "{name}: no forwarded-request record"
        );
    }
}

#[tokio::test]
async fn a_key_vault_body_over_its_cap_is_413_and_one_at_the_cap_passes() {
    let env = Env::with(body_caps()).await;
    let put = |name: &str, len: usize| {
        env.http
            .put(env.url(&format!("/keyvault/demo-kv/secrets/{name}?api-version=7.4")))
            .bearer_auth(env.token("agent"))
            .header("content-type", "application/json")
            .body(secret_body(len))
    };
    let since = env.sim.last_call_seq();
    let (s, h, b) = within(
        30,
        "the over-cap setSecret",
        send(put("overcap", KV_CAP + 1)),
    )
    .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{b}");
    assert_eq!(h["x-ms-error-code"], "RequestEntityTooLarge");
    assert_eq!(b["error"]["code"], "RequestEntityTooLarge", "{b}");
    assert!(
        b["error"]["message"].as_str().unwrap().contains("4096"),
        "{b}"
    );
    assert!(
        env.azure_calls(since).is_empty(),
        "{:?}",
        paths(&env.azure_calls(since))
    );
    assert_eq!(env.sim.secret_value("demo-kv", "overcap"), None);
    assert_eq!(refusals(&env, 413, "/secrets/overcap").await.len(), 1);

    let (s, _, b) = within(30, "the at-cap setSecret", send(put("atcap", KV_CAP))).await;
    assert_eq!(s, StatusCode::OK, "exactly {KV_CAP} bytes pass: {b}");
    assert_eq!(
        env.sim.secret_value("demo-kv", "atcap").map(|v| v.len()),
        Some(KV_CAP - r#"{"value":""}"#.len())
    );
}

/// A body without a declared length is cut off at the cap: Azure never receives a complete
/// request over it (the simulator only records requests whose body it read whole).
#[tokio::test]
async fn a_chunked_arm_body_over_the_cap_is_not_forwarded_complete() {
    let env = Env::with(body_caps()).await;
    let token = env.token("agent");
    // Just over the cap (read whole for the audit record, then cut), and over the policy's
    // 1 MiB read limit too (streamed, then cut).
    for (name, len) in [
        ("chunkedover", ARM_CAP + 1),
        ("chunkedhuge", 2 * 1024 * 1024),
    ] {
        let since = env.sim.last_call_seq();
        let (rd, mut wr) = tokio::io::split(Conn::open(&env).await.s);
        let req = head(
            &env,
            "PUT",
            &vm(&env, name),
            Some(&token),
            &[
                "Content-Type: application/json",
                "Transfer-Encoding: chunked",
            ],
        );
        let body = chunked(&vm_body(len), 8192);
        // The gateway may answer (and stop reading) before the body is all sent.
        let writer = tokio::spawn(async move {
            let _ = wr.write_all(req.as_bytes()).await;
            let _ = wr.write_all(&body).await;
            let _ = wr.flush().await;
        });
        let mut c = Conn {
            s: rd,
            buf: Vec::new(),
        };
        let reply = c.reply().await;
        writer.abort();
        let shown = reply.as_ref().map(Reply::text);
        eprintln!("chunked PUT of {len} bytes over a {ARM_CAP}-byte cap: {shown:?}");
        // The body is read (up to the cap) before anything is recorded as forwarded: the
        // agent hears 413, as with a declared length.
        assert_eq!(
            reply.as_ref().map(|r| r.status),
            Some(413),
            "{name}: {shown:?}"
        );
        let puts = puts_of(&env, since, name);
        assert!(
            puts.is_empty(),
            "{name}: Azure completed a PUT over the cap: {:?}",
            paths(&puts)
        );
        if let Some(r) = &reply {
            let refused = refusals(&env, r.status, name).await;
            assert_eq!(refused.len(), 1, "{name}: the failure is recorded");
        }
        let trail: Vec<_> = env
            .audit_records()
            .await
            .into_iter()
            .filter(|r| r.url.contains(name))
            .map(|r| (r.phase, r.status))
            .collect();
        eprintln!("{name}: its audit records {trail:?}");
        assert!(
            trail.iter().all(|(phase, _)| *phase != Phase::Request),
            "{name}: nothing is recorded as forwarded: {trail:?}"
        );
        let (s, _, _) = env.agent(Method::GET, &vm(&env, name), None).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{name}: no such VM was made");
    }
}

#[tokio::test]
async fn arm_bodies_exactly_at_the_cap_pass_declared_or_chunked() {
    let env = Env::with(body_caps()).await;
    let since = env.sim.last_call_seq();
    let (s, _, b) = within(
        30,
        "the at-cap PUT",
        send(
            env.http
                .put(env.url(&vm(&env, "atcap")))
                .bearer_auth(env.token("agent"))
                .header("content-type", "application/json")
                .body(vm_body(ARM_CAP)),
        ),
    )
    .await;
    assert!(s.is_success(), "{s} {b}");

    let mut req = head(
        &env,
        "PUT",
        &vm(&env, "atcapchunked"),
        Some(&env.token("agent")),
        &[
            "Content-Type: application/json",
            "Transfer-Encoding: chunked",
        ],
    )
    .into_bytes();
    req.extend_from_slice(&chunked(&vm_body(ARM_CAP), 8192));
    let r = exchange(&env, &req).await.expect("an answer");
    assert!((200..300).contains(&r.status), "{}", r.text());
    assert_eq!(puts_of(&env, since, "atcap").len(), 1);
    assert_eq!(puts_of(&env, since, "atcapchunked").len(), 1);
}

// === 4. slow request heads ===

#[tokio::test]
async fn slow_request_heads_are_cut_after_header_timeout() {
    let env = Env::with(limits("  header_timeout: 1s\n", "")).await;
    let since = env.sim.last_call_seq();
    let token = env.token("agent");
    let group = format!("{}?api-version=2022-09-01", env.rg());

    // Part of a head, then nothing.
    let mut c = Conn::open(&env).await;
    c.send(format!("GET {group} HTTP/1.1\r\nHost: gw\r\n").as_bytes())
        .await;
    assert!(
        c.closed_within(10).await,
        "a partial head then silence: the connection is closed"
    );
    eprintln!(
        "slow head: the gateway sent {:?} before closing",
        String::from_utf8_lossy(&c.buf)
    );

    // A head dribbled a byte at a time, forever (each byte keeps the connection busy).
    let (rd, mut wr) = tokio::io::split(Conn::open(&env).await.s);
    let dribble = tokio::spawn(async move {
        let _ = wr
            .write_all(format!("GET {group} HTTP/1.1\r\nX-Slow: ").as_bytes())
            .await;
        loop {
            if wr.write_all(b"a").await.is_err() || wr.flush().await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let mut c = Conn {
        s: rd,
        buf: Vec::new(),
    };
    let closed = c.closed_within(10).await;
    dribble.abort();
    assert!(closed, "a dribbled head: the connection is closed");

    // A prompt request is served as ever.
    let r = exchange(
        &env,
        head(
            &env,
            "GET",
            &format!("{}?api-version=2022-09-01", env.rg()),
            Some(&token),
            &[],
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(env.azure_calls(since).len(), 1);
}

// === 5. idle connections ===

const STORAGE_API: &str = "api-version=2023-05-01";
const CREATE: &str = r#"{"location":"eastus","sku":{"name":"Standard_LRS"},"kind":"StorageV2"}"#;

/// A client for the admin API that opens a connection per request (the admin listener
/// closes idle ones after a second too).
fn admin_client(env: &Env) -> reqwest::Client {
    let pem = std::fs::read(env.gw.ca_file.as_ref().unwrap()).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .tls_built_in_root_certs(false)
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

async fn admin(
    env: &Env,
    http: &reqwest::Client,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut r = http
        .request(method, format!("https://{}{path}", env.gw.admin_addr))
        .bearer_auth(env.token("alice"));
    if let Some(b) = body {
        r = r.json(&b);
    }
    let (s, _, b) = within(15, "the admin API", send(r)).await;
    (s, b)
}

/// The id of the pending approval for storage account `name` (polled, bounded).
async fn pending(env: &Env, http: &reqwest::Client, name: &str) -> String {
    let started = Instant::now();
    loop {
        let (s, b) = admin(
            env,
            http,
            Method::GET,
            "/api/approvals?status=pending",
            None,
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        if let Some(a) = b["value"].as_array().unwrap().iter().find(|a| {
            a["scope"]
                .as_str()
                .is_some_and(|s| s.ends_with(&format!("/{name}")))
        }) {
            return a["id"].as_str().unwrap().to_owned();
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "no pending approval for {name}: {b}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn idle_connections_are_closed_but_held_requests_are_not() {
    let env = Env::with(limits("  idle_timeout: 1s\n", "approvals:\n  hold: 120s\n")).await;
    let token = env.token("agent");
    let group = format!("{}?api-version=2022-09-01", env.rg());

    // One complete request on a keep-alive HTTP/1.1 connection, then nothing.
    let mut c = Conn::open(&env).await;
    c.send(head(&env, "GET", &group, Some(&token), &[]).as_bytes())
        .await;
    let r = c.reply().await.expect("an answer");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_ne!(r.header("connection"), Some("close"), "kept alive");
    assert!(
        c.closed_within(10).await,
        "the idle keep-alive connection is closed"
    );
    assert!(c.buf.is_empty(), "{:?}", String::from_utf8_lossy(&c.buf));

    // A TLS connection that never sends a byte.
    let mut c = Conn::open(&env).await;
    assert!(
        c.closed_within(10).await,
        "a connection that never sends a request is closed"
    );

    // Requests held for approval well past the idle timeout, on HTTP/1.1 and on HTTP/2.
    let admin_http = admin_client(&env);
    let since = env.sim.last_call_seq();
    let started = Instant::now();
    let path = |name: &str| {
        format!(
            "{}/providers/Microsoft.Storage/storageAccounts/{name}?{STORAGE_API}",
            env.rg()
        )
    };
    let mut h1 = Conn::open(&env).await;
    let mut req = head(
        &env,
        "PUT",
        &path("idleheldone"),
        Some(&token),
        &[
            "Content-Type: application/json",
            &format!("Content-Length: {}", CREATE.len()),
            "x-portcullis-reason: e2e: held across the idle timeout",
        ],
    )
    .into_bytes();
    req.extend_from_slice(CREATE.as_bytes());
    h1.send(&req).await;
    let h2 = tokio::spawn(send(
        h2_client(&env)
            .put(env.url(&path("idleheldtwo")))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .header("x-portcullis-reason", "e2e: held across the idle timeout")
            .body(CREATE),
    ));
    let one = pending(&env, &admin_http, "idleheldone").await;
    let two = pending(&env, &admin_http, "idleheldtwo").await;
    let hold = Duration::from_millis(2500);
    if started.elapsed() < hold {
        tokio::time::sleep(hold - started.elapsed()).await;
    }
    assert!(!h2.is_finished(), "the HTTP/2 request is still held");
    for id in [&one, &two] {
        let (s, b) = admin(
            &env,
            &admin_http,
            Method::POST,
            &format!("/api/approvals/{id}/approve"),
            Some(json!({"comment": "held across the idle timeout"})),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }
    let r = h1
        .reply()
        .await
        .expect("the held HTTP/1.1 request answered");
    assert!((200..300).contains(&r.status), "{}", r.text());
    let (s, _, b) = within(30, "the held HTTP/2 request", h2).await.unwrap();
    assert!(s.is_success(), "{s} {b}");
    assert!(
        started.elapsed() >= hold,
        "held longer than the idle timeout"
    );
    assert_eq!(puts_of(&env, since, "idleheldone").len(), 1);
    assert_eq!(puts_of(&env, since, "idleheldtwo").len(), 1);
}

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const SETTINGS: u8 = 4;
const PING: u8 = 6;
const GOAWAY: u8 = 7;

fn h2_frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&0u32.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

#[derive(Clone, Copy, PartialEq)]
enum H2Client {
    /// Acknowledges the gateway's SETTINGS and PINGs, sends nothing else.
    Polite,
    /// After its preface and SETTINGS, only reads (a client that went away).
    Silent,
    /// Polite, and sends a PING of its own every 300 ms; never opens a stream.
    Pinging,
}

/// An HTTP/2 connection that never opens a stream, behaving as `how`: whether the gateway
/// closed it within `secs`, and the types of the frames it sent.
async fn h2_without_requests(env: &Env, how: H2Client, secs: u64) -> (bool, Vec<u8>) {
    let mut s = open_with(env, &[b"h2"]).await;
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    s.write_all(PREFACE).await.unwrap();
    s.write_all(&h2_frame(SETTINGS, 0, &[])).await.unwrap();
    s.flush().await.unwrap();
    let (mut buf, mut kinds) = (Vec::new(), Vec::new());
    let mut ping = tokio::time::interval(Duration::from_millis(300));
    let deadline = tokio::time::sleep(Duration::from_secs(secs));
    tokio::pin!(deadline);
    let mut chunk = vec![0u8; 16384];
    let closed = loop {
        let mut out = Vec::new();
        tokio::select! {
            _ = &mut deadline => break false,
            _ = ping.tick(), if how == H2Client::Pinging => {
                out = h2_frame(PING, 0, b"portcull");
            }
            r = s.read(&mut chunk) => match r {
                Ok(0) | Err(_) => break true,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    while buf.len() >= 9 {
                        let len = (buf[0] as usize) << 16 | (buf[1] as usize) << 8 | buf[2] as usize;
                        if buf.len() < 9 + len {
                            break;
                        }
                        let (kind, flags) = (buf[3], buf[4]);
                        kinds.push(kind);
                        if how != H2Client::Silent && flags & 1 == 0 {
                            if kind == SETTINGS {
                                out.extend(h2_frame(SETTINGS, 1, &[]));
                            } else if kind == PING {
                                out.extend(h2_frame(PING, 1, &buf[9..9 + len]));
                            }
                        }
                        buf.drain(..9 + len);
                    }
                }
            }
        }
        if !out.is_empty() && (s.write_all(&out).await.is_err() || s.flush().await.is_err()) {
            break true;
        }
    };
    (closed, kinds)
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed() {
    // One connection at a time: the next client is served once the idle one is closed.
    let env = Env::with(limits("  idle_timeout: 1s\n  max_connections: 1\n", "")).await;
    let ((closed, kinds), served) = tokio::join!(
        h2_without_requests(&env, H2Client::Polite, 10),
        served_after(&env, Duration::from_secs(3), 7),
    );
    assert!(kinds.contains(&GOAWAY), "{kinds:?}");
    assert!(closed, "closed after GOAWAY: {kinds:?}");
    assert!(served, "the slot it held serves another client");
}

/// Whether, after `delay`, a new client gets a connection and an answer within `secs`.
async fn served_after(env: &Env, delay: Duration, secs: u64) -> bool {
    tokio::time::sleep(delay).await;
    let token = env.token("agent");
    let group = format!("{}?api-version=2022-09-01", env.rg());
    tokio::time::timeout(Duration::from_secs(secs), async {
        let tcp = TcpStream::connect(env.gw.gateway_addr).await.ok()?;
        let s = handshake(env, tcp, &[b"http/1.1"]).await.ok()?;
        let mut c = Conn { s, buf: Vec::new() };
        c.send(head(env, "GET", &group, Some(&token), &[]).as_bytes())
            .await;
        c.reply_now().await.map(|r| r.status == 200)
    })
    .await
    .ok()
    .flatten()
    .unwrap_or(false)
}

/// A client that stops answering (gone, or hostile) must not keep its connection, and so a
/// connection slot, for ever: closing an idle connection may not wait on the client.
#[tokio::test]
async fn an_idle_http2_connection_whose_client_stopped_answering_is_closed() {
    let env = Env::with(limits("  idle_timeout: 1s\n  max_connections: 1\n", "")).await;
    let ((closed, kinds), served) = tokio::join!(
        h2_without_requests(&env, H2Client::Silent, 10),
        served_after(&env, Duration::from_secs(3), 7),
    );
    eprintln!(
        "silent h2 client: closed={closed}, frames from the gateway {kinds:?}; \
         another client served meanwhile: {served}"
    );
    assert!(
        closed && served,
        "an HTTP/2 connection with nothing in flight, whose client stopped answering, is still \
         open 10 s past a 1 s idle timeout (frames from the gateway: {kinds:?}; GOAWAY = 7, \
         PING = 6); with max_connections 1, another client was served meanwhile: {served}"
    );
}

/// PINGs are not requests: a connection that only pings has nothing in flight.
#[tokio::test]
async fn pings_alone_do_not_keep_an_http2_connection_open() {
    let env = Env::with(limits("  idle_timeout: 1s\n  max_connections: 1\n", "")).await;
    let ((closed, kinds), served) = tokio::join!(
        h2_without_requests(&env, H2Client::Pinging, 10),
        served_after(&env, Duration::from_secs(3), 7),
    );
    eprintln!(
        "pinging h2 client: closed={closed}, {} frames from the gateway; another client \
         served meanwhile: {served}",
        kinds.len()
    );
    assert!(
        closed && served,
        "an HTTP/2 connection that sends only PINGs (no request ever) is still open 10 s past \
         a 1 s idle timeout; with max_connections 1, another client was served meanwhile: \
         {served}"
    );
}

// === 6. the connection cap ===

#[tokio::test]
async fn a_connection_beyond_the_cap_waits_until_one_closes() {
    let env = Env::with(limits("  max_connections: 2\n", "")).await;
    let first = Conn::open(&env).await;
    let mut second = Conn::open(&env).await;
    let tcp = within(10, "TCP connect", TcpStream::connect(env.gw.gateway_addr))
        .await
        .unwrap();
    let (config, ip) = (tls_config(&env, &[b"http/1.1"]), env.gw.gateway_addr.ip());
    let mut third = tokio::spawn(async move {
        TlsConnector::from(config)
            .connect(ServerName::from(ip), tcp)
            .await
    });
    assert!(
        tokio::time::timeout(Duration::from_secs(1), &mut third)
            .await
            .is_err(),
        "with two connections open, a third's handshake does not complete"
    );
    drop(first);
    let third = within(10, "the third handshake once one closed", third)
        .await
        .unwrap()
        .expect("the third handshake completes");
    let since = env.sim.last_call_seq();
    let mut third = Conn {
        s: third,
        buf: Vec::new(),
    };
    let group = format!("{}?api-version=2022-09-01", env.rg());
    let token = env.token("agent");
    third
        .send(head(&env, "GET", &group, Some(&token), &[]).as_bytes())
        .await;
    let r = third.reply().await.expect("an answer");
    assert_eq!(r.status, 200, "{}", r.text());
    second
        .send(head(&env, "GET", &group, Some(&token), &[]).as_bytes())
        .await;
    let r = second.reply().await.expect("an answer");
    assert_eq!(r.status, 200, "the second still works: {}", r.text());
    assert_eq!(env.azure_calls(since).len(), 2);
}

// === 7. per-principal rate limits ===

#[tokio::test]
async fn a_principal_over_its_rate_gets_429_and_others_do_not() {
    let env = Env::with(limits(
        "  rate_per_principal: 1\n  burst_per_principal: 3\n",
        "",
    ))
    .await;
    let (agent, other) = (env.token("agent"), env.token("overage-agent"));
    let group = format!("{}?api-version=2022-09-01", env.rg());
    let secret = "/keyvault/demo-kv/secrets/db-password?api-version=7.4";
    let since = env.sim.last_call_seq();

    // The burst passes; the next is refused. (Requests are sent until the refusal, so a
    // slow machine refilling a token between two of them changes nothing.)
    let mut passed = 0;
    let (h, b) = loop {
        let (s, h, b) = env.call(Some(&agent), Method::GET, &group, None).await;
        if s == StatusCode::TOO_MANY_REQUESTS {
            break (h, b);
        }
        assert_eq!(s, StatusCode::OK, "{b}");
        passed += 1;
        assert!(passed < 20, "never throttled");
    };
    assert!(passed >= 3, "the burst of 3 passes: {passed}");
    assert_eq!(h["x-ms-error-code"], "TooManyRequests");
    assert_eq!(b["error"]["code"], "TooManyRequests", "ARM's shape: {b}");
    let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1, "{retry}");

    // Another principal, at the same moment.
    let (s, _, b) = env.call(Some(&other), Method::GET, &group, None).await;
    assert_eq!(s, StatusCode::OK, "another principal is not throttled: {b}");

    // The same principal on Key Vault: Key Vault's code.
    let mut kv_passed = 0;
    let (h, b) = loop {
        let (s, h, b) = env.call(Some(&agent), Method::GET, secret, None).await;
        if s == StatusCode::TOO_MANY_REQUESTS {
            break (h, b);
        }
        assert_eq!(s, StatusCode::OK, "{b}");
        kv_passed += 1;
        assert!(kv_passed < 20, "never throttled");
    };
    assert_eq!(h["x-ms-error-code"], "Throttled");
    assert_eq!(b["error"]["code"], "Throttled", "Key Vault's code: {b}");
    let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1, "{retry}");

    // Nothing throttled was forwarded.
    let calls = env.azure_calls(since);
    let arm = calls
        .iter()
        .filter(|c| c.service == azure_sim::Service::Arm)
        .count();
    let kv = calls
        .iter()
        .filter(|c| c.service == azure_sim::Service::KeyVault)
        .count();
    assert_eq!((arm, kv), (passed + 1, kv_passed), "{:?}", paths(&calls));
    // And both refusals are recorded, with the principal.
    let refused = refusals(&env, 429, "").await;
    assert_eq!(refused.len(), 2, "{refused:?}");
    let agent_id = object_id(&env, "agent");
    assert!(
        refused
            .iter()
            .all(|r| r.principal.as_deref() == Some(agent_id.as_str())),
        "{refused:?}"
    );
    assert!(
        refused
            .iter()
            .any(|r| r.url.contains("/secrets/db-password"))
    );

    // After Retry-After, the principal passes again.
    tokio::time::sleep(Duration::from_secs(retry)).await;
    let (s, _, b) = env.call(Some(&agent), Method::GET, &group, None).await;
    assert_eq!(s, StatusCode::OK, "after Retry-After: {b}");
}

// === 8. vault names cannot choose the upstream host ===

#[tokio::test]
async fn vault_names_cannot_choose_the_upstream_host() {
    let env = Env::with(Setup {
        public_host: Some("gw.test"),
        ..Setup::default()
    })
    .await;
    let token = env.token("agent");
    let port = env.gw.gateway_addr.port();
    let long = "a".repeat(25);
    let longer = "a".repeat(300);
    let names = [
        "evil.com%23",
        "evil.com#",
        "169.254.169.254",
        "localhost:80",
        "a..b",
        "%2e%2e",
        "evil.com",
        "demo-kv.evil.com",
        "demo-kv%2Fx",
        "demo-kv@evil.com",
        long.as_str(),
        longer.as_str(),
    ];
    let raw = |host: &str, target: &str| {
        format!(
            "GET {target} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        )
    };

    // The routes work for a real vault.
    let r = exchange(
        &env,
        raw(
            &format!("127.0.0.1:{port}"),
            "/keyvault/demo-kv/secrets/db-password?api-version=7.4",
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "by path: {}", r.text());
    let r = exchange(
        &env,
        raw(
            &format!("demo-kv.vault.gw.test:{port}"),
            "/secrets/db-password?api-version=7.4",
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "by host: {}", r.text());

    let since = env.sim.last_call_seq();
    let mut by_pipeline = 0;
    for name in names {
        for (how, host, target) in [
            (
                "path",
                format!("127.0.0.1:{port}"),
                format!("/keyvault/{name}/secrets/x?api-version=7.4"),
            ),
            (
                "host",
                format!("{name}.vault.gw.test:{port}"),
                "/secrets/x?api-version=7.4".to_owned(),
            ),
        ] {
            let r = exchange(&env, raw(&host, &target).as_bytes())
                .await
                .unwrap_or_else(|| panic!("{how} {name:?}: no answer"));
            assert_eq!(r.status, 400, "{how} {name:?}: {}", r.text());
            if r.json()["error"]["code"] == "InvalidRequestPath" {
                by_pipeline += 1;
            } else {
                eprintln!("{how} {name:?}: refused before the pipeline: {}", r.text());
            }
        }
    }
    let calls = env.sim.calls_since(since);
    assert!(
        calls.is_empty(),
        "nothing reaches the simulator, whatever the service: {:?}",
        paths(&calls)
    );
    let refused = refusals(&env, 400, "").await;
    assert_eq!(
        refused.len(),
        by_pipeline,
        "every refusal by the pipeline is recorded: {refused:?}"
    );
    assert!(by_pipeline >= 2 * names.len() - 2, "{by_pipeline}");
}

/// Two `Host` headers, or a `Host` that disagrees with an absolute-form target, are two
/// answers to where a request goes: refused before routing (issue 19, finding 9). Before
/// the fix the first `Host` decided and the request was served.
#[tokio::test]
async fn two_hosts_for_one_request_are_refused() {
    let env = Env::start().await;
    let token = env.token("agent");
    let path = format!("{}?api-version=2022-09-01", env.rg());
    let addr = env.gw.gateway_addr;
    let since = env.sim.last_call_seq();
    for heads in [
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nHost: demo-kv.vault.localhost\r\n"),
        format!("GET {path} HTTP/1.1\r\nHost: demo-kv.vault.localhost\r\nHost: {addr}\r\n"),
        format!("GET https://{addr}{path} HTTP/1.1\r\nHost: demo-kv.vault.localhost\r\n"),
    ] {
        let req = format!("{heads}Authorization: Bearer {token}\r\nConnection: close\r\n\r\n");
        let r = exchange(&env, req.as_bytes()).await.expect("an answer");
        assert_eq!(r.status, 400, "{}", r.text());
        assert_eq!(r.json()["error"]["code"], "InvalidHost", "{}", r.text());
    }
    assert!(env.azure_calls(since).is_empty(), "nothing reached Azure");
    // One Host, agreeing with an absolute-form target, is served.
    let req = format!(
        "GET https://{addr}{path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    let r = exchange(&env, req.as_bytes()).await.expect("an answer");
    assert_eq!(r.status, 200, "{}", r.text());
}

// === 8. the admin listener's per-client rate limit ===

/// A client of the admin listener connecting from `from`, trusting the gateway's CA.
fn admin_client_from(env: &Env, from: std::net::IpAddr) -> reqwest::Client {
    let pem = std::fs::read(env.gw.ca_file.clone().unwrap()).unwrap();
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .local_address(from)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_one_client_of_the_admin_listener_is_refused_429_and_others_are_not() {
    // The default limits (`limits.admin_rate_per_client` 50/s, burst 200).
    let env = Env::with(Setup::default()).await;
    let url = format!("https://{}/healthz", env.gw.admin_addr);
    let flooder = admin_client_from(&env, "127.0.0.1".parse().unwrap());
    // Waves of concurrent requests over real sockets until one is refused (a slow machine
    // refilling the bucket between waves changes nothing but how many it takes).
    let started = Instant::now();
    let mut sent = 0;
    let refused = 'flood: loop {
        let mut wave = tokio::task::JoinSet::new();
        for _ in 0..50 {
            let (c, u) = (flooder.clone(), url.clone());
            wave.spawn(async move { c.get(u).send().await.unwrap() });
        }
        sent += 50;
        while let Some(r) = wave.join_next().await {
            let r = r.unwrap();
            if r.status() == StatusCode::TOO_MANY_REQUESTS {
                break 'flood r;
            }
            assert_eq!(r.status(), StatusCode::OK);
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{sent} requests in a minute, none refused"
        );
    };
    assert!(sent > 200, "the burst of 200 passes: {sent}");
    let retry: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1, "{retry}");
    let b: Value = refused.json().await.unwrap();
    assert_eq!(b["error"]["code"], "TooManyRequests", "ARM's shape: {b}");

    // Another client (another loopback address) at the same moment is served.
    let other = admin_client_from(&env, "127.0.0.2".parse().unwrap());
    let r = other.get(&url).send().await.unwrap();
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "another client is not throttled"
    );
}
