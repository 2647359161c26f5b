//! Property tests of the three structures every answer passes through, with
//! random inputs (proptest): an upstream reply rendered for a client changes
//! nothing but the ID, the header bits the client owns, the TTLs, the
//! question's letter case and the OPT record; TTLs only count down, within the
//! configured clamps; and the coalescing table, under random interleavings of
//! joins, answers, deadlines, departures and dropped lookups on a paused clock,
//! answers every waiter exactly once by its deadline, never exceeds its limits
//! and empties when idle. Library-only: no sockets.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use proptest::prelude::*;
use punctual::answer::{Answer, TtlMode, TtlPolicy};
use punctual::cache::{Cache, CacheLimits, Hit};
use punctual::error::LookupError;
use punctual::inflight::{Inflight, InflightGauges, Joined, LookupHandle, Outcome};
use punctual::metrics::Metrics;
use punctual::query::ClientQuery;
use tokio::task::JoinHandle;
use tokio::time::Instant;

const HEADER_LEN: usize = 12;

/// Modest case counts keep the file at a few seconds; a failure prints its
/// minimal input instead of writing a regressions file into the tree.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---- random upstream replies and client queries ---------------------------------

/// Lower-case labels; the client's spelling is derived by flipping case.
fn name_labels() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec("[a-z0-9]{1,10}", 1..4)
}

fn to_name(labels: &[String]) -> Name {
    Name::from_ascii(format!("{}.", labels.join("."))).expect("generated names are valid")
}

fn record_type() -> impl Strategy<Value = RecordType> {
    prop_oneof![
        Just(RecordType::A),
        Just(RecordType::AAAA),
        Just(RecordType::CNAME),
        Just(RecordType::TXT),
        Just(RecordType::MX),
    ]
}

/// TTLs as upstreams send them: mostly everyday values, sometimes anything.
fn ttl() -> impl Strategy<Value = u32> {
    prop_oneof![4 => 0u32..=604_800, 1 => any::<u32>()]
}

fn rdata(rtype: RecordType, seed: u32, other: &Name) -> RData {
    match rtype {
        RecordType::A => RData::A(A(seed.into())),
        RecordType::AAAA => RData::AAAA(AAAA((u128::from(seed) << 64 | 1).into())),
        RecordType::CNAME => RData::CNAME(CNAME(other.clone())),
        RecordType::MX => RData::MX(MX::new(seed as u16, other.clone())),
        _ => RData::TXT(TXT::new(vec![format!("text {seed}")])),
    }
}

#[derive(Debug, Clone)]
struct Reply {
    labels: Vec<String>,
    qtype: RecordType,
    /// Type, TTL, rdata seed, and whether the owner is the question's name.
    answers: Vec<(RecordType, u32, u32, bool)>,
    nxdomain: bool,
    /// TTL and MINIMUM of an SOA in authority (only without answers).
    soa: Option<(u32, u32)>,
    /// An A record in the additional section.
    glue: Option<u32>,
    upstream_edns: bool,
    authoritative: bool,
    authentic_data: bool,
}

fn reply() -> impl Strategy<Value = Reply> {
    (
        name_labels(),
        record_type(),
        prop::collection::vec((record_type(), ttl(), any::<u32>(), any::<bool>()), 0..5),
        any::<bool>(),
        prop::option::of((ttl(), ttl())),
        prop::option::of(ttl()),
        any::<[bool; 3]>(),
    )
        .prop_map(
            |(labels, qtype, answers, nxdomain, soa, glue, [edns, aa, ad])| {
                let negative = answers.is_empty();
                Reply {
                    labels,
                    qtype,
                    answers,
                    nxdomain: nxdomain && negative,
                    soa: soa.filter(|_| negative),
                    glue,
                    upstream_edns: edns,
                    authoritative: aa,
                    authentic_data: ad,
                }
            },
        )
}

#[derive(Debug, Clone)]
struct Client {
    /// Per letter of the name: upper case or not.
    upper: Vec<bool>,
    id: u16,
    recursion_desired: bool,
    checking_disabled: bool,
    authentic_data: bool,
    /// Advertised payload and DO, or no OPT.
    edns: Option<(u16, bool)>,
}

