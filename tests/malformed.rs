//! Bad client input: a corpus of malformed packets (too short, responses, other
//! opcodes, wrong question counts, truncated or looping names, lying record
//! counts, two OPTs, EDNS version 1, over-long names, seeded random bytes), sent
//! over UDP one by one and all at once, and over TCP on one connection. Each
//! gets its documented outcome (src/query.rs): no reply for anything shorter than
//! a header or with QR=1; NOTIMP for an opcode other than QUERY, with the
//! question echoed and OPT present exactly when sent if the body parses, header
//! only if it does not; FORMERR, header only with the ID echoed, for a question
//! count other than one or a body that does not parse; BADVERS for EDNS version 1. None reaches the upstream, drops
//! are counted, and the server keeps answering normal queries afterwards.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::punctual::{TestServer, start};
use common::{
    AT_ONCE, ClientError, FakeUpstream, QueryOpts, TcpClient, build_query, collect_udp, loopback,
    query_udp, send_raw_udp,
};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use rand::rngs::StdRng;
use rand::{Rng, RngExt, SeedableRng};
use tokio::net::UdpSocket;
use tokio::time::{Instant, timeout_at};

/// How long we wait to be sure no reply comes: every rejection is answered at
/// once, on the receiving task, so a reply would arrive within a millisecond.
const SILENCE: Duration = Duration::from_millis(150);
const LIMIT: Duration = Duration::from_millis(1000);
/// A name the upstream knows, for the "still answering" checks.
const GOOD: &str = "ok.malformed.test";

const QR: u16 = 0x8000;
const RA: u16 = 0x0080;
const RD: u16 = 0x0100;
const NOTIMP: u8 = 4;
const FORMERR: u8 = 1;

/// What punctual must do with one packet.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Expect {
    /// No reply at all.
    Drop,
    /// A 12-byte header: the ID, opcode and RD echoed, QR=1, RA=1, this rcode,
    /// every count zero (the question is not trusted, so not echoed).
    HeaderOnly {
        id: u16,
        opcode: u8,
        rd: bool,
        rcode: u8,
    },
    /// NOTIMP to another opcode whose body parses: the header as for
    /// `HeaderOnly` but QDCOUNT 1, the question echoed byte for byte (letter
    /// case included), and our OPT (payload 1232, the client's DO) exactly when
    /// the client sent one (RFC 6891 §7). `dnssec_ok` is `None` without EDNS.
    NotImp {
        id: u16,
        opcode: u8,
        rd: bool,
        question: Vec<u8>,
        dnssec_ok: Option<bool>,
    },
    /// RFC 6891 §6.1.3: BADVERS (16) = header rcode 0 + extended rcode 1 in an
    /// OPT of version 0; the question echoed byte for byte.
    Badvers { id: u16, question: Vec<u8> },
}

impl Expect {
    fn header_only(bytes: &[u8], rcode: u8) -> Expect {
        let flags = u16::from_be_bytes([bytes[2], bytes[3]]);
        Expect::HeaderOnly {
            id: u16::from_be_bytes([bytes[0], bytes[1]]),
            opcode: ((flags >> 11) & 0x0f) as u8,
            rd: flags & RD != 0,
            rcode,
        }
    }

    /// The rules of `ClientQuery::parse` for a packet that must not decode as a
    /// DNS message: used for the random part of the corpus, which leaves out
    /// other opcodes with QDCOUNT=1 (their outcome hangs on whether the body
    /// parses, which the fixed corpus covers).
    fn for_undecodable(bytes: &[u8]) -> Expect {
        if bytes.len() < 12 {
            return Expect::Drop;
        }
        let flags = u16::from_be_bytes([bytes[2], bytes[3]]);
        if flags & QR != 0 {
            Expect::Drop
        } else if (flags >> 11) & 0x0f != 0 {
            Expect::header_only(bytes, NOTIMP)
        } else {
            // QDCOUNT != 1, or a body that does not parse: FORMERR either way.
            Expect::header_only(bytes, FORMERR)
        }
    }

