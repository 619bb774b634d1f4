//! Targets for the ingestion decoders (`skopos-ingest`): each body is
//! decoded the way the server's handler decodes it and, when it decodes,
//! translated into the model, with round trips where an encoder exists.

use skopos_ingest::exposition::{self, Format};
use skopos_ingest::otlp::{self, Encoding, Translator, TranslatorOptions};
use skopos_ingest::{loki, ndjson as nd, otlp_logs, otlp_traces, remote_write as rw, zipkin as zk};
use skopos_model::{Labels, LogBatch, Sample, SpanBatch, WriteBatch};

use crate::{check_labels, check_message};

/// The server's bound on a decompressed remote-write body (a smaller one
/// keeps the fuzzer fast; the check is the same code).
const MAX_DECOMPRESSED: usize = 8 << 20;

/// The same sample, NaN payloads aside, and -0 equal to +0: prost, as
/// proto3 asks, leaves a `double` equal to zero off the wire, so
/// `remote_write::encode` sends -0 as 0 (FUZZING.md, finding 1).
fn same_sample(a: &Sample, b: &Sample) -> bool {
    a.t == b.t && (a.v == b.v || a.v.to_bits() == b.v.to_bits() || (a.v.is_nan() && b.v.is_nan()))
}

fn check_write_batch(b: &WriteBatch) {
    for s in &b.series {
        check_labels(&s.labels);
    }
}

fn check_log_batch(b: &LogBatch) {
    for s in &b.streams {
        check_labels(&s.labels);
        for e in &s.entries {
            check_labels(&e.metadata);
        }
    }
}

fn check_spans(b: &SpanBatch) {
    for s in &b.spans {
        assert!(
            s.end_ns >= s.start_ns,
            "a span ends before it starts: {s:?}"
        );
    }
}

/// Remote write 1.0: the input as a snappy body, and (so that the fuzzer
/// reaches the protobuf decoder without learning snappy) the input
/// compressed as the protobuf itself. A decoded batch encodes and decodes
/// back to itself.
pub fn remote_write(data: &[u8]) {
    let compressed = snap::raw::Encoder::new()
        .compress_vec(data)
        .expect("snappy compression of a buffer");
    for body in [data, &compressed[..]] {
        match rw::decode(body, MAX_DECOMPRESSED) {
            Ok(d) => {
                check_write_batch(&d.batch);
                let again = rw::decode(&rw::encode(&d.batch), usize::MAX)
                    .expect("an encoded batch decodes");
                assert_eq!(again.batch.series.len(), d.batch.series.len());
                for (a, b) in d.batch.series.iter().zip(&again.batch.series) {
                    assert_eq!(a.labels, b.labels, "labels changed in a round trip");
                    assert_eq!(a.samples.len(), b.samples.len());
                    for (x, y) in a.samples.iter().zip(&b.samples) {
                        assert!(same_sample(x, y), "sample changed: {x:?} -> {y:?}");
                    }
                }
            }
            Err(e) => check_message(&e),
        }
    }
}

/// OTLP metrics, protobuf and JSON, through a translator twice (so delta
/// to cumulative state is exercised) and once with suffixes off.
pub fn otlp_metrics(data: &[u8]) {
    for enc in [Encoding::Protobuf, Encoding::Json] {
        match otlp::decode_metrics_request(data, enc) {
            Ok(req) => {
                let t = Translator::new(TranslatorOptions::default());
                for _ in 0..2 {
                    let out = t.translate(&req);
                    check_write_batch(&out.batch);
                    assert_eq!(
                        out.rejected_points == 0,
                        out.error_message.is_empty(),
                        "rejected points without a reason, or a reason without rejects: {} {:?}",
                        out.rejected_points,
                        out.error_message
                    );
                }
                let plain = Translator::new(TranslatorOptions {
                    delta_to_cumulative: false,
                    add_unit_and_type_suffixes: false,
                    promote_resource_attributes: vec!["service.name".into(), "host".into()],
                });
                check_write_batch(&plain.translate(&req).batch);
            }
            Err(e) => check_message(&e),
        }
    }
}

/// OTLP logs, protobuf and JSON, translated into streams.
pub fn otlp_logs(data: &[u8]) {
    for enc in [Encoding::Protobuf, Encoding::Json] {
        match otlp_logs::decode_logs_request(data, enc) {
            Ok(req) => {
                let out = otlp_logs::translate_logs(&req, 1_700_000_000_000_000_000);
                check_log_batch(&out.batch);
            }
            Err(e) => check_message(&e),
        }
    }
}

/// OTLP traces, protobuf and JSON, translated into spans.
pub fn otlp_traces(data: &[u8]) {
    for enc in [Encoding::Protobuf, Encoding::Json] {
        match otlp_traces::decode_traces_request(data, enc) {
            Ok(req) => {
                let out = otlp_traces::translate_traces(req);
                check_spans(&out.batch);
                assert_eq!(out.rejected_spans == 0, out.error_message.is_empty());
            }
            Err(e) => check_message(&e),
        }
    }
}

/// Loki push, JSON and protobuf (after snappy, as the handler hands it).
pub fn loki_push(data: &[u8]) {
    match loki::decode_json(data) {
        Ok(b) => check_log_batch(&b),
        Err(e) => check_message(&e),
    }
    match loki::decode_proto(data) {
        Ok(b) => check_log_batch(&b),
        Err(e) => check_message(&e),
    }
    if let Ok(s) = std::str::from_utf8(data) {
        match loki::parse_label_set(s) {
            Ok(l) => check_labels(&l),
            Err(e) => check_message(&e),
        }
    }
}

/// Zipkin v2 JSON span lists.
pub fn zipkin(data: &[u8]) {
    match zk::decode_zipkin_v2(data) {
        Ok(out) => {
            check_spans(&out.batch);
            assert_eq!(out.rejected_spans == 0, out.error_message.is_empty());
        }
        Err(e) => check_message(&e),
    }
}

/// The text exposition format 0.0.4 and OpenMetrics 1.0: what parses,
/// written back as text 0.0.4, parses to the same samples.
pub fn exposition(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for format in [Format::PrometheusText, Format::OpenMetrics] {
        match exposition::parse(text, format, 1_700_000_000_000) {
            Ok(p) => {
                for (l, _) in &p.series {
                    check_labels(l);
                }
                let written = exposition::encode_text(&p.series);
                let again = exposition::parse(&written, Format::PrometheusText, 0)
                    .unwrap_or_else(|e| panic!("written text {written:?} does not parse: {e}"));
                assert_eq!(
                    again.series.len(),
                    p.series.len(),
                    "round trip through {written:?}"
                );
                for ((l1, s1), (l2, s2)) in p.series.iter().zip(&again.series) {
                    assert_eq!(l1, l2, "labels changed through {written:?}");
                    assert!(same_sample(s1, s2), "{s1:?} -> {s2:?} through {written:?}");
                }
            }
            Err(e) => check_message(&e),
        }
    }
}

/// NDJSON log lines pushed with stream labels.
pub fn ndjson(data: &[u8]) {
    let labels = Labels::from_pairs([("app", "fuzz"), ("env", "test")]);
    match nd::decode(data, &labels, 1_700_000_000_000_000_000) {
        Ok(b) => check_log_batch(&b),
        Err(e) => check_message(&e),
    }
}
