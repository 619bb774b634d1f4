//! OTLP metrics: decoding `ExportMetricsServiceRequest` (protobuf or
//! OTLP/JSON) and translating it into Prometheus series, following the
//! OpenTelemetry "Prometheus and OpenMetrics Compatibility" specification
//! (the same rules Prometheus' own OTLP receiver applies).
//!
//! | OTLP | Prometheus |
//! |---|---|
//! | Gauge | gauge |
//! | Sum, monotonic, cumulative | counter, name gets `_total` |
//! | Sum, non-monotonic | gauge |
//! | Sum or Histogram with delta temporality | converted to cumulative with per-series state ([`TranslatorOptions::delta_to_cumulative`]), else rejected |
//! | Histogram (explicit buckets) | `_bucket{le}` (cumulative, with `+Inf`), `_sum`, `_count` |
//! | ExponentialHistogram | classic buckets: see below |
//! | Summary | `{quantile}` series, `_sum`, `_count` |
//!
//! **Exponential histograms** become classic histograms: every populated
//! exponential bucket contributes one `le` bound equal to its upper boundary
//! (`base^(index+1)` for positive buckets, `-base^index` for negative ones),
//! the zero bucket contributes `le=zero_threshold` (so `le="0"` when the
//! threshold is 0); counts are made cumulative in bound order and the last
//! bucket is `le="+Inf"` with the total count. No precision is lost beyond
//! what the exponential buckets themselves carry.
//!
//! Naming: metric names have invalid characters replaced by `_` (runs
//! collapsed), then, unless disabled, get a unit suffix derived from the
//! UCUM `unit` (`s`→`seconds`, `By`→`bytes`, `m/s`→`meters_per_second`,
//! units in braces dropped) that is not already in the name, `_total` for
//! monotonic sums and `_ratio` for gauges with unit `1`. Label names have
//! invalid characters replaced by `_`, a leading digit gets `key_`, and
//! attributes that collide after sanitising are joined with `;` in the
//! order of their original keys. Resource `service.namespace/service.name`
//! becomes `job`, `service.instance.id` becomes `instance`, every other
//! resource attribute goes on one `target_info` gauge (value 1) per
//! resource. Scope name and version become `otel_scope_name` and
//! `otel_scope_version`, scope attributes `otel_scope_<attribute>`. Points
//! flagged `NoRecordedValue` become staleness markers. Exemplars are
//! dropped. Delta state is kept per series and forgotten after an hour
//! without points.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, AggregationTemporality, ExponentialHistogramDataPoint, HistogramDataPoint, Metric,
    NumberDataPoint, SummaryDataPoint,
};
use parking_lot::Mutex;
use prost::Message;
use skopos_model::{Labels, LabelsBuilder, Sample, WriteBatch, METRIC_NAME, STALE_NAN};

use crate::{DecodeError, MetricMetadata};

mod naming;

pub use naming::{normalize_name_with_suffixes, sanitize_label_name, sanitize_metric_name, Kind};

/// How an OTLP body is encoded (after any gzip has been removed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `application/x-protobuf` (also the gRPC payload).
    Protobuf,
    /// `application/json`, OTLP/JSON.
    Json,
}

/// Decodes an `ExportMetricsServiceRequest`.
pub fn decode_metrics_request(
    body: &[u8],
    enc: Encoding,
) -> Result<ExportMetricsServiceRequest, DecodeError> {
    match enc {
        Encoding::Protobuf => {
            ExportMetricsServiceRequest::decode(body).map_err(|e| DecodeError::Protobuf {
                message: "opentelemetry.proto.collector.metrics.v1.ExportMetricsServiceRequest",
                error: e.to_string(),
            })
        }
        Encoding::Json => serde_json::from_slice(body).map_err(|e| DecodeError::Json {
            message: "ExportMetricsServiceRequest",
            error: e.to_string(),
        }),
    }
}

/// Options of a [`Translator`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranslatorOptions {
    /// Convert delta sums and histograms to cumulative (default true);
    /// when false they are rejected.
    pub delta_to_cumulative: bool,
    /// Add unit, `_total` and `_ratio` suffixes to metric names (default true).
    pub add_unit_and_type_suffixes: bool,
    /// Resource attributes copied as labels onto every series of the
    /// resource (they also stay on `target_info`).
    pub promote_resource_attributes: Vec<String>,
}

