//! Upstream selection end to end over loopback UDP (src/upstream/mod.rs and
//! health.rs): `fastest` sends nearly everything to the quickest server and
//! probes the other one every 20th lookup; a server that stops answering is
//! hedged around after its RTO (clamped to at least 50 ms) and, after three
//! consecutive timeouts, moved to the back of the order; SERVFAIL/REFUSED move
//! on to the next server at once; a server marked down is still asked, so one
//! recovery is noticed on the very next query, but while every server is down
//! only `max_inflight_down` lookups ask and the rest fail at once; `parallel`
//! asks every server at once; `ordered` waits `attempt_timeout` before the next server.
//!
//! Every test sets the strategy it tests: `test_config` defaults to `ordered`.
//! Each upstream answers with its own address, so a reply says who answered.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ::punctual::config::{Config, Strategy};
use common::punctual::{TEST_DEADLINE, start_with, test_config};
use common::*;
use hickory_proto::op::ResponseCode;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep};

/// A deadline long enough that it never decides a test by accident.
const LONG_DEADLINE: Duration = Duration::from_secs(1);
/// Slack after a deadline for the response to be written and read back.
const LATE_MARGIN: Duration = Duration::from_millis(100);
/// The address upstream A answers with.
const IP_A: &str = "192.0.2.1";
/// The address upstream B answers with.
const IP_B: &str = "192.0.2.2";

/// Two fake upstreams on 127.0.0.`a` and 127.0.0.`b`.
async fn pair(a: u8, b: u8) -> (FakeUpstream, FakeUpstream) {
    (
        FakeUpstream::start(loopback(a)).await,
        FakeUpstream::start(loopback(b)).await,
    )
}

/// A config asking `a` then `b` with `strategy` and a 1 s deadline.
fn config(a: &FakeUpstream, b: &FakeUpstream, strategy: Strategy) -> Config {
    let mut config = test_config(&[a.addr(), b.addr()]);
    config.upstream.servers = vec![a.addr().into(), b.addr().into()];
    config.upstream.strategy = strategy;
    config.limits.deadline = LONG_DEADLINE;
    config
}

/// Adds `name` to both upstreams, each with its own address.
fn add_both(a: &FakeUpstream, b: &FakeUpstream, name: &str) {
    a.add_a(name, IP_A, 300);
    b.add_a(name, IP_B, 300);
}

/// Adds a fresh name to both upstreams and asks for it.
async fn ask_new(a: &FakeUpstream, b: &FakeUpstream, server: SocketAddr, name: &str) -> Reply {
    add_both(a, b, name);
    ask(server, name).await
}

/// Waits up to 200 ms for `upstream` to have received `want` queries.
async fn wait_for_queries(upstream: &FakeUpstream, want: usize) -> usize {
    let until = Instant::now() + Duration::from_millis(200);
    while upstream.queries() < want && Instant::now() < until {
        sleep(Duration::from_millis(2)).await;
    }
    upstream.queries()
}

/// `fastest`: with A answering at once and B after 20 ms, nearly every query
/// goes to A; B sees only the probes (one lookup in 20) and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fastest_prefers_the_fastest_server() {
    let (a, b) = pair(200, 201).await;
    b.set_behavior(Behavior::Delay(Duration::from_millis(20)));
    let server = start_with(config(&a, &b, Strategy::Fastest)).await;

    // Warm-up: both servers get measured (an unmeasured server is asked first).
    for i in 0..10 {
        let reply = ask_new(&a, &b, server.udp, &format!("w{i}.fastest.sel.test")).await;
        assert_eq!(reply.message.response_code, ResponseCode::NoError);
    }
    a.reset_counters();
    b.reset_counters();

    let mut from_a = 0;
    for i in 0..100 {
        let reply = ask_new(&a, &b, server.udp, &format!("q{i}.fastest.sel.test")).await;
        assert_eq!(
            reply.message.response_code,
            ResponseCode::NoError,
            "q{i}: {:?}",
            reply.message
        );
        let ips = answer_ips(&reply.message);
        if ips == [IP_A.parse::<IpAddr>().expect("test IP")] {
            from_a += 1;
        }
    }
    // Probes may still be in flight to B (20 ms late): let them land.
    sleep(Duration::from_millis(50)).await;
    let (to_a, to_b) = (a.queries(), b.queries());
    assert!(
        from_a >= 95,
        "only {from_a} of 100 answers came from the fast server"
    );
    assert!(to_a >= 95, "the fast server got only {to_a} of 100 queries");
    // 100 lookups hold exactly 5 probes (every 20th); allow one spurious hedge.
    assert!(
        (4..=6).contains(&to_b),
        "the slow server got {to_b} queries, want the ~5 probes"
    );
    assert!(to_a + to_b <= 106, "A {to_a} + B {to_b} upstream queries");
    server.stop().await;
}

