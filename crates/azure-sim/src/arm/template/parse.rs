//! Parsing: tokens into a call tree, `name(args…)` or a literal followed by `.property` and
//! `[index]` accessors.

use super::TemplateError;
use super::lex::{Tok, lex};

/// Nesting of calls and indexes inside one expression; Azure templates never get close.
const MAX_PARSE_DEPTH: usize = 64;
/// Azure's documented limit for one expression.
pub(super) const MAX_EXPRESSION_CHARS: usize = 24_576;

/// One parsed expression: a call or literal, then its accessors.
#[derive(Debug)]
pub(super) struct Node {
    pub(super) primary: Primary,
    /// Kept flat rather than nested so long `.a.b[0].c` chains cost no recursion.
    pub(super) accessors: Vec<Accessor>,
}

#[derive(Debug)]
pub(super) enum Primary {
    Str(String),
    Int(i64),
    Call { name: String, args: Vec<Node> },
}

#[derive(Debug)]
pub(super) enum Accessor {
    Property(String),
    Index(Node),
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(_, t)| t)
    }

    fn next(&mut self) -> Option<(usize, Tok)> {
        let t = self.toks.get(self.pos).cloned();
        if t.is_some() {
            self.pos += 1;
        }
        t
    }

    fn unexpected(found: Option<(usize, Tok)>, wanted: &str) -> String {
        match found {
            Some((at, t)) => format!("expected {wanted} but found {t} at position {at}"),
            None => format!("expected {wanted} but the expression ended"),
        }
    }

    fn node(&mut self, depth: usize) -> Result<Node, String> {
        if depth > MAX_PARSE_DEPTH {
            return Err(format!(
                "the expression is nested deeper than {MAX_PARSE_DEPTH} levels"
            ));
        }
        let primary = match self.next() {
            Some((_, Tok::Str(s))) => Primary::Str(s),
            Some((_, Tok::Int(n))) => Primary::Int(n),
            Some((at, Tok::Ident(name))) => match self.peek() {
                Some(Tok::LParen) => {
                    self.pos += 1;
                    Primary::Call {
                        args: self.args(depth)?,
                        name,
                    }
                }
                Some(Tok::Dot)
                    if matches!(self.toks.get(self.pos + 1), Some((_, Tok::Ident(_))))
                        && matches!(self.toks.get(self.pos + 2), Some((_, Tok::LParen))) =>
                {
                    let member = match self.toks.get(self.pos + 1) {
                        Some((_, Tok::Ident(m))) => m.as_str(),
                        _ => "",
                    };
                    return Err(format!(
                        "user-defined functions such as '{name}.{member}' are not supported by the simulator"
                    ));
                }
                _ => return Err(format!("expected '(' after '{name}' at position {at}")),
            },
            other => return Err(Self::unexpected(other, "a function call or a literal")),
        };
        let mut accessors = Vec::new();
        loop {
            match self.peek() {
                Some(Tok::Dot) => {
                    self.pos += 1;
                    match self.next() {
                        Some((_, Tok::Ident(p))) => accessors.push(Accessor::Property(p)),
                        other => return Err(Self::unexpected(other, "a property name after '.'")),
                    }
                }
                Some(Tok::LBracket) => {
                    self.pos += 1;
                    let ix = self.node(depth + 1)?;
                    match self.next() {
                        Some((_, Tok::RBracket)) => accessors.push(Accessor::Index(ix)),
                        other => return Err(Self::unexpected(other, "']'")),
                    }
                }
                _ => break,
            }
        }
        Ok(Node { primary, accessors })
    }

    /// Arguments after the opening parenthesis, through the closing one.
    fn args(&mut self, depth: usize) -> Result<Vec<Node>, String> {
        let mut args = Vec::new();
        if self.peek() == Some(&Tok::RParen) {
            self.pos += 1;
            return Ok(args);
        }
        loop {
            args.push(self.node(depth + 1)?);
            match self.next() {
                Some((_, Tok::Comma)) => {}
                Some((_, Tok::RParen)) => return Ok(args),
                other => return Err(Self::unexpected(other, "',' or ')'")),
            }
        }
    }
}

