//! One query's path, bytes in and bytes out, shared by UDP and TCP:
//! validate → cache → coalesce → upstream, all inside the query's deadline.
//!
//! A cache hit or a rejection is answered synchronously, on the receiving task.
//! A miss becomes a [`PendingQuery`] that waits (until its own deadline) for the
//! lookup in the in-flight table; the first asker's miss also spawns that
//! lookup, which the table owns.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::answer::{Answer, TtlPolicy};
use crate::cache::Cache;
use crate::error::LookupError;
use crate::inflight::{Inflight, InflightGauges, Joined, LookupHandle, Outcome, Waiter};
use crate::metrics::Metrics;
use crate::query::{ClientQuery, Rejected};
use crate::response;
use crate::upstream::{Question, Upstream};

/// A lookup may outlive its first asker's deadline so that askers who joined it
/// later still get an answer that arrives in their time. It is cancelled as soon
/// as no one waits (a timed-out lookup is forgotten and the next query starts
/// fresh, so a client retrying after its SERVFAIL starts a new lookup), and it
/// never runs past this many deadlines.
const LOOKUP_LIFETIME_IN_DEADLINES: u32 = 2;

/// How the query arrived, which decides how large a response may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// What to do with one received message.
pub enum Handled {
    Reply(Vec<u8>),
    /// Wait for a lookup; [`PendingQuery::response`] yields the bytes by the deadline.
    Wait(PendingQuery),
    Drop,
}

pub struct ResolverLimits {
    pub deadline: Duration,
    pub max_inflight: usize,
    pub max_waiters: usize,
    pub cache_entries: NonZeroUsize,
    pub ttl: TtlPolicy,
}

pub struct Resolver {
    cache: Cache,
    inflight: Arc<Inflight>,
    upstream: Upstream,
    metrics: Arc<Metrics>,
    deadline: Duration,
}

impl Resolver {
    pub fn new(upstream: Upstream, limits: ResolverLimits, metrics: Arc<Metrics>) -> Arc<Resolver> {
        Arc::new(Resolver {
            cache: Cache::new(limits.cache_entries, limits.ttl, Arc::clone(&metrics)),
            inflight: Inflight::new(
                limits.max_inflight,
                limits.max_waiters,
                Arc::clone(&metrics),
            ),
            upstream,
            metrics,
            deadline: limits.deadline,
        })
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
            Err(Rejected::Reply(reply)) => return self.reply(reply),
        };
        tracing::trace!(id = query.id, qtype = query.key.qtype, "query");
        if let Some(answer) = self.cache.get(&query.key, arrival) {
            return self.reply(self.render(&answer, &query, transport, arrival));
        }
        let deadline = arrival + self.deadline;
        let waiter = match self.inflight.join(&query.key) {
            Joined::Leader { waiter, lookup } => {
                let question = Arc::new(Question::new(&query.question, &query.key));
                let lookup_deadline = arrival + self.deadline * LOOKUP_LIFETIME_IN_DEADLINES;
                tokio::spawn(Arc::clone(self).lookup(lookup, question, lookup_deadline));
                waiter
            }
            Joined::Follower(waiter) => waiter,
            Joined::Overloaded => {
                let reply = self.failure(&query, LookupError::Overloaded);
                return self.reply(reply);
            }
        };
        Handled::Wait(PendingQuery {
            resolver: Arc::clone(self),
            query,
            waiter,
            deadline,
            transport,
        })
    }

    /// Runs one upstream lookup for the table. It stops early when its last
    /// waiter leaves; it can never outlive `deadline`.
    async fn lookup(
        self: Arc<Self>,
        lookup: LookupHandle,
        question: Arc<Question>,
        deadline: Instant,
    ) {
        let outcome: Outcome = tokio::select! {
            result = self.upstream.exchange(question, deadline) => result.map(Arc::new),
            () = lookup.cancelled() => return,
        };
        if let Ok(answer) = &outcome {
            self.cache.insert(lookup.key().clone(), Arc::clone(answer));
        }
        lookup.complete(outcome);
    }

    fn render(
        &self,
        answer: &Answer,
        query: &ClientQuery,
        transport: Transport,
        now: Instant,
    ) -> Vec<u8> {
        let limit = match transport {
            Transport::Udp => query.udp_limit(),
            Transport::Tcp => usize::from(u16::MAX),
        };
        answer.render(query, now, self.cache.policy(), limit)
    }

    fn failure(&self, query: &ClientQuery, error: LookupError) -> Vec<u8> {
        let (rcode, ede) = error.outcome();
        response::synthesized(query, rcode, 0, Some(ede))
    }

    fn reply(&self, reply: Vec<u8>) -> Handled {
        self.metrics.count_response(&reply);
        Handled::Reply(reply)
    }
}

/// A client waiting for a lookup.
pub struct PendingQuery {
    resolver: Arc<Resolver>,
    query: ClientQuery,
    waiter: Waiter,
    deadline: Instant,
    transport: Transport,
}

impl PendingQuery {
    /// The response, ready no later than the query's deadline.
    pub async fn response(self) -> Vec<u8> {
        let resolver = self.resolver;
        let reply = match self.waiter.wait(self.deadline).await {
            Ok(answer) => resolver.render(&answer, &self.query, self.transport, Instant::now()),
            Err(error) => {
                tracing::debug!(id = self.query.id, %error, "lookup failed");
                resolver.failure(&self.query, error)
            }
        };
        resolver.metrics.count_response(&reply);
        reply
    }
}
