//! Composition: opens the three stores, builds the shared state, merges the
//! capabilities' routes (`metrics`, `logs`, `traces`, `http`) and gRPC
//! services, binds every listener, runs the background loops (maintenance,
//! self-scrape, scraping, span metrics), and shuts all of it down in order
//! so the WALs are flushed and closed last.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use skopos_ingest::otlp::{Translator, TranslatorOptions};
use skopos_ingest::scrape::{ScrapeConfigFile, ScrapeManager};
use skopos_model::{Lifecycle, SampleSink};
use skopos_tsdb::Db;
use skopos_units::now_ms;
use tokio::task::JoinHandle;

use crate::http::auth::Token;
use crate::http::lenient::Lenient;
use crate::metrics::selfmon::SelfMetrics;
use crate::state::{AppState, CountingSink, QueryState};

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
    /// The config file as `/api/v1/status/config` shows it (secrets
    /// already redacted by whoever read it).
    pub config_yaml: String,
    /// The effective settings by flag name, for `/api/v1/status/flags`.
    pub flags: std::collections::BTreeMap<String, String>,
    /// Accept `POST /-/reload` and `/-/quit` (`--web.enable-lifecycle`).
    pub enable_lifecycle: bool,
    /// Accept the TSDB admin API: snapshot, delete_series,
    /// clean_tombstones (`--web.enable-admin-api`).
    pub enable_admin_api: bool,
    /// How far ahead of now a sample, line or span may be stamped.
    pub future_grace: Duration,
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
            config_yaml: String::new(),
            flags: Default::default(),
            enable_lifecycle: false,
            enable_admin_api: false,
            future_grace: Duration::from_secs(600),
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

/// The gRPC server's stop signal and task.
/// An HTTP listener's handle and serving task.
type HttpTask = (
    axum_server::Handle<SocketAddr>,
    JoinHandle<std::io::Result<()>>,
);

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
    http: Vec<HttpTask>,
    grpc: Option<GrpcTask>,
    loops: Vec<JoinHandle<()>>,
    scraper: Arc<ScrapeManager>,
    lifecycle:
        parking_lot::Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<crate::state::Lifecycle>>>,
}

fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    let l = TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr} ({what})"))?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Opens storage and starts every listener and loop.
pub async fn start(config: ServerConfig) -> anyhow::Result<ServerHandle> {
    config.validate()?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    let (db, logs, traces) = open_stores(&config).await?;
    let metrics = Arc::new(SelfMetrics::default());
    let (lifecycle_tx, lifecycle_rx) = tokio::sync::mpsc::unbounded_channel();
    let state = build_state(
        &config,
        (db.clone(), logs.clone(), traces.clone()),
        metrics.clone(),
        config.enable_lifecycle.then_some(lifecycle_tx),
    );

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
    let http = serve_http(
        &config,
        app,
        std::iter::once(main_listener).chain(otlp_http_listener),
    )
    .await?;
    let grpc = match grpc_listener {
        Some(l) => Some(serve_grpc(&config, &state, l)?),
        None => None,
    };
    let mut loops = vec![tokio::spawn(maintenance_loop(
        db.clone(),
        logs,
        traces,
        config.maintenance_interval,
    ))];
    if let Some(every) = config.span_metrics_interval {
        loops.push(tokio::spawn(crate::traces::ingest::derived_metrics_loop(
            state.clone(),
            every,
        )));
    }
    if let Some(interval) = config.self_scrape_interval {
        loops.push(tokio::spawn(crate::metrics::selfmon::self_scrape_loop(
            state.clone(),
            listen.to_string(),
            interval,
        )));
    }
    let scraper = state.scraper.clone();
    let scrape_file = state.scrape_config.read().clone();
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
        lifecycle: parking_lot::Mutex::new(Some(lifecycle_rx)),
    })
}

/// Opens the metrics, log and trace stores under the data directory.
async fn open_stores(
    config: &ServerConfig,
) -> anyhow::Result<(Arc<Db>, Arc<skopos_logs::Store>, Arc<skopos_traces::Store>)> {
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
    let imported = crate::logs::loki_api::import_legacy_delete_log(&logs)
        .context("moving the old delete history into the log store")?;
    if imported > 0 {
        tracing::info!(
            requests = imported,
            "delete history moved from delete_requests.jsonl into the log store"
        );
    }
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
    Ok((db, logs, traces))
}

