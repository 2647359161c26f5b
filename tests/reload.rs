//! Reload (SIGHUP): a new config's upstreams, forward zones and local records
//! are used at once, under load, with no query lost; the cache and the
//! servers' state are kept; a config that does not validate changes nothing.

mod common;

use std::time::Duration;

use ::punctual::config::{RecordKind, StaticRecordConfig, UpstreamAddr};
use common::process::Punctual;
use common::punctual::{core_config, start_with};
use common::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep};
use tokio_util::sync::CancellationToken;

fn static_a(name: &str, ip: &str) -> StaticRecordConfig {
    StaticRecordConfig {
        name: name.to_owned(),
        kind: RecordKind::A,
        value: ip.to_owned(),
        ttl: Duration::from_secs(60),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_loses_nothing_keeps_the_cache_and_switches_upstreams() {
    let old = FakeUpstream::start(loopback(120)).await;
    let new = FakeUpstream::start(loopback(121)).await;
    old.add_a("cached.reload.test", "192.0.2.120", 300);
    let config = core_config(&[old.addr()]);
    let server = start_with(config.clone()).await;
    assert_answer(&ask(server.udp, "cached.reload.test").await, "192.0.2.120");

    // Four clients: the cached name and new names, as fast as answers come.
    let stop = CancellationToken::new();
    let mut load = JoinSet::new();
    for client in 0..4 {
        let (udp, stop) = (server.udp, stop.clone());
        load.spawn(async move {
            let (mut answered, mut failed) = (0usize, Vec::new());
            for n in 0.. {
                if stop.is_cancelled() {
                    break;
                }
                let name = if n % 2 == 0 {
                    "cached.reload.test".to_owned()
                } else {
                    format!("load{client}-{n}.reload.test")
                };
                match query_udp(udp, &name, RecordType::A, &edns(), CLIENT_LIMIT).await {
                    Ok(reply)
                        if matches!(
                            reply.message.response_code,
                            ResponseCode::NoError | ResponseCode::NXDomain
                        ) =>
                    {
                        answered += 1;
                    }
                    Ok(reply) => failed.push(format!("{name}: {}", reply.message.response_code)),
                    Err(error) => failed.push(format!("{name}: {error}")),
                }
            }
            (answered, failed)
        });
    }
    sleep(Duration::from_millis(200)).await;

    let mut next = config.clone();
    next.upstream.servers = vec![UpstreamAddr::udp(new.addr())];
    next.local.records = vec![static_a("static.reload.test", "192.0.2.99")];
    server
        .reloader
        .reload(next)
        .expect("the new config reloads");
    let reloaded = Instant::now();

    // A broken config is refused; the one in use goes on.
    let mut broken = config.clone();
    broken.limits.deadline = Duration::ZERO;
    assert!(server.reloader.reload(broken).is_err());

    sleep(Duration::from_millis(300)).await;
    let (old_after, new_after) = (old.queries(), new.queries());
    sleep(Duration::from_millis(200)).await;
    stop.cancel();
    let mut answered = 0;
    while let Some(joined) = load.join_next().await {
        let (ok, failed) = joined.expect("load client");
        assert!(failed.is_empty(), "lost during the reload: {failed:?}");
        answered += ok;
    }
    assert!(answered > 100, "only {answered} answered");
    assert_eq!(
        old.queries(),
        old_after,
        "the old upstream is no longer asked"
    );
    assert!(new.queries() > new_after, "the new upstream takes the load");
    assert_eq!(
        old.queries_for("cached.reload.test"),
        1,
        "the cache survived the reload"
    );
    assert_answer(&ask(server.udp, "static.reload.test").await, "192.0.2.99");
    assert!(reloaded.elapsed() < Duration::from_secs(2));
    server.stop().await;
}

/// The real binary: SIGHUP picks up an edited file; a broken file is logged
/// and the running config stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_file_and_a_broken_file_changes_nothing() {
    let upstream = FakeUpstream::start(loopback(122)).await;
    let path = std::env::temp_dir().join(format!("punctual-reload-{}.toml", std::process::id()));
    let base = format!(
        "[listen]\naddresses = [\"127.0.0.123:0\"]\n[upstream]\nservers = [\"{}\"]\n\
         [limits]\ndeadline = \"500ms\"\n[control]\naddress = \"\"\n[local]\nhosts_files = []\n",
        upstream.addr()
    );
    std::fs::write(&path, &base).expect("write config");
    let mut punctual = Punctual::spawn(["run", "--config", &path.display().to_string()]);
    let addr = punctual.udp_addr();

    std::fs::write(
        &path,
        format!("{base}\n[[local.records]]\nname = \"added.reload.test\"\ntype = \"A\"\nvalue = \"192.0.2.77\"\n"),
    )
    .expect("edit config");
    punctual.signal("-HUP");
    punctual.wait_for("config reloaded").expect("reload logged");
    assert_answer(&ask(addr, "added.reload.test").await, "192.0.2.77");

    std::fs::write(&path, "[limits]\ndeadline = \"forever\"\n").expect("break config");
    punctual.signal("-HUP");
    let failed = punctual.wait_for("reload failed").expect("failure logged");
    assert!(failed.contains("limits.deadline"), "{failed}");
    assert_answer(&ask(addr, "added.reload.test").await, "192.0.2.77");

    let status = punctual.terminate(Duration::from_secs(2));
    assert!(status.success(), "{status}");
    let _ = std::fs::remove_file(&path);
}
