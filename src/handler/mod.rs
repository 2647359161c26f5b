//! One query's path, bytes in and bytes out, shared by UDP and TCP:
//! validate → local → cache → coalesce → upstream, all inside the query's deadline.
//!
//! A local answer (hosts, static records, special names; see [`crate::local`]),
//! a fresh cache hit, a remembered failure or a rejection is answered
//! synchronously, on the receiving task. A miss becomes a [`PendingQuery`] that
//! waits (until its own deadline) for the lookup in the in-flight table; the
//! first asker's miss also spawns that lookup, which the table owns.
//!
//! The cache rules that keep callers answered during an outage live here:
//! - a remembered failure is answered at once and a background refresh is made
//!   sure to be in flight (one per question): the first good answer replaces it;
//! - a stale entry (RFC 8767) starts or joins a refresh; the client waits for it
//!   until `stale_answer_after`, then gets the stale answer with TTL `stale_ttl`
//!   and EDE 3; a refresh that fails sooner gives it the stale answer sooner;
//! - a fresh entry in the last tenth of its TTL is prefetched, once (a
//!   prefetch skipped at `max_inflight` is asked for again by the next hit);
//! - every lookup's end updates the cache: answers (positive or negative)
//!   replace what was there; failures are remembered unless an answer is held,
//!   and so is a client's own timeout, so glibc's immediate retry after a
//!   SERVFAIL is answered from the failure cache instead of waiting again.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::time::Instant;

use crate::answer::{Answer, TtlMode};
use crate::cache::{Cache, CacheLimits, Hit};
use crate::error::{EDE_STALE_ANSWER, LookupError};
use crate::inflight::{Inflight, InflightGauges, Joined, LookupHandle, Outcome, Refresh, Waiter};
use crate::local::LocalAnswers;
use crate::metrics::Metrics;
use crate::query::{ClientQuery, Rejected};
use crate::response;
use crate::upstream::{Question, Routes};
use crate::wire::Ede;

/// A lookup may outlive its first asker's deadline so that askers who joined it
/// later still get an answer that arrives in their time. It is cancelled as soon
/// as no one waits (a timed-out lookup is forgotten: the next query is answered
/// from the failure cache while a refresh runs, or with that cache off starts a
/// fresh lookup), and it never runs past this many deadlines.
const LOOKUP_LIFETIME_IN_DEADLINES: u32 = 2;

/// How the query arrived, which decides how large a response may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// What to do with one received message.
pub enum Handled {
    Reply(Vec<u8>, Source),
    /// Wait for a lookup; [`PendingQuery::response`] yields the bytes by the deadline.
    Wait(PendingQuery),
    Drop,
}

/// Where a response came from, for the query log. The set is small on purpose;
/// the RCODE and Extended DNS Error of the response tell the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Local data: static records, hosts files, special names, ANY.
    Local,
    /// A fresh cache entry (positive or negative).
    Cache,
    /// An expired cache entry, served stale (RFC 8767, EDE 3).
    Stale,
    /// A remembered failure, answered SERVFAIL at once.
    FailureCache,
    /// The upstream's answer (any RCODE), for a query that waited for it.
    Upstream,
    /// A failure of ours: no answer in time, network error, overloaded.
    Failed,
    /// A message answered without resolving it: FORMERR, NOTIMP, BADVERS.
    Invalid,
    /// Refused by the guard: not in `[listen] allow`, or over its rate.
    Refused,
    /// No response sent: dropped by the guard or as malformed.
    Dropped,
}

impl Source {
    /// The name the query log writes.
    pub const fn name(self) -> &'static str {
        match self {
            Source::Local => "local",
            Source::Cache => "cache",
            Source::Stale => "stale",
            Source::FailureCache => "failure-cache",
            Source::Upstream => "upstream",
            Source::Failed => "failed",
            Source::Invalid => "invalid",
            Source::Refused => "refused",
            Source::Dropped => "dropped",
        }
    }
}

pub struct ResolverLimits {
    pub deadline: Duration,
    pub max_inflight: usize,
    pub max_waiters: usize,
    pub cache: CacheLimits,
    /// When serving stale is allowed, how long a client waits for the refresh.
    pub stale_answer_after: Duration,
    /// The TTL written on stale answers.
    pub stale_ttl: u32,
}

/// RFC 8767 §4: a stale answer says so.
const STALE_EDE: Ede = Ede {
    code: EDE_STALE_ANSWER,
    text: "stale answer",
};

pub struct Resolver {
    /// Replaced whole by a reload; a query uses the one it loaded.
    local: ArcSwap<LocalAnswers>,
    cache: Cache,
    inflight: Arc<Inflight>,
    /// Replaced whole by a reload; a lookup keeps the routes it started with.
    upstream: ArcSwap<Routes>,
    metrics: Arc<Metrics>,
    deadline: Duration,
    stale_answer_after: Duration,
    stale_ttl: u32,
}

