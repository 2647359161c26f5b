//! The coalescing table: identical questions in flight share one upstream lookup.
//!
//! The table, not any client, owns a lookup. Each client is a waiter with its own
//! deadline. The invariants this module keeps (they are what the Go incident
//! lacked):
//! - a waiter whose deadline passes, or whose client goes away, is removed from
//!   its lookup at once, not when the lookup ends;
//! - a lookup that no one waits for any more is removed from the table and
//!   cancelled, so the next query starts a fresh one and never joins a dead one;
//!   except a background refresh (failure or stale hit, prefetch), which runs to
//!   its own deadline with or without waiters, at most one per question;
//! - a lookup that ends (answer, failure, its own deadline, or its task being
//!   dropped) leaves the table and answers every remaining waiter exactly once;
//! - at `max_inflight` lookups or `max_waiters` on one lookup, joining fails at
//!   once ("overloaded") instead of queueing.
//!
//! State is a plain map behind a std `Mutex`, never held across an `.await`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;
use tokio::time::{Instant, timeout_at};
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use crate::answer::Answer;
use crate::error::LookupError;
use crate::metrics::Metrics;
use crate::query::Key;

/// What a lookup delivers to each of its waiters.
pub type Outcome = Result<Arc<Answer>, LookupError>;

pub struct Inflight {
    table: Mutex<Table>,
    max_inflight: usize,
    max_waiters: usize,
    metrics: Arc<Metrics>,
}

#[derive(Default)]
struct Table {
    /// foldhash, as the cache's map: each miss hashes its key three times
    /// here, and SipHash made that 4% of a miss's instructions. The keys come
    /// from clients, but the seed is random per process and the table holds
    /// at most `max_inflight` lookups.
    lookups: HashMap<Key, Lookup, foldhash::fast::RandomState>,
    /// Distinguishes a lookup from a later one for the same key, so a late
    /// waiter or task never touches its successor.
    next_id: u64,
    waiters: usize,
}

struct Lookup {
    generation: u64,
    waiters: Vec<(u64, oneshot::Sender<Outcome>)>,
    cancel: CancellationToken,
    /// A refresh whose answer the cache wants: not cancelled when waiterless.
    background: bool,
}

/// The result of asking to wait for a key.
pub enum Joined {
    /// No lookup was in flight: the caller must start one with `lookup`.
    Leader {
        waiter: Waiter,
        lookup: LookupHandle,
    },
    /// Joined the lookup already in flight.
    Follower(Waiter),
    /// A limit was reached; answer "overloaded" now.
    Overloaded,
}

/// What [`Inflight::refresh`] did.
pub enum Refresh {
    /// No lookup was in flight: the caller must run this one.
    Start(LookupHandle),
    /// The lookup in flight now runs to its end for the cache.
    InFlight,
    /// `max_inflight` lookups are running: none was started (counted).
    Skipped,
}

/// Counts a test or an operator can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InflightGauges {
    pub lookups: usize,
    pub waiters: usize,
}

impl Inflight {
    pub fn new(max_inflight: usize, max_waiters: usize, metrics: Arc<Metrics>) -> Arc<Inflight> {
        Arc::new(Inflight {
            table: Mutex::new(Table::default()),
            max_inflight,
            max_waiters,
            metrics,
        })
    }

    /// Waits for `key`, leading a new lookup if none is in flight. With
    /// `background`, the lookup runs to its end even if every waiter leaves (the
    /// cache wants its answer: a stale entry is being refreshed).
    pub fn join(self: &Arc<Self>, key: &Key, background: bool) -> Joined {
        let (tx, rx) = oneshot::channel();
        let mut table = self.lock();
        let waiter_id = table.next_id;
        table.next_id += 1;
        if let Some(lookup) = table.lookups.get_mut(key) {
            if lookup.waiters.len() >= self.max_waiters {
                drop(table);
                self.metrics.overload_answers.inc();
                return Joined::Overloaded;
            }
            lookup.waiters.push((waiter_id, tx));
            lookup.background |= background;
            let generation = lookup.generation;
            table.waiters += 1;
            drop(table);
            self.metrics.coalesced_joins.inc();
            return Joined::Follower(self.waiter(key, generation, waiter_id, rx));
        }
        if table.lookups.len() >= self.max_inflight {
            drop(table);
            self.metrics.overload_answers.inc();
            return Joined::Overloaded;
        }
        let lookup = self.insert(&mut table, key, vec![(waiter_id, tx)], background);
        table.waiters += 1;
        drop(table);
        Joined::Leader {
            waiter: self.waiter(key, lookup.generation, waiter_id, rx),
            lookup,
        }
    }

