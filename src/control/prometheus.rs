//! The Prometheus text exposition format (version 0.0.4) of punctual's
//! counters: `punctual_*` families, each with HELP and TYPE, counters ending
//! in `_total`, latencies as histograms in seconds.
//!
//! Written by hand: the counters are the daemon's own hot-path atomics
//! (shared with the tests), and rendering them is a few lines per family.

use std::fmt::Write;
use std::time::Duration;

use crate::Stats;
use crate::metrics::{Counter, EDE_SLOTS, HistogramSnapshot, LATENCY_BOUNDS, Metrics};
use crate::upstream::ServerReport;

/// The Content-Type Prometheus expects for this format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// RFC 1035 §4.1.1 and RFC 6895 §2.3 names of the RCODEs a header can carry.
const RCODE_NAMES: [&str; 16] = [
    "NOERROR",
    "FORMERR",
    "SERVFAIL",
    "NXDOMAIN",
    "NOTIMP",
    "REFUSED",
    "YXDOMAIN",
    "YXRRSET",
    "NXRRSET",
    "NOTAUTH",
    "NOTZONE",
    "DSOTYPENI",
    "RCODE12",
    "RCODE13",
    "RCODE14",
    "RCODE15",
];

pub fn render(stats: &Stats) -> String {
    let metrics = stats.metrics();
    let mut out = String::with_capacity(16 * 1024);

    family(
        &mut out,
        "punctual_queries_total",
        "counter",
        "Queries received, by transport.",
    );
    sample(
        &mut out,
        "punctual_queries_total",
        &[("transport", "udp")],
        metrics.queries_udp.get(),
    );
    sample(
        &mut out,
        "punctual_queries_total",
        &[("transport", "tcp")],
        metrics.queries_tcp.get(),
    );

    family(
        &mut out,
        "punctual_responses_total",
        "counter",
        "Responses sent, by RCODE.",
    );
    for (rcode, name) in RCODE_NAMES.iter().enumerate() {
        let count = metrics.responses_by_rcode[rcode].get();
        // The six everyday codes always, so dashboards see zeros; others once seen.
        if rcode <= 5 || count > 0 {
            sample(
                &mut out,
                "punctual_responses_total",
                &[("rcode", name)],
                count,
            );
        }
    }

    family(
        &mut out,
        "punctual_ede_total",
        "counter",
        "Extended DNS Errors sent (RFC 8914), by INFO-CODE.",
    );
    for code in 0..EDE_SLOTS {
        let count = metrics.ede_sent[code].get();
        if count > 0 {
            sample(
                &mut out,
                "punctual_ede_total",
                &[("code", &code.to_string())],
                count,
            );
        }
    }

    for (name, help, counter) in counters(metrics) {
        family(&mut out, name, "counter", help);
        sample(&mut out, name, &[], counter.get());
    }

    let inflight = stats.inflight();
    for (name, help, value) in [
        (
            "punctual_cache_entries",
            "Entries in the cache (answers and remembered failures).",
            stats.cache_entries(),
        ),
        (
            "punctual_cache_bytes",
            "Bytes the cache accounts for its entries.",
            stats.cache().bytes(),
        ),
        (
            "punctual_lookups_inflight",
            "Upstream lookups in flight.",
            inflight.lookups,
        ),
        (
            "punctual_waiters",
            "Client queries waiting for a lookup in flight.",
            inflight.waiters,
        ),
    ] {
        family(&mut out, name, "gauge", help);
        sample(&mut out, name, &[], value as u64);
    }

    histogram_family(
        &mut out,
        "punctual_answer_duration_seconds",
        "From a query's arrival to its response being sent.",
    );
    histogram(
        &mut out,
        "punctual_answer_duration_seconds",
        &[],
        &metrics.answer_duration.snapshot(),
    );

    let upstreams = stats.upstreams();
    let servers: Vec<(&str, &ServerReport)> = upstreams
        .iter()
        .flat_map(|(zone, servers)| servers.iter().map(move |server| (zone.as_str(), server)))
        .collect();
    for (name, kind, help, value) in [
        (
            "punctual_upstream_queries_total",
            "counter",
            "Attempts sent to each upstream.",
            (|server| server.queries) as fn(&ServerReport) -> u64,
        ),
        (
            "punctual_upstream_timeouts_total",
            "counter",
            "Attempts an upstream did not answer within its retransmission timeout.",
            |server| server.timeouts,
        ),
        (
            "punctual_upstream_up",
            "gauge",
            "1 when an upstream is not marked down (a down one is still asked when nothing else is up).",
            |server| u64::from(server.up),
        ),
    ] {
        family(&mut out, name, kind, help);
        for (zone, server) in &servers {
            sample(
                &mut out,
                name,
                &[("upstream", &server.server), ("zone", zone)],
                value(server),
            );
        }
    }
    histogram_family(
        &mut out,
        "punctual_upstream_rtt_seconds",
        "Round-trip time of each upstream's answers.",
    );
    for (zone, server) in &servers {
        histogram(
            &mut out,
            "punctual_upstream_rtt_seconds",
            &[("upstream", &server.server), ("zone", zone)],
            &server.rtt,
        );
    }
    out
}

