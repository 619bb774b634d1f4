//! OTLP logs → log streams, the way Loki maps them by default: a fixed set
//! of resource attributes become stream labels (dots → underscores,
//! `service_name` always present), the severity becomes the `level` label,
//! and everything else — other resource attributes, scope, log attributes,
//! trace and span ids — is kept as structured metadata beside the line.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use prost::Message;
use skopos_model::{Labels, LabelsBuilder, LogBatch, LogEntry, LogStream};

use crate::otlp::{any_to_string, sanitize_attributes, Encoding};
use crate::DecodeError;

/// Resource attributes that become stream labels (Loki's defaults).
pub const STREAM_ATTRIBUTES: &[&str] = &[
    "service.name",
    "service.namespace",
    "service.instance.id",
    "deployment.environment",
    "deployment.environment.name",
    "cloud.region",
    "cloud.availability_zone",
    "k8s.cluster.name",
    "k8s.namespace.name",
    "k8s.pod.name",
    "k8s.container.name",
    "container.name",
    "k8s.replicaset.name",
    "k8s.deployment.name",
    "k8s.statefulset.name",
    "k8s.daemonset.name",
    "k8s.cronjob.name",
    "k8s.job.name",
];

/// Decodes an `ExportLogsServiceRequest`.
pub fn decode_logs_request(
    body: &[u8],
    enc: Encoding,
) -> Result<ExportLogsServiceRequest, DecodeError> {
    match enc {
        Encoding::Protobuf => {
            ExportLogsServiceRequest::decode(body).map_err(|e| DecodeError::Protobuf {
                message: "opentelemetry.proto.collector.logs.v1.ExportLogsServiceRequest",
                error: e.to_string(),
            })
        }
        Encoding::Json => serde_json::from_slice(body).map_err(|e| DecodeError::Json {
            message: "ExportLogsServiceRequest",
            error: e.to_string(),
        }),
    }
}

/// The streams of a request, and the records that could not be taken.
#[derive(Debug, Default)]
pub struct LogsTranslation {
    pub batch: LogBatch,
    pub rejected_records: i64,
    /// Why, for `partial_success` (empty when nothing was rejected).
    pub error_message: String,
}

/// The `level` label of a record: its severity text lowercased, or the
/// level its severity number falls in, or nothing.
fn level(r: &LogRecord) -> Option<String> {
    if !r.severity_text.is_empty() {
        return Some(r.severity_text.to_lowercase());
    }
    Some(
        match r.severity_number {
            1..=4 => "trace",
            5..=8 => "debug",
            9..=12 => "info",
            13..=16 => "warn",
            17..=20 => "error",
            21..=24 => "fatal",
            _ => return None,
        }
        .to_string(),
    )
}

fn hex(b: &[u8]) -> String {
    hex::encode(b)
}

