//! The few audited helpers that read and patch DNS wire bytes directly.
//!
//! Everything else parses with hickory-proto; these exist because the hot paths
//! (answering from cache, relaying an upstream reply) only need to find the
//! question and the TTL fields and rewrite a handful of bytes, and a full
//! decode/re-encode per answer would cost more than the rest of the path.
//! Every read here is bounds-checked and returns [`WireError`] instead of panicking.

use thiserror::Error;

/// Length of the fixed DNS header (RFC 1035 §4.1.1).
pub const HEADER_LEN: usize = 12;
/// RR type of the EDNS(0) OPT pseudo-record (RFC 6891 §6.1.1).
pub const TYPE_OPT: u16 = 41;
/// RR type CNAME (RFC 1035 §3.2.2).
pub const TYPE_CNAME: u16 = 5;
/// EDNS option code of an Extended DNS Error (RFC 8914 §2).
pub const OPTION_EDE: u16 = 15;
/// The UDP payload size we advertise and the most we send over UDP
/// (DNS Flag Day 2020: avoids IP fragmentation on nearly every path).
pub const EDNS_PAYLOAD: u16 = 1232;
/// What a client without EDNS can take over UDP (RFC 1035 §4.2.1).
pub const CLASSIC_UDP_PAYLOAD: usize = 512;

// Header flag bits, in the 16-bit word at offset 2 (RFC 1035 §4.1.1, RFC 4035 §3.2).
pub const FLAG_QR: u16 = 0x8000;
pub const FLAG_AA: u16 = 0x0400;
pub const FLAG_TC: u16 = 0x0200;
pub const FLAG_RD: u16 = 0x0100;
pub const FLAG_RA: u16 = 0x0080;
pub const FLAG_AD: u16 = 0x0020;
pub const FLAG_CD: u16 = 0x0010;
const OPCODE_MASK: u16 = 0x7800;
const RCODE_MASK: u16 = 0x000f;

/// The DO bit in the OPT record's TTL field (RFC 3225 §3).
const EDNS_DO: u32 = 0x0000_8000;

/// Names are at most 255 octets (RFC 1035 §2.3.4); a walk that goes further is a loop or garbage.
const MAX_NAME_LEN: usize = 255;

#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    #[error("message ends inside {0}")]
    Truncated(&'static str),
    #[error("bad label type {0:#04x}")]
    BadLabel(u8),
    #[error("name longer than 255 octets")]
    NameTooLong,
    #[error("compression pointer where a plain name is required")]
    UnexpectedPointer,
    #[error("more than one OPT record")]
    DuplicateOpt,
}

pub fn read_u16(bytes: &[u8], at: usize) -> Result<u16, WireError> {
    match bytes.get(at..at + 2) {
        Some(b) => Ok(u16::from_be_bytes([b[0], b[1]])),
        None => Err(WireError::Truncated("a 16-bit field")),
    }
}

pub fn read_u32(bytes: &[u8], at: usize) -> Result<u32, WireError> {
    match bytes.get(at..at + 4) {
        Some(b) => Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
        None => Err(WireError::Truncated("a 32-bit field")),
    }
}

/// Writes a u16 at `at`; callers only patch offsets they found by walking the same buffer.
pub fn write_u16(bytes: &mut [u8], at: usize, value: u16) {
    if let Some(b) = bytes.get_mut(at..at + 2) {
        b.copy_from_slice(&value.to_be_bytes());
    }
}

pub fn write_u32(bytes: &mut [u8], at: usize, value: u32) {
    if let Some(b) = bytes.get_mut(at..at + 4) {
        b.copy_from_slice(&value.to_be_bytes());
    }
}

/// The parts of a header this crate looks at. Only valid for buffers of at least [`HEADER_LEN`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub id: u16,
    pub flags: u16,
    pub qdcount: u16,
    pub ancount: u16,
    pub nscount: u16,
    pub arcount: u16,
}

impl Header {
    pub fn parse(bytes: &[u8]) -> Option<Header> {
        if bytes.len() < HEADER_LEN {
            return None;
        }
        let word = |at: usize| u16::from_be_bytes([bytes[at], bytes[at + 1]]);
        Some(Header {
            id: word(0),
            flags: word(2),
            qdcount: word(4),
            ancount: word(6),
            nscount: word(8),
            arcount: word(10),
        })
    }

    pub fn is_response(&self) -> bool {
        self.flags & FLAG_QR != 0
    }

    pub fn opcode(&self) -> u8 {
        ((self.flags & OPCODE_MASK) >> 11) as u8
    }

