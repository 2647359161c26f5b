//! The control endpoint: `/metrics` families move when their events happen,
//! `/healthz`, `/stats`, `POST /cache/flush` with its scopes (the next query
//! reaches the upstream again), the allow list, the bounds on connections (at
//! most 64 at once; headers within 5 s, a connection within 10 s, shown on a
//! paused clock), and the `stats`/`flush` commands of the binary against a
//! running server.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use ::punctual::config::Config;
use ::punctual::control::{CONNECTION_TIMEOUT, MAX_CONNECTIONS, request};
use common::punctual::{TEST_DEADLINE, TestServer, core_config, start_with};
use common::*;
use hickory_proto::op::ResponseCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BIN: &str = env!("CARGO_BIN_EXE_punctual");
const HTTP_LIMIT: Duration = Duration::from_secs(2);
/// How late a timeout may fire on a paused clock (only the work done while
/// the clock stands still counts).
const PAUSED_SLACK: Duration = Duration::from_millis(100);

fn with_control(mut config: Config) -> Config {
    config.control.address = Some("127.0.0.1:0".parse().expect("address"));
    config
}

async fn get(server: &TestServer, path: &str) -> (u16, String) {
    let control = server.control.expect("control endpoint on");
    request(control, "GET", path, HTTP_LIMIT)
        .await
        .unwrap_or_else(|error| panic!("GET {path}: {error}"))
}

/// The value of the sample `series` (name and labels exactly as exported).
fn value(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no sample {series} in\n{metrics}"))
}

