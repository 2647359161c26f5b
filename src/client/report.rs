//! What `punctual query` prints about one exchange: a few dig-like lines, or one
//! JSON object with the same facts.

use std::fmt::Write as _;
use std::net::SocketAddr;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::{Name, Record, RecordType};
use serde::Serialize;

use super::Exchange;
use crate::wire::OPTION_EDE;

/// One exchange, ready to print.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: String,
    pub server: String,
    pub transport: &'static str,
    pub rcode: String,
    pub flags: Vec<&'static str>,
    pub ede: Vec<ExtendedError>,
    pub answers: Vec<RecordSummary>,
    pub authority: Vec<RecordSummary>,
    pub elapsed_ms: f64,
}

/// An Extended DNS Error (RFC 8914 §2): INFO-CODE and EXTRA-TEXT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExtendedError {
    pub code: u16,
    pub text: String,
}

/// A resource record in presentation form (RFC 1035 §5.1).
#[derive(Debug, Clone, Serialize)]
pub struct RecordSummary {
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: String,
    pub ttl: u32,
    pub data: String,
}

impl Summary {
    pub fn new(name: &Name, rtype: RecordType, server: SocketAddr, exchange: &Exchange) -> Self {
        let message = &exchange.message;
        Summary {
            name: name.to_string(),
            rtype: rtype.to_string(),
            server: server.to_string(),
            transport: exchange.transport.name(),
            rcode: rcode_name(message.metadata.response_code),
            flags: flags(message),
            ede: extended_errors(message),
            answers: message.answers.iter().map(RecordSummary::new).collect(),
            authority: message.authorities.iter().map(RecordSummary::new).collect(),
            elapsed_ms: exchange.elapsed.as_secs_f64() * 1000.0,
        }
    }

    /// NOERROR and NXDOMAIN are answers; anything else (SERVFAIL, REFUSED…) is a failure.
    pub fn is_answer(&self) -> bool {
        matches!(self.rcode.as_str(), "NOERROR" | "NXDOMAIN")
    }

    /// The dig-like text form, ending in a newline.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            ";; {} {}: {}, flags: {}",
            self.name,
            self.rtype,
            self.rcode,
            self.flags.join(" ")
        );
        for ede in &self.ede {
            let _ = writeln!(out, ";; EDE {}: {}", ede.code, ede.text);
        }
        for (section, records) in [("ANSWER", &self.answers), ("AUTHORITY", &self.authority)] {
            if records.is_empty() {
                continue;
            }
            let _ = writeln!(out, ";; {section}");
            for record in records {
                let _ = writeln!(
                    out,
                    "{}\t{}\tIN\t{}\t{}",
                    record.name, record.ttl, record.rtype, record.data
                );
            }
        }
        let _ = writeln!(
            out,
            ";; {:.1} ms from {} ({})",
            self.elapsed_ms, self.server, self.transport
        );
        out
    }
}

impl RecordSummary {
    fn new(record: &Record) -> Self {
        RecordSummary {
            name: record.name.to_string(),
            rtype: record.record_type().to_string(),
            ttl: record.ttl,
            data: record.data.to_string(),
        }
    }
}

/// The IANA mnemonic of an RCODE (RFC 6895 §2.3), `RCODEn` for the rest.
pub fn rcode_name(rcode: ResponseCode) -> String {
    let code = u16::from(rcode);
    let name = match code {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        6 => "YXDOMAIN",
        7 => "YXRRSET",
        8 => "NXRRSET",
        9 => "NOTAUTH",
        10 => "NOTZONE",
        16 => "BADVERS",
        _ => return format!("RCODE{code}"),
    };
    name.to_owned()
}

/// The header flags that are set, in dig's order and spelling.
fn flags(message: &Message) -> Vec<&'static str> {
    let metadata = &message.metadata;
    [
        (true, "qr"),
        (metadata.authoritative, "aa"),
        (metadata.truncation, "tc"),
        (metadata.recursion_desired, "rd"),
        (metadata.recursion_available, "ra"),
        (metadata.authentic_data, "ad"),
        (metadata.checking_disabled, "cd"),
    ]
    .into_iter()
    .filter_map(|(set, flag)| set.then_some(flag))
    .collect()
}

/// Every Extended DNS Error option in the reply's OPT record, in wire order.
/// hickory-proto 0.26 has no EDE type: option 15 decodes as `Unknown`.
pub fn extended_errors(message: &Message) -> Vec<ExtendedError> {
    let Some(edns) = &message.edns else {
        return Vec::new();
    };
    edns.options()
        .as_ref()
        .iter()
        .filter_map(|(_, option)| match option {
            EdnsOption::Unknown(OPTION_EDE, data) => {
                let code = u16::from_be_bytes([*data.first()?, *data.get(1)?]);
                let text = String::from_utf8_lossy(data.get(2..)?).into_owned();
                Some(ExtendedError { code, text })
            }
            _ => None,
        })
        .collect()
}
