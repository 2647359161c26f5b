//! How an upstream server is written in `[upstream] servers` and `[[forward]]`
//! tables, and the transport each form selects:
//! - `IP` or `IP:PORT`: UDP, falling back to TCP when a reply is truncated;
//! - `tcp://IP[:PORT]`: TCP only (RFC 7766), one connection reused for many queries;
//! - `tls://IP[:PORT]#auth-name`: DNS over TLS (RFC 7858), port 853 by default, the
//!   server's certificate checked against `auth-name` (RFC 8310 §8.1 strict privacy:
//!   no name, no encryption worth having, so the name is required).

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use rustls_pki_types::{InvalidDnsNameError, ServerName};

use super::value::{DNS_PORT, parse_socket_addr};

/// RFC 7858 §3.1: DNS over TLS is served on port 853.
pub const DNS_OVER_TLS_PORT: u16 = 853;

/// One upstream server: where, and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UpstreamAddr {
    pub addr: SocketAddr,
    pub transport: UpstreamTransport,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum UpstreamTransport {
    /// UDP, and TCP for a truncated reply (RFC 7766 §5).
    Udp,
    /// TCP only, pipelined on one connection.
    Tcp,
    /// TLS with the certificate checked against `auth_name`.
    Tls { auth_name: ServerName<'static> },
}

impl UpstreamAddr {
    /// A plain UDP server (what a resolv.conf `nameserver` line names).
    pub fn udp(addr: SocketAddr) -> UpstreamAddr {
        UpstreamAddr {
            addr,
            transport: UpstreamTransport::Udp,
        }
    }

    pub fn tcp(addr: SocketAddr) -> UpstreamAddr {
        UpstreamAddr {
            addr,
            transport: UpstreamTransport::Tcp,
        }
    }

    /// DNS over TLS; `auth_name` must be a DNS name (a certificate's name).
    pub fn tls(addr: SocketAddr, auth_name: &str) -> Result<UpstreamAddr, InvalidDnsNameError> {
        let auth_name = ServerName::try_from(auth_name.to_owned())?;
        Ok(UpstreamAddr {
            addr,
            transport: UpstreamTransport::Tls { auth_name },
        })
    }

    /// Whether queries to this server travel over a kept-open connection.
    pub fn is_stream(&self) -> bool {
        !matches!(self.transport, UpstreamTransport::Udp)
    }
}

impl From<SocketAddr> for UpstreamAddr {
    fn from(addr: SocketAddr) -> UpstreamAddr {
        UpstreamAddr::udp(addr)
    }
}

impl fmt::Display for UpstreamAddr {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.transport {
            UpstreamTransport::Udp => write!(formatter, "{}", self.addr),
            UpstreamTransport::Tcp => write!(formatter, "tcp://{}", self.addr),
            UpstreamTransport::Tls { auth_name } => {
                write!(formatter, "tls://{}#{}", self.addr, auth_name.to_str())
            }
        }
    }
}

/// Parses `IP[:PORT]`, `tcp://IP[:PORT]` or `tls://IP[:PORT]#auth-name`.
pub fn parse_upstream_addr(text: &str) -> Result<UpstreamAddr, String> {
    let trimmed = text.trim();
    if let Some(rest) = trimmed.strip_prefix("tcp://") {
        let addr = address(rest, DNS_PORT, text)?;
        return Ok(UpstreamAddr::tcp(addr));
    }
    if let Some(rest) = trimmed.strip_prefix("tls://") {
        let Some((host, auth_name)) = rest.split_once('#') else {
            return Err(format!(
                "{text:?} has no authentication name; write \"tls://IP[:PORT]#NAME\" with \
                 the name the server's certificate carries, such as \
                 \"tls://1.1.1.1#cloudflare-dns.com\""
            ));
        };
        let addr = address(host, DNS_OVER_TLS_PORT, text)?;
        let auth_name = auth_name.trim().trim_end_matches('.').to_ascii_lowercase();
        // An IP address parses as a ServerName too, but the name is what RFC 8310
        // authenticates: require a DNS name.
        let dns_name = !auth_name.is_empty() && auth_name.parse::<IpAddr>().is_err();
        return UpstreamAddr::tls(addr, &auth_name)
            .ok()
            .filter(|_| dns_name)
            .ok_or_else(|| {
                format!(
                    "{text:?}: {auth_name:?} is not a valid authentication name (a DNS name \
                     such as \"dns.example.net\")"
                )
            });
    }
    if let Some((scheme, _)) = trimmed.split_once("://") {
        return Err(format!(
            "{text:?}: unknown scheme {scheme:?}; use an address for UDP, \"tcp://\" or \"tls://\""
        ));
    }
    parse_socket_addr(trimmed).map(UpstreamAddr::udp)
}

