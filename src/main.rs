//! The `punctual` command: parses the command line, loads and validates the
//! config, starts logging, then hands over to the library's `Server`, dropping
//! root once its sockets are bound. Bad usage or a bad config exits 64
//! (EX_USAGE) with one clear line.

use std::io::{self, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use hickory_proto::rr::RecordType;
use punctual::client::{self, Transport, report::Summary};
use punctual::config::{Config, ConfigError, parse_upstream_addr, value};
use punctual::doctor::{self, GlibcSource, Inputs, Probe, glibc};
use punctual::privileges::{self, Identity};
use punctual::systemd::activation;
use punctual::{Reloader, Server, ServerError};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// Where packages install the config; without `--config`, a missing file here
/// means "built-in defaults".
const DEFAULT_CONFIG: &str = "/etc/punctual/punctual.toml";
/// sysexits.h EX_USAGE: the command line or config is wrong.
const EXIT_USAGE: u8 = 64;

#[derive(Parser)]
#[command(
    name = "punctual",
    version,
    about = "A local caching stub DNS resolver that answers every query before its deadline"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the resolver in the foreground.
    Run {
        #[command(flatten)]
        config: ConfigArgs,
        /// Listen on ADDR:PORT for UDP and TCP (repeatable; replaces [listen] addresses).
        #[arg(long = "listen", value_name = "ADDR:PORT")]
        listen: Vec<String>,
        /// Upstream server: IP[:PORT], tcp://IP[:PORT] or tls://IP[:PORT]#NAME
        /// (repeatable; replaces [upstream] servers).
        #[arg(long = "upstream", value_name = "SERVER")]
        upstream: Vec<String>,
        /// Answer every query within this long, e.g. "2s" or "300ms" (replaces [limits] deadline).
        #[arg(long, value_name = "DURATION")]
        deadline: Option<String>,
        /// Serve the control endpoint on ADDR:PORT, or "off" (replaces [control] address).
        #[arg(long, value_name = "ADDR:PORT|off")]
        control: Option<String>,
        /// Log verbosity when RUST_LOG is not set: error, warn, info, debug or trace.
        #[arg(long, default_value = "info", value_name = "LEVEL")]
        log_level: String,
    },
    /// Load and validate the config, bind nothing; exit 0 if it is good, 64 if not.
    Check {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Ask one question, like a small dig; exit 0 on NOERROR or NXDOMAIN, 1 otherwise.
    Query(QueryArgs),
    /// Check this machine's resolver setup and say what to fix; exit 1 if anything needs attention.
    Doctor(DoctorArgs),
    /// Print the completion script for SHELL.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) on stdout.
    Man,
    /// Print the running resolver's statistics (JSON) from its control endpoint.
    Stats(ControlArgs),
    /// Empty the running resolver's cache: everything, one NAME, or a zone.
    Flush {
        /// Flush every entry for this name (all types).
        #[arg(value_name = "NAME", conflicts_with_all = ["suffix", "all"])]
        name: Option<String>,
        /// Flush this zone and every name below it.
        #[arg(long, value_name = "ZONE", conflicts_with = "all")]
        suffix: Option<String>,
        /// Flush everything (the default without NAME or --suffix).
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        control: ControlArgs,
    },
}

#[derive(clap::Args)]
struct QueryArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// The name to look up, e.g. "example.com".
    name: String,
    /// The record type: A, AAAA, MX, TXT… or TYPEnnn.
    #[arg(default_value = "A", value_name = "TYPE")]
    rtype: String,
    /// Ask this server, IP[:PORT] [default: the first [listen] address of the config].
    #[arg(long, value_name = "ADDR")]
    server: Option<String>,
    /// Ask over TCP instead of UDP.
    #[arg(long)]
    tcp: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Give up after this long without a reply.
    #[arg(long, default_value = "5s", value_name = "DURATION")]
    timeout: String,
}

#[derive(clap::Args)]
struct DoctorArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Print a JSON array of findings instead of text.
    #[arg(long)]
    json: bool,
    /// The resolv.conf to check.
    #[arg(long, default_value = "/etc/resolv.conf", value_name = "PATH")]
    resolv_conf: PathBuf,
    /// Check this glibc version instead of asking `ldd --version`.
    #[arg(long, env = "PUNCTUAL_GLIBC_VERSION", value_name = "X.Y")]
    glibc_version: Option<String>,
    /// The program whose `--version` names the glibc version.
    #[arg(long, default_value = "ldd", value_name = "PROGRAM")]
    ldd: String,
    /// Where musl's dynamic linker (ld-musl-*.so.1) would be.
    #[arg(long, default_value = "/lib", value_name = "DIR")]
    musl_dir: PathBuf,
    /// The procfs root to find port-53 holders in.
    #[arg(long, default_value = "/proc", value_name = "DIR")]
    proc_root: PathBuf,
    /// The name to ask punctual and the upstreams for (type NS).
    #[arg(long, default_value = ".", value_name = "NAME")]
    probe_name: String,
    /// How long to wait for each upstream's reply (punctual gets its deadline too).
    #[arg(long, default_value = "2s", value_name = "DURATION")]
    probe_timeout: String,
}

