//! hosts(5) files: the parser, and the table of A, AAAA and PTR records built from
//! one or more parsed files.
//!
//! A line is an address, then one or more names (the first canonical, the rest
//! aliases), separated by spaces or tabs; `#` starts a comment anywhere. Every name
//! on a line answers A or AAAA with the line's address; the address's reverse name
//! answers PTR with the line's first name, from the first line (of the first file)
//! that names the address, as glibc's files backend does. A malformed line (an
//! address that does not parse, no name, an invalid name) is skipped whole with a
//! warning naming the file and line. An IPv6 address with a zone index
//! (`fe80::1%eth0`) is kept without the zone: DNS has no place for it, and the
//! name and PTR still hold.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::Path;

use hickory_proto::rr::rdata::{A, AAAA, PTR};
use hickory_proto::rr::{Name, RData, Record};

use super::RecordTable;
use super::name;

/// The TTL of answers from hosts files. 0, as dnsmasq's `--local-ttl` default:
/// the file may change at any moment, so clients should not keep the answer.
pub const HOSTS_TTL: u32 = 0;

/// One well-formed line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEntry {
    pub address: IpAddr,
    /// The canonical name first, then the aliases, letter case as written.
    pub names: Vec<Name>,
}

/// Parses a hosts file's text; `file` only names it in warnings.
pub fn parse(text: &str, file: &Path) -> Vec<HostEntry> {
    let mut entries = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line_number = index + 1;
        let content = line.split('#').next().unwrap_or_default();
        let mut fields = content.split_whitespace();
        let Some(address_text) = fields.next() else {
            continue;
        };
        let skip = |reason: &str| {
            tracing::warn!(file = %file.display(), line = line_number, reason, "hosts line skipped");
        };
        let Some(address) = parse_address(address_text) else {
            skip(&format!("{address_text:?} is not an IP address"));
            continue;
        };
        let names: Result<Vec<Name>, _> = fields.map(name::parse).collect();
        match names {
            Ok(names) if names.is_empty() => skip("no name after the address"),
            Ok(names) => entries.push(HostEntry { address, names }),
            Err(error) => skip(&error.to_string()),
        }
    }
    entries
}

/// An address as hosts files write it; an IPv6 zone index is dropped.
fn parse_address(text: &str) -> Option<IpAddr> {
    if let Ok(address) = text.parse() {
        return Some(address);
    }
    let (address, zone) = text.split_once('%')?;
    let address: std::net::Ipv6Addr = address.parse().ok()?;
    (!zone.is_empty()).then_some(IpAddr::V6(address))
}

/// The records of the parsed files, earlier files first.
pub fn table<'a>(files: impl IntoIterator<Item = &'a [HostEntry]>) -> RecordTable {
    let mut table = RecordTable::default();
    let mut reversed: HashSet<IpAddr> = HashSet::new();
    for entry in files.into_iter().flatten() {
        let data = match entry.address {
            IpAddr::V4(address) => RData::A(A(address)),
            IpAddr::V6(address) => RData::AAAA(AAAA(address)),
        };
        for owner in &entry.names {
            table.insert(Record::from_rdata(owner.clone(), HOSTS_TTL, data.clone()));
        }
        if reversed.insert(entry.address)
            && let Some(first) = entry.names.first()
        {
            let reverse = Name::from(entry.address);
            table.insert(Record::from_rdata(
                reverse,
                HOSTS_TTL,
                RData::PTR(PTR(first.clone())),
            ));
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use hickory_proto::rr::RecordType;

    use super::*;

    fn parsed(text: &str) -> Vec<HostEntry> {
        parse(text, Path::new("hosts"))
    }

    fn names(entry: &HostEntry) -> Vec<String> {
        entry.names.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn comments_tabs_and_aliases() {
        let entries = parsed(
            "# a comment line\n\
             \n\
             127.0.0.1\tlocalhost\n\
             192.0.2.10  NAS.home.arpa\tnas  files # trailing comment\n\
             \t  2001:db8::10 nas.home.arpa\n",
        );
        assert_eq!(entries.len(), 3);
        assert_eq!(names(&entries[0]), ["localhost."]);
        assert_eq!(names(&entries[1]), ["NAS.home.arpa.", "nas.", "files."]);
        assert_eq!(
            entries[2].address,
            "2001:db8::10".parse::<IpAddr>().expect("ip")
        );
    }

    #[test]
    fn malformed_lines_are_skipped_and_the_rest_kept() {
        let entries = parsed(
            "192.0.2.300 bad.address\n\
             192.0.2.1\n\
             192.0.2.2 good bad/name\n\
             printer 192.0.2.3\n\
             192.0.2.4 fine\n",
        );
        assert_eq!(entries.len(), 1);
        assert_eq!(names(&entries[0]), ["fine."]);
    }

    #[test]
    fn zone_index_is_stripped() {
        let entries = parsed("fe80::1%eth0 router\nfe80::2% broken\n");
        assert_eq!(entries.len(), 1);
        let address: Ipv6Addr = "fe80::1".parse().expect("ip");
        assert_eq!(entries[0].address, IpAddr::V6(address));
    }

    #[test]
    fn table_answers_names_case_insensitively_and_ptr_with_the_first_name() {
        let first = parsed("192.0.2.10 NAS.home.arpa nas\n192.0.2.10 other\n");
        let second = parsed("192.0.2.10 later\n2001:db8::10 nas.home.arpa\n");
        let table = table([first.as_slice(), second.as_slice()]);
        let key = |text: &str| name::key(&name::parse(text).expect("name"));
        let types = |text: &str| -> Vec<RecordType> {
            table
                .get(&key(text))
                .map(|records| records.iter().map(Record::record_type).collect())
                .unwrap_or_default()
        };
        assert_eq!(types("nas.HOME.arpa"), [RecordType::A, RecordType::AAAA]);
        assert_eq!(types("NAS"), [RecordType::A]);
        assert_eq!(types("later"), [RecordType::A]);
        assert!(types("missing").is_empty());
        let reverse = name::key(&Name::from("192.0.2.10".parse::<IpAddr>().expect("ip")));
        let ptr = table.get(&reverse).expect("PTR");
        assert_eq!(ptr.len(), 1);
        assert_eq!(ptr[0].data.to_string(), "NAS.home.arpa.");
        assert_eq!(ptr[0].record_type(), RecordType::PTR);
    }
}