    /// Panics with `label` unless `reply` is what this expectation says.
    fn check(&self, label: &str, reply: Option<&[u8]>) {
        match (self, reply) {
            (Expect::Drop, None) => {}
            (Expect::Drop, Some(reply)) => panic!("{label}: expected no reply, got {reply:02x?}"),
            (_, None) => panic!("{label}: expected {self:?}, got no reply"),
            (
                Expect::HeaderOnly {
                    id,
                    opcode,
                    rd,
                    rcode,
                },
                Some(reply),
            ) => {
                let mut want = Vec::with_capacity(12);
                want.extend_from_slice(&id.to_be_bytes());
                let flags = QR
                    | RA
                    | (u16::from(*opcode) << 11)
                    | if *rd { RD } else { 0 }
                    | u16::from(*rcode);
                want.extend_from_slice(&flags.to_be_bytes());
                want.extend_from_slice(&[0; 8]);
                assert_eq!(reply, &want[..], "{label}: header-only reply ({self:?})");
            }
            (
                Expect::NotImp {
                    id,
                    opcode,
                    rd,
                    question,
                    dnssec_ok,
                },
                Some(reply),
            ) => {
                let flags = QR
                    | RA
                    | (u16::from(*opcode) << 11)
                    | if *rd { RD } else { 0 }
                    | u16::from(NOTIMP);
                let arcount = u16::from(dnssec_ok.is_some());
                let mut want = header(*id, flags, [1, 0, 0, arcount]);
                want.extend_from_slice(question);
                if let Some(dnssec_ok) = dnssec_ok {
                    want.extend_from_slice(&opt_with(0, *dnssec_ok));
                }
                assert_eq!(reply, &want[..], "{label}: NOTIMP reply ({self:?})");
            }
            (Expect::Badvers { id, question }, Some(reply)) => {
                let message = Message::from_vec(reply)
                    .unwrap_or_else(|e| panic!("{label}: BADVERS reply does not decode: {e}"));
                assert_eq!(message.id, *id, "{label}: ID echoed");
                assert_eq!(message.message_type, MessageType::Response, "{label}");
                assert_eq!(reply[3] & 0x0f, 0, "{label}: header rcode 0");
                let edns = message
                    .edns
                    .as_ref()
                    .unwrap_or_else(|| panic!("{label}: OPT"));
                assert_eq!(edns.rcode_high(), 1, "{label}: extended rcode 1");
                assert_eq!(edns.version(), 0, "{label}: our version, 0");
                // hickory names 16 BADSIG (the TSIG meaning); in an OPT it is BADVERS.
                assert_eq!(u16::from(message.response_code), 16, "{label}: BADVERS");
                assert!(message.answers.is_empty(), "{label}");
                assert_eq!(&reply[4..6], &[0, 1], "{label}: QDCOUNT 1");
                assert_eq!(
                    &reply[12..12 + question.len()],
                    &question[..],
                    "{label}: question"
                );
            }
        }
    }
}

struct Case {
    label: String,
    bytes: Vec<u8>,
    expect: Expect,
}

fn header(id: u16, flags: u16, counts: [u16; 4]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    for count in counts {
        out.extend_from_slice(&count.to_be_bytes());
    }
    out
}

/// `example.test. A IN` in wire form.
fn question() -> Vec<u8> {
    let mut out = b"\x07example\x04test\x00".to_vec();
    out.extend_from_slice(&[0, 1, 0, 1]);
    out
}

/// An OPT record: root owner, type 41, payload 1232, the given version, no data.
fn opt(version: u8) -> Vec<u8> {
    opt_with(version, false)
}

/// [`opt`] with the DO bit (RFC 3225 §3) as given.
fn opt_with(version: u8, dnssec_ok: bool) -> Vec<u8> {
    let flags = if dnssec_ok { 0x80 } else { 0 };
    vec![0, 0, 41, 0x04, 0xd0, 0, version, flags, 0, 0, 0]
}

/// `ExAmPle.TEST. A IN` in wire form: mixed case, to see it echoed as sent.
fn mixed_case_question() -> Vec<u8> {
    let mut out = b"\x07ExAmPle\x04TEST\x00".to_vec();
    out.extend_from_slice(&[0, 1, 0, 1]);
    out
}

