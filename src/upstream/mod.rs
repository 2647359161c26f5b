//! Asking the upstream servers: the retransmission schedule and the UDP→TCP
//! fallback, all inside one deadline. This is the only place that retries.
//!
//! Schedule: attempt 1 at once, then a new attempt (new socket, new ID, next
//! server in turn) after `attempt_timeout`, doubling each time, while the
//! deadline allows. Earlier attempts stay open: a late reply to any of them is
//! as good as a reply to the newest. An I/O error (e.g. ICMP port unreachable)
//! moves on to the next server at once; when every server has failed that way
//! and nothing is pending, the lookup fails with a network error rather than
//! waiting for the deadline. A truncated reply is retried over TCP to the same
//! server (RFC 7766 §5), still inside the deadline.

mod message;
mod tcp;
mod udp;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::time::{Instant, sleep_until, timeout_at};

pub use message::Question;

use crate::answer::Answer;
use crate::error::LookupError;
use crate::metrics::Metrics;

pub struct Upstream {
    servers: Vec<SocketAddr>,
    attempt_timeout: Duration,
    metrics: Arc<Metrics>,
}

impl Upstream {
    /// `servers` must not be empty (configuration validation guarantees it).
    pub fn new(
        servers: Vec<SocketAddr>,
        attempt_timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Upstream {
        Upstream {
            servers,
            attempt_timeout,
            metrics,
        }
    }

    pub fn servers(&self) -> &[SocketAddr] {
        &self.servers
    }

    /// Resolves `question`, returning by `deadline` whatever happens upstream.
    pub async fn exchange(
        &self,
        question: Arc<Question>,
        deadline: Instant,
    ) -> Result<Answer, LookupError> {
        let result = match timeout_at(deadline, self.exchange_until_answer(question)).await {
            Ok(result) => result,
            Err(_) => Err(LookupError::Timeout),
        };
        match result {
            Err(LookupError::Timeout) => self.metrics.lookup_timeouts.inc(),
            Err(LookupError::Network(_)) => self.metrics.lookup_network_errors.inc(),
            _ => {}
        }
        result
    }

    async fn exchange_until_answer(&self, question: Arc<Question>) -> Result<Answer, LookupError> {
        let Some(&first) = self.servers.first() else {
            return Err(LookupError::Network(io::ErrorKind::NotFound));
        };
        let mut query = question.encode();
        let mut pending = FuturesUnordered::new();
        let mut attempts = 0usize;
        let mut failures = 0usize;
        let mut last_error = io::ErrorKind::Other;
        let mut wait = self.attempt_timeout;
        let mut next_send = Instant::now();
        loop {
            if Instant::now() >= next_send {
                let server = self
                    .servers
                    .get(attempts % self.servers.len())
                    .copied()
                    .unwrap_or(first);
                attempts += 1;
                next_send = Instant::now() + wait;
                wait = wait.saturating_mul(2);
                match udp::Attempt::send(server, &mut query).await {
                    Ok(attempt) => {
                        self.metrics.upstream_queries.inc();
                        let question = Arc::clone(&question);
                        let metrics = Arc::clone(&self.metrics);
                        pending.push(
                            async move { (server, attempt.receive(question, metrics).await) },
                        );
                    }
                    Err(error) => {
                        failures += 1;
                        last_error = error.kind();
                        if failures < self.servers.len() {
                            next_send = Instant::now();
                        }
                    }
                }
            }
            if pending.is_empty() && failures >= self.servers.len() {
                return Err(LookupError::Network(last_error));
            }
            tokio::select! {
                () = sleep_until(next_send) => {}
                Some((server, result)) = pending.next(), if !pending.is_empty() => match result {
                    Ok(answer) if answer.is_truncated() => {
                        self.metrics.upstream_tcp_fallbacks.inc();
                        return tcp::exchange(server, &question, &self.metrics)
                            .await
                            .map_err(|e| LookupError::Network(e.kind()));
                    }
                    Ok(answer) => return Ok(answer),
                    Err(error) => {
                        failures += 1;
                        last_error = error.kind();
                        if failures < self.servers.len() {
                            next_send = Instant::now();
                        }
                    }
                },
            }
        }
    }
}
