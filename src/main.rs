//! The `punctual` command: parses the command line, loads and validates the
//! config, starts logging, then hands over to the library's `Server`, dropping
//! root once its sockets are bound. Bad usage or a bad config exits 64
//! (EX_USAGE) with one clear line.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use punctual::Server;
use punctual::config::{Config, ConfigError, parse_upstream_addr, value};
use punctual::privileges::{self, Identity};
use punctual::systemd::activation;
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
        /// Log verbosity when RUST_LOG is not set: error, warn, info, debug or trace.
        #[arg(long, default_value = "info", value_name = "LEVEL")]
        log_level: String,
    },
    /// Load and validate the config, bind nothing; exit 0 if it is good, 64 if not.
    Check {
        #[command(flatten)]
        config: ConfigArgs,
    },
}

#[derive(clap::Args)]
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
                    println!("{origin}: ok (upstreams: {upstreams:?})");
                    ExitCode::SUCCESS
                }
                Err(error) => usage_failure(&error),
            },
            Err(error) => usage_failure(&error),
        },
        Command::Run {
            config,
            listen,
            upstream,
            deadline,
            log_level,
        } => {
            init_logging(&log_level);
            let loaded = load(&config).and_then(|(config, _)| {
                let config = apply_flags(config, &listen, &upstream, deadline.as_deref())?;
                let identity = config.identity()?;
                Ok((config, identity))
            });
            let (config, identity) = match loaded {
                Ok(loaded) => loaded,
                Err(error) => return usage_failure(&error),
            };
            match run(config, identity) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    tracing::error!("{error:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
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
fn run(config: Config, identity: Option<Identity>) -> anyhow::Result<()> {
    // Before the runtime starts its threads: this unsets LISTEN_PID and LISTEN_FDS.
    let inherited = activation::take().context("socket activation")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let server = Server::bind_with(&config, inherited)?;
        privileges::drop_to(identity.as_ref()).context("cannot drop root privileges")?;
        let shutdown = CancellationToken::new();
        tokio::spawn(cancel_on_signal(shutdown.clone()));
        server.run(shutdown).await;
        tracing::info!("stopped");
        Ok(())
    })
}

/// SIGTERM or SIGINT cancels the shutdown token once.
async fn cancel_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut terminate), Ok(mut interrupt)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return;
    };
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = interrupt.recv() => tracing::info!("SIGINT: shutting down"),
    }
    shutdown.cancel();
}