async fn scrape(server: &TestServer) -> String {
    let (status, body) = get(server, "/metrics").await;
    assert_eq!(status, 200);
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_families_move_with_their_events() {
    let upstream = FakeUpstream::start(loopback(110)).await;
    upstream.add_a("hit.control.test", "192.0.2.110", 300);
    let mut config = with_control(core_config(&[upstream.addr()]));
    config.limits.max_inflight = 1;
    let server = start_with(config).await;
    let upstream_label = format!("upstream=\"{}\",zone=\".\"", upstream.addr());

    let before = scrape(&server).await;
    assert_eq!(value(&before, "punctual_cache_hits_total"), 0.0);
    for family in [
        "# TYPE punctual_queries_total counter",
        "# TYPE punctual_answer_duration_seconds histogram",
        "# TYPE punctual_cache_entries gauge",
        "# TYPE punctual_upstream_rtt_seconds histogram",
    ] {
        assert!(before.contains(family), "{family}");
    }

    // A miss, then a cache hit.
    assert_answer(&ask(server.udp, "hit.control.test").await, "192.0.2.110");
    assert_answer(&ask(server.udp, "hit.control.test").await, "192.0.2.110");
    let after_hit = scrape(&server).await;
    assert_eq!(value(&after_hit, "punctual_cache_hits_total"), 1.0);
    assert_eq!(value(&after_hit, "punctual_cache_misses_total"), 1.0);
    assert_eq!(value(&after_hit, "punctual_cache_entries"), 1.0);
    assert_eq!(
        value(&after_hit, "punctual_queries_total{transport=\"udp\"}"),
        2.0
    );
    assert_eq!(
        value(&after_hit, "punctual_responses_total{rcode=\"NOERROR\"}"),
        2.0
    );
    assert_eq!(
        value(&after_hit, "punctual_answer_duration_seconds_count"),
        2.0
    );
    assert_eq!(
        value(
            &after_hit,
            &format!("punctual_upstream_queries_total{{{upstream_label}}}")
        ),
        1.0
    );
    assert_eq!(
        value(
            &after_hit,
            &format!("punctual_upstream_rtt_seconds_count{{{upstream_label}}}")
        ),
        1.0
    );
    assert_eq!(
        value(
            &after_hit,
            &format!("punctual_upstream_up{{{upstream_label}}}")
        ),
        1.0
    );

    // The upstream hangs: a timeout, an abandoned waiter, and with max_inflight 1
    // a second question meanwhile is an overload answer.
    upstream.set_behavior(Behavior::Hang);
    let (hung, overloaded) = tokio::join!(ask(server.udp, "hang.control.test"), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        ask(server.udp, "other.control.test").await
    });
    assert_eq!(hung.message.response_code, ResponseCode::ServFail);
    assert_eq!(overloaded.message.response_code, ResponseCode::ServFail);
    wait_idle(&server, TEST_DEADLINE * 3).await;
    let after_hang = scrape(&server).await;
    assert_eq!(value(&after_hang, "punctual_abandoned_waiters_total"), 1.0);
    assert_eq!(value(&after_hang, "punctual_overload_answers_total"), 1.0);
    assert_eq!(
        value(&after_hang, "punctual_responses_total{rcode=\"SERVFAIL\"}"),
        2.0
    );
    assert_eq!(
        value(&after_hang, "punctual_ede_total{code=\"22\"}"),
        1.0,
        "no reachable authority"
    );
    assert_eq!(
        value(&after_hang, "punctual_ede_total{code=\"0\"}"),
        1.0,
        "overloaded"
    );
    assert!(
        value(
            &after_hang,
            &format!("punctual_upstream_timeouts_total{{{upstream_label}}}")
        ) >= 1.0
    );
    assert_eq!(value(&after_hang, "punctual_lookups_inflight"), 0.0);
    assert_eq!(value(&after_hang, "punctual_waiters"), 0.0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_scopes_empty_exactly_their_part_of_the_cache() {
    let upstream = FakeUpstream::start(loopback(111)).await;
    let names = [
        "www.corp.control.test",
        "a.b.corp.control.test",
        "www.other.control.test",
    ];
    for name in names {
        upstream.add_a(name, "192.0.2.111", 300);
    }
    let server = start_with(with_control(core_config(&[upstream.addr()]))).await;
    let control = server.control.expect("control on");
    for name in names {
        ask(server.udp, name).await;
    }
    assert_eq!(upstream.queries(), 3);

    let (status, body) = request(
        control,
        "POST",
        "/cache/flush?suffix=Corp.Control.Test",
        HTTP_LIMIT,
    )
    .await
    .expect("flush");
    assert_eq!(status, 200, "{body}");
    let flushed: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(flushed["flushed"], 2, "{body}");
    for name in names {
        ask(server.udp, name).await;
    }
    assert_eq!(upstream.queries_for(names[0]), 2, "flushed: asked again");
    assert_eq!(
        upstream.queries_for(names[1]),
        2,
        "below the zone: asked again"
    );
    assert_eq!(
        upstream.queries_for(names[2]),
        1,
        "outside the zone: still cached"
    );

    let (status, body) = request(
        control,
        "POST",
        "/cache/flush?name=www.other.control.test",
        HTTP_LIMIT,
    )
    .await
    .expect("flush one name");
    assert_eq!(
        (status, body.contains("\"flushed\":1")),
        (200, true),
        "{body}"
    );
    let (status, body) = request(control, "POST", "/cache/flush", HTTP_LIMIT)
        .await
        .expect("flush all");
    assert_eq!(
        (status, body.contains("\"flushed\":2")),
        (200, true),
        "{body}"
    );
    assert_eq!(server.stats.cache_entries(), 0);

    let (status, _) = request(control, "POST", "/cache/flush?name=bad%00name", HTTP_LIMIT)
        .await
        .expect("bad");
    assert_eq!(status, 400);
    let (status, _) = request(control, "POST", "/cache/flush?zone=x", HTTP_LIMIT)
        .await
        .expect("bad");
    assert_eq!(status, 400);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_stats_and_wrong_paths_or_methods() {
    let upstream = FakeUpstream::start(loopback(112)).await;
    let server = start_with(with_control(core_config(&[upstream.addr()]))).await;
    assert_eq!(get(&server, "/healthz").await, (200, "ok\n".to_owned()));
    let (status, body) = get(&server, "/stats").await;
    assert_eq!(status, 200);
    let stats: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(stats["cache"]["entries"], 0);
    assert_eq!(stats["upstreams"][0]["server"], upstream.addr().to_string());
    assert_eq!(stats["upstreams"][0]["up"], true);
    assert_eq!(get(&server, "/nowhere").await.0, 404);
    let control = server.control.expect("control on");
    assert_eq!(
        request(control, "POST", "/metrics", HTTP_LIMIT)
            .await
            .expect("405")
            .0,
        405
    );
    assert_eq!(
        request(control, "GET", "/cache/flush", HTTP_LIMIT)
            .await
            .expect("405")
            .0,
        405
    );
    server.stop().await;
}

/// A client outside `[control] allow` is closed without a reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_outside_the_allow_list_are_closed() {
    let upstream = FakeUpstream::start(loopback(113)).await;
    let mut config = with_control(core_config(&[upstream.addr()]));
    config.control.allow = Some(vec!["127.0.0.1/32".parse().expect("prefix")]);
    let server = start_with(config).await;
    let control = server.control.expect("control on");
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(loopback(114), 0))
        .expect("bind 127.0.0.114");
    let mut stream: TcpStream = socket.connect(control).await.expect("connect");
    let _ = stream
        .write_all(b"GET /stats HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let mut reply = Vec::new();
    let read = tokio::time::timeout(HTTP_LIMIT, stream.read_to_end(&mut reply)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?} {reply:?}");
    assert_eq!(
        get(&server, "/healthz").await.0,
        200,
        "127.0.0.1 is allowed"
    );
    server.stop().await;
}

/// The operator commands against a running server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_and_flush_commands_talk_to_the_endpoint() {
    let upstream = FakeUpstream::start(loopback(115)).await;
    upstream.add_a("cmd.control.test", "192.0.2.115", 300);
    let server = start_with(with_control(core_config(&[upstream.addr()]))).await;
    let control = server.control.expect("control on").to_string();
    ask(server.udp, "cmd.control.test").await;

    let stats = tokio::task::spawn_blocking({
        let control = control.clone();
        move || {
            Command::new(BIN)
                .args(["stats", "--control", &control])
                .output()
        }
    })
    .await
    .expect("join")
    .expect("run stats");
    assert!(stats.status.success(), "{stats:?}");
    let json: serde_json::Value = serde_json::from_slice(&stats.stdout).expect("stats prints JSON");
    assert_eq!(json["cache"]["entries"], 1);

    let flush = tokio::task::spawn_blocking({
        let control = control.clone();
        move || {
            Command::new(BIN)
                .args(["flush", "--suffix", "control.test", "--control", &control])
                .output()
        }
    })
    .await
    .expect("join")
    .expect("run flush");
    assert!(flush.status.success(), "{flush:?}");
    assert_eq!(server.stats.cache_entries(), 0);
    ask(server.udp, "cmd.control.test").await;
    assert_eq!(upstream.queries(), 2, "asked again after the flush");

    let unreachable = Command::new(BIN)
        .args(["stats", "--control", "127.0.0.1:1"])
        .output()
        .expect("run stats");
    assert_eq!(unreachable.status.code(), Some(1), "{unreachable:?}");
    server.stop().await;
}

/// The edge of `MAX_CONNECTIONS`: 64 connections that are served and hold
/// (each has sent half a request line, so hyper waits for the rest), then a
/// 65th is closed at once without a reply. The 64 were served all along (one
/// finishes its request and gets 200); once they close, a new request succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_connection_over_the_limit_is_closed_at_once() {
    /// Far below HEADER_TIMEOUT (5 s): a close seen within this is the limit's.
    const PROMPTLY: Duration = Duration::from_millis(500);
    let upstream = FakeUpstream::start(loopback(116)).await;
    let server = start_with(with_control(core_config(&[upstream.addr()]))).await;
    let control = server.control.expect("control on");

    let mut held = Vec::with_capacity(MAX_CONNECTIONS);
    for _ in 0..MAX_CONNECTIONS {
        let mut stream = TcpStream::connect(control).await.expect("connect");
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\n")
            .await
            .expect("half a request");
        held.push(stream);
    }
    // The listener accepts in arrival order, so the 64 took every permit
    // before this one is accepted.
    let mut over = TcpStream::connect(control).await.expect("connect");
    // Written whole: were it served, the reply would come at once.
    let _ = over
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let mut reply = [0u8; 256];
    let read = tokio::time::timeout(PROMPTLY, over.read(&mut reply)).await;
    let got = match &read {
        Ok(Ok(len)) => String::from_utf8_lossy(&reply[..*len]).into_owned(),
        _ => String::new(),
    };
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the 65th connection was not closed within {PROMPTLY:?}: {read:?} {got:?}"
    );

    // The held ones are served: the first finishes its request.
    let first = &mut held[0];
    first
        .write_all(b"Host: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("rest of the request");
    let mut response = Vec::new();
    tokio::time::timeout(HTTP_LIMIT, first.read_to_end(&mut response))
        .await
        .expect("a held connection is answered")
        .expect("read the response");
    assert!(
        response.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&response)
    );

    // Closed by the client, the held connections give their places back:
    // their tasks end when they read EOF, soon after, not at a timeout.
    drop(held);
    let give_up = tokio::time::Instant::now() + PROMPTLY;
    loop {
        match request(control, "GET", "/healthz", HTTP_LIMIT).await {
            Ok((200, body)) => {
                assert_eq!(body, "ok\n");
                break;
            }
            other => assert!(
                tokio::time::Instant::now() < give_up,
                "no place free {PROMPTLY:?} after closing the held connections: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.stop().await;
}

/// `HEADER_TIMEOUT` in src/control/mod.rs: a request's headers must arrive
/// within 5 s. On a paused clock (no real wait): a client that sends half a
/// request line is closed at 5 s, before `CONNECTION_TIMEOUT` (10 s).
#[tokio::test(start_paused = true)]
async fn control_connection_without_whole_headers_is_closed_at_the_header_timeout() {
    const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
    let upstream = FakeUpstream::start(loopback(117)).await;
    let server = start_with(with_control(core_config(&[upstream.addr()]))).await;
    let control = server.control.expect("control on");
    let mut stream = TcpStream::connect(control).await.expect("connect");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\n")
        .await
        .expect("half a request");
    let started = tokio::time::Instant::now();
    let mut reply = Vec::new();
    let read = stream.read_to_end(&mut reply).await;
    let closed_after = started.elapsed();
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "closed without a reply: {read:?} {:?}",
        String::from_utf8_lossy(&reply)
    );
    assert!(
        closed_after >= HEADER_TIMEOUT && closed_after < HEADER_TIMEOUT + PAUSED_SLACK,
        "closed after {closed_after:?}"
    );
    server.stop().await;
}

/// `CONNECTION_TIMEOUT` in src/control/mod.rs: one connection lasts 10 s at
/// most, however busy. On a paused clock: a keep-alive client asking every
/// 4 s (each request whole within `HEADER_TIMEOUT`) is answered at 0, 4 and
/// 8 s and closed at 10 s.
#[tokio::test(start_paused = true)]
async fn busy_control_connection_is_closed_at_the_connection_timeout() {
    const EVERY: Duration = Duration::from_secs(4);
    let upstream = FakeUpstream::start(loopback(118)).await;
    let server = start_with(with_control(core_config(&[upstream.addr()]))).await;
    let control = server.control.expect("control on");
    let mut stream = TcpStream::connect(control).await.expect("connect");
    let started = tokio::time::Instant::now();
    let mut answered = 0;
    let closed_after = loop {
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("request");
        let mut response = Vec::new();
        while !response.ends_with(b"\r\n\r\nok\n") {
            let mut chunk = [0u8; 512];
            let len = stream.read(&mut chunk).await.expect("response");
            assert!(len > 0, "closed mid-response after {:?}", started.elapsed());
            response.extend_from_slice(&chunk[..len]);
        }
        answered += 1;
        assert!(answered <= 3, "still open after {:?}", started.elapsed());
        let mut after = [0u8; 1];
        match tokio::time::timeout(EVERY, stream.read(&mut after)).await {
            Err(_) => continue,
            Ok(Ok(0) | Err(_)) => break started.elapsed(),
            Ok(Ok(_)) => panic!("unexpected bytes after a response"),
        }
    };
    assert_eq!(answered, 3, "answered at 0, 4 and 8 s");
    assert!(
        closed_after >= CONNECTION_TIMEOUT && closed_after < CONNECTION_TIMEOUT + PAUSED_SLACK,
        "closed after {closed_after:?}"
    );
    server.stop().await;
}
