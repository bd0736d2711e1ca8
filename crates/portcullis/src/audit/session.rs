//! Sessions: what a reviewer replays. An agent that names its session in an
//! `x-portcullis-session` header gets that name, as its own: the session is
//! `{name}@{object id}`, so another principal naming the same session writes into a
//! session of its own, never into this one, and the name stays readable. A name counts only
//! once the request is authenticated; before that (a refusal of the token itself) the
//! request goes to its token's session. Otherwise a session is one bearer token's requests
//! with no pause longer than the idle gap between them; after a longer pause, the same token
//! starts a new session. The token itself is never kept, only a digest of it.

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

    /// The session `headers`' request belongs to, at `now`, sent by `principal` (its
    /// object id; `None` until it is authenticated).
    pub fn of(&self, headers: &HeaderMap, principal: Option<&str>, now: Instant) -> String {
        if let Some(principal) = principal
            && let Some(s) = headers
                .get("x-portcullis-session")
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|s| {
                    !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic())
                })
        {
            return named(s, principal);
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

/// The session `principal` named `name`.
pub fn named(name: &str, principal: &str) -> String {
    format!("{name}@{principal}")
}

/// The name an agent gave a session, and who named it, when it is such a session.
pub fn name_of(session: &str) -> Option<(&str, &str)> {
    session
        .rsplit_once('@')
        .filter(|(n, p)| !n.is_empty() && !p.is_empty())
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
        let a = s.of(&bearer("one"), None, t0);
        assert!(a.starts_with("token-"), "{a}");
        assert!(!a.contains("one"));
        assert_eq!(s.of(&bearer("one"), None, t0 + Duration::from_secs(50)), a);
        // 50 s after the last request: still within the gap.
        assert_eq!(s.of(&bearer("one"), None, t0 + Duration::from_secs(100)), a);
        assert_ne!(s.of(&bearer("two"), None, t0 + Duration::from_secs(100)), a);
        std::thread::sleep(Duration::from_millis(2));
        let b = s.of(&bearer("one"), None, t0 + Duration::from_secs(200));
        assert_ne!(b, a, "a pause longer than the gap starts a new session");
    }

    #[test]
    fn a_named_session_is_the_principals_own() {
        let s = Sessions::new(Duration::from_secs(60));
        let mut h = bearer("one");
        h.insert("x-portcullis-session", "incident-42".parse().unwrap());
        let a = s.of(&h, Some("oid-a"), Instant::now());
        assert_eq!(a, "incident-42@oid-a");
        assert_eq!(name_of(&a), Some(("incident-42", "oid-a")));
        assert_ne!(s.of(&h, Some("oid-b"), Instant::now()), a);
        // Naming another's session by its whole id still lands in one's own.
        h.insert("x-portcullis-session", a.parse().unwrap());
        assert_eq!(
            s.of(&h, Some("oid-b"), Instant::now()),
            "incident-42@oid-a@oid-b"
        );
        // Not yet authenticated: the name does not count.
        assert!(s.of(&h, None, Instant::now()).starts_with("token-"));
        assert_eq!(s.of(&HeaderMap::new(), None, Instant::now()), "anonymous");
    }
}
