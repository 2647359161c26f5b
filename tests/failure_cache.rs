//! The failure cache end to end over loopback UDP: a lookup that ended in a
//! timeout or an upstream SERVFAIL/REFUSED is remembered for `failure_ttl`, so the
//! next askers (glibc's immediate retry first) get SERVFAIL with the EDE that
//! described the failure at once instead of after another deadline; every such
//! hit makes sure one background refresh is in flight, never more; the first
//! good answer replaces the failure, so a cached failure never outlives the
//! upstream's recovery by more than one round trip; `failure_ttl = 0` turns it
//! off; and a stale answer is always preferred over a failure.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ::punctual::config::Config;
use common::punctual::{TEST_DEADLINE, start_with, test_config};
use common::*;
use hickory_proto::op::ResponseCode;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep};

/// Slack after a deadline for the response to be written and read back.
const LATE_MARGIN: Duration = Duration::from_millis(100);
/// Upstream attempts at 0 and 250 ms, the next at 750 ms: a client's lookup (cut
/// at its 300 ms deadline) sends exactly 2 queries, and so does a background
/// refresh (which ends one deadline after it started; it would too with two). No
/// attempt falls near either end, so the upstream's counts are exact.
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(250);
const QUERIES_PER_HUNG_LOOKUP: usize = 2;
/// A background refresh runs for one deadline after the query that started it,
/// with or without waiters (`Resolver::spawn_lookup` in src/handler/mod.rs).
const REFRESH_LIFETIME: Duration = TEST_DEADLINE;
const PAST_TTL: Duration = Duration::from_millis(1100);
const STALE_TTL: u32 = 30;

/// `count` concurrent clients asking for `name`, each from its own socket.
async fn ask_many(server: SocketAddr, name: &str, count: usize) -> Vec<Reply> {
    let mut clients = JoinSet::new();
    for _ in 0..count {
        let name = name.to_owned();
        clients.spawn(async move { ask(server, &name).await });
    }
    clients.join_all().await
}

fn failure_config(upstream: SocketAddr, edit: impl FnOnce(&mut Config)) -> Config {
    let mut config = test_config(&[upstream]);
    config.limits.attempt_timeout = ATTEMPT_TIMEOUT;
    edit(&mut config);
    config
}

/// SERVFAIL with this EDE code; returns the EDE text.
fn assert_servfail(reply: &Reply, code: u16) -> String {
    let message = &reply.message;
    assert_eq!(message.response_code, ResponseCode::ServFail, "{message:?}");
    assert!(message.answers.is_empty(), "{message:?}");
    let (got, text) = ede(message).expect("a SERVFAIL to an EDNS query carries an EDE");
    assert_eq!(got, code, "EDE code (text {text:?})");
    text
}

fn assert_at_deadline(reply: &Reply) {
    assert!(
        reply.elapsed >= TEST_DEADLINE && reply.elapsed < TEST_DEADLINE + LATE_MARGIN,
        "answered after {:?}, want [{TEST_DEADLINE:?}, {:?})",
        reply.elapsed,
        TEST_DEADLINE + LATE_MARGIN
    );
}

fn assert_at_once(reply: &Reply, limit: Duration) {
    assert!(
        reply.elapsed < limit,
        "answered after {:?}, want under {limit:?}",
        reply.elapsed
    );
}

/// NOERROR with exactly `ip`; returns its TTL.
fn answer_ttl(reply: &Reply, ip: &str) -> u32 {
    let message = &reply.message;
    assert_eq!(message.response_code, ResponseCode::NoError, "{message:?}");
    let want: IpAddr = ip.parse().expect("test IP");
    assert_eq!(answer_ips(message), [want], "{message:?}");
    message.answers[0].ttl
}

