//! Abuse from clients: one client socket floods punctual with malformed UDP
//! packets at full rate (runts, responses, broken names, lying counts, bad
//! opcodes) while a well-behaved client on another address asks a cached
//! question at a steady pace. The well-behaved client must get every answer,
//! with a p99 latency under the flood that stays within a generous bound
//! (this box is a loaded two-core machine; the benchmark's figure is the
//! finer one). Both clients are plain threads with blocking sockets, outside
//! the runtime punctual serves on, as real clients would be. Run with
//! `--nocapture` to see the measured latencies.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::punctual::{start_with, test_config};
use common::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use tokio::time::Instant;

const NAME: &str = "steady.abuse.test";
/// The flood's bounds, whichever comes first (at full rate on this box,
/// 50,000 packets take 0.2 to 0.45 s).
const FLOOD_PACKETS: usize = 50_000;
const FLOOD_FOR: Duration = Duration::from_secs(1);
/// The well-behaved client's pace: one query per interval.
const PACE: Duration = Duration::from_millis(2);
/// A real regression (the flood starving cached answers) shows as lost
/// queries or answers after hundreds of milliseconds. On this two-core box,
/// shared with builds and a fuzzer, the flooder takes a core and the measured
/// p99 under the flood moved between 2 and 60 ms from run to run (baseline
/// about 0.1 ms), so the bound is generous.
const P99_BOUND: Duration = Duration::from_millis(100);

/// Packets a broken or hostile client sends: none is a valid query.
fn malformed() -> Vec<Vec<u8>> {
    let header = |flags: u16, qd: u16, an: u16| {
        let mut out = vec![0x13, 0x37];
        for word in [flags, qd, an, 0, 0] {
            out.extend_from_slice(&word.to_be_bytes());
        }
        out
    };
    let question = |mut out: Vec<u8>, name: &[u8]| {
        out.extend_from_slice(name);
        out.extend_from_slice(&[0, 1, 0, 1]);
        out
    };
    let mut noise = vec![0u8; 100];
    for (i, byte) in noise.iter_mut().enumerate() {
        *byte = (i as u8).wrapping_mul(97).wrapping_add(13);
    }
    noise[2] &= 0x7f; // QR=0: it reaches the parser
    vec![
        // A runt: shorter than a header (dropped).
        vec![0x13, 0x37, 0x01],
        // A response (QR=1): never answered, to stop reflection loops.
        question(header(0x8180, 1, 0), b"\x01a\x04test\x00"),
        // A label announcing 63 bytes where 4 follow (FORMERR).
        {
            let mut out = header(0x0100, 1, 0);
            out.extend_from_slice(&[63, b'a', b'b', b'c', b'd']);
            out
        },
        // A compression pointer in the question (RFC 1035 §4.1.4: nothing
        // earlier to point at; FORMERR).
        question(header(0x0100, 1, 0), &[0xc0, 0x0c]),
        // ANCOUNT 5 with no records present (FORMERR).
        question(header(0x0100, 1, 5), b"\x01a\x04test\x00"),
        // Two questions (FORMERR).
        question(header(0x0100, 2, 0), b"\x01a\x04test\x00"),
        // Opcode UPDATE (NOTIMP).
        question(header(0x2900, 1, 0), b"\x01a\x04test\x00"),
        noise,
    ]
}

/// Sends malformed packets from one socket as fast as it can, until
/// `FLOOD_PACKETS` or `FLOOD_FOR`, then sets `done`; returns how many went
/// out and for how long.
fn flood(server: SocketAddr, done: &AtomicBool) -> (usize, Duration) {
    let socket = UdpSocket::bind(SocketAddr::new(loopback(144), 0)).expect("bind the flooder");
    let packets = malformed();
    let start = Instant::now();
    let mut sent = 0;
    while sent < FLOOD_PACKETS && start.elapsed() < FLOOD_FOR {
        // A full send buffer is the flooder's problem, not punctual's.
        if socket
            .send_to(&packets[sent % packets.len()], server)
            .is_ok()
        {
            sent += 1;
        }
    }
    done.store(true, Ordering::Relaxed);
    (sent, start.elapsed())
}

/// How long the steady client waits before sending a query again, as a stub
/// resolver would (glibc waits longer; this keeps the test short).
const RETRY_AFTER: Duration = Duration::from_millis(250);
const TRIES: usize = 4;

/// What the steady client saw: the latency of each query answered at the
/// first try, and how many needed another (their datagram was lost).
struct Steady {
    latencies: Vec<Duration>,
    retried: usize,
}