impl Default for TranslatorOptions {
    fn default() -> Self {
        TranslatorOptions {
            delta_to_cumulative: true,
            add_unit_and_type_suffixes: true,
            promote_resource_attributes: Vec::new(),
        }
    }
}

/// The outcome of translating one request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Translation {
    pub batch: WriteBatch,
    /// Data points that produced nothing (for OTLP `partial_success`).
    pub rejected_points: i64,
    /// Empty if nothing was rejected; otherwise one explanation per kind of
    /// rejection, with counts.
    pub error_message: String,
    /// One entry per metric name translated: type, description as help, unit.
    pub metadata: Vec<MetricMetadata>,
}

/// Delta state older than this is forgotten (the producer is gone).
const STATE_TTL: Duration = Duration::from_secs(3600);
const SWEEP_EVERY: Duration = Duration::from_secs(300);

struct SumState {
    last_ns: u64,
    total: f64,
    touched: Instant,
}

#[derive(Default, Clone)]
struct HistAcc {
    count: f64,
    sum: Option<f64>,
    /// Non-cumulative counts by upper bound, sorted by bound; +Inf included.
    buckets: Vec<(f64, f64)>,
}

impl HistAcc {
    fn add_bucket(&mut self, upper: f64, count: f64) {
        match self.buckets.binary_search_by(|(u, _)| u.total_cmp(&upper)) {
            Ok(i) => self.buckets[i].1 += count,
            Err(i) => self.buckets.insert(i, (upper, count)),
        }
    }

    fn merge(&mut self, other: &HistAcc) {
        self.count += other.count;
        self.sum = match (self.sum, other.sum) {
            (Some(a), Some(b)) => Some(a + b),
            _ => None,
        };
        for &(u, c) in &other.buckets {
            self.add_bucket(u, c);
        }
    }
}

struct HistState {
    last_ns: u64,
    acc: HistAcc,
    touched: Instant,
}

struct DeltaState {
    sums: HashMap<Labels, SumState>,
    hists: HashMap<Labels, HistState>,
    last_sweep: Instant,
}

impl DeltaState {
    fn new() -> Self {
        DeltaState {
            sums: HashMap::new(),
            hists: HashMap::new(),
            last_sweep: Instant::now(),
        }
    }
}

fn has_delta(req: &ExportMetricsServiceRequest) -> bool {
    let delta = AggregationTemporality::Delta as i32;
    req.resource_metrics
        .iter()
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|sm| &sm.metrics)
        .any(|m| match &m.data {
            Some(metric::Data::Sum(s)) => s.aggregation_temporality == delta,
            Some(metric::Data::Histogram(h)) => h.aggregation_temporality == delta,
            Some(metric::Data::ExponentialHistogram(h)) => h.aggregation_temporality == delta,
            _ => false,
        })
}

/// Translates OTLP metrics into Prometheus series. Holds the running totals
/// that turn delta temporality into cumulative; share one per server.
pub struct Translator {
    opts: TranslatorOptions,
    state: Mutex<DeltaState>,
}

/// Counts rejections by reason.
#[derive(Default)]
struct Rejections {
    total: i64,
    reasons: BTreeMap<String, i64>,
}

impl Rejections {
    fn add(&mut self, points: usize, reason: String) {
        if points == 0 {
            return;
        }
        self.total += points as i64;
        *self.reasons.entry(reason).or_default() += points as i64;
    }

    fn message(&self) -> String {
        if self.total == 0 {
            return String::new();
        }
        let mut out = format!("{} data points rejected: ", self.total);
        for (i, (reason, n)) in self.reasons.iter().take(10).enumerate() {
            if i > 0 {
                out.push_str("; ");
            }
            let _ = write!(out, "{reason} ({n} points)");
        }
        if self.reasons.len() > 10 {
            let _ = write!(out, "; and {} more kinds", self.reasons.len() - 10);
        }
        out
    }
}

/// Per-resource context while translating.
struct Ctx<'a> {
    base: &'a [(String, String)],
    max_ts: i64,
}

