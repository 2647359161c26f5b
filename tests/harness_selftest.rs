//! Self-test of the test harness in `tests/common`: the fake upstream answers its zone
//! table correctly over UDP and TCP, counts what it receives, and each `Behavior` does
//! what it claims; the client helpers read what they should. If these fail, failures in
//! the resolver's integration tests mean nothing.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use common::*;
use hickory_proto::op::{Edns, Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::{RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

const T: Duration = Duration::from_millis(1000);

async fn upstream() -> FakeUpstream {
    let up = FakeUpstream::start(loopback(1)).await;
    up.add_a("www.example.com", "192.0.2.1", 300);
    up.add_aaaa("www.example.com", "2001:db8::1", 300);
    up.add_mx("example.com", 10, "mail.example.com", 600);
    up.add_txt("example.com", "v=spf1 -all", 120);
    up
}

fn v4(s: &str) -> IpAddr {
    IpAddr::V4(s.parse::<Ipv4Addr>().unwrap())
}

fn v6(s: &str) -> IpAddr {
    IpAddr::V6(s.parse::<Ipv6Addr>().unwrap())
}

async fn udp(up: &FakeUpstream, name: &str, rtype: RecordType) -> Reply {
    query_udp(up.addr(), name, rtype, &QueryOpts::default(), T)
        .await
        .unwrap()
}

async fn tcp(up: &FakeUpstream, name: &str, rtype: RecordType) -> Reply {
    query_tcp(up.addr(), name, rtype, &QueryOpts::default(), T)
        .await
        .unwrap()
}

/// The raw question section of a single-question message: from byte 12 up to and
/// including QTYPE and QCLASS.
fn raw_question(bytes: &[u8]) -> &[u8] {
    let mut pos = 12;
    while bytes[pos] != 0 {
        pos += 1 + usize::from(bytes[pos]);
    }
    &bytes[12..pos + 5]
}

#[tokio::test]
async fn answers_each_type_over_udp_and_tcp() {
    let up = upstream().await;
    for tcp in [false, true] {
        let ask = |name: &'static str, rtype| {
            let addr = up.addr();
            async move {
                let opts = QueryOpts::default();
                let reply = if tcp {
                    query_tcp(addr, name, rtype, &opts, T).await
                } else {
                    query_udp(addr, name, rtype, &opts, T).await
                };
                let reply = reply.unwrap();
                assert_eq!(reply.message.id, opts.id);
                assert_eq!(reply.message.response_code, ResponseCode::NoError);
                assert!(reply.message.recursion_available);
                assert!(reply.message.recursion_desired);
                reply.message
            }
        };
        let a = ask("www.example.com", RecordType::A).await;
        assert_eq!(answer_ips(&a), [v4("192.0.2.1")]);
        assert_eq!(a.answers[0].ttl, 300);

        let aaaa = ask("www.example.com", RecordType::AAAA).await;
        assert_eq!(answer_ips(&aaaa), [v6("2001:db8::1")]);

        let mx = ask("example.com", RecordType::MX).await;
        match &mx.answers[0].data {
            RData::MX(mx) => {
                assert_eq!(mx.preference, 10);
                assert_eq!(mx.exchange.to_ascii(), "mail.example.com.");
            }
            other => panic!("expected MX, got {other:?}"),
        }

        let txt = ask("example.com", RecordType::TXT).await;
        match &txt.answers[0].data {
            RData::TXT(txt) => assert_eq!(&*txt.txt_data[0], b"v=spf1 -all"),
            other => panic!("expected TXT, got {other:?}"),
        }
    }
    assert_eq!(up.udp_queries(), 4);
    assert_eq!(up.tcp_queries(), 4);
    assert_eq!(up.queries(), 8);
    assert_eq!(up.tcp_connections(), 4);
}

#[tokio::test]
async fn cname_chain_is_followed_inside_the_table() {
    let up = upstream().await;
    up.add_cname("alias.example.com", "middle.example.net", 60);
    up.add_cname("middle.example.net", "www.example.com", 30);

    let reply = udp(&up, "alias.example.com", RecordType::A).await;
    let types: Vec<_> = reply
        .message
        .answers
        .iter()
        .map(|r| r.record_type())
        .collect();
    assert_eq!(types, [RecordType::CNAME, RecordType::CNAME, RecordType::A]);
    assert_eq!(answer_ips(&reply.message), [v4("192.0.2.1")]);
    assert_eq!(reply.message.answers[2].name.to_ascii(), "www.example.com.");

    // Asking for the CNAME itself does not follow it.
    let reply = udp(&up, "alias.example.com", RecordType::CNAME).await;
    assert_eq!(reply.message.answers.len(), 1);

    // A chain leaving the table ends in NXDOMAIN, links kept.
    up.add_cname("dangling.example.com", "nowhere.example.org", 60);
    let reply = udp(&up, "dangling.example.com", RecordType::A).await;
    assert_eq!(reply.message.response_code, ResponseCode::NXDomain);
    assert_eq!(reply.message.answers.len(), 1);

    // A loop does not hang the server.
    up.add_cname("loop1.example.com", "loop2.example.com", 60);
    up.add_cname("loop2.example.com", "loop1.example.com", 60);
    let reply = udp(&up, "loop1.example.com", RecordType::A).await;
    assert_eq!(reply.message.response_code, ResponseCode::ServFail);
}

#[tokio::test]
async fn nxdomain_and_nodata_carry_an_soa() {
    let up = upstream().await;
    up.set_negative_ttl(45);

    let reply = udp(&up, "missing.example.com", RecordType::A).await;
    assert_eq!(reply.message.response_code, ResponseCode::NXDomain);
    assert!(reply.message.answers.is_empty());
    let soa = &reply.message.authorities[0];
    assert_eq!(soa.record_type(), RecordType::SOA);
    assert_eq!(soa.ttl, 45);
    assert_eq!(soa.name.to_ascii(), "example.com.");

    // The name exists, the type does not: NOERROR with no answers.
    let reply = udp(&up, "www.example.com", RecordType::MX).await;
    assert_eq!(reply.message.response_code, ResponseCode::NoError);
    assert!(reply.message.answers.is_empty());
    assert_eq!(reply.message.authorities[0].record_type(), RecordType::SOA);

    // An empty non-terminal exists too.
    up.add_a("a.b.example.org", "192.0.2.9", 60);
    let reply = udp(&up, "b.example.org", RecordType::A).await;
    assert_eq!(reply.message.response_code, ResponseCode::NoError);

    // Removing the records makes the name disappear.
    up.remove("www.example.com");
    let reply = tcp(&up, "www.example.com", RecordType::A).await;
    assert_eq!(reply.message.response_code, ResponseCode::NXDomain);
}

#[tokio::test]
async fn lookup_ignores_case_and_the_question_is_echoed_exactly() {
    let up = upstream().await;
    let opts = QueryOpts::default();
    let query = build_query("wWw.ExAmPlE.cOm", RecordType::A, &opts);
    let bytes = send_raw_udp(up.addr(), &query, T).await.expect("a reply");
    assert_eq!(raw_question(&bytes), raw_question(&query));
    let reply = Message::from_vec(&bytes).unwrap();
    assert_eq!(answer_ips(&reply), [v4("192.0.2.1")]);

    assert_eq!(up.queries_for("www.example.com"), 1);
    assert_eq!(up.queries_for("WWW.EXAMPLE.COM."), 1);
    assert_eq!(up.queries_for("example.com"), 0);
    let last = up.last_query().unwrap();
    assert_eq!(last.queries[0].name().to_ascii(), "wWw.ExAmPlE.cOm.");

    up.reset_counters();
    assert_eq!(up.queries(), 0);
    assert_eq!(up.queries_for("www.example.com"), 0);
    assert!(up.last_query().is_none());
}

#[tokio::test]
async fn edns_do_cd_and_rd_are_visible_and_echoed() {
    let up = upstream().await;
    let opts = QueryOpts::default()
        .with_edns(4096)
        .with_dnssec_ok()
        .with_checking_disabled()
        .without_recursion();
    let reply = query_udp(up.addr(), "www.example.com", RecordType::A, &opts, T)
        .await
        .unwrap();
    let edns = reply.message.edns.as_ref().expect("OPT in reply");
    assert_eq!(edns.max_payload(), UPSTREAM_EDNS_PAYLOAD);
    assert!(edns.flags().dnssec_ok);
    assert!(reply.message.checking_disabled);
    assert!(!reply.message.recursion_desired);

    let last = up.last_query().unwrap();
    let edns = last.edns.as_ref().expect("OPT in query");
    assert_eq!(edns.max_payload(), 4096);
    assert!(edns.flags().dnssec_ok);
    assert!(last.checking_disabled);
    assert!(!last.recursion_desired);

    // No EDNS in, no OPT out.
    let reply = udp(&up, "www.example.com", RecordType::A).await;
    assert!(reply.message.edns.is_none());
    assert!(up.last_query().unwrap().edns.is_none());
}

#[tokio::test]
async fn large_answer_truncates_over_udp_by_payload_size() {
    let up = upstream().await;
    up.add_many_a("many.example.com", 40);

    let plain = udp(&up, "many.example.com", RecordType::A).await;
    assert!(plain.message.truncation);
    assert!(plain.message.answers.is_empty());
    assert!(plain.bytes.len() <= 512);

    let edns = QueryOpts::default().with_edns(1232);
    let full = query_udp(up.addr(), "many.example.com", RecordType::A, &edns, T)
        .await
        .unwrap();
    assert!(!full.message.truncation);
    assert_eq!(full.message.answers.len(), 40);

    let tcp = tcp(&up, "many.example.com", RecordType::A).await;
    assert!(!tcp.message.truncation);
    assert_eq!(tcp.message.answers.len(), 40);
}

#[tokio::test]
async fn delay_takes_its_time_without_blocking_other_queries() {
    let up = upstream().await;
    up.set_behavior(Behavior::Delay(Duration::from_millis(200)));
    let opts = QueryOpts::default();
    let started = Instant::now();
    let one = query_udp(up.addr(), "www.example.com", RecordType::A, &opts, T);
    let two = query_udp(up.addr(), "www.example.com", RecordType::AAAA, &opts, T);
    let three = query_tcp(up.addr(), "www.example.com", RecordType::A, &opts, T);
    let (one, two, three) = tokio::join!(one, two, three);
    for reply in [one.unwrap(), two.unwrap(), three.unwrap()] {
        assert!(
            reply.elapsed >= Duration::from_millis(200),
            "{:?}",
            reply.elapsed
        );
        assert_eq!(reply.message.answers.len(), 1);
    }
    // Served side by side, not one after the other.
    assert!(
        started.elapsed() < Duration::from_millis(550),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn delay_does_not_block_pipelined_tcp_queries() {
    let up = upstream().await;
    let mut tcp = TcpClient::connect(up.addr()).await.unwrap();
    up.set_behavior(Behavior::Delay(Duration::from_millis(300)));
    let slow = QueryOpts::default().with_id(1);
    tcp.send(&build_query("www.example.com", RecordType::A, &slow))
        .await
        .unwrap();
    // Let the first query arrive while the behaviour is still Delay.
    tokio::time::sleep(Duration::from_millis(50)).await;
    up.set_behavior(Behavior::Answer);
    let fast = QueryOpts::default().with_id(2);
    tcp.send(&build_query("www.example.com", RecordType::AAAA, &fast))
        .await
        .unwrap();

    let first = Message::from_vec(&tcp.recv(T).await.unwrap()).unwrap();
    let second = Message::from_vec(&tcp.recv(T).await.unwrap()).unwrap();
    assert_eq!((first.id, second.id), (2, 1));
}

#[tokio::test]
async fn hang_never_answers() {
    let up = upstream().await;
    up.set_behavior(Behavior::Hang);
    let short = Duration::from_millis(300);
    let opts = QueryOpts::default();
    let udp = query_udp(up.addr(), "www.example.com", RecordType::A, &opts, short);
    let tcp = query_tcp(up.addr(), "www.example.com", RecordType::A, &opts, short);
    let (udp, tcp) = tokio::join!(udp, tcp);
    assert!(matches!(udp, Err(ClientError::Timeout)), "{udp:?}");
    assert!(matches!(tcp, Err(ClientError::Timeout)), "{tcp:?}");
    // Read and counted all the same.
    assert_eq!(up.queries(), 2);
}

#[tokio::test]
async fn servfail_and_refused() {
    let up = upstream().await;
    for (behavior, rcode) in [
        (Behavior::Servfail, ResponseCode::ServFail),
        (Behavior::Refused, ResponseCode::Refused),
    ] {
        up.set_behavior(behavior);
        let udp = udp(&up, "www.example.com", RecordType::A).await;
        let tcp = tcp(&up, "www.example.com", RecordType::A).await;
        for reply in [udp, tcp] {
            assert_eq!(reply.message.response_code, rcode);
            assert!(reply.message.answers.is_empty());
            assert_eq!(reply.message.queries.len(), 1);
        }
    }
}

#[tokio::test]
async fn wrong_id_first_then_the_real_answer() {
    let up = upstream().await;
    up.set_behavior(Behavior::WrongIdFirst(Duration::from_millis(100)));
    let opts = QueryOpts::default();
    let query = build_query("www.example.com", RecordType::A, &opts);
    let seen = collect_udp(up.addr(), &query, Duration::from_millis(300)).await;
    assert_eq!(seen.len(), 2, "{seen:?}");

    let spoof = Message::from_vec(&seen[0].bytes).unwrap();
    assert_ne!(spoof.id, opts.id);
    assert_eq!(answer_ips(&spoof), [IpAddr::V4(POISON_V4)]);

    let real = Message::from_vec(&seen[1].bytes).unwrap();
    assert_eq!(real.id, opts.id);
    assert_eq!(answer_ips(&real), [v4("192.0.2.1")]);
    assert!(seen[1].after >= Duration::from_millis(100));

    // query_udp takes the first datagram and reports the mismatch.
    let result = query_udp(up.addr(), "www.example.com", RecordType::A, &opts, T).await;
    assert!(
        matches!(result, Err(ClientError::IdMismatch { .. })),
        "{result:?}"
    );

    // Same over TCP: the spoofed frame, then the real one.
    let mut tcp = TcpClient::connect(up.addr()).await.unwrap();
    tcp.send(&query).await.unwrap();
    let first = Message::from_vec(&tcp.recv(T).await.unwrap()).unwrap();
    let second = Message::from_vec(&tcp.recv(T).await.unwrap()).unwrap();
    assert_ne!(first.id, opts.id);
    assert_eq!(second.id, opts.id);
}

#[tokio::test]
async fn wrong_question_first_then_the_real_answer() {
    let up = upstream().await;
    up.set_behavior(Behavior::WrongQuestionFirst(Duration::from_millis(100)));
    let opts = QueryOpts::default();
    let query = build_query("www.example.com", RecordType::A, &opts);
    let seen = collect_udp(up.addr(), &query, Duration::from_millis(300)).await;
    assert_eq!(seen.len(), 2, "{seen:?}");

    let spoof = Message::from_vec(&seen[0].bytes).unwrap();
    assert_eq!(spoof.id, opts.id);
    assert_eq!(spoof.queries[0].name().to_ascii(), POISON_NAME);
    assert_eq!(answer_ips(&spoof), [IpAddr::V4(POISON_V4)]);

    let real = Message::from_vec(&seen[1].bytes).unwrap();
    assert_eq!(real.id, opts.id);
    assert_eq!(raw_question(&seen[1].bytes), raw_question(&query));
    assert!(seen[1].after >= Duration::from_millis(100));
}

#[tokio::test]
async fn wrong_source_first_then_the_real_answer() {
    let up = upstream().await;
    up.set_behavior(Behavior::WrongSourceFirst(Duration::from_millis(100)));
    let opts = QueryOpts::default();
    let query = build_query("www.example.com", RecordType::AAAA, &opts);
    let seen = collect_udp(up.addr(), &query, Duration::from_millis(300)).await;
    assert_eq!(seen.len(), 2, "{seen:?}");

    assert_ne!(seen[0].from, up.addr());
    assert_eq!(seen[0].from.ip(), up.addr().ip());
    let spoof = Message::from_vec(&seen[0].bytes).unwrap();
    assert_eq!(spoof.id, opts.id);
    assert_eq!(raw_question(&seen[0].bytes), raw_question(&query));
    assert_eq!(answer_ips(&spoof), [IpAddr::V6(POISON_V6)]);

    assert_eq!(seen[1].from, up.addr());
    let real = Message::from_vec(&seen[1].bytes).unwrap();
    assert_eq!(answer_ips(&real), [v6("2001:db8::1")]);

    // query_udp refuses the first datagram.
    let result = query_udp(up.addr(), "www.example.com", RecordType::A, &opts, T).await;
    assert!(
        matches!(result, Err(ClientError::WrongSource { .. })),
        "{result:?}"
    );

    // TCP has no other source: a plain answer.
    let reply = query_tcp(up.addr(), "www.example.com", RecordType::A, &opts, T)
        .await
        .unwrap();
    assert_eq!(answer_ips(&reply.message), [v4("192.0.2.1")]);
}

#[tokio::test]
async fn truncate_udp_sets_tc_and_tcp_answers_fully() {
    let up = upstream().await;
    up.set_behavior(Behavior::TruncateUdp);
    let opts = QueryOpts::default().with_edns(1232);
    let udp = query_udp(up.addr(), "www.example.com", RecordType::A, &opts, T)
        .await
        .unwrap();
    assert!(udp.message.truncation);
    assert!(udp.message.answers.is_empty());
    assert!(udp.message.edns.is_some());

    let tcp = query_tcp(up.addr(), "www.example.com", RecordType::A, &opts, T)
        .await
        .unwrap();
    assert!(!tcp.message.truncation);
    assert_eq!(answer_ips(&tcp.message), [v4("192.0.2.1")]);
}

#[tokio::test]
async fn garbage_is_never_a_valid_answer() {
    let up = upstream().await;
    up.set_behavior(Behavior::Garbage);
    let opts = QueryOpts::default();
    let query = build_query("www.example.com", RecordType::A, &opts);
    let seen = collect_udp(up.addr(), &query, Duration::from_millis(150)).await;
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen.iter().any(|d| d.bytes.len() < 12));
    assert!(
        seen.iter()
            .any(|d| d.bytes.len() >= 2 && d.bytes[..2] == opts.id.to_be_bytes())
    );
    for datagram in &seen {
        if let Ok(message) = Message::from_vec(&datagram.bytes) {
            assert_ne!(message.id, opts.id, "decodable garbage with the query's ID");
        }
    }

    let result = query_udp(up.addr(), "www.example.com", RecordType::A, &opts, T).await;
    assert!(result.is_err());
    let result = query_tcp(up.addr(), "www.example.com", RecordType::A, &opts, T).await;
    assert!(result.is_err());
}

#[tokio::test]
async fn tcp_drip_sends_one_byte_per_second_and_udp_is_truncated() {
    let up = upstream().await;
    up.set_behavior(Behavior::TcpDrip);
    let udp = udp(&up, "www.example.com", RecordType::A).await;
    assert!(udp.message.truncation);

    let mut tcp = tokio::net::TcpStream::connect(up.addr()).await.unwrap();
    let query = build_query("www.example.com", RecordType::A, &QueryOpts::default());
    let mut frame = (query.len() as u16).to_be_bytes().to_vec();
    frame.extend_from_slice(&query);
    tcp.write_all(&frame).await.unwrap();
    let mut received = Vec::new();
    let mut buf = [0u8; 512];
    let window = tokio::time::sleep(Duration::from_millis(1300));
    tokio::pin!(window);
    loop {
        tokio::select! {
            _ = &mut window => break,
            n = tcp.read(&mut buf) => match n {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            },
        }
    }
    // The first byte at once, the second a second later (if the machine keeps up),
    // and nowhere near a whole frame.
    assert!((1..=2).contains(&received.len()), "{received:?}");
}

#[tokio::test]
async fn answer_twice_sends_two_copies() {
    let up = upstream().await;
    up.set_behavior(Behavior::AnswerTwice);
    let query = build_query("www.example.com", RecordType::A, &QueryOpts::default());
    let seen = collect_udp(up.addr(), &query, Duration::from_millis(150)).await;
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].bytes, seen[1].bytes);

    let mut tcp = TcpClient::connect(up.addr()).await.unwrap();
    tcp.send(&query).await.unwrap();
    let first = tcp.recv(T).await.unwrap();
    let second = tcp.recv(T).await.unwrap();
    assert_eq!(first, second);
}

