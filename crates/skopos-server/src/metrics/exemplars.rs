//! In-memory exemplar storage and `/api/v1/query_exemplars`.
//!
//! Exemplars come from the span metrics and service graph processors (a
//! `trace_id` per series and collect). They are kept the way Prometheus'
//! circular exemplar storage keeps them: one ring of fixed capacity over all
//! series, the oldest overwritten first, not persisted. An exemplar equal to
//! the newest one of its series (same labels, value and time) is not stored
//! twice.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use promql_parser::parser::Expr;
use serde_json::{json, Value};
use skopos_model::{Exemplar, Labels, Matcher, SeriesExemplars};

use crate::http::api::{ApiError, Params};
use crate::state::AppState;

/// The default capacity, as Prometheus' `--storage.exemplars.exemplars-limit`
/// examples use.
pub const DEFAULT_MAX_EXEMPLARS: usize = 100_000;

/// A bounded ring of exemplars over all series.
pub struct ExemplarStore {
    capacity: usize,
    inner: Mutex<Ring>,
}

#[derive(Default)]
struct Ring {
    /// Oldest first.
    entries: VecDeque<(Arc<Labels>, Exemplar)>,
    /// Shared series labels, so a series' labels are held once.
    series: HashMap<Labels, (Arc<Labels>, usize)>,
}

impl ExemplarStore {
    pub fn new(capacity: usize) -> Self {
        ExemplarStore {
            capacity,
            inner: Mutex::new(Ring::default()),
        }
    }

    /// Adds exemplars, evicting the oldest past the capacity.
    pub fn add(&self, batch: Vec<SeriesExemplars>) {
        if self.capacity == 0 {
            return;
        }
        let mut r = self.inner.lock();
        for se in batch {
            for ex in se.exemplars {
                let series = match r.series.get_mut(&se.series) {
                    Some((arc, n)) => {
                        *n += 1;
                        arc.clone()
                    }
                    None => {
                        let arc = Arc::new(se.series.clone());
                        r.series.insert(se.series.clone(), (arc.clone(), 1));
                        arc
                    }
                };
                let dup = r
                    .entries
                    .iter()
                    .rev()
                    .take(64)
                    .any(|(s, e)| Arc::ptr_eq(s, &series) && *e == ex);
                if dup {
                    release(&mut r.series, &series);
                    continue;
                }
                r.entries.push_back((series, ex));
                while r.entries.len() > self.capacity {
                    if let Some((s, _)) = r.entries.pop_front() {
                        release(&mut r.series, &s);
                    }
                }
            }
        }
    }

    /// Exemplars in `[start_ms, end_ms]` of series matching any of the
    /// selectors, grouped by series (in order of first exemplar), each
    /// group oldest first.
    pub fn select(
        &self,
        selectors: &[Vec<Matcher>],
        start_ms: i64,
        end_ms: i64,
    ) -> Vec<SeriesExemplars> {
        let r = self.inner.lock();
        let mut out: Vec<SeriesExemplars> = Vec::new();
        let mut at: HashMap<*const Labels, usize> = HashMap::new();
        let mut verdict: HashMap<*const Labels, bool> = HashMap::new();
        for (s, e) in &r.entries {
            if e.ts_ms < start_ms || e.ts_ms > end_ms {
                continue;
            }
            let key = Arc::as_ptr(s);
            let ok = *verdict.entry(key).or_insert_with(|| {
                selectors
                    .iter()
                    .any(|ms| ms.iter().all(|m| m.matches_labels(s)))
            });
            if !ok {
                continue;
            }
            let i = *at.entry(key).or_insert_with(|| {
                out.push(SeriesExemplars {
                    series: (**s).clone(),
                    exemplars: Vec::new(),
                });
                out.len() - 1
            });
            out[i].exemplars.push(e.clone());
        }
        for g in &mut out {
            g.exemplars.sort_by_key(|e| e.ts_ms);
        }
        out
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.lock().entries.len()
    }
}

fn release(series: &mut HashMap<Labels, (Arc<Labels>, usize)>, s: &Arc<Labels>) {
    if let Some((_, n)) = series.get_mut(s.as_ref()) {
        *n -= 1;
        if *n == 0 {
            series.remove(s.as_ref());
        }
    }
}