impl Resolver {
    pub fn new(
        upstream: Routes,
        local: LocalAnswers,
        limits: ResolverLimits,
        metrics: Arc<Metrics>,
    ) -> Arc<Resolver> {
        Arc::new(Resolver {
            local: ArcSwap::from_pointee(local),
            cache: Cache::new(limits.cache, Arc::clone(&metrics)),
            inflight: Inflight::new(
                limits.max_inflight,
                limits.max_waiters,
                Arc::clone(&metrics),
            ),
            upstream: ArcSwap::from_pointee(upstream),
            metrics,
            deadline: limits.deadline,
            stale_answer_after: limits.stale_answer_after,
            stale_ttl: limits.stale_ttl,
        })
    }

    /// Every upstream pool, as in use now.
    pub fn routes(&self) -> Arc<Routes> {
        self.upstream.load_full()
    }

    /// The local answers in use now.
    pub fn local(&self) -> Arc<LocalAnswers> {
        self.local.load_full()
    }

    /// Switches to new upstreams and local answers (a reload). Lookups in
    /// flight finish with the routes they started with; the cache and the
    /// in-flight table are kept.
    pub fn replace(&self, routes: Routes, local: LocalAnswers) {
        self.upstream.store(Arc::new(routes));
        self.local.store(Arc::new(local));
    }

    /// The cache, for operators' flush commands.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn inflight(&self) -> InflightGauges {
        self.inflight.gauges()
    }

    pub fn cache_len(&self) -> usize {
        self.cache.len()
    }

    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// Handles one message that arrived at `arrival`; the query's deadline is
    /// `arrival + deadline`, fixed here and never extended.
    pub fn handle(
        self: &Arc<Self>,
        bytes: &[u8],
        transport: Transport,
        arrival: Instant,
    ) -> Handled {
        match transport {
            Transport::Udp => self.metrics.queries_udp.inc(),
            Transport::Tcp => self.metrics.queries_tcp.inc(),
        }
        let query = match ClientQuery::parse(bytes) {
            Ok(query) => query,
            Err(Rejected::Drop) => {
                self.metrics.queries_dropped.inc();
                return Handled::Drop;
            }
            Err(Rejected::Reply(reply)) => return self.reply(reply, Source::Invalid),
        };
        tracing::trace!(id = query.id, qtype = query.key.qtype, "query");
        if let Some(reply) = self
            .local
            .load()
            .answer(&query, size_limit(&query, transport))
        {
            self.metrics.local_answers.inc();
            return self.reply(reply, Source::Local);
        }
        let stale = match self.cache.get(&query.key, arrival) {
            Hit::Fresh { answer, prefetch } => {
                // The cache asks for a prefetch once per entry; one not
                // started must be asked for by a later hit.
                if prefetch && !self.refresh(&query, arrival, &self.metrics.prefetches) {
                    self.cache.prefetch_skipped(&query.key);
                }
                let reply = self.render(&answer, &query, transport, TtlMode::Aged(arrival), None);
                return self.reply(reply, Source::Cache);
            }
            Hit::Failed(error) => {
                // No once-flag here: every hit makes sure, so a skipped
                // refresh is retried by the next one.
                self.refresh(&query, arrival, &self.metrics.refreshes);
                return self.reply(self.failure(&query, error), Source::FailureCache);
            }
            Hit::Stale(answer) => Some(answer),
            Hit::Miss => None,
        };
        let background = stale.is_some();
        let waiter = match self.inflight.join(&query.key, background) {
            Joined::Leader { waiter, lookup } => {
                if background {
                    self.metrics.refreshes.inc();
                }
                self.spawn_lookup(lookup, &query, arrival, background);
                waiter
            }
            Joined::Follower(waiter) => waiter,
            Joined::Overloaded => match stale {
                // Better a stale answer than "overloaded" (RFC 8767 §5).
                Some(answer) => {
                    let reply = self.stale_reply(&answer, &query, transport);
                    return self.reply(reply, Source::Stale);
                }
                None => {
                    let reply = self.failure(&query, LookupError::Overloaded);
                    return self.reply(reply, Source::Failed);
                }
            },
        };
        let deadline = arrival
            + match stale {
                Some(_) => self.stale_answer_after,
                None => self.deadline,
            };
        Handled::Wait(PendingQuery {
            resolver: Arc::clone(self),
            query,
            waiter,
            deadline,
            transport,
            stale,
        })
    }

    /// Makes sure a background refresh of the query's question is in flight.
    /// Returns false when it was skipped (`max_inflight` lookups running).
    fn refresh(
        self: &Arc<Self>,
        query: &ClientQuery,
        now: Instant,
        counter: &crate::metrics::Counter,
    ) -> bool {
        match self.inflight.refresh(&query.key) {
            Refresh::Start(lookup) => {
                counter.inc();
                self.spawn_lookup(lookup, query, now, true);
                true
            }
            Refresh::InFlight => true,
            Refresh::Skipped => false,
        }
    }

    /// A refresh runs for one deadline whether or not anyone waits; a client's
    /// lookup may run longer for later askers but stops when none is left.
    fn spawn_lookup(
        self: &Arc<Self>,
        lookup: LookupHandle,
        query: &ClientQuery,
        now: Instant,
        background: bool,
    ) {
        let question = Arc::new(Question::new(&query.question, &query.key));
        let lifetime = if background {
            self.deadline
        } else {
            self.deadline * LOOKUP_LIFETIME_IN_DEADLINES
        };
        let lookup_deadline = now + lifetime;
        tokio::spawn(Arc::clone(self).lookup(lookup, question, lookup_deadline));
    }

    /// Runs one upstream lookup for the table. It stops early when its last
    /// waiter leaves; it can never outlive `deadline`.
    async fn lookup(
        self: Arc<Self>,
        lookup: LookupHandle,
        question: Arc<Question>,
        deadline: Instant,
    ) {
        let routes = self.upstream.load_full();
        let outcome: Outcome = tokio::select! {
            result = routes.for_name(&lookup.key().name).exchange(question, deadline) => {
                result.map(Arc::new)
            }
            () = lookup.cancelled() => return,
        };
        match &outcome {
            Ok(answer) if answer.is_failure() => {
                let error = LookupError::Upstream(answer.rcode());
                self.cache
                    .insert_failure(lookup.key(), error, Instant::now());
            }
            Ok(answer) => self.cache.insert(lookup.key(), Arc::clone(answer)),
            Err(error) => {
                self.cache
                    .insert_failure(lookup.key(), *error, Instant::now());
            }
        }
        lookup.complete(outcome);
    }

    fn render(
        &self,
        answer: &Answer,
        query: &ClientQuery,
        transport: Transport,
        ttl: TtlMode,
        ede: Option<Ede>,
    ) -> Vec<u8> {
        let limit = size_limit(query, transport);
        answer.render(query, ttl, self.cache.policy(), ede, limit)
    }

    fn stale_reply(&self, answer: &Answer, query: &ClientQuery, transport: Transport) -> Vec<u8> {
        self.metrics.stale_answers.inc();
        if query.edns.is_some() {
            self.metrics.count_ede(STALE_EDE.code);
        }
        self.render(
            answer,
            query,
            transport,
            TtlMode::Fixed(self.stale_ttl),
            Some(STALE_EDE),
        )
    }

    fn failure(&self, query: &ClientQuery, error: LookupError) -> Vec<u8> {
        let (rcode, ede) = error.outcome();
        if query.edns.is_some() {
            self.metrics.count_ede(ede.code);
        }
        response::synthesized(query, rcode, 0, Some(ede))
    }

    fn reply(&self, reply: Vec<u8>, source: Source) -> Handled {
        self.metrics.count_response(&reply);
        Handled::Reply(reply, source)
    }
}