/// `fastest`: when the fast server starts to hang, each query is hedged to the
/// other after the fast one's RTO (50 ms, the clamp: its RTT is tiny), and after
/// three consecutive timeouts it is marked down and B is asked first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fastest_hedges_when_the_fastest_hangs_then_marks_it_down() {
    let (a, b) = pair(202, 203).await;
    b.set_behavior(Behavior::Delay(Duration::from_millis(10)));
    let server = start_with(config(&a, &b, Strategy::Fastest)).await;
    for i in 0..10 {
        let reply = ask_new(&a, &b, server.udp, &format!("w{i}.hedge.sel.test")).await;
        assert_eq!(reply.message.response_code, ResponseCode::NoError);
    }

    a.set_behavior(Behavior::Hang);
    a.reset_counters();
    let mut elapsed = Vec::new();
    let mut a_after_down = 0;
    for i in 0..20 {
        let before = a.queries();
        let reply = ask_new(&a, &b, server.udp, &format!("q{i}.hedge.sel.test")).await;
        assert_answer(&reply, IP_B);
        // A's RTO (50 ms) + B's 10 ms + margin.
        assert!(
            reply.elapsed < Duration::from_millis(150),
            "q{i} took {:?}: not hedged at A's RTO",
            reply.elapsed
        );
        if i >= 3 {
            a_after_down += a.queries() - before;
        }
        elapsed.push(reply.elapsed);
    }
    // The first queries wait out A's RTO: hedged, not answered at once.
    assert!(
        elapsed[0] >= Duration::from_millis(50),
        "q0 answered after {:?}, before A's 50 ms RTO",
        elapsed[0]
    );
    // After 3 timeouts A is down for 1 s: B first, so no wait for A's RTO.
    let fast = elapsed[3..]
        .iter()
        .filter(|e| **e < Duration::from_millis(30))
        .count();
    assert!(
        fast >= 15,
        "only {fast} of the 17 queries after A went down took < 30 ms: {elapsed:?}"
    );
    // A down still gets the probe (one lookup in 20) but nothing else.
    assert!(
        a_after_down <= 2,
        "A got {a_after_down} queries after it was marked down: {elapsed:?}"
    );
    server.stop().await;
}

/// `ordered`: SERVFAIL or REFUSED from the first server moves on to the second
/// at once (not after `attempt_timeout`); both SERVFAIL is passed on at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servfail_or_refused_moves_on_at_once() {
    let (a, b) = pair(204, 205).await;
    let mut config = config(&a, &b, Strategy::Ordered);
    // Far from the 50 ms bound, so waiting for it would fail the test.
    config.limits.attempt_timeout = Duration::from_millis(500);
    let server = start_with(config).await;
    let quick = Duration::from_millis(50);

    for (case, behavior) in [
        ("servfail", Behavior::Servfail),
        ("refused", Behavior::Refused),
    ] {
        a.set_behavior(behavior);
        a.reset_counters();
        b.reset_counters();
        let reply = ask_new(&a, &b, server.udp, &format!("{case}.sel.test")).await;
        assert_answer(&reply, IP_B);
        assert!(
            reply.elapsed < quick,
            "{case}: answered after {:?}, want < {quick:?}",
            reply.elapsed
        );
        assert_eq!(
            (a.queries(), b.queries()),
            (1, 1),
            "{case}: A and B queries"
        );
    }

    a.set_behavior(Behavior::Servfail);
    b.set_behavior(Behavior::Servfail);
    a.reset_counters();
    b.reset_counters();
    let reply = ask_new(&a, &b, server.udp, "both-servfail.sel.test").await;
    assert_eq!(
        reply.message.response_code,
        ResponseCode::ServFail,
        "{:?}",
        reply.message
    );
    assert!(
        reply.elapsed < quick,
        "both SERVFAIL: answered after {:?}, want < {quick:?}",
        reply.elapsed
    );
    assert_eq!((a.queries(), b.queries()), (1, 1), "both SERVFAIL: queries");
    server.stop().await;
}