    /// Makes sure a background refresh of `key` is in flight: marks the lookup
    /// in flight as background, or returns a new one for the caller to run;
    /// skips it (counted) when `max_inflight` lookups are running.
    pub fn refresh(self: &Arc<Self>, key: &Key) -> Refresh {
        let mut table = self.lock();
        if let Some(lookup) = table.lookups.get_mut(key) {
            lookup.background = true;
            return Refresh::InFlight;
        }
        if table.lookups.len() >= self.max_inflight {
            drop(table);
            self.metrics.refreshes_skipped.inc();
            return Refresh::Skipped;
        }
        Refresh::Start(self.insert(&mut table, key, Vec::new(), true))
    }

    fn insert(
        self: &Arc<Self>,
        table: &mut Table,
        key: &Key,
        waiters: Vec<(u64, oneshot::Sender<Outcome>)>,
        background: bool,
    ) -> LookupHandle {
        let generation = table.next_id;
        table.next_id += 1;
        let cancel = CancellationToken::new();
        table.lookups.insert(
            key.clone(),
            Lookup {
                generation,
                waiters,
                cancel: cancel.clone(),
                background,
            },
        );
        self.metrics.lookups_started.inc();
        LookupHandle {
            table: Arc::clone(self),
            key: key.clone(),
            generation,
            cancel,
            completed: false,
        }
    }

    pub fn gauges(&self) -> InflightGauges {
        let table = self.lock();
        InflightGauges {
            lookups: table.lookups.len(),
            waiters: table.waiters,
        }
    }

    fn waiter(
        self: &Arc<Self>,
        key: &Key,
        generation: u64,
        id: u64,
        rx: oneshot::Receiver<Outcome>,
    ) -> Waiter {
        Waiter {
            rx,
            membership: Membership {
                table: Arc::clone(self),
                key: key.clone(),
                generation,
                id,
                done: false,
            },
        }
    }

    /// Removes one waiter; a lookup left without waiters is removed and cancelled.
    fn leave(&self, key: &Key, generation: u64, id: u64) {
        let mut table = self.lock();
        let Some(lookup) = table.lookups.get_mut(key) else {
            return;
        };
        if lookup.generation != generation {
            return;
        }
        let Some(position) = lookup.waiters.iter().position(|(w, _)| *w == id) else {
            return;
        };
        lookup.waiters.swap_remove(position);
        let now_empty = lookup.waiters.is_empty() && !lookup.background;
        table.waiters -= 1;
        let cancelled = if now_empty {
            table.lookups.remove(key).map(|lookup| lookup.cancel)
        } else {
            None
        };
        drop(table);
        self.metrics.abandoned_waiters.inc();
        if let Some(cancel) = cancelled {
            cancel.cancel();
            self.metrics.lookups_cancelled.inc();
        }
    }