/// Translates a request; `now_ns` stamps records without any timestamp.
pub fn translate_logs(req: &ExportLogsServiceRequest, now_ns: i64) -> LogsTranslation {
    let mut out = LogsTranslation::default();
    let mut streams: std::collections::BTreeMap<Labels, Vec<LogEntry>> = Default::default();
    let mut reasons: Vec<String> = Vec::new();
    for rl in &req.resource_logs {
        let attrs = rl
            .resource
            .as_ref()
            .map(|r| r.attributes.as_slice())
            .unwrap_or(&[]);
        let mut stream = LabelsBuilder::new();
        let (indexed, rest): (Vec<_>, Vec<_>) = attrs
            .iter()
            .partition(|kv| STREAM_ATTRIBUTES.contains(&kv.key.as_str()));
        for (k, v) in sanitize_attributes(indexed.into_iter()) {
            stream.set(k, v);
        }
        if stream.get("service_name").is_none() {
            stream.set("service_name", "unknown_service");
        }
        let resource_meta = sanitize_attributes(rest.into_iter());
        for sl in &rl.scope_logs {
            let scope = sl.scope.as_ref();
            for r in &sl.log_records {
                if !(r.trace_id.is_empty() || r.trace_id.len() == 16)
                    || !(r.span_id.is_empty() || r.span_id.len() == 8)
                {
                    out.rejected_records += 1;
                    if reasons.len() < 3 {
                        reasons.push(format!(
                            "a record has a trace id of {} bytes or a span id of {} bytes (want 16 and 8)",
                            r.trace_id.len(),
                            r.span_id.len()
                        ));
                    }
                    continue;
                }
                let mut labels = LabelsBuilder::new();
                for l in stream.iter() {
                    labels.set(l.name.clone(), l.value.clone());
                }
                if let Some(lv) = level(r) {
                    labels.set("level", lv);
                }
                let mut meta = LabelsBuilder::new();
                for (k, v) in &resource_meta {
                    meta.set(k.clone(), v.clone());
                }
                if let Some(s) = scope {
                    if !s.name.is_empty() {
                        meta.set("scope_name", s.name.clone());
                    }
                    if !s.version.is_empty() {
                        meta.set("scope_version", s.version.clone());
                    }
                }
                for (k, v) in sanitize_attributes(r.attributes.iter()) {
                    meta.set(k, v);
                }
                if r.trace_id.iter().any(|&b| b != 0) {
                    meta.set("trace_id", hex(&r.trace_id));
                }
                if r.span_id.iter().any(|&b| b != 0) {
                    meta.set("span_id", hex(&r.span_id));
                }
                if !r.severity_text.is_empty() {
                    meta.set("severity_text", r.severity_text.clone());
                }
                if r.severity_number != 0 {
                    meta.set("severity_number", r.severity_number.to_string());
                }
                let line = match r.body.as_ref().and_then(|b| b.value.as_ref()) {
                    Some(any_value::Value::StringValue(s)) => s.clone(),
                    _ => any_to_string(r.body.as_ref()),
                };
                let ts = [r.time_unix_nano, r.observed_time_unix_nano]
                    .into_iter()
                    .find(|&t| t != 0)
                    .map_or(now_ns, |t| i64::try_from(t).unwrap_or(i64::MAX));
                streams.entry(labels.build()).or_default().push(LogEntry {
                    ts,
                    line,
                    metadata: meta.build(),
                });
            }
        }
    }
    out.batch.streams = streams
        .into_iter()
        .map(|(labels, entries)| LogStream { labels, entries })
        .collect();
    out.error_message = reasons.join("; ");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_map_to_streams_like_loki() {
        let body = br#"{"resourceLogs":[{"resource":{"attributes":[
            {"key":"service.name","value":{"stringValue":"checkout"}},
            {"key":"k8s.pod.name","value":{"stringValue":"p-1"}},
            {"key":"host.name","value":{"stringValue":"h1"}}]},
          "scopeLogs":[{"scope":{"name":"app.logger"},"logRecords":[
            {"timeUnixNano":"1700000000000000001","severityNumber":17,
             "body":{"stringValue":"payment failed"},
             "attributes":[{"key":"order.id","value":{"intValue":"42"}}],
             "traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174"},
            {"observedTimeUnixNano":"5","severityText":"WARN",
             "body":{"kvlistValue":{"values":[{"key":"a","value":{"intValue":"1"}}]}}},
            {"timeUnixNano":"7","traceId":"abcd"}]}]},
          {"scopeLogs":[{"logRecords":[{"body":{"stringValue":"no resource"}}]}]}]}"#;
        let req = decode_logs_request(body, Encoding::Json).unwrap();
        let t = translate_logs(&req, 99);
        assert_eq!(t.rejected_records, 1);
        assert!(
            t.error_message.contains("trace id of 2 bytes"),
            "{}",
            t.error_message
        );
        let by: std::collections::BTreeMap<String, &LogStream> = t
            .batch
            .streams
            .iter()
            .map(|s| (s.labels.to_string(), s))
            .collect();
        let keys: Vec<&String> = by.keys().collect();
        assert_eq!(
            keys,
            [
                r#"{k8s_pod_name="p-1", level="error", service_name="checkout"}"#,
                r#"{k8s_pod_name="p-1", level="warn", service_name="checkout"}"#,
                r#"{service_name="unknown_service"}"#,
            ]
        );
        let e = &by[keys[0]].entries[0];
        assert_eq!(e.ts, 1_700_000_000_000_000_001);
        assert_eq!(e.line, "payment failed");
        assert_eq!(
            e.metadata.get("trace_id"),
            Some("5b8efff798038103d269b633813fc60c")
        );
        assert_eq!(e.metadata.get("span_id"), Some("eee19b7ec3c1b174"));
        assert_eq!(e.metadata.get("order_id"), Some("42"));
        assert_eq!(e.metadata.get("host_name"), Some("h1"));
        assert_eq!(e.metadata.get("scope_name"), Some("app.logger"));
        let w = &by[keys[1]].entries[0];
        assert_eq!((w.ts, w.line.as_str()), (5, r#"{"a":1}"#));
        assert_eq!(by[keys[2]].entries[0].ts, 99);
        assert!(decode_logs_request(b"{", Encoding::Json).is_err());
        assert!(decode_logs_request(b"\xff\xff\xff", Encoding::Protobuf).is_err());
    }
}
