//! An upstream reply prepared once so that every client it answers (coalesced
//! waiters now, cache hits later) gets it by patching bytes, not re-encoding.
//!
//! Preparation checks the reply with hickory-proto (distrust the wire), strips
//! the upstream's OPT record (OPT is hop-by-hop and MUST NOT be cached, RFC 6891
//! §6.1.1) and records where every TTL field is. Rendering for a client copies
//! the bytes, then patches the ID, flags, question case and TTLs (decremented by
//! age and clamped, or fixed for a stale answer) and appends the client's own OPT.
//!
//! How long an answer may be cached is decided here too: a positive answer for
//! its lowest TTL; NXDOMAIN and NODATA for the negative TTL of RFC 2308 §5,
//! min(SOA TTL, SOA MINIMUM) of the SOA in the authority section, capped by
//! `negative_max_ttl` (no SOA: not cached, RFC 2308 §5).

use std::time::Duration;

use hickory_proto::op::Message;
use thiserror::Error;
use tokio::time::Instant;

use crate::query::{ClientQuery, rcode};
use crate::response;
use crate::wire::{self, Ede, FLAG_AD, FLAG_TC, HEADER_LEN, Header, RecordSpan, WireError};

/// RR type SOA (RFC 1035 §3.3.13).
const TYPE_SOA: u16 = 6;
/// QCLASS `*`, any class (RFC 1035 §3.2.5).
const CLASS_ANY: u16 = 255;

#[derive(Debug, Error)]
pub enum AnswerError {
    #[error("malformed reply: {0}")]
    Wire(#[from] WireError),
    #[error("reply rejected by the DNS parser: {0}")]
    Decode(String),
}

/// Clamps applied to every TTL served and cached (config `[cache] min_ttl`,
/// `max_ttl`, `negative_max_ttl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TtlPolicy {
    pub min: u32,
    pub max: u32,
    pub negative_max: u32,
}

impl TtlPolicy {
    pub fn new(min: Duration, max: Duration, negative_max: Duration) -> TtlPolicy {
        TtlPolicy {
            min: whole_seconds(min),
            max: whole_seconds(max),
            negative_max: whole_seconds(negative_max),
        }
    }

    pub fn clamp(&self, ttl: u32) -> u32 {
        ttl.clamp(self.min, self.max.max(self.min))
    }
}

pub fn whole_seconds(duration: Duration) -> u32 {
    u32::try_from(duration.as_secs()).unwrap_or(u32::MAX)
}

/// How the TTLs of a rendered answer are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtlMode {
    /// Counted down by the answer's age at this instant, then clamped.
    Aged(Instant),
    /// Every TTL set to this (a stale answer, RFC 8767 §4).
    Fixed(u32),
}

