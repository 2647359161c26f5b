//! `FakeUpstream`: a scripted DNS server that integration tests point the resolver at.
//! It serves a small in-memory zone table over UDP and TCP on one loopback port, and can
//! be switched at any moment into a misbehaving mode (slow, silent, spoofed, garbled,
//! truncated, dripping, cut short, oversized, with lying counts or looping names) so a
//! test can check how the resolver copes. Everything it
//! receives is counted, and the last query is kept so tests can assert what the resolver
//! actually sent upstream; each query's source, ID and arrival time are logged so tests
//! can check retransmission. It never panics on input, whatever arrives on the wire.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, SOA, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, sleep, sleep_until};
use tokio_rustls::TlsAcceptor;

/// Address carried by every spoofed reply (wrong ID, wrong question, wrong source) to an
/// A query. If a test ever sees it in an answer, the resolver accepted a forged reply.
pub const POISON_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 66);
/// The AAAA counterpart of [`POISON_V4`].
pub const POISON_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x66);
/// Name used by spoofed replies to non-address queries, and by `WrongQuestionFirst`.
pub const POISON_NAME: &str = "poison.invalid.";
/// The UDP payload size the fake advertises in its own OPT record, and the most it
/// sends over UDP (DNS flag day 2020 value).
pub const UPSTREAM_EDNS_PAYLOAD: u16 = 1232;
/// Default TTL of the SOA in negative answers (and its MINIMUM field).
pub const DEFAULT_NEGATIVE_TTL: u32 = 60;

const MAX_CNAME_HOPS: usize = 16;
const DRIP_INTERVAL: Duration = Duration::from_secs(1);
/// Frames queued per TCP connection before the reader waits for the writer.
const TCP_WRITE_QUEUE: usize = 64;
/// Queries kept in the log of [`FakeUpstream::received`]; later ones are counted but
/// not logged, so a long flood cannot grow the test's memory without bound.
const RECEIVED_LOG: usize = 65_536;

/// How the fake upstream treats the queries it receives from now on. Read once per
/// query when it arrives, so a change never affects replies already scheduled.
/// Applies to UDP and TCP alike unless the variant says otherwise.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Behavior {
    /// Answer from the zone table at once.
    #[default]
    Answer,
    /// Answer after the delay; other queries are not held up meanwhile.
    Delay(Duration),
    /// Read the query and never answer.
    Hang,
    /// Reply SERVFAIL (question echoed, no records).
    Servfail,
    /// Reply REFUSED (question echoed, no records).
    Refused,
    /// Send at once a poisoned reply whose ID differs from the query's, then the real
    /// reply after the duration.
    WrongIdFirst(Duration),
    /// Send at once a poisoned reply with the right ID but another question
    /// ([`POISON_NAME`], same type), then the real reply after the duration.
    WrongQuestionFirst(Duration),
    /// UDP: send at once a poisoned reply with the right ID and question from another
    /// socket (same IP, different port), then the real reply from the served port after
    /// the duration. TCP has no other source: it answers at once.
    WrongSourceFirst(Duration),
    /// UDP: reply TC=1 with question and OPT only. TCP: answer in full.
    TruncateUdp,
    /// UDP and TCP: per query, three replies that are never a valid answer: a runt
    /// shorter than 12 bytes, one with the right ID and a corrupt body, and random bytes
    /// with a wrong ID. Over TCP each is sent as its own length-prefixed frame.
    Garbage,
    /// TCP: send the length-prefixed reply one byte per second. UDP: reply TC=1 so the
    /// client is pushed to TCP.
    TcpDrip,
    /// Send every answer twice (two datagrams, or two TCP frames).
    AnswerTwice,
    /// Two replies with the right ID and question that no decoder may accept:
    /// one whose answer's owner name is a compression pointer to itself, one
    /// whose CNAME target is a label followed by a pointer back to that label
    /// (RFC 1035 §4.1.4: a pointer must point to a prior occurrence).
    PointerLoop,
    /// The real answer with ANCOUNT changed by this much (wrapping): larger
    /// announces records that are not there, smaller leaves records (and the
    /// OPT) behind the last one announced.
    AnswerCountOff(i8),
    /// The real answer with every answer record's class set to CH (RFC 1035
    /// §3.2.4) while the question stays IN.
    ChaosClass,
    /// UDP: the real answer padded with TXT records in the additional section
    /// to at least this many bytes, whatever the client advertised. TCP: the
    /// plain answer.
    OversizedUdp(usize),
    /// UDP: reply TC=1. TCP: send the length prefix and half of the reply,
    /// then close the connection (RFC 7766 §8 framing cut mid-message).
    TcpCutShort,
    /// Five replies with random IDs (never the query's) and poisoned data at
    /// once, then the real reply after the duration.
    UnsolicitedFirst(Duration),
}

