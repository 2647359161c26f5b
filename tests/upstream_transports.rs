//! `tcp://` and `tls://` upstreams: one kept-open connection carries many
//! pipelined queries (RFC 7766 §6.2.1), TLS certificates are checked against
//! the configured authentication name with a CA made in the test (RFC 7858,
//! RFC 8310), an idle connection is closed and a new one opened when needed,
//! and a peer that stalls cannot hold a query past its deadline.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use ::punctual::config::{Config, UpstreamAddr};
use common::punctual::{TEST_DEADLINE, TestServer, core_config, start_with};
use common::tls::TestCa;
use common::*;
use hickory_proto::op::ResponseCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep};

const AUTH_NAME: &str = "dns.transport.test";
/// Slack after a deadline for the response to be written and read back.
const LATE_MARGIN: Duration = Duration::from_millis(100);

/// A config asking only `server`, with the failure cache off so that every
/// query shows what the upstream did.
fn config_for(server: UpstreamAddr) -> Config {
    let mut config = core_config(&[]);
    config.upstream.servers = vec![server];
    config
}

fn tls(addr: SocketAddr, name: &str) -> UpstreamAddr {
    UpstreamAddr::tls(addr, name).unwrap_or_else(|error| panic!("{name}: {error}"))
}

fn add_names(upstream: &FakeUpstream, count: usize) -> Vec<String> {
    (0..count)
        .map(|i| {
            let name = format!("host{i}.transport.test");
            upstream.add_a(&name, &format!("192.0.2.{}", i % 250 + 1), 300);
            name
        })
        .collect()
}

/// Asks `names[range]` at once; each must get its own address.
async fn ask_all_at_once(server: &TestServer, names: &[String], range: std::ops::Range<usize>) {
    let mut queries = JoinSet::new();
    for (i, name) in names.iter().enumerate().filter(|(i, _)| range.contains(i)) {
        let (addr, name) = (server.udp, name.clone());
        queries.spawn(async move { (i, ask(addr, &name).await) });
    }
    while let Some(joined) = queries.join_next().await {
        let (i, reply) = joined.expect("query task");
        assert_answer(&reply, &format!("192.0.2.{}", i % 250 + 1));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_upstream_carries_many_queries_on_one_connection() {
    let upstream = FakeUpstream::start(loopback(200)).await;
    let names = add_names(&upstream, 60);
    let server = start_with(config_for(UpstreamAddr::tcp(upstream.addr()))).await;

    ask_all_at_once(&server, &names, 0..40).await;
    for name in &names[40..] {
        ask(server.udp, name).await;
    }
    assert_eq!(upstream.udp_queries(), 0, "tcp:// never uses UDP");
    assert_eq!(upstream.tcp_queries(), 60);
    assert_eq!(upstream.tcp_connections(), 1, "one connection for all");
    assert_eq!(server.stats.metrics().upstream_connections.get(), 1);
    server.stop().await;
}

/// Replies come back as they are ready, not one query at a time: 30 queries
/// that each take 150 ms upstream are all answered in about 150 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_on_one_connection_are_pipelined() {
    const DELAY: Duration = Duration::from_millis(150);
    let upstream = FakeUpstream::start(loopback(201)).await;
    let names = add_names(&upstream, 30);
    let mut config = config_for(UpstreamAddr::tcp(upstream.addr()));
    config.limits.deadline = Duration::from_secs(1);
    config.limits.attempt_timeout = Duration::from_secs(1);
    let server = start_with(config).await;
    // Open the connection first, so the timing below is the queries' alone.
    ask(server.udp, &names[0]).await;
    upstream.set_behavior(Behavior::Delay(DELAY));

    let start = Instant::now();
    ask_all_at_once(&server, &names, 1..30).await;
    let took = start.elapsed();
    assert!(
        took >= DELAY && took < DELAY + AT_ONCE,
        "29 delayed queries took {took:?}"
    );
    assert_eq!(upstream.tcp_connections(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_upstream_answers_with_one_handshake_for_many_queries() {
    let ca = TestCa::new();
    let upstream = FakeUpstream::start_tls(loopback(202), ca.server_config(AUTH_NAME)).await;
    let names = add_names(&upstream, 100);
    let mut config = config_for(tls(upstream.addr(), AUTH_NAME));
    config.upstream.ca_file = Some(ca.ca_file().to_owned());
    let server = start_with(config).await;

    ask_all_at_once(&server, &names, 0..80).await;
    for name in &names[80..] {
        ask(server.udp, name).await;
    }
    assert_eq!(upstream.tcp_queries(), 100);
    assert_eq!(upstream.udp_queries(), 0);
    assert_eq!(
        upstream.tls_handshakes(),
        1,
        "one TLS handshake for 100 queries"
    );
    assert_eq!(upstream.tcp_connections(), 1);
    server.stop().await;
}

/// A certificate for another name, or from a CA we do not trust, is refused:
/// nothing is asked, and the client gets SERVFAIL with EDE 23 (network error)
/// within its deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_certificate_for_another_name_or_ca_is_refused() {
    let ca = TestCa::new();
    let stranger = TestCa::new();
    let upstream = FakeUpstream::start_tls(loopback(203), ca.server_config(AUTH_NAME)).await;
    add_names(&upstream, 1);

    for (auth_name, trusted) in [("other.transport.test", &ca), (AUTH_NAME, &stranger)] {
        let mut config = config_for(tls(upstream.addr(), auth_name));
        config.upstream.ca_file = Some(trusted.ca_file().to_owned());
        let server = start_with(config).await;
        let reply = ask(server.udp, "host0.transport.test").await;
        assert_eq!(reply.message.response_code, ResponseCode::ServFail);
        assert_eq!(
            ede(&reply.message).map(|(code, _)| code),
            Some(EDE_NETWORK_ERROR),
            "{auth_name}: {:?}",
            reply.message
        );
        assert!(
            reply.elapsed < TEST_DEADLINE + LATE_MARGIN,
            "{:?}",
            reply.elapsed
        );
        server.stop().await;
    }
    assert_eq!(upstream.tls_handshakes(), 0);
    assert_eq!(
        upstream.queries(),
        0,
        "nothing was sent over a refused connection"
    );
}

/// A peer that accepts the connection and then stops mid-record (here: half a
/// TLS record header and a few bytes, then silence) holds nobody past the
/// deadline, and the next query is not stuck behind it either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_peer_stalling_mid_record_cannot_hold_a_query_past_its_deadline() {
    let listener = TcpListener::bind(SocketAddr::new(loopback(204), 0))
        .await
        .expect("bind the stalling peer");
    let addr = listener.local_addr().expect("bound address");
    let stall = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut hello = [0u8; 512];
            let _ = stream.read(&mut hello).await;
            // A handshake record announcing 256 bytes, of which 4 ever arrive.
            let _ = stream
                .write_all(&[0x16, 0x03, 0x03, 0x01, 0x00, 0x02, 0x00, 0x00])
                .await;
            held.push(stream);
        }
    });
    let ca = TestCa::new();
    let mut config = config_for(tls(addr, AUTH_NAME));
    config.upstream.ca_file = Some(ca.ca_file().to_owned());
    let server = start_with(config).await;

    for name in ["first.transport.test", "second.transport.test"] {
        let reply = ask(server.udp, name).await;
        assert_eq!(
            reply.message.response_code,
            ResponseCode::ServFail,
            "{name}"
        );
        assert_eq!(
            ede(&reply.message).map(|(code, _)| code),
            Some(EDE_NO_REACHABLE_AUTHORITY),
            "{name}"
        );
        assert!(
            reply.elapsed >= TEST_DEADLINE - Duration::from_millis(5)
                && reply.elapsed < TEST_DEADLINE + LATE_MARGIN,
            "{name}: {:?}",
            reply.elapsed
        );
    }
    wait_idle(&server, TEST_DEADLINE).await;
    server.stop().await;
    stall.abort();
}

