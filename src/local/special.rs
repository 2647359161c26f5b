//! Names no upstream should be asked about, and the records punctual answers for
//! them itself:
//! - `localhost` and below: loopback addresses (RFC 6761 §6.3);
//! - `invalid` and below: NXDOMAIN (RFC 6761 §6.4);
//! - `local` and below, the mDNS domain: NXDOMAIN (RFC 6762 §3: unicast DNS has
//!   no answer for it); both without an SOA, as no zone exists there;
//! - the locally served zones of RFC 6303 §4 (private and special-purpose reverse
//!   zones) and RFC 7793 (100.64/10): NXDOMAIN below the apex, NODATA at it, with
//!   the zone's SOA (RFC 6303 §3) so clients cache the answer;
//! - names of a single label ("printer"): NXDOMAIN, unless configured to forward;
//! - and the RFC 8482 §4.2 answer to ANY queries, one synthesized HINFO record.
//!
//! A `[[forward]]` zone wins over `local`, the RFC 6303 zones and single-label
//! names: a zone at, above or below one of these zones turns its synthesis off
//! (the operator has a server for that space). `localhost` and `invalid` stay
//! local whatever is forwarded: RFC 6761 §6.3 and §6.4 say they never leave.

use std::collections::HashMap;

use hickory_proto::rr::rdata::{HINFO, SOA};
use hickory_proto::rr::{Name, RData, Record};

use super::name;
use crate::wire;

/// RFC 6303 §3: the SOA every locally served zone has,
/// `@ 10800 IN SOA @ nobody.invalid. 1 3600 1200 604800 10800`; `localhost`
/// gets the same for its NODATA answers. The record's TTL and
/// MINIMUM, 10800 s (3 h), are how long clients cache a negative answer (RFC 2308 §5).
const SOA_TTL: u32 = 10_800;
const SOA_SERIAL: u32 = 1;
const SOA_REFRESH: i32 = 3_600;
const SOA_RETRY: i32 = 1_200;
const SOA_EXPIRE: i32 = 604_800;
const SOA_MINIMUM: u32 = 10_800;

/// RFC 8482 §4.2: the HINFO answer to ANY carries CPU "RFC8482" and an empty OS.
const ANY_HINFO_CPU: &str = "RFC8482";
/// The TTL of that HINFO: RFC 8482 §4.2 leaves it to the responder; an hour keeps
/// clients from asking again soon.
const ANY_HINFO_TTL: u32 = 3_600;

/// What kind of locally answered zone a name is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneKind {
    /// `localhost`: every name in it has the loopback addresses.
    Loopback,
    /// A zone with no names but its apex: NXDOMAIN below it, NODATA at it.
    Empty,
    /// A name that does not exist, nor anything below it: NXDOMAIN, with no SOA
    /// (there is no zone to vouch for it).
    Nonexistent,
}

/// How a name the tables do not hold is answered locally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special<'a> {
    /// In a locally answered zone; `apex` is the zone's lower-case wire name.
    Zone { apex: &'a [u8], kind: ZoneKind },
    /// A single-label name that is not forwarded: NXDOMAIN, with no zone to vouch.
    SingleLabel,
}

/// The special zones in effect, given the `[[forward]]` zones.
#[derive(Debug)]
pub struct SpecialZones {
    /// foldhash, as for [`super::RecordTable`]: the keys are ours.
    zones: HashMap<Box<[u8]>, ZoneKind, foldhash::fast::RandomState>,
    /// The last labels of `zones` (`arpa`, `localhost`, …): a name ending in
    /// anything else is in none of them, which spares nearly every query the
    /// lookup of each of its suffixes.
    top_labels: Vec<Box<[u8]>>,
    forward_single_label: bool,
    /// Lower-case wire names of the `[[forward]]` zones.
    forwarded: Vec<Box<[u8]>>,
}

impl SpecialZones {
    /// `forwarded` are the `[[forward]]` zones as lower-case wire names.
    pub fn new(forwarded: Vec<Box<[u8]>>, forward_single_label: bool) -> SpecialZones {
        let overlaps_forward = |zone: &[u8]| {
            forwarded.iter().any(|forward| {
                wire::is_at_or_below(forward, zone) || wire::is_at_or_below(zone, forward)
            })
        };
        let mut zones = HashMap::default();
        // RFC 6761 §6.3, §6.4: never forwarded.
        zones.insert(text_key("localhost"), ZoneKind::Loopback);
        zones.insert(text_key("invalid"), ZoneKind::Nonexistent);
        let mdns = text_key("local");
        if !overlaps_forward(&mdns) {
            zones.insert(mdns, ZoneKind::Nonexistent);
        }
        for zone in locally_served_zones() {
            let key = text_key(&zone);
            if !overlaps_forward(&key) {
                zones.insert(key, ZoneKind::Empty);
            }
        }
        let mut top_labels: Vec<Box<[u8]>> = zones
            .keys()
            .filter_map(|zone| name::labels(zone).last().map(Box::from))
            .collect();
        top_labels.sort_unstable();
        top_labels.dedup();
        SpecialZones {
            zones,
            top_labels,
            forward_single_label,
            forwarded,
        }
    }

