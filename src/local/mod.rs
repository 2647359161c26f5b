//! Local answers: questions punctual answers itself, before the cache and without
//! an upstream. In order of precedence:
//! 1. static records (`[[local.records]]`);
//! 2. hosts files (`[local] hosts_files`), swapped whole when a file changes;
//! 3. the special names of [`special`]: localhost, invalid, local, the RFC 6303
//!    locally served zones and single-label names;
//! 4. any other ANY query: the RFC 8482 §4.2 HINFO.
//!
//! A name that static records or a hosts file hold answers every type from there:
//! the records of the asked type, a CNAME (followed within local data), or NODATA
//! (NOERROR, no records). Only class IN is answered locally.
//!
//! The answer is built with hickory-proto and then rendered for the client like an
//! upstream reply ([`Answer::render`]): ID, question case, RD/CD, RA=1, the
//! client's OPT, TC=1 when too big for UDP. AA stays 0.

pub mod hosts;
pub mod name;
pub mod records;
pub mod special;
pub mod watch;

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{RData, Record, RecordType};
use tokio::time::Instant;

use crate::answer::{Answer, TtlMode, TtlPolicy};
use crate::config::Config;
use crate::query::{ClientQuery, Key, rcode};
use crate::response;
use special::{Special, SpecialZones, ZoneKind};

/// RFC 1035 §3.2.4: class IN.
const CLASS_IN: u16 = 1;

/// The TTL of the loopback answers for localhost: they never change.
const LOOPBACK_TTL: u32 = 86_400;

/// How many CNAMEs are followed within local data (a loop ends here too).
const MAX_CNAME_CHAIN: usize = 8;

/// Local answers carry their own TTLs, unclamped by `[cache]`: they are not
/// cached, and a hosts answer's TTL 0 must stay 0.
const AS_GIVEN: TtlPolicy = TtlPolicy {
    min: 0,
    max: u32::MAX,
    negative_max: u32::MAX,
};

/// Records by owner, the lower-cased plain wire name. Every client query is
/// looked up here, so the hasher is foldhash rather than SipHash (the keys come
/// from config and hosts files, never from clients, so there is no flooding of
/// one bucket to defend against).
#[derive(Debug, Default)]
pub struct RecordTable(HashMap<Box<[u8]>, Vec<Record>, foldhash::fast::RandomState>);

impl RecordTable {
    /// Adds `record` unless its owner already has the same data.
    pub fn insert(&mut self, record: Record) {
        let records = self.0.entry(name::key(&record.name)).or_default();
        if !records.iter().any(|held| held.data == record.data) {
            records.push(record);
        }
    }

    pub fn get(&self, key: &[u8]) -> Option<&[Record]> {
        self.0.get(key).map(Vec::as_slice)
    }

    /// How many names hold records.
    pub fn names(&self) -> usize {
        self.0.len()
    }
}

/// The hosts table in use: replaced whole when a hosts file changes.
#[derive(Debug, Default)]
pub struct Hosts(RwLock<Arc<RecordTable>>);

impl Hosts {
    pub fn new(table: RecordTable) -> Hosts {
        Hosts(RwLock::new(Arc::new(table)))
    }

    pub fn current(&self) -> Arc<RecordTable> {
        Arc::clone(&self.0.read().unwrap_or_else(PoisonError::into_inner))
    }

    pub fn replace(&self, table: RecordTable) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(table);
    }
}

/// A locally made answer, before rendering.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalAnswer {
    pub rcode: u8,
    pub answers: Vec<Record>,
    /// The zone's SOA, for a negative answer from a special zone.
    pub authority: Vec<Record>,
}

impl LocalAnswer {
    fn records(answers: Vec<Record>) -> LocalAnswer {
        LocalAnswer {
            rcode: rcode::NOERROR,
            answers,
            authority: Vec::new(),
        }
    }

    fn negative(rcode: u8, soa: Option<Record>) -> LocalAnswer {
        LocalAnswer {
            rcode,
            answers: Vec::new(),
            authority: soa.into_iter().collect(),
        }
    }
}

pub struct LocalAnswers {
    records: RecordTable,
    /// Shared with the hosts watcher, and kept across reloads.
    hosts: Arc<Hosts>,
    special: SpecialZones,
}

impl LocalAnswers {
    /// The static records and special zones of `config` (validated), and the
    /// hosts table the watcher keeps current.
    pub fn new(config: &Config, hosts: Arc<Hosts>) -> LocalAnswers {
        let records = records::table(&config.local.records);
        let forwarded = config
            .forward
            .iter()
            .map(|forward| forward.zone_wire().into_boxed_slice())
            .collect();
        tracing::info!(
            static_names = records.names(),
            hosts_names = hosts.current().names(),
            forward_single_label = config.local.forward_single_label,
            "local answers"
        );
        LocalAnswers {
            records,
            hosts,
            special: SpecialZones::new(forwarded, config.local.forward_single_label),
        }
    }

    /// The hosts table, for the watcher that replaces it.
    pub fn hosts(&self) -> &Arc<Hosts> {
        &self.hosts
    }

    /// The response to `query` if it is answered locally; `limit` is the most
    /// the client's transport takes.
    pub fn answer(&self, query: &ClientQuery, limit: usize) -> Option<Vec<u8>> {
        let answer = self.lookup(&query.key)?;
        Some(render(&answer, query, limit))
    }

