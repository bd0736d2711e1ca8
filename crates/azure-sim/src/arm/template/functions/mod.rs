//! The template functions, one file per family, and the table that names them.
//! <https://learn.microsoft.com/azure/azure-resource-manager/templates/template-functions>

pub(super) mod args;
mod collections;
mod deployment;
mod format;
mod guid;
mod logic;
mod numeric;
mod strings;
mod time;

use serde_json::Value;

use super::TemplateHost;
use super::section::Section;

/// Upper bound for strings a function pads out, so `padLeft('', 2000000000)` cannot exhaust memory.
const MAX_GENERATED_CHARS: usize = 1 << 20;

/// A function over its arguments' values; the error is the message after "function 'x' failed".
type ValuesFn = fn(&[Value]) -> Result<Value, String>;
/// A function over its arguments' values that also reads the deployment it runs in.
type DeployedFn = fn(&Deployment<'_>, &[Value]) -> Result<Value, String>;

/// What a name in an expression calls.
pub(super) enum Function {
    /// Its arguments are evaluated first, left to right.
    Eager(Eager),
    /// It chooses which of its arguments to evaluate, so the evaluator runs it itself.
    Lazy(Lazy),
}

/// A function run once all its arguments are values.
pub(super) enum Eager {
    Values(ValuesFn),
    Deployed(DeployedFn),
    /// `parameters()` and `variables()` evaluate other parts of the template, which only the
    /// evaluator can do; it runs them itself.
    Parameters,
    Variables,
}

/// Only the chosen branch of `if` is evaluated, so the other may be invalid, and `and` and
/// `or` short-circuit like the Bicep operators that compile to them.
pub(super) enum Lazy {
    If,
    And,
    Or,
}

/// What a function may see of the deployment it runs in. Deliberately not the evaluator: no
/// function here can evaluate other parts of the template.
pub(super) struct Deployment<'c> {
    pub(super) template: &'c Value,
    pub(super) name: &'c str,
    pub(super) host: &'c dyn TemplateHost,
    /// Where the call sits, for functions Azure allows only in some sections.
    pub(super) section: Section,
}

const fn values(f: ValuesFn) -> Function {
    Function::Eager(Eager::Values(f))
}

const fn deployed(f: DeployedFn) -> Function {
    Function::Eager(Eager::Deployed(f))
}

/// Every function the evaluator knows, by lowercase name, sorted for binary search; anything
/// else is reported as unknown before its arguments are evaluated.
static FUNCTIONS: &[(&str, Function)] = &[
    ("add", values(numeric::add)),
    ("and", Function::Lazy(Lazy::And)),
    ("array", values(collections::array)),
    ("base64", values(strings::base64)),
    ("base64tojson", values(strings::base64_to_json)),
    ("base64tostring", values(strings::base64_to_string)),
    ("bool", values(logic::bool)),
    ("coalesce", values(collections::coalesce)),
    ("concat", values(strings::concat)),
    ("contains", values(collections::contains)),
    ("createarray", values(collections::create_array)),
    ("createobject", values(collections::create_object)),
    ("deployment", deployed(deployment::deployment)),
    ("div", values(numeric::div)),
    ("empty", values(collections::empty)),
    ("endswith", values(strings::ends_with)),
    ("environment", values(deployment::environment)),
    ("equals", values(logic::equals)),
    (
        "extensionresourceid",
        values(deployment::extension_resource_id),
    ),
    ("false", values(logic::false_)),
    ("first", values(collections::first)),
    ("format", values(format::format)),
    ("greater", values(logic::greater)),
    ("greaterorequals", values(logic::greater_or_equals)),
    ("guid", values(guid::guid)),
    ("if", Function::Lazy(Lazy::If)),
    ("indexof", values(strings::index_of)),
    ("int", values(logic::int)),
    ("intersection", values(collections::intersection)),
    ("json", values(strings::json)),
    ("last", values(collections::last)),
    ("lastindexof", values(strings::last_index_of)),
    ("length", values(collections::length)),
    ("less", values(logic::less)),
    ("lessorequals", values(logic::less_or_equals)),
    ("listkeys", deployed(deployment::list_keys)),
    ("max", values(numeric::max)),
    ("min", values(numeric::min)),
    ("mod", values(numeric::mod_)),
    ("mul", values(numeric::mul)),
    ("newguid", deployed(guid::new_guid)),
    ("not", values(logic::not)),
    ("null", values(logic::null)),
    ("or", Function::Lazy(Lazy::Or)),
    ("padleft", values(strings::pad_left)),
    ("parameters", Function::Eager(Eager::Parameters)),
    ("range", values(numeric::range)),
    ("reference", deployed(deployment::reference)),
    ("replace", values(strings::replace)),
    ("resourcegroup", deployed(deployment::resource_group)),
    ("resourceid", deployed(deployment::resource_id)),
    ("skip", values(collections::skip)),
    ("split", values(strings::split)),
    ("startswith", values(strings::starts_with)),
    ("string", values(strings::string)),
    ("sub", values(numeric::sub)),
    ("subscription", deployed(deployment::subscription)),
    (
        "subscriptionresourceid",
        deployed(deployment::subscription_resource_id),
    ),
    ("substring", values(strings::substring)),
    ("take", values(collections::take)),
    ("tenant", deployed(deployment::tenant)),
    ("tenantresourceid", values(deployment::tenant_resource_id)),
    ("tolower", values(strings::to_lower)),
    ("toupper", values(strings::to_upper)),
    ("trim", values(strings::trim)),
    ("true", values(logic::true_)),
    ("union", values(collections::union)),
    ("uniquestring", values(guid::unique_string)),
    ("utcnow", deployed(time::utc_now)),
    ("variables", Function::Eager(Eager::Variables)),
];

/// The function called `lowercase_name`; function names are case-insensitive, so callers
/// lowercase them first.
pub(super) fn lookup(lowercase_name: &str) -> Option<&'static Function> {
    let at = FUNCTIONS
        .binary_search_by(|(name, _)| (*name).cmp(lowercase_name))
        .ok()?;
    FUNCTIONS.get(at).map(|(_, function)| function)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::{FUNCTIONS, lookup};
    use crate::arm::template::Context;
    use crate::arm::template::fixture::{HOST, ok};

    #[test]
    fn case_insensitive_function_names() {
        assert_eq!(
            ok("[CONCAT(Parameters('STORAGENAME'), ToUpper('x'), RESOURCEGROUP().name)]"),
            json!("st1Xrg1")
        );
        assert_eq!(ok("[If(True(), 'y', 'n')]"), json!("y"));
    }

    #[test]
    fn every_known_function_is_implemented() {
        let t = json!({});
        let ctx = Context::new(&t, &Value::Null, "d", &HOST).unwrap();
        let known_functions: Vec<&str> = FUNCTIONS.iter().map(|(name, _)| *name).collect();
        for f in &known_functions {
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
        assert!(known_functions.iter().all(|f| {
            f.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        }));
    }

    #[test]
    fn the_table_is_sorted_so_lookup_finds_every_name() {
        assert!(
            FUNCTIONS
                .windows(2)
                .all(|pair| matches!(pair, [(a, _), (b, _)] if a < b)),
            "FUNCTIONS must be sorted by name, without duplicates"
        );
        for (name, _) in FUNCTIONS {
            assert!(lookup(name).is_some(), "{name}");
        }
        assert!(lookup("nope").is_none());
        assert!(lookup("Concat").is_none(), "callers lowercase names first");
    }
}
