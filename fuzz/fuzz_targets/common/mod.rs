//! What every fuzz target that sees a response checks, and the DNS messages
//! the targets share. Built with hickory-proto, so the checks do not trust
//! punctual's own wire helpers.

#![allow(dead_code)]

use std::net::{Ipv4Addr, Ipv6Addr};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use punctual::handler::Transport;
use punctual::query::ClientQuery;

/// What a client may receive over UDP: 512 bytes without EDNS (RFC 1035
/// §4.2.1), else its advertised size, at least 512 (RFC 6891 §6.2.5) and at
/// most the 1232 punctual sends. Read with hickory, not with punctual's parser.
pub fn udp_limit(query: &[u8]) -> Option<usize> {
    let message = Message::from_vec(query).ok()?;
    Some(match &message.edns {
        None => 512,
        Some(edns) => usize::from(edns.max_payload()).clamp(512, 1232),
    })
}

/// Checks a response punctual sent for `query` over `transport`: it parses, it
/// is a response, it echoes the ID and (when it has one) the question byte for
/// byte, and over UDP it fits what the client can take.
pub fn check_reply(query: &[u8], reply: &[u8], transport: Transport) {
    let parsed = match Message::from_vec(reply) {
        Ok(message) => message,
        Err(error) => {
            panic!("reply does not parse ({error})\nquery: {query:02x?}\nreply: {reply:02x?}")
        }
    };
    assert_eq!(parsed.metadata.message_type, MessageType::Response, "QR=1");
    if query.len() >= 2 {
        assert_eq!(reply[..2], query[..2], "the reply echoes the query's ID");
    }
    if let Ok(client) = ClientQuery::parse(query) {
        if parsed.queries.len() == 1 {
            let question = &reply[12..12 + client.question.len()];
            assert_eq!(
                question,
                &client.question[..],
                "question echoed byte for byte"
            );
        }
        if transport == Transport::Udp {
            // punctual's own idea of the limit agrees with hickory's reading
            // of the query wherever hickory reads it.
            if let Some(limit) = udp_limit(query) {
                assert_eq!(client.udp_limit(), limit, "udp limit for {query:02x?}");
            }
            assert!(
                reply.len() <= client.udp_limit(),
                "UDP reply of {} bytes over the client's {}",
                reply.len(),
                client.udp_limit()
            );
        }
    } else if transport == Transport::Udp {
        // A rejection (FORMERR, NOTIMP, BADVERS) is small whatever was asked.
        assert!(reply.len() <= 512, "rejection of {} bytes", reply.len());
    }
}

pub fn name(text: &str) -> Name {
    Name::from_ascii(text).expect("valid name")
}

/// A client query as a stub resolver sends it: RD=1, optionally EDNS with a
/// payload size and the DO bit.
pub fn query(id: u16, qname: &str, qtype: RecordType, edns: Option<(u16, bool)>) -> Vec<u8> {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(name(qname), qtype));
    if let Some((payload, dnssec_ok)) = edns {
        let mut opt = Edns::new();
        opt.set_max_payload(payload);
        opt.set_dnssec_ok(dnssec_ok);
        message.set_edns(opt);
    }
    message.to_vec().expect("encodes")
}

fn response(id: u16, qname: &str, qtype: RecordType) -> Message {
    let mut message = Message::new(id, MessageType::Response, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.metadata.recursion_available = true;
    message.add_query(Query::query(name(qname), qtype));
    message
}

fn encoded(mut message: Message) -> Vec<u8> {
    message.set_edns(Edns::new());
    message.to_vec().expect("encodes")
}

/// A positive upstream reply: one A (or AAAA) record per TTL.
pub fn address_reply(id: u16, qname: &str, qtype: RecordType, ttls: &[u32]) -> Vec<u8> {
    let mut message = response(id, qname, qtype);
    for (i, &ttl) in ttls.iter().enumerate() {
        let data = match qtype {
            RecordType::AAAA => RData::AAAA(AAAA(Ipv6Addr::new(
                0x2001,
                0xdb8,
                0,
                0,
                0,
                0,
                0,
                i as u16 + 1,
            ))),
            _ => RData::A(A(Ipv4Addr::new(192, 0, 2, i as u8 + 1))),
        };
        message.add_answer(Record::from_rdata(name(qname), ttl, data));
    }
    encoded(message)
}

/// NXDOMAIN with the zone's SOA in the authority section (RFC 2308 §3).
pub fn nxdomain_reply(id: u16, qname: &str, zone: &str) -> Vec<u8> {
    let mut message = response(id, qname, RecordType::A);
    message.metadata.response_code = ResponseCode::NXDomain;
    let soa = SOA::new(
        name(&format!("ns.{zone}")),
        name(&format!("hostmaster.{zone}")),
        2024010101,
        3600,
        600,
        86400,
        300,
    );
    message.add_authority(Record::from_rdata(name(zone), 900, RData::SOA(soa)));
    encoded(message)
}

/// A CNAME chain `qname` → `middle` → `target` ending in an A record.
pub fn cname_chain_reply(id: u16, qname: &str, middle: &str, target: &str) -> Vec<u8> {
    let mut message = response(id, qname, RecordType::A);
    let cname = |owner: &str, ttl, to: &str| {
        Record::from_rdata(name(owner), ttl, RData::CNAME(CNAME(name(to))))
    };
    message.add_answer(cname(qname, 600, middle));
    message.add_answer(cname(middle, 300, target));
    let address = RData::A(A(Ipv4Addr::new(198, 51, 100, 7)));
    message.add_answer(Record::from_rdata(name(target), 60, address));
    encoded(message)
}
