//! Lexing: the text between an expression's brackets, as tokens with their positions.
//! <https://learn.microsoft.com/azure/azure-resource-manager/templates/template-expressions>

use std::fmt;

/// One token of an expression.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Dot,
    Str(String),
    Int(i64),
    Ident(String),
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::LParen => f.write_str("'('"),
            Tok::RParen => f.write_str("')'"),
            Tok::LBracket => f.write_str("'['"),
            Tok::RBracket => f.write_str("']'"),
            Tok::Comma => f.write_str("','"),
            Tok::Dot => f.write_str("'.'"),
            Tok::Str(s) => write!(f, "string '{s}'"),
            Tok::Int(n) => write!(f, "integer {n}"),
            Tok::Ident(s) => write!(f, "'{s}'"),
        }
    }
}

/// Positions are character offsets into the text between the brackets.
pub(super) fn lex(src: &str) -> Result<Vec<(usize, Tok)>, String> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        let start = i;
        let tok = match c {
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '(' => Tok::LParen,
            ')' => Tok::RParen,
            '[' => Tok::LBracket,
            ']' => Tok::RBracket,
            ',' => Tok::Comma,
            '.' => Tok::Dot,
            '\'' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => {
                            return Err(format!(
                                "unterminated string literal starting at position {start}"
                            ));
                        }
                        Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                            s.push('\'');
                            i += 2;
                        }
                        Some('\'') => break,
                        Some(&ch) => {
                            s.push(ch);
                            i += 1;
                        }
                    }
                }
                Tok::Str(s)
            }
            '-' | '0'..='9' => {
                let mut j = i + 1;
                while chars.get(j).is_some_and(char::is_ascii_digit) {
                    j += 1;
                }
                let text: String = chars.get(i..j).unwrap_or_default().iter().collect();
                if text == "-" {
                    return Err(format!(
                        "'-' at position {start} must be followed by digits"
                    ));
                }
                if chars.get(j) == Some(&'.') && chars.get(j + 1).is_some_and(char::is_ascii_digit)
                {
                    return Err(format!(
                        "decimal literals are not supported (position {start}); use json('…')"
                    ));
                }
                let n = text
                    .parse::<i64>()
                    .map_err(|_| format!("the integer {text} is out of range"))?;
                i = j - 1;
                Tok::Int(n)
            }
            c if c.is_alphabetic() || c == '_' || c == '$' => {
                let mut j = i + 1;
                while chars
                    .get(j)
                    .is_some_and(|c| c.is_alphanumeric() || *c == '_' || *c == '$')
                {
                    j += 1;
                }
                let name: String = chars.get(i..j).unwrap_or_default().iter().collect();
                i = j - 1;
                Tok::Ident(name)
            }
            other => return Err(format!("unexpected character '{other}' at position {i}")),
        };
        out.push((start, tok));
        i += 1;
    }
    Ok(out)
}
