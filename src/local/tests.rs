//! Unit tests for the order of local answers: static records over hosts over
//! special names, NODATA for other types, CNAME chasing, and the rendered bytes.

use std::path::Path;
use std::time::Duration;

use hickory_proto::op::{Edns, Message};

use super::*;
use crate::answer::tests::client_query;
use crate::config::{RecordKind, StaticRecordConfig};

fn key(text: &str, qtype: RecordType) -> Key {
    let name = name::parse(text).expect("valid name");
    Key {
        name: name::key(&name).into(),
        qtype: u16::from(qtype),
        qclass: CLASS_IN,
        dnssec_ok: false,
        checking_disabled: false,
    }
}

fn static_record(name: &str, kind: RecordKind, value: &str) -> StaticRecordConfig {
    StaticRecordConfig {
        name: name.into(),
        kind,
        value: value.into(),
        ttl: Duration::from_secs(60),
    }
}

fn answers() -> LocalAnswers {
    let mut config = Config::default();
    config.local.records = vec![
        static_record("nas.home.arpa", RecordKind::A, "192.0.2.7"),
        static_record("www.home.arpa", RecordKind::Cname, "nas.home.arpa"),
        static_record("alias.home.arpa", RecordKind::Cname, "printer"),
        static_record("loop.home.arpa", RecordKind::Cname, "loop.home.arpa"),
        static_record("localhost", RecordKind::Txt, "overridden"),
    ];
    let hosts = hosts::parse(
        "192.0.2.8 printer\n192.0.2.9 nas.home.arpa\n10.0.0.1 gw.corp\n",
        Path::new("hosts"),
    );
    LocalAnswers::new(
        &config,
        Arc::new(Hosts::new(hosts::table([hosts.as_slice()]))),
    )
}

fn data(answer: &LocalAnswer) -> Vec<String> {
    answer.answers.iter().map(|r| r.data.to_string()).collect()
}

#[test]
fn static_records_win_over_hosts_which_win_over_special_names() {
    let local = answers();
    let nas = local
        .lookup(&key("NAS.home.arpa", RecordType::A))
        .expect("local");
    assert_eq!(data(&nas), ["192.0.2.7"]);
    let printer = local.lookup(&key("printer", RecordType::A)).expect("hosts");
    assert_eq!(data(&printer), ["192.0.2.8"]);
    let txt = local
        .lookup(&key("localhost", RecordType::TXT))
        .expect("static");
    assert_eq!(data(&txt), ["overridden"]);
    let other = local
        .lookup(&key("other", RecordType::A))
        .expect("single label");
    assert_eq!((other.rcode, other.answers.len()), (rcode::NXDOMAIN, 0));
    assert_eq!(local.lookup(&key("www.example.test", RecordType::A)), None);
}

#[test]
fn held_names_answer_nodata_for_other_types() {
    let local = answers();
    for (name, qtype) in [
        ("nas.home.arpa", RecordType::AAAA),
        ("nas.home.arpa", RecordType::MX),
        ("printer", RecordType::AAAA),
        ("localhost", RecordType::A),
    ] {
        let answer = local.lookup(&key(name, qtype)).expect("local");
        assert_eq!(
            (answer.rcode, answer.answers.len()),
            (rcode::NOERROR, 0),
            "{name} {qtype}"
        );
        assert!(answer.authority.is_empty());
    }
}

#[test]
fn cnames_are_followed_within_local_data() {
    let local = answers();
    let www = local
        .lookup(&key("www.home.arpa", RecordType::A))
        .expect("local");
    assert_eq!(data(&www), ["nas.home.arpa.", "192.0.2.7"]);
    let alias = local
        .lookup(&key("alias.home.arpa", RecordType::A))
        .expect("local");
    assert_eq!(data(&alias), ["printer.", "192.0.2.8"]);
    let cname = local
        .lookup(&key("www.home.arpa", RecordType::CNAME))
        .expect("local");
    assert_eq!(data(&cname), ["nas.home.arpa."]);
    let looped = local
        .lookup(&key("loop.home.arpa", RecordType::A))
        .expect("local");
    assert_eq!(looped.answers.len(), MAX_CNAME_CHAIN);
}

#[test]
fn special_zones_answer_with_their_soa() {
    let local = answers();
    let below = local
        .lookup(&key("2.0.0.10.in-addr.arpa", RecordType::PTR))
        .expect("RFC 6303");
    assert_eq!(below.rcode, rcode::NXDOMAIN);
    assert_eq!(below.authority.len(), 1);
    assert_eq!(below.authority[0].name.to_string(), "10.in-addr.arpa.");
    let apex = local
        .lookup(&key("10.in-addr.arpa", RecordType::NS))
        .expect("apex");
    assert_eq!((apex.rcode, apex.answers.len()), (rcode::NOERROR, 0));
    let soa = local
        .lookup(&key("10.in-addr.arpa", RecordType::SOA))
        .expect("apex");
    assert_eq!(soa.answers[0].record_type(), RecordType::SOA);
    let loopback = local
        .lookup(&key("a.localhost", RecordType::AAAA))
        .expect("localhost");
    assert_eq!(data(&loopback), ["::1"]);
    let any = local
        .lookup(&key("www.example.test", RecordType::ANY))
        .expect("ANY");
    assert_eq!(any.answers[0].record_type(), RecordType::HINFO);
    let mut chaos = key("localhost", RecordType::A);
    chaos.qclass = 3;
    assert_eq!(local.lookup(&chaos), None, "only class IN");
}

#[test]
fn rendered_answer_echoes_the_query() {
    let local = answers();
    let query = client_query("Printer.", true);
    let bytes = local.answer(&query, 512).expect("hosts answer");
    let message = Message::from_vec(&bytes).expect("valid");
    assert_eq!(message.metadata.id, query.id);
    assert!(message.metadata.recursion_available && message.metadata.recursion_desired);
    assert_eq!(&bytes[12..12 + query.question.len()], &query.question[..]);
    assert_eq!(message.answers.len(), 1);
    assert_eq!(message.answers[0].ttl, hosts::HOSTS_TTL);
    assert!(
        message
            .edns
            .is_some_and(|edns: Edns| edns.max_payload() >= 512)
    );
}
