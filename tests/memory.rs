//! Memory per lookup in flight while the upstream is silent: the state a
//! hung upstream makes punctual hold is bounded by max_inflight, and each
//! lookup's share of it must stay small (an issue-7 figure: RSS growth under
//! a hung upstream). A counting allocator measures the heap bytes held.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use common::punctual::{core_config, start_with};
use common::*;
use hickory_proto::rr::RecordType;
use tokio::net::UdpSocket;
use tokio::time::{Instant, sleep};

/// Heap bytes currently allocated by this test process.
static HELD: AtomicIsize = AtomicIsize::new(0);

struct Counting;

// SAFETY: forwards every call to the system allocator unchanged and only
// keeps a running total of the sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        HELD.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HELD.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Each lookup waiting on a silent upstream, with its client's waiting query,
/// costs less than this much heap: the lookup's and the waiter's tasks, the
/// attempt's socket registration and the question. Measured 4.9 KB; it was
/// 11.0 KB while each waiting attempt held a 4 KiB receive buffer and was sized
/// like a TLS handshake (see src/upstream/udp.rs and `Attempt::finish`).
const MOST_PER_LOOKUP: isize = 6 * 1024;
const LOOKUPS: usize = 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_waiting_on_a_silent_upstream_holds_little_memory() {
    // An upstream that receives and never answers.
    let silent = UdpSocket::bind((loopback(125), 0)).await.expect("bind");
    let mut config = core_config(&[silent.local_addr().expect("addr")]);
    config.limits.deadline = Duration::from_secs(3);
    config.limits.attempt_timeout = Duration::from_secs(3);
    let server = start_with(config).await;
    // Warm up allocator caches and the runtime with one lookup that times out.
    let client = UdpSocket::bind("127.0.0.1:0").await.expect("client");
    let query = |n: usize| build_query(&format!("q{n}.memory.test"), RecordType::A, &edns());
    client
        .send_to(&query(LOOKUPS), server.udp)
        .await
        .expect("send");
    sleep(Duration::from_millis(100)).await;

    let before = HELD.load(Ordering::Relaxed);
    for n in 0..LOOKUPS {
        client.send_to(&query(n), server.udp).await.expect("send");
    }
    let started = Instant::now();
    while server.stats.inflight().lookups < LOOKUPS + 1 {
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            server.stats.inflight()
        );
        sleep(Duration::from_millis(10)).await;
    }
    // Every attempt is sent and waiting.
    sleep(Duration::from_millis(200)).await;
    let per_lookup = (HELD.load(Ordering::Relaxed) - before) / LOOKUPS as isize;
    println!("heap held per lookup in flight: {per_lookup} bytes");
    assert!(
        per_lookup < MOST_PER_LOOKUP,
        "{per_lookup} bytes per lookup waiting on a silent upstream"
    );
    server.stop().await;
}
