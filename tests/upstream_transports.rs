//! `tcp://` and `tls://` upstreams: one kept-open connection carries many
//! pipelined queries (RFC 7766 §6.2.1), TLS certificates are checked against
//! the configured authentication name with a CA made in the test (RFC 7858,
//! RFC 8310), an idle connection is closed and a new one opened when needed,
//! a peer that stalls cannot hold a query past its deadline, and one connection
//! carries at most 256 queries at once (the 257th is refused at once).

mod common;

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ::punctual::config::{Config, UpstreamAddr};
use common::punctual::{TEST_DEADLINE, TestServer, core_config, start_with};
use common::tls::TestCa;
use common::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
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

/// `MAX_PIPELINED` in src/upstream/stream.rs: queries in flight on one
/// `tcp://` or `tls://` connection.
const MAX_PIPELINED: usize = 256;

/// A `tcp://` upstream that reads every query and answers it only while
/// released (A 10.0.x.y, the question's number `n` in `qN.held.test` as x.y).
/// It counts connections, query frames and their distinct IDs.
struct HeldUpstream {
    addr: SocketAddr,
    release: watch::Sender<bool>,
    seen: Arc<Mutex<Seen>>,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct Seen {
    connections: usize,
    frames: usize,
    ids: HashSet<u16>,
}

impl HeldUpstream {
    async fn start(ip: std::net::IpAddr) -> HeldUpstream {
        let listener = TcpListener::bind(SocketAddr::new(ip, 0))
            .await
            .expect("bind the holding upstream");
        let addr = listener.local_addr().expect("bound address");
        let (release, released) = watch::channel(false);
        let seen = Arc::new(Mutex::new(Seen::default()));
        let task = tokio::spawn({
            let seen = Arc::clone(&seen);
            async move {
                let mut connections = JoinSet::new();
                while let Ok((stream, _)) = listener.accept().await {
                    held_lock(&seen).connections += 1;
                    connections.spawn(hold_connection(stream, released.clone(), Arc::clone(&seen)));
                }
            }
        });
        HeldUpstream {
            addr,
            release,
            seen,
            task,
        }
    }

    /// Answers every query held and every one to come (`true`), or holds
    /// the replies from now on (`false`).
    fn release(&self, answering: bool) {
        self.release.send_replace(answering);
    }

    fn connections(&self) -> usize {
        held_lock(&self.seen).connections
    }

    fn frames(&self) -> usize {
        held_lock(&self.seen).frames
    }

    fn distinct_ids(&self) -> usize {
        held_lock(&self.seen).ids.len()
    }

