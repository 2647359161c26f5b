//! glibc as the client during an upstream outage: `getent ahosts` inside a
//! private mount namespace whose /etc/resolv.conf names punctual on
//! 127.0.0.35:53 only. With the upstream hung and nothing cached, glibc's
//! immediate retry after the SERVFAIL is answered from the failure cache, so
//! getent fails after one deadline, not two; with a stale entry, getent gets the
//! stale address at `stale_answer_after`. Needs root (port 53, `unshare -m`);
//! under CI=true it fails rather than skips when it cannot run.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::sleep;

use common::glibc::{Getent, can_run, getent_ahosts};
use common::punctual::{TEST_DEADLINE, TestServer, start_with, test_config};
use common::upstream::{Behavior, FakeUpstream};

const PUNCTUAL_IP: &str = "127.0.0.35";
const UPSTREAM_IP: &str = "127.0.0.36";
/// The default `stale_answer_after`: 90% of the 300 ms test deadline.
const STALE_AFTER: Duration = Duration::from_millis(270);
/// What the issue allows on top of punctual's own timer for the whole getent
/// run: process start, namespace, mounts, glibc.
const GETENT_MARGIN: Duration = Duration::from_millis(200);

/// Both tests serve on 127.0.0.35:53, and punctual binds with SO_REUSEPORT:
/// two at once would share the port's queries. One at a time.
static PORT_53: Mutex<()> = Mutex::const_new(());

async fn getent(name: &'static str) -> (Option<i32>, String, Duration) {
    let Getent {
        code,
        stdout,
        elapsed,
    } = tokio::task::spawn_blocking(move || getent_ahosts(PUNCTUAL_IP, name))
        .await
        .expect("join getent");
    (code, stdout, elapsed)
}

async fn start_outage_pair() -> (FakeUpstream, TestServer) {
    let upstream = FakeUpstream::start(UPSTREAM_IP.parse::<IpAddr>().expect("ip")).await;
    let mut config = test_config(&[upstream.addr()]);
    config.listen.addresses = vec![format!("{PUNCTUAL_IP}:53").parse().expect("addr")];
    let server = start_with(config).await;
    (upstream, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_upstream_without_stale_fails_getent_within_one_deadline() {
    if !can_run() {
        return;
    }
    let _port = PORT_53.lock().await;
    let (upstream, server) = start_outage_pair().await;
    upstream.add_a("down.outage.test", "192.0.2.35", 60);
    upstream.set_behavior(Behavior::Hang);

    let (code, stdout, elapsed) = getent("down.outage.test.").await;
    // getent exits 2 when the name is not found (EAI_AGAIN included).
    assert_eq!(code, Some(2), "expected a failure, got: {stdout}");
    let bound = TEST_DEADLINE + GETENT_MARGIN;
    assert!(
        elapsed >= TEST_DEADLINE && elapsed < bound,
        "getent took {elapsed:?}, want [{TEST_DEADLINE:?}, {bound:?})"
    );
    let metrics = server.stats.metrics();
    // glibc asked A and AAAA, got SERVFAIL at the deadline and asked again at
    // once: the retries were answered from the failure cache.
    assert_eq!(
        metrics.cache_failure_hits.get(),
        2,
        "glibc's retry of the A/AAAA pair, from the failure cache"
    );
    assert_eq!(
        metrics.cache_misses.get(),
        2,
        "one miss each for A and AAAA"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_upstream_with_stale_entry_gives_getent_the_stale_address() {
    if !can_run() {
        return;
    }
    let _port = PORT_53.lock().await;
    let (upstream, server) = start_outage_pair().await;
    upstream.add_a("svc.outage.test", "192.0.2.36", 1);
    upstream.add_aaaa("svc.outage.test", "2001:db8::36", 1);

    let (code, stdout, _) = getent("svc.outage.test.").await;
    assert_eq!(code, Some(0), "getent failed: {stdout}");
    assert!(stdout.contains("192.0.2.36"), "{stdout}");
    assert!(stdout.contains("2001:db8::36"), "{stdout}");

    // Past the 1 s TTL (counted from punctual's receipt, before getent returned).
    sleep(Duration::from_millis(1100)).await;
    upstream.set_behavior(Behavior::Hang);
    let (code, stdout, elapsed) = getent("svc.outage.test.").await;
    assert_eq!(code, Some(0), "getent failed: {stdout}");
    assert!(stdout.contains("192.0.2.36"), "{stdout}");
    assert!(stdout.contains("2001:db8::36"), "{stdout}");
    let bound = STALE_AFTER + GETENT_MARGIN;
    assert!(
        elapsed >= STALE_AFTER && elapsed < bound,
        "getent took {elapsed:?}, want [{STALE_AFTER:?}, {bound:?})"
    );
    let metrics = server.stats.metrics();
    assert_eq!(metrics.stale_answers.get(), 2, "A and AAAA served stale");
    assert_eq!(metrics.cache_failure_hits.get(), 0);
    server.stop().await;
}
