//! Unit tests for the config tree: values, defaults, and where errors point.

use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(text, Path::new("t.toml"))
}

fn addr(text: &str) -> SocketAddr {
    value::parse_socket_addr(text).unwrap_or_else(|error| panic!("{error}"))
}

/// A plain (UDP) upstream server.
fn server(text: &str) -> UpstreamAddr {
    UpstreamAddr::udp(addr(text))
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
    assert_eq!(config.upstream.strategy, Strategy::Fastest);
    assert!(!config.upstream.trust_ad);
    assert_eq!(config.limits.deadline, Duration::from_secs(2));
    assert_eq!(config.limits.attempt_timeout, Duration::from_millis(400));
    assert_eq!(config.limits.max_inflight, 10_000);
    assert_eq!(config.limits.max_waiters, 1_024);
    assert_eq!(config.limits.max_inflight_down, 32);
    assert_eq!(config.limits.udp_recv_buffer, 4 * 1024 * 1024);
    assert_eq!(config.limits.tcp_max_connections, 512);
    assert_eq!(config.limits.tcp_idle_timeout, Duration::from_secs(10));
    assert_eq!(config.listen.allow, None);
    assert_eq!(config.limits.tcp_max_connections_per_client, 16);
    assert_eq!(config.limits.tcp_read_timeout, Duration::from_secs(2));
    assert_eq!(config.limits.max_udp_query, 1232);
    assert_eq!(config.limits.max_tcp_query, 1232);
    assert_eq!(config.limits.client_qps, 0);
    assert_eq!(config.limits.client_burst, 100);
    assert_eq!(config.limits.rate_limit_action, RateLimitAction::Refuse);
    assert!(!config.limits.rate_limit_loopback);
    assert_eq!(config.limits.rate_limit_clients, 65_536);
    assert_eq!(config.process, ProcessConfig::default());
    assert_eq!(config.process.user, None);
    assert_eq!(config.process.group, None);
    assert_eq!(config.cache.entries, 100_000);
    assert_eq!(config.cache.min_ttl, Duration::ZERO);
    assert_eq!(config.cache.max_ttl, Duration::from_secs(86_400));
    assert_eq!(config.cache.max_bytes, 64 * 1024 * 1024);
    assert_eq!(config.cache.negative_max_ttl, Duration::from_secs(3_600));
    assert_eq!(config.cache.failure_ttl, Duration::from_secs(5));
    assert!(config.cache.serve_stale);
    assert_eq!(config.cache.stale_max_age, Duration::from_secs(86_400));
    assert_eq!(config.cache.stale_answer_after, None);
    assert_eq!(config.stale_answer_after(), Duration::from_millis(1_800));
    assert_eq!(config.cache.stale_ttl, Duration::from_secs(30));
    assert!(config.cache.prefetch);
    assert!(config.forward.is_empty());
    assert_eq!(config.validate(), Ok(()));
}

