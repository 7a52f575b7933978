//! Password-guessing throttle: after [`MAX_FAILURES`] failed logins within [`WINDOW`], further logins
//! are refused for [`LOCKOUT`], counted per account name (whether or not such an account exists, so the
//! lockout reveals nothing) and per connection (in token mode, per IP address of the HTTPS client).
//! The per-name count is shared by both login paths: the tick's and the HTTPS endpoint's.

use std::borrow::Borrow;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bevy::prelude::*;

pub const MAX_FAILURES: usize = 5;
pub const WINDOW: Duration = Duration::from_secs(60);
pub const LOCKOUT: Duration = Duration::from_secs(30);
/// What a locked-out login is told.
pub const LOCKED_OUT: &str = "Too many failed logins. Try again in 30 seconds";
/// Names tracked at most; beyond it, names with no recent failure are forgotten first.
const MAX_TRACKED_NAMES: usize = 100_000;

/// Recent failures of one name or one connection.
#[derive(Component, Debug, Default)]
pub struct Failures {
    recent: VecDeque<Instant>,
    locked_until: Option<Instant>,
}

impl Failures {
    pub fn is_locked(&self, now: Instant) -> bool {
        self.locked_until.is_some_and(|until| now < until)
    }

    pub fn record(&mut self, now: Instant) {
        self.recent
            .retain(|at| now.saturating_duration_since(*at) < WINDOW);
        self.recent.push_back(now);
        if self.recent.len() >= MAX_FAILURES {
            self.recent.clear();
            self.locked_until = Some(now + LOCKOUT);
        }
    }

    fn is_stale(&self, now: Instant) -> bool {
        !self.is_locked(now)
            && self
                .recent
                .back()
                .is_none_or(|at| now.saturating_duration_since(*at) >= WINDOW)
    }
}

/// Failures per key (an account name, or an address), shared between threads. At most `MAX_TRACKED_NAMES`
/// keys are kept: beyond it, keys with no recent failure are forgotten first.
#[derive(Debug)]
pub struct FailureTable<K>(Arc<Mutex<HashMap<K, Failures>>>);

impl<K> Clone for FailureTable<K> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<K> Default for FailureTable<K> {
    fn default() -> Self {
        Self(Arc::default())
    }
}

impl<K: Hash + Eq> FailureTable<K> {
    fn table(&self) -> MutexGuard<'_, HashMap<K, Failures>> {
        // A panic elsewhere while holding the lock leaves the counts usable.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn is_locked<Q>(&self, key: &Q, now: Instant) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.table().get(key).is_some_and(|f| f.is_locked(now))
    }

    pub fn record<Q>(&self, key: &Q, now: Instant)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let mut table = self.table();
        if table.len() >= MAX_TRACKED_NAMES {
            table.retain(|_, failures| !failures.is_stale(now));
        }
        table.entry(key.to_owned()).or_default().record(now);
    }

    pub fn forget<Q>(&self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.table().remove(key);
    }
}

/// Failures per account name (lowercase), for both login paths.
#[derive(Resource, Debug, Clone, Default)]
pub struct NameFailures(pub FailureTable<String>);

impl NameFailures {
    pub fn is_locked(&self, key: &str, now: Instant) -> bool {
        self.0.is_locked(key, now)
    }

    pub fn record(&self, key: &str, now: Instant) {
        self.0.record(key, now);
    }

    pub fn forget(&self, key: &str) {
        self.0.forget(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_in_a_minute_lock_for_thirty_seconds() {
        let t0 = Instant::now();
        let names = NameFailures::default();
        for i in 0..4 {
            names.record("alice", t0 + Duration::from_secs(i));
            assert!(!names.is_locked("alice", t0 + Duration::from_secs(i)));
        }
        names.record("alice", t0 + Duration::from_secs(4));
        assert!(names.is_locked("alice", t0 + Duration::from_secs(5)));
        assert!(!names.is_locked("bob", t0 + Duration::from_secs(5)));
        assert!(
            !names.is_locked("alice", t0 + Duration::from_secs(35)),
            "the lock ends"
        );

        // Failures spread over more than a minute never lock.
        let mut slow = Failures::default();
        for i in 0..10 {
            slow.record(t0 + Duration::from_secs(20 * i));
            assert!(!slow.is_locked(t0 + Duration::from_secs(20 * i)));
        }
    }
}
