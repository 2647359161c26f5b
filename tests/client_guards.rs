//! What punctual lets clients do, over real loopback sockets: only clients in
//! `[listen] allow` are answered (others get REFUSED + EDE 18), and a non-loopback
//! listener without an allow list stops the start; a client over its rate is
//! refused or ignored while others are not; a flood of stalled TCP connections is
//! held by the global and per-client caps and the read timeout while well-behaved
//! clients are answered at once; oversized queries are dropped or cut off; and the
//! real binary, started as root, drops to `[process] user` after binding port 53.
//!
//! Addresses: 127.0.0.170–199 (punctual, fake upstreams and client sources), plus
//! 127.0.0.1 and 127.0.0.2 as clients.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::process::Punctual;
use common::punctual::{start_with, test_config};
use common::{
    AT_ONCE, CLIENT_LIMIT, ClientError, EDE_OTHER, FakeUpstream, QueryOpts, Reply, TcpClient,
    assert_answer, collect_udp, ede, edns, loopback, query_udp_from,
};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use punctual::config::{Config, RateLimitAction};
use punctual::guard::Prefix;
use tokio::time::{Instant, sleep};

const BIN: &str = env!("CARGO_BIN_EXE_punctual");
const SHIPPED_CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/punctual.toml");

/// RFC 8914 §4.19.
const EDE_PROHIBITED: u16 = 18;

fn prefixes(list: &[&str]) -> Option<Vec<Prefix>> {
    Some(
        list.iter()
            .map(|text| text.parse().unwrap_or_else(|error| panic!("{error}")))
            .collect(),
    )
}

/// punctual on `listen`:0, asking `upstream`, serving every 127.0.0.0/8 client.
fn config_on(listen: u8, upstream: SocketAddr) -> Config {
    let mut config = test_config(&[upstream]);
    config.listen.addresses = vec![SocketAddr::new(loopback(listen), 0)];
    config.listen.allow = prefixes(&["127.0.0.0/8"]);
    config
}

async fn ask_from(source: IpAddr, server: SocketAddr, name: &str) -> Result<Reply, ClientError> {
    query_udp_from(source, server, name, RecordType::A, &edns(), CLIENT_LIMIT).await
}

async fn ask_tcp_from(source: IpAddr, server: SocketAddr, name: &str) -> Reply {
    let mut client = TcpClient::connect_from(source, server)
        .await
        .expect("TCP connect");
    client
        .query(name, RecordType::A, &edns(), CLIENT_LIMIT)
        .await
        .unwrap_or_else(|error| panic!("{name} over TCP from {source}: {error}"))
}

fn assert_refused(reply: &Reply, code: u16, text: &str) {
    assert_eq!(
        reply.message.response_code,
        ResponseCode::Refused,
        "{:?}",
        reply.message
    );
    assert!(reply.message.answers.is_empty(), "{:?}", reply.message);
    assert_eq!(ede(&reply.message), Some((code, text.to_owned())));
}

