//! Asking the upstream servers: which server, when to ask the next one, and
//! the UDP→TCP fallback, all inside one deadline. This is the only place that
//! retries.
//!
//! Order (`strategy`): `fastest` sorts the servers by smoothed RTT (unmeasured
//! first, so a new server is measured at once; servers marked down last, but
//! still asked when nothing else is up, by at most `max_inflight_down` lookups
//! at a time); every 20th lookup also probes one other
//! server at the same moment, so a recovered or faster server is noticed without
//! making anyone wait for it. `ordered` keeps the config order. `parallel`
//! asks every server at once.
//!
//! Schedule: attempt 1 at once; when a server has not answered within its
//! retransmission timeout (RFC 6298 RTO, clamped to [50 ms, deadline]), the
//! next server in the order is asked too (hedging) while the earlier attempts
//! stay open: the first valid answer from any of them wins. After every server
//! has had a turn the cycle repeats with doubled waits. Each attempt is a new
//! socket and a new ID. SERVFAIL or REFUSED, or an I/O error (ICMP port
//! unreachable), moves on to the next server at once; when every server has
//! failed that way the last SERVFAIL/REFUSED is passed on (or a network error
//! reported) rather than waiting for the deadline, and at the deadline a
//! SERVFAIL/REFUSED received earlier is still better than silence. A truncated
//! UDP reply is retried over TCP to the same server (RFC 7766 §5).
//!
//! Transports: a plain address is asked over UDP; `tcp://` and `tls://`
//! servers over one kept-open, pipelined connection each ([`stream`]), with
//! the same schedule: an attempt on a stream is one query on that connection.

mod health;
mod message;
mod routes;
mod stream;
mod tcp;
mod tls;
mod udp;
mod watch;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::time::{Instant, sleep_until, timeout_at};

pub use message::Question;
pub use routes::Routes;
pub use tls::{TlsSetupError, client_config as tls_client_config};
pub use watch::watch_resolv_conf;

use rustls::ClientConfig;

use crate::answer::Answer;
use crate::config::{Strategy, UpstreamAddr, UpstreamTransport};
use crate::error::LookupError;
use crate::metrics::{Counter, Histogram, HistogramSnapshot, Metrics};
use health::Health;
use stream::{Security, StreamPool};

/// One lookup in this many also probes a second server (strategy `fastest`).
const PROBE_EVERY: u64 = 20;

struct Server {
    spec: UpstreamAddr,
    health: Health,
    /// Attempts sent to this server, its RTO expiries, and its answers' RTTs.
    queries: Counter,
    timeouts: Counter,
    rtt: Histogram,
    /// The kept-open connection of a `tcp://` or `tls://` server.
    stream: Option<StreamPool>,
}

