//! RED metrics from spans, named and labelled as Tempo's span metrics
//! processor does: `traces_spanmetrics_calls_total` and the
//! `traces_spanmetrics_latency` histogram (seconds) by `service`,
//! `span_name`, `span_kind` (`SPAN_KIND_SERVER`, ...), `status_code`
//! (`STATUS_CODE_ERROR`, ...) and any configured attribute dimensions.

use std::hash::{Hash, Hasher};

use skopos_model::fxhash::{FxHashMap, FxHasher};
use skopos_model::{
    find_attr, Labels, LabelsBuilder, Sample, SeriesExemplars, Span, SpanBatch, SpanKind,
    StatusCode, WriteBatch, METRIC_NAME,
};

use crate::histogram::{named, ns_to_ms, sanitize_label_name, seconds, Histogram, PendingExemplar};

/// Tempo's default latency buckets, in seconds.
pub const DEFAULT_LATENCY_BUCKETS: &[f64] = &[
    0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.02, 2.05, 4.10,
];

/// Tempo's `span_kind` label value.
pub fn span_kind_label(k: SpanKind) -> &'static str {
    match k {
        SpanKind::Unspecified => "SPAN_KIND_UNSPECIFIED",
        SpanKind::Internal => "SPAN_KIND_INTERNAL",
        SpanKind::Server => "SPAN_KIND_SERVER",
        SpanKind::Client => "SPAN_KIND_CLIENT",
        SpanKind::Producer => "SPAN_KIND_PRODUCER",
        SpanKind::Consumer => "SPAN_KIND_CONSUMER",
    }
}

/// Tempo's `status_code` label value.
pub fn status_code_label(s: StatusCode) -> &'static str {
    match s {
        StatusCode::Unset => "STATUS_CODE_UNSET",
        StatusCode::Ok => "STATUS_CODE_OK",
        StatusCode::Error => "STATUS_CODE_ERROR",
    }
}

/// The labels every span metrics series has.
const INTRINSIC_LABELS: [&str; 4] = ["service", "span_name", "span_kind", "status_code"];

#[derive(Debug, Clone, PartialEq)]
pub struct SpanMetricsConfig {
    /// Upper bounds of the latency buckets in seconds, ascending (`+Inf` is
    /// implied).
    pub histogram_buckets: Vec<f64>,
    /// Span attributes (or, failing that, resource attributes) that become
    /// extra labels, e.g. `http.method` → `http_method`. A name that
    /// collides with a built-in label gets a `__` prefix, as in Tempo.
    pub dimensions: Vec<String>,
    /// Prefix of the metric names.
    pub namespace: String,
    /// At most this many label combinations; spans that would make a new
    /// one past it are dropped and counted. Each combination writes one
    /// counter and `histogram_buckets.len() + 3` histogram series.
    pub max_series: usize,
    /// A series no span has updated for longer than this (measured by the
    /// `now_ms` of `collect`) is forgotten, freeing its slot; if it comes
    /// back it starts again from zero, which PromQL's `rate` reads as a
    /// counter reset. Tempo's `stale_duration`: 15 minutes.
    pub stale_after_ms: i64,
}

impl Default for SpanMetricsConfig {
    fn default() -> Self {
        SpanMetricsConfig {
            histogram_buckets: DEFAULT_LATENCY_BUCKETS.to_vec(),
            dimensions: Vec::new(),
            namespace: "traces_spanmetrics".into(),
            max_series: 10_000,
            stale_after_ms: 15 * 60 * 1000,
        }
    }
}

/// What the processor has seen, for its own metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpanMetricsStats {
    /// Spans counted into some series.
    pub spans: u64,
    /// Spans dropped because their series would pass `max_series`.
    pub dropped_spans: u64,
    /// Label combinations held.
    pub series: usize,
    /// Label combinations forgotten after `stale_after_ms` without spans.
    pub stale_series_removed: u64,
}

