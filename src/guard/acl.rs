//! Who may query: `[listen] allow`, a short list of address prefixes (CIDR), or
//! loopback only when the list is not given. A client is compared by its
//! canonical address, so an IPv4 client reaching a dual-stack socket as
//! `::ffff:a.b.c.d` matches the IPv4 prefixes.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An address prefix such as `10.0.0.0/8` or `2001:db8::/32`. A bare address is a
/// prefix of the full length (/32 or /128). An IPv4-mapped IPv6 prefix
/// (`::ffff:10.0.0.0/104`) is kept as the IPv4 prefix it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix {
    addr: IpAddr,
    len: u8,
}

impl Prefix {
    /// The prefix `addr/len`, with the host bits of `addr` cleared; `None` when
    /// `len` is longer than the address.
    pub fn new(addr: IpAddr, len: u8) -> Option<Prefix> {
        let (addr, len) = match addr {
            IpAddr::V6(v6) if len >= 96 && v6.to_ipv4_mapped().is_some() => {
                (IpAddr::V6(v6).to_canonical(), len - 96)
            }
            other => (other, len),
        };
        let addr = match addr {
            IpAddr::V4(v4) => IpAddr::V4(u32::from(v4).checked_mask(len, 32)?.into()),
            IpAddr::V6(v6) => IpAddr::V6(u128::from(v6).checked_mask(len, 128)?.into()),
        };
        Some(Prefix { addr, len })
    }

    /// Whether `ip` (already canonical) lies inside this prefix.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                u32::from(ip).checked_mask(self.len, 32) == Some(u32::from(net))
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                u128::from(ip).checked_mask(self.len, 128) == Some(u128::from(net))
            }
            _ => false,
        }
    }
}

impl FromStr for Prefix {
    type Err = String;

    fn from_str(text: &str) -> Result<Prefix, String> {
        let trimmed = text.trim();
        let invalid = || {
            format!(
                "invalid prefix {text:?}; expected an address with an optional /length, \
                 such as \"10.0.0.0/8\", \"192.0.2.7\" or \"2001:db8::/32\""
            )
        };
        let (addr, len) = match trimmed.split_once('/') {
            Some((addr, len)) => (addr, Some(len)),
            None => (trimmed, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| invalid())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len {
            None => max,
            // Digits only: `u8::from_str` would also take "+8".
            Some(len) if !len.is_empty() && len.bytes().all(|byte| byte.is_ascii_digit()) => {
                match len.parse::<u8>() {
                    Ok(len) if len <= max => len,
                    _ => return Err(invalid()),
                }
            }
            Some(_) => return Err(invalid()),
        };
        Prefix::new(addr, len).ok_or_else(invalid)
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}/{}", self.addr, self.len)
    }
}

/// Masking with a prefix length, for the two address widths.
trait Mask: Sized {
    fn checked_mask(self, len: u8, bits: u8) -> Option<Self>;
}

impl Mask for u32 {
    fn checked_mask(self, len: u8, bits: u8) -> Option<u32> {
        match len {
            0 => Some(0),
            len if len <= bits => Some(self & (u32::MAX << (bits - len))),
            _ => None,
        }
    }
}

impl Mask for u128 {
    fn checked_mask(self, len: u8, bits: u8) -> Option<u128> {
        match len {
            0 => Some(0),
            len if len <= bits => Some(self & (u128::MAX << (bits - len))),
            _ => None,
        }
    }
}

/// The clients punctual answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acl {
    /// No `allow` list: 127.0.0.0/8 and ::1 (also as `::ffff:127.x.y.z`).
    LoopbackOnly,
    /// An explicit `allow` list; it replaces the loopback default.
    Allow(Vec<Prefix>),
}

impl Acl {
    pub fn new(allow: Option<&[Prefix]>) -> Acl {
        match allow {
            None => Acl::LoopbackOnly,
            Some(prefixes) => Acl::Allow(prefixes.to_vec()),
        }
    }