fn case(label: impl Into<String>, bytes: Vec<u8>, expect: Expect) -> Case {
    Case {
        label: label.into(),
        bytes,
        expect,
    }
}

fn formerr(label: &str, bytes: Vec<u8>) -> Case {
    let expect = Expect::header_only(&bytes, FORMERR);
    case(label, bytes, expect)
}

/// The hand-written corpus: each packet with its documented outcome.
fn fixed_corpus() -> Vec<Case> {
    let mut cases = Vec::new();
    let valid = [header(0x0a01, RD, [1, 0, 0, 0]), question()].concat();
    assert!(
        Message::from_vec(&valid).is_ok(),
        "the reference query is valid"
    );

    cases.push(case("empty", Vec::new(), Expect::Drop));
    for len in 1..12 {
        cases.push(case(
            format!("{len} bytes"),
            valid[..len].to_vec(),
            Expect::Drop,
        ));
    }
    cases.push(case(
        "header only, QR=1",
        header(0x0a02, QR | RD, [0; 4]),
        Expect::Drop,
    ));
    cases.push(case(
        "a response with a question (QR=1)",
        [header(0x0a03, QR | RA | RD, [1, 0, 0, 0]), question()].concat(),
        Expect::Drop,
    ));
    cases.push(case(
        "QR=1 with opcode UPDATE",
        [header(0x0a04, QR | (5 << 11), [1, 0, 0, 0]), question()].concat(),
        Expect::Drop,
    ));
    // Each opcode without EDNS, with EDNS and DO=0, and with DO=1.
    for (opcode, name) in [
        (1u16, "IQUERY"),
        (2, "STATUS"),
        (4, "NOTIFY"),
        (5, "UPDATE"),
        (15, "15"),
    ] {
        for (i, dnssec_ok) in [None, Some(false), Some(true)].into_iter().enumerate() {
            let id = 0x0b00 + (opcode << 4) + i as u16;
            let arcount = u16::from(dnssec_ok.is_some());
            let mut bytes = [
                header(id, (opcode << 11) | RD, [1, 0, 0, arcount]),
                mixed_case_question(),
            ]
            .concat();
            if let Some(dnssec_ok) = dnssec_ok {
                bytes.extend_from_slice(&opt_with(0, dnssec_ok));
            }
            let expect = Expect::NotImp {
                id,
                opcode: opcode as u8,
                rd: true,
                question: mixed_case_question(),
                dnssec_ok,
            };
            cases.push(case(
                format!("opcode {opcode} {name}, EDNS DO {dnssec_ok:?}"),
                bytes,
                expect,
            ));
        }
    }
    // Another opcode whose body does not parse: NOTIMP, header only.
    for (label, bytes) in [
        (
            "opcode 5 UPDATE, QDCOUNT=0",
            header(0x0b70, 5 << 11, [0; 4]),
        ),
        (
            "opcode 4 NOTIFY, ARCOUNT=1, no additional",
            [header(0x0b71, (4 << 11) | RD, [1, 0, 0, 1]), question()].concat(),
        ),
    ] {
        let expect = Expect::header_only(&bytes, NOTIMP);
        cases.push(case(label, bytes, expect));
    }
    cases.push(formerr(
        "QDCOUNT=0, header only",
        header(0x0c01, RD, [0; 4]),
    ));
    cases.push(formerr(
        "QDCOUNT=0 with a question present",
        [header(0x0c02, 0, [0, 0, 0, 0]), question()].concat(),
    ));
    cases.push(formerr(
        "QDCOUNT=2",
        [header(0x0c03, RD, [2, 0, 0, 0]), question(), question()].concat(),
    ));
    cases.push(formerr(
        "QDCOUNT=1, no question",
        header(0x0c04, RD, [1, 0, 0, 0]),
    ));
    let q = question();
    cases.push(formerr(
        "question cut inside QTYPE",
        [header(0x0c05, RD, [1, 0, 0, 0]), q[..q.len() - 3].to_vec()].concat(),
    ));
    cases.push(formerr(
        "question cut inside QCLASS",
        [header(0x0c06, RD, [1, 0, 0, 0]), q[..q.len() - 1].to_vec()].concat(),
    ));
    cases.push(formerr(
        "name without its root label",
        [
            header(0x0c07, RD, [1, 0, 0, 0]),
            b"\x07example\x04test".to_vec(),
        ]
        .concat(),
    ));
    cases.push(formerr(
        "label length runs past the end",
        [header(0x0c08, RD, [1, 0, 0, 0]), b"\x3fabc".to_vec()].concat(),
    ));
    cases.push(formerr(
        "label type 0x40 (extended label)",
        [
            header(0x0c09, RD, [1, 0, 0, 0]),
            b"\x41abc\x00\x00\x01\x00\x01".to_vec(),
        ]
        .concat(),
    ));
    cases.push(formerr(
        "compression pointer to itself",
        [header(0x0c0a, RD, [1, 0, 0, 0]), vec![0xc0, 12, 0, 1, 0, 1]].concat(),
    ));
    cases.push(formerr(
        "compression loop through a label",
        [
            header(0x0c0b, RD, [1, 0, 0, 0]),
            vec![1, b'a', 0xc0, 12, 0, 1, 0, 1],
        ]
        .concat(),
    ));
    cases.push(formerr(
        "compression pointer past the end",
        [
            header(0x0c0c, RD, [1, 0, 0, 0]),
            vec![3, b'w', b'w', b'w', 0xc0, 200, 0, 1, 0, 1],
        ]
        .concat(),
    ));
    // Offset 4 holds QDCOUNT's high byte, 0: the pointer spells "www." and hickory
    // decodes it, but a question name must be plain (src/wire.rs skip_plain_name).
    let pointer_name = [
        header(0x0c0d, RD, [1, 0, 0, 0]),
        vec![3, b'w', b'w', b'w', 0xc0, 4, 0, 1, 0, 1],
    ]
    .concat();
    assert!(
        Message::from_vec(&pointer_name).is_ok(),
        "hickory accepts the pointer"
    );
    cases.push(formerr("compression pointer into the header", pointer_name));
    cases.push(formerr(
        "ANCOUNT=1, no answer",
        [header(0x0d01, RD, [1, 1, 0, 0]), question()].concat(),
    ));
    cases.push(formerr(
        "NSCOUNT=65535, no authority",
        [header(0x0d02, RD, [1, 0, 0xffff, 0]), question()].concat(),
    ));
    cases.push(formerr(
        "ARCOUNT=1, no additional",
        [header(0x0d03, RD, [1, 0, 0, 1]), question()].concat(),
    ));
    cases.push(formerr(
        "ARCOUNT=2, one OPT",
        [header(0x0d04, RD, [1, 0, 0, 2]), question(), opt(0)].concat(),
    ));
    cases.push(formerr(
        "OPT with RDLENGTH past the end",
        [
            header(0x0d05, RD, [1, 0, 0, 1]),
            question(),
            vec![0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 9, 0, 15],
        ]
        .concat(),
    ));
    cases.push(formerr(
        "two OPT records",
        [header(0x0d06, RD, [1, 0, 0, 2]), question(), opt(0), opt(0)].concat(),
    ));
    let badvers = [header(0x0d07, RD, [1, 0, 0, 1]), question(), opt(1)].concat();
    cases.push(case(
        "EDNS version 1",
        badvers,
        Expect::Badvers {
            id: 0x0d07,
            question: question(),
        },
    ));
    // 5 labels of 63 octets: 321 octets, over the 255 of RFC 1035 §2.3.4.
    let mut long = Vec::new();
    for _ in 0..5 {
        long.push(63);
        long.extend_from_slice(&[b'x'; 63]);
    }
    long.extend_from_slice(&[0, 0, 1, 0, 1]);
    cases.push(formerr(
        "name of 321 octets",
        [header(0x0e01, RD, [1, 0, 0, 0]), long].concat(),
    ));
    cases.push(formerr(
        "name of 256 octets",
        [
            header(0x0e02, RD, [1, 0, 0, 0]),
            name_of_len(256),
            vec![0, 1, 0, 1],
        ]
        .concat(),
    ));
    cases
}

