//! The Key Vault data plane: a request below a vault named as its data action
//! (<https://learn.microsoft.com/azure/key-vault/general/rbac-guide>).

use super::{Verb, is};

/// A Key Vault data action: `Microsoft.KeyVault/vaults/{object}/{verb}`.
pub(super) struct KvAction<'a> {
    pub(super) object: &'static str,
    pub(super) verb: &'static str,
    pub(super) name: Option<&'a str>,
}

fn kv<'a>(
    object: &'static str,
    verb: &'static str,
    name: Option<&&'a str>,
) -> Option<KvAction<'a>> {
    Some(KvAction {
        object,
        verb,
        name: name.copied(),
    })
}

/// The azure-notes §3 table, completed from the Key Vault section of the resource provider
/// operations list. Keywords match case-insensitively; an item named like a keyword
/// (`versions`, `backup`) is read as the keyword, as Key Vault does. HEAD is taken as GET:
/// Key Vault defines no HEAD operation of its own and answers one as the GET it names
/// (headers, no body), so RBAC's data action is the GET's; a HEAD on a secret is
/// `getSecret`, not `readMetadata`, since its answer describes the value (its length, its
/// ETag) and a rule that lets a principal read metadata only must not let it probe values.
pub(super) fn keyvault<'a>(verb: Verb, segs: &[&'a str]) -> Option<KvAction<'a>> {
    use Verb::{Delete, Patch, Post, Put};
    let (&first, rest) = segs.split_first()?;
    let read = verb.is_read();
    let first = first.to_ascii_lowercase();
    match first.as_str() {
        "secrets" => match (verb, rest) {
            (_, []) if read => kv("secrets", "readMetadata/action", None),
            (Post, [r]) if is(r, "restore") => kv("secrets", "restore/action", None),
            (Put, [n]) => kv("secrets", "setSecret/action", Some(n)),
            (Patch, [n] | [n, _]) => kv("secrets", "update/action", Some(n)),
            (Delete, [n]) => kv("secrets", "delete", Some(n)),
            (_, [n, v]) if read && is(v, "versions") => {
                kv("secrets", "readMetadata/action", Some(n))
            }
            (_, [n] | [n, _]) if read => kv("secrets", "getSecret/action", Some(n)),
            (Post, [n, b]) if is(b, "backup") => kv("secrets", "backup/action", Some(n)),
            _ => None,
        },
        "deletedsecrets" => match (verb, rest) {
            (_, []) if read => kv("secrets", "readMetadata/action", None),
            (_, [n]) if read => kv("secrets", "readMetadata/action", Some(n)),
            (Post, [n, r]) if is(r, "recover") => kv("secrets", "recover/action", Some(n)),
            (Delete, [n]) => kv("secrets", "purge/action", Some(n)),
            _ => None,
        },
        "keys" => match (verb, rest) {
            (_, []) if read => kv("keys", "read", None),
            (Post, [r]) if is(r, "restore") => kv("keys", "restore/action", None),
            (_, [n, p]) if read && is(p, "rotationpolicy") => {
                kv("keyrotationpolicies", "read", Some(n))
            }
            (Put, [n, p]) if is(p, "rotationpolicy") => kv("keyrotationpolicies", "write", Some(n)),
            (_, [n] | [n, _]) if read => kv("keys", "read", Some(n)),
            (Put, [n]) => kv("keys", "import/action", Some(n)),
            (Patch, [n] | [n, _]) => kv("keys", "update/action", Some(n)),
            (Delete, [n]) => kv("keys", "delete", Some(n)),
            (Post, [n, op]) => {
                let verb = match op.to_ascii_lowercase().as_str() {
                    "create" => "create/action",
                    "backup" => "backup/action",
                    "rotate" => "rotate/action",
                    _ => return None,
                };
                kv("keys", verb, Some(n))
            }
            (Post, [n, _version, op]) => {
                let verb = match op.to_ascii_lowercase().as_str() {
                    "encrypt" => "encrypt/action",
                    "decrypt" => "decrypt/action",
                    "wrapkey" => "wrap/action",
                    "unwrapkey" => "unwrap/action",
                    "sign" => "sign/action",
                    "verify" => "verify/action",
                    "release" => "release/action",
                    _ => return None,
                };
                kv("keys", verb, Some(n))
            }
            _ => None,
        },
        "deletedkeys" => match (verb, rest) {
            (_, []) if read => kv("keys", "read", None),
            (_, [n]) if read => kv("keys", "read", Some(n)),
            (Post, [n, r]) if is(r, "recover") => kv("keys", "recover/action", Some(n)),
            (Delete, [n]) => kv("keys", "purge/action", Some(n)),
            _ => None,
        },
        "certificates" => match (verb, rest) {
            // Issuers and contacts live under /certificates but are their own objects.
            (_, [i, rest @ ..]) if is(i, "issuers") => match (verb, rest) {
                (_, [] | [_]) if read => kv("certificatecas", "read", rest.first()),
                (Put | Patch, [n]) => kv("certificatecas", "write", Some(n)),
                (Delete, [n]) => kv("certificatecas", "delete", Some(n)),
                _ => None,
            },
            // RBAC lists only certificatecontacts/write; reading contacts has no operation
            // of its own, so it is refused rather than guessed.
            (Put | Delete, [c]) if is(c, "contacts") => kv("certificatecontacts", "write", None),
            (_, [c, ..]) if is(c, "contacts") => None,
            (_, []) if read => kv("certificates", "read", None),
            (Post, [r]) if is(r, "restore") => kv("certificates", "restore/action", None),
            // {n}, {n}/versions, {n}/{version}, {n}/policy, {n}/pending (create's poll).
            (_, [n] | [n, _]) if read => kv("certificates", "read", Some(n)),
            (Delete, [n]) => kv("certificates", "delete", Some(n)),
            // Updating the policy or a pending operation has no documented operation of its
            // own: refused rather than guessed to be update/action.
            (Patch, [_, p]) if is(p, "policy") || is(p, "pending") => None,
            (Patch, [n] | [n, _]) => kv("certificates", "update/action", Some(n)),
            (Post, [n, op]) => {
                let verb = match op.to_ascii_lowercase().as_str() {
                    "create" => "create/action",
                    "import" => "import/action",
                    "backup" => "backup/action",
                    _ => return None,
                };
                kv("certificates", verb, Some(n))
            }
            _ => None,
        },
        "deletedcertificates" => match (verb, rest) {
            (_, []) if read => kv("certificates", "read", None),
            (_, [n]) if read => kv("certificates", "read", Some(n)),
            (Post, [n, r]) if is(r, "recover") => kv("certificates", "recover/action", Some(n)),
            (Delete, [n]) => kv("certificates", "purge/action", Some(n)),
            _ => None,
        },
        _ => None,
    }
}
