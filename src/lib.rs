//! punctual: a local caching stub DNS resolver that answers every query before
//! its deadline, whatever its upstream does.
//!
//! Layout (a query flows top to bottom):
//! - [`config`], [`resolv_conf`]: the TOML config, validated before anything binds.
//! - [`listen`]: UDP and TCP sockets (socket2) and their serving loops.
//! - [`guard`]: what a client may send before any work is done for it: the
//!   allow list, per-client rate limits, TCP connection and message limits.
//! - [`handler`]: one query's path, bytes in, bytes out: validate → local →
//!   cache → coalesce → upstream, inside one deadline.
//! - [`local`]: answers that never leave the machine: static records, hosts
//!   files (watched), localhost and the other special names, ANY.
//! - [`query`], [`response`]: parsing a client's query; responses we synthesize.
//! - [`cache`]: the bounded TTL cache of prepared answers (seconds to days).
//! - [`inflight`]: the coalescing table of lookups and their waiters (milliseconds).
//! - [`upstream`]: the only place that talks to upstream servers and retries.
//! - [`answer`]: an upstream reply prepared once, rendered per client by patching.
//! - [`wire`]: the few audited helpers that touch raw DNS bytes.
//! - [`error`]: lookup failures and the RCODE/EDE each maps to.
//! - [`metrics`]: the counters operators and tests read.
//! - [`control`]: the operators' HTTP endpoint: metrics, health, stats, flush.
//! - [`query_log`]: the optional JSON line per query, written off the query path.
//! - [`privileges`]: switching to the `[process]` user once the sockets are bound.
//! - [`systemd`]: readiness, reload and stop notifications, the watchdog and
//!   socket activation, each only when systemd's variables are set.
//!
//! Operator commands, beside the daemon:
//! - [`client`]: a small DNS client (one question, UDP or TCP) for `punctual query`.
//! - [`doctor`]: `punctual doctor`'s checks of glibc, resolv.conf, port 53 and
//!   whether punctual and its upstreams answer.
//!
//! [`systemd::activation::take`], [`Server::bind_with`], [`privileges::drop_to`],
//! then [`Server::run`] is the whole daemon; `main.rs` only adds the command
//! line, logging and signals.

#![forbid(unsafe_code)]

pub mod answer;
pub mod cache;
pub mod client;
pub mod config;
pub mod control;
pub mod doctor;
pub mod error;
pub mod guard;
pub mod handler;
pub mod inflight;
pub mod listen;
pub mod local;
pub mod metrics;
pub mod privileges;
pub mod query;
pub mod query_log;
pub mod resolv_conf;
pub mod response;
pub mod systemd;
pub mod upstream;
pub mod wire;

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use thiserror::Error;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::answer::{TtlPolicy, whole_seconds};
use crate::cache::CacheLimits;
use crate::config::{Config, ConfigError, UpstreamAddr, UpstreamTransport};
use crate::control::Control;
use crate::guard::{Guard, GuardLimits};
use crate::handler::{Resolver, ResolverLimits};
use crate::inflight::InflightGauges;
use crate::listen::{BindError, Listeners, TcpLimits};
use crate::local::watch::{HostsFiles, watch_hosts};
use crate::local::{Hosts, LocalAnswers};
use crate::metrics::Metrics;
use crate::query_log::{QueryLog, QueryLogError, QueryLogWriter};
use crate::systemd::activation::Inherited;
use crate::upstream::{Routes, TlsSetupError, Upstream, UpstreamOptions, tls_client_config};

/// After the deadline, how long shutdown waits for the last responses to be sent.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);