    pub fn rcode(&self) -> u8 {
        (self.flags & RCODE_MASK) as u8
    }

    pub fn has(&self, flag: u16) -> bool {
        self.flags & flag != 0
    }

    pub fn record_count(&self) -> usize {
        usize::from(self.ancount) + usize::from(self.nscount) + usize::from(self.arcount)
    }
}

/// Builds header flags for a response: QR=1, RA=1 (glibc treats an empty NOERROR with
/// RA=0 as a bad referral), the opcode and the given rcode.
pub fn response_flags(opcode: u8, rcode: u8) -> u16 {
    FLAG_QR | FLAG_RA | (u16::from(opcode & 0x0f) << 11) | u16::from(rcode & 0x0f)
}

/// Writes a 12-byte header.
pub fn put_header(out: &mut Vec<u8>, header: &Header) {
    for word in [
        header.id,
        header.flags,
        header.qdcount,
        header.ancount,
        header.nscount,
        header.arcount,
    ] {
        out.extend_from_slice(&word.to_be_bytes());
    }
}

/// Returns the offset just past the name starting at `at`. A compression pointer
/// ends the name (RFC 1035 §4.1.4); it is not followed, so loops cannot trap us.
pub fn skip_name(bytes: &[u8], at: usize) -> Result<usize, WireError> {
    walk_name(bytes, at, true)
}

/// Returns the end of a name that must be written out in full (a question name):
/// the question is the first thing after the header, so a pointer there could only
/// point into the header, which is never a valid name.
pub fn skip_plain_name(bytes: &[u8], at: usize) -> Result<usize, WireError> {
    walk_name(bytes, at, false)
}

fn walk_name(bytes: &[u8], mut at: usize, pointer_allowed: bool) -> Result<usize, WireError> {
    let start = at;
    loop {
        let len = *bytes.get(at).ok_or(WireError::Truncated("a name"))?;
        match len & 0xc0 {
            0x00 => {
                at += 1 + usize::from(len);
                if at - start > MAX_NAME_LEN {
                    return Err(WireError::NameTooLong);
                }
                if len == 0 {
                    return Ok(at);
                }
            }
            0xc0 if !pointer_allowed => return Err(WireError::UnexpectedPointer),
            0xc0 if bytes.len() < at + 2 => {
                return Err(WireError::Truncated("a compression pointer"));
            }
            0xc0 => return Ok(at + 2),
            _ => return Err(WireError::BadLabel(len)),
        }
    }
}

/// The single question of a message, located in its buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuestionSpan {
    /// End of QNAME; QTYPE and QCLASS follow.
    pub name_end: usize,
    /// End of the whole question entry.
    pub end: usize,
    pub qtype: u16,
    pub qclass: u16,
}

/// Locates the first question, which must start right after the header.
pub fn question_span(bytes: &[u8]) -> Result<QuestionSpan, WireError> {
    let name_end = skip_plain_name(bytes, HEADER_LEN)?;
    let qtype = read_u16(bytes, name_end)?;
    let qclass = read_u16(bytes, name_end + 2)?;
    Ok(QuestionSpan {
        name_end,
        end: name_end + 4,
        qtype,
        qclass,
    })
}

/// Whether two plain wire names are equal ignoring ASCII case (RFC 4343 §3).
pub fn names_equal(a: &[u8], b: &[u8]) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// One resource record located in a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordSpan {
    pub start: usize,
    pub rtype: u16,
    /// Offset of the 32-bit TTL field.
    pub ttl_at: usize,
    pub end: usize,
}

/// Walks `count` resource records starting at `at`, calling `visit` for each.
/// Returns the offset after the last record.
pub fn walk_records(
    bytes: &[u8],
    mut at: usize,
    count: usize,
    mut visit: impl FnMut(RecordSpan),
) -> Result<usize, WireError> {
    for _ in 0..count {
        let start = at;
        let name_end = skip_name(bytes, at)?;
        let rtype = read_u16(bytes, name_end)?;
        let ttl_at = name_end + 4;
        let rdlength = usize::from(read_u16(bytes, name_end + 8)?);
        let end = name_end + 10 + rdlength;
        if end > bytes.len() {
            return Err(WireError::Truncated("record data"));
        }
        visit(RecordSpan {
            start,
            rtype,
            ttl_at,
            end,
        });
        at = end;
    }
    Ok(at)
}

/// What a message's OPT record (RFC 6891 §6.1.2) says, if it has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptInfo {
    pub payload: u16,
    pub version: u8,
    pub dnssec_ok: bool,
}