#[tokio::test]
async fn survives_garbage_input() {
    let up = upstream().await;
    for junk in [
        &b""[..],
        &b"\x01"[..],
        &[0xffu8; 11][..],
        &[0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 63, b'a'],
    ] {
        assert!(
            send_raw_udp(up.addr(), junk, Duration::from_millis(50))
                .await
                .is_none()
        );
    }
    let mut tcp = TcpClient::connect(up.addr()).await.unwrap();
    tcp.send(b"\xde\xad\xbe\xef").await.unwrap();
    tcp.send(&[]).await.unwrap();
    // A response is not a query: ignored.
    let mut response = Message::from_vec(&build_query(
        "www.example.com",
        RecordType::A,
        &QueryOpts::default(),
    ))
    .unwrap();
    response.metadata.message_type = MessageType::Response;
    tcp.send(&response.to_vec().unwrap()).await.unwrap();
    // The same connection still serves a real query afterwards.
    let reply = tcp
        .query("www.example.com", RecordType::A, &QueryOpts::default(), T)
        .await
        .unwrap();
    assert_eq!(answer_ips(&reply.message), [v4("192.0.2.1")]);
    assert_eq!(up.malformed(), 7);
    assert_eq!(up.queries(), 1);
}

#[tokio::test]
async fn tcp_recv_timeout_loses_nothing() {
    let up = upstream().await;
    up.set_behavior(Behavior::Delay(Duration::from_millis(150)));
    let mut tcp = TcpClient::connect(up.addr()).await.unwrap();
    let opts = QueryOpts::default();
    tcp.send(&build_query("www.example.com", RecordType::A, &opts))
        .await
        .unwrap();
    assert!(matches!(
        tcp.recv(Duration::from_millis(20)).await,
        Err(ClientError::Timeout)
    ));
    let reply = Message::from_vec(&tcp.recv(T).await.unwrap()).unwrap();
    assert_eq!(reply.id, opts.id);
    // Half-close: the server answers what it has, then closes.
    tcp.shutdown_write().await.unwrap();
    assert!(matches!(tcp.recv(T).await, Err(ClientError::Closed)));
}