    /// How `name` (a lower-case plain wire name) is answered locally, if it is.
    pub fn lookup<'a>(&'a self, name: &[u8]) -> Option<Special<'a>> {
        let mut labels = name::labels(name);
        let first = labels.next()?;
        let last = labels.last().unwrap_or(first);
        if self.top_labels.iter().any(|top| **top == *last) {
            for suffix in name::suffixes(name) {
                if let Some((apex, kind)) = self.zones.get_key_value(suffix) {
                    return Some(Special::Zone { apex, kind: *kind });
                }
            }
        }
        let single_label = name::labels(name).nth(1).is_none();
        let forwarded = || {
            self.forward_single_label
                || self
                    .forwarded
                    .iter()
                    .any(|zone| wire::is_at_or_below(name, zone))
        };
        (single_label && !forwarded()).then_some(Special::SingleLabel)
    }
}

/// The reverse zones of RFC 6303 §4 and RFC 7793 §2, without the trailing dot.
pub fn locally_served_zones() -> Vec<String> {
    let mut zones = Vec::with_capacity(100);
    // RFC 6303 §4.1, RFC 1918 space.
    zones.push("10.in-addr.arpa".to_owned());
    zones.extend((16..=31).map(|octet| format!("{octet}.172.in-addr.arpa")));
    zones.push("168.192.in-addr.arpa".to_owned());
    // RFC 7793 §2: 100.64.0.0/10, shared address space.
    zones.extend((64..=127).map(|octet| format!("{octet}.100.in-addr.arpa")));
    // RFC 6303 §4.2: "this" network, loopback, link-local, the documentation
    // networks and the limited broadcast address.
    zones.extend(
        [
            "0.in-addr.arpa",
            "127.in-addr.arpa",
            "254.169.in-addr.arpa",
            "2.0.192.in-addr.arpa",
            "100.51.198.in-addr.arpa",
            "113.0.203.in-addr.arpa",
            "255.255.255.255.in-addr.arpa",
        ]
        .map(str::to_owned),
    );
    // RFC 6303 §4.3: the IPv6 unspecified (::) and loopback (::1) addresses.
    let zeros = |count: usize| vec!["0"; count].join(".");
    zones.push(format!("{}.ip6.arpa", zeros(32)));
    zones.push(format!("1.{}.ip6.arpa", zeros(31)));
    // RFC 6303 §4.4 unique local (fd00::/8), §4.5 link-local (fe80::/10),
    // §4.6 documentation (2001:db8::/32).
    zones.extend(
        [
            "d.f.ip6.arpa",
            "8.e.f.ip6.arpa",
            "9.e.f.ip6.arpa",
            "a.e.f.ip6.arpa",
            "b.e.f.ip6.arpa",
            "8.b.d.0.1.0.0.2.ip6.arpa",
        ]
        .map(str::to_owned),
    );
    zones
}

/// The wire key of a zone written in text; the zones above are all valid names.
fn text_key(zone: &str) -> Box<[u8]> {
    let mut wire = Vec::with_capacity(zone.len() + 2);
    for label in zone.split('.') {
        wire.push(label.len() as u8);
        wire.extend_from_slice(label.as_bytes());
    }
    wire.push(0);
    wire.into_boxed_slice()
}

/// The RFC 6303 §3 SOA of the zone at `apex` (a wire name), for the authority
/// section of a negative answer or the answer to an SOA query at the apex.
pub fn soa(apex: &[u8]) -> Option<Record> {
    let zone = name::from_wire(apex)?;
    let nobody = Name::from_labels(["nobody", "invalid"]).ok()?;
    let data = SOA::new(
        zone.clone(),
        nobody,
        SOA_SERIAL,
        SOA_REFRESH,
        SOA_RETRY,
        SOA_EXPIRE,
        SOA_MINIMUM,
    );
    Some(Record::from_rdata(zone, SOA_TTL, RData::SOA(data)))
}

