//! An upstream reply prepared once so that every client it answers (coalesced
//! waiters now, cache hits later) gets it by patching bytes, not re-encoding.
//!
//! Preparation checks the reply with hickory-proto (distrust the wire), strips
//! the upstream's OPT record (OPT is hop-by-hop and MUST NOT be cached, RFC 6891
//! §6.1.1) and records where every TTL field is. Rendering for a client copies
//! the bytes, then patches the ID, flags, question case and TTLs (decremented by
//! age and clamped) and appends the client's own OPT.

use std::time::Duration;

use hickory_proto::op::Message;
use thiserror::Error;
use tokio::time::Instant;

use crate::query::ClientQuery;
use crate::response;
use crate::wire::{self, FLAG_AD, FLAG_TC, Header, HEADER_LEN, RecordSpan, WireError};

#[derive(Debug, Error)]
pub enum AnswerError {
    #[error("malformed reply: {0}")]
    Wire(#[from] WireError),
    #[error("reply rejected by the DNS parser: {0}")]
    Decode(String),
}

/// Clamps applied to every TTL served (config `[cache] min_ttl` / `max_ttl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TtlPolicy {
    pub min: u32,
    pub max: u32,
}

impl TtlPolicy {
    pub fn new(min: Duration, max: Duration) -> TtlPolicy {
        let secs = |d: Duration| u32::try_from(d.as_secs()).unwrap_or(u32::MAX);
        TtlPolicy {
            min: secs(min),
            max: secs(max),
        }
    }

    pub fn clamp(&self, ttl: u32) -> u32 {
        ttl.clamp(self.min, self.max.max(self.min))
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    /// Header, question and records, without any OPT; ARCOUNT adjusted.
    wire: Box<[u8]>,
    question_end: usize,
    /// Offsets of the TTL fields in `wire`, with the TTL the upstream gave.
    ttls: Box<[(usize, u32)]>,
    received: Instant,
    /// Whether the answer section holds a record of the asked type (or the
    /// query was for CNAME itself): a positive answer.
    answers_question: bool,
}

impl Answer {
    /// Prepares an upstream reply. The caller has already matched its ID and question.
    pub fn from_upstream(bytes: &[u8], received: Instant) -> Result<Answer, AnswerError> {
        Message::from_vec(bytes).map_err(|e| AnswerError::Decode(e.to_string()))?;
        let header = Header::parse(bytes).ok_or(WireError::Truncated("the header"))?;
        let question = wire::question_span(bytes)?;
        if header.qdcount != 1 {
            return Err(AnswerError::Decode("not exactly one question".into()));
        }
        let layout = Layout::walk(bytes, &header, question.end)?;
        let wire: Box<[u8]> = match layout.opt {
            None => bytes[..layout.end].into(),
            // OPT is normally the last record; cutting it off leaves every
            // compression pointer (which point backwards) valid.
            Some(opt) if opt.end == layout.end => {
                let mut out = bytes[..opt.start].to_vec();
                wire::write_u16(&mut out, 10, header.arcount - 1);
                out.into()
            }
            // Elsewhere, removing it could move names that later pointers
            // reference, so re-encode without it.
            Some(_) => {
                let mut message = Message::from_vec(bytes)
                    .map_err(|e| AnswerError::Decode(e.to_string()))?;
                message.edns = None;
                message
                    .to_vec()
                    .map_err(|e| AnswerError::Decode(e.to_string()))?
                    .into()
            }
        };
        let header = Header::parse(&wire).ok_or(WireError::Truncated("the header"))?;
        let layout = Layout::walk(&wire, &header, question.end)?;
        Ok(Answer {
            ttls: layout
                .records
                .iter()
                .map(|r| (r.ttl_at, wire::read_u32(&wire, r.ttl_at).unwrap_or(0)))
                .collect(),
            answers_question: layout.answer_types.iter().any(|&t| {
                t == question.qtype || question.qtype == wire::TYPE_CNAME
            }),
            question_end: question.end,
            received,
            wire,
        })
    }

