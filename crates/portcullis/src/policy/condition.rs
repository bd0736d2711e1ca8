//! Conditions in CEL (<https://github.com/google/cel-spec>), compiled once when the policy
//! loads, evaluated per request over what the gateway knows of it:
//!
//! - `principal`: `oid`, `tid`, `kind`, `app_id`, `groups`, `roles`
//! - `operation`: `action`, `plane`, `subscription`, `resource_group`, `resource_type`,
//!   `resource_name`, `api_version`
//! - `request`: `method`, `path`, `query` (map), `headers` (map, lowercased names, without
//!   credentials), `body` (the parsed JSON; absent when there is none, it is not JSON, or it
//!   is larger than the cap)
//!
//! A condition that cannot be evaluated (a missing field, a type error, a body too large to
//! read) is an error, never `false`: the caller fails closed on it.

use cel::{Context, Program};
use serde_json::{Map, Value, json};

use crate::azure::operation::Operation;
use crate::identity::principal::Principal;

/// CEL's standard library, built once: building it is most of what a fresh context costs.
static STDLIB: std::sync::LazyLock<std::sync::Arc<cel::Env>> =
    std::sync::LazyLock::new(|| std::sync::Arc::new(cel::Env::stdlib()));

pub struct Condition {
    pub source: String,
    program: Program,
    /// Whether it reads `request` (and so may need the body).
    pub reads_request: bool,
}

impl std::fmt::Debug for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Condition").field(&self.source).finish()
    }
}

impl Clone for Condition {
    fn clone(&self) -> Self {
        Condition::compile(&self.source).expect("a compiled condition compiles again")
    }
}

impl Condition {
    pub fn compile(source: &str) -> Result<Condition, String> {
        // The CEL parser recurses per nesting level and overflows a small stack (a Tokio
        // worker's, in an unoptimized build) at about a dozen: deeper is refused first.
        let depth = nesting(source);
        if depth > MAX_NESTING {
            return Err(format!(
                "CEL: the condition nests {depth} deep; at most {MAX_NESTING} levels of (), [] and {{}} are accepted"
            ));
        }
        let program = Program::compile(source)
            .map_err(|e| format!("CEL: {}", e.to_string().replace('\n', " ")))?;
        // Unknown variables cannot be refused here (comprehension variables look the same);
        // they fail at evaluation, which fails closed.
        let refs = program.references();
        let reads_request = refs.has_variable("request") || refs.has_variable("deployment");
        Ok(Condition {
            source: source.to_owned(),
            program,
            reads_request,
        })
    }

