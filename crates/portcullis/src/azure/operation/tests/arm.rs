//! Naming ARM requests: the azure-notes §3 examples, Microsoft.Resources, deployments,
//! operation polls, overrides, casing and refusals.

use super::*;
use crate::azure::operation::overrides::OVERRIDES;

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
