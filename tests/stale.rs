//! Serve-stale (RFC 8767) end to end over loopback UDP: an expired answer is kept
//! for `stale_max_age`; a query for it starts a background refresh and, if the
//! upstream has not answered by `stale_answer_after`, gets the stale answer with
//! TTL `stale_ttl` and EDE 3 (Stale Answer); a refresh that fails fast (SERVFAIL,
//! REFUSED, closed port) gives it the stale answer at once; a refresh that answers
//! in time is served instead; the refresh outlives the client but not its own
//! deadline, and the first successful one ends the stale period. `serve_stale =
//! false` and `stale_max_age` turn stale answers off. Exact timings on a paused
//! clock are unit-tested in src/cache.rs.

mod common;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ::punctual::config::Config;
use common::punctual::{TEST_DEADLINE, start_with, test_config};
use common::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use tokio::net::UdpSocket;
use tokio::time::{Instant, sleep, sleep_until, timeout};

/// The default `stale_answer_after`: 90% of the 300 ms test deadline.
const STALE_AFTER: Duration = Duration::from_millis(270);
/// Slack after a timer for the response to be written and read back.
const LATE_MARGIN: Duration = Duration::from_millis(100);
/// Slack before a timer: the server's clock starts when the query arrives, after
/// the client's, so nothing should come early; a few ms cover clock reads.
const EARLY_SLACK: Duration = Duration::from_millis(5);
/// Past a 1 s TTL counted from the upstream's reply.
const PAST_TTL: Duration = Duration::from_millis(1100);
/// A background refresh runs for one deadline after the query that started it,
/// with or without waiters (`Resolver::spawn_lookup` in src/handler/mod.rs).
const REFRESH_LIFETIME: Duration = TEST_DEADLINE;
/// The default `stale_ttl` (RFC 8767 §4 recommends 30 s).
const STALE_TTL: u32 = 30;

async fn ask_with(server: SocketAddr, name: &str, opts: &QueryOpts) -> Reply {
    query_udp(server, name, RecordType::A, opts, CLIENT_LIMIT)
        .await
        .unwrap_or_else(|e| panic!("{name}: no reply from punctual: {e}"))
}

/// A fresh NOERROR answer carrying exactly `ip` and no EDE; returns its TTL.
fn fresh_ttl(reply: &Reply, ip: &str) -> u32 {
    let message = &reply.message;
    assert_eq!(message.response_code, ResponseCode::NoError, "{message:?}");
    let want: IpAddr = ip.parse().expect("test IP");
    assert_eq!(answer_ips(message), [want], "{message:?}");
    assert_eq!(ede(message), None, "a fresh answer carries no EDE");
    message.answers[0].ttl
}

/// A stale answer (RFC 8767 §4): the old address, every TTL `stale_ttl`, and for
/// an EDNS client EDE 3.
fn assert_stale(reply: &Reply, ip: &str, edns: bool) {
    let message = &reply.message;
    assert_eq!(message.response_code, ResponseCode::NoError, "{message:?}");
    let want: IpAddr = ip.parse().expect("test IP");
    assert_eq!(answer_ips(message), [want], "{message:?}");
    let ttls: Vec<u32> = message.answers.iter().map(|r| r.ttl).collect();
    assert_eq!(ttls, [STALE_TTL], "a stale answer carries stale_ttl");
    if edns {
        let (code, text) = ede(message).expect("a stale answer to an EDNS query has an EDE");
        assert_eq!(code, EDE_STALE_ANSWER, "EDE code (text {text:?})");
    } else {
        assert!(message.edns.is_none(), "no OPT for a client without EDNS");
    }
}

fn assert_servfail(reply: &Reply, code: u16) {
    let message = &reply.message;
    assert_eq!(message.response_code, ResponseCode::ServFail, "{message:?}");
    let (got, text) = ede(message).expect("a SERVFAIL to an EDNS query carries an EDE");
    assert_eq!(got, code, "EDE code (text {text:?})");
}

fn assert_within(what: &str, elapsed: Duration, from: Duration, to: Duration) {
    assert!(
        elapsed >= from && elapsed < to,
        "{what} after {elapsed:?}, want [{from:?}, {to:?})"
    );
}

fn stale_config(upstream: SocketAddr, edit: impl FnOnce(&mut Config)) -> Config {
    let mut config = test_config(&[upstream]);
    edit(&mut config);
    config
}

