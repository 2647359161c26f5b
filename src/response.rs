//! Responses punctual writes itself: errors (FORMERR, NOTIMP, SERVFAIL with an
//! Extended DNS Error) and the truncated form of an answer too big for UDP.
//!
//! Every response echoes the client's ID, its question byte for byte and RD/CD,
//! and sets RA=1. If the client sent EDNS the response carries an OPT record
//! (RFC 6891 §7), and a synthesized failure carries its EDE there (RFC 8914).

use crate::query::ClientQuery;
use crate::query::rcode::NOTIMP;
use crate::wire::{self, Ede, FLAG_CD, FLAG_RD, FLAG_TC, Header};

/// A response to a request we could not parse past its header: ID, opcode and RD
/// echoed, no question (we do not trust it), no OPT, RA=1.
pub fn header_only(request: &Header, rcode: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(wire::HEADER_LEN);
    wire::put_header(
        &mut out,
        &Header {
            id: request.id,
            flags: wire::response_flags(request.opcode(), rcode) | (request.flags & FLAG_RD),
            qdcount: 0,
            ancount: 0,
            nscount: 0,
            arcount: 0,
        },
    );
    out
}

/// A response with the client's question and no records: a failure (with its EDE
/// when the client speaks EDNS), BADVERS, or the empty shell of a truncated answer.
pub fn synthesized(
    query: &ClientQuery,
    rcode: u8,
    extended_rcode: u8,
    ede: Option<Ede>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(wire::HEADER_LEN + query.question.len() + 64);
    wire::put_header(
        &mut out,
        &Header {
            id: query.id,
            flags: client_flags(query, rcode),
            qdcount: 1,
            ancount: 0,
            nscount: 0,
            arcount: u16::from(query.edns.is_some()),
        },
    );
    out.extend_from_slice(&query.question);
    if let Some(edns) = query.edns {
        wire::put_opt(&mut out, edns.dnssec_ok, extended_rcode, ede);
    }
    out
}

/// NOTIMP for a request with another opcode whose question and OPT parse: as
/// [`synthesized`], with the request's opcode copied into the response (RFC
/// 1035 §4.1.1).
pub fn not_implemented(query: &ClientQuery, opcode: u8) -> Vec<u8> {
    let mut out = synthesized(query, NOTIMP, 0, None);
    let flags = wire::read_u16(&out, 2).unwrap_or_default() | wire::response_flags(opcode, NOTIMP);
    wire::write_u16(&mut out, 2, flags);
    out
}

/// What a UDP client gets when the answer does not fit: the question, TC=1 and
/// no records, so it asks again over TCP (RFC 1035 §4.2.1, RFC 7766 §5).
pub fn truncated(query: &ClientQuery, rcode: u8) -> Vec<u8> {
    let mut out = synthesized(query, rcode, 0, None);
    let flags = wire::read_u16(&out, 2).unwrap_or_default() | FLAG_TC;
    wire::write_u16(&mut out, 2, flags);
    out
}

/// Header flags for any response to `query`: QR, RA, the rcode, and RD and CD
/// copied from the query (RFC 1035 §4.1.1, RFC 4035 §3.2.2).
pub fn client_flags(query: &ClientQuery, rcode: u8) -> u16 {
    let mut flags = wire::response_flags(0, rcode);
    if query.recursion_desired {
        flags |= FLAG_RD;
    }
    if query.checking_disabled {
        flags |= FLAG_CD;
    }
    flags
}
