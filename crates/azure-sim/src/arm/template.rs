//! ARM template language expressions, as `Microsoft.Resources/deployments` evaluates them.
//! <https://learn.microsoft.com/azure/azure-resource-manager/templates/template-expressions>
//! Functions: <https://learn.microsoft.com/azure/azure-resource-manager/templates/template-functions>
//!
//! Only the subset real templates for the simulated services need is implemented; anything
//! else fails loudly (unknown function, wrong arity or type) rather than guessing, so a
//! template that deploys here does not silently mean something else on Azure.
//!
//! Deliberate differences from Azure, because the simulator cannot or should not copy them:
//! - `uniqueString()` and `guid()` are deterministic and stable, but their hash is SHA-256
//!   based, not Azure's (MurmurHash64 / SHA-1 UUIDv5): values differ from Azure's.
//! - `environment()` describes the public Azure cloud.
//! - `utcNow()` and `newGuid()` read the clock and a process-random seed, like Azure, and like
//!   Azure are only accepted inside a parameter's `defaultValue`.
//! - Strings are measured in Unicode scalar values, not UTF-16 code units.
//!
//! Evaluation is lazy and memoised per [`Context`]: a parameter default or variable is
//! evaluated the first time it is asked for, so unused broken ones do not fail a deployment
//! (Azure validates them up front), and cycles are reported instead of overflowing the stack.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Nesting of calls and indexes inside one expression; Azure templates never get close.
const MAX_PARSE_DEPTH: usize = 64;
/// Evaluation frames (expression nodes, JSON levels, parameter and variable hops) alive at
/// once; keeps hostile templates from overflowing the stack.
const MAX_EVAL_DEPTH: usize = 128;
/// Azure's documented limit for one expression.
const MAX_EXPRESSION_CHARS: usize = 24_576;
/// Upper bound for strings a function pads out, so `padLeft('', 2000000000)` cannot exhaust memory.
const MAX_GENERATED_CHARS: usize = 1 << 20;
/// Azure's limit for `range()`.
const MAX_RANGE_COUNT: i64 = 10_000;

/// What the template can ask of the world it is deployed into.
pub trait TemplateHost {
    /// `resourceGroup()`: an object with id, name, location, type, properties.
    fn resource_group(&self) -> Value;
    /// `subscription()`: object with id, subscriptionId, tenantId, displayName.
    fn subscription(&self) -> Value;
    /// `listKeys(resourceId, apiVersion)`: the list-keys action's response body.
    fn list_keys(&self, resource_id: &str, api_version: &str) -> Result<Value, String>;
    /// `reference(resourceId[, apiVersion, 'Full'])`: the resource's `properties` (or the whole resource when full=true).
    fn reference(&self, resource_id: &str, full: bool) -> Result<Value, String>;
}

/// Why a template could not be evaluated; messages are meant for `InvalidTemplate` errors.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("invalid template: {0}")]
    InvalidTemplate(String),
    #[error("the template parameter '{0}' is not declared in the template")]
    UnknownParameter(String),
    #[error(
        "the value for the template parameter '{0}' is not provided and it has no defaultValue"
    )]
    MissingParameter(String),
    #[error("invalid value for the template parameter '{name}': {message}")]
    InvalidParameter { name: String, message: String },
    #[error("the template variable '{0}' is not defined")]
    UnknownVariable(String),
    #[error("circular reference: {0}")]
    Cycle(String),
    #[error("malformed expression '{expression}': {message}")]
    Syntax { expression: String, message: String },
    #[error("unknown function '{name}' in expression '{expression}'")]
    UnknownFunction { name: String, expression: String },
    #[error("function '{function}' failed in expression '{expression}': {message}")]
    Function {
        function: String,
        expression: String,
        message: String,
    },
    #[error("{message} in expression '{expression}'")]
    Access { expression: String, message: String },
    #[error(
        "evaluation is nested deeper than {0} levels (expressions, variables and json combined)"
    )]
    TooDeep(usize),
    #[error("in variable '{name}': {source}")]
    InVariable {
        name: String,
        source: Box<TemplateError>,
    },
    #[error("in the defaultValue of parameter '{name}': {source}")]
    InParameterDefault {
        name: String,
        source: Box<TemplateError>,
    },
}

/// Where the value being evaluated sits in the template: Azure forbids some functions in
/// some sections, and a template relying on them here would fail there.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Section {
    Body,
    Variables,
    ParameterDefault,
}

impl Section {
    fn describe(self) -> &'static str {
        match self {
            Section::Body => "resources and outputs",
            Section::Variables => "a variable's value",
            Section::ParameterDefault => "a parameter's defaultValue",
        }
    }
}

/// One template being evaluated for one deployment.
pub struct Context<'a> {
    template: &'a Value,
    deployment_name: &'a str,
    host: &'a dyn TemplateHost,
    /// Resolved parameters by lowercase name (given values are stored up front).
    params: RefCell<HashMap<String, Value>>,
    /// Resolved variables by lowercase name.
    vars: RefCell<HashMap<String, Value>>,
    /// Parameters and variables being resolved, outermost first: (key, display).
    resolving: RefCell<Vec<(String, String)>>,
    depth: Cell<usize>,
    section: Cell<Section>,
}

/// Pops one evaluation level when a frame ends, however it ends.
struct DepthGuard<'c>(&'c Cell<usize>);

impl Drop for DepthGuard<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

/// Undoes a parameter or variable resolution's bookkeeping, also on error paths.
struct ResolveGuard<'c> {
    resolving: &'c RefCell<Vec<(String, String)>>,
    section: &'c Cell<Section>,
    previous: Section,
}

impl Drop for ResolveGuard<'_> {
    fn drop(&mut self) {
        self.resolving.borrow_mut().pop();
        self.section.set(self.previous);
    }
}

impl<'a> Context<'a> {
    /// `template` is the whole template JSON object, `parameters` the deployment's
    /// `properties.parameters` object (each entry `{"value": X}`, or `null` for none).
    ///
    /// Given values are checked now against their declarations (type, allowedValues,
    /// min/max), as Azure does before deploying anything; parameters that are neither given
    /// nor defaulted, and given parameters the template does not declare, are errors.
    /// Key Vault references in parameters are refused: the caller would need to resolve them.
    pub fn new(
        template: &'a Value,
        parameters: &'a Value,
        deployment_name: &'a str,
        host: &'a dyn TemplateHost,
    ) -> Result<Self, TemplateError> {
        if !template.is_object() {
            return Err(TemplateError::InvalidTemplate(
                "the template must be a json object".into(),
            ));
        }
        let empty = Map::new();
        let decls = match template.get("parameters") {
            None | Some(Value::Null) => &empty,
            Some(Value::Object(m)) => m,
            Some(_) => {
                return Err(TemplateError::InvalidTemplate(
                    "the template's parameters must be an object".into(),
                ));
            }
        };
        match template.get("variables") {
            None | Some(Value::Null | Value::Object(_)) => {}
            Some(_) => {
                return Err(TemplateError::InvalidTemplate(
                    "the template's variables must be an object".into(),
                ));
            }
        }
        for (name, decl) in decls {
            if !decl.is_object() {
                return Err(TemplateError::InvalidTemplate(format!(
                    "the declaration of parameter '{name}' must be an object"
                )));
            }
            if let Some(ty) = decl.get("type") {
                let known = ty.as_str().is_some_and(|t| {
                    [
                        "string",
                        "securestring",
                        "int",
                        "bool",
                        "object",
                        "secureobject",
                        "array",
                    ]
                    .iter()
                    .any(|k| k.eq_ignore_ascii_case(t))
                });
                if !known {
                    return Err(TemplateError::InvalidTemplate(format!(
                        "the parameter '{name}' has an unknown type {ty}"
                    )));
                }
            }
        }
        let given = match parameters {
            Value::Null => &empty,
            Value::Object(m) => m,
            _ => {
                return Err(TemplateError::InvalidTemplate(
                    "the deployment's parameters must be an object".into(),
                ));
            }
        };
        let mut params = HashMap::new();
        for (name, entry) in given {
            let Some((decl_name, decl)) = find_ci(decls, name) else {
                return Err(TemplateError::UnknownParameter(name.clone()));
            };
            let invalid = |message: &str| TemplateError::InvalidParameter {
                name: decl_name.clone(),
                message: message.to_owned(),
            };
            let key = decl_name.to_ascii_lowercase();
            if params.contains_key(&key) {
                return Err(invalid("it is given more than once"));
            }
            let Some(entry) = entry.as_object() else {
                return Err(invalid("expected an object with a 'value' property"));
            };
            if entry.contains_key("reference") {
                return Err(invalid(
                    "key vault references are not supported by the simulator; pass the value",
                ));
            }
            let Some(value) = entry.get("value") else {
                return Err(invalid("expected an object with a 'value' property"));
            };
            check_parameter(decl_name, decl, value)?;
            params.insert(key, value.clone());
        }
        for (name, decl) in decls {
            if !params.contains_key(&name.to_ascii_lowercase())
                && decl.get("defaultValue").is_none()
            {
                return Err(TemplateError::MissingParameter(name.clone()));
            }
        }
        Ok(Self {
            template,
            deployment_name,
            host,
            params: RefCell::new(params),
            vars: RefCell::new(HashMap::new()),
            resolving: RefCell::new(Vec::new()),
            depth: Cell::new(0),
            section: Cell::new(Section::Body),
        })
    }

    /// Evaluate one JSON value: strings that are expressions (`"[...]"` but not `"[[...]"`)
    /// are evaluated, `"[[...]"` becomes the literal `"[...]"`, objects and arrays are walked
    /// (keys are not evaluated), other values are returned unchanged.
    ///
    /// As in Azure, only strings that both start with `[` and end with `]` are touched:
    /// `"[[abc"` and `"[test] value"` are returned as they are.
    pub fn evaluate(&self, value: &Value) -> Result<Value, TemplateError> {
        self.walk(value)
    }

    /// Evaluate a single expression. Both `"[concat('a', 'b')]"` and `"concat('a', 'b')"` are
    /// accepted: a bare expression can never start with `[`, so a leading `[` means the
    /// bracketed form (and `"[[...]"` yields the literal string, as in [`Context::evaluate`]).
    pub fn evaluate_expression(&self, expr: &str) -> Result<Value, TemplateError> {
        if expr.starts_with('[') {
            if expr.len() < 2 || !expr.ends_with(']') {
                return Err(TemplateError::Syntax {
                    expression: expr.to_owned(),
                    message: "an expression that starts with '[' must end with ']'".into(),
                });
            }
            self.eval_string(expr)
        } else {
            self.eval_source(&format!("[{expr}]"), expr)
        }
    }