/// Waits until a datagram to `addr` is refused (ICMP port unreachable): the port
/// is closed, not just about to be.
async fn wait_until_closed(addr: SocketAddr) {
    let give_up = Instant::now() + Duration::from_secs(2);
    loop {
        let socket = UdpSocket::bind(local_bind_addr(addr)).await.expect("bind");
        socket.connect(addr).await.expect("connect");
        let _ = socket.send(&[0u8; 12]).await;
        let mut buf = [0u8; 512];
        if let Ok(Err(e)) = timeout(Duration::from_millis(20), socket.recv(&mut buf)).await
            && e.kind() == io::ErrorKind::ConnectionRefused
        {
            return;
        }
        assert!(Instant::now() < give_up, "{addr} still open");
        sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_upstream_gets_stale_at_stale_answer_after_then_fresh_once_healed() {
    const NAME: &str = "www.stale.test";
    let upstream = FakeUpstream::start(loopback(150)).await;
    upstream.add_a(NAME, "192.0.2.150", 1);
    // Upstream attempts at 0 and 150 ms, the next at 450: none near the end of a
    // refresh, so the upstream's counts are exact.
    let config = stale_config(upstream.addr(), |c| {
        c.limits.attempt_timeout = Duration::from_millis(150);
    });
    assert_eq!(TEST_DEADLINE, Duration::from_millis(300));
    assert_eq!(
        config.stale_answer_after(),
        STALE_AFTER,
        "default: 90% of the deadline"
    );
    let server = start_with(config).await;
    let metrics = server.stats.metrics();

    assert_eq!(fresh_ttl(&ask(server.udp, NAME).await, "192.0.2.150"), 1);
    sleep(PAST_TTL).await;
    upstream.set_behavior(Behavior::Hang);

    // Expired, upstream silent: the client waits stale_answer_after, no less.
    let sent = Instant::now();
    let stale = ask(server.udp, NAME).await;
    assert_stale(&stale, "192.0.2.150", true);
    assert_within(
        "stale answer",
        stale.elapsed,
        STALE_AFTER - EARLY_SLACK,
        STALE_AFTER + LATE_MARGIN,
    );
    // The bound above would also pass an answer at the deadline; the
    // stale answer must leave before it.
    assert!(stale.elapsed < TEST_DEADLINE, "took {:?}", stale.elapsed);
    assert_eq!(metrics.cache_stale_hits.get(), 1);
    assert_eq!(metrics.stale_answers.get(), 1);
    assert_eq!(metrics.refreshes.get(), 1);
    // The refresh outlives its client (who left at stale_answer_after) but not
    // its own deadline.
    let idle = wait_idle(&server, Duration::from_secs(2)).await;
    assert_within(
        "refresh ended",
        idle - sent,
        REFRESH_LIFETIME - EARLY_SLACK,
        REFRESH_LIFETIME + LATE_MARGIN,
    );
    assert_eq!(metrics.lookup_timeouts.get(), 1, "it ran to its deadline");
    assert_eq!(
        metrics.lookups_cancelled.get(),
        0,
        "not cancelled by the client leaving"
    );
    assert_eq!(
        upstream.queries_for(NAME),
        1 + 2,
        "refresh attempts at 0 and 150 ms"
    );
    assert_eq!(
        metrics.cache_failure_inserts.get(),
        0,
        "the timed-out refresh must not replace the stale answer"
    );

    // The upstream heals with a new address. The next stale hit's refresh is
    // answered at once, well before stale_answer_after: the fresh answer is served.
    upstream.remove(NAME);
    upstream.add_a(NAME, "192.0.2.151", 60);
    upstream.set_behavior(Behavior::Answer);
    let healed = ask(server.udp, NAME).await;
    assert_eq!(fresh_ttl(&healed, "192.0.2.151"), 60);
    assert!(healed.elapsed < AT_ONCE, "took {:?}", healed.elapsed);
    assert_eq!(metrics.refreshes.get(), 2);
    assert_eq!(metrics.stale_answers.get(), 1, "nothing stale once healed");
    assert_eq!(upstream.queries_for(NAME), 3 + 1);

    // And the refresh replaced the stale entry: the next query is a plain hit.
    let fresh = ask(server.udp, NAME).await;
    let ttl = fresh_ttl(&fresh, "192.0.2.151");
    assert!((59..=60).contains(&ttl), "a normal TTL, got {ttl}");
    assert!(fresh.elapsed < AT_ONCE, "took {:?}", fresh.elapsed);
    assert_eq!(upstream.queries_for(NAME), 4, "served from the cache");
    assert_eq!(metrics.cache_stale_hits.get(), 2);
    assert_eq!(metrics.cache_hits.get(), 1);
    server.stop().await;
}

/// How a refresh fails fast.
#[derive(Clone, Copy, Debug)]
enum FastFailure {
    Servfail,
    Refused,
    PortClosed,
}

// The scenarios below each wait out a 1 s TTL; each test runs its scenarios
// side by side (own upstream, own punctual) so the file stays short.

/// A refresh decides how long a stale hit waits: one that fails fast gives the
/// stale answer at once, one that answers before `stale_answer_after` is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_hit_waits_only_as_long_as_its_refresh_needs() {
    tokio::join!(
        fast_failing_refresh_serves_stale_at_once(151, FastFailure::Servfail),
        fast_failing_refresh_serves_stale_at_once(152, FastFailure::Refused),
        fast_failing_refresh_serves_stale_at_once(153, FastFailure::PortClosed),
        refresh_answered_in_time_is_served_instead_of_stale(),
        refresh_answered_after_the_stale_answer_still_replaces_it(),
    );
}

/// No stale answer when serve-stale is off, nor past `stale_max_age`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_entry_is_a_miss_with_serve_stale_off_or_past_stale_max_age() {
    tokio::join!(
        without_serve_stale_an_expired_entry_is_a_miss(),
        entry_past_stale_max_age_is_gone(),
    );
}

