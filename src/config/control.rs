//! `[control]`: the operators' HTTP endpoint (metrics, health, stats, cache
//! flush). Like `[listen]`, it answers loopback clients only unless `allow`
//! says otherwise, and a non-loopback address needs that list: a cache flush
//! must not be open to the network by accident.

use std::net::{Ipv4Addr, SocketAddr};

use serde::de::Deserializer;
use serde::{Deserialize, de};

use super::value::{self, parse_socket_addr};
use super::{Config, ConfigError};
use crate::guard::{Prefix, is_loopback_only};

/// The Prometheus port CoreDNS and NodeLocal DNSCache use for DNS metrics.
pub const DEFAULT_CONTROL_PORT: u16 = 9153;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControlConfig {
    /// Where the endpoint listens (TCP, HTTP/1.1). Default `127.0.0.1:9153`;
    /// `""` turns it off.
    #[serde(deserialize_with = "optional_socket_addr")]
    pub address: Option<SocketAddr>,
    /// Clients that may use it. Default none: loopback only.
    #[serde(deserialize_with = "value::some_prefixes")]
    pub allow: Option<Vec<Prefix>>,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            address: Some(SocketAddr::from((
                Ipv4Addr::LOCALHOST,
                DEFAULT_CONTROL_PORT,
            ))),
            allow: None,
        }
    }
}

fn optional_socket_addr<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<SocketAddr>, D::Error> {
    let text = String::deserialize(deserializer)?;
    if text.is_empty() {
        return Ok(None);
    }
    parse_socket_addr(&text)
        .map(Some)
        .map_err(de::Error::custom)
}

impl Config {
    /// `[control]`: an allow list is not empty, and is required for an address
    /// other hosts can reach.
    pub(super) fn validate_control(&self) -> Result<(), ConfigError> {
        let allow_key = self.key("control.allow", |config| &config.control.allow);
        match (&self.control.allow, self.control.address) {
            (Some(prefixes), _) if prefixes.is_empty() => Err(self.invalid(
                &[allow_key],
                "control.allow is empty, so nobody could use the control endpoint; list the \
                 networks of the operators and scrapers, or remove the key for loopback only"
                    .to_owned(),
            )),
            (None, Some(address)) if !is_loopback_only(address.ip()) => Err(self.invalid(
                &[self.key("control.address", |config| &config.control.address)],
                format!(
                    "the control endpoint on {address} needs an explicit [control] allow list: \
                     without one anyone who reaches it could read the statistics and flush the \
                     cache; list the scrapers' networks, such as allow = [\"10.0.0.0/8\"]"
                ),
            )),
            _ => Ok(()),
        }
    }
}
