//! glibc itself as the client: `getent ahosts` inside a private mount namespace
//! whose /etc/resolv.conf names punctual on 127.0.0.32:53, so the machine's own
//! resolver is never asked. Needs root (port 53, `unshare -m`); under CI=true
//! it fails rather than skips when it cannot run.

mod common;

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use tokio::time::Instant;

use common::punctual::{TEST_DEADLINE, core_config, start_with};
use common::upstream::{Behavior, FakeUpstream};

const PUNCTUAL_IP: &str = "127.0.0.32";

fn can_run() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0");
    let tools = ["unshare", "getent", "mount", "timeout"]
        .iter()
        .all(|tool| {
            Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .is_ok_and(|o| o.status.success())
        });
    if root && tools {
        return true;
    }
    assert!(
        std::env::var("CI").is_err(),
        "CI=true but the glibc test cannot run (root: {root}, unshare/getent/mount/timeout present: {tools})"
    );
    eprintln!("skipping: needs root and unshare/getent (this is an error under CI=true)");
    false
}

/// Runs `getent ahosts NAME` with glibc pointed at punctual only.
/// Returns (exit code, stdout, elapsed).
fn getent_ahosts(name: &str) -> (Option<i32>, String, Duration) {
    let dir: PathBuf =
        std::env::temp_dir().join(format!("punctual-glibc-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let resolv = dir.join("resolv.conf");
    let nsswitch = dir.join("nsswitch.conf");
    // glibc's defaults written out: 5 s per try, 2 attempts. Alone against a
    // silent server it would wait 10 s.
    std::fs::write(
        &resolv,
        format!("nameserver {PUNCTUAL_IP}\noptions timeout:5 attempts:2\n"),
    )
    .expect("write resolv.conf");
    std::fs::write(&nsswitch, "hosts: files dns\n").expect("write nsswitch.conf");
    let script = format!(
        "mount --bind {} /etc/resolv.conf && mount --bind {} /etc/nsswitch.conf && exec getent ahosts {name}",
        resolv.display(),
        nsswitch.display()
    );
    let start = Instant::now();
    let output = Command::new("timeout")
        .args([
            "20",
            "unshare",
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
        ])
        .output()
        .expect("run unshare");
    let elapsed = start.elapsed();
    let _ = std::fs::remove_dir_all(&dir);
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        elapsed,
    )
}

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

    let (code, stdout, _) = tokio::task::spawn_blocking(|| getent_ahosts("svc.glibc.test"))
        .await
        .expect("join");
    assert_eq!(code, Some(0), "getent failed: {stdout}");
    assert!(stdout.contains("192.0.2.10"), "{stdout}");
    assert!(stdout.contains("2001:db8::10"), "{stdout}");

    upstream.set_behavior(Behavior::Hang);
    let (code, stdout, elapsed) = tokio::task::spawn_blocking(|| getent_ahosts("hung.glibc.test"))
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