/// A plain wire name of exactly `len` octets (root label included), from
/// labels of at most 63 octets.
fn name_of_len(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut left = len - 1;
    while left > 0 {
        let label = (left - 1).min(63);
        out.push(label as u8);
        out.extend(std::iter::repeat_n(b'y', label));
        left -= label + 1;
    }
    out.push(0);
    assert_eq!(out.len(), len);
    out
}

/// Seeded random packets that hickory cannot decode: fully random (mostly
/// shorter than a header, responses or other opcodes), and random bodies behind
/// a plausible QUERY header with QDCOUNT=1. Same packets on every run.
fn random_corpus() -> Vec<Case> {
    let mut rng = StdRng::seed_from_u64(0x5eed_d115);
    let mut cases = Vec::new();
    while cases.len() < 120 {
        let plausible = cases.len() % 2 == 1;
        let mut bytes = vec![0u8; rng.random_range(0..80usize)];
        rng.fill_bytes(&mut bytes);
        if plausible {
            let flags = rng.random::<u16>() & !(QR | 0x7800);
            let counts = [
                1,
                rng.random_range(0..3u16),
                rng.random_range(0..3u16),
                rng.random_range(0..3u16),
            ];
            bytes = [header(rng.random(), flags, counts), bytes].concat();
        }
        // A random packet that happens to be a valid query is not malformed.
        if Message::from_vec(&bytes).is_ok() {
            continue;
        }
        let other_opcode_one_question = bytes.len() >= 12
            && bytes[2] & 0x78 != 0
            && u16::from_be_bytes([bytes[4], bytes[5]]) == 1;
        if other_opcode_one_question {
            continue;
        }
        let expect = Expect::for_undecodable(&bytes);
        cases.push(case(
            format!("random #{} ({} bytes)", cases.len(), bytes.len()),
            bytes,
            expect,
        ));
    }
    cases
}

