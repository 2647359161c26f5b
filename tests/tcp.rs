//! DNS over TCP as RFC 7766 asks: queries pipelined on one connection are
//! processed concurrently and answered as each completes (a cached answer
//! overtakes a slow one), also beyond the per-connection pipelining limit (the
//! query beyond it waits unread for a free place); an
//! idle connection is closed after `tcp_idle_timeout` while a busy one stays
//! open; connections beyond `tcp_max_connections` are closed at once without
//! disturbing the open ones; and a query whose upstream hangs gets SERVFAIL with
//! EDE 22 at the deadline on a connection that stays usable.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::punctual::{TEST_DEADLINE, TestServer, start, start_with, test_config};
use common::{
    Behavior, ClientError, FakeUpstream, QueryOpts, TcpClient, build_query, ede, ede_from_bytes,
    loopback,
};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};
use punctual::listen::MAX_PIPELINED_PER_CONNECTION;
use tokio::time::{Instant, sleep};

const LIMIT: Duration = Duration::from_millis(1000);

/// The A record addresses of a reply, in order.
fn addresses(message: &Message) -> Vec<String> {
    message
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect()
}

async fn connect(server: &TestServer) -> TcpClient {
    TcpClient::connect(server.tcp)
        .await
        .expect("TCP connect to punctual")
}