/// One label combination: its key, its labels and its counters.
#[derive(Debug)]
struct Series {
    service: String,
    span_name: String,
    kind: SpanKind,
    status: StatusCode,
    dims: Vec<Option<String>>,
    labels: Labels,
    calls: u64,
    calls_exemplar: Option<PendingExemplar>,
    latency: Histogram,
    /// Whether a span came since the last collect.
    touched: bool,
    /// The `now_ms` of the last collect after a span came.
    last_ms: i64,
}

/// The span metrics processor. Not thread-safe by itself: wrap it in a
/// mutex, or keep one per ingest worker.
#[derive(Debug)]
pub struct SpanMetrics {
    cfg: SpanMetricsConfig,
    /// Label names of the configured dimensions, sanitised.
    dim_labels: Vec<String>,
    /// Hash of the key → indexes into `series` (collisions compared in full).
    index: FxHashMap<u64, Vec<usize>>,
    series: Vec<Series>,
    stats: SpanMetricsStats,
}

/// A dimension's value on a span, as label text.
fn dim_value<'a>(span: &'a Span, key: &str) -> Option<std::borrow::Cow<'a, str>> {
    let v =
        find_attr(&span.attributes, key).or_else(|| find_attr(&span.resource.attributes, key))?;
    Some(v.text())
}

impl SpanMetrics {
    pub fn new(mut cfg: SpanMetricsConfig) -> Self {
        cfg.histogram_buckets.retain(|b| b.is_finite());
        cfg.histogram_buckets.sort_by(f64::total_cmp);
        cfg.histogram_buckets.dedup();
        let dim_labels = cfg
            .dimensions
            .iter()
            .map(|d| {
                let name = sanitize_label_name(d);
                if INTRINSIC_LABELS.contains(&name.as_str())
                    || name == "le"
                    || name.starts_with("__")
                {
                    format!("__{name}")
                } else {
                    name
                }
            })
            .collect();
        SpanMetrics {
            cfg,
            dim_labels,
            index: FxHashMap::default(),
            series: Vec::new(),
            stats: SpanMetricsStats::default(),
        }
    }

    pub fn config(&self) -> &SpanMetricsConfig {
        &self.cfg
    }

    pub fn stats(&self) -> SpanMetricsStats {
        SpanMetricsStats {
            series: self.series.len(),
            ..self.stats
        }
    }

    /// Counts every span of `batch`.
    pub fn push(&mut self, batch: &SpanBatch) {
        let mut dims: Vec<Option<std::borrow::Cow<'_, str>>> =
            Vec::with_capacity(self.cfg.dimensions.len());
        for span in &batch.spans {
            dims.clear();
            dims.extend(self.cfg.dimensions.iter().map(|d| dim_value(span, d)));
            let service = span.service_name();
            let mut h = FxHasher::default();
            Self::hash_key(
                &mut h,
                service,
                &span.name,
                span.kind,
                span.status,
                dims.iter().map(|d| d.as_deref()),
            );
            let hash = h.finish();
            let found = self.index.get(&hash).and_then(|ids| {
                ids.iter().copied().find(|&i| {
                    let s = &self.series[i];
                    s.service == service
                        && s.span_name == span.name
                        && s.kind == span.kind
                        && s.status == span.status
                        && s.dims
                            .iter()
                            .map(Option::as_deref)
                            .eq(dims.iter().map(|d| d.as_deref()))
                })
            });
            let i = match found {
                Some(i) => i,
                None if self.series.len() >= self.cfg.max_series => {
                    self.stats.dropped_spans += 1;
                    continue;
                }
                None => {
                    let owned: Vec<Option<String>> = dims
                        .iter()
                        .map(|d| d.as_deref().map(str::to_string))
                        .collect();
                    let mut b = LabelsBuilder::new();
                    b.set("service", service)
                        .set("span_name", span.name.as_str())
                        .set("span_kind", span_kind_label(span.kind))
                        .set("status_code", status_code_label(span.status));
                    for (name, v) in self.dim_labels.iter().zip(&owned) {
                        if let Some(v) = v {
                            b.set(name.as_str(), v.as_str());
                        }
                    }
                    self.series.push(Series {
                        service: service.to_string(),
                        span_name: span.name.clone(),
                        kind: span.kind,
                        status: span.status,
                        dims: owned,
                        labels: b.build(),
                        calls: 0,
                        calls_exemplar: None,
                        latency: Histogram::new(&self.cfg.histogram_buckets),
                        touched: true,
                        last_ms: i64::MIN,
                    });
                    let i = self.series.len() - 1;
                    self.index.entry(hash).or_default().push(i);
                    i
                }
            };
            let s = &mut self.series[i];
            let ts_ms = ns_to_ms(span.end_ns);
            s.calls += 1;
            s.touched = true;
            s.calls_exemplar = Some(PendingExemplar {
                trace: span.trace_id,
                value: 1.0,
                ts_ms,
            });
            s.latency.observe(
                &self.cfg.histogram_buckets,
                seconds(span.duration_ns()),
                Some((&span.trace_id, ts_ms)),
            );
            self.stats.spans += 1;
        }
    }

