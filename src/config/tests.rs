//! Unit tests for the config tree: values, defaults, and where errors point.

use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(text, Path::new("t.toml"))
}

fn addr(text: &str) -> SocketAddr {
    value::parse_socket_addr(text).unwrap_or_else(|error| panic!("{error}"))
}

#[test]
fn empty_file_is_the_defaults() -> Result<(), ConfigError> {
    // Equality ignores where a Config came from.
    assert_eq!(parse("")?, Config::default());
    assert_eq!(
        parse("[listen]\n[upstream]\n[limits]\n[cache]\n")?,
        Config::default()
    );
    Ok(())
}

#[test]
fn defaults() {
    let config = Config::default();
    assert_eq!(
        config.listen.addresses,
        [addr("127.0.0.1:53"), addr("[::1]:53")]
    );
    assert!(config.upstream.servers.is_empty());
    assert_eq!(config.upstream.resolv_conf, Path::new("/etc/resolv.conf"));
    assert_eq!(config.limits.deadline, Duration::from_secs(2));
    assert_eq!(config.limits.attempt_timeout, Duration::from_millis(400));
    assert_eq!(config.limits.max_inflight, 10_000);
    assert_eq!(config.limits.max_waiters, 1_024);
    assert_eq!(config.limits.udp_recv_buffer, 4 * 1024 * 1024);
    assert_eq!(config.limits.tcp_max_connections, 512);
    assert_eq!(config.limits.tcp_idle_timeout, Duration::from_secs(10));
    assert_eq!(config.cache.entries, 100_000);
    assert_eq!(config.cache.min_ttl, Duration::ZERO);
    assert_eq!(config.cache.max_ttl, Duration::from_secs(86_400));
    assert_eq!(config.validate(), Ok(()));
}

#[test]
fn every_key() -> Result<(), ConfigError> {
    let config = parse(
        r#"
        [listen]
        addresses = ["0.0.0.0:5353", "::"]
        [upstream]
        servers = ["192.0.2.1", "192.0.2.2:5353", "2001:db8::1", "[2001:db8::2]:5353"]
        resolv_conf = "/run/resolv.conf"
        [limits]
        deadline = "1500ms"
        attempt_timeout = "500ms"
        max_inflight = 1
        max_waiters = 2
        udp_recv_buffer = 65536
        tcp_max_connections = 3
        tcp_idle_timeout = "1m"
        [cache]
        entries = 4
        min_ttl = "5s"
        max_ttl = "1h"
        "#,
    )?;
    assert_eq!(
        config.listen.addresses,
        [addr("0.0.0.0:5353"), addr("[::]:53")]
    );
    assert_eq!(
        config.upstream.servers,
        [
            addr("192.0.2.1:53"),
            addr("192.0.2.2:5353"),
            addr("[2001:db8::1]:53"),
            addr("[2001:db8::2]:5353")
        ]
    );
    assert_eq!(config.upstream.resolv_conf, Path::new("/run/resolv.conf"));
    let limits = &config.limits;
    assert_eq!(limits.deadline, Duration::from_millis(1500));
    assert_eq!(limits.attempt_timeout, Duration::from_millis(500));
    assert_eq!(
        (
            limits.max_inflight,
            limits.max_waiters,
            limits.tcp_max_connections
        ),
        (1, 2, 3)
    );
    assert_eq!(limits.udp_recv_buffer, 65_536);
    assert_eq!(limits.tcp_idle_timeout, Duration::from_secs(60));
    assert_eq!(config.cache.entries, 4);
    assert_eq!(config.cache.min_ttl, Duration::from_secs(5));
    assert_eq!(config.cache.max_ttl, Duration::from_secs(3_600));
    Ok(())
}

#[test]
fn dotted_keys_and_size_strings() -> Result<(), ConfigError> {
    let config = parse("limits.udp_recv_buffer = \"256KiB\"\ncache.max_ttl = \"6h\"\n")?;
    assert_eq!(config.limits.udp_recv_buffer, 256 * 1024);
    assert_eq!(config.cache.max_ttl, Duration::from_secs(6 * 3_600));
    Ok(())
}