impl Translator {
    pub fn new(opts: TranslatorOptions) -> Self {
        Translator {
            opts,
            state: Mutex::new(DeltaState::new()),
        }
    }

    pub fn options(&self) -> &TranslatorOptions {
        &self.opts
    }

    pub fn translate(&self, req: &ExportMetricsServiceRequest) -> Translation {
        let mut batch = WriteBatch::default();
        let mut rej = Rejections::default();
        let mut metadata: Vec<MetricMetadata> = Vec::new();
        let mut metadata_seen = std::collections::HashSet::new();
        // Only requests with delta temporality need (and serialise on) the
        // shared state; the rest work on an empty, unshared one.
        let mut local;
        let mut guard;
        let state: &mut DeltaState = if self.opts.delta_to_cumulative && has_delta(req) {
            guard = self.state.lock();
            &mut guard
        } else {
            local = DeltaState::new();
            &mut local
        };
        let now = Instant::now();
        if now.duration_since(state.last_sweep) > SWEEP_EVERY {
            state
                .sums
                .retain(|_, s| now.duration_since(s.touched) < STATE_TTL);
            state
                .hists
                .retain(|_, s| now.duration_since(s.touched) < STATE_TTL);
            state.last_sweep = now;
        }
        for rm in &req.resource_metrics {
            let attrs: &[KeyValue] = rm.resource.as_ref().map_or(&[], |r| &r.attributes);
            let get = |k: &str| {
                attrs
                    .iter()
                    .find(|kv| kv.key == k)
                    .map(|kv| any_to_string(kv.value.as_ref()))
            };
            let service = get("service.name").filter(|s| !s.is_empty());
            let namespace = get("service.namespace").filter(|s| !s.is_empty());
            let job = match (&namespace, &service) {
                (Some(ns), Some(name)) => Some(format!("{ns}/{name}")),
                (None, Some(name)) => Some(name.clone()),
                _ => None,
            };
            let instance = get("service.instance.id").filter(|s| !s.is_empty());
            let promoted: Vec<&KeyValue> = attrs
                .iter()
                .filter(|kv| self.opts.promote_resource_attributes.contains(&kv.key))
                .collect();
            let promoted = sanitize_attributes(promoted.into_iter());
            let points_before = batch.series.len();
            let mut max_ts = i64::MIN;
            for sm in &rm.scope_metrics {
                let mut base = promoted.clone();
                if let Some(scope) = &sm.scope {
                    if !scope.name.is_empty() {
                        base.push(("otel_scope_name".into(), scope.name.clone()));
                    }
                    if !scope.version.is_empty() {
                        base.push(("otel_scope_version".into(), scope.version.clone()));
                    }
                    for (k, v) in sanitize_attributes(scope.attributes.iter()) {
                        base.push((format!("otel_scope_{k}"), v));
                    }
                }
                if let Some(j) = &job {
                    base.push(("job".into(), j.clone()));
                }
                if let Some(i) = &instance {
                    base.push(("instance".into(), i.clone()));
                }
                let mut ctx = Ctx {
                    base: &base,
                    max_ts,
                };
                for m in &sm.metrics {
                    if let Some(md) = self.metric(m, &mut ctx, state, &mut batch, &mut rej) {
                        if metadata_seen.insert(md.metric_family_name.clone()) {
                            metadata.push(md);
                        }
                    }
                }
                max_ts = ctx.max_ts;
            }
            // target_info carries the non-identifying resource attributes.
            let info_attrs: Vec<&KeyValue> = attrs
                .iter()
                .filter(|kv| {
                    !matches!(
                        kv.key.as_str(),
                        "service.name" | "service.namespace" | "service.instance.id"
                    )
                })
                .collect();
            if batch.series.len() > points_before && !info_attrs.is_empty() && max_ts != i64::MIN {
                let mut b = LabelsBuilder::new();
                for (k, v) in sanitize_attributes(info_attrs.into_iter()) {
                    b.set(k, v);
                }
                if let Some(j) = &job {
                    b.set("job", j.clone());
                }
                if let Some(i) = &instance {
                    b.set("instance", i.clone());
                }
                b.set(METRIC_NAME, "target_info");
                batch.push(b.build(), Sample::new(max_ts, 1.0));
            }
        }
        Translation {
            batch,
            rejected_points: rej.total,
            error_message: rej.message(),
            metadata,
        }
    }