    fn enter(&self) -> Result<DepthGuard<'_>, TemplateError> {
        let depth = self.depth.get();
        if depth >= MAX_EVAL_DEPTH {
            return Err(TemplateError::TooDeep(MAX_EVAL_DEPTH));
        }
        self.depth.set(depth + 1);
        Ok(DepthGuard(&self.depth))
    }

    fn walk(&self, value: &Value) -> Result<Value, TemplateError> {
        let _guard = self.enter()?;
        match value {
            Value::String(s) => self.eval_string(s),
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    out.push(self.walk(item)?);
                }
                Ok(Value::Array(out))
            }
            Value::Object(map) => {
                let mut out = Map::with_capacity(map.len());
                for (k, v) in map {
                    out.insert(k.clone(), self.walk(v)?);
                }
                Ok(Value::Object(out))
            }
            other => Ok(other.clone()),
        }
    }

    fn eval_string(&self, s: &str) -> Result<Value, TemplateError> {
        if s.len() < 2 || !s.starts_with('[') || !s.ends_with(']') {
            return Ok(Value::String(s.to_owned()));
        }
        if let Some(rest) = s.strip_prefix("[[") {
            return Ok(Value::String(format!("[{rest}")));
        }
        // Both ends are the ASCII brackets just checked, so these are char boundaries.
        let body = s.get(1..s.len() - 1).unwrap_or_default();
        self.eval_source(s, body)
    }

    /// `src` is the expression as written (for messages), `body` the text between brackets.
    fn eval_source(&self, src: &str, body: &str) -> Result<Value, TemplateError> {
        let node = parse_source(src, body)?;
        self.eval_node(&node, src)
    }

    // The functions on the recursion path (`walk` .. `eval_node` .. `eval_call`) are kept
    // small and push error building and bulky work into helpers, because unoptimised builds
    // give every temporary its own stack slot and the depth limit must fit a 2 MiB stack.

    fn eval_node(&self, node: &Node, src: &str) -> Result<Value, TemplateError> {
        let _guard = self.enter()?;
        let mut value = match &node.primary {
            Primary::Call { name, args } => self.eval_call(name, args, src)?,
            literal => literal_value(literal),
        };
        for accessor in &node.accessors {
            value = self.access(value, accessor, src)?;
        }
        Ok(value)
    }

    fn access(&self, value: Value, accessor: &Accessor, src: &str) -> Result<Value, TemplateError> {
        let found = match accessor {
            Accessor::Property(p) => property(value, p),
            Accessor::Index(ix) => index(value, &self.eval_node(ix, src)?),
        };
        found.map_err(|message| access_error(src, message))
    }

    fn eval_call(&self, name: &str, args: &[Node], src: &str) -> Result<Value, TemplateError> {
        let lname = name.to_ascii_lowercase();
        match lname.as_str() {
            "if" => self.eval_if(name, args, src),
            "and" | "or" => self.eval_and_or(name, lname == "or", args, src),
            known if KNOWN_FUNCTIONS.contains(&known) => {
                let mut values = Vec::with_capacity(args.len());
                for arg in args {
                    values.push(self.eval_node(arg, src)?);
                }
                self.finish_call(&lname, name, &values, src)
            }
            _ => Err(unknown_function(name, src)),
        }
    }

    /// Only the chosen branch is evaluated, as Azure documents, so a branch may be invalid
    /// when it is not taken.
    fn eval_if(&self, name: &str, args: &[Node], src: &str) -> Result<Value, TemplateError> {
        let [cond, yes, no] = args else {
            return Err(function_error(name, src, arity_message(3, 3, args.len())));
        };
        let branch = match self.eval_node(cond, src)? {
            Value::Bool(true) => yes,
            Value::Bool(false) => no,
            other => {
                return Err(function_error(
                    name,
                    src,
                    not_boolean("the condition", &other),
                ));
            }
        };
        self.eval_node(branch, src)
    }

    /// Short-circuits like Bicep's `&&` / `||`, which compile to these.
    fn eval_and_or(
        &self,
        name: &str,
        decisive: bool,
        args: &[Node],
        src: &str,
    ) -> Result<Value, TemplateError> {
        if args.len() < 2 {
            return Err(function_error(
                name,
                src,
                arity_message(2, usize::MAX, args.len()),
            ));
        }
        for (i, arg) in args.iter().enumerate() {
            match self.eval_node(arg, src)? {
                Value::Bool(b) if b == decisive => return Ok(Value::Bool(decisive)),
                Value::Bool(_) => {}
                other => {
                    let what = format!("argument {}", i + 1);
                    return Err(function_error(name, src, not_boolean(&what, &other)));
                }
            }
        }
        Ok(Value::Bool(!decisive))
    }

    /// A known function whose arguments are evaluated; `lname` is `name` in lowercase.
    fn finish_call(
        &self,
        lname: &str,
        name: &str,
        values: &[Value],
        src: &str,
    ) -> Result<Value, TemplateError> {
        let fail = |message: String| function_error(name, src, message);
        match lname {
            "parameters" => self.parameter(single_name(values).map_err(fail)?),
            "variables" => {
                if self.section.get() == Section::ParameterDefault {
                    return Err(fail(format!(
                        "it cannot be used in {}",
                        Section::ParameterDefault.describe()
                    )));
                }
                self.variable(single_name(values).map_err(fail)?)
            }
            _ => self.apply(lname, values).map_err(fail),
        }
    }

    /// Marks `key` as being resolved; a second visit before the first ends is a cycle.
    fn begin_resolving(
        &self,
        key: String,
        display: String,
        section: Section,
    ) -> Result<ResolveGuard<'_>, TemplateError> {
        let mut resolving = self.resolving.borrow_mut();
        if let Some(start) = resolving.iter().position(|(k, _)| *k == key) {
            let mut chain: Vec<&str> = resolving
                .get(start..)
                .unwrap_or_default()
                .iter()
                .map(|(_, d)| d.as_str())
                .collect();
            chain.push(&display);
            return Err(TemplateError::Cycle(chain.join(" -> ")));
        }
        resolving.push((key, display));
        let previous = self.section.replace(section);
        Ok(ResolveGuard {
            resolving: &self.resolving,
            section: &self.section,
            previous,
        })
    }

    fn parameter(&self, name: &str) -> Result<Value, TemplateError> {
        let (key, decl_name, decl) = match self.parameter_decl(name)? {
            Lookup::Cached(v) => return Ok(v),
            Lookup::Declared(key, decl_name, decl) => (key, decl_name, decl),
        };
        let Some(default) = decl.get("defaultValue") else {
            return Err(TemplateError::MissingParameter(decl_name.clone()));
        };
        let display = format!("parameters('{decl_name}')");
        let value = self
            .resolve(
                format!("p:{key}"),
                display,
                Section::ParameterDefault,
                default,
            )
            .map_err(|e| in_parameter_default(e, decl_name))?;
        check_parameter(decl_name, decl, &value)?;
        self.params.borrow_mut().insert(key, value.clone());
        Ok(value)
    }

    fn parameter_decl(&self, name: &str) -> Result<Lookup<'a>, TemplateError> {
        let key = name.to_ascii_lowercase();
        if let Some(v) = self.params.borrow().get(&key) {
            return Ok(Lookup::Cached(v.clone()));
        }
        let decls = self.template.get("parameters").and_then(Value::as_object);
        match decls.and_then(|d| find_ci(d, name)) {
            Some((decl_name, decl)) => Ok(Lookup::Declared(key, decl_name, decl)),
            None => Err(TemplateError::UnknownParameter(name.to_owned())),
        }
    }

    fn variable(&self, name: &str) -> Result<Value, TemplateError> {
        let (key, decl_name, raw) = match self.variable_decl(name)? {
            Lookup::Cached(v) => return Ok(v),
            Lookup::Declared(key, decl_name, raw) => (key, decl_name, raw),
        };
        let display = format!("variables('{decl_name}')");
        let value = self
            .resolve(format!("v:{key}"), display, Section::Variables, raw)
            .map_err(|e| in_variable(e, decl_name))?;
        self.vars.borrow_mut().insert(key, value.clone());
        Ok(value)
    }

    fn variable_decl(&self, name: &str) -> Result<Lookup<'a>, TemplateError> {
        let key = name.to_ascii_lowercase();
        if let Some(v) = self.vars.borrow().get(&key) {
            return Ok(Lookup::Cached(v.clone()));
        }
        let decls = self.template.get("variables").and_then(Value::as_object);
        match decls.and_then(|d| find_ci(d, name)) {
            Some((decl_name, raw)) => Ok(Lookup::Declared(key, decl_name, raw)),
            None => Err(TemplateError::UnknownVariable(name.to_owned())),
        }
    }

    /// Evaluates a parameter default or variable value under cycle detection.
    fn resolve(
        &self,
        key: String,
        display: String,
        section: Section,
        raw: &Value,
    ) -> Result<Value, TemplateError> {
        // A hop costs several frames, so it counts as a level of its own.
        let _depth = self.enter()?;
        let _guard = self.begin_resolving(key, display, section)?;
        self.walk(raw)
    }

    fn default_subscription_id(&self) -> Result<String, String> {
        self.host
            .subscription()
            .get("subscriptionId")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| "the deployment's subscription has no subscriptionId".to_owned())
    }

    fn default_group_name(&self) -> Option<String> {
        self.host
            .resource_group()
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    fn require_section(&self, allowed: &[Section]) -> Result<(), String> {
        let section = self.section.get();
        if allowed.contains(&section) {
            Ok(())
        } else if allowed == [Section::ParameterDefault] {
            Err("it can only be used in a parameter's defaultValue".into())
        } else {
            Err(format!("it cannot be used in {}", section.describe()))
        }
    }

    /// Functions whose arguments are all evaluated; `f` is the lowercase name and is one of
    /// [`KNOWN_FUNCTIONS`].
    fn apply(&self, f: &str, a: &[Value]) -> Result<Value, String> {
        match f {
            // Deployment and scope.
            "resourcegroup" => {
                arity(a, 0, 0)?;
                match self.host.resource_group() {
                    rg @ Value::Object(_) => Ok(rg),
                    _ => Err(
                        "there is no resource group: the deployment is not at resource group scope"
                            .into(),
                    ),
                }
            }
            "subscription" => {
                arity(a, 0, 0)?;
                Ok(self.host.subscription())
            }
            "tenant" => {
                arity(a, 0, 0)?;
                let sub = self.host.subscription();
                let tenant = sub.get("tenantId").cloned().unwrap_or(Value::Null);
                let mut out = Map::new();
                out.insert("tenantId".into(), tenant);
                Ok(Value::Object(out))
            }
            "deployment" => {
                arity(a, 0, 0)?;
                let mut template = Map::new();
                if let Some(v) = self.template.get("contentVersion") {
                    template.insert("contentVersion".into(), v.clone());
                }
                let mut props = Map::new();
                props.insert("template".into(), Value::Object(template));
                let mut out = Map::new();
                out.insert(
                    "name".into(),
                    Value::String(self.deployment_name.to_owned()),
                );
                out.insert("properties".into(), Value::Object(props));
                Ok(Value::Object(out))
            }
            "environment" => {
                arity(a, 0, 0)?;
                Ok(environment())
            }
            "resourceid" => {
                let (ty_at, strs) = id_args(a, 2)?;
                let (sub, group) = match ty_at {
                    0 => (self.default_subscription_id()?, self.default_group_name()),
                    1 => (
                        self.default_subscription_id()?,
                        strs.first().map(|s| (*s).to_owned()),
                    ),
                    _ => (
                        strs.first().map(|s| (*s).to_owned()).unwrap_or_default(),
                        strs.get(1).map(|s| (*s).to_owned()),
                    ),
                };
                let tail = provider_path(&strs, ty_at)?;
                Ok(Value::String(match group {
                    Some(g) => format!("/subscriptions/{sub}/resourceGroups/{g}{tail}"),
                    None => format!("/subscriptions/{sub}{tail}"),
                }))
            }
            "subscriptionresourceid" => {
                let (ty_at, strs) = id_args(a, 1)?;
                let sub = match ty_at {
                    0 => self.default_subscription_id()?,
                    _ => strs.first().map(|s| (*s).to_owned()).unwrap_or_default(),
                };
                let tail = provider_path(&strs, ty_at)?;
                Ok(Value::String(format!("/subscriptions/{sub}{tail}")))
            }
            "tenantresourceid" => {
                let (ty_at, strs) = id_args(a, 0)?;
                Ok(Value::String(provider_path(&strs, ty_at)?))
            }
            "extensionresourceid" => {
                at_least(a, 3)?;
                let base = str_arg(a, 0)?;
                if !base.starts_with('/') {
                    return Err("argument 1 must be a resource id".into());
                }
                let rest = a.get(1..).unwrap_or_default();
                let (ty_at, strs) = id_args(rest, 0)?;
                let tail = provider_path(&strs, ty_at)?;
                Ok(Value::String(format!(
                    "{}{tail}",
                    base.trim_end_matches('/')
                )))
            }
            "listkeys" => {
                self.require_section(&[Section::Body])?;
                // The optional third argument is the action's request body; the host's
                // list-keys action takes none.
                arity(a, 2, 3)?;
                let id = str_arg(a, 0)?;
                let api = str_arg(a, 1)?;
                self.host.list_keys(id, api)
            }
            "reference" => {
                self.require_section(&[Section::Body])?;
                arity(a, 1, 3)?;
                let id = str_arg(a, 0)?;
                if a.len() >= 2 {
                    str_arg(a, 1)?;
                }
                let full = match a.get(2) {
                    None => false,
                    Some(Value::String(s)) if s.eq_ignore_ascii_case("full") => true,
                    Some(other) => {
                        return Err(format!("argument 3 must be 'Full', got {other}"));
                    }
                };
                self.host.reference(id, full)
            }
            "utcnow" => {
                self.require_section(&[Section::ParameterDefault])?;
                arity(a, 0, 1)?;
                let fmt = if a.is_empty() { "" } else { str_arg(a, 0)? };
                format_time(SystemTime::now(), fmt).map(Value::String)
            }
            "newguid" => {
                self.require_section(&[Section::ParameterDefault])?;
                arity(a, 0, 0)?;
                Ok(Value::String(new_guid()))
            }
            "uniquestring" => {
                at_least(a, 1)?;
                let parts = all_strs(a)?;
                Ok(Value::String(unique_string(&parts)))
            }
            "guid" => {
                at_least(a, 1)?;
                let parts = all_strs(a)?;
                Ok(Value::String(stable_guid(&parts)))
            }

            // Strings.
            "concat" => concat(a),
            "format" => {
                at_least(a, 1)?;
                let fmt = str_arg(a, 0)?;
                dotnet_format(fmt, a.get(1..).unwrap_or_default()).map(Value::String)
            }
            "tolower" => {
                arity(a, 1, 1)?;
                Ok(Value::String(str_arg(a, 0)?.to_lowercase()))
            }
            "toupper" => {
                arity(a, 1, 1)?;
                Ok(Value::String(str_arg(a, 0)?.to_uppercase()))
            }
            "string" => {
                arity(a, 1, 1)?;
                Ok(Value::String(a.first().map(to_text).unwrap_or_default()))
            }
            "replace" => {
                arity(a, 3, 3)?;
                let (s, old, new) = (str_arg(a, 0)?, str_arg(a, 1)?, str_arg(a, 2)?);
                if old.is_empty() {
                    return Err("the string to replace must not be empty".into());
                }
                Ok(Value::String(s.replace(old, new)))
            }
            "substring" => {
                arity(a, 2, 3)?;
                let chars: Vec<char> = str_arg(a, 0)?.chars().collect();
                let start = int_arg(a, 1)?;
                let len = match a.get(2) {
                    Some(_) => int_arg(a, 2)?,
                    None => (chars.len() as i64).saturating_sub(start),
                };
                let end = start.checked_add(len);
                match (
                    usize::try_from(start),
                    end.and_then(|e| usize::try_from(e).ok()),
                ) {
                    (Ok(s), Some(e)) if len >= 0 => match chars.get(s..e) {
                        Some(part) => Ok(Value::String(part.iter().collect())),
                        None => Err(substring_range_error(start, len, chars.len())),
                    },
                    _ => Err(substring_range_error(start, len, chars.len())),
                }
            }
            "split" => {
                arity(a, 2, 2)?;
                let s = str_arg(a, 0)?;
                let seps: Vec<&str> = match a.get(1) {
                    Some(Value::String(d)) => vec![d.as_str()],
                    Some(Value::Array(ds)) => ds
                        .iter()
                        .map(|d| d.as_str().ok_or("the delimiters must be strings"))
                        .collect::<Result<_, _>>()?,
                    Some(other) => {
                        return Err(format!(
                            "argument 2 must be a string or an array of strings, got {}",
                            type_name(other)
                        ));
                    }
                    None => Vec::new(),
                };
                Ok(Value::Array(
                    split_multi(s, &seps)
                        .into_iter()
                        .map(Value::String)
                        .collect(),
                ))
            }
            "trim" => {
                arity(a, 1, 1)?;
                Ok(Value::String(str_arg(a, 0)?.trim().to_owned()))
            }
            "startswith" | "endswith" | "indexof" | "lastindexof" => {
                // Azure compares these case-insensitively.
                arity(a, 2, 2)?;
                let hay: Vec<char> = str_arg(a, 0)?.to_lowercase().chars().collect();
                let needle: Vec<char> = str_arg(a, 1)?.to_lowercase().chars().collect();
                Ok(match f {
                    "startswith" => Value::Bool(hay.starts_with(&needle)),
                    "endswith" => Value::Bool(hay.ends_with(&needle)),
                    "indexof" => Value::from(find_chars(&hay, &needle, false)),
                    _ => Value::from(find_chars(&hay, &needle, true)),
                })
            }
            "padleft" => {
                arity(a, 2, 3)?;
                let text = match a.first() {
                    Some(Value::String(s)) => s.clone(),
                    Some(v @ Value::Number(_)) => to_text(v),
                    Some(other) => {
                        return Err(format!(
                            "argument 1 must be a string or an integer, got {}",
                            type_name(other)
                        ));
                    }
                    None => String::new(),
                };
                let total = int_arg(a, 1)?;
                let total = usize::try_from(total)
                    .ok()
                    .filter(|t| *t <= MAX_GENERATED_CHARS)
                    .ok_or_else(|| {
                        format!("the total length must be between 0 and {MAX_GENERATED_CHARS}")
                    })?;
                let pad = match a.get(2) {
                    None => ' ',
                    Some(_) => {
                        let p = str_arg(a, 2)?;
                        let mut it = p.chars();
                        match (it.next(), it.next()) {
                            (Some(c), None) => c,
                            _ => return Err("the padding must be exactly one character".into()),
                        }
                    }
                };
                let missing = total.saturating_sub(text.chars().count());
                Ok(Value::String(
                    std::iter::repeat_n(pad, missing)
                        .chain(text.chars())
                        .collect(),
                ))
            }
            "base64" => {
                arity(a, 1, 1)?;
                Ok(Value::String(BASE64.encode(str_arg(a, 0)?)))
            }
            "base64tostring" | "base64tojson" => {
                arity(a, 1, 1)?;
                let bytes = BASE64
                    .decode(str_arg(a, 0)?.trim())
                    .map_err(|e| format!("the value is not valid base64: {e}"))?;
                let text = String::from_utf8(bytes)
                    .map_err(|_| "the decoded value is not valid utf-8".to_owned())?;
                if f == "base64tojson" {
                    parse_json(&text)
                } else {
                    Ok(Value::String(text))
                }
            }
            "json" => {
                arity(a, 1, 1)?;
                parse_json(str_arg(a, 0)?)
            }

            // Conversions and comparisons.
            "int" => {
                arity(a, 1, 1)?;
                match a.first() {
                    Some(Value::String(s)) => s
                        .trim()
                        .parse::<i64>()
                        .map(Value::from)
                        .map_err(|_| format!("the string '{s}' is not an integer")),
                    Some(v @ Value::Number(_)) => as_int(v).map(Value::from),
                    Some(other) => Err(format!(
                        "argument 1 must be a string or an integer, got {}",
                        type_name(other)
                    )),
                    None => Err(arity_message(1, 1, 0)),
                }
            }
            "bool" => {
                arity(a, 1, 1)?;
                match a.first() {
                    Some(Value::Bool(b)) => Ok(Value::Bool(*b)),
                    Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => {
                        Ok(Value::Bool(true))
                    }
                    Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => {
                        Ok(Value::Bool(false))
                    }
                    Some(v @ Value::Number(_)) => Ok(Value::Bool(as_int(v)? != 0)),
                    Some(other) => Err(format!(
                        "the value {other} cannot be converted to a boolean"
                    )),
                    None => Err(arity_message(1, 1, 0)),
                }
            }
            "true" | "false" => {
                arity(a, 0, 0)?;
                Ok(Value::Bool(f == "true"))
            }
            "null" => {
                arity(a, 0, 0)?;
                Ok(Value::Null)
            }
            "not" => {
                arity(a, 1, 1)?;
                Ok(Value::Bool(!bool_arg(a, 0)?))
            }
            "equals" => {
                arity(a, 2, 2)?;
                Ok(Value::Bool(match (a.first(), a.get(1)) {
                    (Some(x), Some(y)) => json_eq(x, y),
                    _ => false,
                }))
            }
            "less" | "lessorequals" | "greater" | "greaterorequals" => {
                arity(a, 2, 2)?;
                let ord = match (a.first(), a.get(1)) {
                    (Some(Value::String(x)), Some(Value::String(y))) => x.cmp(y),
                    (Some(x @ Value::Number(_)), Some(y @ Value::Number(_))) => {
                        as_int(x)?.cmp(&as_int(y)?)
                    }
                    (x, y) => {
                        return Err(format!(
                            "both arguments must be integers or both strings, got {} and {}",
                            x.map(type_name).unwrap_or("nothing"),
                            y.map(type_name).unwrap_or("nothing")
                        ));
                    }
                };
                Ok(Value::Bool(match f {
                    "less" => ord.is_lt(),
                    "lessorequals" => ord.is_le(),
                    "greater" => ord.is_gt(),
                    _ => ord.is_ge(),
                }))
            }

            // Numbers.
            "add" | "sub" | "mul" | "div" | "mod" => {
                arity(a, 2, 2)?;
                let (x, y) = (int_arg(a, 0)?, int_arg(a, 1)?);
                let result = match f {
                    "add" => x.checked_add(y),
                    "sub" => x.checked_sub(y),
                    "mul" => x.checked_mul(y),
                    _ if y == 0 => return Err("division by zero".into()),
                    "div" => x.checked_div(y),
                    _ => x.checked_rem(y),
                };
                result
                    .map(Value::from)
                    .ok_or_else(|| "the result does not fit a 64-bit integer".into())
            }
            "min" | "max" => {
                at_least(a, 1)?;
                let items = match a {
                    [Value::Array(items)] => items.as_slice(),
                    _ => a,
                };
                let mut best: Option<i64> = None;
                for v in items {
                    let n = as_int(v)?;
                    best = Some(match best {
                        Some(b) if f == "min" => b.min(n),
                        Some(b) => b.max(n),
                        None => n,
                    });
                }
                best.map(Value::from)
                    .ok_or_else(|| "the array must not be empty".into())
            }
            "range" => {
                arity(a, 2, 2)?;
                let (start, count) = (int_arg(a, 0)?, int_arg(a, 1)?);
                if !(0..=MAX_RANGE_COUNT).contains(&count) {
                    return Err(format!("the count must be between 0 and {MAX_RANGE_COUNT}"));
                }
                if start.saturating_add(count) > i64::from(i32::MAX) {
                    return Err("the start index plus the count must not exceed 2147483647".into());
                }
                Ok(Value::Array(
                    (start..start + count).map(Value::from).collect(),
                ))
            }

            // Arrays and objects.
            "createarray" => Ok(Value::Array(a.to_vec())),
            "createobject" => {
                if !a.len().is_multiple_of(2) {
                    return Err("expects pairs of key and value arguments".into());
                }
                let mut out = Map::new();
                for pair in a.chunks(2) {
                    if let [k, v] = pair {
                        let Value::String(k) = k else {
                            return Err(format!(
                                "object keys must be strings, got {}",
                                type_name(k)
                            ));
                        };
                        out.insert(k.clone(), v.clone());
                    }
                }
                Ok(Value::Object(out))
            }
            "array" => {
                arity(a, 1, 1)?;
                Ok(match a.first() {
                    Some(Value::Array(items)) => Value::Array(items.clone()),
                    Some(other) => Value::Array(vec![other.clone()]),
                    None => Value::Array(Vec::new()),
                })
            }
            "length" => {
                arity(a, 1, 1)?;
                match a.first() {
                    Some(Value::String(s)) => Ok(Value::from(s.chars().count())),
                    Some(Value::Array(v)) => Ok(Value::from(v.len())),
                    Some(Value::Object(m)) => Ok(Value::from(m.len())),
                    Some(other) => Err(format!(
                        "argument 1 must be a string, array or object, got {}",
                        type_name(other)
                    )),
                    None => Err(arity_message(1, 1, 0)),
                }
            }
            "empty" => {
                arity(a, 1, 1)?;
                match a.first() {
                    Some(Value::Null) => Ok(Value::Bool(true)),
                    Some(Value::String(s)) => Ok(Value::Bool(s.is_empty())),
                    Some(Value::Array(v)) => Ok(Value::Bool(v.is_empty())),
                    Some(Value::Object(m)) => Ok(Value::Bool(m.is_empty())),
                    Some(other) => Err(format!(
                        "argument 1 must be a string, array, object or null, got {}",
                        type_name(other)
                    )),
                    None => Err(arity_message(1, 1, 0)),
                }
            }
            "contains" => {
                arity(a, 2, 2)?;
                let item = a.get(1).unwrap_or(&Value::Null);
                match a.first() {
                    Some(Value::String(s)) => match item {
                        Value::String(_) | Value::Number(_) | Value::Bool(_) => {
                            Ok(Value::Bool(s.contains(&to_text(item))))
                        }
                        other => Err(format!(
                            "the item to find in a string must be a string or an integer, got {}",
                            type_name(other)
                        )),
                    },
                    Some(Value::Array(v)) => Ok(Value::Bool(v.iter().any(|e| json_eq(e, item)))),
                    // Object keys are matched case-insensitively, as Azure documents.
                    Some(Value::Object(m)) => match item {
                        Value::String(k) => {
                            Ok(Value::Bool(m.keys().any(|mk| mk.eq_ignore_ascii_case(k))))
                        }
                        other => Err(format!(
                            "the key to find in an object must be a string, got {}",
                            type_name(other)
                        )),
                    },
                    Some(other) => Err(format!(
                        "argument 1 must be a string, array or object, got {}",
                        type_name(other)
                    )),
                    None => Err(arity_message(2, 2, 0)),
                }
            }
            "union" => {
                at_least(a, 1)?;
                match a {
                    [Value::Object(_), ..] => {
                        let mut out = Map::new();
                        for (i, v) in a.iter().enumerate() {
                            let Value::Object(m) = v else {
                                return Err(all_same_error(i, "object", v));
                            };
                            deep_merge(&mut out, m);
                        }
                        Ok(Value::Object(out))
                    }
                    [Value::Array(_), ..] => {
                        let mut out: Vec<Value> = Vec::new();
                        for (i, v) in a.iter().enumerate() {
                            let Value::Array(items) = v else {
                                return Err(all_same_error(i, "array", v));
                            };
                            for item in items {
                                if !out.iter().any(|o| json_eq(o, item)) {
                                    out.push(item.clone());
                                }
                            }
                        }
                        Ok(Value::Array(out))
                    }
                    _ => Err("the arguments must be all objects or all arrays".into()),
                }
            }
            "intersection" => {
                at_least(a, 2)?;
                match a {
                    [Value::Object(first), rest @ ..] => {
                        let mut out = first.clone();
                        for (i, v) in rest.iter().enumerate() {
                            let Value::Object(m) = v else {
                                return Err(all_same_error(i + 1, "object", v));
                            };
                            out.retain(|k, val| m.get(k).is_some_and(|o| json_eq(o, val)));
                        }
                        Ok(Value::Object(out))
                    }
                    [Value::Array(first), rest @ ..] => {
                        let mut out: Vec<Value> = Vec::new();
                        for item in first {
                            if !out.iter().any(|o| json_eq(o, item)) {
                                out.push(item.clone());
                            }
                        }
                        for (i, v) in rest.iter().enumerate() {
                            let Value::Array(items) = v else {
                                return Err(all_same_error(i + 1, "array", v));
                            };
                            out.retain(|o| items.iter().any(|e| json_eq(e, o)));
                        }
                        Ok(Value::Array(out))
                    }
                    _ => Err("the arguments must be all objects or all arrays".into()),
                }
            }
            "coalesce" => {
                at_least(a, 1)?;
                Ok(a.iter()
                    .find(|v| !v.is_null())
                    .cloned()
                    .unwrap_or(Value::Null))
            }
            "first" | "last" => {
                arity(a, 1, 1)?;
                let last = f == "last";
                match a.first() {
                    Some(Value::Array(v)) => Ok(if last { v.last() } else { v.first() }
                        .cloned()
                        .unwrap_or(Value::Null)),
                    Some(Value::String(s)) => Ok(Value::String(
                        if last {
                            s.chars().next_back()
                        } else {
                            s.chars().next()
                        }
                        .map(String::from)
                        .unwrap_or_default(),
                    )),
                    Some(other) => Err(format!(
                        "argument 1 must be an array or a string, got {}",
                        type_name(other)
                    )),
                    None => Err(arity_message(1, 1, 0)),
                }
            }
            "skip" | "take" => {
                arity(a, 2, 2)?;
                let n = usize::try_from(int_arg(a, 1)?.max(0)).unwrap_or(usize::MAX);
                let skip = f == "skip";
                match a.first() {
                    Some(Value::Array(v)) => Ok(Value::Array(if skip {
                        v.iter().skip(n).cloned().collect()
                    } else {
                        v.iter().take(n).cloned().collect()
                    })),
                    Some(Value::String(s)) => Ok(Value::String(if skip {
                        s.chars().skip(n).collect()
                    } else {
                        s.chars().take(n).collect()
                    })),
                    Some(other) => Err(format!(
                        "argument 1 must be an array or a string, got {}",
                        type_name(other)
                    )),
                    None => Err(arity_message(2, 2, 0)),
                }
            }
            other => Err(format!(
                "internal error: the function '{other}' is listed but not implemented"
            )),
        }
    }
}