async fn fast_failing_refresh_serves_stale_at_once(ip: u8, failure: FastFailure) {
    let name = format!("www.fast-{}.stale.test", ip);
    let upstream = FakeUpstream::start(loopback(ip)).await;
    upstream.add_a(&name, "192.0.2.152", 1);
    let server = start_with(stale_config(upstream.addr(), |_| {})).await;
    let metrics = server.stats.metrics();

    assert_eq!(fresh_ttl(&ask(server.udp, &name).await, "192.0.2.152"), 1);
    sleep(PAST_TTL).await;
    let upstream = match failure {
        FastFailure::Servfail => {
            upstream.set_behavior(Behavior::Servfail);
            Some(upstream)
        }
        FastFailure::Refused => {
            upstream.set_behavior(Behavior::Refused);
            Some(upstream)
        }
        FastFailure::PortClosed => {
            let addr = upstream.addr();
            drop(upstream);
            wait_until_closed(addr).await;
            None
        }
    };

    let stale = ask(server.udp, &name).await;
    assert_stale(&stale, "192.0.2.152", true);
    assert!(
        stale.elapsed < AT_ONCE,
        "{failure:?}: stale after {:?}, want at once (stale_answer_after is {STALE_AFTER:?})",
        stale.elapsed
    );
    wait_idle(&server, Duration::from_secs(1)).await;
    // A client without EDNS gets the same stale answer, without an OPT.
    let plain = ask_with(server.udp, &name, &QueryOpts::default()).await;
    assert_stale(&plain, "192.0.2.152", false);
    assert!(plain.elapsed < AT_ONCE, "took {:?}", plain.elapsed);
    wait_idle(&server, Duration::from_secs(1)).await;

    assert_eq!(metrics.stale_answers.get(), 2);
    assert_eq!(metrics.refreshes.get(), 2, "each stale hit refreshes");
    match upstream {
        Some(upstream) => assert_eq!(upstream.queries_for(&name), 3, "one per lookup"),
        None => assert_eq!(metrics.lookup_network_errors.get(), 2),
    }
    assert_eq!(metrics.cache_failure_hits.get(), 0, "stale beats failure");
    server.stop().await;
}

async fn refresh_answered_in_time_is_served_instead_of_stale() {
    const NAME: &str = "www.in-time.stale.test";
    const DELAY: Duration = Duration::from_millis(50);
    let upstream = FakeUpstream::start(loopback(154)).await;
    upstream.add_a(NAME, "192.0.2.154", 1);
    let server = start_with(stale_config(upstream.addr(), |_| {})).await;
    let metrics = server.stats.metrics();

    assert_eq!(fresh_ttl(&ask(server.udp, NAME).await, "192.0.2.154"), 1);
    sleep(PAST_TTL).await;
    upstream.remove(NAME);
    upstream.add_a(NAME, "192.0.2.155", 60);
    upstream.set_behavior(Behavior::Delay(DELAY));

    let reply = ask(server.udp, NAME).await;
    assert_eq!(fresh_ttl(&reply, "192.0.2.155"), 60);
    assert_within(
        "refreshed answer",
        reply.elapsed,
        DELAY,
        STALE_AFTER - EARLY_SLACK,
    );
    assert_eq!(metrics.cache_stale_hits.get(), 1);
    assert_eq!(metrics.refreshes.get(), 1);
    assert_eq!(metrics.stale_answers.get(), 0, "nothing stale was sent");

    // And it is cached: the next query does not wait for the slow upstream.
    let again = ask(server.udp, NAME).await;
    assert!((59..=60).contains(&fresh_ttl(&again, "192.0.2.155")));
    assert!(again.elapsed < AT_ONCE, "took {:?}", again.elapsed);
    assert_eq!(upstream.queries_for(NAME), 2);
    server.stop().await;
}