    /// Translates one metric; returns its metadata unless it was rejected whole.
    fn metric(
        &self,
        m: &Metric,
        ctx: &mut Ctx,
        state: &mut DeltaState,
        batch: &mut WriteBatch,
        rej: &mut Rejections,
    ) -> Option<MetricMetadata> {
        let points = data_point_count(m);
        if m.name.is_empty() {
            rej.add(points, "metric has an empty name".into());
            return None;
        }
        let Some(data) = &m.data else {
            rej.add(
                points.max(1),
                format!(
                    "metric {:?} has no data (no gauge, sum, histogram or summary)",
                    m.name
                ),
            );
            return None;
        };
        let kind = match data {
            metric::Data::Gauge(_) => Kind::Gauge,
            metric::Data::Sum(s) if s.is_monotonic => Kind::Counter,
            metric::Data::Sum(_) => Kind::NonMonotonicSum,
            _ => Kind::Other,
        };
        let name = if self.opts.add_unit_and_type_suffixes {
            normalize_name_with_suffixes(&m.name, &m.unit, kind)
        } else {
            sanitize_metric_name(&m.name)
        };
        if name.is_empty() {
            rej.add(
                points,
                format!("metric name {:?} has no valid characters", m.name),
            );
            return None;
        }
        match data {
            metric::Data::Gauge(g) => {
                for p in &g.data_points {
                    self.number_point(&name, p, false, ctx, state, batch, rej);
                }
            }
            metric::Data::Sum(s) => {
                let delta = self.is_delta(
                    s.aggregation_temporality,
                    "sum",
                    &m.name,
                    s.data_points.len(),
                    rej,
                )?;
                for p in &s.data_points {
                    self.number_point(&name, p, delta, ctx, state, batch, rej);
                }
            }
            metric::Data::Histogram(h) => {
                let delta = self.is_delta(
                    h.aggregation_temporality,
                    "histogram",
                    &m.name,
                    h.data_points.len(),
                    rej,
                )?;
                for p in &h.data_points {
                    match explicit_to_acc(p) {
                        Ok(acc) => self.hist_point(
                            &name,
                            &p.attributes,
                            p.time_unix_nano,
                            p.flags,
                            acc,
                            delta,
                            ctx,
                            state,
                            batch,
                            rej,
                        ),
                        Err(reason) => rej.add(1, format!("histogram {:?}: {reason}", m.name)),
                    }
                }
            }
            metric::Data::ExponentialHistogram(h) => {
                let delta = self.is_delta(
                    h.aggregation_temporality,
                    "exponential histogram",
                    &m.name,
                    h.data_points.len(),
                    rej,
                )?;
                for p in &h.data_points {
                    match exponential_to_acc(p) {
                        Ok(acc) => self.hist_point(
                            &name,
                            &p.attributes,
                            p.time_unix_nano,
                            p.flags,
                            acc,
                            delta,
                            ctx,
                            state,
                            batch,
                            rej,
                        ),
                        Err(reason) => {
                            rej.add(1, format!("exponential histogram {:?}: {reason}", m.name))
                        }
                    }
                }
            }
            metric::Data::Summary(s) => {
                for p in &s.data_points {
                    self.summary_point(&name, p, ctx, batch, rej);
                }
            }
        }

        let type_ = match data {
            metric::Data::Gauge(_) => "gauge",
            metric::Data::Sum(s) if s.is_monotonic => "counter",
            metric::Data::Sum(_) => "gauge",
            metric::Data::Histogram(_) | metric::Data::ExponentialHistogram(_) => "histogram",
            metric::Data::Summary(_) => "summary",
        };
        Some(MetricMetadata {
            metric_family_name: name,
            type_: type_.into(),
            help: m.description.clone(),
            unit: m.unit.clone(),
        })
    }

