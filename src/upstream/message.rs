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
    /// opcode QUERY, exactly our question (name case-insensitively, RFC 4343;
    /// QTYPE and QCLASS bit for bit), and well-formed throughout. Anything else
    /// is to be ignored while we keep waiting.
    pub fn accept(&self, reply: &[u8], id: u16, received: Instant) -> Option<Answer> {
        let header = Header::parse(reply)?;
        if header.id != id || !header.is_response() || header.opcode() != 0 || header.qdcount != 1 {
            return None;
        }
        let span = wire::question_span(reply).ok()?;
        let theirs = reply.get(HEADER_LEN..span.end)?;
        if theirs.len() != self.wire.len() {
            return None;
        }
        // Only the name ignores case: QTYPE 65 (HTTPS) is 0x0041, "A" in
        // ASCII, and must not match QTYPE 97 (0x0061).
        let name_len = self.wire.len().checked_sub(4)?;
        let (our_name, our_types) = self.wire.split_at(name_len);
        let (their_name, their_types) = theirs.split_at(name_len);
        if !wire::names_equal(their_name, our_name) || their_types != our_types {
            return None;
        }
        Answer::from_upstream(reply, received).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answer::tests::{client_query, upstream_reply};

    /// `upstream_reply`'s bytes with the question's QTYPE set to `qtype`.
    fn reply_for_type(name: &str, qtype: u16) -> Vec<u8> {
        let mut reply = upstream_reply(7, name, &[300]);
        let span = wire::question_span(&reply).expect("a question");
        wire::write_u16(&mut reply, span.name_end, qtype);
        reply
    }

    fn question(name: &str, qtype: u16) -> Question {
        let query = client_query(name, false);
        let mut wire = query.question.to_vec();
        let name_end = wire.len() - 4;
        wire::write_u16(&mut wire, name_end, qtype);
        Question::new(&wire, &query.key)
    }

    #[test]
    fn accepts_the_name_in_any_letter_case() {
        let asked = question("www.example.test.", 1);
        let reply = reply_for_type("WWW.Example.TEST.", 1);
        assert!(asked.accept(&reply, 7, Instant::now()).is_some());
        assert!(
            asked.accept(&reply, 8, Instant::now()).is_none(),
            "other ID"
        );
    }

    /// The whole question was compared ignoring ASCII case, QTYPE and QCLASS
    /// bytes included. Found writing the `upstream_reply` fuzz target's check
    /// of an accepted question; its seed `https-qtype-case` is this input.
    #[test]
    fn qtype_is_compared_exactly() {
        // HTTPS (65, 0x0041) asked; a reply for type 97 (0x0061) is another question.
        let asked = question("example.test.", 65);
        let reply = reply_for_type("example.test.", 97);
        assert!(asked.accept(&reply, 7, Instant::now()).is_none());
        let reply = reply_for_type("example.test.", 65);
        assert!(asked.accept(&reply, 7, Instant::now()).is_some());
    }
}
