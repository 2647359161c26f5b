//! glibc as a test client: `getent ahosts` inside a private mount namespace
//! (`unshare -m`) whose /etc/resolv.conf and /etc/nsswitch.conf are bind-mounted
//! from a temp dir and name only the punctual under test, so no lookup can
//! reach the machine's own resolver. Needs root; under CI=true a machine that
//! cannot run it fails the test instead of skipping it.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use tokio::time::Instant;

/// Whether this machine can run glibc tests; panics under CI=true if not.
pub fn can_run() -> bool {
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

/// What `getent ahosts` did.
pub struct Getent {
    /// 0 found, 2 not found (EAI_AGAIN included).
    pub code: Option<i32>,
    pub stdout: String,
    pub elapsed: Duration,
}

/// Runs `getent ahosts NAME` with glibc pointed at `nameserver` only, with
/// glibc's defaults written out (5 s per try, 2 attempts: alone against a
/// silent server it would wait 10 s). Blocking: call from `spawn_blocking`.
pub fn getent_ahosts(nameserver: &str, name: &str) -> Getent {
    let dir: PathBuf = std::env::temp_dir().join(format!(
        "punctual-glibc-{}-{nameserver}-{name}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let resolv = dir.join("resolv.conf");
    let nsswitch = dir.join("nsswitch.conf");
    std::fs::write(
        &resolv,
        format!("nameserver {nameserver}\noptions timeout:5 attempts:2\n"),
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
        .args(["20", "unshare", "-m", "--propagation", "private"])
        .args(["sh", "-c", &script])
        .output()
        .expect("run unshare");
    let elapsed = start.elapsed();
    let _ = std::fs::remove_dir_all(&dir);
    Getent {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        elapsed,
    }
}
