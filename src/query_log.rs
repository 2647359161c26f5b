//! The query log (`[query_log]`, off by default): one JSON line per query, with
//! `time` (when the response was handed to the socket, RFC 3339 UTC with
//! milliseconds), `client` (ip:port), `transport` (`udp`/`tcp`), `name`
//! (presentation form) and `type` (mnemonic, or `TYPEnnn` per RFC 3597), `rcode`
//! (`NOERROR`, `SERVFAIL`, …; `null` when nothing was sent), `ede` (the
//! Extended DNS Error INFO-CODE sent, or `null`), `source` (see
//! [`Source::name`]) and `latency_ms` (arrival to hand-off, in milliseconds).
//!
//! The query path only locates the question, copies its name and pushes a small
//! struct into a bounded queue with `try_send`: it never waits for the disk.
//! When the queue is full the line is lost and `query_log_dropped` counts it.
//! A writer thread formats the lines into a buffered file and flushes whenever
//! the queue runs dry and at least every second; [`QueryLogWriter::close`]
//! flushes the rest at shutdown. The file is opened (append, created 0640) at
//! start, before privileges are dropped; it is not reopened on SIGHUP.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use hickory_proto::rr::{Name, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use serde::Serialize;
use thiserror::Error;
use tokio::time::Instant;

use crate::config::QueryLogConfig;
use crate::handler::{Source, Transport};
use crate::metrics::Metrics;
use crate::wire;

/// The writer flushes at least this often while lines arrive.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// How long shutdown waits for the writer to write and flush what is queued.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, Error)]
#[error("cannot open the query log {}: {source}", path.display())]
pub struct QueryLogError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// The query path's handle: cheap to clone, never blocks.
#[derive(Clone)]
pub struct QueryLog {
    sender: SyncSender<Message>,
    metrics: Arc<Metrics>,
}

/// The writer thread, to be closed at shutdown.
pub struct QueryLogWriter {
    sender: SyncSender<Message>,
    thread: JoinHandle<()>,
}

enum Message {
    Line(Line),
    /// Everything sent before has been written: flush and end.
    Close,
}

/// What the listener knows of a query when it arrives.
pub struct Asked {
    client: SocketAddr,
    transport: Transport,
    /// The wire name and QTYPE, when the message has a question.
    question: Option<(Box<[u8]>, u16)>,
}

/// A query and what was done with it, waiting for its hand-off time.
pub struct Answered {
    asked: Asked,
    /// The RCODE and EDE sent; `None` when nothing was sent.
    outcome: Option<(u16, Option<u16>)>,
    source: Source,
}

/// One line, as queued: small, with the formatting left to the writer.
struct Line {
    answered: Answered,
    time: SystemTime,
    latency: Duration,
}

impl Asked {
    /// Locates the question of `query` (a message from `client`) and copies its name.
    pub fn new(query: &[u8], client: SocketAddr, transport: Transport) -> Asked {
        let question = wire::question_span(query).ok().and_then(|span| {
            let name = query.get(wire::HEADER_LEN..span.name_end)?;
            Some((Box::from(name), span.qtype))
        });
        Asked {
            client,
            transport,
            question,
        }
    }

    /// Adds the response sent (`None`: none was) and where it came from.
    pub fn answered(self, reply: Option<&[u8]>, source: Source) -> Answered {
        Answered {
            asked: self,
            outcome: reply.and_then(wire::response_outcome),
            source,
        }
    }
}

impl QueryLog {
    /// Opens the log file and starts the writer; `None` when the log is off.
    pub fn open(
        config: &QueryLogConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Option<(QueryLog, QueryLogWriter)>, QueryLogError> {
        let Some(path) = &config.path else {
            return Ok(None);
        };
        let error = |source| QueryLogError {
            path: path.clone(),
            source,
        };
        let file = open_file(path).map_err(error)?;
        let started = QueryLog::start(file, config.queue, metrics).map_err(error)?;
        tracing::info!(path = %path.display(), "query log");
        Ok(Some(started))
    }

    /// Starts a writer of lines into `out` behind a queue of `queue` lines.
    fn start(
        out: impl Write + Send + 'static,
        queue: usize,
        metrics: Arc<Metrics>,
    ) -> io::Result<(QueryLog, QueryLogWriter)> {
        let (sender, receiver) = sync_channel(queue);
        let thread = std::thread::Builder::new()
            .name("query-log".to_owned())
            .spawn(move || write_lines(&receiver, BufWriter::new(out)))?;
        let writer = QueryLogWriter {
            sender: sender.clone(),
            thread,
        };
        Ok((QueryLog { sender, metrics }, writer))
    }

    /// Queues the line for a query answered `latency` after its arrival; when
    /// the queue is full the line is dropped and counted.
    pub fn submit(&self, answered: Answered, latency: Duration) {
        let line = Line {
            answered,
            time: SystemTime::now(),
            latency,
        };
        match self.sender.try_send(Message::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.metrics.query_log_dropped.inc();
            }
        }
    }
}

