//! Wiring: opens the TSDB, binds every listener, serves, runs the background
//! loops (maintenance, self-scrape, scraping), and shuts all of it down in
//! order so the WAL is flushed and closed last.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use skopos_ingest::otlp::{Translator, TranslatorOptions};
use skopos_ingest::scrape::{ScrapeConfigFile, ScrapeManager};
use skopos_model::{AppendError, AppendOutcome, LogBatch, SampleSink, WriteBatch};
use skopos_tsdb::Db;
use tokio::task::JoinHandle;

use crate::auth::Token;
use crate::selfmon::SelfMetrics;

/// Certificate and key (PEM) for serving HTTPS.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Everything the server needs; the binary builds it from flags and the
/// config file.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub otlp_http_listen: Option<SocketAddr>,
    pub otlp_grpc_listen: Option<SocketAddr>,
    /// Bearer token every request must carry, if set.
    pub auth_token: Option<String>,
    /// Allow a non-loopback listener without a token.
    pub insecure: bool,
    pub tls: Option<TlsConfig>,
    pub tsdb: skopos_tsdb::Options,
    /// Largest request body accepted, compressed or decompressed.
    pub max_body_bytes: usize,
    /// How often skopos stores its own metrics; `None` disables it.
    pub self_scrape_interval: Option<Duration>,
    pub maintenance_interval: Duration,
    pub scrape: Option<ScrapeConfigFile>,
    pub otlp: TranslatorOptions,
    /// PromQL limits: lookback delta, max samples, timeout.
    pub query: skopos_promql::EngineOptions,
    /// Queries evaluated at once; more wait (`--query.max-concurrency`).
    pub query_max_concurrency: usize,
    /// Log store limits and retention.
    pub logs: skopos_logs::Options,
    /// Trace store limits and retention.
    pub traces: skopos_traces::Options,
    /// TraceQL search limits (timeout, traces inspected, default limit).
    pub traceql: skopos_traceql::EngineOptions,
    /// Span metrics (`traces_spanmetrics_*`) settings.
    pub span_metrics: skopos_spanmetrics::SpanMetricsConfig,
    /// Service graph (`traces_service_graph_*`) settings.
    pub service_graph: skopos_spanmetrics::ServiceGraphConfig,
    /// How often span metrics and the service graph are written to the
    /// TSDB; `None` stops deriving metrics from spans.
    pub span_metrics_interval: Option<Duration>,
    /// Exemplars kept in memory (a ring over all series).
    pub max_exemplars: usize,
}

impl ServerConfig {
    pub fn new(data_dir: PathBuf) -> Self {
        ServerConfig {
            data_dir,
            listen: "127.0.0.1:9700".parse().expect("valid literal"),
            otlp_http_listen: Some("127.0.0.1:4318".parse().expect("valid literal")),
            otlp_grpc_listen: Some("127.0.0.1:4317".parse().expect("valid literal")),
            auth_token: None,
            insecure: false,
            tls: None,
            tsdb: skopos_tsdb::Options::default(),
            max_body_bytes: 32 << 20,
            self_scrape_interval: Some(Duration::from_secs(15)),
            maintenance_interval: Duration::from_secs(60),
            scrape: None,
            otlp: TranslatorOptions::default(),
            query: skopos_promql::EngineOptions::default(),
            logs: skopos_logs::Options::default(),
            query_max_concurrency: 20,
            traces: skopos_traces::Options::default(),
            traceql: skopos_traceql::EngineOptions::default(),
            span_metrics: skopos_spanmetrics::SpanMetricsConfig::default(),
            service_graph: skopos_spanmetrics::ServiceGraphConfig::default(),
            span_metrics_interval: Some(Duration::from_secs(15)),
            max_exemplars: crate::exemplars::DEFAULT_MAX_EXEMPLARS,
        }
    }

    /// Refuses to expose the server beyond loopback without a token or an
    /// explicit `--insecure`.
    pub fn validate(&self) -> anyhow::Result<()> {
        let addrs = [
            Some(self.listen),
            self.otlp_http_listen,
            self.otlp_grpc_listen,
        ];
        for addr in addrs.into_iter().flatten() {
            if !addr.ip().is_loopback() && self.auth_token.is_none() && !self.insecure {
                bail!(
                    "refusing to listen on non-loopback address {addr} without authentication: \
                     pass --auth-token-file FILE (clients then send Authorization: Bearer <token>) \
                     or --insecure to accept unauthenticated requests"
                );
            }
        }
        if let Some(t) = &self.auth_token {
            if t.trim().is_empty() {
                bail!("the auth token file is empty");
            }
        }
        Ok(())
    }
}

