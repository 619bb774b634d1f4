//! Live tailing: `GET /loki/api/v1/tail` (WebSocket), as Loki serves it.
//!
//! Every stored log batch is offered to the [`TailHub`]; each open tail has
//! a bounded queue of the streams its selector matches. A tail that cannot
//! keep up loses entries rather than slowing ingestion: what it lost is
//! reported in the next message's `dropped_entries`, as Loki does. A tail
//! starts with the newest `limit` stored lines since `start`, then sends new
//! lines as they arrive, each through the query's pipeline.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use parking_lot::Mutex;
use serde_json::{json, Value as J};
use skopos_model::{Direction, Labels, LogBatch, LogStream, Matcher};
use tokio::sync::mpsc;

use crate::http::api::{ApiError, Params};
use crate::state::AppState;

/// Stream batches a tail may have queued before it starts losing entries.
const QUEUE: usize = 1024;
/// Dropped entries remembered per tail between two messages.
const MAX_DROPPED_REPORTED: usize = 1000;
/// Loki's ceiling on `delay_for`, in seconds.
const MAX_DELAY_SECS: u64 = 5;

struct Subscriber {
    matchers: Vec<Matcher>,
    tx: mpsc::Sender<LogStream>,
    /// Label sets and times of the entries the queue had no room for.
    dropped: Mutex<Vec<(Labels, i64)>>,
}

/// The open tails, offered every stored batch.
#[derive(Default)]
pub struct TailHub {
    subs: Mutex<Vec<Arc<Subscriber>>>,
    open: AtomicUsize,
}

/// An open tail's queue; leaves the hub when dropped.
struct Subscription {
    hub: Arc<TailHub>,
    sub: Arc<Subscriber>,
    rx: mpsc::Receiver<LogStream>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.subs.lock().retain(|s| !Arc::ptr_eq(s, &self.sub));
        self.hub.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl TailHub {
    /// Whether any tail is open (a batch is copied for the hub only then).
    pub fn active(&self) -> bool {
        self.open.load(Ordering::Relaxed) > 0
    }

    /// Hands each open tail the streams of `batch` its selector matches,
    /// without waiting: a full queue records the entries as dropped.
    pub fn publish(&self, batch: &LogBatch) {
        let subs = self.subs.lock().clone();
        for sub in subs {
            for s in &batch.streams {
                if !sub.matchers.iter().all(|m| m.matches_labels(&s.labels)) {
                    continue;
                }
                if let Err(e) = sub.tx.try_send(s.clone()) {
                    let lost = match e {
                        mpsc::error::TrySendError::Full(s) => s,
                        mpsc::error::TrySendError::Closed(_) => break,
                    };
                    let mut dropped = sub.dropped.lock();
                    let room = MAX_DROPPED_REPORTED.saturating_sub(dropped.len());
                    dropped.extend(
                        lost.entries
                            .iter()
                            .take(room)
                            .map(|e| (lost.labels.clone(), e.ts)),
                    );
                }
            }
        }
    }

    fn subscribe(self: &Arc<Self>, matchers: Vec<Matcher>) -> Subscription {
        let (tx, rx) = mpsc::channel(QUEUE);
        let sub = Arc::new(Subscriber {
            matchers,
            tx,
            dropped: Mutex::new(Vec::new()),
        });
        self.subs.lock().push(sub.clone());
        self.open.fetch_add(1, Ordering::Relaxed);
        Subscription {
            hub: self.clone(),
            sub,
            rx,
        }
    }
}

/// What a tail request asked for, checked before the upgrade so that a bad
/// request gets a 400 with a message, not a socket that closes.
struct TailRequest {
    expr: String,
    log: skopos_logql::LogExpr,
    start: i64,
    limit: usize,
    delay: Duration,
}

fn tail_request(st: &AppState, p: &Params) -> Result<TailRequest, ApiError> {
    let expr = crate::logs::loki_api::required_query(p)?;
    let log = match skopos_logql::parse(&expr).map_err(crate::logs::loki_api::logql_error)? {
        skopos_logql::Expr::Log(log) => log,
        _ => {
            return Err(ApiError::bad_data(
                "tail needs a log query (a selector and a pipeline), not a metric query",
            ))
        }
    };
    let (start, _) = crate::logs::loki_api::range(p)?;
    let (limit, _) = crate::logs::loki_api::limit_and_direction(p)?;
    let max = crate::logs::loki_api::engine(st)
        .options()
        .max_entries_limit;
    if limit == 0 || (max > 0 && limit > max) {
        return Err(ApiError::bad_data(format!(
            "invalid limit {limit}: want 1 to {max}"
        )));
    }
    let delay = match p.get("delay_for") {
        Some(s) if !s.is_empty() => match s.parse::<u64>() {
            Ok(n) if n <= MAX_DELAY_SECS => Duration::from_secs(n),
            _ => {
                return Err(ApiError::bad_data(format!(
                    "invalid delay_for {s:?}: want whole seconds from 0 to {MAX_DELAY_SECS}"
                )))
            }
        },
        _ => Duration::ZERO,
    };
    Ok(TailRequest {
        expr,
        log,
        start,
        limit,
        delay,
    })
}

/// `GET /loki/api/v1/tail?query=...&start=...&limit=...&delay_for=...`.
pub async fn tail(
    State(st): State<Arc<AppState>>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::collect(
        &Method::GET,
        &HeaderMap::new(),
        q,
        axum::body::Body::empty(),
    )
    .await?;
    let req = tail_request(&st, &p)?;
    let Ok(ws) = ws else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_data",
            "/loki/api/v1/tail is a WebSocket endpoint: send an Upgrade: websocket request".into(),
        ));
    };
    Ok(ws.on_upgrade(move |socket| run(st, req, socket)))
}

