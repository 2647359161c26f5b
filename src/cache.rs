//! The answer cache: a bounded LRU of prepared answers and remembered failures,
//! keyed by question. Lives in seconds-to-days time, apart from the in-flight
//! table's milliseconds (see `inflight`).
//!
//! What an entry is and how a lookup sees it:
//! - an answer (positive, or negative per RFC 2308) is *fresh* until its TTL
//!   runs out, then *stale* for up to `stale_max_age` if serve-stale is on
//!   (RFC 8767), then gone;
//! - a failure (upstream SERVFAIL/REFUSED, timeout, network error) is fresh for
//!   `failure_ttl` and never stale. A failure never replaces an answer: a stale
//!   answer is preferred over a failure (RFC 8767 §5);
//! - a fresh answer in the last 10% of an original TTL of at least 10 s asks
//!   for one prefetch, once (again after [`Cache::prefetch_skipped`]).
//!
//! Bounded by `entries` and by `max_bytes`: whichever is reached first evicts
//! the least recently used. Failures also leave once expired, oldest first, a
//! few per insert: a hung upstream then leaves about rate × `failure_ttl` of
//! them, not one per name asked since. Entries are `Arc`s: a hit copies the pointer under
//! the lock and renders after releasing it.

use std::collections::VecDeque;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use lru::LruCache;
use tokio::time::Instant;

use crate::answer::{Answer, TtlPolicy};
use crate::error::LookupError;
use crate::metrics::Metrics;
use crate::query::Key;
use crate::wire;

/// Entries with a shorter original TTL are not prefetched: refreshing them
/// would cost more than an occasional miss.
const PREFETCH_MIN_TTL: u32 = 10;

/// Bytes per entry beyond the answer's own: LRU node, hash slot, key, entry
/// and the allocator's per-allocation overhead. Set from a measurement
/// (`WORKLOADS=rss benches/load.sh`, 1M typical A answers): RSS grew 643 bytes
/// per entry while 332 were counted with the structs' sizes alone. Since the
/// hash table grows with use, RSS grows 470 bytes per entry and about 630 are
/// counted, so `max_bytes` errs on the side of holding less than it allows.
const ENTRY_OVERHEAD: usize = 400;

/// Expired failures removed per insert: more than one, so they drain faster
/// than inserts add them.
const EXPIRED_FAILURES_PER_INSERT: usize = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    pub entries: NonZeroUsize,
    pub max_bytes: usize,
    pub ttl: TtlPolicy,
    /// Zero turns the failure cache off.
    pub failure_ttl: Duration,
    pub serve_stale: bool,
    pub stale_max_age: Duration,
    pub prefetch: bool,
}

/// What the cache holds for a question at a given instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hit {
    Fresh {
        answer: Arc<Answer>,
        /// Set once per entry, on the first hit in its last 10%: refresh it,
        /// or call [`Cache::prefetch_skipped`] so that a later hit asks again.
        prefetch: bool,
    },
    /// A remembered failure: answer it at once and refresh in the background.
    Failed(LookupError),
    /// Expired but within `stale_max_age`: refresh, and serve this if the
    /// refresh does not answer in time.
    Stale(Arc<Answer>),
    Miss,
}

#[derive(Debug)]
enum Value {
    Answer(Arc<Answer>),
    Failure(LookupError),
}

struct Entry {
    value: Value,
    expires: Instant,
    original_ttl: u32,
    bytes: usize,
    prefetched: bool,
}

struct Store {
    entries: LruCache<Key, Entry>,
    bytes: usize,
    /// Each failure stored, with its expiry. One `failure_ttl` for all makes
    /// insertion order expiry order, which the LRU order is not (a long-lived
    /// answer nobody asks for sits at its end). At most `entries` long.
    failures: VecDeque<(Key, Instant)>,
}

