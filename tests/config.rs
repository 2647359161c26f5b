//! The shipped configs parse, and bad configs are rejected with the file and line to
//! fix; `upstreams()` falls back to resolv.conf without ever choosing punctual itself.

use std::{
    fs,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use punctual::config::{Config, ConfigError, UpstreamAddr};

/// A file in the system temp directory, unique to this process and call, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, content: &str) -> TempFile {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let unique = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "punctual-test-{}-{unique}-{name}",
            std::process::id()
        ));
        fs::write(&path, content).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

fn addr(text: &str) -> SocketAddr {
    text.parse()
        .unwrap_or_else(|error| panic!("{text}: {error}"))
}

/// A plain (UDP) upstream server.
fn server(text: &str) -> UpstreamAddr {
    UpstreamAddr::udp(addr(text))
}

fn reject(text: &str) -> ConfigError {
    match Config::from_toml(text, Path::new("bad.toml")) {
        Ok(config) => panic!("accepted {text:?}: {config:?}"),
        Err(error) => error,
    }
}

/// Asserts the error begins with `bad.toml:LINE: ` and mentions `needle`.
fn assert_rejected_at(text: &str, line: usize, needle: &str) {
    let message = reject(text).to_string();
    let prefix = format!("bad.toml:{line}: ");
    assert!(
        message.starts_with(&prefix),
        "want {prefix:?}, got {message:?}"
    );
    assert!(message.contains(needle), "want {needle:?} in {message:?}");
}

#[test]
fn every_shipped_config_parses() -> Result<(), ConfigError> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf");
    let mut seen = 0;
    let entries = fs::read_dir(&dir).unwrap_or_else(|error| panic!("{}: {error}", dir.display()));
    for entry in entries {
        let path = entry.unwrap_or_else(|error| panic!("{error}")).path();
        if path
            .extension()
            .is_some_and(|extension| extension == "toml")
        {
            Config::load(&path)?;
            seen += 1;
        }
    }
    assert!(seen > 0, "no .toml file in {}", dir.display());
    Ok(())
}