    /// Every series' cumulative value at `now_ms`, ordered by service, span
    /// name, kind, status and dimensions, and the exemplars gathered since
    /// the last collect (latest per series). Series idle for longer than
    /// `stale_after_ms` are forgotten first.
    pub fn collect(&mut self, now_ms: i64) -> (WriteBatch, Vec<SeriesExemplars>) {
        self.forget_stale(now_ms);
        let mut order: Vec<usize> = (0..self.series.len()).collect();
        fn key(s: &Series) -> (&str, &str, SpanKind, StatusCode, &[Option<String>]) {
            (&s.service, &s.span_name, s.kind, s.status, &s.dims)
        }
        order.sort_by(|&a, &b| key(&self.series[a]).cmp(&key(&self.series[b])));
        let calls_name = format!("{}_calls_total", self.cfg.namespace);
        let latency_name = format!("{}_latency", self.cfg.namespace);
        let mut out = WriteBatch::default();
        let mut exemplars = Vec::new();
        for i in order {
            let s = &mut self.series[i];
            let labels = named(&s.labels, &calls_name);
            if let Some(e) = s.calls_exemplar.take() {
                exemplars.push(SeriesExemplars {
                    series: labels.clone(),
                    exemplars: vec![e.build()],
                });
            }
            out.push(labels, Sample::new(now_ms, s.calls as f64));
            s.latency.write(
                &self.cfg.histogram_buckets,
                &latency_name,
                &s.labels,
                now_ms,
                &mut out,
                &mut exemplars,
            );
        }
        debug_assert!(out
            .series
            .iter()
            .all(|s| s.labels.get(METRIC_NAME).is_some()));
        (out, exemplars)
    }

    fn forget_stale(&mut self, now_ms: i64) {
        for s in &mut self.series {
            if s.touched {
                s.touched = false;
                s.last_ms = now_ms;
            }
        }
        let stale_after = self.cfg.stale_after_ms;
        let before = self.series.len();
        self.series
            .retain(|s| now_ms.saturating_sub(s.last_ms) <= stale_after);
        let removed = before - self.series.len();
        if removed == 0 {
            return;
        }
        self.stats.stale_series_removed += removed as u64;
        self.index.clear();
        for (i, s) in self.series.iter().enumerate() {
            let mut h = FxHasher::default();
            Self::hash_key(
                &mut h,
                &s.service,
                &s.span_name,
                s.kind,
                s.status,
                s.dims.iter().map(Option::as_deref),
            );
            self.index.entry(h.finish()).or_default().push(i);
        }
    }

