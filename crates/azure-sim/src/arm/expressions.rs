//! The ARM template expression language, as far as the simulator's deployments need it:
//! `"[...]"` strings with string and integer literals, function calls, `.property` and
//! `[index]` access. <https://learn.microsoft.com/azure/azure-resource-manager/templates/template-expressions>
//!
//! Functions: parameters, variables, concat, format, resourceGroup, subscription,
//! deployment, resourceId, subscriptionResourceId, listKeys, reference, toLower, toUpper,
//! uniqueString (deterministic, not Azure's exact hash), string, int, bool, length, empty,
//! equals, not, and, or, if, contains, replace, substring, split, trim, base64,
//! base64ToString, createObject, createArray, union, coalesce, first, last, true, false,
//! null, utcNow. Anything else is an error naming it; no input can make evaluation panic or
//! recurse without bound.

use std::cell::RefCell;
use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// What the template can ask of the world it is deployed into.
pub trait TemplateHost {
    /// `resourceGroup()`: an object with id, name, location...
    fn resource_group(&self) -> Value;
    /// `subscription()`: id, subscriptionId, tenantId, displayName.
    fn subscription(&self) -> Value;
    /// `listKeys(resourceId, apiVersion)`: the list-keys action's answer.
    fn list_keys(&self, resource_id: &str, api_version: &str) -> Result<Value, String>;
    /// `reference(resourceId[, apiVersion, 'Full'])`: the properties (or the whole body).
    fn reference(&self, resource_id: &str, full: bool) -> Result<Value, String>;
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TemplateError {
    #[error("expression '{expr}': {message}")]
    Syntax { expr: String, message: String },
    #[error("unknown function '{0}'")]
    UnknownFunction(String),
    #[error("function '{name}': {message}")]
    Call { name: String, message: String },
    #[error("parameter '{0}' has no value and no defaultValue")]
    MissingParameter(String),
    #[error("no parameter '{0}' in the template")]
    UnknownParameter(String),
    #[error("no variable '{0}' in the template")]
    UnknownVariable(String),
    #[error("variable '{0}' refers to itself")]
    Cycle(String),
    #[error("the expression nests too deeply")]
    TooDeep,
}

/// Bound on nesting (of expressions, and of values walked).
const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Str(String),
    Int(i64),
    Call(String, Vec<Expr>),
    Prop(Box<Expr>, String),
    Index(Box<Expr>, Box<Expr>),
}

// === parsing ===

struct Parser<'s> {
    src: &'s str,
    chars: Vec<char>,
    pos: usize,
}