/// An Extended DNS Error to attach to a synthesized response (RFC 8914 §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ede {
    pub code: u16,
    pub text: &'static str,
}

/// Appends an OPT pseudo-record (RFC 6891 §6.1.2) advertising our payload size,
/// with the DO bit, the upper 8 bits of an extended rcode and optionally an EDE option.
/// The caller increments ARCOUNT.
pub fn put_opt(out: &mut Vec<u8>, dnssec_ok: bool, extended_rcode: u8, ede: Option<Ede>) {
    out.push(0); // root owner name
    out.extend_from_slice(&TYPE_OPT.to_be_bytes());
    out.extend_from_slice(&EDNS_PAYLOAD.to_be_bytes());
    let ttl = (u32::from(extended_rcode) << 24) | if dnssec_ok { EDNS_DO } else { 0 };
    out.extend_from_slice(&ttl.to_be_bytes());
    match ede {
        None => out.extend_from_slice(&0u16.to_be_bytes()),
        Some(ede) => {
            let text = ede.text.as_bytes();
            // The text is a static string of ours, far below the 16-bit limits.
            let option_len = (2 + text.len()) as u16;
            out.extend_from_slice(&(4 + option_len).to_be_bytes());
            out.extend_from_slice(&OPTION_EDE.to_be_bytes());
            out.extend_from_slice(&option_len.to_be_bytes());
            out.extend_from_slice(&ede.code.to_be_bytes());
            out.extend_from_slice(text);
        }
    }
}

/// Reads an OPT record located by [`walk_records`].
pub fn read_opt(bytes: &[u8], record: &RecordSpan) -> Result<OptInfo, WireError> {
    let payload = read_u16(bytes, record.ttl_at - 2)?;
    let ttl = read_u32(bytes, record.ttl_at)?;
    Ok(OptInfo {
        payload,
        version: ((ttl >> 16) & 0xff) as u8,
        dnssec_ok: ttl & EDNS_DO != 0,
    })
}

/// Appends the lower-cased form of a plain wire name, the coalescing and cache key
/// (RFC 4343: DNS names compare case-insensitively).
/// A plain wire name as text with the trailing dot ("example.test."; the root
/// is "."). For logs and reports only: bytes outside printable ASCII are
/// shown as `\DDD` (RFC 1035 §5.1).
pub fn display_name(name: &[u8]) -> String {
    let mut text = String::new();
    let mut at = 0;
    while let Some(&len) = name.get(at) {
        if len == 0 {
            break;
        }
        let label = name.get(at + 1..at + 1 + usize::from(len)).unwrap_or(&[]);
        for &byte in label {
            match byte {
                b'.' | b'\\' => {
                    text.push('\\');
                    text.push(char::from(byte));
                }
                0x21..=0x7e => text.push(char::from(byte)),
                _ => text.push_str(&format!("\\{byte:03}")),
            }
        }
        text.push('.');
        at += 1 + usize::from(len);
    }
    if text.is_empty() {
        text.push('.');
    }
    text
}

/// Whether the plain wire name `name` is `zone` or below it, comparing whole
/// labels from the right (RFC 4343 case-insensitively): "b.example." is below
/// "example." but "bexample." is not.
pub fn is_at_or_below(name: &[u8], zone: &[u8]) -> bool {
    let mut at = 0;
    loop {
        let rest = &name[at..];
        if rest.eq_ignore_ascii_case(zone) {
            return true;
        }
        match rest.first() {
            Some(&len) if len > 0 && len & 0xc0 == 0 => at += 1 + usize::from(len),
            _ => return false,
        }
        if at >= name.len() {
            return false;
        }
    }
}

