//! `GET /stats` and `POST /cache/flush`: the JSON an operator reads, and the
//! flush scopes (everything, one name, a zone and below).

use hickory_proto::rr::Name;
use hickory_proto::serialize::binary::BinEncodable;
use serde_json::{Value, json};

use crate::Stats;

pub fn to_json(stats: &Stats) -> Value {
    let metrics = stats.metrics();
    let inflight = stats.inflight();
    let upstreams: Vec<Value> = stats
        .upstreams()
        .into_iter()
        .flat_map(|(zone, servers)| {
            servers.into_iter().map(move |server| {
                json!({
                    "zone": zone,
                    "server": server.server,
                    "up": server.up,
                    "queries": server.queries,
                    "timeouts": server.timeouts,
                    "srtt_ms": server.srtt.map(|srtt| srtt.as_secs_f64() * 1000.0),
                })
            })
        })
        .collect();
    let answers = metrics.answer_duration.snapshot();
    json!({
        "queries": { "udp": metrics.queries_udp.get(), "tcp": metrics.queries_tcp.get() },
        "responses": {
            "noerror": metrics.responses_by_rcode[0].get(),
            "servfail": metrics.responses_by_rcode[2].get(),
            "nxdomain": metrics.responses_by_rcode[3].get(),
            "refused": metrics.responses_by_rcode[5].get(),
            "truncated": metrics.responses_truncated.get(),
        },
        "answers": {
            "count": answers.cumulative.last().copied().unwrap_or(0),
            "sum_ms": answers.sum.as_secs_f64() * 1000.0,
        },
        "cache": {
            "entries": stats.cache_entries(),
            "bytes": stats.cache().bytes(),
            "hits": metrics.cache_hits.get(),
            "negative_hits": metrics.cache_negative_hits.get(),
            "misses": metrics.cache_misses.get(),
            "stale_hits": metrics.cache_stale_hits.get(),
            "failure_hits": metrics.cache_failure_hits.get(),
            "prefetches": metrics.prefetches.get(),
            "evictions": metrics.cache_evictions.get(),
        },
        "inflight": {
            "lookups": inflight.lookups,
            "waiters": inflight.waiters,
            "coalesced_joins": metrics.coalesced_joins.get(),
            "abandoned_waiters": metrics.abandoned_waiters.get(),
            "overload_answers": metrics.overload_answers.get(),
            "upstream_down_answers": metrics.upstream_down_answers.get(),
        },
        "local_answers": metrics.local_answers.get(),
        "refused": metrics.queries_prohibited.get(),
        "rate_limited": metrics.rate_limited.get(),
        "upstreams": upstreams,
    })
}

/// Flushes per the query string: none or `all` → everything, `name=NAME` →
/// that name (all types), `suffix=ZONE` → the zone and every name below it.
pub fn flush(stats: &Stats, query: Option<&str>) -> Result<Value, String> {
    let cache = stats.cache();
    let query = query.unwrap_or("");
    if query.is_empty() || query == "all" {
        return Ok(json!({ "flushed": cache.flush_all(), "scope": "all" }));
    }
    let (key, value) = query
        .split_once('=')
        .ok_or_else(|| format!("expected name=NAME, suffix=ZONE or all, got {query:?}"))?;
    let wire = wire_name(value)?;
    let flushed = match key {
        "name" => cache.flush_name(&wire),
        "suffix" => cache.flush_suffix(&wire),
        _ => {
            return Err(format!(
                "unknown flush scope {key:?}: use name, suffix or all"
            ));
        }
    };
    Ok(json!({ "flushed": flushed, "scope": key, "name": value }))
}

/// A presentation-format name as a lower-case wire name; relative names are
/// taken as absolute.
fn wire_name(text: &str) -> Result<Vec<u8>, String> {
    let invalid = || format!("{text:?} is not a domain name");
    if text.is_empty() || text.contains(['%', '&']) {
        return Err(invalid());
    }
    let mut name = Name::from_ascii(text).map_err(|_| invalid())?;
    name.set_fqdn(true);
    name.to_lowercase().to_bytes().map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flush_names_become_lower_case_wire_names() {
        assert_eq!(
            wire_name("WWW.Example.test"),
            Ok(b"\x03www\x07example\x04test\x00".to_vec())
        );
        assert_eq!(
            wire_name("example.test."),
            Ok(b"\x07example\x04test\x00".to_vec())
        );
        assert!(wire_name("").is_err());
        assert!(wire_name("a%2eb").is_err());
        assert!(wire_name(&"x".repeat(64)).is_err(), "a label over 63 bytes");
    }
}