#[derive(Debug, Error)]
pub enum ServerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
    #[error("cannot bind the control endpoint on {address}: {source}")]
    Control {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    QueryLog(#[from] QueryLogError),
    #[error("cannot serve on the sockets systemd passed: {0}")]
    Inherited(#[source] std::io::Error),
    #[error("cannot start a UDP serving thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// A resolver bound to its sockets, not yet serving.
pub struct Server {
    resolver: Arc<Resolver>,
    guard: Arc<Guard>,
    listeners: Listeners,
    tcp_limits: TcpLimits,
    /// The config in use; a reload replaces it. The watchers read their
    /// files' names from it.
    config: Arc<ArcSwap<Config>>,
    /// The hosts files as read at start, then watched.
    hosts_files: HostsFiles,
    hosts: Arc<Hosts>,
    /// The operators' endpoint, unless `[control] address` is off.
    control: Option<Control>,
    query_log: Option<(QueryLog, QueryLogWriter)>,
}

impl Server {
    /// Validates `config`, resolves the upstream list and binds every listen
    /// address (UDP and TCP). Must be called inside a tokio runtime.
    pub fn bind(config: &Config) -> Result<Server, ServerError> {
        Server::bind_with(config, Inherited::default())
    }

    /// [`Server::bind`], but when systemd passed sockets (`inherited`, from
    /// [`systemd::activation::take`]) serves on exactly those and binds none of
    /// `[listen] addresses`. Also opens the query log and connects the systemd
    /// notify socket: everything that may need the privileges dropped later.
    pub fn bind_with(config: &Config, inherited: Inherited) -> Result<Server, ServerError> {
        config.validate()?;
        let upstreams = config.upstreams()?;
        let limits = &config.limits;
        let hosts_files = HostsFiles::load(&config.local.hosts_files);
        let hosts = Arc::new(Hosts::new(hosts_files.table()));
        let resolver = build_resolver(config, upstreams, Arc::clone(&hosts))?;
        let metrics = Arc::clone(resolver.metrics());
        let query_log = QueryLog::open(&config.query_log, Arc::clone(&metrics))?;
        let guard = Arc::new(Guard::new(GuardLimits::from_config(config), metrics));
        let listeners = if inherited.is_empty() {
            Listeners::bind(&config.listen.addresses, limits.udp_recv_buffer)?
        } else {
            tracing::info!(
                "socket activation: serving on the sockets systemd passed; [listen] addresses not bound"
            );
            Listeners::inherit(inherited).map_err(ServerError::Inherited)?
        };
        systemd::notify::connect();
        let control = match config.control.address {
            None => None,
            Some(address) => {
                let control = Control::bind(address, config.control.allow.as_deref())
                    .map_err(|source| ServerError::Control { address, source })?;
                if let Ok(bound) = control.local_addr() {
                    tracing::info!("control endpoint on http://{bound}");
                }
                Some(control)
            }
        };
        Ok(Server {
            resolver,
            guard,
            listeners,
            tcp_limits: TcpLimits {
                max_connections: limits.tcp_max_connections,
                idle_timeout: limits.tcp_idle_timeout,
                read_timeout: limits.tcp_read_timeout,
                max_message: limits.max_tcp_query,
            },
            config: Arc::new(ArcSwap::from_pointee(config.clone())),
            hosts_files,
            hosts,
            control,
            query_log,
        })
    }

    /// Where the control endpoint listens (the real port for `:0`).
    pub fn control_addr(&self) -> Option<SocketAddr> {
        self.control
            .as_ref()
            .and_then(|control| control.local_addr().ok())
    }

    pub fn udp_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.udp_addrs()
    }

    pub fn tcp_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.tcp_addrs()
    }

    /// A handle for reloading the config while the server runs.
    pub fn reloader(&self) -> Reloader {
        Reloader {
            resolver: Arc::clone(&self.resolver),
            guard: Arc::clone(&self.guard),
            config: Arc::clone(&self.config),
            hosts: Arc::clone(&self.hosts),
        }
    }

    /// A handle for reading counters while the server runs.
    pub fn stats(&self) -> Stats {
        Stats(Arc::clone(&self.resolver))
    }

    /// Serves until `shutdown` is cancelled, then stops accepting, lets every
    /// query in flight be answered (they all end by their deadline) and returns.
    /// Under systemd, says READY=1 once serving and STOPPING=1 when shutdown
    /// starts, and pings the watchdog meanwhile (see [`systemd`]).
    ///
    /// Fails only when a UDP serving thread cannot be started; whatever was
    /// started by then is stopped first.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ServerError> {
        let tasks = TaskTracker::new();
        let deadline = self.resolver.deadline();
        let serving = serving_status(&self.listeners);
        let (query_log, query_log_writer) = self.query_log.unzip();
        let spawned = self.listeners.spawn(
            &self.resolver,
            &self.guard,
            query_log.as_ref(),
            self.tcp_limits,
            &tasks,
            &shutdown,
        );
        drop(query_log);
        if let Err(source) = spawned {
            shutdown.cancel();
            tasks.close();
            tasks.wait().await;
            return Err(ServerError::Thread(source));
        }
        systemd::ready(&serving);
        let watchdog = systemd::watchdog::ping_interval_from_env().map(|every| {
            tracing::info!(?every, "pinging the systemd watchdog");
            tokio::spawn(systemd::watchdog::run(every, Arc::clone(&self.resolver)))
        });
        let (resolver, config) = (Arc::clone(&self.resolver), Arc::clone(&self.config));
        tokio::spawn(upstream::watch_resolv_conf(
            move || (config.load_full(), resolver.routes()),
            shutdown.clone(),
        ));
        let config = Arc::clone(&self.config);
        tokio::spawn(watch_hosts(
            self.hosts_files,
            self.hosts,
            move || config.load().local.hosts_files.clone(),
            shutdown.clone(),
        ));
        if let Some(control) = self.control {
            let stats = Stats(Arc::clone(&self.resolver));
            tokio::spawn(control.serve(stats, shutdown.clone()));
        }
        shutdown.cancelled().await;
        systemd::stopping();
        tasks.close();
        if tokio::time::timeout(deadline + SHUTDOWN_GRACE, tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                remaining = tasks.len(),
                "shutdown grace period over; exiting"
            );
        }
        if let Some(watchdog) = watchdog {
            watchdog.abort();
        }
        if let Some(writer) = query_log_writer {
            writer.close().await;
        }
        log_final_counters(&self.resolver);
        Ok(())
    }
}

