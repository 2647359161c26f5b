//! The answer cache, end to end over loopback UDP: a repeated question (in any
//! letter case) is answered without the upstream and with a TTL that never grows;
//! the cache holds at most `entries` answers and evicts the least recently used;
//! entries expire with their TTL; `min_ttl`/`max_ttl` clamp what is served and
//! how long it is kept; and an upstream SERVFAIL or REFUSED, a truncated reply or
//! garbage is never stored as an answer. Negative caching, the failure cache and
//! serve-stale have their own files (negative.rs, failure_cache.rs, stale.rs);
//! exact TTL countdown on a paused clock is unit-tested in src/cache.rs and
//! src/answer.rs, and prefetch (which needs a TTL of 10 s, too slow for the
//! real clock) in src/handler/tests.rs.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ::punctual::config::Config;
use common::punctual::{TEST_DEADLINE, start_with, test_config};
use common::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use tokio::time::sleep;

/// A NOERROR answer carrying exactly `ip`; returns the TTL of its one record.
fn answer_ttl(reply: &Reply, ip: &str) -> u32 {
    assert_eq!(
        reply.message.response_code,
        ResponseCode::NoError,
        "{:?}",
        reply.message
    );
    assert!(!reply.message.truncation, "{:?}", reply.message);
    let want: IpAddr = ip.parse().expect("test IP");
    assert_eq!(answer_ips(&reply.message), [want]);
    reply.message.answers[0].ttl
}