/// Every function the evaluator knows, lowercase; anything else is reported as unknown
/// before its arguments are evaluated.
const KNOWN_FUNCTIONS: &[&str] = &[
    "add",
    "and",
    "array",
    "base64",
    "base64tojson",
    "base64tostring",
    "bool",
    "coalesce",
    "concat",
    "contains",
    "createarray",
    "createobject",
    "deployment",
    "div",
    "empty",
    "endswith",
    "environment",
    "equals",
    "extensionresourceid",
    "false",
    "first",
    "format",
    "greater",
    "greaterorequals",
    "guid",
    "if",
    "indexof",
    "int",
    "intersection",
    "json",
    "last",
    "lastindexof",
    "length",
    "less",
    "lessorequals",
    "listkeys",
    "max",
    "min",
    "mod",
    "mul",
    "newguid",
    "not",
    "null",
    "or",
    "padleft",
    "parameters",
    "range",
    "reference",
    "replace",
    "resourcegroup",
    "resourceid",
    "skip",
    "split",
    "startswith",
    "string",
    "sub",
    "subscription",
    "subscriptionresourceid",
    "substring",
    "take",
    "tenant",
    "tenantresourceid",
    "tolower",
    "toupper",
    "trim",
    "true",
    "union",
    "uniquestring",
    "utcnow",
    "variables",
];