/// Asks `name` A on `client` and checks the one expected address comes back.
async fn ask_ok(client: &mut TcpClient, name: &str, address: &str, id: u16) {
    let reply = client
        .query(
            name,
            RecordType::A,
            &QueryOpts::default().with_id(id),
            LIMIT,
        )
        .await
        .unwrap_or_else(|e| panic!("{name} (ID {id:#06x}): {e}"));
    assert_eq!(reply.message.response_code, ResponseCode::NoError, "{name}");
    assert_eq!(addresses(&reply.message), [address], "{name}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_answer_overtakes_a_slow_one_on_the_same_connection() {
    let upstream = FakeUpstream::start(loopback(70)).await;
    upstream.add_a("slow.pipe.test", "192.0.2.70", 300);
    upstream.add_a("fast.pipe.test", "192.0.2.71", 300);
    let server = start(upstream.addr()).await;
    let mut client = connect(&server).await;
    ask_ok(&mut client, "fast.pipe.test", "192.0.2.71", 0x0001).await;
    upstream.set_behavior(Behavior::Delay(Duration::from_millis(200)));

    let sent = Instant::now();
    let slow = build_query(
        "slow.pipe.test",
        RecordType::A,
        &QueryOpts::default().with_id(0x5105),
    );
    let fast = build_query(
        "fast.pipe.test",
        RecordType::A,
        &QueryOpts::default().with_id(0xfa57),
    );
    client.send(&slow).await.expect("send slow");
    client.send(&fast).await.expect("send fast");

    let first =
        Message::from_vec(&client.recv(LIMIT).await.expect("first frame")).expect("decodes");
    let first_at = sent.elapsed();
    let second =
        Message::from_vec(&client.recv(LIMIT).await.expect("second frame")).expect("decodes");
    let second_at = sent.elapsed();
    assert_eq!(first.id, 0xfa57, "the cached answer comes first");
    assert_eq!(addresses(&first), ["192.0.2.71"]);
    assert!(
        first_at < Duration::from_millis(100),
        "cached answer after {first_at:?}"
    );
    assert_eq!(second.id, 0x5105, "then the slow one");
    assert_eq!(second.response_code, ResponseCode::NoError);
    assert_eq!(addresses(&second), ["192.0.2.70"]);
    assert!(
        second_at >= Duration::from_millis(200) && second_at < TEST_DEADLINE,
        "slow answer after {second_at:?}"
    );
    server.stop().await;
}

/// Sends `count` queries for distinct names without waiting, then reads every
/// answer; returns how long the last took.
async fn pipeline(client: &mut TcpClient, count: u16, prefix: &str) -> Duration {
    let mut expected = HashMap::new();
    let sent = Instant::now();
    for i in 0..count {
        let id = 0x6000 + i;
        let name = format!("{prefix}{i}.pipe.test");
        client
            .send(&build_query(
                &name,
                RecordType::A,
                &QueryOpts::default().with_id(id),
            ))
            .await
            .expect("send");
        expected.insert(id, format!("10.1.{}.{}", i / 256, i % 256));
    }
    while !expected.is_empty() {
        let frame = client
            .recv(LIMIT)
            .await
            .unwrap_or_else(|e| panic!("{} answers missing: {e}", expected.len()));
        let message = Message::from_vec(&frame).expect("decodes");
        let address = expected
            .remove(&message.id)
            .unwrap_or_else(|| panic!("unexpected or repeated ID {:#06x}", message.id));
        assert_eq!(
            message.response_code,
            ResponseCode::NoError,
            "ID {:#06x}",
            message.id
        );
        assert_eq!(addresses(&message), [address], "ID {:#06x}", message.id);
    }
    sent.elapsed()
}

fn add_numbered(upstream: &FakeUpstream, prefix: &str, count: u16) {
    for i in 0..count {
        upstream.add_a(
            &format!("{prefix}{i}.pipe.test"),
            &format!("10.1.{}.{}", i / 256, i % 256),
            300,
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_pipelined_queries_are_all_answered() {
    let upstream = FakeUpstream::start(loopback(71)).await;
    add_numbered(&upstream, "p", 20);
    let server = start(upstream.addr()).await;
    let mut client = connect(&server).await;
    // Half of them cached first, so hits and misses interleave.
    for i in (0..20).step_by(2) {
        ask_ok(
            &mut client,
            &format!("p{i}.pipe.test"),
            &format!("10.1.0.{i}"),
            0x0100 + i,
        )
        .await;
    }
    upstream.set_behavior(Behavior::Delay(Duration::from_millis(50)));
    let took = pipeline(&mut client, 20, "p").await;
    assert!(took < TEST_DEADLINE, "20 answers took {took:?}");
    assert_eq!(upstream.queries(), 20, "each name asked upstream once");
    assert_eq!(server.stats.metrics().tcp_connections_accepted.get(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_pipelined_queries_than_the_per_connection_limit_are_all_answered() {
    let count = u16::try_from(MAX_PIPELINED_PER_CONNECTION + 36).expect("small");
    let upstream = FakeUpstream::start(loopback(72)).await;
    add_numbered(&upstream, "m", count);
    upstream.set_behavior(Behavior::Delay(Duration::from_millis(50)));
    let server = start(upstream.addr()).await;
    let mut client = connect(&server).await;
    // Beyond the limit the server stops reading until answers go out; those
    // queries' deadlines start when they are read, so all finish.
    let took = pipeline(&mut client, count, "m").await;
    assert!(took < 2 * TEST_DEADLINE, "{count} answers took {took:?}");
    assert_eq!(
        server.stats.metrics().responses_by_rcode[0].get(),
        u64::from(count)
    );
    server.stop().await;
}

/// The edge of `MAX_PIPELINED_PER_CONNECTION`: with 65 queries pipelined at
/// once and the upstream slow, punctual reads and asks exactly 64; the 65th
/// stays unread (TCP flow control holds the client) until one of the 64 is
/// answered, and is then asked and answered in its turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_query_beyond_the_per_connection_limit_waits_unread_for_a_free_place() {
    const DELAY: Duration = Duration::from_millis(400);
    let count = u16::try_from(MAX_PIPELINED_PER_CONNECTION + 1).expect("small");
    let upstream = FakeUpstream::start(loopback(79)).await;
    add_numbered(&upstream, "e", count);
    upstream.set_behavior(Behavior::Delay(DELAY));
    let mut config = test_config(&[upstream.addr()]);
    config.limits.deadline = Duration::from_secs(2);
    // One attempt per query: the upstream's count is the count of queries read.
    config.limits.attempt_timeout = config.limits.deadline;
    let server = start_with(config).await;
    let mut client = connect(&server).await;

    let sent = Instant::now();
    let mut ids = HashMap::new();
    for i in 0..count {
        let id = 0x7000 + i;
        client
            .send(&build_query(
                &format!("e{i}.pipe.test"),
                RecordType::A,
                &QueryOpts::default().with_id(id),
            ))
            .await
            .expect("send");
        ids.insert(id, format!("10.1.{}.{}", i / 256, i % 256));
    }
    let limit = MAX_PIPELINED_PER_CONNECTION;
    while upstream.queries() < limit {
        assert!(
            sent.elapsed() < DELAY / 2,
            "only {} of {limit} queries asked",
            upstream.queries()
        );
        sleep(Duration::from_millis(1)).await;
    }
    // Well before the first answer: the one beyond the limit is still unread.
    sleep(DELAY / 4).await;
    assert_eq!(upstream.queries(), limit, "read beyond the limit");
    assert!(
        sent.elapsed() < DELAY,
        "checked too late: {:?}",
        sent.elapsed()
    );

    let mut last = Duration::ZERO;
    while !ids.is_empty() {
        let frame = client
            .recv(LIMIT + DELAY)
            .await
            .unwrap_or_else(|e| panic!("{} answers missing: {e}", ids.len()));
        let message = Message::from_vec(&frame).expect("decodes");
        let address = ids
            .remove(&message.id)
            .unwrap_or_else(|| panic!("unexpected or repeated ID {:#06x}", message.id));
        assert_eq!(addresses(&message), [address], "ID {:#06x}", message.id);
        last = sent.elapsed();
    }
    assert_eq!(upstream.queries(), usize::from(count));
    // Asked only once a place came free, so answered a whole delay later.
    assert!(last >= 2 * DELAY, "the last answer came after {last:?}");
    server.stop().await;
}

async fn start_with_idle_timeout(upstream: &FakeUpstream, idle: Duration) -> TestServer {
    let mut config = test_config(&[upstream.addr()]);
    config.limits.tcp_idle_timeout = idle;
    start_with(config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let upstream = FakeUpstream::start(loopback(73)).await;
    let server = start_with_idle_timeout(&upstream, Duration::from_millis(200)).await;
    let mut client = connect(&server).await;
    let opened = Instant::now();
    match client.recv(LIMIT).await {
        Err(ClientError::Closed) => {}
        Err(ClientError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("expected the server to close the idle connection, got {other:?}"),
    }
    let closed_after = opened.elapsed();
    assert!(
        closed_after >= Duration::from_millis(150) && closed_after < Duration::from_millis(600),
        "closed after {closed_after:?}, idle timeout 200ms"
    );
    assert_eq!(server.stats.metrics().tcp_idle_closed.get(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_stalled_inside_a_frame_is_closed_after_the_idle_timeout() {
    let upstream = FakeUpstream::start(loopback(78)).await;
    let server = start_with_idle_timeout(&upstream, Duration::from_millis(200)).await;
    let mut client = connect(&server).await;
    // A length prefix and half a query, then nothing: bytes arrive, but no
    // message, so the connection is as idle as one that sends nothing.
    let query = build_query("stall.idle.test", RecordType::A, &QueryOpts::default());
    let len = u16::try_from(query.len()).expect("short").to_be_bytes();
    let opened = Instant::now();
    client
        .send_unframed(&[&len[..], &query[..query.len() / 2]].concat())
        .await
        .expect("send half a frame");
    match client.recv(LIMIT).await {
        Err(ClientError::Closed) => {}
        Err(ClientError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("expected the stalled connection to be closed, got {other:?}"),
    }
    let closed_after = opened.elapsed();
    assert!(
        closed_after >= Duration::from_millis(150) && closed_after < Duration::from_millis(600),
        "closed after {closed_after:?}, idle timeout 200ms"
    );
    assert_eq!(upstream.queries(), 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_connection_stays_open_past_the_idle_timeout() {
    let upstream = FakeUpstream::start(loopback(74)).await;
    upstream.add_a("busy.idle.test", "192.0.2.74", 300);
    let server = start_with_idle_timeout(&upstream, Duration::from_millis(200)).await;
    let mut client = connect(&server).await;
    let opened = Instant::now();
    let mut id = 0;
    while opened.elapsed() < Duration::from_millis(650) {
        id += 1;
        ask_ok(&mut client, "busy.idle.test", "192.0.2.74", id).await;
        sleep(Duration::from_millis(100)).await;
    }
    assert!(id >= 6, "only {id} queries");
    // Still open well past 200 ms after it opened, and it still answers.
    ask_ok(&mut client, "busy.idle.test", "192.0.2.74", 0x0b05).await;
    assert!(opened.elapsed() > Duration::from_millis(500));
    assert_eq!(server.stats.metrics().tcp_idle_closed.get(), 0);
    // Once it falls silent, the idle timeout applies again.
    let quiet = Instant::now();
    assert!(
        matches!(
            client.recv(LIMIT).await,
            Err(ClientError::Closed | ClientError::Io(_))
        ),
        "closed once idle"
    );
    let after = quiet.elapsed();
    assert!(
        after >= Duration::from_millis(150) && after < Duration::from_millis(600),
        "{after:?}"
    );
    assert_eq!(server.stats.metrics().tcp_idle_closed.get(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_are_closed_at_once_and_the_others_keep_working() {
    let upstream = FakeUpstream::start(loopback(75)).await;
    upstream.add_a("cap.test", "192.0.2.75", 300);
    let mut config = test_config(&[upstream.addr()]);
    config.limits.tcp_max_connections = 3;
    let server = start_with(config).await;

    let mut open = Vec::new();
    for i in 0..3u16 {
        let mut client = connect(&server).await;
        ask_ok(&mut client, "cap.test", "192.0.2.75", 0x0c00 + i).await;
        open.push(client);
    }
    // The kernel completes the handshake; punctual accepts and closes at once.
    let mut fourth = connect(&server).await;
    let tried = Instant::now();
    let result = fourth
        .query(
            "cap.test",
            RecordType::A,
            &QueryOpts::default().with_id(0x0c04),
            LIMIT,
        )
        .await;
    match result {
        Err(ClientError::Closed) | Err(ClientError::Io(_)) => {}
        other => panic!("the 4th connection must be closed without an answer, got {other:?}"),
    }
    assert!(
        tried.elapsed() < Duration::from_millis(200),
        "closed after {:?}",
        tried.elapsed()
    );
    let metrics = server.stats.metrics();
    assert!(metrics.tcp_connections_refused.get() >= 1);
    assert_eq!(metrics.tcp_connections_accepted.get(), 3);

    for (i, client) in open.iter_mut().enumerate() {
        ask_ok(client, "cap.test", "192.0.2.75", 0x0d00 + i as u16).await;
    }
    // Close one: its slot is freed as soon as the server sees EOF.
    drop(open.remove(0));
    let retry_until = Instant::now() + LIMIT;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let mut client = connect(&server).await;
        let reply = client
            .query(
                "cap.test",
                RecordType::A,
                &QueryOpts::default().with_id(0x0e00),
                LIMIT,
            )
            .await;
        match reply {
            Ok(reply) => {
                assert_eq!(addresses(&reply.message), ["192.0.2.75"]);
                break;
            }
            Err(e) if Instant::now() < retry_until => {
                eprintln!("attempt {attempts}: {e}");
                sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("no connection accepted after closing one: {e}"),
        }
    }
    assert_eq!(metrics.tcp_connections_accepted.get(), 4);
    for (i, client) in open.iter_mut().enumerate() {
        ask_ok(client, "cap.test", "192.0.2.75", 0x0f00 + i as u16).await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_upstream_gets_servfail_ede_22_at_the_deadline_and_the_connection_lives() {
    let upstream = FakeUpstream::start(loopback(76)).await;
    upstream.add_a("cached.hang.test", "192.0.2.76", 300);
    upstream.add_a("hung.hang.test", "192.0.2.77", 300);
    upstream.add_a("after.hang.test", "192.0.2.78", 300);
    let server = start(upstream.addr()).await;
    let mut client = connect(&server).await;
    ask_ok(&mut client, "cached.hang.test", "192.0.2.76", 0x0001).await;
    upstream.set_behavior(Behavior::Hang);

    let opts = QueryOpts::default().with_id(0x4a96).with_edns(1232);
    let reply = client
        .query("hung.hang.test", RecordType::A, &opts, LIMIT)
        .await
        .expect("SERVFAIL at the deadline");
    assert_eq!(reply.message.response_code, ResponseCode::ServFail);
    assert!(reply.message.answers.is_empty());
    let (code, text) = ede(&reply.message).expect("an Extended DNS Error");
    assert_eq!(code, 22, "No Reachable Authority (RFC 8914 §4.23): {text}");
    assert_eq!(ede_from_bytes(&reply.bytes).map(|(c, _)| c), Some(22));
    assert!(
        reply.elapsed >= TEST_DEADLINE
            && reply.elapsed < TEST_DEADLINE + Duration::from_millis(100),
        "SERVFAIL after {:?}, deadline {TEST_DEADLINE:?}",
        reply.elapsed
    );
    assert!(upstream.udp_queries() >= 2, "retried within the deadline");

    // The same connection still serves: from the cache, and from the upstream
    // once it answers again.
    ask_ok(&mut client, "cached.hang.test", "192.0.2.76", 0x0002).await;
    upstream.set_behavior(Behavior::Answer);
    ask_ok(&mut client, "after.hang.test", "192.0.2.78", 0x0003).await;
    assert_eq!(server.stats.metrics().tcp_connections_accepted.get(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_open_connection_still_gets_its_outstanding_answers() {
    // A client that half-closes (shutdown(SHUT_WR)) after sending can still
    // read: end of input must stop reading, not drop the queries outstanding.
    let upstream = FakeUpstream::start(loopback(77)).await;
    upstream.add_a("hit.half.test", "192.0.2.77", 300);
    upstream.add_a("miss.half.test", "192.0.2.78", 300);
    let server = start(upstream.addr()).await;
    let mut client = connect(&server).await;
    ask_ok(&mut client, "hit.half.test", "192.0.2.77", 0x0001).await;
    upstream.set_behavior(Behavior::Delay(Duration::from_millis(50)));

    let miss = build_query(
        "miss.half.test",
        RecordType::A,
        &QueryOpts::default().with_id(0x0d15),
    );
    let hit = build_query(
        "hit.half.test",
        RecordType::A,
        &QueryOpts::default().with_id(0x0417),
    );
    client.send(&miss).await.expect("send miss");
    client.send(&hit).await.expect("send hit");
    client.shutdown_write().await.expect("half-close");

    let mut answered = Vec::new();
    for _ in 0..2 {
        match client.recv(LIMIT).await {
            Ok(frame) => answered.push(Message::from_vec(&frame).expect("decodes")),
            Err(e) => panic!(
                "answers before the close: {:?}; then {e} (the cache miss was dropped on EOF)",
                answered
                    .iter()
                    .map(|m| format!("{:#06x}", m.id))
                    .collect::<Vec<_>>()
            ),
        }
    }
    assert_eq!(answered[0].id, 0x0417, "the hit first");
    assert_eq!(addresses(&answered[1]), ["192.0.2.78"], "then the miss");
    assert!(
        matches!(client.recv(LIMIT).await, Err(ClientError::Closed)),
        "then the server closes"
    );
    server.stop().await;
}