/// One TTL field in the stored wire bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TtlField {
    at: usize,
    /// The TTL to count down from: the upstream's, or for the SOA of a
    /// negative answer the negative TTL (RFC 2308 §5).
    ttl: u32,
    /// The SOA of a negative answer: also capped by `negative_max_ttl`.
    negative: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    /// Header, question and records, without any OPT; ARCOUNT adjusted.
    wire: Box<[u8]>,
    question_end: usize,
    ttls: Box<[TtlField]>,
    received: Instant,
    /// Whether the answer section holds a record of the asked type (or the
    /// query was for CNAME itself): a positive answer.
    answers_question: bool,
    /// For NXDOMAIN/NODATA: min(SOA TTL, SOA MINIMUM) of the authority's SOA.
    negative_ttl: Option<u32>,
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
        // Bytes after the last record the counts announce: the header lies
        // about the message (a record would move to another section), so the
        // whole reply is distrusted.
        if layout.end != bytes.len() {
            return Err(AnswerError::Decode("bytes after the last record".into()));
        }
        // RFC 1035 §4.1: the answer section holds records answering the
        // question; one of another class (CH for an IN question) answers
        // nothing that was asked.
        if question.qclass != CLASS_ANY
            && layout.answer_classes.iter().any(|&c| c != question.qclass)
        {
            return Err(AnswerError::Decode(
                "an answer record of another class than the question".into(),
            ));
        }
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
                let mut message =
                    Message::from_vec(bytes).map_err(|e| AnswerError::Decode(e.to_string()))?;
                message.edns = None;
                message
                    .to_vec()
                    .map_err(|e| AnswerError::Decode(e.to_string()))?
                    .into()
            }
        };
        let header = Header::parse(&wire).ok_or(WireError::Truncated("the header"))?;
        let layout = Layout::walk(&wire, &header, question.end)?;
        let answers_question = layout
            .answer_types
            .iter()
            .any(|&t| t == question.qtype || question.qtype == wire::TYPE_CNAME);
        let is_negative = header.rcode() == rcode::NXDOMAIN
            || (header.rcode() == rcode::NOERROR && !answers_question);
        // RFC 2308 §5: the first SOA in the authority section gives the negative TTL.
        let soa = layout
            .authority
            .iter()
            .find(|r| r.rtype == TYPE_SOA)
            .filter(|_| is_negative);
        let negative_ttl = soa.and_then(|r| {
            let ttl = wire::read_u32(&wire, r.ttl_at).ok()?;
            let minimum = wire::read_u32(&wire, r.end.checked_sub(4)?).ok()?;
            Some(ttl.min(minimum))
        });
        let ttls = layout
            .records
            .iter()
            .map(|r| {
                let upstream = wire::read_u32(&wire, r.ttl_at).unwrap_or(0);
                match (soa, negative_ttl) {
                    (Some(soa), Some(negative)) if soa.start == r.start => TtlField {
                        at: r.ttl_at,
                        ttl: negative,
                        negative: true,
                    },
                    _ => TtlField {
                        at: r.ttl_at,
                        ttl: upstream,
                        negative: false,
                    },
                }
            })
            .collect();
        Ok(Answer {
            ttls,
            answers_question,
            negative_ttl,
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

    /// The same answer with the AD bit cleared (RFC 6840 §5.8: data is only
    /// as authentic as the path it came over).
    pub fn without_authentic_data(mut self) -> Answer {
        if let Some(flags) = self.wire.get_mut(3) {
            *flags &= !((FLAG_AD & 0xff) as u8);
        }
        self
    }

    /// NXDOMAIN or NODATA with an SOA: cacheable as a negative answer.
    pub fn is_negative(&self) -> bool {
        self.negative_ttl.is_some()
    }

    /// SERVFAIL or REFUSED: the upstream could not or would not answer.
    pub fn is_failure(&self) -> bool {
        matches!(self.rcode(), rcode::SERVFAIL | rcode::REFUSED)
    }

    pub fn received(&self) -> Instant {
        self.received
    }

    /// Bytes this answer holds, for the cache's memory bound.
    pub fn size(&self) -> usize {
        std::mem::size_of::<Answer>()
            + self.wire.len()
            + self.ttls.len() * std::mem::size_of::<TtlField>()
    }

    /// How long this answer may be cached, or `None` if it must not be: a
    /// complete positive answer for its lowest TTL; NXDOMAIN or NODATA with an
    /// SOA for the negative TTL (capped), also when a CNAME chain leads to it;
    /// never TC, SERVFAIL, REFUSED or anything else.
    pub fn cache_ttl(&self, policy: &TtlPolicy) -> Option<u32> {
        let header = self.header();
        if header.has(FLAG_TC) {
            return None;
        }
        let ttl = match header.rcode() {
            rcode::NOERROR if self.answers_question => self.ttls.iter().map(|f| f.ttl).min()?,
            rcode::NOERROR | rcode::NXDOMAIN => {
                let negative = self.negative_ttl?.min(policy.negative_max);
                // A CNAME chain before the negative answer: its records too.
                self.ttls.iter().map(|f| f.ttl).fold(negative, u32::min)
            }
            _ => return None,
        };
        let ttl = policy.clamp(ttl);
        (ttl > 0).then_some(ttl)
    }

    /// Renders this answer for one client; `limit` is the most the client's
    /// transport accepts (a UDP answer over it comes back truncated). `ede` is
    /// attached for clients that speak EDNS (RFC 8914).
    pub fn render(
        &self,
        query: &ClientQuery,
        ttl_mode: TtlMode,
        policy: &TtlPolicy,
        ede: Option<Ede>,
        limit: usize,
    ) -> Vec<u8> {
        let header = self.header();
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
        match ttl_mode {
            TtlMode::Aged(now) => {
                let age = whole_seconds(now.saturating_duration_since(self.received));
                for field in self.ttls.iter() {
                    let ttl = if field.negative {
                        field.ttl.min(policy.negative_max)
                    } else {
                        field.ttl
                    };
                    wire::write_u32(&mut out, field.at, policy.clamp(ttl).saturating_sub(age));
                }
            }
            TtlMode::Fixed(ttl) => {
                for field in self.ttls.iter() {
                    wire::write_u32(&mut out, field.at, ttl);
                }
            }
        }
        if let Some(edns) = query.edns {
            wire::put_opt(&mut out, edns.dnssec_ok, 0, ede);
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
    answer_classes: Vec<u16>,
    authority: Vec<RecordSpan>,
    opt: Option<RecordSpan>,
    end: usize,
}

impl Layout {
    fn walk(bytes: &[u8], header: &Header, question_end: usize) -> Result<Layout, WireError> {
        let mut records = Vec::with_capacity(header.record_count());
        let mut answer_types = Vec::with_capacity(usize::from(header.ancount));
        let mut answer_classes = Vec::with_capacity(usize::from(header.ancount));
        let mut authority = Vec::with_capacity(usize::from(header.nscount));
        let mut opt = None;
        let mut duplicate_opt = false;
        let at = wire::walk_records(bytes, question_end, usize::from(header.ancount), |r| {
            answer_types.push(r.rtype);
            // The class precedes the TTL; walk_records read past it already.
            answer_classes.push(wire::read_u16(bytes, r.ttl_at - 2).unwrap_or_default());
            records.push(r);
        })?;
        let at = wire::walk_records(bytes, at, usize::from(header.nscount), |r| {
            authority.push(r);
            records.push(r);
        })?;
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
            answer_classes,
            authority,
            opt,
            end,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::net::Ipv4Addr;
    use std::time::Duration;

    use hickory_proto::op::{Edns, MessageType, OpCode, Query};
    use hickory_proto::rr::rdata::opt::EdnsOption;
    use hickory_proto::rr::{Name, RData, Record, RecordType, rdata::A};

    use super::*;

    /// An upstream reply for `name` A with one address per TTL in `ttls`,
    /// carrying an OPT record as real upstreams do.
    pub(crate) fn upstream_reply(id: u16, name: &str, ttls: &[u32]) -> Vec<u8> {
        let owner = Name::from_ascii(name).expect("valid test name");
        let mut message = Message::new(id, MessageType::Response, OpCode::Query);
        message.metadata.recursion_available = true;
        message.add_query(Query::query(owner.clone(), RecordType::A));
        for (i, &ttl) in ttls.iter().enumerate() {
            let address = Ipv4Addr::new(192, 0, 2, i as u8 + 1);
            message.add_answer(Record::from_rdata(owner.clone(), ttl, RData::A(A(address))));
        }
        message.set_edns(Edns::new());
        message.to_vec().expect("encodes")
    }

    pub(crate) fn client_query(name: &str, edns: bool) -> ClientQuery {
        let mut message = Message::new(0x1234, MessageType::Query, OpCode::Query);
        message.metadata.recursion_desired = true;
        message.add_query(Query::query(
            Name::from_ascii(name).expect("valid"),
            RecordType::A,
        ));
        if edns {
            message.set_edns(Edns::new());
        }
        ClientQuery::parse(&message.to_vec().expect("encodes")).expect("valid query")
    }

    fn ttls_of(bytes: &[u8]) -> Vec<u32> {
        let message = Message::from_vec(bytes).expect("renders a valid message");
        message.answers.iter().map(|r| r.ttl).collect()
    }

    const POLICY: TtlPolicy = TtlPolicy {
        min: 0,
        max: 86_400,
        negative_max: 3600,
    };

    #[tokio::test(start_paused = true)]
    async fn render_patches_id_case_and_counts_ttls_down() {
        let answer = Answer::from_upstream(
            &upstream_reply(7, "www.example.test.", &[300, 60]),
            Instant::now(),
        )
        .expect("valid reply");
        assert_eq!(answer.cache_ttl(&POLICY), Some(60));
        tokio::time::advance(Duration::from_secs(42)).await;
        let query = client_query("WwW.Example.TEST.", false);
        let out = answer.render(&query, TtlMode::Aged(Instant::now()), &POLICY, None, 512);
        let message = Message::from_vec(&out).expect("valid");
        assert_eq!(message.metadata.id, 0x1234);
        assert!(message.metadata.recursion_available && message.metadata.recursion_desired);
        assert_eq!(
            &out[HEADER_LEN..HEADER_LEN + query.question.len()],
            &query.question[..]
        );
        assert_eq!(ttls_of(&out), vec![258, 18]);
        // No EDNS from the client, none back (the upstream's OPT was stripped).
        assert!(message.edns.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn ttls_are_clamped_and_never_negative() {
        let answer =
            Answer::from_upstream(&upstream_reply(7, "a.test.", &[5, 100_000]), Instant::now())
                .expect("valid reply");
        let policy = TtlPolicy {
            min: 30,
            max: 3600,
            negative_max: 3600,
        };
        assert_eq!(answer.cache_ttl(&policy), Some(30));
        let query = client_query("a.test.", true);
        assert_eq!(
            ttls_of(&answer.render(&query, TtlMode::Aged(Instant::now()), &policy, None, 4096)),
            vec![30, 3600]
        );
        tokio::time::advance(Duration::from_secs(40)).await;
        assert_eq!(
            ttls_of(&answer.render(&query, TtlMode::Aged(Instant::now()), &policy, None, 4096)),
            vec![0, 3560]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn oversized_udp_render_is_truncated() {
        let ttls = vec![300; 40];
        let answer = Answer::from_upstream(&upstream_reply(7, "big.test.", &ttls), Instant::now())
            .expect("valid reply");
        let query = client_query("big.test.", false);
        let out = answer.render(&query, TtlMode::Aged(Instant::now()), &POLICY, None, 512);
        let message = Message::from_vec(&out).expect("valid");
        assert!(message.metadata.truncation);
        assert!(message.answers.is_empty());
        let whole = answer.render(&query, TtlMode::Aged(Instant::now()), &POLICY, None, 65_535);
        assert_eq!(ttls_of(&whole).len(), 40);
    }

    #[test]
    fn replies_that_lie_about_their_records_are_refused() {
        let now = Instant::now();
        // ANCOUNT one short: the last answer and the OPT trail the message.
        let mut short = upstream_reply(7, "a.test.", &[300, 300]);
        short[7] -= 1;
        assert!(Answer::from_upstream(&short, now).is_err());
        // An answer of class CH (3) to a question of class IN.
        let mut chaos = upstream_reply(7, "a.test.", &[300]);
        let class_at = HEADER_LEN + "a.test.".len() + 1 + 4 + 2 + 2;
        assert_eq!(wire::read_u16(&chaos, class_at).ok(), Some(1));
        wire::write_u16(&mut chaos, class_at, 3);
        assert!(Answer::from_upstream(&chaos, now).is_err());
    }

    #[test]
    fn only_positive_complete_answers_are_cacheable() {
        let now = Instant::now();
        let mut reply = upstream_reply(7, "a.test.", &[]);
        let empty = Answer::from_upstream(&reply, now).expect("valid");
        assert_eq!(empty.cache_ttl(&POLICY), None);
        reply = upstream_reply(7, "a.test.", &[300]);
        reply[3] |= 2; // SERVFAIL
        assert_eq!(
            Answer::from_upstream(&reply, now)
                .expect("valid")
                .cache_ttl(&POLICY),
            None
        );
        reply = upstream_reply(7, "a.test.", &[300]);
        reply[2] |= 0x02; // TC
        assert_eq!(
            Answer::from_upstream(&reply, now)
                .expect("valid")
                .cache_ttl(&POLICY),
            None
        );
        let zero = Answer::from_upstream(&upstream_reply(7, "a.test.", &[0]), now).expect("valid");
        assert_eq!(zero.cache_ttl(&POLICY), None);
    }

    /// A negative reply for `name` A: NXDOMAIN or NODATA, optionally after a
    /// CNAME with `cname_ttl`, with an SOA (TTL, MINIMUM) in authority if given.
    pub(crate) fn negative_reply(
        name: &str,
        nxdomain: bool,
        cname_ttl: Option<u32>,
        soa: Option<(u32, u32)>,
    ) -> Vec<u8> {
        use hickory_proto::op::ResponseCode;
        use hickory_proto::rr::rdata::{CNAME, SOA};
        let owner = Name::from_ascii(name).expect("valid test name");
        let mut message = Message::new(9, MessageType::Response, OpCode::Query);
        message.metadata.recursion_available = true;
        if nxdomain {
            message.metadata.response_code = ResponseCode::NXDomain;
        }
        message.add_query(Query::query(owner.clone(), RecordType::A));
        if let Some(ttl) = cname_ttl {
            let target = Name::from_ascii("target.test.").expect("valid");
            message.add_answer(Record::from_rdata(owner, ttl, RData::CNAME(CNAME(target))));
        }
        if let Some((ttl, minimum)) = soa {
            let zone = Name::from_ascii("test.").expect("valid");
            let rdata = SOA::new(zone.clone(), zone.clone(), 1, 3600, 600, 86400, minimum);
            message.add_authority(Record::from_rdata(zone, ttl, RData::SOA(rdata)));
        }
        message.set_edns(Edns::new());
        message.to_vec().expect("encodes")
    }

    fn authority_ttls(bytes: &[u8]) -> Vec<u32> {
        let message = Message::from_vec(bytes).expect("valid");
        message.authorities.iter().map(|r| r.ttl).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn negative_ttl_is_the_lesser_of_soa_ttl_and_minimum_and_is_capped() {
        let now = Instant::now();
        let prepared = |bytes: Vec<u8>| Answer::from_upstream(&bytes, now).expect("valid");
        let nxdomain = prepared(negative_reply("nx.test.", true, None, Some((3600, 60))));
        assert_eq!(nxdomain.cache_ttl(&POLICY), Some(60));
        let nodata = prepared(negative_reply("nodata.test.", false, None, Some((45, 900))));
        assert_eq!(nodata.cache_ttl(&POLICY), Some(45));
        let capped = TtlPolicy {
            negative_max: 30,
            ..POLICY
        };
        assert_eq!(nxdomain.cache_ttl(&capped), Some(30));
        let floor = TtlPolicy { min: 120, ..POLICY };
        assert_eq!(nxdomain.cache_ttl(&floor), Some(120));
        // RFC 2308 §5: without an SOA a negative answer is not cached.
        let bare = prepared(negative_reply("bare.test.", true, None, None));
        assert_eq!(bare.cache_ttl(&POLICY), None);
        // A CNAME chain ending in NXDOMAIN is cached whole, for its lowest TTL.
        let chain = prepared(negative_reply(
            "alias.test.",
            true,
            Some(20),
            Some((3600, 60)),
        ));
        assert_eq!(chain.cache_ttl(&POLICY), Some(20));
    }

    #[tokio::test(start_paused = true)]
    async fn cached_negative_answer_carries_the_soa_counted_down() {
        let answer = Answer::from_upstream(
            &negative_reply("nx.test.", true, None, Some((3600, 60))),
            Instant::now(),
        )
        .expect("valid");
        tokio::time::advance(Duration::from_secs(25)).await;
        let query = client_query("NX.test.", false);
        let out = answer.render(&query, TtlMode::Aged(Instant::now()), &POLICY, None, 512);
        assert_eq!(authority_ttls(&out), vec![35]);
        let capped = TtlPolicy {
            negative_max: 30,
            ..POLICY
        };
        let out = answer.render(&query, TtlMode::Aged(Instant::now()), &capped, None, 512);
        assert_eq!(authority_ttls(&out), vec![5]);
    }

    #[test]
    fn stale_render_fixes_ttls_and_carries_the_ede() {
        let answer =
            Answer::from_upstream(&upstream_reply(7, "a.test.", &[300, 5]), Instant::now())
                .expect("valid");
        let query = client_query("a.test.", true);
        let ede = Ede {
            code: crate::error::EDE_STALE_ANSWER,
            text: "stale answer",
        };
        let out = answer.render(&query, TtlMode::Fixed(30), &POLICY, Some(ede), 4096);
        assert_eq!(ttls_of(&out), vec![30, 30]);
        let message = Message::from_vec(&out).expect("valid");
        let edns = message.edns.expect("OPT for an EDNS client");
        let options = edns.options().as_ref();
        assert_eq!(options.len(), 1, "one EDE option");
        // RFC 8914 §4.4: INFO-CODE 3, Stale Answer, then the EXTRA-TEXT.
        // hickory-proto 0.26 has no EDE type: option 15 decodes as `Unknown`.
        let (_, option) = &options[0];
        let EdnsOption::Unknown(wire::OPTION_EDE, data) = option else {
            panic!("expected an EDE option, got {option:?}");
        };
        assert_eq!(data.get(..2), Some(&3u16.to_be_bytes()[..]), "INFO-CODE");
        assert_eq!(data.get(2..), Some(&b"stale answer"[..]), "EXTRA-TEXT");
    }
}
