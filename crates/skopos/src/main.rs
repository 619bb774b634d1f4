//! The `skopos` binary: command line, config loading, logging, signals and
//! process lifetime. Everything else lives in the library crates; this is the
//! only place that knows about flags, config files and exit codes.

mod config;
mod logs_cmd;
mod query_cmd;
mod traces_cmd;
mod tsdb_cmd;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// mimalloc instead of glibc's malloc: a profile of remote-write ingestion
/// spent about 40% of its CPU in glibc's allocator (per-request label and
/// sample buffers); see BENCHMARKS.md for the measured effect.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "skopos",
    version,
    about = "From localhost to production, and keeping watch over it."
)]
struct Cli {
    /// Log format: text or json.
    #[arg(long, global = true)]
    log_format: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: ingestion, storage and query APIs on one port.
    Server(Box<config::ServerFlags>),
    /// Run a PromQL query against a running server (instant, or range with
    /// --start/--end/--step).
    Query {
        /// The PromQL expression.
        expr: String,
        #[command(flatten)]
        remote: Remote,
        /// Evaluation time of an instant query (RFC 3339 or Unix seconds) [default: now]
        #[arg(long)]
        time: Option<String>,
        /// Start of a range query (RFC 3339 or Unix seconds).
        #[arg(long)]
        start: Option<String>,
        /// End of a range query.
        #[arg(long)]
        end: Option<String>,
        /// Step of a range query, e.g. 15s [default: 60s]
        #[arg(long)]
        step: Option<String>,
        /// Output: table or json (the raw API response).
        #[arg(short = 'o', long, default_value = "table")]
        output: String,
    },
    /// Query logs with LogQL against a running server.
    Logs {
        #[command(subcommand)]
        command: LogsCommand,
    },
    /// Ship logs from files and Docker containers to a server (Loki push).
    Agent(Box<skopos_agent::AgentArgs>),
    /// Look at traces on a running server: one as a waterfall, its logs, or a search.
    Traces {
        #[command(subcommand)]
        command: TracesCommand,
    },
    /// Check configuration files without starting anything, as `promtool
    /// check config` does.
    Check {
        #[command(subcommand)]
        command: CheckCommand,
    },
    /// Work with the metrics store on disk.
    Tsdb {
        #[command(subcommand)]
        command: TsdbCommand,
    },
}

/// Where a client command finds the server.
#[derive(clap::Args)]
struct Remote {
    /// The server's base URL.
    #[arg(long, env = "SKOPOS_URL", default_value = "http://127.0.0.1:9700")]
    url: String,
    /// File holding the server's bearer token.
    #[arg(long, env = "SKOPOS_AUTH_TOKEN_FILE")]
    auth_token_file: Option<PathBuf>,
}

impl Remote {
    /// The base URL and the bearer token read from its file, if any.
    fn open(self) -> anyhow::Result<(String, Option<String>)> {
        Ok((self.url, read_token(self.auth_token_file)?))
    }
}

