//! `punctual doctor` in-process, against fixture resolv.conf files and loopback
//! servers only (127.0.0.210–219): a healthy setup, resolv.conf mistakes, a
//! punctual that does not answer, an upstream that does not answer. Findings are
//! asserted by check id and severity, and the exit status by `needs_attention`.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::loopback;
use common::punctual::{start_with, test_config};
use common::upstream::{Behavior, FakeUpstream};
use hickory_proto::rr::{Name, RecordType};
use punctual::config::{Config, UpstreamAddr};
use punctual::doctor::{self, GlibcSource, Inputs, Probe, Report, Severity};
use tokio::net::UdpSocket;

/// A directory of fixtures for one test, removed when dropped.
struct Fixtures(PathBuf);

impl Fixtures {
    fn new(test: &str) -> Fixtures {
        let dir =
            std::env::temp_dir().join(format!("punctual-doctor-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create fixture dir");
        Fixtures(dir)
    }

    fn resolv_conf(&self, text: &str) -> PathBuf {
        let path = self.0.join("resolv.conf");
        std::fs::write(&path, text).expect("write resolv.conf");
        path
    }
}

impl Drop for Fixtures {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Doctor's view of punctual: it listens on `listen`, asks `upstream`, default deadline.
fn doctor_config(listen: SocketAddr, upstream: SocketAddr) -> Config {
    let mut config = Config::default();
    config.listen.addresses = vec![listen];
    config.upstream.servers = vec![UpstreamAddr::udp(upstream)];
    config
}

/// Inputs that read nothing of the machine but /proc: glibc given, musl dir empty.
fn inputs(fixtures: &Fixtures, resolv_conf: &Path, config: Config) -> Inputs {
    Inputs {
        config,
        resolv_conf: resolv_conf.to_path_buf(),
        glibc: GlibcSource::Version("2.36".to_owned()),
        musl_dir: fixtures.0.clone(),
        proc_root: PathBuf::from("/proc"),
        probe: Probe {
            name: Name::root(),
            rtype: RecordType::NS,
            timeout: Duration::from_millis(500),
        },
    }
}

fn severities(report: &Report, check: &str) -> Vec<Severity> {
    report
        .of(check)
        .iter()
        .map(|finding| finding.severity)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_setup_is_all_ok() {
    let fixtures = Fixtures::new("healthy");
    let upstream = FakeUpstream::start(loopback(211)).await;
    // resolv.conf cannot name a port: punctual must be on port 53 to be "first".
    let listen: SocketAddr = "127.0.0.210:53".parse().expect("address");
    let mut config = test_config(&[upstream.addr()]);
    config.listen.addresses = vec![listen];
    let server = start_with(config).await;
    let resolv_conf =
        fixtures.resolv_conf("nameserver 127.0.0.210\noptions timeout:2 attempts:2\n");

    let report = doctor::diagnose(&inputs(
        &fixtures,
        &resolv_conf,
        doctor_config(listen, upstream.addr()),
    ))
    .await;

    assert!(!report.needs_attention(), "{}", report.to_text());
    assert_eq!(severities(&report, "glibc"), [Severity::Ok]);
    assert_eq!(severities(&report, "resolv.first"), [Severity::Ok]);
    assert_eq!(severities(&report, "resolv.worst-case"), [Severity::Ok]);
    assert_eq!(severities(&report, "answering"), [Severity::Ok]);
    assert_eq!(severities(&report, "upstream"), [Severity::Ok]);
    // Held by this test binary, not by a process named punctual.
    assert_eq!(severities(&report, "port53"), [Severity::Info]);
    assert!(report.of("musl").is_empty());
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).expect("JSON");
    assert_eq!(json[0]["check"], "glibc");
    assert_eq!(json[0]["severity"], "ok");
    server.stop().await;
}

#[test]
fn resolv_conf_mistakes_warn() {
    let fixtures = Fixtures::new("mistakes");
    let config = doctor_config(
        "127.0.0.212:53".parse().expect("address"),
        SocketAddr::new(loopback(213), 53),
    );
    let check = |text: &str| Report {
        findings: doctor::resolv::check(&fixtures.resolv_conf(text), &config),
    };

    let report = check(
        "nameserver 192.0.2.1\nnameserver 127.0.0.212\nnameserver 192.0.2.2\n\
         nameserver 192.0.2.3\noptions rotate timeout:30 attempts:5\n",
    );
    assert!(report.needs_attention());
    assert_eq!(severities(&report, "resolv.first"), [Severity::Warn]);
    assert_eq!(severities(&report, "resolv.maxns"), [Severity::Warn]);
    assert_eq!(severities(&report, "resolv.rotate"), [Severity::Warn]);
    let worst = report.of("resolv.worst-case");
    assert_eq!(worst[0].severity, Severity::Warn);
    assert!(worst[0].detail.contains("= 7m 30s"), "{}", worst[0].detail);

    // punctual first, but if it stops callers wait 150 s: far beyond a 2 s deadline.
    let report = check("nameserver 127.0.0.212\noptions timeout:30 attempts:5\n");
    assert_eq!(severities(&report, "resolv.first"), [Severity::Ok]);
    assert_eq!(severities(&report, "resolv.worst-case"), [Severity::Warn]);

    // ndots and use-vc are explained, not warned about.
    let report = check(
        "nameserver 127.0.0.212\nsearch a.example b.example\n\
         options ndots:5 use-vc timeout:1 attempts:2\n",
    );
    assert!(!report.needs_attention(), "{}", report.to_text());
    let ndots = report.of("resolv.ndots");
    assert_eq!(ndots[0].severity, Severity::Info);
    assert!(
        ndots[0].detail.contains("3 lookups, 6 queries"),
        "{}",
        ndots[0].detail
    );
    assert_eq!(severities(&report, "resolv.use-vc"), [Severity::Info]);

    let report = check("search example.com\n");
    assert_eq!(severities(&report, "resolv.first"), [Severity::Warn]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_punctual_is_an_error() {
    let fixtures = Fixtures::new("silent");
    let upstream = FakeUpstream::start(loopback(215)).await;
    // Bound, so the port looks taken, but it never answers.
    let silent = UdpSocket::bind(SocketAddr::new(loopback(214), 0))
        .await
        .expect("bind silent socket");
    let listen = silent.local_addr().expect("address");
    let mut config = doctor_config(listen, upstream.addr());
    config.limits.deadline = Duration::from_millis(300);
    let resolv_conf = fixtures.resolv_conf("nameserver 127.0.0.214\n");

    let report = doctor::diagnose(&inputs(&fixtures, &resolv_conf, config)).await;

    assert!(report.needs_attention());
    let answering = report.of("answering");
    assert_eq!(answering[0].severity, Severity::Error);
    assert_eq!(
        answering[0].title,
        format!("punctual is not answering on {listen}")
    );
    assert_eq!(severities(&report, "upstream"), [Severity::Ok]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_upstream_is_a_warning() {
    let fixtures = Fixtures::new("upstream");
    let upstream = FakeUpstream::start(loopback(216)).await;
    let server = start_with(test_config(&[upstream.addr()])).await;
    upstream.set_behavior(Behavior::Hang);
    let resolv_conf = fixtures.resolv_conf("nameserver 127.0.0.1\noptions timeout:2 attempts:2\n");

    let report = doctor::diagnose(&inputs(
        &fixtures,
        &resolv_conf,
        doctor_config(server.udp, upstream.addr()),
    ))
    .await;

    assert!(report.needs_attention());
    let upstreams = report.of("upstream");
    assert_eq!(upstreams[0].severity, Severity::Warn);
    assert!(upstreams[0].title.contains(&upstream.addr().to_string()));
    // punctual itself answers (SERVFAIL at its deadline): that is not its fault.
    assert_eq!(severities(&report, "answering"), [Severity::Ok]);
    server.stop().await;
}
