//! Rules indexed by the provider namespace their action patterns name, so a decision looks
//! at the rules that could match (`Microsoft.Compute/...` ones for a compute operation, plus
//! those whose patterns start with a wildcard), not at every rule.

use std::collections::HashMap;

use super::rule::Rule;

#[derive(Debug, Clone, Default)]
pub struct Index {
    /// Lowercased namespace → rule positions, ascending.
    by_namespace: HashMap<String, Vec<usize>>,
    /// Rules with a pattern that does not start with a literal namespace.
    wildcard: Vec<usize>,
}

impl Index {
    pub fn build(rules: &[Rule]) -> Index {
        let mut index = Index::default();
        for (i, r) in rules.iter().enumerate() {
            let keys: Option<Vec<String>> = r
                .actions
                .iter()
                .chain(&r.data_actions)
                .map(|a| a.namespace())
                .collect();
            match keys {
                Some(mut keys) => {
                    keys.sort();
                    keys.dedup();
                    for k in keys {
                        index.by_namespace.entry(k).or_default().push(i);
                    }
                }
                None => index.wildcard.push(i),
            }
        }
        index
    }

    /// Positions of the rules that could match a lowercased action, in rule order.
    pub fn candidates<'a>(&'a self, action: &str) -> Merge<'a> {
        let ns = action.split('/').next().unwrap_or_default();
        let specific = self.by_namespace.get(ns).map_or(&[][..], Vec::as_slice);
        Merge {
            a: specific,
            b: &self.wildcard,
        }
    }
}

/// Two ascending position lists, merged.
pub struct Merge<'a> {
    a: &'a [usize],
    b: &'a [usize],
}

impl Iterator for Merge<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        match (self.a.first(), self.b.first()) {
            (Some(&x), Some(&y)) if x <= y => {
                self.a = &self.a[1..];
                Some(x)
            }
            (_, Some(&y)) => {
                self.b = &self.b[1..];
                Some(y)
            }
            (Some(&x), None) => {
                self.a = &self.a[1..];
                Some(x)
            }
            (None, None) => None,
        }
    }
}
