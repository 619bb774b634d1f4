//! A cumulative Prometheus-style histogram with one pending exemplar per
//! bucket, and the helpers both processors use to write series out.

use skopos_model::{
    to_hex, Exemplar, Labels, Sample, SeriesExemplars, TraceId, WriteBatch, METRIC_NAME,
};

/// Counts per bucket (not cumulative; the last one is `+Inf`), their sum
/// and count, and the latest exemplar per bucket since the last write.
#[derive(Debug, Clone)]
pub(crate) struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
    exemplars: Vec<Option<PendingExemplar>>,
}

/// An exemplar as a span leaves it: the trace's labels are built only
/// when the series is written, not for every span that replaces it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PendingExemplar {
    pub trace: TraceId,
    pub value: f64,
    pub ts_ms: i64,
}

impl PendingExemplar {
    pub(crate) fn build(&self) -> Exemplar {
        exemplar(&self.trace, self.value, self.ts_ms)
    }
}

impl Histogram {
    pub(crate) fn new(bounds: &[f64]) -> Self {
        Histogram {
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
            count: 0,
            exemplars: vec![None; bounds.len() + 1],
        }
    }

    /// Observations so far.
    pub(crate) fn count(&self) -> u64 {
        self.count
    }

    /// Records `v` in the first bucket whose upper bound is at least `v`
    /// (Prometheus' `le`), with `trace` as that bucket's exemplar.
    pub(crate) fn observe(&mut self, bounds: &[f64], v: f64, trace: Option<(&TraceId, i64)>) {
        let i = bounds.partition_point(|&b| b < v);
        self.counts[i] += 1;
        self.sum += v;
        self.count += 1;
        if let Some((id, ts_ms)) = trace {
            self.exemplars[i] = Some(PendingExemplar {
                trace: *id,
                value: v,
                ts_ms,
            });
        }
    }

    /// Writes `<name>_bucket` (cumulative, one per bound and `+Inf`),
    /// `<name>_sum` and `<name>_count` for the series `base`, and hands
    /// over the exemplars gathered since the last write.
    pub(crate) fn write(
        &mut self,
        bounds: &[f64],
        name: &str,
        base: &Labels,
        now_ms: i64,
        out: &mut WriteBatch,
        exemplars: &mut Vec<SeriesExemplars>,
    ) {
        let bucket_name = format!("{name}_bucket");
        let mut cumulative = 0u64;
        for (i, c) in self.counts.iter().enumerate() {
            cumulative += c;
            let le = bounds
                .get(i)
                .map_or_else(|| "+Inf".to_string(), |b| format_le(*b));
            let mut b = base.builder();
            b.set(METRIC_NAME, bucket_name.as_str()).set("le", le);
            let labels = b.build();
            if let Some(e) = self.exemplars[i].take() {
                exemplars.push(SeriesExemplars {
                    series: labels.clone(),
                    exemplars: vec![e.build()],
                });
            }
            out.push(labels, Sample::new(now_ms, cumulative as f64));
        }
        out.push(
            named(base, &format!("{name}_sum")),
            Sample::new(now_ms, self.sum),
        );
        out.push(
            named(base, &format!("{name}_count")),
            Sample::new(now_ms, self.count as f64),
        );
    }
}

/// `base` with `__name__` set.
pub(crate) fn named(base: &Labels, name: &str) -> Labels {
    let mut b = base.builder();
    b.set(METRIC_NAME, name);
    b.build()
}

/// An exemplar pointing at a trace.
pub(crate) fn exemplar(id: &TraceId, value: f64, ts_ms: i64) -> Exemplar {
    Exemplar {
        labels: Labels::from_pairs([("trace_id", to_hex(id))]),
        value,
        ts_ms,
    }
}

/// A bucket bound as Prometheus writes `le`: shortest round-trip decimal.
pub(crate) fn format_le(b: f64) -> String {
    if b == f64::INFINITY {
        "+Inf".into()
    } else {
        format!("{b}")
    }
}

/// An attribute name as a label name: characters outside `[a-zA-Z0-9_]`
/// become `_`, and a leading digit gets a `_` in front.
pub(crate) fn sanitize_label_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// Nanoseconds as seconds.
pub(crate) fn seconds(ns: i64) -> f64 {
    ns as f64 / 1e9
}

/// Unix nanoseconds as milliseconds.
pub(crate) fn ns_to_ms(ns: i64) -> i64 {
    ns.div_euclid(1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_land_in_the_first_bucket_whose_bound_is_at_least_the_value() {
        let bounds = [0.1, 0.2];
        let mut h = Histogram::new(&bounds);
        for v in [0.1, 0.15, 0.2, 0.3, 0.0] {
            h.observe(&bounds, v, None);
        }
        assert_eq!(h.counts, [2, 2, 1]);
        assert_eq!(h.count, 5);
        assert!((h.sum - 0.75).abs() < 1e-12);
        assert_eq!(format_le(0.002), "0.002");
        assert_eq!(format_le(4.1), "4.1");
        assert_eq!(format_le(1.0), "1");
        assert_eq!(sanitize_label_name("http.status_code"), "http_status_code");
        assert_eq!(sanitize_label_name("1x-y"), "_1x_y");
    }
}
