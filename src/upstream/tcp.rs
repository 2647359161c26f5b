//! A query over TCP with 2-byte length framing (RFC 1035 §4.2.2, RFC 7766 §8),
//! used when a UDP reply came back truncated. The caller bounds it with the
//! query's deadline, so a peer that drips bytes cannot hold a client.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::message::Question;
use crate::answer::Answer;
use crate::metrics::Metrics;
use crate::wire;

pub async fn exchange(
    server: SocketAddr,
    question: &Question,
    metrics: &Metrics,
) -> io::Result<Answer> {
    let mut stream = TcpStream::connect(server).await?;
    stream.set_nodelay(true)?;
    let mut query = question.encode();
    let id: u16 = rand::random();
    wire::write_u16(&mut query, 0, id);
    let Ok(len) = u16::try_from(query.len()) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "query too long",
        ));
    };
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(&query);
    metrics.upstream_queries.inc();
    stream.write_all(&framed).await?;
    let mut buffer = Vec::new();
    loop {
        let len = usize::from(stream.read_u16().await?);
        buffer.resize(len, 0);
        stream.read_exact(&mut buffer).await?;
        match question.accept(&buffer, id, Instant::now()) {
            Some(answer) => return Ok(answer),
            None => metrics.upstream_ignored_replies.inc(),
        }
    }
}
