//! Properties over every shape named here: case invariance, clean names, no panics on
//! arbitrary input, exact names for generated resource paths.

use super::*;
use proptest::prelude::*;

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
