//! The text forms of typed config values (durations, "auto"-or-duration, byte sizes,
//! counts, socket addresses, address prefixes, upstream servers, upstream strategies,
//! rate-limit actions, forward zones): one parser per kind, shared by the TOML
//! deserializers here and by any command-line flag that overrides a config key, so
//! both accept the same spellings.

use std::{
    fmt,
    marker::PhantomData,
    net::{IpAddr, Ipv6Addr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use serde::de::{self, Deserialize, Deserializer, Unexpected, Visitor};

use super::server::{UpstreamAddr, parse_upstream_addr};
use super::{RateLimitAction, Strategy};
use crate::guard::Prefix;

/// The port an address without one gets: DNS over UDP and TCP (RFC 1035 section 4.2).
pub const DNS_PORT: u16 = 53;

/// Parses a human duration such as "400ms", "2s", "1d" or "1h 30m" (humantime syntax).
/// A bare number is rejected: "2" could mean seconds or milliseconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|error| {
        format!(
            "invalid duration {text:?} ({error}); write a number and a unit, \
             such as \"400ms\", \"2s\" or \"1d\""
        )
    })
}

/// The word that asks for a duration derived from other keys instead of a fixed one.
pub const AUTO: &str = "auto";

/// Parses a duration, or "auto" (any letter case) as `None`: the value derived from
/// other keys.
pub fn parse_duration_or_auto(text: &str) -> Result<Option<Duration>, String> {
    if text.trim().eq_ignore_ascii_case(AUTO) {
        return Ok(None);
    }
    parse_duration(text)
        .map(Some)
        .map_err(|error| format!("{error}; or \"{AUTO}\" for the derived default"))
}

/// Parses a byte size: a plain number of bytes, or a whole number with a unit.
/// KiB, MiB and GiB are powers of 1024; kB/KB, MB and GB are powers of 1000 (SI);
/// units are case-insensitive. Bare K, M and G are rejected because tools disagree
/// on what they mean (systemd and unbound read 1024, SI reads 1000).
pub fn parse_size(text: &str) -> Result<usize, String> {
    let trimmed = text.trim();
    let unit_at = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(unit_at);
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "k" | "m" | "g" => {
            return Err(format!(
                "ambiguous size {text:?}; write KiB/MiB/GiB (1024-based) \
                 or KB/MB/GB (1000-based)"
            ));
        }
        _ => {
            return Err(format!(
                "invalid size {text:?}; write a whole number of bytes, optionally \
                 with a unit B, KiB, MiB, GiB, KB, MB or GB, such as \"4MiB\""
            ));
        }
    };
    let number: u64 = digits.parse().map_err(|_| {
        format!("invalid size {text:?}; expected a whole number before the unit, such as \"4MiB\"")
    })?;
    number
        .checked_mul(multiplier)
        .and_then(|bytes| usize::try_from(bytes).ok())
        .ok_or_else(|| format!("size {text:?} is too large"))
}

/// Parses a socket address: `192.0.2.1` or `2001:db8::1` (port 53), `192.0.2.1:5353`,
/// `[2001:db8::1]:5353` or `[2001:db8::1]` (port 53). Host names are rejected: the
/// resolver cannot depend on name resolution to find its own upstreams.
pub fn parse_socket_addr(text: &str) -> Result<SocketAddr, String> {
    let trimmed = text.trim();
    if let Ok(address) = trimmed.parse::<SocketAddr>() {
        return Ok(address);
    }
    if let Ok(ip) = trimmed.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, DNS_PORT));
    }
    let bracketed = trimmed
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .and_then(|inner| inner.parse::<Ipv6Addr>().ok());
    match bracketed {
        Some(ip) => Ok(SocketAddr::new(IpAddr::V6(ip), DNS_PORT)),
        None => Err(format!(
            "invalid address {text:?}; expected an IP address with an optional port, \
             such as \"192.0.2.1\", \"192.0.2.1:5353\", \"2001:db8::1\" or \"[2001:db8::1]:5353\""
        )),
    }
}

/// The longest domain name in text form, without the trailing dot (RFC 1035 section
/// 3.1: 255 octets on the wire).
pub const MAX_NAME_LEN: usize = 253;

