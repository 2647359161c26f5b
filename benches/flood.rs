//! The flooder of `benches/load.sh`'s `flood` workload: one UDP socket sends
//! malformed DNS packets to a resolver as fast as it can, for a time and up to
//! a count, then prints how many it sent. Not a benchmark of its own.
//!
//! `cargo bench --bench flood -- FROM_IP TARGET_IP:PORT SECONDS MAX_PACKETS`.
//! Both addresses must be loopback: this tool only ever floods this machine.

// A plain blocking program outside any tokio runtime: the wall clock is what
// it measures, and no test pauses it.
#![allow(clippy::disallowed_types)]

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// One of each kind of packet a broken or hostile client sends; none is a
/// valid query, so each is either dropped or answered FORMERR/NOTIMP.
fn malformed() -> Vec<Vec<u8>> {
    // ID 0x1337, then FLAGS, QDCOUNT, ANCOUNT, NSCOUNT=0, ARCOUNT=0.
    let header = |flags: u16, qdcount: u16, ancount: u16| -> Vec<u8> {
        [0x1337, flags, qdcount, ancount, 0, 0]
            .iter()
            .flat_map(|word: &u16| word.to_be_bytes())
            .collect()
    };
    let name_a_test = b"\x01a\x04test\x00\x00\x01\x00\x01";
    let with = |mut head: Vec<u8>, tail: &[u8]| {
        head.extend_from_slice(tail);
        head
    };
    vec![
        // shorter than a header: dropped
        vec![0x13, 0x37, 0x01],
        // a response (QR=1): dropped, never answered (no reflection loops)
        with(header(0x8180, 1, 0), name_a_test),
        // a label announcing 63 bytes where 4 follow: FORMERR
        with(header(0x0100, 1, 0), &[63, b'a', b'b', b'c', b'd']),
        // a compression pointer with nothing before it (RFC 1035 §4.1.4): FORMERR
        with(header(0x0100, 1, 0), &[0xc0, 0x0c, 0, 1, 0, 1]),
        // ANCOUNT 5 and no records: FORMERR
        with(header(0x0100, 1, 5), name_a_test),
        // opcode UPDATE: NOTIMP
        with(header(0x2900, 1, 0), name_a_test),
    ]
}

fn parse() -> Result<(IpAddr, SocketAddr, Duration, u64), String> {
    // cargo bench appends --bench; keep the positional arguments
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let [from, target, seconds, max] = args.as_slice() else {
        return Err(
            "usage: cargo bench --bench flood -- FROM_IP TARGET_IP:PORT SECONDS MAX_PACKETS".into(),
        );
    };
    let from: IpAddr = from.parse().map_err(|e| format!("FROM_IP {from}: {e}"))?;
    let target: SocketAddr = target
        .parse()
        .map_err(|e| format!("TARGET {target}: {e}"))?;
    if !from.is_loopback() || !target.ip().is_loopback() {
        return Err("both addresses must be loopback".into());
    }
    let seconds: f64 = seconds
        .parse()
        .ok()
        .filter(|s: &f64| s.is_finite() && *s > 0.0)
        .ok_or_else(|| format!("SECONDS {seconds}: not a positive number"))?;
    let max: u64 = max.parse().map_err(|e| format!("MAX_PACKETS {max}: {e}"))?;
    Ok((from, target, Duration::from_secs_f64(seconds), max))
}

fn main() -> ExitCode {
    let (from, target, duration, max) = match parse() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("flood: {message}");
            return ExitCode::from(64);
        }
    };
    let socket = match UdpSocket::bind(SocketAddr::new(from, 0)).and_then(|s| {
        s.connect(target)?;
        Ok(s)
    }) {
        Ok(socket) => socket,
        Err(e) => {
            eprintln!("flood: socket: {e}");
            return ExitCode::FAILURE;
        }
    };
    let packets = malformed();
    let start = Instant::now();
    let (mut sent, mut failed) = (0u64, 0u64);
    while sent < max && start.elapsed() < duration {
        // A full send buffer or a refusal (nothing bound yet) is the flooder's
        // own business: count it and go on.
        let packet = &packets[(sent + failed) as usize % packets.len()];
        if socket.send(packet).is_ok() {
            sent += 1;
        } else {
            failed += 1;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "flood: sent {sent} packets in {elapsed:.3} s ({:.0}/s), {failed} sends failed",
        sent as f64 / elapsed
    );
    ExitCode::SUCCESS
}
