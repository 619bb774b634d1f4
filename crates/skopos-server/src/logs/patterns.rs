//! `GET /loki/api/v1/patterns`: the log patterns of the selected streams
//! over a range, with their line counts per step, as Loki's pattern
//! ingester answers (Grafana's Logs Drilldown shows them).
//!
//! Loki clusters lines as they arrive; here the lines of the range are read
//! from the store when asked and clustered then (`skopos_logql::patterns`,
//! the same Drain and defaults, one clustering per stream), at most
//! [`MAX_LINES`] lines a request. Counts are kept per 10 s and summed into
//! buckets at multiples of the step (Loki's: at least 10 s; by default a
//! 250th of the range); within each hour after a pattern's first line, the
//! buckets without lines are answered as 0, as Loki's chunks fill them.
//! Patterns are merged over streams by their text; those with fewer than
//! [`MIN_COUNT`] lines are left out; the rest come most frequent first, at
//! most [`MAX_PATTERNS`]. No `level` field (Loki 3.6's split by detected
//! level).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use skopos_logql::patterns::{Drain, SAMPLE_INTERVAL_NS};
use skopos_logql::Expr;
use skopos_model::{LogQueryable, LogSelect};

use super::loki_api::{logql_error, range, required_query, step_ns};
use crate::http::api::{ApiError, Params};
use crate::state::AppState;

/// The most lines one request clusters.
pub const MAX_LINES: u64 = 2_000_000;
/// Patterns with fewer lines than this in the range are left out.
pub const MIN_COUNT: u64 = 30;
pub const MAX_PATTERNS: usize = 300;
/// Loki's longest chunk: zero-filled buckets stop an hour after a chunk's
/// first line.
const CHUNK_NS: i64 = 3_600_000_000_000;
/// Loki's bound on the number of steps.
const MAX_STEPS: i64 = 11_000;

/// A pattern's total, text and stepped counts.
type Found = (u64, String, Vec<(i64, u64)>);

pub async fn patterns(
    State(st): State<Arc<AppState>>,
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Body,
) -> Result<Response, ApiError> {
    let p = Params::collect(&method, &headers, q, body).await?;
    let q = required_query(&p)?;
    let log = match skopos_logql::parse(&q).map_err(logql_error)? {
        Expr::Log(l) if l.stages.is_empty() => l,
        _ => {
            return Err(ApiError::bad_data(format!(
                "{q:?}: the patterns endpoint takes a stream selector only, such as {{app=\"web\"}}"
            )))
        }
    };
    let (start, end) = range(&p)?;
    let step = step_ns(&p, start, end)?;
    if step <= 0 {
        return Err(ApiError::bad_data(
            "zero or negative query resolution step widths are not accepted. Try a positive integer",
        ));
    }
    if end.saturating_sub(start) / step > MAX_STEPS {
        return Err(ApiError::bad_data(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        ));
    }
    let step = step.max(SAMPLE_INTERVAL_NS);
    let logs = st.logs.clone();
    let found = crate::http::panic::blocking(move || {
        // Refused before anything is read: the index knows how many lines
        // the blocks of the range hold (a stream is read whole).
        let held = logs.index_stats(&log.matchers, start, end).entries;
        if held > MAX_LINES {
            return Err(too_many_lines());
        }
        let sel = LogSelect {
            matchers: log.matchers,
            start,
            end,
            contains: Vec::new(),
            matches: Vec::new(),
        };
        let mut merged: BTreeMap<String, BTreeMap<i64, u64>> = BTreeMap::new();
        let mut lines = 0u64;
        let mut over = false;
        logs.select_logs(&sel, &mut |s| {
            lines += s.entries.len() as u64;
            if lines > MAX_LINES {
                over = true;
                return false;
            }
            let mut drain = Drain::new();
            for e in &s.entries {
                drain.train(&e.line, e.ts);
            }
            for (text, samples) in drain.patterns() {
                let m = merged.entry(text).or_default();
                for (t, n) in samples {
                    *m.entry(t).or_default() += n;
                }
            }
            true
        })
        .map_err(|e| ApiError::internal(e.to_string()))?;
        if over {
            return Err(too_many_lines());
        }
        Ok(merged)
    })
    .await?;
    let mut out: Vec<Found> = found
        .into_iter()
        .map(|(text, samples)| {
            let total = samples.values().sum();
            (total, text, steps(&samples, step))
        })
        .filter(|(total, _, _)| *total >= MIN_COUNT)
        .collect();
    out.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    out.truncate(MAX_PATTERNS);
    let data: Vec<serde_json::Value> = out
        .into_iter()
        .map(|(_, pattern, samples)| {
            let samples: Vec<(i64, u64)> = samples
                .into_iter()
                .map(|(t, n)| (t.div_euclid(1_000_000_000), n))
                .collect();
            json!({ "pattern": pattern, "samples": samples })
        })
        .collect();
    Ok(axum::Json(json!({ "status": "success", "data": data })).into_response())
}

fn too_many_lines() -> ApiError {
    ApiError::bad_data(format!(
        "the selected streams hold more than {MAX_LINES} lines in the range; narrow the selector or the range"
    ))
}

/// 10 s counts summed into buckets at multiples of `step` (ns), 10 s
/// steps as they are; from each chunk's first bucket to its last, the
/// empty ones answered as 0.
fn steps(samples: &BTreeMap<i64, u64>, step: i64) -> Vec<(i64, u64)> {
    if step == SAMPLE_INTERVAL_NS {
        return samples.iter().map(|(t, n)| (*t, *n)).collect();
    }
    let mut out: Vec<(i64, u64)> = Vec::new();
    let mut chunk_start: Option<i64> = None;
    for (&t, &n) in samples {
        let b = t.saturating_sub(t.rem_euclid(step));
        let same_chunk = chunk_start.is_some_and(|c| t < c.saturating_add(CHUNK_NS));
        if !same_chunk {
            chunk_start = Some(t);
        }
        match out.last_mut() {
            Some(last) if last.0 == b => last.1 += n,
            Some(last) if same_chunk => {
                let mut at = last.0.saturating_add(step);
                while at < b {
                    out.push((at, 0));
                    at = at.saturating_add(step);
                }
                out.push((b, n));
            }
            _ => out.push((b, n)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn steps_sum_into_step_buckets_and_fill_gaps_within_a_chunk() {
        let samples: BTreeMap<i64, u64> = [(0, 1), (10 * S, 2), (60 * S, 3), (7200 * S, 4)]
            .into_iter()
            .collect();
        assert_eq!(
            steps(&samples, 10 * S),
            vec![(0, 1), (10 * S, 2), (60 * S, 3), (7200 * S, 4)]
        );
        // 30 s steps: 0 and 10 s sum; 30 s is empty but inside the first
        // hour; two hours later a new chunk starts, with no fill between.
        assert_eq!(
            steps(&samples, 30 * S),
            vec![(0, 3), (30 * S, 0), (60 * S, 3), (7200 * S, 4)]
        );
    }
}
