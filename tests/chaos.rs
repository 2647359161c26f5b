//! Chaos upstreams: replies that are malformed in ways a real network or a
//! broken server produces (compression-pointer loops, counts that lie, the
//! wrong class, datagrams larger than any buffer, TCP frames cut mid-message
//! or dripped byte by byte, duplicates, replies nobody asked for). For each,
//! the client is answered by its deadline (SERVFAIL with an Extended DNS
//! Error, or the good answer that follows the bad ones), nothing bad is
//! cached (once the upstream behaves, the next query gets the good answer),
//! and the counters say what was rejected. The older cases live beside their
//! promise: garbage, a TCP fallback that drips, spoofs and duplicates over UDP
//! in tests/deadline.rs; a TLS peer that stalls mid-record in
//! tests/upstream_transports.rs.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use ::punctual::config::{Config, UpstreamAddr};
use common::punctual::{TEST_DEADLINE, TestServer, core_config, start_with};
use common::*;
use hickory_proto::op::ResponseCode;

/// Slack after a deadline for the response to be written and read back.
const LATE_MARGIN: Duration = Duration::from_millis(100);

/// How punctual reaches the fake upstream.
#[derive(Clone, Copy, Debug)]
enum Via {
    /// UDP, with a TCP fallback when a reply is truncated.
    Udp,
    /// A kept-open `tcp://` connection.
    Tcp,
}

/// The failure cache off, so every query shows what the upstream does now.
fn config(upstream: SocketAddr, via: Via) -> Config {
    let mut config = core_config(&[upstream]);
    if let Via::Tcp = via {
        config.upstream.servers = vec![UpstreamAddr::tcp(upstream)];
    }
    config
}

async fn setup(ip: u8, name: &str, via: Via, behavior: Behavior) -> (FakeUpstream, TestServer) {
    let upstream = FakeUpstream::start(loopback(ip)).await;
    upstream.add_a(name, &format!("192.0.2.{ip}"), 300);
    upstream.add_a(name, &format!("198.51.100.{ip}"), 300);
    upstream.set_behavior(behavior);
    let server = start_with(config(upstream.addr(), via)).await;
    (upstream, server)
}

/// SERVFAIL with EDE `code`, answered no later than the deadline (plus the
/// time to write and read it).
fn assert_servfail_by_deadline(reply: &Reply, code: u16, what: &str) {
    assert_eq!(
        reply.message.response_code,
        ResponseCode::ServFail,
        "{what}: {:?}",
        reply.message
    );
    assert_eq!(
        ede(&reply.message).map(|(got, _)| got),
        Some(code),
        "{what}: EDE"
    );
    assert!(
        reply.elapsed < TEST_DEADLINE + LATE_MARGIN,
        "{what}: answered after {:?}",
        reply.elapsed
    );
}

/// The two real addresses of `name` at `ip`, nothing else.
fn assert_good(reply: &Reply, ip: u8, what: &str) {
    assert_eq!(
        reply.message.response_code,
        ResponseCode::NoError,
        "{what}: {:?}",
        reply.message
    );
    let mut got = answer_ips(&reply.message);
    got.sort();
    let want: Vec<std::net::IpAddr> = vec![
        format!("192.0.2.{ip}").parse().expect("test IP"),
        format!("198.51.100.{ip}").parse().expect("test IP"),
    ];
    assert_eq!(got, want, "{what}: {:?}", reply.message);
    assert!(
        reply
            .message
            .answers
            .iter()
            .all(|r| r.dns_class == hickory_proto::rr::DNSClass::IN),
        "{what}: {:?}",
        reply.message
    );
}

/// The upstream goes back to normal answers: the next query is asked upstream
/// (nothing bad was cached) and gets the good answer, which is then cached.
async fn recovers(upstream: &FakeUpstream, server: &TestServer, name: &str, ip: u8, what: &str) {
    assert_eq!(server.stats.cache_entries(), 0, "{what}: nothing cached");
    wait_idle(server, TEST_DEADLINE).await;
    upstream.set_behavior(Behavior::Answer);
    let before = upstream.queries_for(name);
    assert_good(&ask(server.udp, name).await, ip, what);
    assert!(
        upstream.queries_for(name) > before,
        "{what}: answered from a cache"
    );
    assert_eq!(
        server.stats.cache_entries(),
        1,
        "{what}: the good answer cached"
    );
}

