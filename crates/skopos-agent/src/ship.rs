//! Batching and shipping: records from the sources become Loki push
//! requests (protobuf, snappy), sent to `<server>/loki/api/v1/push`.
//!
//! One task owns the batch, the disk buffer and the positions. A batch is
//! sent directly while the buffer is empty; if that fails with a retryable
//! error (connection, 429, 5xx) it goes to the disk buffer, and so does
//! every later batch until the buffer has been replayed, in order, with
//! exponential backoff and jitter. A 4xx other than 429 drops the batch
//! (logged and counted) so one bad batch cannot wedge the agent. Positions
//! advance only when a batch is acknowledged, dropped, or durably buffered.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message;
use skopos_ingest::loki::proto;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::buffer::DiskBuffer;
use crate::metrics::{inc, Metrics};
use crate::positions::{Checkpoint, Positions};

/// One line on its way to the server.
#[derive(Debug, Clone)]
pub struct Record {
    /// The stream's labels in selector syntax, `{filename="…", job="app"}`.
    pub labels: Arc<str>,
    pub ts_ns: i64,
    pub line: String,
    pub metadata: Vec<(String, String)>,
    /// What becomes safe to remember once this line's batch is.
    pub checkpoint: Option<Checkpoint>,
}

/// Renders labels as a Loki stream selector, sorted by name.
pub fn render_labels<'a>(labels: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let sorted: BTreeMap<&str, &str> = labels.into_iter().filter(|(_, v)| !v.is_empty()).collect();
    let mut s = String::from("{");
    for (i, (k, v)) in sorted.into_iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(k);
        s.push_str("=\"");
        for c in v.chars() {
            match c {
                '\\' => s.push_str("\\\\"),
                '"' => s.push_str("\\\""),
                '\n' => s.push_str("\\n"),
                c => s.push(c),
            }
        }
        s.push('"');
    }
    s.push('}');
    s
}

/// Records collected for one push request.
#[derive(Debug, Default)]
pub struct Batch {
    streams: BTreeMap<Arc<str>, Vec<proto::Entry>>,
    checkpoints: Vec<Checkpoint>,
    pub lines: u32,
    pub bytes: u64,
    started: Option<Instant>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.lines == 0 && self.checkpoints.is_empty()
    }

    pub fn push(&mut self, r: Record) {
        self.started.get_or_insert_with(Instant::now);
        self.lines += 1;
        self.bytes += r.line.len() as u64;
        let entry = proto::Entry {
            timestamp: Some(proto::Timestamp {
                seconds: r.ts_ns.div_euclid(1_000_000_000),
                nanos: r.ts_ns.rem_euclid(1_000_000_000) as i32,
            }),
            line: r.line,
            structured_metadata: r
                .metadata
                .into_iter()
                .map(|(name, value)| proto::LabelPair { name, value })
                .collect(),
        };
        self.streams.entry(r.labels).or_default().push(entry);
        if let Some(c) = r.checkpoint {
            self.checkpoints.push(c);
        }
    }

    /// The push request body: protobuf, snappy block format (as Loki takes).
    pub fn encode(&self) -> Vec<u8> {
        let req = proto::PushRequest {
            streams: self
                .streams
                .iter()
                .map(|(labels, entries)| proto::Stream {
                    labels: labels.to_string(),
                    entries: entries.clone(),
                })
                .collect(),
        };
        snap::raw::Encoder::new()
            .compress_vec(&req.encode_to_vec())
            .expect("snappy compression of an in-memory buffer")
    }

    /// Only the last checkpoint of each file or container matters.
    fn checkpoints(&self) -> Vec<Checkpoint> {
        let mut out: Vec<Checkpoint> = Vec::new();
        for c in self.checkpoints.iter().rev() {
            let dup = out.iter().any(|o| match (o, c) {
                (Checkpoint::File { key: a, .. }, Checkpoint::File { key: b, .. }) => a == b,
                (Checkpoint::Container { id: a, .. }, Checkpoint::Container { id: b, .. }) => {
                    a == b
                }
                _ => false,
            });
            if !dup {
                out.push(c.clone());
            }
        }
        out.reverse();
        out
    }
}

/// Exponential backoff with jitter: the n-th delay is drawn uniformly from
/// `[d/2, d]` where `d = min(max, min * 2^n)`.
#[derive(Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
    rng: u64,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Backoff {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Backoff {
            min,
            max,
            attempt: 0,
            rng: seed | 1,
        }
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    pub fn next_delay(&mut self) -> Duration {
        let factor = 1u32 << self.attempt.min(30);
        let d = self.min.saturating_mul(factor).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        // xorshift64
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let half = d / 2;
        let jitter_ns = (half.as_nanos() as u64).max(1);
        half + Duration::from_nanos(self.rng % jitter_ns)
    }
}

