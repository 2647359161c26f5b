//! What a client may ask of punctual before the resolver does any work for it:
//! who may query ([`acl`], `[listen] allow`), how fast ([`rate`], `[limits]
//! client_qps`), how large a UDP query may be, and how many TCP connections one
//! client may hold. The listeners ask the [`Guard`] about every message; its
//! answers are cheap (a prefix compare, one short lock) and counted.

mod acl;
mod rate;

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;
use tokio::time::Instant;

pub use acl::{Acl, Prefix, is_loopback_only};
pub use rate::{ClientKey, RateLimiter, RateLimits};

use crate::config::{Config, RateLimitAction};
use crate::error::{EDE_OTHER, EDE_PROHIBITED};
use crate::metrics::Metrics;
use crate::query::{ClientQuery, rcode};
use crate::response;
use crate::wire::Ede;

/// RFC 8914 §4.19: the client is not in `[listen] allow`.
const PROHIBITED: Ede = Ede {
    code: EDE_PROHIBITED,
    text: "client not allowed",
};

/// RFC 8914 §4.1 (Other): no code says "rate limited", so the text does.
const RATE_LIMITED: Ede = Ede {
    code: EDE_OTHER,
    text: "rate limited",
};

/// The guard's settings, read from `[listen]` and `[limits]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardLimits {
    pub acl: Acl,
    /// `None`: rate limiting off (`client_qps = 0`).
    pub rate: Option<RateLimits>,
    pub rate_action: RateLimitAction,
    pub max_udp_query: usize,
    pub tcp_connections_per_client: usize,
}

impl GuardLimits {
    /// The settings of a validated config.
    pub fn from_config(config: &Config) -> GuardLimits {
        let limits = &config.limits;
        let rate = u32::try_from(limits.client_qps)
            .ok()
            .filter(|qps| *qps > 0)
            .map(|qps| RateLimits {
                qps,
                burst: u32::try_from(limits.client_burst).unwrap_or(u32::MAX),
                clients: NonZeroUsize::new(limits.rate_limit_clients).unwrap_or(NonZeroUsize::MIN),
                loopback: limits.rate_limit_loopback,
            });
        GuardLimits {
            acl: Acl::new(config.listen.allow.as_deref()),
            rate,
            rate_action: limits.rate_limit_action,
            max_udp_query: limits.max_udp_query,
            tcp_connections_per_client: limits.tcp_max_connections_per_client,
        }
    }
}

/// What to do with one message before the resolver sees it.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// Hand it to the resolver.
    Serve,
    /// Send this refusal instead.
    Reply(Vec<u8>),
    Drop,
}

pub struct Guard {
    /// Swapped whole by a reload ([`Guard::replace`]); every message reads the
    /// policy in force when it arrives.
    policy: ArcSwap<Policy>,
    /// Open TCP connections per client; a client is removed when its last closes,
    /// so the map never holds more entries than connections are open.
    tcp_clients: Mutex<HashMap<ClientKey, usize>>,
    metrics: Arc<Metrics>,
}

/// The settings a [`Guard`] applies, with the rate limiter's buckets.
struct Policy {
    limits: GuardLimits,
    rate: Option<Arc<RateLimiter>>,
}

impl Policy {
    /// `limits` in force, keeping `previous`'s buckets when the rate limits did
    /// not change (a reload must not hand every client a fresh burst).
    fn new(limits: GuardLimits, previous: Option<&Policy>) -> Policy {
        let rate = match previous {
            Some(previous) if previous.limits.rate == limits.rate => previous.rate.clone(),
            _ => limits.rate.map(|rate| Arc::new(RateLimiter::new(rate))),
        };
        Policy { limits, rate }
    }
}

