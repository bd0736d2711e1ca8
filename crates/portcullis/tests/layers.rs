//! The gateway's module graph flows one way: a module may import only from its own layer or
//! a lower one. The layers are the fenced block under "## Layers" in ARCHITECTURE.md, the one
//! place they are written, so the document and this test cannot drift apart.
//!
//! The test reads every `.rs` under `crates/portcullis/src`, blanks out comments and string
//! and character literals, and follows every path into the crate: `crate::x::…` (in `use`
//! items, grouped `use crate::{a::b, c::{d, e}}`, or inline in code) and `super::…` when it
//! climbs out of a top-level module to the crate root. Each import of a module in a higher
//! layer is named `file:line`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Upward imports tolerated for now, each `(file under src/, imported top-level module)`:
/// none. An entry would need its reason beside it; the list may only shrink (an entry that
/// no longer occurs fails the test, so whoever removes the import removes the entry).
const ALLOWED: &[(&str, &str)] = &[];

/// The name this test gives the crate root's own items (`lib.rs`), as written in the table.
const ROOT: &str = "crate";

// === the layer table ===

/// The layers from ARCHITECTURE.md, lowest first: `(layer name, its top-level modules)`.
fn layer_table(architecture: &str) -> Result<Vec<(String, Vec<String>)>, String> {
    let mut lines = architecture.lines();
    lines
        .find(|line| line.trim_end() == "## Layers")
        .ok_or("ARCHITECTURE.md has no \"## Layers\" heading")?;
    lines
        .find(|line| line.starts_with("```"))
        .ok_or("\"## Layers\" has no fenced block")?;
    let mut layers = Vec::new();
    for line in lines.by_ref() {
        if line.starts_with("```") {
            layers.reverse();
            return if layers.is_empty() {
                Err("the \"## Layers\" block is empty".into())
            } else {
                Ok(layers)
            };
        }
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let (name, modules) = line
            .split_once(':')
            .ok_or_else(|| format!("layer line {line:?} is not `name: module module …`"))?;
        let modules: Vec<String> = modules.split_whitespace().map(str::to_owned).collect();
        if modules.is_empty() {
            return Err(format!("layer {name:?} names no module"));
        }
        layers.push((name.trim().to_owned(), modules));
    }
    Err("the \"## Layers\" block is not closed".into())
}