/// The largest response `query`'s transport takes.
fn size_limit(query: &ClientQuery, transport: Transport) -> usize {
    match transport {
        Transport::Udp => query.udp_limit(),
        Transport::Tcp => usize::from(u16::MAX),
    }
}

/// A client waiting for a lookup.
pub struct PendingQuery {
    resolver: Arc<Resolver>,
    query: ClientQuery,
    waiter: Waiter,
    /// `arrival + deadline`, or `arrival + stale_answer_after` with a stale answer.
    deadline: Instant,
    transport: Transport,
    /// What to serve if the refresh does not answer well in time.
    stale: Option<Arc<Answer>>,
}

impl PendingQuery {
    /// The response and where it came from, ready no later than the query's deadline.
    pub async fn response(self) -> (Vec<u8>, Source) {
        let resolver = self.resolver;
        let query = &self.query;
        let outcome = self.waiter.wait(self.deadline).await;
        let (reply, source) = match (outcome, self.stale) {
            (Ok(answer), Some(stale)) if answer.is_failure() => (
                resolver.stale_reply(&stale, query, self.transport),
                Source::Stale,
            ),
            (Ok(answer), _) => {
                let now = Instant::now();
                let reply =
                    resolver.render(&answer, query, self.transport, TtlMode::Aged(now), None);
                (reply, Source::Upstream)
            }
            (Err(_), Some(stale)) => (
                resolver.stale_reply(&stale, query, self.transport),
                Source::Stale,
            ),
            (Err(error), None) => {
                tracing::debug!(id = query.id, %error, "lookup failed");
                if error == LookupError::Timeout {
                    // The lookup may go on for later askers, but this client's
                    // retry should not wait a whole deadline again.
                    resolver
                        .cache
                        .insert_failure(&query.key, error, Instant::now());
                }
                (resolver.failure(query, error), Source::Failed)
            }
        };
        resolver.metrics.count_response(&reply);
        (reply, source)
    }
}

#[cfg(test)]
mod tests;