fn client() -> impl Strategy<Value = Client> {
    (
        prop::collection::vec(any::<bool>(), 64),
        any::<u16>(),
        any::<[bool; 3]>(),
        prop::option::of((512u16..=4096, any::<bool>())),
    )
        .prop_map(|(upper, id, [rd, cd, ad], edns)| Client {
            upper,
            id,
            recursion_desired: rd,
            checking_disabled: cd,
            authentic_data: ad,
            edns,
        })
}

impl Reply {
    /// The reply as an upstream sends it to our query (RD=1, CD echoed).
    fn message(&self, checking_disabled: bool) -> Message {
        let name = to_name(&self.labels);
        let other = Name::from_ascii("other.example.").expect("valid");
        let mut message = Message::new(0x4242, MessageType::Response, OpCode::Query);
        message.metadata.recursion_desired = true;
        message.metadata.recursion_available = true;
        message.metadata.checking_disabled = checking_disabled;
        message.metadata.authoritative = self.authoritative;
        message.metadata.authentic_data = self.authentic_data;
        if self.nxdomain {
            message.metadata.response_code = ResponseCode::NXDomain;
        }
        message.add_query(Query::query(name.clone(), self.qtype));
        for &(rtype, ttl, seed, own) in &self.answers {
            let owner = if own { name.clone() } else { other.clone() };
            message.add_answer(Record::from_rdata(owner, ttl, rdata(rtype, seed, &name)));
        }
        if let Some((ttl, minimum)) = self.soa {
            let zone = name.base_name();
            let soa = SOA::new(other.clone(), other.clone(), 1, 3600, 600, 86400, minimum);
            message.add_authority(Record::from_rdata(zone, ttl, RData::SOA(soa)));
        }
        if let Some(ttl) = self.glue {
            message.add_additional(Record::from_rdata(
                other,
                ttl,
                RData::A(A::new(192, 0, 2, 1)),
            ));
        }
        if self.upstream_edns {
            message.set_edns(Edns::new());
        }
        message
    }
}

impl Client {
    fn spelling(&self, labels: &[String]) -> Vec<String> {
        let mut flips = self.upper.iter().cycle();
        labels
            .iter()
            .map(|label| {
                label
                    .chars()
                    .map(|c| match flips.next() {
                        Some(true) => c.to_ascii_uppercase(),
                        _ => c,
                    })
                    .collect()
            })
            .collect()
    }

    fn query(&self, labels: &[String], qtype: RecordType) -> ClientQuery {
        let mut message = Message::new(self.id, MessageType::Query, OpCode::Query);
        message.metadata.recursion_desired = self.recursion_desired;
        message.metadata.checking_disabled = self.checking_disabled;
        message.metadata.authentic_data = self.authentic_data;
        message.add_query(Query::query(to_name(&self.spelling(labels)), qtype));
        if let Some((payload, dnssec_ok)) = self.edns {
            let mut edns = Edns::new();
            edns.set_max_payload(payload);
            edns.set_dnssec_ok(dnssec_ok);
            message.set_edns(edns);
        }
        let bytes = message.to_vec().expect("a generated query encodes");
        ClientQuery::parse(&bytes).expect("a generated query is valid")
    }

    fn dnssec_ok(&self) -> bool {
        self.edns.is_some_and(|(_, dnssec_ok)| dnssec_ok)
    }
}

fn all_ttls(message: &Message) -> Vec<u32> {
    let sections = [&message.answers, &message.authorities, &message.additionals];
    sections.into_iter().flatten().map(|r| r.ttl).collect()
}

fn zero_ttls(message: &mut Message) {
    for section in [
        &mut message.answers,
        &mut message.authorities,
        &mut message.additionals,
    ] {
        for record in section.iter_mut() {
            record.ttl = 0;
        }
    }
}

fn policy() -> impl Strategy<Value = TtlPolicy> {
    (0u32..=600, 0u32..=200_000, 0u32..=7200).prop_map(|(min, max, negative_max)| TtlPolicy {
        min,
        max,
        negative_max,
    })
}