/// The transport a query arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// One well-formed query as it arrived, for tests of retransmission (RFC 5452 §9.2:
/// each attempt from its own source port, with its own ID).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received {
    pub transport: Transport,
    /// The sender's address; its port is the resolver's source port.
    pub source: SocketAddr,
    /// The query's DNS ID.
    pub id: u16,
    /// When the datagram or frame was read.
    pub at: Instant,
}

/// A scripted DNS server bound on UDP and TCP, same port. Serves until dropped.
pub struct FakeUpstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

struct Shared {
    zone: Mutex<Zone>,
    behavior: Mutex<Behavior>,
    stats: Mutex<Stats>,
}

struct Zone {
    /// Lower-cased fully qualified name ("www.example.com.") to its records, owner names
    /// as the test spelled them.
    nodes: HashMap<String, Vec<Record>>,
    negative_ttl: u32,
}

#[derive(Default)]
struct Stats {
    udp: usize,
    tcp: usize,
    malformed: usize,
    tcp_connections: usize,
    tls_handshakes: usize,
    open_connections: usize,
    per_name: HashMap<String, usize>,
    last: Option<Message>,
    received: Vec<Received>,
}

/// One datagram or frame to send, `after` counted from the query's arrival.
struct Step {
    after: Duration,
    bytes: Vec<u8>,
    /// UDP only: send from the decoy socket instead of the served port.
    from_decoy: bool,
    /// TCP only: write one byte per [`DRIP_INTERVAL`].
    drip: bool,
    /// TCP only: write half the frame, then close the connection.
    cut: bool,
}

impl Step {
    fn now(bytes: Vec<u8>) -> Self {
        Self::after(Duration::ZERO, bytes)
    }

    fn after(after: Duration, bytes: Vec<u8>) -> Self {
        Step {
            after,
            bytes,
            from_decoy: false,
            drip: false,
            cut: false,
        }
    }
}

impl FakeUpstream {
    /// Binds UDP and TCP on the same free port of `ip` and starts serving on the current
    /// tokio runtime. Panics if no such port can be found (a broken test environment).
    pub async fn start(ip: IpAddr) -> FakeUpstream {
        FakeUpstream::start_at(SocketAddr::new(ip, 0)).await
    }

    /// Like [`FakeUpstream::start`] on a given port (e.g. 53, for a server named
    /// in a resolv.conf, which cannot carry a port; needs root).
    pub async fn start_at(at: SocketAddr) -> FakeUpstream {
        FakeUpstream::start_serving(at, None).await
    }

    /// Like [`FakeUpstream::start`], with DNS over TLS (RFC 7858) instead of plain
    /// TCP on the stream port: every accepted connection is a TLS handshake first.
    pub async fn start_tls(ip: IpAddr, tls: Arc<rustls::ServerConfig>) -> FakeUpstream {
        FakeUpstream::start_serving(SocketAddr::new(ip, 0), Some(TlsAcceptor::from(tls))).await
    }

    async fn start_serving(at: SocketAddr, tls: Option<TlsAcceptor>) -> FakeUpstream {
        let ip = at.ip();
        let (udp, tcp) = bind_pair(ip, at.port()).await;
        let addr = udp.local_addr().expect("bound UDP socket has an address");
        let decoy = UdpSocket::bind(SocketAddr::new(ip, 0))
            .await
            .unwrap_or_else(|e| panic!("FakeUpstream: cannot bind decoy UDP on {ip}: {e}"));
        let shared = Arc::new(Shared {
            zone: Mutex::new(Zone {
                nodes: HashMap::new(),
                negative_ttl: DEFAULT_NEGATIVE_TTL,
            }),
            behavior: Mutex::new(Behavior::Answer),
            stats: Mutex::new(Stats::default()),
        });
        let tasks = vec![
            tokio::spawn(serve_udp(Arc::new(udp), Arc::new(decoy), shared.clone())),
            tokio::spawn(serve_tcp(tcp, tls, shared.clone())),
        ];
        FakeUpstream {
            addr,
            shared,
            tasks,
        }
    }