/// Parses a forward zone such as "corp.example", "Corp.Example." or "10.in-addr.arpa"
/// into its normal form: lower case, no trailing dot. Labels are 1 to 63 letters,
/// digits, hyphens or underscores. The root ("." or "") is rejected: it is what
/// `[upstream] servers` is for.
pub fn parse_zone(text: &str) -> Result<String, String> {
    let name = text.strip_suffix('.').unwrap_or(text);
    if name.is_empty() {
        return Err(format!(
            "invalid zone {text:?}: the root zone is not a forward zone;              [upstream] servers answer for every name no [[forward]] zone covers"
        ));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "invalid zone {text:?}: longer than {MAX_NAME_LEN} characters"
        ));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(format!("invalid zone {text:?}: empty label"));
        }
        if label.len() > 63 {
            return Err(format!(
                "invalid zone {text:?}: label {label:?} is longer than 63 characters"
            ));
        }
        if let Some(bad) = label
            .chars()
            .find(|&c| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        {
            return Err(format!(
                "invalid zone {text:?}: {bad:?} is not a letter, digit, '-' or '_'"
            ));
        }
    }
    Ok(name.to_ascii_lowercase())
}

/// Parses an upstream strategy: "fastest", "ordered" or "parallel", in lower case.
pub fn parse_strategy(text: &str) -> Result<Strategy, String> {
    Strategy::ALL
        .into_iter()
        .find(|strategy| strategy.name() == text)
        .ok_or_else(|| {
            let names: Vec<String> = Strategy::ALL
                .iter()
                .map(|strategy| format!("\"{strategy}\""))
                .collect();
            format!(
                "invalid strategy {text:?}; expected one of {}",
                names.join(", ")
            )
        })
}

/// Parses a rate-limit action: "refuse" or "drop", in lower case.
pub fn parse_rate_limit_action(text: &str) -> Result<RateLimitAction, String> {
    RateLimitAction::ALL
        .into_iter()
        .find(|action| action.name() == text)
        .ok_or_else(|| format!("invalid action {text:?}; expected \"refuse\" or \"drop\""))
}

/// Parses an address prefix: "10.0.0.0/8", "2001:db8::/32", or a bare address
/// ("192.0.2.7" means 192.0.2.7/32, "::1" means ::1/128).
pub fn parse_prefix(text: &str) -> Result<Prefix, String> {
    text.parse()
}

/// Deserializes a duration string. Parsing inside the deserializer (rather than after
/// it) lets toml attach the value's span to the error, so it reports the right line.
pub(super) fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    deserializer.deserialize_any(FromText {
        expecting: "a duration string such as \"400ms\" or \"2s\"",
        parse: parse_duration,
        _value: PhantomData,
    })
}

/// Deserializes a duration string or "auto" (`None`).
pub(super) fn duration_or_auto<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    deserializer.deserialize_any(FromText {
        expecting: "a duration string such as \"1800ms\", or \"auto\"",
        parse: parse_duration_or_auto,
        _value: PhantomData,
    })
}

/// Deserializes a byte size from an integer (bytes) or a string with a unit.
pub(super) fn size<'de, D: Deserializer<'de>>(deserializer: D) -> Result<usize, D::Error> {
    deserializer.deserialize_any(SizeVisitor)
}

/// Deserializes a non-negative integer, rejecting negative numbers and strings with a
/// message that says what was expected instead of naming a Rust type.
pub(super) fn count<'de, D: Deserializer<'de>>(deserializer: D) -> Result<usize, D::Error> {
    deserializer.deserialize_any(CountVisitor)
}

/// Deserializes an upstream strategy name.
pub(super) fn strategy<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Strategy, D::Error> {
    deserializer.deserialize_any(FromText {
        expecting: "a strategy string: \"fastest\", \"ordered\" or \"parallel\"",
        parse: parse_strategy,
        _value: PhantomData,
    })
}

/// Deserializes a rate-limit action name.
pub(super) fn rate_limit_action<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<RateLimitAction, D::Error> {
    deserializer.deserialize_any(FromText {
        expecting: "an action string: \"refuse\" or \"drop\"",
        parse: parse_rate_limit_action,
        _value: PhantomData,
    })
}

/// Deserializes a present list of address prefixes as `Some`; each bad element is
/// reported at its own span. (An absent key is `None` through the section's default.)
pub(super) fn some_prefixes<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<Prefix>>, D::Error> {
    let prefixes = Vec::<PrefixItem>::deserialize(deserializer)?;
    Ok(Some(
        prefixes
            .into_iter()
            .map(|PrefixItem(prefix)| prefix)
            .collect(),
    ))
}

/// One element of a prefix list, parsed while toml still knows its span.
struct PrefixItem(Prefix);

impl<'de> Deserialize<'de> for PrefixItem {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(FromText {
                expecting: "an address prefix string such as \"10.0.0.0/8\" or \"::1\"",
                parse: parse_prefix,
                _value: PhantomData,
            })
            .map(PrefixItem)
    }
}