    pub fn header(&self) -> Header {
        // `wire` always starts with a full header: from_upstream checked it.
        Header::parse(&self.wire).unwrap_or(Header {
            id: 0,
            flags: 0,
            qdcount: 0,
            ancount: 0,
            nscount: 0,
            arcount: 0,
        })
    }

    pub fn rcode(&self) -> u8 {
        self.header().rcode()
    }

    pub fn is_truncated(&self) -> bool {
        self.header().has(FLAG_TC)
    }

    pub fn received(&self) -> Instant {
        self.received
    }

    /// How long this answer may be cached, or `None` if it must not be:
    /// only complete positive answers here (RFC 2308 negative caching is separate),
    /// never TC, SERVFAIL, REFUSED or anything else that is not NOERROR.
    pub fn cache_ttl(&self, policy: &TtlPolicy) -> Option<u32> {
        let header = self.header();
        if header.rcode() != 0 || header.has(FLAG_TC) || !self.answers_question {
            return None;
        }
        let lowest = self.ttls.iter().map(|&(_, ttl)| ttl).min()?;
        let ttl = policy.clamp(lowest);
        (ttl > 0).then_some(ttl)
    }

    /// Renders this answer for one client at `now`; `limit` is the most the
    /// client's transport accepts (a UDP answer over it comes back truncated).
    pub fn render(
        &self,
        query: &ClientQuery,
        now: Instant,
        policy: &TtlPolicy,
        limit: usize,
    ) -> Vec<u8> {
        let header = self.header();
        let age = u32::try_from(now.saturating_duration_since(self.received).as_secs())
            .unwrap_or(u32::MAX);
        let mut out = Vec::with_capacity(self.wire.len() + 64);
        out.extend_from_slice(&self.wire);
        wire::write_u16(&mut out, 0, query.id);
        let mut flags = response::client_flags(query, header.rcode());
        // RFC 6840 §5.8: set AD only for clients that asked for it (AD or DO).
        if header.has(FLAG_AD) && (query.authentic_data || query.key.dnssec_ok) {
            flags |= FLAG_AD;
        }
        wire::write_u16(&mut out, 2, flags);
        // The client's letter case (the key matched case-insensitively, so the
        // lengths are equal); compression pointers to the question follow it.
        if let Some(question) = out.get_mut(HEADER_LEN..self.question_end)
            && question.len() == query.question.len()
        {
            question.copy_from_slice(&query.question);
        }
        for &(at, ttl) in self.ttls.iter() {
            wire::write_u32(&mut out, at, policy.clamp(ttl).saturating_sub(age));
        }
        if let Some(edns) = query.edns {
            wire::put_opt(&mut out, edns.dnssec_ok, 0, None);
            wire::write_u16(&mut out, 10, header.arcount + 1);
        }
        if out.len() > limit {
            return response::truncated(query, header.rcode());
        }
        out
    }
}

/// Where a message's records are.
struct Layout {
    records: Vec<RecordSpan>,
    answer_types: Vec<u16>,
    opt: Option<RecordSpan>,
    end: usize,
}

impl Layout {
    fn walk(bytes: &[u8], header: &Header, question_end: usize) -> Result<Layout, WireError> {
        let mut records = Vec::with_capacity(header.record_count());
        let mut answer_types = Vec::with_capacity(usize::from(header.ancount));
        let mut opt = None;
        let mut duplicate_opt = false;
        let at = wire::walk_records(bytes, question_end, usize::from(header.ancount), |r| {
            answer_types.push(r.rtype);
            records.push(r);
        })?;
        let at = wire::walk_records(bytes, at, usize::from(header.nscount), |r| records.push(r))?;
        let end = wire::walk_records(bytes, at, usize::from(header.arcount), |r| {
            if r.rtype == wire::TYPE_OPT {
                duplicate_opt |= opt.is_some();
                opt = Some(r);
            } else {
                records.push(r);
            }
        })?;
        if duplicate_opt {
            return Err(WireError::DuplicateOpt);
        }
        Ok(Layout {
            records,
            answer_types,
            opt,
            end,
        })
    }
}