/// How a push ended.
#[derive(Debug, PartialEq)]
pub enum SendOutcome {
    Ok,
    /// Connection error, 429 or 5xx: try again later.
    Retry(String),
    /// Any other 4xx: the batch will never be accepted.
    Reject(String),
}

#[derive(Clone)]
pub struct Sender {
    client: reqwest::Client,
    url: String,
    headers: reqwest::header::HeaderMap,
    dry_run: bool,
}

impl Sender {
    pub fn new(
        server: &str,
        token: Option<String>,
        extra: &BTreeMap<String, String>,
        timeout: Duration,
        dry_run: bool,
    ) -> anyhow::Result<Sender> {
        use reqwest::header::{HeaderName, HeaderValue};
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-protobuf"),
        );
        headers.insert(
            reqwest::header::USER_AGENT,
            HeaderValue::from_static(concat!("skopos-agent/", env!("CARGO_PKG_VERSION"))),
        );
        for (k, v) in extra {
            headers.insert(
                HeaderName::from_bytes(k.as_bytes())?,
                HeaderValue::from_str(v).map_err(|e| anyhow::anyhow!("header {k}: {e}"))?,
            );
        }
        if let Some(t) = token {
            let mut v = HeaderValue::from_str(&format!("Bearer {t}"))
                .map_err(|_| anyhow::anyhow!("the auth token is not a valid header value"))?;
            v.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, v);
        }
        Ok(Sender {
            client: reqwest::Client::builder().timeout(timeout).build()?,
            url: format!("{}/loki/api/v1/push", server.trim_end_matches('/')),
            headers,
            dry_run,
        })
    }

    pub async fn send(&self, body: &[u8]) -> SendOutcome {
        if self.dry_run {
            print_batch(body);
            return SendOutcome::Ok;
        }
        let resp = self
            .client
            .post(&self.url)
            .headers(self.headers.clone())
            .body(body.to_vec())
            .send()
            .await;
        match resp {
            Err(e) => SendOutcome::Retry(format!("{e}")),
            Ok(r) => {
                let status = r.status();
                if status.is_success() {
                    return SendOutcome::Ok;
                }
                let text = r.text().await.unwrap_or_default();
                let msg = format!("{status}: {}", text.trim());
                if status.as_u16() == 429 || status.is_server_error() {
                    SendOutcome::Retry(msg)
                } else {
                    SendOutcome::Reject(msg)
                }
            }
        }
    }
}

/// `--dry-run`: one JSON object per stream on stdout.
fn print_batch(body: &[u8]) {
    let Ok(plain) = snap::raw::Decoder::new().decompress_vec(body) else {
        return;
    };
    let Ok(req) = proto::PushRequest::decode(plain.as_slice()) else {
        return;
    };
    for s in req.streams {
        let values: Vec<_> = s
            .entries
            .iter()
            .map(|e| {
                let ts = e
                    .timestamp
                    .as_ref()
                    .map_or(0, |t| t.seconds as i128 * 1_000_000_000 + t.nanos as i128);
                serde_json::json!([ts.to_string(), e.line])
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({"stream": s.labels, "values": values})
        );
    }
}

/// What the shipper did, for `--once`'s exit status.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ShipReport {
    /// Batches still in the disk buffer when the shipper stopped.
    pub undelivered_batches: usize,
    /// Batches the server refused permanently.
    pub rejected_batches: u64,
}

pub struct Shipper {
    pub sender: Sender,
    pub buffer: DiskBuffer,
    pub positions: Arc<Mutex<Positions>>,
    pub metrics: Arc<Metrics>,
    pub max_bytes: u64,
    pub max_wait: Duration,
    pub backoff: Backoff,
    /// Don't persist positions (`--dry-run`).
    pub dry_run: bool,
}

