//! Batches: an ARM `POST /batch` (azure-notes §4) carries many requests in one body, each run
//! by ARM as the caller. The gateway parses every inner request and names it, so policy
//! judges each as if it were sent alone; a body it cannot read completely is refused, never
//! forwarded on the outer action's say-so.
//!
//! Both shapes are read: ARM's (`httpMethod`, `url`, `name`, `content`) and Graph's
//! (`method`, `url`, `id`, `body`, `headers`). Inner URLs are paths below the ARM root, or
//! absolute URLs on the ARM host itself; another host, a nested batch, an ambiguous path or
//! an operation that cannot be named refuses the whole batch.

use http::Method;
use serde::Serialize;
use serde_json::Value;

use super::operation::{self, Operation};
use super::route;
use crate::json::get;

/// ARM runs at most this many requests in one batch.
pub const MAX_INNER: usize = 500;

/// One inner request, named.
#[derive(Debug, Clone)]
pub struct Inner {
    /// The request's `name` (ARM) or `id` (Graph), else its position.
    pub name: String,
    pub method: Method,
    /// Decoded, normalized.
    pub path: String,
    pub query: String,
    pub operation: Operation,
    /// The inner body (`content` / `body`), for conditions and masking.
    pub content: Option<Value>,
}

/// What records and approvals keep of each inner request.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct InnerSummary {
    pub name: String,
    pub method: String,
    pub path: String,
    pub action: String,
    pub scope: String,
    /// `allow`, `approve` or `deny`, and the rule that decided.
    pub decision: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("the batch body is not a JSON object with a 'requests' array")]
    Shape,
    #[error("the batch holds no requests")]
    Empty,
    #[error("the batch holds {0} requests; at most {MAX_INNER} are accepted")]
    TooMany(usize),
    #[error("inner request {index} ('{name}'): {why}")]
    Inner {
        index: usize,
        name: String,
        why: String,
    },
}

/// Parses a batch body. `arm_hosts` are the authorities (`host`, or `host:port`; no port is
/// 443) an absolute inner URL may name.
pub fn parse(doc: &Value, arm_hosts: &[String]) -> Result<Vec<Inner>, BatchError> {
    // Property names are matched without regard to case, as ARM does (the body was read by
    // `json::parse`, which refuses names that differ only in case).
    let requests = get(doc, "requests")
        .and_then(Value::as_array)
        .ok_or(BatchError::Shape)?;
    if requests.is_empty() {
        return Err(BatchError::Empty);
    }
    if requests.len() > MAX_INNER {
        return Err(BatchError::TooMany(requests.len()));
    }
    let inner: Vec<Inner> = requests
        .iter()
        .enumerate()
        .map(|(index, r)| {
            let name = get(r, "name")
                .or_else(|| get(r, "id"))
                .and_then(|n| match n {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                })
                .unwrap_or_else(|| index.to_string());
            inner(r, &name, arm_hosts).map_err(|why| BatchError::Inner {
                index,
                name: name.chars().take(100).collect(),
                why,
            })
        })
        .collect::<Result<_, _>>()?;
    // Each answer is matched to its request by place and name (as ARM returns them), and
    // masked by that request's plan: two requests of one name would leave a reader unsure
    // which answer is whose. Graph refuses duplicate ids too.
    let mut seen = std::collections::HashSet::new();
    for (index, i) in inner.iter().enumerate() {
        if !seen.insert(i.name.to_lowercase()) {
            return Err(BatchError::Inner {
                index,
                name: i.name.chars().take(100).collect(),
                why: "another request in the batch has the same name; each name must be unique"
                    .into(),
            });
        }
    }
    Ok(inner)
}

/// Whether `host` and `port` are the authority `entry` names (`host` or `host:port`; no
/// port is 443).
fn same_authority(entry: &str, host: &str, port: u16) -> bool {
    let (h, p) = match entry.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            (h, p.parse::<u16>().ok())
        }
        _ => (entry, Some(443)),
    };
    h.eq_ignore_ascii_case(host) && p == Some(port)
}