#[test]
fn every_key() -> Result<(), ConfigError> {
    let config = parse(
        r#"
        [listen]
        addresses = ["0.0.0.0:5353", "::"]
        allow = ["192.168.1.0/24", "2001:db8::/32", "127.0.0.1"]
        [upstream]
        servers = ["192.0.2.1", "192.0.2.2:5353", "2001:db8::1", "[2001:db8::2]:5353"]
        resolv_conf = "/run/resolv.conf"
        strategy = "ordered"
        trust_ad = true
        [limits]
        deadline = "1500ms"
        attempt_timeout = "500ms"
        max_inflight = 1
        max_waiters = 2
        max_inflight_down = 4
        udp_recv_buffer = 65536
        tcp_max_connections = 3
        tcp_idle_timeout = "1m"
        tcp_max_connections_per_client = 5
        tcp_read_timeout = "300ms"
        max_udp_query = 4096
        max_tcp_query = "8KiB"
        client_qps = 20
        client_burst = 40
        rate_limit_action = "drop"
        rate_limit_loopback = true
        rate_limit_clients = 1000
        [cache]
        entries = 4
        min_ttl = "5s"
        max_ttl = "1h"
        max_bytes = "1MiB"
        negative_max_ttl = "15m"
        failure_ttl = "30s"
        serve_stale = false
        stale_max_age = "3d"
        stale_answer_after = "1200ms"
        stale_ttl = "1m"
        prefetch = false
        [process]
        user = "root"
        group = "root"
        "#,
    )?;
    assert_eq!(
        config.listen.addresses,
        [addr("0.0.0.0:5353"), addr("[::]:53")]
    );
    let allow: Vec<String> = config
        .listen
        .allow
        .iter()
        .flatten()
        .map(ToString::to_string)
        .collect();
    assert_eq!(allow, ["192.168.1.0/24", "2001:db8::/32", "127.0.0.1/32"]);
    assert_eq!(config.process.user.as_deref(), Some("root"));
    assert_eq!(config.process.group.as_deref(), Some("root"));
    assert_eq!(
        config.upstream.servers,
        [
            server("192.0.2.1:53"),
            server("192.0.2.2:5353"),
            server("[2001:db8::1]:53"),
            server("[2001:db8::2]:5353")
        ]
    );
    assert_eq!(config.upstream.resolv_conf, Path::new("/run/resolv.conf"));
    assert_eq!(config.upstream.strategy, Strategy::Ordered);
    assert!(config.upstream.trust_ad);
    let limits = &config.limits;
    assert_eq!(limits.deadline, Duration::from_millis(1500));
    assert_eq!(limits.attempt_timeout, Duration::from_millis(500));
    assert_eq!(
        (
            limits.max_inflight,
            limits.max_waiters,
            limits.max_inflight_down,
            limits.tcp_max_connections
        ),
        (1, 2, 4, 3)
    );
    assert_eq!(limits.udp_recv_buffer, 65_536);
    assert_eq!(limits.tcp_idle_timeout, Duration::from_secs(60));
    assert_eq!(limits.tcp_max_connections_per_client, 5);
    assert_eq!(limits.tcp_read_timeout, Duration::from_millis(300));
    assert_eq!((limits.max_udp_query, limits.max_tcp_query), (4096, 8192));
    assert_eq!((limits.client_qps, limits.client_burst), (20, 40));
    assert_eq!(limits.rate_limit_action, RateLimitAction::Drop);
    assert!(limits.rate_limit_loopback);
    assert_eq!(limits.rate_limit_clients, 1_000);
    assert_eq!(config.cache.entries, 4);
    assert_eq!(config.cache.min_ttl, Duration::from_secs(5));
    assert_eq!(config.cache.max_ttl, Duration::from_secs(3_600));
    let cache = &config.cache;
    assert_eq!(cache.max_bytes, 1 << 20);
    assert_eq!(cache.negative_max_ttl, Duration::from_secs(15 * 60));
    assert_eq!(cache.failure_ttl, Duration::from_secs(30));
    assert!(!cache.serve_stale);
    assert_eq!(cache.stale_max_age, Duration::from_secs(3 * 86_400));
    assert_eq!(cache.stale_answer_after, Some(Duration::from_millis(1_200)));
    assert_eq!(config.stale_answer_after(), Duration::from_millis(1_200));
    assert_eq!(cache.stale_ttl, Duration::from_secs(60));
    assert!(!cache.prefetch);
    Ok(())
}

#[test]
fn cache_values_at_their_limits_are_accepted() -> Result<(), ConfigError> {
    type Holds = fn(&Config) -> bool;
    let cases: [(&str, Holds); 13] = [
        ("max_bytes = \"64KiB\"", |c| c.cache.max_bytes == 65_536),
        ("max_bytes = 65536", |c| c.cache.max_bytes == 65_536),
        ("max_bytes = \"1GB\"", |c| {
            c.cache.max_bytes == 1_000_000_000
        }),
        ("negative_max_ttl = \"0s\"", |c| {
            c.cache.negative_max_ttl.is_zero()
        }),
        ("failure_ttl = \"0s\"", |c| c.cache.failure_ttl.is_zero()),
        ("failure_ttl = \"5m\"", |c| {
            c.cache.failure_ttl == Duration::from_secs(300)
        }),
        // Off, so a zero age is no contradiction.
        ("serve_stale = false\nstale_max_age = \"0s\"", |c| {
            !c.cache.serve_stale && c.cache.stale_max_age.is_zero()
        }),
        ("stale_answer_after = \"1999ms\"", |c| {
            c.stale_answer_after() == Duration::from_millis(1_999)
        }),
        ("stale_answer_after = \"1ms\"", |c| {
            c.stale_answer_after() == Duration::from_millis(1)
        }),
        ("stale_answer_after = \"AUTO\"", |c| {
            c.cache.stale_answer_after.is_none()
        }),
        ("stale_ttl = \"1s\"", |c| {
            c.cache.stale_ttl == Duration::from_secs(1)
        }),
        ("stale_ttl = \"1d\"", |c| {
            c.cache.stale_ttl == Duration::from_secs(86_400)
        }),
        ("serve_stale = true\nprefetch = false", |c| {
            c.cache.serve_stale && !c.cache.prefetch
        }),
    ];
    for (lines, holds) in cases {
        let config = parse(&format!("[cache]\n{lines}\n"))?;
        assert!(holds(&config), "{lines}: {:?}", config.cache);
    }
    Ok(())
}