/// The resolver `config` (validated) describes, asking `upstreams` and
/// answering from `hosts`, without binding or sending anything: sockets are
/// only opened when a lookup runs. [`Server::bind_with`] serves it; the fuzz
/// targets drive its `handle` directly.
pub fn build_resolver(
    config: &Config,
    upstreams: Vec<UpstreamAddr>,
    hosts: Arc<Hosts>,
) -> Result<Arc<Resolver>, ServerError> {
    let limits = &config.limits;
    let cache = &config.cache;
    let metrics = Arc::new(Metrics::default());
    let routes = build_routes(config, upstreams, &metrics)?;
    let local = LocalAnswers::new(config, hosts);
    Ok(Resolver::new(
        routes,
        local,
        ResolverLimits {
            deadline: limits.deadline,
            max_inflight: limits.max_inflight,
            max_waiters: limits.max_waiters,
            cache: CacheLimits {
                entries: NonZeroUsize::new(cache.entries).unwrap_or(NonZeroUsize::MIN),
                max_bytes: cache.max_bytes,
                ttl: TtlPolicy::new(cache.min_ttl, cache.max_ttl, cache.negative_max_ttl),
                failure_ttl: cache.failure_ttl,
                serve_stale: cache.serve_stale,
                stale_max_age: cache.stale_max_age,
                prefetch: cache.prefetch,
            },
            stale_answer_after: config.stale_answer_after(),
            stale_ttl: whole_seconds(cache.stale_ttl),
        },
        metrics,
    ))
}

/// The upstream pools of `config`: `[upstream]` with `upstreams`, then one per
/// `[[forward]]` zone.
fn build_routes(
    config: &Config,
    upstreams: Vec<UpstreamAddr>,
    metrics: &Arc<Metrics>,
) -> Result<Routes, ServerError> {
    tracing::info!(upstreams = %list(&upstreams), "upstream servers");
    let options = UpstreamOptions {
        strategy: config.upstream.strategy,
        attempt_timeout: config.limits.attempt_timeout,
        max_rto: config.limits.deadline,
        trust_ad: config.upstream.trust_ad,
        idle_timeout: config.upstream.idle_timeout,
        max_inflight_down: config.limits.max_inflight_down,
    };
    let any_tls = upstreams
        .iter()
        .chain(config.forward.iter().flat_map(|forward| &forward.servers))
        .any(|server| matches!(server.transport, UpstreamTransport::Tls { .. }));
    let tls = tls_client_config(config.upstream.ca_file.as_deref(), any_tls)?;
    let zones = config
        .forward
        .iter()
        .map(|forward| {
            tracing::info!(zone = %forward.zone, servers = %list(&forward.servers), "forward zone");
            let pool = Upstream::new(
                forward.servers.clone(),
                options,
                Arc::clone(&tls),
                Arc::clone(metrics),
            );
            (forward.zone_wire(), pool)
        })
        .collect();
    Ok(Routes::new(
        Upstream::new(upstreams, options, tls, Arc::clone(metrics)),
        zones,
    ))
}

/// Reloads a running server's config (SIGHUP): upstreams and `[[forward]]`
/// zones, `[local]` records and hosts files, the resolv.conf to follow, and
/// the client guard (`[listen] allow`, rate and size limits). The
/// cache, the lookups in flight and the sockets stay; servers that stay keep
/// their RTT and health. A config that fails validation changes nothing.
#[derive(Clone)]
pub struct Reloader {
    resolver: Arc<Resolver>,
    guard: Arc<Guard>,
    config: Arc<ArcSwap<Config>>,
    hosts: Arc<Hosts>,
}