/// Asks `NAME` every `PACE` from its own address until `done`. Panics on a
/// wrong answer or a query unanswered after `TRIES` sends.
fn steady_client(server: SocketAddr, done: &AtomicBool) -> Steady {
    let socket = UdpSocket::bind(SocketAddr::new(loopback(143), 0)).expect("bind the client");
    socket
        .set_read_timeout(Some(RETRY_AFTER))
        .expect("read timeout");
    let start = Instant::now();
    let mut steady = Steady {
        latencies: Vec::new(),
        retried: 0,
    };
    let mut buf = vec![0u8; 4096];
    let mut id: u16 = 1;
    let mut asked = 0u32;
    while !done.load(Ordering::Relaxed) {
        std::thread::sleep((start + PACE * asked).saturating_duration_since(Instant::now()));
        asked += 1;
        id = id.wrapping_add(1);
        let query = build_query(NAME, RecordType::A, &edns().with_id(id));
        let sent = Instant::now();
        let mut answer = None;
        for _ in 0..TRIES {
            socket.send_to(&query, server).expect("send");
            // A late answer to an earlier send of another ID is skipped.
            while let Ok((len, from)) = socket.recv_from(&mut buf) {
                let message = Message::from_vec(&buf[..len]).expect("the answer decodes");
                if from == server && message.id == id {
                    answer = Some(message);
                    break;
                }
            }
            if answer.is_some() {
                break;
            }
        }
        let message = answer.unwrap_or_else(|| panic!("query {id}: no answer in {TRIES} tries"));
        let elapsed = sent.elapsed();
        if elapsed < RETRY_AFTER {
            steady.latencies.push(elapsed);
        } else {
            steady.retried += 1;
        }
        assert_eq!(message.response_code, ResponseCode::NoError);
        assert_eq!(
            answer_ips(&message),
            ["192.0.2.143".parse::<std::net::IpAddr>().expect("ip")]
        );
    }
    steady
}

/// (p50, p99, max) of `latencies`.
fn percentiles(mut latencies: Vec<Duration>) -> (Duration, Duration, Duration) {
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99), at(1.0))
}

/// The default config (no rate limits): the flood's packets are each read,
/// parsed and (FORMERR, NOTIMP) answered. When the flooder outruns punctual's
/// reads (it has a core to itself; punctual shares the other with the client
/// and whatever else runs) the kernel drops datagrams from the full receive
/// queue, now and then the steady client's: like any stub it sends again, and
/// such retries are counted and bounded rather than forbidden.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_flood_does_not_starve_a_well_behaved_client() {
    let upstream = FakeUpstream::start(loopback(142)).await;
    upstream.add_a(NAME, "192.0.2.143", 3600);
    let server = start_with(test_config(&[upstream.addr()])).await;
    let udp = server.udp;
    assert_answer(&ask(udp, NAME).await, "192.0.2.143");

    let quiet = Arc::new(AtomicBool::new(false));
    let baseline = {
        let quiet = Arc::clone(&quiet);
        tokio::task::spawn_blocking(move || steady_client(udp, &quiet))
    };
    tokio::time::sleep(FLOOD_FOR).await;
    quiet.store(true, Ordering::Relaxed);
    let baseline = baseline.await.expect("baseline client");

    let metrics = server.stats.metrics();
    let queries_before = metrics.queries_udp.get();
    let done = Arc::new(AtomicBool::new(false));
    let flooder = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || flood(udp, &done))
    };
    let under_flood = tokio::task::spawn_blocking(move || steady_client(udp, &done))
        .await
        .expect("client under the flood");
    let (sent, flooded_for) = flooder.join().expect("flooder");

    let received = metrics.queries_udp.get() - queries_before;
    let (count, flood_count) = (baseline.latencies.len(), under_flood.latencies.len());
    let retried = under_flood.retried;
    let (b50, b99, bmax) = percentiles(baseline.latencies);
    let (f50, f99, fmax) = percentiles(under_flood.latencies);
    println!(
        "abuse: baseline {count} queries p50 {b50:?} p99 {b99:?} max {bmax:?} \
         ({} retried); under a flood of {sent} malformed packets in {flooded_for:?} \
         ({received} read by punctual) {flood_count} queries p50 {f50:?} \
         p99 {f99:?} max {fmax:?} ({retried} retried)",
        baseline.retried
    );

    assert!(sent > 1_000, "the flood never got going: {sent} packets");
    // A fast flood can be over in a tenth of a second: a few samples only.
    assert!(
        flood_count >= 1,
        "no query answered at the first try under the flood"
    );
    assert!(
        metrics.queries_dropped.get() > 0 && metrics.responses_by_rcode[1].get() > 0,
        "the flood reached the parser: dropped and FORMERR both counted"
    );
    assert_eq!(upstream.queries_for(NAME), 1, "answered from the cache");
    assert!(
        retried <= 1 + flood_count / 50,
        "{retried} of {} queries lost under the flood",
        flood_count + retried
    );
    assert!(
        f99 < P99_BOUND,
        "p99 under the flood {f99:?} (baseline {b99:?}), bound {P99_BOUND:?}"
    );
    server.stop().await;
}