    fn forget_ids(&self) {
        held_lock(&self.seen).ids.clear();
    }
}

impl Drop for HeldUpstream {
    fn drop(&mut self) {
        // Dropping the accept task's JoinSet aborts every connection.
        self.task.abort();
    }
}

fn held_lock(seen: &Mutex<Seen>) -> std::sync::MutexGuard<'_, Seen> {
    seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// RFC 7766 §8 framing. The reader never waits for the writer (the queue is
/// larger than any test's burst), so every query is counted as it arrives.
async fn hold_connection(
    stream: tokio::net::TcpStream,
    mut released: watch::Receiver<bool>,
    seen: Arc<Mutex<Seen>>,
) {
    let (mut reader, mut writer) = stream.into_split();
    let (replies, mut queue) = mpsc::channel::<Vec<u8>>(4 * MAX_PIPELINED);
    let read_side = async move {
        loop {
            let Ok(len) = reader.read_u16().await else {
                return;
            };
            let mut query = vec![0u8; usize::from(len)];
            if reader.read_exact(&mut query).await.is_err() {
                return;
            }
            let Some(reply) = held_reply(&query) else {
                continue;
            };
            {
                let mut seen = held_lock(&seen);
                seen.frames += 1;
                seen.ids.insert(u16::from_be_bytes([query[0], query[1]]));
            }
            if replies.send(reply).await.is_err() {
                return;
            }
        }
    };
    let write_side = async move {
        while let Some(reply) = queue.recv().await {
            if released.wait_for(|answering| *answering).await.is_err() {
                return;
            }
            let mut frame = u16::try_from(reply.len())
                .expect("a small reply")
                .to_be_bytes()
                .to_vec();
            frame.extend_from_slice(&reply);
            if writer.write_all(&frame).await.is_err() {
                return;
            }
        }
    };
    tokio::join!(read_side, write_side);
}

/// The answer to a query for `qN.held.test` A: 10.0.x.y with N = 256x + y.
fn held_reply(query: &[u8]) -> Option<Vec<u8>> {
    let query = Message::from_vec(query).ok()?;
    let question = query.queries.first()?.clone();
    let mut reply = Message::response(query.id, query.op_code);
    reply.metadata.recursion_desired = query.recursion_desired;
    reply.metadata.recursion_available = true;
    let number: u16 = question
        .name()
        .to_ascii()
        .strip_prefix('q')?
        .split('.')
        .next()?
        .parse()
        .ok()?;
    let [x, y] = number.to_be_bytes();
    reply.answers.push(Record::from_rdata(
        question.name().clone(),
        300,
        RData::A(A(Ipv4Addr::new(10, 0, x, y))),
    ));
    reply.queries = vec![question];
    reply.to_vec().ok()
}

fn held_name(n: usize) -> (String, String) {
    (
        format!("q{n}.held.test"),
        format!("10.0.{}.{}", n / 256, n % 256),
    )
}

/// Asks `held_name(n)` for every `n` in `numbers` at once; each reply goes to
/// `results` as it comes, with its number. The clients are bound to their own
/// 127.0.0.209, not 127.0.0.1: with hundreds of fresh ports, a late datagram
/// another process on the machine sends to a 127.0.0.1 port it used before
/// would otherwise be read as punctual's reply.
fn ask_at_once(
    server: SocketAddr,
    numbers: std::ops::Range<usize>,
    results: &mpsc::UnboundedSender<(usize, Reply)>,
) {
    for n in numbers {
        let results = results.clone();
        tokio::spawn(async move {
            let name = held_name(n).0;
            let reply = query_udp_from(
                loopback(209),
                server,
                &name,
                RecordType::A,
                &edns(),
                CLIENT_LIMIT,
            )
            .await
            .unwrap_or_else(|error| panic!("{name}: no reply from punctual: {error}"));
            let _ = results.send((n, reply));
        });
    }
}

/// Receives replies until `count` arrived and `until()` holds; panics after
/// `limit`.
async fn collect_rejections(
    results: &mut mpsc::UnboundedReceiver<(usize, Reply)>,
    count: usize,
    until: impl Fn() -> bool,
    limit: Duration,
) -> Vec<(usize, Reply)> {
    let give_up = Instant::now() + limit;
    let mut rejected = Vec::new();
    loop {
        while let Ok(result) = results.try_recv() {
            rejected.push(result);
        }
        if rejected.len() >= count && until() {
            return rejected;
        }
        assert!(
            Instant::now() < give_up,
            "after {limit:?}: {} replies (wanted {count}), condition {}: {:?}",
            rejected.len(),
            until(),
            rejected
                .iter()
                .map(|(n, reply)| (n, reply.message.response_code))
                .collect::<Vec<_>>()
        );
        sleep(Duration::from_millis(1)).await;
    }
}

/// The edge of `MAX_PIPELINED`: with the upstream holding its replies, 300
/// distinct questions at once put exactly 256 queries (distinct IDs) on the one
/// connection; each of the other 44 is refused at once (no queueing, no second
/// connection) and, this being the only server, answered SERVFAIL "overloaded"
/// (EDE 0) well before its deadline, and not remembered as a failure. Once the upstream answers, all 256
/// get their own answer by their deadline, and the in-flight table empties.
/// Then a second burst of 257 questions finds all 256 places free again: none
/// was leaked by the replies or the refusals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_connection_carries_256_queries_at_once_and_refuses_the_next_at_once() {
    const DEADLINE: Duration = Duration::from_millis(1500);
    const BURST: usize = 300;
    let upstream = HeldUpstream::start(loopback(208)).await;
    let mut config = config_for(UpstreamAddr::tcp(upstream.addr));
    config.limits.deadline = DEADLINE;
    // No second attempt on the same connection within the deadline: each
    // lookup is one query, so the count on the wire is the count of lookups.
    config.limits.attempt_timeout = DEADLINE;
    let server = start_with(config).await;
    let metrics = server.stats.metrics();
    let (results, mut replies) = mpsc::unbounded_channel();