/// What a response we send says, for the query log: its RCODE, extended by the
/// OPT record's upper bits (RFC 6891 §6.1.3), and the INFO-CODE of its first
/// Extended DNS Error option (RFC 8914 §2), if any. `None` if the message does
/// not parse that far.
pub fn response_outcome(bytes: &[u8]) -> Option<(u16, Option<u16>)> {
    let header = Header::parse(bytes)?;
    let mut at = HEADER_LEN;
    for _ in 0..header.qdcount {
        at = skip_name(bytes, at).ok()? + 4;
    }
    let mut opt = None;
    walk_records(bytes, at, header.record_count(), |record| {
        if record.rtype == TYPE_OPT && opt.is_none() {
            opt = Some(record);
        }
    })
    .ok()?;
    let rcode = u16::from(header.rcode());
    let Some(opt) = opt else {
        return Some((rcode, None));
    };
    let extended = u16::from(*bytes.get(opt.ttl_at)?) << 4;
    // The options: (code, length, data) triples filling RDATA (RFC 6891 §6.1.2).
    let mut option = opt.ttl_at + 6;
    let mut ede = None;
    while option + 4 <= opt.end {
        let code = read_u16(bytes, option).ok()?;
        let len = usize::from(read_u16(bytes, option + 2).ok()?);
        if code == OPTION_EDE && len >= 2 {
            ede = Some(read_u16(bytes, option + 4).ok()?);
            break;
        }
        option += 4 + len;
    }
    Some((extended | rcode, ede))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_outcome_reads_the_extended_rcode_and_the_ede_code() {
        let mut message = Vec::new();
        put_header(
            &mut message,
            &Header {
                id: 7,
                flags: response_flags(0, 2),
                qdcount: 1,
                ancount: 0,
                nscount: 0,
                arcount: 1,
            },
        );
        message.extend_from_slice(&name(&["example", "test"]));
        message.extend_from_slice(&[0, 1, 0, 1]);
        let without_opt = message.clone();
        let ede = Ede {
            code: 22,
            text: "no reachable authority",
        };
        put_opt(&mut message, false, 1, Some(ede));
        // SERVFAIL (2) with extended bits 1: RCODE 18; EDE 22.
        assert_eq!(response_outcome(&message), Some((18, Some(22))));
        let mut plain = without_opt.clone();
        put_opt(&mut plain, false, 0, None);
        assert_eq!(response_outcome(&plain), Some((2, None)));
        // ARCOUNT says 1 but there is no record: not parsed.
        assert_eq!(response_outcome(&without_opt), None);
        assert_eq!(response_outcome(&[0; 5]), None);
    }

    fn name(labels: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        for label in labels {
            out.push(label.len() as u8);
            out.extend_from_slice(label.as_bytes());
        }
        out.push(0);
        out
    }

    #[test]
    fn skip_name_handles_plain_and_pointer() {
        let mut bytes = name(&["www", "example", "com"]);
        let plain_end = bytes.len();
        assert_eq!(skip_name(&bytes, 0), Ok(plain_end));
        bytes.extend_from_slice(&[0xc0, 0x00]);
        assert_eq!(skip_name(&bytes, plain_end), Ok(plain_end + 2));
    }

    #[test]
    fn skip_name_rejects_garbage() {
        assert_eq!(
            skip_name(&[3, b'a'], 0),
            Err(WireError::Truncated("a name"))
        );
        assert_eq!(skip_name(&[0x40], 0), Err(WireError::BadLabel(0x40)));
        assert_eq!(
            skip_name(&[0xc0], 0),
            Err(WireError::Truncated("a compression pointer"))
        );
        let long: Vec<u8> = std::iter::repeat_n([63u8; 64], 5).flatten().collect();
        assert_eq!(skip_name(&long, 0), Err(WireError::NameTooLong));
    }

    #[test]
    fn plain_name_rejects_pointer() {
        assert_eq!(
            skip_plain_name(&[1, b'a', 0xc0, 0], 0),
            Err(WireError::UnexpectedPointer)
        );
    }

    #[test]
    fn opt_with_ede_has_consistent_lengths() {
        let mut out = Vec::new();
        put_opt(
            &mut out,
            true,
            0,
            Some(Ede {
                code: 22,
                text: "no reply",
            }),
        );
        let records = {
            let mut found = Vec::new();
            let end = walk_records(&out, 0, 1, |r| found.push(r)).expect("walks");
            assert_eq!(end, out.len());
            found
        };
        let opt = read_opt(&out, &records[0]).expect("reads");
        assert_eq!(
            opt,
            OptInfo {
                payload: EDNS_PAYLOAD,
                version: 0,
                dnssec_ok: true
            }
        );
        assert_eq!(read_u16(&out, 11), Ok(OPTION_EDE));
        assert_eq!(read_u16(&out, 15), Ok(22));
    }

    #[test]
    fn header_round_trips() {
        let header = Header {
            id: 0xbeef,
            flags: response_flags(0, 2) | FLAG_RD,
            qdcount: 1,
            ancount: 2,
            nscount: 3,
            arcount: 4,
        };
        let mut out = Vec::new();
        put_header(&mut out, &header);
        let parsed = Header::parse(&out).expect("12 bytes");
        assert_eq!(parsed, header);
        assert_eq!(parsed.rcode(), 2);
        assert!(parsed.has(FLAG_RA) && parsed.is_response());
    }
}
