//! `[local]`: names punctual answers itself, without asking an upstream: the hosts
//! files to read, whether single-label names are forwarded, and static records.
//!
//! A static record's value depends on its type, so it is checked after parsing, in
//! [`Config::validate`] (through `validate_local`), by the same parser that builds
//! the record at start ([`crate::local::records`]); the error points at the line of
//! the record's `name` or `value`.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Unexpected, Visitor};

use super::{Config, ConfigError, value};
use crate::local::records::{self, RecordError};

/// The TTL of a static record that does not set one.
const DEFAULT_RECORD_TTL: Duration = Duration::from_secs(3600);

/// `[local]`: answers that never leave the machine.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LocalConfig {
    /// hosts(5) files answered from (A, AAAA, PTR), watched for changes. Default
    /// `["/etc/hosts"]`; empty reads none.
    pub hosts_files: Vec<PathBuf>,
    /// Forward names of one label ("printer") upstream instead of answering
    /// NXDOMAIN. Default false.
    pub forward_single_label: bool,
    /// `[[local.records]]`: static records. Default none.
    pub records: Vec<StaticRecordConfig>,
}

impl Default for LocalConfig {
    fn default() -> Self {
        LocalConfig {
            hosts_files: vec![PathBuf::from("/etc/hosts")],
            forward_single_label: false,
            records: Vec::new(),
        }
    }
}

/// One `[[local.records]]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticRecordConfig {
    /// The owner, such as "nas.home.arpa"; always taken as absolute.
    pub name: String,
    #[serde(rename = "type", deserialize_with = "record_kind")]
    pub kind: RecordKind,
    /// Presentation form of the data: "192.0.2.1", "10 mail.example.",
    /// "0 5 5060 sip.example.", or the text of a TXT record.
    pub value: String,
    /// Default 1h. A duration string, or a whole number of seconds.
    #[serde(default = "default_record_ttl", deserialize_with = "ttl")]
    pub ttl: Duration,
}

/// The record types a static record may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    A,
    Aaaa,
    Cname,
    Txt,
    Ptr,
    Srv,
    Mx,
}

impl RecordKind {
    pub const ALL: [RecordKind; 7] = [
        RecordKind::A,
        RecordKind::Aaaa,
        RecordKind::Cname,
        RecordKind::Txt,
        RecordKind::Ptr,
        RecordKind::Srv,
        RecordKind::Mx,
    ];

    /// The type's mnemonic (RFC 1035 §3.2.2 and its successors).
    pub const fn name(self) -> &'static str {
        match self {
            RecordKind::A => "A",
            RecordKind::Aaaa => "AAAA",
            RecordKind::Cname => "CNAME",
            RecordKind::Txt => "TXT",
            RecordKind::Ptr => "PTR",
            RecordKind::Srv => "SRV",
            RecordKind::Mx => "MX",
        }
    }
}

impl fmt::Display for RecordKind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

/// Parses a record type mnemonic, in any letter case.
fn parse_record_kind(text: &str) -> Result<RecordKind, String> {
    RecordKind::ALL
        .into_iter()
        .find(|kind| kind.name().eq_ignore_ascii_case(text.trim()))
        .ok_or_else(|| {
            let names: Vec<&str> = RecordKind::ALL.iter().map(|kind| kind.name()).collect();
            format!(
                "invalid record type {text:?}; expected one of {}",
                names.join(", ")
            )
        })
}

fn default_record_ttl() -> Duration {
    DEFAULT_RECORD_TTL
}

fn record_kind<'de, D: Deserializer<'de>>(deserializer: D) -> Result<RecordKind, D::Error> {
    struct KindVisitor;
    impl Visitor<'_> for KindVisitor {
        type Value = RecordKind;
        fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
            formatter.write_str("a record type string such as \"A\" or \"MX\"")
        }
        fn visit_str<E: de::Error>(self, text: &str) -> Result<RecordKind, E> {
            parse_record_kind(text).map_err(E::custom)
        }
    }
    deserializer.deserialize_any(KindVisitor)
}

