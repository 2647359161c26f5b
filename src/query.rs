//! A client's query: validated, with its question kept byte for byte and its
//! coalescing/cache key computed once.
//!
//! The rules for what is answered and what is dropped live here (RFC 1035 §4.1.1,
//! RFC 6891 §6.1.3, RFC 7766): shorter than a header or QR=1 is dropped (never
//! answer a response, that is how reflection loops start); an opcode other than
//! QUERY gets NOTIMP (with the question and OPT echoed when the body parses,
//! header only when it does not); an unparseable body or a question count other
//! than one gets FORMERR; an EDNS version above 0 gets BADVERS.
//!
//! A query is checked by walking it with the bounds-checked helpers in `wire`
//! rather than decoding it with hickory-proto: every name, count and record
//! length must hold together, but nothing in a query beyond the question and OPT
//! is used, and a full decode (with its allocations) was two thirds of the
//! cost of answering from cache.

use std::sync::Arc;

use crate::response;
use crate::wire::{self, FLAG_AD, FLAG_CD, FLAG_RD, HEADER_LEN, Header, OptInfo, WireError};

/// RCODE values we synthesize (RFC 1035 §4.1.1, RFC 6891 §9).
pub mod rcode {
    pub const NOERROR: u8 = 0;
    pub const FORMERR: u8 = 1;
    pub const SERVFAIL: u8 = 2;
    pub const NXDOMAIN: u8 = 3;
    pub const NOTIMP: u8 = 4;
    pub const REFUSED: u8 = 5;
    /// BADVERS is 16: 1 in the OPT's extended-rcode byte, 0 in the header.
    pub const BADVERS_HIGH: u8 = 1;
}

const OPCODE_QUERY: u8 = 0;

/// What identifies one question for coalescing and caching: the lower-cased name,
/// type, class and the two bits that change what an upstream returns (DO, CD).
///
/// A miss copies its key into the in-flight table, the lookup and each waiter;
/// the name is shared, so those copies cost no allocation. The cache entry
/// takes a copy of its own ([`Key::with_own_name`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    /// The plain wire-format name, lower-cased.
    pub name: Arc<[u8]>,
    pub qtype: u16,
    pub qclass: u16,
    pub dnssec_ok: bool,
    pub checking_disabled: bool,
}

impl Key {
    /// A copy whose name is a new allocation by the calling thread, for what
    /// outlives the query. The name of a parsed query comes from the UDP
    /// serving thread's malloc arena; a cache holding those names for hours
    /// pins that arena's pages as it fragments (RSS at 1M cached answers was
    /// 690 MiB with shared names, 499 with copies: README, "Benchmarks").
    pub fn with_own_name(&self) -> Key {
        Key {
            name: Arc::from(&*self.name),
            ..self.clone()
        }
    }
}

/// A query that passed validation.
#[derive(Debug, Clone)]
pub struct ClientQuery {
    pub id: u16,
    pub recursion_desired: bool,
    pub checking_disabled: bool,
    pub authentic_data: bool,
    /// QNAME, QTYPE and QCLASS exactly as the client sent them, letter case included.
    pub question: Box<[u8]>,
    pub key: Key,
    /// The client's EDNS, if it sent an OPT record.
    pub edns: Option<OptInfo>,
}

/// A query that is not resolved: either dropped silently or answered at once.
#[derive(Debug, PartialEq, Eq)]
pub enum Rejected {
    Drop,
    Reply(Vec<u8>),
}

impl ClientQuery {
    pub fn parse(bytes: &[u8]) -> Result<ClientQuery, Rejected> {
        let Some(header) = Header::parse(bytes) else {
            return Err(Rejected::Drop);
        };
        if header.is_response() {
            return Err(Rejected::Drop);
        }
        if header.opcode() != OPCODE_QUERY {
            // Every response echoes the question and, if the client sent EDNS,
            // carries OPT (RFC 6891 §7); only a body we cannot parse gets the bare
            // header, as there is then no question to trust.
            let reply = match parse_body(bytes, &header) {
                Some(query) => response::not_implemented(&query, header.opcode()),
                None => response::header_only(&header, rcode::NOTIMP),
            };
            return Err(Rejected::Reply(reply));
        }
        let Some(query) = parse_body(bytes, &header) else {
            return Err(Rejected::Reply(response::header_only(
                &header,
                rcode::FORMERR,
            )));
        };
        // RFC 6891 §6.1.3: a version we do not implement gets BADVERS with our version (0).
        if query.edns.is_some_and(|e| e.version > 0) {
            return Err(Rejected::Reply(response::synthesized(
                &query,
                rcode::NOERROR,
                rcode::BADVERS_HIGH,
                None,
            )));
        }
        Ok(query)
    }

    /// The largest UDP response this client accepts: 512 without EDNS (RFC 1035
    /// §4.2.1), else its advertised size, never below 512 (RFC 6891 §6.2.5) and
    /// never above the 1232 we use to avoid fragmentation.
    pub fn udp_limit(&self) -> usize {
        match self.edns {
            None => wire::CLASSIC_UDP_PAYLOAD,
            Some(edns) => usize::from(edns.payload)
                .clamp(wire::CLASSIC_UDP_PAYLOAD, usize::from(wire::EDNS_PAYLOAD)),
        }
    }
}

/// The question and OPT of a message whose header was read, checked as for a
/// QUERY: exactly one question, every record after it well formed, at most one
/// OPT. `None` when any of that fails.
fn parse_body(bytes: &[u8], header: &Header) -> Option<ClientQuery> {
    if header.qdcount != 1 {
        return None;
    }
    let span = wire::question_span(bytes).ok()?;
    let edns = find_opt(bytes, header, span.end).ok()?;
    let question: Box<[u8]> = bytes.get(HEADER_LEN..span.end)?.into();
    // One allocation: a slice iterator knows its length.
    let name: Arc<[u8]> = bytes
        .get(HEADER_LEN..span.name_end)?
        .iter()
        .map(u8::to_ascii_lowercase)
        .collect();
    Some(ClientQuery {
        id: header.id,
        recursion_desired: header.has(FLAG_RD),
        checking_disabled: header.has(FLAG_CD),
        authentic_data: header.has(FLAG_AD),
        question,
        key: Key {
            name,
            qtype: span.qtype,
            qclass: span.qclass,
            dnssec_ok: edns.is_some_and(|e| e.dnssec_ok),
            checking_disabled: header.has(FLAG_CD),
        },
        edns,
    })
}

/// Walks every record after the question (so counts that lie are caught) and
/// returns the OPT record's content, if any. RFC 6891 §6.1.1: a second OPT, or
/// an OPT whose owner is not the root, is a FORMERR.
fn find_opt(
    bytes: &[u8],
    header: &Header,
    question_end: usize,
) -> Result<Option<OptInfo>, WireError> {
    let before_additional = usize::from(header.ancount) + usize::from(header.nscount);
    let at = wire::walk_records(bytes, question_end, before_additional, |_| {})?;
    let mut opt = None;
    let mut bad_opt = false;
    wire::walk_records(bytes, at, usize::from(header.arcount), |record| {
        if record.rtype == wire::TYPE_OPT {
            bad_opt |= opt.is_some() || bytes.get(record.start) != Some(&0);
            opt = Some(record);
        }
    })?;
    if bad_opt {
        return Err(WireError::DuplicateOpt);
    }
    opt.map(|record| wire::read_opt(bytes, &record)).transpose()
}
