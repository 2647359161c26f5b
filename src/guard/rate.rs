//! Per-client rate limiting: a token bucket per client, in a bounded table.
//!
//! A client is an IPv4 address or an IPv6 /64: one host usually holds a whole /64
//! (RFC 4291 section 2.5.1 interface identifiers, RFC 8981 temporary addresses),
//! so counting per IPv6 address would let it pick a fresh bucket per query.
//! The table keeps at most `clients` buckets; the least recently seen client is
//! forgotten first (and starts again with a full bucket if it comes back).
//!
//! Tokens are counted in billionths, so that `qps` tokens a second refill
//! exactly one billionth per nanosecond per query-per-second: no rounding drifts.

use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::{Mutex, MutexGuard};

use lru::LruCache;
use tokio::time::Instant;

/// Billionths of a token in one token.
const UNIT: u64 = 1_000_000_000;

/// Who shares a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientKey {
    V4(u32),
    /// The upper 64 bits of the address.
    V6(u64),
}

impl ClientKey {
    pub fn of(client: IpAddr) -> ClientKey {
        match client.to_canonical() {
            IpAddr::V4(v4) => ClientKey::V4(u32::from(v4)),
            IpAddr::V6(v6) => ClientKey::V6((u128::from(v6) >> 64) as u64),
        }
    }
}

/// The `[limits]` settings of rate limiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// Tokens added per second; at least 1.
    pub qps: u32,
    /// Bucket size; at least 1.
    pub burst: u32,
    /// Buckets kept at most.
    pub clients: NonZeroUsize,
    /// Whether loopback clients are limited too.
    pub loopback: bool,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Billionths of a token.
    tokens: u64,
    /// When `tokens` was last brought up to date.
    updated: Instant,
}

pub struct RateLimiter {
    qps: u64,
    /// `burst` tokens, in billionths.
    capacity: u64,
    loopback: bool,
    buckets: Mutex<LruCache<ClientKey, Bucket>>,
}

impl RateLimiter {
    pub fn new(limits: RateLimits) -> RateLimiter {
        RateLimiter {
            qps: u64::from(limits.qps.max(1)),
            capacity: u64::from(limits.burst.max(1)) * UNIT,
            loopback: limits.loopback,
            buckets: Mutex::new(LruCache::new(limits.clients)),
        }
    }