/// Shared state of every handler.
pub struct AppState {
    pub db: Arc<Db>,
    /// The log store (`<data-dir>/logs`).
    pub logs: Arc<skopos_logs::Store>,
    /// The trace store (`<data-dir>/traces`).
    pub traces: Arc<skopos_traces::Store>,
    /// TraceQL limits for the Tempo and Jaeger APIs.
    pub traceql: skopos_traceql::EngineOptions,
    /// Span metrics and service graph processors fed by every stored batch
    /// (`None` when `span_metrics_interval` is off).
    pub derived: Option<Arc<crate::traces::SpanDerived>>,
    /// Exemplars from the span metrics, for `/api/v1/query_exemplars`.
    pub exemplars: crate::exemplars::ExemplarStore,
    pub metrics: Arc<SelfMetrics>,
    pub otlp: Translator,
    pub max_body_bytes: usize,
    pub auth_token: Option<String>,
    pub query: QueryState,
    pub metadata: crate::metadata::MetadataStore,
    /// Open `/loki/api/v1/tail` sockets, offered every stored log batch.
    pub tail: Arc<crate::tail::TailHub>,
    /// Set to true when the server begins shutting down, so long-lived
    /// connections (tails) close instead of holding the shutdown up.
    pub closing: tokio::sync::watch::Sender<bool>,
}

/// What the query handlers share: engine limits and the concurrency gate.
pub struct QueryState {
    pub opts: skopos_promql::EngineOptions,
    pub slots: Arc<tokio::sync::Semaphore>,
}

/// A store failure, classified for status codes.
pub enum StoreError {
    /// The client's data is at fault; do not retry.
    Client(String),
    /// Storage could not take the write; retry later.
    Unavailable(String),
}

impl AppState {
    /// Appends a log batch off the async runtime, then offers it to the
    /// open tails.
    pub async fn append_logs(
        &self,
        batch: LogBatch,
    ) -> Result<Result<skopos_logs::Appended, skopos_logs::LogsError>, crate::panic::Panicked> {
        let copy = self.tail.active().then(|| batch.clone());
        let logs = self.logs.clone();
        let result =
            crate::panic::blocking_or_error("log append", move || logs.append(batch)).await?;
        if let (Ok(_), Some(batch)) = (&result, copy) {
            self.tail.publish(&batch);
        }
        Ok(result)
    }

    /// Appends a batch off the async runtime and counts the outcome.
    pub async fn store(
        &self,
        protocol: &'static str,
        batch: WriteBatch,
    ) -> Result<AppendOutcome, StoreError> {
        if batch.series.is_empty() {
            return Ok(AppendOutcome::default());
        }
        let db = self.db.clone();
        let result = crate::panic::blocking_or_error("sample append", move || db.append(&batch))
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        match result {
            Ok(outcome) => {
                self.metrics.ingested(protocol, outcome.samples_appended);
                if outcome.too_old > 0 {
                    self.metrics.rejected(protocol, "too_old", outcome.too_old);
                }
                if outcome.conflicts > 0 {
                    self.metrics
                        .rejected(protocol, "conflict", outcome.conflicts);
                }
                Ok(outcome)
            }
            Err(e @ AppendError::SeriesLimit { .. }) => {
                self.metrics.rejected(protocol, "series_limit", 1);
                Err(StoreError::Client(e.to_string()))
            }
            Err(e) if e.is_client_error() => {
                self.metrics.rejected(protocol, "invalid_series", 1);
                Err(StoreError::Client(e.to_string()))
            }
            Err(e) => {
                self.metrics.rejected(protocol, "unavailable", 1);
                Err(StoreError::Unavailable(e.to_string()))
            }
        }
    }
}

/// The gRPC server's stop signal and task.
type GrpcTask = (
    tokio::sync::oneshot::Sender<()>,
    JoinHandle<Result<(), tonic::transport::Error>>,
);