    /// The address served on both UDP and TCP.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Changes how queries arriving from now on are treated.
    pub fn set_behavior(&self, behavior: Behavior) {
        *lock(&self.shared.behavior) = behavior;
    }

    pub fn behavior(&self) -> Behavior {
        *lock(&self.shared.behavior)
    }

    // ---- zone table -------------------------------------------------------------

    /// Adds records at `name` (any letter case; a trailing dot is optional). Panics on
    /// an invalid name: that is a mistake in the test.
    pub fn add(&self, name: &str, records: impl IntoIterator<Item = RData>, ttl: u32) {
        let owner = parse_name(name);
        let key = key_of(&owner);
        let mut zone = lock(&self.shared.zone);
        let node = zone.nodes.entry(key).or_default();
        node.extend(
            records
                .into_iter()
                .map(|rdata| Record::from_rdata(owner.clone(), ttl, rdata)),
        );
    }

    pub fn add_a(&self, name: &str, addr: &str, ttl: u32) {
        let ip: Ipv4Addr = addr
            .parse()
            .unwrap_or_else(|e| panic!("add_a({name}): bad IPv4 {addr:?}: {e}"));
        self.add(name, [RData::A(A(ip))], ttl);
    }

    pub fn add_aaaa(&self, name: &str, addr: &str, ttl: u32) {
        let ip: Ipv6Addr = addr
            .parse()
            .unwrap_or_else(|e| panic!("add_aaaa({name}): bad IPv6 {addr:?}: {e}"));
        self.add(name, [RData::AAAA(AAAA(ip))], ttl);
    }

    pub fn add_mx(&self, name: &str, preference: u16, exchange: &str, ttl: u32) {
        let mx = MX::new(preference, parse_name(exchange));
        self.add(name, [RData::MX(mx)], ttl);
    }

    pub fn add_txt(&self, name: &str, text: &str, ttl: u32) {
        self.add(name, [RData::TXT(TXT::new(vec![text.to_owned()]))], ttl);
    }

    /// A CNAME at `name`. Queries for other types at `name` follow the chain through
    /// the table and return every link plus the final records, as a recursive resolver
    /// would; the RCODE is that of the last name in the chain (RFC 6604).
    pub fn add_cname(&self, name: &str, target: &str, ttl: u32) {
        self.add(name, [RData::CNAME(CNAME(parse_name(target)))], ttl);
    }

    /// `count` A records 10.0.x.y at `name`, TTL 300. 40 records make a ~700-byte
    /// answer: truncated (TC=1) for a client without EDNS (512 bytes), whole under
    /// EDNS 1232; about 75 records are needed to overflow 1232.
    pub fn add_many_a(&self, name: &str, count: usize) {
        let records = (0..count).map(|i| {
            let [_, _, hi, lo] = (i as u32).to_be_bytes();
            RData::A(A(Ipv4Addr::new(10, 0, hi, lo)))
        });
        self.add(name, records, 300);
    }

    /// Removes every record at `name` (the name becomes NXDOMAIN unless it has
    /// descendants in the table).
    pub fn remove(&self, name: &str) {
        let key = key_of(&parse_name(name));
        lock(&self.shared.zone).nodes.remove(&key);
    }

    /// TTL and MINIMUM of the SOA put in negative answers (RFC 2308 §5 caps negative
    /// caching at the smaller of the two).
    pub fn set_negative_ttl(&self, ttl: u32) {
        lock(&self.shared.zone).negative_ttl = ttl;
    }

    // ---- observability ------------------------------------------------------------

    /// Well-formed queries received over UDP and TCP.
    pub fn queries(&self) -> usize {
        let stats = lock(&self.shared.stats);
        stats.udp + stats.tcp
    }

    pub fn udp_queries(&self) -> usize {
        lock(&self.shared.stats).udp
    }

    pub fn tcp_queries(&self) -> usize {
        lock(&self.shared.stats).tcp
    }

    /// Queries whose question name equals `name`, ignoring letter case.
    pub fn queries_for(&self, name: &str) -> usize {
        let key = key_of(&parse_name(name));
        lock(&self.shared.stats)
            .per_name
            .get(&key)
            .copied()
            .unwrap_or(0)
    }

