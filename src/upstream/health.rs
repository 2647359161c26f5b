//! What punctual knows about one upstream: its smoothed round-trip time and
//! variance (RFC 6298 §2, the TCP retransmission timer, applied per server),
//! the retransmission timeout derived from them, and whether it is down.
//!
//! Down is a hint, never a verdict: consecutive timeouts mark a server down
//! for an exponentially growing period, which only moves it to the back of the
//! order; queries still reach it when nothing better is up (at most
//! `max_inflight_down` lookups at a time when every server is down), probes
//! still reach it, and one answer restores it at once (unbound's 15-minute memory of a dead
//! server is what this avoids).

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// RFC 6298 §2: clock granularity G in RTO = SRTT + max(G, 4·RTTVAR).
const GRANULARITY: Duration = Duration::from_millis(10);
/// The RTO never goes below this, so jitter on a fast loopback upstream does
/// not turn into a hedge on every query.
pub const MIN_RTO: Duration = Duration::from_millis(50);
/// Consecutive timeouts after which a server is considered down.
const DOWN_AFTER: u32 = 3;
/// The first down period; it doubles with every further timeout.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
pub struct Health {
    state: Mutex<State>,
}

#[derive(Debug, Default, Clone, Copy)]
struct State {
    srtt: Option<Duration>,
    rttvar: Duration,
    consecutive_timeouts: u32,
    down_until: Option<Instant>,
}

/// A copy of a server's state for ordering and reporting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    pub srtt: Option<Duration>,
    pub down: bool,
}

impl Health {
    /// Records an answer that took `rtt`: updates SRTT/RTTVAR (RFC 6298 §2.2,
    /// §2.3) and clears any down state.
    pub fn answered(&self, rtt: Duration) {
        let mut state = self.lock();
        match state.srtt {
            None => {
                state.srtt = Some(rtt);
                state.rttvar = rtt / 2;
            }
            Some(srtt) => {
                let deviation = srtt.abs_diff(rtt);
                state.rttvar = state.rttvar * 3 / 4 + deviation / 4;
                state.srtt = Some(srtt * 7 / 8 + rtt / 8);
            }
        }
        state.consecutive_timeouts = 0;
        state.down_until = None;
    }

    /// Records that an attempt got no answer within its RTO.
    pub fn timed_out(&self, now: Instant) {
        let mut state = self.lock();
        state.consecutive_timeouts = state.consecutive_timeouts.saturating_add(1);
        if state.consecutive_timeouts >= DOWN_AFTER {
            let doublings = (state.consecutive_timeouts - DOWN_AFTER).min(16);
            let backoff = (FIRST_BACKOFF * 2u32.pow(doublings)).min(MAX_BACKOFF);
            state.down_until = Some(now + backoff);
        }
    }

    /// The retransmission timeout: SRTT + max(G, 4·RTTVAR) (RFC 6298 §2.3),
    /// or `initial` before any measurement (§2.1), clamped to [50 ms, `max`].
    pub fn rto(&self, initial: Duration, max: Duration) -> Duration {
        let state = *self.lock();
        let rto = match state.srtt {
            None => initial,
            Some(srtt) => srtt + GRANULARITY.max(state.rttvar * 4),
        };
        rto.clamp(MIN_RTO, max.max(MIN_RTO))
    }

    pub fn snapshot(&self, now: Instant) -> Snapshot {
        let state = *self.lock();
        Snapshot {
            srtt: state.srtt,
            down: state.down_until.is_some_and(|until| until > now),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // State is plain numbers: a poisoned lock still holds a usable value.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INITIAL: Duration = Duration::from_millis(400);
    const MAX: Duration = Duration::from_secs(2);

    #[test]
    fn rto_follows_rfc_6298() {
        let health = Health::default();
        assert_eq!(health.rto(INITIAL, MAX), INITIAL);
        health.answered(Duration::from_millis(100));
        // SRTT 100, RTTVAR 50: RTO = 100 + 4·50.
        assert_eq!(health.rto(INITIAL, MAX), Duration::from_millis(300));
        health.answered(Duration::from_millis(100));
        // RTTVAR = 3/4·50 + 1/4·0 = 37.5; SRTT stays 100: RTO = 250.
        assert_eq!(health.rto(INITIAL, MAX), Duration::from_micros(250_000));
        // Clamped to [50 ms, max].
        let fast = Health::default();
        for _ in 0..50 {
            fast.answered(Duration::from_micros(100));
        }
        assert_eq!(fast.rto(INITIAL, MAX), MIN_RTO);
        let slow = Health::default();
        slow.answered(Duration::from_secs(5));
        assert_eq!(slow.rto(INITIAL, MAX), MAX);
    }

    #[tokio::test(start_paused = true)]
    async fn down_after_consecutive_timeouts_with_backoff_and_one_answer_restores() {
        let health = Health::default();
        let now = Instant::now();
        health.timed_out(now);
        health.timed_out(now);
        assert!(!health.snapshot(now).down);
        health.timed_out(now);
        assert!(health.snapshot(now).down);
        assert!(!health.snapshot(now + FIRST_BACKOFF).down, "1 s at first");
        health.timed_out(now);
        assert!(health.snapshot(now + FIRST_BACKOFF).down, "then 2 s");
        assert!(!health.snapshot(now + FIRST_BACKOFF * 2).down);
        health.answered(Duration::from_millis(20));
        assert!(!health.snapshot(now).down, "one answer restores it");
    }

    /// However long a server stays silent, it is tried again within 60 s
    /// (`MAX_BACKOFF`) of its last timeout.
    #[tokio::test(start_paused = true)]
    async fn backoff_stops_doubling_at_its_cap() {
        const CAP: Duration = Duration::from_secs(60);
        let health = Health::default();
        let now = Instant::now();
        // 1, 2, 4, … 32 s, then 64 s capped to 60 s; far more timeouts must
        // not overflow the doubling either.
        for _ in 0..DOWN_AFTER + 6 {
            health.timed_out(now);
        }
        assert!(health.snapshot(now + Duration::from_secs(32)).down);
        assert!(health.snapshot(now + CAP - Duration::from_millis(1)).down);
        assert!(!health.snapshot(now + CAP).down, "capped at 60 s");
        for _ in 0..1_000 {
            health.timed_out(now);
        }
        assert!(!health.snapshot(now + CAP).down, "still 60 s");
    }
}
