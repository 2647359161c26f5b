//! The answer cache: a bounded LRU of prepared upstream answers keyed by
//! question, each with its expiry. Lives in seconds-to-days time, apart from the
//! in-flight table's milliseconds (see `inflight`).
//!
//! Entries are `Arc<Answer>`: a hit copies the pointer under the lock and renders
//! after releasing it, so the lock is held for a hash lookup and nothing more.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use lru::LruCache;
use tokio::time::Instant;

use crate::answer::{Answer, TtlPolicy};
use crate::metrics::Metrics;
use crate::query::Key;

struct Entry {
    answer: Arc<Answer>,
    expires: Instant,
}

pub struct Cache {
    entries: Mutex<LruCache<Key, Entry>>,
    policy: TtlPolicy,
    metrics: Arc<Metrics>,
}

impl Cache {
    pub fn new(capacity: NonZeroUsize, policy: TtlPolicy, metrics: Arc<Metrics>) -> Cache {
        Cache {
            entries: Mutex::new(LruCache::new(capacity)),
            policy,
            metrics,
        }
    }

    pub fn policy(&self) -> &TtlPolicy {
        &self.policy
    }

    /// A fresh answer for `key`, or `None`. An expired entry is removed on sight.
    pub fn get(&self, key: &Key, now: Instant) -> Option<Arc<Answer>> {
        let mut entries = self.lock();
        let fresh = match entries.get(key) {
            None => None,
            Some(entry) if entry.expires > now => Some(Arc::clone(&entry.answer)),
            Some(_) => {
                entries.pop(key);
                None
            }
        };
        drop(entries);
        match &fresh {
            Some(_) => self.metrics.cache_hits.inc(),
            None => self.metrics.cache_misses.inc(),
        }
        fresh
    }

    /// Stores `answer` if it may be cached; at the bound the least recently used
    /// entry is evicted.
    pub fn insert(&self, key: Key, answer: Arc<Answer>) {
        let Some(ttl) = answer.cache_ttl(&self.policy) else {
            return;
        };
        let expires = answer.received() + Duration::from_secs(u64::from(ttl));
        let evicted = self.lock().push(key.clone(), Entry { answer, expires });
        self.metrics.cache_inserts.inc();
        // `push` also returns the old entry when it replaced the same key.
        if evicted.is_some_and(|(old, _)| old != key) {
            self.metrics.cache_evictions.inc();
        }
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, LruCache<Key, Entry>> {
        // A panic while holding this lock cannot leave the LRU half-updated in a
        // way that matters more than losing service, so keep serving.
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