// ---------------------------------------------------------------------------------------
// Parsing

#[derive(Debug)]
struct Node {
    primary: Primary,
    /// Kept flat rather than nested so long `.a.b[0].c` chains cost no recursion.
    accessors: Vec<Accessor>,
}

#[derive(Debug)]
enum Primary {
    Str(String),
    Int(i64),
    Call { name: String, args: Vec<Node> },
}

#[derive(Debug)]
enum Accessor {
    Property(String),
    Index(Node),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Dot,
    Str(String),
    Int(i64),
    Ident(String),
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::LParen => f.write_str("'('"),
            Tok::RParen => f.write_str("')'"),
            Tok::LBracket => f.write_str("'['"),
            Tok::RBracket => f.write_str("']'"),
            Tok::Comma => f.write_str("','"),
            Tok::Dot => f.write_str("'.'"),
            Tok::Str(s) => write!(f, "string '{s}'"),
            Tok::Int(n) => write!(f, "integer {n}"),
            Tok::Ident(s) => write!(f, "'{s}'"),
        }
    }
}

/// Positions are character offsets into the text between the brackets.
fn lex(src: &str) -> Result<Vec<(usize, Tok)>, String> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        let start = i;
        let tok = match c {
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '(' => Tok::LParen,
            ')' => Tok::RParen,
            '[' => Tok::LBracket,
            ']' => Tok::RBracket,
            ',' => Tok::Comma,
            '.' => Tok::Dot,
            '\'' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => {
                            return Err(format!(
                                "unterminated string literal starting at position {start}"
                            ));
                        }
                        Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                            s.push('\'');
                            i += 2;
                        }
                        Some('\'') => break,
                        Some(&ch) => {
                            s.push(ch);
                            i += 1;
                        }
                    }
                }
                Tok::Str(s)
            }
            '-' | '0'..='9' => {
                let mut j = i + 1;
                while chars.get(j).is_some_and(char::is_ascii_digit) {
                    j += 1;
                }
                let text: String = chars.get(i..j).unwrap_or_default().iter().collect();
                if text == "-" {
                    return Err(format!(
                        "'-' at position {start} must be followed by digits"
                    ));
                }
                if chars.get(j) == Some(&'.') && chars.get(j + 1).is_some_and(char::is_ascii_digit)
                {
                    return Err(format!(
                        "decimal literals are not supported (position {start}); use json('…')"
                    ));
                }
                let n = text
                    .parse::<i64>()
                    .map_err(|_| format!("the integer {text} is out of range"))?;
                i = j - 1;
                Tok::Int(n)
            }
            c if c.is_alphabetic() || c == '_' || c == '$' => {
                let mut j = i + 1;
                while chars
                    .get(j)
                    .is_some_and(|c| c.is_alphanumeric() || *c == '_' || *c == '$')
                {
                    j += 1;
                }
                let name: String = chars.get(i..j).unwrap_or_default().iter().collect();
                i = j - 1;
                Tok::Ident(name)
            }
            other => return Err(format!("unexpected character '{other}' at position {i}")),
        };
        out.push((start, tok));
        i += 1;
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(_, t)| t)
    }

    fn next(&mut self) -> Option<(usize, Tok)> {
        let t = self.toks.get(self.pos).cloned();
        if t.is_some() {
            self.pos += 1;
        }
        t
    }

    fn unexpected(found: Option<(usize, Tok)>, wanted: &str) -> String {
        match found {
            Some((at, t)) => format!("expected {wanted} but found {t} at position {at}"),
            None => format!("expected {wanted} but the expression ended"),
        }
    }

    fn node(&mut self, depth: usize) -> Result<Node, String> {
        if depth > MAX_PARSE_DEPTH {
            return Err(format!(
                "the expression is nested deeper than {MAX_PARSE_DEPTH} levels"
            ));
        }
        let primary = match self.next() {
            Some((_, Tok::Str(s))) => Primary::Str(s),
            Some((_, Tok::Int(n))) => Primary::Int(n),
            Some((at, Tok::Ident(name))) => match self.peek() {
                Some(Tok::LParen) => {
                    self.pos += 1;
                    Primary::Call {
                        args: self.args(depth)?,
                        name,
                    }
                }
                Some(Tok::Dot)
                    if matches!(self.toks.get(self.pos + 1), Some((_, Tok::Ident(_))))
                        && matches!(self.toks.get(self.pos + 2), Some((_, Tok::LParen))) =>
                {
                    let member = match self.toks.get(self.pos + 1) {
                        Some((_, Tok::Ident(m))) => m.as_str(),
                        _ => "",
                    };
                    return Err(format!(
                        "user-defined functions such as '{name}.{member}' are not supported by the simulator"
                    ));
                }
                _ => return Err(format!("expected '(' after '{name}' at position {at}")),
            },
            other => return Err(Self::unexpected(other, "a function call or a literal")),
        };
        let mut accessors = Vec::new();
        loop {
            match self.peek() {
                Some(Tok::Dot) => {
                    self.pos += 1;
                    match self.next() {
                        Some((_, Tok::Ident(p))) => accessors.push(Accessor::Property(p)),
                        other => return Err(Self::unexpected(other, "a property name after '.'")),
                    }
                }
                Some(Tok::LBracket) => {
                    self.pos += 1;
                    let ix = self.node(depth + 1)?;
                    match self.next() {
                        Some((_, Tok::RBracket)) => accessors.push(Accessor::Index(ix)),
                        other => return Err(Self::unexpected(other, "']'")),
                    }
                }
                _ => break,
            }
        }
        Ok(Node { primary, accessors })
    }

    /// Arguments after the opening parenthesis, through the closing one.
    fn args(&mut self, depth: usize) -> Result<Vec<Node>, String> {
        let mut args = Vec::new();
        if self.peek() == Some(&Tok::RParen) {
            self.pos += 1;
            return Ok(args);
        }
        loop {
            args.push(self.node(depth + 1)?);
            match self.next() {
                Some((_, Tok::Comma)) => {}
                Some((_, Tok::RParen)) => return Ok(args),
                other => return Err(Self::unexpected(other, "',' or ')'")),
            }
        }
    }
}

fn parse(src: &str) -> Result<Node, String> {
    let toks = lex(src)?;
    if toks.is_empty() {
        return Err("the expression is empty".into());
    }
    let mut parser = Parser { toks, pos: 0 };
    let node = parser.node(0)?;
    match parser.next() {
        None => Ok(node),
        Some((at, t)) => Err(format!(
            "unexpected {t} at position {at} after the end of the expression"
        )),
    }
}

// ---------------------------------------------------------------------------------------
// Values

fn literal_value(p: &Primary) -> Value {
    match p {
        Primary::Str(s) => Value::String(s.clone()),
        Primary::Int(n) => Value::from(*n),
        Primary::Call { .. } => Value::Null,
    }
}

#[cold]
fn access_error(src: &str, message: String) -> TemplateError {
    TemplateError::Access {
        expression: src.to_owned(),
        message,
    }
}

#[cold]
fn function_error(name: &str, src: &str, message: String) -> TemplateError {
    TemplateError::Function {
        function: name.to_owned(),
        expression: src.to_owned(),
        message,
    }
}

#[cold]
fn unknown_function(name: &str, src: &str) -> TemplateError {
    TemplateError::UnknownFunction {
        name: name.to_owned(),
        expression: src.to_owned(),
    }
}

#[cold]
fn not_boolean(what: &str, got: &Value) -> String {
    format!("{what} must be a boolean, got {}", type_name(got))
}

fn single_name(values: &[Value]) -> Result<&str, String> {
    arity(values, 1, 1)?;
    str_arg(values, 0)
}

fn find_ci<'m>(map: &'m Map<String, Value>, name: &str) -> Option<(&'m String, &'m Value)> {
    map.get_key_value(name)
        .or_else(|| map.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)))
}

/// A parameter or variable: already resolved, or its lowercase key, name and declaration.
enum Lookup<'a> {
    Cached(Value),
    Declared(String, &'a String, &'a Value),
}

#[cold]
fn in_variable(e: TemplateError, name: &str) -> TemplateError {
    wrap(e, |source| TemplateError::InVariable {
        name: name.to_owned(),
        source,
    })
}

#[cold]
fn in_parameter_default(e: TemplateError, name: &str) -> TemplateError {
    wrap(e, |source| TemplateError::InParameterDefault {
        name: name.to_owned(),
        source,
    })
}

fn parse_source(src: &str, body: &str) -> Result<Node, TemplateError> {
    let syntax = |message: String| TemplateError::Syntax {
        expression: src.to_owned(),
        message,
    };
    if body.chars().count() > MAX_EXPRESSION_CHARS {
        return Err(syntax(format!(
            "the expression is longer than {MAX_EXPRESSION_CHARS} characters"
        )));
    }
    parse(body).map_err(syntax)
}

/// Keeps the innermost error's own context; cycles already name their whole chain.
fn wrap(e: TemplateError, with: impl FnOnce(Box<TemplateError>) -> TemplateError) -> TemplateError {
    match e {
        TemplateError::Cycle(_) | TemplateError::TooDeep(_) => e,
        other => with(Box::new(other)),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Template text for a value, as .NET (and so Azure) renders it in `concat`, `format` and
/// `string`: booleans are `True`/`False`, null is empty, arrays and objects are JSON.
fn to_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        other => serde_json::to_string(other).unwrap_or_default(),
    }
}

/// Numbers compare by value (`1` equals `1.0`), unlike `Value`'s `==`.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i == j,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_eq(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// Azure's `union` merges nested objects recursively; any other value is replaced.
fn deep_merge(into: &mut Map<String, Value>, from: &Map<String, Value>) {
    for (k, v) in from {
        match (into.get_mut(k), v) {
            (Some(Value::Object(existing)), Value::Object(incoming)) => {
                deep_merge(existing, incoming);
            }
            _ => {
                into.insert(k.clone(), v.clone());
            }
        }
    }
}

fn property(value: Value, name: &str) -> Result<Value, String> {
    match value {
        Value::Object(mut map) => {
            let key = find_ci(&map, name).map(|(k, _)| k.clone());
            match key.and_then(|k| map.remove(&k)) {
                Some(v) => Ok(v),
                None => Err(format!(
                    "the property '{name}' doesn't exist, available properties are '{}'",
                    map.keys()
                        .map(String::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            }
        }
        other => Err(format!(
            "cannot read the property '{name}' of {} value",
            article_type(&other)
        )),
    }
}

fn index(value: Value, key: &Value) -> Result<Value, String> {
    match (value, key) {
        (Value::Array(items), Value::Number(n)) => {
            let len = items.len();
            n.as_i64()
                .and_then(|i| usize::try_from(i).ok())
                .and_then(|i| items.into_iter().nth(i))
                .ok_or_else(|| {
                    format!("the index {n} is out of range for an array of length {len}")
                })
        }
        (v @ Value::Object(_), Value::String(k)) => property(v, k),
        (v, k) => Err(format!(
            "cannot index {} value with {} value",
            article_type(&v),
            article_type(k)
        )),
    }
}

fn article_type(v: &Value) -> String {
    let t = type_name(v);
    match t {
        "array" | "object" | "integer" => format!("an {t}"),
        "null" => "a null".into(),
        _ => format!("a {t}"),
    }
}

fn arity_message(min: usize, max: usize, got: usize) -> String {
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    if min == max {
        format!("expects {min} argument{} but got {got}", plural(min))
    } else if max == usize::MAX {
        format!(
            "expects at least {min} argument{} but got {got}",
            plural(min)
        )
    } else {
        format!("expects {min} to {max} arguments but got {got}")
    }
}

fn arity(a: &[Value], min: usize, max: usize) -> Result<(), String> {
    if (min..=max).contains(&a.len()) {
        Ok(())
    } else {
        Err(arity_message(min, max, a.len()))
    }
}

fn at_least(a: &[Value], min: usize) -> Result<(), String> {
    arity(a, min, usize::MAX)
}

fn str_arg(a: &[Value], i: usize) -> Result<&str, String> {
    match a.get(i) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(format!(
            "argument {} must be a string, got {}",
            i + 1,
            type_name(other)
        )),
        None => Err(format!("argument {} is missing", i + 1)),
    }
}

fn as_int(v: &Value) -> Result<i64, String> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e18)
                    .map(|f| f as i64)
            })
            .ok_or_else(|| format!("the number {n} is not a 64-bit integer")),
        other => Err(format!("expected an integer, got {}", type_name(other))),
    }
}

fn int_arg(a: &[Value], i: usize) -> Result<i64, String> {
    match a.get(i) {
        Some(v @ Value::Number(_)) => as_int(v),
        Some(other) => Err(format!(
            "argument {} must be an integer, got {}",
            i + 1,
            type_name(other)
        )),
        None => Err(format!("argument {} is missing", i + 1)),
    }
}

fn bool_arg(a: &[Value], i: usize) -> Result<bool, String> {
    match a.get(i) {
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(format!(
            "argument {} must be a boolean, got {}",
            i + 1,
            type_name(other)
        )),
        None => Err(format!("argument {} is missing", i + 1)),
    }
}

fn all_strs(a: &[Value]) -> Result<Vec<&str>, String> {
    (0..a.len()).map(|i| str_arg(a, i)).collect()
}

