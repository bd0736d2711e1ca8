use super::overrides::OVERRIDES;
use super::*;
use proptest::prelude::*;

const Q: &str = "api-version=2024-03-01";
const SUB: &str = "00000000-0000-0000-0000-000000000001";

fn m(s: &str) -> Method {
    Method::from_bytes(s.as_bytes()).expect("test method")
}

fn arm_action(method: &str, path: &str) -> String {
    match name_arm(&m(method), path, Q) {
        Ok(op) => op.action,
        Err(e) => panic!("{method} {path}: {e}"),
    }
}

fn arm_err(method: &str, path: &str) -> NamingError {
    match name_arm(&m(method), path, Q) {
        Ok(op) => panic!("{method} {path} named {}", op.action),
        Err(e) => e,
    }
}

fn kv_action(method: &str, path: &str) -> String {
    match name_keyvault(&m(method), "kv1", path, "api-version=7.4") {
        Ok(op) => {
            assert_eq!(op.plane, Plane::Data);
            op.action
        }
        Err(e) => panic!("{method} {path}: {e}"),
    }
}

fn rg(tail: &str) -> String {
    format!("/subscriptions/{SUB}/resourceGroups/rg1{tail}")
}

// === azure-notes §3 examples ===

#[test]
fn notes_examples() {
    let vm = rg("/providers/Microsoft.Compute/virtualMachines/vm1");
    assert_eq!(
        arm_action("POST", &format!("{vm}/start")),
        "Microsoft.Compute/virtualMachines/start/action"
    );
    assert_eq!(
        arm_action(
            "POST",
            &rg("/providers/Microsoft.Storage/storageAccounts/sa/listKeys")
        ),
        "Microsoft.Storage/storageAccounts/listKeys/action"
    );
    assert_eq!(
        arm_action("GET", &format!("/subscriptions/{SUB}/resourcegroups/rg1")),
        "Microsoft.Resources/subscriptions/resourceGroups/read"
    );
    assert_eq!(
        arm_action("DELETE", &rg("")),
        "Microsoft.Resources/subscriptions/resourceGroups/delete"
    );
    assert_eq!(
        arm_action(
            "PUT",
            &format!("/subscriptions/{SUB}/providers/Microsoft.Authorization/roleAssignments/ra1")
        ),
        "Microsoft.Authorization/roleAssignments/write"
    );
    assert_eq!(
        arm_action(
            "POST",
            &rg("/providers/Microsoft.Web/sites/app1/config/appsettings/list")
        ),
        "Microsoft.Web/sites/config/list/action"
    );
}

#[test]
fn crud_verbs() {
    let vm = rg("/providers/Microsoft.Compute/virtualMachines/vm1");
    for (method, verb) in [
        ("GET", "read"),
        ("HEAD", "read"),
        ("PUT", "write"),
        ("PATCH", "write"),
        ("DELETE", "delete"),
    ] {
        assert_eq!(
            arm_action(method, &vm),
            format!("Microsoft.Compute/virtualMachines/{verb}")
        );
    }
    for (method, verb) in [
        ("GET", "read"),
        ("PUT", "write"),
        ("PATCH", "write"),
        ("DELETE", "delete"),
    ] {
        assert_eq!(
            arm_action(method, &rg("")),
            format!("Microsoft.Resources/subscriptions/resourceGroups/{verb}")
        );
    }
}

#[test]
fn resource_scope_is_filled() {
    let path = rg("/providers/Microsoft.Compute/virtualMachines/vm1");
    let op = name_arm(&Method::DELETE, &path, Q).expect("named");
    assert_eq!(op.plane, Plane::Control);
    assert_eq!(op.api_version, "2024-03-01");
    assert_eq!(
        op.scope,
        Scope {
            resource_id: Some(path.clone()),
            subscription: Some(SUB.to_string()),
            resource_group: Some("rg1".to_string()),
            provider: Some("Microsoft.Compute".to_string()),
            resource_type: Some("Microsoft.Compute/virtualMachines".to_string()),
            resource_name: Some("vm1".to_string()),
            vault: None,
        }
    );
}

