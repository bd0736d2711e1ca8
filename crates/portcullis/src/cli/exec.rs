//! `portcullis exec [--gateway URL] [--token-command CMD] -- COMMAND...` runs an agent (a
//! Python program, the az CLI, a shell) wired to the gateway without changing it:
//!
//! - a local token endpoint in the App Service managed-identity protocol
//!   (`IDENTITY_ENDPOINT` + `IDENTITY_HEADER`), which every Azure SDK's default credential
//!   and `az login --identity` understand; it hands out the agent's gateway token, whatever
//!   resource is asked for (the gateway accepts only its own audience, and forwards with its
//!   own credential);
//! - the gateway's CA for TLS (`REQUESTS_CA_BUNDLE`, `SSL_CERT_FILE`, `CURL_CA_BUNDLE`);
//! - a private az configuration directory (`AZURE_CONFIG_DIR`) with a cloud whose Resource
//!   Manager endpoint is the gateway;
//! - `PORTCULLIS_URL`, `PORTCULLIS_CA`, and `AZURE_RESOURCE_MANAGER_ENDPOINT` for programs
//!   that pass a `base_url`.
//!
//! The agent's own token comes from `--token-command` (run again when the last one is about
//! to expire) or from `PORTCULLIS_AGENT_TOKEN`. `portcullis env` prints the same settings
//! for a shell, with its token endpoint kept running in the foreground.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Mutex;