fn all_same_error(i: usize, want: &str, got: &Value) -> String {
    format!(
        "argument {} must be an {want} like the first one, got {}",
        i + 1,
        type_name(got)
    )
}

fn parse_json(text: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|e| format!("the value is not valid json: {e}"))
}

fn substring_range_error(start: i64, len: i64, total: usize) -> String {
    format!(
        "the start index {start} and length {len} must refer to a location within the string of length {total}"
    )
}

/// Character index of `needle` in `hay`, or -1, like .NET's `IndexOf`/`LastIndexOf`.
fn find_chars(hay: &[char], needle: &[char], last: bool) -> i64 {
    if needle.is_empty() {
        return if last { hay.len() as i64 } else { 0 };
    }
    let mut hits = hay
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle);
    let hit = if last { hits.next_back() } else { hits.next() };
    hit.map_or(-1, |(i, _)| i as i64)
}

/// .NET `String.Split(string[], None)`: at each position the first matching separator wins,
/// empty entries are kept, empty separators are ignored.
fn split_multi(s: &str, seps: &[&str]) -> Vec<String> {
    let seps: Vec<&str> = seps.iter().copied().filter(|d| !d.is_empty()).collect();
    if seps.is_empty() {
        return vec![s.to_owned()];
    }
    let mut out = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < s.len() {
        let rest = s.get(i..).unwrap_or_default();
        match seps.iter().find(|d| rest.starts_with(**d)) {
            Some(d) if s.is_char_boundary(i) => {
                out.push(s.get(start..i).unwrap_or_default().to_owned());
                i += d.len();
                start = i;
            }
            _ => i += rest.chars().next().map_or(1, char::len_utf8),
        }
    }
    out.push(s.get(start..).unwrap_or_default().to_owned());
    out
}

fn concat(a: &[Value]) -> Result<Value, String> {
    at_least(a, 1)?;
    if a.iter().any(Value::is_array) {
        let mut out = Vec::new();
        for (i, v) in a.iter().enumerate() {
            match v {
                Value::Array(items) => out.extend(items.iter().cloned()),
                Value::Null => {}
                other => return Err(all_same_error(i, "array", other)),
            }
        }
        return Ok(Value::Array(out));
    }
    let mut out = String::new();
    for (i, v) in a.iter().enumerate() {
        if v.is_object() {
            return Err(format!(
                "argument {} must be a string, integer, boolean or array, got an object",
                i + 1
            ));
        }
        out.push_str(&to_text(v));
    }
    Ok(Value::String(out))
}

/// .NET composite formatting, which Azure's `format` uses: `{index[,alignment][:spec]}`,
/// `{{`/`}}` escapes; integer specs D, X and N are supported.
fn dotnet_format(fmt: &str, args: &[Value]) -> Result<String, String> {
    let chars: Vec<char> = fmt.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        match c {
            '{' if chars.get(i + 1) == Some(&'{') => {
                out.push('{');
                i += 2;
            }
            '}' if chars.get(i + 1) == Some(&'}') => {
                out.push('}');
                i += 2;
            }
            '}' => {
                return Err(format!(
                    "unbalanced '}}' at position {i} in the format string"
                ));
            }
            '{' => {
                let Some(close) = chars
                    .get(i + 1..)
                    .and_then(|rest| rest.iter().position(|&ch| ch == '}'))
                else {
                    return Err(format!(
                        "unbalanced '{{' at position {i} in the format string"
                    ));
                };
                let item: String = chars
                    .get(i + 1..i + 1 + close)
                    .unwrap_or_default()
                    .iter()
                    .collect();
                let (head, spec) = match item.split_once(':') {
                    Some((h, s)) => (h, Some(s)),
                    None => (item.as_str(), None),
                };
                let (index_text, align) = match head.split_once(',') {
                    Some((ix, al)) => (ix, Some(al)),
                    None => (head, None),
                };
                let index: usize = index_text
                    .trim()
                    .parse()
                    .map_err(|_| format!("'{{{item}}}' is not a valid format item"))?;
                let arg = args.get(index).ok_or_else(|| {
                    format!(
                        "the format item {{{index}}} has no argument ({} given)",
                        args.len()
                    )
                })?;
                let text = format_arg(arg, spec)?;
                out.push_str(&align_text(text, align)?);
                i += close + 2;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(out)
}

fn align_text(text: String, align: Option<&str>) -> Result<String, String> {
    let Some(align) = align else {
        return Ok(text);
    };
    let width: i64 = align
        .trim()
        .parse()
        .map_err(|_| format!("'{align}' is not a valid alignment"))?;
    let target = usize::try_from(width.unsigned_abs())
        .ok()
        .filter(|w| *w <= MAX_GENERATED_CHARS)
        .ok_or_else(|| format!("the alignment {width} is too large"))?;
    let pad = " ".repeat(target.saturating_sub(text.chars().count()));
    Ok(if width < 0 { text + &pad } else { pad + &text })
}

fn format_arg(arg: &Value, spec: Option<&str>) -> Result<String, String> {
    let Some(spec) = spec.filter(|s| !s.is_empty()) else {
        return Ok(to_text(arg));
    };
    let Value::Number(_) = arg else {
        // .NET ignores format specs it cannot apply to the value's type.
        return Ok(to_text(arg));
    };
    let n = as_int(arg)?;
    let mut spec_chars = spec.chars();
    let kind = spec_chars.next().unwrap_or('G');
    let precision_text: String = spec_chars.collect();
    let precision: Option<usize> = if precision_text.is_empty() {
        None
    } else {
        Some(
            precision_text
                .parse()
                .ok()
                .filter(|p| *p <= 100)
                .ok_or_else(|| format!("the format specifier '{spec}' is not supported"))?,
        )
    };
    let p = precision.unwrap_or(0);
    Ok(match kind {
        'D' | 'd' => {
            let digits = n.unsigned_abs().to_string();
            let sign = if n < 0 { "-" } else { "" };
            format!("{sign}{digits:0>p$}")
        }
        'X' => format!("{n:0>p$X}"),
        'x' => format!("{n:0>p$x}"),
        'N' | 'n' => {
            let digits = n.unsigned_abs().to_string();
            let mut grouped = String::new();
            for (k, ch) in digits.chars().enumerate() {
                if k > 0 && (digits.len() - k) % 3 == 0 {
                    grouped.push(',');
                }
                grouped.push(ch);
            }
            let sign = if n < 0 { "-" } else { "" };
            let decimals = precision.unwrap_or(2);
            if decimals == 0 {
                format!("{sign}{grouped}")
            } else {
                format!("{sign}{grouped}.{}", "0".repeat(decimals))
            }
        }
        'G' | 'g' if precision.is_none() => n.to_string(),
        _ => return Err(format!("the format specifier '{spec}' is not supported")),
    })
}

/// Builds `/providers/{namespace}/{type}/{name}/{childType}/{childName}...` from the type
/// at `strs[ty_at]` and the names after it (names may also be given joined by `/`).
fn provider_path(strs: &[&str], ty_at: usize) -> Result<String, String> {
    let ty = strs.get(ty_at).copied().unwrap_or_default();
    let segments: Vec<&str> = ty.split('/').collect();
    let (Some(namespace), types) = (segments.first(), segments.get(1..).unwrap_or_default()) else {
        return Err(format!("'{ty}' is not a resource type"));
    };
    if types.is_empty() || segments.iter().any(|s| s.trim().is_empty()) {
        return Err(format!(
            "'{ty}' is not a resource type such as 'Microsoft.Storage/storageAccounts'"
        ));
    }
    let names: Vec<&str> = strs
        .get(ty_at + 1..)
        .unwrap_or_default()
        .iter()
        .flat_map(|n| n.split('/'))
        .collect();
    if names.len() != types.len() {
        return Err(format!(
            "the type '{ty}' needs {} resource name(s) but {} were given",
            types.len(),
            names.len()
        ));
    }
    if names.iter().any(|n| n.is_empty()) {
        return Err("resource names must not be empty".into());
    }
    let mut out = format!("/providers/{namespace}");
    for (t, n) in types.iter().zip(&names) {
        out.push('/');
        out.push_str(t);
        out.push('/');
        out.push_str(n);
    }
    Ok(out)
}

/// String arguments of a resource-id function and the index of the resource type among
/// them: the first argument containing `/` (subscription ids and group names cannot).
fn id_args(a: &[Value], max_scope_args: usize) -> Result<(usize, Vec<&str>), String> {
    let strs = all_strs(a)?;
    let ty_at = strs
        .iter()
        .position(|s| s.contains('/'))
        .ok_or("no resource type (such as 'Microsoft.Storage/storageAccounts') was given")?;
    if ty_at > max_scope_args {
        return Err(format!(
            "expects at most {max_scope_args} scope argument(s) before the resource type, got {ty_at}"
        ));
    }
    Ok((ty_at, strs))
}

fn sha256_of(parts: &[&str]) -> [u8; 32] {
    Sha256::digest(parts.join("-").as_bytes()).into()
}

/// 13 characters from a lowercase base32 alphabet, like Azure's, but from SHA-256 of the
/// arguments joined by `-` rather than Azure's hash: stable, not Azure-identical.
fn unique_string(parts: &[&str]) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let digest = sha256_of(parts);
    let mut head = [0u8; 16];
    head.copy_from_slice(digest.get(..16).unwrap_or(&[0; 16]));
    let bits = u128::from_be_bytes(head);
    (0..13)
        .map(|i| {
            let shift = 128 - 5 * (i + 1);
            let ix = ((bits >> shift) & 31) as usize;
            ALPHABET.get(ix).map_or('a', |b| char::from(*b))
        })
        .collect()
}

fn uuid_text(mut b: [u8; 16], version: u8) -> String {
    b[6] = (b[6] & 0x0f) | (version << 4);
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        hex.get(0..8).unwrap_or_default(),
        hex.get(8..12).unwrap_or_default(),
        hex.get(12..16).unwrap_or_default(),
        hex.get(16..20).unwrap_or_default(),
        hex.get(20..32).unwrap_or_default()
    )
}

/// Name-based (version 5 shaped) UUID from SHA-256 of the arguments; Azure uses SHA-1 with
/// its own namespace, so values differ from Azure's but are just as stable.
fn stable_guid(parts: &[&str]) -> String {
    let digest = sha256_of(parts);
    let mut b = [0u8; 16];
    b.copy_from_slice(digest.get(..16).unwrap_or(&[0; 16]));
    uuid_text(b, 5)
}

/// A random (version 4) UUID without a random-number crate: std's per-process random
/// hasher keys, the clock and a counter, through SHA-256.
fn new_guid() -> String {
    use std::hash::{BuildHasher, RandomState};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let r1 = RandomState::new().hash_one((count, nanos));
    let r2 = RandomState::new().hash_one((nanos, count, r1));
    let seed = format!("{r1:016x}{r2:016x}{nanos}{count}");
    let digest = sha256_of(&[&seed]);
    let mut b = [0u8; 16];
    b.copy_from_slice(digest.get(..16).unwrap_or(&[0; 16]));
    uuid_text(b, 4)
}

/// The public Azure cloud, which is what templates written for Azure expect.
fn environment() -> Value {
    serde_json::json!({
        "name": "AzureCloud",
        "gallery": "https://gallery.azure.com/",
        "graph": "https://graph.windows.net/",
        "portal": "https://portal.azure.com",
        "graphAudience": "https://graph.windows.net/",
        "activeDirectoryDataLake": "https://datalake.azure.net/",
        "batch": "https://batch.core.windows.net/",
        "media": "https://rest.media.azure.net",
        "sqlManagement": "https://management.core.windows.net:8443/",
        "resourceManager": "https://management.azure.com/",
        "authentication": {
            "loginEndpoint": "https://login.microsoftonline.com/",
            "audiences": ["https://management.core.windows.net/", "https://management.azure.com/"],
            "tenant": "common",
            "identityProvider": "AAD"
        },
        "suffixes": {
            "acrLoginServer": ".azurecr.io",
            "azureDatalakeAnalyticsCatalogAndJob": "azuredatalakeanalytics.net",
            "azureDatalakeStoreFileSystem": "azuredatalakestore.net",
            "azureFrontDoorEndpointSuffix": "azurefd.net",
            "keyvaultDns": ".vault.azure.net",
            "sqlServerHostname": ".database.windows.net",
            "storage": "core.windows.net"
        }
    })
}

// ---------------------------------------------------------------------------------------
// Time

struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    nanos: u32,
}

/// Howard Hinnant's days-to-civil algorithm; avoids a date crate for one function.
fn civil(time: SystemTime) -> Civil {
    let (secs, nanos) = match time.duration_since(UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2),
            d.subsec_nanos(),
        ),
        Err(_) => (0, 0),
    };
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    Civil {
        year,
        month,
        day,
        hour: (sod / 3600) as u32,
        minute: (sod % 3600 / 60) as u32,
        second: (sod % 60) as u32,
        nanos,
    }
}