fn assert_stale(reply: &Reply, ip: &str) {
    assert_eq!(answer_ttl(reply, ip), STALE_TTL);
    let (code, text) = ede(&reply.message).expect("a stale answer carries an EDE");
    assert_eq!(code, EDE_STALE_ANSWER, "EDE code (text {text:?})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_is_answered_at_once_afterwards_with_one_refresh_in_flight() {
    const NAME: &str = "down.failure.test";
    let upstream = FakeUpstream::start(loopback(160)).await;
    upstream.add_a(NAME, "192.0.2.160", 60);
    upstream.set_behavior(Behavior::Hang);
    let server = start_with(failure_config(upstream.addr(), |_| {})).await;
    let metrics = server.stats.metrics();

    let first = ask(server.udp, NAME).await;
    assert_servfail(&first, EDE_NO_REACHABLE_AUTHORITY);
    assert_at_deadline(&first);
    assert_eq!(metrics.cache_failure_inserts.get(), 1);

    // The immediate retry (what glibc does after a SERVFAIL) is answered from the
    // failure cache, and starts one background refresh.
    let second = ask(server.udp, NAME).await;
    let refresh_started = Instant::now() - second.elapsed;
    assert_servfail(&second, EDE_NO_REACHABLE_AUTHORITY);
    assert_at_once(&second, AT_ONCE);
    assert_eq!(metrics.cache_failure_hits.get(), 1);
    assert_eq!(metrics.refreshes.get(), 1);
    assert_eq!(
        server.stats.inflight().lookups,
        1,
        "the refresh is in flight"
    );
    assert_eq!(metrics.lookups_started.get(), 2);

    // A hundred more askers in the window: all answered at once, no new refresh.
    for reply in ask_many(server.udp, NAME, 100).await {
        assert_servfail(&reply, EDE_NO_REACHABLE_AUTHORITY);
        assert_at_once(&reply, AT_ONCE);
    }
    assert_eq!(metrics.cache_failure_hits.get(), 101);
    assert_eq!(
        metrics.refreshes.get(),
        1,
        "at most one refresh per question"
    );
    assert_eq!(metrics.lookups_started.get(), 2);
    assert_eq!(server.stats.inflight().lookups, 1);
    assert!(upstream.queries_for(NAME) <= 2 * QUERIES_PER_HUNG_LOOKUP);

    // The refresh ends at its own deadline; the upstream saw two lookups' worth.
    let idle = wait_idle(&server, Duration::from_secs(2)).await;
    let lived = idle - refresh_started;
    assert!(
        lived >= REFRESH_LIFETIME - Duration::from_millis(5)
            && lived < REFRESH_LIFETIME + LATE_MARGIN,
        "refresh ended {lived:?} after it started, want about {REFRESH_LIFETIME:?}"
    );
    assert_eq!(upstream.queries_for(NAME), 2 * QUERIES_PER_HUNG_LOOKUP);
    assert_eq!(
        metrics.cache_failure_inserts.get(),
        2,
        "the refresh's timeout is remembered again"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_never_outlives_the_upstream_recovery_by_more_than_one_round_trip() {
    const NAME: &str = "heal.failure.test";
    let upstream = FakeUpstream::start(loopback(161)).await;
    upstream.add_a(NAME, "192.0.2.161", 60);
    upstream.set_behavior(Behavior::Hang);
    let server = start_with(failure_config(upstream.addr(), |_| {})).await;
    let metrics = server.stats.metrics();

    let first = ask(server.udp, NAME).await;
    assert_servfail(&first, EDE_NO_REACHABLE_AUTHORITY);
    assert_at_deadline(&first);
    assert_eq!(upstream.queries_for(NAME), QUERIES_PER_HUNG_LOOKUP);

    upstream.set_behavior(Behavior::Answer);
    // This one may still get the remembered failure; it starts the refresh.
    let second = ask(server.udp, NAME).await;
    assert_servfail(&second, EDE_NO_REACHABLE_AUTHORITY);
    assert_at_once(&second, AT_ONCE);
    assert_eq!(metrics.refreshes.get(), 1);

    // One round trip later the refresh has replaced the failure.
    sleep(Duration::from_millis(50)).await;
    let third = ask(server.udp, NAME).await;
    assert_eq!(answer_ttl(&third, "192.0.2.161"), 60);
    assert_eq!(ede(&third.message), None);
    assert_at_once(&third, AT_ONCE);
    assert_eq!(
        upstream.queries_for(NAME),
        QUERIES_PER_HUNG_LOOKUP + 1,
        "one refresh, then served from the cache"
    );
    assert_eq!(metrics.cache_failure_hits.get(), 1);
    assert_eq!(metrics.cache_hits.get(), 1);
    server.stop().await;
}

/// `behavior` makes the upstream answer at once with a failure RCODE: the
/// client gets that reply, later askers the remembered failure with `text`.
async fn upstream_failure_is_remembered(
    ip: u8,
    behavior: Behavior,
    passed: ResponseCode,
    text: &str,
) {
    let name = format!("{behavior:?}.failure.test").to_lowercase();
    let upstream = FakeUpstream::start(loopback(ip)).await;
    upstream.add_a(&name, "192.0.2.162", 60);
    upstream.set_behavior(behavior);
    let server = start_with(failure_config(upstream.addr(), |_| {})).await;
    let metrics = server.stats.metrics();

    // The upstream's own reply is passed through.
    let first = ask(server.udp, &name).await;
    assert_eq!(first.message.response_code, passed, "{:?}", first.message);
    assert_at_once(&first, AT_ONCE);
    assert_eq!(upstream.queries_for(&name), 1);
    assert_eq!(metrics.cache_failure_inserts.get(), 1);

    // Within failure_ttl: SERVFAIL from the failure cache, with the EDE naming
    // what the upstream said.
    let second = ask(server.udp, &name).await;
    assert_eq!(assert_servfail(&second, EDE_OTHER), text);
    assert_at_once(&second, AT_ONCE);
    assert_eq!(metrics.cache_failure_hits.get(), 1);
    // The hit was answered without waiting for the upstream, but it started a
    // background refresh, and that refresh does reach the upstream: one query,
    // answered with the same failure, which is remembered again.
    assert_eq!(metrics.refreshes.get(), 1);
    wait_idle(&server, Duration::from_secs(1)).await;
    assert_eq!(upstream.queries_for(&name), 2);
    assert_eq!(metrics.cache_failure_inserts.get(), 2);

    // Each later hit that finds no refresh in flight starts one more: with an
    // upstream that fails fast, the failure cache bounds the upstream to one
    // query in flight per question, not to one per failure_ttl.
    let third = ask(server.udp, &name).await;
    assert_eq!(assert_servfail(&third, EDE_OTHER), text);
    wait_idle(&server, Duration::from_secs(1)).await;
    assert_eq!(metrics.refreshes.get(), 2);
    assert_eq!(upstream.queries_for(&name), 3);
    assert_eq!(metrics.lookups_started.get(), 3);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_servfail_is_remembered_with_its_ede() {
    upstream_failure_is_remembered(
        162,
        Behavior::Servfail,
        ResponseCode::ServFail,
        "upstream answered SERVFAIL",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_refused_is_remembered_with_its_ede() {
    upstream_failure_is_remembered(
        163,
        Behavior::Refused,
        ResponseCode::Refused,
        "upstream refused the query",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_ttl_zero_turns_the_failure_cache_off() {
    const NAME: &str = "off.failure.test";
    let upstream = FakeUpstream::start(loopback(164)).await;
    upstream.set_behavior(Behavior::Hang);
    let server = start_with(failure_config(upstream.addr(), |c| {
        c.cache.failure_ttl = Duration::ZERO;
    }))
    .await;
    let metrics = server.stats.metrics();

    for _ in 0..2 {
        let reply = ask(server.udp, NAME).await;
        assert_servfail(&reply, EDE_NO_REACHABLE_AUTHORITY);
        assert_at_deadline(&reply);
    }
    assert_eq!(metrics.cache_failure_hits.get(), 0);
    assert_eq!(metrics.cache_failure_inserts.get(), 0);
    assert_eq!(metrics.refreshes.get(), 0);
    assert_eq!(metrics.lookups_started.get(), 2);
    assert_eq!(upstream.queries_for(NAME), 2 * QUERIES_PER_HUNG_LOOKUP);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_answer_is_preferred_over_a_failure() {
    const NAME: &str = "stale.failure.test";
    let upstream = FakeUpstream::start(loopback(165)).await;
    upstream.add_a(NAME, "192.0.2.165", 1);
    let server = start_with(failure_config(upstream.addr(), |_| {})).await;
    let metrics = server.stats.metrics();

    assert_eq!(answer_ttl(&ask(server.udp, NAME).await, "192.0.2.165"), 1);
    sleep(PAST_TTL).await;

    // A refresh answered SERVFAIL: stale at once, and the failure is not kept.
    upstream.set_behavior(Behavior::Servfail);
    let reply = ask(server.udp, NAME).await;
    assert_stale(&reply, "192.0.2.165");
    assert_at_once(&reply, AT_ONCE);
    wait_idle(&server, Duration::from_secs(1)).await;

    // A refresh that times out: stale at stale_answer_after; the refresh's timeout
    // at its own deadline is not kept either.
    upstream.set_behavior(Behavior::Hang);
    let reply = ask(server.udp, NAME).await;
    assert_stale(&reply, "192.0.2.165");
    assert!(reply.elapsed < TEST_DEADLINE, "took {:?}", reply.elapsed);
    wait_idle(&server, Duration::from_secs(2)).await;
    assert_eq!(metrics.lookup_timeouts.get(), 1);

    // So the next asker still gets the stale answer, not a remembered SERVFAIL.
    upstream.set_behavior(Behavior::Servfail);
    let reply = ask(server.udp, NAME).await;
    assert_stale(&reply, "192.0.2.165");
    assert_at_once(&reply, AT_ONCE);

    assert_eq!(metrics.cache_failure_hits.get(), 0);
    assert_eq!(metrics.cache_failure_inserts.get(), 0);
    assert_eq!(metrics.stale_answers.get(), 3);
    server.stop().await;
}

// Regression test. Before 09ef4e1 a cached failure outlived the upstream's
// recovery by up to `failure_ttl` when the recovered answer may not be cached
// (TTL 0 here; likewise NXDOMAIN/NODATA without an SOA): `Resolver::lookup`
// handed the good answer to `Cache::insert`, which returned early because
// `Answer::cache_ttl` was `None`, so the failure stayed and every later hit was
// answered SERVFAIL from it (and started another refresh whose good answer was
// dropped again) until `failure_ttl` ran out. Issue 3: "a cached failure never
// outlives the upstream's recovery by more than one round trip".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncacheable_answer_still_ends_a_cached_failure() {
    const NAME: &str = "ttl0.failure.test";
    let upstream = FakeUpstream::start(loopback(166)).await;
    upstream.add_a(NAME, "192.0.2.166", 0);
    upstream.set_behavior(Behavior::Hang);
    let server = start_with(failure_config(upstream.addr(), |_| {})).await;
    let metrics = server.stats.metrics();

    let first = ask(server.udp, NAME).await;
    assert_servfail(&first, EDE_NO_REACHABLE_AUTHORITY);
    upstream.set_behavior(Behavior::Answer);
    let second = ask(server.udp, NAME).await;
    assert_servfail(&second, EDE_NO_REACHABLE_AUTHORITY);
    wait_idle(&server, Duration::from_secs(1)).await;
    assert_eq!(
        upstream.queries_for(NAME),
        QUERIES_PER_HUNG_LOOKUP + 1,
        "the refresh got the upstream's answer"
    );

    sleep(Duration::from_millis(50)).await;
    let third = ask(server.udp, NAME).await;
    assert_eq!(
        third.message.response_code,
        ResponseCode::NoError,
        "the upstream has answered a refresh, yet a remembered failure is served: {:?} \
         (failure hits so far: {})",
        third.message,
        metrics.cache_failure_hits.get()
    );
    assert_eq!(answer_ttl(&third, "192.0.2.166"), 0);
    assert_eq!(
        upstream.queries_for(NAME),
        QUERIES_PER_HUNG_LOOKUP + 2,
        "nothing cacheable: asked again"
    );
    assert_eq!(metrics.cache_failure_hits.get(), 1);
    server.stop().await;
}
