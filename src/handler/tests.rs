//! The handler's cache rules on tokio's paused clock, driving [`Resolver`]
//! directly: serve-stale, the failure cache and prefetch, each timed exactly.
//!
//! Two upstreams on 127.0.0.1, both deterministic under the paused clock:
//! - [`hung`]: a bound socket that never answers. Every wait for it ends
//!   exactly at its deadline, since the clock only moves when nothing can run.
//! - [`Responder`]: answers from a blocking thread. While it runs, tokio does
//!   not advance the paused clock (a blocking task inhibits auto-advance), so
//!   everything its answers cause happens at one instant, however slowly the
//!   machine runs it.
//!
//! The socket tests of the same rules on the real clock are tests/stale.rs,
//! tests/failure_cache.rs and tests/cache.rs.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use tokio::task::JoinHandle;

use super::*;
use crate::answer::tests::upstream_reply;
use crate::config::{Config, Strategy, UpstreamAddr};
use crate::error::EDE_NO_REACHABLE_AUTHORITY;
use crate::local::Hosts;
use crate::query::rcode;
use crate::wire;

const NAME: &str = "cached.test.";
const DEADLINE: Duration = Duration::from_secs(2);
const STALE_ANSWER_AFTER: Duration = Duration::from_millis(1500);
const STALE_TTL: u32 = 30;
const FAILURE_TTL: Duration = Duration::from_secs(5);
/// The shortest TTL that is prefetched; its last tenth is its last second.
const PREFETCH_TTL: u32 = 10;

/// A resolver asking `upstream` only, with no hosts file and the timings above.
fn resolver(upstream: SocketAddr, edit: impl FnOnce(&mut Config)) -> Arc<Resolver> {
    let mut config = Config::default();
    config.upstream.servers = vec![UpstreamAddr::udp(upstream)];
    config.upstream.strategy = Strategy::Ordered;
    config.local.hosts_files = Vec::new();
    config.limits.deadline = DEADLINE;
    config.cache.stale_answer_after = Some(STALE_ANSWER_AFTER);
    config.cache.stale_ttl = Duration::from_secs(u64::from(STALE_TTL));
    config.cache.failure_ttl = FAILURE_TTL;
    edit(&mut config);
    config.validate().expect("a valid test config");
    let upstreams = config.upstream.servers.clone();
    crate::build_resolver(&config, upstreams, Arc::new(Hosts::default())).expect("builds")
}

/// A client's query for `name` A, with EDNS so that responses carry an EDE.
fn query(name: &str) -> Vec<u8> {
    let mut message = Message::new(0x4242, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(
        Name::from_ascii(name).expect("a valid name"),
        RecordType::A,
    ));
    message.set_edns(Edns::new());
    message.to_vec().expect("encodes")
}

/// Caches an upstream answer for `name`, received now, with one A record of `ttl`.
fn seed(resolver: &Resolver, name: &str, ttl: u32) {
    let reply = upstream_reply(1, name, &[ttl]);
    let answer = Answer::from_upstream(&reply, Instant::now()).expect("a valid reply");
    let key = ClientQuery::parse(&query(name)).expect("valid").key;
    resolver.cache().insert(&key, Arc::new(answer));
}

fn ask(resolver: &Arc<Resolver>, name: &str) -> Handled {
    resolver.handle(&query(name), Transport::Udp, Instant::now())
}

/// A response handed back by `handle` itself: no time can pass for it.
fn at_once(handled: Handled) -> (Vec<u8>, Source) {
    match handled {
        Handled::Reply(bytes, source) => (bytes, source),
        Handled::Wait(_) => panic!("waits for a lookup instead of answering at once"),
        Handled::Drop => panic!("dropped"),
    }
}

fn pending(handled: Handled) -> PendingQuery {
    match handled {
        Handled::Wait(pending) => pending,
        Handled::Reply(_, source) => panic!("answered at once from {source:?}"),
        Handled::Drop => panic!("dropped"),
    }
}

/// RCODE and the first EDE's INFO-CODE.
fn outcome(bytes: &[u8]) -> (u16, Option<u16>) {
    wire::response_outcome(bytes).expect("a well-formed response")
}

fn ttls(bytes: &[u8]) -> Vec<u32> {
    let message = Message::from_vec(bytes).expect("a well-formed response");
    message.answers.iter().map(|record| record.ttl).collect()
}

/// An upstream that takes queries and never answers. Bound for as long as
/// the socket is held, so no ICMP port-unreachable ends a wait early.
fn hung() -> (UdpSocket, SocketAddr) {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("binds");
    let addr = socket.local_addr().expect("bound");
    (socket, addr)
}

/// How long a [`Responder`] runs at most (500 × its 10 ms read timeout: 5 s), so a
/// test whose refresh never comes fails on the resumed clock instead of hanging.
const RESPONDER_ROUNDS: usize = 500;