/// Replies whose names loop through compression pointers fail to decode and
/// are ignored; the lookup ends at the deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compression_pointer_loops_are_ignored() {
    const NAME: &str = "loop.chaos.test";
    for (ip, via) in [(130, Via::Udp), (131, Via::Tcp)] {
        let (upstream, server) = setup(ip, NAME, via, Behavior::PointerLoop).await;
        let what = format!("pointer loop via {via:?}");
        let reply = ask(server.udp, NAME).await;
        // Over UDP every attempt's replies are ignored until the deadline; on
        // a connection the first bad reply for our ID ends the attempt.
        let code = match via {
            Via::Udp => EDE_NO_REACHABLE_AUTHORITY,
            Via::Tcp => EDE_NETWORK_ERROR,
        };
        assert_servfail_by_deadline(&reply, code, &what);
        let ignored = server.stats.metrics().upstream_ignored_replies.get();
        assert!(ignored >= 2, "{what}: {ignored} ignored replies");
        recovers(&upstream, &server, NAME, ip, &what).await;
        server.stop().await;
    }
}

/// ANCOUNT larger than the records present: the reply ends early and is
/// ignored. ANCOUNT smaller: records (and the OPT) follow the last one the
/// counts announce, so the reply is not what its header says and is ignored
/// too, rather than cached with a record moved to another section.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answer_counts_that_lie_are_ignored() {
    const NAME: &str = "counts.chaos.test";
    for (ip, delta) in [(132, 2), (133, -1)] {
        let (upstream, server) = setup(ip, NAME, Via::Udp, Behavior::AnswerCountOff(delta)).await;
        let what = format!("ANCOUNT off by {delta}");
        let reply = ask(server.udp, NAME).await;
        assert_servfail_by_deadline(&reply, EDE_NO_REACHABLE_AUTHORITY, &what);
        assert!(
            reply.elapsed >= TEST_DEADLINE,
            "{what}: gave up early after {:?}",
            reply.elapsed
        );
        let ignored = server.stats.metrics().upstream_ignored_replies.get();
        assert!(ignored >= 1, "{what}: {ignored} ignored replies");
        assert_eq!(server.stats.metrics().cache_inserts.get(), 0, "{what}");
        recovers(&upstream, &server, NAME, ip, &what).await;
        server.stop().await;
    }
}

/// Answer records of class CH to a question of class IN do not answer it:
/// the reply is ignored, never cached or passed on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_of_the_wrong_class_are_ignored() {
    const NAME: &str = "class.chaos.test";
    let ip = 134;
    let (upstream, server) = setup(ip, NAME, Via::Udp, Behavior::ChaosClass).await;
    let reply = ask(server.udp, NAME).await;
    assert_servfail_by_deadline(&reply, EDE_NO_REACHABLE_AUTHORITY, "CH answers");
    let ignored = server.stats.metrics().upstream_ignored_replies.get();
    assert!(ignored >= 1, "{ignored} ignored replies");
    recovers(&upstream, &server, NAME, ip, "CH answers").await;
    server.stop().await;
}

/// A UDP reply over 4096 bytes (we advertise 1232) is cut by the receive
/// buffer, fails to parse and is ignored; one that fits the buffer is a
/// whole answer, used, and sent to the client truncated as its size needs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_udp_replies_are_cut_and_ignored_or_fit_and_are_used() {
    const NAME: &str = "big.chaos.test";
    let ip = 135;
    let (upstream, server) = setup(ip, NAME, Via::Udp, Behavior::OversizedUdp(4600)).await;
    let reply = ask(server.udp, NAME).await;
    assert_servfail_by_deadline(&reply, EDE_NO_REACHABLE_AUTHORITY, "4600-byte reply");
    let ignored = server.stats.metrics().upstream_ignored_replies.get();
    assert!(ignored >= 1, "{ignored} ignored replies");
    recovers(&upstream, &server, NAME, ip, "4600-byte reply").await;
    server.stop().await;

    const FITS: &str = "fits.chaos.test";
    let (upstream, server) = setup(ip, FITS, Via::Udp, Behavior::OversizedUdp(4000)).await;
    let reply = ask(server.udp, FITS).await;
    assert_eq!(reply.message.response_code, ResponseCode::NoError);
    assert!(reply.message.truncation, "4000 bytes do not fit 1232: TC=1");
    assert!(reply.elapsed < TEST_DEADLINE, "{:?}", reply.elapsed);
    let whole = query_tcp(
        server.tcp,
        FITS,
        hickory_proto::rr::RecordType::A,
        &edns(),
        CLIENT_LIMIT,
    )
    .await
    .expect("a TCP reply");
    assert_good(&whole, ip, "4000-byte reply over TCP");
    assert!(whole.bytes.len() >= 4000, "{} bytes", whole.bytes.len());
    assert_eq!(upstream.queries_for(FITS), 1, "served from the cache");
    server.stop().await;
}

