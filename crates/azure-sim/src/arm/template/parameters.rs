//! Template parameters: their declarations, and the values a deployment gives them, checked
//! as Azure checks them before deploying anything (type, allowedValues, min/max value and length).
//! <https://learn.microsoft.com/azure/azure-resource-manager/templates/parameters>

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::TemplateError;
use super::value::{article_type, find_ci, json_eq, to_text};

/// The template's `parameters` section; a template without one declares none.
pub(super) fn declarations(template: &Value) -> Result<Option<&Map<String, Value>>, TemplateError> {
    match template.get("parameters") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err(TemplateError::InvalidTemplate(
            "the template's parameters must be an object".into(),
        )),
    }
}

/// Checks every declaration, then the deployment's `properties.parameters` (each entry
/// `{"value": X}`, or `null` for none) against them, and returns the given values by
/// lowercase name. Parameters neither given nor defaulted, and given parameters the template
/// does not declare, are errors; Key Vault references are refused, as the caller would need
/// to resolve them.
pub(super) fn given_values(
    decls: Option<&Map<String, Value>>,
    parameters: &Value,
) -> Result<HashMap<String, Value>, TemplateError> {
    let empty = Map::new();
    let decls = decls.unwrap_or(&empty);
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
        if !params.contains_key(&name.to_ascii_lowercase()) && decl.get("defaultValue").is_none() {
            return Err(TemplateError::MissingParameter(name.clone()));
        }
    }
    Ok(params)
}

/// Checks one value, given or defaulted, against its declaration.
pub(super) fn check_parameter(
    name: &str,
    decl: &Value,
    value: &Value,
) -> Result<(), TemplateError> {
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
    use serde_json::{Value, json};

    use crate::arm::template::Context;
    use crate::arm::template::fixture::{HOST, err, eval_in, ok, sample_template};

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
}