#[derive(clap::Args)]
struct ControlArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// The control endpoint, ADDR:PORT [default: [control] address of the config].
    #[arg(long, value_name = "ADDR:PORT")]
    control: Option<String>,
}

#[derive(clap::Args, Clone)]
struct ConfigArgs {
    /// Config file (TOML) [default: /etc/punctual/punctual.toml if it exists].
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let usage_error = error.use_stderr();
            let _ = error.print();
            return if usage_error {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cli.command {
        Command::Check { config } => match load(&config) {
            Ok((config, origin)) => match config.identity().and_then(|_| config.upstreams()) {
                Ok(upstreams) => {
                    let upstreams: Vec<String> =
                        upstreams.iter().map(ToString::to_string).collect();
                    println!("{origin}: ok (upstreams: {})", upstreams.join(", "));
                    ExitCode::SUCCESS
                }
                Err(error) => usage_failure(&error),
            },
            Err(error) => usage_failure(&error),
        },
        Command::Query(args) => query(&args),
        Command::Doctor(args) => doctor(&args),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "punctual", &mut io::stdout());
            ExitCode::SUCCESS
        }
        Command::Man => match clap_mangen::Man::new(Cli::command()).render(&mut io::stdout()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("cannot write the man page: {error}");
                ExitCode::FAILURE
            }
        },
        Command::Stats(args) => control_command(&args, "GET", "/stats".to_owned()),
        Command::Flush {
            name,
            suffix,
            all: _,
            control,
        } => {
            let path = match (name, suffix) {
                (Some(name), _) => format!("/cache/flush?name={name}"),
                (None, Some(zone)) => format!("/cache/flush?suffix={zone}"),
                (None, None) => "/cache/flush?all".to_owned(),
            };
            control_command(&control, "POST", path)
        }
        Command::Run {
            config,
            listen,
            upstream,
            deadline,
            control,
            log_level,
        } => {
            init_logging(&log_level);
            let flags = RunFlags {
                config,
                listen,
                upstream,
                deadline,
                control,
            };
            let loaded = flags.load().and_then(|config| {
                let identity = config.identity()?;
                Ok((config, identity))
            });
            let (config, identity) = match loaded {
                Ok(loaded) => loaded,
                Err(error) => return usage_failure(&error),
            };
            match run(config, identity, flags) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    tracing::error!("{error:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// `punctual query`: one exchange, printed; 64 for a bad name, type, server or timeout.
fn query(args: &QueryArgs) -> ExitCode {
    let question = client::parse_name(&args.name)
        .and_then(|name| Ok((name, client::parse_record_type(&args.rtype)?)));
    let (name, rtype) = match question {
        Ok(question) => question,
        Err(error) => return usage_text(&error.to_string()),
    };
    let timeout = match value::parse_duration(&args.timeout) {
        Ok(timeout) => timeout,
        Err(reason) => return usage_text(&format!("--timeout {}: {reason}", args.timeout)),
    };
    let server = match &args.server {
        Some(text) => match value::parse_socket_addr(text) {
            Ok(server) => server,
            Err(reason) => return usage_text(&format!("--server {text}: {reason}")),
        },
        None => match load(&args.config) {
            Ok((config, _)) => match config.listen.addresses.first() {
                Some(&listen) => client::destination(listen),
                None => return usage_text("the config has no [listen] addresses; use --server"),
            },
            Err(error) => return usage_failure(&error),
        },
    };
    let transport = if args.tcp {
        Transport::Tcp
    } else {
        Transport::Udp
    };
    let exchange = block_on(client::exchange(server, &name, rtype, transport, timeout));
    match exchange {
        Ok(Ok(exchange)) => {
            let summary = Summary::new(&name, rtype, server, &exchange);
            if args.json {
                println!("{}", serde_json::json!(summary));
            } else {
                print!("{}", summary.to_text());
            }
            if summary.is_answer() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Ok(Err(error)) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

/// `punctual doctor`: every check, printed; 1 if anything needs attention.
fn doctor(args: &DoctorArgs) -> ExitCode {
    let config = match load(&args.config) {
        Ok((config, _)) => config,
        Err(error) => return usage_failure(&error),
    };
    let glibc = match &args.glibc_version {
        Some(version) if glibc::parse_version(version).is_none() => {
            return usage_text(&format!(
                "--glibc-version {version}: expected X.Y, e.g. 2.36"
            ));
        }
        Some(version) => GlibcSource::Version(version.clone()),
        None => GlibcSource::Ldd(args.ldd.clone()),
    };
    let timeout = match value::parse_duration(&args.probe_timeout) {
        Ok(timeout) => timeout,
        Err(reason) => {
            return usage_text(&format!("--probe-timeout {}: {reason}", args.probe_timeout));
        }
    };
    let name = match client::parse_name(&args.probe_name) {
        Ok(name) => name,
        Err(error) => return usage_text(&format!("--probe-name: {error}")),
    };
    let inputs = Inputs {
        config,
        resolv_conf: args.resolv_conf.clone(),
        glibc,
        musl_dir: args.musl_dir.clone(),
        proc_root: args.proc_root.clone(),
        probe: Probe {
            name,
            rtype: RecordType::NS,
            timeout,
        },
    };
    let report = match block_on(doctor::diagnose(&inputs)) {
        Ok(report) => report,
        Err(error) => {
            eprintln!("{error:#}");
            return ExitCode::FAILURE;
        }
    };
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }
    if report.needs_attention() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `punctual stats` / `punctual flush`: one request to the control endpoint;
/// prints the reply, exit 1 unless it succeeded.
fn control_command(args: &ControlArgs, method: &str, path: String) -> ExitCode {
    let address = match &args.control {
        Some(text) => match value::parse_socket_addr(text) {
            Ok(address) => address,
            Err(reason) => return usage_text(&format!("--control {text}: {reason}")),
        },
        None => match load(&args.config) {
            Ok((config, _)) => match config.control.address {
                Some(address) => client::destination(address),
                None => {
                    return usage_text(
                        "the control endpoint is off in the config ([control] address = \"\"); \
                         use --control ADDR:PORT",
                    );
                }
            },
            Err(error) => return usage_failure(&error),
        },
    };
    let timeout = std::time::Duration::from_secs(5);
    match block_on(punctual::control::request(address, method, &path, timeout)) {
        Ok(Ok((status, body))) if (200..300).contains(&status) => {
            print!("{body}");
            ExitCode::SUCCESS
        }
        Ok(Ok((status, body))) => {
            eprint!("HTTP {status}: {body}");
            ExitCode::FAILURE
        }
        Ok(Err(error)) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one future to completion on a small runtime (the operator commands).
fn block_on<F: Future>(future: F) -> anyhow::Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    Ok(runtime.block_on(future))
}

fn usage_text(message: &str) -> ExitCode {
    eprintln!("{message}");
    ExitCode::from(EXIT_USAGE)
}

fn usage_failure(error: &ConfigError) -> ExitCode {
    eprintln!("{error}");
    ExitCode::from(EXIT_USAGE)
}

/// Loads the config file, or the built-in defaults when no file was named and
/// the default path does not exist. Returns the config and where it came from.
fn load(args: &ConfigArgs) -> Result<(Config, String), ConfigError> {
    match &args.config {
        Some(path) => Ok((Config::load(path)?, path.display().to_string())),
        None if Path::new(DEFAULT_CONFIG).exists() => Ok((
            Config::load(Path::new(DEFAULT_CONFIG))?,
            DEFAULT_CONFIG.to_string(),
        )),
        None => Ok((Config::default(), "built-in defaults".to_string())),
    }
}

fn apply_flags(
    mut config: Config,
    listen: &[String],
    upstream: &[String],
    deadline: Option<&str>,
) -> Result<Config, ConfigError> {
    let flag_error = |flag: &str, value: &str, reason: String| ConfigError {
        file: None,
        line: None,
        reason: format!("{flag} {value}: {reason}"),
    };
    if !listen.is_empty() {
        config.listen.addresses = listen
            .iter()
            .map(|text| {
                value::parse_socket_addr(text)
                    .map_err(|reason| flag_error("--listen", text, reason))
            })
            .collect::<Result<_, _>>()?;
    }
    if !upstream.is_empty() {
        config.upstream.servers = upstream
            .iter()
            .map(|text| {
                parse_upstream_addr(text).map_err(|reason| flag_error("--upstream", text, reason))
            })
            .collect::<Result<_, _>>()?;
    }
    if let Some(text) = deadline {
        let parsed =
            value::parse_duration(text).map_err(|reason| flag_error("--deadline", text, reason))?;
        config.limits.deadline = parsed;
        // Keep the first retransmit inside a deadline shortened on the command line.
        config.limits.attempt_timeout = config.limits.attempt_timeout.min(parsed);
    }
    config.validate()?;
    Ok(config)
}

fn init_logging(level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        // hickory's own per-request logs cost a third of throughput: warn at most.
        EnvFilter::new(format!("{level},hickory_proto=warn,hickory_server=warn"))
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Binds (or takes the sockets systemd passed), drops privileges (to
/// `identity`, if any), then serves until a signal.
/// What `run` was given, kept so that a reload reads the config the same way.
#[derive(Clone)]
struct RunFlags {
    config: ConfigArgs,
    listen: Vec<String>,
    upstream: Vec<String>,
    deadline: Option<String>,
    control: Option<String>,
}

impl RunFlags {
    /// The config file with the command line's overrides, validated.
    fn load(&self) -> Result<Config, ConfigError> {
        let (config, _) = load(&self.config)?;
        let mut config = apply_flags(
            config,
            &self.listen,
            &self.upstream,
            self.deadline.as_deref(),
        )?;
        if let Some(text) = &self.control {
            config.control.address = match text.as_str() {
                "off" => None,
                text => Some(
                    value::parse_socket_addr(text).map_err(|reason| ConfigError {
                        file: None,
                        line: None,
                        reason: format!("--control {text}: {reason}"),
                    })?,
                ),
            };
            config.validate()?;
        }
        Ok(config)
    }
}

fn run(config: Config, identity: Option<Identity>, flags: RunFlags) -> anyhow::Result<()> {
    // Before the runtime starts its threads: this unsets LISTEN_PID and LISTEN_FDS.
    let inherited = activation::take().context("socket activation")?;
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = config.worker_threads() {
        builder.worker_threads(threads);
    }
    let runtime = builder
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    tracing::info!(
        workers = runtime.metrics().num_workers(),
        "async runtime started"
    );
    runtime.block_on(async {
        // Registered before anything is bound or logged: a SIGHUP or SIGTERM
        // sent the moment punctual says it listens (or tells systemd READY=1)
        // must find its handler, not the default action, which kills.
        let hangup = signal(SignalKind::hangup());
        let stop = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        );
        let server = Server::bind_with(&config, inherited)?;
        privileges::drop_to(identity.as_ref()).context("cannot drop root privileges")?;
        let shutdown = CancellationToken::new();
        tokio::spawn(cancel_on_signal(stop, shutdown.clone()));
        tokio::spawn(reload_on_hangup(hangup, server.reloader(), flags));
        server.run(shutdown).await?;
        tracing::info!("stopped");
        Ok(())
    })
}

/// SIGHUP re-reads the config (with the same command-line overrides) and
/// reloads it; a config that does not load or validate is logged and the one
/// in use keeps serving. systemd hears RELOADING=1, then READY=1.
async fn reload_on_hangup(hangup: io::Result<Signal>, reloader: Reloader, flags: RunFlags) {
    let Ok(mut hangup) = hangup else {
        tracing::error!("cannot install the SIGHUP handler; reload by restarting");
        return;
    };
    while hangup.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading the config");
        punctual::systemd::reloading();
        let (reloader, flags) = (reloader.clone(), flags.clone());
        // File reads (config, resolv.conf, hosts files, CA file): off the workers.
        let reloaded = tokio::task::spawn_blocking(move || {
            flags
                .load()
                .map_err(ServerError::from)
                .and_then(|config| reloader.reload(config))
        })
        .await;
        let status = match reloaded {
            Ok(Ok(())) => "serving; config reloaded".to_owned(),
            Ok(Err(error)) => {
                tracing::error!(%error, "reload failed; the config in use keeps serving");
                format!("serving; reload failed: {error}")
            }
            Err(error) => {
                tracing::error!(%error, "reload failed; the config in use keeps serving");
                "serving; reload failed".to_owned()
            }
        };
        punctual::systemd::ready(&status);
    }
}

/// SIGTERM or SIGINT cancels the shutdown token once.
async fn cancel_on_signal(
    (terminate, interrupt): (io::Result<Signal>, io::Result<Signal>),
    shutdown: CancellationToken,
) {
    let (Ok(mut terminate), Ok(mut interrupt)) = (terminate, interrupt) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return;
    };
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = interrupt.recv() => tracing::info!("SIGINT: shutting down"),
    }
    shutdown.cancel();
}
