//! Naming Key Vault data-plane requests.

use super::*;

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
