//! The checks that send DNS queries: does punctual answer on each listen address,
//! and does each upstream answer. All queries go out at once, each with its own
//! short timeout, so the whole check takes one timeout at most.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::future::join_all;
use hickory_proto::rr::{Name, RecordType};

use super::{Finding, Severity};
use crate::client::report::{extended_errors, rcode_name};
use crate::client::{self, ClientError, Exchange, Transport};
use crate::config::{Config, UpstreamAddr, UpstreamTransport};

/// Past its deadline punctual has answered (SERVFAIL at worst); this much more
/// covers the trip back.
const DEADLINE_MARGIN: Duration = Duration::from_millis(500);

/// What to ask, and how long to wait for each reply.
#[derive(Debug, Clone)]
pub struct Probe {
    pub name: Name,
    pub rtype: RecordType,
    pub timeout: Duration,
}

/// One finding per listen address, then one per upstream.
pub async fn check(probe: &Probe, config: &Config) -> Vec<Finding> {
    // punctual always answers by its deadline, even when its upstreams are silent.
    let punctual_timeout = probe.timeout.max(config.limits.deadline + DEADLINE_MARGIN);
    let listeners = config.listen.addresses.iter().map(|&listen| async move {
        let server = client::destination(listen);
        let result = ask(probe, server, Transport::Udp, punctual_timeout).await;
        punctual_finding(server, result)
    });
    let upstreams = match config.upstreams() {
        Ok(upstreams) => upstreams,
        Err(error) => {
            let mut findings = join_all(listeners).await;
            findings.push(Finding::new(
                "upstream",
                Severity::Error,
                "punctual has no upstream to check".to_owned(),
                error.to_string(),
            ));
            return findings;
        }
    };
    let upstreams = upstreams
        .iter()
        .map(|upstream| upstream_finding(probe, upstream));
    let (mut findings, upstream_findings) = tokio::join!(join_all(listeners), join_all(upstreams));
    findings.extend(upstream_findings);
    findings
}

async fn ask(
    probe: &Probe,
    server: SocketAddr,
    transport: Transport,
    timeout: Duration,
) -> Result<Exchange, ClientError> {
    client::exchange(server, &probe.name, probe.rtype, transport, timeout).await
}

fn punctual_finding(server: SocketAddr, result: Result<Exchange, ClientError>) -> Finding {
    match result {
        Ok(exchange) => Finding::new(
            "answering",
            Severity::Ok,
            format!(
                "punctual answers on {server} in {}",
                millis(exchange.elapsed)
            ),
            outcome(&exchange),
        ),
        Err(error) => Finding::new(
            "answering",
            Severity::Error,
            format!("punctual is not answering on {server}"),
            format!(
                "{error}. Check that punctual runs (systemctl status punctual) and listens \
                 on this address; its log says why not."
            ),
        ),
    }
}

async fn upstream_finding(probe: &Probe, upstream: &UpstreamAddr) -> Finding {
    let transport = match upstream.transport {
        UpstreamTransport::Udp => Transport::Udp,
        UpstreamTransport::Tcp => Transport::Tcp,
        UpstreamTransport::Tls { .. } => {
            return Finding::new(
                "upstream",
                Severity::Info,
                format!("upstream {upstream} not checked"),
                "doctor does not speak DNS over TLS; the \"answering\" check shows whether \
                 punctual gets answers through it."
                    .to_owned(),
            );
        }
    };
    match ask(probe, upstream.addr, transport, probe.timeout).await {
        Ok(exchange) => Finding::new(
            "upstream",
            Severity::Ok,
            format!(
                "upstream {upstream} answers in {}",
                millis(exchange.elapsed)
            ),
            outcome(&exchange),
        ),
        Err(error) => Finding::new(
            "upstream",
            Severity::Warn,
            format!("upstream {upstream} does not answer"),
            format!(
                "{error}. punctual tries its other upstreams, but a silent one costs time: \
                 check the address, the firewall and the route, or remove it from [upstream] \
                 servers."
            ),
        ),
    }
}

/// "NOERROR, 2 answers" plus any Extended DNS Error.
fn outcome(exchange: &Exchange) -> String {
    let message = &exchange.message;
    let mut text = format!(
        "{} for {} over {}, {} answer record(s)",
        rcode_name(message.metadata.response_code),
        message
            .queries
            .first()
            .map(|query| format!("{} {}", query.name(), query.query_type()))
            .unwrap_or_default(),
        exchange.transport,
        message.answers.len()
    );
    for ede in extended_errors(message) {
        text.push_str(&format!("; EDE {}: {}", ede.code, ede.text));
    }
    text.push('.');
    text
}

fn millis(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1000.0)
}