proptest! {
    #![proptest_config(config(256))]

    /// Rendering patches the ID, the client-owned header bits, the TTLs and the
    /// question's case, sets the OPT as the client asked, and nothing else:
    /// decoded, the client's response equals the upstream's reply so adjusted.
    #[test]
    fn render_changes_only_id_ttls_case_flags_and_opt(
        reply in reply(),
        client in client(),
        policy in policy(),
        age in 0u32..=100_000,
        udp in any::<bool>(),
    ) {
        let upstream = reply.message(client.checking_disabled);
        let bytes = upstream.to_vec().expect("generated replies encode");
        let query = client.query(&reply.labels, reply.qtype);
        let received = Instant::now();
        let answer = Answer::from_upstream(&bytes, received).expect("a well-formed reply is accepted");
        let limit = if udp { query.udp_limit() } else { usize::from(u16::MAX) };
        let now = received + Duration::from_secs(u64::from(age));
        let out = answer.render(&query, TtlMode::Aged(now), &policy, None, limit);
        let rendered = Message::from_vec(&out).expect("the rendered response decodes");

        // The question exactly as the client spelled it (Name compares
        // case-insensitively, so the bytes are compared).
        prop_assert_eq!(&out[HEADER_LEN..HEADER_LEN + query.question.len()], &query.question[..]);

        let mut expected = upstream.clone();
        expected.metadata.id = client.id;
        expected.metadata.recursion_desired = client.recursion_desired;
        expected.metadata.authoritative = false;
        // RFC 6840 §5.8: AD only for a client that asked with AD or DO.
        expected.metadata.authentic_data =
            reply.authentic_data && (client.authentic_data || client.dnssec_ok());
        expected.queries = vec![Query::query(to_name(&client.spelling(&reply.labels)), reply.qtype)];
        // RFC 6891 §6.1.1: the upstream's OPT is not passed on; the client's
        // own gets ours (payload 1232, DO echoed, no options).
        expected.edns = client.edns.map(|(_, dnssec_ok)| {
            let mut edns = Edns::new();
            edns.set_max_payload(1232);
            edns.set_dnssec_ok(dnssec_ok);
            edns
        });
        if rendered.metadata.truncation {
            // Too big for the client's UDP size: the question and TC only.
            prop_assert!(udp && !upstream.metadata.truncation);
            prop_assert!(out.len() <= limit);
            expected.metadata.truncation = true;
            expected.answers.clear();
            expected.authorities.clear();
            expected.additionals.clear();
        }
        let mut rendered_zeroed = rendered.clone();
        zero_ttls(&mut rendered_zeroed);
        zero_ttls(&mut expected);
        prop_assert_eq!(rendered_zeroed, expected);
    }

    /// TTLs: at receipt every one lies within the clamps; afterwards each counts
    /// down by exactly the whole seconds elapsed, never rises and never exceeds
    /// the max clamp; a fixed (stale) render sets them all; and while the cache
    /// serves the entry as fresh, none is zero.
    #[test]
    fn ttls_count_down_within_the_clamps(
        reply in reply(),
        client in client(),
        policy in policy(),
        mut ages in prop::collection::vec(0u64..=300_000, 1..6),
        fixed in ttl(),
    ) {
        let bytes = reply.message(client.checking_disabled).to_vec().expect("encodes");
        let query = client.query(&reply.labels, reply.qtype);
        let received = Instant::now();
        let answer = Arc::new(Answer::from_upstream(&bytes, received).expect("accepted"));
        let ttls_at = |mode| {
            let out = answer.render(&query, mode, &policy, None, usize::from(u16::MAX));
            all_ttls(&Message::from_vec(&out).expect("decodes"))
        };
        let ceiling = policy.max.max(policy.min);
        let fresh = ttls_at(TtlMode::Aged(received));
        for &ttl in &fresh {
            prop_assert!((policy.min..=ceiling).contains(&ttl), "{ttl} outside [{}, {ceiling}]", policy.min);
        }
        if let Some(cache_ttl) = answer.cache_ttl(&policy) {
            prop_assert!((policy.min.max(1)..=ceiling).contains(&cache_ttl));
        }
        ages.sort_unstable();
        let mut previous = fresh.clone();
        for age in ages {
            let now = received + Duration::from_secs(age) + Duration::from_millis(age % 1000);
            let aged = ttls_at(TtlMode::Aged(now));
            prop_assert_eq!(aged.len(), fresh.len());
            for ((&ttl, &before), &first) in aged.iter().zip(&previous).zip(&fresh) {
                prop_assert!(ttl <= before && ttl <= ceiling);
                prop_assert_eq!(ttl, first.saturating_sub(u32::try_from(age).unwrap_or(u32::MAX)));
            }
            previous = aged;
        }
        let stale = ttls_at(TtlMode::Fixed(fixed));
        prop_assert!(stale.iter().all(|&ttl| ttl == fixed));

        // Through the cache: a fresh hit never carries a TTL of zero.
        let cache = Cache::new(
            CacheLimits {
                entries: std::num::NonZeroUsize::new(8).expect("non-zero"),
                max_bytes: 1 << 20,
                ttl: policy,
                failure_ttl: Duration::ZERO,
                serve_stale: false,
                stale_max_age: Duration::ZERO,
                prefetch: false,
            },
            Arc::new(Metrics::default()),
        );
        cache.insert(&query.key, Arc::clone(&answer));
        for second in [0, 1, 59, 3599, 86_399, 200_000] {
            let now = received + Duration::from_secs(second);
            if let Hit::Fresh { answer, .. } = cache.get(&query.key, now) {
                let out = answer.render(&query, TtlMode::Aged(now), &policy, None, usize::from(u16::MAX));
                let ttls = all_ttls(&Message::from_vec(&out).expect("decodes"));
                prop_assert!(ttls.iter().all(|&ttl| ttl > 0), "fresh at {second} s with {ttls:?}");
            }
        }
    }
}

