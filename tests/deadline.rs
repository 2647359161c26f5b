//! The deadline promise, end to end over loopback: whatever the upstream does
//! (hang, refuse the port, send garbage, drip TCP, spoof, answer twice) every
//! client query is answered by its deadline, the in-flight table empties behind
//! it, nothing bad is cached, and shutdown answers the clients still waiting
//! before it frees the port within a bounded time.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ::punctual::config::Config;
use ::punctual::inflight::InflightGauges;
use common::punctual::{TEST_DEADLINE, core_config, start_with, test_config};
use common::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use tokio::net::UdpSocket;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, timeout_at};

/// Slack after a deadline for the response to be written and read back.
const LATE_MARGIN: Duration = Duration::from_millis(100);
const IDLE: InflightGauges = InflightGauges {
    lookups: 0,
    waiters: 0,
};

fn assert_servfail(reply: &Reply, code: u16) {
    assert_eq!(
        reply.message.response_code,
        ResponseCode::ServFail,
        "{:?}",
        reply.message
    );
    let (got, text) = ede(&reply.message).expect("a SERVFAIL to an EDNS query carries an EDE");
    assert_eq!(got, code, "EDE code (text {text:?})");
}

/// Answered no earlier than the deadline (nothing gave up early) and no later
/// than the deadline plus the margin, counted from the client's send.
fn assert_at_deadline(reply: &Reply) {
    assert!(
        reply.elapsed >= TEST_DEADLINE && reply.elapsed < TEST_DEADLINE + LATE_MARGIN,
        "answered after {:?}, want [{TEST_DEADLINE:?}, {:?})",
        reply.elapsed,
        TEST_DEADLINE + LATE_MARGIN
    );
}

/// The test config with retransmission pushed out to the deadline, so an
/// upstream that answers within it is asked exactly once, however loaded the
/// machine.
fn one_attempt_config(upstream: SocketAddr) -> Config {
    let mut config = core_config(&[upstream]);
    config.limits.attempt_timeout = TEST_DEADLINE;
    config
}