/// A running server: its bound addresses, and the means to stop it.
pub struct ServerHandle {
    pub listen: SocketAddr,
    pub otlp_http: Option<SocketAddr>,
    pub otlp_grpc: Option<SocketAddr>,
    state: Arc<AppState>,
    http: Vec<(
        axum_server::Handle<SocketAddr>,
        JoinHandle<std::io::Result<()>>,
    )>,
    grpc: Option<GrpcTask>,
    loops: Vec<JoinHandle<()>>,
    scraper: Arc<ScrapeManager>,
}

fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    let l = TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr} ({what})"))?;
    l.set_nonblocking(true)?;
    Ok(l)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as i64
}

/// Opens storage and starts every listener and loop.
pub async fn start(config: ServerConfig) -> anyhow::Result<ServerHandle> {
    config.validate()?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    let tsdb_dir = config.data_dir.join("metrics");
    let opts = config.tsdb.clone();
    let started = Instant::now();
    let db = tokio::task::spawn_blocking(move || Db::open(&tsdb_dir, opts))
        .await?
        .with_context(|| {
            format!(
                "cannot open the metrics store in {}",
                config.data_dir.display()
            )
        })?;
    let db = Arc::new(db);
    let st = db.stats();
    tracing::info!(
        head_series = st.head_series,
        head_samples = st.head_samples,
        blocks = st.blocks,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "metrics store open"
    );

    let metrics = Arc::new(SelfMetrics::default());
    let logs_dir = config.data_dir.join("logs");
    let logs_opts = config.logs.clone();
    let logs = tokio::task::spawn_blocking(move || skopos_logs::Store::open(&logs_dir, logs_opts))
        .await?
        .with_context(|| {
            format!(
                "opening the log store in {}",
                config.data_dir.join("logs").display()
            )
        })?;
    let logs = Arc::new(logs);
    let traces_dir = config.data_dir.join("traces");
    let traces_opts = config.traces.clone();
    let traces =
        tokio::task::spawn_blocking(move || skopos_traces::Store::open(&traces_dir, traces_opts))
            .await?
            .with_context(|| {
                format!(
                    "opening the trace store in {}",
                    config.data_dir.join("traces").display()
                )
            })?;
    let traces = Arc::new(traces);
    let derived = config
        .span_metrics_interval
        .map(|_| crate::traces::SpanDerived {
            span_metrics: parking_lot::Mutex::new(skopos_spanmetrics::SpanMetrics::new(
                config.span_metrics.clone(),
            )),
            service_graph: parking_lot::Mutex::new(skopos_spanmetrics::ServiceGraph::new(
                config.service_graph.clone(),
            )),
        })
        .map(Arc::new);
    let state = Arc::new(AppState {
        db: db.clone(),
        logs: logs.clone(),
        traces: traces.clone(),
        traceql: config.traceql.clone(),
        derived,
        exemplars: crate::exemplars::ExemplarStore::new(config.max_exemplars),
        metrics: metrics.clone(),
        otlp: Translator::new(config.otlp.clone()),
        max_body_bytes: config.max_body_bytes,
        auth_token: config.auth_token.clone(),
        query: QueryState {
            opts: config.query.clone(),
            slots: Arc::new(tokio::sync::Semaphore::new(
                config.query_max_concurrency.max(1),
            )),
        },
        metadata: crate::metadata::MetadataStore::default(),
        tail: Arc::default(),
        closing: tokio::sync::watch::Sender::new(false),
    });

    let main_listener = bind(config.listen, "--listen")?;
    let listen = main_listener.local_addr()?;
    let otlp_http_listener = config
        .otlp_http_listen
        .map(|a| bind(a, "--otlp-http-listen"))
        .transpose()?;
    let otlp_http = otlp_http_listener
        .as_ref()
        .map(|l| l.local_addr())
        .transpose()?;
    let grpc_listener = config
        .otlp_grpc_listen
        .map(|a| bind(a, "--otlp-grpc-listen"))
        .transpose()?;
    let otlp_grpc = grpc_listener.as_ref().map(|l| l.local_addr()).transpose()?;

    let app = router(state.clone());
    let tls = match &config.tls {
        Some(t) => Some(
            axum_server::tls_rustls::RustlsConfig::from_pem_file(&t.cert, &t.key)
                .await
                .with_context(|| {
                    format!(
                        "cannot load TLS certificate {} and key {}",
                        t.cert.display(),
                        t.key.display()
                    )
                })?,
        ),
        None => None,
    };
    let mut http = Vec::new();
    for l in std::iter::once(main_listener).chain(otlp_http_listener) {
        let handle = axum_server::Handle::new();
        let svc = app.clone().into_make_service();
        let task = match &tls {
            Some(tls) => {
                let server = axum_server::from_tcp_rustls(l, tls.clone())?.handle(handle.clone());
                tokio::spawn(async move { server.serve(svc).await })
            }
            None => {
                let server = axum_server::from_tcp(l)?.handle(handle.clone());
                tokio::spawn(async move { server.serve(svc).await })
            }
        };
        http.push((handle, task));
    }

    let grpc = match grpc_listener {
        Some(l) => {
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let incoming =
                tonic::transport::server::TcpIncoming::from(tokio::net::TcpListener::from_std(l)?);
            let svc = crate::grpc::service(state.clone(), config.max_body_bytes);
            let logs_svc = crate::grpc::logs_service(state.clone(), config.max_body_bytes);
            let traces_svc = crate::grpc::traces_service(state.clone(), config.max_body_bytes);
            let mut builder = tonic::transport::Server::builder();
            if let Some(t) = &config.tls {
                // The gRPC port is as private as the HTTP ports: same certificate.
                let read = |p: &std::path::Path| {
                    std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))
                };
                let identity = tonic::transport::Identity::from_pem(read(&t.cert)?, read(&t.key)?);
                builder = builder
                    .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
                    .context("cannot use the TLS certificate for OTLP/gRPC")?;
            }
            let task = tokio::spawn(async move {
                builder
                    .add_service(svc)
                    .add_service(logs_svc)
                    .add_service(traces_svc)
                    .serve_with_incoming_shutdown(incoming, async {
                        let _ = rx.await;
                    })
                    .await
            });
            Some((tx, task))
        }
        None => None,
    };

    let mut loops = Vec::new();
    let maint_db = db.clone();
    let maint_logs = logs.clone();
    let maint_traces = traces.clone();
    let every = config.maintenance_interval;
    loops.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let db = maint_db.clone();
            match tokio::task::spawn_blocking(move || db.maintenance(now_ms())).await {
                Ok(Ok(report)) => tracing::debug!(?report, "maintenance done"),
                Ok(Err(e)) => tracing::error!(error = %e, "maintenance failed"),
                Err(e) => tracing::error!(error = %e, "maintenance task panicked"),
            }
            let logs = maint_logs.clone();
            let now_ns = now_ms().saturating_mul(1_000_000);
            match tokio::task::spawn_blocking(move || logs.apply_retention(now_ns)).await {
                Ok(Ok(n)) if n > 0 => {
                    tracing::info!(segments = n, "log retention deleted segments")
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "log retention failed"),
                Err(e) => tracing::error!(error = %e, "log retention task panicked"),
            }
            let traces = maint_traces.clone();
            match tokio::task::spawn_blocking(move || traces.apply_retention(now_ns)).await {
                Ok(Ok(r)) if r.segments_deleted > 0 => tracing::info!(
                    segments = r.segments_deleted,
                    bytes = r.bytes_freed,
                    "trace retention deleted segments"
                ),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "trace retention failed"),
                Err(e) => tracing::error!(error = %e, "trace retention task panicked"),
            }
        }
    }));
    if let Some(every) = config.span_metrics_interval {
        loops.push(tokio::spawn(crate::traces::derived_metrics_loop(
            state.clone(),
            every,
        )));
    }
    if let Some(interval) = config.self_scrape_interval {
        loops.push(tokio::spawn(crate::selfmon::self_scrape_loop(
            metrics.clone(),
            db.clone(),
            listen.to_string(),
            interval,
        )));
    }
    let sink: Arc<dyn SampleSink> = Arc::new(CountingSink {
        db: db.clone(),
        metrics: metrics.clone(),
    });
    let scraper = Arc::new(ScrapeManager::new(sink));
    let scrape_file = config.scrape.clone().unwrap_or_default();
    for w in scrape_file.warnings() {
        tracing::warn!("{w}");
    }
    scraper.apply(&scrape_file);

    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let addr = |a: Option<SocketAddr>| a.map_or_else(|| "off".to_string(), |a| a.to_string());
    tracing::info!(
        %listen,
        otlp_http = addr(otlp_http),
        otlp_grpc = addr(otlp_grpc),
        "skopos serving on {scheme}://{listen}"
    );
    Ok(ServerHandle {
        listen,
        otlp_http,
        otlp_grpc,
        state,
        http,
        grpc,
        loops,
        scraper,
    })
}