/// The matchers of every series selector in a PromQL expression.
pub fn query_selectors(expr: &Expr) -> Result<Vec<Vec<Matcher>>, String> {
    fn walk(e: &Expr, out: &mut Vec<Vec<Matcher>>) -> Result<(), String> {
        match e {
            Expr::VectorSelector(vs) => {
                out.extend(crate::http::api::selector_matchers(vs)?);
                Ok(())
            }
            Expr::MatrixSelector(ms) => {
                out.extend(crate::http::api::selector_matchers(&ms.vs)?);
                Ok(())
            }
            Expr::Subquery(sq) => walk(&sq.expr, out),
            Expr::Aggregate(a) => {
                if let Some(p) = &a.param {
                    walk(p, out)?;
                }
                walk(&a.expr, out)
            }
            Expr::Unary(u) => walk(&u.expr, out),
            Expr::Binary(b) => {
                walk(&b.lhs, out)?;
                walk(&b.rhs, out)
            }
            Expr::Paren(p) => walk(&p.expr, out),
            Expr::Call(c) => {
                for a in &c.args.args {
                    walk(a, out)?;
                }
                Ok(())
            }
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => Ok(()),
        }
    }
    let mut out = Vec::new();
    walk(expr, &mut out)?;
    Ok(out)
}

fn labels_json(l: &Labels) -> Value {
    Value::Object(
        l.iter()
            .map(|x| (x.name.clone(), Value::String(x.value.clone())))
            .collect(),
    )
}

/// `GET|POST /api/v1/query_exemplars?query=&start=&end=`: Prometheus'
/// shape, `[{seriesLabels, exemplars: [{labels, value, timestamp}]}]`.
pub async fn query_exemplars(
    State(st): State<Arc<AppState>>,
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Body,
) -> Result<Response, ApiError> {
    let p = Params::collect(&method, &headers, q, body).await?;
    let query = p.get("query").unwrap_or("");
    let expr = skopos_promql::parse(query).map_err(super::query_api::query_error)?;
    let selectors = query_selectors(&expr)
        .map_err(|e| ApiError::bad_data(format!("invalid parameter \"query\": {e}")))?;
    let mut range = [i64::MIN, i64::MAX];
    for (i, name) in ["start", "end"].into_iter().enumerate() {
        if let Some(v) = p.get(name).filter(|v| !v.is_empty()) {
            range[i] = crate::http::api::parse_time(name, v)?;
        }
    }
    if range[1] < range[0] {
        return Err(ApiError::bad_data(
            "invalid parameter \"end\": end timestamp must not be before start time",
        ));
    }
    let found = st.exemplars.select(&selectors, range[0], range[1]);
    let data: Vec<Value> = found
        .iter()
        .map(|g| {
            json!({
                "seriesLabels": labels_json(&g.series),
                "exemplars": g.exemplars.iter().map(|e| json!({
                    "labels": labels_json(&e.labels),
                    "value": skopos_promql::format_value(e.value),
                    "timestamp": e.ts_ms as f64 / 1000.0,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let body = json!({"status": "success", "data": data});
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(trace: &str, ts: i64) -> Exemplar {
        Exemplar {
            labels: Labels::from_pairs([("trace_id", trace)]),
            value: 1.0,
            ts_ms: ts,
        }
    }

    #[test]
    fn ring_evicts_oldest_and_filters_by_selector_and_time() {
        let store = ExemplarStore::new(3);
        let a = Labels::from_pairs([("__name__", "calls"), ("service", "a")]);
        let b = Labels::from_pairs([("__name__", "calls"), ("service", "b")]);
        store.add(vec![SeriesExemplars {
            series: a.clone(),
            exemplars: vec![ex("01", 1000), ex("02", 2000)],
        }]);
        store.add(vec![SeriesExemplars {
            series: b.clone(),
            exemplars: vec![ex("03", 3000), ex("04", 4000)],
        }]);
        assert_eq!(store.len(), 3);
        let all = store.select(&[vec![Matcher::equal("__name__", "calls")]], 0, 10_000);
        let ids: Vec<_> = all
            .iter()
            .flat_map(|g| {
                g.exemplars
                    .iter()
                    .map(|e| e.labels.get("trace_id").unwrap())
            })
            .collect();
        assert_eq!(ids, ["02", "03", "04"]);
        let only_b = store.select(&[vec![Matcher::equal("service", "b")]], 3500, 10_000);
        assert_eq!(only_b.len(), 1);
        assert_eq!(only_b[0].exemplars.len(), 1);
        // A repeated exemplar is stored once.
        store.add(vec![SeriesExemplars {
            series: b,
            exemplars: vec![ex("04", 4000)],
        }]);
        assert_eq!(store.len(), 3);
    }
}