    // Phase 1: 300 at once against a full connection.
    let start = Instant::now();
    ask_at_once(server.udp, 0..BURST, &results);
    let rejected = collect_rejections(
        &mut replies,
        BURST - MAX_PIPELINED,
        || upstream.frames() >= MAX_PIPELINED,
        DEADLINE / 2,
    )
    .await;
    // Nothing has been answered upstream yet, so every reply so far is a refusal.
    for (n, reply) in &rejected {
        assert_eq!(reply.message.response_code, ResponseCode::ServFail, "q{n}");
        assert_eq!(
            ede(&reply.message).map(|(code, _)| code),
            Some(EDE_OTHER),
            "q{n}: {:?}",
            reply.message
        );
        assert!(reply.elapsed < DEADLINE / 2, "q{n}: {:?}", reply.elapsed);
    }
    assert_eq!(rejected.len(), BURST - MAX_PIPELINED);
    assert_eq!(upstream.frames(), MAX_PIPELINED, "queries on the wire");
    assert_eq!(
        upstream.distinct_ids(),
        MAX_PIPELINED,
        "IDs in flight are unique"
    );
    assert_eq!(
        upstream.connections(),
        1,
        "refused, not sent on a new connection"
    );
    assert_eq!(metrics.upstream_queries.get(), MAX_PIPELINED as u64);
    assert_eq!(
        metrics.overload_answers.get(),
        (BURST - MAX_PIPELINED) as u64
    );
    assert_eq!(metrics.lookup_network_errors.get(), 0);
    // Our own limit, not the upstream's failure: nothing remembered.
    assert_eq!(server.stats.cache_entries(), 0);

    upstream.release(true);
    let mut answered = HashSet::new();
    for _ in 0..MAX_PIPELINED {
        let (n, reply) = tokio::time::timeout_at(start + DEADLINE + LATE_MARGIN, replies.recv())
            .await
            .expect("every held query answered by its deadline")
            .expect("query tasks");
        assert_answer(&reply, &held_name(n).1);
        assert!(answered.insert(n), "q{n} answered twice");
        assert!(
            rejected.iter().all(|(r, _)| *r != n),
            "q{n} refused and answered"
        );
    }
    wait_idle(&server, DEADLINE).await;
    assert_eq!(upstream.frames(), MAX_PIPELINED, "nothing sent late");

    // Phase 2: the same connection, all 256 places free again.
    upstream.release(false);
    upstream.forget_ids();
    let again = Instant::now();
    ask_at_once(server.udp, BURST..BURST + MAX_PIPELINED + 1, &results);
    let rejected = collect_rejections(
        &mut replies,
        1,
        || upstream.frames() >= 2 * MAX_PIPELINED,
        DEADLINE / 2,
    )
    .await;
    assert_eq!(rejected.len(), 1);
    assert_eq!(
        ede(&rejected[0].1.message).map(|(code, _)| code),
        Some(EDE_OTHER)
    );
    assert_eq!(upstream.frames(), 2 * MAX_PIPELINED);
    assert_eq!(upstream.distinct_ids(), MAX_PIPELINED);
    upstream.release(true);
    for _ in 0..MAX_PIPELINED {
        let (n, reply) = tokio::time::timeout_at(again + DEADLINE + LATE_MARGIN, replies.recv())
            .await
            .expect("every held query answered by its deadline")
            .expect("query tasks");
        assert_answer(&reply, &held_name(n).1);
    }
    wait_idle(&server, DEADLINE).await;
    assert_eq!(upstream.connections(), 1, "one connection throughout");
    assert_eq!(metrics.upstream_connections.get(), 1);
    server.stop().await;
}
