//! The configuration tree: named defaults, parsing a TOML file into typed values,
//! cross-field validation, and errors that name the file and line to fix. The rest of
//! the daemon reads a validated [`Config`] and never sees TOML.
//!
//! Every section and key is optional; an unknown section or key is an error (a typo
//! must not silently fall back to a default). Typed values are parsed during
//! deserialization so toml's spans give each bad value its line; rules that relate
//! several keys live in [`Config::validate`], which main calls again after command-line
//! flags have overridden fields.

mod control;
mod guards;
mod local;
mod location;
mod process;
mod query_log;
mod server;
pub mod value;

use std::{
    collections::BTreeMap,
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    ops::Range,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;
use toml::de::DeTable;

use crate::guard::Prefix;
use crate::{resolv_conf, wire};
pub use control::{ControlConfig, DEFAULT_CONTROL_PORT};
pub use local::{LocalConfig, RecordKind, StaticRecordConfig};
pub use server::{DNS_OVER_TLS_PORT, UpstreamAddr, UpstreamTransport, parse_upstream_addr};
use value::DNS_PORT;

pub use guards::{MAX_UDP_QUERY_LIMIT, RateLimitAction};
pub use process::ProcessConfig;
pub use query_log::QueryLogConfig;

/// A deadline longer than this is a typo (a unit missing or wrong), not a wish: a stub
/// resolver's clients give up after a few seconds anyway.
const MAX_DEADLINE: Duration = Duration::from_secs(60 * 60);

/// RFC 2308 section 7.1: a resolver that caches a server failure "MUST NOT cache it
/// for longer than five (5) minutes".
const MAX_FAILURE_TTL: Duration = Duration::from_secs(5 * 60);

/// Stale answers carry TTLs in whole seconds: below 1s they would say 0 ("do not
/// cache"), and a stale answer trusted for more than a day defeats its purpose.
const STALE_TTL_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(24 * 60 * 60);

/// A smaller cache memory bound is a unit mistake ("64" meaning 64 MiB): it would
/// hold a few dozen answers.
const MIN_CACHE_BYTES: usize = 64 << 10;

/// The whole configuration. Build one in code with `Config::default()` and assign
/// fields; one loaded from a file also remembers the file and the line of every key
/// so that [`Config::validate`] can point at them.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub listen: ListenConfig,
    pub upstream: UpstreamConfig,
    pub limits: LimitsConfig,
    pub cache: CacheConfig,
    pub process: ProcessConfig,
    /// `[[forward]]` tables: split DNS. Default none.
    pub forward: Vec<ForwardConfig>,
    /// `[local]`: hosts files, single-label names, static records.
    pub local: LocalConfig,
    /// `[control]`: the operators' HTTP endpoint.
    pub control: ControlConfig,
    /// `[query_log]`: one JSON line per query, off by default.
    pub query_log: QueryLogConfig,
    #[serde(skip)]
    origin: Origin,
}

/// `[listen]`: where punctual answers queries.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListenConfig {
    /// UDP and TCP sockets to serve on. Default `127.0.0.1:53` and `[::1]:53`.
    #[serde(deserialize_with = "value::socket_addrs")]
    pub addresses: Vec<SocketAddr>,
    /// The clients that may query, as address prefixes; others get REFUSED with
    /// Extended DNS Error 18. `None` (no `allow` key, the default) means loopback
    /// clients only, and then every listen address must be a loopback one.
    #[serde(deserialize_with = "value::some_prefixes")]
    pub allow: Option<Vec<Prefix>>,
}

impl Default for ListenConfig {
    fn default() -> Self {
        ListenConfig {
            addresses: vec![
                SocketAddr::from((Ipv4Addr::LOCALHOST, DNS_PORT)),
                SocketAddr::from((Ipv6Addr::LOCALHOST, DNS_PORT)),
            ],
            allow: None,
        }
    }
}

