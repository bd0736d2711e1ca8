//! Azure Resource Manager: paging, long-running operations, case-insensitive paths, batch,
//! deployments, native errors, and the record of who called.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{API, Env, header, send};

/// Follows `nextLink`s and returns every item and the number of pages.
async fn all_pages(env: &Env, first: &str) -> (Vec<Value>, usize) {
    let mut items = Vec::new();
    let mut pages = 0;
    let mut next = Some(first.to_owned());
    while let Some(url) = next {
        let (s, _, body) = env.arm(Method::GET, &url, None).await;
        assert_eq!(s, StatusCode::OK, "{url}: {body}");
        pages += 1;
        items.extend(body["value"].as_array().unwrap().iter().cloned());
        next = body
            .get("nextLink")
            .and_then(Value::as_str)
            .map(str::to_owned);
        assert!(pages < 100, "paging terminates");
    }
    (items, pages)
}

fn vm_body() -> Value {
    json!({
        "location": "eastus",
        "properties": {
            "hardwareProfile": {"vmSize": "Standard_B1s"},
            "osProfile": {"computerName": "vm2", "adminUsername": "azureuser", "adminPassword": "N0t-Echoed-Back!"},
            "storageProfile": {"imageReference": {"publisher": "Canonical", "offer": "ubuntu-24_04-lts", "sku": "server", "version": "latest"}},
            "networkProfile": {"networkInterfaces": []}
        }
    })
}