impl Parser<'_> {
    fn err(&self, message: impl Into<String>) -> TemplateError {
        TemplateError::Syntax {
            expr: self.src.to_owned(),
            message: message.into(),
        }
    }

    fn ws(&mut self) {
        while self.chars.get(self.pos).is_some_and(|c| c.is_whitespace()) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, c: char) -> bool {
        self.ws();
        if self.chars.get(self.pos) == Some(&c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expr(&mut self, depth: usize) -> Result<Expr, TemplateError> {
        if depth > MAX_DEPTH {
            return Err(TemplateError::TooDeep);
        }
        self.ws();
        let mut e = match self.chars.get(self.pos) {
            Some('\'') => self.string()?,
            Some(c) if c.is_ascii_digit() || *c == '-' => self.int()?,
            Some(c) if c.is_alphabetic() || *c == '_' => {
                let name = self.ident();
                if !self.eat('(') {
                    return Err(self.err(format!("'{name}' must be called like a function")));
                }
                let mut args = Vec::new();
                if !self.eat(')') {
                    loop {
                        args.push(self.expr(depth + 1)?);
                        if self.eat(')') {
                            break;
                        }
                        if !self.eat(',') {
                            return Err(self.err("expected ',' or ')'"));
                        }
                    }
                }
                Expr::Call(name, args)
            }
            _ => return Err(self.err(format!("unexpected input at position {}", self.pos))),
        };
        loop {
            if self.eat('.') {
                self.ws();
                let name = self.ident();
                if name.is_empty() {
                    return Err(self.err("expected a property name after '.'"));
                }
                e = Expr::Prop(Box::new(e), name);
            } else if self.eat('[') {
                let index = self.expr(depth + 1)?;
                if !self.eat(']') {
                    return Err(self.err("expected ']'"));
                }
                e = Expr::Index(Box::new(e), Box::new(index));
            } else {
                return Ok(e);
            }
        }
    }

    fn ident(&mut self) -> String {
        let start = self.pos;
        while self
            .chars
            .get(self.pos)
            .is_some_and(|c| c.is_alphanumeric() || *c == '_' || *c == '$')
        {
            self.pos += 1;
        }
        self.chars[start..self.pos].iter().collect()
    }

    fn string(&mut self) -> Result<Expr, TemplateError> {
        self.pos += 1;
        let mut s = String::new();
        loop {
            match self.chars.get(self.pos) {
                None => return Err(self.err("unterminated string")),
                Some('\'') if self.chars.get(self.pos + 1) == Some(&'\'') => {
                    s.push('\'');
                    self.pos += 2;
                }
                Some('\'') => {
                    self.pos += 1;
                    return Ok(Expr::Str(s));
                }
                Some(c) => {
                    s.push(*c);
                    self.pos += 1;
                }
            }
        }
    }

    fn int(&mut self) -> Result<Expr, TemplateError> {
        let start = self.pos;
        if self.chars[self.pos] == '-' {
            self.pos += 1;
        }
        while self.chars.get(self.pos).is_some_and(char::is_ascii_digit) {
            self.pos += 1;
        }
        let text: String = self.chars[start..self.pos].iter().collect();
        text.parse()
            .map(Expr::Int)
            .map_err(|_| self.err(format!("'{text}' is not an integer")))
    }
}

fn parse(src: &str) -> Result<Expr, TemplateError> {
    let mut p = Parser {
        src,
        chars: src.chars().collect(),
        pos: 0,
    };
    let e = p.expr(0)?;
    p.ws();
    if p.pos != p.chars.len() {
        return Err(p.err("unexpected input after the expression"));
    }
    Ok(e)
}

// === evaluation ===

/// A template being evaluated: its parameters and variables, and the world around it.
pub struct Context<'a> {
    template: &'a Value,
    parameters: &'a Value,
    deployment_name: &'a str,
    host: &'a dyn TemplateHost,
    /// Variables evaluated so far (by lowercased name).
    variables: RefCell<HashMap<String, Value>>,
    /// Variables being evaluated now: a name met again is a cycle.
    evaluating: RefCell<Vec<String>>,
}

