//! Verifying a whole store (`audit verify`): every chain in it, the instances that must be in
//! it, and what a verifier pinned before. The store only shows what is in it; which chains
//! should be there, and how long, comes from outside it: the state directory's
//! `instance.id`, and the anchor.

use super::anchor::Anchor;
use super::chain::{Verified, verify};
use super::store::{Store, StoreError};

/// What a verifier knows beyond the store.
#[derive(Debug, Default)]
pub struct Expected {
    /// Instances that must have a chain (a state directory's own `instance.id`).
    pub instances: Vec<String>,
    /// What was seen last time, if pinned.
    pub anchor: Option<Anchor>,
}

/// One instance's outcome: what its chain holds, or the first thing wrong with it.
#[derive(Debug)]
pub struct Outcome {
    pub instance: String,
    pub result: Result<Verified, String>,
}

/// The outcome of verifying a store.
#[derive(Debug)]
pub struct Report {
    pub outcomes: Vec<Outcome>,
    /// What is wrong beyond single chains (no chain at all).
    pub store_problems: Vec<String>,
}

impl Report {
    pub fn failures(&self) -> usize {
        self.outcomes.iter().filter(|o| o.result.is_err()).count() + self.store_problems.len()
    }

    /// The pin to keep after a clean verification: each instance's latest signed
    /// checkpoint, as seen now.
    pub fn anchor(&self) -> Anchor {
        Anchor {
            version: 1,
            instances: self
                .outcomes
                .iter()
                .filter_map(|o| {
                    let c = o.result.as_ref().ok()?.last_checkpoint.clone()?;
                    Some((o.instance.clone(), c))
                })
                .collect(),
        }
    }
}

/// Verifies every chain in `store` against the `trusted` keys, and that the store still
/// holds what `expected` says it must.
pub async fn verify_store(
    store: &Store,
    trusted: &[String],
    expected: &Expected,
) -> Result<Report, StoreError> {
    let present = store.instances().await?;
    let mut names = present.clone();
    let pinned = expected.anchor.iter().flat_map(|a| a.instances.keys());
    for name in expected.instances.iter().chain(pinned) {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    names.sort();
    let mut outcomes = Vec::with_capacity(names.len());
    for instance in names {
        let pin = expected
            .anchor
            .as_ref()
            .and_then(|a| a.instances.get(&instance));
        let result = if !present.contains(&instance) {
            Err(match pin {
                Some(pin) => Anchor::vanished(pin),
                None => format!(
                    "{instance}: the chain vanished: this state directory's instance.id names it, \
                     and the store holds no record, checkpoint or retention mark of it"
                ),
            })
        } else {
            let checkpoints = store.checkpoints(&instance).await?;
            let pruned = store.pruned(&instance).await?;
            let chain = store.chain(&instance).await?;
            verify(&instance, &chain, &checkpoints, pruned.as_ref(), trusted).and_then(
                |v| match pin {
                    Some(pin) => Anchor::check(pin, &checkpoints, trusted).map(|_| v),
                    None => Ok(v),
                },
            )
        };
        outcomes.push(Outcome { instance, result });
    }
    let store_problems = if outcomes.is_empty() {
        vec![
            "the store holds no audit chain at all: nothing vouches for it (a gateway signs a \
              checkpoint when it starts a chain, so chains that were there were removed)"
                .to_owned(),
        ]
    } else {
        Vec::new()
    };
    Ok(Report {
        outcomes,
        store_problems,
    })
}