#[tokio::test]
async fn lists_page_through_absolute_next_links() {
    let env = Env::start().await;
    let (groups, pages) = all_pages(
        &env,
        &format!("{}/resourcegroups?api-version=2022-09-01", env.sub()),
    )
    .await;
    assert_eq!(groups.len(), 3);
    assert!(pages >= 2, "a small page size always pages");
    let names: Vec<&str> = groups.iter().map(|g| g["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"demo-rg"));
    let (resources, pages) = all_pages(
        &env,
        &format!("{}/resources?api-version=2021-04-01", env.rg()),
    )
    .await;
    assert_eq!(resources.len(), 3, "{resources:?}");
    assert!(pages >= 2);
    let (_, _, first) = env
        .arm(
            Method::GET,
            &format!("{}/resourcegroups?api-version=2022-09-01", env.sub()),
            None,
        )
        .await;
    let next = first["nextLink"].as_str().unwrap();
    assert!(
        next.starts_with(env.sim.url()),
        "nextLink is absolute and reaches the simulator: {next}"
    );
    assert!(next.contains("$skiptoken="));
}

#[tokio::test]
async fn vm_create_and_delete_are_long_running() {
    let env = Env::start().await;
    let vm = format!(
        "{}/providers/Microsoft.Compute/virtualMachines/vm2",
        env.rg()
    );
    let (s, h, body) = env
        .arm(Method::PUT, &format!("{vm}?{API}"), Some(vm_body()))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!(body["properties"]["provisioningState"], "Creating");
    assert!(
        body["properties"]["osProfile"]
            .get("adminPassword")
            .is_none(),
        "passwords are never returned"
    );
    let poll = header(&h, "azure-asyncoperation").to_owned();
    assert_eq!(header(&h, "retry-after"), "1");
    assert!(poll.starts_with(env.sim.url()));
    let (_, h, status) = env.arm(Method::GET, &poll, None).await;
    assert_eq!(status["status"], "InProgress");
    assert!(h.get("retry-after").is_some());
    let (_, _, got) = env.arm(Method::GET, &format!("{vm}?{API}"), None).await;
    assert_eq!(got["properties"]["provisioningState"], "Creating");
    let (_, _, status) = env.arm(Method::GET, &poll, None).await;
    assert_eq!(status["status"], "Succeeded");
    let (s, _, got) = env
        .arm(
            Method::GET,
            &format!("{vm}?{API}&$expand=instanceView"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(got["properties"]["provisioningState"], "Succeeded");
    assert_eq!(
        got["properties"]["instanceView"]["statuses"][1]["code"],
        "PowerState/running"
    );

    let (s, h, _) = env
        .arm(Method::POST, &format!("{vm}/powerOff?{API}"), None)
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let location = header(&h, "location").to_owned();
    let (s, _, _) = env.arm(Method::GET, &location, None).await;
    assert_eq!(s, StatusCode::ACCEPTED, "still running");
    let (s, _, _) = env.arm(Method::GET, &location, None).await;
    assert_eq!(s, StatusCode::OK);
    let (_, _, view) = env
        .arm(Method::GET, &format!("{vm}/instanceView?{API}"), None)
        .await;
    assert_eq!(view["statuses"][1]["code"], "PowerState/stopped");

    let (s, h, _) = env.arm(Method::DELETE, &format!("{vm}?{API}"), None).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let poll = header(&h, "azure-asyncoperation").to_owned();
    assert!(h.get("location").is_some());
    let (_, _, got) = env.arm(Method::GET, &format!("{vm}?{API}"), None).await;
    assert_eq!(got["properties"]["provisioningState"], "Deleting");
    for expected in ["InProgress", "Succeeded"] {
        let (_, _, status) = env.arm(Method::GET, &poll, None).await;
        assert_eq!(status["status"], expected);
    }
    let (s, _, body) = env.arm(Method::GET, &format!("{vm}?{API}"), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "ResourceNotFound");
    let (s, _, _) = env.arm(Method::DELETE, &format!("{vm}?{API}"), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "deleting what is gone is a 204");
}

#[tokio::test]
async fn storage_create_answers_202_with_location_then_the_account() {
    let env = Env::start().await;
    let sa = format!(
        "{}/providers/Microsoft.Storage/storageAccounts/newstore01",
        env.rg()
    );
    let (s, h, body) = env
        .arm(
            Method::PUT,
            &format!("{sa}?api-version=2023-05-01"),
            Some(
                json!({"location": "eastus", "kind": "StorageV2", "sku": {"name": "Standard_LRS"}}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert!(body.is_null());
    let location = header(&h, "location").to_owned();
    let (s, _, _) = env.arm(Method::GET, &location, None).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let (s, _, account) = env.arm(Method::GET, &location, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(account["properties"]["provisioningState"], "Succeeded");
    assert_eq!(
        account["properties"]["primaryEndpoints"]["blob"],
        "https://newstore01.blob.core.windows.net/"
    );
    let (s, _, keys) = env
        .arm(
            Method::POST,
            &format!("{sa}/listKeys?api-version=2023-05-01"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let key1 = keys["keys"][0]["value"].as_str().unwrap().to_owned();
    assert_eq!(key1.len(), 88, "storage keys are 64 bytes in base64");
    let (_, _, regenerated) = env
        .arm(
            Method::POST,
            &format!("{sa}/regenerateKey?api-version=2023-05-01"),
            Some(json!({"keyName": "key1"})),
        )
        .await;
    assert_ne!(regenerated["keys"][0]["value"], key1);
    assert_eq!(regenerated["keys"][1]["value"], keys["keys"][1]["value"]);
    let (s, _, sas) = env.arm(Method::POST, &format!("{sa}/listAccountSas?api-version=2023-05-01"), Some(json!({"signedServices": "b", "signedResourceTypes": "sco", "signedPermission": "rl", "signedExpiry": "2030-01-01T00:00:00Z"}))).await;
    assert_eq!(s, StatusCode::OK, "{sas}");
    let token = sas["accountSasToken"].as_str().unwrap();
    assert!(
        token.starts_with("sv=") && token.contains("&sig="),
        "{token}"
    );
    let (s, _, err) = env
        .arm(
            Method::POST,
            &format!("{sa}/listAccountSas?api-version=2023-05-01"),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{err}");
    let (s, _, err) = env
        .arm(
            Method::PUT,
            &format!(
                "{}/providers/Microsoft.Storage/storageAccounts/Bad_Name?api-version=2023-05-01",
                env.rg()
            ),
            Some(json!({"location": "eastus"})),
        )
        .await;
    assert_eq!(
        (s, err["error"]["code"].as_str().unwrap()),
        (StatusCode::BAD_REQUEST, "AccountNameInvalid")
    );
}

#[tokio::test]
async fn resource_groups_crud_and_long_running_delete() {
    let env = Env::start().await;
    let rg = format!("{}/resourcegroups/tmp-rg?api-version=2022-09-01", env.sub());
    let (s, _, body) = env
        .arm(
            Method::PUT,
            &rg,
            Some(json!({"location": "westeurope", "tags": {"a": "b"}})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!(body["id"], format!("{}/resourceGroups/tmp-rg", env.sub()));
    let (s, _, _) = env
        .arm(Method::PUT, &rg, Some(json!({"location": "westeurope"})))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, body) = env.arm(Method::PUT, &rg, Some(json!({}))).await;
    assert_eq!(
        (s, body["error"]["code"].as_str().unwrap()),
        (StatusCode::BAD_REQUEST, "LocationRequired")
    );
    let sa = format!(
        "{}/resourceGroups/tmp-rg/providers/Microsoft.KeyVault/vaults/tmp-kv-1?api-version=2023-07-01",
        env.sub()
    );
    let (s, _, vault) = env.arm(Method::PUT, &sa, Some(json!({"location": "westeurope", "properties": {"sku": {"family": "A", "name": "standard"}}}))).await;
    assert_eq!(s, StatusCode::CREATED, "{vault}");
    assert_eq!(
        vault["properties"]["vaultUri"],
        "https://tmp-kv-1.vault.azure.net/"
    );
    let (s, h, _) = env.arm(Method::DELETE, &rg, None).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let location = header(&h, "location").to_owned();
    let (s, _, _) = env.arm(Method::GET, &location, None).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let (s, _, _) = env.arm(Method::GET, &location, None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, body) = env.arm(Method::GET, &rg, None).await;
    assert_eq!(
        (s, body["error"]["code"].as_str().unwrap()),
        (StatusCode::NOT_FOUND, "ResourceGroupNotFound")
    );
    assert!(!env.sim.resource_exists(&format!(
        "{}/resourceGroups/tmp-rg/providers/Microsoft.KeyVault/vaults/tmp-kv-1",
        env.sub()
    )));
}

#[tokio::test]
async fn paths_names_and_types_are_case_insensitive() {
    let env = Env::start().await;
    let sub = env.sim.subscription_id().to_uppercase();
    for path in [
        format!(
            "/subscriptions/{sub}/resourceGroups/demo-rg/providers/Microsoft.Compute/virtualMachines/vm1"
        ),
        format!(
            "/SUBSCRIPTIONS/{sub}/RESOURCEGROUPS/DEMO-RG/PROVIDERS/MICROSOFT.COMPUTE/VIRTUALMACHINES/VM1"
        ),
        format!(
            "/subscriptions/{sub}/resourcegroups/Demo-Rg/providers/microsoft.compute/virtualmachines/Vm1"
        ),
    ] {
        let (s, _, body) = env
            .arm(Method::GET, &format!("{path}?API-VERSION=2024-07-01"), None)
            .await;
        assert_eq!(s, StatusCode::OK, "{path}: {body}");
        assert_eq!(
            body["type"], "Microsoft.Compute/virtualMachines",
            "canonical type in answers"
        );
        assert_eq!(body["name"], "vm1", "the stored name's case");
    }
}

#[tokio::test]
async fn native_errors_for_missing_api_version_unknown_things_and_missing_token() {
    let env = Env::start().await;
    let vm = format!(
        "{}/providers/Microsoft.Compute/virtualMachines/vm1",
        env.rg()
    );
    let (s, h, body) = env.arm(Method::GET, &vm, None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "MissingApiVersionParameter");
    assert_eq!(header(&h, "x-ms-error-code"), "MissingApiVersionParameter");
    assert!(h.get("x-ms-request-id").is_some());
    let (s, _, body) = env
        .arm(Method::GET, &format!("{vm}?api-version=latest"), None)
        .await;
    assert_eq!(
        (s, body["error"]["code"].as_str().unwrap()),
        (StatusCode::BAD_REQUEST, "InvalidApiVersionParameter")
    );
    let (s, _, body) = env
        .arm(
            Method::GET,
            &format!("/subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups?{API}"),
            None,
        )
        .await;
    assert_eq!(
        (s, body["error"]["code"].as_str().unwrap()),
        (StatusCode::NOT_FOUND, "SubscriptionNotFound")
    );
    let (s, _, body) = env
        .arm(
            Method::GET,
            &format!(
                "{}/resourceGroups/nope/providers/Microsoft.Compute/virtualMachines/vm1?{API}",
                env.sub()
            ),
            None,
        )
        .await;
    assert_eq!(
        (s, body["error"]["code"].as_str().unwrap()),
        (StatusCode::NOT_FOUND, "ResourceGroupNotFound")
    );
    let (s, h, body) = send(env.http.get(env.url(&format!("{vm}?{API}")))).await;
    assert_eq!(
        (s, body["error"]["code"].as_str().unwrap()),
        (StatusCode::UNAUTHORIZED, "AuthenticationFailed")
    );
    assert!(header(&h, "www-authenticate").starts_with("Bearer"));
    let (_, h, _) = send(
        env.http
            .get(env.url(&format!("{vm}?{API}")))
            .bearer_auth(env.token("agent", crate::ARM))
            .header("x-ms-correlation-request-id", "corr-123"),
    )
    .await;
    assert_eq!(
        header(&h, "x-ms-correlation-request-id"),
        "corr-123",
        "the client's correlation id is echoed"
    );
}

#[tokio::test]
async fn the_call_log_names_who_reached_azure() {
    let env = Env::start().await;
    let since = env.sim.last_call_seq();
    let token = env.token("agent", crate::ARM);
    send(
        env.http
            .get(env.url(&format!("{}/resourcegroups?{API}", env.sub())))
            .bearer_auth(token),
    )
    .await;
    let calls = env.sim.calls_since(since);
    assert_eq!(calls.len(), 1);
    let caller = calls[0].caller.as_ref().unwrap();
    assert_eq!(caller.name.as_deref(), Some("agent"));
    assert_eq!(
        caller.object_id,
        env.sim
            .config()
            .principal("agent")
            .unwrap()
            .object_id
            .to_string()
    );
    let (s, _, body) = send(
        env.http
            .get(env.url(&format!("/_sim/calls?since={since}&service=arm"))),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body["calls"][0]["caller"]["name"], "agent");
}

#[tokio::test]
async fn batch_runs_every_inner_request_as_the_caller() {
    let env = Env::start().await;
    let since = env.sim.last_call_seq();
    let sa = format!(
        "{}/providers/Microsoft.Storage/storageAccounts/demostorage01",
        env.rg()
    );
    let body = json!({"requests": [
        {"name": "rg", "httpMethod": "GET", "url": format!("https://management.azure.com{}?api-version=2022-09-01", env.rg())},
        {"name": "keys", "httpMethod": "POST", "url": format!("{sa}/listKeys?api-version=2023-05-01")},
        {"name": "missing", "httpMethod": "GET", "url": format!("{}/providers/Microsoft.Compute/virtualMachines/nope?{API}", env.rg())},
        {"name": "tag", "httpMethod": "PATCH", "url": format!("{}?api-version=2022-09-01", env.rg()), "content": {"tags": {"batched": "yes"}}},
    ]});
    let (s, _, out) = env
        .arm(Method::POST, "/batch?api-version=2020-06-01", Some(body))
        .await;
    assert_eq!(s, StatusCode::OK, "{out}");
    let r = out["responses"].as_array().unwrap();
    assert_eq!(r.len(), 4);
    assert_eq!(
        (
            r[0]["name"].as_str().unwrap(),
            r[0]["httpStatusCode"].as_u64().unwrap()
        ),
        ("rg", 200)
    );
    assert_eq!(r[1]["content"]["keys"][0]["keyName"], "key1");
    assert_eq!(r[2]["httpStatusCode"], 404);
    assert_eq!(r[2]["content"]["error"]["code"], "ResourceNotFound");
    assert_eq!(r[3]["content"]["tags"]["batched"], "yes");
    let calls = env.sim.calls_since(since);
    assert_eq!(
        calls.iter().filter(|c| c.batch).count(),
        4,
        "every inner request is recorded"
    );
    assert!(
        calls
            .iter()
            .all(|c| c.caller.as_ref().unwrap().name.as_deref() == Some("portcullis-baseline"))
    );
    let (s, _, err) = env
        .arm(
            Method::POST,
            "/batch?api-version=2020-06-01",
            Some(json!({"requests": "nope"})),
        )
        .await;
    assert_eq!(
        (s, err["error"]["code"].as_str().unwrap()),
        (StatusCode::BAD_REQUEST, "InvalidBatchRequest")
    );
    let nested = json!({"requests": [{"httpMethod": "POST", "url": "/batch?api-version=2020-06-01", "content": {"requests": []}}]});
    let (_, _, out) = env
        .arm(Method::POST, "/batch?api-version=2020-06-01", Some(nested))
        .await;
    assert_eq!(
        out["responses"][0]["httpStatusCode"], 400,
        "no batch inside a batch"
    );
}

fn storage_template() -> Value {
    json!({
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "parameters": {
            "name": {"type": "string"},
            "location": {"type": "string", "defaultValue": "[resourceGroup().location]"},
            "adminSecret": {"type": "securestring"}
        },
        "variables": {"sku": "Standard_LRS"},
        "resources": [{
            "type": "Microsoft.Storage/storageAccounts",
            "apiVersion": "2023-05-01",
            "name": "[parameters('name')]",
            "location": "[parameters('location')]",
            "sku": {"name": "[variables('sku')]"},
            "kind": "StorageV2",
            "properties": {}
        }],
        "outputs": {
            "accountId": {"type": "string", "value": "[resourceId('Microsoft.Storage/storageAccounts', parameters('name'))]"},
            "key": {"type": "string", "value": "[listKeys(resourceId('Microsoft.Storage/storageAccounts', parameters('name')), '2023-05-01').keys[0].value]"}
        }
    })
}

#[tokio::test]
async fn deployments_create_resources_and_return_outputs() {
    let env = Env::start().await;
    let dep = format!(
        "{}/providers/Microsoft.Resources/deployments/dep1?api-version=2024-03-01",
        env.rg()
    );
    let body = json!({"properties": {"mode": "Incremental", "template": storage_template(), "parameters": {"name": {"value": "deployed01"}, "adminSecret": {"value": "p@ss-never-echoed"}}}});
    let (s, h, created) = env.arm(Method::PUT, &dep, Some(body)).await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let poll = header(&h, "azure-asyncoperation").to_owned();
    assert!(
        !created.to_string().contains("p@ss-never-echoed"),
        "secure parameters are never echoed"
    );
    for expected in ["InProgress", "Succeeded"] {
        let (_, _, status) = env.arm(Method::GET, &poll, None).await;
        assert_eq!(status["status"], expected);
    }
    let (s, _, got) = env.arm(Method::GET, &dep, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(got["properties"]["provisioningState"], "Succeeded");
    let account_id = format!(
        "{}/providers/Microsoft.Storage/storageAccounts/deployed01",
        env.rg()
    );
    assert_eq!(
        got["properties"]["outputs"]["accountId"]["value"],
        account_id
    );
    let keys = env.sim.storage_keys(&account_id);
    assert_eq!(
        got["properties"]["outputs"]["key"]["value"], keys[0],
        "listKeys() reaches the template's outputs"
    );
    let (s, _, account) = env
        .arm(
            Method::GET,
            &format!("{account_id}?api-version=2023-05-01"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        account["location"], "eastus",
        "defaultValue expressions evaluate"
    );
    assert_eq!(account["sku"]["name"], "Standard_LRS");
}

#[tokio::test]
async fn complete_mode_deletes_what_the_template_omits() {
    let env = Env::start().await;
    assert!(env.sim.resource_exists(&format!(
        "{}/providers/Microsoft.Compute/virtualMachines/vm1",
        env.rg()
    )));
    let dep = format!(
        "{}/providers/Microsoft.Resources/deployments/wipe?api-version=2024-03-01",
        env.rg()
    );
    let body = json!({"properties": {"mode": "Complete", "template": storage_template(), "parameters": {"name": {"value": "survivor01"}, "adminSecret": {"value": "x"}}}});
    let (s, _, out) = env.arm(Method::PUT, &dep, Some(body)).await;
    assert_eq!(s, StatusCode::CREATED, "{out}");
    assert!(!env.sim.resource_exists(&format!(
        "{}/providers/Microsoft.Compute/virtualMachines/vm1",
        env.rg()
    )));
    assert!(!env.sim.resource_exists(&format!(
        "{}/providers/Microsoft.KeyVault/vaults/demo-kv",
        env.rg()
    )));
    assert!(env.sim.resource_exists(&format!(
        "{}/providers/Microsoft.Storage/storageAccounts/survivor01",
        env.rg()
    )));
    let (s, _, err) = env.arm(Method::PUT, &dep, Some(json!({"properties": {"mode": "Incremental", "templateLink": {"uri": "https://example.com/t.json"}}}))).await;
    assert_eq!(
        (s, err["error"]["code"].as_str().unwrap()),
        (StatusCode::BAD_REQUEST, "InvalidContentLink")
    );
    let (s, _, err) = env
        .arm(
            Method::PUT,
            &dep,
            Some(json!({"properties": {"mode": "Sideways", "template": {}}})),
        )
        .await;
    assert_eq!(
        (s, err["error"]["code"].as_str().unwrap()),
        (StatusCode::BAD_REQUEST, "InvalidDeploymentMode")
    );
    let bad = json!({"properties": {"mode": "Incremental", "template": {"resources": [{"type": "Microsoft.Storage/storageAccounts", "apiVersion": "2023-05-01", "name": "[nosuchfunction()]", "location": "eastus"}]}}});
    let (s, _, err) = env.arm(Method::PUT, &dep, Some(bad)).await;
    assert_eq!(
        (s, err["error"]["code"].as_str().unwrap()),
        (StatusCode::BAD_REQUEST, "InvalidTemplateDeployment")
    );
}

#[tokio::test]
async fn arm_vault_secrets_write_through_to_the_data_plane_and_never_show_values() {
    let env = Env::start().await;
    let secret = format!(
        "{}/providers/Microsoft.KeyVault/vaults/demo-kv/secrets/from-arm?api-version=2023-07-01",
        env.rg()
    );
    let (s, _, body) = env
        .arm(
            Method::PUT,
            &secret,
            Some(json!({"properties": {"value": "arm-set-value-123"}})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert!(body["properties"].get("value").is_none());
    assert_eq!(
        env.sim.secret_value("demo-kv", "from-arm").as_deref(),
        Some("arm-set-value-123")
    );
    let (_, _, list) = env
        .arm(
            Method::GET,
            &format!(
                "{}/providers/Microsoft.KeyVault/vaults/demo-kv/secrets?api-version=2023-07-01",
                env.rg()
            ),
            None,
        )
        .await;
    assert!(!list.to_string().contains("arm-set-value-123"));
}