/// The RFC 8482 §4.2 answer to an ANY query for `owner`.
pub fn any_hinfo(owner: Name) -> Record {
    let data = HINFO::new(ANY_HINFO_CPU.to_owned(), String::new());
    Record::from_rdata(owner, ANY_HINFO_TTL, RData::HINFO(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> Box<[u8]> {
        name::key(&name::parse(text).expect("valid name"))
    }

    fn apex_of(zones: &SpecialZones, text: &str) -> Option<String> {
        match zones.lookup(&key(text))? {
            Special::Zone { apex, .. } => name::from_wire(apex).map(|n| n.to_string()),
            Special::SingleLabel => Some("single label".into()),
        }
    }

    #[test]
    fn the_rfc_6303_and_7793_lists() {
        let zones = locally_served_zones();
        assert_eq!(zones.len(), 2 + 16 + 64 + 7 + 2 + 6);
        for zone in &zones {
            assert!(name::parse(zone).is_ok(), "{zone}");
        }
        let special = SpecialZones::new(Vec::new(), false);
        for (name, apex) in [
            ("1.0.0.10.in-addr.arpa", "10.in-addr.arpa."),
            ("1.0.16.172.in-addr.arpa", "16.172.in-addr.arpa."),
            ("1.0.31.172.in-addr.arpa", "31.172.in-addr.arpa."),
            ("1.0.168.192.in-addr.arpa", "168.192.in-addr.arpa."),
            ("1.0.64.100.in-addr.arpa", "64.100.in-addr.arpa."),
            ("1.0.127.100.in-addr.arpa", "127.100.in-addr.arpa."),
            ("1.0.0.127.in-addr.arpa", "127.in-addr.arpa."),
            ("1.1.254.169.in-addr.arpa", "254.169.in-addr.arpa."),
            ("5.2.0.192.in-addr.arpa", "2.0.192.in-addr.arpa."),
            (
                "255.255.255.255.in-addr.arpa",
                "255.255.255.255.in-addr.arpa.",
            ),
            ("1.0.0.0.d.f.ip6.arpa", "d.f.ip6.arpa."),
            ("1.0.0.0.8.e.f.ip6.arpa", "8.e.f.ip6.arpa."),
            ("0.b.e.f.ip6.arpa", "b.e.f.ip6.arpa."),
            ("1.8.b.d.0.1.0.0.2.ip6.arpa", "8.b.d.0.1.0.0.2.ip6.arpa."),
        ] {
            assert_eq!(apex_of(&special, name).as_deref(), Some(apex), "{name}");
        }
        let loopback6 = format!("1.{}.ip6.arpa", vec!["0"; 31].join("."));
        assert_eq!(apex_of(&special, &loopback6), Some(format!("{loopback6}.")));
        // Just outside the ranges: forwarded.
        for name in [
            "1.0.15.172.in-addr.arpa",
            "1.0.32.172.in-addr.arpa",
            "1.0.63.100.in-addr.arpa",
            "1.0.128.100.in-addr.arpa",
            "1.0.169.192.in-addr.arpa",
            "172.in-addr.arpa",
            "1.0.0.0.c.f.ip6.arpa",
            "0.c.e.f.ip6.arpa",
            "1.0.0.0.8.b.d.0.1.0.0.3.ip6.arpa",
            "www.example.test",
        ] {
            assert_eq!(apex_of(&special, name), None, "{name}");
        }
    }

    #[test]
    fn rfc_6761_names_and_single_labels_any_case() {
        let special = SpecialZones::new(Vec::new(), false);
        let kind = |text: &str| special.lookup(&key(&text.to_ascii_lowercase()));
        assert!(matches!(
            kind("LocalHost"),
            Some(Special::Zone {
                kind: ZoneKind::Loopback,
                ..
            })
        ));
        assert!(matches!(
            kind("a.b.LOCALHOST"),
            Some(Special::Zone {
                kind: ZoneKind::Loopback,
                ..
            })
        ));
        assert_eq!(apex_of(&special, "x.invalid").as_deref(), Some("invalid."));
        assert_eq!(
            apex_of(&special, "printer.local").as_deref(),
            Some("local.")
        );
        assert_eq!(
            apex_of(&special, "printer").as_deref(),
            Some("single label")
        );
        assert_eq!(apex_of(&special, "localhost.example"), None);
        assert_eq!(special.lookup(b"\x00"), None, "the root is forwarded");
        let forwarding = SpecialZones::new(Vec::new(), true);
        assert_eq!(apex_of(&forwarding, "printer"), None);
    }

    #[test]
    fn forward_zones_turn_synthesis_off() {
        let special = SpecialZones::new(
            vec![
                key("168.192.in-addr.arpa"),
                key("1.0.10.in-addr.arpa"),
                key("ip6.arpa"),
                key("local"),
                key("invalid"),
                key("corp"),
            ],
            false,
        );
        for name in [
            "1.0.168.192.in-addr.arpa",
            "5.5.10.in-addr.arpa",
            "1.0.0.0.d.f.ip6.arpa",
            "printer.local",
            "corp",
        ] {
            assert_eq!(apex_of(&special, name), None, "{name}");
        }
        assert_eq!(apex_of(&special, "x.invalid").as_deref(), Some("invalid."));
        assert_eq!(
            apex_of(&special, "1.0.16.172.in-addr.arpa").as_deref(),
            Some("16.172.in-addr.arpa.")
        );
        assert_eq!(
            apex_of(&special, "printer").as_deref(),
            Some("single label")
        );
    }

    #[test]
    fn soa_and_hinfo_records() {
        let soa = soa(&key("10.in-addr.arpa")).expect("SOA");
        assert_eq!(soa.ttl, SOA_TTL);
        assert_eq!(
            soa.data.to_string(),
            "10.in-addr.arpa. nobody.invalid. 1 3600 1200 604800 10800"
        );
        let hinfo = any_hinfo(name::parse("a.test").expect("name"));
        assert_eq!(hinfo.ttl, ANY_HINFO_TTL);
        let RData::HINFO(data) = &hinfo.data else {
            panic!("not HINFO")
        };
        assert_eq!((&*data.cpu, &*data.os), (&b"RFC8482"[..], &b""[..]));
    }
}
