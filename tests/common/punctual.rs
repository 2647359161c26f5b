//! Starting punctual in-process for a test: on 127.0.0.1 port 0, pointed at a
//! fake upstream, with short deadlines so the suite stays fast.

use std::net::SocketAddr;
use std::time::Duration;

use punctual::config::{Config, Strategy, UpstreamAddr};
use punctual::{Reloader, Server, Stats};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The deadline tests use unless they set their own.
pub const TEST_DEADLINE: Duration = Duration::from_millis(300);

pub struct TestServer {
    pub udp: SocketAddr,
    pub tcp: SocketAddr,
    /// The control endpoint, when the config turned it on.
    pub control: Option<SocketAddr>,
    /// What SIGHUP does, in-process.
    pub reloader: Reloader,
    pub stats: Stats,
    shutdown: CancellationToken,
    task: Option<JoinHandle<Result<(), punctual::ServerError>>>,
}

/// A config for tests: listen on 127.0.0.1:0, ask `upstreams`, 300 ms deadline.
pub fn test_config(upstreams: &[SocketAddr]) -> Config {
    let mut config = Config::default();
    config.listen.addresses = vec!["127.0.0.1:0".parse().expect("valid address")];
    config.upstream.servers = upstreams.iter().copied().map(UpstreamAddr::udp).collect();
    config.limits.deadline = TEST_DEADLINE;
    // Tests run in parallel: none may take the default port 9153. Tests of the
    // endpoint turn it on at 127.0.0.1:0.
    config.control.address = None;
    config.limits.attempt_timeout = Duration::from_millis(100);
    // A fixed retransmission schedule (attempt_timeout, doubling) so tests can
    // count upstream queries exactly; `fastest` (RTO from measured RTT, hedging)
    // has its own tests in tests/upstream_selection.rs.
    config.upstream.strategy = Strategy::Ordered;
    // Never the machine's /etc/hosts (the default): its names would be answered
    // locally and differ from machine to machine. tests/local_answers.rs sets
    // its own temporary hosts files.
    config.local.hosts_files = Vec::new();
    config
}

/// `test_config` with the failure cache off, for tests of the core rules (a
/// query waits for its own lookup until its deadline; a retry starts afresh)
/// that the failure cache would otherwise answer sooner.
pub fn core_config(upstreams: &[SocketAddr]) -> Config {
    let mut config = test_config(upstreams);
    config.cache.failure_ttl = Duration::ZERO;
    config
}

pub async fn start(upstream: SocketAddr) -> TestServer {
    start_with(test_config(&[upstream])).await
}

pub async fn start_with(config: Config) -> TestServer {
    let server = Server::bind(&config).expect("punctual binds");
    let udp = server.udp_addrs()[0];
    let tcp = server.tcp_addrs()[0];
    let stats = server.stats();
    let control = server.control_addr();
    let reloader = server.reloader();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(server.run(shutdown.clone()));
    TestServer {
        udp,
        tcp,
        control,
        reloader,
        stats,
        shutdown,
        task: Some(task),
    }
}

impl TestServer {
    /// Shuts down and waits for the server to finish.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await
                .expect("server task ends cleanly")
                .expect("server serves until stopped");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
