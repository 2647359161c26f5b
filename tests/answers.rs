//! What clients get back for ordinary questions: the right records for A, AAAA,
//! MX, TXT and a CNAME chain over UDP and TCP, with QR=1, RA=1, RD, the ID and
//! the question (letter case included) echoed; EDNS handled hop by hop (an OPT
//! with payload 1232 only for clients that sent one, DO and CD passed upstream);
//! upstream NXDOMAIN, SERVFAIL and REFUSED passed through (the failures not
//! cached); answers too big for the client's UDP size truncated, and an upstream
//! that truncates retried over TCP; and concurrent clients each getting their
//! own ID and question.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::punctual::{TEST_DEADLINE, core_config, start, start_with};
use common::{
    Behavior, ClientError, FakeUpstream, QueryOpts, Reply, UPSTREAM_EDNS_PAYLOAD, build_query,
    loopback, query_tcp, query_udp,
};
use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::{RData, Record, RecordType};
use tokio::net::UdpSocket;
use tokio::time::{Instant, timeout_at};

/// Generous bound for one query that the upstream answers at once.
const LIMIT: Duration = Duration::from_millis(1000);
/// An answer the upstream gives at once must reach the client well inside this.
const FAST: Duration = Duration::from_millis(100);
/// The UDP payload size punctual advertises to clients and upstreams.
const OUR_PAYLOAD: u16 = 1232;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Via {
    Udp,
    Tcp,
}

async fn ask(
    via: Via,
    server: SocketAddr,
    name: &str,
    rtype: RecordType,
    opts: &QueryOpts,
) -> Result<Reply, ClientError> {
    match via {
        Via::Udp => query_udp(server, name, rtype, opts, LIMIT).await,
        Via::Tcp => query_tcp(server, name, rtype, opts, LIMIT).await,
    }
}

/// The raw question entry (QNAME, QTYPE, QCLASS) of a message with a plain
/// (uncompressed) question name right after the header.
fn raw_question(bytes: &[u8]) -> &[u8] {
    let mut at = 12;
    while let Some(&len) = bytes.get(at) {
        if len == 0 {
            return &bytes[12..(at + 5).min(bytes.len())];
        }
        at += 1 + usize::from(len);
    }
    panic!("no question in {bytes:?}");
}

/// One record as "owner TYPE data", owner lower-cased, for comparing answers.
fn summary(record: &Record) -> String {
    let owner = record.name.to_ascii().to_ascii_lowercase();
    match &record.data {
        RData::A(a) => format!("{owner} A {}", a.0),
        RData::AAAA(aaaa) => format!("{owner} AAAA {}", aaaa.0),
        RData::MX(mx) => format!(
            "{owner} MX {} {}",
            mx.preference,
            mx.exchange.to_ascii().to_ascii_lowercase()
        ),
        RData::TXT(txt) => {
            let strings: Vec<String> = txt
                .txt_data
                .iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect();
            format!("{owner} TXT {}", strings.join("|"))
        }
        RData::CNAME(cname) => format!("{owner} CNAME {}", cname.0.to_ascii().to_ascii_lowercase()),
        other => format!("{owner} {} {other}", record.record_type()),
    }
}

fn summaries(records: &[Record]) -> Vec<String> {
    records.iter().map(summary).collect()
}

/// The header and question of `reply` answer the query `opts` sent for `name`:
/// QR=1, RA=1, opcode QUERY, RD and CD echoed, and the question byte for byte.
fn assert_echoes(reply: &Reply, name: &str, rtype: RecordType, opts: &QueryOpts) {
    let m = &reply.message;
    let query = build_query(name, rtype, opts);
    assert_eq!(m.id, opts.id, "{name}: ID echoed");
    assert_eq!(m.message_type, MessageType::Response, "{name}: QR=1");
    assert!(m.recursion_available, "{name}: RA=1");
    assert_eq!(
        m.recursion_desired, opts.recursion_desired,
        "{name}: RD echoed"
    );
    assert_eq!(
        m.checking_disabled, opts.checking_disabled,
        "{name}: CD echoed"
    );
    assert_eq!(m.queries.len(), 1, "{name}: one question");
    assert_eq!(
        raw_question(&reply.bytes),
        raw_question(&query),
        "{name}: question echoed byte for byte"
    );
}