/// A TCP reply cut mid-message (half a frame, then FIN, RFC 7766 §8) fails the
/// attempt at once with a network error, after the UDP TC fallback and on a
/// kept-open `tcp://` connection alike (that one is retried once on a fresh
/// connection, RFC 7766 §6.2.1.1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_replies_cut_mid_message_fail_fast() {
    const NAME: &str = "cut.chaos.test";
    for (ip, via) in [(136, Via::Udp), (137, Via::Tcp)] {
        let (upstream, server) = setup(ip, NAME, via, Behavior::TcpCutShort).await;
        let what = format!("cut TCP via {via:?}");
        let reply = ask(server.udp, NAME).await;
        assert_servfail_by_deadline(&reply, EDE_NETWORK_ERROR, &what);
        assert!(reply.elapsed < AT_ONCE, "{what}: took {:?}", reply.elapsed);
        let expected_tcp = match via {
            Via::Udp => 1,
            Via::Tcp => 2,
        };
        assert_eq!(upstream.tcp_queries(), expected_tcp, "{what}");
        recovers(&upstream, &server, NAME, ip, &what).await;
        server.stop().await;
    }
}

/// A `tcp://` upstream that drips its reply one byte a second cannot hold a
/// client past its deadline, and once it answers again a query gets through:
/// the connection with a half-received frame does not keep the next queries
/// behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dripping_tcp_upstream_is_cut_off_at_the_deadline() {
    const NAME: &str = "drip.chaos.test";
    let ip = 138;
    let (upstream, server) = setup(ip, NAME, Via::Tcp, Behavior::TcpDrip).await;
    let reply = ask(server.udp, NAME).await;
    assert_servfail_by_deadline(&reply, EDE_NO_REACHABLE_AUTHORITY, "drip");
    assert!(reply.elapsed >= TEST_DEADLINE, "{:?}", reply.elapsed);
    // A stalled connection is cut one deadline after its reply's first byte.
    // The cut ends the attempts waiting on it, which are retried once on a new
    // connection; that one drips too and is cut in turn. Once every connection
    // made so far has been cut, the next query needs a fresh one.
    let metrics = server.stats.metrics();
    wait_idle(&server, TEST_DEADLINE).await;
    let give_up = tokio::time::Instant::now() + TEST_DEADLINE * 3;
    while metrics.upstream_stalled_connections.get() < metrics.upstream_connections.get() {
        assert!(
            tokio::time::Instant::now() < give_up,
            "the drip was not cut off: {} of {} connections",
            metrics.upstream_stalled_connections.get(),
            metrics.upstream_connections.get()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let stalled = metrics.upstream_stalled_connections.get();
    assert!(stalled >= 1);
    recovers(&upstream, &server, NAME, ip, "drip").await;
    assert_eq!(metrics.upstream_stalled_connections.get(), stalled);
    assert_eq!(
        metrics.upstream_connections.get(),
        stalled + 1,
        "a fresh connection"
    );
    server.stop().await;
}

/// A `tcp://` upstream that sends every reply twice: the second frame's ID is
/// no longer waited for, so it is counted and dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_replies_on_a_connection_are_counted_and_dropped() {
    const NAME: &str = "twice.chaos.test";
    let ip = 139;
    let (upstream, server) = setup(ip, NAME, Via::Tcp, Behavior::AnswerTwice).await;
    let reply = ask(server.udp, NAME).await;
    assert_good(&reply, ip, "answer twice");
    let metrics = server.stats.metrics();
    let give_up = tokio::time::Instant::now() + TEST_DEADLINE;
    while metrics.upstream_ignored_replies.get() < 1 {
        assert!(
            tokio::time::Instant::now() < give_up,
            "the duplicate was not counted"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(metrics.upstream_ignored_replies.get(), 1);
    assert_eq!(upstream.queries(), 1);
    assert_eq!(server.stats.cache_entries(), 1);
    server.stop().await;
}

/// Replies with random IDs that no query of ours carries, arriving before the
/// real one: each is counted and ignored, and the real reply is the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsolicited_replies_with_random_ids_are_ignored() {
    const NAME: &str = "unsolicited.chaos.test";
    for (ip, via) in [(140, Via::Udp), (141, Via::Tcp)] {
        let behavior = Behavior::UnsolicitedFirst(Duration::from_millis(50));
        let (upstream, server) = setup(ip, NAME, via, behavior).await;
        let what = format!("unsolicited via {via:?}");
        let reply = ask(server.udp, NAME).await;
        assert_good(&reply, ip, &what);
        assert!(
            reply.elapsed >= Duration::from_millis(50) && reply.elapsed < TEST_DEADLINE,
            "{what}: answered after {:?}",
            reply.elapsed
        );
        assert_eq!(
            server.stats.metrics().upstream_ignored_replies.get(),
            5,
            "{what}"
        );
        assert_eq!(upstream.queries(), 1, "{what}");
        assert_eq!(server.stats.cache_entries(), 1, "{what}");
        server.stop().await;
    }
}