    /// The last well-formed query received, as parsed (header bits, EDNS, question).
    pub fn last_query(&self) -> Option<Message> {
        lock(&self.shared.stats).last.clone()
    }

    /// Every well-formed query received (the first [`RECEIVED_LOG`] of them), in
    /// arrival order, with its source, ID and arrival time.
    pub fn received(&self) -> Vec<Received> {
        lock(&self.shared.stats).received.clone()
    }

    /// Datagrams or frames that did not parse as a DNS query (ignored, never answered).
    pub fn malformed(&self) -> usize {
        lock(&self.shared.stats).malformed
    }

    /// TCP connections accepted.
    pub fn tcp_connections(&self) -> usize {
        lock(&self.shared.stats).tcp_connections
    }

    /// TLS handshakes completed (with [`FakeUpstream::start_tls`]).
    pub fn tls_handshakes(&self) -> usize {
        lock(&self.shared.stats).tls_handshakes
    }

    /// Stream connections (TCP or TLS) currently open.
    pub fn open_connections(&self) -> usize {
        lock(&self.shared.stats).open_connections
    }

    /// Zeroes every counter and forgets the last query and the log of received ones.
    /// Zone and behaviour are kept.
    pub fn reset_counters(&self) {
        *lock(&self.shared.stats) = Stats::default();
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        // Aborting the two server tasks drops their JoinSets, which aborts every
        // connection and every delayed reply they own.
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Locks without ever panicking: a test that panicked while holding the lock must not
/// turn the server's tasks into a cascade of panics.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn parse_name(name: &str) -> Name {
    let fqdn = if name.ends_with('.') {
        name.to_owned()
    } else {
        format!("{name}.")
    };
    Name::from_ascii(&fqdn).unwrap_or_else(|e| panic!("invalid DNS name {name:?}: {e}"))
}

/// Table key: lower-cased, fully qualified ASCII form.
fn key_of(name: &Name) -> String {
    let mut key = name.to_ascii().to_ascii_lowercase();
    if !key.ends_with('.') {
        key.push('.');
    }
    key
}

async fn bind_pair(ip: IpAddr, port: u16) -> (UdpSocket, TcpListener) {
    let mut last_error = None;
    let tries = if port == 0 { 20 } else { 1 };
    for _ in 0..tries {
        let udp = UdpSocket::bind(SocketAddr::new(ip, port))
            .await
            .unwrap_or_else(|e| panic!("FakeUpstream: cannot bind UDP on {ip}: {e}"));
        let port = udp
            .local_addr()
            .expect("bound socket has an address")
            .port();
        match TcpListener::bind(SocketAddr::new(ip, port)).await {
            Ok(tcp) => return (udp, tcp),
            // Port free for UDP but taken for TCP: try another one.
            Err(e) => last_error = Some(e),
        }
    }
    panic!("FakeUpstream: no port free for both UDP and TCP on {ip}: {last_error:?}");
}

// ---- serving ----------------------------------------------------------------------

async fn serve_udp(socket: Arc<UdpSocket>, decoy: Arc<UdpSocket>, shared: Arc<Shared>) {
    let mut buf = vec![0u8; 65535];
    // Delayed replies; dropped (so aborted) with this task.
    let mut pending = JoinSet::new();
    loop {
        let (len, peer) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            // e.g. an ICMP error surfaced on a later read; the socket is still usable.
            Err(_) => continue,
        };
        let at = Instant::now();
        while pending.try_join_next().is_some() {}
        let steps = handle(&shared, &buf[..len], Transport::Udp, peer, at);
        if steps.iter().all(|s| s.after.is_zero()) {
            for step in &steps {
                let from = if step.from_decoy { &decoy } else { &socket };
                let _ = from.send_to(&step.bytes, peer).await;
            }
        } else {
            let (socket, decoy) = (socket.clone(), decoy.clone());
            pending.spawn(async move {
                let start = Instant::now();
                for step in steps {
                    sleep_until(start + step.after).await;
                    let from = if step.from_decoy { &decoy } else { &socket };
                    let _ = from.send_to(&step.bytes, peer).await;
                }
            });
        }
    }
}