/// Sends scraped samples to the TSDB and counts them.
struct CountingSink {
    db: Arc<Db>,
    metrics: Arc<SelfMetrics>,
}

impl SampleSink for CountingSink {
    fn append(&self, batch: &WriteBatch) -> Result<AppendOutcome, AppendError> {
        let r = self.db.append(batch);
        if let Ok(o) = &r {
            self.metrics.ingested("scrape", o.samples_appended);
        }
        r
    }
}

impl ServerHandle {
    pub fn db(&self) -> &Arc<Db> {
        &self.state.db
    }

    pub fn logs(&self) -> &Arc<skopos_logs::Store> {
        &self.state.logs
    }

    pub fn traces(&self) -> &Arc<skopos_traces::Store> {
        &self.state.traces
    }

    /// Collects span metrics and the service graph into the TSDB now (what
    /// the timer does every `span_metrics_interval`; nothing when that is
    /// off).
    pub async fn collect_span_metrics(&self) {
        crate::traces::collect_derived(&self.state).await;
    }

    pub fn scraper(&self) -> &Arc<ScrapeManager> {
        &self.scraper
    }

    /// Applies a new scrape configuration (on SIGHUP): targets that remain
    /// keep scraping, removed ones are stopped with staleness markers.
    pub fn reload_scrape(&self, file: &ScrapeConfigFile) {
        for w in file.warnings() {
            tracing::warn!("{w}");
        }
        self.scraper.apply(file);
        tracing::info!(
            jobs = file.scrape_configs.len(),
            "scrape configuration reloaded"
        );
    }

