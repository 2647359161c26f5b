//! The real binary: spawned with the shipped config on 127.0.0.33 port 0, its
//! bound port read from the startup log line, queried, then stopped with
//! SIGTERM; it must exit 0 within 2 s and free the port, and a query in flight
//! when SIGTERM comes still gets its SERVFAIL first. Also `check`, and the
//! log levels (per-query events only at debug/trace).

mod common;

use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use common::client::{QueryOpts, ede, query_udp};
use common::process::{BIN, Punctual};
use common::queries::EDE_NO_REACHABLE_AUTHORITY;
use common::upstream::{Behavior, FakeUpstream};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use tokio::time::{Instant, sleep};
const SHIPPED_CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/punctual.toml");

/// Asks `addr` for `name` (one answer expected), then SIGTERMs the binary,
/// which must exit 0 within 2 s.
async fn answer_then_exit(punctual: &mut Punctual, addr: SocketAddr, name: &str, opts: &QueryOpts) {
    let reply = query_udp(addr, name, RecordType::A, opts, Duration::from_secs(2))
        .await
        .expect("an answer");
    assert_eq!(reply.message.answers.len(), 1);
    let status = punctual.terminate(Duration::from_secs(2));
    assert!(status.success(), "exit status {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_serves_and_exits_cleanly_on_sigterm() {
    let upstream = FakeUpstream::start("127.0.0.34".parse::<IpAddr>().expect("ip")).await;
    upstream.add_a("bin.test", "192.0.2.7", 60);
    let upstream = upstream.addr().to_string();
    let mut punctual = Punctual::spawn([
        "run",
        "--config",
        SHIPPED_CONFIG,
        "--listen",
        "127.0.0.33:0",
        // Not the shipped 127.0.0.1:9153: other tests may run a server too.
        "--control",
        "off",
        "--upstream",
        &upstream,
        "--deadline",
        "500ms",
    ]);
    let addr = punctual.udp_addr();
    assert_eq!(addr.ip().to_string(), "127.0.0.33");
    assert_ne!(addr.port(), 0);

    answer_then_exit(&mut punctual, addr, "bin.test", &QueryOpts::default()).await;
    // The port is free again.
    std::net::UdpSocket::bind(addr).expect("port released");
}

/// SIGTERM drains (src/lib.rs `run`): a client whose lookup is still waiting
/// on a hung upstream is answered at its deadline, SERVFAIL with EDE 22
/// (RFC 8914 §4.23), before the process exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_answers_the_query_in_flight_at_sigterm_then_exits_0() {
    let upstream = FakeUpstream::start("127.0.0.38".parse::<IpAddr>().expect("ip")).await;
    upstream.set_behavior(Behavior::Hang);
    let upstream_addr = upstream.addr().to_string();
    let mut punctual = Punctual::spawn([
        "run",
        "--config",
        SHIPPED_CONFIG,
        "--listen",
        "127.0.0.37:0",
        "--control",
        "off",
        "--upstream",
        &upstream_addr,
        "--deadline",
        "300ms",
    ]);
    let addr = punctual.udp_addr();

    let sent = Instant::now();
    let client = tokio::spawn(async move {
        let opts = QueryOpts::default().with_edns(1232);
        query_udp(
            addr,
            "inflight.bin.test",
            RecordType::A,
            &opts,
            Duration::from_secs(2),
        )
        .await
    });
    // In flight: punctual has asked the upstream, which never answers.
    let give_up = Instant::now() + Duration::from_secs(2);
    while upstream.queries() == 0 {
        assert!(Instant::now() < give_up, "the query never reached upstream");
        sleep(Duration::from_millis(1)).await;
    }
    let signalled = sent.elapsed();
    // terminate() polls with blocking sleeps: off the runtime the client uses.
    let status = tokio::task::spawn_blocking(move || punctual.terminate(Duration::from_secs(2)))
        .await
        .expect("terminate");
    assert!(status.success(), "exit status {status}");

    let reply = client
        .await
        .expect("client task")
        .expect("a reply to the query in flight at SIGTERM");
    assert!(
        reply.elapsed > signalled,
        "answered after {:?}, before SIGTERM at {signalled:?}",
        reply.elapsed
    );
    assert_eq!(reply.message.response_code, ResponseCode::ServFail);
    let (code, _) = ede(&reply.message).expect("an EDE to an EDNS client");
    assert_eq!(code, EDE_NO_REACHABLE_AUTHORITY);
    std::net::UdpSocket::bind(addr).expect("port released");
}