async fn serve_tcp(listener: TcpListener, tls: Option<TlsAcceptor>, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(_) => {
                // Out of descriptors or similar: back off instead of spinning.
                sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        lock(&shared.stats).tcp_connections += 1;
        let _ = stream.set_nodelay(true);
        while connections.try_join_next().is_some() {}
        let shared = shared.clone();
        let tls = tls.clone();
        connections.spawn(async move {
            lock(&shared.stats).open_connections += 1;
            match tls {
                None => serve_tcp_connection(stream, peer, shared.clone()).await,
                Some(acceptor) => {
                    if let Ok(stream) = acceptor.accept(stream).await {
                        lock(&shared.stats).tls_handshakes += 1;
                        serve_tcp_connection(stream, peer, shared.clone()).await;
                    }
                }
            }
            lock(&shared.stats).open_connections -= 1;
        });
    }
}

/// RFC 7766 framing: each message is preceded by its 2-byte length. Queries are read
/// and answered concurrently (a delayed answer does not hold up the next one), and all
/// replies go through one writer so frames never interleave.
async fn serve_tcp_connection<S>(stream: S, peer: SocketAddr, shared: Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::channel::<Step>(TCP_WRITE_QUEUE);

    let read_side = async move {
        let mut responders = JoinSet::new();
        loop {
            let mut len = [0u8; 2];
            if reader.read_exact(&mut len).await.is_err() {
                break;
            }
            let mut message = vec![0u8; usize::from(u16::from_be_bytes(len))];
            if reader.read_exact(&mut message).await.is_err() {
                break;
            }
            let at = Instant::now();
            while responders.try_join_next().is_some() {}
            let steps = handle(&shared, &message, Transport::Tcp, peer, at);
            if steps.iter().all(|s| s.after.is_zero()) {
                // Immediate replies are queued in arrival order.
                for step in steps {
                    if tx.send(step).await.is_err() {
                        return;
                    }
                }
            } else {
                let tx = tx.clone();
                responders.spawn(async move {
                    let start = Instant::now();
                    for step in steps {
                        sleep_until(start + step.after).await;
                        if tx.send(step).await.is_err() {
                            return;
                        }
                    }
                });
            }
        }
        // The client closed its side: let scheduled replies go out, then end.
        drop(tx);
        while responders.join_next().await.is_some() {}
    };

    let write_side = async move {
        while let Some(step) = rx.recv().await {
            let Ok(len) = u16::try_from(step.bytes.len()) else {
                continue;
            };
            let mut frame = Vec::with_capacity(2 + step.bytes.len());
            frame.extend_from_slice(&len.to_be_bytes());
            frame.extend_from_slice(&step.bytes);
            if step.cut {
                // Half a message, then FIN: the reader sees EOF mid-frame.
                let half = &frame[..2 + step.bytes.len() / 2];
                let _ = writer.write_all(half).await;
                let _ = writer.flush().await;
                let _ = writer.shutdown().await;
                return;
            }
            if step.drip {
                for (i, byte) in frame.iter().enumerate() {
                    if i > 0 {
                        sleep(DRIP_INTERVAL).await;
                    }
                    // Flushed byte by byte: TLS would otherwise hold them back.
                    if writer.write_all(&[*byte]).await.is_err() || writer.flush().await.is_err() {
                        return;
                    }
                }
            } else if writer.write_all(&frame).await.is_err() || writer.flush().await.is_err() {
                return;
            }
        }
    };

    tokio::join!(read_side, write_side);
}

// ---- deciding the replies -----------------------------------------------------------

/// Parses one query from `source`, read at `at`, counts and logs it and returns what
/// to send back, per the current behaviour.
fn handle(
    shared: &Shared,
    bytes: &[u8],
    transport: Transport,
    source: SocketAddr,
    at: Instant,
) -> Vec<Step> {
    let mut steps = plan(shared, bytes, transport, source, at);
    // A reply that failed to encode comes out empty: send nothing rather than that.
    steps.retain(|step| !step.bytes.is_empty());
    steps
}