/// An upstream answering every query with `reply(query)` from a blocking
/// thread; the paused clock stands still until it is stopped.
struct Responder {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    task: JoinHandle<usize>,
}

impl Responder {
    fn start(reply: fn(&[u8]) -> Vec<u8>) -> Responder {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("binds");
        socket
            .set_read_timeout(Some(Duration::from_millis(10)))
            .expect("sets a timeout");
        let addr = socket.local_addr().expect("bound");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let task = tokio::task::spawn_blocking(move || {
            let mut answered = 0;
            let mut buffer = [0u8; 512];
            for _ in 0..RESPONDER_ROUNDS {
                if stopped.load(Ordering::Acquire) {
                    break;
                }
                match socket.recv_from(&mut buffer) {
                    Ok((len, from)) => {
                        socket.send_to(&reply(&buffer[..len]), from).expect("sends");
                        answered += 1;
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) => {}
                    Err(e) => panic!("responder: {e}"),
                }
            }
            answered
        });
        Responder { addr, stop, task }
    }

    /// Stops answering; returns how many queries were answered.
    async fn stop(mut self) -> usize {
        self.stop.store(true, Ordering::Release);
        (&mut self.task).await.expect("the responder ran")
    }
}

/// A failed test's responder stops too: the runtime waits for it on shutdown.
impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// The query echoed back as SERVFAIL.
fn servfail(query: &[u8]) -> Vec<u8> {
    let mut reply = query.to_vec();
    reply[2] |= 0x80; // QR
    reply[3] = (reply[3] & 0xf0) | rcode::SERVFAIL;
    reply
}

/// An answer to the query: one A record with TTL `PREFETCH_TTL`.
fn renewed(query: &[u8]) -> Vec<u8> {
    let message = Message::from_vec(query).expect("our own query");
    let name = message.queries[0].name().to_ascii();
    upstream_reply(message.metadata.id, &name, &[PREFETCH_TTL])
}

/// Lets the spawned lookups run until none is in flight. Yielding never moves
/// the paused clock.
async fn until_no_lookup(resolver: &Resolver) {
    while resolver.inflight().lookups > 0 {
        tokio::task::yield_now().await;
    }
}

/// RFC 8767 §4: with the refresh unanswered, the client gets the expired
/// answer at `stale_answer_after`, every TTL `stale_ttl`, EDE 3 (RFC 8914 §4.4).
#[tokio::test(start_paused = true)]
async fn expired_entry_with_a_hung_upstream_is_served_stale_at_stale_answer_after() {
    let (_upstream, addr) = hung();
    let resolver = resolver(addr, |_| {});
    seed(&resolver, NAME, 60);
    tokio::time::advance(Duration::from_secs(60)).await;

    let arrival = Instant::now();
    let (bytes, source) = pending(ask(&resolver, NAME)).response().await;
    assert_eq!(Instant::now() - arrival, STALE_ANSWER_AFTER);
    assert_eq!(source, Source::Stale);
    assert_eq!(
        outcome(&bytes),
        (u16::from(rcode::NOERROR), Some(EDE_STALE_ANSWER))
    );
    assert_eq!(ttls(&bytes), [STALE_TTL]);
    let metrics = resolver.metrics();
    assert_eq!(metrics.stale_answers.get(), 1);
    assert_eq!(metrics.refreshes.get(), 1);
    assert_eq!(metrics.lookups_started.get(), 1);
}

/// A timeout is remembered for `failure_ttl`: each hit is answered at once
/// with its EDE and makes sure one background refresh is in flight, never
/// more; a refresh that fails again renews the memory; then it is gone.
#[tokio::test(start_paused = true)]
async fn remembered_timeout_is_answered_at_once_and_keeps_one_refresh_in_flight() {
    let (_upstream, addr) = hung();
    let resolver = resolver(addr, |_| {});
    let metrics = Arc::clone(resolver.metrics());
    let timeout = (u16::from(rcode::SERVFAIL), Some(EDE_NO_REACHABLE_AUTHORITY));

    let arrival = Instant::now();
    let (bytes, source) = pending(ask(&resolver, NAME)).response().await;
    assert_eq!(Instant::now() - arrival, DEADLINE);
    assert_eq!((outcome(&bytes), source), (timeout, Source::Failed));
    assert_eq!(metrics.lookups_started.get(), 1);
    assert_eq!(resolver.inflight().lookups, 0, "no one waits: cancelled");

    for refresh in 1..=2 {
        for hit in 0..3 {
            let (bytes, source) = at_once(ask(&resolver, NAME));
            assert_eq!((outcome(&bytes), source), (timeout, Source::FailureCache));
            assert_eq!(
                (metrics.refreshes.get(), metrics.lookups_started.get()),
                (refresh, refresh + 1),
                "refresh {refresh}, hit {hit}"
            );
            assert_eq!(resolver.inflight().lookups, 1);
            tokio::task::yield_now().await;
        }
        // The refresh runs one deadline, times out and is remembered again.
        tokio::time::sleep(DEADLINE).await;
        until_no_lookup(&resolver).await;
    }
    assert_eq!(metrics.cache_failure_hits.get(), 6);

    // Remembered last when the second refresh ended, just now.
    tokio::time::advance(FAILURE_TTL - Duration::from_millis(1)).await;
    let (bytes, source) = at_once(ask(&resolver, NAME));
    assert_eq!((outcome(&bytes), source), (timeout, Source::FailureCache));
    tokio::time::advance(Duration::from_millis(1)).await;
    let _waiting = pending(ask(&resolver, NAME));
    assert_eq!(metrics.cache_failure_hits.get(), 7, "gone at failure_ttl");
}

