//! Prometheus remote write 1.0: a `prometheus.WriteRequest` protobuf,
//! compressed with snappy's *block* format (`snap::raw`, not the framed
//! stream format).
//!
//! Native histograms (`TimeSeries.histograms`) are **ignored and counted**
//! ([`Decoded::histograms_ignored`]): skopos stores float samples only, and
//! refusing the whole request would also lose the float samples that came
//! with them (senders do not retry a 4xx). The handler should surface the
//! count to the client. Exemplars are kept ([`Decoded::exemplars`]); one
//! with a duplicate label name is dropped and counted.

use prost::Message;
use skopos_model::{Exemplar, Label, Labels, Sample, SeriesExemplars, SeriesSamples, WriteBatch};

use crate::{DecodeError, MetricMetadata};

/// The protobuf messages of remote write 1.0 (`prometheus/prompb`), written
/// by hand. Fields skopos does not read are left out; prost skips them.
pub mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct WriteRequest {
        #[prost(message, repeated, tag = "1")]
        pub timeseries: Vec<TimeSeries>,
        #[prost(message, repeated, tag = "3")]
        pub metadata: Vec<MetricMetadata>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TimeSeries {
        #[prost(message, repeated, tag = "1")]
        pub labels: Vec<Label>,
        #[prost(message, repeated, tag = "2")]
        pub samples: Vec<Sample>,
        #[prost(message, repeated, tag = "3")]
        pub exemplars: Vec<Exemplar>,
        #[prost(message, repeated, tag = "4")]
        pub histograms: Vec<Histogram>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Label {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        #[prost(double, tag = "1")]
        pub value: f64,
        /// Milliseconds since the Unix epoch.
        #[prost(int64, tag = "2")]
        pub timestamp: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Exemplar {
        #[prost(message, repeated, tag = "1")]
        pub labels: Vec<Label>,
        #[prost(double, tag = "2")]
        pub value: f64,
        #[prost(int64, tag = "3")]
        pub timestamp: i64,
    }

    /// A native histogram. Only the timestamp is decoded; the buckets are
    /// skipped because skopos does not store native histograms.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Histogram {
        #[prost(int64, tag = "15")]
        pub timestamp: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MetricMetadata {
        #[prost(enumeration = "MetricType", tag = "1")]
        pub r#type: i32,
        #[prost(string, tag = "2")]
        pub metric_family_name: String,
        #[prost(string, tag = "4")]
        pub help: String,
        #[prost(string, tag = "5")]
        pub unit: String,
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum MetricType {
        Unknown = 0,
        Counter = 1,
        Gauge = 2,
        Histogram = 3,
        Gaugehistogram = 4,
        Summary = 5,
        Info = 6,
        Stateset = 7,
    }
}

/// A decoded remote write request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decoded {
    pub batch: WriteBatch,
    pub metadata: Vec<MetricMetadata>,
    /// The exemplars, by series.
    pub exemplars: Vec<SeriesExemplars>,
    /// Exemplars dropped because their labels repeat a name.
    pub exemplars_invalid: usize,
    /// Native histogram samples received and dropped (see the module doc).
    pub histograms_ignored: usize,
}

fn type_name(t: i32) -> &'static str {
    use proto::MetricType as T;
    match T::try_from(t).unwrap_or(T::Unknown) {
        T::Unknown => "unknown",
        T::Counter => "counter",
        T::Gauge => "gauge",
        T::Histogram => "histogram",
        T::Gaugehistogram => "gaugehistogram",
        T::Summary => "summary",
        T::Info => "info",
        T::Stateset => "stateset",
    }
}

fn type_code(t: &str) -> i32 {
    use proto::MetricType as T;
    (match t {
        "counter" => T::Counter,
        "gauge" => T::Gauge,
        "histogram" => T::Histogram,
        "gaugehistogram" => T::Gaugehistogram,
        "summary" => T::Summary,
        "info" => T::Info,
        "stateset" => T::Stateset,
        _ => T::Unknown,
    }) as i32
}

/// Decodes a snappy-compressed `WriteRequest`. The declared decompressed
/// length is checked against `max_decompressed` before anything is
/// allocated. Validates that every series has labels, that label names are
/// non-empty and unique; label-count and length limits are left to storage.
pub fn decode(body: &[u8], max_decompressed: usize) -> Result<Decoded, DecodeError> {
    let size = snap::raw::decompress_len(body).map_err(|e| DecodeError::Snappy(e.to_string()))?;
    if size > max_decompressed {
        return Err(DecodeError::TooLarge {
            size,
            limit: max_decompressed,
        });
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| DecodeError::Snappy(e.to_string()))?;
    let req = proto::WriteRequest::decode(raw.as_slice()).map_err(|e| DecodeError::Protobuf {
        message: "prometheus.WriteRequest",
        error: e.to_string(),
    })?;
    from_proto(req)
}

/// Converts an already-decoded `WriteRequest` (validating it as [`decode`] does).
pub fn from_proto(req: proto::WriteRequest) -> Result<Decoded, DecodeError> {
    let mut out = Decoded::default();
    out.batch.series.reserve(req.timeseries.len());
    for (index, ts) in req.timeseries.into_iter().enumerate() {
        out.histograms_ignored += ts.histograms.len();
        if ts.samples.is_empty() && ts.exemplars.is_empty() {
            continue;
        }
        if ts.labels.is_empty() {
            return Err(DecodeError::InvalidSeries {
                index,
                reason: "it has no labels".into(),
            });
        }
        let mut labels = Vec::with_capacity(ts.labels.len());
        for l in ts.labels {
            if l.name.is_empty() {
                return Err(DecodeError::InvalidSeries {
                    index,
                    reason: format!("a label with value {:?} has an empty name", l.value),
                });
            }
            labels.push(Label::new(l.name, l.value));
        }
        let labels = Labels::from_sorted_checked(labels)
            .map_err(|name| DecodeError::DuplicateLabel { index, name })?;
        if labels.is_empty() {
            return Err(DecodeError::InvalidSeries {
                index,
                reason: "all its label values are empty".into(),
            });
        }
        let exemplars: Vec<Exemplar> = ts
            .exemplars
            .into_iter()
            .filter_map(|e| {
                let labels = e.labels.into_iter().map(|l| Label::new(l.name, l.value));
                match Labels::from_sorted_checked(labels.collect()) {
                    Ok(labels) => Some(Exemplar {
                        labels,
                        value: e.value,
                        ts_ms: e.timestamp,
                    }),
                    Err(_) => {
                        out.exemplars_invalid += 1;
                        None
                    }
                }
            })
            .collect();
        if !exemplars.is_empty() {
            out.exemplars.push(SeriesExemplars {
                series: labels.clone(),
                exemplars,
            });
        }
        if ts.samples.is_empty() {
            continue;
        }
        let samples = ts
            .samples
            .iter()
            .map(|s| Sample::new(s.timestamp, s.value))
            .collect();
        out.batch.series.push(SeriesSamples { labels, samples });
    }
    out.metadata = req
        .metadata
        .into_iter()
        .map(|m| MetricMetadata {
            type_: type_name(m.r#type).to_string(),
            metric_family_name: m.metric_family_name,
            help: m.help,
            unit: m.unit,
        })
        .collect();
    Ok(out)
}

/// Builds the `WriteRequest` for a batch (and optional metadata).
pub fn to_proto(batch: &WriteBatch, metadata: &[MetricMetadata]) -> proto::WriteRequest {
    proto::WriteRequest {
        timeseries: batch
            .series
            .iter()
            .map(|s| proto::TimeSeries {
                labels: s
                    .labels
                    .iter()
                    .map(|l| proto::Label {
                        name: l.name.clone(),
                        value: l.value.clone(),
                    })
                    .collect(),
                samples: s
                    .samples
                    .iter()
                    .map(|x| proto::Sample {
                        value: x.v,
                        timestamp: x.t,
                    })
                    .collect(),
                exemplars: vec![],
                histograms: vec![],
            })
            .collect(),
        metadata: metadata
            .iter()
            .map(|m| proto::MetricMetadata {
                r#type: type_code(&m.type_),
                metric_family_name: m.metric_family_name.clone(),
                help: m.help.clone(),
                unit: m.unit.clone(),
            })
            .collect(),
    }
}

/// Snappy-compresses a protobuf message in the block format.
pub fn compress(message: &impl Message) -> Vec<u8> {
    let raw = message.encode_to_vec();
    snap::raw::Encoder::new()
        .compress_vec(&raw)
        .expect("snappy block compression of an in-memory buffer cannot fail")
}

/// Encodes a batch as a remote write 1.0 body (snappy block + protobuf).
pub fn encode(batch: &WriteBatch) -> Vec<u8> {
    compress(&to_proto(batch, &[]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use skopos_model::STALE_NAN;

    const MAX: usize = 1 << 20;

    fn batch() -> WriteBatch {
        let mut b = WriteBatch::default();
        b.series.push(SeriesSamples {
            labels: Labels::from_pairs([
                ("__name__", "http_requests_total"),
                ("job", "api"),
                ("code", "200"),
            ]),
            samples: vec![Sample::new(1000, 1.0), Sample::new(2000, 2.5)],
        });
        b.push(
            Labels::from_pairs([("__name__", "up"), ("job", "api")]),
            Sample::new(3000, STALE_NAN),
        );
        b
    }

    #[test]
    fn round_trip_keeps_labels_samples_and_stale_markers_bit_exact() {
        let b = batch();
        let d = decode(&encode(&b), MAX).unwrap();
        assert_eq!(d.batch.series.len(), 2);
        assert_eq!(d.batch.series[0], b.series[0]);
        assert!(d.batch.series[1].samples[0].same_as(&b.series[1].samples[0]));
        assert!(d.exemplars.is_empty());
    }

    #[test]
    fn metadata_round_trip() {
        let md = vec![MetricMetadata {
            metric_family_name: "http_requests".into(),
            type_: "counter".into(),
            help: "Requests.".into(),
            unit: "".into(),
        }];
        let body = compress(&to_proto(&WriteBatch::default(), &md));
        assert_eq!(decode(&body, MAX).unwrap().metadata, md);
    }

    #[test]
    fn unsorted_labels_are_sorted() {
        let req = proto::WriteRequest {
            timeseries: vec![proto::TimeSeries {
                labels: vec![
                    proto::Label {
                        name: "z".into(),
                        value: "1".into(),
                    },
                    proto::Label {
                        name: "__name__".into(),
                        value: "m".into(),
                    },
                ],
                samples: vec![proto::Sample {
                    value: 1.0,
                    timestamp: 5,
                }],
                exemplars: vec![
                    proto::Exemplar {
                        labels: vec![proto::Label {
                            name: "trace_id".into(),
                            value: "abc".into(),
                        }],
                        value: 1.5,
                        timestamp: 5,
                    },
                    proto::Exemplar {
                        labels: vec![
                            proto::Label {
                                name: "a".into(),
                                value: "1".into(),
                            },
                            proto::Label {
                                name: "a".into(),
                                value: "2".into(),
                            },
                        ],
                        value: 1.0,
                        timestamp: 6,
                    },
                ],
                histograms: vec![proto::Histogram { timestamp: 5 }],
            }],
            metadata: vec![],
        };
        let d = decode(&compress(&req), MAX).unwrap();
        assert_eq!(
            d.batch.series[0].labels,
            Labels::from_pairs([("__name__", "m"), ("z", "1")])
        );
        assert_eq!(
            d.exemplars,
            vec![SeriesExemplars {
                series: Labels::from_pairs([("__name__", "m"), ("z", "1")]),
                exemplars: vec![Exemplar {
                    labels: Labels::from_pairs([("trace_id", "abc")]),
                    value: 1.5,
                    ts_ms: 5,
                }],
            }]
        );
        assert_eq!(d.exemplars_invalid, 1);
        assert_eq!(d.histograms_ignored, 1);
    }

    fn one_series(labels: &[(&str, &str)]) -> Vec<u8> {
        compress(&proto::WriteRequest {
            timeseries: vec![proto::TimeSeries {
                labels: labels
                    .iter()
                    .map(|(n, v)| proto::Label {
                        name: n.to_string(),
                        value: v.to_string(),
                    })
                    .collect(),
                samples: vec![proto::Sample {
                    value: 1.0,
                    timestamp: 1,
                }],
                ..Default::default()
            }],
            metadata: vec![],
        })
    }

    fn err(body: &[u8], max: usize) -> String {
        decode(body, max).unwrap_err().to_string()
    }

    #[test]
    fn malformed_inputs_give_clear_errors() {
        // Not snappy at all.
        let e = err(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff], MAX);
        assert!(e.contains("snappy"), "{e}");
        // Framed snappy instead of block.
        let mut framed = Vec::new();
        {
            use std::io::Write;
            let mut w = snap::write::FrameEncoder::new(&mut framed);
            w.write_all(&to_proto(&batch(), &[]).encode_to_vec())
                .unwrap();
        }
        let e = err(&framed, MAX);
        assert!(e.contains("snappy") || e.contains("protobuf"), "{e}");
        // Valid snappy, invalid protobuf.
        let garbage = snap::raw::Encoder::new()
            .compress_vec(&[0x0a, 0xff, 0xff, 0x01])
            .unwrap();
        let e = err(&garbage, MAX);
        assert!(e.contains("protobuf prometheus.WriteRequest"), "{e}");
        // Duplicate label names.
        let e = err(
            &one_series(&[("__name__", "m"), ("a", "1"), ("a", "2")]),
            MAX,
        );
        assert_eq!(e, "series 0 has duplicate label name \"a\"");
        // Empty label name.
        let e = err(&one_series(&[("__name__", "m"), ("", "x")]), MAX);
        assert!(e.contains("empty name"), "{e}");
        // No labels.
        let e = err(&one_series(&[]), MAX);
        assert!(e.contains("no labels"), "{e}");
        // Oversize decompressed length, checked before decompressing.
        let body = encode(&batch());
        let e = decode(&body, 10).unwrap_err();
        assert!(matches!(e, DecodeError::TooLarge { limit: 10, .. }), "{e}");
        assert!(e.to_string().contains("over the limit of 10 bytes"));
        // Truncated body.
        let e = err(&body[..body.len() / 2], MAX);
        assert!(e.contains("snappy"), "{e}");
    }

    proptest::proptest! {
        #[test]
        fn encode_decode_round_trip(
            series in proptest::collection::vec(
                (
                    proptest::collection::btree_map("[a-z_]{1,6}", "\\PC{1,8}", 1..5),
                    proptest::collection::vec((proptest::prelude::any::<i64>(), proptest::prelude::any::<f64>()), 1..4),
                ),
                0..6,
            )
        ) {
            let mut b = WriteBatch::default();
            for (labels, samples) in series {
                b.series.push(SeriesSamples {
                    labels: Labels::from_pairs(labels),
                    samples: samples.into_iter().map(|(t, v)| Sample::new(t, v)).collect(),
                });
            }
            let d = decode(&encode(&b), usize::MAX).unwrap();
            proptest::prop_assert_eq!(d.batch.series.len(), b.series.len());
            for (x, y) in d.batch.series.iter().zip(&b.series) {
                proptest::prop_assert_eq!(&x.labels, &y.labels);
                // Bit-exact, except that -0.0 arrives as 0.0: proto3 omits
                // zero-valued fields, in Prometheus' Go encoder too.
                let same = |a: &Sample, b: &Sample| a.same_as(b) || (a.t == b.t && a.v == 0.0 && b.v == 0.0);
                proptest::prop_assert!(x.samples.iter().zip(&y.samples).all(|(a, b)| same(a, b)));
            }
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let _ = decode(&bytes, MAX);
        }
    }
}
