//! Counters an operator or a test can read: plain atomics bumped on the hot
//! path with relaxed ordering (they are statistics, not synchronisation).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add(&self, count: usize) {
        self.0.fetch_add(count as u64, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Default)]
pub struct Metrics {
    pub queries_udp: Counter,
    pub queries_tcp: Counter,
    /// Client packets dropped without an answer (shorter than a header, QR=1).
    pub queries_dropped: Counter,
    /// Responses sent, by RCODE (the low 4 bits).
    pub responses_by_rcode: [Counter; 16],
    pub responses_truncated: Counter,
    /// Queries answered from local data: hosts files, static records, special
    /// names (localhost, RFC 6303 zones, single labels) and ANY (RFC 8482).
    pub local_answers: Counter,
    /// Fresh answers (positive or negative) served from the cache.
    pub cache_hits: Counter,
    /// The part of `cache_hits` that were NXDOMAIN or NODATA (RFC 2308).
    pub cache_negative_hits: Counter,
    pub cache_misses: Counter,
    /// Questions answered at once from a remembered failure.
    pub cache_failure_hits: Counter,
    /// Hits on expired entries within `stale_max_age` (a refresh follows).
    pub cache_stale_hits: Counter,
    /// Stale answers actually sent (EDE 3), RFC 8767.
    pub stale_answers: Counter,
    pub cache_negative_inserts: Counter,
    pub cache_failure_inserts: Counter,
    /// Background refreshes started because an entry neared its expiry.
    pub prefetches: Counter,
    /// Background refreshes started for a failure or stale hit.
    pub refreshes: Counter,
    /// Refreshes not started because `max_inflight` lookups were running.
    pub refreshes_skipped: Counter,
    pub cache_inserts: Counter,
    pub cache_evictions: Counter,
    /// Queries that joined a lookup already in flight.
    pub coalesced_joins: Counter,
    /// Waiters whose deadline passed (or whose client went away) before the answer.
    pub abandoned_waiters: Counter,
    /// Queries answered SERVFAIL "overloaded" because a limit was reached.
    pub overload_answers: Counter,
    pub lookups_started: Counter,
    /// Lookups cancelled because no client was waiting for them any more.
    pub lookups_cancelled: Counter,
    pub lookup_timeouts: Counter,
    pub lookup_network_errors: Counter,
    /// Lookups failed at once (EDE 22) because every upstream of their route was
    /// down and `max_inflight_down` lookups were already asking.
    pub upstream_down_answers: Counter,
    /// Packets sent to upstreams (each UDP attempt and each TCP query).
    pub upstream_queries: Counter,
    pub upstream_tcp_fallbacks: Counter,
    /// TCP or TLS connections opened to `tcp://` and `tls://` upstreams (each
    /// carries many queries).
    pub upstream_connections: Counter,
    /// Lookups that also asked a second server at once, to measure it.
    pub upstream_probes: Counter,
    /// Upstream replies ignored because ID, question or content did not match.
    pub upstream_ignored_replies: Counter,
    /// `tcp://` and `tls://` connections closed because a reply frame, once
    /// begun, did not arrive whole within the query deadline.
    pub upstream_stalled_connections: Counter,
    pub tcp_connections_accepted: Counter,
    /// Connections closed at once because `tcp_max_connections` were open.
    pub tcp_connections_refused: Counter,
    pub tcp_idle_closed: Counter,
    /// Queries from clients outside `[listen] allow`, answered REFUSED (EDE 18) or,
    /// when they did not parse as a query, dropped.
    pub queries_prohibited: Counter,
    /// Queries over a client's rate, refused or dropped per `rate_limit_action`.
    pub rate_limited: Counter,
    /// UDP queries dropped for being longer than `max_udp_query`.
    pub udp_oversized: Counter,
    /// TCP connections closed for a length prefix above `max_tcp_query`.
    pub tcp_oversized: Counter,
    /// TCP connections closed at once because their client already had
    /// `tcp_max_connections_per_client` open.
    pub tcp_client_connections_refused: Counter,
    /// TCP connections closed because a message did not arrive whole within
    /// `tcp_read_timeout` of its first byte.
    pub tcp_read_timeouts: Counter,
    /// Query log lines lost because the writer's queue was full.
    pub query_log_dropped: Counter,
    /// From a query's arrival to its response being handed to the socket.
    pub answer_duration: Histogram,
    /// Extended DNS Errors sent (RFC 8914), by INFO-CODE; codes above the
    /// last slot are counted in it.
    pub ede_sent: [Counter; EDE_SLOTS],
}