fn inner(r: &Value, name: &str, arm_hosts: &[String]) -> Result<Inner, String> {
    if !r.is_object() {
        return Err("not a JSON object".into());
    }
    let text = |key: &str| get(r, key).and_then(Value::as_str);
    // The method-override headers the gateway refuses on a request refuse an inner one too.
    for headers in [get(r, "headers"), get(r, "requestHeaderDetails")]
        .into_iter()
        .flatten()
    {
        if let Some(o) = headers.as_object()
            && let Some((k, _)) = o.iter().find(|(k, _)| {
                super::METHOD_OVERRIDES
                    .iter()
                    .any(|m| k.eq_ignore_ascii_case(m))
            })
        {
            return Err(format!(
                "the method-override header '{}' is not accepted",
                k.escape_debug()
            ));
        }
    }
    let (method, graph) = match (text("httpMethod"), text("method")) {
        (Some(m), None) => (m, false),
        (None, Some(m)) => (m, true),
        (Some(_), Some(_)) => return Err("both 'httpMethod' and 'method' are set".into()),
        (None, None) => return Err("no 'httpMethod'".into()),
    };
    let method = match method.to_ascii_uppercase().as_str() {
        "GET" => Method::GET,
        "PUT" => Method::PUT,
        "PATCH" => Method::PATCH,
        "POST" => Method::POST,
        "DELETE" => Method::DELETE,
        "HEAD" => Method::HEAD,
        other => return Err(format!("method '{}' is not accepted", other.escape_debug())),
    };
    let url = text("url")
        .or_else(|| text("relativeUrl"))
        .ok_or("no 'url'")?;
    if url.is_empty()
        || url.len() > 8192
        || !url.bytes().all(|b| b.is_ascii_graphic())
        || url.contains(['#', '\\'])
    {
        return Err(
            "the url holds characters a URL may not (spaces, controls, '#', '\\', non-ASCII)"
                .into(),
        );
    }
    let target = if url.starts_with('/') {
        url.to_owned()
    } else {
        let parsed = url::Url::parse(url).map_err(|e| format!("the url does not parse: {e}"))?;
        let host = parsed.host_str().unwrap_or_default().to_ascii_lowercase();
        let port = parsed.port_or_known_default().unwrap_or(0);
        if parsed.scheme() != "https"
            || !parsed.username().is_empty()
            || parsed.password().is_some()
            || !arm_hosts.iter().any(|a| same_authority(a, &host, port))
        {
            return Err(format!(
                "an absolute url must be https on the Resource Manager host and port, not '{}:{port}'",
                host.escape_debug()
            ));
        }
        // What follows the authority, exactly as written. The authority ends at the first
        // '/', '?' or '#': `https://host?/x` has the path `/` and the query `/x`.
        let after = &url[url.find("://").ok_or("the url has no authority")? + 3..];
        let rest = &after[after.find(['/', '?', '#']).unwrap_or(after.len())..];
        if rest.starts_with('/') {
            rest.to_owned()
        } else {
            format!("/{rest}")
        }
    };
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let (decoded, _) = route::normalize(path).map_err(|e| e.to_string())?;
    let op = operation::name_arm(&method, &decoded, query).map_err(|e| e.to_string())?;
    if op
        .action
        .eq_ignore_ascii_case("Microsoft.Resources/batch/action")
    {
        return Err("a batch inside a batch is not accepted".into());
    }
    // A deployment's template is judged only when it is sent alone.
    if op
        .action
        .eq_ignore_ascii_case("Microsoft.Resources/deployments/write")
        && method == Method::PUT
    {
        return Err("a deployment inside a batch is not accepted; send it alone, where its template is judged".into());
    }
    let content = if graph {
        get(r, "body")
    } else {
        get(r, "content")
    }
    .filter(|c| !c.is_null())
    .cloned();
    Ok(Inner {
        name: name.to_owned(),
        method,
        path: decoded,
        query: query.to_owned(),
        operation: op,
        content,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SUB: &str = "/subscriptions/00000000-0000-0000-0000-000000000001";

    fn hosts() -> Vec<String> {
        vec!["management.azure.com".into()]
    }

    #[test]
    fn arm_and_graph_shapes_are_named() {
        let doc = json!({"requests": [
            {"httpMethod": "DELETE", "name": "a", "url": format!("{SUB}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1?api-version=2024-07-01")},
            {"method": "put", "id": 7, "url": format!("https://management.azure.com{SUB}/resourceGroups/rg?api-version=2022-09-01"), "body": {"location": "eastus"}},
            {"httpMethod": "GET", "url": format!("{SUB}/resourceGroups?api-version=2022-09-01")},
        ]});
        let inner = parse(&doc, &hosts()).unwrap();
        assert_eq!(inner.len(), 3);
        assert_eq!(inner[0].name, "a");
        assert_eq!(
            inner[0].operation.action,
            "Microsoft.Compute/virtualMachines/delete"
        );
        assert_eq!(inner[1].name, "7");
        assert_eq!(
            inner[1].operation.action,
            "Microsoft.Resources/subscriptions/resourceGroups/write"
        );
        assert_eq!(inner[1].content, Some(json!({"location": "eastus"})));
        assert_eq!(inner[2].name, "2");
    }

    #[test]
    fn what_cannot_be_judged_refuses_the_batch() {
        let vm = format!(
            "{SUB}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1?api-version=2024-07-01"
        );
        let bad = [
            json!([]),
            json!({"requests": "x"}),
            json!({"requests": []}),
            json!({"requests": [{"url": vm}]}),
            json!({"requests": [{"httpMethod": "TRACE", "url": vm}]}),
            json!({"requests": [{"httpMethod": "GET", "method": "DELETE", "url": vm}]}),
            json!({"requests": [{"httpMethod": "GET", "url": format!("https://evil.example{vm}")}]}),
            json!({"requests": [{"httpMethod": "GET", "url": format!("http://management.azure.com{vm}")}]}),
            json!({"requests": [{"httpMethod": "GET", "url": format!("https://u:p@management.azure.com{vm}")}]}),
            json!({"requests": [{"httpMethod": "GET", "url": format!("{SUB}/resourceGroups/rg/../other?api-version=1")}]}),
            json!({"requests": [{"httpMethod": "GET", "url": format!("{SUB}/resourceGroups/rg%2Fx?api-version=1")}]}),
            json!({"requests": [{"httpMethod": "GET", "url": format!("{vm}#frag")}]}),
            json!({"requests": [{"httpMethod": "GET", "url": format!("{SUB}/resource Groups")}]}),
            json!({"requests": [{"httpMethod": "POST", "url": "/batch?api-version=2020-06-01"}]}),
            json!({"requests": [{"httpMethod": "GET", "url": "relative/path"}]}),
            json!({"requests": [17]}),
        ];
        for doc in bad {
            assert!(parse(&doc, &hosts()).is_err(), "accepted: {doc}");
        }
        let many =
            json!({"requests": vec![json!({"httpMethod": "GET", "url": vm}); MAX_INNER + 1]});
        assert!(matches!(
            parse(&many, &hosts()),
            Err(BatchError::TooMany(_))
        ));
    }
}