/// Polls `holds` every millisecond until it is true; panics after `limit`.
async fn wait_until(what: &str, limit: Duration, holds: impl Fn() -> bool) {
    let give_up = Instant::now() + limit;
    while !holds() {
        assert!(Instant::now() < give_up, "{what}: not within {limit:?}");
        sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_allowed_clients_are_answered_over_udp_and_tcp() {
    let upstream = FakeUpstream::start(loopback(170)).await;
    upstream.add_a("acl.test", "192.0.2.170", 300);
    let mut config = config_on(172, upstream.addr());
    config.listen.allow = prefixes(&["127.0.0.1/32"]);
    let server = start_with(config).await;
    let (allowed, outsider) = (loopback(1), loopback(2));

    let reply = ask_from(outsider, server.udp, "acl.test")
        .await
        .expect("a refusal over UDP");
    assert_refused(&reply, EDE_PROHIBITED, "client not allowed");
    let reply = ask_tcp_from(outsider, server.tcp, "acl.test").await;
    assert_refused(&reply, EDE_PROHIBITED, "client not allowed");
    assert_eq!(
        upstream.queries(),
        0,
        "nothing was looked up for the outsider"
    );

    let reply = ask_from(allowed, server.udp, "acl.test")
        .await
        .expect("an answer over UDP");
    assert_answer(&reply, "192.0.2.170");
    let reply = ask_tcp_from(allowed, server.tcp, "acl.test").await;
    assert_answer(&reply, "192.0.2.170");

    // A message from an outsider that is not a query gets nothing.
    let mut response = common::build_query("acl.test", RecordType::A, &edns());
    response[2] |= 0x80;
    let socket = tokio::net::UdpSocket::bind(SocketAddr::new(outsider, 0))
        .await
        .expect("bind");
    socket.send_to(&response, server.udp).await.expect("send");
    let mut buf = [0u8; 512];
    let nothing = tokio::time::timeout(AT_ONCE, socket.recv_from(&mut buf)).await;
    assert!(nothing.is_err(), "a reply to a non-query: {nothing:?}");

    let metrics = server.stats.metrics();
    assert_eq!(metrics.queries_prohibited.get(), 3);
    server.stop().await;
}

/// Writes `text` to a fresh file in the temp directory; removed on drop.
struct TempConfig(PathBuf);

impl TempConfig {
    fn new(name: &str, text: &str) -> TempConfig {
        let path = std::env::temp_dir().join(format!(
            "punctual-guards-{}-{name}.toml",
            std::process::id()
        ));
        std::fs::write(&path, text).unwrap_or_else(|error| panic!("{error}"));
        TempConfig(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("UTF-8 temp path")
    }
}

impl Drop for TempConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Waits for `child` to exit within `limit`; kills it and panics otherwise.
fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let give_up = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > give_up {
            let _ = child.kill();
            let _ = child.wait();
            panic!("punctual still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_non_loopback_listener_without_allow_stops_check_and_run_with_64() {
    let file = TempConfig::new(
        "open",
        "[listen]\naddresses = [\"0.0.0.0:53\"]\n[upstream]\nservers = [\"127.0.0.173:5300\"]\n",
    );
    let check = Command::new(BIN)
        .args(["check", "--config", file.path()])
        .output()
        .expect("run check");
    assert_eq!(check.status.code(), Some(64), "{check:?}");
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(
        stderr.starts_with(&format!(
            "{}:2: listening on 0.0.0.0:53 needs an explicit [listen] allow list: without \
             one punctual would be an open resolver",
            file.path()
        )),
        "{stderr}"
    );

    // With an allow list the same file is fine.
    let allowed = TempConfig::new(
        "allowed",
        "[listen]\naddresses = [\"0.0.0.0:53\"]\nallow = [\"10.0.0.0/8\"]\n\
         [upstream]\nservers = [\"127.0.0.173:5300\"]\n",
    );
    let check = Command::new(BIN)
        .args(["check", "--config", allowed.path()])
        .output()
        .expect("run check");
    assert_eq!(check.status.code(), Some(0), "{check:?}");
    // The upstreams are named as the config names them.
    assert_eq!(
        String::from_utf8_lossy(&check.stdout),
        format!("{}: ok (upstreams: 127.0.0.173:5300)\n", allowed.path())
    );

    // The flag counts the same; `run` stops before binding anything.
    let mut run = Command::new(BIN)
        .args(["run", "--config", SHIPPED_CONFIG, "--listen", "0.0.0.0:0"])
        .args(["--upstream", "127.0.0.173:53"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn punctual");
    let status = wait_exit(&mut run, Duration::from_secs(10));
    let mut stderr = String::new();
    if let Some(mut pipe) = run.stderr.take() {
        std::io::Read::read_to_string(&mut pipe, &mut stderr).expect("stderr");
    }
    assert_eq!(status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains(
            "listening on 0.0.0.0:0 needs an explicit [listen] allow list: without one \
             punctual would be an open resolver"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("listening on udp://"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_rate_is_refused_or_ignored_and_others_are_not() {
    const BURST: usize = 5;
    let upstream = FakeUpstream::start(loopback(173)).await;
    upstream.add_a("rate.test", "192.0.2.173", 300);
    let limited = |listen: u8, action: RateLimitAction| {
        let mut config = config_on(listen, upstream.addr());
        // One token a second: the test's few milliseconds refill nothing.
        config.limits.client_qps = 1;
        config.limits.client_burst = BURST;
        config.limits.rate_limit_action = action;
        config.limits.rate_limit_loopback = true;
        config
    };
    let (busy, other) = (loopback(175), loopback(176));

    let refusing = start_with(limited(174, RateLimitAction::Refuse)).await;
    for i in 0..BURST {
        let reply = ask_from(busy, refusing.udp, "rate.test")
            .await
            .unwrap_or_else(|error| panic!("query {i}: {error}"));
        assert_answer(&reply, "192.0.2.173");
    }
    for _ in 0..3 {
        let reply = ask_from(busy, refusing.udp, "rate.test")
            .await
            .expect("a refusal");
        assert_refused(&reply, EDE_OTHER, "rate limited");
    }
    // Over TCP the same bucket applies.
    let reply = ask_tcp_from(busy, refusing.tcp, "rate.test").await;
    assert_refused(&reply, EDE_OTHER, "rate limited");
    let reply = ask_from(other, refusing.udp, "rate.test")
        .await
        .expect("the other client's answer");
    assert_answer(&reply, "192.0.2.173");
    assert_eq!(refusing.stats.metrics().rate_limited.get(), 4);
    refusing.stop().await;

    let dropping = start_with(limited(178, RateLimitAction::Drop)).await;
    for _ in 0..BURST {
        let reply = ask_from(busy, dropping.udp, "rate.test")
            .await
            .expect("an answer");
        assert_answer(&reply, "192.0.2.173");
    }
    let ignored = query_udp_from(
        busy,
        dropping.udp,
        "rate.test",
        RecordType::A,
        &edns(),
        AT_ONCE,
    )
    .await;
    assert!(matches!(ignored, Err(ClientError::Timeout)), "{ignored:?}");
    let reply = ask_from(other, dropping.udp, "rate.test")
        .await
        .expect("the other client's answer");
    assert_answer(&reply, "192.0.2.173");
    assert_eq!(dropping.stats.metrics().rate_limited.get(), 1);
    dropping.stop().await;
}

/// Makes sure this process may hold `needed` open files.
fn allow_open_files(needed: u64) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    if soft < needed {
        assert!(hard >= needed, "RLIMIT_NOFILE hard limit {hard} < {needed}");
        setrlimit(Resource::RLIMIT_NOFILE, needed, hard).expect("setrlimit");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_tcp_connections_are_capped_and_cut_off_while_good_clients_are_answered() {
    const GLOBAL: usize = 512;
    const PER_CLIENT: usize = 64;
    /// From one address: PER_CLIENT accepted, the rest refused per client.
    const FROM_ONE: usize = PER_CLIENT + 6;
    /// From each of 127.0.0.180–189 (600 flood connections in all): below the
    /// per-client cap, so only the global cap can refuse them.
    const FROM_EACH: usize = 53;
    const READ_TIMEOUT: Duration = Duration::from_millis(300);
    // Both ends of every connection live in this process.
    allow_open_files(4096);

    let upstream = FakeUpstream::start(loopback(179)).await;
    upstream.add_a("flood.test", "192.0.2.179", 300);
    let mut config = config_on(190, upstream.addr());
    config.limits.tcp_max_connections = GLOBAL;
    config.limits.tcp_max_connections_per_client = PER_CLIENT;
    config.limits.tcp_read_timeout = READ_TIMEOUT;
    let server = start_with(config).await;
    let metrics = server.stats.metrics();
    let (good_udp, good_tcp) = (loopback(192), loopback(193));
    // Cached before the flood, so answers wait for no upstream.
    assert_answer(
        &ask_from(good_udp, server.udp, "flood.test")
            .await
            .expect("warm-up"),
        "192.0.2.179",
    );

    // A well-behaved client's connection, open before the flood.
    let mut good = TcpClient::connect_from(good_tcp, server.tcp)
        .await
        .expect("good TCP connection");
    wait_until("good connection accepted", CLIENT_LIMIT, || {
        metrics.tcp_connections_accepted.get() == 1
    })
    .await;

    let mut flood = Vec::new();
    for _ in 0..FROM_ONE {
        flood.push(
            TcpClient::connect_from(loopback(191), server.tcp)
                .await
                .expect("connect"),
        );
    }
    wait_until("per-client cap", CLIENT_LIMIT, || {
        metrics.tcp_client_connections_refused.get() == (FROM_ONE - PER_CLIENT) as u64
    })
    .await;
    for n in 180..=189 {
        for _ in 0..FROM_EACH {
            flood.push(
                TcpClient::connect_from(loopback(n), server.tcp)
                    .await
                    .expect("connect"),
            );
        }
    }
    let total = 1 + FROM_ONE + 10 * FROM_EACH;
    let over_global = total - (FROM_ONE - PER_CLIENT) - GLOBAL;
    wait_until("global cap", CLIENT_LIMIT, || {
        metrics.tcp_connections_refused.get() == over_global as u64
    })
    .await;
    assert_eq!(metrics.tcp_connections_accepted.get(), GLOBAL as u64);
    assert_eq!(
        metrics.tcp_client_connections_refused.get(),
        (FROM_ONE - PER_CLIENT) as u64
    );

    // The refused connections are closed already; the others each send one byte
    // of a message and stall.
    let mut open = Vec::new();
    let mut closed = 0;
    for mut client in flood {
        match client.recv(Duration::from_millis(1)).await {
            Err(ClientError::Timeout) => open.push(client),
            Err(ClientError::Closed | ClientError::Io(_)) => closed += 1,
            other => panic!("unexpected: {other:?}"),
        }
    }
    assert_eq!(closed, total - GLOBAL);
    assert_eq!(open.len(), GLOBAL - 1);
    for client in &mut open {
        client.send_unframed(&[0]).await.expect("one byte");
    }
    let stalled = Instant::now();

    // Meanwhile the well-behaved clients are answered at once.
    let reply = ask_from(good_udp, server.udp, "flood.test")
        .await
        .expect("UDP answer during the flood");
    assert_answer(&reply, "192.0.2.179");
    assert!(reply.elapsed < AT_ONCE, "UDP took {:?}", reply.elapsed);
    let reply = good
        .query("flood.test", RecordType::A, &edns(), CLIENT_LIMIT)
        .await
        .expect("TCP answer during the flood");
    assert_answer(&reply, "192.0.2.179");
    assert!(reply.elapsed < AT_ONCE, "TCP took {:?}", reply.elapsed);

    // The read timeout closes every stalled connection, not before it ends.
    for client in &mut open {
        match client.recv(CLIENT_LIMIT).await {
            Err(ClientError::Closed | ClientError::Io(_)) => {}
            other => panic!("a stalled connection got {other:?}"),
        }
    }
    let cut_off = stalled.elapsed();
    assert!(
        cut_off >= READ_TIMEOUT - Duration::from_millis(20),
        "closed after {cut_off:?}"
    );
    assert_eq!(metrics.tcp_read_timeouts.get(), (GLOBAL - 1) as u64);

    // With the stalled connections gone, a new connection is served at once.
    let reply = ask_tcp_from(good_tcp, server.tcp, "flood.test").await;
    assert_answer(&reply, "192.0.2.179");
    assert!(reply.elapsed < AT_ONCE, "TCP took {:?}", reply.elapsed);
    drop(good);
    server.stop().await;
}

/// A query for `name` A whose OPT record carries an EDNS Padding option (RFC 7830)
/// that makes the whole message exactly `size` bytes.
fn padded_query(name: &str, size: usize) -> Vec<u8> {
    let mut query = common::build_query(name, RecordType::A, &QueryOpts::default());
    // ARCOUNT = 1: the OPT record.
    query[11] = 1;
    let padding = size - query.len() - 11 - 4;
    let rdlength = u16::try_from(4 + padding).expect("small");
    query.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0]);
    query.extend_from_slice(&rdlength.to_be_bytes());
    query.extend_from_slice(&[0, 12]);
    query.extend_from_slice(&u16::try_from(padding).expect("small").to_be_bytes());
    query.resize(size, 0);
    query
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_queries_are_dropped_or_cut_off() {
    let upstream = FakeUpstream::start(loopback(194)).await;
    upstream.add_a("size.test", "192.0.2.194", 300);
    let server = start_with(config_on(195, upstream.addr())).await;
    let metrics = server.stats.metrics();

    // At the limit (1232 bytes) a padded query is answered; one byte more is not.
    let replies = collect_udp(server.udp, &padded_query("size.test", 1232), AT_ONCE * 3).await;
    assert_eq!(replies.len(), 1, "{replies:?}");
    let replies = collect_udp(server.udp, &padded_query("size.test", 1233), AT_ONCE).await;
    assert!(replies.is_empty(), "{replies:?}");
    // Longer than a receive slot: dropped and counted as well.
    let replies = collect_udp(server.udp, &padded_query("size.test", 5000), AT_ONCE).await;
    assert!(replies.is_empty(), "{replies:?}");
    assert_eq!(metrics.udp_oversized.get(), 2);

    // Over TCP a length prefix above the limit closes the connection at once.
    let mut client = TcpClient::connect_from(loopback(1), server.tcp)
        .await
        .expect("connect");
    client
        .send_unframed(&1233u16.to_be_bytes())
        .await
        .expect("length prefix");
    match client.recv(CLIENT_LIMIT).await {
        Err(ClientError::Closed | ClientError::Io(_)) => {}
        other => panic!("connection not closed: {other:?}"),
    }
    assert_eq!(metrics.tcp_oversized.get(), 1);
    // A query at the limit is answered over TCP.
    let mut client = TcpClient::connect_from(loopback(1), server.tcp)
        .await
        .expect("connect");
    client
        .send(&padded_query("size.test", 1232))
        .await
        .expect("send");
    client.recv(CLIENT_LIMIT).await.expect("an answer");
    server.stop().await;
}

/// The uid fields of a `/proc/PID/status` or `/proc/PID/task/TID/status` file.
fn uids(status_path: &str) -> Vec<u32> {
    let status = std::fs::read_to_string(status_path)
        .unwrap_or_else(|error| panic!("{status_path}: {error}"));
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .unwrap_or_else(|| panic!("no Uid line in {status_path}"))
        .split_whitespace()
        .map(|field| field.parse().expect("a uid"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_started_as_root_drops_to_the_process_user_after_binding_port_53() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test must run as root: it checks that punctual binds port 53 as root and \
         then drops root (CI runs as root)"
    );
    let nobody = nix::unistd::User::from_name("nobody")
        .expect("user database")
        .expect("a user named nobody");
    let upstream = FakeUpstream::start(loopback(177)).await;
    upstream.add_a("drop.test", "192.0.2.177", 300);
    let listen: SocketAddr = "127.0.0.171:53".parse().expect("address");
    let file = TempConfig::new(
        "process",
        &format!(
            "[listen]\naddresses = [\"{listen}\"]\n[upstream]\nservers = [\"{}\"]\n\
             [limits]\ndeadline = \"500ms\"\nattempt_timeout = \"200ms\"\n\
             [process]\nuser = \"nobody\"\n[control]\naddress = \"\"\n",
            upstream.addr()
        ),
    );
    let mut punctual = Punctual::spawn(["run", "--config", file.path()]);
    punctual
        .wait_for("dropped privileges")
        .expect("a \"dropped privileges\" log line");
    let pid = punctual.pid();
    let status = format!("/proc/{pid}/status");
    assert_eq!(uids(&status), [nobody.uid.as_raw(); 4], "{status}");
    // Every thread changed, the runtime's workers included.
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("task list");
    for task in tasks {
        let path = task.expect("task").path().join("status");
        let path = path.to_str().expect("UTF-8");
        assert_eq!(uids(path), [nobody.uid.as_raw(); 4], "{path}");
    }

    let reply = query_udp_from(
        loopback(1),
        listen,
        "drop.test",
        RecordType::A,
        &edns(),
        CLIENT_LIMIT,
    )
    .await
    .expect("an answer on port 53 after the drop");
    assert_answer(&reply, "192.0.2.177");

    let exit = punctual.terminate(Duration::from_secs(5));
    assert!(exit.success(), "exit status {exit}");
}

/// A reload (SIGHUP) applies a new allow list and new rate limits at once,
/// to the sockets already serving; a config that does not validate changes
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_applies_the_allow_list_and_rate_limits() {
    let upstream = FakeUpstream::start(loopback(181)).await;
    upstream.add_a("reload.guard.test", "192.0.2.181", 300);
    let config = config_on(182, upstream.addr());
    let server = start_with(config.clone()).await;
    let (kept, dropped) = (loopback(183), loopback(184));
    for source in [kept, dropped] {
        let reply = ask_from(source, server.udp, "reload.guard.test")
            .await
            .expect("an answer");
        assert_answer(&reply, "192.0.2.181");
    }

    let mut narrower = config.clone();
    narrower.listen.allow = prefixes(&["127.0.0.183/32"]);
    server.reloader.reload(narrower.clone()).expect("reloads");
    let reply = ask_from(dropped, server.udp, "reload.guard.test")
        .await
        .expect("a refusal");
    assert_refused(&reply, EDE_PROHIBITED, "client not allowed");
    let reply = ask_from(kept, server.udp, "reload.guard.test")
        .await
        .expect("an answer");
    assert_answer(&reply, "192.0.2.181");

    // A broken config (a rate limit without room for any client) is refused,
    // and the narrower allow list stays in force.
    let mut broken = narrower.clone();
    broken.limits.rate_limit_clients = 0;
    assert!(server.reloader.reload(broken).is_err());
    let reply = ask_from(dropped, server.udp, "reload.guard.test")
        .await
        .expect("a refusal");
    assert_refused(&reply, EDE_PROHIBITED, "client not allowed");

    // Rate limits: one query of burst, no refill within the test.
    let mut limited = config.clone();
    limited.limits.client_qps = 1;
    limited.limits.client_burst = 1;
    limited.limits.rate_limit_loopback = true;
    server.reloader.reload(limited).expect("reloads");
    let reply = ask_from(dropped, server.udp, "reload.guard.test")
        .await
        .expect("the burst's one answer");
    assert_answer(&reply, "192.0.2.181");
    let reply = ask_from(dropped, server.udp, "reload.guard.test")
        .await
        .expect("a refusal");
    assert_refused(&reply, EDE_OTHER, "rate limited");
    server.stop().await;
}