fn corpus() -> Vec<Case> {
    let mut all = fixed_corpus();
    all.extend(random_corpus());
    all
}

fn drops(cases: &[Case]) -> u64 {
    cases.iter().filter(|c| c.expect == Expect::Drop).count() as u64
}

async fn setup(n: u8) -> (FakeUpstream, TestServer) {
    let upstream = FakeUpstream::start(loopback(n)).await;
    upstream.add_a(GOOD, "192.0.2.60", 300);
    upstream.add_a("example.test", "192.0.2.61", 300);
    let server = start(upstream.addr()).await;
    (upstream, server)
}

/// A normal query still gets a correct answer.
async fn assert_still_answers(server: &TestServer, name: &str) {
    let opts = QueryOpts::default();
    let reply = query_udp(server.udp, name, RecordType::A, &opts, LIMIT)
        .await
        .unwrap_or_else(|e| panic!("normal query for {name} after the corpus: {e}"));
    assert_eq!(reply.message.response_code, ResponseCode::NoError);
    assert_eq!(reply.message.answers.len(), 1, "{name}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_malformed_udp_packet_gets_its_documented_outcome() {
    let (upstream, server) = setup(60).await;
    let cases = corpus();
    // Each from its own socket, all at the same time: one silence window in all.
    let mut tasks = tokio::task::JoinSet::new();
    for (i, c) in cases.iter().enumerate() {
        let (addr, bytes) = (server.udp, c.bytes.clone());
        tasks.spawn(async move { (i, collect_udp(addr, &bytes, SILENCE).await) });
    }
    let mut checked = 0;
    while let Some(joined) = tasks.join_next().await {
        let (i, seen) = joined.expect("client task");
        let c = &cases[i];
        assert!(seen.len() <= 1, "{}: {} replies", c.label, seen.len());
        if let Some(datagram) = seen.first() {
            assert_eq!(datagram.from, server.udp, "{}", c.label);
            assert!(
                datagram.after < AT_ONCE,
                "{}: {:?}",
                c.label,
                datagram.after
            );
        }
        c.expect.check(&c.label, seen.first().map(|d| &d.bytes[..]));
        checked += 1;
    }
    assert_eq!(checked, cases.len());
    assert_eq!(
        upstream.queries() + upstream.malformed(),
        0,
        "nothing malformed went upstream"
    );
    let metrics = server.stats.metrics();
    assert_eq!(metrics.queries_dropped.get(), drops(&cases));
    assert_eq!(metrics.queries_udp.get(), cases.len() as u64);
    assert_eq!(metrics.lookups_started.get(), 0);
    assert_still_answers(&server, GOOD).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_corpus_at_once_from_one_socket() {
    let (upstream, server) = setup(61).await;
    let cases = corpus();
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("client socket");
    for c in &cases {
        socket.send_to(&c.bytes, server.udp).await.expect("send");
    }
    // The expected replies by ID (random IDs may repeat).
    let mut want: HashMap<u16, Vec<&Case>> = HashMap::new();
    for c in cases.iter().filter(|c| c.expect != Expect::Drop) {
        let id = u16::from_be_bytes([c.bytes[0], c.bytes[1]]);
        want.entry(id).or_default().push(c);
    }
    let expected_replies = want.values().map(Vec::len).sum::<usize>();
    let deadline = Instant::now() + SILENCE;
    let mut buf = vec![0u8; 65535];
    let mut got = 0;
    while let Ok(received) = timeout_at(deadline, socket.recv_from(&mut buf)).await {
        let (len, from) = received.expect("recv");
        assert_eq!(from, server.udp);
        let reply = &buf[..len];
        let id = u16::from_be_bytes([reply[0], reply[1]]);
        let candidates = want
            .get_mut(&id)
            .unwrap_or_else(|| panic!("reply with unexpected ID {id:#06x}: {reply:02x?}"));
        // Replies come in send order, so the first outstanding case with this ID.
        assert!(!candidates.is_empty(), "a second reply for ID {id:#06x}");
        let c = candidates.remove(0);
        c.expect.check(&format!("burst: {}", c.label), Some(reply));
        got += 1;
    }
    assert_eq!(
        got, expected_replies,
        "one reply per answerable packet, none for the rest"
    );
    assert_eq!(upstream.queries() + upstream.malformed(), 0);
    assert_eq!(server.stats.metrics().queries_dropped.get(), drops(&cases));
    assert_still_answers(&server, GOOD).await;
    // One more drop, then a query for a name not yet cached (a full lookup).
    assert!(send_raw_udp(server.udp, &[0u8; 5], SILENCE).await.is_none());
    assert_still_answers(&server, "example.test").await;
    assert_eq!(
        server.stats.metrics().queries_dropped.get(),
        drops(&cases) + 1
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_tcp_frames_get_the_same_outcomes_and_the_connection_survives() {
    let (upstream, server) = setup(62).await;
    // Warm the probe name, so each probe is answered at once from the cache.
    assert_still_answers(&server, GOOD).await;
    let cases = corpus();
    let mut client = TcpClient::connect(server.tcp).await.expect("connect");
    for (i, c) in cases.iter().enumerate() {
        // Every rejection is written before the next frame is read, so the frame
        // after the bad one's reply (or in its place) answers the probe.
        client
            .send(&c.bytes)
            .await
            .unwrap_or_else(|e| panic!("{}: send: {e}", c.label));
        let probe_id = 0x7000 + i as u16;
        let probe = build_query(GOOD, RecordType::A, &QueryOpts::default().with_id(probe_id));
        client
            .send(&probe)
            .await
            .unwrap_or_else(|e| panic!("{}: probe send: {e}", c.label));
        let first = client
            .recv(LIMIT)
            .await
            .unwrap_or_else(|e| panic!("TCP {}: connection gone: {e}", c.label));
        let probe_reply = if c.expect == Expect::Drop {
            first
        } else {
            c.expect.check(&format!("TCP {}", c.label), Some(&first));
            client
                .recv(LIMIT)
                .await
                .unwrap_or_else(|e| panic!("TCP {}: probe: {e}", c.label))
        };
        let message = Message::from_vec(&probe_reply)
            .unwrap_or_else(|e| panic!("TCP {}: probe reply {probe_reply:02x?}: {e}", c.label));
        assert_eq!(
            message.id, probe_id,
            "TCP {}: the next frame answers the probe",
            c.label
        );
        assert_eq!(message.answers.len(), 1);
    }
    let metrics = server.stats.metrics();
    assert_eq!(metrics.queries_dropped.get(), drops(&cases));
    assert_eq!(
        metrics.tcp_connections_accepted.get(),
        1,
        "one connection served it all"
    );
    assert_eq!(upstream.queries(), 1, "only the warm-up went upstream");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_byte_tcp_frame_gets_no_reply_and_the_connection_still_serves() {
    let (_upstream, server) = setup(63).await;
    let mut client = TcpClient::connect(server.tcp).await.expect("connect");
    client
        .send(&[0x12, 0x34, 0x01, 0x00, 0x00])
        .await
        .expect("send 5 bytes");
    match client.recv(SILENCE).await {
        Err(ClientError::Timeout) => {}
        other => panic!("expected silence after a 5-byte frame, got {other:?}"),
    }
    let opts = QueryOpts::default().with_id(0x0505);
    let reply = client
        .query(GOOD, RecordType::A, &opts, LIMIT)
        .await
        .expect("the connection still serves");
    assert_eq!(reply.message.id, 0x0505);
    assert_eq!(reply.message.answers.len(), 1);
    assert_eq!(server.stats.metrics().queries_dropped.get(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn longest_legal_name_is_resolved_not_rejected() {
    // The boundary of the over-long name cases: 255 octets is legal (RFC 1035
    // §2.3.4) and goes upstream, which answers NXDOMAIN.
    let (upstream, server) = setup(64).await;
    let name = name_of_len(255);
    let bytes = [
        header(0x0f01, RD, [1, 0, 0, 0]),
        name.clone(),
        vec![0, 1, 0, 1],
    ]
    .concat();
    let parsed = Message::from_vec(&bytes).expect("a 255-octet name is valid");
    let reply = send_raw_udp(server.udp, &bytes, LIMIT)
        .await
        .expect("a reply");
    let message = Message::from_vec(&reply).expect("valid reply");
    assert_eq!(message.id, 0x0f01);
    assert_eq!(message.response_code, ResponseCode::NXDomain);
    assert_eq!(
        &reply[12..12 + name.len() + 4],
        &bytes[12..],
        "question echoed"
    );
    assert_eq!(
        upstream.queries_for(&parsed.queries[0].name().to_ascii()),
        1
    );
    server.stop().await;
}

/// The hand-built EDNS packets (version 1; DO=1) are byte for byte what hickory
/// writes for those queries, so the cases that use them test EDNS and nothing else.
#[test]
fn hand_built_edns_packets_match_hickory() {
    let mut message = Message::new(0x0d07, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(
        Name::from_ascii("example.test.").expect("name"),
        RecordType::A,
    ));
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    edns.set_version(1);
    message.edns = Some(edns);
    let built = message.to_vec().expect("encodes");
    assert_eq!(
        built,
        [header(0x0d07, RD, [1, 0, 0, 1]), question(), opt(1)].concat()
    );
    // And the OPT with DO=1 of the NOTIMP cases.
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    edns.set_dnssec_ok(true);
    message.edns = Some(edns);
    let built = message.to_vec().expect("encodes");
    assert_eq!(
        built,
        [
            header(0x0d07, RD, [1, 0, 0, 1]),
            question(),
            opt_with(0, true)
        ]
        .concat()
    );
}
/// The seeded random corpus exercises every rule, not just one.
#[test]
fn random_corpus_covers_every_outcome() {
    let cases = random_corpus();
    let count = |f: fn(&Expect) -> bool| cases.iter().filter(|c| f(&c.expect)).count();
    assert!(count(|e| *e == Expect::Drop) >= 10);
    assert!(count(|e| matches!(e, Expect::HeaderOnly { rcode: NOTIMP, .. })) >= 10);
    assert!(count(|e| matches!(e, Expect::HeaderOnly { rcode: FORMERR, .. })) >= 10);
    assert!(cases.iter().filter(|c| c.bytes.len() < 12).count() >= 3);
}
