//! Domain names in the two forms local answers use: the text an operator writes (a
//! hosts file line, a static record), checked and turned into a hickory [`Name`];
//! and the lower-cased plain wire form of the query key, which every local table
//! is keyed by (RFC 4343: names compare case-insensitively).

use hickory_proto::rr::Name;
use thiserror::Error;

/// The longest name in text form, without the trailing dot (RFC 1035 §3.1: 255
/// octets on the wire).
const MAX_NAME_LEN: usize = 253;
/// RFC 1035 §2.3.4.
const MAX_LABEL_LEN: usize = 63;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NameError {
    #[error("invalid name {0:?}: empty")]
    Empty(String),
    #[error("invalid name {0:?}: longer than {MAX_NAME_LEN} characters")]
    TooLong(String),
    #[error("invalid name {0:?}: empty label")]
    EmptyLabel(String),
    #[error("invalid name {0:?}: a label is longer than {MAX_LABEL_LEN} characters")]
    LongLabel(String),
    #[error("invalid name {name:?}: {bad:?} is not a letter, digit, '-' or '_'")]
    Character { name: String, bad: char },
}

/// Parses a host name such as "nas.home.arpa" or "Printer." as an absolute name,
/// keeping its letter case. Labels are 1 to 63 letters, digits, hyphens or
/// underscores (RFC 1123 §2.1 host names, plus the '_' of service labels).
pub fn parse(text: &str) -> Result<Name, NameError> {
    let bare = text.strip_suffix('.').unwrap_or(text);
    if bare.is_empty() {
        return Err(NameError::Empty(text.to_owned()));
    }
    if bare.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong(text.to_owned()));
    }
    for label in bare.split('.') {
        if label.is_empty() {
            return Err(NameError::EmptyLabel(text.to_owned()));
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(NameError::LongLabel(text.to_owned()));
        }
        if let Some(bad) = label
            .chars()
            .find(|&c| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        {
            return Err(NameError::Character {
                name: text.to_owned(),
                bad,
            });
        }
    }
    // Checked above: only ASCII labels of legal lengths remain.
    Name::from_labels(bare.split('.').map(str::as_bytes))
        .map_err(|_| NameError::Empty(text.to_owned()))
}

/// The lower-cased plain wire form of `name`: each label behind its length, then 0.
pub fn key(name: &Name) -> Box<[u8]> {
    let mut wire = Vec::with_capacity(name.len() + 1);
    for label in name.iter() {
        // A label of a Name is at most 63 bytes.
        wire.push(label.len() as u8);
        wire.extend(label.iter().map(u8::to_ascii_lowercase));
    }
    wire.push(0);
    wire.into_boxed_slice()
}

/// The labels of a plain wire name (as the query key holds it), root excluded.
pub fn labels(wire: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let len = usize::from(*wire.get(at)?);
        let label = wire.get(at + 1..at + 1 + len).filter(|_| len > 0)?;
        at += 1 + len;
        Some(label)
    })
}

/// The suffixes of a plain wire name, itself first and the root last:
/// "a.b." gives "a.b.", "b.", ".".
pub fn suffixes(wire: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut at = Some(0);
    std::iter::from_fn(move || {
        let start = at?;
        let suffix = wire.get(start..)?;
        at = match suffix.first() {
            Some(&len) if len > 0 => Some(start + 1 + usize::from(len)),
            _ => None,
        };
        Some(suffix)
    })
}

/// A [`Name`] for a plain wire name from a validated query; `None` if hickory
/// refuses one of its labels.
pub fn from_wire(wire: &[u8]) -> Option<Name> {
    Name::from_labels(labels(wire)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_host_names_keeping_case() {
        let name = parse("NAS.Home.arpa").expect("valid");
        assert_eq!(name.to_string(), "NAS.Home.arpa.");
        assert_eq!(
            parse("nas.home.arpa.").expect("valid").to_string(),
            "nas.home.arpa."
        );
        assert_eq!(&*key(&name), b"\x03nas\x04home\x04arpa\x00");
        assert_eq!(parse("_sip._udp.test").map(|n| n.num_labels()), Ok(3));
        for (bad, needle) in [
            ("", "empty"),
            (".", "empty"),
            ("a..b", "empty label"),
            ("a b", "' '"),
            ("a/b", "'/'"),
            ("bücher.test", "'ü'"),
        ] {
            let error = parse(bad).expect_err(bad).to_string();
            assert!(error.contains(needle), "{bad}: {error}");
        }
        assert!(parse(&"a".repeat(64)).is_err());
        assert!(parse(&vec!["a".repeat(63); 4].join(".")).is_err());
    }

    #[test]
    fn wire_helpers() {
        let wire = b"\x01a\x02bc\x00";
        let labels: Vec<&[u8]> = labels(wire).collect();
        assert_eq!(labels, [&b"a"[..], &b"bc"[..]]);
        let suffixes: Vec<&[u8]> = suffixes(wire).collect();
        assert_eq!(suffixes, [&wire[..], &b"\x02bc\x00"[..], &b"\x00"[..]]);
        assert_eq!(from_wire(wire).map(|n| n.to_string()), Some("a.bc.".into()));
        assert_eq!(from_wire(b"\x00").map(|n| n.is_root()), Some(true));
    }
}
