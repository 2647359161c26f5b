//! A client's message through the resolver's whole query path, over UDP and
//! over TCP: validation, local answers (static records, hosts, special
//! names), the cache (fresh, prefetch, stale, negative, remembered failure),
//! coalescing and the overload answer.
//!
//! The resolver is built as `Server::bind` builds it, with upstreams at
//! 127.0.0.1:9 that are never contacted: the lookups a miss spawns go to a
//! current-thread runtime that is never driven and is dropped after each
//! input, which cancels them (and must empty the in-flight table). The cache
//! is emptied and seeded again before each input, and the arrival time is
//! fixed, so an input always takes the same path.

#![no_main]

mod common;

use std::path::Path;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use hickory_proto::rr::RecordType;
use libfuzzer_sys::fuzz_target;
use punctual::answer::Answer;
use punctual::config::Config;
use punctual::error::LookupError;
use punctual::handler::{Handled, Resolver, Transport};
use punctual::local::{Hosts, hosts};
use punctual::query::{ClientQuery, Key};
use tokio::time::Instant;

use common::{address_reply, check_reply, cname_chain_reply, nxdomain_reply, query};

const CONFIG: &str = r#"
[upstream]
servers = ["127.0.0.1:9", "tcp://127.0.0.1:9"]

[[forward]]
zone = "corp.example"
servers = ["127.0.0.1:9"]

[limits]
# Each input is handled over UDP, TCP, then UDP again: leader, follower, overloaded.
max_waiters = 2

[cache]
serve_stale = true
stale_max_age = "1h"
prefetch = true

[local]
hosts_files = []

[[local.records]]
name = "nas.home.arpa"
type = "A"
value = "192.0.2.7"

[[local.records]]
name = "home.arpa"
type = "MX"
value = "10 mail.home.arpa."

[[local.records]]
name = "_sip._udp.home.arpa"
type = "SRV"
value = "0 5 5060 sip.home.arpa."

[[local.records]]
name = "www.home.arpa"
type = "CNAME"
value = "nas.home.arpa"

[[local.records]]
name = "home.arpa"
type = "TXT"
value = "some text"
"#;

const HOSTS: &str = "\
127.0.0.1 localhost
192.0.2.10 printer.home.arpa printer
2001:db8::10 printer.home.arpa
fe80::1%eth0 router
";

struct World {
    resolver: Arc<Resolver>,
    /// The arrival time of every input.
    arrival: Instant,
    answers: Vec<(Key, Arc<Answer>)>,
    failures: Vec<Key>,
}

fn key(qname: &str, qtype: RecordType, dnssec_ok: bool) -> Key {
    let edns = dnssec_ok.then_some((1232, true));
    ClientQuery::parse(&query(0, qname, qtype, edns))
        .expect("a valid query")
        .key
}

static WORLD: LazyLock<World> = LazyLock::new(|| {
    let config = Config::from_toml(CONFIG, Path::new("query_path.toml")).expect("valid config");
    let table = hosts::table([hosts::parse(HOSTS, Path::new("hosts")).as_slice()]);
    let upstreams = config.upstreams().expect("configured upstreams");
    let resolver =
        punctual::build_resolver(&config, upstreams, Arc::new(Hosts::new(table))).expect("builds");
    // In the future, so that answers received "earlier" are representable.
    let arrival = Instant::now() + Duration::from_secs(3600);
    let before = |seconds| arrival - Duration::from_secs(seconds);
    let prepared = |bytes: Vec<u8>, received| {
        Arc::new(Answer::from_upstream(&bytes, received).expect("valid reply"))
    };
    let mut answers = Vec::new();
    for dnssec_ok in [false, true] {
        let a = RecordType::A;
        answers.extend([
            // Fresh.
            (
                key("cached.test.", a, dnssec_ok),
                prepared(address_reply(1, "cached.test.", a, &[300, 60]), before(5)),
            ),
            (
                key("cached.test.", RecordType::AAAA, dnssec_ok),
                prepared(
                    address_reply(1, "cached.test.", RecordType::AAAA, &[300]),
                    before(5),
                ),
            ),
            // Fresh, in the last tenth of its TTL: prefetched.
            (
                key("prefetch.test.", a, dnssec_ok),
                prepared(address_reply(1, "prefetch.test.", a, &[100]), before(95)),
            ),
            // Expired, within stale_max_age: served stale or refreshed.
            (
                key("stale.test.", a, dnssec_ok),
                prepared(address_reply(1, "stale.test.", a, &[10]), before(60)),
            ),
            // Enough records to be truncated over UDP.
            (
                key("big.test.", a, dnssec_ok),
                prepared(address_reply(1, "big.test.", a, &[300; 40]), before(1)),
            ),
            (
                key("nx.test.", a, dnssec_ok),
                prepared(nxdomain_reply(1, "nx.test.", "test."), before(1)),
            ),
            (
                key("alias.test.", a, dnssec_ok),
                prepared(
                    cname_chain_reply(1, "alias.test.", "middle.test.", "target.test."),
                    before(1),
                ),
            ),
        ]);
    }
    let failures = vec![
        key("fail.test.", RecordType::A, false),
        key("fail.test.", RecordType::A, true),
    ];
    World {
        resolver,
        arrival,
        answers,
        failures,
    }
});

fuzz_target!(|data: &[u8]| {
    let world = &*WORLD;
    let resolver = &world.resolver;
    let cache = resolver.cache();
    cache.flush_all();
    for (key, answer) in &world.answers {
        cache.insert(key.clone(), Arc::clone(answer));
    }
    for key in &world.failures {
        cache.insert_failure(key.clone(), LookupError::Timeout, world.arrival);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let mut waiting = Vec::new();
    {
        let _entered = runtime.enter();
        for transport in [Transport::Udp, Transport::Tcp, Transport::Udp] {
            match resolver.handle(data, transport, world.arrival) {
                Handled::Reply(reply, _source) => check_reply(data, &reply, transport),
                // Never awaited: the lookup it waits for never runs.
                Handled::Wait(pending) => waiting.push(pending),
                Handled::Drop => {}
            }
        }
    }
    drop(waiting);
    // Dropping the runtime drops the lookups it never ran; each must leave
    // the in-flight table as it goes.
    drop(runtime);
    let gauges = resolver.inflight();
    assert_eq!(
        (gauges.lookups, gauges.waiters),
        (0, 0),
        "in-flight table empty"
    );
});
