//! A small `dig` for integration tests: builds queries with exact control over ID,
//! letter case, EDNS, DO, CD and RD; sends them over UDP or TCP (one-shot, or a
//! persistent connection for pipelining); and reads replies, including the Extended
//! DNS Error option (RFC 8914). Every wait is bounded by the caller's timeout.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};
use tokio::time::{Instant, timeout, timeout_at};

/// EDNS option code of the Extended DNS Error (RFC 8914 §2).
pub const EDE_OPTION_CODE: u16 = 15;

/// Header bits and EDNS of a test query.
#[derive(Clone, Debug)]
pub struct QueryOpts {
    pub id: u16,
    /// Advertised UDP payload size; `None` sends no OPT record.
    pub edns: Option<u16>,
    /// DO bit (RFC 3225). It lives in the OPT record, so setting it without `edns`
    /// sends an OPT with payload 1232.
    pub dnssec_ok: bool,
    pub checking_disabled: bool,
    pub recursion_desired: bool,
}

impl Default for QueryOpts {
    /// A random ID, no EDNS, RD set.
    fn default() -> Self {
        QueryOpts {
            id: rand::random(),
            edns: None,
            dnssec_ok: false,
            checking_disabled: false,
            recursion_desired: true,
        }
    }
}

impl QueryOpts {
    pub fn with_id(mut self, id: u16) -> Self {
        self.id = id;
        self
    }

    pub fn with_edns(mut self, payload: u16) -> Self {
        self.edns = Some(payload);
        self
    }

    pub fn with_dnssec_ok(mut self) -> Self {
        self.dnssec_ok = true;
        self
    }

    pub fn with_checking_disabled(mut self) -> Self {
        self.checking_disabled = true;
        self
    }

    pub fn without_recursion(mut self) -> Self {
        self.recursion_desired = false;
        self
    }
}

/// A reply as received: parsed, raw, and how long it took from send to receipt.
#[derive(Clone, Debug)]
pub struct Reply {
    pub message: Message,
    pub bytes: Vec<u8>,
    pub elapsed: Duration,
}

#[derive(Debug)]
pub enum ClientError {
    Io(io::Error),
    /// Nothing (complete) arrived before the timeout.
    Timeout,
    /// The TCP peer closed the connection before a complete frame.
    Closed,
    /// The reply did not decode as a DNS message.
    Malformed(String),
    IdMismatch {
        expected: u16,
        got: u16,
    },
    /// A UDP reply came from an address other than the one queried.
    WrongSource {
        expected: SocketAddr,
        got: SocketAddr,
    },
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Io(e) => write!(f, "i/o error: {e}"),
            ClientError::Timeout => write!(f, "timed out"),
            ClientError::Closed => write!(f, "connection closed by peer"),
            ClientError::Malformed(e) => write!(f, "malformed reply: {e}"),
            ClientError::IdMismatch { expected, got } => {
                write!(f, "reply ID {got} does not match query ID {expected}")
            }
            ClientError::WrongSource { expected, got } => {
                write!(f, "reply from {got}, expected {expected}")
            }
        }
    }
}

impl std::error::Error for ClientError {}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> Self {
        ClientError::Io(e)
    }
}

