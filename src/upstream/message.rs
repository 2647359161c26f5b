//! The query we send upstream and the test a reply must pass before we use it.

use tokio::time::Instant;

use crate::answer::Answer;
use crate::query::Key;
use crate::wire::{self, FLAG_CD, FLAG_RD, HEADER_LEN, Header};

/// What to ask an upstream: one question, with the DO and CD bits of the clients
/// that asked it (they are part of the coalescing key, so all agree).
#[derive(Debug, Clone)]
pub struct Question {
    /// QNAME, QTYPE, QCLASS in wire form, in the letter case of the first asker.
    pub wire: Box<[u8]>,
    pub dnssec_ok: bool,
    pub checking_disabled: bool,
}

impl Question {
    pub fn new(question: &[u8], key: &Key) -> Question {
        Question {
            wire: question.into(),
            dnssec_ok: key.dnssec_ok,
            checking_disabled: key.checking_disabled,
        }
    }

    /// The query bytes with ID 0; each attempt patches in a fresh random ID.
    /// RD=1 (we are a stub asking a recursive resolver), CD passed through, and
    /// an OPT advertising 1232 bytes with DO passed through (RFC 6891, RFC 3225).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.wire.len() + 11);
        let mut flags = FLAG_RD;
        if self.checking_disabled {
            flags |= FLAG_CD;
        }
        wire::put_header(
            &mut out,
            &Header {
                id: 0,
                flags,
                qdcount: 1,
                ancount: 0,
                nscount: 0,
                arcount: 1,
            },
        );
        out.extend_from_slice(&self.wire);
        wire::put_opt(&mut out, self.dnssec_ok, 0, None);
        out
    }

    /// Accepts a reply only if it is a response to this query: same ID, QR=1,
    /// opcode QUERY, exactly our question (name case-insensitively, RFC 4343), and
    /// well-formed throughout. Anything else is to be ignored while we keep waiting.
    pub fn accept(&self, reply: &[u8], id: u16, received: Instant) -> Option<Answer> {
        let header = Header::parse(reply)?;
        if header.id != id || !header.is_response() || header.opcode() != 0 || header.qdcount != 1 {
            return None;
        }
        let span = wire::question_span(reply).ok()?;
        let theirs = reply.get(HEADER_LEN..span.end)?;
        if theirs.len() != self.wire.len() || !wire::names_equal(theirs, &self.wire) {
            return None;
        }
        Answer::from_upstream(reply, received).ok()
    }
}
