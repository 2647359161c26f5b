//! Reading a client's TCP messages: a 2-byte length, then the message (RFC 1035
//! §4.2.2, RFC 7766 §8), with two guards against clients that tie up a
//! connection (RFC 7766 §10): a length above `max_message` ends the connection
//! without reading the body, and once a message's first byte has arrived the
//! rest must follow within `read_timeout` (a client sending a byte a second
//! gets nowhere). The time between messages is the caller's idle timeout.

use std::io;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::{Instant, timeout_at};

/// Why no further message can be read.
#[derive(Debug, Error)]
pub enum FrameError {
    /// The length prefix announced more than the limit.
    #[error("a message of {0} bytes announced, above the limit")]
    TooLarge(usize),
    /// A message started but was not complete within the read timeout.
    #[error("a message not complete within the read timeout")]
    ReadTimeout,
    /// The connection broke, or ended in the middle of a message.
    #[error("read failed: {0}")]
    Io(#[from] io::Error),
}

pub struct FrameReader<R> {
    reader: R,
    buffer: BytesMut,
    max_message: usize,
    read_timeout: Duration,
    /// When the first byte of the message now being read arrived.
    started: Option<Instant>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(reader: R, max_message: usize, read_timeout: Duration) -> FrameReader<R> {
        FrameReader {
            reader,
            buffer: BytesMut::with_capacity(2 + max_message.min(4096)),
            max_message,
            read_timeout,
            started: None,
        }
    }

    /// The next message without its length prefix; `Ok(None)` at a clean end of
    /// input (between messages). Cancel-safe: what was read stays buffered, and
    /// the read timeout still counts from the message's first byte.
    pub async fn next(&mut self) -> Result<Option<Bytes>, FrameError> {
        loop {
            if let Some(message) = self.complete()? {
                return Ok(Some(message));
            }
            let read = match self.started {
                None => self.reader.read_buf(&mut self.buffer).await,
                Some(started) => timeout_at(
                    started + self.read_timeout,
                    self.reader.read_buf(&mut self.buffer),
                )
                .await
                .map_err(|_| FrameError::ReadTimeout)?,
            };
            match read {
                Ok(0) if self.buffer.is_empty() => return Ok(None),
                Ok(0) => return Err(FrameError::Io(io::ErrorKind::UnexpectedEof.into())),
                Ok(_) => {
                    self.started.get_or_insert_with(Instant::now);
                }
                Err(error) => return Err(FrameError::Io(error)),
            }
        }
    }

    /// Takes one whole message off the buffer, if one is there.
    fn complete(&mut self) -> Result<Option<Bytes>, FrameError> {
        let Some(prefix) = self.buffer.get(..2) else {
            return Ok(None);
        };
        let len = usize::from(u16::from_be_bytes([prefix[0], prefix[1]]));
        if len > self.max_message {
            return Err(FrameError::TooLarge(len));
        }
        if self.buffer.len() < 2 + len {
            self.buffer.reserve(2 + len - self.buffer.len());
            return Ok(None);
        }
        self.buffer.advance(2);
        let message = self.buffer.split_to(len).freeze();
        // The next message's clock starts with its first byte, which may already
        // be here (pipelined queries arrive together).
        self.started = (!self.buffer.is_empty()).then(Instant::now);
        Ok(Some(message))
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncWriteExt, duplex};
    use tokio::time::advance;

    use super::*;

    const TIMEOUT: Duration = Duration::from_millis(300);

    #[tokio::test(start_paused = true)]
    async fn reads_pipelined_and_split_messages() {
        let (mut client, server) = duplex(1024);
        let mut frames = FrameReader::new(server, 16, TIMEOUT);
        client
            .write_all(&[0, 3, 1, 2, 3, 0, 0, 0, 2, 9])
            .await
            .expect("write");
        assert_eq!(
            frames.next().await.expect("one").as_deref(),
            Some(&[1, 2, 3][..])
        );
        assert_eq!(
            frames.next().await.expect("empty").as_deref(),
            Some(&[][..])
        );
        client.write_all(&[8]).await.expect("write");
        assert_eq!(
            frames.next().await.expect("split").as_deref(),
            Some(&[9, 8][..])
        );
        drop(client);
        assert!(matches!(frames.next().await, Ok(None)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_length_above_the_limit_ends_the_connection() {
        let (mut client, server) = duplex(1024);
        let mut frames = FrameReader::new(server, 16, TIMEOUT);
        client.write_all(&[0, 17]).await.expect("write");
        assert!(matches!(frames.next().await, Err(FrameError::TooLarge(17))));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_message_times_out_from_its_first_byte() {
        let (mut client, server) = duplex(1024);
        let mut frames = FrameReader::new(server, 16, TIMEOUT);
        // Idle before the message: no read timeout.
        let idle = tokio::time::timeout(Duration::from_secs(60), frames.next()).await;
        assert!(idle.is_err(), "no message, no timeout: {idle:?}");
        let mut reading = tokio::spawn(async move { frames.next().await });
        // A byte every 100 ms: each arrives well within the timeout of the last,
        // but the message is not whole 300 ms after its first byte.
        for byte in [0u8, 5] {
            client.write_all(&[byte]).await.expect("write");
            settle().await;
            advance(Duration::from_millis(100)).await;
        }
        client.write_all(&[1]).await.expect("write");
        settle().await;
        advance(Duration::from_millis(99)).await;
        settle().await;
        assert!(!reading.is_finished(), "closed before the read timeout");
        advance(Duration::from_millis(1)).await;
        settle().await;
        let result = (&mut reading).await.expect("task");
        assert!(matches!(result, Err(FrameError::ReadTimeout)), "{result:?}");
    }

    /// Lets the spawned reader run until it waits again.
    async fn settle() {
        for _ in 0..8 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_eof_inside_a_message_is_an_error() {
        let (mut client, server) = duplex(1024);
        let mut frames = FrameReader::new(server, 16, TIMEOUT);
        client.write_all(&[0, 4, 1]).await.expect("write");
        drop(client);
        assert!(matches!(frames.next().await, Err(FrameError::Io(_))));
    }
}
