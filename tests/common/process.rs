//! The real `punctual` binary as a child process: started with its log on a
//! pipe read by a thread, so a test can wait for a log line (the bound
//! address, "config reloaded"…), then stopped with SIGTERM within a bound.
//! A child still running when the handle is dropped is killed, so a failing
//! test leaves no server behind.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use tokio::time::Instant;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_punctual");

/// How long a test waits for an expected log line.
pub const LOG_LIMIT: Duration = Duration::from_secs(10);

pub struct Punctual {
    pub child: Child,
    lines: mpsc::Receiver<String>,
}

impl Punctual {
    /// `punctual ARGS…` with RUST_LOG unset (the default info level logs the
    /// lines tests wait for) and stderr piped.
    pub fn spawn<I, S>(args: I) -> Punctual
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        Punctual::spawn_command(Command::new(BIN).args(args))
    }

    /// Starts `command` (a `Command::new(BIN)` a test configured further).
    pub fn spawn_command(command: &mut Command) -> Punctual {
        Punctual::spawn_command_keeping_env(command.env_remove("RUST_LOG"))
    }

    /// Starts `command` with the environment it was given, RUST_LOG included.
    pub fn spawn_command_keeping_env(command: &mut Command) -> Punctual {
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn punctual");
        let stderr = child.stderr.take().expect("piped stderr");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Punctual { child, lines }
    }

    /// The rest of the first log line from now on that contains `marker`, or
    /// `None` after [`LOG_LIMIT`] or when the process ends.
    pub fn wait_for(&self, marker: &str) -> Option<String> {
        let line = self.log_until(marker).pop()?;
        let at = line.find(marker)?;
        Some(line[at + marker.len()..].to_owned())
    }

    /// Every log line from now on up to the first that contains `marker`
    /// (the last one returned), or what came before [`LOG_LIMIT`] ran out.
    pub fn log_until(&self, marker: &str) -> Vec<String> {
        let deadline = Instant::now() + LOG_LIMIT;
        let mut log = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let Ok(line) = self.lines.recv_timeout(left) else {
                break;
            };
            let done = line.contains(marker);
            log.push(line);
            if done {
                return log;
            }
        }
        log.push(String::new());
        log
    }

    /// The UDP address from the `listening on udp://ADDR` line.
    pub fn udp_addr(&self) -> SocketAddr {
        self.wait_for("listening on udp://")
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .expect("punctual logs its UDP address")
    }

    pub fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// Sends `signal` (e.g. "-HUP") with kill(1).
    pub fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args([signal, &self.pid()])
            .status()
            .expect("kill");
        assert!(sent.success(), "kill {signal} failed");
    }

    /// SIGTERM, then the exit status within `limit` (killed and a panic after).
    pub fn terminate(&mut self, limit: Duration) -> ExitStatus {
        self.signal("-TERM");
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            if start.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("punctual did not exit within {limit:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Punctual {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
