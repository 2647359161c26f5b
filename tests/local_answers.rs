//! Local answers over real sockets: special names (RFC 6761, RFC 6303, mDNS,
//! single labels), ANY (RFC 8482), hosts files (aliases, PTR, NODATA, edits
//! while running, bad lines) and static records are answered by punctual itself,
//! and the fake upstream sees no query for them; `[[forward]]` zones and
//! `forward_single_label` send names upstream again.
//!
//! Hosts files here are temporary files: the machine's /etc/hosts is never read.

mod common;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ::punctual::config::{Config, ForwardConfig, RecordKind, StaticRecordConfig};
use common::punctual::{start_with, test_config};
use common::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::PTR;
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::time::{Instant, sleep};

/// A hosts file in the temp directory, removed when dropped.
struct TempHosts(PathBuf);

impl TempHosts {
    fn new(test: &str, content: &str) -> TempHosts {
        let path =
            std::env::temp_dir().join(format!("punctual-hosts-{test}-{}", std::process::id()));
        std::fs::write(&path, content).expect("write hosts file");
        TempHosts(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempHosts {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn rcode(reply: &Reply) -> ResponseCode {
    reply.message.response_code
}

fn answer_data(reply: &Reply) -> Vec<String> {
    reply
        .message
        .answers
        .iter()
        .map(|record| record.data.to_string())
        .collect()
}

/// The owner of the SOA in the authority section, if there is one.
fn soa_zone(reply: &Reply) -> Option<String> {
    reply
        .message
        .authorities
        .iter()
        .find(|record| record.record_type() == RecordType::SOA)
        .map(|record| record.name.to_string())
}

fn reverse(ip: &str) -> String {
    Name::from(ip.parse::<IpAddr>().expect("test IP")).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn special_names_are_answered_locally() {
    let upstream = FakeUpstream::start(loopback(150)).await;
    let server = start_with(test_config(&[upstream.addr()])).await;
    let at = server.udp;

    for (name, qtype, ip) in [
        ("localhost", RecordType::A, "127.0.0.1"),
        ("LocalHost", RecordType::AAAA, "::1"),
        ("foo.localhost", RecordType::A, "127.0.0.1"),
        ("foo.localhost", RecordType::AAAA, "::1"),
    ] {
        let reply = ask_type(at, name, qtype).await;
        assert_answer(&reply, ip);
        assert!(reply.elapsed < AT_ONCE, "{name}: {:?}", reply.elapsed);
    }
    let mx = ask_type(at, "foo.localhost", RecordType::MX).await;
    assert_eq!(
        (rcode(&mx), mx.message.answers.len()),
        (ResponseCode::NoError, 0)
    );

    // RFC 6303: NXDOMAIN below the apex, NODATA at it, with the zone's SOA.
    let loopback6 = reverse("::1");
    for (name, expected, zone) in [
        (
            "1.0.0.10.in-addr.arpa",
            ResponseCode::NXDomain,
            "10.in-addr.arpa.",
        ),
        (
            "1.0.168.192.in-addr.arpa",
            ResponseCode::NXDomain,
            "168.192.in-addr.arpa.",
        ),
        (
            "9.9.20.172.in-addr.arpa",
            ResponseCode::NXDomain,
            "20.172.in-addr.arpa.",
        ),
        (
            "1.0.100.100.in-addr.arpa",
            ResponseCode::NXDomain,
            "100.100.in-addr.arpa.",
        ),
        (
            &reverse("fe80::1"),
            ResponseCode::NXDomain,
            "8.e.f.ip6.arpa.",
        ),
        (&reverse("fd12::1"), ResponseCode::NXDomain, "d.f.ip6.arpa."),
        (&loopback6, ResponseCode::NoError, &loopback6),
    ] {
        let reply = ask_type(at, name, RecordType::PTR).await;
        assert_eq!(rcode(&reply), expected, "{name}");
        assert!(reply.message.answers.is_empty(), "{name}");
        assert_eq!(soa_zone(&reply).as_deref(), Some(zone), "{name}");
        let soa = &reply.message.authorities[0];
        assert_eq!(soa.ttl, 10_800, "{name}");
        assert_eq!(
            soa.data.to_string(),
            format!("{zone} nobody.invalid. 1 3600 1200 604800 10800")
        );
    }

    // RFC 6761 §6.4 invalid, RFC 6762 local, and single labels: NXDOMAIN.
    for name in ["invalid", "x.invalid", "x.local", "printer"] {
        let reply = ask(at, name).await;
        assert_eq!(rcode(&reply), ResponseCode::NXDomain, "{name}");
    }

    // RFC 8482 §4.2: ANY gets one HINFO "RFC8482" "".
    let any = ask_type(at, "www.example.test", RecordType::ANY).await;
    assert_eq!(rcode(&any), ResponseCode::NoError);
    assert_eq!(any.message.answers.len(), 1);
    let RData::HINFO(hinfo) = &any.message.answers[0].data else {
        panic!("not HINFO: {:?}", any.message)
    };
    assert_eq!((&*hinfo.cpu, &*hinfo.os), (&b"RFC8482"[..], &b""[..]));

    // Over TCP too, with the client's ID and letter case echoed.
    let opts = QueryOpts::default().with_id(0x4242);
    let tcp = query_tcp(server.tcp, "LOCALhost", RecordType::A, &opts, CLIENT_LIMIT)
        .await
        .expect("TCP answer");
    assert_answer(&tcp, "127.0.0.1");
    assert_eq!(tcp.message.queries[0].name().to_string(), "LOCALhost.");
    assert!(tcp.message.metadata.recursion_available);

    assert_eq!(upstream.queries(), 0, "nothing was forwarded");
    assert_eq!(server.stats.metrics().local_answers.get(), 18);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_zones_and_forward_single_label_send_names_upstream() {
    let default = FakeUpstream::start(loopback(151)).await;
    let reverse_server = FakeUpstream::start(loopback(152)).await;
    let target = Name::from_ascii("router.home.test.").expect("name");
    reverse_server.add("1.1.168.192.in-addr.arpa", [RData::PTR(PTR(target))], 60);
    default.add_a("printer", "192.0.2.44", 60);

    let mut config = test_config(&[default.addr()]);
    config.forward = vec![ForwardConfig {
        zone: "168.192.in-addr.arpa".into(),
        servers: vec![reverse_server.addr().into()],
    }];
    config.local.forward_single_label = true;
    let server = start_with(config).await;

    let ptr = ask_type(server.udp, "1.1.168.192.in-addr.arpa", RecordType::PTR).await;
    assert_eq!(answer_data(&ptr), ["router.home.test."]);
    assert_eq!(
        reverse_server.queries(),
        1,
        "the forward zone's server answered"
    );
    // Other RFC 6303 zones are still answered locally.
    let private = ask_type(server.udp, "1.0.0.10.in-addr.arpa", RecordType::PTR).await;
    assert_eq!(rcode(&private), ResponseCode::NXDomain);
    assert_eq!(default.queries(), 0);

    assert_answer(&ask(server.udp, "printer").await, "192.0.2.44");
    assert_eq!(default.queries_for("printer"), 1);
    // The root is a normal name, forwarded.
    let _ = ask_type(server.udp, ".", RecordType::NS).await;
    assert_eq!(default.queries_for("."), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_is_forwarded_without_forward_single_label() {
    let upstream = FakeUpstream::start(loopback(153)).await;
    let server = start_with(test_config(&[upstream.addr()])).await;
    let _ = ask_type(server.udp, ".", RecordType::NS).await;
    assert_eq!(upstream.queries(), 1);
    server.stop().await;
}

fn hosts_config(upstream: &FakeUpstream, hosts: &TempHosts) -> Config {
    let mut config = test_config(&[upstream.addr()]);
    config.local.hosts_files = vec![hosts.path().to_path_buf()];
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_entries_aliases_ptr_and_nodata() {
    let upstream = FakeUpstream::start(loopback(154)).await;
    let hosts = TempHosts::new(
        "entries",
        "# test hosts\n\
         192.0.2.10\tnas.home.test  nas\tstorage # comment\n\
         2001:db8::10 nas.home.test\n\
         192.0.2.11 printer.home.test\n",
    );
    let server = start_with(hosts_config(&upstream, &hosts)).await;
    let at = server.udp;

    for name in ["nas.home.test", "NAS.Home.Test", "nas", "storage"] {
        assert_answer(&ask(at, name).await, "192.0.2.10");
    }
    assert_answer(
        &ask_type(at, "nas.home.test", RecordType::AAAA).await,
        "2001:db8::10",
    );
    let ptr = ask_type(at, &reverse("192.0.2.10"), RecordType::PTR).await;
    assert_eq!(answer_data(&ptr), ["nas.home.test."]);
    assert_eq!(ptr.message.answers[0].ttl, 0);
    let ptr6 = ask_type(at, &reverse("2001:db8::10"), RecordType::PTR).await;
    assert_eq!(answer_data(&ptr6), ["nas.home.test."]);
    // The rest of 2.0.192.in-addr.arpa stays an RFC 6303 zone.
    let other = ask_type(at, &reverse("192.0.2.99"), RecordType::PTR).await;
    assert_eq!(rcode(&other), ResponseCode::NXDomain);

    // A name in hosts asked for another type: NODATA, not forwarded.
    for (name, qtype) in [
        ("printer.home.test", RecordType::AAAA),
        ("nas.home.test", RecordType::MX),
        ("nas", RecordType::TXT),
    ] {
        let reply = ask_type(at, name, qtype).await;
        assert_eq!(rcode(&reply), ResponseCode::NoError, "{name} {qtype}");
        assert!(reply.message.answers.is_empty(), "{name} {qtype}");
    }
    assert_eq!(upstream.queries(), 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_file_edits_are_answered_within_two_seconds() {
    let upstream = FakeUpstream::start(loopback(155)).await;
    upstream.add_a("after.home.test", "198.51.100.1", 60);
    let hosts = TempHosts::new("edit", "192.0.2.20 before.home.test\n");
    let server = start_with(hosts_config(&upstream, &hosts)).await;
    let at = server.udp;
    assert_answer(&ask(at, "before.home.test").await, "192.0.2.20");
    assert_answer(&ask(at, "after.home.test").await, "198.51.100.1");

    std::fs::write(
        hosts.path(),
        "192.0.2.20 before.home.test\n\
         192.0.2.300 bad.home.test\n\
         192.0.2.22\n\
         192.0.2.23 bad/name.home.test\n\
         192.0.2.21 after.home.test\n",
    )
    .expect("rewrite hosts");
    let changed = Instant::now();
    loop {
        let reply = ask(at, "after.home.test").await;
        if answer_ips(&reply.message) == ["192.0.2.21".parse::<IpAddr>().expect("ip")] {
            break;
        }
        assert!(
            changed.elapsed() < Duration::from_millis(2500),
            "hosts edit not in use after {:?}",
            changed.elapsed()
        );
        sleep(Duration::from_millis(50)).await;
    }
    // The good lines around the bad ones are all in use.
    assert_answer(&ask(at, "before.home.test").await, "192.0.2.20");
    let bad = ask(at, "bad.home.test").await;
    assert_eq!(rcode(&bad), ResponseCode::NXDomain);
    assert_eq!(
        upstream.queries_for("bad.home.test"),
        1,
        "not in the table: forwarded"
    );

    // A file that disappears keeps the table in use.
    std::fs::remove_file(hosts.path()).expect("remove hosts");
    sleep(Duration::from_millis(1500)).await;
    assert_answer(&ask(at, "after.home.test").await, "192.0.2.21");
    server.stop().await;
}

fn record(name: &str, kind: RecordKind, value: &str) -> StaticRecordConfig {
    StaticRecordConfig {
        name: name.into(),
        kind,
        value: value.into(),
        ttl: Duration::from_secs(300),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_records_of_every_type() {
    let upstream = FakeUpstream::start(loopback(156)).await;
    let hosts = TempHosts::new("static", "192.0.2.99 nas.home.test\n");
    let mut config = hosts_config(&upstream, &hosts);
    config.local.records = vec![
        record("nas.home.test", RecordKind::A, "192.0.2.7"),
        record("nas.home.test", RecordKind::Aaaa, "2001:db8::7"),
        record("www.home.test", RecordKind::Cname, "nas.home.test."),
        record("home.test", RecordKind::Txt, "v=spf1 -all"),
        record("home.test", RecordKind::Mx, "10 mail.home.test."),
        record("7.2.0.192.in-addr.arpa", RecordKind::Ptr, "nas.home.test."),
        record(
            "_sip._udp.home.test",
            RecordKind::Srv,
            "0 5 5060 sip.home.test.",
        ),
        record("big.home.test", RecordKind::Txt, &"x".repeat(700)),
    ];
    let server = start_with(config).await;
    let at = server.udp;

    // Static records win over the hosts file's entry for the same name.
    assert_answer(&ask(at, "nas.home.test").await, "192.0.2.7");
    for (name, qtype, expected) in [
        ("nas.home.test", RecordType::AAAA, vec!["2001:db8::7"]),
        (
            "www.home.test",
            RecordType::A,
            vec!["nas.home.test.", "192.0.2.7"],
        ),
        ("www.home.test", RecordType::CNAME, vec!["nas.home.test."]),
        ("www.home.test", RecordType::MX, vec!["nas.home.test."]),
        ("home.test", RecordType::TXT, vec!["v=spf1 -all"]),
        ("home.test", RecordType::MX, vec!["10 mail.home.test."]),
        (
            "7.2.0.192.in-addr.arpa",
            RecordType::PTR,
            vec!["nas.home.test."],
        ),
        (
            "_sip._udp.home.test",
            RecordType::SRV,
            vec!["0 5 5060 sip.home.test."],
        ),
        ("home.test", RecordType::A, vec![]),
    ] {
        let reply = ask_type(at, name, qtype).await;
        assert_eq!(rcode(&reply), ResponseCode::NoError, "{name} {qtype}");
        assert_eq!(answer_data(&reply), expected, "{name} {qtype}");
    }
    let ttl = ask_type(at, "home.test", RecordType::TXT)
        .await
        .message
        .answers[0]
        .ttl;
    assert_eq!(ttl, 300);

    // Too big for a client without EDNS: TC=1 over UDP, whole over TCP.
    let opts = QueryOpts::default();
    let udp = query_udp(at, "big.home.test", RecordType::TXT, &opts, CLIENT_LIMIT)
        .await
        .expect("UDP answer");
    assert!(udp.message.metadata.truncation);
    assert!(udp.message.answers.is_empty());
    let tcp = query_tcp(
        server.tcp,
        "big.home.test",
        RecordType::TXT,
        &opts,
        CLIENT_LIMIT,
    )
    .await
    .expect("TCP answer");
    assert_eq!(tcp.message.answers.len(), 1);

    assert_eq!(upstream.queries(), 0);
    server.stop().await;
}

#[test]
fn bad_static_record_is_a_config_error_with_its_line() {
    let text = "[local]\nhosts_files = []\n\n[[local.records]]\nname = \"mail.test\"\ntype = \"MX\"\nvalue = \"mail.test.\"\n";
    let error = Config::from_toml(text, Path::new("punctual.toml")).expect_err("bad MX");
    assert_eq!(
        error.to_string(),
        "punctual.toml:7: local.records[0].value: invalid MX value \"mail.test.\": expected \
         \"preference exchange\", such as \"10 mail.example.\""
    );
}