/// The question section exactly as a client writes `name` (letter case kept).
fn wire_question(name: &str, rtype: RecordType) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name.trim_end_matches('.').split('.') {
        out.push(u8::try_from(label.len()).expect("test label under 64 bytes"));
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out.extend_from_slice(&u16::from(rtype).to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out
}

/// The test config, edited. Retransmission is pushed out to the deadline so the
/// upstream's query counts stay exact however loaded the machine.
/// These tests are about cached answers: the failure cache (tests/failure_cache.rs)
/// and serve-stale (tests/stale.rs) are off so an expiry or a failure is a plain miss.
fn cache_config(upstream: SocketAddr, edit: impl FnOnce(&mut Config)) -> Config {
    let mut config = test_config(&[upstream]);
    config.limits.attempt_timeout = TEST_DEADLINE;
    config.cache.failure_ttl = Duration::ZERO;
    config.cache.serve_stale = false;
    edit(&mut config);
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_question_is_a_hit_in_any_letter_case() {
    const NAME: &str = "www.hit.test";
    let upstream = FakeUpstream::start(loopback(100)).await;
    upstream.add_a(NAME, "192.0.2.100", 300);
    let server = start_with(cache_config(upstream.addr(), |_| {})).await;

    let first = ask_type(server.udp, NAME, RecordType::A).await;
    let first_ttl = answer_ttl(&first, "192.0.2.100");
    assert_eq!(first_ttl, 300);
    assert_eq!(upstream.queries(), 1);

    let second = ask_type(server.udp, NAME, RecordType::A).await;
    let second_ttl = answer_ttl(&second, "192.0.2.100");
    assert!(
        second_ttl <= first_ttl && second_ttl >= first_ttl - 1,
        "TTL {first_ttl} then {second_ttl}"
    );
    assert!(
        second.elapsed < AT_ONCE,
        "cache hit took {:?}",
        second.elapsed
    );
    assert_eq!(upstream.queries(), 1, "a hit must not reach the upstream");

    const SHOUTED: &str = "WwW.HIT.tEsT";
    let cased = ask_type(server.udp, SHOUTED, RecordType::A).await;
    answer_ttl(&cased, "192.0.2.100");
    let question = wire_question(SHOUTED, RecordType::A);
    assert_eq!(
        cased.bytes.get(12..12 + question.len()),
        Some(&question[..]),
        "the hit must echo the client's own letter case"
    );
    assert_eq!(upstream.queries(), 1, "letter case must not miss the cache");

    let metrics = server.stats.metrics();
    assert_eq!(metrics.cache_hits.get(), 2);
    assert_eq!(metrics.cache_misses.get(), 1);
    assert_eq!(metrics.lookups_started.get(), 1);
    assert_eq!(server.stats.cache_entries(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_cache_evicts_the_least_recently_used() {
    let upstream = FakeUpstream::start(loopback(101)).await;
    for (name, ip) in [
        ("a.lru.test", "192.0.2.1"),
        ("b.lru.test", "192.0.2.2"),
        ("c.lru.test", "192.0.2.3"),
    ] {
        upstream.add_a(name, ip, 300);
    }
    let server = start_with(cache_config(upstream.addr(), |c| c.cache.entries = 2)).await;

    for (name, ip) in [
        ("a.lru.test", "192.0.2.1"),
        ("b.lru.test", "192.0.2.2"),
        ("c.lru.test", "192.0.2.3"),
    ] {
        answer_ttl(&ask_type(server.udp, name, RecordType::A).await, ip);
    }
    assert_eq!(upstream.queries(), 3);
    assert_eq!(server.stats.cache_entries(), 2);
    assert_eq!(server.stats.metrics().cache_evictions.get(), 1);

    // a was the oldest: evicted, so it goes upstream again (and pushes out b).
    answer_ttl(
        &ask_type(server.udp, "a.lru.test", RecordType::A).await,
        "192.0.2.1",
    );
    assert_eq!(
        upstream.queries_for("a.lru.test"),
        2,
        "the evicted entry must be fetched again"
    );
    assert_eq!(server.stats.metrics().cache_evictions.get(), 2);
    assert_eq!(server.stats.cache_entries(), 2);
    // c was more recent than b, so c is still there.
    answer_ttl(
        &ask_type(server.udp, "c.lru.test", RecordType::A).await,
        "192.0.2.3",
    );
    assert_eq!(
        upstream.queries_for("c.lru.test"),
        1,
        "c must still be cached"
    );
    assert_eq!(upstream.queries(), 4);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entry_expires_with_its_ttl() {
    const NAME: &str = "short.ttl.test";
    let upstream = FakeUpstream::start(loopback(102)).await;
    upstream.add_a(NAME, "192.0.2.102", 1);
    let server = start_with(cache_config(upstream.addr(), |_| {})).await;

    assert_eq!(
        answer_ttl(
            &ask_type(server.udp, NAME, RecordType::A).await,
            "192.0.2.102"
        ),
        1
    );
    answer_ttl(
        &ask_type(server.udp, NAME, RecordType::A).await,
        "192.0.2.102",
    );
    assert_eq!(upstream.queries(), 1, "fresh within its TTL");

    sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        answer_ttl(
            &ask_type(server.udp, NAME, RecordType::A).await,
            "192.0.2.102"
        ),
        1
    );
    assert_eq!(
        upstream.queries(),
        2,
        "expired after its 1 s TTL: asked again"
    );
    assert_eq!(
        server.stats.cache_entries(),
        1,
        "the new answer replaced the expired one"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_ttl_caps_what_is_served() {
    const NAME: &str = "long.maxttl.test";
    let upstream = FakeUpstream::start(loopback(103)).await;
    upstream.add_a(NAME, "192.0.2.103", 3600);
    let config = cache_config(upstream.addr(), |c| {
        c.cache.max_ttl = Duration::from_secs(5)
    });
    let server = start_with(config).await;

    let first = answer_ttl(
        &ask_type(server.udp, NAME, RecordType::A).await,
        "192.0.2.103",
    );
    assert!(
        (4..=5).contains(&first),
        "TTL 3600 served as {first}, max_ttl 5 s"
    );
    let cached = answer_ttl(
        &ask_type(server.udp, NAME, RecordType::A).await,
        "192.0.2.103",
    );
    assert!(cached <= first && cached >= 4, "cached TTL {cached}");
    assert_eq!(upstream.queries(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_ttl_raises_what_is_served_and_how_long_it_is_kept() {
    const NAME: &str = "brief.minttl.test";
    let upstream = FakeUpstream::start(loopback(104)).await;
    upstream.add_a(NAME, "192.0.2.104", 1);
    let config = cache_config(upstream.addr(), |c| {
        c.cache.min_ttl = Duration::from_secs(10)
    });
    let server = start_with(config).await;

    let first = answer_ttl(
        &ask_type(server.udp, NAME, RecordType::A).await,
        "192.0.2.104",
    );
    assert_eq!(first, 10, "TTL 1 served as {first}, min_ttl 10 s");
    sleep(Duration::from_millis(1500)).await;
    let later = ask_type(server.udp, NAME, RecordType::A).await;
    let later_ttl = answer_ttl(&later, "192.0.2.104");
    assert_eq!(
        upstream.queries(),
        1,
        "past the record's own 1 s TTL, still cached for min_ttl"
    );
    assert!(
        (8..=9).contains(&later_ttl),
        "1.5 s later the TTL is {later_ttl}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failures_are_not_cached_as_answers() {
    const NAME: &str = "neg.cache.test";
    let upstream = FakeUpstream::start(loopback(105)).await;
    upstream.add_a(NAME, "192.0.2.105", 300);
    let server = start_with(cache_config(upstream.addr(), |_| {})).await;

    // (behavior, name, qtype, rcode the client gets)
    let cases = [
        (
            Behavior::Servfail,
            NAME,
            RecordType::A,
            ResponseCode::ServFail,
        ),
        (
            Behavior::Refused,
            NAME,
            RecordType::A,
            ResponseCode::Refused,
        ),
    ];
    for (behavior, name, rtype, rcode) in cases {
        upstream.set_behavior(behavior);
        for round in 1..=2 {
            let before = upstream.queries();
            let reply = ask_type(server.udp, name, rtype).await;
            assert_eq!(
                reply.message.response_code, rcode,
                "{behavior:?} {name} {rtype} round {round}"
            );
            assert!(
                reply.message.answers.is_empty(),
                "{behavior:?} {name} {rtype}"
            );
            assert_eq!(
                upstream.queries(),
                before + 1,
                "{behavior:?} {name} {rtype} round {round}: must go upstream"
            );
        }
    }
    assert_eq!(server.stats.cache_entries(), 0);
    assert_eq!(server.stats.metrics().cache_inserts.get(), 0);
    assert_eq!(server.stats.metrics().cache_hits.get(), 0);

    // The same name answered properly is cached: the cases above were not skipped
    // for some other reason.
    upstream.set_behavior(Behavior::Answer);
    answer_ttl(
        &ask_type(server.udp, NAME, RecordType::A).await,
        "192.0.2.105",
    );
    answer_ttl(
        &ask_type(server.udp, NAME, RecordType::A).await,
        "192.0.2.105",
    );
    assert_eq!(server.stats.cache_entries(), 1);
    assert_eq!(server.stats.metrics().cache_hits.get(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_udp_reply_is_not_cached_but_the_tcp_answer_is() {
    const WHOLE: &str = "whole.tc.test";
    const STUCK: &str = "stuck.tc.test";
    let upstream = FakeUpstream::start(loopback(106)).await;
    upstream.add_a(WHOLE, "192.0.2.106", 300);
    upstream.add_a(STUCK, "192.0.2.107", 300);
    let server = start_with(cache_config(upstream.addr(), |_| {})).await;

    // TC over UDP, then a dripping TCP that never finishes by the deadline: the TC
    // reply is all punctual ever got, and it must not be stored.
    upstream.set_behavior(Behavior::TcpDrip);
    let reply = ask_type(server.udp, STUCK, RecordType::A).await;
    assert_eq!(reply.message.response_code, ResponseCode::ServFail);
    assert!(
        reply.elapsed >= TEST_DEADLINE,
        "failed early: {:?}",
        reply.elapsed
    );
    assert_eq!(
        server.stats.cache_entries(),
        0,
        "the truncated reply was cached"
    );

    // TC over UDP, full answer over TCP: the complete answer is cached.
    upstream.set_behavior(Behavior::TruncateUdp);
    upstream.reset_counters();
    answer_ttl(
        &ask_type(server.udp, WHOLE, RecordType::A).await,
        "192.0.2.106",
    );
    assert_eq!((upstream.udp_queries(), upstream.tcp_queries()), (1, 1));
    let hit = ask_type(server.udp, WHOLE, RecordType::A).await;
    answer_ttl(&hit, "192.0.2.106");
    assert!(hit.elapsed < AT_ONCE, "cache hit took {:?}", hit.elapsed);
    assert_eq!(
        (upstream.udp_queries(), upstream.tcp_queries()),
        (1, 1),
        "served from cache"
    );
    assert_eq!(server.stats.cache_entries(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_is_not_cached() {
    const NAME: &str = "junk.cache.test";
    let upstream = FakeUpstream::start(loopback(107)).await;
    upstream.add_a(NAME, "192.0.2.108", 300);
    upstream.set_behavior(Behavior::Garbage);
    let server = start_with(cache_config(upstream.addr(), |_| {})).await;

    let reply = ask_type(server.udp, NAME, RecordType::A).await;
    assert_eq!(reply.message.response_code, ResponseCode::ServFail);
    assert!(server.stats.metrics().upstream_ignored_replies.get() > 0);
    assert_eq!(server.stats.cache_entries(), 0);

    // Once the upstream is sane again the next query goes to it: nothing was kept.
    upstream.set_behavior(Behavior::Answer);
    let before = upstream.queries();
    answer_ttl(
        &ask_type(server.udp, NAME, RecordType::A).await,
        "192.0.2.108",
    );
    assert_eq!(upstream.queries(), before + 1);
    assert_eq!(server.stats.cache_entries(), 1);
    server.stop().await;
}