#[derive(Subcommand)]
enum LogsCommand {
    /// Summarise the log store on disk: segments, streams, entries, bytes,
    /// compression ratio (read-only; safe beside a running server).
    Inspect {
        /// The server's data directory.
        #[arg(long, default_value = "./skopos-data")]
        data_dir: PathBuf,
        /// Output format: text or json.
        #[arg(short = 'o', long, default_value = "text")]
        output: String,
    },
    /// Run a LogQL query (log lines, or a metric query's table).
    Query {
        /// The LogQL expression, e.g. '{app="web"} |= "error"'.
        expr: String,
        #[command(flatten)]
        remote: Remote,
        /// How far back to look, when --start is not given.
        #[arg(long, default_value = "1h")]
        since: String,
        /// Start (RFC 3339, Unix seconds or ns).
        #[arg(long)]
        start: Option<String>,
        /// End (RFC 3339, Unix seconds or ns) [default: now]
        #[arg(long)]
        end: Option<String>,
        /// Most lines returned.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Oldest lines first (default: newest first).
        #[arg(long)]
        forward: bool,
        /// Output: text or json (the raw API response).
        #[arg(short = 'o', long, default_value = "text")]
        output: String,
    },
    /// Follow a LogQL log query live: the newest lines, then new ones as
    /// they arrive (the server's /loki/api/v1/tail WebSocket).
    Tail {
        /// The LogQL log query, e.g. '{app="web"} |= "error"'.
        expr: String,
        #[command(flatten)]
        remote: Remote,
        /// How far back the first lines may come from.
        #[arg(long, default_value = "1h")]
        since: String,
        /// Most stored lines shown before following.
        #[arg(long, default_value_t = 30)]
        limit: usize,
        /// Seconds the server waits to put late lines in order (0 to 5).
        #[arg(long, default_value_t = 0)]
        delay_for: u64,
        /// Output: text or json (each raw tail message).
        #[arg(short = 'o', long, default_value = "text")]
        output: String,
    },
    /// Delete for good the lines a selector (with optional line filters)
    /// picks in a time range. Without --yes, only counts them.
    Delete {
        /// A stream selector with optional line filters, e.g.
        /// '{app="web"} |= "password="'.
        expr: String,
        #[command(flatten)]
        remote: Remote,
        /// Start of the range (RFC 3339, Unix seconds or ns).
        #[arg(long, conflicts_with = "since")]
        start: Option<String>,
        /// Start of the range as a duration before now, e.g. 24h.
        #[arg(long)]
        since: Option<String>,
        /// End of the range (RFC 3339, Unix seconds or ns) [default: now]
        #[arg(long)]
        end: Option<String>,
        /// Delete; without it the command only counts what would go.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Subcommand)]
enum TracesCommand {
    /// Draw a trace's span tree as a waterfall (service, name, offset,
    /// duration bar, status).
    Get {
        /// The trace id (hex).
        id: String,
        #[command(flatten)]
        remote: Remote,
        /// Output: text or json (the Tempo API's OTLP JSON).
        #[arg(short = 'o', long, default_value = "text")]
        output: String,
    },
    /// Print the log lines that carry the trace id (structured metadata
    /// `trace_id`), oldest first.
    Logs {
        /// The trace id (hex).
        id: String,
        #[command(flatten)]
        remote: Remote,
        /// Output: text or json (the raw API response).
        #[arg(short = 'o', long, default_value = "text")]
        output: String,
    },
    /// Search traces with TraceQL, e.g. '{ resource.service.name = "api" && status = error }'.
    Search {
        /// The TraceQL query.
        query: String,
        #[command(flatten)]
        remote: Remote,
        /// How far back to search.
        #[arg(long, default_value = "1h")]
        since: String,
        /// Most traces returned.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Output: text or json (the raw API response).
        #[arg(short = 'o', long, default_value = "text")]
        output: String,
    },
}

#[derive(Subcommand)]
enum CheckCommand {
    /// A server config file (skopos settings, Prometheus' global and
    /// scrape_configs): prints SUCCESS, or the problem with file and line.
    Config {
        /// The config files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum TsdbCommand {
    /// Summarise a data directory: blocks, series, samples, bytes per sample,
    /// top label cardinalities. Safe while a server is running.
    Inspect {
        /// The server's data directory.
        #[arg(long, default_value = "./skopos-data")]
        data_dir: PathBuf,
        /// Output format: text or json.
        #[arg(short = 'o', long, default_value = "text")]
        output: String,
    },
    /// Backfill a Prometheus text or OpenMetrics file whose samples carry
    /// timestamps into blocks (the server must be stopped).
    Import {
        /// The file to import (text exposition or OpenMetrics, with timestamps).
        file: PathBuf,
        /// The server's data directory.
        #[arg(long, default_value = "./skopos-data")]
        data_dir: PathBuf,
    },
    /// Print raw samples, like `promtool tsdb dump` (the server must be stopped).
    Dump {
        /// The server's data directory.
        #[arg(long, default_value = "./skopos-data")]
        data_dir: PathBuf,
        /// Series selector, e.g. 'up{job="node"}'.
        #[arg(long = "match", default_value = "{__name__=~\".+\"}")]
        selector: String,
        /// Earliest sample: RFC 3339 or Unix milliseconds [default: the earliest stored]
        #[arg(long, allow_hyphen_values = true)]
        min_time: Option<String>,
        /// Latest sample: RFC 3339 or Unix milliseconds [default: the latest stored]
        #[arg(long, allow_hyphen_values = true)]
        max_time: Option<String>,
        /// Output format: text or json (one object per series).
        #[arg(short = 'o', long, default_value = "text")]
        output: String,
    },
}

fn init_logging(format: &str) -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a terminal: a log file or journal gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        "json" => builder.json().flatten_event(true).init(),
        "text" => builder.init(),
        other => anyhow::bail!("--log-format: {other:?} is not one of text, json"),
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is
/// called, not when it is first polled.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        let (mut term, mut int) = match (term, int) {
            (Ok(t), Ok(i)) => (t, i),
            _ => {
                tracing::error!("cannot install signal handlers; stop with SIGKILL");
                std::future::pending::<()>().await;
                return;
            }
        };
        tokio::select! {
            _ = int.recv() => tracing::info!("received SIGINT"),
            _ = term.recv() => tracing::info!("received SIGTERM"),
        }
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let log_format = cli.log_format;
    let logging = |fallback: Option<String>| {
        init_logging(
            &log_format
                .clone()
                .or(fallback)
                .unwrap_or_else(|| "text".into()),
        )
    };
    let result = match cli.command {
        Command::Server(flags) => {
            logging(config::log_format_from_file(&flags)).and_then(|_| run_server(&flags))
        }
        Command::Agent(args) => logging(None).and_then(|_| run_agent(*args)),
        // The other commands write to a pipe that may close early (`| head`):
        // they end quietly on SIGPIPE as Unix tools do, instead of failing on
        // the write. The server and the agent keep ignoring it.
        Command::Tsdb { command } => {
            restore_sigpipe();
            logging(None).and_then(|_| run_tsdb(command))
        }
        client => {
            restore_sigpipe();
            run_client(client)
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("skopos: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn restore_sigpipe() {
    // SAFETY: setting a signal's disposition to its default is
    // async-signal-safe and done before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// The commands that talk to a running server.
fn run_client(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Query {
            expr,
            remote,
            time,
            start,
            end,
            step,
            output,
        } => {
            let (url, token) = remote.open()?;
            query_cmd::run(query_cmd::QueryArgs {
                expr,
                url,
                time,
                start,
                end,
                step,
                output,
                token,
            })
        }
        Command::Logs { command } => run_logs(command),
        Command::Check {
            command: CheckCommand::Config { files },
        } => {
            let mut failed = 0;
            for f in &files {
                let flags = config::ServerFlags {
                    config: Some(f.clone()),
                    ..Default::default()
                };
                match config::resolve(&flags) {
                    Ok(_) => println!("Checking {}\n  SUCCESS", f.display()),
                    Err(e) => {
                        println!("Checking {}\n  FAILED: {e:#}", f.display());
                        failed += 1;
                    }
                }
            }
            if failed > 0 {
                anyhow::bail!("{failed} of {} config files have problems", files.len());
            }
            Ok(())
        }
        Command::Traces { command } => run_traces(command),
        Command::Server(_) | Command::Agent(_) | Command::Tsdb { .. } => {
            unreachable!("not a client command")
        }
    }
}

fn run_logs(command: LogsCommand) -> anyhow::Result<()> {
    match command {
        LogsCommand::Inspect { data_dir, output } => logs_cmd::inspect(&data_dir, &output),
        LogsCommand::Query {
            expr,
            remote,
            since,
            start,
            end,
            limit,
            forward,
            output,
        } => {
            let (url, token) = remote.open()?;
            logs_cmd::query(logs_cmd::LogsQueryArgs {
                expr,
                url,
                since,
                start,
                end,
                limit,
                forward,
                output,
                token,
            })
        }
        LogsCommand::Tail {
            expr,
            remote,
            since,
            limit,
            delay_for,
            output,
        } => {
            let (url, token) = remote.open()?;
            logs_cmd::tail(logs_cmd::LogsTailArgs {
                expr,
                url,
                since,
                limit,
                delay_for,
                output,
                token,
            })
        }
        LogsCommand::Delete {
            expr,
            remote,
            start,
            since,
            end,
            yes,
        } => {
            let (url, token) = remote.open()?;
            logs_cmd::delete(logs_cmd::LogsDeleteArgs {
                expr,
                url,
                start,
                since,
                end,
                yes,
                token,
            })
        }
    }
}

fn run_traces(command: TracesCommand) -> anyhow::Result<()> {
    match command {
        TracesCommand::Get { id, remote, output } => {
            let (url, token) = remote.open()?;
            traces_cmd::get(&id, &url, &output, token.as_deref())
        }
        TracesCommand::Logs { id, remote, output } => {
            let (url, token) = remote.open()?;
            traces_cmd::logs(&id, &url, &output, token.as_deref())
        }
        TracesCommand::Search {
            query,
            remote,
            since,
            limit,
            output,
        } => {
            let (url, token) = remote.open()?;
            traces_cmd::search(&query, &url, &since, limit, &output, token.as_deref())
        }
    }
}

fn run_tsdb(command: TsdbCommand) -> anyhow::Result<()> {
    match command {
        TsdbCommand::Inspect { data_dir, output } => tsdb_cmd::inspect(&data_dir, &output),
        TsdbCommand::Import { file, data_dir } => tsdb_cmd::import(&file, &data_dir),
        TsdbCommand::Dump {
            data_dir,
            selector,
            min_time,
            max_time,
            output,
        } => {
            let time = |flag: &str, v: Option<String>, default: i64| match v {
                None => Ok(default),
                Some(v) => tsdb_cmd::parse_time_ms(flag, &v),
            };
            let min = time("--min-time", min_time, i64::MIN / 2)?;
            let max = time("--max-time", max_time, i64::MAX / 2)?;
            tsdb_cmd::dump(&data_dir, &selector, min, max, &output)
        }
    }
}

fn run_server(flags: &config::ServerFlags) -> anyhow::Result<()> {
    let cfg = config::resolve(flags)?;
    cfg.validate()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        // Signal handlers go in before the port opens, so a SIGHUP or SIGTERM
        // sent as soon as the server answers never meets the default (fatal)
        // disposition.
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let shutdown = shutdown_signal();
        tokio::pin!(shutdown);
        let handle = skopos_server::start(cfg).await?;
        let mut lifecycle = handle.lifecycle_requests();
        // Only the scrape configuration is reloadable; ports and storage
        // settings need a restart.
        let reload = |handle: &skopos_server::ServerHandle| match config::resolve(flags) {
            Ok(new) => {
                handle.reload_scrape(&new.scrape.unwrap_or_default());
                Ok(())
            }
            Err(e) => {
                tracing::error!("reload failed, keeping the running configuration: {e:#}");
                handle.reload_failed();
                Err(format!("{e:#}"))
            }
        };
        loop {
            let request = async {
                match lifecycle.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = &mut shutdown => break,
                _ = hup.recv() => {
                    let _ = reload(&handle);
                }
                r = request => match r {
                    Some(skopos_server::Lifecycle::Reload(reply)) => {
                        let _ = reply.send(reload(&handle));
                    }
                    Some(skopos_server::Lifecycle::Quit) => {
                        tracing::info!("quit requested over HTTP");
                        break;
                    }
                    None => lifecycle = None,
                },
            }
        }
        tracing::info!("shutting down");
        handle.shutdown().await
    })
}

fn run_agent(args: skopos_agent::AgentArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let shutdown = shutdown_signal();
        skopos_agent::run(args, shutdown).await
    })
}

/// The bearer token in `path`, if given.
fn read_token(path: Option<PathBuf>) -> anyhow::Result<Option<String>> {
    path.map(|p| {
        std::fs::read_to_string(&p)
            .map(|t| t.trim().to_string())
            .map_err(|e| anyhow::anyhow!("cannot read auth token file {}: {e}", p.display()))
    })
    .transpose()
}
