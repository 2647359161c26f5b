//! The query-and-wait helpers most behaviour tests share: one EDNS query that
//! must be answered, the Extended DNS Error codes of RFC 8914 written out (so
//! tests check the spec, not the library's own constants), and waiting for
//! punctual's in-flight table to empty.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use tokio::time::{Instant, sleep};

use super::client::{QueryOpts, Reply, answer_ips, query_udp};
use super::punctual::{TEST_DEADLINE, TestServer};

/// How long a test client waits at most: far past any deadline, so a missing
/// reply fails as a timeout instead of hanging the test.
pub const CLIENT_LIMIT: Duration = Duration::from_secs(2);

/// What "at once" means for answers that wait for no upstream: a third of
/// the test deadline, so it still tells a local answer from one that waited,
/// with room for a loaded two-core CI machine's scheduling.
pub const AT_ONCE: Duration = Duration::from_millis(TEST_DEADLINE.as_millis() as u64 / 3);

/// RFC 8914 §4: the codes punctual sends.
pub const EDE_OTHER: u16 = 0;
pub const EDE_STALE_ANSWER: u16 = 3;
pub const EDE_NO_REACHABLE_AUTHORITY: u16 = 22;
pub const EDE_NETWORK_ERROR: u16 = 23;

/// Queries with EDNS, so failures carry their Extended DNS Error.
pub fn edns() -> QueryOpts {
    QueryOpts::default().with_edns(1232)
}

/// An EDNS query for `name` A over UDP; panics if punctual does not reply.
pub async fn ask(server: SocketAddr, name: &str) -> Reply {
    ask_type(server, name, RecordType::A).await
}

/// An EDNS query for `name` `rtype` over UDP; panics if punctual does not reply.
pub async fn ask_type(server: SocketAddr, name: &str, rtype: RecordType) -> Reply {
    query_udp(server, name, rtype, &edns(), CLIENT_LIMIT)
        .await
        .unwrap_or_else(|e| panic!("{name} {rtype}: no reply from punctual: {e}"))
}

/// The reply is NOERROR with exactly the address `ip`.
pub fn assert_answer(reply: &Reply, ip: &str) {
    assert_eq!(
        reply.message.response_code,
        ResponseCode::NoError,
        "{:?}",
        reply.message
    );
    let want: IpAddr = ip.parse().expect("test IP");
    assert_eq!(answer_ips(&reply.message), [want], "{:?}", reply.message);
}

/// Polls until no lookup (and so no waiter) is in flight; returns when that was
/// seen. Panics after `limit`.
pub async fn wait_idle(server: &TestServer, limit: Duration) -> Instant {
    let give_up = Instant::now() + limit;
    loop {
        let gauges = server.stats.inflight();
        if gauges.lookups == 0 && gauges.waiters == 0 {
            return Instant::now();
        }
        assert!(
            Instant::now() < give_up,
            "in-flight table not empty after {limit:?}: {gauges:?}"
        );
        sleep(Duration::from_millis(1)).await;
    }
}
