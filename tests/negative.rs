//! Negative caching (RFC 2308) end to end over loopback UDP: NXDOMAIN and NODATA
//! answers with an SOA are cached for min(SOA TTL, SOA MINIMUM), capped by
//! `negative_max_ttl`, and served with the SOA's TTL counted down; a flood of
//! distinct NXDOMAIN names is asked upstream once per name; a CNAME chain that
//! ends in NXDOMAIN or NODATA is cached whole. Exact TTL arithmetic on a paused
//! clock is unit-tested in src/answer.rs and src/cache.rs.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use ::punctual::config::Config;
use common::punctual::{TEST_DEADLINE, start_with, test_config};
use common::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Record, RecordType};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until};

/// One second and a bit: the served TTLs have dropped by exactly one.
const ONE_SECOND_LATER: Duration = Duration::from_millis(1100);

/// The test config, edited. Retransmission is pushed out to the deadline so the
/// upstream's query counts stay exact however loaded the machine.
fn negative_config(upstream: SocketAddr, edit: impl FnOnce(&mut Config)) -> Config {
    let mut config = test_config(&[upstream]);
    config.limits.attempt_timeout = TEST_DEADLINE;
    edit(&mut config);
    config
}

/// A negative answer: `rcode`, no record of the asked type, one SOA owned by
/// `apex` in the authority section. Returns the SOA's TTL.
fn negative_soa_ttl(reply: &Reply, rcode: ResponseCode, apex: &str) -> u32 {
    let message = &reply.message;
    assert_eq!(message.response_code, rcode, "{message:?}");
    let asked = message.queries[0].query_type();
    assert!(
        message.answers.iter().all(|r| r.record_type() != asked),
        "{message:?}"
    );
    let soas: Vec<&Record> = message
        .authorities
        .iter()
        .filter(|r| r.record_type() == RecordType::SOA)
        .collect();
    assert_eq!(
        soas.len(),
        1,
        "one SOA in the authority section: {message:?}"
    );
    assert_eq!(soas[0].name.to_ascii(), apex);
    assert_eq!(ede(message), None, "a cached negative answer is no error");
    soas[0].ttl
}