/// RFC 8914 and its registry define codes 0–30 so far; 31 collects the rest.
pub const EDE_SLOTS: usize = 32;

/// Upper bounds of the latency buckets: 100 µs to 5 s, roughly ×2.5 per step,
/// which covers a cache hit (tens of µs) to a whole deadline.
pub const LATENCY_BOUNDS: [Duration; 15] = [
    Duration::from_micros(100),
    Duration::from_micros(250),
    Duration::from_micros(500),
    Duration::from_millis(1),
    Duration::from_micros(2_500),
    Duration::from_millis(5),
    Duration::from_millis(10),
    Duration::from_millis(25),
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_micros(2_500_000),
    Duration::from_secs(5),
];

/// A latency histogram with [`LATENCY_BOUNDS`] buckets (plus +Inf), in the
/// shape Prometheus expects: per-bucket counts, a count and a sum.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Not cumulative: `buckets[i]` counts observations in (bound[i-1], bound[i]];
    /// the last counts those above every bound.
    buckets: [Counter; LATENCY_BOUNDS.len() + 1],
    sum_nanos: Counter,
}

impl Histogram {
    pub fn observe(&self, elapsed: Duration) {
        let bucket = LATENCY_BOUNDS.partition_point(|bound| *bound < elapsed);
        self.buckets[bucket].inc();
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.0.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Cumulative counts per bound, then the total (the +Inf bucket).
    pub fn cumulative(&self) -> [u64; LATENCY_BOUNDS.len() + 1] {
        let mut total = 0;
        std::array::from_fn(|i| {
            total += self.buckets[i].get();
            total
        })
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().map(Counter::get).sum()
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            cumulative: self.cumulative(),
            sum: self.sum(),
        }
    }

    pub fn sum(&self) -> Duration {
        Duration::from_nanos(self.sum_nanos.get())
    }
}

/// A copy of a [`Histogram`] for reporting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// Cumulative counts per [`LATENCY_BOUNDS`] entry, then the total.
    pub cumulative: [u64; LATENCY_BOUNDS.len() + 1],
    pub sum: Duration,
}

impl Metrics {
    pub fn count_ede(&self, code: u16) {
        self.ede_sent[usize::from(code).min(EDE_SLOTS - 1)].inc();
    }

    pub fn count_response(&self, response: &[u8]) {
        if let Some(&low) = response.get(3) {
            self.responses_by_rcode[usize::from(low & 0x0f)].inc();
        }
        if response.get(2).is_some_and(|b| b & 0x02 != 0) {
            self.responses_truncated.inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ede_codes_past_the_last_slot_share_it() {
        let metrics = Metrics::default();
        metrics.count_ede(30);
        metrics.count_ede(31);
        metrics.count_ede(32);
        metrics.count_ede(u16::MAX);
        assert_eq!(metrics.ede_sent[30].get(), 1);
        assert_eq!(metrics.ede_sent[EDE_SLOTS - 1].get(), 3);
    }

    #[test]
    fn histogram_buckets_are_upper_inclusive_and_cumulative() {
        let histogram = Histogram::default();
        histogram.observe(Duration::from_micros(100));
        histogram.observe(Duration::from_micros(101));
        histogram.observe(Duration::from_secs(60));
        let cumulative = histogram.cumulative();
        assert_eq!(cumulative[0], 1, "100 µs is in the 100 µs bucket");
        assert_eq!(cumulative[1], 2);
        assert_eq!(cumulative[LATENCY_BOUNDS.len() - 1], 2);
        assert_eq!(cumulative[LATENCY_BOUNDS.len()], 3, "+Inf holds everything");
        assert_eq!(histogram.count(), 3);
        assert_eq!(histogram.sum(), Duration::from_micros(60_000_201));
    }
}