fn find_ci<'v>(obj: &'v Value, name: &str) -> Option<&'v Value> {
    obj.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl<'a> Context<'a> {
    /// `parameters` is the deployment's `properties.parameters` (`{"name": {"value": x}}`).
    pub fn new(
        template: &'a Value,
        parameters: &'a Value,
        deployment_name: &'a str,
        host: &'a dyn TemplateHost,
    ) -> Result<Self, TemplateError> {
        Ok(Context {
            template,
            parameters,
            deployment_name,
            host,
            variables: RefCell::new(HashMap::new()),
            evaluating: RefCell::new(Vec::new()),
        })
    }

    /// Evaluates a JSON value: expression strings are evaluated, `"[[..."` is the literal
    /// `"[..."`, objects and arrays are walked (keys are not evaluated).
    pub fn evaluate(&self, value: &Value) -> Result<Value, TemplateError> {
        self.walk(value, 0)
    }

    fn walk(&self, value: &Value, depth: usize) -> Result<Value, TemplateError> {
        if depth > MAX_DEPTH {
            return Err(TemplateError::TooDeep);
        }
        Ok(match value {
            Value::String(s) if s.starts_with("[[") => Value::String(s[1..].to_owned()),
            Value::String(s) if s.starts_with('[') && s.ends_with(']') && s.len() >= 2 => {
                self.evaluate_expression(&s[1..s.len() - 1])?
            }
            Value::Object(m) => {
                let mut out = Map::new();
                for (k, v) in m {
                    out.insert(k.clone(), self.walk(v, depth + 1)?);
                }
                Value::Object(out)
            }
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|v| self.walk(v, depth + 1))
                    .collect::<Result<_, _>>()?,
            ),
            other => other.clone(),
        })
    }

    /// Evaluates one expression, without the surrounding brackets.
    pub fn evaluate_expression(&self, expr: &str) -> Result<Value, TemplateError> {
        let parsed = parse(expr)?;
        self.eval(&parsed)
    }

    fn eval(&self, e: &Expr) -> Result<Value, TemplateError> {
        match e {
            Expr::Str(s) => Ok(json!(s)),
            Expr::Int(i) => Ok(json!(i)),
            Expr::Prop(inner, name) => {
                let v = self.eval(inner)?;
                find_ci(&v, name)
                    .cloned()
                    .ok_or_else(|| TemplateError::Call {
                        name: "property access".into(),
                        message: format!("no property '{name}'"),
                    })
            }
            Expr::Index(inner, index) => {
                let v = self.eval(inner)?;
                match (self.eval(index)?, &v) {
                    (Value::Number(n), Value::Array(items)) => n
                        .as_u64()
                        .and_then(|i| items.get(i as usize))
                        .cloned()
                        .ok_or_else(|| TemplateError::Call {
                            name: "index".into(),
                            message: format!("index {n} is out of range"),
                        }),
                    (Value::String(k), Value::Object(_)) => {
                        find_ci(&v, &k).cloned().ok_or_else(|| TemplateError::Call {
                            name: "index".into(),
                            message: format!("no property '{k}'"),
                        })
                    }
                    _ => Err(TemplateError::Call {
                        name: "index".into(),
                        message: "cannot index this value".into(),
                    }),
                }
            }
            Expr::Call(name, args) => self.call(name, args),
        }
    }

    fn parameter(&self, name: &str) -> Result<Value, TemplateError> {
        if let Some(given) = find_ci(self.parameters, name) {
            return Ok(given.get("value").cloned().unwrap_or(Value::Null));
        }
        let def = find_ci(&self.template["parameters"], name)
            .ok_or_else(|| TemplateError::UnknownParameter(name.to_owned()))?;
        match def.get("defaultValue") {
            Some(d) => self.walk(d, 1),
            None => Err(TemplateError::MissingParameter(name.to_owned())),
        }
    }

    fn variable(&self, name: &str) -> Result<Value, TemplateError> {
        let key = name.to_ascii_lowercase();
        if let Some(v) = self.variables.borrow().get(&key) {
            return Ok(v.clone());
        }
        if self.evaluating.borrow().contains(&key) {
            return Err(TemplateError::Cycle(name.to_owned()));
        }
        if self.evaluating.borrow().len() > MAX_DEPTH {
            return Err(TemplateError::TooDeep);
        }
        let def = find_ci(&self.template["variables"], name)
            .ok_or_else(|| TemplateError::UnknownVariable(name.to_owned()))?
            .clone();
        self.evaluating.borrow_mut().push(key.clone());
        let value = self.walk(&def, 1);
        self.evaluating.borrow_mut().pop();
        let value = value?;
        self.variables.borrow_mut().insert(key, value.clone());
        Ok(value)
    }

    fn resource_id(
        &self,
        args: &[Value],
        subscription_scope: bool,
    ) -> Result<Value, TemplateError> {
        let strs: Vec<String> = args.iter().map(text).collect();
        let type_at =
            strs.iter()
                .position(|s| s.contains('/'))
                .ok_or_else(|| TemplateError::Call {
                    name: "resourceId".into(),
                    message: "no resource type argument".into(),
                })?;
        let (scope_args, rest) = strs.split_at(type_at);
        let (ty, names) = rest.split_first().expect("type_at is an index of strs");
        let sub_default = self.host.subscription()["subscriptionId"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let rg_default = self.host.resource_group()["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let (sub, rg) = match scope_args {
            [] => (sub_default, Some(rg_default)),
            [rg] if !subscription_scope => (sub_default, Some(rg.clone())),
            [sub] => (sub.clone(), None),
            [sub, rg] if !subscription_scope => (sub.clone(), Some(rg.clone())),
            _ => {
                return Err(TemplateError::Call {
                    name: "resourceId".into(),
                    message: "too many scope arguments".into(),
                });
            }
        };
        let rg = if subscription_scope { None } else { rg };
        let mut parts = ty.split('/');
        let namespace = parts.next().unwrap_or_default();
        let types: Vec<&str> = parts.collect();
        if types.len() != names.len() || types.is_empty() {
            return Err(TemplateError::Call {
                name: "resourceId".into(),
                message: format!(
                    "type '{ty}' needs {} name(s), got {}",
                    types.len(),
                    names.len()
                ),
            });
        }
        let mut id = format!("/subscriptions/{sub}");
        if let Some(rg) = rg {
            id.push_str(&format!("/resourceGroups/{rg}"));
        }
        id.push_str(&format!("/providers/{namespace}"));
        for (t, n) in types.iter().zip(names) {
            id.push_str(&format!("/{t}/{n}"));
        }
        Ok(json!(id))
    }

    fn call(&self, name: &str, args: &[Expr]) -> Result<Value, TemplateError> {
        let lower = name.to_ascii_lowercase();
        // `if` evaluates only the branch it takes.
        if lower == "if" {
            if args.len() != 3 {
                return Err(TemplateError::Call {
                    name: name.into(),
                    message: "takes 3 arguments".into(),
                });
            }
            return match self.eval(&args[0])? {
                Value::Bool(true) => self.eval(&args[1]),
                Value::Bool(false) => self.eval(&args[2]),
                _ => Err(TemplateError::Call {
                    name: name.into(),
                    message: "the condition must be a boolean".into(),
                }),
            };
        }
        let a: Vec<Value> = args
            .iter()
            .map(|x| self.eval(x))
            .collect::<Result<_, _>>()?;
        let bad = |message: &str| TemplateError::Call {
            name: name.to_owned(),
            message: message.to_owned(),
        };
        let arity = |n: usize| {
            if a.len() == n {
                Ok(())
            } else {
                Err(bad(&format!("takes {n} argument(s), got {}", a.len())))
            }
        };
        let s = |i: usize| {
            a.get(i)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| bad(&format!("argument {} must be a string", i + 1)))
        };
        Ok(match lower.as_str() {
            "parameters" => {
                arity(1)?;
                self.parameter(&s(0)?)?
            }
            "variables" => {
                arity(1)?;
                self.variable(&s(0)?)?
            }
            "concat" => {
                if a.iter().all(Value::is_array) && !a.is_empty() {
                    Value::Array(
                        a.iter()
                            .flat_map(|x| x.as_array().cloned().unwrap_or_default())
                            .collect(),
                    )
                } else {
                    json!(a.iter().map(text).collect::<String>())
                }
            }
            "format" => {
                let mut out = s(0)?;
                for (i, v) in a.iter().enumerate().skip(1) {
                    out = out.replace(&format!("{{{}}}", i - 1), &text(v));
                }
                json!(out)
            }
            "resourcegroup" => self.host.resource_group(),
            "subscription" => self.host.subscription(),
            "deployment" => json!({"name": self.deployment_name, "properties": {}}),
            "resourceid" => self.resource_id(&a, false)?,
            "subscriptionresourceid" => self.resource_id(&a, true)?,
            "listkeys" => {
                arity(2)?;
                self.host.list_keys(&s(0)?, &s(1)?).map_err(|m| bad(&m))?
            }
            "reference" => {
                let full = a
                    .get(2)
                    .and_then(Value::as_str)
                    .is_some_and(|f| f.eq_ignore_ascii_case("full"));
                self.host.reference(&s(0)?, full).map_err(|m| bad(&m))?
            }
            "tolower" => json!(s(0)?.to_lowercase()),
            "toupper" => json!(s(0)?.to_uppercase()),
            "trim" => json!(s(0)?.trim()),
            "uniquestring" => {
                let digest =
                    Sha256::digest(a.iter().map(text).collect::<Vec<_>>().join("-").as_bytes());
                const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
                json!(
                    digest
                        .iter()
                        .take(13)
                        .map(|b| ALPHABET[(*b as usize) % 32] as char)
                        .collect::<String>()
                )
            }
            "string" => {
                arity(1)?;
                json!(text(&a[0]))
            }
            "int" => {
                arity(1)?;
                match &a[0] {
                    Value::Number(n) => json!(n.as_i64().ok_or_else(|| bad("not an integer"))?),
                    Value::String(t) => {
                        json!(t.trim().parse::<i64>().map_err(|_| bad("not an integer"))?)
                    }
                    _ => return Err(bad("not an integer")),
                }
            }
            "bool" => {
                arity(1)?;
                match &a[0] {
                    Value::Bool(b) => json!(b),
                    Value::String(t) if t.eq_ignore_ascii_case("true") => json!(true),
                    Value::String(t) if t.eq_ignore_ascii_case("false") => json!(false),
                    Value::Number(n) => json!(n.as_i64() != Some(0)),
                    _ => return Err(bad("not a boolean")),
                }
            }
            "length" => {
                arity(1)?;
                json!(match &a[0] {
                    Value::String(t) => t.chars().count(),
                    Value::Array(x) => x.len(),
                    Value::Object(m) => m.len(),
                    _ => return Err(bad("needs a string, array or object")),
                })
            }
            "empty" => {
                arity(1)?;
                json!(match &a[0] {
                    Value::Null => true,
                    Value::String(t) => t.is_empty(),
                    Value::Array(x) => x.is_empty(),
                    Value::Object(m) => m.is_empty(),
                    _ => false,
                })
            }
            "equals" => {
                arity(2)?;
                json!(a[0] == a[1])
            }
            "not" => {
                arity(1)?;
                json!(!a[0].as_bool().ok_or_else(|| bad("needs a boolean"))?)
            }
            "and" | "or" => {
                let bools: Vec<bool> = a
                    .iter()
                    .map(|v| v.as_bool().ok_or_else(|| bad("needs booleans")))
                    .collect::<Result<_, _>>()?;
                json!(if lower == "and" {
                    bools.iter().all(|b| *b)
                } else {
                    bools.iter().any(|b| *b)
                })
            }
            "contains" => {
                arity(2)?;
                json!(match &a[0] {
                    Value::String(t) => t.contains(&text(&a[1])),
                    Value::Array(x) => x.contains(&a[1]),
                    Value::Object(_) => find_ci(&a[0], &text(&a[1])).is_some(),
                    _ => return Err(bad("needs a string, array or object")),
                })
            }
            "replace" => {
                arity(3)?;
                json!(s(0)?.replace(&s(1)?, &s(2)?))
            }
            "substring" => {
                let t: Vec<char> = s(0)?.chars().collect();
                let start = a.get(1).and_then(Value::as_u64).unwrap_or(0) as usize;
                let len = a
                    .get(2)
                    .and_then(Value::as_u64)
                    .map_or(t.len().saturating_sub(start), |l| l as usize);
                if start > t.len() || start + len > t.len() {
                    return Err(bad("out of range"));
                }
                json!(t[start..start + len].iter().collect::<String>())
            }
            "split" => {
                arity(2)?;
                json!(s(0)?.split(&s(1)?).collect::<Vec<_>>())
            }
            "base64" => json!(STANDARD.encode(s(0)?)),
            "base64tostring" => json!(
                String::from_utf8(STANDARD.decode(s(0)?).map_err(|_| bad("not base64"))?)
                    .map_err(|_| bad("not UTF-8"))?
            ),
            "createobject" => {
                if !a.len().is_multiple_of(2) {
                    return Err(bad("takes key/value pairs"));
                }
                let mut m = Map::new();
                for pair in a.chunks(2) {
                    m.insert(text(&pair[0]), pair[1].clone());
                }
                Value::Object(m)
            }
            "createarray" => Value::Array(a),
            "union" => {
                let mut m = Map::new();
                for v in &a {
                    for (k, x) in v.as_object().ok_or_else(|| bad("takes objects"))? {
                        m.insert(k.clone(), x.clone());
                    }
                }
                Value::Object(m)
            }
            "coalesce" => a.into_iter().find(|v| !v.is_null()).unwrap_or(Value::Null),
            "first" | "last" => {
                arity(1)?;
                match &a[0] {
                    Value::Array(x) => (if lower == "first" {
                        x.first()
                    } else {
                        x.last()
                    })
                    .cloned()
                    .unwrap_or(Value::Null),
                    Value::String(t) => json!(
                        (if lower == "first" {
                            t.chars().next()
                        } else {
                            t.chars().last()
                        })
                        .map(String::from)
                        .unwrap_or_default()
                    ),
                    _ => return Err(bad("needs an array or a string")),
                }
            }
            "true" => json!(true),
            "false" => json!(false),
            "null" => Value::Null,
            "utcnow" => {
                json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            }
            _ => return Err(TemplateError::UnknownFunction(name.to_owned())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Host;

    impl TemplateHost for Host {
        fn resource_group(&self) -> Value {
            json!({"id": "/subscriptions/s1/resourceGroups/rg1", "name": "rg1", "location": "westeurope"})
        }
        fn subscription(&self) -> Value {
            json!({"id": "/subscriptions/s1", "subscriptionId": "s1", "tenantId": "t1"})
        }
        fn list_keys(&self, id: &str, _v: &str) -> Result<Value, String> {
            if id.ends_with("/sa1") {
                Ok(json!({"keys": [{"keyName": "key1", "value": "K1"}]}))
            } else {
                Err("not found".into())
            }
        }
        fn reference(&self, id: &str, full: bool) -> Result<Value, String> {
            Ok(if full {
                json!({"id": id, "properties": {"x": 1}})
            } else {
                json!({"x": 1})
            })
        }
    }

    fn eval(template: Value, params: Value, e: &str) -> Result<Value, TemplateError> {
        let host = Host;
        let ctx = Context::new(&template, &params, "dep", &host)?;
        ctx.evaluate(&json!(e))
    }

    #[test]
    fn literals_escapes_and_nesting() {
        let t = json!({});
        assert_eq!(
            eval(t.clone(), json!({}), "[concat('a', 'b''c', string(3))]").unwrap(),
            json!("ab'c3")
        );
        assert_eq!(
            eval(t.clone(), json!({}), "[[not an expression]").unwrap(),
            json!("[not an expression]")
        );
        assert_eq!(eval(t.clone(), json!({}), "plain").unwrap(), json!("plain"));
        assert_eq!(
            eval(t.clone(), json!({}), "[format('{0}-{1}', 'x', -2)]").unwrap(),
            json!("x--2")
        );
        assert_eq!(
            eval(t.clone(), json!({}), "[if(equals(1, 1), 'yes', nosuch())]").unwrap(),
            json!("yes")
        );
        assert_eq!(
            eval(t, json!({}), "[TOLOWER(resourceGroup().NAME)]").unwrap(),
            json!("rg1"),
            "names are case-insensitive"
        );
    }

    #[test]
    fn parameters_defaults_and_variables() {
        let t = json!({
            "parameters": {"name": {"type": "string"}, "loc": {"type": "string", "defaultValue": "[resourceGroup().location]"}, "none": {"type": "string"}},
            "variables": {"a": "[concat(parameters('name'), '-a')]", "b": "[variables('a')]", "loop1": "[variables('loop2')]", "loop2": "[variables('loop1')]"}
        });
        let p = json!({"Name": {"value": "n"}});
        assert_eq!(
            eval(t.clone(), p.clone(), "[parameters('name')]").unwrap(),
            json!("n")
        );
        assert_eq!(
            eval(t.clone(), p.clone(), "[parameters('loc')]").unwrap(),
            json!("westeurope")
        );
        assert_eq!(
            eval(t.clone(), p.clone(), "[variables('B')]").unwrap(),
            json!("n-a")
        );
        assert_eq!(
            eval(t.clone(), p.clone(), "[parameters('none')]"),
            Err(TemplateError::MissingParameter("none".into()))
        );
        assert!(matches!(
            eval(t, p, "[variables('loop1')]"),
            Err(TemplateError::Cycle(_))
        ));
    }

    #[test]
    fn resource_ids_and_list_keys_chains() {
        let t = json!({});
        assert_eq!(
            eval(
                t.clone(),
                json!({}),
                "[resourceId('Microsoft.KeyVault/vaults/secrets', 'kv', 's1')]"
            )
            .unwrap(),
            json!(
                "/subscriptions/s1/resourceGroups/rg1/providers/Microsoft.KeyVault/vaults/kv/secrets/s1"
            )
        );
        assert_eq!(
            eval(
                t.clone(),
                json!({}),
                "[resourceId('other', 'Microsoft.Storage/storageAccounts', 'x')]"
            )
            .unwrap(),
            json!(
                "/subscriptions/s1/resourceGroups/other/providers/Microsoft.Storage/storageAccounts/x"
            )
        );
        assert_eq!(eval(t.clone(), json!({}), "[listKeys(resourceId('Microsoft.Storage/storageAccounts', 'sa1'), '2023-01-01').keys[0].value]").unwrap(), json!("K1"));
        assert_eq!(
            eval(
                t.clone(),
                json!({}),
                "[reference('x', '2023-01-01', 'Full')['properties'].x]"
            )
            .unwrap(),
            json!(1)
        );
        assert!(
            eval(
                t.clone(),
                json!({}),
                "[resourceId('Microsoft.Storage/storageAccounts')]"
            )
            .is_err()
        );
        assert!(
            eval(
                t,
                json!({}),
                "[listKeys(resourceId('Microsoft.Storage/storageAccounts', 'nope'), '1').keys[5]]"
            )
            .is_err()
        );
    }

    #[test]
    fn malformed_input_is_an_error_never_a_panic() {
        for bad in [
            "[concat('a']",
            "['unterminated]",
            "[nosuch()]",
            "[concat('a') extra]",
            "[1.5]",
            "[foo]",
            "[.x]",
            "[concat('a')[']",
            "[-]",
            "[substring('ab', 5)]",
            "[createObject('a')]",
        ] {
            assert!(eval(json!({}), json!({}), bad).is_err(), "{bad}");
        }
        let deep = format!("[{}'x'{}]", "concat(".repeat(200), ")".repeat(200));
        assert_eq!(
            eval(json!({}), json!({}), &deep),
            Err(TemplateError::TooDeep)
        );
        assert!(
            matches!(eval(json!({}), json!({}), "[nosuch()]"), Err(TemplateError::UnknownFunction(f)) if f == "nosuch")
        );
    }
}