/// `[upstream]`: the recursive resolvers punctual forwards to.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Upstream resolvers: `IP[:PORT]` (UDP, TCP when truncated), `tcp://IP[:PORT]`
    /// or `tls://IP[:PORT]#auth-name`; port 53 (853 for TLS) when none is given.
    /// Default empty, meaning "the nameservers of `resolv_conf`".
    #[serde(deserialize_with = "value::upstream_addrs")]
    pub servers: Vec<UpstreamAddr>,
    /// Read for nameservers when `servers` is empty. Default `/etc/resolv.conf`.
    pub resolv_conf: PathBuf,
    /// How the upstream for a query is chosen. Default [`Strategy::Fastest`].
    #[serde(deserialize_with = "value::strategy")]
    pub strategy: Strategy,
    /// Pass the AD (authenticated data) bit of upstream answers on to clients that set
    /// AD or DO (RFC 6840 section 5.8). Default false: whoever can spoof the path to
    /// the upstream could otherwise vouch for any data.
    pub trust_ad: bool,
    /// PEM file of the certificate authorities that `tls://` servers' certificates
    /// must chain to. Default none (written `""`): the system's trusted roots.
    #[serde(deserialize_with = "value::optional_path")]
    pub ca_file: Option<PathBuf>,
    /// How long a TCP or TLS connection to an upstream stays open with no query
    /// waiting on it. Default 10s.
    #[serde(deserialize_with = "value::duration")]
    pub idle_timeout: Duration,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            servers: Vec::new(),
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
            strategy: Strategy::default(),
            trust_ad: false,
            ca_file: None,
            idle_timeout: Duration::from_secs(10),
        }
    }
}

/// `[upstream] strategy`: which upstream a query goes to, and when another is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// The upstream with the lowest smoothed RTT (RFC 6298-style, per upstream); if it
    /// has not answered by its retransmission timeout the next best is asked too, and
    /// the first valid answer wins. A small share of queries also probe another
    /// upstream, so that one which has recovered is noticed.
    #[default]
    Fastest,
    /// The upstreams in configuration order, the next one after `limits.attempt_timeout`.
    Ordered,
    /// All upstreams at once; the first valid answer wins.
    Parallel,
}

impl Strategy {
    /// Every strategy, in the order the docs list them.
    pub const ALL: [Strategy; 3] = [Strategy::Fastest, Strategy::Ordered, Strategy::Parallel];

    /// The name the config file uses: "fastest", "ordered" or "parallel".
    pub const fn name(self) -> &'static str {
        match self {
            Strategy::Fastest => "fastest",
            Strategy::Ordered => "ordered",
            Strategy::Parallel => "parallel",
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

/// One `[[forward]]` table: names in `zone` and below it go to `servers` instead of
/// `[upstream]`; where zones nest, the longest matching zone wins.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardConfig {
    /// The zone, such as "corp.example" or "10.in-addr.arpa": lower case, without the
    /// trailing dot, never the root. A file may write it in any case, with or without
    /// the trailing dot.
    #[serde(deserialize_with = "value::zone")]
    pub zone: String,
    /// The servers for the zone, in the syntax of `[upstream] servers`; not empty.
    #[serde(deserialize_with = "value::upstream_addrs")]
    pub servers: Vec<UpstreamAddr>,
}

impl ForwardConfig {
    /// The zone as a lower-case DNS wire name: each label behind its length byte, then
    /// the root's 0, so "corp.test" is `4 c o r p 4 t e s t 0`. A trailing dot is
    /// ignored; expects a zone that [`Config::validate`] accepts.
    pub fn zone_wire(&self) -> Vec<u8> {
        let name = self.zone.strip_suffix('.').unwrap_or(&self.zone);
        let mut wire = Vec::with_capacity(name.len() + 2);
        for label in name.split('.').filter(|label| !label.is_empty()) {
            wire.push(label.len() as u8);
            wire.extend(label.bytes().map(|byte| byte.to_ascii_lowercase()));
        }
        wire.push(0);
        wire
    }
}

/// `[limits]`: deadlines and the bounds that make overload shed instead of pile up.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Time from receiving a client query to answering it, whatever happens. Default 2s.
    #[serde(deserialize_with = "value::duration")]
    pub deadline: Duration,
    /// Time one upstream attempt may take before the next is tried. Default 400ms.
    #[serde(deserialize_with = "value::duration")]
    pub attempt_timeout: Duration,
    /// Distinct upstream lookups in flight at once. Default 10000.
    #[serde(deserialize_with = "value::count")]
    pub max_inflight: usize,
    /// Clients waiting on one in-flight lookup. Default 1024.
    #[serde(deserialize_with = "value::count")]
    pub max_waiters: usize,
    /// Lookups in flight while every upstream server of their route is marked
    /// down; beyond it a lookup fails at once. Default 32.
    #[serde(deserialize_with = "value::count")]
    pub max_inflight_down: usize,
    /// Requested UDP receive buffer in bytes (`SO_RCVBUF`). Default 4 MiB.
    #[serde(deserialize_with = "value::size")]
    pub udp_recv_buffer: usize,
    /// Concurrent client TCP connections. Default 512.
    #[serde(deserialize_with = "value::count")]
    pub tcp_max_connections: usize,
    /// An idle client TCP connection is closed after this. Default 10s.
    #[serde(deserialize_with = "value::duration")]
    pub tcp_idle_timeout: Duration,
    /// Open TCP connections one client address may hold. Default 16.
    #[serde(deserialize_with = "value::count")]
    pub tcp_max_connections_per_client: usize,
    /// Once the first byte of a TCP message has arrived, the whole message must
    /// arrive within this, or the connection is closed. Default 2s.
    #[serde(deserialize_with = "value::duration")]
    pub tcp_read_timeout: Duration,
    /// A UDP query longer than this many bytes is dropped. Default 1232.
    #[serde(deserialize_with = "value::size")]
    pub max_udp_query: usize,
    /// A TCP length prefix above this many bytes closes the connection. Default 1232.
    #[serde(deserialize_with = "value::size")]
    pub max_tcp_query: usize,
    /// Queries per second one client (an IPv4 address, an IPv6 /64) may send; 0
    /// turns rate limiting off. Default 0.
    #[serde(deserialize_with = "value::count")]
    pub client_qps: usize,
    /// Queries a client may send at once above its rate (the bucket size). Default 100.
    #[serde(deserialize_with = "value::count")]
    pub client_burst: usize,
    /// What a client over its rate gets. Default [`RateLimitAction::Refuse`].
    #[serde(deserialize_with = "value::rate_limit_action")]
    pub rate_limit_action: RateLimitAction,
    /// Rate-limit loopback clients too. Default false.
    pub rate_limit_loopback: bool,
    /// Clients whose rate is tracked at once; the least recently seen is forgotten
    /// first. Default 65536.
    #[serde(deserialize_with = "value::count")]
    pub rate_limit_clients: usize,
}