fn plan(
    shared: &Shared,
    bytes: &[u8],
    transport: Transport,
    source: SocketAddr,
    at: Instant,
) -> Vec<Step> {
    let query = match Message::from_vec(bytes) {
        Ok(message) if message.message_type == MessageType::Query => message,
        _ => {
            lock(&shared.stats).malformed += 1;
            return Vec::new();
        }
    };
    {
        let mut stats = lock(&shared.stats);
        match transport {
            Transport::Udp => stats.udp += 1,
            Transport::Tcp => stats.tcp += 1,
        }
        if let Some(question) = query.queries.first() {
            *stats.per_name.entry(key_of(question.name())).or_default() += 1;
        }
        stats.last = Some(query.clone());
        if stats.received.len() < RECEIVED_LOG {
            stats.received.push(Received {
                transport,
                source,
                id: query.id,
                at,
            });
        }
    }
    let behavior = *lock(&shared.behavior);

    if query.queries.len() != 1 || query.op_code != OpCode::Query {
        let rcode = if query.op_code == OpCode::Query {
            ResponseCode::FormErr
        } else {
            ResponseCode::NotImp
        };
        let mut reply = reply_skeleton(&query);
        reply.metadata.response_code = rcode;
        return vec![Step::now(encode(&reply, &query, transport))];
    }

    let answer = || encode(&resolve(shared, &query), &query, transport);
    let truncated = || encode(&truncate(&resolve(shared, &query)), &query, transport);
    let udp = transport == Transport::Udp;

    match behavior {
        Behavior::Answer => vec![Step::now(answer())],
        Behavior::Delay(delay) => vec![Step::after(delay, answer())],
        Behavior::Hang => Vec::new(),
        Behavior::Servfail | Behavior::Refused => {
            let mut reply = reply_skeleton(&query);
            reply.metadata.response_code = if behavior == Behavior::Servfail {
                ResponseCode::ServFail
            } else {
                ResponseCode::Refused
            };
            vec![Step::now(encode(&reply, &query, transport))]
        }
        Behavior::WrongIdFirst(delay) => {
            let mut spoof = poisoned(&query);
            spoof.metadata.id = query.id ^ 0x5a5a;
            vec![
                Step::now(encode(&spoof, &query, transport)),
                Step::after(delay, answer()),
            ]
        }
        Behavior::WrongQuestionFirst(delay) => {
            let mut spoof = poisoned(&query);
            let other = parse_name(POISON_NAME);
            for question in &mut spoof.queries {
                question.set_name(other.clone());
            }
            for record in &mut spoof.answers {
                record.name = other.clone();
            }
            vec![
                Step::now(encode(&spoof, &query, transport)),
                Step::after(delay, answer()),
            ]
        }
        Behavior::WrongSourceFirst(delay) if udp => {
            let mut spoof = Step::now(encode(&poisoned(&query), &query, transport));
            spoof.from_decoy = true;
            vec![spoof, Step::after(delay, answer())]
        }
        Behavior::WrongSourceFirst(_) => vec![Step::now(answer())],
        Behavior::TruncateUdp if udp => vec![Step::now(truncated())],
        Behavior::TruncateUdp => vec![Step::now(answer())],
        Behavior::Garbage => garbage(query.id).into_iter().map(Step::now).collect(),
        Behavior::TcpDrip if udp => vec![Step::now(truncated())],
        Behavior::TcpDrip => {
            let mut step = Step::now(answer());
            step.drip = true;
            vec![step]
        }
        Behavior::AnswerTwice => vec![Step::now(answer()), Step::now(answer())],
        Behavior::PointerLoop => pointer_loops(&query).into_iter().map(Step::now).collect(),
        Behavior::AnswerCountOff(delta) => {
            let mut bytes = answer();
            if bytes.len() >= 12 {
                let count = u16::from_be_bytes([bytes[6], bytes[7]]);
                let count = count.wrapping_add_signed(i16::from(delta));
                bytes[6..8].copy_from_slice(&count.to_be_bytes());
            }
            vec![Step::now(bytes)]
        }
        Behavior::ChaosClass => {
            let mut reply = resolve(shared, &query);
            for record in &mut reply.answers {
                record.dns_class = DNSClass::CH;
            }
            vec![Step::now(encode(&reply, &query, transport))]
        }
        Behavior::OversizedUdp(size) if udp => {
            let mut reply = resolve(shared, &query);
            let filler = Name::from_ascii("pad.fake-upstream.invalid.").unwrap_or_default();
            while reply.to_vec().map_or(0, |b| b.len()) < size {
                let text = TXT::new(vec!["x".repeat(40)]);
                reply
                    .additionals
                    .push(Record::from_rdata(filler.clone(), 300, RData::TXT(text)));
            }
            // Sent whole: this upstream ignores the size the client advertised.
            vec![Step::now(reply.to_vec().unwrap_or_default())]
        }
        Behavior::OversizedUdp(_) => vec![Step::now(answer())],
        Behavior::TcpCutShort if udp => vec![Step::now(truncated())],
        Behavior::TcpCutShort => {
            let mut step = Step::now(answer());
            step.cut = true;
            vec![step]
        }
        Behavior::UnsolicitedFirst(delay) => {
            let mut steps: Vec<Step> = (0..5)
                .map(|_| {
                    let mut spoof = poisoned(&query);
                    spoof.metadata.id = loop {
                        let id: u16 = rand::random();
                        if id != query.id {
                            break id;
                        }
                    };
                    Step::now(encode(&spoof, &query, transport))
                })
                .collect();
            steps.push(Step::after(delay, answer()));
            steps
        }
    }
}