impl Guard {
    pub fn new(limits: GuardLimits, metrics: Arc<Metrics>) -> Guard {
        Guard {
            policy: ArcSwap::from_pointee(Policy::new(limits, None)),
            tcp_clients: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    /// Applies the allow list, rate and size limits of a reloaded config to
    /// every message from now on. Open TCP connections stay; the per-client
    /// connection cap applies to new ones.
    pub fn replace(&self, limits: GuardLimits) {
        let previous = self.policy.load();
        self.policy
            .store(Arc::new(Policy::new(limits, Some(&previous))));
    }

    /// Decides on one message from `client` that arrived at `now`: a client
    /// outside `allow` gets REFUSED with EDE 18, one over its rate REFUSED with
    /// EDE 0 "rate limited" (or nothing, per `rate_limit_action`). A refusal is
    /// only sent for a message that parses as a query; anything else is dropped.
    pub fn admit(&self, bytes: &[u8], client: IpAddr, now: Instant) -> Admission {
        self.admit_with(&self.policy.load(), bytes, client, now)
    }

    /// [`Guard::admit`] for a UDP datagram, with one read of the policy for
    /// both checks: `None` (counted) when it is longer than `max_udp_query`,
    /// and the caller drops it unanswered.
    pub fn admit_udp(&self, bytes: &[u8], client: IpAddr, now: Instant) -> Option<Admission> {
        let policy = self.policy.load();
        if bytes.len() > policy.limits.max_udp_query {
            self.metrics.udp_oversized.inc();
            return None;
        }
        Some(self.admit_with(&policy, bytes, client, now))
    }

    fn admit_with(&self, policy: &Policy, bytes: &[u8], client: IpAddr, now: Instant) -> Admission {
        if !policy.limits.acl.admits(client) {
            self.metrics.queries_prohibited.inc();
            return self.refuse(bytes, PROHIBITED);
        }
        if let Some(rate) = &policy.rate
            && !rate.admit(client, now)
        {
            self.metrics.rate_limited.inc();
            return match policy.limits.rate_action {
                RateLimitAction::Refuse => self.refuse(bytes, RATE_LIMITED),
                RateLimitAction::Drop => Admission::Drop,
            };
        }
        Admission::Serve
    }

    /// Registers a new TCP connection from `client`; `None` (counted) when that
    /// client already holds `tcp_max_connections_per_client`. RFC 7766 §6.2.4
    /// lets a server limit connections per client. The slot is freed on drop.
    pub fn tcp_connection(self: &Arc<Self>, client: IpAddr) -> Option<ClientConnection> {
        let key = ClientKey::of(client);
        let mut clients = self.lock_tcp_clients();
        let open = clients.entry(key).or_insert(0);
        if *open >= self.policy.load().limits.tcp_connections_per_client {
            drop(clients);
            self.metrics.tcp_client_connections_refused.inc();
            return None;
        }
        *open += 1;
        Some(ClientConnection {
            guard: Arc::clone(self),
            key,
        })
    }

    fn refuse(&self, bytes: &[u8], ede: Ede) -> Admission {
        match ClientQuery::parse(bytes) {
            Ok(query) => {
                if query.edns.is_some() {
                    self.metrics.count_ede(ede.code);
                }
                let reply = response::synthesized(&query, rcode::REFUSED, 0, Some(ede));
                self.metrics.count_response(&reply);
                Admission::Reply(reply)
            }
            Err(_) => Admission::Drop,
        }
    }

    fn lock_tcp_clients(&self) -> MutexGuard<'_, HashMap<ClientKey, usize>> {
        // Each critical section is one map update: a poisoned lock still guards
        // valid counts.
        self.tcp_clients
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One open TCP connection counted against its client; dropping it frees the slot.
pub struct ClientConnection {
    guard: Arc<Guard>,
    key: ClientKey,
}

impl Drop for ClientConnection {
    fn drop(&mut self) {
        let mut clients = self.guard.lock_tcp_clients();
        if let Entry::Occupied(mut open) = clients.entry(self.key) {
            *open.get_mut() -= 1;
            if *open.get() == 0 {
                open.remove();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{self, Header};

    fn guard(limits: GuardLimits) -> (Arc<Guard>, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::default());
        (Arc::new(Guard::new(limits, Arc::clone(&metrics))), metrics)
    }

    fn limits() -> GuardLimits {
        GuardLimits::from_config(&Config::default())
    }

    fn ip(text: &str) -> IpAddr {
        text.parse()
            .unwrap_or_else(|error| panic!("{text}: {error}"))
    }

    /// A query for `a.test` A with an OPT record (payload 1232), ID 0x1234.
    fn query() -> Vec<u8> {
        let mut bytes = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
        bytes.extend_from_slice(b"\x01a\x04test\x00\x00\x01\x00\x01");
        bytes.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
        bytes
    }

    /// RCODE and the first EDE code of a reply we built.
    fn refusal(admission: Admission) -> (u8, u16) {
        let Admission::Reply(reply) = admission else {
            panic!("no reply: {admission:?}");
        };
        let header = Header::parse(&reply).unwrap_or_else(|| panic!("header"));
        let rcode = (header.flags & 0x000f) as u8;
        // EDE option: code 15, then length, then INFO-CODE (RFC 8914 §2).
        let at = reply
            .windows(2)
            .rposition(|pair| pair == wire::OPTION_EDE.to_be_bytes())
            .unwrap_or_else(|| panic!("no EDE in {reply:?}"));
        let code = u16::from_be_bytes([reply[at + 4], reply[at + 5]]);
        (rcode, code)
    }

    #[test]
    fn clients_outside_allow_are_refused_with_ede_18() {
        let mut limits = limits();
        limits.acl = Acl::new(Some(&["10.0.0.0/8"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"))]));
        let (guard, metrics) = guard(limits);
        let now = Instant::now();
        assert_eq!(guard.admit(&query(), ip("10.1.2.3"), now), Admission::Serve);
        assert_eq!(
            refusal(guard.admit(&query(), ip("192.0.2.1"), now)),
            (rcode::REFUSED, 18)
        );
        // Not a query (QR set; too short): dropped, still counted.
        let mut response = query();
        response[2] |= 0x80;
        assert_eq!(
            guard.admit(&response, ip("192.0.2.1"), now),
            Admission::Drop
        );
        assert_eq!(
            guard.admit(&[1, 2, 3], ip("192.0.2.1"), now),
            Admission::Drop
        );
        assert_eq!(metrics.queries_prohibited.get(), 3);
        assert_eq!(
            metrics.responses_by_rcode[usize::from(rcode::REFUSED)].get(),
            1
        );
    }

    #[test]
    fn the_default_serves_loopback_only() {
        let (guard, metrics) = guard(limits());
        let now = Instant::now();
        for client in ["127.0.0.1", "127.0.0.2", "::1", "::ffff:127.0.0.1"] {
            assert_eq!(guard.admit(&query(), ip(client), now), Admission::Serve);
        }
        assert_ne!(guard.admit(&query(), ip("10.0.0.1"), now), Admission::Serve);
        assert_eq!(metrics.queries_prohibited.get(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn clients_over_their_rate_are_refused_or_dropped() {
        let mut limits = limits();
        limits.acl = Acl::new(Some(&["0.0.0.0/0"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"))]));
        limits.rate = Some(RateLimits {
            qps: 1,
            burst: 2,
            clients: NonZeroUsize::MIN.saturating_add(7),
            loopback: false,
        });
        let (refusing, metrics) = guard(limits.clone());
        let now = Instant::now();
        let client = ip("192.0.2.1");
        assert_eq!(refusing.admit(&query(), client, now), Admission::Serve);
        assert_eq!(refusing.admit(&query(), client, now), Admission::Serve);
        assert_eq!(
            refusal(refusing.admit(&query(), client, now)),
            (rcode::REFUSED, 0)
        );
        // Another client is unaffected; loopback is exempt by default.
        assert_eq!(
            refusing.admit(&query(), ip("192.0.2.2"), now),
            Admission::Serve
        );
        assert_eq!(metrics.rate_limited.get(), 1);

        limits.rate_action = RateLimitAction::Drop;
        let (dropping, metrics) = guard(limits);
        for _ in 0..2 {
            assert_eq!(dropping.admit(&query(), client, now), Admission::Serve);
        }
        assert_eq!(dropping.admit(&query(), client, now), Admission::Drop);
        assert_eq!(metrics.rate_limited.get(), 1);
    }

    #[test]
    fn udp_size_limit() {
        let (guard, metrics) = guard(limits());
        let (now, client) = (Instant::now(), ip("127.0.0.1"));
        let mut longest = query();
        longest.resize(1232, 0);
        assert_eq!(
            guard.admit_udp(&longest, client, now),
            Some(Admission::Serve)
        );
        longest.push(0);
        assert_eq!(guard.admit_udp(&longest, client, now), None);
        assert_eq!(metrics.udp_oversized.get(), 1);
    }

    #[test]
    fn tcp_connections_per_client() {
        let mut limits = limits();
        limits.tcp_connections_per_client = 2;
        let (guard, metrics) = guard(limits);
        let first = guard.tcp_connection(ip("127.0.0.1"));
        let second = guard.tcp_connection(ip("::ffff:127.0.0.1"));
        assert!(first.is_some() && second.is_some());
        assert!(guard.tcp_connection(ip("127.0.0.1")).is_none());
        assert!(guard.tcp_connection(ip("127.0.0.2")).is_some());
        // Two addresses of one IPv6 /64 are one client.
        let v6 = guard.tcp_connection(ip("2001:db8::1"));
        let v6_again = guard.tcp_connection(ip("2001:db8::2"));
        assert!(v6.is_some() && v6_again.is_some());
        assert!(guard.tcp_connection(ip("2001:db8::3")).is_none());
        assert_eq!(metrics.tcp_client_connections_refused.get(), 2);
        drop(first);
        let third = guard.tcp_connection(ip("127.0.0.1"));
        assert!(third.is_some());
        drop((second, third, v6, v6_again));
        assert!(guard.lock_tcp_clients().is_empty());
    }
}