    /// Takes one token from `client`'s bucket at `now`; false when it has none.
    pub fn admit(&self, client: IpAddr, now: Instant) -> bool {
        if !self.loopback && client.to_canonical().is_loopback() {
            return true;
        }
        let capacity = self.capacity;
        let mut buckets = self.lock();
        let bucket = buckets.get_or_insert_mut(ClientKey::of(client), || Bucket {
            tokens: capacity,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_nanos();
        let refill = elapsed.saturating_mul(u128::from(self.qps));
        bucket.tokens = u64::try_from(u128::from(bucket.tokens).saturating_add(refill))
            .unwrap_or(u64::MAX)
            .min(capacity);
        bucket.updated = bucket.updated.max(now);
        match bucket.tokens.checked_sub(UNIT) {
            Some(left) => {
                bucket.tokens = left;
                true
            }
            None => false,
        }
    }

    /// Clients tracked now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> MutexGuard<'_, LruCache<ClientKey, Bucket>> {
        // Every critical section leaves the table consistent before anything that
        // could panic, so a poisoned lock still guards valid state.
        self.buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::time::Duration;

    use tokio::time::advance;

    use super::*;

    fn limiter(qps: u32, burst: u32, clients: usize, loopback: bool) -> RateLimiter {
        RateLimiter::new(RateLimits {
            qps,
            burst,
            clients: NonZeroUsize::new(clients).unwrap_or(NonZeroUsize::MIN),
            loopback,
        })
    }

    fn ip(text: &str) -> IpAddr {
        text.parse()
            .unwrap_or_else(|error| panic!("{text}: {error}"))
    }

    /// How many of `count` queries at the current instant get through.
    fn admitted(limiter: &RateLimiter, client: IpAddr, count: usize) -> usize {
        let now = Instant::now();
        (0..count).filter(|_| limiter.admit(client, now)).count()
    }

    #[tokio::test(start_paused = true)]
    async fn a_bucket_refills_exactly_at_its_rate() {
        let limiter = limiter(10, 5, 16, false);
        let client = ip("192.0.2.1");
        // A new client starts with a full bucket: the burst, then nothing.
        assert_eq!(admitted(&limiter, client, 8), 5);
        // 10 qps: one token every 100 ms, not a nanosecond sooner.
        advance(Duration::from_nanos(99_999_999)).await;
        assert_eq!(admitted(&limiter, client, 1), 0);
        advance(Duration::from_nanos(1)).await;
        assert_eq!(admitted(&limiter, client, 2), 1);
        // 250 ms: two tokens and half of a third, which the next 50 ms completes.
        advance(Duration::from_millis(250)).await;
        assert_eq!(admitted(&limiter, client, 3), 2);
        advance(Duration::from_millis(49)).await;
        assert_eq!(admitted(&limiter, client, 1), 0);
        advance(Duration::from_millis(1)).await;
        assert_eq!(admitted(&limiter, client, 1), 1);
        // A long pause refills to the burst, never beyond.
        advance(Duration::from_secs(3600)).await;
        assert_eq!(admitted(&limiter, client, 10), 5);
        // A steady 10 qps is admitted for a whole minute.
        for _ in 0..600 {
            advance(Duration::from_millis(100)).await;
            assert_eq!(admitted(&limiter, client, 1), 1);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn clients_have_their_own_buckets_and_a_v6_slash_64_shares_one() {
        let limiter = limiter(1, 2, 16, false);
        assert_eq!(admitted(&limiter, ip("192.0.2.1"), 3), 2);
        assert_eq!(admitted(&limiter, ip("192.0.2.2"), 3), 2);
        // Two addresses of one /64: one bucket between them.
        assert_eq!(admitted(&limiter, ip("2001:db8:1:2::1"), 1), 1);
        assert_eq!(admitted(&limiter, ip("2001:db8:1:2:ffff::9"), 2), 1);
        // The next /64 is another client.
        assert_eq!(admitted(&limiter, ip("2001:db8:1:3::1"), 3), 2);
        // An IPv4-mapped address is the IPv4 client.
        assert_eq!(admitted(&limiter, ip("::ffff:192.0.2.1"), 1), 0);
        assert_eq!(limiter.len(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn loopback_is_exempt_unless_asked() {
        let exempt = limiter(1, 1, 16, false);
        assert_eq!(admitted(&exempt, ip("127.0.0.1"), 50), 50);
        assert_eq!(admitted(&exempt, ip("::1"), 50), 50);
        assert_eq!(exempt.len(), 0);
        let limited = limiter(1, 1, 16, true);
        assert_eq!(admitted(&limited, ip("127.0.0.1"), 50), 1);
        assert_eq!(admitted(&limited, ip("::ffff:127.0.0.1"), 1), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_table_stays_within_its_bound() {
        const BOUND: usize = 1_000;
        let limiter = limiter(1, 1, BOUND, false);
        for n in 0..100_000u32 {
            let v4 = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n));
            assert!(limiter.admit(v4, Instant::now()));
            // A distinct /64 each time (the interface identifier stays the same).
            let v6 = IpAddr::V6(Ipv6Addr::from(
                (0x2001_0db8_u128 << 96) | (u128::from(n) << 64) | 1,
            ));
            assert!(limiter.admit(v6, Instant::now()));
            assert!(limiter.len() <= BOUND);
        }
        assert_eq!(limiter.len(), BOUND);
        // The most recent clients are still known (and so still limited); the
        // oldest were forgotten and start afresh.
        let last = IpAddr::V6(Ipv6Addr::from(
            (0x2001_0db8_u128 << 96) | (99_999u128 << 64) | 2,
        ));
        assert!(!limiter.admit(last, Instant::now()));
        assert!(limiter.admit(IpAddr::V4(Ipv4Addr::from(0x0a00_0000)), Instant::now()));
    }
}
