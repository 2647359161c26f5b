//! A small DNS client for the operator commands (`punctual query`, `punctual doctor`):
//! one question to one server over UDP or TCP, inside one deadline, the reply
//! accepted only when its ID and question match (anything else is ignored and the
//! wait goes on until the deadline).

pub mod report;

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{Instant, timeout_at};

use crate::wire::EDNS_PAYLOAD;

/// The most a UDP reply can be (RFC 6891 §6.2.3 caps payload sizes at 65535).
const UDP_BUFFER: usize = 65_535;

/// How a query travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// UDP, and TCP again when the reply is truncated (RFC 7766 §5).
    Udp,
    Tcp,
}

impl Transport {
    pub const fn name(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

/// Why no usable reply came back.
#[derive(Debug, Error)]
pub enum ClientError {
    #[error("no reply from {server} within {}", humantime::format_duration(*.timeout))]
    Timeout {
        server: SocketAddr,
        timeout: Duration,
    },
    #[error("cannot talk to {server}: {source}")]
    Io {
        server: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("{server} closed the TCP connection without a complete reply")]
    Closed { server: SocketAddr },
    #[error("the reply from {server} over TCP is not an answer to our query: {reason}")]
    Mismatch { server: SocketAddr, reason: String },
    #[error("cannot encode the query: {0}")]
    Encode(String),
}

/// A bad NAME or TYPE on the command line.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum QuestionError {
    #[error("invalid name {name:?}: {reason}")]
    Name { name: String, reason: String },
    #[error("unknown record type {0:?}; use a mnemonic such as A, AAAA, MX or TXT, or TYPEnnn")]
    Type(String),
}

/// A reply that answers our question.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub message: Message,
    /// From sending the (first) query to receiving this reply.
    pub elapsed: Duration,
    /// The transport the reply came over (TCP after a truncated UDP reply).
    pub transport: Transport,
}

/// `name` as a fully qualified DNS name ("example.com" and "example.com." alike).
pub fn parse_name(name: &str) -> Result<Name, QuestionError> {
    let error = |reason: String| QuestionError::Name {
        name: name.to_owned(),
        reason,
    };
    let fqdn = if name.ends_with('.') {
        name.to_owned()
    } else {
        format!("{name}.")
    };
    Name::from_ascii(&fqdn).map_err(|reason| error(reason.to_string()))
}

/// A record type mnemonic in any letter case ("aaaa"), or the generic `TYPEnnn`
/// of RFC 3597 §5.
pub fn parse_record_type(text: &str) -> Result<RecordType, QuestionError> {
    let upper = text.to_ascii_uppercase();
    if let Some(number) = upper.strip_prefix("TYPE") {
        if let Ok(code) = number.parse::<u16>() {
            return Ok(RecordType::from(code));
        }
    }
    upper
        .parse::<RecordType>()
        .map_err(|_| QuestionError::Type(text.to_owned()))
}

/// The address to send queries to for a listen address: a wildcard (`0.0.0.0`,
/// `::`) is not a destination, so it becomes the loopback of the same family.
pub fn destination(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// Asks `server` one question: RD=1, EDNS(0) with a 1232-byte payload, a random ID.
/// Over UDP a truncated reply is asked again over TCP, inside the same `timeout`.
pub async fn exchange(
    server: SocketAddr,
    name: &Name,
    rtype: RecordType,
    transport: Transport,
    timeout: Duration,
) -> Result<Exchange, ClientError> {
    let sent = Instant::now();
    let deadline = sent + timeout;
    let timed_out = || ClientError::Timeout { server, timeout };
    if transport == Transport::Udp {
        let message = timeout_at(deadline, over_udp(server, name, rtype))
            .await
            .map_err(|_| timed_out())??;
        if !message.metadata.truncation {
            return Ok(Exchange {
                message,
                elapsed: sent.elapsed(),
                transport,
            });
        }
    }
    let message = timeout_at(deadline, over_tcp(server, name, rtype))
        .await
        .map_err(|_| timed_out())??;
    Ok(Exchange {
        message,
        elapsed: sent.elapsed(),
        transport: Transport::Tcp,
    })
}

/// The query with a fresh random ID, and that ID.
fn encode_query(name: &Name, rtype: RecordType) -> Result<(u16, Vec<u8>), ClientError> {
    let id: u16 = rand::random();
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(name.clone(), rtype));
    let mut edns = Edns::new();
    edns.set_max_payload(EDNS_PAYLOAD);
    message.edns = Some(edns);
    let bytes = message
        .to_vec()
        .map_err(|error| ClientError::Encode(error.to_string()))?;
    Ok((id, bytes))
}

