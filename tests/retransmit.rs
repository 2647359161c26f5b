//! Upstream retransmission, as the upstream sees it: with the ordered strategy
//! an attempt goes out at once, and while the upstream stays silent the next
//! follows after attempt_timeout, the wait doubling each time
//! (src/upstream/mod.rs `exchange_until` and `turn`). Every attempt comes from a
//! fresh connected socket on an OS-chosen port with a fresh random ID (RFC 5452
//! §9.2), and none goes out once the client's deadline has passed.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::punctual::{core_config, start_with};
use common::*;
use hickory_proto::op::ResponseCode;
use tokio::time::{Instant, sleep_until};

/// Wall-clock slack either way on each measured time.
const MARGIN: Duration = Duration::from_millis(40);

fn assert_near(what: &str, got: Duration, want: Duration) {
    assert!(
        got + MARGIN >= want && got <= want + MARGIN,
        "{what}: {got:?}, want {want:?} ± {MARGIN:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_upstream_is_asked_again_after_attempt_timeout_doubling_from_fresh_ports_and_ids() {
    const NAME: &str = "silent.retransmit.test";
    let upstream = FakeUpstream::start(loopback(230)).await;
    upstream.set_behavior(Behavior::Hang);
    // test_config's schedule (ordered, attempt_timeout 100 ms, doubling): attempts
    // at 0, 100 and 300 ms, the next due at 700. Its 300 ms deadline falls on the
    // third attempt, which then races the lookup's cancellation (see
    // tests/deadline.rs); 400 ms puts that attempt clearly inside the deadline and
    // the fourth clearly after it, yet inside the lookup's own lifetime (two
    // deadlines, src/handler.rs), so only the cancellation keeps it from going out.
    // The failure cache is off so nothing but the lookup decides.
    let deadline = Duration::from_millis(400);
    let mut config = core_config(&[upstream.addr()]);
    config.limits.deadline = deadline;
    let attempt_timeout = config.limits.attempt_timeout;
    assert_eq!(attempt_timeout, Duration::from_millis(100));
    let server = start_with(config).await;

    let sent = Instant::now();
    let reply = ask(server.udp, NAME).await;
    assert_eq!(reply.message.response_code, ResponseCode::ServFail);
    assert_near("SERVFAIL after", reply.elapsed, deadline);
    // Past the fourth attempt's due time (700 ms) and the lookup's lifetime (800 ms).
    sleep_until(sent + 2 * deadline + MARGIN).await;

    let received = upstream.received();
    let offsets: Vec<Duration> = received.iter().map(|r| r.at - sent).collect();
    assert_eq!(
        received.len(),
        3,
        "attempts at 0, 100 and 300 ms, none after the deadline; got {offsets:?}"
    );
    assert!(received.iter().all(|r| r.transport == Transport::Udp));
    assert_near("first attempt", offsets[0], Duration::ZERO);
    assert_near(
        "first wait",
        received[1].at - received[0].at,
        attempt_timeout,
    );
    assert_near(
        "second wait (doubled)",
        received[2].at - received[1].at,
        2 * attempt_timeout,
    );
    // A socket per attempt: the earlier attempts' sockets are still open (each
    // waits for its reply until the lookup ends), so their ports cannot repeat.
    let ports: HashSet<u16> = received.iter().map(|r| r.source.port()).collect();
    assert_eq!(ports.len(), 3, "source ports of {received:?}");
    // A fresh random ID per attempt. Two of three random IDs may coincide
    // (3 in 65,536), all three only once in 2^32: a reused ID shows as one.
    let ids: HashSet<u16> = received.iter().map(|r| r.id).collect();
    assert!(ids.len() >= 2, "one ID for every attempt: {received:?}");
    server.stop().await;
}
