//! Tokens already verified, so a client presenting the same token again is not put through
//! RS256 again (issue 11: cached validation under 2 µs).
//!
//! - The key is the whole token: a lookup compares it in full (the hash only picks where to
//!   look). The value is the `Principal` as `authenticate` returns it (groups resolved).
//! - An entry is served only while the token is unexpired (`now < exp`, no clock skew
//!   allowance: past `exp` the full check decides, with its skew), for at most
//!   [`LIFETIME`] after it was verified, no longer than the groups it carries may be kept,
//!   and only under the key generation it was verified with ([`KeyCache::generation`]): a
//!   change to the trusted keys or metadata empties the cache.
//! - Failures are never kept: a refused token is checked in full every time.
//! - At most `max_entries` entries: when a shard is full, entries no longer servable go
//!   first, then the one closest to its deadline.
//!
//! [`KeyCache::generation`]: super::jwks::KeyCache::generation

use std::hash::BuildHasher;
use std::hash::RandomState;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hashbrown::HashTable;

use super::principal::Principal;

/// How long a verified token is served from memory at most (its `exp` may end it sooner).
pub const LIFETIME: Duration = Duration::from_secs(300);

/// Entries kept at most by the gateway's cache.
pub const MAX_ENTRIES: usize = 10_000;

/// Shards at most: requests on different threads rarely wait on one another's lock.
const MAX_SHARDS: usize = 16;

struct Entry {
    hash: u64,
    token: Box<str>,
    principal: Arc<Principal>,
    /// The token's `exp`, in seconds since the epoch: served while `now < expires`.
    expires: u64,
    /// Served while `Instant::now() < fresh_until` (at most `LIFETIME` after verification).
    fresh_until: Instant,
    /// The key generation the token was verified under.
    generation: u64,
}

impl Entry {
    fn servable(&self, generation: u64, now: Instant, unix_now: u64) -> bool {
        self.generation == generation && now < self.fresh_until && unix_now < self.expires
    }
}