type Stores = (Arc<Db>, Arc<skopos_logs::Store>, Arc<skopos_traces::Store>);

fn build_state(
    config: &ServerConfig,
    (db, logs, traces): Stores,
    metrics: Arc<SelfMetrics>,
    lifecycle: Option<tokio::sync::mpsc::UnboundedSender<crate::state::Lifecycle>>,
) -> Arc<AppState> {
    let sink: Arc<dyn SampleSink> = Arc::new(CountingSink {
        db: db.clone(),
        metrics: metrics.clone(),
    });
    let status = crate::metrics::status::StatusInfo::new(config, db.stats().wal_segments);
    let future_grace_ns = config.future_grace.as_nanos().min(i64::MAX as u128) as i64;
    let bounds = |retention_ns: Option<i64>| crate::state::TimeBounds {
        retention_ns: retention_ns.filter(|r| *r > 0),
        future_grace_ns,
    };
    let derived = config
        .span_metrics_interval
        .map(|_| crate::traces::ingest::SpanDerived {
            span_metrics: parking_lot::Mutex::new(skopos_spanmetrics::SpanMetrics::new(
                config.span_metrics.clone(),
            )),
            service_graph: parking_lot::Mutex::new(skopos_spanmetrics::ServiceGraph::new(
                config.service_graph.clone(),
            )),
        })
        .map(Arc::new);
    Arc::new(AppState {
        db,
        logs,
        traces,
        traceql: config.traceql.clone(),
        derived,
        metrics,
        otlp: Translator::new(config.otlp.clone()),
        max_body_bytes: config.max_body_bytes,
        auth_token: config.auth_token.clone(),
        query: QueryState {
            opts: config.query.clone(),
            slots: Arc::new(tokio::sync::Semaphore::new(
                config.query_max_concurrency.max(1),
            )),
        },
        metadata: crate::metrics::metadata::MetadataStore::default(),
        tail: Arc::default(),
        closing: tokio::sync::watch::Sender::new(false),
        scraper: Arc::new(ScrapeManager::new(sink)),
        metrics_bounds: bounds(config.tsdb.retention_time.map(|d| d.as_nanos() as i64)),
        logs_bounds: bounds(config.logs.retention_ns),
        traces_bounds: bounds(config.traces.retention_ns),
        scrape_config: parking_lot::RwLock::new(config.scrape.clone().unwrap_or_default()),
        status,
        lifecycle,
        admin_api: config.enable_admin_api,
    })
}

/// Serves the main router on the main and OTLP/HTTP listeners (TLS when
/// configured), request targets read as leniently as Go reads them.
async fn serve_http(
    config: &ServerConfig,
    app: Router,
    listeners: impl Iterator<Item = TcpListener>,
) -> anyhow::Result<Vec<HttpTask>> {
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
    for l in listeners {
        let handle = axum_server::Handle::new();
        let svc = app.clone().into_make_service();
        let task = match &tls {
            Some(tls) => {
                let tls = axum_server::tls_rustls::RustlsAcceptor::new(tls.clone());
                let server = axum_server::from_tcp(l)?
                    .acceptor(Lenient(tls))
                    .handle(handle.clone());
                tokio::spawn(async move { server.serve(svc).await })
            }
            None => {
                let server = axum_server::from_tcp(l)?
                    .acceptor(Lenient(axum_server::accept::DefaultAcceptor))
                    .handle(handle.clone());
                tokio::spawn(async move { server.serve(svc).await })
            }
        };
        http.push((handle, task));
    }

    Ok(http)
}

/// Serves the three OTLP gRPC services on `l` (TLS when configured).
fn serve_grpc(
    config: &ServerConfig,
    state: &Arc<AppState>,
    l: TcpListener,
) -> anyhow::Result<GrpcTask> {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let incoming =
        tonic::transport::server::TcpIncoming::from(tokio::net::TcpListener::from_std(l)?);
    let svc = crate::metrics::grpc::service(state.clone(), config.max_body_bytes);
    let logs_svc = crate::logs::grpc::logs_service(state.clone(), config.max_body_bytes);
    let traces_svc = crate::traces::grpc::traces_service(state.clone(), config.max_body_bytes);
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
    Ok((tx, task))
}

