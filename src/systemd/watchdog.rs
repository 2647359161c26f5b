//! The service watchdog (sd_watchdog_enabled(3), sd_notify(3) `WATCHDOG=1`):
//! when `WATCHDOG_USEC` is set, and `WATCHDOG_PID` is unset or names this
//! process, a task pings every half of that interval, but only after a
//! self-test passes: a fixed `localhost` query answered by the local-answer
//! path, and the cache and in-flight locks taken once. A runtime that no longer
//! schedules the task, or a lock that is never released, stops the pings, and
//! the service manager restarts punctual instead of leaving every lookup on the
//! host to time out.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior, interval};

use crate::handler::Resolver;
use crate::query::{ClientQuery, rcode};
use crate::wire::{CLASSIC_UDP_PAYLOAD, Header};

/// A query for `localhost. IN A`, ID 0x5d09, RD: RFC 6761 §6.3 has punctual
/// answer it itself, whatever the config says.
const SELF_TEST_QUERY: [u8; 27] = [
    0x5d, 0x09, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, // header, QDCOUNT 1
    9, b'l', b'o', b'c', b'a', b'l', b'h', b'o', b's', b't', 0, // localhost.
    0, 1, 0, 1, // A, IN
];

/// The ping interval: half of `WATCHDOG_USEC`, when the watchdog is meant for
/// this process (`WATCHDOG_PID` unset or equal to `pid`) and the value is a
/// positive number of microseconds.
pub fn ping_interval(usec: Option<&str>, watchdog_pid: Option<&str>, pid: u32) -> Option<Duration> {
    if watchdog_pid.is_some_and(|value| value.trim().parse::<u32>() != Ok(pid)) {
        return None;
    }
    let usec: u64 = usec?.trim().parse().ok().filter(|usec| *usec > 0)?;
    Some(Duration::from_micros(usec) / 2)
}

/// [`ping_interval`] for this process's environment.
pub fn ping_interval_from_env() -> Option<Duration> {
    ping_interval(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    )
}

/// Whether the resolver can still answer: the local path answers the fixed
/// query NOERROR, and the cache and in-flight locks can be taken.
pub fn self_test(resolver: &Resolver) -> bool {
    let Ok(query) = ClientQuery::parse(&SELF_TEST_QUERY) else {
        return false;
    };
    let answered = resolver
        .local()
        .answer(&query, CLASSIC_UDP_PAYLOAD)
        .and_then(|reply| Header::parse(&reply))
        .is_some_and(|header| header.rcode() == rcode::NOERROR);
    // Both take a std Mutex: a deadlocked one never returns, and the pings stop.
    let _ = resolver.cache_len();
    let _ = resolver.inflight();
    answered
}

/// Pings every `every` while [`self_test`] passes; runs until aborted. A tick
/// that comes late (the runtime was starved) is logged, then pinged: the
/// runtime is scheduling again.
pub async fn run(every: Duration, resolver: Arc<Resolver>) {
    let mut ticks = interval(every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let scheduled = ticks.tick().await;
        let late = Instant::now().saturating_duration_since(scheduled);
        if late > every / 2 {
            tracing::warn!(?late, "watchdog tick late: the runtime was starved");
        }
        if self_test(&resolver) {
            super::notify::watchdog();
        } else {
            tracing::error!("watchdog self-test failed; not pinging the service manager");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_at_half_the_interval_for_this_process_only() {
        let half = Some(Duration::from_millis(100));
        assert_eq!(ping_interval(Some("200000"), None, 7), half);
        assert_eq!(ping_interval(Some("200000"), Some("7"), 7), half);
        assert_eq!(ping_interval(Some("200000"), Some("8"), 7), None);
        assert_eq!(ping_interval(Some("200000"), Some("x"), 7), None);
        assert_eq!(ping_interval(None, None, 7), None);
        assert_eq!(ping_interval(Some("0"), None, 7), None);
        assert_eq!(ping_interval(Some("soon"), None, 7), None);
    }

    #[test]
    fn the_self_test_query_is_a_valid_localhost_query() {
        let query = ClientQuery::parse(&SELF_TEST_QUERY).expect("parses");
        assert_eq!(query.key.qtype, 1);
        assert_eq!(&query.key.name[..], b"\x09localhost\x00");
    }
}