    /// Stops accepting requests, lets in-flight ones finish (up to 10 s),
    /// stops scraping (writing staleness markers), then closes the TSDB,
    /// which flushes and fsyncs the WAL.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.state.closing.send_replace(true);
        for (h, _) in &self.http {
            h.graceful_shutdown(Some(Duration::from_secs(10)));
        }
        if let Some((tx, task)) = self.grpc {
            let _ = tx.send(());
            let _ = task.await;
        }
        for (_, task) in self.http {
            let _ = task.await;
        }
        self.scraper.stop().await;
        for l in &self.loops {
            l.abort();
        }
        for l in self.loops {
            let _ = l.await;
        }
        drop(self.scraper);
        // What the processors counted since the last tick.
        crate::traces::collect_derived(&self.state).await;
        // The log head goes to a segment, so a restart need not replay it.
        let logs = self.state.logs.clone();
        match tokio::task::spawn_blocking(move || logs.flush()).await? {
            Ok(()) => tracing::info!("log store flushed"),
            Err(e) => {
                tracing::error!(error = %e, "log store flush failed; the WAL keeps the lines")
            }
        }
        let traces = self.state.traces.clone();
        match tokio::task::spawn_blocking(move || traces.flush()).await? {
            Ok(()) => tracing::info!("trace store flushed"),
            Err(e) => {
                tracing::error!(error = %e, "trace store flush failed; the WAL keeps the spans")
            }
        }
        let state = self.state;
        let mut db = state.db.clone();
        drop(state);
        for _ in 0..50 {
            match Arc::try_unwrap(db) {
                Ok(db) => {
                    tokio::task::spawn_blocking(move || db.close()).await??;
                    tracing::info!("metrics store closed");
                    return Ok(());
                }
                Err(still_shared) => {
                    db = still_shared;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        tracing::warn!("metrics store still in use at shutdown; it flushes when dropped");
        Ok(())
    }
}

fn router(state: Arc<AppState>) -> Router {
    let token = state.auth_token.clone().map(|t| Token(t.into()));
    Router::new()
        .route("/api/v1/write", post(crate::remote_write::write))
        .route("/loki/api/v1/push", post(crate::loki_api::push))
        .route("/api/v1/logs/ndjson", post(crate::loki_api::ndjson))
        .route("/loki/api/v1/tail", get(crate::tail::tail))
        .route(
            "/loki/api/v1/delete",
            post(crate::loki_api::delete).get(crate::loki_api::delete_requests),
        )
        .route(
            "/loki/api/v1/query_range",
            get(crate::loki_api::query_range).post(crate::loki_api::query_range),
        )
        .route(
            "/loki/api/v1/query",
            get(crate::loki_api::query).post(crate::loki_api::query),
        )
        .route(
            "/loki/api/v1/series",
            get(crate::loki_api::series).post(crate::loki_api::series),
        )
        .route(
            "/loki/api/v1/index/stats",
            get(crate::loki_api::index_stats).post(crate::loki_api::index_stats),
        )
        .route(
            "/loki/api/v1/labels",
            get(crate::loki_api::labels).post(crate::loki_api::labels),
        )
        .route(
            "/loki/api/v1/label/{name}/values",
            get(crate::loki_api::label_values).post(crate::loki_api::label_values),
        )
        .route("/v1/metrics", post(crate::otlp_http::metrics))
        .route("/v1/logs", post(crate::otlp_http::logs))
        .route("/otlp/v1/logs", post(crate::otlp_http::logs))
        .route(
            "/api/v1/series",
            get(crate::api::series).post(crate::api::series),
        )
        .route(
            "/api/v1/labels",
            get(crate::api::labels).post(crate::api::labels),
        )
        .route("/api/v1/label/{name}/values", get(crate::api::label_values))
        .route(
            "/api/v1/query",
            get(crate::query_api::query).post(crate::query_api::query),
        )
        .route(
            "/api/v1/query_range",
            get(crate::query_api::query_range).post(crate::query_api::query_range),
        )
        .route(
            "/api/v1/format_query",
            get(crate::query_api::format_query).post(crate::query_api::format_query),
        )
        .route("/api/v1/status/buildinfo", get(crate::query_api::buildinfo))
        .route("/api/v1/status/tsdb", get(crate::metadata::status_tsdb))
        .route("/api/v1/metadata", get(crate::metadata::metadata))
        .route(
            "/api/v1/query_exemplars",
            get(crate::exemplars::query_exemplars).post(crate::exemplars::query_exemplars),
        )
        .route("/v1/traces", post(crate::traces::otlp_traces))
        .route("/api/v2/spans", post(crate::traces::zipkin_spans))
        .route("/api/echo", get(|| async { "echo" }))
        .route("/api/traces/{id}", get(crate::tempo_api::trace_v1))
        .route("/api/v2/traces/{id}", get(crate::tempo_api::trace_v2))
        .route("/api/traces/{id}/logs", get(crate::tempo_api::trace_logs))
        .route("/api/search", get(crate::tempo_api::search))
        .route("/api/search/tags", get(crate::tempo_api::tags_v1))
        .route("/api/v2/search/tags", get(crate::tempo_api::tags_v2))
        .route(
            "/api/search/tag/{tag}/values",
            get(crate::tempo_api::tag_values_v1),
        )
        .route(
            "/api/v2/search/tag/{tag}/values",
            get(crate::tempo_api::tag_values_v2),
        )
        .route("/jaeger/api/services", get(crate::jaeger_api::services))
        .route(
            "/jaeger/api/services/{service}/operations",
            get(crate::jaeger_api::service_operations),
        )
        .route("/jaeger/api/operations", get(crate::jaeger_api::operations))
        .route("/jaeger/api/traces", get(crate::jaeger_api::find_traces))
        .route("/jaeger/api/traces/{id}", get(crate::jaeger_api::trace))
        .route(
            "/jaeger/api/dependencies",
            get(crate::jaeger_api::dependencies),
        )
        .route("/metrics", get(self_metrics))
        .route("/-/healthy", get(|| async { "skopos is Healthy.\n" }))
        .route("/-/ready", get(|| async { "skopos is Ready.\n" }))
        .route("/", get(index))
        .fallback(|| async { (axum::http::StatusCode::NOT_FOUND, "404 page not found\n") })
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .layer(middleware::from_fn_with_state(
            token,
            crate::auth::require_token,
        ))
        .layer(middleware::from_fn(crate::panic::catch_panic))
        .with_state(state)
}

async fn track(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let handler = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "other".to_string());
    let started = Instant::now();
    let resp = next.run(req).await;
    st.metrics
        .observe_request(&handler, resp.status().as_u16(), started.elapsed());
    resp
}

async fn self_metrics(State(st): State<Arc<AppState>>) -> Response {
    let text = st.metrics.render(&st.db);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn index() -> Html<&'static str> {
    Html(include_str!("index.html"))
}