#[test]
fn collections_and_nesting() {
    let list = rg("/providers/Microsoft.Compute/virtualMachines");
    let op = name_arm(&Method::GET, &list, Q).expect("named");
    assert_eq!(op.action, "Microsoft.Compute/virtualMachines/read");
    assert_eq!(op.scope.resource_id.as_deref(), Some(rg("").as_str()));
    assert_eq!(op.scope.resource_name, None);

    let secret = rg("/providers/Microsoft.KeyVault/vaults/kv/secrets/s1");
    let op = name_arm(&Method::PUT, &secret, Q).expect("named");
    assert_eq!(op.action, "Microsoft.KeyVault/vaults/secrets/write");
    assert_eq!(
        op.scope.resource_type.as_deref(),
        Some("Microsoft.KeyVault/vaults/secrets")
    );
    assert_eq!(op.scope.resource_name.as_deref(), Some("s1"));
    assert_eq!(op.scope.resource_id.as_deref(), Some(secret.as_str()));

    let secrets = rg("/providers/Microsoft.KeyVault/vaults/kv/secrets");
    let op = name_arm(&Method::GET, &secrets, Q).expect("named");
    assert_eq!(op.action, "Microsoft.KeyVault/vaults/secrets/read");
    assert_eq!(
        op.scope.resource_id.as_deref(),
        Some(rg("/providers/Microsoft.KeyVault/vaults/kv").as_str())
    );

    assert_eq!(
        arm_action(
            "GET",
            &rg("/providers/Microsoft.Storage/storageAccounts/sa/blobServices/default/containers")
        ),
        "Microsoft.Storage/storageAccounts/blobServices/containers/read"
    );
    assert_eq!(
        arm_action(
            "GET",
            &format!("/subscriptions/{SUB}/providers/Microsoft.Compute/virtualMachines")
        ),
        "Microsoft.Compute/virtualMachines/read"
    );
}

#[test]
fn post_action_scope_is_the_resource() {
    let vm = rg("/providers/Microsoft.Compute/virtualMachines/vm1");
    let op = name_arm(&Method::POST, &format!("{vm}/restart"), Q).expect("named");
    assert_eq!(op.scope.resource_id.as_deref(), Some(vm.as_str()));
    assert_eq!(op.scope.resource_name.as_deref(), Some("vm1"));
}

#[test]
fn extension_resources_take_the_last_provider() {
    let vm = rg("/providers/Microsoft.Compute/virtualMachines/vm1");
    let ra = format!("{vm}/providers/Microsoft.Authorization/roleAssignments/x");
    let op = name_arm(&Method::PUT, &ra, Q).expect("named");
    assert_eq!(op.action, "Microsoft.Authorization/roleAssignments/write");
    assert_eq!(op.scope.resource_id.as_deref(), Some(ra.as_str()));
    assert_eq!(
        op.scope.provider.as_deref(),
        Some("Microsoft.Authorization")
    );
    assert_eq!(op.scope.resource_group.as_deref(), Some("rg1"));
    assert_eq!(op.scope.subscription.as_deref(), Some(SUB));

    let list = format!("{vm}/providers/Microsoft.Authorization/roleAssignments");
    let op = name_arm(&Method::GET, &list, Q).expect("named");
    assert_eq!(op.action, "Microsoft.Authorization/roleAssignments/read");
    assert_eq!(op.scope.resource_id.as_deref(), Some(vm.as_str()));

    assert_eq!(
        arm_action(
            "PUT",
            &rg("/providers/Microsoft.Authorization/roleAssignments/x")
        ),
        "Microsoft.Authorization/roleAssignments/write"
    );
    assert_eq!(
        arm_action(
            "PUT",
            "/providers/Microsoft.Management/managementGroups/mg1/providers/Microsoft.Authorization/roleAssignments/x"
        ),
        "Microsoft.Authorization/roleAssignments/write"
    );
    assert_eq!(
        arm_action(
            "PUT",
            &format!("{vm}/providers/Microsoft.Insights/diagnosticSettings/d1")
        ),
        "Microsoft.Insights/diagnosticSettings/write"
    );
}

#[test]
fn names_may_be_keywords() {
    // A resource group and a VM named "providers" are names, not keywords.
    let path = format!(
        "/subscriptions/{SUB}/resourceGroups/providers/providers/Microsoft.Compute/virtualMachines/providers"
    );
    let op = name_arm(&Method::DELETE, &path, Q).expect("named");
    assert_eq!(op.action, "Microsoft.Compute/virtualMachines/delete");
    assert_eq!(op.scope.resource_group.as_deref(), Some("providers"));
    assert_eq!(op.scope.resource_name.as_deref(), Some("providers"));
}