impl Shipper {
    /// Runs until `stop` turns true (flushes the current batch, to the
    /// server or the buffer) or, once every sender of `rx` is gone, until
    /// the buffer is empty or `drain_deadline` has passed.
    pub async fn run(
        mut self,
        mut rx: mpsc::Receiver<Record>,
        mut stop: watch::Receiver<bool>,
        drain_deadline: Option<Duration>,
    ) -> ShipReport {
        let mut batch = Batch::default();
        let mut closed = false;
        let mut closed_at: Option<Instant> = None;
        let mut rejected = 0u64;
        let mut replay_at = Instant::now();
        self.update_buffer_gauges();
        loop {
            let full = batch.bytes >= self.max_bytes;
            let flush_at = batch.started.map(|s| s + self.max_wait);
            let want_flush = !batch.is_empty()
                && (full || closed || flush_at.is_some_and(|t| t <= Instant::now()));
            if want_flush {
                // A batch that does not fit stays here and holds reading up.
                let b = std::mem::take(&mut batch);
                if let Some(back) = self.hand_off(b, &mut rejected).await {
                    batch = back;
                }
            }
            if closed && batch.is_empty() && self.buffer.is_empty() {
                break;
            }
            if let (Some(t), Some(limit)) = (closed_at, drain_deadline) {
                if t.elapsed() >= limit {
                    break;
                }
            }
            let blocked = !batch.is_empty()
                && (batch.bytes >= self.max_bytes
                    || closed
                    || flush_at.is_some_and(|t| t <= Instant::now()));
            let far = Instant::now() + Duration::from_secs(3600);
            let give_up_at = closed_at.zip(drain_deadline).map(|(t, d)| t + d);
            // Replay comes before new records: the buffer drains first, so
            // a steady stream cannot starve it.
            tokio::select! {
                biased;
                _ = crate::stopped(&mut stop) => break,
                _ = tokio::time::sleep_until(give_up_at.unwrap_or(far)), if give_up_at.is_some() => break,
                _ = tokio::time::sleep_until(replay_at), if !self.buffer.is_empty() => {
                    match self.replay_one(&mut rejected).await {
                        Ok(true) => {
                            self.backoff.reset();
                            replay_at = Instant::now();
                        }
                        Ok(false) => replay_at = Instant::now() + self.backoff.next_delay(),
                        Err(e) => {
                            tracing::error!("disk buffer: {e}");
                            replay_at = Instant::now() + self.backoff.next_delay();
                        }
                    }
                }
                r = rx.recv(), if !closed && !blocked => match r {
                    Some(rec) => batch.push(rec),
                    None => {
                        closed = true;
                        closed_at = Some(Instant::now());
                    }
                },
                _ = tokio::time::sleep_until(flush_at.unwrap_or(far)), if flush_at.is_some() && !blocked => {}
                // A held batch is retried after a replay or at least every 100ms.
                _ = tokio::time::sleep(Duration::from_millis(100)), if blocked => {}
            }
        }
        // Stopping: what is batched goes out or into the buffer if it can;
        // otherwise its lines are read again on the next start.
        if !batch.is_empty() {
            let b = std::mem::take(&mut batch);
            let _ = self.hand_off(b, &mut rejected).await;
        }
        self.save_positions();
        ShipReport {
            undelivered_batches: self.buffer.len() + usize::from(!batch.is_empty()),
            rejected_batches: rejected,
        }
    }

    fn update_buffer_gauges(&self) {
        self.metrics
            .buffer_bytes
            .store(self.buffer.bytes(), Relaxed);
        self.metrics
            .buffer_batches
            .store(self.buffer.len() as u64, Relaxed);
    }

    /// Sends or buffers `b`; gives it back if the buffer has no room.
    async fn hand_off(&mut self, b: Batch, rejected: &mut u64) -> Option<Batch> {
        let body = b.encode();
        if self.buffer.is_empty() {
            match self.sender.send(&body).await {
                SendOutcome::Ok => {
                    // Positions first: whoever sees the counter move may
                    // rely on them being saved.
                    self.ack(&b);
                    self.shipped(b.lines, b.bytes);
                    return None;
                }
                SendOutcome::Reject(why) => {
                    self.rejected(b.lines, &why, rejected);
                    self.ack(&b);
                    return None;
                }
                SendOutcome::Retry(why) => {
                    inc(&self.metrics.send_failures, 1);
                    tracing::warn!("push failed, buffering to disk: {why}");
                }
            }
        }
        if !self.buffer.fits(body.len()) {
            inc(&self.metrics.buffer_full_waits, 1);
            return Some(b);
        }
        match self.buffer.push(b.lines, &body) {
            Ok(()) => {
                self.ack(&b);
                inc(&self.metrics.batches_buffered, 1);
                self.update_buffer_gauges();
                None
            }
            Err(e) => {
                tracing::error!("cannot write the disk buffer: {e}");
                Some(b)
            }
        }
    }