/// A record with its TTL zeroed, to compare sections across TTL countdowns.
fn without_ttl(record: &Record) -> Record {
    let mut record = record.clone();
    record.ttl = 0;
    record
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nxdomain_is_cached_for_its_soa_negative_ttl_counting_down() {
    const NAME: &str = "missing.nx.test";
    let upstream = FakeUpstream::start(loopback(170)).await;
    upstream.set_negative_ttl(5);
    let server = start_with(negative_config(upstream.addr(), |_| {})).await;

    let first = ask_type(server.udp, NAME, RecordType::A).await;
    let cached = Instant::now();
    assert_eq!(
        negative_soa_ttl(&first, ResponseCode::NXDomain, "nx.test."),
        5
    );
    assert_eq!(upstream.queries_for(NAME), 1);

    let second = ask_type(server.udp, NAME, RecordType::A).await;
    assert_eq!(
        negative_soa_ttl(&second, ResponseCode::NXDomain, "nx.test."),
        5
    );
    assert!(second.elapsed < AT_ONCE, "took {:?}", second.elapsed);

    sleep_until(cached + ONE_SECOND_LATER).await;
    let later = ask_type(server.udp, NAME, RecordType::A).await;
    assert_eq!(
        negative_soa_ttl(&later, ResponseCode::NXDomain, "nx.test."),
        4,
        "the SOA's TTL counts down"
    );
    assert_eq!(
        upstream.queries_for(NAME),
        1,
        "both answered from the cache"
    );

    let metrics = server.stats.metrics();
    assert_eq!(metrics.cache_negative_inserts.get(), 1);
    assert_eq!(metrics.cache_hits.get(), 2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_max_ttl_caps_how_long_an_nxdomain_is_kept() {
    const NAME: &str = "missing.cap.test";
    let upstream = FakeUpstream::start(loopback(171)).await;
    upstream.set_negative_ttl(60);
    let server = start_with(negative_config(upstream.addr(), |c| {
        c.cache.negative_max_ttl = Duration::from_secs(2);
    }))
    .await;

    let first = ask_type(server.udp, NAME, RecordType::A).await;
    let cached = Instant::now();
    assert_eq!(
        negative_soa_ttl(&first, ResponseCode::NXDomain, "cap.test."),
        2,
        "SOA TTL 60 served capped at negative_max_ttl"
    );

    sleep_until(cached + ONE_SECOND_LATER).await;
    let later = ask_type(server.udp, NAME, RecordType::A).await;
    assert_eq!(
        negative_soa_ttl(&later, ResponseCode::NXDomain, "cap.test."),
        1
    );
    assert_eq!(upstream.queries_for(NAME), 1, "still cached after 1 s");

    // Past the cap the entry has expired: the upstream is asked again (and its
    // answer, in time, is served fresh).
    sleep_until(cached + Duration::from_secs(2) + Duration::from_millis(100)).await;
    let expired = ask_type(server.udp, NAME, RecordType::A).await;
    assert_eq!(
        negative_soa_ttl(&expired, ResponseCode::NXDomain, "cap.test."),
        2
    );
    assert_eq!(upstream.queries_for(NAME), 2, "expired after 2 s, not 60");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodata_is_cached_for_its_soa_negative_ttl_counting_down() {
    const NAME: &str = "v4only.nodata.test";
    let upstream = FakeUpstream::start(loopback(172)).await;
    upstream.add_a(NAME, "192.0.2.172", 300);
    upstream.set_negative_ttl(5);
    let server = start_with(negative_config(upstream.addr(), |_| {})).await;

    let first = ask_type(server.udp, NAME, RecordType::AAAA).await;
    let cached = Instant::now();
    assert_eq!(
        negative_soa_ttl(&first, ResponseCode::NoError, "nodata.test."),
        5
    );
    assert!(first.message.answers.is_empty(), "{:?}", first.message);

    let second = ask_type(server.udp, NAME, RecordType::AAAA).await;
    assert_eq!(
        negative_soa_ttl(&second, ResponseCode::NoError, "nodata.test."),
        5
    );
    assert!(second.elapsed < AT_ONCE, "took {:?}", second.elapsed);

    sleep_until(cached + ONE_SECOND_LATER).await;
    let later = ask_type(server.udp, NAME, RecordType::AAAA).await;
    assert_eq!(
        negative_soa_ttl(&later, ResponseCode::NoError, "nodata.test."),
        4
    );
    assert_eq!(
        upstream.queries_for(NAME),
        1,
        "both answered from the cache"
    );

    // The name's A record is its own question: asked once, then positive.
    let a = ask_type(server.udp, NAME, RecordType::A).await;
    assert_eq!(a.message.response_code, ResponseCode::NoError);
    assert_eq!(answer_ips(&a.message).len(), 1, "{:?}", a.message);
    assert_eq!(upstream.queries_for(NAME), 2);
    assert_eq!(server.stats.metrics().cache_negative_inserts.get(), 1);
    server.stop().await;
}

/// Every name of `names` asked once, `burst` concurrent clients at a time.
async fn ask_in_bursts(server: SocketAddr, names: &[String], burst: usize) -> Vec<Reply> {
    let mut replies = Vec::with_capacity(names.len());
    for chunk in names.chunks(burst) {
        let mut clients = JoinSet::new();
        for name in chunk {
            let name = name.clone();
            clients.spawn(async move { ask_type(server, &name, RecordType::A).await });
        }
        replies.extend(clients.join_all().await);
    }
    replies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nxdomain_flood_is_asked_upstream_once_per_name() {
    const NAMES: usize = 1000;
    const BURST: usize = 100;
    let upstream = FakeUpstream::start(loopback(173)).await;
    let server = start_with(negative_config(upstream.addr(), |_| {})).await;
    let names: Vec<String> = (0..NAMES).map(|i| format!("n{i}.flood.test")).collect();

    for reply in ask_in_bursts(server.udp, &names, BURST).await {
        negative_soa_ttl(&reply, ResponseCode::NXDomain, "flood.test.");
    }
    assert_eq!(upstream.queries(), NAMES, "first round: one query per name");
    let metrics = server.stats.metrics();
    assert_eq!(metrics.cache_negative_inserts.get(), NAMES as u64);

    let started = Instant::now();
    for reply in ask_in_bursts(server.udp, &names, BURST).await {
        negative_soa_ttl(&reply, ResponseCode::NXDomain, "flood.test.");
    }
    assert_eq!(
        upstream.queries(),
        NAMES,
        "second round: no upstream query at all"
    );
    assert_eq!(metrics.cache_hits.get(), NAMES as u64);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "second round took {:?}",
        started.elapsed()
    );
    server.stop().await;
}

/// A chain from `alias` asked for `rtype`, ending in `rcode`: the second ask is
/// answered from the cache with the same records, the whole chain included.
async fn chain_is_cached_whole(
    server: SocketAddr,
    upstream: &FakeUpstream,
    alias: &str,
    rtype: RecordType,
    rcode: ResponseCode,
    links: usize,
) {
    let first = ask_type(server, alias, rtype).await;
    let ttl = negative_soa_ttl(&first, rcode, "chain.test.");
    assert_eq!(ttl, 60);
    let chain: Vec<&Record> = first.message.answers.iter().collect();
    assert_eq!(chain.len(), links, "{:?}", first.message);
    assert!(chain.iter().all(|r| r.record_type() == RecordType::CNAME));
    let asked = upstream.queries();

    let second = ask_type(server, alias, rtype).await;
    assert_eq!(negative_soa_ttl(&second, rcode, "chain.test."), ttl);
    assert!(second.elapsed < AT_ONCE, "took {:?}", second.elapsed);
    assert_eq!(upstream.queries(), asked, "{alias} {rtype}: from the cache");
    let strip = |records: &[Record]| records.iter().map(without_ttl).collect::<Vec<_>>();
    assert_eq!(
        strip(&second.message.answers),
        strip(&first.message.answers),
        "the same chain"
    );
    for (later, earlier) in second.message.answers.iter().zip(&first.message.answers) {
        assert!(later.ttl <= earlier.ttl && later.ttl + 1 >= earlier.ttl);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cname_chain_ending_in_nxdomain_or_nodata_is_cached_whole() {
    let upstream = FakeUpstream::start(loopback(174)).await;
    upstream.add_cname("alias.chain.test", "mid.chain.test", 300);
    upstream.add_cname("mid.chain.test", "gone.chain.test", 300);
    upstream.add_cname("www.chain.test", "v4only.chain.test", 300);
    upstream.add_a("v4only.chain.test", "192.0.2.174", 300);
    let server = start_with(negative_config(upstream.addr(), |_| {})).await;

    chain_is_cached_whole(
        server.udp,
        &upstream,
        "alias.chain.test",
        RecordType::A,
        ResponseCode::NXDomain,
        2,
    )
    .await;
    chain_is_cached_whole(
        server.udp,
        &upstream,
        "www.chain.test",
        RecordType::AAAA,
        ResponseCode::NoError,
        1,
    )
    .await;
    assert_eq!(upstream.queries(), 2);
    assert_eq!(server.stats.metrics().cache_negative_inserts.get(), 2);
    server.stop().await;
}