/// `utcNow(format)`: Azure's default is `yyyyMMddTHHmmssZ`; the standard formats `u`, `s`
/// and `o` and the custom tokens y, M, d, H, m, s, f are supported.
fn format_time(time: SystemTime, fmt: &str) -> Result<String, String> {
    let pattern = match fmt {
        "" => "yyyyMMdd'T'HHmmss'Z'",
        "u" => "yyyy-MM-dd HH:mm:ss'Z'",
        "s" => "yyyy-MM-dd'T'HH:mm:ss",
        "o" | "O" => "yyyy-MM-dd'T'HH:mm:ss.fffffff'Z'",
        f if f.chars().count() == 1 => {
            return Err(format!("the date format '{f}' is not supported"));
        }
        f => f,
    };
    let t = civil(time);
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        let mut run = 1;
        while chars.get(i + run) == Some(&c) {
            run += 1;
        }
        match c {
            '\'' | '"' => {
                let Some(len) = chars
                    .get(i + 1..)
                    .and_then(|rest| rest.iter().position(|&ch| ch == c))
                else {
                    return Err(format!("unterminated quote in the date format '{fmt}'"));
                };
                out.extend(chars.get(i + 1..i + 1 + len).unwrap_or_default());
                i += len + 2;
                continue;
            }
            '\\' => {
                if let Some(&next) = chars.get(i + 1) {
                    out.push(next);
                }
                i += 2;
                continue;
            }
            'y' => match run {
                4 => out.push_str(&format!("{:04}", t.year)),
                2 => out.push_str(&format!("{:02}", t.year.rem_euclid(100))),
                _ => return Err(format!("the date format '{fmt}' is not supported")),
            },
            'M' | 'd' | 'H' | 'm' | 's' if run <= 2 => {
                let v = match c {
                    'M' => t.month,
                    'd' => t.day,
                    'H' => t.hour,
                    'm' => t.minute,
                    _ => t.second,
                };
                out.push_str(&if run == 2 {
                    format!("{v:02}")
                } else {
                    v.to_string()
                });
            }
            'f' if run <= 7 => {
                let digits = format!("{:09}", t.nanos);
                out.push_str(digits.get(..run).unwrap_or_default());
            }
            c if c.is_ascii_alphabetic() => {
                return Err(format!("the date format '{fmt}' is not supported"));
            }
            c => out.extend(std::iter::repeat_n(c, run)),
        }
        i += run;
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Parameter validation

fn check_parameter(name: &str, decl: &Value, value: &Value) -> Result<(), TemplateError> {
    let invalid = |message: String| TemplateError::InvalidParameter {
        name: name.to_owned(),
        message,
    };
    // Azure accepts null for any parameter type in practice and lets the resource provider
    // judge it.
    if value.is_null() {
        return Ok(());
    }
    if let Some(ty) = decl.get("type").and_then(Value::as_str) {
        let (fits, expected) = match ty.to_ascii_lowercase().as_str() {
            "string" | "securestring" => (value.is_string(), "String"),
            "int" => (value.as_i64().is_some(), "Integer"),
            "bool" => (value.is_boolean(), "Boolean"),
            "object" | "secureobject" => (value.is_object(), "Object"),
            "array" => (value.is_array(), "Array"),
            _ => (true, ""),
        };
        if !fits {
            return Err(invalid(format!(
                "expected a value of type '{expected}' but got {}",
                article_type(value)
            )));
        }
    }
    if let Some(Value::Array(allowed)) = decl.get("allowedValues") {
        let ok = |v: &Value| allowed.iter().any(|a| json_eq(a, v));
        let fits = match value {
            // For arrays, Azure checks every element against the allowed values.
            Value::Array(items) if !allowed.iter().any(Value::is_array) => items.iter().all(ok),
            v => ok(v),
        };
        if !fits {
            let list: Vec<String> = allowed.iter().map(to_text).collect();
            return Err(invalid(format!(
                "the value '{}' is not one of the allowed values '{}'",
                to_text(value),
                list.join(", ")
            )));
        }
    }
    if let Some(n) = value.as_i64() {
        if let Some(min) = decl.get("minValue").and_then(Value::as_i64)
            && n < min
        {
            return Err(invalid(format!(
                "the value {n} is less than the minimum {min}"
            )));
        }
        if let Some(max) = decl.get("maxValue").and_then(Value::as_i64)
            && n > max
        {
            return Err(invalid(format!(
                "the value {n} is greater than the maximum {max}"
            )));
        }
    }
    let len = match value {
        Value::String(s) => Some(s.chars().count()),
        Value::Array(items) => Some(items.len()),
        _ => None,
    };
    if let Some(len) = len {
        if let Some(min) = decl.get("minLength").and_then(Value::as_u64)
            && (len as u64) < min
        {
            return Err(invalid(format!(
                "the length {len} is less than the minimum {min}"
            )));
        }
        if let Some(max) = decl.get("maxLength").and_then(Value::as_u64)
            && (len as u64) > max
        {
            return Err(invalid(format!(
                "the length {len} is greater than the maximum {max}"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SUB: &str = "00000000-0000-0000-0000-000000000001";
    const ST_ID: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg1/providers/Microsoft.Storage/storageAccounts/st1";

    /// A resource group `rg1` holding one storage account `st1`.
    struct FakeHost {
        in_group: bool,
    }

    impl TemplateHost for FakeHost {
        fn resource_group(&self) -> Value {
            if !self.in_group {
                return Value::Null;
            }
            json!({
                "id": format!("/subscriptions/{SUB}/resourceGroups/rg1"),
                "name": "rg1",
                "location": "westeurope",
                "type": "Microsoft.Resources/resourceGroups",
                "properties": {"provisioningState": "Succeeded"}
            })
        }

        fn subscription(&self) -> Value {
            json!({
                "id": format!("/subscriptions/{SUB}"),
                "subscriptionId": SUB,
                "tenantId": "tenant-1",
                "displayName": "Simulated"
            })
        }

        fn list_keys(&self, resource_id: &str, api_version: &str) -> Result<Value, String> {
            if resource_id.eq_ignore_ascii_case(ST_ID) && !api_version.is_empty() {
                Ok(json!({"keys": [
                    {"keyName": "key1", "permissions": "FULL", "value": "secret-one"},
                    {"keyName": "key2", "permissions": "FULL", "value": "secret-two"}
                ]}))
            } else {
                Err(format!("the resource '{resource_id}' was not found"))
            }
        }

        fn reference(&self, resource_id: &str, full: bool) -> Result<Value, String> {
            if resource_id.eq_ignore_ascii_case(ST_ID) || resource_id == "st1" {
                let props =
                    json!({"primaryEndpoints": {"blob": "https://st1.blob.core.windows.net/"}});
                Ok(if full {
                    json!({"id": ST_ID, "name": "st1", "location": "westeurope", "properties": props})
                } else {
                    props
                })
            } else {
                Err(format!("the resource '{resource_id}' was not found"))
            }
        }
    }

    const HOST: FakeHost = FakeHost { in_group: true };
    const SUB_SCOPE: FakeHost = FakeHost { in_group: false };

    fn sample_template() -> Value {
        json!({
            "contentVersion": "1.0.0.0",
            "parameters": {
                "storageName": {"type": "string"},
                "location": {"type": "string", "defaultValue": "[resourceGroup().location]"},
                "count": {"type": "int", "defaultValue": 2, "minValue": 1, "maxValue": 5},
                "sku": {"type": "string", "defaultValue": "Standard_LRS",
                        "allowedValues": ["Standard_LRS", "Standard_GRS"]},
                "prefix": {"type": "string", "defaultValue": "[toLower(parameters('Suffix'))]"},
                "suffix": {"type": "string", "defaultValue": "XY"},
                "tags": {"type": "object", "defaultValue": {"env": "dev"}}
            },
            "variables": {
                "fullName": "[concat(parameters('prefix'), '-', variables('base'))]",
                "base": "[parameters('storageName')]",
                "storageId": "[resourceId('Microsoft.Storage/storageAccounts', parameters('storageName'))]",
                "literal": "[[not an expression]",
                "nested": {"list": ["[variables('base')]", 1, true], "[key]": "[add(1, 2)]"}
            }
        })
    }

    fn given() -> Value {
        json!({"storageName": {"value": "st1"}})
    }

    fn eval_in(
        template: &Value,
        params: &Value,
        host: &FakeHost,
        expr: &str,
    ) -> Result<Value, TemplateError> {
        let ctx = Context::new(template, params, "deploy-1", host)?;
        ctx.evaluate_expression(expr)
    }

    fn eval(expr: &str) -> Result<Value, TemplateError> {
        eval_in(&sample_template(), &given(), &HOST, expr)
    }

    fn ok(expr: &str) -> Value {
        match eval(expr) {
            Ok(v) => v,
            Err(e) => panic!("{expr}: {e}"),
        }
    }

    fn err(expr: &str) -> String {
        match eval(expr) {
            Ok(v) => panic!("{expr} should fail but gave {v}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn literals_and_escapes() {
        let t = sample_template();
        let p = given();
        let ctx = Context::new(&t, &p, "d", &HOST).unwrap();
        let doc = json!({
            "escaped": "[[test value]",
            "notExpression": "[test] value",
            "openOnly": "[[abc",
            "plain": "hello",
            "n": 5, "b": false, "z": null,
            "[concat('k')]": "[concat('it''s', ' ok')]",
            "list": ["[add(1, 1)]", "x", {"deep": "[toUpper('a')]"}]
        });
        assert_eq!(
            ctx.evaluate(&doc).unwrap(),
            json!({
                "escaped": "[test value]",
                "notExpression": "[test] value",
                "openOnly": "[[abc",
                "plain": "hello",
                "n": 5, "b": false, "z": null,
                "[concat('k')]": "it's ok",
                "list": [2, "x", {"deep": "A"}]
            })
        );
        assert_eq!(ok("'it''s'"), json!("it's"));
        assert_eq!(ok("''''"), json!("'"));
        assert_eq!(ok("[-42]"), json!(-42));
        assert_eq!(ok("add(-3, 5)"), json!(2));
        assert_eq!(ok("[ concat( 'a' , 'b' ) ]"), json!("ab"));
        assert_eq!(ok("[[x]"), json!("[x]"));
    }

    #[test]
    fn nested_calls_and_accessor_chains() {
        assert_eq!(
            ok("[toUpper(concat('a', toLower('B'), string(1)))]"),
            json!("AB1")
        );
        assert_eq!(
            ok("[createObject('a', createArray(1, createObject('b', 'x'))).a[1].b]"),
            json!("x")
        );
        assert_eq!(ok("[createObject('a', 'v')['a']]"), json!("v"));
        assert_eq!(
            ok("[createArray(createArray(1, 2), createArray(3))[0][1]]"),
            json!(2)
        );
        assert_eq!(ok("[resourceGroup().location]"), json!("westeurope"));
        assert_eq!(ok("[resourceGroup().LOCATION]"), json!("westeurope"));
        assert_eq!(ok("[subscription().subscriptionId]"), json!(SUB));
        assert_eq!(ok("[createArray('a', 'b')[add(0, 1)]]"), json!("b"));
        assert_eq!(ok("[split('a,b,c', ',')[2]]"), json!("c"));
        let e = err("[resourceGroup().nope]");
        assert!(
            e.contains("'nope' doesn't exist") && e.contains("location"),
            "{e}"
        );
        assert!(err("[createArray(1)[1]]").contains("out of range"));
        assert!(err("[createArray(1)[-1]]").contains("out of range"));
        assert!(err("[createArray(1)['a']]").contains("cannot index"));
        assert!(err("[null().x]").contains("cannot read the property 'x' of a null"));
    }

    #[test]
    fn list_keys_chaining() {
        assert_eq!(
            ok(
                "[listKeys(resourceId('Microsoft.Storage/storageAccounts', parameters('storageName')), '2023-01-01').keys[0].value]"
            ),
            json!("secret-one")
        );
        assert_eq!(
            ok("[listKeys(variables('storageId'), '2023-01-01').keys[1].keyName]"),
            json!("key2")
        );
        let e = err("[listKeys('/nope', '2023-01-01')]");
        assert!(
            e.contains("function 'listKeys'") && e.contains("'/nope' was not found"),
            "{e}"
        );
        assert!(err("[listKeys(variables('storageId'))]").contains("expects 2 to 3 arguments"));
    }

    #[test]
    fn reference_forms() {
        assert_eq!(
            ok("[reference(variables('storageId')).primaryEndpoints.blob]"),
            json!("https://st1.blob.core.windows.net/")
        );
        assert_eq!(
            ok("[reference(variables('storageId'), '2023-01-01', 'Full').location]"),
            json!("westeurope")
        );
        assert_eq!(
            ok("[reference('st1', '2023-01-01', 'full').name]"),
            json!("st1")
        );
        assert!(err("[reference('st1', '2023-01-01', 'Partial')]").contains("'Full'"));
        assert!(err("[reference('missing')]").contains("not found"));
    }

    #[test]
    fn parameters_defaults_and_validation() {
        assert_eq!(ok("[parameters('storageName')]"), json!("st1"));
        assert_eq!(ok("[parameters('location')]"), json!("westeurope"));
        assert_eq!(ok("[parameters('count')]"), json!(2));
        assert_eq!(ok("[parameters('prefix')]"), json!("xy"));
        assert_eq!(ok("[parameters('tags').env]"), json!("dev"));
        assert!(err("[parameters('nope')]").contains("'nope' is not declared"));

        let t = sample_template();
        let with = |p: Value| Context::new(&t, &p, "d", &HOST).map(|_| ());
        // Missing required parameter.
        let e = Context::new(&t, &json!({}), "d", &HOST)
            .err()
            .unwrap()
            .to_string();
        assert_eq!(
            e,
            "the value for the template parameter 'storageName' is not provided and it has no defaultValue"
        );
        let e = with(json!({"storageName": {"value": "a"}, "bogus": {"value": 1}}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("'bogus' is not declared"), "{e}");
        let e = with(json!({"storageName": {"value": 5}}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("'String'") && e.contains("an integer"), "{e}");
        let e = with(json!({"storageName": {"value": "a"}, "count": {"value": 9}}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("greater than the maximum 5"), "{e}");
        let e = with(json!({"storageName": {"value": "a"}, "sku": {"value": "Premium_LRS"}}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("allowed values"), "{e}");
        let e = with(json!({"storageName": {"reference": {"secretName": "x"}}}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("key vault references"), "{e}");
        assert!(with(json!({"storageName": "bare"})).is_err());
        assert!(Context::new(&t, &json!([1]), "d", &HOST).is_err());
        assert!(Context::new(&json!([]), &Value::Null, "d", &HOST).is_err());

        // Parameter names are case-insensitive, both given and referenced.
        let p = json!({"STORAGENAME": {"value": "Upper"}, "Count": {"value": 3}});
        assert_eq!(
            eval_in(
                &t,
                &p,
                &HOST,
                "[concat(parameters('storagename'), parameters('COUNT'))]"
            )
            .unwrap(),
            json!("Upper3")
        );
        // No parameters section, null parameters.
        assert_eq!(
            eval_in(&json!({}), &Value::Null, &HOST, "[concat('a')]").unwrap(),
            json!("a")
        );
        // Defaults are type-checked when first used.
        let bad = json!({"parameters": {"n": {"type": "int", "defaultValue": "[concat('x')]"}}});
        let e = eval_in(&bad, &Value::Null, &HOST, "[parameters('n')]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("'Integer'"), "{e}");
    }

    #[test]
    fn variables_resolve_lazily_and_case_insensitively() {
        assert_eq!(ok("[variables('fullName')]"), json!("xy-st1"));
        assert_eq!(ok("[VARIABLES('FULLNAME')]"), json!("xy-st1"));
        assert_eq!(ok("[variables('literal')]"), json!("[not an expression]"));
        assert_eq!(
            ok("[variables('nested')]"),
            json!({"list": ["st1", 1, true], "[key]": 3})
        );
        assert_eq!(ok("[variables('nested').list[0]]"), json!("st1"));
        assert_eq!(ok("[variables('storageId')]"), json!(ST_ID));
        assert_eq!(
            err("[variables('nope')]"),
            "the template variable 'nope' is not defined"
        );
        // A broken variable that is never used does not fail anything.
        let t = json!({"variables": {"bad": "[foo()]", "good": "ok"}});
        assert_eq!(
            eval_in(&t, &Value::Null, &HOST, "[variables('good')]").unwrap(),
            json!("ok")
        );
        let e = eval_in(&t, &Value::Null, &HOST, "[variables('bad')]")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "in variable 'bad': unknown function 'foo' in expression '[foo()]'"
        );
    }

    #[test]
    fn cycles_are_errors() {
        let t = json!({
            "parameters": {
                "p1": {"type": "string", "defaultValue": "[parameters('p2')]"},
                "p2": {"type": "string", "defaultValue": "[parameters('P1')]"}
            },
            "variables": {
                "a": "[variables('b')]",
                "b": "[concat('x', variables('c'))]",
                "c": "[variables('A')]",
                "self": {"x": ["[variables('self')]"]}
            }
        });
        let e = eval_in(&t, &Value::Null, &HOST, "[variables('a')]").unwrap_err();
        assert!(matches!(e, TemplateError::Cycle(_)), "{e:?}");
        assert_eq!(
            e.to_string(),
            "circular reference: variables('a') -> variables('b') -> variables('c') -> variables('a')"
        );
        let e = eval_in(&t, &Value::Null, &HOST, "[variables('self')]").unwrap_err();
        assert!(e.to_string().starts_with("circular reference"), "{e}");
        let e = eval_in(&t, &Value::Null, &HOST, "[parameters('p1')]").unwrap_err();
        assert_eq!(
            e.to_string(),
            "circular reference: parameters('p1') -> parameters('p2') -> parameters('p1')"
        );
        // The context stays usable after a cycle error.
        let ctx = Context::new(&t, &Value::Null, "d", &HOST).unwrap();
        assert!(ctx.evaluate_expression("[variables('a')]").is_err());
        assert_eq!(
            ctx.evaluate_expression("[concat('still', 'fine')]")
                .unwrap(),
            json!("stillfine")
        );
    }

    #[test]
    fn deep_chains_fail_without_overflowing() {
        let mut vars = Map::new();
        for i in 0..400 {
            vars.insert(format!("v{i}"), json!(format!("[variables('v{}')]", i + 1)));
        }
        vars.insert("v400".into(), json!("end"));
        let t = json!({"variables": vars});
        let e = eval_in(&t, &Value::Null, &HOST, "[variables('v0')]").unwrap_err();
        assert!(e.to_string().contains("nested deeper than"), "{e}");
        assert_eq!(
            eval_in(&t, &Value::Null, &HOST, "[variables('v380')]").unwrap(),
            json!("end")
        );

        let deep = format!("[{}1{}]", "add(0,".repeat(3_000), ")".repeat(3_000));
        assert!(err(&deep).contains("nested deeper than 64"));
        let ok_depth = format!("[{}1{}]", "add(0, ".repeat(40), ")".repeat(40));
        assert_eq!(ok(&ok_depth), json!(1));
        let chain = format!("[createObject('a', 1){}]", ".a".repeat(5_000));
        assert!(err(&chain).contains("cannot read the property 'a'"));

        let mut doc = json!("[add(1, 1)]");
        for _ in 0..100 {
            doc = json!([doc]);
        }
        let t = sample_template();
        let p = given();
        let ctx = Context::new(&t, &p, "d", &HOST).unwrap();
        assert!(ctx.evaluate(&doc).is_ok());
        for _ in 0..100 {
            doc = json!([doc]);
        }
        assert!(matches!(ctx.evaluate(&doc), Err(TemplateError::TooDeep(_))));
    }

    #[test]
    fn resource_ids() {
        let rg = format!("/subscriptions/{SUB}/resourceGroups/rg1/providers");
        assert_eq!(
            ok("[resourceId('Microsoft.KeyVault/vaults/secrets', 'kv', 's1')]"),
            json!(format!("{rg}/Microsoft.KeyVault/vaults/kv/secrets/s1"))
        );
        assert_eq!(
            ok("[resourceId('Microsoft.KeyVault/vaults/secrets', 'kv/s1')]"),
            json!(format!("{rg}/Microsoft.KeyVault/vaults/kv/secrets/s1"))
        );
        assert_eq!(
            ok("[resourceId('other-rg', 'Microsoft.Storage/storageAccounts', 'st2')]"),
            json!(format!(
                "/subscriptions/{SUB}/resourceGroups/other-rg/providers/Microsoft.Storage/storageAccounts/st2"
            ))
        );
        assert_eq!(
            ok("[resourceId('S2', 'rg2', 'Microsoft.Storage/storageAccounts', 'st2')]"),
            json!(
                "/subscriptions/S2/resourceGroups/rg2/providers/Microsoft.Storage/storageAccounts/st2"
            )
        );
        assert_eq!(
            ok("[subscriptionResourceId('Microsoft.Resources/resourceGroups', 'rg9')]"),
            json!(format!(
                "/subscriptions/{SUB}/providers/Microsoft.Resources/resourceGroups/rg9"
            ))
        );
        assert_eq!(
            ok("[subscriptionResourceId('S3', 'Microsoft.Authorization/roleDefinitions', 'r1')]"),
            json!("/subscriptions/S3/providers/Microsoft.Authorization/roleDefinitions/r1")
        );
        assert_eq!(
            ok("[tenantResourceId('Microsoft.Management/managementGroups', 'mg')]"),
            json!("/providers/Microsoft.Management/managementGroups/mg")
        );
        assert_eq!(
            ok(
                "[extensionResourceId(variables('storageId'), 'Microsoft.Authorization/locks', 'l1')]"
            ),
            json!(format!(
                "{ST_ID}/providers/Microsoft.Authorization/locks/l1"
            ))
        );
        assert!(
            err("[resourceId('Microsoft.KeyVault/vaults/secrets', 'kv')]")
                .contains("needs 2 resource name(s) but 1")
        );
        assert!(
            err("[resourceId('Microsoft.Storage/storageAccounts', 'a', 'b')]").contains("needs 1")
        );
        assert!(
            err("[resourceId('a', 'b', 'c', 'Microsoft.Storage/storageAccounts', 'x')]")
                .contains("at most 2")
        );
        assert!(err("[resourceId('st1')]").contains("no resource type"));
        assert!(err("[resourceId('Microsoft.Storage/', 'x')]").contains("not a resource type"));
        assert!(
            err("[resourceId('Microsoft.Storage/storageAccounts', 1)]")
                .contains("must be a string")
        );
        // At subscription scope the default id has no resource group, as in Azure.
        assert_eq!(
            eval_in(
                &json!({}),
                &Value::Null,
                &SUB_SCOPE,
                "[resourceId('Microsoft.Resources/resourceGroups', 'rg1')]"
            )
            .unwrap(),
            json!(format!(
                "/subscriptions/{SUB}/providers/Microsoft.Resources/resourceGroups/rg1"
            ))
        );
        let e = eval_in(&json!({}), &Value::Null, &SUB_SCOPE, "[resourceGroup()]").unwrap_err();
        assert!(e.to_string().contains("not at resource group scope"), "{e}");
    }

    #[test]
    fn format_function() {
        assert_eq!(ok("[format('{0}-{1}', 'a', 2)]"), json!("a-2"));
        assert_eq!(ok("[format('{1}{0}{1}', 'a', 'b')]"), json!("bab"));
        assert_eq!(ok("[format('{{0}} {0}', true())]"), json!("{0} True"));
        assert_eq!(
            ok("[format('[{0,4}][{0,-4}]', 'ab')]"),
            json!("[  ab][ab  ]")
        );
        assert_eq!(
            ok("[format('{0:D4} {1:X} {2:N0} {2:N}', 7, 255, 1234567)]"),
            json!("0007 FF 1,234,567 1,234,567.00")
        );
        assert_eq!(ok("[format('{0:D3}', -5)]"), json!("-005"));
        assert_eq!(ok("[format('no items')]"), json!("no items"));
        assert_eq!(
            ok("[format('{0}', createArray(1, 'a'))]"),
            json!("[1,\"a\"]")
        );
        assert!(err("[format('{1}', 'a')]").contains("has no argument"));
        assert!(err("[format('{0', 'a')]").contains("unbalanced '{'"));
        assert!(err("[format('0}', 'a')]").contains("unbalanced '}'"));
        assert!(err("[format('{x}', 'a')]").contains("not a valid format item"));
        assert!(err("[format('{0:Q}', 1)]").contains("not supported"));
        assert!(err("[format('{0,99999999999}', 1)]").contains("too large"));
    }

    #[test]
    fn unknown_functions_and_malformed_expressions() {
        assert_eq!(
            err("[foo()]"),
            "unknown function 'foo' in expression '[foo()]'"
        );
        assert_eq!(
            err("[concat('a', Bar(1))]"),
            "unknown function 'Bar' in expression '[concat('a', Bar(1))]'"
        );
        for bad in [
            "[concat('a'",
            "[concat('a)]",
            "[concat('a'))]",
            "[concat('a' 'b')]",
            "[concat(,)]",
            "[concat('a',)]",
            "[)]",
            "[]",
            "[   ]",
            "[(]",
            "[foo]",
            "[foo.bar()]",
            "[1.5]",
            "[-]",
            "[99999999999999999999]",
            "[concat('a').]",
            "[concat('a')[0]",
            "[concat('a')[0}]",
            "[concat(\"a\")]",
            "[a b]",
            "[#]",
            "[createArray(1)[]]",
            "[",
            "[concat('a'",
        ] {
            let e = eval(bad);
            let Err(e) = e else {
                panic!("{bad} should fail");
            };
            let text = e.to_string();
            assert!(
                text.starts_with("malformed expression") || text.starts_with("an expression"),
                "{bad}: {text}"
            );
        }
        assert!(err("[foo.bar()]").contains("user-defined functions"));
        assert!(err("[concat('a'").contains("must end with ']'"));
        let long = format!("[concat('{}')]", "a".repeat(MAX_EXPRESSION_CHARS));
        assert!(err(&long).contains("longer than"));
    }

    #[test]
    fn random_inputs_never_panic() {
        // A small deterministic generator over characters that matter to the grammar.
        let alphabet: Vec<char> = "()[]',.-0123 456789abcAB_concat(add(createArray(split("
            .chars()
            .collect();
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let t = sample_template();
        let p = given();
        let ctx = Context::new(&t, &p, "d", &HOST).unwrap();
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 40) as usize;
            let mut s = String::from("[");
            let mut x = state;
            for _ in 0..len {
                x = x
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                s.push(alphabet[(x >> 33) as usize % alphabet.len()]);
            }
            s.push(']');
            let _ = ctx.evaluate_expression(&s);
            let _ = ctx.evaluate(&json!(s));
        }
        // Every prefix of a complex expression, closed or not.
        let full = "[listKeys(resourceId('Microsoft.Storage/storageAccounts', parameters('storageName')), '2023-01-01').keys[0].value]";
        for (i, _) in full.char_indices() {
            let prefix = full.get(..i).unwrap_or_default();
            let _ = ctx.evaluate_expression(prefix);
            let _ = ctx.evaluate_expression(&format!("{prefix}]"));
        }
    }

    #[test]
    fn case_insensitive_function_names() {
        assert_eq!(
            ok("[CONCAT(Parameters('STORAGENAME'), ToUpper('x'), RESOURCEGROUP().name)]"),
            json!("st1Xrg1")
        );
        assert_eq!(ok("[If(True(), 'y', 'n')]"), json!("y"));
    }

    #[test]
    fn logic_and_comparison() {
        assert_eq!(
            ok("[if(equals(1, 1), 'ok', parameters('missing'))]"),
            json!("ok")
        );
        assert_eq!(
            ok("[if(false(), parameters('missing'), 'ok')]"),
            json!("ok")
        );
        assert!(err("[if('x', 1, 2)]").contains("must be a boolean"));
        assert!(err("[if(true(), 1)]").contains("expects 3 arguments but got 2"));
        assert_eq!(ok("[and(true(), true(), false())]"), json!(false));
        assert_eq!(ok("[and(false(), parameters('missing'))]"), json!(false));
        assert_eq!(ok("[or(false(), true())]"), json!(true));
        assert_eq!(ok("[or(false(), false())]"), json!(false));
        assert!(err("[and(true())]").contains("at least 2"));
        assert!(err("[or(false(), 1)]").contains("argument 2 must be a boolean"));
        assert_eq!(ok("[not(equals('a', 'A'))]"), json!(true));
        assert_eq!(
            ok("[equals(createObject('a', createArray(1)), json('{\"a\":[1.0]}'))]"),
            json!(true)
        );
        assert_eq!(ok("[less(1, 2)]"), json!(true));
        assert_eq!(ok("[greaterOrEquals('b', 'a')]"), json!(true));
        assert_eq!(ok("[lessOrEquals(2, 2)]"), json!(true));
        assert_eq!(ok("[greater(1, 2)]"), json!(false));
        assert!(err("[less(1, 'a')]").contains("both arguments"));
        assert_eq!(ok("[null()]"), Value::Null);
        assert_eq!(ok("[bool('TRUE')]"), json!(true));
        assert_eq!(ok("[bool(0)]"), json!(false));
        assert!(err("[bool('yes')]").contains("cannot be converted"));
        assert!(err("[not(1)]").contains("must be a boolean"));
    }

    #[test]
    fn strings() {
        assert_eq!(ok("[concat('a', 1, true(), null())]"), json!("a1True"));
        assert_eq!(
            ok("[concat(createArray(1), createArray(2, 3))]"),
            json!([1, 2, 3])
        );
        assert!(err("[concat(createArray(1), 'x')]").contains("must be an array"));
        assert!(err("[concat()]").contains("at least 1"));
        assert_eq!(ok("[string(5)]"), json!("5"));
        assert_eq!(ok("[string(createObject('a', 1))]"), json!("{\"a\":1}"));
        assert_eq!(ok("[string(false())]"), json!("False"));
        assert_eq!(ok("[int('-12')]"), json!(-12));
        assert!(err("[int('1.5')]").contains("not an integer"));
        assert_eq!(ok("[replace('a-b-c', '-', '')]"), json!("abc"));
        assert!(err("[replace('abc', '', 'x')]").contains("must not be empty"));
        assert_eq!(ok("[substring('hello', 1, 3)]"), json!("ell"));
        assert_eq!(ok("[substring('hello', 2)]"), json!("llo"));
        assert_eq!(ok("[substring('héllo', 1, 1)]"), json!("é"));
        assert!(err("[substring('hello', 4, 5)]").contains("within the string"));
        assert!(err("[substring('hello', -1, 1)]").contains("within the string"));
        assert!(
            err("[substring('hello', 9223372036854775807, 9223372036854775807)]")
                .contains("within the string")
        );
        assert_eq!(ok("[split('a,,b', ',')]"), json!(["a", "", "b"]));
        assert_eq!(
            ok("[split('a;b,c', createArray(',', ';'))]"),
            json!(["a", "b", "c"])
        );
        assert_eq!(ok("[split('héé', 'é')]"), json!(["h", "", ""]));
        assert_eq!(ok("[split('abc', '')]"), json!(["abc"]));
        assert_eq!(ok("[trim('  x  ')]"), json!("x"));
        assert_eq!(ok("[toLower('AbC')]"), json!("abc"));
        assert_eq!(ok("[base64('hello')]"), json!("aGVsbG8="));
        assert_eq!(ok("[base64ToString(base64('héllo'))]"), json!("héllo"));
        assert_eq!(ok("[base64ToJson(base64('{\"a\":1}')).a]"), json!(1));
        assert!(err("[base64ToString('***')]").contains("not valid base64"));
        assert_eq!(ok("[startsWith('Hello', 'he')]"), json!(true));
        assert_eq!(ok("[endsWith('Hello', 'LO')]"), json!(true));
        assert_eq!(ok("[indexOf('abcabc', 'C')]"), json!(2));
        assert_eq!(ok("[lastIndexOf('abcabc', 'c')]"), json!(5));
        assert_eq!(ok("[indexOf('abc', 'z')]"), json!(-1));
        assert_eq!(ok("[padLeft('7', 3, '0')]"), json!("007"));
        assert_eq!(ok("[padLeft(7, 2)]"), json!(" 7"));
        assert!(err("[padLeft('7', 3, '00')]").contains("exactly one character"));
        assert!(err("[padLeft('7', 2000000000)]").contains("between 0 and"));
        assert_eq!(ok("[json('[1, {\"a\": null}]')[1].a]"), Value::Null);
        assert!(err("[json('{')]").contains("not valid json"));
        assert!(err("[toLower(1)]").contains("argument 1 must be a string, got integer"));
    }

    #[test]
    fn collections_and_numbers() {
        assert_eq!(ok("[length('héllo')]"), json!(5));
        assert_eq!(ok("[length(createArray(1, 2))]"), json!(2));
        assert_eq!(ok("[length(createObject('a', 1))]"), json!(1));
        assert!(err("[length(1)]").contains("must be a string, array or object"));
        assert_eq!(ok("[empty('')]"), json!(true));
        assert_eq!(ok("[empty(createArray())]"), json!(true));
        assert_eq!(ok("[empty(createObject())]"), json!(true));
        assert_eq!(ok("[empty(null())]"), json!(true));
        assert_eq!(ok("[empty('x')]"), json!(false));
        assert_eq!(ok("[contains('OneTwo', 'Two')]"), json!(true));
        assert_eq!(ok("[contains('OneTwo', 'two')]"), json!(false));
        assert_eq!(ok("[contains(createArray(1, 'a'), 'a')]"), json!(true));
        assert_eq!(ok("[contains(createObject('Key', 1), 'KEY')]"), json!(true));
        assert_eq!(ok("[contains('a1', 1)]"), json!(true));
        assert!(err("[createObject('a')]").contains("pairs"));
        assert!(err("[createObject(1, 2)]").contains("keys must be strings"));
        assert_eq!(
            ok(
                "[union(createObject('a', 1, 'n', createObject('x', 1, 'y', 1)), createObject('b', 2, 'n', createObject('y', 2)))]"
            ),
            json!({"a": 1, "n": {"x": 1, "y": 2}, "b": 2})
        );
        assert_eq!(
            ok("[union(createArray(1, 2), createArray(2, 3))]"),
            json!([1, 2, 3])
        );
        assert!(err("[union(createObject(), createArray())]").contains("must be an object"));
        assert_eq!(
            ok("[intersection(createObject('a', 1, 'b', 2), createObject('a', 1, 'b', 3))]"),
            json!({"a": 1})
        );
        assert_eq!(
            ok("[intersection(createArray(1, 2, 2), createArray(2, 3))]"),
            json!([2])
        );
        assert_eq!(ok("[coalesce(null(), null(), 'x', 'y')]"), json!("x"));
        assert_eq!(ok("[coalesce(null())]"), Value::Null);
        assert_eq!(ok("[first(createArray('a', 'b'))]"), json!("a"));
        assert_eq!(ok("[last(createArray('a', 'b'))]"), json!("b"));
        assert_eq!(ok("[first('héllo')]"), json!("h"));
        assert_eq!(ok("[last('')]"), json!(""));
        assert_eq!(ok("[first(createArray())]"), Value::Null);
        assert_eq!(ok("[skip(createArray(1, 2, 3), 1)]"), json!([2, 3]));
        assert_eq!(ok("[take('hello', 2)]"), json!("he"));
        assert_eq!(ok("[take('hello', -2)]"), json!(""));
        assert_eq!(ok("[array('a')]"), json!(["a"]));
        assert_eq!(ok("[range(5, 3)]"), json!([5, 6, 7]));
        assert!(err("[range(0, 10001)]").contains("between 0 and 10000"));
        assert_eq!(ok("[min(3, 1, 2)]"), json!(1));
        assert_eq!(ok("[max(createArray(3, 9, 2))]"), json!(9));
        assert!(err("[max(createArray())]").contains("not be empty"));
        assert_eq!(ok("[add(2, 3)]"), json!(5));
        assert_eq!(ok("[sub(2, 3)]"), json!(-1));
        assert_eq!(ok("[mul(4, 3)]"), json!(12));
        assert_eq!(ok("[div(7, 2)]"), json!(3));
        assert_eq!(ok("[mod(7, 2)]"), json!(1));
        assert!(err("[div(1, 0)]").contains("division by zero"));
        assert!(err("[mod(1, 0)]").contains("division by zero"));
        assert!(err("[add(9223372036854775807, 1)]").contains("64-bit"));
        assert!(err("[div(-9223372036854775808, -1)]").contains("64-bit"));
        assert!(err("[add('1', 2)]").contains("must be an integer"));
    }

    #[test]
    fn scope_functions() {
        assert_eq!(ok("[deployment().name]"), json!("deploy-1"));
        assert_eq!(
            ok("[deployment().properties.template.contentVersion]"),
            json!("1.0.0.0")
        );
        assert_eq!(ok("[tenant().tenantId]"), json!("tenant-1"));
        assert_eq!(
            ok("[environment().suffixes.storage]"),
            json!("core.windows.net")
        );
        assert!(err("[subscription('x')]").contains("expects 0 arguments"));
    }

    #[test]
    fn hashes_are_stable() {
        let a = ok("[uniqueString(resourceGroup().id)]");
        let a = a.as_str().unwrap().to_owned();
        assert_eq!(a.len(), 13);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_lowercase() || ('2'..='7').contains(&c)),
            "{a}"
        );
        assert_eq!(ok("[uniqueString(resourceGroup().id)]"), json!(a));
        assert_ne!(ok("[uniqueString(resourceGroup().id, 'x')]"), json!(a));
        assert!(err("[uniqueString()]").contains("at least 1"));
        let g = ok("[guid('a', 'b')]");
        let g = g.as_str().unwrap();
        assert_eq!(g.len(), 36);
        assert_eq!(g.as_bytes()[14], b'5');
        assert_eq!(ok("[guid('a', 'b')]"), json!(g));
        assert_ne!(ok("[guid('a', 'c')]"), json!(g));
    }

    #[test]
    fn section_restrictions() {
        let t = json!({
            "parameters": {
                "stamp": {"type": "string", "defaultValue": "[utcNow()]"},
                "day": {"type": "string", "defaultValue": "[utcNow('yyyy-MM-dd')]"},
                "id": {"type": "string", "defaultValue": "[newGuid()]"},
                "usesVar": {"type": "string", "defaultValue": "[variables('v')]"},
                "usesRef": {"type": "object", "defaultValue": "[reference('st1')]"}
            },
            "variables": {
                "v": "x",
                "ref": "[reference('st1')]",
                "keys": "[listKeys('st1', '2023-01-01')]",
                "stampVar": "[parameters('stamp')]"
            }
        });
        let run = |e: &str| eval_in(&t, &Value::Null, &HOST, e);
        let stamp = run("[parameters('stamp')]").unwrap();
        let stamp = stamp.as_str().unwrap();
        assert_eq!(stamp.len(), 16, "{stamp}");
        assert!(
            stamp.ends_with('Z') && stamp.as_bytes()[8] == b'T',
            "{stamp}"
        );
        assert_eq!(
            run("[parameters('day')]").unwrap().as_str().unwrap().len(),
            10
        );
        assert_eq!(run("[length(parameters('id'))]").unwrap(), json!(36));
        assert_eq!(
            run("[variables('stampVar')]")
                .unwrap()
                .as_str()
                .unwrap()
                .len(),
            16
        );
        assert!(
            run("[utcNow()]")
                .unwrap_err()
                .to_string()
                .contains("only be used in a parameter's defaultValue")
        );
        assert!(run("[newGuid()]").is_err());
        assert!(
            run("[parameters('usesVar')]")
                .unwrap_err()
                .to_string()
                .contains("cannot be used in a parameter's defaultValue")
        );
        assert!(
            run("[parameters('usesRef')]")
                .unwrap_err()
                .to_string()
                .contains("cannot be used in a parameter's defaultValue")
        );
        let e = run("[variables('ref')]").unwrap_err().to_string();
        assert!(
            e.starts_with("in variable 'ref'") && e.contains("a variable's value"),
            "{e}"
        );
        assert!(run("[variables('keys')]").is_err());
        assert!(run("[reference('st1').primaryEndpoints.blob]").is_ok());
    }

    #[test]
    fn time_formatting() {
        let t = UNIX_EPOCH + std::time::Duration::new(1_700_000_000, 123_456_789);
        assert_eq!(format_time(t, "").unwrap(), "20231114T221320Z");
        assert_eq!(format_time(t, "u").unwrap(), "2023-11-14 22:13:20Z");
        assert_eq!(format_time(t, "s").unwrap(), "2023-11-14T22:13:20");
        assert_eq!(format_time(t, "o").unwrap(), "2023-11-14T22:13:20.1234567Z");
        assert_eq!(format_time(t, "yy/M/d H:m").unwrap(), "23/11/14 22:13");
        assert!(format_time(t, "hh").is_err());
        assert!(format_time(t, "q").is_err());
        assert!(format_time(t, "yyyy'T").is_err());
        let leap = UNIX_EPOCH + std::time::Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(format_time(leap, "yyyy-MM-dd").unwrap(), "2000-02-29");
    }

    #[test]
    fn evaluate_expression_accepts_both_forms() {
        assert_eq!(ok("concat('a', 'b')"), json!("ab"));
        assert_eq!(ok("[concat('a', 'b')]"), json!("ab"));
        assert_eq!(ok("split(parameters('storageName'), 't')[1]"), json!("1"));
        assert_eq!(ok("[[literal]"), json!("[literal]"));
    }

    #[test]
    fn every_known_function_is_implemented() {
        let t = json!({});
        let ctx = Context::new(&t, &Value::Null, "d", &HOST).unwrap();
        for f in KNOWN_FUNCTIONS {
            for args in ["", "1", "'a'", "1, 2", "'a', 'b', 'c'"] {
                if let Err(e) = ctx.evaluate_expression(&format!("[{f}({args})]")) {
                    let e = e.to_string();
                    assert!(
                        !e.contains("internal error") && !e.contains("unknown function"),
                        "{f}: {e}"
                    );
                }
            }
        }
        assert!(KNOWN_FUNCTIONS.iter().all(|f| {
            f.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        }));
    }

    #[test]
    fn messages_start_lowercase() {
        for e in [
            err("[foo()]"),
            err("[concat('a'"),
            err("[variables('nope')]"),
            err("[parameters('nope')]"),
            err("[add(1)]"),
            err("[createArray()[0]]"),
        ] {
            assert!(e.chars().next().is_some_and(|c| c.is_lowercase()), "{e}");
        }
    }
}
