//! Sessions: what a reviewer replays. An agent that names its session in an
//! `x-portcullis-session` header gets exactly that. Otherwise a session is one bearer
//! token's requests with no pause longer than the idle gap between them; after a longer
//! pause, the same token starts a new session. The token itself is never kept, only a
//! digest of it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::{HeaderMap, header};
use sha2::Digest;

/// Beyond this many tracked tokens, idle ones are forgotten.
const MAX_TRACKED: usize = 100_000;

pub struct Sessions {
    idle: Duration,
    /// Token digest → (session id, last request).
    open: Mutex<HashMap<String, (String, Instant)>>,
}

impl Sessions {
    pub fn new(idle: Duration) -> Sessions {
        Sessions {
            idle,
            open: Mutex::new(HashMap::new()),
        }
    }

    /// The session `headers`' request belongs to, at `now`.
    pub fn of(&self, headers: &HeaderMap, now: Instant) -> String {
        if let Some(s) = headers
            .get("x-portcullis-session")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|s| !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic()))
        {
            return s.to_owned();
        }
        let Some(auth) = headers.get(header::AUTHORIZATION) else {
            return "anonymous".to_owned();
        };
        let digest: String = sha2::Sha256::digest(auth.as_bytes())[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let mut open = self.open.lock().expect("the session map is never poisoned");
        if open.len() >= MAX_TRACKED {
            open.retain(|_, (_, last)| now.duration_since(*last) < self.idle);
        }
        let entry = open
            .entry(digest.clone())
            .or_insert_with(|| (String::new(), now));
        if entry.0.is_empty() || now.duration_since(entry.1) > self.idle {
            entry.0 = format!(
                "token-{digest}-{}",
                chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ")
            );
        }
        entry.1 = now;
        entry.0.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(t: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            format!("Bearer {t}").parse().unwrap(),
        );
        h
    }

    #[test]
    fn a_token_keeps_its_session_until_an_idle_gap() {
        let s = Sessions::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let a = s.of(&bearer("one"), t0);
        assert!(a.starts_with("token-"), "{a}");
        assert!(!a.contains("one"));
        assert_eq!(s.of(&bearer("one"), t0 + Duration::from_secs(50)), a);
        // 50 s after the last request: still within the gap.
        assert_eq!(s.of(&bearer("one"), t0 + Duration::from_secs(100)), a);
        assert_ne!(s.of(&bearer("two"), t0 + Duration::from_secs(100)), a);
        std::thread::sleep(Duration::from_millis(2));
        let b = s.of(&bearer("one"), t0 + Duration::from_secs(200));
        assert_ne!(b, a, "a pause longer than the gap starts a new session");
    }

    #[test]
    fn a_named_session_is_kept_as_named() {
        let s = Sessions::new(Duration::from_secs(60));
        let mut h = bearer("one");
        h.insert("x-portcullis-session", "incident-42".parse().unwrap());
        assert_eq!(s.of(&h, Instant::now()), "incident-42");
        assert_eq!(s.of(&HeaderMap::new(), Instant::now()), "anonymous");
    }
}
