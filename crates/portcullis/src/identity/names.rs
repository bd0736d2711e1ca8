//! Names for people to read: a principal's or a group's display name, cleaned once for every
//! surface it reaches (CLI, webhooks, error texts, the console), and always shown with the
//! object id beside it so that a name copied from someone else cannot pass for them. Names
//! never decide anything (see `principal.rs`).
//!
//! Whoever registers an app chooses its display name, and an agent chooses what it puts in
//! tokens it can shape: a name may hold HTML, ANSI escapes, new lines, bidirectional
//! overrides or ten kilobytes. [`clean`] keeps printable text only, on one line, capped;
//! HTML escaping is the templates' (askama), Markdown escaping the webhook formats'.

use super::principal::PrincipalKind;

/// The most characters of a name kept; Entra allows 256, people read far fewer.
pub const MAX_NAME_CHARS: usize = 64;

/// Characters that change how text is laid out or read rather than what it says: the
/// bidirectional controls (U+061C, U+200E/F, U+202A–E, U+2066–9), zero-width and joiner
/// characters, line and paragraph separators, the byte-order mark, interlinear
/// annotations and tag characters. With the C0/C1 controls (`char::is_control`) they are
/// dropped from names.
fn is_invisible(c: char) -> bool {
    matches!(c as u32,
        0x00AD | 0x034F | 0x061C | 0x115F | 0x1160 | 0x17B4 | 0x17B5 | 0x180B..=0x180F
        | 0x200B..=0x200F | 0x2028..=0x202E | 0x2060..=0x206F | 0x3164 | 0xFE00..=0xFE0F
        | 0xFEFF | 0xFFA0 | 0xFFF9..=0xFFFB | 0xE0000..=0xE007F)
}

/// A name as the gateway keeps and shows it: control and invisible characters dropped
/// (whitespace controls become spaces), runs of spaces collapsed, trimmed, at most
/// [`MAX_NAME_CHARS`] characters (an ellipsis says it was cut). `None` when nothing
/// readable is left.
pub fn clean(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len().min(MAX_NAME_CHARS * 4));
    let mut kept = 0;
    let mut space = false;
    // Bounded whatever the input's size: at most a few characters past the cap are looked at.
    for c in raw.chars() {
        let c = if c.is_whitespace() { ' ' } else { c };
        if c.is_control() || is_invisible(c) {
            continue;
        }
        if c == ' ' {
            space = kept > 0;
            continue;
        }
        if kept == MAX_NAME_CHARS {
            out.push('…');
            return Some(out);
        }
        if space {
            if kept + 1 == MAX_NAME_CHARS {
                out.push('…');
                return Some(out);
            }
            out.push(' ');
            kept += 1;
            space = false;
        }
        out.push(c);
        kept += 1;
    }
    (!out.is_empty()).then_some(out)
}

/// Text for a terminal or a plain-text message, whatever its length: control and invisible
/// characters dropped, whitespace controls made spaces. For text built from cleaned names
/// that may still hold older, uncleaned ones (approvals stored before names were cleaned).
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_whitespace() { ' ' } else { c })
        .filter(|c| !c.is_control() && !is_invisible(*c))
        .collect()
}

impl PrincipalKind {
    /// How people call this kind of principal: "app", "user", "managed identity".
    pub fn label(self) -> &'static str {
        match self {
            PrincipalKind::User => "user",
            PrincipalKind::App => "app",
            PrincipalKind::ManagedIdentity => "managed identity",
        }
    }
}

/// "build-agent (app)": a name with its kind, as an audit record keeps it.
pub fn labelled(name: &str, kind: &str) -> String {
    format!("{name} ({kind})")
}

/// A name with its kind, for a text that shows the id beside it: "build-agent (app)", or
/// "app (name unavailable)".
pub fn labelled_or_unavailable(name: Option<&str>, kind: Option<&str>) -> String {
    match (name, kind) {
        (Some(n), Some(k)) => labelled(n, k),
        (Some(n), None) => n.to_owned(),
        (None, Some(k)) => format!("{k} (name unavailable)"),
        (None, None) => "name unavailable".into(),
    }
}