    /// Tries the oldest buffered batch once. `Ok(true)` if it is done with
    /// (sent or rejected), `Ok(false)` to back off.
    async fn replay_one(&mut self, rejected: &mut u64) -> std::io::Result<bool> {
        let metrics = self.metrics.clone();
        let Some(f) = self.buffer.front(|why| {
            inc(&metrics.buffer_corrupt, 1);
            tracing::error!("dropping a corrupt buffered batch: {why}");
        })?
        else {
            self.update_buffer_gauges();
            return Ok(true);
        };
        inc(&self.metrics.send_retries, 1);
        let done = match self.sender.send(&f.body).await {
            SendOutcome::Ok => {
                inc(&self.metrics.lines_shipped, f.lines as u64);
                inc(&self.metrics.batches_shipped, 1);
                inc(&self.metrics.bytes_shipped, line_bytes(&f.body));
                true
            }
            SendOutcome::Reject(why) => {
                self.rejected(f.lines, &why, rejected);
                true
            }
            SendOutcome::Retry(why) => {
                inc(&self.metrics.send_failures, 1);
                tracing::warn!(
                    buffered = self.buffer.len(),
                    "push of a buffered batch failed: {why}"
                );
                false
            }
        };
        if done {
            self.buffer.remove(f.seq)?;
            self.update_buffer_gauges();
        }
        Ok(done)
    }

    fn shipped(&self, lines: u32, bytes: u64) {
        inc(&self.metrics.lines_shipped, lines as u64);
        inc(&self.metrics.bytes_shipped, bytes);
        inc(&self.metrics.batches_shipped, 1);
    }

    fn rejected(&self, lines: u32, why: &str, rejected: &mut u64) {
        *rejected += 1;
        inc(&self.metrics.send_failures, 1);
        inc(&self.metrics.batches_dropped, 1);
        inc(&self.metrics.lines_dropped, lines as u64);
        tracing::error!(lines, "server refused a batch, dropping it: {why}");
    }

    fn ack(&self, b: &Batch) {
        if self.dry_run {
            return;
        }
        let cps = b.checkpoints();
        if cps.is_empty() {
            return;
        }
        self.positions.lock().unwrap().apply(&cps);
        self.save_positions();
    }

    fn save_positions(&self) {
        if self.dry_run {
            return;
        }
        if let Err(e) = self.positions.lock().unwrap().save() {
            tracing::error!("cannot save positions: {e}");
        }
    }
}

/// Bytes of the lines in an encoded body (for the shipped-bytes counter of
/// replayed batches).
fn line_bytes(body: &[u8]) -> u64 {
    snap::raw::Decoder::new()
        .decompress_vec(body)
        .ok()
        .and_then(|p| proto::PushRequest::decode(p.as_slice()).ok())
        .map_or(0, |r| {
            r.streams
                .iter()
                .flat_map(|s| &s.entries)
                .map(|e| e.line.len() as u64)
                .sum()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_caps() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let mut prev_cap = Duration::ZERO;
        for n in 0..12u32 {
            let cap = (Duration::from_millis(100) * 2u32.pow(n)).min(Duration::from_secs(2));
            let d = b.next_delay();
            assert!(
                d >= cap / 2 && d <= cap,
                "attempt {n}: {d:?} outside [{:?}, {cap:?}]",
                cap / 2
            );
            assert!(cap >= prev_cap);
            prev_cap = cap;
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
        // Jitter: not every delay at the cap is the same.
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(1));
        let ds: std::collections::HashSet<_> = (0..10).map(|_| b.next_delay()).collect();
        assert!(ds.len() > 1);
    }

    #[test]
    fn labels_render_sorted_and_escaped() {
        assert_eq!(
            render_labels([("job", "a\"b"), ("filename", "/x\\y"), ("empty", "")]),
            r#"{filename="/x\\y", job="a\"b"}"#
        );
    }

    #[test]
    fn batch_encodes_streams_and_keeps_last_checkpoints() {
        let mut b = Batch::default();
        let l1: Arc<str> = Arc::from("{job=\"a\"}");
        let path: Arc<std::path::Path> = Arc::from(std::path::Path::new("/f"));
        for (i, line) in ["one", "two"].iter().enumerate() {
            b.push(Record {
                labels: l1.clone(),
                ts_ns: 1_500_000_000 + i as i64,
                line: line.to_string(),
                metadata: vec![("trace_id".into(), "t".into())],
                checkpoint: Some(Checkpoint::File {
                    key: (1, 1),
                    path: path.clone(),
                    offset: 4 * (i as u64 + 1),
                }),
            });
        }
        let body = b.encode();
        let plain = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        let req = proto::PushRequest::decode(plain.as_slice()).unwrap();
        assert_eq!(req.streams.len(), 1);
        let e = &req.streams[0].entries;
        assert_eq!((e[0].line.as_str(), e[1].line.as_str()), ("one", "two"));
        assert_eq!(
            e[0].timestamp,
            Some(proto::Timestamp {
                seconds: 1,
                nanos: 500_000_000
            })
        );
        assert_eq!(e[0].structured_metadata[0].name, "trace_id");
        assert_eq!(
            b.checkpoints(),
            vec![Checkpoint::File {
                key: (1, 1),
                path,
                offset: 8
            }]
        );
        assert_eq!(line_bytes(&body), 6);
    }
}