// ---- the coalescing table under random interleavings ----------------------------

const KEYS: usize = 3;

#[derive(Debug, Clone)]
enum Op {
    /// A client asks for `key` with a deadline this far ahead.
    Join {
        key: usize,
        deadline_ms: u64,
    },
    /// The lookup for `key` (the latest started) completes, well or not.
    Complete {
        key: usize,
        ok: bool,
    },
    /// The lookup task for `key` is dropped without completing (a panic).
    DropLookup {
        key: usize,
    },
    /// The n-th client so far goes away (its task is aborted).
    Cancel {
        waiter: usize,
    },
    Advance {
        ms: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..KEYS, 1u64..400).prop_map(|(key, deadline_ms)| Op::Join { key, deadline_ms }),
        2 => (0..KEYS, any::<bool>()).prop_map(|(key, ok)| Op::Complete { key, ok }),
        1 => (0..KEYS).prop_map(|key| Op::DropLookup { key }),
        1 => (0..64usize).prop_map(|waiter| Op::Cancel { waiter }),
        3 => (0u64..150).prop_map(|ms| Op::Advance { ms }),
    ]
}

/// What a waiter got: the lookup's outcome simplified, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Got {
    Answer,
    Failed(LookupError),
}

fn got(outcome: &Outcome) -> Got {
    match outcome {
        Ok(_) => Got::Answer,
        Err(error) => Got::Failed(*error),
    }
}

/// The model of one lookup in the table: its waiters by client index.
#[derive(Default)]
struct ModelLookup {
    waiters: Vec<usize>,
}

struct Asker {
    deadline: Instant,
    task: JoinHandle<()>,
    /// What the model says this client gets, once decided.
    expected: Option<(Got, Instant)>,
    cancelled: bool,
}

/// Lets every task woken so far run (the clock does not move meanwhile).
async fn settle() {
    for _ in 0..16 {
        tokio::task::yield_now().await;
    }
}

fn an_answer() -> Arc<Answer> {
    let mut message = Message::new(1, MessageType::Response, OpCode::Query);
    let name = Name::from_ascii("coalesced.test.").expect("valid");
    message.add_query(Query::query(name.clone(), RecordType::A));
    message.add_answer(Record::from_rdata(name, 60, RData::A(A::new(192, 0, 2, 7))));
    let bytes = message.to_vec().expect("encodes");
    Arc::new(Answer::from_upstream(&bytes, Instant::now()).expect("valid"))
}