#[test]
fn microsoft_resources_shapes() {
    let s = format!("/subscriptions/{SUB}");
    for (method, path, action) in [
        (
            "GET",
            "/subscriptions".to_string(),
            "Microsoft.Resources/subscriptions/read",
        ),
        ("GET", s.clone(), "Microsoft.Resources/subscriptions/read"),
        (
            "GET",
            format!("{s}/resourceGroups"),
            "Microsoft.Resources/subscriptions/resourceGroups/read",
        ),
        (
            "GET",
            rg("/resources"),
            "Microsoft.Resources/subscriptions/resourceGroups/resources/read",
        ),
        (
            "GET",
            format!("{s}/resources"),
            "Microsoft.Resources/subscriptions/resources/read",
        ),
        (
            "GET",
            format!("{s}/locations"),
            "Microsoft.Resources/subscriptions/locations/read",
        ),
        (
            "GET",
            format!("{s}/operationresults/abc"),
            "Microsoft.Resources/subscriptions/operationresults/read",
        ),
        (
            "GET",
            "/tenants".to_string(),
            "Microsoft.Resources/tenants/read",
        ),
        (
            "GET",
            "/providers".to_string(),
            "Microsoft.Resources/providers/read",
        ),
        (
            "GET",
            "/providers/Microsoft.Compute".to_string(),
            "Microsoft.Resources/providers/read",
        ),
        (
            "GET",
            format!("{s}/providers"),
            "Microsoft.Resources/subscriptions/providers/read",
        ),
        (
            "GET",
            format!("{s}/providers/Microsoft.Compute"),
            "Microsoft.Resources/subscriptions/providers/read",
        ),
        (
            "POST",
            format!("{s}/providers/Microsoft.Compute/register"),
            "Microsoft.Compute/register/action",
        ),
        (
            "POST",
            format!("{s}/providers/microsoft.compute/UNREGISTER"),
            "Microsoft.Compute/unregister/action",
        ),
        (
            "POST",
            format!("{s}/providers/Contoso.Widgets/register"),
            "Contoso.Widgets/register/action",
        ),
        (
            "POST",
            rg("/moveResources"),
            "Microsoft.Resources/subscriptions/resourceGroups/moveResources/action",
        ),
        (
            "POST",
            "/batch".to_string(),
            "Microsoft.Resources/batch/action",
        ),
        (
            "GET",
            "/providers/Microsoft.Compute/operations".to_string(),
            "Microsoft.Compute/operations/read",
        ),
    ] {
        assert_eq!(arm_action(method, &path), action, "{method} {path}");
    }
    let op = name_arm(&Method::GET, "/subscriptions", Q).expect("named");
    assert_eq!(op.scope.resource_id.as_deref(), Some("/"));
    let op = name_arm(&Method::POST, "/batch", Q).expect("named");
    assert_eq!(op.scope.resource_id.as_deref(), Some("/"));
}

#[test]
fn deployments_at_any_scope() {
    let scopes = [
        rg(""),
        format!("/subscriptions/{SUB}"),
        String::new(),
        "/providers/Microsoft.Management/managementGroups/mg1".to_string(),
    ];
    for scope in scopes {
        let d = format!("{scope}/providers/Microsoft.Resources/deployments/d1");
        assert_eq!(
            arm_action("GET", &d),
            "Microsoft.Resources/deployments/read"
        );
        assert_eq!(
            arm_action("PUT", &d),
            "Microsoft.Resources/deployments/write"
        );
        assert_eq!(
            arm_action("DELETE", &d),
            "Microsoft.Resources/deployments/delete"
        );
        for a in ["validate", "whatIf", "cancel"] {
            assert_eq!(
                arm_action("POST", &format!("{d}/{a}")),
                format!("Microsoft.Resources/deployments/{a}/action")
            );
        }
        assert_eq!(
            arm_action("GET", &format!("{d}/operations")),
            "Microsoft.Resources/deployments/operations/read"
        );
    }
}

#[test]
fn long_running_operation_polls() {
    let base = format!("/subscriptions/{SUB}/providers/Microsoft.Compute/locations/westus");
    for (kind, action) in [
        ("operations", "Microsoft.Compute/locations/operations/read"),
        (
            "operationResults",
            "Microsoft.Compute/locations/operationResults/read",
        ),
        (
            "asyncoperations",
            "Microsoft.Compute/locations/asyncoperations/read",
        ),
    ] {
        let op = name_arm(&Method::GET, &format!("{base}/{kind}/op-1"), Q).expect("named");
        assert_eq!(op.action, action);
        assert_eq!(op.scope.subscription.as_deref(), Some(SUB));
    }
    assert!(matches!(
        arm_err("DELETE", &format!("{base}/operations")),
        NamingError::MethodNotAllowed { .. }
    ));
}

#[test]
fn overrides() {
    let s = format!("/subscriptions/{SUB}");
    let op = name_arm(
        &Method::POST,
        "/providers/Microsoft.ResourceGraph/resources",
        Q,
    )
    .expect("named");
    assert_eq!(op.action, "Microsoft.ResourceGraph/resources/read");
    assert_eq!(op.scope.resource_id.as_deref(), Some("/"));
    assert_eq!(
        arm_action(
            "POST",
            &format!("{s}/providers/Microsoft.Storage/checkNameAvailability")
        ),
        "Microsoft.Storage/checknameavailability/read"
    );
    assert_eq!(
        arm_action(
            "POST",
            &format!("{s}/providers/Microsoft.KeyVault/checkNameAvailability")
        ),
        "Microsoft.KeyVault/checkNameAvailability/read"
    );
    assert_eq!(
        arm_action(
            "POST",
            &format!("{s}/providers/microsoft.web/CheckNameAvailability")
        ),
        "Microsoft.Web/checknameavailability/read"
    );
    for config in ["appsettings", "connectionstrings", "publishingcredentials"] {
        assert_eq!(
            arm_action(
                "POST",
                &rg(&format!(
                    "/providers/Microsoft.Web/sites/app1/config/{config}/list"
                ))
            ),
            "Microsoft.Web/sites/config/list/action"
        );
    }
    assert_eq!(
        arm_action(
            "POST",
            &rg("/providers/Microsoft.Web/sites/app1/slots/staging/config/appsettings/list")
        ),
        "Microsoft.Web/sites/slots/config/list/action"
    );
    // The tenant-level override does not leak to other scopes.
    assert!(matches!(
        arm_err(
            "POST",
            &format!("{s}/providers/Microsoft.ResourceGraph/resources")
        ),
        NamingError::MethodNotAllowed { .. }
    ));
}

