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
        /// The server's base URL.
        #[arg(long, default_value = "http://127.0.0.1:9700")]
        url: String,
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
        /// File holding the server's bearer token.
        #[arg(long)]
        auth_token_file: Option<PathBuf>,
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
    /// Work with the metrics store on disk.
    Tsdb {
        #[command(subcommand)]
        command: TsdbCommand,
    },
}

#[derive(Subcommand)]
enum LogsCommand {
    /// Summarise the log store on disk: segments, streams, entries, bytes,
    /// compression ratio (read-only; safe beside a running server).
    Inspect {
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
        /// The server's base URL.
        #[arg(long, default_value = "http://127.0.0.1:9700")]
        url: String,
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
        /// File holding the server's bearer token.
        #[arg(long)]
        auth_token_file: Option<PathBuf>,
    },
    /// Follow a LogQL log query live: the newest lines, then new ones as
    /// they arrive (the server's /loki/api/v1/tail WebSocket).
    Tail {
        /// The LogQL log query, e.g. '{app="web"} |= "error"'.
        expr: String,
        /// The server's base URL.
        #[arg(long, default_value = "http://127.0.0.1:9700")]
        url: String,
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
        /// File holding the server's bearer token.
        #[arg(long)]
        auth_token_file: Option<PathBuf>,
    },
    /// Delete for good the lines a selector (with optional line filters)
    /// picks in a time range. Without --yes, only counts them.
    Delete {
        /// A stream selector with optional line filters, e.g.
        /// '{app="web"} |= "password="'.
        expr: String,
        /// The server's base URL.
        #[arg(long, default_value = "http://127.0.0.1:9700")]
        url: String,
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
        /// File holding the server's bearer token.
        #[arg(long)]
        auth_token_file: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum TracesCommand {
    /// Draw a trace's span tree as a waterfall (service, name, offset,
    /// duration bar, status).
    Get {
        /// The trace id (hex).
        id: String,
        /// The server's base URL.
        #[arg(long, default_value = "http://127.0.0.1:9700")]
        url: String,
        /// Output: text or json (the Tempo API's OTLP JSON).
        #[arg(short = 'o', long, default_value = "text")]
        output: String,
        /// File holding the server's bearer token.
        #[arg(long)]
        auth_token_file: Option<PathBuf>,
    },
    /// Print the log lines that carry the trace id (structured metadata
    /// `trace_id`), oldest first.
    Logs {
        /// The trace id (hex).
        id: String,
        /// The server's base URL.
        #[arg(long, default_value = "http://127.0.0.1:9700")]
        url: String,
        /// Output: text or json (the raw API response).
        #[arg(short = 'o', long, default_value = "text")]
        output: String,
        /// File holding the server's bearer token.
        #[arg(long)]
        auth_token_file: Option<PathBuf>,
    },
    /// Search traces with TraceQL, e.g. '{ resource.service.name = "api" && status = error }'.
    Search {
        /// The TraceQL query.
        query: String,
        /// The server's base URL.
        #[arg(long, default_value = "http://127.0.0.1:9700")]
        url: String,
        /// How far back to search.
        #[arg(long, default_value = "1h")]
        since: String,
        /// Most traces returned.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Output: text or json (the raw API response).
        #[arg(short = 'o', long, default_value = "text")]
        output: String,
        /// File holding the server's bearer token.
        #[arg(long)]
        auth_token_file: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum TsdbCommand {
    /// Summarise a data directory: blocks, series, samples, bytes per sample,
    /// top label cardinalities. Safe while a server is running.
    Inspect {
        #[arg(long, default_value = "./skopos-data")]
        data_dir: PathBuf,
        /// Output format: text or json.
        #[arg(short = 'o', long, default_value = "text")]
        output: String,
    },
    /// Backfill a Prometheus text or OpenMetrics file whose samples carry
    /// timestamps into blocks (the server must be stopped).
    Import {
        file: PathBuf,
        #[arg(long, default_value = "./skopos-data")]
        data_dir: PathBuf,
    },
    /// Print raw samples, like `promtool tsdb dump` (the server must be stopped).
    Dump {
        #[arg(long, default_value = "./skopos-data")]
        data_dir: PathBuf,
        /// Series selector.
        #[arg(long = "match", default_value = "{__name__=~\".+\"}")]
        selector: String,
        /// Earliest timestamp, in milliseconds.
        #[arg(long, default_value_t = i64::MIN / 2, allow_hyphen_values = true)]
        min_time: i64,
        /// Latest timestamp, in milliseconds.
        #[arg(long, default_value_t = i64::MAX / 2, allow_hyphen_values = true)]
        max_time: i64,
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
    let result = match cli.command {
        Command::Server(flags) => {
            let format = cli
                .log_format
                .or_else(|| config::log_format_from_file(&flags))
                .unwrap_or_else(|| "text".into());
            init_logging(&format).and_then(|_| run_server(&flags))
        }
        Command::Query {
            expr,
            url,
            time,
            start,
            end,
            step,
            output,
            auth_token_file,
        } => read_token(auth_token_file).and_then(|token| {
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
        }),
        Command::Logs {
            command: LogsCommand::Inspect { data_dir, output },
        } => logs_cmd::inspect(&data_dir, &output),
        Command::Logs {
            command:
                LogsCommand::Query {
                    expr,
                    url,
                    since,
                    start,
                    end,
                    limit,
                    forward,
                    output,
                    auth_token_file,
                },
        } => read_token(auth_token_file).and_then(|token| {
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
        }),
        Command::Logs {
            command:
                LogsCommand::Tail {
                    expr,
                    url,
                    since,
                    limit,
                    delay_for,
                    output,
                    auth_token_file,
                },
        } => read_token(auth_token_file).and_then(|token| {
            logs_cmd::tail(logs_cmd::LogsTailArgs {
                expr,
                url,
                since,
                limit,
                delay_for,
                output,
                token,
            })
        }),
        Command::Logs {
            command:
                LogsCommand::Delete {
                    expr,
                    url,
                    start,
                    since,
                    end,
                    yes,
                    auth_token_file,
                },
        } => read_token(auth_token_file).and_then(|token| {
            logs_cmd::delete(logs_cmd::LogsDeleteArgs {
                expr,
                url,
                start,
                since,
                end,
                yes,
                token,
            })
        }),
        Command::Traces {
            command:
                TracesCommand::Get {
                    id,
                    url,
                    output,
                    auth_token_file,
                },
        } => read_token(auth_token_file)
            .and_then(|token| traces_cmd::get(&id, &url, &output, token.as_deref())),
        Command::Traces {
            command:
                TracesCommand::Logs {
                    id,
                    url,
                    output,
                    auth_token_file,
                },
        } => read_token(auth_token_file)
            .and_then(|token| traces_cmd::logs(&id, &url, &output, token.as_deref())),
        Command::Traces {
            command:
                TracesCommand::Search {
                    query,
                    url,
                    since,
                    limit,
                    output,
                    auth_token_file,
                },
        } => read_token(auth_token_file).and_then(|token| {
            traces_cmd::search(&query, &url, &since, limit, &output, token.as_deref())
        }),
        Command::Agent(args) => {
            init_logging(cli.log_format.as_deref().unwrap_or("text")).and_then(|_| run_agent(*args))
        }
        Command::Tsdb { command } => init_logging(cli.log_format.as_deref().unwrap_or("text"))
            .and_then(|_| match command {
                TsdbCommand::Inspect { data_dir, output } => tsdb_cmd::inspect(&data_dir, &output),
                TsdbCommand::Import { file, data_dir } => tsdb_cmd::import(&file, &data_dir),
                TsdbCommand::Dump {
                    data_dir,
                    selector,
                    min_time,
                    max_time,
                    output,
                } => tsdb_cmd::dump(&data_dir, &selector, min_time, max_time, &output),
            }),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("skopos: error: {e:#}");
            std::process::ExitCode::FAILURE
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
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = hup.recv() => match config::resolve(flags) {
                    // Only the scrape configuration is reloadable; ports and
                    // storage settings need a restart.
                    Ok(new) => handle.reload_scrape(&new.scrape.unwrap_or_default()),
                    Err(e) => tracing::error!("reload failed, keeping the running configuration: {e:#}"),
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