#[test]
fn upstream_strategy_and_trust_ad() -> Result<(), ConfigError> {
    for (name, strategy) in [
        ("fastest", Strategy::Fastest),
        ("ordered", Strategy::Ordered),
        ("parallel", Strategy::Parallel),
    ] {
        let config = parse(&format!("[upstream]\nstrategy = \"{name}\"\n"))?;
        assert_eq!(config.upstream.strategy, strategy, "{name}");
        assert_eq!(strategy.to_string(), name);
    }
    let config = parse("upstream.strategy = \"parallel\"\nupstream.trust_ad = false\n")?;
    assert_eq!(config.upstream.strategy, Strategy::Parallel);
    assert!(!config.upstream.trust_ad);
    assert!(parse("[upstream]\ntrust_ad = true\n")?.upstream.trust_ad);
    Ok(())
}

#[test]
fn upstream_transports_ca_file_and_idle_timeout() -> Result<(), ConfigError> {
    let config = parse(
        "[upstream]\nservers = [\"192.0.2.1\", \"tcp://192.0.2.2\", \"tls://192.0.2.3#dns.test\"]\n\
         idle_timeout = \"30s\"\nca_file = \"\"\n\n\
         [[forward]]\nzone = \"corp.test\"\nservers = [\"tls://[2001:db8::53]:8853#ns.corp.test\"]\n",
    )?;
    let tls = |text: &str, name: &str| {
        UpstreamAddr::tls(addr(text), name).unwrap_or_else(|error| panic!("{error}"))
    };
    assert_eq!(
        config.upstream.servers,
        [
            server("192.0.2.1:53"),
            UpstreamAddr::tcp(addr("192.0.2.2:53")),
            tls("192.0.2.3:853", "dns.test"),
        ]
    );
    assert_eq!(
        config.forward[0].servers,
        [tls("[2001:db8::53]:8853", "ns.corp.test")]
    );
    assert_eq!(config.upstream.idle_timeout, Duration::from_secs(30));
    assert_eq!(config.upstream.ca_file, None);

    let error = parse("[upstream]\nidle_timeout = \"0s\"\n").expect_err("zero idle timeout");
    assert_eq!(error.line, Some(2), "{error}");
    assert!(
        error.reason.contains("idle_timeout must be more than 0s"),
        "{error}"
    );
    let error = parse("[upstream]\n\nca_file = \"/nonexistent/ca.pem\"\n").expect_err("no CA file");
    assert_eq!(error.line, Some(3), "{error}");
    assert!(
        error.reason.contains("cannot read /nonexistent/ca.pem"),
        "{error}"
    );
    Ok(())
}