#[test]
fn override_table_is_well_formed() {
    for o in OVERRIDES {
        let mut parts = o.pattern.split('/');
        assert!(parts.next().is_some_and(is_namespace), "{}", o.pattern);
        assert!(parts.all(|p| p == "*" || is_token(p)), "{}", o.pattern);
        assert!(!o.why.is_empty());
        assert!(o.action.split('/').all(|p| is_namespace(p) || is_token(p)));
    }
}

#[test]
fn canonical_table_agrees_with_itself() {
    for a in CANONICAL_TYPES {
        for b in CANONICAL_TYPES {
            for (x, y) in a.split('/').zip(b.split('/')) {
                if !is(x, y) {
                    break;
                }
                assert_eq!(x, y, "{a} vs {b}");
            }
        }
    }
}

#[test]
fn case_variants_name_the_same_action() {
    let canonical = arm_action(
        "DELETE",
        &rg("/providers/Microsoft.Compute/virtualMachines/vm1"),
    );
    let shouting = arm_action(
        "DELETE",
        &format!(
            "/SUBSCRIPTIONS/{SUB}/RESOURCEGROUPS/RG1/PROVIDERS/MICROSOFT.COMPUTE/VIRTUALMACHINES/VM1"
        ),
    );
    assert_eq!(canonical, "Microsoft.Compute/virtualMachines/delete");
    assert_eq!(shouting, canonical);

    let op = name_arm(
        &Method::GET,
        &format!("/Subscriptions/{SUB}/ResourceGroups/RG1/Providers/microsoft.keyvault/VAULTS/kv"),
        "API-VERSION=1",
    )
    .expect("named");
    assert_eq!(op.action, "Microsoft.KeyVault/vaults/read");
    // Keywords canonical, names as sent.
    assert_eq!(
        op.scope.resource_id.as_deref(),
        Some(
            format!(
                "/subscriptions/{SUB}/resourceGroups/RG1/providers/microsoft.keyvault/VAULTS/kv"
            )
            .as_str()
        )
    );
    assert_eq!(op.scope.provider.as_deref(), Some("microsoft.keyvault"));
    assert_eq!(op.action_lower(), "microsoft.keyvault/vaults/read");

    // Unknown namespaces and types keep the client's spelling.
    assert_eq!(
        arm_action("GET", &rg("/providers/contoso.WIDGETS/gadgets/g1")),
        "contoso.WIDGETS/gadgets/read"
    );
}

#[test]
fn api_version_is_required() {
    let vm = rg("/providers/Microsoft.Compute/virtualMachines/vm1");
    for q in ["", "x=1", "api-version=", "apiversion=1"] {
        assert_eq!(
            name_arm(&Method::GET, &vm, q),
            Err(NamingError::MissingApiVersion),
            "{q}"
        );
    }
    assert_eq!(
        name_arm(&Method::GET, &vm, "api-version=1&Api-Version=2"),
        Err(NamingError::ConflictingApiVersion)
    );
    let op = name_arm(
        &Method::GET,
        &vm,
        "a=b&Api-Version=2021-04-01&api-version=2021-04-01",
    )
    .expect("named");
    assert_eq!(op.api_version, "2021-04-01");
    assert_eq!(
        name_keyvault(&Method::GET, "kv1", "/secrets", ""),
        Err(NamingError::MissingApiVersion)
    );
}

