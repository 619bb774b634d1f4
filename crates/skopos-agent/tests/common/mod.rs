//! An in-process fake Loki push receiver (axum on 127.0.0.1:0) that decodes
//! what the agent sends, and can be told to fail.

#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use prost::Message;
use skopos_agent::{Agent, Config, RunOptions};
use skopos_ingest::loki::proto;

#[derive(Debug, Clone, PartialEq)]
pub struct Got {
    pub labels: String,
    pub line: String,
    pub ts_ns: i64,
    pub metadata: Vec<(String, String)>,
}

#[derive(Default)]
pub struct Shared {
    /// Answer 503 to every push.
    pub fail: AtomicBool,
    /// Answer 400 to a push holding a line equal to this.
    pub poison: Mutex<Option<String>>,
    pub got: Mutex<Vec<Got>>,
    pub requests: AtomicU64,
    pub auth: Mutex<Vec<Option<String>>>,
}

pub struct Receiver {
    pub url: String,
    pub state: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn push(
    State(st): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    st.requests.fetch_add(1, SeqCst);
    st.auth.lock().unwrap().push(
        headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(String::from),
    );
    if st.fail.load(SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "down for the test".into());
    }
    if headers.get("content-type").and_then(|v| v.to_str().ok()) != Some("application/x-protobuf") {
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, "want protobuf".into());
    }
    let Ok(plain) = snap::raw::Decoder::new().decompress_vec(&body) else {
        return (StatusCode::BAD_REQUEST, "bad snappy".into());
    };
    let Ok(req) = proto::PushRequest::decode(plain.as_slice()) else {
        return (StatusCode::BAD_REQUEST, "bad protobuf".into());
    };
    let mut got = Vec::new();
    for s in req.streams {
        for e in s.entries {
            let ts = e
                .timestamp
                .map_or(0, |t| t.seconds * 1_000_000_000 + t.nanos as i64);
            got.push(Got {
                labels: s.labels.clone(),
                line: e.line,
                ts_ns: ts,
                metadata: e
                    .structured_metadata
                    .into_iter()
                    .map(|p| (p.name, p.value))
                    .collect(),
            });
        }
    }
    if let Some(p) = st.poison.lock().unwrap().as_ref() {
        if got.iter().any(|g| &g.line == p) {
            return (StatusCode::BAD_REQUEST, "poisoned line".into());
        }
    }
    st.got.lock().unwrap().extend(got);
    (StatusCode::NO_CONTENT, String::new())
}

pub async fn receiver() -> Receiver {
    let state = Arc::new(Shared::default());
    let app = axum::Router::new()
        .route("/loki/api/v1/push", axum::routing::post(push))
        .with_state(state.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(l, app).await.unwrap();
    });
    Receiver { url, state, task }
}

impl Receiver {
    pub fn lines(&self) -> Vec<String> {
        self.state
            .got
            .lock()
            .unwrap()
            .iter()
            .map(|g| g.line.clone())
            .collect()
    }

    pub fn got(&self) -> Vec<Got> {
        self.state.got.lock().unwrap().clone()
    }

    pub fn set_failing(&self, fail: bool) {
        self.state.fail.store(fail, SeqCst);
    }

    /// Waits until at least `n` lines arrived.
    pub async fn wait_lines(&self, n: usize, within: Duration) -> Vec<String> {
        wait_until(
            within,
            || self.lines().len() >= n,
            || format!("got {:?}", self.lines()),
        )
        .await;
        self.lines()
    }
}

/// Polls `cond` every 20ms; panics with `what()` after `within`.
pub async fn wait_until(
    within: Duration,
    mut cond: impl FnMut() -> bool,
    what: impl Fn() -> String,
) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out: {}", what());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A config for one file source over `glob`, fast timings, metrics off.
pub fn file_config(server: &str, state: &std::path::Path, glob: &str, extra: &str) -> Config {
    let yaml = format!(
        r#"
server: {server}
state_dir: {state}
buffer_max_bytes: 10MiB
batch: {{max_bytes: 64KiB, max_wait: 50ms}}
retry: {{min_backoff: 20ms, max_backoff: 200ms, timeout: 2s}}
metrics_listen: "off"
sources:
  - type: file
    name: app
    include: ["{glob}"]
    labels: {{job: test}}
    poll_interval: 20ms
    refresh_interval: 50ms
    rotate_wait: 200ms
{extra}"#,
        state = state.display()
    );
    Config::parse(&yaml).unwrap()
}

pub async fn start(cfg: Config) -> Agent {
    Agent::start(cfg, RunOptions::default()).await.unwrap()
}

pub fn append(path: &std::path::Path, lines: impl IntoIterator<Item = String>) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let mut s = String::new();
    for l in lines {
        s.push_str(&l);
        s.push('\n');
    }
    f.write_all(s.as_bytes()).unwrap();
}

pub fn numbered(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix} {i:04}")).collect()
}