    /// Ends a lookup: removes it from the table and answers its waiters.
    fn complete(&self, key: &Key, generation: u64, outcome: Outcome) {
        let mut table = self.lock();
        let is_this_lookup = table
            .lookups
            .get(key)
            .is_some_and(|lookup| lookup.generation == generation);
        if !is_this_lookup {
            return;
        }
        let Some(lookup) = table.lookups.remove(key) else {
            return;
        };
        table.waiters -= lookup.waiters.len();
        drop(table);
        for (_, tx) in lookup.waiters {
            // A receiver that is gone timed out in the same instant; its own
            // deadline path has answered its client.
            let _ = tx.send(outcome.clone());
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // Every critical section leaves the table consistent before anything that
        // could panic, so a poisoned lock still guards valid state.
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One client's place on a lookup. Dropping it (client gone, task cancelled)
/// removes it from the lookup, so nothing waits for a departed client.
pub struct Waiter {
    rx: oneshot::Receiver<Outcome>,
    membership: Membership,
}

impl Waiter {
    /// Waits for the lookup's outcome until `deadline`; when the deadline passes
    /// the waiter leaves its lookup and reports a timeout.
    pub async fn wait(mut self, deadline: Instant) -> Outcome {
        match timeout_at(deadline, &mut self.rx).await {
            Ok(Ok(outcome)) => {
                self.membership.done = true;
                outcome
            }
            // The sender is only dropped unsent when the lookup ended through
            // `complete` racing with this waiter's removal; treat as no answer.
            Ok(Err(_)) => Err(LookupError::Timeout),
            Err(_) => Err(LookupError::Timeout),
        }
        // On the error paths `membership` drops here and leaves the lookup.
    }
}

struct Membership {
    table: Arc<Inflight>,
    key: Key,
    generation: u64,
    id: u64,
    done: bool,
}

impl Drop for Membership {
    fn drop(&mut self) {
        if !self.done {
            self.table.leave(&self.key, self.generation, self.id);
        }
    }
}

/// The right and the duty to finish one lookup. If it is dropped without
/// `complete` (the task panicked or was aborted), its waiters still get an
/// answer (a timeout) and the table forgets the lookup.
pub struct LookupHandle {
    table: Arc<Inflight>,
    key: Key,
    generation: u64,
    cancel: CancellationToken,
    completed: bool,
}

impl LookupHandle {
    pub fn key(&self) -> &Key {
        &self.key
    }

    /// Resolves when the last waiter has left: the lookup should stop.
    pub fn cancelled(&self) -> WaitForCancellationFuture<'_> {
        self.cancel.cancelled()
    }

    pub fn complete(mut self, outcome: Outcome) {
        self.completed = true;
        self.table.complete(&self.key, self.generation, outcome);
    }
}

impl Drop for LookupHandle {
    fn drop(&mut self) {
        if !self.completed {
            self.table
                .complete(&self.key, self.generation, Err(LookupError::Timeout));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn key(name: &str) -> Key {
        Key {
            name: name.as_bytes().into(),
            qtype: 1,
            qclass: 1,
            dnssec_ok: false,
            checking_disabled: false,
        }
    }

    fn table(max_inflight: usize, max_waiters: usize) -> (Arc<Inflight>, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::default());
        (
            Inflight::new(max_inflight, max_waiters, Arc::clone(&metrics)),
            metrics,
        )
    }

    fn leader(joined: Joined) -> (Waiter, LookupHandle) {
        match joined {
            Joined::Leader { waiter, lookup } => (waiter, lookup),
            _ => panic!("expected to lead"),
        }
    }

    fn follower(joined: Joined) -> Waiter {
        match joined {
            Joined::Follower(waiter) => waiter,
            _ => panic!("expected to follow"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn waiter_leaves_at_its_deadline_and_later_waiters_still_get_the_answer() {
        let (inflight, metrics) = table(10, 10);
        let start = Instant::now();
        let (first, lookup) = leader(inflight.join(&key("a"), false));
        let first = tokio::spawn(first.wait(start + Duration::from_millis(300)));
        tokio::time::sleep(Duration::from_millis(200)).await;
        let second = follower(inflight.join(&key("a"), false));
        let second = tokio::spawn(second.wait(start + Duration::from_millis(500)));

        assert_eq!(first.await.ok(), Some(Err(LookupError::Timeout)));
        assert_eq!(Instant::now() - start, Duration::from_millis(300));
        assert_eq!(
            inflight.gauges(),
            InflightGauges {
                lookups: 1,
                waiters: 1
            }
        );
        assert_eq!(metrics.abandoned_waiters.get(), 1);

        tokio::time::sleep(Duration::from_millis(100)).await;
        lookup.complete(Err(LookupError::Network(std::io::ErrorKind::Other)));
        assert_eq!(
            second.await.ok(),
            Some(Err(LookupError::Network(std::io::ErrorKind::Other)))
        );
        assert_eq!(
            inflight.gauges(),
            InflightGauges {
                lookups: 0,
                waiters: 0
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn lookup_without_waiters_is_removed_and_cancelled() {
        let (inflight, metrics) = table(10, 10);
        let (waiter, lookup) = leader(inflight.join(&key("a"), false));
        let deadline = Instant::now() + Duration::from_millis(300);
        assert_eq!(waiter.wait(deadline).await, Err(LookupError::Timeout));
        assert_eq!(
            inflight.gauges(),
            InflightGauges {
                lookups: 0,
                waiters: 0
            }
        );
        // The cancellation resolves at once: the task sees it and stops.
        lookup.cancelled().await;
        assert_eq!(metrics.lookups_cancelled.get(), 1);
        // The next query starts afresh.
        let (_waiter, _lookup) = leader(inflight.join(&key("a"), false));
        // The old handle completing late must not touch the new lookup.
        lookup.complete(Err(LookupError::Timeout));
        assert_eq!(
            inflight.gauges(),
            InflightGauges {
                lookups: 1,
                waiters: 1
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn dropped_lookup_handle_answers_waiters() {
        let (inflight, _) = table(10, 10);
        let (waiter, lookup) = leader(inflight.join(&key("a"), false));
        drop(lookup);
        let outcome = waiter.wait(Instant::now() + Duration::from_secs(5)).await;
        assert_eq!(outcome, Err(LookupError::Timeout));
        assert_eq!(
            inflight.gauges(),
            InflightGauges {
                lookups: 0,
                waiters: 0
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn limits_answer_overloaded_at_the_edge() {
        let (inflight, metrics) = table(2, 2);
        let (_w1, _l1) = leader(inflight.join(&key("a"), false));
        let _w2 = follower(inflight.join(&key("a"), false));
        assert!(matches!(
            inflight.join(&key("a"), false),
            Joined::Overloaded
        ));
        let (_w3, _l3) = leader(inflight.join(&key("b"), false));
        assert!(matches!(
            inflight.join(&key("c"), false),
            Joined::Overloaded
        ));
        assert_eq!(metrics.overload_answers.get(), 2);
        assert_eq!(
            inflight.gauges(),
            InflightGauges {
                lookups: 2,
                waiters: 3
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn dropped_waiter_leaves_at_once() {
        let (inflight, _) = table(10, 10);
        let (_w1, _lookup) = leader(inflight.join(&key("a"), false));
        let w2 = follower(inflight.join(&key("a"), false));
        assert_eq!(inflight.gauges().waiters, 2);
        drop(w2);
        assert_eq!(
            inflight.gauges(),
            InflightGauges {
                lookups: 1,
                waiters: 1
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn one_refresh_per_key_and_it_survives_its_waiters_leaving() {
        let metrics = Arc::new(Metrics::default());
        let inflight = Inflight::new(10, 10, Arc::clone(&metrics));
        let Refresh::Start(refresh) = inflight.refresh(&key("a")) else {
            panic!("expected to start a refresh");
        };
        assert!(
            matches!(inflight.refresh(&key("a")), Refresh::InFlight),
            "at most one"
        );
        // A client joins the refresh, then gives up: the refresh goes on.
        let waiter = match inflight.join(&key("a"), false) {
            Joined::Follower(waiter) => waiter,
            _ => panic!("expected to follow the refresh"),
        };
        let outcome = waiter
            .wait(Instant::now() + Duration::from_millis(10))
            .await;
        assert_eq!(outcome, Err(LookupError::Timeout));
        assert_eq!(
            inflight.gauges(),
            InflightGauges {
                lookups: 1,
                waiters: 0
            }
        );
        refresh.complete(Err(LookupError::Timeout));
        assert_eq!(
            inflight.gauges(),
            InflightGauges {
                lookups: 0,
                waiters: 0
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_lookup_asked_to_refresh_becomes_background() {
        let metrics = Arc::new(Metrics::default());
        let inflight = Inflight::new(10, 10, Arc::clone(&metrics));
        let (waiter, lookup) = match inflight.join(&key("a"), false) {
            Joined::Leader { waiter, lookup } => (waiter, lookup),
            _ => panic!("expected to lead"),
        };
        assert!(matches!(inflight.refresh(&key("a")), Refresh::InFlight));
        drop(waiter);
        assert_eq!(inflight.gauges().lookups, 1, "kept for the cache");
        lookup.complete(Err(LookupError::Timeout));
        assert_eq!(inflight.gauges().lookups, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn refresh_is_skipped_at_max_inflight() {
        let metrics = Arc::new(Metrics::default());
        let inflight = Inflight::new(1, 10, Arc::clone(&metrics));
        let Refresh::Start(_first) = inflight.refresh(&key("a")) else {
            panic!("room for one");
        };
        assert!(matches!(inflight.refresh(&key("b")), Refresh::Skipped));
        assert_eq!(metrics.refreshes_skipped.get(), 1);
    }
}