impl LimitsConfig {
    /// These limits with the keys a reload applies (the client guard's) set to
    /// their defaults, for telling whether anything else changed.
    fn without_guard_keys(&self) -> LimitsConfig {
        let defaults = LimitsConfig::default();
        LimitsConfig {
            client_qps: defaults.client_qps,
            client_burst: defaults.client_burst,
            rate_limit_action: defaults.rate_limit_action,
            rate_limit_loopback: defaults.rate_limit_loopback,
            rate_limit_clients: defaults.rate_limit_clients,
            max_udp_query: defaults.max_udp_query,
            tcp_max_connections_per_client: defaults.tcp_max_connections_per_client,
            ..self.clone()
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            deadline: Duration::from_secs(2),
            attempt_timeout: Duration::from_millis(400),
            max_inflight: 10_000,
            max_waiters: 1_024,
            max_inflight_down: 32,
            udp_recv_buffer: 4 << 20,
            tcp_max_connections: 512,
            tcp_idle_timeout: Duration::from_secs(10),
            tcp_max_connections_per_client: 16,
            tcp_read_timeout: Duration::from_secs(2),
            max_udp_query: usize::from(wire::EDNS_PAYLOAD),
            max_tcp_query: usize::from(wire::EDNS_PAYLOAD),
            client_qps: 0,
            client_burst: 100,
            rate_limit_action: RateLimitAction::Refuse,
            rate_limit_loopback: false,
            rate_limit_clients: 65_536,
        }
    }
}