// === reading the source ===

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// `source` with comments and the insides of string and character literals replaced by
/// spaces; line breaks are kept, so line numbers still hold.
fn blank_out(source: &str) -> String {
    let s: Vec<char> = source.chars().collect();
    let at = |i: usize| s.get(i).copied().unwrap_or('\0');
    let mut out = String::with_capacity(source.len());
    let blank = |out: &mut String, c: char| out.push(if c == '\n' { '\n' } else { ' ' });
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        let after_ident = i > 0 && is_ident_char(s[i - 1]);
        if c == '/' && at(i + 1) == '/' {
            while i < s.len() && s[i] != '\n' {
                blank(&mut out, s[i]);
                i += 1;
            }
        } else if c == '/' && at(i + 1) == '*' {
            // Block comments nest in Rust.
            let mut depth = 0;
            loop {
                if i >= s.len() {
                    break;
                } else if s[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if s[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, s[i]);
                    i += 1;
                }
            }
        } else if let Some(open) = (!after_ident).then(|| raw_string_open(&s, i)).flatten() {
            // r"…", r#"…"#, br"…", cr"…": no escapes, ends at a quote and as many hashes.
            let hashes = open - i - 1 - usize::from(c != 'r');
            for _ in i..=open {
                out.push(' ');
            }
            i = open + 1;
            while i < s.len() {
                if s[i] == '"' && (1..=hashes).all(|k| at(i + k) == '#') {
                    for _ in 0..=hashes {
                        out.push(' ');
                    }
                    i += hashes + 1;
                    break;
                }
                blank(&mut out, s[i]);
                i += 1;
            }
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < s.len() {
                if s[i] == '\\' {
                    blank(&mut out, s[i]);
                    i += 1;
                    if i < s.len() {
                        blank(&mut out, s[i]);
                        i += 1;
                    }
                } else if s[i] == '"' {
                    out.push(' ');
                    i += 1;
                    break;
                } else {
                    blank(&mut out, s[i]);
                    i += 1;
                }
            }
        } else if c == '\'' && at(i + 1) == '\\' {
            // An escaped character literal: '\n', '\'', '\u{1F600}'.
            let mut j = i + 3;
            while j < s.len() && s[j] != '\'' && s[j] != '\n' {
                j += 1;
            }
            for &c in &s[i..=j.min(s.len() - 1)] {
                blank(&mut out, c);
            }
            i = j + 1;
        } else if c == '\'' && at(i + 2) == '\'' {
            // A character literal such as '"' or '{'; anything else after a quote is a
            // lifetime or a label, which stays.
            out.push_str("   ");
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Where the opening quote of a raw string starting at `i` is, if one starts there.
fn raw_string_open(s: &[char], i: usize) -> Option<usize> {
    let mut j = match (s.get(i), s.get(i + 1)) {
        (Some('r'), _) => i + 1,
        (Some('b' | 'c'), Some('r')) => i + 2,
        _ => return None,
    };
    while s.get(j) == Some(&'#') {
        j += 1;
    }
    (s.get(j) == Some(&'"')).then_some(j)
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    PathSep,
    Open,
    Close,
    Comma,
    Star,
    Other,
}

/// The tokens of blanked-out source, each with its line (from 1).
fn tokens(blanked: &str) -> Vec<(Token, usize)> {
    let s: Vec<char> = blanked.chars().collect();
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if is_ident_char(c) {
            let start = i;
            while i < s.len() && is_ident_char(s[i]) {
                i += 1;
            }
            let word: String = s[start..i].iter().collect();
            // A raw identifier, r#type, is the identifier `type`.
            if word == "r"
                && s.get(i) == Some(&'#')
                && s.get(i + 1).is_some_and(|&c| is_ident_char(c))
            {
                continue;
            }
            out.push((Token::Ident(word), line));
        } else if c == ':' && s.get(i + 1) == Some(&':') {
            out.push((Token::PathSep, line));
            i += 2;
        } else {
            let token = match c {
                '{' => Token::Open,
                '}' => Token::Close,
                ',' => Token::Comma,
                '*' => Token::Star,
                _ => Token::Other,
            };
            out.push((token, line));
            i += 1;
        }
    }
    out
}

/// The module path of a file under `src/`: `pipeline.rs` and `foo/mod.rs` are one deep,
/// `foo/bar.rs` two, `lib.rs` is the root.
fn module_path(file: &str) -> Vec<String> {
    let file = file.strip_suffix(".rs").unwrap_or(file);
    let mut path: Vec<String> = file.split('/').map(str::to_owned).collect();
    if matches!(
        path.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        path.pop();
    }
    path
}

/// Every path into the crate in `source` (a file at `file` under `src/`), as `(line, the
/// first name below the crate root)`: a top-level module, an item of `lib.rs`, or `crate`
/// for the root itself (`use super::*` from a top-level module). Paths that stay inside
/// the file's own top-level module through `super` are left out.
fn crate_paths(file: &str, source: &str) -> Vec<(usize, String)> {
    // main.rs is the binary's crate; it reaches the library by name.
    let root = if file == "main.rs" {
        "portcullis"
    } else {
        "crate"
    };
    let toks = tokens(&blank_out(source));
    let ident = |i: usize| match toks.get(i) {
        Some((Token::Ident(name), _)) => Some(name.as_str()),
        _ => None,
    };
    let is = |i: usize, t: Token| toks.get(i).is_some_and(|(tok, _)| *tok == t);
    let file_module = module_path(file);
    // Inline modules (`mod tests { … }`) the scan is inside: name and brace depth.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0;
    let mut found = Vec::new();
    for i in 0..toks.len() {
        match &toks[i].0 {
            Token::Open => depth += 1,
            Token::Close => {
                depth -= 1;
                while inline.last().is_some_and(|(_, d)| *d > depth) {
                    inline.pop();
                }
            }
            Token::Ident(word) if word == "mod" => {
                if let Some(name) = ident(i + 1)
                    && is(i + 2, Token::Open)
                {
                    inline.push((name.to_owned(), depth + 1));
                }
            }
            Token::Ident(word)
                if !(i > 0 && is(i - 1, Token::PathSep)) && is(i + 1, Token::PathSep) =>
            {
                if word == root {
                    at_root(&toks, i + 2, &mut found);
                } else if word == "super" {
                    let mut module = file_module.clone();
                    module.extend(inline.iter().map(|(name, _)| name.clone()));
                    let mut j = i;
                    loop {
                        if module.pop().is_none() {
                            break; // past the root: not Rust, not our business
                        }
                        if ident(j + 2) == Some("super") {
                            j += 2;
                            continue;
                        }
                        if module.is_empty() {
                            at_root(&toks, j + 2, &mut found);
                        }
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    found
}

/// Follows a path from just below the crate root: `i` is the token after `crate::`.
fn at_root(toks: &[(Token, usize)], i: usize, found: &mut Vec<(usize, String)>) {
    match toks.get(i) {
        Some((Token::Ident(name), line)) if name == "self" => found.push((*line, ROOT.into())),
        Some((Token::Ident(name), line)) => found.push((*line, name.clone())),
        Some((Token::Star, line)) => found.push((*line, ROOT.into())),
        Some((Token::Open, _)) => {
            // A group: each element starts a path of its own at the root.
            let mut depth = 0;
            let mut start = true;
            for j in i + 1..toks.len() {
                match toks[j].0 {
                    Token::Open => depth += 1,
                    Token::Close if depth == 0 => break,
                    Token::Close => depth -= 1,
                    Token::Comma if depth == 0 => {
                        start = true;
                        continue;
                    }
                    _ => {}
                }
                if start {
                    start = false;
                    at_root(toks, j, found);
                }
            }
        }
        _ => {}
    }
}

// === the check ===

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, as a path relative to `src/` with `/` separators.
fn rust_files(dir: &Path, out: &mut Vec<String>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            let relative = path.strip_prefix(src_dir()).expect("under src");
            out.push(relative.to_string_lossy().replace('\\', "/"));
        }
    }
}

/// The top-level module a file under `src/` belongs to, as the table names it.
fn top_module(file: &str) -> String {
    match file {
        "lib.rs" => ROOT.into(),
        "main.rs" => "main".into(),
        _ => module_path(file)[0].clone(),
    }
}

#[test]
fn imports_flow_down() {
    let architecture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ARCHITECTURE.md");
    let architecture = std::fs::read_to_string(&architecture)
        .unwrap_or_else(|e| panic!("read {}: {e}", architecture.display()));
    let layers = layer_table(&architecture).unwrap_or_else(|e| panic!("{e}"));
    // Layer numbers count from 1 at the bottom.
    let mut layer_of: BTreeMap<&str, (usize, &str)> = BTreeMap::new();
    for (n, (name, modules)) in layers.iter().enumerate() {
        for module in modules {
            let before = layer_of.insert(module, (n + 1, name));
            assert!(before.is_none(), "{module} is in the layer table twice");
        }
    }
    let Some(&(root_layer, _)) = layer_of.get(ROOT) else {
        panic!("the layer table does not place `{ROOT}` (the crate root's own items)")
    };

    let mut files = Vec::new();
    rust_files(&src_dir(), &mut files);
    let missing: BTreeSet<String> = files
        .iter()
        .map(|file| top_module(file))
        .filter(|module| !layer_of.contains_key(module.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "top-level modules missing from the layer table in ARCHITECTURE.md: {missing:?}"
    );

    let mut report = String::new();
    let mut upward = 0;
    let mut allowed_seen = BTreeSet::new();
    let mut refused = Vec::new();
    for file in &files {
        let source = std::fs::read_to_string(src_dir().join(file)).expect("read source");
        let module = top_module(file);
        let (from, _) = layer_of[module.as_str()];
        let mut seen = BTreeSet::new();
        for (line, target) in crate_paths(file, &source) {
            // A name that is no module in the table is an item of lib.rs.
            let (to, _) = layer_of
                .get(target.as_str())
                .copied()
                .unwrap_or((root_layer, ""));
            if to <= from || !seen.insert((line, target.clone())) {
                continue;
            }
            upward += 1;
            let found =
                format!("src/{file}:{line}: {module} imports {target} (layer {to} above {from})");
            if ALLOWED.contains(&(file.as_str(), target.as_str())) {
                allowed_seen.insert((file.clone(), target.clone()));
                writeln!(report, "{found} [allowlisted]").unwrap();
            } else {
                writeln!(report, "{found}").unwrap();
                refused.push(found);
            }
        }
    }
    println!(
        "{report}{upward} upward imports, {} not allowlisted",
        refused.len()
    );

    let stale: Vec<_> = ALLOWED
        .iter()
        .filter(|(file, target)| !allowed_seen.contains(&((*file).into(), (*target).into())))
        .collect();
    assert!(
        stale.is_empty(),
        "allowlisted imports that no longer occur (remove them from ALLOWED): {stale:?}"
    );
    assert!(
        refused.is_empty(),
        "{} import(s) reach up a layer (see \"## Layers\" in ARCHITECTURE.md):\n{}",
        refused.len(),
        refused.join("\n")
    );
}

// === the path finder on small snippets ===

fn targets(file: &str, source: &str) -> Vec<(usize, String)> {
    crate_paths(file, source)
}

fn names(file: &str, source: &str) -> Vec<String> {
    targets(file, source)
        .into_iter()
        .map(|(_, name)| name)
        .collect()
}

#[test]
fn finds_plain_grouped_and_inline_paths() {
    let source = "use crate::audit::Record;\n\
                  use crate::{azure::operation::Operation, mask::{Masker, catalog}};\n\
                  use crate::{\n    policy::Rule,\n    json,\n};\n\
                  fn f() { let w = crate::console::words::in_words(x); }\n";
    assert_eq!(
        targets("approval/notify.rs", source),
        [
            (1, "audit".to_owned()),
            (2, "azure".to_owned()),
            (2, "mask".to_owned()),
            (4, "policy".to_owned()),
            (5, "json".to_owned()),
            (7, "console".to_owned()),
        ]
    );
}

#[test]
fn skips_visibility_and_follows_macro_crate() {
    let source = "pub(crate) fn f() {}\npub(in crate::audit) fn g() {}\n\
                  macro_rules! m { () => { $crate::audit::store::Db::Sqlite } }\n\
                  use crate::{self as root};\n";
    assert_eq!(names("audit/store.rs", source), ["audit", "audit", ROOT]);
}

#[test]
fn ignores_comments() {
    let source = "// use crate::cli;\n/// crate::server::run\n//! crate::console\n\
                  /* crate::pipeline /* nested crate::admin */ still crate::cli */\n\
                  /** crate::server */ use crate::json; // crate::cli\n";
    assert_eq!(targets("audit/record.rs", source), [(5, "json".to_owned())]);
}

#[test]
fn ignores_strings_and_characters() {
    let source = r####"let a = "crate::cli \" crate::server";
let b = r#"crate::console " still crate::admin"#;
let c = br##"crate::pipeline"# "##;
let d = '"'; let e = '\''; let f = '{'; let g = b'"';
fn h<'a>(x: &'a str) -> &'a str { crate::json::strict(x) }
let i = "multi
line crate::cli"; crate::metrics::inc();
"####;
    assert_eq!(
        targets("policy/rule.rs", source),
        [(5, "json".to_owned()), (7, "metrics".to_owned())]
    );
}

#[test]
fn resolves_super_by_file_kind() {
    // A top-level file and a folder's mod.rs are one below the root: super is the root.
    assert_eq!(names("pipeline.rs", "use super::cli;"), ["cli"]);
    assert_eq!(
        names("azure/mod.rs", "use super::{console, json::strict};"),
        ["console", "json"]
    );
    assert_eq!(names("pipeline.rs", "use super::*;"), [ROOT]);
    // Deeper files climb only to their own top-level module.
    assert!(names("azure/batch.rs", "use super::operation::Operation;").is_empty());
    assert!(names("azure/arm/mod.rs", "use super::route;").is_empty());
    assert_eq!(names("azure/arm/mod.rs", "use super::super::cli;"), ["cli"]);
    assert!(names("azure/arm/x.rs", "use super::super::route;").is_empty());
    assert_eq!(
        names("azure/arm/x.rs", "use super::super::super::cli;"),
        ["cli"]
    );
}

#[test]
fn resolves_super_inside_inline_modules() {
    let source = "mod tests {\n    use super::*;\n    use super::super::cli;\n    \
                  mod deeper { fn f() { super::super::super::server::run(); } }\n}\n\
                  use super::console;\nfn g() { if x { } }\nuse super::admin;\n";
    assert_eq!(
        targets("pipeline.rs", source),
        [
            (3, "cli".to_owned()),
            (4, "server".to_owned()),
            (6, "console".to_owned()),
            (8, "admin".to_owned()),
        ]
    );
}

#[test]
fn main_reaches_the_library_by_name() {
    let source = "use clap::Parser;\nfn main() { portcullis::cli::run(crate::x()); }";
    assert_eq!(names("main.rs", source), ["cli"]);
}

#[test]
fn reads_the_table_lowest_first() {
    let doc = "# A\n## Layers\ntext\n```\n# a comment\nhigh: cli main  # the top\n\n\
               low:  json crate\n```\n";
    assert_eq!(
        layer_table(doc).unwrap(),
        [
            ("low".to_owned(), vec!["json".to_owned(), ROOT.to_owned()]),
            ("high".to_owned(), vec!["cli".to_owned(), "main".to_owned()]),
        ]
    );
    assert!(layer_table("## Layers\n```\n```\n").is_err());
    assert!(layer_table("## Other\n```\nx: y\n```\n").is_err());
}