/// Deserializes a forward zone into its normal form (see [`parse_zone`]).
pub(super) fn zone<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    deserializer.deserialize_any(FromText {
        expecting: "a zone string such as \"corp.example\" or \"10.in-addr.arpa\"",
        parse: parse_zone,
        _value: PhantomData,
    })
}

/// Deserializes a list of socket addresses; each bad element is reported at its own span.
pub(super) fn socket_addrs<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<SocketAddr>, D::Error> {
    let addresses = Vec::<Address>::deserialize(deserializer)?;
    Ok(addresses
        .into_iter()
        .map(|Address(address)| address)
        .collect())
}

/// Deserializes a path where "" means none (TOML has no null).
pub(super) fn optional_path<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<PathBuf>, D::Error> {
    let text = String::deserialize(deserializer)?;
    Ok((!text.is_empty()).then(|| PathBuf::from(text)))
}

/// Deserializes a list of upstream servers (`IP[:PORT]`, `tcp://…`, `tls://…#name`);
/// each bad element is reported at its own span.
pub(super) fn upstream_addrs<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<UpstreamAddr>, D::Error> {
    let servers = Vec::<Upstream>::deserialize(deserializer)?;
    Ok(servers.into_iter().map(|Upstream(server)| server).collect())
}

/// One element of an upstream list, parsed while toml still knows its span.
struct Upstream(UpstreamAddr);

impl<'de> Deserialize<'de> for Upstream {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(FromText {
                expecting: "an upstream string such as \"192.0.2.1\", \"tcp://192.0.2.1\" or \
                            \"tls://192.0.2.1#dns.example\"",
                parse: parse_upstream_addr,
                _value: PhantomData,
            })
            .map(Upstream)
    }
}

/// One element of an address list, parsed while toml still knows its span.
struct Address(SocketAddr);

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(FromText {
                expecting: "an IP address string such as \"192.0.2.1\" or \"[2001:db8::1]:53\"",
                parse: parse_socket_addr,
                _value: PhantomData,
            })
            .map(Address)
    }
}

/// A visitor for values written only as strings, delegating to a `parse_*` function.
struct FromText<T> {
    expecting: &'static str,
    parse: fn(&str) -> Result<T, String>,
    _value: PhantomData<T>,
}

impl<T> Visitor<'_> for FromText<T> {
    type Value = T;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<T, E> {
        (self.parse)(text).map_err(E::custom)
    }
}

struct SizeVisitor;

impl Visitor<'_> for SizeVisitor {
    type Value = usize;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a number of bytes or a size string such as \"4MiB\"")
    }

    fn visit_i64<E: de::Error>(self, number: i64) -> Result<usize, E> {
        usize::try_from(number).map_err(|_| E::invalid_value(Unexpected::Signed(number), &self))
    }

    fn visit_u64<E: de::Error>(self, number: u64) -> Result<usize, E> {
        usize::try_from(number).map_err(|_| E::invalid_value(Unexpected::Unsigned(number), &self))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<usize, E> {
        parse_size(text).map_err(E::custom)
    }
}

struct CountVisitor;