    pub fn admits(&self, client: IpAddr) -> bool {
        let client = client.to_canonical();
        match self {
            Acl::LoopbackOnly => client.is_loopback(),
            Acl::Allow(prefixes) => prefixes.iter().any(|prefix| prefix.contains(client)),
        }
    }
}

/// Whether a listen address only reaches this host: 127.0.0.0/8 or ::1 (also
/// IPv4-mapped). The wildcards `0.0.0.0` and `::` are not: they take every
/// interface.
pub fn is_loopback_only(addr: IpAddr) -> bool {
    addr.to_canonical().is_loopback()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(text: &str) -> Prefix {
        text.parse().unwrap_or_else(|error| panic!("{error}"))
    }

    fn ip(text: &str) -> IpAddr {
        text.parse()
            .unwrap_or_else(|error| panic!("{text}: {error}"))
    }

    #[test]
    fn prefixes_parse_and_normalise() {
        assert_eq!(prefix("10.0.0.0/8").to_string(), "10.0.0.0/8");
        assert_eq!(prefix("10.1.2.3/8").to_string(), "10.0.0.0/8");
        assert_eq!(prefix("192.0.2.7").to_string(), "192.0.2.7/32");
        assert_eq!(prefix("::1").to_string(), "::1/128");
        assert_eq!(prefix("2001:db8::1/32").to_string(), "2001:db8::/32");
        assert_eq!(prefix("0.0.0.0/0").to_string(), "0.0.0.0/0");
        assert_eq!(prefix("::/0").to_string(), "::/0");
        assert_eq!(prefix("::ffff:10.0.0.0/104").to_string(), "10.0.0.0/8");
        assert_eq!(prefix(" 127.0.0.0/8 ").to_string(), "127.0.0.0/8");
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "10.0.0.0/-1",
            "10.0.0.0/+8",
            "10.0.0.0/08x",
            "localhost",
            "10.0.0/8",
            "[::1]/128",
        ] {
            let error = bad.parse::<Prefix>().expect_err(bad);
            assert!(error.contains("invalid prefix"), "{bad}: {error}");
        }
    }

    #[test]
    fn containment() {
        let net = prefix("10.0.0.0/8");
        assert!(net.contains(ip("10.255.1.2")));
        assert!(!net.contains(ip("11.0.0.1")));
        assert!(!net.contains(ip("::a00:1")));
        let all = prefix("0.0.0.0/0");
        assert!(all.contains(ip("203.0.113.9")));
        assert!(!all.contains(ip("::1")));
        let v6 = prefix("2001:db8::/32");
        assert!(v6.contains(ip("2001:db8:ffff::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
        assert!(prefix("127.0.0.1").contains(ip("127.0.0.1")));
        assert!(!prefix("127.0.0.1").contains(ip("127.0.0.2")));
    }

    #[test]
    fn loopback_default_and_explicit_lists() {
        let default = Acl::new(None);
        for client in ["127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1"] {
            assert!(default.admits(ip(client)), "{client}");
        }
        for client in [
            "10.0.0.1",
            "::",
            "0.0.0.0",
            "2001:db8::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!default.admits(ip(client)), "{client}");
        }
        let list = [prefix("127.0.0.1/32"), prefix("10.0.0.0/8")];
        let acl = Acl::new(Some(&list));
        assert!(acl.admits(ip("127.0.0.1")));
        assert!(acl.admits(ip("::ffff:10.1.1.1")));
        assert!(!acl.admits(ip("127.0.0.2")));
        assert!(!acl.admits(ip("::1")));
        assert!(!Acl::new(Some(&[])).admits(ip("127.0.0.1")));
    }

    #[test]
    fn loopback_only_listen_addresses() {
        for local in ["127.0.0.1", "127.0.0.53", "::1", "::ffff:127.0.0.1"] {
            assert!(is_loopback_only(ip(local)), "{local}");
        }
        for open in ["0.0.0.0", "::", "10.0.0.1", "2001:db8::1", "::ffff:0.0.0.0"] {
            assert!(!is_loopback_only(ip(open)), "{open}");
        }
    }
}
