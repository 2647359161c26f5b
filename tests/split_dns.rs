//! Split DNS: `[[forward]]` zones send their names (and names below them) to
//! their own servers, the longest matching zone winning; everything else goes
//! to `[upstream]`. Reverse zones work the same way (PTR).

mod common;

use std::net::IpAddr;
use std::time::Duration;

use ::punctual::config::ForwardConfig;
use common::punctual::{start_with, test_config};
use common::*;
use hickory_proto::rr::rdata::PTR;
use hickory_proto::rr::{Name, RData, RecordType};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_zones_route_by_longest_suffix() {
    let default = FakeUpstream::start(loopback(244)).await;
    let corp = FakeUpstream::start(loopback(245)).await;
    let lab = FakeUpstream::start(loopback(246)).await;
    for (upstream, address) in [
        (&default, "192.0.2.1"),
        (&corp, "10.0.0.1"),
        (&lab, "10.9.0.1"),
    ] {
        for name in [
            "www.corp.test",
            "a.b.corp.test",
            "host.lab.corp.test",
            "www.other.test",
            "notcorp.test",
        ] {
            upstream.add_a(name, address, 60);
        }
    }
    let ptr_target = Name::from_ascii("printer.corp.test.").expect("name");
    corp.add("5.0.0.10.in-addr.arpa", [RData::PTR(PTR(ptr_target))], 60);

    let mut config = test_config(&[default.addr()]);
    config.forward = vec![
        ForwardConfig {
            zone: "corp.test".into(),
            servers: vec![corp.addr().into()],
        },
        ForwardConfig {
            zone: "lab.corp.test".into(),
            servers: vec![lab.addr().into()],
        },
        ForwardConfig {
            zone: "10.in-addr.arpa".into(),
            servers: vec![corp.addr().into()],
        },
    ];
    let server = start_with(config).await;
    let opts = QueryOpts::default();
    let limit = Duration::from_secs(1);
    for (name, expected) in [
        ("www.corp.test", "10.0.0.1"),
        ("A.B.CORP.test", "10.0.0.1"),
        ("host.lab.corp.test", "10.9.0.1"),
        ("www.other.test", "192.0.2.1"),
        ("notcorp.test", "192.0.2.1"),
    ] {
        let reply = query_udp(server.udp, name, RecordType::A, &opts, limit)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let ip: IpAddr = expected.parse().expect("ip");
        assert_eq!(answer_ips(&reply.message), vec![ip], "{name}");
    }
    let reply = query_udp(
        server.udp,
        "5.0.0.10.in-addr.arpa",
        RecordType::PTR,
        &opts,
        limit,
    )
    .await
    .expect("PTR answer");
    assert_eq!(
        reply.message.answers.len(),
        1,
        "PTR from the reverse zone's server"
    );
    assert_eq!(
        (corp.queries(), lab.queries(), default.queries()),
        (3, 1, 2)
    );
    server.stop().await;
}
