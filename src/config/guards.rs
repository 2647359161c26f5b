//! The rules for the keys that guard punctual against its clients: `[listen] allow`
//! (never an open resolver by accident), per-client rate limiting and the TCP and
//! message-size limits of `[limits]`.

use std::fmt;

use super::{Config, ConfigError, human};
use crate::guard::is_loopback_only;

/// The smallest query-size limit: RFC 1035 section 4.2.1's 512-byte UDP message.
const MIN_QUERY_LIMIT: usize = 512;

/// `max_udp_query` cannot exceed what one receive slot holds (a longer datagram
/// arrives cut short and is dropped whatever the limit).
pub const MAX_UDP_QUERY_LIMIT: usize = 4096;

/// A client rate or burst above this is a typo, not a policy.
const MAX_CLIENT_RATE: usize = 1_000_000;

/// `[limits] rate_limit_action`: what a client over its rate gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RateLimitAction {
    /// REFUSED with Extended DNS Error 0 "rate limited", so the client stops
    /// waiting at once (RFC 8914 section 4.1).
    #[default]
    Refuse,
    /// No answer: cheapest, and a forged source address gets nothing reflected.
    Drop,
}

impl RateLimitAction {
    pub const ALL: [RateLimitAction; 2] = [RateLimitAction::Refuse, RateLimitAction::Drop];

    /// The name the config file uses: "refuse" or "drop".
    pub const fn name(self) -> &'static str {
        match self {
            RateLimitAction::Refuse => "refuse",
            RateLimitAction::Drop => "drop",
        }
    }
}

impl fmt::Display for RateLimitAction {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

impl Config {
    /// `[listen] allow`: not empty when given, and required as soon as one listen
    /// address is reachable from another host.
    pub(super) fn validate_allow(&self) -> Result<(), ConfigError> {
        let allow_key = self.key("listen.allow", |config| &config.listen.allow);
        match &self.listen.allow {
            Some(prefixes) if prefixes.is_empty() => Err(self.invalid(
                &[allow_key],
                "listen.allow is empty, so no client could query; list the networks to \
                 serve, or remove the key to serve loopback clients only"
                    .to_owned(),
            )),
            Some(_) => Ok(()),
            None => {
                let same = self.unchanged(|config| &config.listen.addresses);
                let open = self
                    .listen
                    .addresses
                    .iter()
                    .position(|address| !is_loopback_only(address.ip()));
                match open {
                    None => Ok(()),
                    Some(index) => Err(self.invalid(
                        &[(&format!("listen.addresses[{index}]"), same)],
                        format!(
                            "listening on {} needs an explicit [listen] allow list: without \
                             one punctual would be an open resolver; list the client \
                             networks to serve, such as allow = [\"192.168.1.0/24\"]",
                            self.listen.addresses[index]
                        ),
                    )),
                }
            }
        }
    }

    /// Rate limiting, TCP and size limits of `[limits]`.
    pub(super) fn validate_guard_limits(&self) -> Result<(), ConfigError> {
        let limits = &self.limits;
        let at_least_one = [
            (
                self.key("limits.client_burst", |config| &config.limits.client_burst),
                limits.client_burst,
            ),
            (
                self.key("limits.rate_limit_clients", |config| {
                    &config.limits.rate_limit_clients
                }),
                limits.rate_limit_clients,
            ),
            (
                self.key("limits.tcp_max_connections_per_client", |config| {
                    &config.limits.tcp_max_connections_per_client
                }),
                limits.tcp_max_connections_per_client,
            ),
        ];
        for ((name, same), count) in at_least_one {
            if count == 0 {
                return Err(self.invalid(&[(name, same)], format!("{name} must be at least 1")));
            }
        }
        let rates = [
            (
                self.key("limits.client_qps", |config| &config.limits.client_qps),
                limits.client_qps,
            ),
            (
                self.key("limits.client_burst", |config| &config.limits.client_burst),
                limits.client_burst,
            ),
        ];
        for ((name, same), rate) in rates {
            if rate > MAX_CLIENT_RATE {
                return Err(self.invalid(
                    &[(name, same)],
                    format!("{name} must be at most {MAX_CLIENT_RATE}, got {rate}"),
                ));
            }
        }
        if limits.tcp_read_timeout.is_zero() {
            return Err(self.invalid(
                &[self.key("limits.tcp_read_timeout", |config| {
                    &config.limits.tcp_read_timeout
                })],
                format!(
                    "limits.tcp_read_timeout must be more than 0s, got {}",
                    human(limits.tcp_read_timeout)
                ),
            ));
        }
        let sizes = [
            (
                self.key("limits.max_udp_query", |config| {
                    &config.limits.max_udp_query
                }),
                limits.max_udp_query,
                MAX_UDP_QUERY_LIMIT,
            ),
            (
                self.key("limits.max_tcp_query", |config| {
                    &config.limits.max_tcp_query
                }),
                limits.max_tcp_query,
                usize::from(u16::MAX),
            ),
        ];
        for ((name, same), size, max) in sizes {
            if !(MIN_QUERY_LIMIT..=max).contains(&size) {
                return Err(self.invalid(
                    &[(name, same)],
                    format!(
                        "{name} must be at least {MIN_QUERY_LIMIT} and at most {max} bytes, \
                         got {size}"
                    ),
                ));
            }
        }
        Ok(())
    }
}