impl Visitor<'_> for CountVisitor {
    type Value = usize;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a whole number, 0 or more")
    }

    fn visit_i64<E: de::Error>(self, number: i64) -> Result<usize, E> {
        usize::try_from(number).map_err(|_| E::invalid_value(Unexpected::Signed(number), &self))
    }

    fn visit_u64<E: de::Error>(self, number: u64) -> Result<usize, E> {
        usize::try_from(number).map_err(|_| E::invalid_value(Unexpected::Unsigned(number), &self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("400ms"), Ok(Duration::from_millis(400)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5_400)));
        for bad in ["soon", "", "2", "-1s", "2 parsecs"] {
            let error = parse_duration(bad).expect_err(bad);
            assert!(error.contains("invalid duration"), "{bad}: {error}");
        }
    }

    #[test]
    fn durations_or_auto() {
        assert_eq!(parse_duration_or_auto("auto"), Ok(None));
        assert_eq!(parse_duration_or_auto(" Auto "), Ok(None));
        assert_eq!(
            parse_duration_or_auto("1800ms"),
            Ok(Some(Duration::from_millis(1800)))
        );
        assert_eq!(parse_duration_or_auto("0s"), Ok(Some(Duration::ZERO)));
        for bad in ["automatic", "", "2", "soon"] {
            let error = parse_duration_or_auto(bad).expect_err(bad);
            assert!(
                error.contains("invalid duration") && error.contains("\"auto\""),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("512B"), Ok(512));
        assert_eq!(parse_size("4MiB"), Ok(4 << 20));
        assert_eq!(parse_size("4 MiB"), Ok(4 << 20));
        assert_eq!(parse_size("4mib"), Ok(4 << 20));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("4kB"), Ok(4_000));
        assert_eq!(parse_size("4MB"), Ok(4_000_000));
        assert_eq!(parse_size("2GB"), Ok(2_000_000_000));
        for bad in [
            "4 parsecs",
            "MiB",
            "1.5MiB",
            "-4MiB",
            "4M",
            "4k",
            "",
            "4 Mi B",
        ] {
            assert!(parse_size(bad).is_err(), "{bad} accepted");
        }
        assert!(parse_size("4M").is_err_and(|error| error.contains("ambiguous")));
        assert!(parse_size("99999999999999999999GiB").is_err());
        assert!(parse_size("18446744073709551615GiB").is_err_and(|e| e.contains("too large")));
    }

    #[test]
    fn strategies() {
        assert_eq!(parse_strategy("fastest"), Ok(Strategy::Fastest));
        assert_eq!(parse_strategy("ordered"), Ok(Strategy::Ordered));
        assert_eq!(parse_strategy("parallel"), Ok(Strategy::Parallel));
        for strategy in Strategy::ALL {
            assert_eq!(parse_strategy(&strategy.to_string()), Ok(strategy));
        }
        for bad in [
            "Fastest",
            "ORDERED",
            "",
            " fastest",
            "random",
            "round-robin",
        ] {
            let error = parse_strategy(bad).expect_err(bad);
            assert!(
                error.contains("\"fastest\", \"ordered\", \"parallel\""),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn rate_limit_actions() {
        assert_eq!(
            parse_rate_limit_action("refuse"),
            Ok(RateLimitAction::Refuse)
        );
        assert_eq!(parse_rate_limit_action("drop"), Ok(RateLimitAction::Drop));
        for action in RateLimitAction::ALL {
            assert_eq!(parse_rate_limit_action(&action.to_string()), Ok(action));
        }
        for bad in ["Refuse", "DROP", "", "ignore"] {
            let error = parse_rate_limit_action(bad).expect_err(bad);
            assert!(error.contains("\"refuse\" or \"drop\""), "{bad}: {error}");
        }
    }

    #[test]
    fn zones() {
        assert_eq!(parse_zone("corp.example"), Ok("corp.example".into()));
        assert_eq!(parse_zone("Corp.Example."), Ok("corp.example".into()));
        assert_eq!(parse_zone("10.in-addr.arpa"), Ok("10.in-addr.arpa".into()));
        assert_eq!(parse_zone("_srv.x-y.test"), Ok("_srv.x-y.test".into()));
        assert_eq!(parse_zone("test"), Ok("test".into()));
        let long_label = "a".repeat(63);
        assert!(parse_zone(&format!("{long_label}.test")).is_ok());
        let longest = [
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(61),
        ]
        .join(".");
        assert_eq!(longest.len(), MAX_NAME_LEN);
        assert!(parse_zone(&longest).is_ok());
        assert!(parse_zone(&format!("{longest}.")).is_ok());
        let cases = [
            ("", "root"),
            (".", "root"),
            ("corp..example", "empty label"),
            (".corp.example", "empty label"),
            ("corp.example..", "empty label"),
            ("corp example", "' '"),
            ("corp/example", "'/'"),
            ("exämple.test", "'ä'"),
        ];
        for (bad, needle) in cases {
            let error = parse_zone(bad).expect_err(bad);
            assert!(error.contains(needle), "{bad}: {error}");
        }
        let error = parse_zone(&format!("a{long_label}.test")).expect_err("64");
        assert!(error.contains("longer than 63"), "{error}");
        let error = parse_zone(&format!("a{longest}")).expect_err("254");
        assert!(error.contains("longer than 253"), "{error}");
    }

    #[test]
    fn socket_addresses() {
        let parsed = |text: &str| parse_socket_addr(text).map(|address| address.to_string());
        assert_eq!(parsed("192.0.2.1"), Ok("192.0.2.1:53".into()));
        assert_eq!(parsed(" 192.0.2.1:5353 "), Ok("192.0.2.1:5353".into()));
        assert_eq!(parsed("::1"), Ok("[::1]:53".into()));
        assert_eq!(parsed("2001:db8::1"), Ok("[2001:db8::1]:53".into()));
        assert_eq!(parsed("[2001:db8::1]"), Ok("[2001:db8::1]:53".into()));
        assert_eq!(
            parsed("[2001:db8::1]:5353"),
            Ok("[2001:db8::1]:5353".into())
        );
        for bad in [
            "not-an-ip",
            "dns.google",
            "",
            "192.0.2.1:99999",
            "192.0.2.300",
            "[::1",
        ] {
            assert!(parsed(bad).is_err(), "{bad} accepted");
        }
    }
}
