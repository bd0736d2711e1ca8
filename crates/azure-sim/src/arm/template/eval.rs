//! Evaluation: walks template JSON, evaluates the expressions in it, and resolves parameters
//! and variables lazily, once each, with cycle detection.
//! <https://learn.microsoft.com/azure/azure-resource-manager/templates/template-expressions>

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use serde_json::{Map, Value};

use super::functions::args::{arity_message, not_boolean, single_name};
use super::functions::{self, Deployment, Eager, Function, Lazy};
use super::parameters::{check_parameter, declarations, given_values};
use super::parse::{Accessor, Node, Primary, parse_source};
use super::section::Section;
use super::value::{find_ci, index, property};
use super::{TemplateError, TemplateHost};

/// Evaluation frames (expression nodes, JSON levels, parameter and variable hops) alive at
/// once; keeps hostile templates from overflowing the stack.
const MAX_EVAL_DEPTH: usize = 128;

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
        let decls = declarations(template)?;
        match template.get("variables") {
            None | Some(Value::Null | Value::Object(_)) => {}
            Some(_) => {
                return Err(TemplateError::InvalidTemplate(
                    "the template's variables must be an object".into(),
                ));
            }
        }
        let params = given_values(decls, parameters)?;
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

    /// An unknown name fails before any argument is evaluated. `if`, `and` and `or` are run
    /// here, not in `functions`, because they choose which of their arguments to evaluate.
    fn eval_call(&self, name: &str, args: &[Node], src: &str) -> Result<Value, TemplateError> {
        let Some(function) = functions::lookup(&name.to_ascii_lowercase()) else {
            return Err(unknown_function(name, src));
        };
        match function {
            Function::Lazy(Lazy::If) => self.eval_if(name, args, src),
            Function::Lazy(Lazy::And) => self.eval_and_or(name, false, args, src),
            Function::Lazy(Lazy::Or) => self.eval_and_or(name, true, args, src),
            Function::Eager(eager) => {
                let mut values = Vec::with_capacity(args.len());
                for arg in args {
                    values.push(self.eval_node(arg, src)?);
                }
                self.finish_call(eager, name, &values, src)
            }
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

    /// A function whose arguments are evaluated. `parameters()` and `variables()` are run here
    /// rather than in `functions`, because they evaluate other parts of the template.
    fn finish_call(
        &self,
        function: &Eager,
        name: &str,
        values: &[Value],
        src: &str,
    ) -> Result<Value, TemplateError> {
        let fail = |message: String| function_error(name, src, message);
        match function {
            Eager::Parameters => self.parameter(single_name(values).map_err(fail)?),
            Eager::Variables => {
                if self.section.get() == Section::ParameterDefault {
                    return Err(fail(format!(
                        "it cannot be used in {}",
                        Section::ParameterDefault.describe()
                    )));
                }
                self.variable(single_name(values).map_err(fail)?)
            }
            Eager::Values(f) => f(values).map_err(fail),
            Eager::Deployed(f) => f(&self.deployment(), values).map_err(fail),
        }
    }

    /// What functions may see of the deployment, at the section being evaluated.
    fn deployment(&self) -> Deployment<'_> {
        Deployment {
            template: self.template,
            name: self.deployment_name,
            host: self.host,
            section: self.section.get(),
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
}

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

/// Keeps the innermost error's own context; cycles already name their whole chain.
fn wrap(e: TemplateError, with: impl FnOnce(Box<TemplateError>) -> TemplateError) -> TemplateError {
    match e {
        TemplateError::Cycle(_) | TemplateError::TooDeep(_) => e,
        other => with(Box::new(other)),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, Value, json};

    use crate::arm::template::fixture::{
        HOST, ST_ID, SUB, err, eval_in, given, ok, sample_template,
    };
    use crate::arm::template::{Context, TemplateError};

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
    fn evaluate_expression_accepts_both_forms() {
        assert_eq!(ok("concat('a', 'b')"), json!("ab"));
        assert_eq!(ok("[concat('a', 'b')]"), json!("ab"));
        assert_eq!(ok("split(parameters('storageName'), 't')[1]"), json!("1"));
        assert_eq!(ok("[[literal]"), json!("[literal]"));
    }
}