/// Sends one query per entry of `names` (each from its own socket, with its own
/// random ID) in one tight loop, then collects every reply. Each elapsed time runs
/// from just before that query's send to its reply's receipt. Decoding waits until
/// all replies are in, so the clients burn no CPU while punctual answers.
async fn send_burst(server: SocketAddr, names: &[&str]) -> Vec<Reply> {
    let mut clients = Vec::with_capacity(names.len());
    for name in names {
        let socket = UdpSocket::bind(local_bind_addr(server))
            .await
            .expect("bind client socket");
        let opts = edns();
        clients.push((socket, opts.id, build_query(name, RecordType::A, &opts)));
    }
    let mut waiting = JoinSet::new();
    for (socket, id, query) in clients {
        let sent = Instant::now();
        socket.send_to(&query, server).await.expect("send query");
        waiting.spawn(async move {
            let mut buf = vec![0u8; 4096];
            let received = timeout_at(sent + CLIENT_LIMIT, socket.recv_from(&mut buf)).await;
            let elapsed = sent.elapsed();
            let (len, from) = received
                .expect("a reply before the client gives up")
                .expect("recv");
            assert_eq!(from, server, "reply from punctual's address");
            buf.truncate(len);
            (id, buf, elapsed)
        });
    }
    let mut replies = Vec::with_capacity(names.len());
    while let Some(joined) = waiting.join_next().await {
        let (id, bytes, elapsed) = joined.expect("client task");
        let message = Message::from_vec(&bytes).expect("reply decodes");
        assert_eq!(message.id, id, "each client gets its own ID back");
        replies.push(Reply {
            message,
            bytes,
            elapsed,
        });
    }
    replies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_upstream_a_thousand_queries_all_fail_at_their_deadline() {
    const NAMES: usize = 200;
    const PER_NAME: usize = 5;
    let upstream = FakeUpstream::start(loopback(87)).await;
    let names: Vec<String> = (0..NAMES).map(|i| format!("n{i}.hang.test")).collect();
    for name in &names {
        upstream.add_a(name, "192.0.2.87", 300);
    }
    upstream.set_behavior(Behavior::Hang);
    let server = start_with(core_config(&[upstream.addr()])).await;

    let mut burst = Vec::with_capacity(NAMES * PER_NAME);
    for _ in 0..PER_NAME {
        burst.extend(names.iter().map(String::as_str));
    }
    let replies = send_burst(server.udp, &burst).await;
    assert_eq!(replies.len(), NAMES * PER_NAME);
    let mut elapsed = Vec::with_capacity(replies.len());
    for reply in &replies {
        assert_servfail(reply, EDE_NO_REACHABLE_AUTHORITY);
        elapsed.push(reply.elapsed);
    }
    elapsed.sort();
    let (first, median, last) = (
        elapsed[0],
        elapsed[elapsed.len() / 2],
        elapsed[elapsed.len() - 1],
    );
    // Nobody is answered before its deadline, and all 1,000 within the margin,
    // though their expiries fall due together (the dev profile is optimised so
    // this measures punctual, not the debug build). A waiter held past its own
    // deadline (say until its lookup's 2-deadline lifetime) fails this at once.
    assert!(
        first >= TEST_DEADLINE,
        "answered after {first:?}, before the deadline"
    );
    assert!(
        last < TEST_DEADLINE + LATE_MARGIN,
        "slowest {last:?}, median {median:?}"
    );
    // Each waiter leaves the table before its response is written, so this holds
    // as soon as the last client has its answer; a few ms are allowed anyway.
    wait_idle(&server, Duration::from_millis(20)).await;

    let metrics = server.stats.metrics();
    assert_eq!(metrics.lookups_started.get(), NAMES as u64);
    assert_eq!(
        metrics.coalesced_joins.get(),
        (NAMES * (PER_NAME - 1)) as u64
    );
    assert_eq!(metrics.abandoned_waiters.get(), (NAMES * PER_NAME) as u64);
    assert_eq!(
        metrics.lookups_cancelled.get(),
        NAMES as u64,
        "every lookup ends with its last waiter"
    );
    assert_eq!(
        metrics.responses_by_rcode[2].get(),
        (NAMES * PER_NAME) as u64
    );
    assert_eq!(server.stats.cache_entries(), 0);
    // Attempts at 0, 100 and (racing the cancellation) 300 ms: at most 3 per name,
    // and no stray ones once the lookups are gone.
    sleep(Duration::from_millis(50)).await;
    for name in &names {
        let sent = upstream.queries_for(name);
        assert!((1..=3).contains(&sent), "{name}: {sent} upstream queries");
    }

    upstream.set_behavior(Behavior::Answer);
    let reply = ask(server.udp, &names[7]).await;
    assert_answer(&reply, "192.0.2.87");
    assert!(
        reply.elapsed < AT_ONCE,
        "first query after recovery took {:?}",
        reply.elapsed
    );
    server.stop().await;
}

/// RFC 3225 §3 and RFC 6891 §7: the SERVFAIL punctual writes itself when the
/// deadline passes carries an OPT (our payload, 1232) that echoes the client's
/// DO bit, set or clear, alongside its EDE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synthesized_servfail_echoes_the_clients_do_bit() {
    let upstream = FakeUpstream::start(loopback(231)).await;
    upstream.set_behavior(Behavior::Hang);
    let server = start_with(core_config(&[upstream.addr()])).await;

    let with_do = edns().with_dnssec_ok();
    let without_do = edns();
    let (a, b) = tokio::join!(
        query_udp(
            server.udp,
            "do.hang.test",
            RecordType::A,
            &with_do,
            CLIENT_LIMIT
        ),
        query_udp(
            server.udp,
            "nodo.hang.test",
            RecordType::A,
            &without_do,
            CLIENT_LIMIT
        ),
    );
    for (reply, dnssec_ok) in [(a, true), (b, false)] {
        let reply = reply.expect("a SERVFAIL by the deadline");
        assert_servfail(&reply, EDE_NO_REACHABLE_AUTHORITY);
        assert_at_deadline(&reply);
        let opt = reply.message.edns.as_ref().expect("OPT to an EDNS client");
        assert_eq!(opt.max_payload(), 1232);
        assert_eq!(opt.flags().dnssec_ok, dnssec_ok, "DO echoed as sent");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_upstream_port_fails_fast_with_network_error() {
    // A port nobody listens on: bind, note it, close it.
    let closed = std::net::UdpSocket::bind(SocketAddr::new(loopback(88), 0))
        .expect("bind a probe socket")
        .local_addr()
        .expect("probe address");
    let server = start_with(core_config(&[closed])).await;

    for round in 1..=2u64 {
        let reply = ask(server.udp, "closed.port.test").await;
        assert_servfail(&reply, EDE_NETWORK_ERROR);
        assert!(
            reply.elapsed < TEST_DEADLINE / 3,
            "ICMP port unreachable should fail at once, took {:?}",
            reply.elapsed
        );
        // Nothing is cached or left behind: the next query starts afresh.
        assert_eq!(server.stats.metrics().lookups_started.get(), round);
        assert_eq!(server.stats.metrics().lookup_network_errors.get(), round);
        wait_idle(&server, Duration::from_millis(20)).await;
    }
    assert_eq!(server.stats.cache_entries(), 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_from_upstream_is_ignored_until_the_deadline() {
    const NAME: &str = "garbage.deadline.test";
    let upstream = FakeUpstream::start(loopback(89)).await;
    upstream.add_a(NAME, "192.0.2.89", 300);
    upstream.set_behavior(Behavior::Garbage);
    let server = start_with(core_config(&[upstream.addr()])).await;

    let reply = ask(server.udp, NAME).await;
    assert_servfail(&reply, EDE_NO_REACHABLE_AUTHORITY);
    assert_at_deadline(&reply);
    // Three bad datagrams per attempt; at least the first attempt's arrived.
    let ignored = server.stats.metrics().upstream_ignored_replies.get();
    assert!(ignored >= 3, "{ignored} ignored replies");
    assert!((1..=3).contains(&upstream.queries_for(NAME)));
    assert_eq!(server.stats.cache_entries(), 0);
    assert_eq!(server.stats.metrics().cache_inserts.get(), 0);
    wait_idle(&server, Duration::from_millis(20)).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dripping_tcp_fallback_is_cut_off_at_the_deadline() {
    const NAME: &str = "drip.deadline.test";
    let upstream = FakeUpstream::start(loopback(90)).await;
    upstream.add_a(NAME, "192.0.2.90", 300);
    upstream.set_behavior(Behavior::TcpDrip);
    let server = start_with(core_config(&[upstream.addr()])).await;

    let reply = ask(server.udp, NAME).await;
    assert_servfail(&reply, EDE_NO_REACHABLE_AUTHORITY);
    assert_at_deadline(&reply);
    assert_eq!(server.stats.metrics().upstream_tcp_fallbacks.get(), 1);
    assert_eq!(
        upstream.tcp_queries(),
        1,
        "the TC reply sent punctual to TCP"
    );
    assert_eq!(server.stats.cache_entries(), 0);
    wait_idle(&server, Duration::from_millis(20)).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_replies_are_ignored_and_never_cached() {
    let upstream = FakeUpstream::start(loopback(91)).await;
    let cases = [
        (
            "id.spoof.test",
            Behavior::WrongIdFirst(Duration::from_millis(50)),
            1,
        ),
        (
            "question.spoof.test",
            Behavior::WrongQuestionFirst(Duration::from_millis(50)),
            1,
        ),
        // The kernel drops the wrong-source datagram on punctual's connected
        // socket, so punctual never sees it to count it.
        (
            "source.spoof.test",
            Behavior::WrongSourceFirst(Duration::from_millis(50)),
            0,
        ),
    ];
    for (name, _, _) in &cases {
        upstream.add_a(name, "192.0.2.91", 300);
    }
    let server = start_with(one_attempt_config(upstream.addr())).await;
    let poison = IpAddr::V4(POISON_V4);

    for (name, behavior, counted) in cases {
        upstream.set_behavior(behavior);
        let ignored_before = server.stats.metrics().upstream_ignored_replies.get();
        let reply = ask(server.udp, name).await;
        assert!(
            !answer_ips(&reply.message).contains(&poison),
            "{behavior:?}: poisoned answer accepted"
        );
        assert_answer(&reply, "192.0.2.91");
        // The real reply leaves the upstream 50 ms after the query: an earlier
        // answer could only have been the spoof.
        assert!(
            reply.elapsed >= Duration::from_millis(50) && reply.elapsed < TEST_DEADLINE,
            "{behavior:?}: answered after {:?}",
            reply.elapsed
        );
        assert_eq!(upstream.queries_for(name), 1, "{behavior:?}");
        if counted > 0 {
            let ignored = server.stats.metrics().upstream_ignored_replies.get() - ignored_before;
            assert_eq!(ignored, counted, "{behavior:?}: ignored replies");
        }
    }

    // What was cached is the real answer: served without asking the upstream.
    upstream.set_behavior(Behavior::Hang);
    for (name, behavior, _) in cases {
        let reply = ask(server.udp, name).await;
        assert_answer(&reply, "192.0.2.91");
        assert!(
            reply.elapsed < AT_ONCE,
            "{behavior:?}: cache hit took {:?}",
            reply.elapsed
        );
        assert_eq!(
            upstream.queries_for(name),
            1,
            "{behavior:?}: cached answer must not go upstream"
        );
    }
    assert_eq!(server.stats.cache_entries(), 3);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_upstream_answer_yields_one_client_answer() {
    const NAME: &str = "twice.deadline.test";
    let upstream = FakeUpstream::start(loopback(92)).await;
    upstream.add_a(NAME, "192.0.2.92", 300);
    upstream.set_behavior(Behavior::AnswerTwice);
    let server = start_with(one_attempt_config(upstream.addr())).await;

    let opts = edns();
    let query = build_query(NAME, RecordType::A, &opts);
    // Collect everything coming back for a while: exactly one datagram.
    let seen = collect_udp(server.udp, &query, TEST_DEADLINE + LATE_MARGIN).await;
    assert_eq!(seen.len(), 1, "datagrams back: {seen:?}");
    assert_eq!(seen[0].from, server.udp);
    assert!(seen[0].after < AT_ONCE, "took {:?}", seen[0].after);
    let message = Message::from_vec(&seen[0].bytes).expect("reply decodes");
    assert_eq!(message.id, opts.id);
    let reply = Reply {
        message,
        bytes: seen[0].bytes.clone(),
        elapsed: seen[0].after,
    };
    assert_answer(&reply, "192.0.2.92");

    let metrics = server.stats.metrics();
    assert_eq!(upstream.queries(), 1);
    assert_eq!(metrics.upstream_queries.get(), 1);
    assert_eq!(metrics.lookups_started.get(), 1);
    assert_eq!(metrics.responses_by_rcode[0].get(), 1);
    assert_eq!(metrics.responses_by_rcode[2].get(), 0);
    assert_eq!(
        metrics.lookup_timeouts.get() + metrics.lookup_network_errors.get(),
        0
    );
    // The duplicate arrives after the attempt's socket is gone (or is never read).
    assert_eq!(metrics.upstream_ignored_replies.get(), 0);
    assert_eq!(metrics.cache_inserts.get(), 1);
    assert_eq!(server.stats.cache_entries(), 1);
    assert_eq!(server.stats.inflight(), IDLE);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_waiting_clients_and_frees_the_port() {
    const CLIENTS: usize = 50;
    let upstream = FakeUpstream::start(loopback(93)).await;
    upstream.set_behavior(Behavior::Hang);
    let mut config = test_config(&[upstream.addr()]);
    config.listen.addresses = vec![SocketAddr::new(loopback(94), 0)];
    let server = start_with(config).await;
    let (udp, tcp, stats) = (server.udp, server.tcp, server.stats.clone());

    let mut clients = JoinSet::new();
    for i in 0..CLIENTS - 1 {
        clients.spawn(async move { ask(udp, &format!("n{}.shutdown.test", i % 10)).await });
    }
    // One waits over TCP, and another TCP connection sits idle.
    clients.spawn(async move {
        query_tcp(
            tcp,
            "tcp.shutdown.test",
            RecordType::A,
            &edns(),
            CLIENT_LIMIT,
        )
        .await
        .expect("a TCP reply before the connection closes")
    });
    let mut idle = TcpClient::connect(tcp).await.expect("idle TCP connection");
    let give_up = Instant::now() + Duration::from_secs(1);
    while stats.inflight().waiters < CLIENTS {
        assert!(
            Instant::now() < give_up,
            "clients not all waiting: {:?}",
            stats.inflight()
        );
        sleep(Duration::from_millis(1)).await;
    }

    let stopping = Instant::now();
    server.stop().await;
    let took = stopping.elapsed();
    // The brief's bound is deadline + 600 ms, but the grace period alone ends run()
    // by deadline + 500 ms. Returning within deadline + margin shows stop waited
    // for the answers, not for the grace period to run out.
    assert!(
        took < TEST_DEADLINE + LATE_MARGIN,
        "stop took {took:?}: it waited out the grace period"
    );
    // Every waiter was answered before stop returned.
    assert_eq!(stats.metrics().responses_by_rcode[2].get(), CLIENTS as u64);
    assert!(
        matches!(
            idle.recv(Duration::from_millis(100)).await,
            Err(ClientError::Closed | ClientError::Io(_))
        ),
        "the idle TCP connection must be closed by shutdown"
    );

    let mut answered = 0;
    while let Some(reply) = clients.join_next().await {
        let reply = reply.expect("client task");
        assert_servfail(&reply, EDE_NO_REACHABLE_AUTHORITY);
        assert_at_deadline(&reply);
        answered += 1;
    }
    assert_eq!(answered, CLIENTS);
    assert_eq!(stats.inflight(), IDLE);
    // Plain std sockets set no SO_REUSEPORT, so these fail while punctual still
    // holds either port.
    std::net::UdpSocket::bind(udp).expect("UDP port free after stop");
    std::net::TcpListener::bind(tcp).expect("TCP port free after stop");
}