    /// Whether points of this temporality need delta-to-cumulative
    /// conversion; `None` (with the points rejected) if they cannot be used.
    fn is_delta(
        &self,
        temporality: i32,
        what: &str,
        name: &str,
        points: usize,
        rej: &mut Rejections,
    ) -> Option<bool> {
        match AggregationTemporality::try_from(temporality)
            .unwrap_or(AggregationTemporality::Unspecified)
        {
            AggregationTemporality::Cumulative => Some(false),
            AggregationTemporality::Delta if self.opts.delta_to_cumulative => Some(true),
            AggregationTemporality::Delta => {
                rej.add(
                    points,
                    format!("{what} {name:?} has delta temporality and delta-to-cumulative conversion is disabled"),
                );
                None
            }
            AggregationTemporality::Unspecified => {
                rej.add(
                    points,
                    format!("{what} {name:?} has unspecified aggregation temporality"),
                );
                None
            }
        }
    }

    fn labels(
        &self,
        name: &str,
        attrs: &[KeyValue],
        ctx: &Ctx,
        extra: Option<(&str, String)>,
    ) -> Labels {
        let mut b = LabelsBuilder::new();
        for (k, v) in sanitize_attributes(attrs.iter()) {
            b.set(k, v);
        }
        for (k, v) in ctx.base {
            if b.get(k).is_none() || k == "job" || k == "instance" {
                b.set(k.clone(), v.clone());
            }
        }
        if let Some((k, v)) = extra {
            b.set(k, v);
        }
        b.set(METRIC_NAME, name);
        b.build()
    }

    #[allow(clippy::too_many_arguments)]
    fn number_point(
        &self,
        name: &str,
        p: &NumberDataPoint,
        delta: bool,
        ctx: &mut Ctx,
        state: &mut DeltaState,
        batch: &mut WriteBatch,
        rej: &mut Rejections,
    ) {
        use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value;
        let Some(t) = timestamp_ms(p.time_unix_nano) else {
            rej.add(1, format!("a data point of {name:?} has no time_unix_nano"));
            return;
        };
        let labels = self.labels(name, &p.attributes, ctx, None);
        let stale = no_recorded_value(p.flags);
        let mut v = match p.value {
            _ if stale => STALE_NAN,
            Some(Value::AsDouble(d)) => d,
            Some(Value::AsInt(i)) => i as f64,
            None => {
                rej.add(1, format!("a data point of {name:?} has no value"));
                return;
            }
        };
        if delta && !stale {
            let now = Instant::now();
            match state.sums.get_mut(&labels) {
                Some(s) if p.time_unix_nano <= s.last_ns => {
                    rej.add(1, format!("delta point for {name:?} is not newer than the last one received for the series"));
                    return;
                }
                Some(s) => {
                    s.total += v;
                    s.last_ns = p.time_unix_nano;
                    s.touched = now;
                    v = s.total;
                }
                None => {
                    state.sums.insert(
                        labels.clone(),
                        SumState {
                            last_ns: p.time_unix_nano,
                            total: v,
                            touched: now,
                        },
                    );
                }
            }
        }
        ctx.max_ts = ctx.max_ts.max(t);
        batch.push(labels, Sample::new(t, v));
    }

    #[allow(clippy::too_many_arguments)]
    fn hist_point(
        &self,
        name: &str,
        attrs: &[KeyValue],
        time_ns: u64,
        flags: u32,
        mut acc: HistAcc,
        delta: bool,
        ctx: &mut Ctx,
        state: &mut DeltaState,
        batch: &mut WriteBatch,
        rej: &mut Rejections,
    ) {
        let Some(t) = timestamp_ms(time_ns) else {
            rej.add(1, format!("a data point of {name:?} has no time_unix_nano"));
            return;
        };
        let base = self.labels(name, attrs, ctx, None);
        let stale = no_recorded_value(flags);
        if delta && !stale {
            let now = Instant::now();
            match state.hists.get_mut(&base) {
                Some(s) if time_ns <= s.last_ns => {
                    rej.add(1, format!("delta point for {name:?} is not newer than the last one received for the series"));
                    return;
                }
                Some(s) => {
                    s.acc.merge(&acc);
                    s.last_ns = time_ns;
                    s.touched = now;
                    acc = s.acc.clone();
                }
                None => {
                    state.hists.insert(
                        base.clone(),
                        HistState {
                            last_ns: time_ns,
                            acc: acc.clone(),
                            touched: now,
                        },
                    );
                }
            }
        }
        ctx.max_ts = ctx.max_ts.max(t);
        let val = |v: f64| if stale { STALE_NAN } else { v };
        let mut cumulative = 0.0;
        let mut saw_inf = false;
        for &(upper, c) in &acc.buckets {
            cumulative += c;
            saw_inf |= upper == f64::INFINITY;
            let le = if upper == f64::INFINITY {
                "+Inf".to_string()
            } else {
                format_plain(upper)
            };
            let l = derive(&base, &format!("{name}_bucket"), Some(("le", le)));
            // As in Prometheus, the +Inf bucket is the point's count.
            let v = if upper == f64::INFINITY {
                acc.count
            } else {
                cumulative
            };
            batch.push(l, Sample::new(t, val(v)));
        }
        if !saw_inf {
            let l = derive(
                &base,
                &format!("{name}_bucket"),
                Some(("le", "+Inf".into())),
            );
            batch.push(l, Sample::new(t, val(acc.count)));
        }
        if let Some(sum) = acc.sum {
            batch.push(
                derive(&base, &format!("{name}_sum"), None),
                Sample::new(t, val(sum)),
            );
        }
        batch.push(
            derive(&base, &format!("{name}_count"), None),
            Sample::new(t, val(acc.count)),
        );
    }

