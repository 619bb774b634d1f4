//! The `skopos` binary: command line, config loading, logging, signals and
//! process lifetime. Everything else lives in the library crates; this is the
//! only place that knows about flags, config files and exit codes.

mod config;
mod tsdb_cmd;
mod units;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
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
    /// Work with the metrics store on disk.
    Tsdb {
        #[command(subcommand)]
        command: TsdbCommand,
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
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        "json" => builder.json().flatten_event(true).init(),
        "text" => builder.init(),
        other => anyhow::bail!("--log-format: {other:?} is not one of text, json"),
    }
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("received SIGINT"),
        _ = term.recv() => tracing::info!("received SIGTERM"),
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
    rt.block_on(skopos_server::run(cfg, shutdown_signal()))
}
