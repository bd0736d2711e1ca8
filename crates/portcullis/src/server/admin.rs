//! The admin listener: health today; the approvals API and console arrive with their issues.

use bytes::Bytes;
use http::{Response, StatusCode};

use crate::upstream::client::{Body, full};

pub async fn handle(req: http::Request<hyper::body::Incoming>) -> Response<Body> {
    let (status, body) = match req.uri().path() {
        "/healthz" => (StatusCode::OK, r#"{"status":"ok"}"#),
        _ => (
            StatusCode::NOT_FOUND,
            r#"{"error":{"code":"NotFound","message":"no such admin endpoint"}}"#,
        ),
    };
    let mut r = Response::new(full(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}
