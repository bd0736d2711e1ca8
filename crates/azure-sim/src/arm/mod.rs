//! Azure Resource Manager: authentication, `api-version`, routing of ARM paths to the
//! generic resource engine and the per-provider behaviours, paging, and the headers every
//! ARM answer carries.
//! <https://github.com/Azure/azure-resource-manager-rpc/blob/master/v1.0/resource-api-reference.md>

pub mod batch;
pub mod compute;
pub mod deployments;
pub mod keyvault;
pub mod lro;
pub mod resources;
pub mod route;
pub mod storage;
pub mod template;

use http::StatusCode;
use serde_json::{Value, json};

use crate::auth::{AuthError, authenticate};
use crate::calls::Caller;
use crate::sim::Sim;
use crate::wire::{SimRequest, SimResponse, arm_error};

/// One ARM request being served.
pub struct Ctx<'a> {
    pub sim: &'a Sim,
    pub req: &'a SimRequest,
    /// Who is calling (batch entries run as the batch's caller).
    pub caller: Option<&'a Caller>,
    pub api_version: String,
}

/// The entry point for every ARM request: authenticate, then serve.
pub fn handle(sim: &Sim, req: &SimRequest) -> (SimResponse, Option<Caller>) {
    let caller = match authenticate(sim, req, &["arm"]) {
        Ok(c) => c,
        Err(e) => return (unauthenticated(&e), None),
    };
    let response = serve(sim, req, Some(&caller), false);
    (decorate(response, req), Some(caller))
}

/// ARM's 401s, with the codes it uses for each failure.
fn unauthenticated(e: &AuthError) -> SimResponse {
    let (code, message) = match e {
        AuthError::Missing => (
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing.".to_owned(),
        ),
        AuthError::Expired => (
            "ExpiredAuthenticationToken",
            "The access token expiry UTC time is earlier than current UTC time.".to_owned(),
        ),
        AuthError::Audience(aud) => (
            "InvalidAuthenticationTokenAudience",
            format!(
                "The access token has been obtained for wrong audience or resource '{aud}'. It should exactly match with one of the allowed audiences 'https://management.core.windows.net/','https://management.core.windows.net','https://management.azure.com/','https://management.azure.com'."
            ),
        ),
        AuthError::Issuer(_) => (
            "InvalidAuthenticationTokenTenant",
            format!("The access token is from the wrong issuer: {e}."),
        ),
        _ => (
            "InvalidAuthenticationToken",
            format!("The received access token is not valid: {e}."),
        ),
    };
    arm_error(StatusCode::UNAUTHORIZED, code, message).header(
        "www-authenticate",
        format!("Bearer authorization_uri=\"https://login.windows.net/\", error=\"invalid_token\", error_description=\"{code}\""),
    )
}

/// Adds the headers every ARM answer carries; echoes the client's correlation id.
pub fn decorate(mut r: SimResponse, req: &SimRequest) -> SimResponse {
    let correlation = req
        .header("x-ms-correlation-request-id")
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let request_id = uuid::Uuid::new_v4().to_string();
    r = r
        .header("x-ms-request-id", &request_id)
        .header("x-ms-correlation-request-id", correlation)
        .header(
            "x-ms-routing-request-id",
            format!(
                "EASTUS:{}:{request_id}",
                chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
            ),
        );
    if req.method == http::Method::GET {
        r.header("x-ms-ratelimit-remaining-subscription-reads", "11999")
    } else {
        r.header("x-ms-ratelimit-remaining-subscription-writes", "1199")
    }
}

fn valid_api_version(v: &str) -> bool {
    let (Some(date), Some(suffix)) = (v.get(..10), v.get(10..)) else {
        return false;
    };
    let b = date.as_bytes();
    let date_ok = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    date_ok
        && matches!(
            suffix,
            "" | "-preview" | "-beta" | "-alpha" | "-privatepreview"
        )
}

/// Serves an authenticated request (also each request inside a batch).
pub fn serve(sim: &Sim, req: &SimRequest, caller: Option<&Caller>, in_batch: bool) -> SimResponse {
    let Some(api_version) = req.query("api-version").filter(|v| !v.is_empty()) else {
        return arm_error(
            StatusCode::BAD_REQUEST,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        );
    };
    if !valid_api_version(&api_version) {
        return arm_error(
            StatusCode::BAD_REQUEST,
            "InvalidApiVersionParameter",
            format!(
                "The api-version '{api_version}' is invalid. The supported versions are dates of the form 'yyyy-mm-dd', optionally followed by '-preview'."
            ),
        );
    }
    let ctx = Ctx {
        sim,
        req,
        caller,
        api_version,
    };
    let segments = req.segments();
    if segments.len() == 1 && segments[0].eq_ignore_ascii_case("batch") {
        if in_batch {
            return arm_error(
                StatusCode::BAD_REQUEST,
                "InvalidBatchRequest",
                "A batch request cannot contain another batch request.",
            );
        }
        return batch::handle(&ctx);
    }
    match route::parse(&segments, &req.method) {
        Ok(route) => resources::serve(&ctx, route),
        Err(r) => r,
    }
}

/// One page of a list, with an absolute `nextLink` while more remain (ARM omits it on the
/// last page). The skip token is an offset: the list is rebuilt on every page.
pub fn page(ctx: &Ctx<'_>, items: Vec<Value>) -> Result<Value, SimResponse> {
    let req = ctx.req;
    let mut size = ctx.sim.config.page_size;
    if let Some(top) = req.query("$top") {
        match top.parse::<usize>() {
            Ok(n) if n > 0 => size = size.min(n),
            _ => {
                return Err(arm_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidParameter",
                    format!("The value '{top}' of $top is not valid."),
                ));
            }
        }
    }
    let skip = match req.query("$skiptoken") {
        Some(t) => t.parse::<usize>().map_err(|_| {
            arm_error(
                StatusCode::BAD_REQUEST,
                "InvalidSkipToken",
                "The skip token is not valid.",
            )
        })?,
        None => 0,
    };
    let total = items.len();
    let value: Vec<Value> = items.into_iter().skip(skip).take(size).collect();
    let mut body = json!({ "value": value });
    if skip + size < total {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in form_urlencoded::parse(req.raw_query.as_bytes()) {
            if !k.eq_ignore_ascii_case("$skiptoken") {
                q.append_pair(&k, &v);
            }
        }
        q.append_pair("$skiptoken", &(skip + size).to_string());
        body["nextLink"] = json!(format!(
            "{}{}?{}",
            req.base_url,
            req.path,
            q.finish().replace("%24skiptoken=", "$skiptoken=")
        ));
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_versions() {
        for ok in ["2024-07-01", "2020-06-01", "2023-01-01-preview"] {
            assert!(valid_api_version(ok), "{ok}");
        }
        for bad in [
            "",
            "2024",
            "latest",
            "2024-07-01x",
            "2024-7-01",
            "abcd-ef-gh",
            "2024-07-01-",
        ] {
            assert!(!valid_api_version(bad), "{bad}");
        }
    }
}