/// Where the agent's gateway comes from.
#[derive(clap::Args, Clone)]
pub struct WiringArgs {
    /// The gateway's URL (default: PORTCULLIS_URL, as `portcullis demo` writes it).
    #[arg(long, env = "PORTCULLIS_URL")]
    gateway: String,
    /// The CA certificate(s) the gateway's TLS chains to (default: PORTCULLIS_CA).
    #[arg(long, env = "PORTCULLIS_CA")]
    ca: Option<PathBuf>,
    /// A shell command printing the agent's gateway token (its own credential flow); run
    /// again when the token is about to expire. Default: the PORTCULLIS_AGENT_TOKEN variable.
    #[arg(long)]
    token_command: Option<String>,
    /// The az configuration directory to write (default: a private temporary one).
    #[arg(long)]
    az_config_dir: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct ExecArgs {
    #[command(flatten)]
    wiring: WiringArgs,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

#[derive(clap::Args)]
pub struct EnvArgs {
    #[command(flatten)]
    wiring: WiringArgs,
}

/// Where tokens come from, cached until shortly before they expire.
struct TokenSource {
    command: Option<String>,
    cached: Mutex<Option<(String, u64)>>,
}

impl TokenSource {
    async fn token(&self) -> anyhow::Result<(String, u64)> {
        let mut cached = self.cached.lock().await;
        let now = unix_now();
        if let Some((t, exp)) = cached.as_ref()
            && *exp > now + 120
        {
            return Ok((t.clone(), *exp));
        }
        let token = match &self.command {
            Some(cmd) => {
                let out = tokio::process::Command::new("sh")
                    .arg("-c")
                    .arg(cmd)
                    .stdin(std::process::Stdio::null())
                    .stderr(std::process::Stdio::inherit())
                    .output()
                    .await
                    .context("running --token-command")?;
                if !out.status.success() {
                    bail!("--token-command failed ({})", out.status);
                }
                String::from_utf8(out.stdout)
                    .context("--token-command printed something that is not text")?
                    .trim()
                    .to_owned()
            }
            None => std::env::var("PORTCULLIS_AGENT_TOKEN")
                .context("no --token-command and no PORTCULLIS_AGENT_TOKEN")?
                .trim()
                .to_owned(),
        };
        if token.is_empty() || token.contains(char::is_whitespace) {
            bail!("the agent's token is empty or not a single word");
        }
        // The expiry is read (not verified: the gateway verifies) only to know when to ask
        // again; a token whose expiry cannot be read is asked for again in five minutes.
        let exp = expiry(&token).unwrap_or(now + 300);
        *cached = Some((token.clone(), exp));
        Ok((token, exp))
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

fn expiry(token: &str) -> Option<u64> {
    crate::identity::jwt::unverified_claims(token).ok()?["exp"].as_u64()
}

/// The running wiring: the token endpoint and the environment for the agent.
pub struct Wiring {
    pub env: Vec<(String, String)>,
    _az_dir: Option<TempDir>,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub async fn wire(args: &WiringArgs) -> anyhow::Result<Wiring> {
    let gateway = args.gateway.trim_end_matches('/').to_owned();
    let parsed = url::Url::parse(&gateway).context("--gateway is not a URL")?;
    if parsed.scheme() != "https" {
        bail!(
            "the gateway must be reached over https (Azure clients refuse bearer tokens over http)"
        );
    }
    let ca = match &args.ca {
        Some(ca) => Some(
            ca.canonicalize()
                .with_context(|| format!("the CA file {}", ca.display()))?,
        ),
        None => None,
    };
    let tokens = Arc::new(TokenSource {
        command: args.token_command.clone(),
        cached: Mutex::new(None),
    });
    // Fail now, not in the agent's first request, when no token can be had.
    tokens.token().await?;
    let secret = uuid::Uuid::new_v4().simple().to_string();
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let endpoint = format!("http://{}/msi/token", listener.local_addr()?);
    tokio::spawn(serve_tokens(listener, tokens, secret.clone()));

    let (az_dir, temp) = match &args.az_config_dir {
        Some(d) => (d.clone(), None),
        None => {
            let d = std::env::temp_dir().join(format!("portcullis-az-{}", uuid::Uuid::new_v4()));
            (d.clone(), Some(TempDir(d)))
        }
    };
    write_az_config(&az_dir, &gateway)?;

    let mut env = vec![
        ("PORTCULLIS_URL".to_owned(), gateway.clone()),
        (
            "AZURE_RESOURCE_MANAGER_ENDPOINT".to_owned(),
            format!("{gateway}/"),
        ),
        ("IDENTITY_ENDPOINT".to_owned(), endpoint.clone()),
        ("IDENTITY_HEADER".to_owned(), secret.clone()),
        // The older names some clients still read.
        ("MSI_ENDPOINT".to_owned(), endpoint),
        ("MSI_SECRET".to_owned(), secret),
        ("AZURE_CONFIG_DIR".to_owned(), az_dir.display().to_string()),
        // Nothing should pick another identity over the endpoint above.
        ("AZURE_CLIENT_SECRET".to_owned(), String::new()),
        ("AZURE_FEDERATED_TOKEN_FILE".to_owned(), String::new()),
    ];
    if let Some(ca) = ca {
        let ca = ca.display().to_string();
        for k in [
            "PORTCULLIS_CA",
            "REQUESTS_CA_BUNDLE",
            "SSL_CERT_FILE",
            "CURL_CA_BUNDLE",
        ] {
            env.push((k.to_owned(), ca.clone()));
        }
    }
    Ok(Wiring { env, _az_dir: temp })
}

/// A cloud for the az CLI whose Resource Manager is the gateway (`az cloud register` writes
/// the same file).
fn write_az_config(dir: &Path, gateway: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    // Vaults are `{vault}.vault.{public_host}` on the gateway's port: az appends the suffix
    // to the vault's name, so the port rides in it.
    let url = url::Url::parse(gateway)?;
    let host = url.host_str().unwrap_or("localhost");
    let host = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    std::fs::write(
        dir.join("clouds.config"),
        format!(
            "[Portcullis]\n\
             endpoint_resource_manager = {gateway}/\n\
             endpoint_management = {gateway}/\n\
             endpoint_active_directory = https://login.microsoftonline.com\n\
             endpoint_active_directory_resource_id = {gateway}/\n\
             endpoint_active_directory_graph_resource_id = https://graph.windows.net/\n\
             endpoint_microsoft_graph_resource_id = https://graph.microsoft.com/\n\
             endpoint_gallery = https://gallery.azure.com/\n\
             suffix_keyvault_dns = .vault.{host}\n\
             suffix_storage_endpoint = core.windows.net\n"
        ),
    )?;
    std::fs::write(
        dir.join("config"),
        "[cloud]\nname = Portcullis\n\n[core]\ncollect_telemetry = false\nsurvey_message = false\n",
    )?;
    Ok(())
}

async fn serve_tokens(listener: TcpListener, tokens: Arc<TokenSource>, secret: String) {
    let secret = Arc::new(secret);
    loop {
        let Ok((tcp, peer)) = listener.accept().await else {
            continue;
        };
        // Only this machine's processes; the header proves it is ours.
        if !peer.ip().is_loopback() {
            continue;
        }
        let (tokens, secret) = (tokens.clone(), secret.clone());
        tokio::spawn(async move {
            let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let (tokens, secret) = (tokens.clone(), secret.clone());
                async move { Ok::<_, std::convert::Infallible>(answer(&req, &tokens, &secret).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

async fn answer(
    req: &http::Request<hyper::body::Incoming>,
    tokens: &TokenSource,
    secret: &str,
) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, body: serde_json::Value| {
        let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
        *r.status_mut() = status;
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        r
    };
    let given = req
        .headers()
        .get("x-identity-header")
        .or_else(|| req.headers().get("secret"))
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    let ok = crate::secret::same(given, secret.as_bytes());
    if !ok {
        return reply(
            StatusCode::UNAUTHORIZED,
            serde_json::json!({"error": "invalid_request", "error_description": "the X-IDENTITY-HEADER header is missing or wrong"}),
        );
    }
    let query: Vec<(String, String)> =
        form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let Some(resource) = query
        .iter()
        .find(|(k, _)| k == "resource")
        .map(|(_, v)| v.clone())
    else {
        return reply(
            StatusCode::BAD_REQUEST,
            serde_json::json!({"error": "invalid_request", "error_description": "the 'resource' parameter is missing"}),
        );
    };
    match tokens.token().await {
        Ok((token, exp)) => reply(
            StatusCode::OK,
            serde_json::json!({
                "access_token": token,
                "expires_on": exp.to_string(),
                "resource": resource,
                "token_type": "Bearer",
            }),
        ),
        Err(e) => {
            eprintln!("portcullis exec: {e:#}");
            reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                serde_json::json!({"error": "token_unavailable", "error_description": "the agent's token could not be obtained"}),
            )
        }
    }
}

pub async fn exec(args: ExecArgs) -> anyhow::Result<std::process::ExitCode> {
    let wiring = wire(&args.wiring).await?;
    let (program, rest) = args.command.split_first().context("no command")?;
    let mut child = tokio::process::Command::new(program)
        .args(rest)
        .envs(wiring.env.iter().map(|(k, v)| (k, v)))
        .spawn()
        .with_context(|| format!("starting {program}"))?;
    let status = tokio::select! {
        s = child.wait() => s?,
        _ = crate::cli::serve::wait_for_signal() => {
            let _ = child.start_kill();
            child.wait().await?
        }
    };
    drop(wiring);
    Ok(std::process::ExitCode::from(
        status.code().map_or(1, |c| c.clamp(0, 255) as u8),
    ))
}

pub async fn env(args: EnvArgs) -> anyhow::Result<()> {
    let wiring = wire(&args.wiring).await?;
    for (k, v) in &wiring.env {
        println!("export {k}='{}'", v.replace('\'', "'\\''"));
    }
    eprintln!(
        "portcullis env: the token endpoint serves until this command stops (Ctrl-C); source the lines above in another shell"
    );
    crate::cli::serve::wait_for_signal().await?;
    drop(wiring);
    Ok(())
}