    /// The hash of a series key, the same whether the parts are borrowed
    /// from a span or owned by a series.
    fn hash_key<'a>(
        h: &mut FxHasher,
        service: &str,
        span_name: &str,
        kind: SpanKind,
        status: StatusCode,
        dims: impl Iterator<Item = Option<&'a str>>,
    ) {
        service.hash(h);
        span_name.hash(h);
        (kind as u8, status as u8).hash(h);
        for d in dims {
            d.hash(h);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{render, render_exemplars, span, tid};

    fn cfg() -> SpanMetricsConfig {
        SpanMetricsConfig {
            histogram_buckets: vec![0.01, 0.1, 1.0],
            dimensions: vec![
                "http.method".into(),
                "status_code".into(),
                "deployment.env".into(),
            ],
            ..Default::default()
        }
    }

    #[test]
    fn three_services_give_exact_counts_buckets_and_labels() {
        let mut m = SpanMetrics::new(cfg());
        let mut a = span("frontend", "GET /", SpanKind::Server, 1, 1, None, 0, 50);
        a.attributes
            .push(skopos_model::Attribute::str("http.method", "GET"));
        let mut b = span("frontend", "GET /", SpanKind::Server, 2, 1, None, 0, 5);
        b.attributes
            .push(skopos_model::Attribute::str("http.method", "GET"));
        let c = span(
            "checkout",
            "charge",
            SpanKind::Client,
            1,
            2,
            Some(1),
            1,
            200,
        );
        let mut d = span(
            "payments",
            "charge",
            SpanKind::Server,
            1,
            3,
            Some(2),
            2,
            2_000,
        );
        d.status = StatusCode::Error;
        d.attributes.push(skopos_model::Attribute::new(
            "status_code",
            skopos_model::AttrValue::Int(503),
        ));
        let mut e = span("payments", "db", SpanKind::Internal, 1, 4, Some(3), 3, 1);
        e.attributes
            .push(skopos_model::Attribute::str("deployment.env", "prod"));
        m.push(&SpanBatch {
            spans: vec![a, b, c],
        });
        m.push(&SpanBatch { spans: vec![d, e] });
        let (wb, ex) = m.collect(1_000);
        assert!(wb
            .series
            .iter()
            .all(|s| s.samples == [Sample::new(1_000, s.samples[0].v)]));
        let text = render(&wb);
        let expected = r#"
traces_spanmetrics_calls_total{service="checkout", span_kind="SPAN_KIND_CLIENT", span_name="charge", status_code="STATUS_CODE_UNSET"} 1
traces_spanmetrics_latency_bucket{le="0.01", service="checkout", span_kind="SPAN_KIND_CLIENT", span_name="charge", status_code="STATUS_CODE_UNSET"} 0
traces_spanmetrics_latency_bucket{le="0.1", service="checkout", span_kind="SPAN_KIND_CLIENT", span_name="charge", status_code="STATUS_CODE_UNSET"} 0
traces_spanmetrics_latency_bucket{le="1", service="checkout", span_kind="SPAN_KIND_CLIENT", span_name="charge", status_code="STATUS_CODE_UNSET"} 1
traces_spanmetrics_latency_bucket{le="+Inf", service="checkout", span_kind="SPAN_KIND_CLIENT", span_name="charge", status_code="STATUS_CODE_UNSET"} 1
traces_spanmetrics_latency_sum{service="checkout", span_kind="SPAN_KIND_CLIENT", span_name="charge", status_code="STATUS_CODE_UNSET"} 0.2
traces_spanmetrics_latency_count{service="checkout", span_kind="SPAN_KIND_CLIENT", span_name="charge", status_code="STATUS_CODE_UNSET"} 1
traces_spanmetrics_calls_total{http_method="GET", service="frontend", span_kind="SPAN_KIND_SERVER", span_name="GET /", status_code="STATUS_CODE_UNSET"} 2
traces_spanmetrics_latency_bucket{http_method="GET", le="0.01", service="frontend", span_kind="SPAN_KIND_SERVER", span_name="GET /", status_code="STATUS_CODE_UNSET"} 1
traces_spanmetrics_latency_bucket{http_method="GET", le="0.1", service="frontend", span_kind="SPAN_KIND_SERVER", span_name="GET /", status_code="STATUS_CODE_UNSET"} 2
traces_spanmetrics_latency_bucket{http_method="GET", le="1", service="frontend", span_kind="SPAN_KIND_SERVER", span_name="GET /", status_code="STATUS_CODE_UNSET"} 2
traces_spanmetrics_latency_bucket{http_method="GET", le="+Inf", service="frontend", span_kind="SPAN_KIND_SERVER", span_name="GET /", status_code="STATUS_CODE_UNSET"} 2
traces_spanmetrics_latency_sum{http_method="GET", service="frontend", span_kind="SPAN_KIND_SERVER", span_name="GET /", status_code="STATUS_CODE_UNSET"} 0.055
traces_spanmetrics_latency_count{http_method="GET", service="frontend", span_kind="SPAN_KIND_SERVER", span_name="GET /", status_code="STATUS_CODE_UNSET"} 2
traces_spanmetrics_calls_total{__status_code="503", service="payments", span_kind="SPAN_KIND_SERVER", span_name="charge", status_code="STATUS_CODE_ERROR"} 1
traces_spanmetrics_latency_bucket{__status_code="503", le="0.01", service="payments", span_kind="SPAN_KIND_SERVER", span_name="charge", status_code="STATUS_CODE_ERROR"} 0
traces_spanmetrics_latency_bucket{__status_code="503", le="0.1", service="payments", span_kind="SPAN_KIND_SERVER", span_name="charge", status_code="STATUS_CODE_ERROR"} 0
traces_spanmetrics_latency_bucket{__status_code="503", le="1", service="payments", span_kind="SPAN_KIND_SERVER", span_name="charge", status_code="STATUS_CODE_ERROR"} 0
traces_spanmetrics_latency_bucket{__status_code="503", le="+Inf", service="payments", span_kind="SPAN_KIND_SERVER", span_name="charge", status_code="STATUS_CODE_ERROR"} 1
traces_spanmetrics_latency_sum{__status_code="503", service="payments", span_kind="SPAN_KIND_SERVER", span_name="charge", status_code="STATUS_CODE_ERROR"} 2
traces_spanmetrics_latency_count{__status_code="503", service="payments", span_kind="SPAN_KIND_SERVER", span_name="charge", status_code="STATUS_CODE_ERROR"} 1
traces_spanmetrics_calls_total{deployment_env="prod", service="payments", span_kind="SPAN_KIND_INTERNAL", span_name="db", status_code="STATUS_CODE_UNSET"} 1
traces_spanmetrics_latency_bucket{deployment_env="prod", le="0.01", service="payments", span_kind="SPAN_KIND_INTERNAL", span_name="db", status_code="STATUS_CODE_UNSET"} 1
traces_spanmetrics_latency_bucket{deployment_env="prod", le="0.1", service="payments", span_kind="SPAN_KIND_INTERNAL", span_name="db", status_code="STATUS_CODE_UNSET"} 1
traces_spanmetrics_latency_bucket{deployment_env="prod", le="1", service="payments", span_kind="SPAN_KIND_INTERNAL", span_name="db", status_code="STATUS_CODE_UNSET"} 1
traces_spanmetrics_latency_bucket{deployment_env="prod", le="+Inf", service="payments", span_kind="SPAN_KIND_INTERNAL", span_name="db", status_code="STATUS_CODE_UNSET"} 1
traces_spanmetrics_latency_sum{deployment_env="prod", service="payments", span_kind="SPAN_KIND_INTERNAL", span_name="db", status_code="STATUS_CODE_UNSET"} 0.001
traces_spanmetrics_latency_count{deployment_env="prod", service="payments", span_kind="SPAN_KIND_INTERNAL", span_name="db", status_code="STATUS_CODE_UNSET"} 1
"#;
        assert_eq!(text.trim(), expected.trim(), "\n{text}");

        // Exemplars: the latest trace per calls series and per bucket hit.
        let ex_text = render_exemplars(&ex);
        let t1 = skopos_model::to_hex(&tid(1));
        let t2 = skopos_model::to_hex(&tid(2));
        for want in [
            format!(
                r#"traces_spanmetrics_calls_total{{http_method="GET", service="frontend", span_kind="SPAN_KIND_SERVER", span_name="GET /", status_code="STATUS_CODE_UNSET"}} trace_id={t2} 1 @5"#
            ),
            format!(
                r#"traces_spanmetrics_latency_bucket{{http_method="GET", le="0.01", service="frontend", span_kind="SPAN_KIND_SERVER", span_name="GET /", status_code="STATUS_CODE_UNSET"}} trace_id={t2} 0.005 @5"#
            ),
            format!(
                r#"traces_spanmetrics_latency_bucket{{http_method="GET", le="0.1", service="frontend", span_kind="SPAN_KIND_SERVER", span_name="GET /", status_code="STATUS_CODE_UNSET"}} trace_id={t1} 0.05 @50"#
            ),
            format!(
                r#"traces_spanmetrics_latency_bucket{{__status_code="503", le="+Inf", service="payments", span_kind="SPAN_KIND_SERVER", span_name="charge", status_code="STATUS_CODE_ERROR"}} trace_id={t1} 2 @2002"#
            ),
        ] {
            assert!(ex_text.contains(&want), "missing {want}\nin\n{ex_text}");
        }
        // 4 calls series + 5 bucket exemplars (frontend has two buckets hit).
        assert_eq!(ex.len(), 9, "{ex_text}");

        // Counters are cumulative; exemplars are handed over once.
        let again = span("checkout", "charge", SpanKind::Client, 3, 9, None, 0, 20);
        m.push(&SpanBatch { spans: vec![again] });
        let (wb2, ex2) = m.collect(2_000);
        let text2 = render(&wb2);
        assert!(text2.contains(r#"traces_spanmetrics_calls_total{service="checkout", span_kind="SPAN_KIND_CLIENT", span_name="charge", status_code="STATUS_CODE_UNSET"} 2"#), "{text2}");
        assert!(text2.contains(r#"traces_spanmetrics_latency_bucket{le="0.1", service="checkout", span_kind="SPAN_KIND_CLIENT", span_name="charge", status_code="STATUS_CODE_UNSET"} 1"#), "{text2}");
        assert_eq!(ex2.len(), 2, "{}", render_exemplars(&ex2));
        assert_eq!(wb2.series.len(), wb.series.len());
        assert_eq!(
            m.stats(),
            SpanMetricsStats {
                spans: 6,
                dropped_spans: 0,
                series: 4,
                stale_series_removed: 0,
            }
        );
    }

    #[test]
    fn every_kind_and_status_has_tempos_label_value() {
        let kinds = [
            (SpanKind::Unspecified, "SPAN_KIND_UNSPECIFIED"),
            (SpanKind::Internal, "SPAN_KIND_INTERNAL"),
            (SpanKind::Server, "SPAN_KIND_SERVER"),
            (SpanKind::Client, "SPAN_KIND_CLIENT"),
            (SpanKind::Producer, "SPAN_KIND_PRODUCER"),
            (SpanKind::Consumer, "SPAN_KIND_CONSUMER"),
        ];
        let statuses = [
            (StatusCode::Unset, "STATUS_CODE_UNSET"),
            (StatusCode::Ok, "STATUS_CODE_OK"),
            (StatusCode::Error, "STATUS_CODE_ERROR"),
        ];
        let mut m = SpanMetrics::new(SpanMetricsConfig::default());
        let mut spans = Vec::new();
        for (k, _) in kinds {
            for (s, _) in statuses {
                let mut sp = span("svc", "op", k, 1, 1, None, 0, 1);
                sp.status = s;
                spans.push(sp);
            }
        }
        m.push(&SpanBatch { spans });
        let (wb, _) = m.collect(0);
        let text = render(&wb);
        for (_, kl) in kinds {
            for (_, sl) in statuses {
                let want = format!(
                    r#"traces_spanmetrics_calls_total{{service="svc", span_kind="{kl}", span_name="op", status_code="{sl}"}} 1"#
                );
                assert!(text.contains(&want), "{want}");
            }
        }
        // Tempo's default buckets, written as Prometheus writes `le`.
        let les: Vec<&str> = wb
            .series
            .iter()
            .filter(|s| {
                s.labels.get("span_kind") == Some("SPAN_KIND_SERVER")
                    && s.labels.get("status_code") == Some("STATUS_CODE_OK")
            })
            .filter_map(|s| s.labels.get("le"))
            .collect();
        assert_eq!(
            les,
            [
                "0.002", "0.004", "0.008", "0.016", "0.032", "0.064", "0.128", "0.256", "0.512",
                "1.02", "2.05", "4.1", "+Inf"
            ]
        );
    }

    #[test]
    fn series_past_the_limit_are_dropped_and_counted() {
        let mut m = SpanMetrics::new(SpanMetricsConfig {
            max_series: 2,
            ..Default::default()
        });
        let spans = (0..5)
            .map(|i| {
                span(
                    "svc",
                    &format!("op{}", i % 3),
                    SpanKind::Server,
                    1,
                    i + 1,
                    None,
                    0,
                    1,
                )
            })
            .collect();
        m.push(&SpanBatch { spans });
        // op0, op1 fit (op0 twice: spans 0 and 3, op1: 1 and 4); op2 is dropped.
        assert_eq!(
            m.stats(),
            SpanMetricsStats {
                spans: 4,
                dropped_spans: 1,
                series: 2,
                stale_series_removed: 0,
            }
        );
        let (wb, _) = m.collect(0);
        let text = render(&wb);
        assert!(!text.contains("op2"));
        assert!(text.contains(r#"traces_spanmetrics_calls_total{service="svc", span_kind="SPAN_KIND_SERVER", span_name="op1", status_code="STATUS_CODE_UNSET"} 2"#), "{text}");
        // Existing series still count after the limit is reached.
        m.push(&SpanBatch {
            spans: vec![span("svc", "op0", SpanKind::Server, 1, 9, None, 0, 1)],
        });
        assert_eq!(m.stats().spans, 5);
    }

    #[test]
    fn idle_series_are_forgotten_after_the_stale_duration() {
        let mut m = SpanMetrics::new(SpanMetricsConfig {
            max_series: 1,
            stale_after_ms: 1_000,
            ..Default::default()
        });
        let a = || span("svc", "a", SpanKind::Server, 1, 1, None, 0, 1);
        let b = || span("svc", "b", SpanKind::Server, 1, 2, None, 0, 1);
        m.push(&SpanBatch {
            spans: vec![a(), a()],
        });
        assert_eq!(m.collect(0).0.series.len(), 16);
        // The slot is taken: b is dropped.
        m.push(&SpanBatch { spans: vec![b()] });
        assert_eq!(m.stats().dropped_spans, 1);
        // Still fresh at exactly the stale duration.
        assert_eq!(m.collect(1_000).0.series.len(), 16);
        let (wb, _) = m.collect(1_001);
        assert!(wb.series.is_empty());
        assert_eq!(m.stats().series, 0);
        assert_eq!(m.stats().stale_series_removed, 1);
        // The freed slot takes b; a comes back from zero once b is stale.
        m.push(&SpanBatch { spans: vec![b()] });
        let text = render(&m.collect(2_000).0);
        assert!(
            text.contains(r#"span_name="b", status_code="STATUS_CODE_UNSET"} 1"#),
            "{text}"
        );
        m.collect(3_001);
        m.push(&SpanBatch { spans: vec![a()] });
        let text = render(&m.collect(3_002).0);
        assert!(text.contains(r#"traces_spanmetrics_calls_total{service="svc", span_kind="SPAN_KIND_SERVER", span_name="a", status_code="STATUS_CODE_UNSET"} 1"#), "{text}");
        // Touched series stay, and lookups still find them after a rebuild.
        m.push(&SpanBatch { spans: vec![a()] });
        let text = render(&m.collect(3_500).0);
        assert!(
            text.contains(r#"span_name="a", status_code="STATUS_CODE_UNSET"} 2"#),
            "{text}"
        );
        assert_eq!(m.stats().series, 1);
    }

    #[test]
    fn namespace_prefixes_the_metric_names() {
        let mut m = SpanMetrics::new(SpanMetricsConfig {
            namespace: "spans".into(),
            histogram_buckets: vec![1.0],
            ..Default::default()
        });
        m.push(&SpanBatch {
            spans: vec![span("a", "x", SpanKind::Server, 1, 1, None, 0, 1)],
        });
        let (wb, _) = m.collect(0);
        let names: Vec<&str> = wb
            .series
            .iter()
            .filter_map(|s| s.labels.metric_name())
            .collect();
        assert_eq!(
            names,
            [
                "spans_calls_total",
                "spans_latency_bucket",
                "spans_latency_bucket",
                "spans_latency_sum",
                "spans_latency_count"
            ]
        );
    }
}