/// A TTL: a duration string ("1h") or a whole number of seconds (3600), as zone
/// files write it.
fn ttl<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    struct TtlVisitor;
    impl Visitor<'_> for TtlVisitor {
        type Value = Duration;
        fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
            formatter.write_str("a duration string such as \"1h\", or a whole number of seconds")
        }
        fn visit_i64<E: de::Error>(self, number: i64) -> Result<Duration, E> {
            u64::try_from(number)
                .map(Duration::from_secs)
                .map_err(|_| E::invalid_value(Unexpected::Signed(number), &self))
        }
        fn visit_u64<E: de::Error>(self, number: u64) -> Result<Duration, E> {
            Ok(Duration::from_secs(number))
        }
        fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
            value::parse_duration(text).map_err(E::custom)
        }
    }
    deserializer.deserialize_any(TtlVisitor)
}

/// RFC 2181 §8: a TTL is at most 2^31 - 1 seconds.
const MAX_RECORD_TTL: Duration = Duration::from_secs(i32::MAX as u64);

impl Config {
    /// Every static record parses (its name, and its value for its type) and has a
    /// TTL that fits the wire.
    pub(super) fn validate_local(&self) -> Result<(), ConfigError> {
        let same = self.unchanged(|config| &config.local.records);
        for (index, record) in self.local.records.iter().enumerate() {
            let (field, problem) = match records::parse(record) {
                Ok(_) if record.ttl > MAX_RECORD_TTL => (
                    "ttl",
                    format!(
                        "{}s is more than the largest TTL, {}s (RFC 2181 section 8)",
                        record.ttl.as_secs(),
                        MAX_RECORD_TTL.as_secs()
                    ),
                ),
                Ok(_) => continue,
                Err(error @ RecordError::Name(..)) => ("name", error.to_string()),
                Err(error) => ("value", error.to_string()),
            };
            let key = format!("local.records[{index}].{field}");
            let table = format!("local.records[{index}]");
            return Err(self.invalid(&[(&key, same), (&table, same)], format!("{key}: {problem}")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, Path::new("t.toml"))
    }

    #[test]
    fn defaults_read_etc_hosts() {
        let local = LocalConfig::default();
        assert_eq!(local.hosts_files, [PathBuf::from("/etc/hosts")]);
        assert!(!local.forward_single_label);
        assert!(local.records.is_empty());
        assert_eq!(parse("[local]\n").map(|c| c.local), Ok(local));
    }

    #[test]
    fn every_local_key() -> Result<(), ConfigError> {
        let config = parse(
            r#"
            [local]
            hosts_files = ["/etc/hosts", "/run/extra-hosts"]
            forward_single_label = true

            [[local.records]]
            name = "nas.home.arpa"
            type = "a"
            value = "192.0.2.7"

            [[local.records]]
            name = "_sip._udp.home.arpa."
            type = "SRV"
            value = "0 5 5060 sip.home.arpa."
            ttl = 60

            [[local.records]]
            name = "home.arpa"
            type = "TXT"
            value = "some text"
            ttl = "5m"
            "#,
        )?;
        let local = &config.local;
        assert_eq!(local.hosts_files.len(), 2);
        assert!(local.forward_single_label);
        let kinds: Vec<RecordKind> = local.records.iter().map(|r| r.kind).collect();
        assert_eq!(kinds, [RecordKind::A, RecordKind::Srv, RecordKind::Txt]);
        let ttls: Vec<u64> = local.records.iter().map(|r| r.ttl.as_secs()).collect();
        assert_eq!(ttls, [3600, 60, 300]);
        Ok(())
    }

    #[test]
    fn bad_records_are_reported_at_their_line() {
        let table = |body: &str| format!("[local]\nhosts_files = []\n\n[[local.records]]\n{body}");
        let cases = [
            (
                table("name = \"a.test\"\ntype = \"A\"\nvalue = \"192.0.2.300\"\n"),
                7,
                "local.records[0].value: ",
            ),
            (
                table("name = \"a.test\"\ntype = \"AAAA\"\nvalue = \"192.0.2.1\"\n"),
                7,
                "IPv6",
            ),
            (
                table("name = \"a.test\"\ntype = \"MX\"\nvalue = \"mail.test.\"\n"),
                7,
                "preference",
            ),
            (
                table("name = \"a.test\"\ntype = \"SRV\"\nvalue = \"0 5 sip.test.\"\n"),
                7,
                "priority weight port target",
            ),
            (
                table("name = \"a.test\"\ntype = \"CNAME\"\nvalue = \"bad name.test\"\n"),
                7,
                "' '",
            ),
            (
                table("name = \"a..test\"\ntype = \"A\"\nvalue = \"192.0.2.1\"\n"),
                5,
                "local.records[0].name: ",
            ),
            (
                table("name = \"a.test\"\ntype = \"NS\"\nvalue = \"ns.test.\"\n"),
                6,
                "invalid record type \"NS\"",
            ),
            (
                table("name = \"a.test\"\ntype = \"A\"\nvalue = \"192.0.2.1\"\nttl = \"soon\"\n"),
                8,
                "invalid duration",
            ),
            (
                table("name = \"a.test\"\ntype = \"A\"\nvalue = \"192.0.2.1\"\nttl = -1\n"),
                8,
                "local.records[0].ttl",
            ),
            (
                table("name = \"a.test\"\ntype = \"A\"\nvalue = \"192.0.2.1\"\nttl = 4294967296\n"),
                8,
                "largest TTL",
            ),
            (
                table("name = \"a.test\"\ntype = \"A\"\nvalue = \"192.0.2.1\"\nclass = \"IN\"\n"),
                8,
                "class",
            ),
            (
                "[local]\nforward_single_label = \"yes\"\n".to_owned(),
                2,
                "local.forward_single_label",
            ),
            (
                "[local]\nhosts_files = \"/etc/hosts\"\n".to_owned(),
                2,
                "local.hosts_files",
            ),
        ];
        for (text, line, needle) in cases {
            let error = parse(&text).expect_err(&text);
            assert_eq!(error.file.as_deref(), Some(Path::new("t.toml")), "{text}");
            assert_eq!(error.line, Some(line), "{text}: {error}");
            assert!(error.reason.contains(needle), "{text}: {error}");
        }
        // A record missing a key names it.
        let error = parse(&table("name = \"a.test\"\ntype = \"A\"\n")).expect_err("no value");
        assert!(error.reason.contains("value"), "{error}");
    }

    /// RFC 2181 §8: 2^31 - 1 seconds is the largest TTL; one more is refused.
    #[test]
    fn record_ttl_is_accepted_up_to_2_pow_31_minus_1() -> Result<(), ConfigError> {
        let record = |ttl: u64| {
            format!(
                "[local]\nhosts_files = []\n\n[[local.records]]\nname = \"a.test\"\n\
                 type = \"A\"\nvalue = \"192.0.2.1\"\nttl = {ttl}\n"
            )
        };
        let config = parse(&record(2_147_483_647))?;
        assert_eq!(config.local.records[0].ttl, MAX_RECORD_TTL);
        let error = parse(&record(2_147_483_648)).expect_err("2^31");
        assert_eq!(error.line, Some(8), "{error}");
        assert!(error.reason.contains("largest TTL"), "{error}");
        Ok(())
    }

    /// The commented `[[local.records]]` example in conf/punctual.toml parses.
    #[test]
    fn shipped_record_example_parses() -> Result<(), ConfigError> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/punctual.toml");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{error}"));
        let example: String = text
            .lines()
            .skip_while(|line| *line != "# [[local.records]]")
            .map_while(|line| line.strip_prefix('#'))
            .map(|line| format!("{}\n", line.trim_start()))
            .collect();
        let config = parse(&example)?;
        let kinds: Vec<RecordKind> = config.local.records.iter().map(|r| r.kind).collect();
        assert_eq!(kinds, [RecordKind::A, RecordKind::Mx, RecordKind::Srv]);
        Ok(())
    }

    #[test]
    fn records_built_in_code_are_validated_too() {
        let mut config = Config::default();
        config.local.records.push(StaticRecordConfig {
            name: "a.test".into(),
            kind: RecordKind::Mx,
            value: "ten mail.test.".into(),
            ttl: DEFAULT_RECORD_TTL,
        });
        let error = config.validate().expect_err("bad MX");
        assert_eq!((error.file.as_deref(), error.line), (None, None));
        assert!(
            error.reason.starts_with("local.records[0].value: "),
            "{error}"
        );
    }
}