impl Store {
    /// Removes up to `EXPIRED_FAILURES_PER_INSERT` failures that expired by `now`.
    fn remove_expired_failures(&mut self, now: Instant) {
        for _ in 0..EXPIRED_FAILURES_PER_INSERT {
            if self
                .failures
                .front()
                .is_none_or(|(_, expiry)| *expiry > now)
            {
                return;
            }
            let Some((key, expiry)) = self.failures.pop_front() else {
                return;
            };
            // Only the failure this record was made for: the key may hold an
            // answer, or a later failure, by now.
            let same = self.entries.peek(&key).is_some_and(|entry| {
                matches!(entry.value, Value::Failure(_)) && entry.expires == expiry
            });
            if same && let Some(gone) = self.entries.pop(&key) {
                self.bytes -= gone.bytes;
            }
        }
    }
}

pub struct Cache {
    store: Mutex<Store>,
    limits: CacheLimits,
    metrics: Arc<Metrics>,
}

impl Cache {
    pub fn new(limits: CacheLimits, metrics: Arc<Metrics>) -> Cache {
        Cache {
            // Not `LruCache::new(entries)`: that sizes the hash table for the
            // bound at once, and every insert then touches a fresh page of it,
            // so a burst of distinct names (a hung upstream's failures) grew
            // RSS by tens of MiB in a nearly empty cache. The table grows
            // with use instead, and `store` enforces the bound.
            store: Mutex::new(Store {
                entries: LruCache::unbounded(),
                bytes: 0,
                failures: VecDeque::new(),
            }),
            limits,
            metrics,
        }
    }

    pub fn policy(&self) -> &TtlPolicy {
        &self.limits.ttl
    }

    pub fn get(&self, key: &Key, now: Instant) -> Hit {
        let mut store = self.lock();
        let hit = match store.entries.get_mut(key) {
            None => Hit::Miss,
            Some(entry) if entry.expires > now => match &entry.value {
                Value::Failure(error) => Hit::Failed(*error),
                Value::Answer(answer) => {
                    let prefetch = self.limits.prefetch
                        && !entry.prefetched
                        && entry.original_ttl >= PREFETCH_MIN_TTL
                        && entry.expires - now
                            < Duration::from_secs(u64::from(entry.original_ttl)) / 10;
                    entry.prefetched |= prefetch;
                    Hit::Fresh {
                        answer: Arc::clone(answer),
                        prefetch,
                    }
                }
            },
            Some(entry) => match &entry.value {
                Value::Answer(answer)
                    if self.limits.serve_stale
                        && now < entry.expires + self.limits.stale_max_age =>
                {
                    Hit::Stale(Arc::clone(answer))
                }
                _ => {
                    if let Some(gone) = store.entries.pop(key) {
                        store.bytes -= gone.bytes;
                    }
                    Hit::Miss
                }
            },
        };
        drop(store);
        let counter = match &hit {
            Hit::Fresh { answer, .. } => {
                if answer.is_negative() {
                    self.metrics.cache_negative_hits.inc();
                }
                &self.metrics.cache_hits
            }
            Hit::Failed(_) => &self.metrics.cache_failure_hits,
            Hit::Stale(_) => &self.metrics.cache_stale_hits,
            Hit::Miss => &self.metrics.cache_misses,
        };
        counter.inc();
        hit
    }

    /// The prefetch `get` asked for was not started (`max_inflight` lookups
    /// running): the next hit in the entry's last tenth asks again.
    pub fn prefetch_skipped(&self, key: &Key) {
        if let Some(entry) = self.lock().entries.peek_mut(key) {
            entry.prefetched = false;
        }
    }

    /// Stores `answer` if it may be cached (replacing a failure or a stale
    /// answer for the same question). One that may not still ends a remembered
    /// failure: the upstream has answered, so the next query must ask again.
    pub fn insert(&self, key: &Key, answer: Arc<Answer>) {
        let Some(ttl) = answer.cache_ttl(&self.limits.ttl) else {
            self.forget_failure(key);
            return;
        };
        let key = key.with_own_name();
        let expires = answer.received() + Duration::from_secs(u64::from(ttl));
        let bytes = ENTRY_OVERHEAD + key.name.len() + answer.size();
        if answer.is_negative() {
            self.metrics.cache_negative_inserts.inc();
        }
        self.store(key, Value::Answer(answer), expires, ttl, bytes);
    }