    fn summary_point(
        &self,
        name: &str,
        p: &SummaryDataPoint,
        ctx: &mut Ctx,
        batch: &mut WriteBatch,
        rej: &mut Rejections,
    ) {
        let Some(t) = timestamp_ms(p.time_unix_nano) else {
            rej.add(1, format!("a data point of {name:?} has no time_unix_nano"));
            return;
        };
        ctx.max_ts = ctx.max_ts.max(t);
        let base = self.labels(name, &p.attributes, ctx, None);
        let stale = no_recorded_value(p.flags);
        let val = |v: f64| if stale { STALE_NAN } else { v };
        for q in &p.quantile_values {
            let l = derive(&base, name, Some(("quantile", format_plain(q.quantile))));
            batch.push(l, Sample::new(t, val(q.value)));
        }
        batch.push(
            derive(&base, &format!("{name}_sum"), None),
            Sample::new(t, val(p.sum)),
        );
        batch.push(
            derive(&base, &format!("{name}_count"), None),
            Sample::new(t, val(p.count as f64)),
        );
    }
}

/// `base` with another metric name and optionally one more label.
fn derive(base: &Labels, name: &str, extra: Option<(&str, String)>) -> Labels {
    let mut b = base.builder();
    if let Some((k, v)) = extra {
        b.set(k, v);
    }
    b.set(METRIC_NAME, name);
    b.build()
}