fn zone(upstream: &FakeUpstream) {
    upstream.add_a("www.example.test", "192.0.2.1", 300);
    upstream.add_aaaa("www.example.test", "2001:db8::1", 300);
    upstream.add_mx("example.test", 10, "mail.example.test", 600);
    upstream.add_txt("example.test", "v=spf1 -all", 120);
    upstream.add_cname("alias.example.test", "mid.example.test", 60);
    upstream.add_cname("mid.example.test", "www.example.test", 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_types_and_cname_chain_over_udp_and_tcp() {
    let upstream = FakeUpstream::start(loopback(40)).await;
    zone(&upstream);
    let cases: [(&str, RecordType, &[&str]); 5] = [
        (
            "Www.Example.Test",
            RecordType::A,
            &["www.example.test. A 192.0.2.1"],
        ),
        (
            "www.EXAMPLE.test",
            RecordType::AAAA,
            &["www.example.test. AAAA 2001:db8::1"],
        ),
        (
            "Example.Test",
            RecordType::MX,
            &["example.test. MX 10 mail.example.test."],
        ),
        (
            "example.TEST",
            RecordType::TXT,
            &["example.test. TXT v=spf1 -all"],
        ),
        (
            "ALIAS.example.test",
            RecordType::A,
            &[
                "alias.example.test. CNAME mid.example.test.",
                "mid.example.test. CNAME www.example.test.",
                "www.example.test. A 192.0.2.1",
            ],
        ),
    ];
    for via in [Via::Udp, Via::Tcp] {
        // A server per transport, so that both see cache misses and then hits.
        let server = start(upstream.addr()).await;
        let addr = match via {
            Via::Udp => server.udp,
            Via::Tcp => server.tcp,
        };
        for (round, rd) in [(0, true), (1, false)] {
            for (i, (name, rtype, expected)) in cases.iter().enumerate() {
                let mut opts = QueryOpts::default().with_id(0x4000 + round * 0x100 + i as u16);
                if !rd {
                    opts = opts.without_recursion();
                }
                // The cache hit is asked in another letter case.
                let name = if round == 0 {
                    name.to_string()
                } else {
                    name.to_ascii_uppercase()
                };
                let reply = ask(via, addr, &name, *rtype, &opts)
                    .await
                    .unwrap_or_else(|e| panic!("{via:?} {name} {rtype}: {e}"));
                assert_echoes(&reply, &name, *rtype, &opts);
                let m = &reply.message;
                assert_eq!(
                    m.response_code,
                    ResponseCode::NoError,
                    "{via:?} {name} {rtype}"
                );
                assert!(!m.truncation, "{via:?} {name} {rtype}: TC=0");
                assert_eq!(summaries(&m.answers), *expected, "{via:?} {name} {rtype}");
                assert!(
                    m.edns.is_none(),
                    "{via:?} {name}: no EDNS asked, none given"
                );
                assert!(
                    reply.elapsed < FAST,
                    "{via:?} {name} {rtype} took {:?}",
                    reply.elapsed
                );
            }
        }
        // Round 1 came from the cache: the upstream saw each question once per server.
        let metrics = server.stats.metrics();
        assert_eq!(
            metrics.cache_hits.get(),
            cases.len() as u64,
            "{via:?}: round 1 cached"
        );
        assert_eq!(metrics.lookups_started.get(), cases.len() as u64, "{via:?}");
        server.stop().await;
    }
    assert_eq!(
        upstream.queries(),
        2 * cases.len(),
        "one upstream query per miss"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn question_letter_case_is_echoed_byte_for_byte() {
    let upstream = FakeUpstream::start(loopback(41)).await;
    zone(&upstream);
    let server = start(upstream.addr()).await;
    // The first is a miss (the upstream sees this spelling), the rest hit the
    // cache entry made from it; each client must get its own spelling back.
    let spellings = [
        "WwW.ExAmple.TEST",
        "www.example.test",
        "WWW.EXAMPLE.TEST",
        "wWw.eXaMpLe.tEsT",
    ];
    for (i, name) in spellings.iter().enumerate() {
        for via in [Via::Udp, Via::Tcp] {
            let addr = if via == Via::Udp {
                server.udp
            } else {
                server.tcp
            };
            let opts = QueryOpts::default().with_id(0x1100 + i as u16);
            let reply = ask(via, addr, name, RecordType::A, &opts)
                .await
                .unwrap_or_else(|e| panic!("{via:?} {name}: {e}"));
            assert_echoes(&reply, name, RecordType::A, &opts);
            assert_eq!(
                summaries(&reply.message.answers),
                ["www.example.test. A 192.0.2.1"]
            );
        }
    }
    assert_eq!(
        upstream.queries_for("www.example.test"),
        1,
        "every later spelling was a cache hit"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edns_client_gets_opt_with_our_payload_and_do_cd_pass_through() {
    let upstream = FakeUpstream::start(loopback(42)).await;
    for name in [
        "plain.edns.test",
        "do.edns.test",
        "docd.edns.test",
        "small.edns.test",
    ] {
        upstream.add_a(name, "192.0.2.42", 300);
    }
    let server = start(upstream.addr()).await;

    for via in [Via::Udp, Via::Tcp] {
        let addr = if via == Via::Udp {
            server.udp
        } else {
            server.tcp
        };
        // EDNS without DO, advertising more than we do: our OPT says 1232, DO=0.
        for (name, payload) in [("plain.edns.test", 4096), ("small.edns.test", 512)] {
            let opts = QueryOpts::default().with_edns(payload);
            let reply = ask(via, addr, name, RecordType::A, &opts)
                .await
                .unwrap_or_else(|e| panic!("{via:?} {name}: {e}"));
            assert_echoes(&reply, name, RecordType::A, &opts);
            let edns = reply
                .message
                .edns
                .as_ref()
                .unwrap_or_else(|| panic!("{via:?} {name}: OPT back"));
            assert_eq!(edns.max_payload(), OUR_PAYLOAD, "{via:?} {name}");
            assert_eq!(edns.version(), 0, "{via:?} {name}");
            assert!(!edns.flags().dnssec_ok, "{via:?} {name}: DO not set by us");
            assert_eq!(
                reply.message.additionals.len(),
                0,
                "{via:?} {name}: only the OPT"
            );
            assert_eq!(reply.message.answers.len(), 1, "{via:?} {name}");
        }
    }
    let last = upstream.last_query().expect("upstream was asked");
    assert!(
        !last
            .edns
            .as_ref()
            .expect("upstream query has OPT")
            .flags()
            .dnssec_ok
    );
    assert!(!last.checking_disabled);

    // DO=1: echoed in our OPT, and asked upstream with DO=1.
    let opts = QueryOpts::default().with_edns(1232).with_dnssec_ok();
    let reply = query_udp(server.udp, "do.edns.test", RecordType::A, &opts, LIMIT)
        .await
        .expect("DO query answered");
    assert_echoes(&reply, "do.edns.test", RecordType::A, &opts);
    let edns = reply
        .message
        .edns
        .as_ref()
        .expect("OPT back to a DO client");
    assert!(edns.flags().dnssec_ok, "DO echoed (RFC 3225 §3)");
    assert_eq!(edns.max_payload(), OUR_PAYLOAD);
    let last = upstream.last_query().expect("upstream was asked");
    assert_eq!(
        last.queries[0].name().to_ascii().to_ascii_lowercase(),
        "do.edns.test."
    );
    let up_edns = last.edns.as_ref().expect("upstream query has OPT");
    assert!(up_edns.flags().dnssec_ok, "DO passed upstream");
    assert!(!last.checking_disabled, "CD not invented");

    // DO=1 and CD=1: both echoed to the client and passed upstream.
    let opts = QueryOpts::default()
        .with_edns(1232)
        .with_dnssec_ok()
        .with_checking_disabled();
    let reply = query_tcp(server.tcp, "docd.edns.test", RecordType::A, &opts, LIMIT)
        .await
        .expect("DO+CD query answered");
    assert_echoes(&reply, "docd.edns.test", RecordType::A, &opts);
    assert!(
        reply
            .message
            .edns
            .as_ref()
            .expect("OPT back")
            .flags()
            .dnssec_ok
    );
    let last = upstream.last_query().expect("upstream was asked");
    assert_eq!(
        last.queries[0].name().to_ascii().to_ascii_lowercase(),
        "docd.edns.test."
    );
    assert!(last.checking_disabled, "CD passed upstream");
    assert!(
        last.edns
            .as_ref()
            .expect("upstream query has OPT")
            .flags()
            .dnssec_ok
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_without_edns_gets_no_opt_though_upstream_is_asked_with_edns() {
    let upstream = FakeUpstream::start(loopback(43)).await;
    upstream.add_a("noedns.test", "192.0.2.43", 300);
    upstream.add_a("noedns-tcp.test", "192.0.2.44", 300);
    let server = start(upstream.addr()).await;
    for (via, name) in [(Via::Udp, "noedns.test"), (Via::Tcp, "noedns-tcp.test")] {
        let addr = if via == Via::Udp {
            server.udp
        } else {
            server.tcp
        };
        let opts = QueryOpts::default();
        let reply = ask(via, addr, name, RecordType::A, &opts)
            .await
            .unwrap_or_else(|e| panic!("{via:?}: {e}"));
        assert_echoes(&reply, name, RecordType::A, &opts);
        assert!(
            reply.message.edns.is_none(),
            "{via:?}: no OPT for a client without EDNS"
        );
        assert_eq!(reply.message.additionals.len(), 0, "{via:?}");
        // ARCOUNT straight from the wire: the upstream's OPT was not passed on.
        assert_eq!(&reply.bytes[10..12], &[0, 0], "{via:?}: ARCOUNT 0");
        let last = upstream.last_query().expect("upstream was asked");
        assert_eq!(
            last.queries[0].name().to_ascii().to_ascii_lowercase(),
            format!("{name}.")
        );
        let up_edns = last
            .edns
            .as_ref()
            .expect("punctual asks upstream with EDNS");
        assert_eq!(
            up_edns.max_payload(),
            UPSTREAM_EDNS_PAYLOAD,
            "{via:?}: upstream asked with 1232"
        );
        assert_eq!(up_edns.version(), 0);
        assert!(!up_edns.flags().dnssec_ok);
        assert!(last.recursion_desired, "punctual asks upstream with RD=1");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nxdomain_is_passed_through_fast() {
    let upstream = FakeUpstream::start(loopback(44)).await;
    upstream.add_a("exists.nx.test", "192.0.2.44", 300);
    let server = start(upstream.addr()).await;
    for (via, name) in [
        (Via::Udp, "NoSuch.nx.test"),
        (Via::Tcp, "nosuch-tcp.nx.test"),
    ] {
        let addr = if via == Via::Udp {
            server.udp
        } else {
            server.tcp
        };
        let opts = QueryOpts::default().with_edns(1232);
        let reply = ask(via, addr, name, RecordType::A, &opts)
            .await
            .unwrap_or_else(|e| panic!("{via:?}: {e}"));
        assert_echoes(&reply, name, RecordType::A, &opts);
        let m = &reply.message;
        assert_eq!(m.response_code, ResponseCode::NXDomain, "{via:?}");
        assert_eq!(reply.bytes[3] & 0x0f, 3, "{via:?}: header rcode 3");
        assert!(m.answers.is_empty(), "{via:?}");
        assert_eq!(
            m.authorities.len(),
            1,
            "{via:?}: the upstream's SOA passed on"
        );
        assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
        assert!(
            common::ede(m).is_none(),
            "{via:?}: the upstream's answer, not ours"
        );
        assert!(
            reply.elapsed < FAST,
            "{via:?}: NXDOMAIN took {:?}",
            reply.elapsed
        );
    }
    assert_eq!(upstream.queries_for("nosuch.nx.test"), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_servfail_and_refused_are_passed_through_and_not_cached() {
    let upstream = FakeUpstream::start(loopback(45)).await;
    upstream.add_a("sf.fail.test", "192.0.2.45", 300);
    upstream.add_a("ref.fail.test", "192.0.2.46", 300);
    let server = start_with(core_config(&[upstream.addr()])).await;
    for (behavior, name, rcode) in [
        (Behavior::Servfail, "sf.fail.test", ResponseCode::ServFail),
        (Behavior::Refused, "ref.fail.test", ResponseCode::Refused),
    ] {
        upstream.set_behavior(behavior);
        for (round, via) in [Via::Udp, Via::Tcp, Via::Udp].into_iter().enumerate() {
            let addr = if via == Via::Udp {
                server.udp
            } else {
                server.tcp
            };
            let opts = QueryOpts::default().with_edns(1232);
            let reply = ask(via, addr, name, RecordType::A, &opts)
                .await
                .unwrap_or_else(|e| panic!("{behavior:?} {via:?}: {e}"));
            assert_echoes(&reply, name, RecordType::A, &opts);
            assert_eq!(
                reply.message.response_code, rcode,
                "{behavior:?} {via:?} round {round}"
            );
            assert!(reply.message.answers.is_empty());
            // Passed through at once, not a deadline SERVFAIL of ours (EDE 22).
            assert!(
                common::ede(&reply.message).is_none(),
                "{behavior:?}: no EDE of ours"
            );
            assert!(
                reply.elapsed < FAST,
                "{behavior:?} {via:?} took {:?}",
                reply.elapsed
            );
            assert_eq!(
                upstream.queries_for(name),
                round + 1,
                "{behavior:?}: every query reaches the upstream (nothing cached)"
            );
        }
    }
    assert_eq!(server.stats.cache_entries(), 0, "failures are not cached");
    let metrics = server.stats.metrics();
    assert_eq!(metrics.responses_by_rcode[2].get(), 3);
    assert_eq!(metrics.responses_by_rcode[5].get(), 3);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_answer_is_truncated_for_classic_udp_and_whole_over_tcp_or_edns() {
    let upstream = FakeUpstream::start(loopback(46)).await;
    upstream.add_many_a("big.trunc.test", 40);
    let server = start(upstream.addr()).await;

    // UDP without EDNS: 512 bytes at most, so TC=1, question only (RFC 1035 §4.2.1).
    let opts = QueryOpts::default();
    let reply = query_udp(server.udp, "Big.Trunc.Test", RecordType::A, &opts, LIMIT)
        .await
        .expect("truncated reply");
    assert_echoes(&reply, "Big.Trunc.Test", RecordType::A, &opts);
    assert!(reply.message.truncation, "TC=1");
    assert_eq!(reply.message.response_code, ResponseCode::NoError);
    assert!(reply.message.answers.is_empty(), "no partial answer");
    assert!(reply.message.edns.is_none());
    assert!(reply.bytes.len() <= 512, "{} bytes", reply.bytes.len());

    // The same over TCP: all 40.
    let reply = query_tcp(server.tcp, "big.trunc.test", RecordType::A, &opts, LIMIT)
        .await
        .expect("TCP reply");
    assert_echoes(&reply, "big.trunc.test", RecordType::A, &opts);
    assert!(!reply.message.truncation);
    assert_eq!(reply.message.answers.len(), 40);

    // UDP with EDNS 1232: ~700 bytes fit, all 40.
    let opts = QueryOpts::default().with_edns(1232);
    let reply = query_udp(server.udp, "big.trunc.test", RecordType::A, &opts, LIMIT)
        .await
        .expect("EDNS reply");
    assert_echoes(&reply, "big.trunc.test", RecordType::A, &opts);
    assert!(!reply.message.truncation);
    assert_eq!(reply.message.answers.len(), 40);
    assert!(reply.bytes.len() > 512 && reply.bytes.len() <= usize::from(OUR_PAYLOAD));

    assert_eq!(upstream.queries(), 1, "one lookup, the rest from the cache");
    assert_eq!(server.stats.metrics().responses_truncated.get(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_reply_to_an_edns_client_keeps_its_opt() {
    // RFC 6891 §7: a truncated response to an EDNS query still carries an OPT.
    let upstream = FakeUpstream::start(loopback(49)).await;
    upstream.add_many_a("big.opt.test", 40);
    let server = start(upstream.addr()).await;
    // 600 bytes advertised: more than 512, less than the ~700-byte answer.
    let opts = QueryOpts::default().with_edns(600).with_dnssec_ok();
    let reply = query_udp(server.udp, "big.OPT.test", RecordType::A, &opts, LIMIT)
        .await
        .expect("truncated reply");
    assert_echoes(&reply, "big.OPT.test", RecordType::A, &opts);
    assert!(reply.message.truncation, "TC=1");
    assert!(reply.message.answers.is_empty());
    assert!(reply.bytes.len() <= 600, "{} bytes", reply.bytes.len());
    let edns = reply
        .message
        .edns
        .as_ref()
        .expect("OPT in the truncated reply");
    assert_eq!(edns.max_payload(), OUR_PAYLOAD);
    assert!(edns.flags().dnssec_ok, "DO echoed");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answer_over_1232_bytes_is_fetched_over_tcp_and_truncated_for_any_udp_client() {
    // 80 A records (~1.3 KB): over the 1232 bytes punctual asks the upstream
    // for, so the upstream truncates over UDP by itself; and over what punctual
    // sends over UDP to anyone, whatever size the client advertises.
    let upstream = FakeUpstream::start(loopback(50)).await;
    upstream.add_many_a("huge.trunc.test", 80);
    let server = start(upstream.addr()).await;
    let opts = QueryOpts::default().with_edns(4096);
    let reply = query_udp(server.udp, "huge.trunc.test", RecordType::A, &opts, LIMIT)
        .await
        .expect("truncated reply");
    assert_echoes(&reply, "huge.trunc.test", RecordType::A, &opts);
    assert!(reply.message.truncation, "TC=1 despite the client's 4096");
    assert!(reply.message.answers.is_empty());
    assert!(reply.message.edns.is_some());
    assert!(reply.elapsed < TEST_DEADLINE, "took {:?}", reply.elapsed);
    assert_eq!(server.stats.metrics().upstream_tcp_fallbacks.get(), 1);
    assert_eq!(upstream.tcp_queries(), 1);
    let reply = query_tcp(server.tcp, "huge.trunc.test", RecordType::A, &opts, LIMIT)
        .await
        .expect("TCP reply");
    assert!(!reply.message.truncation);
    assert_eq!(reply.message.answers.len(), 80);
    assert_eq!(
        upstream.queries(),
        2,
        "the TCP client was served from the cache"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_truncation_is_retried_over_tcp_within_the_deadline() {
    let upstream = FakeUpstream::start(loopback(47)).await;
    upstream.add_many_a("big.fallback.test", 40);
    upstream.set_behavior(Behavior::TruncateUdp);
    let server = start(upstream.addr()).await;

    let opts = QueryOpts::default().with_edns(1232);
    let reply = query_udp(server.udp, "big.fallback.test", RecordType::A, &opts, LIMIT)
        .await
        .expect("an answer after the TCP fallback");
    assert_echoes(&reply, "big.fallback.test", RecordType::A, &opts);
    assert_eq!(reply.message.response_code, ResponseCode::NoError);
    assert!(
        !reply.message.truncation,
        "the client gets the whole answer over UDP"
    );
    assert_eq!(reply.message.answers.len(), 40);
    assert!(reply.elapsed < TEST_DEADLINE, "took {:?}", reply.elapsed);
    assert_eq!(server.stats.metrics().upstream_tcp_fallbacks.get(), 1);
    assert_eq!(upstream.udp_queries(), 1, "one UDP attempt");
    assert_eq!(upstream.tcp_queries(), 1, "then one TCP query");

    // The full answer was cached: a classic UDP client gets TC=1 from it, and its
    // TCP retry gets all 40, without asking the upstream again.
    let plain = QueryOpts::default();
    let reply = query_udp(
        server.udp,
        "big.fallback.test",
        RecordType::A,
        &plain,
        LIMIT,
    )
    .await
    .expect("truncated reply");
    assert!(reply.message.truncation && reply.message.answers.is_empty());
    let reply = query_tcp(
        server.tcp,
        "big.fallback.test",
        RecordType::A,
        &plain,
        LIMIT,
    )
    .await
    .expect("TCP reply");
    assert_eq!(reply.message.answers.len(), 40);
    assert_eq!(upstream.queries(), 2);
    assert_eq!(server.stats.metrics().upstream_tcp_fallbacks.get(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_clients_each_get_their_own_id_and_question() {
    const NAMES: u8 = 12;
    let upstream = FakeUpstream::start(loopback(48)).await;
    for i in 0..2 * NAMES {
        upstream.add_a(
            &format!("host{i}.conc.test"),
            &format!("192.0.2.{}", 100 + i),
            300,
        );
    }
    // Slow enough that every lookup is in flight at once.
    upstream.set_behavior(Behavior::Delay(Duration::from_millis(60)));
    let server = start(upstream.addr()).await;

    // Many clients (own sockets) at once, distinct names and IDs, plus a second
    // client per name in another letter case that joins the same lookup.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..NAMES {
        for (k, name) in [format!("host{i}.conc.test"), format!("HOST{i}.Conc.Test")]
            .into_iter()
            .enumerate()
        {
            let addr = server.udp;
            let opts = QueryOpts::default().with_id(0x2000 + u16::from(i) * 2 + k as u16);
            tasks.spawn(async move {
                let reply = query_udp(addr, &name, RecordType::A, &opts, LIMIT).await;
                (i, name, opts, reply)
            });
        }
    }
    let mut seen = 0;
    while let Some(joined) = tasks.join_next().await {
        let (i, name, opts, reply) = joined.expect("client task");
        let reply = reply.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_echoes(&reply, &name, RecordType::A, &opts);
        assert_eq!(
            summaries(&reply.message.answers),
            [format!("host{i}.conc.test. A 192.0.2.{}", 100 + i)],
            "{name}"
        );
        seen += 1;
    }
    assert_eq!(seen, 2 * usize::from(NAMES));
    assert_eq!(
        server.stats.metrics().coalesced_joins.get(),
        u64::from(NAMES),
        "the second spelling of each name joined the first's lookup"
    );

    // One client socket with many queries outstanding, half of them cache hits
    // (asked in another case) and half slow misses: replies matched by ID.
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("client socket");
    let mut expected: HashMap<u16, (String, Vec<u8>)> = HashMap::new();
    for i in 0..2 * NAMES {
        let id = 0x3000 + u16::from(i);
        let name = if i % 2 == 0 {
            format!("hOsT{i}.conc.test")
        } else {
            format!("host{i}.CONC.test")
        };
        let query = build_query(&name, RecordType::A, &QueryOpts::default().with_id(id));
        socket.send_to(&query, server.udp).await.expect("send");
        expected.insert(
            id,
            (format!("host{i}.conc.test. A 192.0.2.{}", 100 + i), query),
        );
    }
    let deadline = Instant::now() + LIMIT;
    let mut buf = vec![0u8; 65535];
    while !expected.is_empty() {
        let (len, from) = timeout_at(deadline, socket.recv_from(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("replies missing for IDs {:?}", expected.keys()))
            .expect("recv");
        assert_eq!(from, server.udp);
        let message = Message::from_vec(&buf[..len]).expect("a valid reply");
        let (answer, query) = expected
            .remove(&message.id)
            .unwrap_or_else(|| panic!("unexpected or duplicate reply ID {:#06x}", message.id));
        assert_eq!(
            raw_question(&buf[..len]),
            raw_question(&query),
            "ID {:#06x}",
            message.id
        );
        assert_eq!(summaries(&message.answers), [answer]);
    }
    server.stop().await;
}