fn parse(src: &str) -> Result<Node, String> {
    let toks = lex(src)?;
    if toks.is_empty() {
        return Err("the expression is empty".into());
    }
    let mut parser = Parser { toks, pos: 0 };
    let node = parser.node(0)?;
    match parser.next() {
        None => Ok(node),
        Some((at, t)) => Err(format!(
            "unexpected {t} at position {at} after the end of the expression"
        )),
    }
}

/// Parses the `body` of the expression `src` (as written, for messages).
pub(super) fn parse_source(src: &str, body: &str) -> Result<Node, TemplateError> {
    let syntax = |message: String| TemplateError::Syntax {
        expression: src.to_owned(),
        message,
    };
    if body.chars().count() > MAX_EXPRESSION_CHARS {
        return Err(syntax(format!(
            "the expression is longer than {MAX_EXPRESSION_CHARS} characters"
        )));
    }
    parse(body).map_err(syntax)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::MAX_EXPRESSION_CHARS;
    use crate::arm::template::Context;
    use crate::arm::template::fixture::{HOST, err, eval, given, sample_template};

    #[test]
    fn unknown_functions_and_malformed_expressions() {
        assert_eq!(
            err("[foo()]"),
            "unknown function 'foo' in expression '[foo()]'"
        );
        assert_eq!(
            err("[concat('a', Bar(1))]"),
            "unknown function 'Bar' in expression '[concat('a', Bar(1))]'"
        );
        for bad in [
            "[concat('a'",
            "[concat('a)]",
            "[concat('a'))]",
            "[concat('a' 'b')]",
            "[concat(,)]",
            "[concat('a',)]",
            "[)]",
            "[]",
            "[   ]",
            "[(]",
            "[foo]",
            "[foo.bar()]",
            "[1.5]",
            "[-]",
            "[99999999999999999999]",
            "[concat('a').]",
            "[concat('a')[0]",
            "[concat('a')[0}]",
            "[concat(\"a\")]",
            "[a b]",
            "[#]",
            "[createArray(1)[]]",
            "[",
            "[concat('a'",
        ] {
            let e = eval(bad);
            let Err(e) = e else {
                panic!("{bad} should fail");
            };
            let text = e.to_string();
            assert!(
                text.starts_with("malformed expression") || text.starts_with("an expression"),
                "{bad}: {text}"
            );
        }
        assert!(err("[foo.bar()]").contains("user-defined functions"));
        assert!(err("[concat('a'").contains("must end with ']'"));
        let long = format!("[concat('{}')]", "a".repeat(MAX_EXPRESSION_CHARS));
        assert!(err(&long).contains("longer than"));
    }

    #[test]
    fn random_inputs_never_panic() {
        // A small deterministic generator over characters that matter to the grammar.
        let alphabet: Vec<char> = "()[]',.-0123 456789abcAB_concat(add(createArray(split("
            .chars()
            .collect();
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let t = sample_template();
        let p = given();
        let ctx = Context::new(&t, &p, "d", &HOST).unwrap();
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 40) as usize;
            let mut s = String::from("[");
            let mut x = state;
            for _ in 0..len {
                x = x
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                s.push(alphabet[(x >> 33) as usize % alphabet.len()]);
            }
            s.push(']');
            let _ = ctx.evaluate_expression(&s);
            let _ = ctx.evaluate(&json!(s));
        }
        // Every prefix of a complex expression, closed or not.
        let full = "[listKeys(resourceId('Microsoft.Storage/storageAccounts', parameters('storageName')), '2023-01-01').keys[0].value]";
        for (i, _) in full.char_indices() {
            let prefix = full.get(..i).unwrap_or_default();
            let _ = ctx.evaluate_expression(prefix);
            let _ = ctx.evaluate_expression(&format!("{prefix}]"));
        }
    }
}