    /// `Ok(true)` when the condition holds; an error when it cannot be decided.
    pub fn evaluate(&self, facts: &Facts<'_>) -> Result<bool, String> {
        let outcome = self.program.execute(facts.context()?);
        match outcome {
            Ok(cel::Value::Bool(b)) => Ok(b),
            Ok(other) => Err(format!("the condition gave {other:?}, not a boolean")),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// The deepest nesting of brackets a condition may have.
const MAX_NESTING: usize = 8;

/// How deep `()`, `[]` and `{}` nest in `source`, outside string literals.
fn nesting(source: &str) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in source.chars() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '\'' | '"' => quote = Some(c),
            '(' | '[' | '{' => {
                depth += 1;
                max = max.max(depth);
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// What a request's body is, as far as conditions can see it.
#[derive(Debug, Clone)]
pub enum Body {
    /// Not read (no rule needed it) or empty.
    Absent,
    Json(Value),
    TooLarge,
    NotJson,
}

/// The request as conditions see it. The CEL values are built on first use only, so a
/// decision without conditions costs nothing here.
pub struct Facts<'a> {
    principal: &'a Principal,
    operation: &'a Operation,
    method: &'a str,
    path: &'a str,
    query: &'a str,
    headers: &'a http::HeaderMap,
    body: &'a Body,
    /// A deployment's template, as read (`deployment.*`); null for other requests.
    deployment: Option<&'a serde_json::Value>,
    /// The CEL context, built the first time a condition is evaluated and shared by all the
    /// conditions of this decision.
    context: std::cell::OnceCell<Result<Context<'static, 'static>, String>>,
}

impl<'a> Facts<'a> {
    pub fn new(
        principal: &'a Principal,
        operation: &'a Operation,
        method: &'a str,
        path: &'a str,
        query: &'a str,
        headers: &'a http::HeaderMap,
        body: &'a Body,
    ) -> Facts<'a> {
        Facts {
            principal,
            operation,
            method,
            path,
            query,
            headers,
            body,
            deployment: None,
            context: std::cell::OnceCell::new(),
        }
    }

    /// The same facts, with a deployment's (`deployment.*` in conditions).
    pub fn with_deployment(mut self, deployment: Option<&'a serde_json::Value>) -> Facts<'a> {
        self.deployment = deployment;
        self
    }

    fn context(&self) -> Result<&Context<'static, 'static>, String> {
        self.context
            .get_or_init(|| {
                let [principal, operation, request, deployment] = self.values();
                let mut ctx = Context::with_env(STDLIB.clone());
                ctx.add_variable("principal", principal)
                    .map_err(|e| e.to_string())?;
                ctx.add_variable("operation", operation)
                    .map_err(|e| e.to_string())?;
                ctx.add_variable("request", request)
                    .map_err(|e| e.to_string())?;
                ctx.add_variable("deployment", deployment)
                    .map_err(|e| e.to_string())?;
                Ok(ctx)
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    fn values(&self) -> [Value; 4] {
        {
            let (p, op) = (self.principal, self.operation);
            let mut q = Map::new();
            for (k, v) in form_urlencoded::parse(self.query.as_bytes()) {
                q.insert(k.into_owned(), json!(v));
            }
            let mut h = Map::new();
            for (k, v) in self.headers {
                let name = k.as_str();
                if matches!(name, "authorization" | "proxy-authorization" | "cookie") {
                    continue;
                }
                if let Ok(v) = v.to_str() {
                    h.insert(name.to_owned(), json!(v));
                }
            }
            let mut request =
                json!({"method": self.method, "path": self.path, "query": q, "headers": h});
            if let Body::Json(v) = self.body {
                request["body"] = v.clone();
            }
            [
                json!({
                    "oid": p.object_id, "tid": p.tenant_id, "kind": p.kind, "app_id": p.app_id,
                    "groups": p.groups, "roles": p.roles,
                }),
                json!({
                    "action": op.action, "plane": op.plane,
                    "subscription": op.scope.subscription, "resource_group": op.scope.resource_group,
                    "resource_type": op.scope.resource_type, "resource_name": op.scope.resource_name,
                    "api_version": op.api_version,
                }),
                request,
                self.deployment.cloned().unwrap_or(Value::Null),
            ]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::principal::PrincipalKind;

    /// Evaluates `source` against a fixed request with `body`.
    fn eval(source: &str, body: Body) -> Result<bool, String> {
        let p = Principal {
            tenant_id: "t".into(),
            object_id: "o".into(),
            kind: PrincipalKind::App,
            app_id: Some("a".into()),
            groups: vec!["g1".into()],
            roles: vec![],
            display_name: None,
            token_version: 2,
        };
        let op = crate::azure::operation::name_arm(
            &http::Method::PUT,
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/sa",
            "api-version=2023-01-01",
        )
        .unwrap();
        let mut headers = http::HeaderMap::new();
        headers.insert("authorization", "Bearer secret".parse().unwrap());
        headers.insert("x-portcullis-reason", "cleanup".parse().unwrap());
        let facts = Facts::new(
            &p,
            &op,
            "PUT",
            "/subscriptions/s",
            "api-version=2023-01-01",
            &headers,
            &body,
        );
        Condition::compile(source)?.evaluate(&facts)
    }

    #[test]
    fn conditions_see_the_principal_operation_and_request() {
        let body = || Body::Json(json!({"location": "eastus"}));
        let c = Condition::compile("request.body.location != 'westeurope' && 'g1' in principal.groups && operation.resource_group == 'rg'").unwrap();
        assert!(c.reads_request);
        assert_eq!(eval(&c.source, body()), Ok(true));
        assert_eq!(
            eval(
                "request.headers['x-portcullis-reason'] == 'cleanup'",
                body()
            ),
            Ok(true)
        );
        assert_eq!(
            eval("'authorization' in request.headers", body()),
            Ok(false),
            "credentials are never visible to conditions"
        );
    }

    #[test]
    fn undecidable_conditions_are_errors() {
        assert!(
            eval("request.body.location == 'eastus'", Body::TooLarge).is_err(),
            "no body to read is an error, not false"
        );
        assert!(
            eval("operation.action", Body::Absent).is_err(),
            "not a boolean"
        );
        assert!(Condition::compile("1 +").is_err());
        assert!(
            eval("secrets.x == 1", Body::Absent).is_err(),
            "unknown variables fail evaluation"
        );
        assert_eq!(
            eval("principal.groups.exists(g, g == 'g1')", Body::Absent),
            Ok(true)
        );
        assert!(
            !Condition::compile("principal.oid == 'o'")
                .unwrap()
                .reads_request
        );
    }
}