    /// Remembers that a lookup failed, for `failure_ttl`, unless an answer
    /// (fresh or stale) is held for the question: that is better to serve.
    pub fn insert_failure(&self, key: &Key, error: LookupError, now: Instant) {
        if self.limits.failure_ttl.is_zero() || error == LookupError::Overloaded {
            return;
        }
        // Allocated before the lock is taken.
        let key = key.with_own_name();
        let bytes = ENTRY_OVERHEAD + key.name.len();
        let ttl = crate::answer::whole_seconds(self.limits.failure_ttl);
        // The check and the store are one locked section: an answer stored
        // between them (a racing lookup's) would otherwise be overwritten.
        let mut store = self.lock();
        if let Some(entry) = store.entries.peek(&key)
            && matches!(entry.value, Value::Answer(_))
            && (entry.expires > now
                || (self.limits.serve_stale && now < entry.expires + self.limits.stale_max_age))
        {
            return;
        }
        let evictions = self.put(
            &mut store,
            key,
            Value::Failure(error),
            now + self.limits.failure_ttl,
            ttl,
            bytes,
        );
        drop(store);
        self.count_insert(evictions);
        self.metrics.cache_failure_inserts.inc();
    }

    fn forget_failure(&self, key: &Key) {
        let mut store = self.lock();
        if store
            .entries
            .peek(key)
            .is_some_and(|entry| matches!(entry.value, Value::Failure(_)))
            && let Some(entry) = store.entries.pop(key)
        {
            store.bytes -= entry.bytes;
        }
    }

    fn store(&self, key: Key, value: Value, expires: Instant, original_ttl: u32, bytes: usize) {
        let mut store = self.lock();
        let evictions = self.put(&mut store, key, value, expires, original_ttl, bytes);
        drop(store);
        self.count_insert(evictions);
    }

    /// Stores an entry under the caller's lock, then evicts down to the
    /// bounds. Returns how many entries were evicted.
    fn put(
        &self,
        store: &mut Store,
        key: Key,
        value: Value,
        expires: Instant,
        original_ttl: u32,
        bytes: usize,
    ) -> usize {
        let failure = matches!(value, Value::Failure(_));
        let entry = Entry {
            value,
            expires,
            original_ttl,
            bytes,
            prefetched: false,
        };
        store.bytes += bytes;
        let mut evictions = 0;
        if failure {
            store.failures.push_back((key.clone(), expires));
            if store.failures.len() > self.limits.entries.get() {
                store.failures.pop_front();
            }
        }
        // Unbounded, `push` only ever returns the entry it replaced for the same key.
        if let Some((_, old)) = store.entries.push(key, entry) {
            store.bytes -= old.bytes;
        }
        store.remove_expired_failures(Instant::now());
        while (store.bytes > self.limits.max_bytes
            || store.entries.len() > self.limits.entries.get())
            && store.entries.len() > 1
        {
            match store.entries.pop_lru() {
                Some((_, old)) => {
                    store.bytes -= old.bytes;
                    evictions += 1;
                }
                None => break,
            }
        }
        evictions
    }

    /// The counters of one insert, bumped after the lock is released.
    fn count_insert(&self, evictions: usize) {
        self.metrics.cache_inserts.inc();
        self.metrics.cache_evictions.add(evictions);
    }

    /// Removes everything. Returns how many entries went.
    pub fn flush_all(&self) -> usize {
        let mut store = self.lock();
        let removed = store.entries.len();
        store.entries.clear();
        store.failures.clear();
        store.bytes = 0;
        removed
    }

    /// Removes every entry for `name` (a plain wire-format name, any case), all types.
    pub fn flush_name(&self, name: &[u8]) -> usize {
        self.flush_where(|key| key.name.eq_ignore_ascii_case(name))
    }

    /// Removes every entry for `zone` and the names below it (label-wise suffix).
    pub fn flush_suffix(&self, zone: &[u8]) -> usize {
        self.flush_where(|key| wire::is_at_or_below(&key.name, zone))
    }

