//! glibc itself as the client: `getent ahosts` inside a private mount namespace
//! whose /etc/resolv.conf names punctual on 127.0.0.32:53, so the machine's own
//! resolver is never asked. Needs root (port 53, `unshare -m`); under CI=true
//! it fails rather than skips when it cannot run.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::glibc::{Getent, can_run, getent_ahosts};
use common::punctual::{TEST_DEADLINE, core_config, start_with};
use common::upstream::{Behavior, FakeUpstream};

const PUNCTUAL_IP: &str = "127.0.0.32";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn getent_gets_the_upstream_addresses_and_fails_fast_when_it_hangs() {
    if !can_run() {
        return;
    }
    let upstream = FakeUpstream::start("127.0.0.31".parse::<IpAddr>().expect("ip")).await;
    upstream.add_a("svc.glibc.test", "192.0.2.10", 60);
    upstream.add_aaaa("svc.glibc.test", "2001:db8::10", 60);
    // The core behaviour (two deadlines for glibc's SERVFAIL-and-retry): the
    // failure cache that shortens it is tested in glibc_outage.rs.
    let mut config = core_config(&[upstream.addr()]);
    config.listen.addresses = vec![format!("{PUNCTUAL_IP}:53").parse().expect("addr")];
    let server = start_with(config).await;

    let Getent { code, stdout, .. } =
        tokio::task::spawn_blocking(|| getent_ahosts(PUNCTUAL_IP, "svc.glibc.test"))
            .await
            .expect("join");
    assert_eq!(code, Some(0), "getent failed: {stdout}");
    assert!(stdout.contains("192.0.2.10"), "{stdout}");
    assert!(stdout.contains("2001:db8::10"), "{stdout}");

    upstream.set_behavior(Behavior::Hang);
    let Getent {
        code,
        stdout,
        elapsed,
    } = tokio::task::spawn_blocking(|| getent_ahosts(PUNCTUAL_IP, "hung.glibc.test"))
        .await
        .expect("join");
    // getent exits 2 when the name is not found (EAI_AGAIN included).
    assert_eq!(code, Some(2), "expected a failure, got: {stdout}");
    // glibc answers a SERVFAIL by retrying the A/AAAA pair once: two deadlines.
    let bound = TEST_DEADLINE * 2 + Duration::from_millis(500);
    assert!(elapsed < bound, "getent took {elapsed:?}, bound {bound:?}");
    assert_eq!(server.stats.inflight().lookups, 0);
    server.stop().await;
}