/// `IP` or `IP:PORT` (IPv6 in brackets when a port follows), `default_port` when none.
fn address(text: &str, default_port: u16, whole: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, default_port));
    }
    if let Some(ip) = text
        .strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .and_then(|inner| inner.parse::<IpAddr>().ok())
    {
        return Ok(SocketAddr::new(ip, default_port));
    }
    text.parse::<SocketAddr>().map_err(|_| {
        format!(
            "invalid upstream {whole:?}; expected an IP address with an optional port, such \
             as \"192.0.2.1\", \"tcp://192.0.2.1:53\" or \"tls://[2001:db8::1]:853#dns.example\""
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("test address")
    }

    fn tls(addr: SocketAddr, name: &str) -> UpstreamAddr {
        UpstreamAddr::tls(addr, name).expect("test name")
    }

    #[test]
    fn every_form_parses_to_its_transport_and_default_port() {
        let cases = [
            ("192.0.2.1", UpstreamAddr::udp(addr("192.0.2.1:53"))),
            ("192.0.2.1:5353", UpstreamAddr::udp(addr("192.0.2.1:5353"))),
            (
                "[2001:db8::1]:53",
                UpstreamAddr::udp(addr("[2001:db8::1]:53")),
            ),
            ("tcp://192.0.2.1", UpstreamAddr::tcp(addr("192.0.2.1:53"))),
            (
                "tcp://[2001:db8::1]:5353",
                UpstreamAddr::tcp(addr("[2001:db8::1]:5353")),
            ),
            (
                "tcp://2001:db8::1",
                UpstreamAddr::tcp(addr("[2001:db8::1]:53")),
            ),
            (
                "tls://192.0.2.1#Dns.Example.",
                tls(addr("192.0.2.1:853"), "dns.example"),
            ),
            (
                "tls://[2001:db8::1]:8853#dns.example",
                tls(addr("[2001:db8::1]:8853"), "dns.example"),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(parse_upstream_addr(text), Ok(want.clone()), "{text}");
            // Display writes what parses back to the same server.
            assert_eq!(parse_upstream_addr(&want.to_string()), Ok(want), "{text}");
        }
    }

    #[test]
    fn bad_forms_say_what_is_wrong() {
        let cases = [
            ("tls://192.0.2.1", "no authentication name"),
            ("tls://192.0.2.1#", "not a valid authentication name"),
            (
                "tls://192.0.2.1#bad name",
                "not a valid authentication name",
            ),
            (
                "tls://192.0.2.1#192.0.2.1",
                "not a valid authentication name",
            ),
            ("https://192.0.2.1", "unknown scheme"),
            ("tcp://dns.example", "invalid upstream"),
            ("tcp://192.0.2.1:99999", "invalid upstream"),
            ("not-an-ip", "invalid address"),
        ];
        for (text, reason) in cases {
            match parse_upstream_addr(text) {
                Ok(parsed) => panic!("{text} parsed as {parsed}"),
                Err(error) => assert!(error.contains(reason), "{text}: {error}"),
            }
        }
    }
}