/// Every store's maintenance (TSDB head cuts, compaction and retention;
/// log and trace retention), every `every`.
async fn maintenance_loop(
    maint_db: Arc<Db>,
    maint_logs: Arc<skopos_logs::Store>,
    maint_traces: Arc<skopos_traces::Store>,
    every: Duration,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let now_ns = now_ms().saturating_mul(1_000_000);
        maintain(&maint_db, now_ns).await;
        maintain(&maint_logs, now_ns).await;
        maintain(&maint_traces, now_ns).await;
    }
}

/// One maintenance pass of one store, off the async threads; failures are
/// logged (the next tick tries again).
async fn maintain<S: Lifecycle>(store: &Arc<S>, now_ns: i64) {
    let s = store.clone();
    match tokio::task::spawn_blocking(move || s.maintenance(now_ns)).await {
        Ok(Ok(report)) if report == S::Report::default() => {
            tracing::debug!(store = S::KIND, "maintenance: nothing to do")
        }
        Ok(Ok(report)) => tracing::info!(store = S::KIND, ?report, "maintenance done"),
        Ok(Err(e)) => tracing::error!(store = S::KIND, error = %e, "maintenance failed"),
        Err(e) => tracing::error!(store = S::KIND, error = %e, "maintenance task panicked"),
    }
}

/// Closes one store at shutdown (see [`Lifecycle::close`]); a failure is
/// logged, not fatal: what was acknowledged is in the WAL either way.
async fn close_store<S: Lifecycle>(store: &Arc<S>) -> anyhow::Result<()> {
    let s = store.clone();
    match tokio::task::spawn_blocking(move || s.close()).await? {
        Ok(()) => tracing::info!(store = S::KIND, "store closed"),
        Err(e) => {
            tracing::error!(store = S::KIND, error = %e, "closing the store failed; its WAL keeps what was acknowledged")
        }
    }
    Ok(())
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
        crate::traces::ingest::collect_derived(&self.state).await;
    }

    pub fn scraper(&self) -> &Arc<ScrapeManager> {
        &self.scraper
    }

    /// Applies a new scrape configuration (on SIGHUP): targets that remain
    /// keep scraping, removed ones are stopped with staleness markers.
    /// The lifecycle requests (`POST /-/reload`, `/-/quit`) for the caller
    /// to carry out; `None` after the first call.
    pub fn lifecycle_requests(
        &self,
    ) -> Option<tokio::sync::mpsc::UnboundedReceiver<crate::state::Lifecycle>> {
        self.lifecycle.lock().take()
    }

    /// Records a reload that failed (the running configuration stays).
    pub fn reload_failed(&self) {
        self.state.status.reloaded(false);
    }

    pub fn reload_scrape(&self, file: &ScrapeConfigFile) {
        for w in file.warnings() {
            tracing::warn!("{w}");
        }
        self.scraper.apply(file);
        *self.state.scrape_config.write() = file.clone();
        self.state.status.reloaded(true);
        tracing::info!(
            jobs = file.scrape_configs.len(),
            "scrape configuration reloaded"
        );
    }

    /// Stops accepting requests, lets in-flight ones finish (up to 10 s),
    /// stops scraping (writing staleness markers), then closes every store
    /// the same way ([`Lifecycle::close`]): logs and traces flush their
    /// heads, and every WAL is fsynced and closed.
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
        crate::traces::ingest::collect_derived(&self.state).await;
        // The log and trace heads go to segments, so a restart need not
        // replay them; every WAL is fsynced and closed.
        close_store(&self.state.logs).await?;
        close_store(&self.state.traces).await?;
        close_store(&self.state.db).await?;
        // The directory lock goes with the last holder of the TSDB.
        let state = self.state;
        let db = Arc::downgrade(&state.db);
        drop(state);
        for _ in 0..50 {
            if db.strong_count() == 0 {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tracing::warn!("metrics store still in use at shutdown; its lock is released when dropped");
        Ok(())
    }
}

/// The main HTTP port: each capability's routes, then the layers every
/// request goes through (counting, the bearer token, the catch-panic layer).
fn router(state: Arc<AppState>) -> Router {
    let token = state.auth_token.clone().map(|t| Token(t.into()));
    Router::new()
        .merge(crate::metrics::routes())
        .merge(crate::logs::routes())
        .merge(crate::traces::routes())
        .merge(crate::http::routes())
        .fallback(|| async { (axum::http::StatusCode::NOT_FOUND, "404 page not found\n") })
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .layer(middleware::from_fn_with_state(
            token,
            crate::http::auth::require_token,
        ))
        .layer(middleware::from_fn(crate::http::panic::catch_panic))
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