/// `fastest`: both servers hang until both are marked down; then B heals and
/// the very next query is answered by it within the deadline (down only moves
/// a server back, it never excludes it), and one answer restores B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_marked_down_is_asked_and_recovers_at_once() {
    let (a, b) = pair(206, 207).await;
    a.set_behavior(Behavior::Hang);
    b.set_behavior(Behavior::Hang);
    let mut config = config(&a, &b, Strategy::Fastest);
    config.limits.deadline = TEST_DEADLINE;
    config.limits.attempt_timeout = Duration::from_millis(100);
    config.cache.failure_ttl = Duration::ZERO;
    let server = start_with(config).await;

    // Each lookup charges A a timeout at 100 ms and B at 200 ms (the RTO is
    // attempt_timeout before any answer): three lookups mark both down.
    let mut lookups = JoinSet::new();
    for i in 0..3 {
        let name = format!("dead{i}.down.sel.test");
        add_both(&a, &b, &name);
        let addr = server.udp;
        lookups.spawn(async move { ask(addr, &name).await });
    }
    while let Some(reply) = lookups.join_next().await {
        let reply = reply.expect("client task");
        assert_eq!(
            reply.message.response_code,
            ResponseCode::ServFail,
            "{:?}",
            reply.message
        );
        let (code, text) = ede(&reply.message).expect("a SERVFAIL to an EDNS query has an EDE");
        assert_eq!(code, EDE_NO_REACHABLE_AUTHORITY, "EDE (text {text:?})");
        assert!(
            reply.elapsed >= TEST_DEADLINE && reply.elapsed < TEST_DEADLINE + LATE_MARGIN,
            "failed after {:?}, want at the {TEST_DEADLINE:?} deadline",
            reply.elapsed
        );
    }
    assert!(a.queries() >= 3 && b.queries() >= 3, "both were asked");

    b.set_behavior(Behavior::Answer);
    let reply = ask_new(&a, &b, server.udp, "healed.down.sel.test").await;
    assert_answer(&reply, IP_B);
    assert!(
        reply.elapsed < TEST_DEADLINE,
        "the healed server answered after {:?}, want within the {TEST_DEADLINE:?} deadline",
        reply.elapsed
    );
    // B answered once: no longer down, and measured fast, so it comes first.
    let reply = ask_new(&a, &b, server.udp, "after.down.sel.test").await;
    assert_answer(&reply, IP_B);
    assert!(
        reply.elapsed < Duration::from_millis(50),
        "after one answer B is still behind A: {:?}",
        reply.elapsed
    );
    server.stop().await;
}

/// Asks for `names` at once; returns the replies in the same order.
async fn ask_all(server: SocketAddr, names: &[String]) -> Vec<Reply> {
    let mut asks = JoinSet::new();
    for (i, name) in names.iter().enumerate() {
        let name = name.clone();
        asks.spawn(async move { (i, ask(server, &name).await) });
    }
    let mut replies: Vec<Option<Reply>> = names.iter().map(|_| None).collect();
    while let Some(done) = asks.join_next().await {
        let (i, reply) = done.expect("client task");
        replies[i] = Some(reply);
    }
    replies.into_iter().flatten().collect()
}

/// Marks the one upstream of `server` down: with `ordered` and one server
/// each lookup charges one timeout (at attempt_timeout), so three concurrent
/// lookups make the three consecutive timeouts.
async fn mark_down(server: SocketAddr, upstream: &FakeUpstream, round: &str) {
    let names: Vec<String> = (0..3)
        .map(|i| format!("dead{i}.{round}.slots.test"))
        .collect();
    for name in &names {
        upstream.add_a(name, IP_A, 300);
    }
    for reply in ask_all(server, &names).await {
        assert_eq!(reply.message.response_code, ResponseCode::ServFail);
    }
}