#[test]
fn stale_answer_after_defaults_to_nine_tenths_of_the_deadline() -> Result<(), ConfigError> {
    let config = parse("[limits]\ndeadline = \"1s\"\n[cache]\nstale_answer_after = \"auto\"\n")?;
    assert_eq!(config.stale_answer_after(), Duration::from_millis(900));
    let config = parse("[limits]\ndeadline = \"1500ms\"\nattempt_timeout = \"400ms\"\n")?;
    assert_eq!(config.stale_answer_after(), Duration::from_millis(1_350));
    // Exact, rounded down to the nanosecond, for any deadline.
    assert_eq!(
        nine_tenths(Duration::from_secs(2)),
        Duration::from_millis(1_800)
    );
    assert_eq!(
        nine_tenths(Duration::from_nanos(19)),
        Duration::from_nanos(17)
    );
    assert_eq!(nine_tenths(Duration::from_nanos(1)), Duration::ZERO);
    assert_eq!(
        nine_tenths(Duration::from_nanos(1_000_000_009)),
        Duration::from_nanos(900_000_008)
    );
    assert!(nine_tenths(Duration::MAX) < Duration::MAX);
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
        (
            "[upstream]\nservers = []\n\nstrategy = \"random\"\n",
            4,
            "upstream.strategy: invalid strategy \"random\"; expected one of \"fastest\", \"ordered\", \"parallel\"",
        ),
        (
            "[upstream]\nstrategy = \"Fastest\"\n",
            2,
            "upstream.strategy",
        ),
        ("[upstream]\nstrategy = \"\"\n", 2, "\"parallel\""),
        ("[upstream]\nstrategy = 1\n", 2, "upstream.strategy"),
        ("[upstream]\ntrust_ad = \"yes\"\n", 2, "upstream.trust_ad"),
        ("[upstream]\ntrust_ad = 1\n", 2, "upstream.trust_ad"),
        (
            "[upstream]\nservers = [\n \"tls://192.0.2.1\",\n]\n",
            3,
            "upstream.servers[0]: \"tls://192.0.2.1\" has no authentication name",
        ),
        (
            "[upstream]\nservers = [\"udp://192.0.2.1\"]\n",
            2,
            "unknown scheme \"udp\"",
        ),
        (
            "[[forward]]\nzone = \"corp.test\"\nservers = [\"tcp://corp.test\"]\n",
            3,
            "forward[0].servers[0]",
        ),
        (
            "[upstream]\nidle_timeout = 10\n",
            2,
            "upstream.idle_timeout",
        ),
        ("[upstream]\nca_file = 1\n", 2, "upstream.ca_file"),
        ("[cache]\nentries = 1.5\n", 2, "cache.entries"),
        ("[cache]\n\nmax_bytes = \"64M\"\n", 3, "ambiguous"),
        ("[cache]\nmax_bytes = -1\n", 2, "cache.max_bytes"),
        ("[cache]\nmax_bytes = \"lots\"\n", 2, "cache.max_bytes"),
        (
            "[cache]\nnegative_max_ttl = \"soon\"\n",
            2,
            "cache.negative_max_ttl",
        ),
        ("[cache]\nfailure_ttl = 5\n", 2, "cache.failure_ttl"),
        ("[cache]\nfailure_ttl = \"-5s\"\n", 2, "cache.failure_ttl"),
        ("[cache]\nserve_stale = \"yes\"\n", 2, "cache.serve_stale"),
        ("[cache]\nserve_stale = 1\n", 2, "cache.serve_stale"),
        (
            "[cache]\nstale_max_age = \"1 fortnight\"\n",
            2,
            "cache.stale_max_age",
        ),
        (
            "[cache]\nstale_answer_after = \"later\"\n",
            2,
            "cache.stale_answer_after",
        ),
        ("[cache]\nstale_answer_after = \"later\"\n", 2, "\"auto\""),
        (
            "[cache]\nstale_answer_after = 1800\n",
            2,
            "cache.stale_answer_after",
        ),
        ("[cache]\nstale_ttl = \"30\"\n", 2, "cache.stale_ttl"),
        ("[cache]\nprefetch = \"on\"\n", 2, "cache.prefetch"),
        ("[cache]\nprefetch_ratio = 0.1\n", 2, "prefetch_ratio"),
        ("limits = 5\n", 1, "limits"),
        (
            "[listen]\nallow = [\n \"10.0.0.0/8\",\n \"10.0.0.0/33\",\n]\n",
            4,
            "listen.allow[1]: invalid prefix \"10.0.0.0/33\"",
        ),
        ("[listen]\nallow = \"10.0.0.0/8\"\n", 2, "listen.allow"),
        (
            "[listen]\nallow = [\"corp.example\"]\n",
            2,
            "invalid prefix",
        ),
        (
            "[limits]\nrate_limit_action = \"ignore\"\n",
            2,
            "limits.rate_limit_action: invalid action \"ignore\"; expected \"refuse\" or \"drop\"",
        ),
        (
            "[limits]\nrate_limit_loopback = 1\n",
            2,
            "rate_limit_loopback",
        ),
        ("[limits]\nclient_qps = -5\n", 2, "limits.client_qps"),
        (
            "[limits]\ntcp_read_timeout = 2\n",
            2,
            "limits.tcp_read_timeout",
        ),
        ("[limits]\nmax_udp_query = \"1k\"\n", 2, "ambiguous"),
        ("[process]\nuser = 65534\n", 2, "process.user"),
        ("[process]\nthreads = -1\n", 2, "process.threads"),
        ("[process]\nuid = 65534\n", 2, "uid"),
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
            "[limits]\nmax_inflight_down = 0\n",
            2,
            "limits.max_inflight_down",
        ),
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
        (
            "[cache]\nmax_bytes = 65535\n",
            2,
            "cache.max_bytes must be at least 64KiB",
        ),
        ("[cache]\nmax_bytes = \"64\"\n", 2, "got 64 bytes"),
        (
            "[cache]\nfailure_ttl = \"5m 1s\"\n",
            2,
            "cache.failure_ttl must be at most 5m (RFC 2308 section 7), got 5m 1s",
        ),
        (
            "[cache]\nstale_max_age = \"0s\"\n",
            2,
            "cache.stale_max_age must be more than 0s while cache.serve_stale is on",
        ),
        // Blamed on the age: turning serve_stale on is not the mistake.
        (
            "[cache]\nserve_stale = true\nstale_max_age = \"0s\"\n",
            3,
            "cache.stale_max_age",
        ),
        (
            "[cache]\nstale_answer_after = \"0s\"\n",
            2,
            "cache.stale_answer_after must be more than 0s",
        ),
        // Equal to the default deadline (2s) is too late.
        (
            "[cache]\nstale_answer_after = \"2s\"\n",
            2,
            "cache.stale_answer_after (2s) must be less than limits.deadline (2s): \
             a stale answer must leave before the deadline",
        ),
        // With both in the file, the stale key is blamed: it is the one to lower.
        (
            "[limits]\ndeadline = \"1s\"\n[cache]\nstale_answer_after = \"1800ms\"\n",
            4,
            "limits.deadline (1s)",
        ),
        // The rule holds with serve_stale off, so turning it on cannot break the file.
        (
            "[cache]\nserve_stale = false\nstale_answer_after = \"3s\"\n",
            3,
            "cache.stale_answer_after (3s)",
        ),
        (
            "[cache]\nstale_ttl = \"0s\"\n",
            2,
            "cache.stale_ttl must be at least 1s and at most 1day, got 0s",
        ),
        ("[cache]\nstale_ttl = \"500ms\"\n", 2, "cache.stale_ttl"),
        ("[cache]\nstale_ttl = \"1d 1s\"\n", 2, "cache.stale_ttl"),
        ("[listen]\naddresses = []\n", 2, "listen.addresses is empty"),
        (
            "[listen]\naddresses = [\n \"127.0.0.1:53\",\n \"0.0.0.0:53\",\n]\n",
            4,
            "listening on 0.0.0.0:53 needs an explicit [listen] allow list: without one \
             punctual would be an open resolver",
        ),
        (
            "[listen]\naddresses = [\"[::]:5353\"]\n",
            2,
            "listening on [::]:5353 needs an explicit [listen] allow list",
        ),
        (
            "[listen]\naddresses = [\"192.0.2.1:53\"]\n",
            2,
            "open resolver",
        ),
        (
            "[listen]\naddresses = [\"0.0.0.0:53\"]\nallow = []\n",
            3,
            "listen.allow is empty",
        ),
        (
            "[limits]\ntcp_max_connections_per_client = 0\n",
            2,
            "limits.tcp_max_connections_per_client must be at least 1",
        ),
        (
            "[limits]\nclient_burst = 0\n",
            2,
            "limits.client_burst must be at least 1",
        ),
        (
            "[limits]\nrate_limit_clients = 0\n",
            2,
            "limits.rate_limit_clients must be at least 1",
        ),
        (
            "[limits]\nclient_qps = 1000001\n",
            2,
            "limits.client_qps must be at most 1000000",
        ),
        (
            "[limits]\ntcp_read_timeout = \"0s\"\n",
            2,
            "limits.tcp_read_timeout must be more than 0s",
        ),
        (
            "[limits]\nmax_udp_query = 511\n",
            2,
            "limits.max_udp_query must be at least 512 and at most 4096 bytes, got 511",
        ),
        (
            "[limits]\nmax_udp_query = \"8KiB\"\n",
            2,
            "limits.max_udp_query",
        ),
        (
            "[limits]\nmax_tcp_query = 65536\n",
            2,
            "at most 65535 bytes",
        ),
        (
            "[process]\ngroup = \"nogroup\"\n",
            2,
            "process.group needs process.user",
        ),
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
        (
            "[process]\nthreads = 1025\n",
            2,
            "process.threads must be at most 1024 (0: one per CPU), got 1025",
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
fn forward_tables() -> Result<(), ConfigError> {
    let config = parse(
        r#"
        [upstream]
        servers = ["192.0.2.1"]

        [[forward]]
        zone = "Corp.Example."
        servers = ["10.0.0.53", "10.0.1.53:5353"]

        [[forward]]
        servers = ["[2001:db8::53]"]
        zone = "10.in-addr.arpa"
        "#,
    )?;
    assert_eq!(
        config.forward,
        [
            ForwardConfig {
                zone: "corp.example".into(),
                servers: vec![server("10.0.0.53:53"), server("10.0.1.53:5353")],
            },
            ForwardConfig {
                zone: "10.in-addr.arpa".into(),
                servers: vec![server("[2001:db8::53]:53")],
            },
        ]
    );
    assert_eq!(config.upstream.servers, [server("192.0.2.1:53")]);
    // Equal to the same tables built in code.
    let mut built = Config::default();
    built.upstream.servers = vec![server("192.0.2.1")];
    built.forward = config.forward.clone();
    assert_eq!(config, built);
    assert_eq!(built.validate(), Ok(()));
    Ok(())
}

#[test]
fn zone_wire() {
    let forward = |zone: &str| ForwardConfig {
        zone: zone.into(),
        servers: vec![server("192.0.2.1")],
    };
    assert_eq!(forward("corp.test").zone_wire(), b"\x04corp\x04test\x00");
    assert_eq!(
        forward("10.in-addr.arpa").zone_wire(),
        b"\x0210\x07in-addr\x04arpa\x00"
    );
    // Lower case even when built in code with capitals and a trailing dot.
    assert_eq!(forward("Corp.TEST.").zone_wire(), b"\x04corp\x04test\x00");
    let long = "a".repeat(63);
    let wire = forward(&long).zone_wire();
    assert_eq!((wire[0], wire.len()), (63, 65));
}

#[test]
fn forward_errors_point_at_the_key() {
    let table =
        |body: &str| format!("[upstream]\nservers = [\"192.0.2.1\"]\n\n[[forward]]\n{body}");
    let cases = [
        // Parse errors: the line of the bad value.
        (
            table("zone = \".\"\nservers = [\"10.0.0.53\"]\n"),
            5,
            "forward[0].zone: invalid zone \".\": the root zone",
        ),
        (
            table("zone = \"\"\nservers = [\"10.0.0.53\"]\n"),
            5,
            "root zone",
        ),
        (
            table("zone = \"corp..example\"\nservers = [\"10.0.0.53\"]\n"),
            5,
            "empty label",
        ),
        (
            table(&format!(
                "zone = \"{}.example\"\nservers = [\"10.0.0.53\"]\n",
                "a".repeat(64)
            )),
            5,
            "longer than 63",
        ),
        (
            table("zone = \"corp example\"\nservers = [\"10.0.0.53\"]\n"),
            5,
            "not a letter",
        ),
        (
            table("zone = 7\nservers = [\"10.0.0.53\"]\n"),
            5,
            "forward[0].zone",
        ),
        (
            table(
                "zone = \"corp.example\"\nservers = [\n  \"10.0.0.53\",\n  \"ns.corp.example\",\n]\n",
            ),
            8,
            "forward[0].servers[1]: invalid address",
        ),
        (
            table("zone = \"corp.example\"\nservers = [\"10.0.0.53\"]\nport = 53\n"),
            7,
            "port",
        ),
        // Validation errors.
        (
            table("zone = \"corp.example\"\nservers = []\n"),
            6,
            "forward[0].servers is empty",
        ),
        (
            table("zone = \"corp.example\"\nservers = [\n  \"10.0.0.53\",\n  \"127.0.0.1\",\n]\n"),
            8,
            "forward[0].servers[1]: 127.0.0.1:53 is punctual's own listen address 127.0.0.1:53",
        ),
        (
            table("zone = \"corp.example\"\nservers = [\"0.0.0.0\"]\n"),
            6,
            "not an address queries can be sent to",
        ),
        (
            table(
                "zone = \"corp.example\"\nservers = [\"10.0.0.53\"]\n\n[[forward]]\nzone = \"CORP.example.\"\nservers = [\"10.0.0.54\"]\n",
            ),
            9,
            "forward[1].zone: zone \"corp.example\" is already forwarded by forward[0]",
        ),
    ];
    for (text, line, needle) in cases {
        let error = parse(&text).expect_err(&text);
        assert_eq!(error.file.as_deref(), Some(Path::new("t.toml")), "{text}");
        assert_eq!(error.line, Some(line), "{text}: {error}");
        assert!(error.reason.contains(needle), "{text}: {error}");
    }
    // A missing key names the table.
    let error = parse(&table("zone = \"corp.example\"\n")).expect_err("no servers");
    assert!(error.reason.contains("servers"), "{error}");
    let error = parse(&table("servers = [\"10.0.0.53\"]\n")).expect_err("no zone");
    assert!(error.reason.contains("zone"), "{error}");
    // Own listener on another port: listening on 5353 makes 127.0.0.1:5353 ourselves.
    let error = parse(
        "[listen]\naddresses = [\"[::]:5353\"]\n[[forward]]\nzone = \"test\"\nservers = [\"127.0.0.1:5353\"]\n",
    )
    .expect_err("own listener");
    assert_eq!(error.line, Some(5), "{error}");
}

#[test]
fn forward_rules_hold_for_tables_built_in_code() {
    let mut config = Config {
        forward: vec![ForwardConfig {
            zone: ".".into(),
            servers: vec![server("10.0.0.53")],
        }],
        ..Config::default()
    };
    let error = config.validate().expect_err("root zone");
    assert_eq!((error.file.as_deref(), error.line), (None, None));
    assert!(error.reason.starts_with("forward[0].zone: "), "{error}");
    config.forward[0].zone = "corp.example".into();
    assert_eq!(config.validate(), Ok(()));
    config.forward[0].servers.clear();
    let error = config.validate().expect_err("no servers");
    assert_eq!(
        error.reason,
        "forward[0].servers is empty; a forward zone needs a server to ask"
    );
    config.forward[0].servers = vec![server("[::1]:53")];
    let error = config.validate().expect_err("own listener");
    assert!(error.reason.contains("punctual itself"), "{error}");
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
fn deadline_flag_below_stale_answer_after_is_rejected() -> Result<(), ConfigError> {
    let text = "[limits]\ndeadline = \"2s\"\n\n[cache]\nstale_answer_after = \"1800ms\"\n";
    let mut config = parse(text)?;
    // What `--deadline 1s` does: the file's stale_answer_after is now too late, and
    // its line is the one to fix (the file's deadline line no longer holds).
    config.limits.deadline = Duration::from_secs(1);
    let error = config
        .validate()
        .expect_err("stale_answer_after >= deadline");
    assert_eq!(
        error.to_string(),
        "t.toml:5: cache.stale_answer_after (1s 800ms) must be less than limits.deadline \
         (1s): a stale answer must leave before the deadline; lower it, or write \"auto\" \
         for 90% of the deadline"
    );

    // Both set after loading: no line of the file is to blame.
    config.cache.stale_answer_after = Some(Duration::from_secs(1));
    let error = config.validate().expect_err("equal to the deadline");
    assert_eq!((error.file, error.line), (None, None), "{}", error.reason);

    // Only stale_answer_after set after loading: the file's deadline is one side of it.
    let mut config = parse(text)?;
    config.cache.stale_answer_after = Some(Duration::from_secs(3));
    let error = config.validate().expect_err("after the deadline");
    assert_eq!(error.line, Some(2), "{error}");

    // "auto" follows the shortened deadline.
    let mut config = parse("[cache]\nstale_answer_after = \"auto\"\n")?;
    config.limits.deadline = Duration::from_millis(500);
    config.limits.attempt_timeout = Duration::from_millis(400);
    assert_eq!(config.validate(), Ok(()));
    assert_eq!(config.stale_answer_after(), Duration::from_millis(450));
    Ok(())
}

#[test]
fn config_built_in_code_errors_have_no_file() {
    let mut config = Config::default();
    config.upstream.servers = vec![server("[::1]:53")];
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

#[test]
fn loopback_listeners_need_no_allow_list_and_others_accept_one() -> Result<(), ConfigError> {
    let config = parse("[listen]\naddresses = [\"127.0.0.53:53\", \"[::1]:5353\"]\n")?;
    assert_eq!(config.listen.allow, None);
    let config = parse(
        "[listen]\naddresses = [\"0.0.0.0:53\", \"[::]:53\"]\nallow = [\"::ffff:10.0.0.0/104\"]\n",
    )?;
    let allow = config.listen.allow.as_deref().unwrap_or_default();
    assert_eq!(allow.len(), 1);
    assert_eq!(allow[0].to_string(), "10.0.0.0/8");
    Ok(())
}

#[test]
fn an_open_listener_set_in_code_or_by_a_flag_names_no_file() -> Result<(), ConfigError> {
    // What `--listen 0.0.0.0:0` does to a file that listens on loopback.
    let mut config = parse("[listen]\naddresses = [\"127.0.0.1:53\"]\n")?;
    config.listen.addresses = vec![addr("0.0.0.0:0")];
    let error = config.validate().expect_err("open resolver");
    assert_eq!((error.file, error.line), (None, None));
    assert_eq!(
        error.reason,
        "listening on 0.0.0.0:0 needs an explicit [listen] allow list: without one punctual \
         would be an open resolver; list the client networks to serve, such as \
         allow = [\"192.168.1.0/24\"]"
    );
    config.listen.allow = Some(vec![value::parse_prefix("192.0.2.0/24").map_err(
        |reason| ConfigError {
            file: None,
            line: None,
            reason,
        },
    )?]);
    assert_eq!(config.validate(), Ok(()));
    Ok(())
}

#[test]
fn process_identity_is_looked_up_by_name() -> Result<(), ConfigError> {
    assert_eq!(Config::default().identity()?, None);
    let nobody = nix::unistd::User::from_name("nobody")
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("this system has no user nobody"));
    let identity = parse("[process]\nuser = \"nobody\"\n")?
        .identity()?
        .unwrap_or_else(|| panic!("an identity"));
    assert_eq!((identity.uid, identity.gid), (nobody.uid, nobody.gid));
    assert_eq!(identity.user.to_str(), Ok("nobody"));
    assert_eq!(
        identity.groups,
        crate::privileges::SupplementaryGroups::OfUser
    );
    let root_group = parse("[process]\nuser = \"nobody\"\ngroup = \"root\"\n")?
        .identity()?
        .unwrap_or_else(|| panic!("an identity"));
    assert_eq!(root_group.gid.as_raw(), 0);
    assert_eq!(
        root_group.groups,
        crate::privileges::SupplementaryGroups::None
    );

    let cases = [
        (
            "[process]\n\nuser = \"no-such-user-punctual\"\n",
            3,
            "process.user: no user named \"no-such-user-punctual\" on this system",
        ),
        ("[process]\nuser = \"\"\n", 2, "no user named \"\""),
        (
            "[process]\nuser = \"root\"\n",
            2,
            "process.user: \"root\" is root (uid 0)",
        ),
        (
            "[process]\nuser = \"nobody\"\ngroup = \"no-such-group-punctual\"\n",
            3,
            "process.group: no group named \"no-such-group-punctual\"",
        ),
    ];
    for (text, line, needle) in cases {
        let error = parse(text)?.identity().expect_err(text);
        assert_eq!(error.file.as_deref(), Some(Path::new("t.toml")), "{text}");
        assert_eq!(error.line, Some(line), "{text}: {error}");
        assert!(error.reason.contains(needle), "{text}: {error}");
    }
    Ok(())
}

/// A reload applies `[listen] allow` and the client guard's `[limits]` keys
/// itself; the rest of those sections still needs a restart, and says which.
#[test]
fn a_reload_applies_the_guard_keys_and_names_what_needs_a_restart() {
    let config = Config::default();
    let mut next = config.clone();
    next.listen.allow = Some(vec![
        "127.0.0.0/8"
            .parse::<crate::guard::Prefix>()
            .expect("a prefix"),
    ]);
    next.limits.client_qps = 10;
    next.limits.client_burst = 20;
    next.limits.rate_limit_action = RateLimitAction::Drop;
    next.limits.rate_limit_loopback = true;
    next.limits.rate_limit_clients = 100;
    next.limits.max_udp_query = 512;
    next.limits.tcp_max_connections_per_client = 4;
    assert_eq!(config.needs_restart(&next), Vec::<&str>::new());
    next.listen.addresses = vec!["127.0.0.2:53".parse().expect("an address")];
    next.limits.deadline = Duration::from_secs(1);
    assert_eq!(
        config.needs_restart(&next),
        vec!["[listen] addresses", "[limits]"]
    );
}

#[test]
fn process_threads_zero_means_one_per_cpu() {
    let default = parse("").expect("empty config");
    assert_eq!(default.worker_threads(), None);
    let one = parse("[process]\nthreads = 1\n").expect("one thread");
    assert_eq!(one.worker_threads(), Some(1));
    let most = parse("[process]\nthreads = 1024\n").expect("the most");
    assert_eq!(most.worker_threads(), Some(1024));
}