/// `[cache]`: the answer cache, negative and failure caching, serve-stale, prefetch.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Cached answers kept at most. Default 100000.
    #[serde(deserialize_with = "value::count")]
    pub entries: usize,
    /// Bytes the cached answers may take at most; whichever of this and `entries` is
    /// reached first evicts the least recently used. Default 64 MiB.
    #[serde(deserialize_with = "value::size")]
    pub max_bytes: usize,
    /// TTLs below this are raised to it. Default 0s (honour the record's TTL).
    #[serde(deserialize_with = "value::duration")]
    pub min_ttl: Duration,
    /// TTLs above this are lowered to it. Default 1d.
    #[serde(deserialize_with = "value::duration")]
    pub max_ttl: Duration,
    /// Cap on how long an NXDOMAIN or NODATA answer is cached: its negative TTL is
    /// min(SOA TTL, SOA MINIMUM) (RFC 2308 section 5), lowered to this. Default 1h.
    #[serde(deserialize_with = "value::duration")]
    pub negative_max_ttl: Duration,
    /// How long a failed lookup (upstream SERVFAIL or REFUSED, timeout, network error)
    /// is remembered per question and answered at once with SERVFAIL while a
    /// background lookup retries. Zero turns the failure cache off. Default 5s.
    #[serde(deserialize_with = "value::duration")]
    pub failure_ttl: Duration,
    /// Serve expired answers when the upstream fails or is slow (RFC 8767). Default true.
    pub serve_stale: bool,
    /// How long past its expiry an entry may be served stale. Default 1d.
    #[serde(deserialize_with = "value::duration")]
    pub stale_max_age: Duration,
    /// How long a query waits for the upstream before a stale answer is sent instead
    /// (RFC 8767's client response timer). `None` ("auto" in the file) means 90% of
    /// `limits.deadline`; read the effective value with [`Config::stale_answer_after`].
    #[serde(deserialize_with = "value::duration_or_auto")]
    pub stale_answer_after: Option<Duration>,
    /// The TTL put on stale answers, in whole seconds on the wire. Default 30s
    /// (RFC 8767 section 4).
    #[serde(deserialize_with = "value::duration")]
    pub stale_ttl: Duration,
    /// A hit on an entry in the last 10% of its original TTL (a TTL of 10s or more)
    /// refreshes it in the background. Default true.
    pub prefetch: bool,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            entries: 100_000,
            max_bytes: 64 << 20,
            min_ttl: Duration::ZERO,
            max_ttl: Duration::from_secs(24 * 60 * 60),
            negative_max_ttl: Duration::from_secs(60 * 60),
            failure_ttl: Duration::from_secs(5),
            serve_stale: true,
            stale_max_age: Duration::from_secs(24 * 60 * 60),
            stale_answer_after: None,
            stale_ttl: Duration::from_secs(30),
            prefetch: true,
        }
    }
}

/// A configuration problem, with the file and line to fix when they are known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}", Location(.file, .line), .reason)]
pub struct ConfigError {
    pub file: Option<PathBuf>,
    pub line: Option<usize>,
    pub reason: String,
}

impl ConfigError {
    fn in_file(file: &Path, line: Option<usize>, reason: String) -> Self {
        ConfigError {
            file: Some(file.to_path_buf()),
            line,
            reason,
        }
    }
}

/// Renders the "FILE:LINE: " or "FILE: " prefix of a [`ConfigError`].
struct Location<'a>(&'a Option<PathBuf>, &'a Option<usize>);

impl fmt::Display for Location<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.0, self.1) {
            (Some(file), Some(line)) => write!(formatter, "{}:{line}: ", file.display()),
            (Some(file), None) => write!(formatter, "{}: ", file.display()),
            (None, _) => Ok(()),
        }
    }
}

/// Where a loaded Config came from. It takes no part in equality: a Config loaded from
/// a file equals one built in code with the same values.
#[derive(Clone, Default)]
struct Origin(Option<Box<Source>>);

#[derive(Clone)]
struct Source {
    file: PathBuf,
    /// The line of every key and array element ("upstream.servers[1]") in the file.
    lines: BTreeMap<String, usize>,
    /// The values as the file gave them, to tell whether a field was overridden since.
    loaded: Config,
}

impl PartialEq for Origin {
    fn eq(&self, _: &Origin) -> bool {
        true
    }
}

impl fmt::Debug for Origin {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.0.as_ref().map(|source| &source.file);
        formatter.debug_tuple("Origin").field(&file).finish()
    }
}