impl Reloader {
    pub fn reload(&self, config: Config) -> Result<(), ServerError> {
        config.validate()?;
        let upstreams = config.upstreams()?;
        let routes = build_routes(&config, upstreams, self.resolver.metrics())?;
        routes.inherit(&self.resolver.routes());
        let hosts = HostsFiles::load(&config.local.hosts_files).table();
        self.hosts.replace(hosts);
        let local = LocalAnswers::new(&config, Arc::clone(&self.hosts));
        let previous = self.config.load_full();
        let needs_restart = previous.needs_restart(&config);
        self.resolver.replace(routes, local);
        self.guard.replace(GuardLimits::from_config(&config));
        self.config.store(Arc::new(config));
        if needs_restart.is_empty() {
            tracing::info!("config reloaded");
        } else {
            tracing::warn!(
                sections = %needs_restart.join(", "),
                "config reloaded; changes to these take effect at the next start"
            );
        }
        Ok(())
    }
}

/// "serving on udp://…, tcp://…", the status systemd shows.
fn serving_status(listeners: &Listeners) -> String {
    let udp = listeners
        .udp_addrs()
        .into_iter()
        .map(|addr| format!("udp://{addr}"));
    let tcp = listeners
        .tcp_addrs()
        .into_iter()
        .map(|addr| format!("tcp://{addr}"));
    format!(
        "serving on {}",
        udp.chain(tcp).collect::<Vec<_>>().join(", ")
    )
}

/// One line with the counters that say how the run went, until the metrics
/// endpoint exists; the benchmark reads it too.
fn log_final_counters(resolver: &Resolver) {
    let m = resolver.metrics();
    tracing::info!(
        queries_udp = m.queries_udp.get(),
        queries_tcp = m.queries_tcp.get(),
        local_answers = m.local_answers.get(),
        cache_hits = m.cache_hits.get(),
        cache_misses = m.cache_misses.get(),
        cache_stale_hits = m.cache_stale_hits.get(),
        cache_failure_hits = m.cache_failure_hits.get(),
        stale_answers = m.stale_answers.get(),
        prefetches = m.prefetches.get(),
        refreshes = m.refreshes.get(),
        lookups_started = m.lookups_started.get(),
        coalesced_joins = m.coalesced_joins.get(),
        abandoned_waiters = m.abandoned_waiters.get(),
        overload_answers = m.overload_answers.get(),
        upstream_queries = m.upstream_queries.get(),
        upstream_probes = m.upstream_probes.get(),
        lookup_timeouts = m.lookup_timeouts.get(),
        upstream_down_answers = m.upstream_down_answers.get(),
        queries_prohibited = m.queries_prohibited.get(),
        rate_limited = m.rate_limited.get(),
        udp_oversized = m.udp_oversized.get(),
        tcp_oversized = m.tcp_oversized.get(),
        tcp_connections_refused = m.tcp_connections_refused.get(),
        tcp_client_connections_refused = m.tcp_client_connections_refused.get(),
        tcp_read_timeouts = m.tcp_read_timeouts.get(),
        cache_entries = resolver.cache_len(),
        cache_bytes = resolver.cache().bytes(),
        "final counters"
    );
}

/// Live counters of a running server.
#[derive(Clone)]
pub struct Stats(Arc<Resolver>);

impl Stats {
    /// Each upstream pool's servers: `[upstream]` first (zone "."), then the
    /// `[[forward]]` zones.
    pub fn upstreams(&self) -> Vec<(String, Vec<upstream::ServerReport>)> {
        self.0
            .routes()
            .pools()
            .map(|(zone, pool)| {
                (
                    zone.map_or_else(|| ".".to_owned(), wire::display_name),
                    pool.report(),
                )
            })
            .collect()
    }

    pub fn metrics(&self) -> &Metrics {
        self.0.metrics()
    }

    pub fn inflight(&self) -> InflightGauges {
        self.0.inflight()
    }

    pub fn cache_entries(&self) -> usize {
        self.0.cache_len()
    }

    /// The cache, e.g. to flush it.
    pub fn cache(&self) -> &cache::Cache {
        self.0.cache()
    }
}

/// "a, b, c" for a log line.
fn list(servers: &[UpstreamAddr]) -> String {
    servers
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
