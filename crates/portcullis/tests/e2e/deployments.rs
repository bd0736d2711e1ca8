//! Deployments: the inline template's resources are judged as the writes they are, Complete
//! mode as a delete of the group's other resources; what the gateway cannot inspect never
//! passes on an allow alone; conditions read `deployment.*`. The simulator's call log shows
//! what got through.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{Env, Setup, TEST_RULES, leak};

/// The test policy, plus: agents may deploy in demo-rg, except templates that create key
/// vaults (a condition on `deployment.*`).
fn rules() -> &'static str {
    leak(format!(
        r#"{TEST_RULES}    - name: agents-deploy-in-demo-rg
      effect: allow
      principals: [group:ai-agents]
      actions: [Microsoft.Resources/deployments/write]
      scopes: ["/subscriptions/*/resourceGroups/demo-rg"]
    - name: no-vaults-by-template
      effect: deny
      principals: ["*"]
      actions: [Microsoft.Resources/deployments/write]
      scopes: ["*"]
      when: "deployment.resources.exists(r, r.type == 'Microsoft.KeyVault/vaults')"
"#
    ))
}

fn vm(name: &str) -> Value {
    json!({"type": "Microsoft.Compute/virtualMachines", "apiVersion": "2024-07-01", "name": name,
           "location": "eastus", "properties": {"hardwareProfile": {"vmSize": "Standard_B1s"}}})
}

async fn deploy(env: &Env, name: &str, properties: Value) -> (StatusCode, Value) {
    let url = env.url(&format!(
        "{}/providers/Microsoft.Resources/deployments/{name}?api-version=2024-03-01",
        env.rg()
    ));
    let (s, _, b) = crate::send(
        env.http
            .put(url)
            .bearer_auth(env.token("agent"))
            .header("x-portcullis-wait", "0")
            .json(&json!({ "properties": properties })),
    )
    .await;
    (s, b)
}

#[tokio::test]
async fn deployments_are_judged_resource_by_resource() {
    assert!(TEST_RULES.contains("agents-write-vms"));
    let env = Env::with(Setup {
        rules: rules(),
        ..Default::default()
    })
    .await;
    let since = env.sim.last_call_seq();
    let deployed = |name: &str| {
        env.arm_calls(since)
            .iter()
            .any(|c| c.method == "PUT" && c.path.ends_with(&format!("/deployments/{name}")))
    };

    // Allowed: a VM, which the agent may write alone.
    let (s, b) = deploy(
        &env,
        "vms",
        json!({"mode": "Incremental", "template": {"resources": [vm("deployed-vm")]}}),
    )
    .await;
    assert!(s.is_success(), "{s}: {b}");
    assert!(deployed("vms"));

    // A storage account inside: held, as a storage account create alone would be.
    let (s, b) = deploy(
        &env,
        "storage",
        json!({"template": {"resources": [vm("vm-x"), {"type": "Microsoft.Storage/storageAccounts",
            "apiVersion": "2023-05-01", "name": "[parameters('sa')]", "location": "eastus",
            "sku": {"name": "Standard_LRS"}, "kind": "StorageV2"}],
            "parameters": {"sa": {"type": "string"}}},
         "parameters": {"sa": {"value": "deployedsa"}}}),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert_eq!(b["error"]["code"], "ApprovalPending", "{b}");
    let id = b["error"]["additionalInfo"][0]["info"]["approvalId"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, _, a) = crate::send(
        env.http
            .get(format!("https://{}/api/approvals/{id}", env.gw.admin_addr))
            .bearer_auth(env.token("alice")),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{a}");
    let inner = a["inner"]
        .as_array()
        .expect("the approval lists the resources");
    assert_eq!(inner.len(), 2, "{a}");
    assert_eq!(
        inner[1]["action"],
        "Microsoft.Storage/storageAccounts/write"
    );
    assert!(
        inner[1]["path"].as_str().unwrap().ends_with("/deployedsa"),
        "the name resolved from the parameters: {a}"
    );
    assert_eq!(inner[1]["decision"], "approve");
    assert!(!deployed("storage"));

    // Refused, each as its inner operation would be alone.
    let refused = [
        (
            "complete",
            json!({"mode": "Complete", "template": {"resources": [vm("vm1")]}}),
            "Microsoft.Resources/subscriptions/resourceGroups/resources/delete",
        ),
        (
            "elsewhere",
            json!({"template": {"resources": [{"type": "Microsoft.Compute/virtualMachines", "name": "v",
                "apiVersion": "2024-07-01", "resourceGroup": "other-rg"}]}}),
            "cannot inspect",
        ),
        (
            "linked",
            json!({"templateLink": {"uri": "https://example.com/t.json"}}),
            "templateLink",
        ),
        (
            "script",
            json!({"template": {"resources": [{"type": "Microsoft.Resources/deploymentScripts",
                "name": "s", "apiVersion": "2023-08-01", "kind": "AzureCLI"}]}}),
            "Microsoft.Resources/deploymentScripts/write",
        ),
        (
            "roles",
            json!({"template": {"resources": [{"type": "Microsoft.Authorization/roleAssignments",
                "name": "00000000-0000-0000-0000-0000000000bb", "apiVersion": "2022-04-01"}]}}),
            "Microsoft.Authorization/roleAssignments/write",
        ),
        (
            "vault",
            json!({"template": {"resources": [{"type": "Microsoft.KeyVault/vaults",
                "name": "kv9", "apiVersion": "2023-07-01"}]}}),
            "no-vaults-by-template",
        ),
    ];
    for (name, properties, why) in refused {
        let (s, b) = deploy(&env, name, properties).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{name}: {b}");
        assert_eq!(b["error"]["code"], "AuthorizationFailed", "{name}: {b}");
        let message = b["error"]["message"].as_str().unwrap();
        assert!(message.contains(why), "{name}: {message}");
        assert!(!deployed(name), "{name} reached Azure");
    }

    // Not a deployment the gateway can read: refused as malformed.
    for (name, properties) in [
        ("sideways", json!({"mode": "Sideways", "template": {}})),
        ("notemplate", json!({})),
    ] {
        let (s, b) = deploy(&env, name, properties).await;
        assert!(
            s == StatusCode::BAD_REQUEST || s == StatusCode::FORBIDDEN,
            "{name}: {s} {b}"
        );
        assert!(!deployed(name), "{name} reached Azure");
    }
}
