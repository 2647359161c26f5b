//! IPv6 end to end: punctual listening on [::1] (IPV6_V6ONLY, so it does not
//! also claim the IPv4 port) and asking an upstream on [::1], over UDP and TCP.

mod common;

use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use common::punctual::{start_with, test_config};
use common::*;
use hickory_proto::rr::RecordType;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolves_over_ipv6_listener_and_upstream() {
    let upstream = FakeUpstream::start(IpAddr::V6(Ipv6Addr::LOCALHOST)).await;
    upstream.add_aaaa("v6.test", "2001:db8::6", 60);
    let mut config = test_config(&[upstream.addr()]);
    config.listen.addresses = vec!["[::1]:0".parse().expect("v6 address")];
    let server = start_with(config).await;
    assert!(server.udp.is_ipv6() && server.udp.port() == server.tcp.port());

    let limit = Duration::from_secs(1);
    let opts = QueryOpts::default().with_edns(1232);
    let udp = query_udp(server.udp, "v6.test", RecordType::AAAA, &opts, limit)
        .await
        .expect("UDP answer over IPv6");
    assert_eq!(
        answer_ips(&udp.message),
        vec!["2001:db8::6".parse::<IpAddr>().expect("ip")]
    );
    let tcp = query_tcp(server.tcp, "v6.test", RecordType::AAAA, &opts, limit)
        .await
        .expect("TCP answer over IPv6");
    assert_eq!(answer_ips(&tcp.message), answer_ips(&udp.message));
    assert_eq!(upstream.queries(), 1, "the TCP query was a cache hit");

    // V6ONLY: the same port on IPv4 loopback is still free for someone else.
    std::net::UdpSocket::bind(("127.0.0.1", server.udp.port())).expect("IPv4 port not claimed");
    server.stop().await;
}