/// A name with its kind and the object id beside it, for every text a person reads:
/// "build-agent (app, 93eb…)", "Alice Example (user, 5c1f…)", and when no name is known,
/// "93eb… (app, name unavailable)".
pub fn with_id(name: Option<&str>, kind: Option<&str>, id: &str) -> String {
    match (name, kind) {
        (Some(n), Some(k)) => format!("{n} ({k}, {id})"),
        (Some(n), None) => format!("{n} ({id})"),
        (None, Some(k)) => format!("{id} ({k}, name unavailable)"),
        (None, None) => format!("{id} (name unavailable)"),
    }
}

/// The first `n` characters of an id, for narrow table columns ("93eb7a24").
pub fn short_id(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_names_are_kept() {
        assert_eq!(clean("Alice Example").as_deref(), Some("Alice Example"));
        assert_eq!(clean("build-agent").as_deref(), Some("build-agent"));
        assert_eq!(clean("  Zoë  Ñúñez ").as_deref(), Some("Zoë Ñúñez"));
        assert_eq!(
            clean("<b>&amp;</b>").as_deref(),
            Some("<b>&amp;</b>"),
            "HTML is the templates' to escape"
        );
    }

    #[test]
    fn controls_escapes_and_bidi_overrides_are_dropped() {
        assert_eq!(
            clean("evil\x1b[31mred\x1b[0m\r\nApproved by security").as_deref(),
            Some("evil[31mred[0m Approved by security")
        );
        // "admin" spelled backwards behind a right-to-left override, and zero-width joins.
        assert_eq!(clean("\u{202E}nimda\u{202C}").as_deref(), Some("nimda"));
        assert_eq!(
            clean("a\u{200B}b\u{2066}c\u{2069}\u{FEFF}d").as_deref(),
            Some("abcd")
        );
        assert_eq!(clean("x\u{2028}y\u{0085}z").as_deref(), Some("x y z"));
        assert_eq!(clean("tag\u{E0041}\u{E007F}").as_deref(), Some("tag"));
        assert_eq!(clean("\u{0007}\u{202E}\n\t "), None);
    }

    #[test]
    fn printable_text_keeps_its_length_but_not_its_controls() {
        assert_eq!(printable("a\x1b[1m\u{202E}b\nc"), "a[1mb c");
        assert_eq!(printable(&"x".repeat(300)).len(), 300);
    }

    #[test]
    fn long_names_are_cut_with_an_ellipsis() {
        let huge = "A".repeat(10_000);
        let c = clean(&huge).unwrap();
        assert_eq!(c.chars().count(), MAX_NAME_CHARS + 1);
        assert!(c.ends_with('…'));
        let exact = "b".repeat(MAX_NAME_CHARS);
        assert_eq!(clean(&exact).as_deref(), Some(exact.as_str()));
        let spaced = format!("{} tail", "c".repeat(MAX_NAME_CHARS - 1));
        let c = clean(&spaced).unwrap();
        assert!(
            c.ends_with('…') && c.chars().count() <= MAX_NAME_CHARS + 1,
            "{c}"
        );
    }

    #[test]
    fn names_are_shown_with_their_kind_and_id() {
        let id = "93eb7a24-0000-4000-8000-000000000001";
        assert_eq!(
            with_id(Some("build-agent"), Some("app"), id),
            format!("build-agent (app, {id})")
        );
        assert_eq!(
            with_id(None, Some("app"), id),
            format!("{id} (app, name unavailable)")
        );
        assert_eq!(with_id(None, None, id), format!("{id} (name unavailable)"));
        // Without the id, for texts that show it beside the name.
        assert_eq!(
            labelled_or_unavailable(Some("build-agent"), Some("app")),
            "build-agent (app)"
        );
        assert_eq!(
            labelled_or_unavailable(None, Some("app")),
            "app (name unavailable)"
        );
        assert_eq!(labelled_or_unavailable(None, None), "name unavailable");
        assert_eq!(
            labelled("Alice Example", PrincipalKind::User.label()),
            "Alice Example (user)"
        );
        assert_eq!(short_id(id), "93eb7a24");
        assert_eq!(short_id("abc"), "abc");
    }
}
