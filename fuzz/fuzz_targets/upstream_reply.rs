//! An upstream reply, checked against the question we asked (`Question::accept`);
//! when accepted, cached and rendered for a client as `Resolver` does.
//!
//! The input is four control bytes, then the reply:
//! - byte 0: bits 0-2 pick the question (0-5 from a fixed list; 6 and 7: the
//!   reply's own question, so the fuzzer gets past the match easily); bit 3:
//!   the client's DO; bit 4: CD; bit 5: the client sends EDNS; bit 6: AD;
//!   bit 7: the reply must carry ID 0xBEEF (else its own ID is expected);
//! - byte 1: the client's EDNS payload size / 16; also the answer's age in seconds;
//! - bytes 2 and 3: the client's ID, and which letters of its question are upper case.

#![no_main]

mod common;

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::Message;
use libfuzzer_sys::fuzz_target;
use punctual::answer::{TtlMode, TtlPolicy};
use punctual::cache::{Cache, CacheLimits, Hit};
use punctual::metrics::Metrics;
use punctual::query::ClientQuery;
use punctual::upstream::Question;
use punctual::wire::{self, Ede, HEADER_LEN};
use tokio::time::Instant;

/// QNAME, QTYPE, QCLASS IN.
fn question(labels: &[&str], qtype: u16) -> Vec<u8> {
    let mut out = Vec::new();
    for label in labels {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out
}

const POLICY: TtlPolicy = TtlPolicy {
    min: 0,
    max: 86_400,
    negative_max: 3600,
};

fuzz_target!(|data: &[u8]| {
    let [control, size, id_high, id_low, reply @ ..] = data else {
        return;
    };
    let asked = match control & 0x07 {
        0 => question(&["example", "com"], 1),
        1 => question(&["www", "example", "com"], 28),
        2 => question(&["nx", "test"], 1),
        3 => question(&["alias", "test"], 1),
        4 => question(&[], 2),
        // HTTPS is type 65, 0x0041: an ASCII letter in its low byte.
        5 => question(&["example", "com"], 65),
        6 => question(&["example", "org"], 15),
        _ => match wire::question_span(reply) {
            Ok(span) => reply[HEADER_LEN..span.end].to_vec(),
            Err(_) => return,
        },
    };
    // The client's query: the question in its own letter case, maybe EDNS.
    let client_id = u16::from_be_bytes([*id_high, *id_low]);
    let mut case = client_id;
    let mut flags = wire::FLAG_RD;
    if control & 0x10 != 0 {
        flags |= wire::FLAG_CD;
    }
    if control & 0x40 != 0 {
        flags |= wire::FLAG_AD;
    }
    let edns = control & 0x20 != 0;
    let mut bytes = Vec::new();
    wire::put_header(
        &mut bytes,
        &wire::Header {
            id: client_id,
            flags,
            qdcount: 1,
            ancount: 0,
            nscount: 0,
            arcount: u16::from(edns),
        },
    );
    for &byte in &asked {
        let upper = case & 1 != 0;
        case = case.rotate_right(1);
        bytes.push(if upper {
            byte.to_ascii_uppercase()
        } else {
            byte
        });
    }
    // The letters only: QTYPE and QCLASS bytes keep their values.
    let question_end = bytes.len();
    bytes[question_end - 4..].copy_from_slice(&asked[asked.len() - 4..]);
    if edns {
        // put_opt writes 1232; the client's own size goes over it.
        let opt_at = bytes.len();
        wire::put_opt(&mut bytes, control & 0x08 != 0, 0, None);
        wire::write_u16(&mut bytes, opt_at + 3, u16::from(*size) * 16);
    }
    let client = ClientQuery::parse(&bytes).expect("the query we built is valid");
    let question = Question::new(&client.question, &client.key);

    // What the real path does: accept, cache, render for each client.
    let upstream_id = if control & 0x80 != 0 {
        0xBEEF
    } else {
        wire::read_u16(reply, 0).unwrap_or(0)
    };
    let received = Instant::now();
    let Some(answer) = question.accept(reply, upstream_id, received) else {
        return;
    };
    // Accepted: our question exactly, but for the letter case of the name (RFC 4343).
    let theirs = &reply[HEADER_LEN..HEADER_LEN + question.wire.len()];
    let (name, types) = question.wire.split_at(question.wire.len() - 4);
    assert!(theirs[..name.len()].eq_ignore_ascii_case(name), "the name");
    assert_eq!(&theirs[name.len()..], types, "QTYPE and QCLASS exactly");
    let answer = Arc::new(answer);
    if let Some(ttl) = answer.cache_ttl(&POLICY) {
        assert!(ttl > 0 && ttl <= POLICY.max, "cache TTL {ttl}");
    }
    let cache = Cache::new(
        CacheLimits {
            entries: NonZeroUsize::new(16).expect("non-zero"),
            max_bytes: 1 << 20,
            ttl: POLICY,
            failure_ttl: Duration::from_secs(5),
            serve_stale: true,
            stale_max_age: Duration::from_secs(3600),
            prefetch: true,
        },
        Arc::new(Metrics::default()),
    );
    cache.insert(client.key.clone(), Arc::clone(&answer));
    let now = received + Duration::from_secs(u64::from(*size));
    let rendered = match cache.get(&client.key, now) {
        Hit::Fresh { answer, .. } | Hit::Stale(answer) => answer,
        Hit::Miss => answer,
        Hit::Failed(error) => panic!("an answer cached as a failure: {error:?}"),
    };
    let ede = Ede {
        code: 3,
        text: "stale answer",
    };
    for (mode, ede, limit) in [
        (TtlMode::Aged(now), None, client.udp_limit()),
        (TtlMode::Aged(now), None, usize::from(u16::MAX)),
        (TtlMode::Fixed(30), Some(ede), client.udp_limit()),
    ] {
        let out = rendered.render(&client, mode, &POLICY, ede, limit);
        let message = match Message::from_vec(&out) {
            Ok(message) => message,
            Err(error) => panic!(
                "rendered answer does not parse ({error})\nreply: {reply:02x?}\nrendered: {out:02x?}"
            ),
        };
        assert!(
            out.len() <= limit,
            "{} bytes over the limit {limit}",
            out.len()
        );
        assert_eq!(message.metadata.id, client_id, "the client's ID");
        assert_eq!(
            &out[HEADER_LEN..HEADER_LEN + client.question.len()],
            &client.question[..],
            "the client's question, letter case included"
        );
        assert_eq!(message.edns.is_some(), edns, "OPT only for an EDNS client");
        assert_eq!(out[3] & 0x0f, reply[3] & 0x0f, "the upstream's RCODE");
        if let TtlMode::Aged(_) = mode {
            for record in message
                .answers
                .iter()
                .chain(&message.authorities)
                .chain(&message.additionals)
            {
                assert!(
                    record.ttl <= POLICY.max,
                    "TTL {} over the maximum",
                    record.ttl
                );
            }
        }
    }
});
