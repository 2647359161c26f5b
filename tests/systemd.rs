//! punctual under a (pretend) systemd: the real binary is spawned with
//! NOTIFY_SOCKET naming a unix datagram socket the test reads (sd_notify(3)):
//! READY=1 once serving, STOPPING=1 on SIGTERM, a clean exit; WATCHDOG=1 at
//! half of WATCHDOG_USEC; and socket activation (sd_listen_fds(3)) with a UDP
//! and a TCP socket the test bound, passed as fds 3 and 4.
//! Addresses: 127.0.0.220–225.

mod common;

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::client::{QueryOpts, TcpClient, query_udp};
use common::loopback;
use common::process::Punctual;
use common::upstream::FakeUpstream;
use hickory_proto::rr::RecordType;
use tokio::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_punctual");

/// A scratch directory with a config file that reads no hosts file.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("punctual-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        std::fs::write(
            dir.join("punctual.toml"),
            "[local]\nhosts_files = []\n[control]\naddress = \"\"\n",
        )
        .expect("config");
        Scratch(dir)
    }

    fn config(&self) -> String {
        self.0.join("punctual.toml").display().to_string()
    }

    /// The service manager's end: a datagram socket NOTIFY_SOCKET will name.
    fn manager(&self) -> (UnixDatagram, PathBuf) {
        let path = self.0.join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind notify socket");
        (socket, path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn punctual(listen: &str, upstream: SocketAddr, config: &str) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(["run", "--config", config, "--listen", listen])
        .args(["--upstream", &upstream.to_string(), "--deadline", "500ms"])
        .env_remove("RUST_LOG")
        .env_remove("LISTEN_PID")
        .env_remove("LISTEN_FDS")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

/// Receives notifications until one contains `wanted` or `limit` passes.
fn wait_for(manager: &UnixDatagram, wanted: &str, limit: Duration) -> Vec<String> {
    let deadline = Instant::now() + limit;
    let mut seen = Vec::new();
    let mut buffer = [0u8; 4096];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        manager
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .expect("timeout");
        let Ok(len) = manager.recv(&mut buffer) else {
            break;
        };
        let message = String::from_utf8_lossy(&buffer[..len]).into_owned();
        let done = message.lines().any(|line| line == wanted);
        seen.push(message);
        if done {
            return seen;
        }
    }
    panic!("no {wanted} within {limit:?}; got {seen:?}");
}

/// Every notification waiting in the socket's queue.
fn drain(manager: &UnixDatagram) -> Vec<String> {
    manager.set_nonblocking(true).expect("nonblocking");
    let mut buffer = [0u8; 4096];
    let mut messages = Vec::new();
    while let Ok(len) = manager.recv(&mut buffer) {
        messages.push(String::from_utf8_lossy(&buffer[..len]).into_owned());
    }
    manager.set_nonblocking(false).expect("blocking");
    messages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifies_ready_then_stopping_and_exits_cleanly() {
    let upstream = FakeUpstream::start(loopback(221)).await;
    upstream.add_a("notify.test", "192.0.2.20", 60);
    let scratch = Scratch::new("notify");
    let (manager, path) = scratch.manager();
    let mut child = Punctual::spawn_command(
        punctual("127.0.0.220:0", upstream.addr(), &scratch.config()).env("NOTIFY_SOCKET", &path),
    );
    let addr = child.udp_addr();
    let ready = wait_for(&manager, "READY=1", Duration::from_secs(5));
    let status = ready.last().expect("READY message");
    assert!(
        status.contains(&format!("STATUS=serving on udp://{addr}")),
        "{status:?}"
    );
    // Ready means serving: a query is answered at once.
    let reply = query_udp(
        addr,
        "notify.test",
        RecordType::A,
        &QueryOpts::default(),
        Duration::from_secs(2),
    )
    .await
    .expect("an answer after READY=1");
    assert_eq!(reply.message.answers.len(), 1);
    let exit = child.terminate(Duration::from_secs(5));
    wait_for(&manager, "STOPPING=1", Duration::from_secs(1));
    assert!(exit.success(), "exit status {exit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_the_watchdog_at_half_its_interval() {
    let upstream = FakeUpstream::start(loopback(223)).await;
    let scratch = Scratch::new("watchdog");
    let (manager, path) = scratch.manager();
    let mut child = Punctual::spawn_command(
        punctual("127.0.0.222:0", upstream.addr(), &scratch.config())
            .env("NOTIFY_SOCKET", &path)
            .env("WATCHDOG_USEC", "200000"),
    );
    wait_for(&manager, "READY=1", Duration::from_secs(5));
    // Every 100 ms: at least 2 (3 or 4 expected) within 500 ms, even on a busy machine.
    let start = Instant::now();
    let mut pings = 0;
    while start.elapsed() < Duration::from_millis(500) {
        let left = Duration::from_millis(500).saturating_sub(start.elapsed());
        manager
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .expect("timeout");
        let mut buffer = [0u8; 512];
        match manager.recv(&mut buffer) {
            Ok(len) => pings += usize::from(&buffer[..len] == b"WATCHDOG=1"),
            Err(_) => break,
        }
    }
    assert!(pings >= 2, "{pings} WATCHDOG=1 within 500 ms");
    // WATCHDOG_PID naming another process: no pings.
    let exit = child.terminate(Duration::from_secs(5));
    assert!(exit.success(), "exit status {exit}");
    let first_run = drain(&manager);
    assert!(
        first_run.iter().any(|m| m.starts_with("STOPPING=1")),
        "{first_run:?}"
    );
    let mut other = Punctual::spawn_command(
        punctual("127.0.0.222:0", upstream.addr(), &scratch.config())
            .env("NOTIFY_SOCKET", &path)
            .env("WATCHDOG_USEC", "200000")
            .env("WATCHDOG_PID", "1"),
    );
    let seen = wait_for(&manager, "READY=1", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(300));
    let later = drain(&manager);
    assert!(
        !later.iter().chain(&seen).any(|m| m == "WATCHDOG=1"),
        "{seen:?} {later:?}"
    );
    assert!(other.terminate(Duration::from_secs(5)).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_on_sockets_passed_by_socket_activation() {
    let upstream = FakeUpstream::start(loopback(225)).await;
    upstream.add_a("activated.test", "192.0.2.24", 60);
    let scratch = Scratch::new("activation");
    // What a socket unit would bind: UDP and TCP on one port.
    let udp = UdpSocket::bind((loopback(224), 0)).expect("bind udp");
    let addr = udp.local_addr().expect("addr");
    let tcp = TcpListener::bind(addr).expect("bind tcp");
    // Passed on as fds 3 and 4 by bash, which then becomes punctual (exec keeps
    // the pid, so LISTEN_PID=$$ names punctual). Our sockets are close-on-exec;
    // socket2 clears that on copies that live only until the spawn.
    let passed: Vec<socket2::Socket> = [
        socket2::SockRef::from(&udp).try_clone(),
        socket2::SockRef::from(&tcp).try_clone(),
    ]
    .into_iter()
    .map(|copy| {
        let copy = copy.expect("dup");
        copy.set_cloexec(false).expect("inheritable");
        copy
    })
    .collect();
    let fds: Vec<i32> = passed.iter().map(AsRawFd::as_raw_fd).collect();
    assert!(
        fds.iter().all(|fd| *fd > 4),
        "copies must not sit on 3 or 4: {fds:?}"
    );
    let script = format!(
        "exec 3<&{udp} 4<&{tcp} {udp}<&- {tcp}<&-; export LISTEN_PID=$$ LISTEN_FDS=2 \
         LISTEN_FDNAMES=dns-udp:dns-tcp; exec \"$0\" \"$@\"",
        udp = fds[0],
        tcp = fds[1],
    );
    // --listen names another port: with inherited sockets punctual binds none of
    // the configured addresses (checked below: no "listening on" line).
    let command = punctual("127.0.0.224:1", upstream.addr(), &scratch.config());
    let program = command.get_program().to_owned();
    let args: Vec<_> = command.get_args().map(ToOwned::to_owned).collect();
    // bash execs punctual: the child's pid is punctual's.
    let mut child = Punctual::spawn_command(
        Command::new("bash")
            .arg("-c")
            .arg(&script)
            .arg(program)
            .args(args),
    );
    drop(passed);
    let log = child.log_until("socket activation");
    assert!(
        log.iter()
            .any(|line| line.contains("inherited UDP socket") && line.contains("dns-udp")),
        "{log:#?}"
    );
    assert!(
        !log.iter().any(|line| line.contains("listening on")),
        "{log:#?}"
    );
    // Our copies are closed: only punctual holds the sockets now.
    drop((udp, tcp));
    let reply = query_udp(
        addr,
        "activated.test",
        RecordType::A,
        &QueryOpts::default(),
        Duration::from_secs(3),
    )
    .await
    .expect("an answer over the inherited UDP socket");
    assert_eq!(reply.message.answers.len(), 1);
    let mut client = TcpClient::connect(addr).await.expect("connect over TCP");
    let reply = client
        .query(
            "activated.test",
            RecordType::A,
            &QueryOpts::default(),
            Duration::from_secs(3),
        )
        .await
        .expect("an answer over the inherited TCP listener");
    assert_eq!(reply.message.answers.len(), 1);
    let exit = child.terminate(Duration::from_secs(5));
    assert!(exit.success(), "exit status {exit}");
}
