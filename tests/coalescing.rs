//! Coalescing, end to end over loopback UDP: identical questions in flight share
//! one upstream lookup and every asker gets the answer under its own ID and
//! letter case; a waiter whose deadline passes leaves its lookup at once while
//! later askers still get the late answer; `max_inflight` and `max_waiters`
//! shed with SERVFAIL "overloaded" at once instead of queueing; and questions
//! that differ in type, DO or CD are never merged.

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use ::punctual::config::Config;
use ::punctual::inflight::InflightGauges;
use common::punctual::{TEST_DEADLINE, TestServer, core_config, start_with, test_config};
use common::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use tokio::net::UdpSocket;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, timeout_at};

/// How long a test client waits at most: far past any deadline, so a missing
/// reply fails as a timeout instead of hanging the test.
const CLIENT_LIMIT: Duration = Duration::from_secs(2);
/// Slack after a deadline for the response to be written and read back.
const LATE_MARGIN: Duration = Duration::from_millis(100);
const IDLE: InflightGauges = InflightGauges {
    lookups: 0,
    waiters: 0,
};

/// Queries with EDNS, so failures carry their Extended DNS Error.
fn edns() -> QueryOpts {
    QueryOpts::default().with_edns(1232)
}

async fn ask(server: SocketAddr, name: &str, rtype: RecordType, opts: QueryOpts) -> Reply {
    query_udp(server, name, rtype, &opts, CLIENT_LIMIT)
        .await
        .unwrap_or_else(|e| panic!("{name} {rtype}: no reply from punctual: {e}"))
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

/// A NOERROR answer to `name` carrying exactly `ip`, with the asker's question
/// echoed byte for byte.
fn assert_answer(reply: &Reply, name: &str, rtype: RecordType, ip: &str) {
    assert_eq!(
        reply.message.response_code,
        ResponseCode::NoError,
        "{name}: {:?}",
        reply.message
    );
    let ips: Vec<String> = answer_ips(&reply.message)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(ips, [ip], "{name} {rtype}");
    let question = wire_question(name, rtype);
    assert_eq!(
        reply.bytes.get(12..12 + question.len()),
        Some(&question[..]),
        "{name}: the question must come back exactly as asked"
    );
}

fn assert_servfail(reply: &Reply, code: u16, text: Option<&str>) {
    assert_eq!(
        reply.message.response_code,
        ResponseCode::ServFail,
        "{:?}",
        reply.message
    );
    let (got, got_text) = ede(&reply.message).expect("a SERVFAIL to an EDNS query carries an EDE");
    assert_eq!(got, code, "EDE code (text {got_text:?})");
    if let Some(text) = text {
        assert_eq!(got_text, text);
    }
}

/// Polls the in-flight gauges until they equal `want`; panics after a second.
async fn wait_for_gauges(server: &TestServer, want: InflightGauges) {
    let give_up = Instant::now() + Duration::from_secs(1);
    while server.stats.inflight() != want {
        assert!(
            Instant::now() < give_up,
            "in-flight gauges stuck at {:?}, want {want:?}",
            server.stats.inflight()
        );
        sleep(Duration::from_millis(1)).await;
    }
}

/// The test config with retransmission pushed out to the deadline, so an
/// upstream that answers within it is asked exactly once per lookup.
fn one_attempt_config(upstream: SocketAddr) -> Config {
    let mut config = core_config(&[upstream]);
    config.limits.attempt_timeout = TEST_DEADLINE;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_identical_queries_make_one_upstream_query() {
    const CLIENTS: usize = 500;
    const NAME: &str = "herd.coalesce.test";
    let upstream = FakeUpstream::start(loopback(80)).await;
    upstream.add_a(NAME, "192.0.2.80", 300);
    upstream.set_behavior(Behavior::Delay(Duration::from_millis(150)));
    let server = start_with(one_attempt_config(upstream.addr())).await;

    // Bind every client socket first, then send all queries in one tight loop, so
    // they all arrive well inside the upstream's 150 ms. Distinct IDs (random ones
    // may repeat), so a reply with another waiter's ID cannot pass for its own.
    let mut clients = Vec::with_capacity(CLIENTS);
    for i in 0..CLIENTS {
        let socket = UdpSocket::bind(local_bind_addr(server.udp))
            .await
            .expect("bind client socket");
        let id = 0x4000 + u16::try_from(i).expect("fewer than 2^16 clients");
        let opts = QueryOpts::default().with_id(id);
        clients.push((socket, opts.id, build_query(NAME, RecordType::A, &opts)));
    }
    let mut replies = JoinSet::new();
    for (socket, id, query) in clients {
        let sent = Instant::now();
        socket
            .send_to(&query, server.udp)
            .await
            .expect("send query");
        let from = server.udp;
        replies.spawn(async move {
            let mut buf = vec![0u8; 4096];
            let (len, peer) = timeout_at(sent + CLIENT_LIMIT, socket.recv_from(&mut buf))
                .await
                .expect("a reply before the client gives up")
                .expect("recv");
            assert_eq!(peer, from);
            buf.truncate(len);
            (id, buf, sent.elapsed())
        });
    }
    let mut reply_ids = HashSet::with_capacity(CLIENTS);
    while let Some(joined) = replies.join_next().await {
        let (id, bytes, elapsed) = joined.expect("client task");
        let message = hickory_proto::op::Message::from_vec(&bytes).expect("reply decodes");
        assert_eq!(message.id, id, "each client gets its own ID back");
        reply_ids.insert(message.id);
        let reply = Reply {
            message,
            bytes,
            elapsed,
        };
        assert_answer(&reply, NAME, RecordType::A, "192.0.2.80");
        assert!(elapsed < TEST_DEADLINE, "answered after {elapsed:?}");
    }
    assert_eq!(
        reply_ids.len(),
        CLIENTS,
        "one reply per client, each with its own ID"
    );

    assert_eq!(
        upstream.queries_for(NAME),
        1,
        "one upstream query for 500 askers"
    );
    let metrics = server.stats.metrics();
    assert_eq!(metrics.lookups_started.get(), 1);
    assert_eq!(metrics.coalesced_joins.get(), CLIENTS as u64 - 1);
    assert_eq!(metrics.abandoned_waiters.get(), 0);
    assert_eq!(metrics.responses_by_rcode[0].get(), CLIENTS as u64);
    assert_eq!(server.stats.inflight(), IDLE);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiter_past_its_deadline_leaves_and_a_later_waiter_gets_the_late_answer() {
    const NAME: &str = "late.coalesce.test";
    let upstream = FakeUpstream::start(loopback(81)).await;
    upstream.add_a(NAME, "192.0.2.81", 300);
    upstream.set_behavior(Behavior::Delay(Duration::from_millis(450)));
    let server = start_with(one_attempt_config(upstream.addr())).await;

    let start = Instant::now();
    let first = tokio::spawn(ask(server.udp, NAME, RecordType::A, edns()));
    sleep(Duration::from_millis(200)).await;
    let second_sent = start.elapsed();
    let second = tokio::spawn(ask(server.udp, NAME, RecordType::A, edns()));

    let first = first.await.expect("first client");
    // Read at once: the waiter left the table before its response was written.
    let gauges = server.stats.inflight();
    let abandoned = server.stats.metrics().abandoned_waiters.get();
    assert_servfail(&first, 22, None);
    assert!(
        first.elapsed >= TEST_DEADLINE && first.elapsed < TEST_DEADLINE + LATE_MARGIN,
        "first asker answered after {:?}",
        first.elapsed
    );
    assert_eq!(
        gauges,
        InflightGauges {
            lookups: 1,
            waiters: 1
        },
        "the lookup lives on for the second asker"
    );
    assert_eq!(abandoned, 1);

    let second = second.await.expect("second client");
    assert_answer(&second, NAME, RecordType::A, "192.0.2.81");
    let answered_at = second_sent + second.elapsed;
    assert!(
        answered_at >= Duration::from_millis(450)
            && answered_at < Duration::from_millis(450) + LATE_MARGIN,
        "second asker answered {answered_at:?} after the first was sent"
    );
    assert!(
        second.elapsed < TEST_DEADLINE,
        "second asker past its own deadline: {:?}",
        second.elapsed
    );

    let metrics = server.stats.metrics();
    assert_eq!(
        metrics.lookups_started.get(),
        1,
        "the second asker joined, it did not start afresh"
    );
    assert_eq!(metrics.coalesced_joins.get(), 1);
    assert_eq!(metrics.lookups_cancelled.get(), 0);
    // attempt_timeout cannot exceed the deadline (config validation), so the lookup
    // that outlives its first asker retransmits once, at 300 ms, before the first
    // attempt's reply arrives at 450 ms. Two packets, one lookup.
    assert_eq!(upstream.queries_for(NAME), 2);
    assert_eq!(server.stats.inflight(), IDLE);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_inflight_sheds_new_names_at_once_and_service_resumes() {
    let upstream = FakeUpstream::start(loopback(82)).await;
    for (name, ip) in [
        ("one.full.test", "192.0.2.1"),
        ("two.full.test", "192.0.2.2"),
        ("three.full.test", "192.0.2.3"),
    ] {
        upstream.add_a(name, ip, 300);
    }
    upstream.set_behavior(Behavior::Hang);
    let mut config = test_config(&[upstream.addr()]);
    config.limits.max_inflight = 2;
    let server = start_with(config).await;

    let mut hung = JoinSet::new();
    for name in ["one.full.test", "two.full.test"] {
        hung.spawn(ask(server.udp, name, RecordType::A, edns()));
    }
    wait_for_gauges(
        &server,
        InflightGauges {
            lookups: 2,
            waiters: 2,
        },
    )
    .await;

    let shed = ask(server.udp, "three.full.test", RecordType::A, edns()).await;
    assert_servfail(&shed, 0, Some("overloaded"));
    assert!(
        shed.elapsed < AT_ONCE,
        "overloaded answer took {:?}",
        shed.elapsed
    );
    assert_eq!(server.stats.metrics().overload_answers.get(), 1);
    assert_eq!(
        upstream.queries_for("three.full.test"),
        0,
        "a shed query never goes upstream"
    );
    // The limit counts lookups, not queries: another asker of a name in flight joins.
    hung.spawn(ask(server.udp, "one.full.test", RecordType::A, edns()));
    wait_for_gauges(
        &server,
        InflightGauges {
            lookups: 2,
            waiters: 3,
        },
    )
    .await;
    assert_eq!(server.stats.metrics().overload_answers.get(), 1);

    while let Some(reply) = hung.join_next().await {
        let reply = reply.expect("hung client");
        assert_servfail(&reply, 22, None);
        assert!(
            reply.elapsed >= TEST_DEADLINE && reply.elapsed < TEST_DEADLINE + LATE_MARGIN,
            "hung query answered after {:?}",
            reply.elapsed
        );
    }
    assert_eq!(server.stats.inflight(), IDLE);

    upstream.set_behavior(Behavior::Answer);
    let reply = ask(server.udp, "three.full.test", RecordType::A, edns()).await;
    assert_answer(&reply, "three.full.test", RecordType::A, "192.0.2.3");
    assert!(reply.elapsed < AT_ONCE, "took {:?}", reply.elapsed);
    assert_eq!(server.stats.metrics().overload_answers.get(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_waiters_sheds_the_extra_asker_and_the_others_get_the_answer() {
    const NAME: &str = "crowd.waiters.test";
    let upstream = FakeUpstream::start(loopback(83)).await;
    upstream.add_a(NAME, "192.0.2.83", 300);
    upstream.add_a("other.waiters.test", "192.0.2.84", 300);
    upstream.set_behavior(Behavior::Delay(Duration::from_millis(200)));
    let mut config = one_attempt_config(upstream.addr());
    config.limits.max_waiters = 3;
    let server = start_with(config).await;

    let start = Instant::now();
    let mut waiting = JoinSet::new();
    for _ in 0..3 {
        waiting.spawn(ask(server.udp, NAME, RecordType::A, edns()));
    }
    wait_for_gauges(
        &server,
        InflightGauges {
            lookups: 1,
            waiters: 3,
        },
    )
    .await;

    let shed = ask(server.udp, NAME, RecordType::A, edns()).await;
    assert_servfail(&shed, 0, Some("overloaded"));
    assert!(
        shed.elapsed < AT_ONCE,
        "overloaded answer took {:?}",
        shed.elapsed
    );
    assert!(
        start.elapsed() < Duration::from_millis(200),
        "the test was too slow to shed before the answer"
    );
    // The limit is per lookup: another name is served meanwhile.
    let other = ask(server.udp, "other.waiters.test", RecordType::A, edns()).await;
    assert_answer(&other, "other.waiters.test", RecordType::A, "192.0.2.84");

    while let Some(reply) = waiting.join_next().await {
        let reply = reply.expect("waiting client");
        assert_answer(&reply, NAME, RecordType::A, "192.0.2.83");
        assert!(reply.elapsed < TEST_DEADLINE, "took {:?}", reply.elapsed);
    }
    let metrics = server.stats.metrics();
    assert_eq!(metrics.overload_answers.get(), 1);
    assert_eq!(metrics.coalesced_joins.get(), 2);
    assert_eq!(upstream.queries_for(NAME), 1);
    assert_eq!(server.stats.inflight(), IDLE);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn type_do_and_cd_split_lookups_but_letter_case_does_not() {
    const NAME: &str = "split.coalesce.test";
    let upstream = FakeUpstream::start(loopback(84)).await;
    upstream.add_a(NAME, "192.0.2.85", 300);
    upstream.add_aaaa(NAME, "2001:db8::85", 300);
    upstream.set_behavior(Behavior::Delay(Duration::from_millis(150)));
    let server = start_with(one_attempt_config(upstream.addr())).await;

    // Four questions in flight at once that must not share a lookup.
    let variants = [
        (RecordType::A, edns(), "192.0.2.85"),
        (RecordType::AAAA, edns(), "2001:db8::85"),
        (RecordType::A, edns().with_dnssec_ok(), "192.0.2.85"),
        (RecordType::A, edns().with_checking_disabled(), "192.0.2.85"),
    ];
    let mut split = JoinSet::new();
    for (rtype, opts, ip) in variants {
        let udp = server.udp;
        split.spawn(async move { (rtype, ip, ask(udp, NAME, rtype, opts).await) });
    }
    while let Some(joined) = split.join_next().await {
        let (rtype, ip, reply) = joined.expect("client");
        assert_answer(&reply, NAME, rtype, ip);
    }
    assert_eq!(
        upstream.queries_for(NAME),
        4,
        "type, DO and CD each need their own upstream query"
    );
    assert_eq!(server.stats.metrics().lookups_started.get(), 4);
    assert_eq!(server.stats.metrics().coalesced_joins.get(), 0);

    // Three spellings of one name at once: one lookup, each asker its own case.
    const CASE_NAME: &str = "case.coalesce.test";
    upstream.add_a(CASE_NAME, "192.0.2.86", 300);
    let spellings = [
        "case.coalesce.test",
        "CASE.COALESCE.TEST",
        "cAsE.CoAlEsCe.tEsT",
    ];
    let mut cased = JoinSet::new();
    for spelling in spellings {
        let udp = server.udp;
        cased.spawn(async move { (spelling, ask(udp, spelling, RecordType::A, edns()).await) });
    }
    while let Some(joined) = cased.join_next().await {
        let (spelling, reply) = joined.expect("client");
        assert_answer(&reply, spelling, RecordType::A, "192.0.2.86");
    }
    assert_eq!(
        upstream.queries_for(CASE_NAME),
        1,
        "letter case must not split a lookup"
    );
    assert_eq!(server.stats.metrics().lookups_started.get(), 5);
    assert_eq!(server.stats.metrics().coalesced_joins.get(), 2);
    assert_eq!(server.stats.inflight(), IDLE);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_lookup_is_removed_and_a_retry_starts_afresh() {
    const NAME: &str = "retry.coalesce.test";
    let upstream = FakeUpstream::start(loopback(85)).await;
    upstream.add_a(NAME, "192.0.2.87", 300);
    upstream.set_behavior(Behavior::Delay(Duration::from_millis(450)));
    let server = start_with(one_attempt_config(upstream.addr())).await;

    let first = ask(server.udp, NAME, RecordType::A, edns()).await;
    // Read at once: the waiter left, and with it the lookup's last waiter.
    let gauges = server.stats.inflight();
    let cancelled = server.stats.metrics().lookups_cancelled.get();
    assert_servfail(&first, 22, None);
    assert!(
        first.elapsed >= TEST_DEADLINE && first.elapsed < TEST_DEADLINE + LATE_MARGIN,
        "answered after {:?}",
        first.elapsed
    );
    assert_eq!(gauges, IDLE, "a lookup nobody waits for leaves the table");
    assert_eq!(cancelled, 1);

    // A client retrying on the SERVFAIL (as glibc does) finds no lookup to join:
    // it starts a new one, and the first lookup's answer (due at 450 ms) is never
    // read, so it is not cached either.
    let retry = ask(server.udp, NAME, RecordType::A, edns()).await;
    assert_servfail(&retry, 22, None);
    assert!(
        retry.elapsed >= TEST_DEADLINE && retry.elapsed < TEST_DEADLINE + LATE_MARGIN,
        "retry answered after {:?}",
        retry.elapsed
    );
    let metrics = server.stats.metrics();
    assert_eq!(metrics.lookups_started.get(), 2);
    assert_eq!(metrics.coalesced_joins.get(), 0);
    assert_eq!(metrics.lookups_cancelled.get(), 2);
    // One packet per lookup, plus perhaps a retransmission each: with
    // attempt_timeout = deadline it falls due in the same millisecond as the
    // waiter's deadline, and either timer may fire first.
    let sent = upstream.queries_for(NAME);
    assert!((2..=4).contains(&sent), "{sent} upstream queries");
    assert_eq!(server.stats.cache_entries(), 0);
    assert_eq!(server.stats.inflight(), IDLE);
    server.stop().await;
}
