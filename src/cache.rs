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
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answer::tests::{client_query, upstream_reply};

    fn cache(capacity: usize) -> Cache {
        Cache::new(
            NonZeroUsize::new(capacity).expect("non-zero"),
            TtlPolicy {
                min: 0,
                max: 86_400,
            },
            Arc::new(Metrics::default()),
        )
    }

    fn prepared(name: &str, ttl: u32) -> (Key, Arc<Answer>) {
        let answer =
            Answer::from_upstream(&upstream_reply(1, name, &[ttl]), Instant::now()).expect("valid");
        (client_query(name, false).key, Arc::new(answer))
    }

    #[tokio::test(start_paused = true)]
    async fn entry_expires_after_its_ttl() {
        let cache = cache(10);
        let (key, answer) = prepared("a.test.", 60);
        cache.insert(key.clone(), answer);
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(cache.get(&key, Instant::now()).is_some());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(cache.get(&key, Instant::now()).is_none());
        assert!(cache.is_empty(), "an expired entry is removed on sight");
    }

    #[tokio::test(start_paused = true)]
    async fn least_recently_used_is_evicted_at_the_bound() {
        let cache = cache(2);
        let (a, answer_a) = prepared("a.test.", 60);
        let (b, answer_b) = prepared("b.test.", 60);
        let (c, answer_c) = prepared("c.test.", 60);
        cache.insert(a.clone(), answer_a);
        cache.insert(b.clone(), answer_b);
        assert!(cache.get(&a, Instant::now()).is_some()); // a is now more recent than b
        cache.insert(c.clone(), answer_c);
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&b, Instant::now()).is_none());
        assert!(cache.get(&a, Instant::now()).is_some());
        assert!(cache.get(&c, Instant::now()).is_some());
        assert_eq!(cache.metrics.cache_evictions.get(), 1);
    }
}