/// Whether `bytes` is a response to query `id` about `name`/`rtype` (RFC 5452 §9.1:
/// ID and question must match); `Err` says why not.
fn matching_reply(
    bytes: &[u8],
    id: u16,
    name: &Name,
    rtype: RecordType,
) -> Result<Message, String> {
    let message = Message::from_vec(bytes).map_err(|error| error.to_string())?;
    if message.metadata.message_type != MessageType::Response {
        return Err("QR=0, not a response".to_owned());
    }
    if message.metadata.id != id {
        return Err(format!("ID {} instead of {id}", message.metadata.id));
    }
    match message.queries.as_slice() {
        [query] if query.name() == name && query.query_type() == rtype => Ok(message),
        _ => Err("another question".to_owned()),
    }
}

/// Sends from a connected socket (the kernel drops datagrams from other sources)
/// and reads until a matching reply; the caller bounds the wait.
async fn over_udp(
    server: SocketAddr,
    name: &Name,
    rtype: RecordType,
) -> Result<Message, ClientError> {
    let io = |source| ClientError::Io { server, source };
    let (id, query) = encode_query(name, rtype)?;
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await.map_err(io)?;
    socket.connect(server).await.map_err(io)?;
    socket.send(&query).await.map_err(io)?;
    let mut buffer = vec![0; UDP_BUFFER];
    loop {
        let len = socket.recv(&mut buffer).await.map_err(io)?;
        let reply = buffer.get(..len).unwrap_or_default();
        match matching_reply(reply, id, name, rtype) {
            Ok(message) => return Ok(message),
            Err(reason) => tracing::debug!(%server, reason, "ignoring a UDP reply"),
        }
    }
}

/// One query on a fresh connection with RFC 1035 §4.2.2 length framing.
async fn over_tcp(
    server: SocketAddr,
    name: &Name,
    rtype: RecordType,
) -> Result<Message, ClientError> {
    let io = |source: io::Error| match source.kind() {
        io::ErrorKind::UnexpectedEof => ClientError::Closed { server },
        _ => ClientError::Io { server, source },
    };
    let (id, query) = encode_query(name, rtype)?;
    let len = u16::try_from(query.len())
        .map_err(|_| ClientError::Encode("query longer than 65535 bytes".to_owned()))?;
    let mut frame = Vec::with_capacity(2 + query.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&query);
    let mut stream = TcpStream::connect(server).await.map_err(io)?;
    stream.write_all(&frame).await.map_err(io)?;
    let reply_len = stream.read_u16().await.map_err(io)?;
    let mut reply = vec![0; usize::from(reply_len)];
    stream.read_exact(&mut reply).await.map_err(io)?;
    matching_reply(&reply, id, name, rtype)
        .map_err(|reason| ClientError::Mismatch { server, reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_types() {
        assert_eq!(parse_record_type("aaaa"), Ok(RecordType::AAAA));
        assert_eq!(parse_record_type("MX"), Ok(RecordType::MX));
        assert_eq!(parse_record_type("type65"), Ok(RecordType::HTTPS));
        assert!(parse_record_type("BOGUS").is_err());
        assert!(parse_record_type("TYPE70000").is_err());
    }

    #[test]
    fn names() {
        assert_eq!(parse_name("example.com"), parse_name("example.com."));
        assert!(parse_name(".").is_ok_and(|name| name.is_root()));
        assert!(parse_name("a..b").is_err());
    }

    #[test]
    fn wildcards_become_loopback() {
        let to = |text: &str| destination(text.parse().expect("address")).to_string();
        assert_eq!(to("0.0.0.0:53"), "127.0.0.1:53");
        assert_eq!(to("[::]:5353"), "[::1]:5353");
        assert_eq!(to("127.0.0.2:53"), "127.0.0.2:53");
    }
}
