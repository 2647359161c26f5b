//! The query log end to end: punctual in-process on 127.0.0.226 with the log
//! in a temporary file; a cache miss, a hit, a local answer and a SERVFAIL from
//! a hanging upstream each give one JSON line with the right fields. Also the
//! latency histogram: one reading per response.

mod common;

use std::time::Duration;

use common::punctual::{start_with, test_config};
use common::{FakeUpstream, ask, edns, loopback, query_udp};
use hickory_proto::rr::RecordType;
use serde_json::Value;

#[tokio::test]
async fn one_json_line_per_query_with_its_source() {
    let upstream = FakeUpstream::start(loopback(227)).await;
    upstream.add_a("logged.test", "192.0.2.26", 60);
    let dir = std::env::temp_dir().join(format!("punctual-query-log-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("queries.jsonl");
    let mut config = test_config(&[upstream.addr()]);
    config.listen.addresses = vec!["127.0.0.226:0".parse().expect("addr")];
    config.query_log.path = Some(path.clone());
    let server = start_with(config).await;

    ask(server.udp, "logged.test").await; // miss: upstream
    ask(server.udp, "logged.test").await; // hit: cache
    ask(server.udp, "localhost").await; // local
    upstream.set_behavior(common::Behavior::Hang);
    let failed = query_udp(
        server.udp,
        "hanging.test",
        RecordType::AAAA,
        &edns(),
        Duration::from_secs(2),
    )
    .await
    .expect("SERVFAIL by the deadline");
    assert_eq!(failed.message.response_code.low(), 2);
    let metrics = server.stats.metrics();
    assert_eq!(
        metrics.answer_duration.count(),
        4,
        "one reading per response"
    );
    assert_eq!(metrics.query_log_dropped.get(), 0);
    server.stop().await;

    let text = std::fs::read_to_string(&path).expect("the log file");
    let lines: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    let summary: Vec<(String, String, String, String, Value)> = lines
        .iter()
        .map(|line| {
            let text = |key: &str| line[key].as_str().unwrap_or("").to_owned();
            (
                text("name"),
                text("type"),
                text("rcode"),
                text("source"),
                line["ede"].clone(),
            )
        })
        .collect();
    let row = |name: &str, qtype: &str, rcode: &str, source: &str, ede: Value| {
        (
            name.to_owned(),
            qtype.to_owned(),
            rcode.to_owned(),
            source.to_owned(),
            ede,
        )
    };
    assert_eq!(
        summary,
        vec![
            row("logged.test.", "A", "NOERROR", "upstream", Value::Null),
            row("logged.test.", "A", "NOERROR", "cache", Value::Null),
            row("localhost.", "A", "NOERROR", "local", Value::Null),
            // RFC 8914 §4.22: No Reachable Authority.
            row(
                "hanging.test.",
                "AAAA",
                "SERVFAIL",
                "failed",
                Value::from(22)
            ),
        ],
        "{text}"
    );
    for line in &lines {
        assert_eq!(line["transport"], "udp");
        let client = line["client"].as_str().expect("client");
        assert!(client.starts_with("127.0.0.1:"), "{client}");
        let latency = line["latency_ms"].as_f64().expect("latency_ms");
        assert!((0.0..2000.0).contains(&latency), "{latency}");
        let time = line["time"].as_str().expect("time");
        humantime::parse_rfc3339(time).expect("RFC 3339 time");
    }
    let failed_latency = lines[3]["latency_ms"].as_f64().expect("latency");
    assert!(
        failed_latency >= 250.0,
        "waited for the deadline: {failed_latency}"
    );
}