fn key(index: usize) -> punctual::query::Key {
    punctual::query::Key {
        name: format!("\x01k\x01{index}\x00").into_bytes().into(),
        qtype: 1,
        qclass: 1,
        dnssec_ok: false,
        checking_disabled: false,
    }
}

/// Runs `ops` against a real table and a model of it; returns a description of
/// the first broken invariant.
async fn run_table(max_inflight: usize, max_waiters: usize, ops: Vec<Op>) -> Result<(), String> {
    let metrics = Arc::new(Metrics::default());
    let table = Inflight::new(max_inflight, max_waiters, Arc::clone(&metrics));
    let answer = an_answer();
    let results: Arc<Mutex<Vec<(usize, Got, Instant)>>> = Arc::default();
    let mut clients: Vec<Asker> = Vec::new();
    let mut model: HashMap<usize, ModelLookup> = HashMap::new();
    let mut handles: HashMap<usize, LookupHandle> = HashMap::new();
    let mut overloaded = 0u64;

    // Ends the model's lookup for `key`: each of its waiters gets `outcome` now.
    let finish = |model: &mut HashMap<usize, ModelLookup>,
                  clients: &mut [Asker],
                  key: usize,
                  outcome: Got| {
        if let Some(lookup) = model.remove(&key) {
            for waiter in lookup.waiters {
                clients[waiter].expected = Some((outcome, Instant::now()));
            }
        }
    };
    // Removes a waiter that left (deadline or departure); a lookup left with
    // none is removed from the table.
    let leave = |model: &mut HashMap<usize, ModelLookup>, waiter: usize| {
        model.retain(|_, lookup| {
            lookup.waiters.retain(|&w| w != waiter);
            !lookup.waiters.is_empty()
        });
    };

    for op in ops {
        match op {
            Op::Join {
                key: k,
                deadline_ms,
            } => {
                let deadline = Instant::now() + Duration::from_millis(deadline_ms);
                let in_model = model.get(&k).map(|lookup| lookup.waiters.len());
                let waiter = match (table.join(&key(k), false), in_model) {
                    (Joined::Overloaded, Some(waiters)) if waiters >= max_waiters => {
                        overloaded += 1;
                        None
                    }
                    (Joined::Overloaded, None) if model.len() >= max_inflight => {
                        overloaded += 1;
                        None
                    }
                    (Joined::Follower(waiter), Some(waiters)) if waiters < max_waiters => {
                        Some(waiter)
                    }
                    (Joined::Leader { waiter, lookup }, None) if model.len() < max_inflight => {
                        model.insert(k, ModelLookup::default());
                        handles.insert(k, lookup);
                        Some(waiter)
                    }
                    (_, in_model) => {
                        return Err(format!(
                            "join {k}: unexpected result (model: {in_model:?} waiters, {} lookups)",
                            model.len()
                        ));
                    }
                };
                if let Some(waiter) = waiter {
                    let index = clients.len();
                    let results = Arc::clone(&results);
                    let task = tokio::spawn(async move {
                        let outcome = waiter.wait(deadline).await;
                        let mut results = results.lock().unwrap_or_else(|p| p.into_inner());
                        results.push((index, got(&outcome), Instant::now()));
                    });
                    if let Some(lookup) = model.get_mut(&k) {
                        lookup.waiters.push(index);
                    }
                    clients.push(Asker {
                        deadline,
                        task,
                        expected: None,
                        cancelled: false,
                    });
                }
            }
            Op::Complete { key: k, ok } => {
                if let Some(handle) = handles.remove(&k) {
                    let (outcome, simple): (Outcome, Got) = if ok {
                        (Ok(Arc::clone(&answer)), Got::Answer)
                    } else {
                        let error = LookupError::Network(std::io::ErrorKind::ConnectionReset);
                        (Err(error), Got::Failed(error))
                    };
                    handle.complete(outcome);
                    finish(&mut model, &mut clients, k, simple);
                }
            }
            Op::DropLookup { key: k } => {
                if let Some(handle) = handles.remove(&k) {
                    drop(handle);
                    finish(
                        &mut model,
                        &mut clients,
                        k,
                        Got::Failed(LookupError::Timeout),
                    );
                }
            }
            Op::Cancel { waiter } => {
                if let Some(client) = clients.get_mut(waiter)
                    && client.expected.is_none()
                    && !client.cancelled
                {
                    client.task.abort();
                    client.cancelled = true;
                    leave(&mut model, waiter);
                }
            }
            Op::Advance { ms } => {
                // Sleeping lets the paused clock run timer by timer, so each
                // deadline on the way fires at its own instant.
                tokio::time::sleep(Duration::from_millis(ms)).await;
                let now = Instant::now();
                for (index, client) in clients.iter_mut().enumerate() {
                    if client.expected.is_none() && !client.cancelled && client.deadline <= now {
                        client.expected =
                            Some((Got::Failed(LookupError::Timeout), client.deadline));
                        leave(&mut model, index);
                    }
                }
            }
        }
        settle().await;
        check_gauges(&table, &model, max_inflight, max_waiters)?;
    }

    // Idle: every deadline passes; the table must be empty.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for client in clients
        .iter_mut()
        .filter(|c| c.expected.is_none() && !c.cancelled)
    {
        client.expected = Some((Got::Failed(LookupError::Timeout), client.deadline));
    }
    model.clear();
    settle().await;
    check_gauges(&table, &model, max_inflight, max_waiters)?;
    if table.gauges()
        != (InflightGauges {
            lookups: 0,
            waiters: 0,
        })
    {
        return Err(format!("not empty when idle: {:?}", table.gauges()));
    }
    drop(handles);

    let results = results.lock().unwrap_or_else(|p| p.into_inner()).clone();
    for (index, client) in clients.iter().enumerate() {
        let outcomes: Vec<_> = results.iter().filter(|(i, _, _)| *i == index).collect();
        match (client.cancelled, client.expected, outcomes.as_slice()) {
            (true, _, []) => {}
            (false, Some((want, when)), [(_, outcome, at)]) => {
                if (*outcome, *at) != (want, when) {
                    return Err(format!(
                        "client {index}: got {outcome:?} at {:?}, want {want:?} at {:?} (deadline {:?})",
                        *at - client.deadline,
                        when - client.deadline,
                        client.deadline
                    ));
                }
                if *at > client.deadline {
                    return Err(format!("client {index}: answered after its deadline"));
                }
            }
            (cancelled, expected, outcomes) => {
                return Err(format!(
                    "client {index} (cancelled {cancelled}, expected {expected:?}): outcomes {outcomes:?}"
                ));
            }
        }
    }
    if metrics.overload_answers.get() != overloaded {
        return Err(format!(
            "overload_answers {} but {overloaded} joins were refused",
            metrics.overload_answers.get()
        ));
    }
    Ok(())
}

fn check_gauges(
    table: &Inflight,
    model: &HashMap<usize, ModelLookup>,
    max_inflight: usize,
    max_waiters: usize,
) -> Result<(), String> {
    let want = InflightGauges {
        lookups: model.len(),
        waiters: model.values().map(|lookup| lookup.waiters.len()).sum(),
    };
    let gauges = table.gauges();
    if gauges != want {
        return Err(format!("gauges {gauges:?}, model {want:?}"));
    }
    if gauges.lookups > max_inflight || model.values().any(|l| l.waiters.len() > max_waiters) {
        return Err(format!("limits exceeded: {gauges:?}"));
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(192))]

    #[test]
    fn coalescing_table_keeps_its_invariants(
        max_inflight in 1usize..=3,
        max_waiters in 1usize..=3,
        ops in prop::collection::vec(op(), 1..60),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a runtime per case");
        let result = runtime.block_on(run_table(max_inflight, max_waiters, ops));
        prop_assert!(result.is_ok(), "{}", result.err().unwrap_or_default());
    }
}