#[test]
fn refuses_rather_than_guesses() {
    let s = format!("/subscriptions/{SUB}");
    let vm = rg("/providers/Microsoft.Compute/virtualMachines/vm1");
    for (method, path) in [
        ("GET", "/".to_string()),
        ("GET", "/foo".to_string()),
        ("GET", "/tenants/t1".to_string()),
        ("GET", format!("{s}/foo")),
        ("GET", rg("/foo/bar")),
        ("GET", rg("/providers/Microsoft.Compute")),
        (
            "GET",
            format!("{vm}/providers/Microsoft.Authorization/providers/Microsoft.X/y"),
        ),
    ] {
        assert!(
            matches!(arm_err(method, &path), NamingError::UnknownShape { .. }),
            "{method} {path}"
        );
    }
    for (method, path) in [
        ("OPTIONS", vm.clone()),
        ("TRACE", vm.clone()),
        ("get", vm.clone()),
        ("POST", vm.clone()),
        ("PUT", rg("/providers/Microsoft.Compute/virtualMachines")),
        ("DELETE", "/subscriptions".to_string()),
        ("PUT", s.clone()),
        ("POST", rg("")),
        ("GET", "/batch".to_string()),
        ("GET", format!("{s}/providers/Microsoft.Compute/register")),
        (
            "POST",
            "/providers/Microsoft.Compute/virtualMachines".to_string(),
        ),
        ("GET", rg("/moveResources")),
        // Only POST names `{rg}/{action}`.
        ("GET", rg("/foo")),
    ] {
        assert!(
            matches!(arm_err(method, &path), NamingError::MethodNotAllowed { .. }),
            "{method} {path}"
        );
    }
    for path in [
        format!("{vm}/providers"),
        rg("/providers"),
        format!("{s}/resourceGroups/rg1/providers"),
    ] {
        assert!(
            matches!(
                arm_err("GET", &path),
                NamingError::MissingNamespace(_) | NamingError::MethodNotAllowed { .. }
            ),
            "{path}"
        );
    }
    assert_eq!(
        arm_err("GET", &format!("{vm}/providers")),
        NamingError::MissingNamespace(format!("{vm}/providers"))
    );
    for path in [
        "".to_string(),
        "subscriptions".to_string(),
        format!("{s}//resourceGroups"),
        format!("{vm}/"),
        format!("{s}/resourceGroups/rg1/../rg2"),
        format!("{s}/./resourceGroups"),
    ] {
        assert!(
            matches!(arm_err("GET", &path), NamingError::MalformedPath { .. }),
            "{path}"
        );
    }
    for (method, path) in [
        ("GET", rg("/providers/Compute/virtualMachines/vm1")),
        ("GET", rg("/providers/Microsoft.Compute/virtual*/vm1")),
        ("POST", format!("{vm}/st*rt")),
        ("GET", rg("/providers/Microsoft.\u{212A}eyVault/vaults/kv")),
        (
            "GET",
            rg("/providers/Microsoft.KeyVault/vaults/kv/\u{17F}ecrets/x"),
        ),
    ] {
        assert!(
            matches!(arm_err(method, &path), NamingError::InvalidSegment { .. }),
            "{method} {path}"
        );
    }
}

// === Key Vault ===

#[test]
fn keyvault_secrets() {
    for (method, path, action) in [
        ("GET", "/secrets", "secrets/readMetadata/action"),
        ("GET", "/secrets/s1/versions", "secrets/readMetadata/action"),
        ("GET", "/deletedsecrets", "secrets/readMetadata/action"),
        ("GET", "/deletedsecrets/s1", "secrets/readMetadata/action"),
        ("GET", "/secrets/s1", "secrets/getSecret/action"),
        (
            "GET",
            "/secrets/s1/0123456789abcdef",
            "secrets/getSecret/action",
        ),
        ("HEAD", "/secrets/s1", "secrets/getSecret/action"),
        ("PUT", "/secrets/s1", "secrets/setSecret/action"),
        (
            "PATCH",
            "/secrets/s1/0123456789abcdef",
            "secrets/update/action",
        ),
        ("PATCH", "/secrets/s1", "secrets/update/action"),
        ("DELETE", "/secrets/s1", "secrets/delete"),
        ("POST", "/secrets/s1/backup", "secrets/backup/action"),
        ("POST", "/secrets/restore", "secrets/restore/action"),
        (
            "POST",
            "/deletedsecrets/s1/recover",
            "secrets/recover/action",
        ),
        ("DELETE", "/deletedsecrets/s1", "secrets/purge/action"),
        ("GET", "/SECRETS/s1/VERSIONS", "secrets/readMetadata/action"),
        ("POST", "/Secrets/s1/Backup", "secrets/backup/action"),
        ("DELETE", "/DeletedSecrets/s1", "secrets/purge/action"),
    ] {
        assert_eq!(
            kv_action(method, path),
            format!("Microsoft.KeyVault/vaults/{action}"),
            "{method} {path}"
        );
    }
    let op = name_keyvault(&Method::GET, "kv1", "/secrets/s1", "api-version=7.4").expect("named");
    assert_eq!(
        op.scope,
        Scope {
            provider: Some("Microsoft.KeyVault".to_string()),
            resource_type: Some("Microsoft.KeyVault/vaults/secrets".to_string()),
            resource_name: Some("s1".to_string()),
            vault: Some("kv1".to_string()),
            ..Scope::default()
        }
    );
}