    fn flush_where(&self, matches: impl Fn(&Key) -> bool) -> usize {
        let mut store = self.lock();
        let doomed: Vec<Key> = store
            .entries
            .iter()
            .filter(|(key, _)| matches(key))
            .map(|(key, _)| key.clone())
            .collect();
        for key in &doomed {
            if let Some(entry) = store.entries.pop(key) {
                store.bytes -= entry.bytes;
            }
        }
        doomed.len()
    }

    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the cache accounts for (what `max_bytes` bounds).
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    fn lock(&self) -> MutexGuard<'_, Store> {
        // Every critical section leaves the store consistent before anything
        // that could panic, so a poisoned lock still guards valid state.
        self.store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answer::tests::{client_query, negative_reply, upstream_reply};

    const POLICY: TtlPolicy = TtlPolicy {
        min: 0,
        max: 86_400,
        negative_max: 3600,
    };

    fn limits() -> CacheLimits {
        CacheLimits {
            entries: NonZeroUsize::new(100).expect("non-zero"),
            max_bytes: 1 << 20,
            ttl: POLICY,
            failure_ttl: Duration::from_secs(5),
            serve_stale: true,
            stale_max_age: Duration::from_secs(3600),
            prefetch: true,
        }
    }

    fn cache(limits: CacheLimits) -> Cache {
        Cache::new(limits, Arc::new(Metrics::default()))
    }

    fn prepared(name: &str, ttl: u32) -> (Key, Arc<Answer>) {
        let answer =
            Answer::from_upstream(&upstream_reply(1, name, &[ttl]), Instant::now()).expect("valid");
        (client_query(name, false).key, Arc::new(answer))
    }

    /// Enough rounds that the race shows without the fix on a loaded 2-core machine.
    const RACE_ROUNDS: usize = 5_000;

    fn is_fresh(hit: &Hit) -> bool {
        matches!(hit, Hit::Fresh { .. })
    }