/// A TLS upstream that stops answering after the handshake: clients get
/// SERVFAIL at their deadline; once it answers again, so does punctual, on
/// the same connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_upstream_hanging_after_the_handshake_is_bounded_and_recovers() {
    let ca = TestCa::new();
    let upstream = FakeUpstream::start_tls(loopback(205), ca.server_config(AUTH_NAME)).await;
    let names = add_names(&upstream, 3);
    let mut config = config_for(tls(upstream.addr(), AUTH_NAME));
    config.upstream.ca_file = Some(ca.ca_file().to_owned());
    let server = start_with(config).await;

    assert_answer(&ask(server.udp, &names[0]).await, "192.0.2.1");
    upstream.set_behavior(Behavior::Hang);
    let reply = ask(server.udp, &names[1]).await;
    assert_eq!(reply.message.response_code, ResponseCode::ServFail);
    assert!(
        reply.elapsed < TEST_DEADLINE + LATE_MARGIN,
        "{:?}",
        reply.elapsed
    );
    upstream.set_behavior(Behavior::Answer);
    assert_answer(&ask(server.udp, &names[2]).await, "192.0.2.3");
    assert_eq!(upstream.tls_handshakes(), 1);
    server.stop().await;
}

/// An idle connection is closed after `idle_timeout`; the next query opens a
/// new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connection_is_closed_and_the_next_query_opens_another() {
    const IDLE: Duration = Duration::from_millis(200);
    let ca = TestCa::new();
    let upstream = FakeUpstream::start_tls(loopback(206), ca.server_config(AUTH_NAME)).await;
    let names = add_names(&upstream, 2);
    let mut config = config_for(tls(upstream.addr(), AUTH_NAME));
    config.upstream.ca_file = Some(ca.ca_file().to_owned());
    config.upstream.idle_timeout = IDLE;
    let server = start_with(config).await;

    assert_answer(&ask(server.udp, &names[0]).await, "192.0.2.1");
    assert_eq!(upstream.open_connections(), 1);
    let asked = Instant::now();
    while upstream.open_connections() > 0 {
        assert!(
            asked.elapsed() < IDLE * 5,
            "the idle connection is still open after {:?}",
            asked.elapsed()
        );
        sleep(Duration::from_millis(10)).await;
    }
    assert!(
        asked.elapsed() >= IDLE - Duration::from_millis(5),
        "closed too soon"
    );
    assert_answer(&ask(server.udp, &names[1]).await, "192.0.2.2");
    assert_eq!(upstream.tls_handshakes(), 2);
    assert_eq!(server.stats.metrics().upstream_connections.get(), 2);
    server.stop().await;
}

/// A closed port fails at once, like ICMP-refused UDP: EDE 23 well before the
/// deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_tcp_connection_fails_fast() {
    let closed = {
        let listener = TcpListener::bind(SocketAddr::new(loopback(207), 0))
            .await
            .expect("bind");
        listener.local_addr().expect("bound address")
    };
    let server = start_with(config_for(UpstreamAddr::tcp(closed))).await;
    let reply = ask(server.udp, "refused.transport.test").await;
    assert_eq!(reply.message.response_code, ResponseCode::ServFail);
    assert_eq!(
        ede(&reply.message).map(|(code, _)| code),
        Some(EDE_NETWORK_ERROR)
    );
    assert!(reply.elapsed < AT_ONCE, "{:?}", reply.elapsed);
    server.stop().await;
}
