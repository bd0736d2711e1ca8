//! Identifiers as Entra ID writes them, checked the same way wherever they are read: by
//! configuration and policy loading, and by token validation.

/// Whether `s` is a GUID in its canonical 8-4-4-4-12 form (tenant and object ids).
pub fn is_guid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

#[cfg(test)]
mod tests {
    use super::is_guid;

    #[test]
    fn only_the_canonical_form_is_a_guid() {
        assert!(is_guid("11111111-2222-3333-4444-55555555aBcD"));
        assert!(!is_guid("11111111222233334444555555555555"));
        assert!(!is_guid("11111111-2222-3333-4444-55555555555"));
        assert!(!is_guid("1111111-22222-3333-4444-555555555555"));
        assert!(!is_guid("11111111-2222-3333-4444-55555555555g"));
    }
}