    /// The local answer to a question, if it has one.
    pub fn lookup(&self, key: &Key) -> Option<LocalAnswer> {
        if key.qclass != CLASS_IN {
            return None;
        }
        let qtype = RecordType::from(key.qtype);
        let hosts = self.hosts.current();
        if let Some(held) = self.held(&key.name, &hosts) {
            if qtype == RecordType::ANY {
                let owner = name::from_wire(&key.name)?;
                return Some(LocalAnswer::records(vec![special::any_hinfo(owner)]));
            }
            return Some(LocalAnswer::records(self.chase(held, qtype, &hosts)));
        }
        match self.special.lookup(&key.name) {
            Some(Special::Zone { apex, kind }) => Some(zone_answer(&key.name, qtype, apex, kind)),
            Some(Special::SingleLabel) => Some(LocalAnswer::negative(rcode::NXDOMAIN, None)),
            None if qtype == RecordType::ANY => {
                Some(LocalAnswer::records(vec![special::any_hinfo(
                    name::from_wire(&key.name)?,
                )]))
            }
            None => None,
        }
    }

    /// The records local data holds for a name: static records, else hosts.
    fn held<'a>(&'a self, key: &[u8], hosts: &'a RecordTable) -> Option<&'a [Record]> {
        self.records.get(key).or_else(|| hosts.get(key))
    }

    /// The records of `qtype` among `held`; or its CNAME, followed through local
    /// data to the records of `qtype` (RFC 1034 §3.6.2); or none (NODATA).
    fn chase<'a>(
        &'a self,
        mut held: &'a [Record],
        qtype: RecordType,
        hosts: &'a RecordTable,
    ) -> Vec<Record> {
        let mut answers = Vec::new();
        for _ in 0..MAX_CNAME_CHAIN {
            let wanted: Vec<&Record> = held
                .iter()
                .filter(|record| record.record_type() == qtype)
                .collect();
            if !wanted.is_empty() || qtype == RecordType::CNAME {
                answers.extend(wanted.into_iter().cloned());
                break;
            }
            let Some(cname) = held.iter().find(|r| r.record_type() == RecordType::CNAME) else {
                break;
            };
            answers.push(cname.clone());
            let RData::CNAME(target) = &cname.data else {
                break;
            };
            match self.held(&name::key(&target.0), hosts) {
                Some(next) => held = next,
                None => break,
            }
        }
        answers
    }
}

/// The answer for a name in a special zone.
fn zone_answer(qname: &[u8], qtype: RecordType, apex: &[u8], kind: ZoneKind) -> LocalAnswer {
    let at_apex = qname == apex;
    let owner = || name::from_wire(qname);
    let found = match (kind, qtype) {
        (ZoneKind::Nonexistent, _) => None,
        (_, RecordType::SOA) if at_apex => special::soa(apex),
        (ZoneKind::Loopback, RecordType::A) => owner()
            .map(|owner| Record::from_rdata(owner, LOOPBACK_TTL, RData::A(A::new(127, 0, 0, 1)))),
        (ZoneKind::Loopback, RecordType::AAAA) => owner().map(|owner| {
            Record::from_rdata(
                owner,
                LOOPBACK_TTL,
                RData::AAAA(AAAA::new(0, 0, 0, 0, 0, 0, 0, 1)),
            )
        }),
        (ZoneKind::Loopback, RecordType::ANY) => owner().map(special::any_hinfo),
        (ZoneKind::Empty, RecordType::ANY) if at_apex => owner().map(special::any_hinfo),
        _ => None,
    };
    match found {
        Some(record) => LocalAnswer::records(vec![record]),
        None if kind == ZoneKind::Nonexistent => LocalAnswer::negative(rcode::NXDOMAIN, None),
        // RFC 6303 §3: the zone holds only its apex; localhost every name below it.
        None if at_apex || kind == ZoneKind::Loopback => {
            LocalAnswer::negative(rcode::NOERROR, special::soa(apex))
        }
        None => LocalAnswer::negative(rcode::NXDOMAIN, special::soa(apex)),
    }
}

/// Renders a local answer for `query` through [`Answer::render`], so it gets
/// exactly the header, question, OPT and truncation rules of any other answer.
fn render(answer: &LocalAnswer, query: &ClientQuery, limit: usize) -> Vec<u8> {
    encode(answer, &query.key)
        .and_then(|bytes| Answer::from_upstream(&bytes, Instant::now()).ok())
        .map(|prepared| {
            prepared.render(
                query,
                TtlMode::Aged(prepared.received()),
                &AS_GIVEN,
                None,
                limit,
            )
        })
        // A name hickory cannot hold (binary labels): the right RCODE, no records.
        .unwrap_or_else(|| response::synthesized(query, answer.rcode, 0, None))
}

/// The answer as a message for the question in `key`.
fn encode(answer: &LocalAnswer, key: &Key) -> Option<Vec<u8>> {
    let qname = name::from_wire(&key.name)?;
    let mut message = Message::new(0, MessageType::Response, OpCode::Query);
    message.metadata.response_code = ResponseCode::from(0, answer.rcode);
    message.metadata.recursion_available = true;
    message.add_query(Query::query(qname, RecordType::from(key.qtype)));
    message.add_answers(answer.answers.iter().cloned());
    for record in &answer.authority {
        message.add_authority(record.clone());
    }
    message.to_vec().ok()
}

#[cfg(test)]
mod tests;