    #[test]
    fn entries_keep_a_name_of_their_own_not_the_query_s() {
        let cache = cache(limits());
        let (key, answer) = prepared("kept.test.", 60);
        cache.insert(&key, answer);
        let failed = client_query("failed.test.", false).key;
        cache.insert_failure(&failed, LookupError::Timeout, Instant::now());
        // The query's name was allocated by the UDP serving thread; an entry
        // that shared it would pin that thread's malloc arena (Key::with_own_name).
        assert_eq!(Arc::strong_count(&key.name), 1);
        assert_eq!(Arc::strong_count(&failed.name), 1);
        assert_eq!(cache.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn answer_is_fresh_then_stale_then_gone() {
        let cache = cache(limits());
        let (key, answer) = prepared("a.test.", 60);
        cache.insert(&key, answer);
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(is_fresh(&cache.get(&key, Instant::now())));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(matches!(cache.get(&key, Instant::now()), Hit::Stale(_)));
        tokio::time::advance(Duration::from_secs(3599)).await;
        assert!(matches!(cache.get(&key, Instant::now()), Hit::Stale(_)));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(cache.get(&key, Instant::now()), Hit::Miss);
        assert!(
            cache.is_empty(),
            "an entry past stale_max_age is removed on sight"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn without_serve_stale_an_expired_entry_is_a_miss() {
        let cache = cache(CacheLimits {
            serve_stale: false,
            ..limits()
        });
        let (key, answer) = prepared("a.test.", 60);
        cache.insert(&key, answer);
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(cache.get(&key, Instant::now()), Hit::Miss);
        assert!(cache.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn failure_is_remembered_for_failure_ttl_and_never_replaces_an_answer() {
        let cache = cache(limits());
        let key = client_query("down.test.", false).key;
        cache.insert_failure(&key, LookupError::Timeout, Instant::now());
        tokio::time::advance(Duration::from_millis(4_999)).await;
        assert_eq!(
            cache.get(&key, Instant::now()),
            Hit::Failed(LookupError::Timeout)
        );
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(cache.get(&key, Instant::now()), Hit::Miss);

        // A good answer replaces a failure at once.
        cache.insert_failure(&key, LookupError::Timeout, Instant::now());
        let (_, answer) = prepared("down.test.", 60);
        cache.insert(&key, answer);
        assert!(is_fresh(&cache.get(&key, Instant::now())));
        // A failure does not replace a fresh answer, nor a stale one.
        cache.insert_failure(&key, LookupError::Timeout, Instant::now());
        assert!(is_fresh(&cache.get(&key, Instant::now())));
        tokio::time::advance(Duration::from_secs(61)).await;
        cache.insert_failure(&key, LookupError::Timeout, Instant::now());
        assert!(matches!(cache.get(&key, Instant::now()), Hit::Stale(_)));
    }

    /// A lookup's failure and another's answer for one question, stored at the
    /// same moment from two threads: whichever runs first, the answer stays.
    /// The failure's check for an answer and its store were two locked
    /// sections, and an answer stored between them was overwritten.
    #[test]
    fn a_failure_racing_an_answer_never_replaces_it() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let (key, answer) = prepared("race.test.", 60);
        let cache = cache(limits());
        // Round r starts when `go` is r, and its answer is stored when `done` is r.
        let (go, done) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let mut overwritten = 0;
        std::thread::scope(|scope| {
            scope.spawn(|| {
                for round in 1..=RACE_ROUNDS {
                    while go.load(Ordering::Acquire) != round {
                        std::hint::spin_loop();
                    }
                    cache.insert(&key, Arc::clone(&answer));
                    done.store(round, Ordering::Release);
                }
            });
            for round in 1..=RACE_ROUNDS {
                cache.flush_all();
                go.store(round, Ordering::Release);
                cache.insert_failure(&key, LookupError::Timeout, Instant::now());
                while done.load(Ordering::Acquire) != round {
                    std::hint::spin_loop();
                }
                if !is_fresh(&cache.get(&key, Instant::now())) {
                    overwritten += 1;
                }
            }
        });
        assert_eq!(overwritten, 0, "of {RACE_ROUNDS} rounds");
    }

    #[tokio::test(start_paused = true)]
    async fn expired_failures_leave_oldest_first_as_others_arrive() {
        let cache = cache(limits());
        // A long-lived answer nobody asks for: the LRU end throughout.
        let (old, answer) = prepared("old.test.", 3600);
        cache.insert(&old, answer);
        for n in 0..10 {
            let key = client_query(&format!("down{n}.test."), false).key;
            cache.insert_failure(&key, LookupError::Timeout, Instant::now());
        }
        // Healed before its failure expired: the answer must stay.
        let healed = client_query("healed.test.", false).key;
        cache.insert_failure(&healed, LookupError::Timeout, Instant::now());
        let (_, answer) = prepared("healed.test.", 60);
        cache.insert(&healed, answer);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(cache.len(), 12, "nothing is removed without an insert");
        for n in 0..6 {
            let (key, answer) = prepared(&format!("new{n}.test."), 60);
            cache.insert(&key, answer);
        }
        // Two expired failures per insert: all ten are gone, the answers stay.
        assert_eq!(cache.len(), 8);
        assert!(is_fresh(&cache.get(&old, Instant::now())));
        assert!(is_fresh(&cache.get(&healed, Instant::now())));
    }

    #[tokio::test(start_paused = true)]
    async fn failure_ttl_zero_turns_the_failure_cache_off() {
        let cache = cache(CacheLimits {
            failure_ttl: Duration::ZERO,
            ..limits()
        });
        let key = client_query("down.test.", false).key;
        cache.insert_failure(&key, LookupError::Timeout, Instant::now());
        assert_eq!(cache.get(&key, Instant::now()), Hit::Miss);
    }

    #[tokio::test(start_paused = true)]
    async fn prefetch_is_asked_once_in_the_last_tenth_of_the_ttl() {
        let cache = cache(limits());
        let (key, answer) = prepared("popular.test.", 100);
        cache.insert(&key, answer);
        let prefetch = |hit: Hit| match hit {
            Hit::Fresh { prefetch, .. } => prefetch,
            other => panic!("expected fresh, got {other:?}"),
        };
        tokio::time::advance(Duration::from_secs(90)).await;
        assert!(
            !prefetch(cache.get(&key, Instant::now())),
            "10 s left: not yet"
        );
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(prefetch(cache.get(&key, Instant::now())));
        for _ in 0..100 {
            assert!(!prefetch(cache.get(&key, Instant::now())), "only once");
        }
        // Short TTLs are not prefetched.
        let (short, answer) = prepared("short.test.", 9);
        cache.insert(&short, answer);
        tokio::time::advance(Duration::from_millis(8_500)).await;
        assert!(!prefetch(cache.get(&short, Instant::now())));
    }

    #[tokio::test(start_paused = true)]
    async fn negative_answers_are_cached_for_their_negative_ttl() {
        let cache = cache(limits());
        let key = client_query("nx.test.", false).key;
        let answer = Answer::from_upstream(
            &negative_reply("nx.test.", true, None, Some((3600, 60))),
            Instant::now(),
        )
        .expect("valid");
        cache.insert(&key, Arc::new(answer));
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(is_fresh(&cache.get(&key, Instant::now())));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(matches!(cache.get(&key, Instant::now()), Hit::Stale(_)));
        assert_eq!(cache.metrics.cache_negative_inserts.get(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn least_recently_used_is_evicted_at_the_entry_bound() {
        let cache = cache(CacheLimits {
            entries: NonZeroUsize::new(2).expect("non-zero"),
            ..limits()
        });
        let (a, answer_a) = prepared("a.test.", 60);
        let (b, answer_b) = prepared("b.test.", 60);
        let (c, answer_c) = prepared("c.test.", 60);
        cache.insert(&a, answer_a);
        cache.insert(&b, answer_b);
        assert!(is_fresh(&cache.get(&a, Instant::now())));
        cache.insert(&c, answer_c);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get(&b, Instant::now()), Hit::Miss);
        assert!(is_fresh(&cache.get(&a, Instant::now())));
        assert!(is_fresh(&cache.get(&c, Instant::now())));
        assert_eq!(cache.metrics.cache_evictions.get(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn least_recently_used_is_evicted_at_the_byte_bound() {
        let (a, answer_a) = prepared("a.test.", 60);
        let one = ENTRY_OVERHEAD + a.name.len() + answer_a.size();
        let cache = cache(CacheLimits {
            max_bytes: 3 * one,
            ..limits()
        });
        cache.insert(&a, answer_a);
        for name in ["b.test.", "c.test."] {
            let (key, answer) = prepared(name, 60);
            cache.insert(&key, answer);
        }
        assert_eq!((cache.len(), cache.bytes()), (3, 3 * one));
        let (d, answer_d) = prepared("d.test.", 60);
        cache.insert(&d, answer_d);
        assert_eq!((cache.len(), cache.bytes()), (3, 3 * one));
        assert_eq!(
            cache.get(&a, Instant::now()),
            Hit::Miss,
            "a was least recent"
        );
        assert!(is_fresh(&cache.get(&d, Instant::now())));
    }

    #[tokio::test(start_paused = true)]
    async fn flush_all_one_name_or_a_suffix() {
        let cache = cache(limits());
        let names = [
            "www.example.test.",
            "mail.example.test.",
            "example.test.",
            "other.test.",
        ];
        for name in names {
            let (key, answer) = prepared(name, 60);
            cache.insert(&key, answer);
        }
        let mut aaaa = client_query("www.example.test.", false).key;
        aaaa.qtype = 28;
        let (_, answer) = prepared("www.example.test.", 60);
        cache.insert(&aaaa, answer);
        assert_eq!(cache.len(), 5);
        let wire = |name: &str| client_query(name, false).key.name;
        assert_eq!(
            cache.flush_name(&wire("WWW.example.test.")),
            2,
            "A and AAAA"
        );
        assert_eq!(cache.flush_suffix(&wire("example.test.")), 2);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.flush_all(), 1);
        assert_eq!((cache.len(), cache.bytes()), (0, 0));
    }

    #[test]
    fn suffix_matches_whole_labels() {
        let wire = |name: &str| client_query(name, false).key.name;
        assert!(wire::is_at_or_below(
            &wire("a.b.example."),
            &wire("example.")
        ));
        assert!(wire::is_at_or_below(&wire("example."), &wire("example.")));
        assert!(!wire::is_at_or_below(&wire("bexample."), &wire("example.")));
        assert!(wire::is_at_or_below(&wire("anything."), &wire(".")));
    }
}