/// A refresh that fails fast (SERVFAIL) gives the waiting client the stale
/// answer at once, not at `stale_answer_after` (RFC 8767 §4, §5).
#[tokio::test(start_paused = true)]
async fn refresh_failing_fast_serves_stale_at_once() {
    let upstream = Responder::start(servfail);
    let resolver = resolver(upstream.addr, |_| {});
    seed(&resolver, NAME, 60);
    tokio::time::advance(Duration::from_secs(60)).await;

    let arrival = Instant::now();
    let (bytes, source) = pending(ask(&resolver, NAME)).response().await;
    assert_eq!(Instant::now(), arrival, "no time passed");
    assert_eq!(source, Source::Stale);
    assert_eq!(
        outcome(&bytes),
        (u16::from(rcode::NOERROR), Some(EDE_STALE_ANSWER))
    );
    assert_eq!(ttls(&bytes), [STALE_TTL]);
    assert_eq!(upstream.stop().await, 1);
}

/// Prefetch: many hits in the last tenth of a 10 s TTL, all at one instant,
/// are answered from the cache and start one refresh, one upstream query;
/// once it lands the TTL is whole again.
#[tokio::test(start_paused = true)]
async fn hits_in_the_last_tenth_prefetch_once_and_renew_the_ttl() {
    let upstream = Responder::start(renewed);
    let resolver = resolver(upstream.addr, |_| {});
    let metrics = Arc::clone(resolver.metrics());
    seed(&resolver, NAME, PREFETCH_TTL);
    tokio::time::advance(Duration::from_millis(9_100)).await;

    let at = Instant::now();
    for hit in 0..50 {
        let (bytes, source) = at_once(ask(&resolver, NAME));
        assert_eq!(source, Source::Cache, "hit {hit}");
        assert_eq!(ttls(&bytes), [1], "hit {hit}: 9.1 s old");
    }
    assert_eq!(metrics.prefetches.get(), 1);
    assert_eq!(metrics.lookups_started.get(), 1);

    until_no_lookup(&resolver).await;
    assert_eq!(Instant::now(), at, "answered while the clock stood");
    let (bytes, source) = at_once(ask(&resolver, NAME));
    assert_eq!(source, Source::Cache);
    assert_eq!(ttls(&bytes), [PREFETCH_TTL], "renewed");
    assert_eq!(upstream.stop().await, 1, "one upstream query");
    assert_eq!(metrics.upstream_queries.get(), 1);
    assert_eq!(metrics.prefetches.get(), 1);
}

/// A prefetch skipped because `max_inflight` lookups are running is asked
/// again by the next hit in the last tenth, once there is room.
#[tokio::test(start_paused = true)]
async fn prefetch_skipped_at_max_inflight_is_asked_again_by_the_next_hit() {
    let (_upstream, addr) = hung();
    let resolver = resolver(addr, |config| config.limits.max_inflight = 1);
    let metrics = Arc::clone(resolver.metrics());
    seed(&resolver, NAME, PREFETCH_TTL);
    tokio::time::advance(Duration::from_millis(9_100)).await;

    // Another name's lookup takes the only place.
    let other = pending(ask(&resolver, "other.test."));
    let (_, source) = at_once(ask(&resolver, NAME));
    assert_eq!(source, Source::Cache);
    assert_eq!(metrics.refreshes_skipped.get(), 1);
    assert_eq!(metrics.prefetches.get(), 0);

    // Its client leaves: the lookup is cancelled and the place is free.
    drop(other);
    assert_eq!(resolver.inflight().lookups, 0);
    let (_, source) = at_once(ask(&resolver, NAME));
    assert_eq!(source, Source::Cache);
    assert_eq!(metrics.prefetches.get(), 1, "asked again");
    assert_eq!(metrics.lookups_started.get(), 2);
}
