//! Who holds punctual's listen addresses, and which other DNS servers run here:
//! the bound sockets from `/proc/net/{udp,tcp,udp6,tcp6}`, each socket's inode
//! mapped to a process through `/proc/PID/fd` (every process only as root).
//! The /proc root is a parameter, so tests can use a fixture tree.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use super::{Finding, Severity};
use crate::config::Config;
use crate::config::value::DNS_PORT;

/// tcp_states.h: TCP_LISTEN is 0x0A; TCP_CLOSE (0x07) is how an unconnected,
/// bound UDP socket shows.
const TCP_LISTEN: u8 = 0x0A;
const UDP_UNCONNECTED: u8 = 0x07;

/// Processes that serve DNS and would compete with punctual for port 53. Names as
/// in /proc/PID/comm, which keeps 15 bytes ("systemd-resolved" is cut).
const OTHER_DNS_SERVERS: [&str; 8] = [
    "systemd-resolve",
    "dnsmasq",
    "unbound",
    "named",
    "pdns_recursor",
    "kresd",
    "coredns",
    "knot-resolver",
];

/// systemd-resolved's stub listeners (resolved.conf(5): DNSStubListener, and the
/// "proxy" stub on 127.0.0.54).
const RESOLVED_STUBS: [Ipv4Addr; 2] = [Ipv4Addr::new(127, 0, 0, 53), Ipv4Addr::new(127, 0, 0, 54)];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Udp,
    Tcp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Protocol::Udp => "udp",
            Protocol::Tcp => "tcp",
        })
    }
}

/// A listening (TCP) or bound (UDP) socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Socket {
    pub protocol: Protocol,
    pub local: SocketAddr,
    pub inode: u64,
}

/// A process that owns a socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub pid: u32,
    pub name: String,
}

impl fmt::Display for Owner {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{} (pid {})", self.name, self.pid)
    }
}

/// The listening sockets in one `/proc/net/{tcp,udp}[6]` table. Lines that do not
/// parse are skipped: the table's format is the kernel's, not ours to reject.
pub fn parse_table(text: &str, protocol: Protocol) -> Vec<Socket> {
    let wanted = match protocol {
        Protocol::Udp => UDP_UNCONNECTED,
        Protocol::Tcp => TCP_LISTEN,
    };
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local = parse_address(fields.get(1)?)?;
            let state = u8::from_str_radix(fields.get(3)?, 16).ok()?;
            let inode = fields.get(9)?.parse().ok()?;
            (state == wanted).then_some(Socket {
                protocol,
                local,
                inode,
            })
        })
        .collect()
}

