//! Static records from `[[local.records]]`: each table's presentation-format value
//! parsed into a hickory record for its type. The same parser checks the config at
//! load (so a bad value is a config error with its line) and builds the records
//! at start.

use std::net::{Ipv4Addr, Ipv6Addr};

use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, PTR, SRV, TXT};
use hickory_proto::rr::{RData, Record};
use thiserror::Error;

use super::RecordTable;
use super::name::{self, NameError};
use crate::answer::whole_seconds;
use crate::config::{RecordKind, StaticRecordConfig};

/// RFC 1035 §3.3: a <character-string> holds at most 255 octets; longer text is
/// split into several, which a TXT record may hold (RFC 1035 §3.3.14).
const MAX_CHARACTER_STRING: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RecordError {
    /// The record's owner name.
    #[error(transparent)]
    Name(NameError),
    /// A name inside the value (CNAME, PTR, MX, SRV target).
    #[error("target: {0}")]
    Target(NameError),
    #[error("invalid {kind} value {value:?}: expected {expected}")]
    Value {
        kind: RecordKind,
        value: String,
        expected: &'static str,
    },
}

/// Parses one static record; its TTL is taken as given (validation caps it).
pub fn parse(config: &StaticRecordConfig) -> Result<Record, RecordError> {
    let owner = name::parse(&config.name).map_err(RecordError::Name)?;
    let value = config.value.trim();
    let bad = |expected| RecordError::Value {
        kind: config.kind,
        value: config.value.clone(),
        expected,
    };
    let target = |text: &str| name::parse(text).map_err(RecordError::Target);
    let fields: Vec<&str> = value.split_whitespace().collect();
    let rdata = match config.kind {
        RecordKind::A => {
            let address: Ipv4Addr = value
                .parse()
                .map_err(|_| bad("an IPv4 address such as \"192.0.2.1\""))?;
            RData::A(A(address))
        }
        RecordKind::Aaaa => {
            let address: Ipv6Addr = value
                .parse()
                .map_err(|_| bad("an IPv6 address such as \"2001:db8::1\""))?;
            RData::AAAA(AAAA(address))
        }
        RecordKind::Cname => RData::CNAME(CNAME(target(value)?)),
        RecordKind::Ptr => RData::PTR(PTR(target(value)?)),
        RecordKind::Txt => {
            let chunks: Vec<&[u8]> = if value.is_empty() {
                vec![&[]]
            } else {
                config
                    .value
                    .as_bytes()
                    .chunks(MAX_CHARACTER_STRING)
                    .collect()
            };
            RData::TXT(TXT::from_bytes(chunks))
        }
        RecordKind::Mx => {
            const EXPECTED: &str = "\"preference exchange\", such as \"10 mail.example.\"";
            let [preference, exchange] = fields[..] else {
                return Err(bad(EXPECTED));
            };
            let preference: u16 = preference.parse().map_err(|_| bad(EXPECTED))?;
            RData::MX(MX::new(preference, target(exchange)?))
        }
        RecordKind::Srv => {
            const EXPECTED: &str =
                "\"priority weight port target\", such as \"0 5 5060 sip.example.\"";
            let [priority, weight, port, server] = fields[..] else {
                return Err(bad(EXPECTED));
            };
            let number = |text: &str| text.parse::<u16>().map_err(|_| bad(EXPECTED));
            RData::SRV(SRV::new(
                number(priority)?,
                number(weight)?,
                number(port)?,
                target(server)?,
            ))
        }
    };
    Ok(Record::from_rdata(owner, whole_seconds(config.ttl), rdata))
}

/// The static records of a validated config, by owner. A record that does not
/// parse (only possible if the config skipped validation) is left out.
pub fn table(configs: &[StaticRecordConfig]) -> RecordTable {
    let mut table = RecordTable::default();
    for config in configs {
        match parse(config) {
            Ok(record) => table.insert(record),
            Err(error) => tracing::warn!(name = %config.name, %error, "static record skipped"),
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use hickory_proto::rr::RecordType;

    use super::*;

    fn record(kind: RecordKind, value: &str) -> Result<Record, RecordError> {
        parse(&StaticRecordConfig {
            name: "Host.Test".into(),
            kind,
            value: value.into(),
            ttl: Duration::from_secs(60),
        })
    }

    #[test]
    fn every_type_parses() {
        let cases = [
            (RecordKind::A, "192.0.2.1", "192.0.2.1"),
            (RecordKind::Aaaa, "2001:db8::1", "2001:db8::1"),
            (RecordKind::Cname, "target.test", "target.test."),
            (RecordKind::Ptr, "host.test.", "host.test."),
            (RecordKind::Mx, "10 mail.test.", "10 mail.test."),
            (
                RecordKind::Srv,
                " 0 5 5060 sip.test. ",
                "0 5 5060 sip.test.",
            ),
        ];
        for (kind, value, shown) in cases {
            let record = record(kind, value).unwrap_or_else(|e| panic!("{value}: {e}"));
            assert_eq!(record.data.to_string(), shown, "{kind}");
            assert_eq!(record.ttl, 60);
            assert_eq!(record.name.to_string(), "Host.Test.");
        }
        let txt = record(RecordKind::Txt, "some text").expect("TXT");
        assert_eq!(txt.record_type(), RecordType::TXT);
        let RData::TXT(data) = &txt.data else {
            panic!("not TXT")
        };
        assert_eq!(&*data.txt_data, [b"some text".to_vec().into_boxed_slice()]);
        let long = record(RecordKind::Txt, &"x".repeat(600)).expect("long TXT");
        let RData::TXT(data) = &long.data else {
            panic!("not TXT")
        };
        let lengths: Vec<usize> = data.txt_data.iter().map(|s| s.len()).collect();
        assert_eq!(lengths, [255, 255, 90]);
    }

    #[test]
    fn bad_values_say_what_was_expected() {
        for (kind, value, needle) in [
            (RecordKind::A, "2001:db8::1", "IPv4"),
            (RecordKind::A, "host.test", "IPv4"),
            (RecordKind::Aaaa, "192.0.2.1", "IPv6"),
            (RecordKind::Mx, "mail.test.", "preference exchange"),
            (RecordKind::Mx, "70000 mail.test.", "preference exchange"),
            (
                RecordKind::Srv,
                "0 5 sip.test.",
                "priority weight port target",
            ),
            (
                RecordKind::Srv,
                "0 5 99999 sip.test.",
                "priority weight port target",
            ),
            (RecordKind::Cname, "a..test", "target: invalid name"),
            (RecordKind::Ptr, "", "target: invalid name"),
        ] {
            let error = record(kind, value).expect_err(value).to_string();
            assert!(error.contains(needle), "{kind} {value}: {error}");
        }
    }
}
