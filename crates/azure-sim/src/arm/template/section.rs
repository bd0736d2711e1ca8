//! Where in the template a value is evaluated, and the functions Azure forbids there.
//! <https://learn.microsoft.com/azure/azure-resource-manager/templates/template-functions-date#utcnow>
//! <https://learn.microsoft.com/azure/azure-resource-manager/templates/template-functions-resource#reference>

/// Where the value being evaluated sits in the template: Azure forbids some functions in
/// some sections, and a template relying on them here would fail there.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Section {
    Body,
    Variables,
    ParameterDefault,
}

impl Section {
    pub(super) fn describe(self) -> &'static str {
        match self {
            Section::Body => "resources and outputs",
            Section::Variables => "a variable's value",
            Section::ParameterDefault => "a parameter's defaultValue",
        }
    }

    /// Refuses a function that may only be used in the `allowed` sections.
    pub(super) fn require(self, allowed: &[Section]) -> Result<(), String> {
        if allowed.contains(&self) {
            Ok(())
        } else if allowed == [Section::ParameterDefault] {
            Err("it can only be used in a parameter's defaultValue".into())
        } else {
            Err(format!("it cannot be used in {}", self.describe()))
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::arm::template::fixture::{HOST, eval_in};

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
}