impl Config {
    /// Reads, parses and validates a file. Errors carry the file and line.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| {
            ConfigError::in_file(path, None, format!("cannot read config: {error}"))
        })?;
        Config::from_toml(&text, path)
    }

    /// Parses text as if read from `origin` (used by load and by tests), then validates.
    pub fn from_toml(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        let at = |span: Option<Range<usize>>, reason: String| {
            let line = span.map(|span| location::line_at(text, span.start));
            ConfigError::in_file(origin, line, reason)
        };
        let root = DeTable::parse(text)
            .map_err(|error| at(error.span(), format!("invalid TOML: {}", error.message())))?;
        let index = location::Index::new(root.get_ref());
        let mut config =
            Config::deserialize(toml::de::Deserializer::from(root)).map_err(|error| {
                let span = error.span();
                let reason = match span.as_ref().and_then(|span| index.key_at(span.start)) {
                    Some(key) => format!("{key}: {}", error.message()),
                    None => error.message().to_owned(),
                };
                at(span, reason)
            })?;
        let loaded = config.clone();
        config.origin = Origin(Some(Box::new(Source {
            file: origin.to_path_buf(),
            lines: index.lines(text),
            loaded,
        })));
        config.validate()?;
        Ok(config)
    }

    /// Cross-field rules; call again after CLI flags override fields. Must be callable
    /// on a Config built in code.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_listen()?;
        self.validate_upstream()?;
        self.validate_forward()?;
        self.validate_limits()?;
        self.validate_cache()?;
        self.validate_stale()?;
        self.validate_allow()?;
        self.validate_guard_limits()?;
        self.validate_process()?;
        self.validate_query_log()?;
        self.validate_local()?;
        self.validate_control()
    }

    /// How long a query waits for the upstream before a stale answer may be sent:
    /// `cache.stale_answer_after` if set, else 90% of `limits.deadline` (RFC 8767
    /// section 5 suggests a 1.8s client response timer; that is 90% of our 2s default).
    pub fn stale_answer_after(&self) -> Duration {
        self.cache
            .stale_answer_after
            .unwrap_or_else(|| nine_tenths(self.limits.deadline))
    }

    /// The sections that differ from `next` and that a reload does not apply
    /// (sockets, limits, the cache's shape, the process, the control endpoint):
    /// they need a restart.
    pub fn needs_restart(&self, next: &Config) -> Vec<&'static str> {
        let mut sections = Vec::new();
        // `allow` and the guard's limits are applied by a reload (guard::Guard::replace).
        if self.listen.addresses != next.listen.addresses {
            sections.push("[listen] addresses");
        }
        if self.limits.without_guard_keys() != next.limits.without_guard_keys() {
            sections.push("[limits]");
        }
        if self.cache != next.cache {
            sections.push("[cache]");
        }
        if self.process != next.process {
            sections.push("[process]");
        }
        if self.control != next.control {
            sections.push("[control]");
        }
        sections
    }

    /// The upstream servers to use: `upstream.servers` if non-empty, else the
    /// nameservers of `upstream.resolv_conf` (port 53), skipping with a warning any that
    /// is one of our own listen addresses. Errors when no upstream is left or the file
    /// cannot be read.
    pub fn upstreams(&self) -> Result<Vec<UpstreamAddr>, ConfigError> {
        if !self.upstream.servers.is_empty() {
            return Ok(self.upstream.servers.clone());
        }
        let path = &self.upstream.resolv_conf;
        let mut usable: Vec<SocketAddr> = Vec::new();
        let mut ourselves: Vec<SocketAddr> = Vec::new();
        for (line, nameserver) in resolv_conf::read_nameservers(path)? {
            if let Some(listen) = self.own_listener(nameserver) {
                // The usual case: resolv.conf points at 127.0.0.1 because punctual is
                // the system resolver. Forwarding there would loop until the deadline.
                tracing::warn!(
                    file = %path.display(), line, %nameserver, %listen,
                    "skipping resolv.conf nameserver: it is punctual itself"
                );
                ourselves.push(nameserver);
            } else if !usable.contains(&nameserver) {
                usable.push(nameserver);
            }
        }
        if !usable.is_empty() {
            return Ok(usable.into_iter().map(UpstreamAddr::udp).collect());
        }
        let reason = if ourselves.is_empty() {
            "names no usable nameserver and [upstream] servers is empty, so punctual has no \
             upstream; set [upstream] servers in the punctual config"
                .to_owned()
        } else {
            format!(
                "names only punctual itself ({}), so forwarding would loop; set \
                 [upstream] servers in the punctual config to the resolvers to ask",
                join(&ourselves)
            )
        };
        Err(ConfigError::in_file(path, None, reason))
    }

    fn validate_listen(&self) -> Result<(), ConfigError> {
        let addresses = &self.listen.addresses;
        let same = self.unchanged(|config| &config.listen.addresses);
        if addresses.is_empty() {
            return Err(self.invalid(
                &[("listen.addresses", same)],
                "listen.addresses is empty; punctual needs an address to answer on".to_owned(),
            ));
        }
        for (index, address) in addresses.iter().enumerate() {
            if addresses[..index].contains(address) {
                let key = format!("listen.addresses[{index}]");
                return Err(
                    self.invalid(&[(&key, same)], format!("{key}: {address} is listed twice"))
                );
            }
        }
        Ok(())
    }

    fn validate_upstream(&self) -> Result<(), ConfigError> {
        let same = self.unchanged(|config| &config.upstream.servers)
            && self.unchanged(|config| &config.listen.addresses);
        for (index, server) in self.upstream.servers.iter().enumerate() {
            if let Some(problem) = self.server_problem(server) {
                let key = format!("upstream.servers[{index}]");
                return Err(self.invalid(&[(&key, same)], format!("{key}: {problem}")));
            }
        }
        if self.upstream.idle_timeout.is_zero() {
            return Err(self.invalid(
                &[(
                    "upstream.idle_timeout",
                    self.unchanged(|config| &config.upstream.idle_timeout),
                )],
                "upstream.idle_timeout must be more than 0s: a connection closed as soon \
                 as it is idle cannot be reused"
                    .to_owned(),
            ));
        }
        if let Some(path) = &self.upstream.ca_file {
            // Checked here so that `check` catches it; the certificates themselves
            // are parsed when the server starts.
            if let Err(error) = std::fs::metadata(path) {
                return Err(self.invalid(
                    &[(
                        "upstream.ca_file",
                        self.unchanged(|config| &config.upstream.ca_file),
                    )],
                    format!("upstream.ca_file: cannot read {}: {error}", path.display()),
                ));
            }
        }
        Ok(())
    }

    /// `[[forward]]` tables: a valid zone, not the root and not twice; servers that
    /// pass the rules of `[upstream] servers`.
    fn validate_forward(&self) -> Result<(), ConfigError> {
        let same = self.unchanged(|config| &config.forward);
        let listen_same = same && self.unchanged(|config| &config.listen.addresses);
        let mut zones: Vec<String> = Vec::with_capacity(self.forward.len());
        for (index, forward) in self.forward.iter().enumerate() {
            let key = format!("forward[{index}].zone");
            let zone = value::parse_zone(&forward.zone)
                .map_err(|problem| self.invalid(&[(&key, same)], format!("{key}: {problem}")))?;
            if let Some(first) = zones.iter().position(|seen| *seen == zone) {
                return Err(self.invalid(
                    &[(&key, same)],
                    format!("{key}: zone {zone:?} is already forwarded by forward[{first}]"),
                ));
            }
            zones.push(zone);
            if forward.servers.is_empty() {
                let key = format!("forward[{index}].servers");
                return Err(self.invalid(
                    &[(&key, same), (&format!("forward[{index}]"), same)],
                    format!("{key} is empty; a forward zone needs a server to ask"),
                ));
            }
            for (server_index, server) in forward.servers.iter().enumerate() {
                if let Some(problem) = self.server_problem(server) {
                    let key = format!("forward[{index}].servers[{server_index}]");
                    return Err(self.invalid(&[(&key, listen_same)], format!("{key}: {problem}")));
                }
            }
        }
        Ok(())
    }

    /// Why `server` cannot be forwarded to, if it cannot: no address to send to, or
    /// one of our own listen addresses.
    fn server_problem(&self, server: &UpstreamAddr) -> Option<String> {
        let server = server.addr;
        if server.port() == 0 || server.ip().is_unspecified() {
            return Some(format!("{server} is not an address queries can be sent to"));
        }
        self.own_listener(server).map(|listen| {
            format!(
                "{server} is punctual's own listen address {listen}; forwarding \
                 there would send queries back to punctual itself"
            )
        })
    }

    fn validate_limits(&self) -> Result<(), ConfigError> {
        let limits = &self.limits;
        let deadline = (
            "limits.deadline",
            self.unchanged(|config| &config.limits.deadline),
        );
        if limits.deadline.is_zero() || limits.deadline > MAX_DEADLINE {
            return Err(self.invalid(
                &[deadline],
                format!(
                    "limits.deadline must be more than 0s and at most {}, got {}",
                    human(MAX_DEADLINE),
                    human(limits.deadline)
                ),
            ));
        }
        let attempt = (
            "limits.attempt_timeout",
            self.unchanged(|config| &config.limits.attempt_timeout),
        );
        if limits.attempt_timeout.is_zero() || limits.attempt_timeout > limits.deadline {
            return Err(self.invalid(
                &[attempt, deadline],
                format!(
                    "limits.attempt_timeout must be more than 0s and at most limits.deadline \
                     ({}), got {}",
                    human(limits.deadline),
                    human(limits.attempt_timeout)
                ),
            ));
        }
        let counts = [
            (
                "limits.max_inflight",
                limits.max_inflight,
                self.unchanged(|config| &config.limits.max_inflight),
            ),
            (
                "limits.max_waiters",
                limits.max_waiters,
                self.unchanged(|config| &config.limits.max_waiters),
            ),
            (
                "limits.max_inflight_down",
                limits.max_inflight_down,
                self.unchanged(|config| &config.limits.max_inflight_down),
            ),
            (
                "limits.tcp_max_connections",
                limits.tcp_max_connections,
                self.unchanged(|config| &config.limits.tcp_max_connections),
            ),
        ];
        for (key, count, same) in counts {
            if count == 0 {
                return Err(self.invalid(&[(key, same)], format!("{key} must be at least 1")));
            }
        }
        if limits.tcp_idle_timeout.is_zero() {
            return Err(self.invalid(
                &[(
                    "limits.tcp_idle_timeout",
                    self.unchanged(|config| &config.limits.tcp_idle_timeout),
                )],
                "limits.tcp_idle_timeout must be more than 0s".to_owned(),
            ));
        }
        Ok(())
    }

    fn validate_cache(&self) -> Result<(), ConfigError> {
        let cache = &self.cache;
        if cache.entries == 0 {
            return Err(self.invalid(
                &[self.key("cache.entries", |config| &config.cache.entries)],
                "cache.entries must be at least 1".to_owned(),
            ));
        }
        if cache.max_bytes < MIN_CACHE_BYTES {
            return Err(self.invalid(
                &[self.key("cache.max_bytes", |config| &config.cache.max_bytes)],
                format!(
                    "cache.max_bytes must be at least 64KiB ({MIN_CACHE_BYTES} bytes), got {} \
                     bytes; write a unit, such as \"64MiB\"",
                    cache.max_bytes
                ),
            ));
        }
        if cache.min_ttl > cache.max_ttl {
            return Err(self.invalid(
                &[
                    self.key("cache.min_ttl", |config| &config.cache.min_ttl),
                    self.key("cache.max_ttl", |config| &config.cache.max_ttl),
                ],
                format!(
                    "cache.min_ttl ({}) must not be more than cache.max_ttl ({})",
                    human(cache.min_ttl),
                    human(cache.max_ttl)
                ),
            ));
        }
        if cache.failure_ttl > MAX_FAILURE_TTL {
            return Err(self.invalid(
                &[self.key("cache.failure_ttl", |config| &config.cache.failure_ttl)],
                format!(
                    "cache.failure_ttl must be at most {} (RFC 2308 section 7), got {}; \
                     \"0s\" turns the failure cache off",
                    human(MAX_FAILURE_TTL),
                    human(cache.failure_ttl)
                ),
            ));
        }
        Ok(())
    }

    /// Serve-stale (RFC 8767). stale_answer_after and stale_ttl are checked whether or
    /// not serve_stale is on, so that turning it on later cannot expose a broken value.
    fn validate_stale(&self) -> Result<(), ConfigError> {
        let cache = &self.cache;
        if cache.serve_stale && cache.stale_max_age.is_zero() {
            return Err(self.invalid(
                &[
                    self.key("cache.stale_max_age", |config| &config.cache.stale_max_age),
                    self.key("cache.serve_stale", |config| &config.cache.serve_stale),
                ],
                "cache.stale_max_age must be more than 0s while cache.serve_stale is on; \
                 to serve no stale answers, set serve_stale = false"
                    .to_owned(),
            ));
        }
        if let Some(after) = cache.stale_answer_after {
            let key = self.key("cache.stale_answer_after", |config| {
                &config.cache.stale_answer_after
            });
            if after.is_zero() {
                return Err(self.invalid(
                    &[key],
                    "cache.stale_answer_after must be more than 0s, or \"auto\" for 90% of \
                     limits.deadline"
                        .to_owned(),
                ));
            }
            let deadline = self.limits.deadline;
            if after >= deadline {
                // Also reached when --deadline shortens a deadline below the file's
                // value: the file's line is still blamed, the flag's value named.
                return Err(self.invalid(
                    &[
                        key,
                        self.key("limits.deadline", |config| &config.limits.deadline),
                    ],
                    format!(
                        "cache.stale_answer_after ({}) must be less than limits.deadline \
                         ({}): a stale answer must leave before the deadline; lower it, or \
                         write \"auto\" for 90% of the deadline",
                        human(after),
                        human(deadline)
                    ),
                ));
            }
        }
        if !STALE_TTL_RANGE.contains(&cache.stale_ttl) {
            return Err(self.invalid(
                &[self.key("cache.stale_ttl", |config| &config.cache.stale_ttl)],
                format!(
                    "cache.stale_ttl must be at least {} and at most {}, got {} \
                     (RFC 8767 section 4 recommends 30s)",
                    human(*STALE_TTL_RANGE.start()),
                    human(*STALE_TTL_RANGE.end()),
                    human(cache.stale_ttl)
                ),
            ));
        }
        Ok(())
    }

    /// The listen address that would receive queries sent to `upstream`, if any: the
    /// exact address, or a wildcard listener on the same port when `upstream` is a
    /// loopback address. `::` counts for IPv4 loopback too (a dual-stack socket takes
    /// both); `0.0.0.0` only for IPv4. Addresses of other local interfaces are not
    /// detected: that would need the interface list.
    pub fn own_listener(&self, upstream: SocketAddr) -> Option<SocketAddr> {
        let target = upstream.ip().to_canonical();
        self.listen.addresses.iter().copied().find(|listen| {
            let wildcard_takes_it = match listen.ip().to_canonical() {
                IpAddr::V4(ip) => ip.is_unspecified() && target.is_loopback() && target.is_ipv4(),
                IpAddr::V6(ip) => ip.is_unspecified() && target.is_loopback(),
            };
            listen.port() == upstream.port()
                && (listen.ip().to_canonical() == target || wildcard_takes_it)
        })
    }

    /// Whether the field `field` selects still holds the value the file gave it (true
    /// for a Config built in code: there is no file to contradict).
    fn unchanged<T: PartialEq>(&self, field: impl Fn(&Config) -> &T) -> bool {
        self.origin
            .0
            .as_ref()
            .is_none_or(|source| field(self) == field(&source.loaded))
    }

    /// A key for [`Config::invalid`]: its dotted name and whether `field` still holds
    /// the file's value.
    fn key<'k, T: PartialEq>(
        &self,
        name: &'k str,
        field: impl Fn(&Config) -> &T,
    ) -> (&'k str, bool) {
        (name, self.unchanged(field))
    }

    /// A validation error blamed on the first of `keys` (key, unchanged since loading)
    /// that the file sets and that was not overridden since, so a value set on the
    /// command line is never pinned on a line of the file. If a key was overridden and
    /// none can be blamed, the error names no file.
    fn invalid(&self, keys: &[(&str, bool)], reason: String) -> ConfigError {
        let Some(source) = &self.origin.0 else {
            return ConfigError {
                file: None,
                line: None,
                reason,
            };
        };
        let line = keys
            .iter()
            .filter(|(_, unchanged)| *unchanged)
            .find_map(|(key, _)| source.lines.get(*key).copied());
        if line.is_some() || keys.iter().all(|(_, unchanged)| *unchanged) {
            ConfigError::in_file(&source.file, line, reason)
        } else {
            ConfigError {
                file: None,
                line: None,
                reason,
            }
        }
    }
}

fn human(duration: Duration) -> humantime::FormattedDuration {
    humantime::format_duration(duration)
}

/// 90% of `duration`, rounded down to the nanosecond, without overflow.
fn nine_tenths(duration: Duration) -> Duration {
    let tenth = duration / 10;
    // The part `tenth` dropped is under 10ns; nine tenths of it, rounded down.
    let rest = duration - tenth * 10;
    tenth * 9 + rest * 9 / 10
}

fn join(addresses: &[SocketAddr]) -> String {
    let texts: Vec<String> = addresses.iter().map(ToString::to_string).collect();
    texts.join(", ")
}

#[cfg(test)]
mod tests;