#[test]
fn keyvault_keys_and_certificates() {
    for (method, path, action) in [
        ("GET", "/keys", "keys/read"),
        ("GET", "/keys/k1", "keys/read"),
        ("GET", "/keys/k1/versions", "keys/read"),
        ("GET", "/keys/k1/v1", "keys/read"),
        ("POST", "/keys/k1/create", "keys/create/action"),
        ("PUT", "/keys/k1", "keys/import/action"),
        ("DELETE", "/keys/k1", "keys/delete"),
        ("PATCH", "/keys/k1/v1", "keys/update/action"),
        ("POST", "/keys/k1/backup", "keys/backup/action"),
        ("POST", "/keys/restore", "keys/restore/action"),
        ("POST", "/keys/k1/rotate", "keys/rotate/action"),
        ("GET", "/keys/k1/rotationpolicy", "keyrotationpolicies/read"),
        (
            "PUT",
            "/keys/k1/rotationpolicy",
            "keyrotationpolicies/write",
        ),
        ("GET", "/deletedkeys/k1", "keys/read"),
        ("POST", "/deletedkeys/k1/recover", "keys/recover/action"),
        ("DELETE", "/deletedkeys/k1", "keys/purge/action"),
        ("POST", "/keys/k1/v1/encrypt", "keys/encrypt/action"),
        ("POST", "/keys/k1/v1/decrypt", "keys/decrypt/action"),
        ("POST", "/keys/k1/v1/wrapkey", "keys/wrap/action"),
        ("POST", "/keys/k1/v1/unwrapKey", "keys/unwrap/action"),
        ("POST", "/keys/k1/v1/sign", "keys/sign/action"),
        ("POST", "/keys/k1/v1/verify", "keys/verify/action"),
        ("POST", "/keys/k1/v1/release", "keys/release/action"),
        ("GET", "/certificates", "certificates/read"),
        ("GET", "/certificates/c1", "certificates/read"),
        ("GET", "/certificates/c1/pending", "certificates/read"),
        ("GET", "/certificates/c1/versions", "certificates/read"),
        (
            "POST",
            "/certificates/c1/create",
            "certificates/create/action",
        ),
        (
            "POST",
            "/certificates/c1/import",
            "certificates/import/action",
        ),
        (
            "POST",
            "/certificates/c1/backup",
            "certificates/backup/action",
        ),
        (
            "POST",
            "/certificates/restore",
            "certificates/restore/action",
        ),
        ("PATCH", "/certificates/c1/v1", "certificates/update/action"),
        ("DELETE", "/certificates/c1", "certificates/delete"),
        ("GET", "/deletedcertificates", "certificates/read"),
        (
            "POST",
            "/deletedcertificates/c1/recover",
            "certificates/recover/action",
        ),
        (
            "DELETE",
            "/deletedcertificates/c1",
            "certificates/purge/action",
        ),
        ("GET", "/certificates/issuers", "certificatecas/read"),
        ("PUT", "/certificates/issuers/i1", "certificatecas/write"),
        (
            "DELETE",
            "/certificates/Issuers/i1",
            "certificatecas/delete",
        ),
        ("PUT", "/certificates/contacts", "certificatecontacts/write"),
    ] {
        assert_eq!(
            kv_action(method, path),
            format!("Microsoft.KeyVault/vaults/{action}"),
            "{method} {path}"
        );
    }
}

#[test]
fn keyvault_refuses_unknown() {
    let err = |method: &str, path: &str| {
        name_keyvault(&m(method), "kv1", path, "api-version=7.4").expect_err(path)
    };
    for (method, path) in [
        ("GET", "/"),
        ("GET", "/storage"),
        ("GET", "/secrets/s1/v1/x"),
        ("POST", "/keys/k1/v1/exfiltrate"),
    ] {
        assert!(
            matches!(err(method, path), NamingError::UnknownShape { .. }),
            "{method} {path}"
        );
    }
    for (method, path) in [
        ("POST", "/secrets"),
        ("DELETE", "/secrets"),
        ("PUT", "/secrets/s1/v1"),
        ("GET", "/certificates/contacts"),
        ("PATCH", "/certificates/c1/policy"),
        ("OPTIONS", "/secrets"),
        // A GET would read version "encrypt"; no POST names a version-less operation.
        ("POST", "/keys/k1/encrypt"),
        ("POST", "/secrets/s1/frobnicate"),
    ] {
        assert!(
            matches!(err(method, path), NamingError::MethodNotAllowed { .. }),
            "{method} {path}"
        );
    }
    assert!(matches!(
        err("GET", "secrets"),
        NamingError::MalformedPath { .. }
    ));
    assert!(matches!(
        err("GET", "/secrets//x"),
        NamingError::MalformedPath { .. }
    ));
    for vault in ["", "a.b", "kv/1", "k v"] {
        assert_eq!(
            name_keyvault(&Method::GET, vault, "/secrets", "api-version=7.4"),
            Err(NamingError::InvalidVault(vault.to_string()))
        );
    }
}

#[test]
fn serializes_plane_lowercase() {
    let op = name_keyvault(&Method::GET, "kv1", "/secrets", "api-version=7.4").expect("named");
    let json = serde_json::to_value(&op).expect("serializes");
    assert_eq!(json["plane"], "data");
    assert_eq!(
        json["action"],
        "Microsoft.KeyVault/vaults/secrets/readMetadata/action"
    );
}