#[tokio::test]
async fn serves_on_any_loopback_address_and_stops_when_dropped() {
    let up = FakeUpstream::start(loopback(7)).await;
    up.add_a("host.test", "192.0.2.7", 5);
    let addr = up.addr();
    assert_eq!(addr.ip(), loopback(7));
    let reply = query_udp(addr, "host.test", RecordType::A, &QueryOpts::default(), T)
        .await
        .unwrap();
    assert_eq!(answer_ips(&reply.message), [v4("192.0.2.7")]);

    drop(up);
    tokio::task::yield_now().await;
    let short = Duration::from_millis(150);
    let opts = QueryOpts::default();
    let udp = query_udp(addr, "host.test", RecordType::A, &opts, short).await;
    assert!(udp.is_err(), "{udp:?}");
    let tcp = query_tcp(addr, "host.test", RecordType::A, &opts, short).await;
    assert!(tcp.is_err(), "{tcp:?}");
}

#[test]
fn ede_is_read_from_message_and_from_bytes() {
    let mut message = Message::from_vec(&build_query(
        "blocked.example",
        RecordType::A,
        &QueryOpts::default(),
    ))
    .unwrap();
    message.metadata.message_type = MessageType::Response;
    message.metadata.response_code = ResponseCode::Refused;
    message.add_answer(Record::from_rdata(
        message.queries[0].name().clone(),
        60,
        RData::A(A(Ipv4Addr::new(192, 0, 2, 1))),
    ));
    let mut edns = Edns::new();
    let mut data = 18u16.to_be_bytes().to_vec();
    data.extend_from_slice(b"prohibited");
    edns.options_mut()
        .insert(EdnsOption::Unknown(EDE_OPTION_CODE, data));
    edns.options_mut().insert(EdnsOption::Unknown(
        EDE_OPTION_CODE,
        3u16.to_be_bytes().to_vec(),
    ));
    message.edns = Some(edns);
    let bytes = message.to_vec().unwrap();

    let decoded = Message::from_vec(&bytes).unwrap();
    assert_eq!(ede(&decoded), Some((18, "prohibited".to_owned())));
    assert_eq!(
        ede_all(&decoded),
        [(18, "prohibited".to_owned()), (3, String::new())]
    );
    assert_eq!(ede_from_bytes(&bytes), Some((18, "prohibited".to_owned())));

    let plain = build_query(
        "plain.example",
        RecordType::A,
        &QueryOpts::default().with_edns(1232),
    );
    assert_eq!(ede(&Message::from_vec(&plain).unwrap()), None);
    assert_eq!(ede_from_bytes(&plain), None);
    assert_eq!(ede_from_bytes(&bytes[..bytes.len() - 3]), None);
    assert_eq!(ede_from_bytes(b"\x00"), None);
}
