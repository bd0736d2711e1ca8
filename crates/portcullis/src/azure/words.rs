//! An Azure operation in words, for people deciding on it: "delete virtual machine vm1 in
//! demo-rg" reads faster than `Microsoft.Compute/virtualMachines/delete` on a resource id.
//! The words are a summary; the console always shows the exact action and scope beside them.

/// `camelCase` → `camel case`; an acronym stays a word (`publicIPAddresses` →
/// `public ip addresses`).
fn split_camel(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            let prev_lower = chars[i - 1].is_ascii_lowercase();
            let acronym_ends = chars[i - 1].is_ascii_uppercase()
                && chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            if prev_lower || acronym_ends {
                out.push(' ');
            }
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// The singular of a resource type's last word (`virtualMachines` → `virtual machine`).
fn singular(plural: &str) -> String {
    let words = split_camel(plural);
    if let Some(stem) = words.strip_suffix("ies") {
        format!("{stem}y")
    } else if words.ends_with("sses") || words.ends_with("xes") || words.ends_with("ches") {
        words[..words.len() - 2].to_owned()
    } else if let Some(stem) = words.strip_suffix('s')
        && !words.ends_with("ss")
    {
        stem.to_owned()
    } else {
        words
    }
}

/// What a verb does, in words.
fn verb(v: &str) -> String {
    match v.to_ascii_lowercase().as_str() {
        "write" => "create or update".into(),
        "delete" => "delete".into(),
        "read" => "read".into(),
        _ => split_camel(v),
    }
}

/// The segment after `key` in an id (`resourceGroups` → the group's name).
fn after<'a>(scope: &'a str, key: &str) -> Option<&'a str> {
    let mut it = scope.split('/');
    while let Some(s) = it.next() {
        if s.eq_ignore_ascii_case(key) {
            return it.next().filter(|n| !n.is_empty());
        }
    }
    None
}

/// "delete virtual machine vm1 in demo-rg", from the action and the scope it applies to.
pub fn in_words(action: &str, scope: &str) -> String {
    let parts: Vec<&str> = action.split('/').collect();
    // Provider, resource type segments, then the verb (`.../{name}/action` for actions).
    let (types, verb_word) = match parts.as_slice() {
        [_, types @ .., name, last] if last.eq_ignore_ascii_case("action") => (types, *name),
        [_, types @ .., last] => (types, *last),
        _ => return action.to_owned(),
    };
    let Some(kind) = types.last() else {
        return action.to_owned();
    };
    let what = singular(kind);
    let is_action = parts
        .last()
        .is_some_and(|l| l.eq_ignore_ascii_case("action"));
    // The resource's own name: the scope's last segment when it names this type.
    let segs: Vec<&str> = scope.trim_end_matches('/').split('/').collect();
    let name = match segs.as_slice() {
        [.., t, n] if t.eq_ignore_ascii_case(kind) => Some(*n),
        _ => None,
    };
    let vault = scope.strip_prefix("vault:");
    let mut s = verb(verb_word);
    // "get secret", not "get secret on secret".
    if !(is_action && s.ends_with(&what)) {
        if is_action {
            s.push_str(" on");
        }
        s.push(' ');
        s.push_str(&what);
    }
    if let Some(n) = name {
        s.push(' ');
        s.push_str(n);
    }
    if let Some(v) = vault {
        s.push_str(&format!(" in vault {v}"));
    } else if let Some(rg) = after(scope, "resourceGroups")
        && !kind.eq_ignore_ascii_case("resourceGroups")
    {
        s.push_str(&format!(" in {rg}"));
    } else if name.is_none()
        && let Some(sub) = after(scope, "subscriptions")
    {
        s.push_str(&format!(" in subscription {sub}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::in_words;

    const VM: &str = "/subscriptions/0000/resourceGroups/demo-rg/providers/Microsoft.Compute/virtualMachines/vm1";

    #[test]
    fn operations_read_as_sentences() {
        assert_eq!(
            in_words("Microsoft.Compute/virtualMachines/delete", VM),
            "delete virtual machine vm1 in demo-rg"
        );
        assert_eq!(
            in_words(
                "Microsoft.Storage/storageAccounts/write",
                "/subscriptions/0000/resourceGroups/demo-rg/providers/Microsoft.Storage/storageAccounts/sa1"
            ),
            "create or update storage account sa1 in demo-rg"
        );
        assert_eq!(
            in_words("Microsoft.Compute/virtualMachines/restart/action", VM),
            "restart on virtual machine vm1 in demo-rg"
        );
        assert_eq!(
            in_words(
                "Microsoft.Resources/subscriptions/resourceGroups/delete",
                "/subscriptions/0000/resourceGroups/old-rg"
            ),
            "delete resource group old-rg"
        );
        assert_eq!(
            in_words(
                "Microsoft.KeyVault/vaults/secrets/getSecret/action",
                "vault:demo-kv"
            ),
            "get secret in vault demo-kv"
        );
        assert_eq!(
            in_words(
                "Microsoft.Network/publicIPAddresses/write",
                "/subscriptions/0000/resourceGroups/net/providers/Microsoft.Network/publicIPAddresses/ip1"
            ),
            "create or update public ip address ip1 in net"
        );
        assert_eq!(
            in_words(
                "Microsoft.Compute/virtualMachines/read",
                "/subscriptions/0000"
            ),
            "read virtual machine in subscription 0000"
        );
        assert_eq!(
            in_words(
                "Microsoft.Storage/storageAccounts/listKeys/action",
                "/subscriptions/0000/resourceGroups/demo-rg/providers/Microsoft.Storage/storageAccounts/sa1"
            ),
            "list keys on storage account sa1 in demo-rg"
        );
        assert_eq!(in_words("nonsense", "/"), "nonsense");
    }
}