// === properties ===

/// Valid requests across every shape named here; the case property flips them.
fn known_requests() -> Vec<(Method, String)> {
    let s = format!("/subscriptions/{SUB}");
    let vm = rg("/providers/Microsoft.Compute/virtualMachines/vm1");
    vec![
        (Method::DELETE, vm.clone()),
        (Method::POST, format!("{vm}/start")),
        (
            Method::PUT,
            format!("{vm}/providers/Microsoft.Authorization/roleAssignments/x"),
        ),
        (
            Method::GET,
            rg("/providers/Microsoft.Compute/virtualMachines"),
        ),
        (
            Method::PUT,
            rg("/providers/Microsoft.KeyVault/vaults/kv/secrets/s1"),
        ),
        (Method::GET, rg("")),
        (Method::GET, rg("/resources")),
        (Method::POST, rg("/moveResources")),
        (Method::GET, "/subscriptions".to_string()),
        (Method::GET, format!("{s}/resources")),
        (Method::GET, format!("{s}/providers")),
        (
            Method::POST,
            format!("{s}/providers/Microsoft.Compute/register"),
        ),
        (
            Method::GET,
            format!("{s}/providers/Microsoft.Compute/locations/westus/operations/o1"),
        ),
        (Method::GET, format!("{s}/operationresults/o1")),
        (Method::POST, "/batch".to_string()),
        (Method::GET, "/tenants".to_string()),
        (
            Method::POST,
            "/providers/Microsoft.ResourceGraph/resources".to_string(),
        ),
        (
            Method::POST,
            format!("{s}/providers/Microsoft.Storage/checkNameAvailability"),
        ),
        (
            Method::POST,
            rg("/providers/Microsoft.Web/sites/a/config/connectionstrings/list"),
        ),
        (
            Method::POST,
            rg("/providers/Microsoft.Resources/deployments/d1/whatIf"),
        ),
    ]
}

fn known_kv_requests() -> Vec<(Method, &'static str)> {
    vec![
        (Method::GET, "/secrets/s1/versions"),
        (Method::GET, "/secrets/s1"),
        (Method::POST, "/secrets/restore"),
        (Method::DELETE, "/deletedsecrets/s1"),
        (Method::POST, "/keys/k1/v1/unwrapkey"),
        (Method::GET, "/keys/k1/rotationpolicy"),
        (Method::PUT, "/certificates/issuers/i1"),
        (Method::POST, "/certificates/c1/import"),
    ]
}

fn flip_case(s: &str, mask: &[bool]) -> String {
    s.chars()
        .zip(mask.iter().cycle())
        .map(|(c, &flip)| match (flip, c.is_ascii_uppercase()) {
            (false, _) => c,
            (true, true) => c.to_ascii_lowercase(),
            (true, false) => c.to_ascii_uppercase(),
        })
        .collect()
}

fn namespace_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        "Contoso\\.[A-Z][a-zA-Z0-9]{1,10}",
        Just("Microsoft.Compute".to_string()),
        Just("Microsoft.KeyVault".to_string()),
        Just("Microsoft.Storage".to_string()),
    ]
}

fn type_strategy() -> impl Strategy<Value = String> {
    "[a-z][a-zA-Z0-9]{0,12}"
        .prop_filter("a type, not the providers keyword", |t| !is(t, "providers"))
}

fn name_strategy() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9._()-]{1,20}".prop_filter("not a dot segment", |n| n != "." && n != "..")
}

fn method_strategy() -> impl Strategy<Value = (Method, &'static str)> {
    prop_oneof![
        Just((Method::GET, "read")),
        Just((Method::HEAD, "read")),
        Just((Method::PUT, "write")),
        Just((Method::PATCH, "write")),
        Just((Method::DELETE, "delete")),
    ]
}

/// What every successful naming must look like, whatever the input.
fn check_clean(op: &Operation) -> Result<(), TestCaseError> {
    prop_assert!(op.action.is_ascii());
    prop_assert!(!op.action.contains('*'));
    prop_assert!(op.action.split('/').all(|p| !p.is_empty()));
    prop_assert!(
        op.scope
            .resource_id
            .as_deref()
            .is_none_or(|id| id.starts_with('/'))
    );
    prop_assert_eq!(op.scope.resource_id.is_some(), op.plane == Plane::Control);
    Ok(())
}