impl Server {
    fn new(
        spec: UpstreamAddr,
        options: &UpstreamOptions,
        tls: &Arc<ClientConfig>,
        metrics: &Arc<Metrics>,
    ) -> Server {
        let security = match &spec.transport {
            UpstreamTransport::Udp => None,
            UpstreamTransport::Tcp => Some(Security::Plain),
            UpstreamTransport::Tls { auth_name } => Some(Security::tls(Arc::clone(tls), auth_name)),
        };
        let stream = security.map(|security| {
            StreamPool::new(
                spec.addr,
                security,
                options.idle_timeout,
                options.max_rto,
                Arc::clone(metrics),
            )
        });
        Server {
            spec,
            health: Health::default(),
            queries: Counter::default(),
            timeouts: Counter::default(),
            rtt: Histogram::default(),
            stream,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.spec.addr
    }
}

/// One attempt in flight: a UDP socket waiting for its reply, or a query on a
/// server's kept-open connection.
enum Attempt<'a> {
    Udp(udp::Attempt),
    Stream(&'a StreamPool),
}

impl Attempt<'_> {
    async fn finish(self, question: Arc<Question>, metrics: Arc<Metrics>) -> io::Result<Answer> {
        match self {
            Attempt::Udp(attempt) => attempt.receive(question, metrics).await,
            // Boxed: a stream exchange may include a TLS handshake, a large
            // future that would otherwise size every UDP attempt like itself.
            Attempt::Stream(pool) => Box::pin(pool.exchange(&question)).await,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct UpstreamOptions {
    pub strategy: Strategy,
    /// The first wait, before a server's RTT is known (RFC 6298 §2.1).
    pub attempt_timeout: Duration,
    /// The longest RTO: the query deadline.
    pub max_rto: Duration,
    /// Pass the AD bit of answers on (RFC 6840 §5.8); otherwise cleared.
    pub trust_ad: bool,
    /// How long an unused TCP or TLS connection stays open.
    pub idle_timeout: Duration,
    /// Lookups let through while every server is down ([`DownSlot`]).
    pub max_inflight_down: usize,
}

/// One server's counters and state, as [`Upstream::report`] gives them.
#[derive(Debug, Clone)]
pub struct ServerReport {
    /// As configured: `IP:PORT`, `tcp://…` or `tls://…#name`.
    pub server: String,
    pub queries: u64,
    pub timeouts: u64,
    pub rtt: HistogramSnapshot,
    pub srtt: Option<Duration>,
    /// Not marked down (a down server is still asked when nothing else is up).
    pub up: bool,
}

pub struct Upstream {
    /// Replaced as a whole when the resolv.conf in use changes; a lookup keeps
    /// the list it started with. Servers that stay keep their state.
    servers: RwLock<Arc<[Arc<Server>]>>,
    options: UpstreamOptions,
    tls: Arc<ClientConfig>,
    lookups: AtomicU64,
    /// Lookups holding a [`DownSlot`].
    down_lookups: AtomicUsize,
    metrics: Arc<Metrics>,
}

/// One of the `max_inflight_down` places for lookups that start while every
/// server is down. Those lookups still ask (their retransmissions are what
/// notice a recovery, and one answer marks the server up again); any more
/// would only wait out the deadline in memory, so they fail at once. This is
/// unbound's probing of a server with a timed-out RTT, bounded per route.
struct DownSlot<'a>(&'a AtomicUsize);

impl Drop for DownSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Upstream {
    /// `servers` must not be empty (configuration validation guarantees it).
    /// `tls` checks the certificates of `tls://` servers ([`tls_client_config`]).
    pub fn new(
        servers: Vec<UpstreamAddr>,
        options: UpstreamOptions,
        tls: Arc<ClientConfig>,
        metrics: Arc<Metrics>,
    ) -> Upstream {
        Upstream {
            servers: RwLock::new(
                servers
                    .into_iter()
                    .map(|spec| Arc::new(Server::new(spec, &options, &tls, &metrics)))
                    .collect(),
            ),
            options,
            tls,
            lookups: AtomicU64::new(0),
            down_lookups: AtomicUsize::new(0),
            metrics,
        }
    }

    /// Switches to `specs` (a re-read resolv.conf); servers already known keep
    /// their RTT, health and connection. Returns whether anything changed.
    pub fn replace_servers(&self, specs: &[UpstreamAddr]) -> bool {
        let current = self.current();
        if current.iter().map(|s| &s.spec).eq(specs.iter()) || specs.is_empty() {
            return false;
        }
        let next: Arc<[Arc<Server>]> = specs
            .iter()
            .map(|spec| match current.iter().find(|s| s.spec == *spec) {
                Some(known) => Arc::clone(known),
                None => Arc::new(Server::new(
                    spec.clone(),
                    &self.options,
                    &self.tls,
                    &self.metrics,
                )),
            })
            .collect();
        *self.servers.write().unwrap_or_else(|p| p.into_inner()) = next;
        true
    }

    /// Takes over from `previous` the servers both have (same address and
    /// transport), so a reload keeps what was learned about them. Servers
    /// whose options changed with the reload (strategy aside, options are
    /// per pool) keep their old connection settings until the next start.
    pub fn inherit(&self, previous: &Upstream) {
        let known = previous.current();
        let merged: Arc<[Arc<Server>]> = self
            .current()
            .iter()
            .map(|server| {
                known
                    .iter()
                    .find(|old| old.spec == server.spec)
                    .map_or_else(|| Arc::clone(server), Arc::clone)
            })
            .collect();
        *self.servers.write().unwrap_or_else(|p| p.into_inner()) = merged;
    }

    /// What each server in use has done, for operators.
    pub fn report(&self) -> Vec<ServerReport> {
        let now = Instant::now();
        self.current()
            .iter()
            .map(|server| {
                let health = server.health.snapshot(now);
                ServerReport {
                    server: server.spec.to_string(),
                    queries: server.queries.get(),
                    timeouts: server.timeouts.get(),
                    rtt: server.rtt.snapshot(),
                    srtt: health.srtt,
                    up: !health.down,
                }
            })
            .collect()
    }

    fn current(&self) -> Arc<[Arc<Server>]> {
        Arc::clone(&self.servers.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Resolves `question`, returning by `deadline` whatever happens upstream.
    pub async fn exchange(
        &self,
        question: Arc<Question>,
        deadline: Instant,
    ) -> Result<Answer, LookupError> {
        let servers = self.current();
        let Ok(_slot) = self.down_slot(&servers, Instant::now()) else {
            self.metrics.upstream_down_answers.inc();
            return Err(LookupError::Unreachable);
        };
        // The loop ends itself at the deadline; the timeout is a second fence.
        let exchange = self.exchange_until(&servers, question, deadline);
        let result = match timeout_at(deadline, exchange).await {
            Ok(result) => result,
            Err(_) => Err(LookupError::Timeout),
        };
        let result = match result {
            // Our own connection limit, not the upstream's failure.
            Err(LookupError::Network(stream::FULL)) => Err(LookupError::Overloaded),
            other => other,
        };
        match result {
            Err(LookupError::Timeout) => self.metrics.lookup_timeouts.inc(),
            Err(LookupError::Network(_)) => self.metrics.lookup_network_errors.inc(),
            Err(LookupError::Overloaded) => self.metrics.overload_answers.inc(),
            _ => {}
        }
        result
    }

    /// `Ok(None)` while some server is up; a [`DownSlot`] while every one is
    /// down and a slot is free; `Err` when none is.
    fn down_slot(&self, servers: &[Arc<Server>], now: Instant) -> Result<Option<DownSlot<'_>>, ()> {
        let all_down = !servers.is_empty()
            && servers
                .iter()
                .all(|server| server.health.snapshot(now).down);
        if !all_down {
            return Ok(None);
        }
        self.down_lookups
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |taken| {
                (taken < self.options.max_inflight_down).then_some(taken + 1)
            })
            .map(|_| Some(DownSlot(&self.down_lookups)))
            .map_err(|_| ())
    }

    /// Server indices in the order this lookup asks them.
    fn order(&self, servers: &[Arc<Server>], now: Instant) -> Vec<usize> {
        let mut order: Vec<usize> = (0..servers.len()).collect();
        if self.options.strategy == Strategy::Fastest {
            // Stable: equal servers keep their config order.
            order.sort_by_key(|&i| {
                let health = servers[i].health.snapshot(now);
                (health.down, health.srtt.unwrap_or(Duration::ZERO))
            });
        }
        order
    }

    fn rto(&self, server: &Server) -> Duration {
        match self.options.strategy {
            Strategy::Ordered => self.options.attempt_timeout,
            Strategy::Fastest | Strategy::Parallel => server
                .health
                .rto(self.options.attempt_timeout, self.options.max_rto),
        }
    }

    async fn exchange_until(
        &self,
        servers: &[Arc<Server>],
        question: Arc<Question>,
        deadline: Instant,
    ) -> Result<Answer, LookupError> {
        let start = Instant::now();
        let order = self.order(servers, start);
        let count = order.len();
        if count == 0 {
            return Err(LookupError::Network(io::ErrorKind::NotFound));
        }
        let lookup_number = self.lookups.fetch_add(1, Ordering::Relaxed);
        let mut query = question.encode();
        let mut pending = FuturesUnordered::new();
        let mut tried = vec![false; servers.len()];
        // Servers whose attempt ended without a usable answer (error, SERVFAIL, REFUSED).
        let mut failed = vec![false; servers.len()];
        let mut last_error = io::ErrorKind::Other;
        let mut fallback: Option<Answer> = None;
        let mut turn = 0usize;
        let mut next_send = start;
        // The servers asked by the latest turn: charged a timeout if silent when the next turn comes.
        let mut awaiting: Vec<usize> = Vec::new();
        loop {
            let now = Instant::now();
            if now >= deadline {
                return fallback.ok_or(LookupError::Timeout);
            }
            if now >= next_send {
                for &server in &awaiting {
                    if !failed[server] {
                        servers[server].health.timed_out(now);
                        servers[server].timeouts.inc();
                    }
                }
                let (mut targets, wait) = self.turn(servers, &order, turn, lookup_number);
                // A server that answered SERVFAIL/REFUSED or failed is not asked again.
                targets.retain(|&server| !failed[server]);
                turn += 1;
                next_send = now + wait;
                awaiting.clear();
                for server in targets {
                    tried[server] = true;
                    let attempt = match &servers[server].stream {
                        Some(pool) => Ok(Attempt::Stream(pool)),
                        None => udp::Attempt::send(servers[server].addr(), &mut query)
                            .await
                            .map(|attempt| {
                                self.metrics.upstream_queries.inc();
                                Attempt::Udp(attempt)
                            }),
                    };
                    match attempt {
                        Ok(attempt) => {
                            servers[server].queries.inc();
                            awaiting.push(server);
                            let question = Arc::clone(&question);
                            let metrics = Arc::clone(&self.metrics);
                            let sent = Instant::now();
                            pending.push(async move {
                                (server, sent, attempt.finish(question, metrics).await)
                            });
                        }
                        Err(error) => {
                            failed[server] = true;
                            last_error = error.kind();
                        }
                    }
                }
            }
            let untried = tried.iter().any(|t| !t);
            if pending.is_empty() && !untried && failed.iter().all(|f| *f) {
                return fallback.ok_or(LookupError::Network(last_error));
            }
            if pending.is_empty() && untried && failed.iter().any(|f| *f) {
                // Move on at once rather than wait out a turn nobody is in.
                next_send = Instant::now();
                continue;
            }
            tokio::select! {
                () = sleep_until(next_send.min(deadline)) => {}
                Some((server, sent, result)) = pending.next(), if !pending.is_empty() => {
                    let addr = servers[server].addr();
                    match result {
                        Ok(answer) => {
                            let rtt = sent.elapsed();
                            servers[server].health.answered(rtt);
                            servers[server].rtt.observe(rtt);
                            if answer.is_truncated() && servers[server].stream.is_none() {
                                self.metrics.upstream_tcp_fallbacks.inc();
                                return tcp::exchange(addr, &question, &self.metrics)
                                    .await
                                    .map(|answer| self.vouch(answer))
                                    .map_err(|e| LookupError::Network(e.kind()));
                            }
                            if !answer.is_failure() {
                                return Ok(self.vouch(answer));
                            }
                            // SERVFAIL/REFUSED: keep it in case nothing better comes,
                            // and ask the next server now (as glibc does).
                            failed[server] = true;
                            fallback = Some(answer);
                            if untried {
                                next_send = Instant::now();
                            }
                        }
                        Err(error) => {
                            failed[server] = true;
                            last_error = error.kind();
                            if untried {
                                next_send = Instant::now();
                            }
                        }
                    }
                }
            }
        }
    }

    /// Who is asked in turn `turn` of a lookup, and how long to wait before
    /// the next turn: one server per turn (two on a probe's first turn), or
    /// every server with `parallel`; the wait doubles each time round.
    fn turn(
        &self,
        servers: &[Arc<Server>],
        order: &[usize],
        turn: usize,
        lookup_number: u64,
    ) -> (Vec<usize>, Duration) {
        let count = order.len();
        let round = u32::try_from(turn / count).unwrap_or(u32::MAX).min(16);
        match self.options.strategy {
            Strategy::Parallel => (
                order.to_vec(),
                self.rto(&servers[order[0]]).saturating_mul(2u32.pow(round)),
            ),
            Strategy::Fastest | Strategy::Ordered => {
                let server = order[turn % count];
                let mut targets = vec![server];
                let probe = self.options.strategy == Strategy::Fastest
                    && turn == 0
                    && count > 1
                    && lookup_number % PROBE_EVERY == PROBE_EVERY - 1;
                if probe {
                    let other = order[1 + (lookup_number / PROBE_EVERY) as usize % (count - 1)];
                    targets.push(other);
                    self.metrics.upstream_probes.inc();
                }
                (
                    targets,
                    self.rto(&servers[server]).saturating_mul(2u32.pow(round)),
                )
            }
        }
    }

    /// RFC 6840 §5.8: the AD bit of an upstream reply is only as good as the
    /// path to that upstream; unless trusted, it is cleared.
    fn vouch(&self, answer: Answer) -> Answer {
        if self.options.trust_ad {
            answer
        } else {
            answer.without_authentic_data()
        }
    }
}
