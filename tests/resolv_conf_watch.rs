//! Upstreams from a watched resolv.conf: punctual started with `[upstream]
//! servers = []` follows the file. Rewriting it switches to the new server
//! within 2 s (queries keep being answered meanwhile); a file that names only
//! punctual itself, or cannot be read, keeps the servers in use. Upstreams
//! listen on port 53 (a resolv.conf has no ports), so this needs root like the
//! glibc tests, and fails rather than skips under CI=true.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::glibc::can_run;
use common::punctual::{start_with, test_config};
use common::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use tokio::time::{Instant, sleep};

fn resolv_conf_path() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("punctual-watch-{}.conf", std::process::id()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewritten_resolv_conf_switches_upstreams_within_two_seconds() {
    if !can_run() {
        return;
    }
    let first_addr: SocketAddr = "127.0.0.242:53".parse().expect("addr");
    let second_addr: SocketAddr = "127.0.0.243:53".parse().expect("addr");
    let first = FakeUpstream::start_at(first_addr).await;
    let second = FakeUpstream::start_at(second_addr).await;
    for i in 0..40 {
        first.add_a(&format!("q{i}.watch.test"), "192.0.2.1", 60);
        second.add_a(&format!("q{i}.watch.test"), "192.0.2.2", 60);
    }
    let path = resolv_conf_path();
    std::fs::write(&path, "# written by the test\nnameserver 127.0.0.242\n").expect("write");
    let mut config = test_config(&[]);
    config.listen.addresses = vec!["127.0.0.241:53".parse().expect("addr")];
    config.upstream.resolv_conf = path.clone();
    let server = start_with(config).await;
    let opts = QueryOpts::default();
    let limit = Duration::from_secs(1);
    let ask = |i: usize| {
        let name = format!("q{i}.watch.test");
        let udp = server.udp;
        let opts = opts.clone();
        async move {
            let reply = query_udp(udp, &name, RecordType::A, &opts, limit)
                .await
                .expect("answered");
            answer_ips(&reply.message)
        }
    };
    assert_eq!(
        ask(0).await,
        vec!["192.0.2.1".parse::<std::net::IpAddr>().expect("ip")]
    );

    // Names only punctual itself: ignored, the first server stays.
    std::fs::write(&path, "nameserver 127.0.0.241\n").expect("rewrite");
    sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        ask(1).await,
        vec!["192.0.2.1".parse::<std::net::IpAddr>().expect("ip")]
    );

    // A real change is in use within 2 s; every query meanwhile is answered,
    // including a steady load of new names (misses) from four clients.
    let stop_load = tokio_util::sync::CancellationToken::new();
    let mut load = tokio::task::JoinSet::new();
    for client in 0..4 {
        let (udp, stop) = (server.udp, stop_load.clone());
        load.spawn(async move {
            let (mut answered, mut failed) = (0usize, Vec::new());
            let opts = QueryOpts::default();
            for n in 0.. {
                if stop.is_cancelled() {
                    break;
                }
                let name = format!("load{client}-{n}.watch.test");
                match query_udp(udp, &name, RecordType::A, &opts, Duration::from_secs(1)).await {
                    // The fakes know no such name: NXDOMAIN is their answer.
                    Ok(reply) if reply.message.response_code == ResponseCode::NXDomain => {
                        answered += 1;
                    }
                    Ok(reply) => failed.push(format!("{name}: {}", reply.message.response_code)),
                    Err(error) => failed.push(format!("{name}: {error}")),
                }
            }
            (answered, failed)
        });
    }
    sleep(Duration::from_millis(300)).await;
    std::fs::write(&path, "nameserver 127.0.0.243\n").expect("rewrite");
    let changed = Instant::now();
    let mut i = 2;
    let switched = loop {
        let ips = ask(i).await;
        i += 1;
        assert_eq!(ips.len(), 1, "every query answered during the change");
        if ips[0].to_string() == "192.0.2.2" {
            break changed.elapsed();
        }
        assert!(
            changed.elapsed() < Duration::from_secs(2),
            "still the old upstream after 2 s"
        );
        sleep(Duration::from_millis(100)).await;
    };
    assert!(
        switched < Duration::from_secs(2),
        "switched after {switched:?}"
    );
    // From now on the load goes to the new upstream only.
    let (old_before, new_before) = (first.queries(), second.queries());
    sleep(Duration::from_millis(300)).await;
    stop_load.cancel();
    assert_eq!(
        first.queries(),
        old_before,
        "the old upstream is still asked"
    );
    assert!(
        second.queries() > new_before + 10,
        "the load reached the new upstream"
    );
    let mut answered = 0;
    while let Some(joined) = load.join_next().await {
        let (ok, failed) = joined.expect("load client");
        assert!(failed.is_empty(), "failed during the change: {failed:?}");
        answered += ok;
    }
    assert!(answered > 100, "only {answered} load queries answered");

    // A file that cannot be read keeps the servers in use.
    std::fs::remove_file(&path).expect("remove");
    sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        ask(39).await,
        vec!["192.0.2.2".parse::<std::net::IpAddr>().expect("ip")]
    );
    server.stop().await;
}