proptest! {
    /// Flipping the case of any ASCII letter anywhere in a valid request (keywords,
    /// namespaces, types, names, action segments, the api-version key) never changes the
    /// lowered action.
    #[test]
    fn lowered_action_is_case_invariant(
        pick in 0usize..1000,
        mask in proptest::collection::vec(any::<bool>(), 1..64),
    ) {
        let arm = known_requests();
        let (method, path) = &arm[pick % arm.len()];
        let want = name_arm(method, path, Q).expect("known request").action_lower();
        let flipped = flip_case(path, &mask);
        let query = flip_case(Q, &mask);
        let got = name_arm(method, &flipped, &query).expect("flipped request");
        prop_assert_eq!(got.action_lower(), want);

        let kv = known_kv_requests();
        let (method, path) = &kv[pick % kv.len()];
        let want = name_keyvault(method, "kv1", path, Q).expect("known kv").action_lower();
        let got = name_keyvault(method, "kv1", &flip_case(path, &mask), Q).expect("flipped kv");
        prop_assert_eq!(got.action_lower(), want);
    }

    #[test]
    fn generated_paths_are_case_invariant(
        ns in namespace_strategy(),
        t1 in type_strategy(),
        n1 in name_strategy(),
        sub in name_strategy(),
        group in name_strategy(),
        (method, _) in method_strategy(),
        mask in proptest::collection::vec(any::<bool>(), 1..64),
    ) {
        let path =
            format!("/subscriptions/{sub}/resourceGroups/{group}/providers/{ns}/{t1}/{n1}");
        let want = name_arm(&method, &path, Q).expect("valid").action_lower();
        let got = name_arm(&method, &flip_case(&path, &mask), Q).expect("flipped");
        prop_assert_eq!(got.action_lower(), want);
    }

    /// Naming never panics, and whatever it names is a clean ASCII action with no
    /// wildcard or empty segment.
    #[test]
    fn never_panics_on_arbitrary_input(
        method in prop_oneof![
            Just(Method::GET), Just(Method::HEAD), Just(Method::PUT), Just(Method::PATCH),
            Just(Method::DELETE), Just(Method::POST), Just(Method::OPTIONS),
            Just(Method::CONNECT),
        ],
        path in "\\PC{0,200}",
        query in "\\PC{0,60}",
    ) {
        let named = [
            name_arm(&method, &path, &query),
            name_keyvault(&method, "kv1", &path, &query),
        ];
        for op in named.into_iter().flatten() {
            check_clean(&op)?;
        }
    }

    /// The same, with paths made mostly of the words the parser looks for, so that the
    /// deep branches are reached.
    #[test]
    fn never_panics_on_keyword_soup(
        method in prop_oneof![
            Just(Method::GET), Just(Method::PUT), Just(Method::PATCH),
            Just(Method::DELETE), Just(Method::POST),
        ],
        segs in proptest::collection::vec(prop_oneof![
            Just("subscriptions".to_string()), Just("resourceGroups".to_string()),
            Just("providers".to_string()), Just("Microsoft.Compute".to_string()),
            Just("virtualMachines".to_string()), Just("register".to_string()),
            Just("resources".to_string()), Just("batch".to_string()),
            Just("secrets".to_string()), Just("keys".to_string()),
            Just("certificates".to_string()), Just("issuers".to_string()),
            Just("versions".to_string()), Just("".to_string()),
            "[a-zA-Z0-9.*]{1,8}",
        ], 0..12),
    ) {
        let path = format!("/{}", segs.join("/"));
        let named = [
            name_arm(&method, &path, Q),
            name_keyvault(&method, "kv1", &path, Q),
        ];
        for op in named.into_iter().flatten() {
            check_clean(&op)?;
        }
    }

    /// `/subscriptions/{guid}/resourceGroups/{rg}/providers/{Ns}/{t1}/{n1}[/{t2}/{n2}]`
    /// names exactly `{Ns}/{t1}[/{t2}]/{verb}`, and its id is the path itself.
    #[test]
    fn resource_paths_name_exactly(
        sub in "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        group in name_strategy(),
        ns in "Contoso\\.[A-Z][a-zA-Z0-9]{1,10}",
        t1 in type_strategy(),
        n1 in name_strategy(),
        child in proptest::option::of((type_strategy(), name_strategy())),
        (method, verb) in method_strategy(),
    ) {
        let mut path =
            format!("/subscriptions/{sub}/resourceGroups/{group}/providers/{ns}/{t1}/{n1}");
        let mut want = format!("{ns}/{t1}");
        if let Some((t2, n2)) = &child {
            path.push_str(&format!("/{t2}/{n2}"));
            want.push_str(&format!("/{t2}"));
        }
        want.push('/');
        want.push_str(verb);
        let op = name_arm(&method, &path, Q).expect("valid resource path");
        prop_assert_eq!(&op.action, &want);
        prop_assert_eq!(op.scope.resource_id.as_deref(), Some(path.as_str()));
        prop_assert_eq!(op.scope.resource_group.as_deref(), Some(group.as_str()));

        // And a POST of an action segment on it names `.../{action}/action`.
        let post =
            name_arm(&Method::POST, &format!("{path}/doThing"), Q).expect("valid action");
        let mut want = format!("{ns}/{t1}");
        if let Some((t2, _)) = &child {
            want.push_str(&format!("/{t2}"));
        }
        want.push_str("/doThing/action");
        prop_assert_eq!(post.action, want);
    }
}