/// Wire form of a query for `name` (sent with exactly the letter case given; a
/// trailing dot is optional). Panics on an invalid name: a mistake in the test.
pub fn build_query(name: &str, rtype: RecordType, opts: &QueryOpts) -> Vec<u8> {
    let fqdn = if name.ends_with('.') {
        name.to_owned()
    } else {
        format!("{name}.")
    };
    let name = Name::from_ascii(&fqdn).unwrap_or_else(|e| panic!("invalid name {fqdn:?}: {e}"));
    let mut message = Message::new(opts.id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = opts.recursion_desired;
    message.metadata.checking_disabled = opts.checking_disabled;
    message.add_query(Query::query(name, rtype));
    if opts.edns.is_some() || opts.dnssec_ok {
        let mut edns = Edns::new();
        edns.set_max_payload(opts.edns.unwrap_or(1232));
        edns.set_dnssec_ok(opts.dnssec_ok);
        message.edns = Some(edns);
    }
    message.to_vec().expect("a test query always encodes")
}

/// The address a client socket should bind to reach `server`: the loopback of the same
/// family when the server is on loopback (any 127.0.0.x gets 127.0.0.1), else the
/// unspecified address of that family.
pub fn local_bind_addr(server: SocketAddr) -> SocketAddr {
    let ip = match server.ip() {
        IpAddr::V4(v4) if v4.is_loopback() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(v6) if v6.is_loopback() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    SocketAddr::new(ip, 0)
}

fn parse_reply(bytes: Vec<u8>, expected_id: u16, sent: Instant) -> Result<Reply, ClientError> {
    let elapsed = sent.elapsed();
    let message = Message::from_vec(&bytes).map_err(|e| ClientError::Malformed(e.to_string()))?;
    if message.id != expected_id {
        return Err(ClientError::IdMismatch {
            expected: expected_id,
            got: message.id,
        });
    }
    Ok(Reply {
        message,
        bytes,
        elapsed,
    })
}

/// One query over UDP from a fresh socket. The first datagram received decides the
/// outcome: it must come from `server` and carry the query's ID.
pub async fn query_udp(
    server: SocketAddr,
    name: &str,
    rtype: RecordType,
    opts: &QueryOpts,
    limit: Duration,
) -> Result<Reply, ClientError> {
    let query = build_query(name, rtype, opts);
    let socket = UdpSocket::bind(local_bind_addr(server)).await?;
    let sent = Instant::now();
    let deadline = sent + limit;
    socket.send_to(&query, server).await?;
    let mut buf = vec![0u8; 65535];
    let (len, from) = timeout_at(deadline, socket.recv_from(&mut buf))
        .await
        .map_err(|_| ClientError::Timeout)??;
    if from != server {
        return Err(ClientError::WrongSource {
            expected: server,
            got: from,
        });
    }
    buf.truncate(len);
    parse_reply(buf, opts.id, sent)
}

/// Like [`query_udp`], from a socket bound to `source` (port 0): for servers that
/// tell clients apart by address, such as 127.0.0.2 against 127.0.0.1.
pub async fn query_udp_from(
    source: IpAddr,
    server: SocketAddr,
    name: &str,
    rtype: RecordType,
    opts: &QueryOpts,
    limit: Duration,
) -> Result<Reply, ClientError> {
    let query = build_query(name, rtype, opts);
    let socket = UdpSocket::bind(SocketAddr::new(source, 0)).await?;
    let sent = Instant::now();
    socket.send_to(&query, server).await?;
    let mut buf = vec![0u8; 65535];
    let (len, from) = timeout_at(sent + limit, socket.recv_from(&mut buf))
        .await
        .map_err(|_| ClientError::Timeout)??;
    if from != server {
        return Err(ClientError::WrongSource {
            expected: server,
            got: from,
        });
    }
    buf.truncate(len);
    parse_reply(buf, opts.id, sent)
}

/// One query over a fresh TCP connection (RFC 7766 length framing).
pub async fn query_tcp(
    server: SocketAddr,
    name: &str,
    rtype: RecordType,
    opts: &QueryOpts,
    limit: Duration,
) -> Result<Reply, ClientError> {
    let deadline = Instant::now() + limit;
    let mut client = timeout_at(deadline, TcpClient::connect(server))
        .await
        .map_err(|_| ClientError::Timeout)??;
    let remaining = deadline.saturating_duration_since(Instant::now());
    client.query(name, rtype, opts, remaining).await
}

/// Sends `bytes` as one datagram from a fresh socket and returns the first datagram
/// that comes back from `server` within `limit`, or `None`.
pub async fn send_raw_udp(server: SocketAddr, bytes: &[u8], limit: Duration) -> Option<Vec<u8>> {
    let socket = UdpSocket::bind(local_bind_addr(server)).await.ok()?;
    let deadline = Instant::now() + limit;
    socket.send_to(bytes, server).await.ok()?;
    let mut buf = vec![0u8; 65535];
    loop {
        let (len, from) = timeout_at(deadline, socket.recv_from(&mut buf))
            .await
            .ok()?
            .ok()?;
        if from == server {
            return Some(buf[..len].to_vec());
        }
    }
}

/// A datagram seen by [`collect_udp`].
#[derive(Clone, Debug)]
pub struct Datagram {
    pub from: SocketAddr,
    pub bytes: Vec<u8>,
    /// Time from sending the query to receiving this datagram.
    pub after: Duration,
}

/// Sends `bytes` from a fresh socket and collects every datagram arriving, from any
/// source, during `window`. For checking that nothing (or exactly one thing) came back.
pub async fn collect_udp(server: SocketAddr, bytes: &[u8], window: Duration) -> Vec<Datagram> {
    let mut seen = Vec::new();
    let Ok(socket) = UdpSocket::bind(local_bind_addr(server)).await else {
        return seen;
    };
    let sent = Instant::now();
    let deadline = sent + window;
    if socket.send_to(bytes, server).await.is_err() {
        return seen;
    }
    let mut buf = vec![0u8; 65535];
    while let Ok(Ok((len, from))) = timeout_at(deadline, socket.recv_from(&mut buf)).await {
        seen.push(Datagram {
            from,
            bytes: buf[..len].to_vec(),
            after: sent.elapsed(),
        });
    }
    seen
}

/// A persistent TCP connection speaking RFC 7766 framing, for pipelining several
/// queries and observing the order of the answers. Reads are buffered, so a `recv`
/// that times out loses nothing and the next `recv` resumes the same frame.
pub struct TcpClient {
    stream: TcpStream,
    buf: BytesMut,
}

impl TcpClient {
    pub async fn connect(addr: SocketAddr) -> io::Result<TcpClient> {
        TcpClient::from_stream(TcpStream::connect(addr).await?)
    }

    /// Connects from `source` (port 0), for servers that tell clients apart by address.
    pub async fn connect_from(source: IpAddr, addr: SocketAddr) -> io::Result<TcpClient> {
        let socket = match source {
            IpAddr::V4(_) => TcpSocket::new_v4()?,
            IpAddr::V6(_) => TcpSocket::new_v6()?,
        };
        socket.bind(SocketAddr::new(source, 0))?;
        TcpClient::from_stream(socket.connect(addr).await?)
    }

    fn from_stream(stream: TcpStream) -> io::Result<TcpClient> {
        stream.set_nodelay(true)?;
        Ok(TcpClient {
            stream,
            buf: BytesMut::with_capacity(4096),
        })
    }

    /// Sends one DNS message, prefixed with its 2-byte length.
    pub async fn send(&mut self, message: &[u8]) -> io::Result<()> {
        let len = u16::try_from(message.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "message over 65535"))?;
        let mut frame = Vec::with_capacity(2 + message.len());
        frame.extend_from_slice(&len.to_be_bytes());
        frame.extend_from_slice(message);
        self.stream.write_all(&frame).await
    }

    /// Writes bytes as they are, without framing (partial frames, slow writers).
    pub async fn send_unframed(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// The next complete message (without its length prefix).
    pub async fn recv(&mut self, limit: Duration) -> Result<Vec<u8>, ClientError> {
        timeout(limit, self.next_frame())
            .await
            .map_err(|_| ClientError::Timeout)?
    }

    /// Sends a query and waits for the next frame, which must carry the same ID.
    pub async fn query(
        &mut self,
        name: &str,
        rtype: RecordType,
        opts: &QueryOpts,
        limit: Duration,
    ) -> Result<Reply, ClientError> {
        let query = build_query(name, rtype, opts);
        let sent = Instant::now();
        let deadline = sent + limit;
        timeout_at(deadline, self.send(&query))
            .await
            .map_err(|_| ClientError::Timeout)??;
        let remaining = deadline.saturating_duration_since(Instant::now());
        let bytes = self.recv(remaining).await?;
        parse_reply(bytes, opts.id, sent)
    }

    /// Half-closes the connection: the server sees EOF but can still answer.
    pub async fn shutdown_write(&mut self) -> io::Result<()> {
        self.stream.shutdown().await
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.stream.local_addr()
    }

    /// Cancel-safe: bytes read so far stay in `buf`.
    async fn next_frame(&mut self) -> Result<Vec<u8>, ClientError> {
        loop {
            if self.buf.len() >= 2 {
                let len = usize::from(u16::from_be_bytes([self.buf[0], self.buf[1]]));
                if self.buf.len() >= 2 + len {
                    self.buf.advance(2);
                    return Ok(self.buf.split_to(len).to_vec());
                }
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(ClientError::Closed);
            }
        }
    }
}

// ---- reading replies ----------------------------------------------------------------

/// The first Extended DNS Error in `message`: (INFO-CODE, EXTRA-TEXT).
pub fn ede(message: &Message) -> Option<(u16, String)> {
    ede_all(message).into_iter().next()
}

/// Every Extended DNS Error in `message`, in wire order (RFC 8914 allows several).
/// hickory-proto 0.26 has no EDE type: option 15 decodes as `EdnsOption::Unknown`.
pub fn ede_all(message: &Message) -> Vec<(u16, String)> {
    let Some(edns) = &message.edns else {
        return Vec::new();
    };
    edns.options()
        .as_ref()
        .iter()
        .filter_map(|(_, option)| match option {
            EdnsOption::Unknown(EDE_OPTION_CODE, data) => parse_ede(data),
            _ => None,
        })
        .collect()
}

/// The first Extended DNS Error read straight from wire bytes, without hickory: an
/// independent check, and it works on replies hickory refuses to decode.
pub fn ede_from_bytes(bytes: &[u8]) -> Option<(u16, String)> {
    let count = |at: usize| -> Option<usize> { Some(usize::from(read_u16(bytes, at)?)) };
    let (questions, answers, authorities, additionals) =
        (count(4)?, count(6)?, count(8)?, count(10)?);
    let mut pos = 12;
    for _ in 0..questions {
        pos = skip_name(bytes, pos)? + 4;
    }
    for index in 0..answers + authorities + additionals {
        pos = skip_name(bytes, pos)?;
        let rtype = read_u16(bytes, pos)?;
        let rdlength = usize::from(read_u16(bytes, pos + 8)?);
        let rdata = bytes.get(pos + 10..pos + 10 + rdlength)?;
        pos += 10 + rdlength;
        if index < answers + authorities || rtype != u16::from(RecordType::OPT) {
            continue;
        }
        let mut opt = 0;
        while let (Some(code), Some(len)) = (read_u16(rdata, opt), read_u16(rdata, opt + 2)) {
            let data = rdata.get(opt + 4..opt + 4 + usize::from(len))?;
            if code == EDE_OPTION_CODE {
                return parse_ede(data);
            }
            opt += 4 + usize::from(len);
        }
    }
    None
}

/// RFC 8914 §2: a 2-byte INFO-CODE, then EXTRA-TEXT in UTF-8 (possibly empty).
fn parse_ede(data: &[u8]) -> Option<(u16, String)> {
    let code = read_u16(data, 0)?;
    let text = String::from_utf8_lossy(&data[2..]).into_owned();
    Some((code, text))
}

fn read_u16(bytes: &[u8], at: usize) -> Option<u16> {
    let pair = bytes.get(at..at + 2)?;
    Some(u16::from_be_bytes([pair[0], pair[1]]))
}

/// Position just after the (possibly compressed) name starting at `pos`.
fn skip_name(bytes: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let len = *bytes.get(pos)?;
        match len {
            0 => return Some(pos + 1),
            // A compression pointer (RFC 1035 §4.1.4) ends the name.
            l if l & 0xc0 == 0xc0 => return Some(pos + 2),
            l if l & 0xc0 == 0 => pos += 1 + usize::from(l),
            _ => return None,
        }
    }
}

/// The addresses in the answer section (A and AAAA records), in order.
pub fn answer_ips(message: &Message) -> Vec<IpAddr> {
    message
        .answers
        .iter()
        .filter_map(|record| match &record.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
            _ => None,
        })
        .collect()
}