/// Two replies to `query` whose names loop through compression pointers
/// (RFC 1035 §4.1.4): right ID, QR set, the question echoed, one answer each.
fn pointer_loops(query: &Message) -> Vec<Vec<u8>> {
    let mut skeleton = reply_skeleton(query);
    skeleton.edns = None;
    let Ok(head) = skeleton.to_vec() else {
        return Vec::new();
    };
    let mut replies = Vec::with_capacity(2);
    let record_tail = |out: &mut Vec<u8>, rtype: u16, rdata: &[u8]| {
        out.extend_from_slice(&rtype.to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes()); // class IN
        out.extend_from_slice(&300u32.to_be_bytes());
        out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        out.extend_from_slice(rdata);
    };

    // The answer's owner name is a pointer to its own offset.
    let mut own = head.clone();
    own[6..8].copy_from_slice(&1u16.to_be_bytes());
    let at = own.len() as u16;
    own.extend_from_slice(&(0xc000 | at).to_be_bytes());
    record_tail(&mut own, 1, &POISON_V4.octets());
    replies.push(own);

    // The CNAME target is label "x" then a pointer back to that label.
    let mut target = head;
    target[6..8].copy_from_slice(&1u16.to_be_bytes());
    target.extend_from_slice(&0xc00cu16.to_be_bytes()); // owner: the question name
    let rdata_at = target.len() as u16 + 10;
    let mut rdata = vec![1, b'x'];
    rdata.extend_from_slice(&(0xc000 | rdata_at).to_be_bytes());
    record_tail(&mut target, 5, &rdata);
    replies.push(target);
    replies
}

/// A response header for `query`: same ID, opcode, RD and CD, QR and RA set, question
/// echoed byte for byte (letter case included), and an OPT echoing DO when the query
/// had EDNS (RFC 6891 §7, RFC 3225 §3).
fn reply_skeleton(query: &Message) -> Message {
    let mut reply = Message::response(query.id, query.op_code);
    reply.metadata.recursion_desired = query.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.metadata.checking_disabled = query.checking_disabled;
    reply.queries = query.queries.clone();
    if let Some(edns) = &query.edns {
        let mut opt = Edns::new();
        opt.set_max_payload(UPSTREAM_EDNS_PAYLOAD);
        opt.set_dnssec_ok(edns.flags().dnssec_ok);
        reply.edns = Some(opt);
    }
    reply
}

/// Answers the (single) question from the zone table, following CNAMEs.
fn resolve(shared: &Shared, query: &Message) -> Message {
    let mut reply = reply_skeleton(query);
    let question = &query.queries[0];
    let qtype = question.query_type();
    // The first owner keeps the query's spelling, like a server compressing to the
    // question; later links use the names as stored.
    let mut name = question.name().clone();
    let zone = lock(&shared.zone);
    for _ in 0..=MAX_CNAME_HOPS {
        let key = key_of(&name);
        let Some(records) = zone.nodes.get(&key) else {
            let suffix = format!(".{key}");
            let has_descendants = zone.nodes.keys().any(|k| k.ends_with(&suffix));
            if !has_descendants {
                reply.metadata.response_code = ResponseCode::NXDomain;
            }
            reply.authorities.push(soa_for(&name, zone.negative_ttl));
            return reply;
        };
        let matching: Vec<Record> = records
            .iter()
            .filter(|r| qtype == RecordType::ANY || r.record_type() == qtype)
            .map(|r| with_owner(r, &name))
            .collect();
        if !matching.is_empty() {
            reply.answers.extend(matching);
            return reply;
        }
        let cname = records.iter().find_map(|r| match &r.data {
            RData::CNAME(target) => Some((r, target.0.clone())),
            _ => None,
        });
        match cname {
            Some((record, target)) => {
                reply.answers.push(with_owner(record, &name));
                name = target;
            }
            None => {
                // The name exists without records of this type: NODATA.
                reply.authorities.push(soa_for(&name, zone.negative_ttl));
                return reply;
            }
        }
    }
    // A CNAME loop or an absurdly long chain.
    reply.answers.clear();
    reply.metadata.response_code = ResponseCode::ServFail;
    reply
}

