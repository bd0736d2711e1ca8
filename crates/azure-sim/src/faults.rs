//! Fault injection, set at runtime through `/_sim/faults`, so reliability tests can make
//! "Azure" slow, failing, throttling or dropping connections. Control endpoints (`/_sim/...`)
//! are never affected.

use std::sync::Mutex;
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

/// What to inject. Rates are probabilities in `0.0..=1.0`, drawn per request.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Faults {
    /// Only requests whose path starts with this (case-insensitive) are affected.
    pub path_prefix: Option<String>,
    /// Added before answering.
    pub latency_ms: u64,
    /// Probability of answering `error_status` instead of the real answer.
    pub error_rate: f64,
    pub error_status: Option<u16>,
    /// Probability of closing the connection without an answer.
    pub drop_rate: f64,
    /// Probability of a 429 with `Retry-After: throttle_retry_after`.
    pub throttle_rate: f64,
    pub throttle_retry_after: Option<u64>,
    /// Stop injecting after this many affected requests (none: until cleared).
    pub remaining: Option<u64>,
    /// Encode every answer's body so (`gzip`, `deflate` or `br`), whatever the client
    /// accepts: what a misbehaving service or proxy could do.
    pub force_encoding: Option<String>,
}

/// What happens to one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Injected {
    Error(u16),
    Drop,
    Throttle(u64),
}

#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    #[error("{0} must be between 0 and 1")]
    Rate(&'static str),
    #[error("error_status {0} is not an HTTP error status")]
    Status(u16),
    #[error("force_encoding '{0}' is not gzip, deflate or br")]
    Encoding(String),
}

impl Faults {
    pub fn validate(&self) -> Result<(), FaultError> {
        for (name, rate) in [
            ("error_rate", self.error_rate),
            ("drop_rate", self.drop_rate),
            ("throttle_rate", self.throttle_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(FaultError::Rate(name));
            }
        }
        if let Some(e) = &self.force_encoding
            && !matches!(e.as_str(), "gzip" | "deflate" | "br")
        {
            return Err(FaultError::Encoding(e.clone()));
        }
        match self.error_status {
            Some(s) if !(400..=599).contains(&s) => Err(FaultError::Status(s)),
            _ => Ok(()),
        }
    }
}

#[derive(Default)]
pub struct FaultState {
    /// The faults in force; replaced by the control endpoint, consumed by each request.
    current: Mutex<Faults>,
}

impl FaultState {
    pub fn set(&self, faults: Faults) -> Result<(), FaultError> {
        faults.validate()?;
        *self.current.lock().expect("faults lock") = faults;
        Ok(())
    }

    pub fn get(&self) -> Faults {
        self.current.lock().expect("faults lock").clone()
    }

    /// The encoding to force on the answer to `path`, if any.
    pub fn forced_encoding(&self, path: &str) -> Option<String> {
        let f = self.current.lock().expect("faults lock");
        let applies = f.path_prefix.as_ref().is_none_or(|p| {
            path.to_ascii_lowercase()
                .starts_with(&p.to_ascii_lowercase())
        });
        f.force_encoding.clone().filter(|_| applies)
    }

    /// Decides the fate of one request: the delay to add, and what replaces the answer.
    pub fn draw(&self, path: &str) -> (Duration, Option<Injected>) {
        let mut f = self.current.lock().expect("faults lock");
        if *f == Faults::default() {
            return (Duration::ZERO, None);
        }
        if let Some(prefix) = &f.path_prefix {
            let p = prefix.to_ascii_lowercase();
            if !path.to_ascii_lowercase().starts_with(&p) {
                return (Duration::ZERO, None);
            }
        }
        if f.remaining == Some(0) {
            return (Duration::ZERO, None);
        }
        if let Some(r) = f.remaining.as_mut() {
            *r -= 1;
        }
        let mut rng = rand::rng();
        let delay = Duration::from_millis(f.latency_ms);
        let injected = if f.drop_rate > 0.0 && rng.random_bool(f.drop_rate) {
            Some(Injected::Drop)
        } else if f.throttle_rate > 0.0 && rng.random_bool(f.throttle_rate) {
            Some(Injected::Throttle(f.throttle_retry_after.unwrap_or(1)))
        } else if f.error_rate > 0.0 && rng.random_bool(f.error_rate) {
            Some(Injected::Error(f.error_status.unwrap_or(500)))
        } else {
            None
        };
        (delay, injected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_bounds_the_injection() {
        let s = FaultState::default();
        s.set(Faults {
            error_rate: 1.0,
            error_status: Some(503),
            remaining: Some(2),
            ..Faults::default()
        })
        .unwrap();
        assert_eq!(s.draw("/x").1, Some(Injected::Error(503)));
        assert_eq!(s.draw("/x").1, Some(Injected::Error(503)));
        assert_eq!(s.draw("/x").1, None);
    }

    #[test]
    fn prefix_limits_the_injection() {
        let s = FaultState::default();
        s.set(Faults {
            drop_rate: 1.0,
            path_prefix: Some("/Subscriptions".into()),
            ..Faults::default()
        })
        .unwrap();
        assert_eq!(s.draw("/subscriptions/x").1, Some(Injected::Drop));
        assert_eq!(s.draw("/keyvault/x").1, None);
    }

    #[test]
    fn bad_rates_are_refused() {
        let s = FaultState::default();
        assert!(
            s.set(Faults {
                error_rate: 1.5,
                ..Faults::default()
            })
            .is_err()
        );
        assert!(
            s.set(Faults {
                error_rate: 0.5,
                error_status: Some(200),
                ..Faults::default()
            })
            .is_err()
        );
    }
}