#[test]
fn shipped_config_documents_the_defaults() -> Result<(), ConfigError> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/punctual.toml");
    assert_eq!(Config::load(&path)?, Config::default());
    // "Every key present": a key missing from the shipped file would go undocumented.
    let text = fs::read_to_string(&path).unwrap_or_else(|error| panic!("{error}"));
    for key in [
        "addresses",
        "servers",
        "resolv_conf",
        "strategy",
        "trust_ad",
        "deadline",
        "attempt_timeout",
        "max_inflight",
        "max_waiters",
        "udp_recv_buffer",
        "tcp_max_connections",
        "tcp_idle_timeout",
        "tcp_max_connections_per_client",
        "tcp_read_timeout",
        "max_udp_query",
        "max_tcp_query",
        "client_qps",
        "client_burst",
        "rate_limit_action",
        "rate_limit_loopback",
        "rate_limit_clients",
        "threads",
        "entries",
        "max_bytes",
        "min_ttl",
        "max_ttl",
        "negative_max_ttl",
        "failure_ttl",
        "serve_stale",
        "stale_max_age",
        // Set to "auto": its default is derived from [limits] deadline.
        "stale_answer_after",
        "stale_ttl",
        "prefetch",
        "hosts_files",
        "forward_single_label",
        "path",
        "queue",
    ] {
        let set = text
            .lines()
            .any(|line| line.starts_with(&format!("{key} = ")));
        assert!(set, "conf/punctual.toml does not set {key}");
    }
    // The same from the other side: every field the config tree knows, as listed by
    // the error for an unknown key, is set in its section of the shipped file, so a
    // field added to the tree but not to the file fails here even if not listed above.
    // Keys whose default is "not set" can only be shown in a comment, `# key = ...`:
    // check that the comment is there and that, uncommented, it parses.
    let shipped: toml::Table = text.parse().unwrap_or_else(|error| panic!("{error}"));
    for section in [
        "listen",
        "upstream",
        "limits",
        "cache",
        "process",
        "control",
        "query_log",
    ] {
        let table = shipped
            .get(section)
            .and_then(toml::Value::as_table)
            .unwrap_or_else(|| panic!("conf/punctual.toml has no [{section}]"));
        let known = known_keys(section);
        assert!(!known.is_empty(), "[{section}]: no keys known");
        let mut unset = 0;
        for key in &known {
            if UNSET_BY_DEFAULT.contains(&(section, key.as_str())) {
                assert!(!table.contains_key(key), "[{section}] {key} is set");
                let example = text
                    .lines()
                    .find_map(|line| line.strip_prefix(&format!("# {key} = ")))
                    .unwrap_or_else(|| panic!("conf/punctual.toml shows no # {key} = ..."));
                let mut uncommented = format!("[{section}]\n{key} = {example}\n");
                if section == "process" && key == "group" {
                    uncommented.push_str("user = \"nobody\"\n");
                }
                Config::from_toml(&uncommented, Path::new("example.toml"))?;
                unset += 1;
                continue;
            }
            assert!(
                table.contains_key(key),
                "conf/punctual.toml [{section}] lacks {key}"
            );
        }
        let keys: Vec<&String> = table.keys().collect();
        assert_eq!(
            keys.len() + unset,
            known.len(),
            "[{section}]: {keys:?} against {known:?}"
        );
    }
    // [[forward]] tables default to none, so the shipped file can only show them in a
    // comment (an example table would change the defaults). Check that example instead:
    // uncommented it parses, and its first table sets every key a forward table knows.
    let example: String = text
        .lines()
        .skip_while(|line| *line != "# [[forward]]")
        .filter_map(|line| line.strip_prefix('#'))
        .map(|line| format!("{}\n", line.trim_start()))
        .collect();
    assert!(
        !example.is_empty(),
        "conf/punctual.toml shows no [[forward]] example"
    );
    let config = Config::from_toml(&example, Path::new("example.toml"))?;
    assert!(!config.forward.is_empty(), "{example}");
    let parsed: toml::Table = example.parse().unwrap_or_else(|error| panic!("{error}"));
    let first = parsed
        .get("forward")
        .and_then(toml::Value::as_array)
        .and_then(|tables| tables.first())
        .and_then(toml::Value::as_table)
        .unwrap_or_else(|| panic!("no [[forward]] table in {example}"));
    let known = known_keys_of("[[forward]]");
    let mut keys: Vec<&String> = first.keys().collect();
    keys.sort();
    let mut expected: Vec<&String> = known.iter().collect();
    expected.sort();
    assert_eq!(keys, expected, "[[forward]] example");
    // And every section the tree knows is in the file, as a table or that example.
    for section in known_keys_of("") {
        assert!(
            shipped.contains_key(&section) || section == "forward",
            "conf/punctual.toml has no [{section}]"
        );
    }
    Ok(())
}

/// The keys `[section]` accepts, read from the message for an unknown one
/// ("unknown field `x`, expected one of `a`, `b`").
/// Keys that are not set by default (no value in TOML says "unset"), as (section, key).
const UNSET_BY_DEFAULT: [(&str, &str); 4] = [
    ("listen", "allow"),
    ("control", "allow"),
    ("process", "user"),
    ("process", "group"),
];

fn known_keys(section: &str) -> Vec<String> {
    known_keys_of(&format!("[{section}]"))
}

