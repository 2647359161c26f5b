//! The operator subcommands through the real binary: `query` against a fake
//! upstream on loopback (exit 0 with the answer in the JSON, exit 1 on SERVFAIL),
//! `doctor --json` with fixture inputs, `completions` and `man`.

mod common;

use std::process::Output;

use common::loopback;
use common::upstream::{Behavior, FakeUpstream};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_punctual");

async fn punctual(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("PUNCTUAL_GLIBC_VERSION")
        .output()
        .await
        .expect("run punctual")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_prints_the_answer_and_maps_rcodes_to_exit_codes() {
    let upstream = FakeUpstream::start(loopback(217)).await;
    upstream.add_a("q.test", "192.0.2.7", 60);
    let server = upstream.addr().to_string();

    let output = punctual(&["query", "q.test", "A", "--server", &server, "--json"]).await;
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let json: serde_json::Value = serde_json::from_str(&stdout(&output)).expect("JSON");
    assert_eq!(json["rcode"], "NOERROR");
    assert_eq!(json["server"], server.as_str());
    assert_eq!(json["transport"], "udp");
    assert_eq!(json["answers"][0]["name"], "q.test.");
    assert_eq!(json["answers"][0]["type"], "A");
    assert_eq!(json["answers"][0]["data"], "192.0.2.7");

    let output = punctual(&["query", "q.test", "--server", &server, "--tcp"]).await;
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert!(stdout(&output).contains("192.0.2.7"), "{output:?}");

    upstream.set_behavior(Behavior::Servfail);
    let output = punctual(&["query", "q.test", "A", "--server", &server, "--json"]).await;
    assert_eq!(output.status.code(), Some(1), "{output:?}");

    let output = punctual(&["query", "q.test", "NOSUCHTYPE", "--server", &server]).await;
    assert_eq!(output.status.code(), Some(64), "{output:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_json_with_fixtures() {
    let upstream = FakeUpstream::start(loopback(218)).await;
    let dir = std::env::temp_dir().join(format!("punctual-doctor-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("fixture dir");
    let config = dir.join("punctual.toml");
    // Nothing listens on 127.0.0.219:53: doctor must say so and exit 1.
    std::fs::write(
        &config,
        format!(
            "[listen]\naddresses = [\"127.0.0.219:53\"]\n[upstream]\nservers = [\"{}\"]\n",
            upstream.addr()
        ),
    )
    .expect("write config");
    let resolv_conf = dir.join("resolv.conf");
    std::fs::write(&resolv_conf, "nameserver 127.0.0.219\n").expect("write resolv.conf");
    let path = |path: &std::path::Path| path.display().to_string();

    let output = punctual(&[
        "doctor",
        "--json",
        "--config",
        &path(&config),
        "--resolv-conf",
        &path(&resolv_conf),
        "--glibc-version",
        "2.36",
        "--musl-dir",
        &path(&dir),
        "--probe-timeout",
        "500ms",
    ])
    .await;
    std::fs::remove_dir_all(&dir).expect("remove fixtures");

    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let json: serde_json::Value = serde_json::from_str(&stdout(&output)).expect("JSON");
    let findings = json.as_array().expect("an array of findings");
    let severity = |check: &str| {
        findings
            .iter()
            .find(|finding| finding["check"] == check)
            .map(|finding| finding["severity"].clone())
    };
    assert_eq!(severity("glibc"), Some("ok".into()));
    assert_eq!(severity("answering"), Some("error".into()));
    assert_eq!(severity("upstream"), Some("ok".into()));

    let output = punctual(&["doctor", "--glibc-version", "two"]).await;
    assert_eq!(output.status.code(), Some(64), "{output:?}");
}

#[tokio::test]
async fn completions_and_man_page_cover_the_subcommands() {
    for args in [
        &["completions", "bash"][..],
        &["completions", "zsh"],
        &["man"],
    ] {
        let output = punctual(args).await;
        assert_eq!(output.status.code(), Some(0), "{args:?}: {output:?}");
        let text = stdout(&output);
        assert!(
            text.contains("doctor") && text.contains("query"),
            "{args:?}: {text}"
        );
    }
    let output = punctual(&["completions", "tcsh"]).await;
    assert_eq!(output.status.code(), Some(64), "{output:?}");
}