/// "0100007F:0035" → 127.0.0.1:53. The kernel prints each 32-bit word of the
/// address as a host-order number, so the bytes come back with `to_ne_bytes`.
fn parse_address(text: &str) -> Option<SocketAddr> {
    let (address, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |index: usize| {
        let hex = address.get(index * 8..index * 8 + 8)?;
        u32::from_str_radix(hex, 16).ok().map(u32::to_ne_bytes)
    };
    let ip = match address.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for (index, chunk) in bytes.chunks_exact_mut(4).enumerate() {
                chunk.copy_from_slice(&word(index)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Every listening socket under `proc_root`, or why none could be read.
fn sockets(proc_root: &Path) -> Result<Vec<Socket>, String> {
    let mut all = Vec::new();
    let mut read_any = false;
    for (file, protocol) in [
        ("udp", Protocol::Udp),
        ("udp6", Protocol::Udp),
        ("tcp", Protocol::Tcp),
        ("tcp6", Protocol::Tcp),
    ] {
        // udp6/tcp6 are missing when IPv6 is off; that is not an error.
        if let Ok(text) = std::fs::read_to_string(proc_root.join("net").join(file)) {
            read_any = true;
            all.extend(parse_table(&text, protocol));
        }
    }
    if read_any {
        Ok(all)
    } else {
        Err(format!(
            "cannot read {}/net/udp or tcp",
            proc_root.display()
        ))
    }
}

/// Socket inode → owning process, for the processes whose fd directory we may read.
fn owners(proc_root: &Path) -> HashMap<u64, Owner> {
    let mut owners = HashMap::new();
    let Ok(entries) = std::fs::read_dir(proc_root) else {
        return owners;
    };
    for entry in entries.filter_map(Result::ok) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let name = std::fs::read_to_string(entry.path().join("comm"))
            .map(|comm| comm.trim().to_owned())
            .unwrap_or_else(|_| "?".to_owned());
        for fd in fds.filter_map(Result::ok) {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let inode = target
                .to_str()
                .and_then(|text| text.strip_prefix("socket:["))
                .and_then(|text| text.strip_suffix(']'))
                .and_then(|text| text.parse().ok());
            if let Some(inode) = inode {
                owners.insert(
                    inode,
                    Owner {
                        pid,
                        name: name.clone(),
                    },
                );
            }
        }
    }
    owners
}

/// Whether a socket bound to `local` receives what is sent to `listen`, or the
/// other way round: same port, and the same address or a wildcard that covers the
/// other (`::` covers IPv4 too, as a dual-stack socket; `0.0.0.0` only IPv4).
fn overlaps(local: SocketAddr, listen: SocketAddr) -> bool {
    let covers = |wildcard: IpAddr, other: IpAddr| {
        wildcard.is_unspecified() && (wildcard.is_ipv6() || other.to_canonical().is_ipv4())
    };
    let (a, b) = (local.ip(), listen.ip());
    local.port() == listen.port()
        && (a.to_canonical() == b.to_canonical() || covers(a, b) || covers(b, a))
}

fn is_other_dns_server(owner: &Owner) -> bool {
    OTHER_DNS_SERVERS.contains(&owner.name.as_str())
}

/// The port-53 findings under `proc_root` for punctual's listen addresses.
pub fn check(proc_root: &Path, config: &Config) -> Vec<Finding> {
    let sockets = match sockets(proc_root) {
        Ok(sockets) => sockets,
        Err(reason) => {
            return vec![Finding::new(
                "port53",
                Severity::Info,
                "cannot tell who holds the listen addresses".to_owned(),
                format!("{reason}; on Linux, run doctor as root to see every process."),
            )];
        }
    };
    let owners = owners(proc_root);
    let describe = |socket: &Socket| match owners.get(&socket.inode) {
        Some(owner) => format!("{} {} by {owner}", socket.protocol, socket.local),
        None => format!(
            "{} {} by a process we cannot see (run as root)",
            socket.protocol, socket.local
        ),
    };
    let mut findings: Vec<Finding> = config
        .listen
        .addresses
        .iter()
        .map(|&listen| {
            let holders: Vec<&Socket> = sockets
                .iter()
                .filter(|socket| overlaps(socket.local, listen))
                .collect();
            let held: Vec<String> = holders.iter().map(|socket| describe(socket)).collect();
            let rivals: Vec<&Owner> = holders
                .iter()
                .filter_map(|socket| owners.get(&socket.inode))
                .filter(|owner| is_other_dns_server(owner))
                .collect();
            let all_punctual = !holders.is_empty()
                && holders.iter().all(|socket| {
                    owners
                        .get(&socket.inode)
                        .is_some_and(|owner| owner.name == "punctual")
                });
            if holders.is_empty() {
                Finding::new(
                    "port53",
                    Severity::Error,
                    format!("nothing listens on {listen}"),
                    "punctual is not running on this address: start it (systemctl start \
                     punctual) and check its log."
                        .to_owned(),
                )
            } else if let Some(rival) = rivals.first() {
                Finding::new(
                    "port53",
                    Severity::Error,
                    format!("{rival} holds {listen}"),
                    format!(
                        "Held: {}. punctual cannot bind where another DNS server listens: \
                         stop {} or move one of them to another address.",
                        held.join(", "),
                        rival.name
                    ),
                )
            } else if all_punctual {
                Finding::new(
                    "port53",
                    Severity::Ok,
                    format!("punctual holds {listen}"),
                    format!("Held: {}.", held.join(", ")),
                )
            } else {
                Finding::new(
                    "port53",
                    Severity::Info,
                    format!("{listen} is held by a process not named punctual"),
                    format!(
                        "Held: {}. The \"answering\" check tells whether it answers.",
                        held.join(", ")
                    ),
                )
            }
        })
        .collect();
    findings.extend(other_servers(&sockets, &owners, config));
    findings
}

/// systemd-resolved's stub and other DNS servers on port 53 elsewhere: not in
/// punctual's way, but resolv.conf may name them instead of punctual.
fn other_servers(
    sockets: &[Socket],
    owners: &HashMap<u64, Owner>,
    config: &Config,
) -> Vec<Finding> {
    let mut seen: Vec<(String, SocketAddr, bool)> = Vec::new();
    for socket in sockets {
        if socket.local.port() != DNS_PORT
            || config
                .listen
                .addresses
                .iter()
                .any(|&listen| overlaps(socket.local, listen))
        {
            continue;
        }
        let stub = matches!(socket.local.ip(), IpAddr::V4(ip) if RESOLVED_STUBS.contains(&ip));
        let name = match owners.get(&socket.inode) {
            Some(owner) if is_other_dns_server(owner) => owner.to_string(),
            None if stub => "systemd-resolved (presumably)".to_owned(),
            _ => continue,
        };
        let entry = (name, socket.local, stub);
        if !seen.contains(&entry) {
            seen.push(entry);
        }
    }
    seen.into_iter()
        .map(|(name, local, stub)| {
            let detail = if stub {
                "systemd-resolved's stub listener. If resolv.conf names 127.0.0.53, lookups \
                 go through resolved, not punctual; point resolv.conf at punctual, or make \
                 punctual resolved's upstream (DNS= in resolved.conf)."
            } else {
                "Another DNS server runs here. Make sure resolv.conf names punctual, or that \
                 this server forwards to punctual."
            };
            Finding::new(
                "port53",
                Severity::Info,
                format!("{name} serves DNS on {local}"),
                detail.to_owned(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kernel_tables() {
        let udp = "\
   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  512: 3500007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000   991        0 18514 2 0000000000000000 0
  600: 0100007F:A1B2 0100007F:0035 01 00000000:00000000 00:00000000 00000000     0        0 18600 2 0000000000000000 0
";
        let sockets = parse_table(udp, Protocol::Udp);
        assert_eq!(
            sockets,
            vec![Socket {
                protocol: Protocol::Udp,
                local: "127.0.0.53:53".parse().expect("address"),
                inode: 18514,
            }]
        );
        let tcp6 = "\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:0035 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000000000000:0050 00000000000000000000000000000000:0000 06 00000000:00000000 00:00000000 00000000     0        0 4243 1 0000000000000000 100 0 0 10 0
";
        let sockets = parse_table(tcp6, Protocol::Tcp);
        assert_eq!(sockets.len(), 1);
        assert_eq!(sockets[0].local, "[::1]:53".parse().expect("address"));
        assert!(parse_table("header\ngarbage line\n", Protocol::Tcp).is_empty());
    }

    #[test]
    fn wildcards_overlap() {
        let addr = |text: &str| text.parse::<SocketAddr>().expect("address");
        assert!(overlaps(addr("0.0.0.0:53"), addr("127.0.0.1:53")));
        assert!(overlaps(addr("127.0.0.1:53"), addr("0.0.0.0:53")));
        assert!(overlaps(addr("127.0.0.1:53"), addr("127.0.0.1:53")));
        assert!(!overlaps(addr("127.0.0.53:53"), addr("127.0.0.1:53")));
        assert!(!overlaps(addr("127.0.0.1:5353"), addr("127.0.0.1:53")));
        assert!(overlaps(addr("[::]:53"), addr("127.0.0.1:53")));
        assert!(!overlaps(addr("0.0.0.0:53"), addr("[::1]:53")));
    }
}