/// A tail message: `streams` like a query's, and `dropped_entries` when the
/// tail lost some.
fn message(streams: &BTreeMap<Labels, Vec<(i64, String)>>, dropped: &[(Labels, i64)]) -> String {
    let labels = |l: &Labels| {
        J::Object(
            l.iter()
                .map(|x| (x.name.clone(), J::String(x.value.clone())))
                .collect(),
        )
    };
    let streams: Vec<J> = streams
        .iter()
        .map(|(l, v)| {
            json!({
                "stream": labels(l),
                "values": v.iter().map(|(t, line)| json!([t.to_string(), line])).collect::<Vec<_>>(),
            })
        })
        .collect();
    let mut m = json!({ "streams": streams });
    if !dropped.is_empty() {
        m["dropped_entries"] = dropped
            .iter()
            .map(|(l, t)| json!({"labels": labels(l), "timestamp": t.to_string()}))
            .collect();
    }
    m.to_string()
}

/// Identity of an entry sent from history (after the pipeline), so the
/// same entry arriving live while the history was read is not sent twice.
fn entry_key(labels: &Labels, ts: i64, line: &str) -> (String, i64, String) {
    (labels.to_string(), ts, line.to_string())
}

async fn run(st: Arc<AppState>, req: TailRequest, mut socket: WebSocket) {
    let mut sub = st.tail.subscribe(req.log.matchers.clone());
    let mut closing = st.closing.subscribe();
    // Stored lines first; the subscription is already collecting new ones.
    let now = crate::logs::loki_api::now_ns();
    let engine = crate::logs::loki_api::engine(&st);
    let logs = st.logs.clone();
    let (expr, start, limit) = (req.expr.clone(), req.start, req.limit);
    let history = crate::http::panic::blocking_or_error("tail history", move || {
        let cancel = skopos_logql::CancelToken::new();
        engine.query_range(
            logs.as_ref(),
            &expr,
            start,
            now,
            1,
            limit,
            Direction::Backward,
            &cancel,
        )
    })
    .await;
    let mut sent_before: HashSet<(String, i64, String)> = HashSet::new();
    let history = match history {
        Ok(Ok(skopos_logql::Value::Streams(streams))) => streams,
        Ok(Ok(_)) => Vec::new(),
        Ok(Err(e)) => {
            let _ = socket
                .send(Message::Close(Some(axum::extract::ws::CloseFrame {
                    code: axum::extract::ws::close_code::ERROR,
                    reason: e.to_string().chars().take(120).collect::<String>().into(),
                })))
                .await;
            return;
        }
        Err(_) => return,
    };
    if !history.is_empty() {
        let mut out: BTreeMap<Labels, Vec<(i64, String)>> = BTreeMap::new();
        for s in history {
            let v = out.entry(s.labels.clone()).or_default();
            for e in s.entries {
                sent_before.insert(entry_key(&s.labels, e.ts, &e.line));
                v.push((e.ts, e.line));
            }
            v.sort();
        }
        if socket
            .send(Message::Text(message(&out, &[]).into()))
            .await
            .is_err()
        {
            return;
        }
    }
    loop {
        let first = tokio::select! {
            s = sub.rx.recv() => match s {
                Some(s) => s,
                None => return,
            },
            m = socket.recv() => match m {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => continue,
            },
            _ = closing.changed() => {
                let _ = socket.send(Message::Close(Some(axum::extract::ws::CloseFrame {
                    code: axum::extract::ws::close_code::AWAY,
                    reason: "server shutting down".into(),
                }))).await;
                return;
            }
        };
        let mut pending = vec![first];
        if !req.delay.is_zero() {
            // Lines arriving within the delay go out together, in time order.
            let until = tokio::time::Instant::now() + req.delay;
            while let Ok(Some(s)) = tokio::time::timeout_at(until, sub.rx.recv()).await {
                pending.push(s);
            }
        }
        while let Ok(s) = sub.rx.try_recv() {
            pending.push(s);
        }
        let mut out: BTreeMap<Labels, Vec<(i64, String)>> = BTreeMap::new();
        for s in &pending {
            for e in &s.entries {
                let Some((labels, line)) = skopos_logql::process_entry(&req.log, &s.labels, e)
                else {
                    continue;
                };
                if !sent_before.is_empty() && sent_before.remove(&entry_key(&labels, e.ts, &line)) {
                    continue;
                }
                out.entry(labels).or_default().push((e.ts, line));
            }
        }
        for v in out.values_mut() {
            v.sort();
        }
        let dropped = std::mem::take(&mut *sub.sub.dropped.lock());
        if out.is_empty() && dropped.is_empty() {
            continue;
        }
        if socket
            .send(Message::Text(message(&out, &dropped).into()))
            .await
            .is_err()
        {
            return;
        }
    }
}