#[test]
fn parse_errors_name_the_key_and_line() {
    let cases = [
        ("[limits]\n\ndeadline = \"soon\"\n", 3, "limits.deadline"),
        ("[limits]\nmax_inflight = -1\n", 2, "limits.max_inflight"),
        ("[limits]\nmax_waiters = \"10\"\n", 2, "limits.max_waiters"),
        (
            "[limits]\nudp_recv_buffer = \"4 parsecs\"\n",
            2,
            "limits.udp_recv_buffer",
        ),
        ("[limits]\nudp_recv_buffer = \"4M\"\n", 2, "ambiguous"),
        (
            "[upstream]\nservers = [\n \"192.0.2.1\",\n \"not-an-ip\",\n]\n",
            4,
            "upstream.servers[1]",
        ),
        (
            "[upstream]\nservers = \"192.0.2.1\"\n",
            2,
            "upstream.servers",
        ),
        ("[cache]\nentries = 1.5\n", 2, "cache.entries"),
        ("limits = 5\n", 1, "limits"),
        ("[cache\n", 1, "invalid TOML"),
        (
            "[limits]\ndeadline = \"1s\"\ndeadline = \"2s\"\n",
            3,
            "invalid TOML",
        ),
    ];
    for (text, line, needle) in cases {
        let error = parse(text).expect_err(text);
        assert_eq!(error.file.as_deref(), Some(Path::new("t.toml")), "{text}");
        assert_eq!(error.line, Some(line), "{text}: {error}");
        assert!(error.reason.contains(needle), "{text}: {error}");
    }
}

#[test]
fn validation_errors_point_at_the_key() {
    let cases = [
        ("[limits]\ndeadline = \"0s\"\n", 2, "limits.deadline"),
        ("[limits]\ndeadline = \"61m\"\n", 2, "at most 1h"),
        (
            "[limits]\nattempt_timeout = \"0s\"\n",
            2,
            "limits.attempt_timeout",
        ),
        // attempt_timeout keeps its default, so the line is the deadline's.
        (
            "\n[limits]\ndeadline = \"100ms\"\n",
            3,
            "limits.attempt_timeout",
        ),
        (
            "[limits]\ndeadline = \"1s\"\nattempt_timeout = \"2s\"\n",
            3,
            "limits.deadline (1s)",
        ),
        ("[limits]\nmax_inflight = 0\n", 2, "limits.max_inflight"),
        ("[limits]\nmax_waiters = 0\n", 2, "limits.max_waiters"),
        (
            "[limits]\ntcp_max_connections = 0\n",
            2,
            "limits.tcp_max_connections",
        ),
        (
            "[limits]\ntcp_idle_timeout = \"0s\"\n",
            2,
            "limits.tcp_idle_timeout",
        ),
        ("[cache]\nentries = 0\n", 2, "cache.entries"),
        (
            "[cache]\nmax_ttl = \"1m\"\nmin_ttl = \"2m\"\n",
            3,
            "cache.min_ttl (2m)",
        ),
        ("[listen]\naddresses = []\n", 2, "listen.addresses is empty"),
        (
            "[listen]\naddresses = [\n \"127.0.0.1:53\",\n \"127.0.0.1:53\",\n]\n",
            4,
            "twice",
        ),
        (
            "[upstream]\nservers = [\"192.0.2.1:0\"]\n",
            2,
            "upstream.servers[0]",
        ),
        (
            "[upstream]\nservers = [\"0.0.0.0\"]\n",
            2,
            "upstream.servers[0]",
        ),
        (
            "[upstream]\nservers = [\"192.0.2.1\",\n\"127.0.0.1\"]\n",
            3,
            "punctual itself",
        ),
    ];
    for (text, line, needle) in cases {
        let error = parse(text).expect_err(text);
        assert_eq!(error.file.as_deref(), Some(Path::new("t.toml")), "{text}");
        assert_eq!(error.line, Some(line), "{text}: {error}");
        assert!(error.reason.contains(needle), "{text}: {error}");
    }
}