#[test]
fn check_accepts_the_shipped_config_and_rejects_a_bad_one_with_64() {
    let ok = Command::new(BIN)
        .args(["check", "--config", SHIPPED_CONFIG])
        .output()
        .expect("run check");
    // The shipped config reads /etc/resolv.conf for upstreams; on a machine where
    // that names only punctual itself check rightly fails, so accept 0 or 64
    // with the reason, but never a crash.
    assert!(matches!(ok.status.code(), Some(0) | Some(64)), "{ok:?}");

    let path = std::env::temp_dir().join(format!("punctual-bad-{}.toml", std::process::id()));
    std::fs::write(&path, "[limits]\ndeadline = \"2s\"\nbogus = 1\n").expect("write");
    let bad = Command::new(BIN)
        .args(["check", "--config", path.to_str().expect("utf-8 path")])
        .output()
        .expect("run check");
    let _ = std::fs::remove_file(&path);
    assert_eq!(bad.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.starts_with(&format!("{}:3:", path.display())),
        "{stderr}"
    );

    let usage = Command::new(BIN)
        .args(["run", "--no-such-flag"])
        .output()
        .expect("run");
    assert_eq!(usage.status.code(), Some(64));
}

/// Runs the binary with `level` (`--log-level`) and `rust_log` (RUST_LOG, or
/// unset), asks one query with ID 0x1234, stops it, and returns its whole log.
async fn log_of_one_query(level: &str, rust_log: Option<&str>) -> Vec<String> {
    let upstream = FakeUpstream::start("127.0.0.52".parse::<IpAddr>().expect("ip")).await;
    upstream.add_a("log.test", "192.0.2.9", 60);
    let upstream = upstream.addr().to_string();
    let mut command = Command::new(BIN);
    command.args([
        "run",
        "--config",
        SHIPPED_CONFIG,
        "--listen",
        "127.0.0.51:0",
        "--control",
        "off",
        "--upstream",
        &upstream,
        "--log-level",
        level,
    ]);
    let mut punctual = match rust_log {
        Some(filter) => Punctual::spawn_command_keeping_env(command.env("RUST_LOG", filter)),
        None => Punctual::spawn_command(&mut command),
    };
    let addr = punctual.udp_addr();
    let opts = QueryOpts::default().with_id(0x1234);
    answer_then_exit(&mut punctual, addr, "log.test", &opts).await;
    // The process has ended: this reads the rest of its log and returns.
    punctual.log_until("no such marker")
}

/// Per-query events are logged only at debug/trace; `--log-level` selects the
/// level and RUST_LOG, when set, overrides it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_level_and_rust_log_select_the_per_query_events() {
    let per_query = |log: &[String]| log.iter().any(|line| line.contains("id=4660"));
    let log = log_of_one_query("trace", None).await;
    assert!(per_query(&log), "no per-query event at trace: {log:#?}");
    let log = log_of_one_query("info", None).await;
    assert!(!per_query(&log), "a per-query event at info: {log:#?}");
    assert!(
        log.iter().any(|line| line.contains("final counters")),
        "info lines are still logged at info: {log:#?}"
    );
    let log = log_of_one_query("warn", Some("punctual=trace")).await;
    assert!(
        per_query(&log),
        "RUST_LOG did not override --log-level: {log:#?}"
    );
}

/// `[process] threads` sets how many worker threads the runtime starts, and the
/// binary says so at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_threads_sets_the_runtime_workers() {
    for threads in [1, 3] {
        let path = std::env::temp_dir().join(format!(
            "punctual-threads-{}-{threads}.toml",
            std::process::id()
        ));
        std::fs::write(&path, format!("[process]\nthreads = {threads}\n")).expect("write");
        let mut punctual =
            Punctual::spawn_command(Command::new(BIN).env_remove("TOKIO_WORKER_THREADS").args([
                "run",
                "--config",
                path.to_str().expect("utf-8 path"),
                "--listen",
                "127.0.0.55:0",
                "--control",
                "off",
                "--upstream",
                "127.0.0.56",
            ]));
        let started = punctual.wait_for("async runtime started");
        let _ = std::fs::remove_file(&path);
        let started = started.expect("the runtime's start is logged");
        assert!(
            started.contains(&format!("workers={threads}")),
            "threads = {threads}: {started}"
        );
        // Serving (its signal handlers in place) before it is told to stop.
        punctual.udp_addr();
        let status = punctual.terminate(Duration::from_secs(2));
        assert!(status.success(), "exit status {status}");
    }
}