/// The upstream answers after `stale_answer_after` but within the refresh's
/// life: the client has had the stale answer, and the refresh, finishing in the
/// background, puts the fresh one in the cache for the next query.
async fn refresh_answered_after_the_stale_answer_still_replaces_it() {
    const NAME: &str = "www.late.stale.test";
    const STALE_AFTER_SHORT: Duration = Duration::from_millis(100);
    const DELAY: Duration = Duration::from_millis(200);
    let upstream = FakeUpstream::start(loopback(157)).await;
    upstream.add_a(NAME, "192.0.2.158", 1);
    let server = start_with(stale_config(upstream.addr(), |c| {
        c.cache.stale_answer_after = Some(STALE_AFTER_SHORT);
        // One attempt: the delayed answer is the only one.
        c.limits.attempt_timeout = TEST_DEADLINE;
    }))
    .await;
    let metrics = server.stats.metrics();

    assert_eq!(fresh_ttl(&ask(server.udp, NAME).await, "192.0.2.158"), 1);
    sleep(PAST_TTL).await;
    upstream.remove(NAME);
    upstream.add_a(NAME, "192.0.2.159", 60);
    upstream.set_behavior(Behavior::Delay(DELAY));

    let stale = ask(server.udp, NAME).await;
    let sent = Instant::now() - stale.elapsed;
    assert_stale(&stale, "192.0.2.158", true);
    assert_within(
        "stale answer",
        stale.elapsed,
        STALE_AFTER_SHORT - EARLY_SLACK,
        DELAY,
    );
    let idle = wait_idle(&server, Duration::from_secs(1)).await;
    assert_within("refresh answered", idle - sent, DELAY, REFRESH_LIFETIME);
    assert_eq!(metrics.lookup_timeouts.get(), 0);

    let fresh = ask(server.udp, NAME).await;
    assert!((59..=60).contains(&fresh_ttl(&fresh, "192.0.2.159")));
    assert!(fresh.elapsed < AT_ONCE, "took {:?}", fresh.elapsed);
    assert_eq!(upstream.queries_for(NAME), 2, "the refresh, then the cache");
    assert_eq!(metrics.stale_answers.get(), 1);
    server.stop().await;
}

async fn without_serve_stale_an_expired_entry_is_a_miss() {
    const NAME: &str = "www.off.stale.test";
    let upstream = FakeUpstream::start(loopback(155)).await;
    upstream.add_a(NAME, "192.0.2.156", 1);
    let server = start_with(stale_config(upstream.addr(), |c| {
        c.cache.serve_stale = false;
    }))
    .await;
    let metrics = server.stats.metrics();

    assert_eq!(fresh_ttl(&ask(server.udp, NAME).await, "192.0.2.156"), 1);
    sleep(PAST_TTL).await;
    upstream.set_behavior(Behavior::Hang);

    let reply = ask(server.udp, NAME).await;
    assert_servfail(&reply, EDE_NO_REACHABLE_AUTHORITY);
    assert_within(
        "SERVFAIL",
        reply.elapsed,
        TEST_DEADLINE,
        TEST_DEADLINE + LATE_MARGIN,
    );
    assert_eq!(metrics.cache_stale_hits.get(), 0);
    assert_eq!(metrics.stale_answers.get(), 0);
    assert_eq!(metrics.cache_misses.get(), 2);
    server.stop().await;
}

async fn entry_past_stale_max_age_is_gone() {
    const NAME: &str = "www.old.stale.test";
    const STALE_MAX_AGE: Duration = Duration::from_secs(1);
    let upstream = FakeUpstream::start(loopback(156)).await;
    upstream.add_a(NAME, "192.0.2.157", 1);
    let server = start_with(stale_config(upstream.addr(), |c| {
        c.cache.stale_max_age = STALE_MAX_AGE;
    }))
    .await;
    let metrics = server.stats.metrics();

    assert_eq!(fresh_ttl(&ask(server.udp, NAME).await, "192.0.2.157"), 1);
    let cached = Instant::now();
    // Within TTL + stale_max_age it is still served stale (a SERVFAILing refresh
    // gives it at once).
    sleep_until(cached + PAST_TTL).await;
    upstream.set_behavior(Behavior::Servfail);
    let stale = ask(server.udp, NAME).await;
    assert_stale(&stale, "192.0.2.157", true);
    assert!(stale.elapsed < AT_ONCE, "took {:?}", stale.elapsed);

    // Past TTL + stale_max_age it is gone: a hung upstream means SERVFAIL at the deadline.
    sleep_until(cached + Duration::from_secs(1) + STALE_MAX_AGE + Duration::from_millis(100)).await;
    upstream.set_behavior(Behavior::Hang);
    let reply = ask(server.udp, NAME).await;
    assert_servfail(&reply, EDE_NO_REACHABLE_AUTHORITY);
    assert_within(
        "SERVFAIL",
        reply.elapsed,
        TEST_DEADLINE,
        TEST_DEADLINE + LATE_MARGIN,
    );
    assert_eq!(metrics.cache_stale_hits.get(), 1);
    assert_eq!(metrics.stale_answers.get(), 1);
    server.stop().await;
}
