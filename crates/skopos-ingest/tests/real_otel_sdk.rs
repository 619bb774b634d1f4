//! Tests against the real OpenTelemetry Python SDK (PyPI `opentelemetry-sdk`
//! and `opentelemetry-exporter-otlp`): the SDK exports OTLP/HTTP protobuf to
//! a loopback server started here, and what it sent must decode and
//! translate to the Prometheus series the compatibility spec prescribes,
//! for cumulative and delta temporality and for explicit and exponential
//! histograms.

use std::process::Command;
use std::sync::Arc;

use parking_lot::Mutex;
use skopos_ingest::otlp::{decode_metrics_request, Encoding, Translator, TranslatorOptions};
use skopos_model::Labels;

mod common;

const SCRIPT: &str = r#"
import sys
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.metrics import Observation

reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=sys.argv[1]), export_interval_millis=3600000)
provider = MeterProvider(
    resource=Resource.create({"service.name": "pyapp", "service.namespace": "ns",
                              "service.instance.id": "i1", "deployment.environment": "test"}),
    metric_readers=[reader])
m = provider.get_meter("py.meter", "0.1")
c = m.create_counter("http.server.requests", unit="{request}")
u = m.create_up_down_counter("queue.length")
h = m.create_histogram("http.server.duration", unit="ms")
m.create_observable_gauge("cpu.utilization", callbacks=[lambda o: [Observation(0.25)]], unit="1")
c.add(3, {"http.method": "GET"}); c.add(2, {"http.method": "GET"})
u.add(5)
for v in (1, 7, 300):
    h.record(v)
provider.force_flush()
c.add(4, {"http.method": "GET"})
u.add(-2)
h.record(2)
provider.shutdown()  # exports a second time
"#;