#[test]
fn error_without_a_known_line_names_the_file_only() {
    // A value that came from the file although no line is known for it.
    let mut config = Config::default();
    config.limits.max_inflight = 0;
    config.origin = Origin(Some(Box::new(Source {
        file: PathBuf::from("t.toml"),
        lines: BTreeMap::new(),
        loaded: config.clone(),
    })));
    let error = config.validate().expect_err("max_inflight 0");
    assert_eq!(
        error.to_string(),
        "t.toml: limits.max_inflight must be at least 1"
    );
}

#[test]
fn overridden_values_are_not_blamed_on_the_file() -> Result<(), ConfigError> {
    let mut config = parse("[limits]\ndeadline = \"2s\"\nmax_waiters = 8\n")?;
    // As if a command-line flag had set it: the file's line 3 says 8, not 0.
    config.limits.max_waiters = 0;
    let error = config.validate().expect_err("max_waiters 0");
    assert_eq!((error.file, error.line), (None, None));
    assert_eq!(error.reason, "limits.max_waiters must be at least 1");

    // The flag made the pair wrong; the file's deadline is still one side of it.
    let mut config = parse("[limits]\ndeadline = \"2s\"\n")?;
    config.limits.attempt_timeout = Duration::from_secs(3);
    let error = config.validate().expect_err("attempt_timeout > deadline");
    assert_eq!(error.line, Some(2), "{error}");
    Ok(())
}

#[test]
fn config_built_in_code_errors_have_no_file() {
    let mut config = Config::default();
    config.upstream.servers = vec![addr("[::1]:53")];
    let error = config.validate().expect_err("self upstream");
    assert_eq!((error.file.as_deref(), error.line), (None, None));
    assert_eq!(
        error.to_string(),
        "upstream.servers[0]: [::1]:53 is punctual's own listen address [::1]:53; \
         forwarding there would send queries back to punctual itself"
    );
}

#[test]
fn own_listener_rules() {
    let with_listen = |listen: &[&str]| {
        let mut config = Config::default();
        config.listen.addresses = listen.iter().map(|text| addr(text)).collect();
        config
    };
    let config = with_listen(&["127.0.0.1:53"]);
    assert_eq!(
        config.own_listener(addr("127.0.0.1")),
        Some(addr("127.0.0.1:53"))
    );
    assert_eq!(
        config.own_listener(addr("::ffff:127.0.0.1")),
        Some(addr("127.0.0.1:53"))
    );
    assert_eq!(config.own_listener(addr("127.0.0.2")), None);
    assert_eq!(config.own_listener(addr("127.0.0.1:5353")), None);
    assert_eq!(config.own_listener(addr("::1")), None);

    let config = with_listen(&["0.0.0.0:53"]);
    assert_eq!(
        config.own_listener(addr("127.0.0.53")),
        Some(addr("0.0.0.0:53"))
    );
    assert_eq!(config.own_listener(addr("::1")), None);
    assert_eq!(config.own_listener(addr("192.0.2.1")), None);
    assert_eq!(config.own_listener(addr("127.0.0.1:54")), None);

    let config = with_listen(&["[::]:53"]);
    assert_eq!(config.own_listener(addr("::1")), Some(addr("[::]:53")));
    assert_eq!(
        config.own_listener(addr("127.0.0.1")),
        Some(addr("[::]:53"))
    );
    assert_eq!(config.own_listener(addr("2001:db8::1")), None);
}

#[test]
fn error_display() {
    let error = |file: Option<&str>, line| ConfigError {
        file: file.map(PathBuf::from),
        line,
        reason: "bad".into(),
    };
    assert_eq!(error(Some("a.toml"), Some(3)).to_string(), "a.toml:3: bad");
    assert_eq!(error(Some("a.toml"), None).to_string(), "a.toml: bad");
    assert_eq!(error(None, None).to_string(), "bad");
    assert_eq!(error(None, Some(3)).to_string(), "bad");
}
