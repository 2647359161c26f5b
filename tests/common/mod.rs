//! Shared harness for the integration tests: a scripted fake upstream DNS server
//! (`upstream`), a small dig-like client (`client`), and the in-process start of
//! punctual (`punctual`). The first two do not depend on the punctual library, so
//! they check the resolver strictly from the outside, over real loopback sockets.

// Each test binary declares `mod common;` and uses a different subset of these helpers;
// without this, every binary would warn about the parts it does not use.
#![allow(dead_code)]

pub mod client;
pub mod glibc;
pub mod process;
pub mod queries;
pub mod tls;
pub mod upstream;
// Starting punctual in-process: the one part of the harness that depends on the
// library. Its own file, maintained with the library.
pub mod punctual;

// Flat re-exports so tests write `use common::{FakeUpstream, query_udp};`. A binary
// that reaches everything through one path leaves the other glob unused.
#[allow(unused_imports)]
pub use client::*;
#[allow(unused_imports)]
pub use queries::*;
#[allow(unused_imports)]
pub use upstream::*;

use std::net::{IpAddr, Ipv4Addr};

/// 127.0.0.`n`: Linux routes all of 127/8 to loopback, so tests can give the resolver
/// and several upstreams distinct addresses.
pub fn loopback(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}