/// Runs the SDK script with extra environment; returns the export bodies.
async fn export(env: &[(&str, &str)]) -> Vec<Vec<u8>> {
    let probe = Command::new("python3")
        .args([
            "-c",
            "import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.http",
        ])
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        panic!("python3 with opentelemetry-sdk and opentelemetry-exporter-otlp is not installed; scripts/test.sh installs them");
    }
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let addr = common::serve(bodies.clone(), "").await;
    let url = format!("http://{addr}/v1/metrics");
    let mut cmd = tokio::process::Command::new("python3");
    cmd.args(["-c", SCRIPT, &url]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().await.unwrap();
    assert!(
        out.status.success(),
        "SDK script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let b = bodies.lock().clone();
    assert_eq!(b.len(), 2, "expected two exports");
    b
}

/// Translates both exports with one translator; returns the series of the
/// second export as `labels value` lines.
fn second_export(bodies: &[Vec<u8>]) -> Vec<String> {
    let tr = Translator::new(TranslatorOptions::default());
    let mut last = Vec::new();
    for body in bodies {
        let req = decode_metrics_request(body, Encoding::Protobuf).expect("SDK output decodes");
        let t = tr.translate(&req);
        assert_eq!(t.rejected_points, 0, "{}", t.error_message);
        last = t
            .batch
            .series
            .iter()
            .map(|s| format!("{} {}", strip_common(&s.labels), s.samples[0].v))
            .collect();
    }
    last.sort();
    last
}

/// Drops the labels every series shares, to keep expectations short.
fn strip_common(l: &Labels) -> String {
    let mut b = l.builder();
    for n in ["job", "instance", "otel_scope_name", "otel_scope_version"] {
        b.delete(n);
    }
    b.build().to_string()
}

fn check_common(bodies: &[Vec<u8>]) {
    let req = decode_metrics_request(&bodies[0], Encoding::Protobuf).unwrap();
    let t = Translator::new(TranslatorOptions::default()).translate(&req);
    let any = &t.batch.series[0].labels;
    assert_eq!(any.get("job"), Some("ns/pyapp"));
    assert_eq!(any.get("instance"), Some("i1"));
    assert_eq!(any.get("otel_scope_name"), Some("py.meter"));
    assert_eq!(any.get("otel_scope_version"), Some("0.1"));
    let info = t
        .batch
        .series
        .iter()
        .find(|s| s.labels.metric_name() == Some("target_info"))
        .expect("target_info");
    assert_eq!(info.labels.get("deployment_environment"), Some("test"));
    assert_eq!(info.labels.get("telemetry_sdk_language"), Some("python"));
}

fn has(lines: &[String], want: &str) {
    assert!(
        lines.iter().any(|l| l == want),
        "missing {want:?} in {lines:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_otel_sdk_cumulative_export_translates_per_spec() {
    let bodies = export(&[]).await;
    check_common(&bodies);
    let l = second_export(&bodies);
    has(&l, r#"http_server_requests_total{http_method="GET"} 9"#);
    has(&l, "queue_length{} 3");
    has(&l, "cpu_utilization_ratio{} 0.25");
    has(&l, r#"http_server_duration_milliseconds_bucket{le="0"} 0"#);
    has(&l, r#"http_server_duration_milliseconds_bucket{le="5"} 2"#);
    has(&l, r#"http_server_duration_milliseconds_bucket{le="10"} 3"#);
    has(
        &l,
        r#"http_server_duration_milliseconds_bucket{le="500"} 4"#,
    );
    has(
        &l,
        r#"http_server_duration_milliseconds_bucket{le="+Inf"} 4"#,
    );
    has(&l, "http_server_duration_milliseconds_sum{} 310");
    has(&l, "http_server_duration_milliseconds_count{} 4");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_otel_sdk_delta_export_is_converted_to_cumulative() {
    let bodies = export(&[("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "delta")]).await;
    // Make sure the SDK really sent deltas.
    let req = decode_metrics_request(&bodies[1], Encoding::Protobuf).unwrap();
    let sum = req.resource_metrics[0].scope_metrics[0]
        .metrics
        .iter()
        .find(|m| m.name == "http.server.requests")
        .unwrap();
    let Some(opentelemetry_proto::tonic::metrics::v1::metric::Data::Sum(s)) = &sum.data else {
        panic!()
    };
    assert_eq!(s.aggregation_temporality, 1, "delta");
    let l = second_export(&bodies);
    has(&l, r#"http_server_requests_total{http_method="GET"} 9"#);
    has(&l, r#"http_server_duration_milliseconds_bucket{le="5"} 2"#);
    has(
        &l,
        r#"http_server_duration_milliseconds_bucket{le="+Inf"} 4"#,
    );
    has(&l, "http_server_duration_milliseconds_sum{} 310");
    has(&l, "http_server_duration_milliseconds_count{} 4");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_otel_sdk_exponential_histogram_becomes_classic_buckets() {
    let bodies = export(&[(
        "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION",
        "base2_exponential_bucket_histogram",
    )])
    .await;
    let l = second_export(&bodies);
    has(&l, "http_server_duration_milliseconds_count{} 4");
    has(&l, "http_server_duration_milliseconds_sum{} 310");
    has(
        &l,
        r#"http_server_duration_milliseconds_bucket{le="+Inf"} 4"#,
    );
    // Buckets are cumulative, bounded by exponential upper bounds, and every
    // recorded value is at or below the bound that first counts it.
    let mut buckets: Vec<(f64, f64)> = l
        .iter()
        .filter(|x| x.starts_with("http_server_duration_milliseconds_bucket"))
        .map(|x| {
            let le = x.split("le=\"").nth(1).unwrap().split('"').next().unwrap();
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap()
            };
            (le, x.rsplit(' ').next().unwrap().parse().unwrap())
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{buckets:?}");
    for v in [1.0, 2.0, 7.0, 300.0] {
        let first = buckets.iter().find(|(le, _)| *le >= v).unwrap();
        let below = buckets
            .iter()
            .rev()
            .find(|(le, _)| *le < v)
            .map_or(0.0, |b| b.1);
        assert!(
            first.1 > below,
            "value {v} not counted at le={}: {buckets:?}",
            first.0
        );
        // Exponential bounds are tight: within a factor of 2 of the value.
        assert!(first.0 < v * 2.0, "{v} {buckets:?}");
    }
}