impl QueryLogWriter {
    /// Writes and flushes what is queued, then ends the writer; gives up after
    /// [`CLOSE_GRACE`] (a stalled disk must not hold up shutdown).
    pub async fn close(self) {
        let closing = tokio::task::spawn_blocking(move || {
            // Blocks only while the queue is full, that is while the writer works.
            let _ = self.sender.send(Message::Close);
            let _ = self.thread.join();
        });
        if tokio::time::timeout(CLOSE_GRACE, closing).await.is_err() {
            tracing::warn!("query log not flushed within the shutdown grace period");
        }
    }
}

fn open_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
}

/// The writer thread's loop: writes each burst of queued lines, then flushes
/// (also every [`FLUSH_EVERY`] within a long burst); ends at
/// [`Message::Close`], or when every [`QueryLog`] is gone.
fn write_lines(receiver: &Receiver<Message>, mut out: BufWriter<impl Write>) {
    let mut failing = false;
    let mut report = |result: io::Result<()>| match result {
        Ok(()) => failing = false,
        Err(error) if !failing => {
            failing = true;
            tracing::warn!(%error, "cannot write the query log");
        }
        Err(_) => {}
    };
    loop {
        let mut next = match receiver.recv_timeout(FLUSH_EVERY) {
            Ok(message) => Some(message),
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let mut flushed = Instant::now();
        let mut closing = false;
        while let Some(message) = next {
            match message {
                Message::Line(line) => report(write_line(&mut out, &line)),
                Message::Close => {
                    closing = true;
                    break;
                }
            }
            if flushed.elapsed() >= FLUSH_EVERY {
                report(out.flush());
                flushed = Instant::now();
            }
            next = receiver.try_recv().ok();
        }
        report(out.flush());
        if closing {
            return;
        }
    }
    report(out.flush());
}

/// The JSON form of one line.
#[derive(Serialize)]
struct Json {
    time: String,
    client: SocketAddr,
    transport: &'static str,
    name: Option<String>,
    #[serde(rename = "type")]
    qtype: Option<String>,
    rcode: Option<String>,
    ede: Option<u16>,
    source: &'static str,
    latency_ms: f64,
}

fn write_line(out: &mut impl Write, line: &Line) -> io::Result<()> {
    let answered = &line.answered;
    let asked = &answered.asked;
    let (name, qtype) = match &asked.question {
        Some((name, qtype)) => (Some(name_text(name)), Some(type_text(*qtype))),
        None => (None, None),
    };
    let json = Json {
        time: humantime::format_rfc3339_millis(line.time).to_string(),
        client: asked.client,
        transport: match asked.transport {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        },
        name,
        qtype,
        rcode: answered.outcome.map(|(rcode, _)| rcode_text(rcode)),
        ede: answered.outcome.and_then(|(_, ede)| ede),
        source: answered.source.name(),
        // Microsecond resolution is plenty for a log.
        latency_ms: line.latency.as_micros() as f64 / 1000.0,
    };
    serde_json::to_writer(&mut *out, &json)?;
    out.write_all(b"\n")
}

/// A wire name in presentation form ("example.com."), escaped as zone files
/// escape it; a name that does not decode is shown as "?".
fn name_text(wire_name: &[u8]) -> String {
    Name::read(&mut BinDecoder::new(wire_name))
        .map(|name| name.to_string())
        .unwrap_or_else(|_| "?".to_owned())
}

/// A type's mnemonic, or `TYPEnnn` for one hickory does not know (RFC 3597 §5).
fn type_text(code: u16) -> String {
    match RecordType::from(code) {
        RecordType::Unknown(_) => format!("TYPE{code}"),
        known => known.to_string(),
    }
}

/// An RCODE's mnemonic (RFC 1035 §4.1.1, RFC 2136, RFC 6891), or `RCODEnnn`.
fn rcode_text(rcode: u16) -> String {
    const NAMES: [&str; 11] = [
        "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN", "YXRRSET",
        "NXRRSET", "NOTAUTH", "NOTZONE",
    ];
    match (rcode, NAMES.get(usize::from(rcode))) {
        (_, Some(name)) => (*name).to_owned(),
        (16, None) => "BADVERS".to_owned(),
        (other, None) => format!("RCODE{other}"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// An `out` whose bytes the test can read.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Shared {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().expect("lock").clone()).expect("utf-8")
        }
    }

    /// An A query for example.test.
    const QUERY: &[u8] = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\
        \x07example\x04test\x00\x00\x01\x00\x01";

    fn answered(source: Source) -> Answered {
        let client = "127.0.0.1:5300".parse().expect("addr");
        let mut reply = QUERY.to_vec();
        reply[2] |= 0x80; // QR
        reply[3] = 0x83; // RA, NXDOMAIN
        Asked::new(QUERY, client, Transport::Udp).answered(Some(&reply), source)
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_blocking() {
        let metrics = Arc::new(Metrics::default());
        // A writer that takes nothing: the queue holds 4 lines, then is full.
        let (sender, receiver) = sync_channel(4);
        let log = QueryLog {
            sender,
            metrics: Arc::clone(&metrics),
        };
        for _ in 0..10 {
            log.submit(answered(Source::Cache), Duration::from_micros(50));
        }
        assert_eq!(metrics.query_log_dropped.get(), 6);
        assert_eq!(receiver.try_iter().count(), 4);
        // A writer that is gone: lines are dropped and counted too.
        drop(receiver);
        log.submit(answered(Source::Cache), Duration::ZERO);
        assert_eq!(metrics.query_log_dropped.get(), 7);
    }

    #[tokio::test]
    async fn one_json_line_per_query_with_every_field() {
        let metrics = Arc::new(Metrics::default());
        let out = Shared::default();
        let (log, writer) = QueryLog::start(out.clone(), 16, metrics).expect("start");
        log.submit(answered(Source::Upstream), Duration::from_micros(1_500));
        let client = "[::1]:53000".parse().expect("addr");
        let dropped =
            Asked::new(b"\x00\x01", client, Transport::Tcp).answered(None, Source::Dropped);
        log.submit(dropped, Duration::ZERO);
        writer.close().await;
        let written = out.text();
        let lines: Vec<serde_json::Value> = written
            .lines()
            .map(|line| serde_json::from_str(line).expect("JSON"))
            .collect();
        assert_eq!(lines.len(), 2, "{written}");
        let first = &lines[0];
        assert_eq!(first["client"], "127.0.0.1:5300");
        assert_eq!(first["transport"], "udp");
        assert_eq!(first["name"], "example.test.");
        assert_eq!(first["type"], "A");
        assert_eq!(first["rcode"], "NXDOMAIN");
        assert_eq!(first["ede"], serde_json::Value::Null);
        assert_eq!(first["source"], "upstream");
        assert_eq!(first["latency_ms"], 1.5);
        let time = first["time"].as_str().expect("time");
        humantime::parse_rfc3339(time).expect("RFC 3339");
        assert!(time.ends_with('Z') && time.len() == "2026-01-01T00:00:00.000Z".len());
        let second = &lines[1];
        assert_eq!(second["client"], "[::1]:53000");
        assert_eq!(second["transport"], "tcp");
        assert_eq!(second["name"], serde_json::Value::Null);
        assert_eq!(second["rcode"], serde_json::Value::Null);
        assert_eq!(second["source"], "dropped");
    }

    #[test]
    fn types_and_rcodes_have_their_mnemonics() {
        assert_eq!(type_text(28), "AAAA");
        assert_eq!(type_text(65_000), "TYPE65000");
        assert_eq!(rcode_text(2), "SERVFAIL");
        assert_eq!(rcode_text(16), "BADVERS");
        assert_eq!(rcode_text(23), "RCODE23");
        assert_eq!(name_text(b"\x01a\x03b.c\x00"), "a.b\\.c.");
    }
}