fn with_owner(record: &Record, owner: &Name) -> Record {
    let mut record = record.clone();
    record.name = owner.clone();
    record
}

/// The SOA for a negative answer, owned by the last two labels of `name` (a stand-in
/// zone apex that is always an ancestor of, or equal to, the name).
fn soa_for(name: &Name, negative_ttl: u32) -> Record {
    let apex = name.trim_to(2);
    let soa = SOA::new(
        parse_name("ns.fake-upstream.invalid."),
        parse_name("hostmaster.fake-upstream.invalid."),
        1,
        3600,
        600,
        86400,
        negative_ttl,
    );
    Record::from_rdata(apex, negative_ttl, RData::SOA(soa))
}

/// A forged answer to `query`: right ID and question, poisoned data.
fn poisoned(query: &Message) -> Message {
    let mut reply = reply_skeleton(query);
    let question = &query.queries[0];
    let rdata = match question.query_type() {
        RecordType::A => RData::A(A(POISON_V4)),
        RecordType::AAAA => RData::AAAA(AAAA(POISON_V6)),
        RecordType::MX => RData::MX(MX::new(10, parse_name(POISON_NAME))),
        RecordType::CNAME => RData::CNAME(CNAME(parse_name(POISON_NAME))),
        _ => RData::TXT(TXT::new(vec!["poison".to_owned()])),
    };
    reply
        .answers
        .push(Record::from_rdata(question.name().clone(), 300, rdata));
    reply
}

fn truncate(reply: &Message) -> Message {
    let mut reply = reply.clone();
    reply.answers.clear();
    reply.authorities.clear();
    reply.additionals.clear();
    reply.metadata.truncation = true;
    reply
}

/// Wire form of `reply`; over UDP, replaced by its truncated form when it exceeds what
/// the client can take: 512 bytes without EDNS (RFC 1035 §4.2.1), else the smaller of
/// the client's payload and ours (RFC 6891 §6.2.5).
fn encode(reply: &Message, query: &Message, transport: Transport) -> Vec<u8> {
    let bytes = reply.to_vec().unwrap_or_default();
    if transport == Transport::Tcp {
        return bytes;
    }
    let limit = query
        .edns
        .as_ref()
        .map_or(512, |e| e.max_payload().clamp(512, UPSTREAM_EDNS_PAYLOAD));
    if bytes.len() > usize::from(limit) {
        truncate(reply).to_vec().unwrap_or_default()
    } else {
        bytes
    }
}

/// Three replies that no client may accept as an answer to query `id`.
fn garbage(id: u16) -> Vec<Vec<u8>> {
    // A runt, shorter than a DNS header.
    let mut runt = vec![0u8; rand::random_range(1..12usize)];
    rand::fill(&mut runt[..]);

    // Right ID, QR set, one question and five answers announced, then a label that
    // claims 63 bytes where only 10 follow: the body can never be decoded.
    let mut corrupt = Vec::with_capacity(12 + 11);
    corrupt.extend_from_slice(&id.to_be_bytes());
    corrupt.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 5, 0, 0, 0, 0, 63]);
    let mut tail = [0u8; 10];
    rand::fill(&mut tail[..]);
    corrupt.extend_from_slice(&tail);

    // Random bytes of header size or more, with an ID that cannot match.
    let mut noise = vec![0u8; rand::random_range(12..64usize)];
    rand::fill(&mut noise[..]);
    let mut noise_id = u16::from_be_bytes([noise[0], noise[1]]);
    if noise_id == id {
        noise_id ^= 0xffff;
    }
    noise[..2].copy_from_slice(&noise_id.to_be_bytes());

    vec![runt, corrupt, noise]
}