fn data_point_count(m: &Metric) -> usize {
    match &m.data {
        None => 0,
        Some(metric::Data::Gauge(g)) => g.data_points.len(),
        Some(metric::Data::Sum(s)) => s.data_points.len(),
        Some(metric::Data::Histogram(h)) => h.data_points.len(),
        Some(metric::Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(metric::Data::Summary(s)) => s.data_points.len(),
    }
}

fn no_recorded_value(flags: u32) -> bool {
    flags & 1 != 0
}

fn timestamp_ms(ns: u64) -> Option<i64> {
    (ns != 0).then_some((ns / 1_000_000) as i64)
}

/// Bounds as Prometheus' OTLP receiver writes them: shortest decimal, no exponent.
fn format_plain(v: f64) -> String {
    if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

fn explicit_to_acc(p: &HistogramDataPoint) -> Result<HistAcc, String> {
    let mut acc = HistAcc {
        count: p.count as f64,
        sum: p.sum,
        buckets: Vec::new(),
    };
    if p.bucket_counts.is_empty() {
        return Ok(acc);
    }
    if p.bucket_counts.len() != p.explicit_bounds.len() + 1 {
        return Err(format!(
            "{} bucket counts for {} explicit bounds (expected one more count than bounds)",
            p.bucket_counts.len(),
            p.explicit_bounds.len()
        ));
    }
    if p.explicit_bounds
        .windows(2)
        .any(|w| w[0].partial_cmp(&w[1]) != Some(std::cmp::Ordering::Less))
    {
        return Err("explicit bounds are not strictly increasing".into());
    }
    for (i, &c) in p.bucket_counts.iter().enumerate() {
        let upper = p.explicit_bounds.get(i).copied().unwrap_or(f64::INFINITY);
        acc.add_bucket(upper, c as f64);
    }
    Ok(acc)
}

/// Upper bound of exponential bucket `index` at `scale`: `base^(index+1)`
/// with `base = 2^(2^-scale)`.
fn exp_upper(index: i64, scale: i32) -> f64 {
    ((index + 1) as f64 * (-(scale as f64)).exp2()).exp2()
}

fn exponential_to_acc(p: &ExponentialHistogramDataPoint) -> Result<HistAcc, String> {
    if !(-10..=20).contains(&p.scale) {
        return Err(format!(
            "scale {} is outside the supported range -10..=20",
            p.scale
        ));
    }
    let mut acc = HistAcc {
        count: p.count as f64,
        sum: p.sum,
        buckets: Vec::new(),
    };
    if let Some(neg) = &p.negative {
        for (k, &c) in neg.bucket_counts.iter().enumerate() {
            if c > 0 {
                // Negative bucket i covers [-base^(i+1), -base^i).
                let index = neg.offset as i64 + k as i64;
                acc.add_bucket(-exp_upper(index - 1, p.scale), c as f64);
            }
        }
    }
    if p.zero_count > 0 {
        acc.add_bucket(p.zero_threshold.max(0.0), p.zero_count as f64);
    }
    if let Some(pos) = &p.positive {
        for (k, &c) in pos.bucket_counts.iter().enumerate() {
            if c > 0 {
                let index = pos.offset as i64 + k as i64;
                acc.add_bucket(exp_upper(index, p.scale), c as f64);
            }
        }
    }
    Ok(acc)
}

/// Sanitises attribute keys; values of keys that collide are joined with
/// `;` in the order of their original keys.
pub(crate) fn sanitize_attributes<'a>(
    attrs: impl Iterator<Item = &'a KeyValue>,
) -> Vec<(String, String)> {
    let mut by_name: BTreeMap<String, Vec<(&'a str, String)>> = BTreeMap::new();
    for kv in attrs {
        let name = sanitize_label_name(&kv.key);
        if name.is_empty() {
            continue;
        }
        by_name
            .entry(name)
            .or_default()
            .push((kv.key.as_str(), any_to_string(kv.value.as_ref())));
    }
    by_name
        .into_iter()
        .map(|(name, mut vals)| {
            vals.sort_by(|a, b| a.0.cmp(b.0));
            let v = vals
                .into_iter()
                .map(|(_, v)| v)
                .filter(|v| !v.is_empty())
                .collect::<Vec<_>>()
                .join(";");
            (name, v)
        })
        .collect()
}

/// An attribute value as a label value: strings as they are, numbers and
/// booleans in their usual text form, bytes as base64, arrays and maps as JSON.
pub fn any_to_string(v: Option<&AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        None => String::new(),
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => crate::format_float(*d),
        Some(any_value::Value::BytesValue(b)) => base64(b),
        Some(other) => any_to_json(Some(other)).to_string(),
    }
}

fn any_to_json(v: Option<&any_value::Value>) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        None => J::Null,
        Some(any_value::Value::StringValue(s)) => J::String(s.clone()),
        Some(any_value::Value::BoolValue(b)) => J::Bool(*b),
        Some(any_value::Value::IntValue(i)) => J::from(*i),
        Some(any_value::Value::DoubleValue(d)) => serde_json::Number::from_f64(*d)
            .map_or_else(|| J::String(crate::format_float(*d)), J::Number),
        Some(any_value::Value::BytesValue(b)) => J::String(base64(b)),
        // Only meaningful inside profiles, which carry a string table.
        Some(any_value::Value::StringValueStrindex(i)) => J::from(*i),
        Some(any_value::Value::ArrayValue(a)) => J::Array(
            a.values
                .iter()
                .map(|x| any_to_json(x.value.as_ref()))
                .collect(),
        ),
        Some(any_value::Value::KvlistValue(kv)) => J::Object(
            kv.values
                .iter()
                .map(|kv| {
                    (
                        kv.key.clone(),
                        any_to_json(kv.value.as_ref().and_then(|v| v.value.as_ref())),
                    )
                })
                .collect(),
        ),
    }
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests;