/// The plain counters, by their exported name.
fn counters(metrics: &Metrics) -> [(&'static str, &'static str, &Counter); 39] {
    [
        (
            "punctual_queries_dropped_total",
            "Client packets dropped without an answer (malformed).",
            &metrics.queries_dropped,
        ),
        (
            "punctual_responses_truncated_total",
            "Responses sent with TC=1.",
            &metrics.responses_truncated,
        ),
        (
            "punctual_cache_hits_total",
            "Fresh answers served from the cache.",
            &metrics.cache_hits,
        ),
        (
            "punctual_cache_negative_hits_total",
            "Cache hits that were NXDOMAIN or NODATA.",
            &metrics.cache_negative_hits,
        ),
        (
            "punctual_cache_misses_total",
            "Questions not in the cache.",
            &metrics.cache_misses,
        ),
        (
            "punctual_cache_stale_hits_total",
            "Hits on expired entries within stale_max_age.",
            &metrics.cache_stale_hits,
        ),
        (
            "punctual_cache_failure_hits_total",
            "Questions answered at once from a remembered failure.",
            &metrics.cache_failure_hits,
        ),
        (
            "punctual_stale_answers_total",
            "Stale answers sent (RFC 8767, EDE 3).",
            &metrics.stale_answers,
        ),
        (
            "punctual_cache_inserts_total",
            "Answers stored in the cache.",
            &metrics.cache_inserts,
        ),
        (
            "punctual_cache_negative_inserts_total",
            "Negative answers stored (RFC 2308).",
            &metrics.cache_negative_inserts,
        ),
        (
            "punctual_cache_failure_inserts_total",
            "Failures remembered.",
            &metrics.cache_failure_inserts,
        ),
        (
            "punctual_cache_evictions_total",
            "Entries evicted to stay within the cache bounds.",
            &metrics.cache_evictions,
        ),
        (
            "punctual_prefetches_total",
            "Refreshes started because an entry neared its expiry.",
            &metrics.prefetches,
        ),
        (
            "punctual_refreshes_total",
            "Background refreshes for failure or stale hits.",
            &metrics.refreshes,
        ),
        (
            "punctual_refreshes_skipped_total",
            "Refreshes not started because max_inflight lookups were running.",
            &metrics.refreshes_skipped,
        ),
        (
            "punctual_coalesced_joins_total",
            "Queries that joined a lookup already in flight.",
            &metrics.coalesced_joins,
        ),
        (
            "punctual_abandoned_waiters_total",
            "Waiters whose deadline passed or whose client left before the answer.",
            &metrics.abandoned_waiters,
        ),
        (
            "punctual_overload_answers_total",
            "Queries answered SERVFAIL because max_inflight or max_waiters was reached.",
            &metrics.overload_answers,
        ),
        (
            "punctual_upstream_down_answers_total",
            "Lookups failed at once because every upstream was down and max_inflight_down lookups were asking.",
            &metrics.upstream_down_answers,
        ),
        (
            "punctual_lookups_started_total",
            "Upstream lookups started.",
            &metrics.lookups_started,
        ),
        (
            "punctual_lookups_cancelled_total",
            "Lookups cancelled because nobody waited any more.",
            &metrics.lookups_cancelled,
        ),
        (
            "punctual_lookup_timeouts_total",
            "Lookups that got no usable answer by their deadline.",
            &metrics.lookup_timeouts,
        ),
        (
            "punctual_lookup_network_errors_total",
            "Lookups that failed with a network error on every upstream.",
            &metrics.lookup_network_errors,
        ),
        (
            "punctual_upstream_ignored_replies_total",
            "Upstream replies ignored: wrong ID, question or content.",
            &metrics.upstream_ignored_replies,
        ),
        (
            "punctual_upstream_stalled_connections_total",
            "TCP/TLS upstream connections closed for a reply stalled mid-message.",
            &metrics.upstream_stalled_connections,
        ),
        (
            "punctual_upstream_tcp_fallbacks_total",
            "Truncated UDP replies retried over TCP.",
            &metrics.upstream_tcp_fallbacks,
        ),
        (
            "punctual_upstream_probes_total",
            "Lookups that also asked a second upstream to measure it.",
            &metrics.upstream_probes,
        ),
        (
            "punctual_upstream_connections_total",
            "TCP or TLS connections opened to upstreams.",
            &metrics.upstream_connections,
        ),
        (
            "punctual_local_answers_total",
            "Queries answered from local data and special names.",
            &metrics.local_answers,
        ),
        (
            "punctual_refused_total",
            "Queries from clients outside [listen] allow (REFUSED, EDE 18).",
            &metrics.queries_prohibited,
        ),
        (
            "punctual_rate_limited_total",
            "Queries over a client's rate, refused or dropped.",
            &metrics.rate_limited,
        ),
        (
            "punctual_udp_oversized_total",
            "UDP queries dropped for exceeding max_udp_query.",
            &metrics.udp_oversized,
        ),
        (
            "punctual_tcp_oversized_total",
            "TCP connections closed for a message above max_tcp_query.",
            &metrics.tcp_oversized,
        ),
        (
            "punctual_tcp_connections_accepted_total",
            "TCP connections accepted.",
            &metrics.tcp_connections_accepted,
        ),
        (
            "punctual_tcp_connections_refused_total",
            "TCP connections closed at once: tcp_max_connections reached.",
            &metrics.tcp_connections_refused,
        ),
        (
            "punctual_tcp_client_connections_refused_total",
            "TCP connections closed at once: the client's own cap reached.",
            &metrics.tcp_client_connections_refused,
        ),
        (
            "punctual_tcp_idle_closed_total",
            "TCP connections closed after tcp_idle_timeout.",
            &metrics.tcp_idle_closed,
        ),
        (
            "punctual_tcp_read_timeouts_total",
            "TCP connections closed: a message did not arrive within tcp_read_timeout.",
            &metrics.tcp_read_timeouts,
        ),
        (
            "punctual_upstream_packets_total",
            "Messages sent to upstreams (UDP attempts and TCP/TLS queries).",
            &metrics.upstream_queries,
        ),
    ]
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn histogram_family(out: &mut String, name: &str, help: &str) {
    family(out, name, "histogram", help);
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: u64) {
    out.push_str(name);
    write_labels(out, labels, None);
    let _ = writeln!(out, " {value}");
}

fn histogram(out: &mut String, name: &str, labels: &[(&str, &str)], snapshot: &HistogramSnapshot) {
    for (index, count) in snapshot.cumulative.iter().enumerate() {
        let le = LATENCY_BOUNDS
            .get(index)
            .map_or_else(|| "+Inf".to_owned(), |bound| seconds(*bound));
        let _ = write!(out, "{name}_bucket");
        write_labels(out, labels, Some(&le));
        let _ = writeln!(out, " {count}");
    }
    let total = snapshot.cumulative.last().copied().unwrap_or(0);
    let _ = write!(out, "{name}_sum");
    write_labels(out, labels, None);
    let _ = writeln!(out, " {}", seconds(snapshot.sum));
    let _ = write!(out, "{name}_count");
    write_labels(out, labels, None);
    let _ = writeln!(out, " {total}");
}

fn seconds(duration: Duration) -> String {
    format!("{}", duration.as_secs_f64())
}

fn write_labels(out: &mut String, labels: &[(&str, &str)], le: Option<&str>) {
    if labels.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    let mut first = true;
    for (key, value) in labels.iter().copied().chain(le.map(|le| ("le", le))) {
        if !first {
            out.push(',');
        }
        first = false;
        let _ = write!(out, "{key}=\"");
        // The exposition format escapes backslash, double quote and newline.
        for c in value.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped_and_le_comes_last() {
        let mut out = String::new();
        write_labels(&mut out, &[("upstream", "a\"b\\c\nd")], Some("0.5"));
        assert_eq!(out, r#"{upstream="a\"b\\c\nd",le="0.5"}"#);
    }

    #[test]
    fn histogram_lines_are_cumulative_with_inf_sum_and_count() {
        let histogram = crate::metrics::Histogram::default();
        histogram.observe(Duration::from_micros(50));
        histogram.observe(Duration::from_millis(3));
        let mut out = String::new();
        super::histogram(&mut out, "h", &[], &histogram.snapshot());
        assert!(out.starts_with("h_bucket{le=\"0.0001\"} 1\n"), "{out}");
        assert!(out.contains("h_bucket{le=\"0.005\"} 2\n"), "{out}");
        assert!(
            out.contains("h_bucket{le=\"+Inf\"} 2\nh_sum 0.00305\nh_count 2\n"),
            "{out}"
        );
    }
}
