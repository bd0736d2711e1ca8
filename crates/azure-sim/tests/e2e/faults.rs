//! Fault injection through the control endpoint: latency, error statuses, throttling and
//! dropped connections, bounded by count and path.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::{API, Env, header, send};

#[tokio::test]
async fn errors_throttling_and_limits() {
    let env = Env::start().await;
    let path = format!("{}/resourcegroups?{API}", env.sub());
    let (s, _, _) = send(
        env.http
            .put(env.url("/_sim/faults"))
            .json(&json!({"error_rate": 1.0, "error_status": 503, "remaining": 2})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    for _ in 0..2 {
        let (s, _, body) = env.arm(Method::GET, &path, None).await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"]["code"], "InternalServerError");
    }
    let (s, _, _) = env.arm(Method::GET, &path, None).await;
    assert_eq!(s, StatusCode::OK, "the fault ran out");

    env.sim
        .set_faults(azure_sim::Faults {
            throttle_rate: 1.0,
            throttle_retry_after: Some(7),
            path_prefix: Some("/SUBSCRIPTIONS".into()),
            ..Default::default()
        })
        .unwrap();
    let (s, h, body) = env.arm(Method::GET, &path, None).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&h, "retry-after"), "7");
    assert_eq!(body["error"]["code"], "TooManyRequests");
    let (s, _, _) = send(
        env.http
            .get(env.url(&format!("/{}/discovery/keys", env.sim.tenant_id()))),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "paths outside the prefix are untouched");
    let (s, _, _) = send(env.http.get(env.url("/_sim/health"))).await;
    assert_eq!(s, StatusCode::OK, "control endpoints are never faulted");

    let (s, _, _) = send(
        env.http
            .put(env.url("/_sim/faults"))
            .json(&json!({"error_rate": 2.0})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _, _) = send(
        env.http
            .put(env.url("/_sim/faults"))
            .json(&json!({"bogus": 1})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _, _) = send(env.http.delete(env.url("/_sim/faults"))).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _, _) = env.arm(Method::GET, &path, None).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn latency_and_dropped_connections() {
    let env = Env::start().await;
    let path = format!("{}/resourcegroups?{API}", env.sub());
    env.sim
        .set_faults(azure_sim::Faults {
            latency_ms: 300,
            remaining: Some(1),
            ..Default::default()
        })
        .unwrap();
    let started = Instant::now();
    let (s, _, _) = env.arm(Method::GET, &path, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "the answer was held back"
    );

    env.sim
        .set_faults(azure_sim::Faults {
            drop_rate: 1.0,
            remaining: Some(1),
            ..Default::default()
        })
        .unwrap();
    let token = env.token("portcullis-baseline", crate::ARM);
    let err = env
        .http
        .get(env.url(&path))
        .bearer_auth(&token)
        .send()
        .await;
    assert!(
        err.is_err(),
        "the connection closes without an answer: {err:?}"
    );
    let (s, _, _) = env.arm(Method::GET, &path, None).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn forced_encodings() {
    let env = Env::start().await;
    let path = format!("{}/resourcegroups?{API}", env.sub());
    for coding in ["gzip", "deflate", "br"] {
        env.sim
            .set_faults(azure_sim::Faults {
                force_encoding: Some(coding.into()),
                ..Default::default()
            })
            .unwrap();
        let token = env.token("portcullis-baseline", crate::ARM);
        let resp = env
            .http
            .get(env.url(&path))
            .bearer_auth(&token)
            .header("accept-encoding", "identity")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.headers()["content-encoding"], coding);
    }
    assert!(
        env.sim
            .set_faults(azure_sim::Faults {
                force_encoding: Some("zstd".into()),
                ..Default::default()
            })
            .is_err()
    );
}