/// The keys accepted after `header` ("[cache]", "[[forward]]", "" for the top level).
fn known_keys_of(header: &str) -> Vec<String> {
    let message = reject(&format!("{header}\nno_such_key = 1\n")).reason;
    let (_, expected) = message
        .split_once("expected")
        .unwrap_or_else(|| panic!("no list of keys in {message:?}"));
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

#[test]
fn load_reports_the_file_and_line() {
    let file = TempFile::new(
        "punctual.toml",
        "[limits]\ndeadline = \"2s\"\ndedline = \"3s\"\n",
    );
    let error = Config::load(&file.0).expect_err("unknown key");
    assert_eq!(error.file.as_deref(), Some(file.0.as_path()));
    assert_eq!(error.line, Some(3));
    let prefix = format!("{}:3: ", file.0.display());
    assert!(error.to_string().starts_with(&prefix), "{error}");
}

#[test]
fn load_reports_a_missing_file() {
    let path = Path::new("/nonexistent/punctual.toml");
    let error = Config::load(path).expect_err("missing file");
    assert_eq!((error.file.as_deref(), error.line), (Some(path), None));
    assert!(
        error
            .to_string()
            .starts_with("/nonexistent/punctual.toml: "),
        "{error}"
    );
}

#[test]
fn unknown_key_is_rejected_at_its_line() {
    assert_rejected_at(
        "[limits]\ndeadline = \"2s\"\n\nmax_inflights = 5\n",
        4,
        "max_inflights",
    );
    assert_rejected_at("[cache]\nentries = 5\nttl = \"1h\"\n", 3, "ttl");
    assert_rejected_at("listen.address = [\"127.0.0.1\"]\n", 1, "address");
}

#[test]
fn unknown_section_is_rejected_at_its_line() {
    assert_rejected_at(
        "[limits]\ndeadline = \"2s\"\n\n[upstreams]\nservers = []\n",
        4,
        "upstreams",
    );
    assert_rejected_at("verbose = true\n", 1, "verbose");
}

#[test]
fn bad_values_are_rejected_at_their_line() {
    assert_rejected_at(
        "[limits]\nattempt_timeout = \"1s\"\ndeadline = \"soon\"\n",
        3,
        "limits.deadline",
    );
    assert_rejected_at("[limits]\ndeadline = 2\n", 2, "limits.deadline");
    assert_rejected_at("[cache]\nmax_ttl = \"1 fortnight\"\n", 2, "cache.max_ttl");
    assert_rejected_at("[limits]\n\nmax_inflight = -1\n", 3, "limits.max_inflight");
    assert_rejected_at(
        "[limits]\ntcp_max_connections = \"many\"\n",
        2,
        "limits.tcp_max_connections",
    );
    assert_rejected_at(
        "[limits]\nudp_recv_buffer = \"4 parsecs\"\n",
        2,
        "limits.udp_recv_buffer",
    );
    assert_rejected_at(
        "[upstream]\nservers = [\n  \"192.0.2.1\",\n  \"not-an-ip\",\n]\n",
        4,
        "upstream.servers",
    );
    assert_rejected_at(
        "[upstream]\nservers = []\nstrategy = \"round-robin\"\n",
        3,
        "upstream.strategy: invalid strategy \"round-robin\"; expected one of \"fastest\", \"ordered\", \"parallel\"",
    );
    assert_rejected_at("[upstream]\ntrust_ad = \"on\"\n", 2, "upstream.trust_ad");
    assert_rejected_at(
        "[listen]\naddresses = [\"localhost:53\"]\n",
        2,
        "listen.addresses",
    );
}

#[test]
fn cross_field_rules_are_rejected_at_their_line() {
    assert_rejected_at("[limits]\ndeadline = \"2h\"\n", 2, "limits.deadline");
    assert_rejected_at(
        "[limits]\ndeadline = \"1s\"\nattempt_timeout = \"2s\"\n",
        3,
        "limits.attempt_timeout",
    );
    assert_rejected_at("[cache]\nmin_ttl = \"2d\"\n", 2, "cache.min_ttl");
    assert_rejected_at(
        "[listen]\naddresses = [\"127.0.0.1:53\", \"127.0.0.1:53\"]\n",
        2,
        "twice",
    );
}

#[test]
fn cache_keys_are_checked_at_their_line() {
    let cases = [
        ("max_bytes = \"64M\"", "ambiguous"),
        (
            "max_bytes = \"60KiB\"",
            "cache.max_bytes must be at least 64KiB",
        ),
        ("negative_max_ttl = 3600", "cache.negative_max_ttl"),
        (
            "failure_ttl = \"10m\"",
            "cache.failure_ttl must be at most 5m",
        ),
        ("serve_stale = \"no\"", "cache.serve_stale"),
        (
            "stale_max_age = \"0s\"",
            "cache.stale_max_age must be more than 0s",
        ),
        ("stale_answer_after = \"never\"", "cache.stale_answer_after"),
        (
            "stale_answer_after = \"0s\"",
            "cache.stale_answer_after must be more than 0s",
        ),
        (
            "stale_answer_after = \"5s\"",
            "must leave before the deadline",
        ),
        ("stale_ttl = \"0s\"", "cache.stale_ttl must be at least 1s"),
        ("stale_ttl = \"2d\"", "cache.stale_ttl"),
        ("prefetch = \"yes\"", "cache.prefetch"),
    ];
    for (line, needle) in cases {
        assert_rejected_at(&format!("[cache]\nentries = 10\n\n{line}\n"), 4, needle);
    }
    assert_rejected_at(
        "[limits]\ndeadline = \"500ms\"\n[cache]\nstale_answer_after = \"500ms\"\n",
        4,
        "cache.stale_answer_after (500ms) must be less than limits.deadline (500ms)",
    );
}

#[test]
fn a_shorter_deadline_must_stay_after_stale_answer_after() -> Result<(), ConfigError> {
    let file = TempFile::new(
        "punctual.toml",
        "[limits]\ndeadline = \"2s\"\n[cache]\nstale_answer_after = \"1500ms\"\n",
    );
    let mut config = Config::load(&file.0)?;
    assert_eq!(config.stale_answer_after(), Duration::from_millis(1_500));
    // As `punctual run --deadline 1s` does after loading.
    config.limits.deadline = Duration::from_secs(1);
    config.limits.attempt_timeout = config.limits.attempt_timeout.min(config.limits.deadline);
    let error = config
        .validate()
        .expect_err("stale_answer_after after the deadline");
    assert_eq!(error.file.as_deref(), Some(file.0.as_path()));
    assert_eq!(error.line, Some(4), "{error}");
    assert!(
        error
            .reason
            .contains("cache.stale_answer_after (1s 500ms) must be less than limits.deadline (1s)"),
        "{error}"
    );

    // The default follows the deadline instead.
    let mut config = Config::default();
    config.limits.deadline = Duration::from_secs(1);
    assert_eq!(config.validate(), Ok(()));
    assert_eq!(config.stale_answer_after(), Duration::from_millis(900));
    Ok(())
}

#[test]
fn forward_tables_are_parsed_and_checked() -> Result<(), ConfigError> {
    let config = Config::from_toml(
        "[[forward]]\nzone = \"Corp.Example.\"\nservers = [\"10.0.0.53\", \"10.0.1.53:5353\"]\n\n\
         [[forward]]\nzone = \"10.in-addr.arpa\"\nservers = [\"10.0.0.53\"]\n",
        Path::new("ok.toml"),
    )?;
    let zones: Vec<&str> = config
        .forward
        .iter()
        .map(|forward| forward.zone.as_str())
        .collect();
    assert_eq!(zones, ["corp.example", "10.in-addr.arpa"]);
    assert_eq!(
        config.forward[0].servers,
        [server("10.0.0.53:53"), server("10.0.1.53:5353")]
    );
    assert_eq!(config.forward[0].zone_wire(), b"\x04corp\x07example\x00");

    let forward = |zone: &str, servers: &str| {
        format!("[upstream]\nservers = []\n\n[[forward]]\nzone = {zone}\nservers = {servers}\n")
    };
    assert_rejected_at(&forward("\".\"", "[\"10.0.0.53\"]"), 5, "forward[0].zone");
    assert_rejected_at(&forward("\"a..b\"", "[\"10.0.0.53\"]"), 5, "empty label");
    assert_rejected_at(
        &forward("\"corp.example\"", "[]"),
        6,
        "forward[0].servers is empty",
    );
    assert_rejected_at(
        &forward("\"corp.example\"", "[\"corp-dns\"]"),
        6,
        "forward[0].servers[0]",
    );
    assert_rejected_at(
        &forward("\"corp.example\"", "[\"::1\"]"),
        6,
        "back to punctual itself",
    );
    assert_rejected_at(
        &format!(
            "{}\n[[forward]]\nzone = \"corp.example.\"\nservers = [\"10.0.0.54\"]\n",
            forward("\"corp.example\"", "[\"10.0.0.53\"]")
        ),
        9,
        "already forwarded",
    );
    Ok(())
}

#[test]
fn self_upstream_is_rejected() {
    assert_rejected_at(
        "[upstream]\nservers = [\"127.0.0.1\"]\n",
        2,
        "back to punctual itself",
    );
    assert_rejected_at(
        "[listen]\naddresses = [\"0.0.0.0:5353\"]\n[upstream]\nservers = [\"192.0.2.1\", \"127.0.0.1:5353\"]\n",
        4,
        "back to punctual itself",
    );
    // Same address, another port: a different server.
    let config = Config::from_toml(
        "[upstream]\nservers = [\"127.0.0.1:5353\"]\n",
        Path::new("ok.toml"),
    );
    assert!(config.is_ok(), "{config:?}");
}

#[test]
fn validate_works_on_a_config_built_in_code() {
    let mut config = Config::default();
    assert!(config.validate().is_ok());
    config.limits.attempt_timeout = config.limits.deadline * 2;
    let error = config.validate().expect_err("attempt_timeout > deadline");
    assert_eq!((error.file, error.line), (None, None));
    assert!(
        error.reason.contains("limits.attempt_timeout"),
        "{}",
        error.reason
    );
}

fn with_resolv_conf(file: &TempFile) -> Config {
    let mut config = Config::default();
    config.upstream.resolv_conf = file.0.clone();
    config
}

#[test]
fn upstreams_prefers_configured_servers() -> Result<(), ConfigError> {
    let mut config = Config::default();
    config.upstream.servers = vec![server("192.0.2.1:53")];
    config.upstream.resolv_conf = PathBuf::from("/nonexistent/resolv.conf");
    assert_eq!(config.upstreams()?, [server("192.0.2.1:53")]);
    Ok(())
}

#[test]
fn upstreams_reads_resolv_conf_and_skips_ourselves() -> Result<(), ConfigError> {
    let file = TempFile::new(
        "resolv.conf",
        "# written by hand\nsearch example.com\nnameserver 127.0.0.1\nnameserver 192.0.2.1\n\
         options edns0\nnameserver 2001:db8::53\nnameserver ::1\nnameserver 192.0.2.1\n",
    );
    let config = with_resolv_conf(&file);
    assert_eq!(
        config.upstreams()?,
        [server("192.0.2.1:53"), server("[2001:db8::53]:53")]
    );
    Ok(())
}

#[test]
fn upstreams_errors_when_resolv_conf_names_only_ourselves() {
    let file = TempFile::new("resolv.conf", "nameserver 127.0.0.1\nnameserver ::1\n");
    let error = with_resolv_conf(&file)
        .upstreams()
        .expect_err("only ourselves");
    assert_eq!(error.file.as_deref(), Some(file.0.as_path()));
    assert!(error.reason.contains("only punctual itself"), "{error}");
    assert!(error.reason.contains("[upstream] servers"), "{error}");

    // A wildcard listener on port 53 answers for every loopback address.
    let file = TempFile::new("resolv.conf", "nameserver 127.0.0.53\n");
    let mut config = with_resolv_conf(&file);
    config.listen.addresses = vec![addr("0.0.0.0:53")];
    let error = config.upstreams().expect_err("only ourselves");
    assert!(error.reason.contains("only punctual itself"), "{error}");
}

#[test]
fn upstreams_errors_when_resolv_conf_has_no_nameserver() {
    let file = TempFile::new("resolv.conf", "# nothing here\nsearch example.com\n");
    let error = with_resolv_conf(&file)
        .upstreams()
        .expect_err("no nameserver");
    assert_eq!(error.file.as_deref(), Some(file.0.as_path()));
    assert!(error.reason.contains("[upstream] servers"), "{error}");
    assert!(
        error
            .to_string()
            .starts_with(&format!("{}: ", file.0.display())),
        "{error}"
    );
}

#[test]
fn upstreams_errors_when_resolv_conf_is_missing() {
    let mut config = Config::default();
    config.upstream.resolv_conf = PathBuf::from("/nonexistent/resolv.conf");
    let error = config.upstreams().expect_err("missing resolv.conf");
    assert_eq!(
        error.file.as_deref(),
        Some(Path::new("/nonexistent/resolv.conf"))
    );
}

#[test]
fn query_log_needs_a_bounded_queue_and_an_existing_directory() {
    assert_rejected_at("[query_log]\nqueue = 0\n", 2, "query_log.queue");
    assert_rejected_at("[query_log]\nqueue = 2000000\n", 2, "at most 1000000");
    assert_rejected_at(
        "[query_log]\n\npath = \"/nonexistent-punctual/queries.log\"\n",
        3,
        "does not exist",
    );
    assert_rejected_at("[query_log]\npath = \"queries.log\"\n", 2, "absolute");
    let config = Config::from_toml(
        "[query_log]\npath = \"/tmp/queries.log\"\nqueue = 5\n",
        Path::new("ok.toml"),
    )
    .expect("valid");
    assert_eq!(config.query_log.queue, 5);
}
