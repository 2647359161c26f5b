//! Why a lookup produced no upstream answer, and the one place that maps each
//! reason to what the client is told (RCODE and Extended DNS Error, RFC 8914 §4).

use std::io;

use thiserror::Error;

use crate::query::rcode;
use crate::wire::Ede;

/// RFC 8914 §4.23: the upstream never answered in time.
pub const EDE_NO_REACHABLE_AUTHORITY: u16 = 22;
/// RFC 8914 §4.24: talking to the upstream failed at the network level.
pub const EDE_NETWORK_ERROR: u16 = 23;
/// RFC 8914 §4.1: Other, with text saying what.
pub const EDE_OTHER: u16 = 0;
/// RFC 8914 §4.4: the answer is stale (RFC 8767).
pub const EDE_STALE_ANSWER: u16 = 3;
/// RFC 8914 §4.19: the client is not allowed to query (`[listen] allow`).
pub const EDE_PROHIBITED: u16 = 18;

#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum LookupError {
    #[error("no usable reply from any upstream before the deadline")]
    Timeout,
    #[error("network error talking to the upstream: {0}")]
    Network(io::ErrorKind),
    #[error("too many lookups in flight or waiters on one lookup")]
    Overloaded,
    /// Every upstream of the route is marked down and `max_inflight_down`
    /// lookups are already asking them.
    #[error("every upstream server is down")]
    Unreachable,
    /// The upstream answered SERVFAIL or REFUSED (this RCODE); remembered by
    /// the failure cache.
    #[error("the upstream answered with RCODE {0}")]
    Upstream(u8),
}

impl LookupError {
    /// The response code and Extended DNS Error a client gets for this failure.
    pub fn outcome(&self) -> (u8, Ede) {
        match self {
            LookupError::Timeout => (
                rcode::SERVFAIL,
                Ede {
                    code: EDE_NO_REACHABLE_AUTHORITY,
                    text: "no reply from upstream before the deadline",
                },
            ),
            LookupError::Unreachable => (
                rcode::SERVFAIL,
                Ede {
                    code: EDE_NO_REACHABLE_AUTHORITY,
                    text: "every upstream server is down",
                },
            ),
            LookupError::Network(_) => (
                rcode::SERVFAIL,
                Ede {
                    code: EDE_NETWORK_ERROR,
                    text: "network error talking to upstream",
                },
            ),
            LookupError::Overloaded => (
                rcode::SERVFAIL,
                Ede {
                    code: EDE_OTHER,
                    text: "overloaded",
                },
            ),
            LookupError::Upstream(rcode::REFUSED) => (
                rcode::SERVFAIL,
                Ede {
                    code: EDE_OTHER,
                    text: "upstream refused the query",
                },
            ),
            LookupError::Upstream(_) => (
                rcode::SERVFAIL,
                Ede {
                    code: EDE_OTHER,
                    text: "upstream answered SERVFAIL",
                },
            ),
        }
    }
}
