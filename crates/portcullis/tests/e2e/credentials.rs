//! The gateway's own upstream credentials, each against the simulated Entra ID: client
//! certificate assertions, workload identity (a federated token file, re-read every time),
//! and managed identity over IMDS and the App Service protocol. In each case Azure must see
//! the identity the credential names, never the agent.

use std::path::Path;

use azure_sim::Simulator;
use reqwest::{Method, StatusCode};
use rsa::pkcs8::{EncodePrivateKey, LineEnding};

use crate::{Env, Setup};

/// Reads demo-rg through the gateway and returns who ARM saw.
async fn arm_caller(env: &Env) -> String {
    let since = env.sim.last_call_seq();
    let (s, _, body) = env
        .agent(
            Method::GET,
            &format!("{}?api-version=2022-09-01", env.rg()),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let calls = env.sim.calls_since(since);
    let arm = calls
        .iter()
        .find(|c| c.service == azure_sim::Service::Arm)
        .expect("the request reached ARM");
    arm.caller
        .as_ref()
        .and_then(|c| c.name.clone())
        .unwrap_or_default()
}

fn self_signed_rsa(name: &str) -> String {
    let key = rsa::PrivateKey::new(&mut getrandom::SysRng, 2048).unwrap();
    let key_pem = key.to_pkcs8_pem(LineEnding::LF).unwrap();
    let pair =
        rcgen::KeyPair::from_pkcs8_pem_and_sign_algo(&key_pem, &rcgen::PKCS_RSA_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
        .unwrap()
        .self_signed(&pair)
        .unwrap();
    format!("{}{}", cert.pem(), key_pem.as_str())
}

#[tokio::test]
async fn client_certificate_assertions() {
    let setup = Setup {
        credential: Some(Box::new(|sim: &Simulator, dir: &Path| {
            let bundle = self_signed_rsa("portcullis-elevated");
            sim.register_certificate("portcullis-elevated", &bundle)
                .unwrap();
            std::fs::write(dir.join("elevated.pem"), &bundle).unwrap();
            let id = sim
                .config()
                .principal("portcullis-elevated")
                .unwrap()
                .app_id
                .unwrap();
            format!("{{type: client_certificate, client_id: {id}, certificate_file: elevated.pem}}")
        })),
        ..Setup::default()
    };
    let env = Env::with(setup).await;
    assert_eq!(arm_caller(&env).await, "portcullis-elevated");
}

#[tokio::test]
async fn an_unregistered_certificate_fails_closed() {
    let setup = Setup {
        credential: Some(Box::new(|sim: &Simulator, dir: &Path| {
            std::fs::write(dir.join("rogue.pem"), self_signed_rsa("rogue")).unwrap();
            let id = sim
                .config()
                .principal("portcullis-elevated")
                .unwrap()
                .app_id
                .unwrap();
            format!("{{type: client_certificate, client_id: {id}, certificate_file: rogue.pem}}")
        })),
        ..Setup::default()
    };
    let env = Env::with(setup).await;
    let since = env.sim.last_call_seq();
    let (s, _, body) = env
        .agent(
            Method::GET,
            &format!("{}?api-version=2022-09-01", env.rg()),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(body["error"]["code"], "GatewayUpstreamCredentialFailed");
    assert!(
        env.arm_calls(since).is_empty(),
        "nothing forwarded without the gateway's credential"
    );
}

#[tokio::test]
async fn workload_identity_exchanges_the_federated_token() {
    let setup = Setup {
        credential: Some(Box::new(|sim: &Simulator, dir: &Path| {
            let subject = "system:serviceaccount:portcullis:gateway";
            sim.add_federated_credential("portcullis-elevated", &sim.v2_issuer(), subject);
            let token = sim
                .mint(serde_json::from_value(serde_json::json!({
                    "principal": "portcullis-elevated", "audience": "api://AzureADTokenExchange", "version": 2,
                    "claims": {"sub": subject, "aud": "api://AzureADTokenExchange"}
                })).unwrap())
                .unwrap();
            std::fs::write(dir.join("federated-token"), token).unwrap();
            let id = sim
                .config()
                .principal("portcullis-elevated")
                .unwrap()
                .app_id
                .unwrap();
            format!("{{type: workload_identity, client_id: {id}, token_file: federated-token}}")
        })),
        ..Setup::default()
    };
    let env = Env::with(setup).await;
    assert_eq!(arm_caller(&env).await, "portcullis-elevated");
}

#[tokio::test]
async fn managed_identity_over_imds_and_app_service() {
    let imds = Setup {
        credential: Some(Box::new(|sim: &Simulator, _dir: &Path| {
            format!(
                "{{type: managed_identity, protocol: imds, endpoint: \"{}/metadata/identity/oauth2/token\"}}",
                sim.url()
            )
        })),
        ..Setup::default()
    };
    let env = Env::with(imds).await;
    assert_eq!(arm_caller(&env).await, "gateway-identity");

    let app_service = Setup {
        credential: Some(Box::new(|sim: &Simulator, dir: &Path| {
            let header = sim.state_with_credentials()["identity_header"]
                .as_str()
                .unwrap()
                .to_owned();
            std::fs::write(dir.join("identity-header"), header).unwrap();
            format!(
                "{{type: managed_identity, protocol: app_service, endpoint: \"{}/msi/token\", identity_header: {{file: identity-header}}}}",
                sim.url()
            )
        })),
        ..Setup::default()
    };
    let env = Env::with(app_service).await;
    assert_eq!(arm_caller(&env).await, "gateway-identity");
}