pub struct TokenCache {
    shards: Box<[Mutex<HashTable<Entry>>]>,
    per_shard: usize,
    hasher: RandomState,
    /// The newest key generation seen; entries from older ones are dropped when it moves.
    generation: AtomicU64,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl TokenCache {
    /// A cache of at most `max_entries` (at least 1) tokens.
    pub fn new(max_entries: usize) -> TokenCache {
        let max_entries = max_entries.max(1);
        // At least 256 entries a shard, so that one shard filling early evicts little.
        let shards = (max_entries / 256).clamp(1, MAX_SHARDS);
        TokenCache {
            shards: (0..shards).map(|_| Mutex::new(HashTable::new())).collect(),
            per_shard: max_entries / shards,
            hasher: RandomState::new(),
            generation: AtomicU64::new(0),
        }
    }

    fn shard(&self, hash: u64) -> &Mutex<HashTable<Entry>> {
        // The high bits: the table itself uses the low ones.
        &self.shards[((hash >> 32) as usize) % self.shards.len()]
    }

    /// Notes the current key generation; a newer one than seen so far empties the cache.
    fn observe(&self, generation: u64) {
        // A plain load first: the usual case (nothing changed) writes nothing shared.
        if self.generation.load(Ordering::Acquire) < generation
            && self.generation.fetch_max(generation, Ordering::AcqRel) < generation
        {
            for shard in self.shards.iter() {
                shard.lock().expect("token cache lock").clear();
            }
        }
    }

    /// The principal verified for exactly `token` under key generation `generation`, if it
    /// may still be served.
    pub fn get(&self, token: &str, generation: u64) -> Option<Arc<Principal>> {
        self.observe(generation);
        let hash = self.hasher.hash_one(token);
        let mut shard = self.shard(hash).lock().expect("token cache lock");
        let entry = shard.find_entry(hash, |e| *e.token == *token).ok()?;
        if entry.get().servable(generation, Instant::now(), unix_now()) {
            Some(entry.get().principal.clone())
        } else {
            entry.remove();
            None
        }
    }

    /// Keeps a verified token: `expires` is its `exp`, `fresh_until` any earlier bound
    /// (groups looked up for it), `generation` the key generation read before verifying.
    pub fn insert(
        &self,
        token: &str,
        principal: Principal,
        expires: u64,
        fresh_until: Instant,
        generation: u64,
    ) {
        self.observe(generation);
        let now = Instant::now();
        let entry = Entry {
            hash: self.hasher.hash_one(token),
            token: token.into(),
            principal: Arc::new(principal),
            expires,
            fresh_until: fresh_until.min(now + LIFETIME),
            generation,
        };
        // Keys changed while it was being verified, or nothing left to serve.
        if generation != self.generation.load(Ordering::Acquire)
            || !entry.servable(generation, now, unix_now())
        {
            return;
        }
        let mut shard = self.shard(entry.hash).lock().expect("token cache lock");
        if let Ok(old) = shard.find_entry(entry.hash, |e| e.token == entry.token) {
            old.remove();
        }
        if shard.len() >= self.per_shard {
            let unix = unix_now();
            shard.retain(|e| e.servable(generation, now, unix));
        }
        if shard.len() >= self.per_shard
            && let Some(soonest) = shard
                .iter()
                .min_by_key(|e| e.fresh_until)
                .map(|e| (e.hash, e.token.clone()))
            && let Ok(e) = shard.find_entry(soonest.0, |e| e.token == soonest.1)
        {
            e.remove();
        }
        shard.insert_unique(entry.hash, entry, |e| e.hash);
    }

    /// Entries held (servable or not yet dropped).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().expect("token cache lock").len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The clock the cache judges `exp` by, for tests elsewhere.
#[cfg(test)]
pub(crate) fn tests_unix_now() -> u64 {
    unix_now()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::principal::PrincipalKind;

    fn principal(oid: &str) -> Principal {
        Principal {
            tenant_id: "11111111-1111-1111-1111-111111111111".into(),
            object_id: oid.into(),
            kind: PrincipalKind::App,
            app_id: None,
            groups: vec![],
            roles: vec![],
            display_name: None,
            token_version: 2,
        }
    }

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(3600)
    }

    #[test]
    fn serves_only_the_exact_token() {
        let c = TokenCache::new(100);
        let exp = unix_now() + 3600;
        c.insert("aaa.bbb.ccc", principal("p1"), exp, later(), 0);
        assert_eq!(c.get("aaa.bbb.ccc", 0).unwrap().object_id, "p1");
        for other in [
            "aaa.bbb.ccd",
            "aaa.bbb.cc",
            "aaa.bbb.ccc ",
            "AAA.bbb.ccc",
            "",
        ] {
            assert!(c.get(other, 0).is_none(), "{other:?}");
        }
    }

    #[test]
    fn nothing_is_kept_past_its_exp_or_its_deadline() {
        let c = TokenCache::new(100);
        let now = unix_now();
        // Already expired (exp == now counts as expired here): not even stored.
        c.insert("expired", principal("p"), now, later(), 0);
        c.insert("long-expired", principal("p"), now - 600, later(), 0);
        assert!(c.is_empty());
        // A deadline (groups fetched a while ago) shorter than the token's life.
        c.insert(
            "short",
            principal("p"),
            now + 3600,
            Instant::now() + Duration::from_millis(50),
            0,
        );
        // `exp` in the next second or two.
        c.insert("exp-soon", principal("p"), now + 1, later(), 0);
        assert!(c.get("short", 0).is_some());
        assert!(c.get("exp-soon", 0).is_some());
        std::thread::sleep(Duration::from_millis(60));
        assert!(c.get("short", 0).is_none(), "served past its deadline");
        while unix_now() < now + 1 {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(c.get("exp-soon", 0).is_none(), "served past exp");
        assert!(c.is_empty(), "unservable entries are dropped when met");
    }

    #[test]
    fn the_lifetime_is_bounded() {
        let c = TokenCache::new(100);
        c.insert("t", principal("p"), unix_now() + 86_400, later(), 0);
        let shard = c.shard(c.hasher.hash_one("t")).lock().unwrap();
        let e = shard.iter().next().unwrap();
        assert!(e.fresh_until <= Instant::now() + LIFETIME);
    }

    #[test]
    fn a_new_key_generation_empties_it() {
        let c = TokenCache::new(100);
        let exp = unix_now() + 3600;
        for i in 0..10 {
            c.insert(&format!("t{i}"), principal("p"), exp, later(), 3);
        }
        assert_eq!(c.len(), 10);
        assert!(c.get("t0", 4).is_none());
        assert!(c.is_empty());
        // A result verified under the old keys, stored after they changed, is not kept...
        c.insert("late", principal("p"), exp, later(), 3);
        assert!(c.is_empty());
        // ...nor served to a request that read the new generation.
        assert!(c.get("late", 4).is_none());
        c.insert("fresh", principal("p"), exp, later(), 4);
        assert!(c.get("fresh", 4).is_some());
    }

    #[test]
    fn the_bound_holds() {
        for max in [1, 7, 300, 1000, MAX_ENTRIES] {
            let c = TokenCache::new(max);
            let exp = unix_now() + 3600;
            for i in 0..(max * 2 + 50) {
                c.insert(&format!("token-{i}"), principal("p"), exp, later(), 0);
                assert!(c.len() <= max, "{} entries, bound {max}", c.len());
            }
            // The newest is always kept.
            let last = format!("token-{}", max * 2 + 49);
            assert!(c.get(&last, 0).is_some());
        }
    }

    #[test]
    fn a_full_cache_drops_what_it_cannot_serve_first() {
        let c = TokenCache::new(4);
        let exp = unix_now() + 3600;
        let soon = Instant::now() + Duration::from_millis(30);
        c.insert("dying-1", principal("p"), exp, soon, 0);
        c.insert("dying-2", principal("p"), exp, soon, 0);
        c.insert("keep-1", principal("p"), exp, later(), 0);
        c.insert("keep-2", principal("p"), exp, later(), 0);
        std::thread::sleep(Duration::from_millis(40));
        c.insert("new-1", principal("p"), exp, later(), 0);
        c.insert("new-2", principal("p"), exp, later(), 0);
        for t in ["keep-1", "keep-2", "new-1", "new-2"] {
            assert!(c.get(t, 0).is_some(), "{t}");
        }
    }

    #[test]
    fn concurrent_use_is_safe() {
        let c = Arc::new(TokenCache::new(64));
        let exp = unix_now() + 3600;
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for i in 0..2000u64 {
                        let token = format!("token-{}", (i * 7 + t) % 100);
                        let generation = i / 500;
                        if let Some(p) = c.get(&token, generation) {
                            assert_eq!(p.object_id, token);
                        } else {
                            c.insert(&token, principal(&token), exp, later(), generation);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(c.len() <= 64);
    }
}