/// While every server is down, `max_inflight_down` lookups still ask and any
/// more fail at once with EDE 22, so a hung upstream holds a bounded number of
/// lookups; those that ask notice the recovery with their next retransmission,
/// and one answer lets everything through again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_every_server_is_down_only_max_inflight_down_lookups_ask() {
    const SLOTS: usize = 2;
    let upstream = FakeUpstream::start(loopback(210)).await;
    upstream.set_behavior(Behavior::Hang);
    let mut config = test_config(&[upstream.addr()]);
    config.limits.max_inflight_down = SLOTS;
    config.cache.failure_ttl = Duration::ZERO;
    let server = start_with(config).await;
    mark_down(server.udp, &upstream, "first").await;

    // Down (for 1 s): six new names at once, two get a slot and wait.
    let names: Vec<String> = (0..6).map(|i| format!("n{i}.while.slots.test")).collect();
    let asked_before = upstream.queries();
    let replies = ask_all(server.udp, &names).await;
    let mut waited = 0;
    for reply in &replies {
        assert_eq!(reply.message.response_code, ResponseCode::ServFail);
        let (code, text) = ede(&reply.message).expect("a SERVFAIL to an EDNS query has an EDE");
        assert_eq!(code, EDE_NO_REACHABLE_AUTHORITY, "EDE (text {text:?})");
        if reply.elapsed >= TEST_DEADLINE {
            assert!(
                reply.elapsed < TEST_DEADLINE + LATE_MARGIN,
                "{:?}",
                reply.elapsed
            );
            waited += 1;
        } else {
            assert!(
                reply.elapsed < AT_ONCE,
                "neither at once nor at the deadline: {:?}",
                reply.elapsed
            );
            assert_eq!(text, "every upstream server is down");
        }
    }
    assert_eq!(waited, SLOTS, "lookups that waited for the upstream");
    let metrics = server.stats.metrics();
    assert_eq!(
        metrics.upstream_down_answers.get(),
        (names.len() - SLOTS) as u64
    );
    // Only the slot holders reached the upstream: an attempt at 0 and 100 ms
    // each, and one due at 300 ms can race the deadline that ends the lookup.
    let asked = upstream.queries() - asked_before;
    assert!(
        (SLOTS..=3 * SLOTS).contains(&asked),
        "{asked} upstream queries"
    );

    // Healed with the slots free: the next lookup takes one, is answered, and
    // the server is up again for everyone.
    upstream.set_behavior(Behavior::Answer);
    let healed = "healed.slots.test".to_owned();
    upstream.add_a(&healed, IP_A, 300);
    let reply = ask(server.udp, &healed).await;
    assert_answer(&reply, IP_A);
    let names: Vec<String> = (0..6).map(|i| format!("n{i}.up.slots.test")).collect();
    for name in &names {
        upstream.add_a(name, IP_A, 300);
    }
    for reply in ask_all(server.udp, &names).await {
        assert_answer(&reply, IP_A);
        assert!(reply.elapsed < AT_ONCE, "{:?}", reply.elapsed);
    }

    // Down again, and healed while both slots are held: their retransmission
    // (at attempt_timeout) is answered, which ends the outage for the rest.
    upstream.set_behavior(Behavior::Hang);
    mark_down(server.udp, &upstream, "second").await;
    let names: Vec<String> = (0..SLOTS)
        .map(|i| format!("n{i}.held.slots.test"))
        .collect();
    for name in &names {
        upstream.add_a(name, IP_A, 300);
    }
    let addr = server.udp;
    let held = tokio::spawn(async move { ask_all(addr, &names).await });
    sleep(Duration::from_millis(20)).await;
    upstream.set_behavior(Behavior::Answer);
    for reply in held.await.expect("client task") {
        assert_answer(&reply, IP_A);
        assert!(reply.elapsed < TEST_DEADLINE, "{:?}", reply.elapsed);
    }
    let after = "after.slots.test".to_owned();
    upstream.add_a(&after, IP_A, 300);
    let reply = ask(server.udp, &after).await;
    assert_answer(&reply, IP_A);
    assert!(reply.elapsed < AT_ONCE, "{:?}", reply.elapsed);
    server.stop().await;
}

/// `parallel`: every server gets the first query at once; the first answer wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_asks_every_server_at_once() {
    let (a, b) = pair(208, 209).await;
    a.set_behavior(Behavior::Delay(Duration::from_millis(30)));
    let server = start_with(config(&a, &b, Strategy::Parallel)).await;
    let reply = ask_new(&a, &b, server.udp, "q0.parallel.sel.test").await;
    assert_answer(&reply, IP_B);
    assert!(
        reply.elapsed < Duration::from_millis(25),
        "answered after {:?}: B was not asked at once",
        reply.elapsed
    );
    assert_eq!(wait_for_queries(&a, 1).await, 1, "A queries");
    assert_eq!(b.queries(), 1, "B queries");
    server.stop().await;
}

/// `ordered`: with A silent, B is asked after `attempt_timeout` (100 ms).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_asks_the_next_after_attempt_timeout() {
    let (a, b) = pair(210, 211).await;
    a.set_behavior(Behavior::Hang);
    let mut config = config(&a, &b, Strategy::Ordered);
    let attempt_timeout = Duration::from_millis(100);
    config.limits.attempt_timeout = attempt_timeout;
    let server = start_with(config).await;
    let reply = ask_new(&a, &b, server.udp, "q0.ordered.sel.test").await;
    assert_answer(&reply, IP_B);
    assert!(
        reply.elapsed >= attempt_timeout && reply.elapsed < attempt_timeout * 2,
        "answered after {:?}, want in [{attempt_timeout:?}, {:?})",
        reply.elapsed,
        attempt_timeout * 2
    );
    assert_eq!((a.queries(), b.queries()), (1, 1), "A and B queries");
    server.stop().await;
}
