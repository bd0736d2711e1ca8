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
//!
//! Reading order: `lex` and `parse` turn an expression into a call tree; `eval` walks the
//! template, evaluates expressions and resolves parameters and variables; the functions live
//! in `functions`, one file per family behind a table of names; `parameters` checks parameter
//! values against their declarations.

mod eval;
mod functions;
mod lex;
mod parameters;
mod parse;
mod section;
mod value;

#[cfg(test)]
mod fixture;

use serde_json::Value;

pub use eval::Context;

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

#[cfg(test)]
mod tests {
    use crate::arm::template::fixture::err;

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
