use opentelemetry_proto::tonic::common::v1::{ArrayValue, InstrumentationScope, KeyValueList};
use opentelemetry_proto::tonic::metrics::v1::{
    exponential_histogram_data_point::Buckets, number_data_point,
    summary_data_point::ValueAtQuantile, ExponentialHistogram, Gauge, Histogram, ResourceMetrics,
    ScopeMetrics, Sum, Summary,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use skopos_model::is_stale_nan;

use super::*;

const T0: u64 = 1_700_000_000_000_000_000;
const T0_MS: i64 = 1_700_000_000_000;

fn kv(k: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

fn s(k: &str, v: &str) -> KeyValue {
    kv(k, any_value::Value::StringValue(v.into()))
}

fn request(resource: Vec<KeyValue>, metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: resource,
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "my.lib".into(),
                    version: "1.2.3".into(),
                    ..Default::default()
                }),
                metrics,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

fn svc() -> Vec<KeyValue> {
    vec![
        s("service.name", "api"),
        s("service.namespace", "shop"),
        s("service.instance.id", "i-1"),
    ]
}

fn metric(name: &str, unit: &str, data: metric::Data) -> Metric {
    Metric {
        name: name.into(),
        unit: unit.into(),
        data: Some(data),
        ..Default::default()
    }
}

fn num(t: u64, v: f64, attrs: Vec<KeyValue>) -> NumberDataPoint {
    NumberDataPoint {
        attributes: attrs,
        time_unix_nano: t,
        value: Some(number_data_point::Value::AsDouble(v)),
        ..Default::default()
    }
}

fn sum(
    points: Vec<NumberDataPoint>,
    temporality: AggregationTemporality,
    monotonic: bool,
) -> metric::Data {
    metric::Data::Sum(Sum {
        data_points: points,
        aggregation_temporality: temporality as i32,
        is_monotonic: monotonic,
    })
}

/// The batch as sorted `series value@t` lines, for compact assertions.
fn lines(t: &Translation) -> Vec<String> {
    let mut out: Vec<String> = t
        .batch
        .series
        .iter()
        .flat_map(|s| {
            s.samples.iter().map(move |x| {
                let v = if is_stale_nan(x.v) {
                    "STALE".to_string()
                } else {
                    crate::format_float(x.v)
                };
                format!("{} {v}@{}", s.labels, x.t - T0_MS)
            })
        })
        .collect();
    out.sort();
    out
}

fn translate(req: &ExportMetricsServiceRequest) -> Translation {
    Translator::new(TranslatorOptions::default()).translate(req)
}

#[test]
fn gauge_with_resource_scope_and_typed_attributes() {
    let mut res = svc();
    res.push(s("host.name", "h1"));
    let attrs = vec![
        s("http.method", "GET"),
        kv("ok", any_value::Value::BoolValue(true)),
        kv("n", any_value::Value::IntValue(-3)),
        kv("ratio", any_value::Value::DoubleValue(0.5)),
        kv("raw", any_value::Value::BytesValue(b"hi!?".to_vec())),
        kv(
            "list",
            any_value::Value::ArrayValue(ArrayValue {
                values: vec![
                    AnyValue {
                        value: Some(any_value::Value::StringValue("a".into())),
                    },
                    AnyValue {
                        value: Some(any_value::Value::IntValue(1)),
                    },
                ],
            }),
        ),
        kv(
            "map",
            any_value::Value::KvlistValue(KeyValueList {
                values: vec![s("k", "v")],
            }),
        ),
    ];
    let req = request(
        res,
        vec![metric(
            "process.memory.usage",
            "By",
            metric::Data::Gauge(Gauge {
                data_points: vec![num(T0 + 5_000_000, 42.0, attrs)],
            }),
        )],
    );
    let t = translate(&req);
    assert_eq!(t.rejected_points, 0);
    assert_eq!(t.error_message, "");
    assert_eq!(
        lines(&t),
        vec![
            r#"process_memory_usage_bytes{http_method="GET", instance="i-1", job="shop/api", list="[\"a\",1]", map="{\"k\":\"v\"}", n="-3", ok="true", otel_scope_name="my.lib", otel_scope_version="1.2.3", ratio="0.5", raw="aGkhPw=="} 42@5"#,
            r#"target_info{host_name="h1", instance="i-1", job="shop/api"} 1@5"#,
        ]
    );
}

#[test]
fn no_target_info_without_extra_resource_attributes_and_job_without_namespace() {
    let req = request(
        vec![s("service.name", "api")],
        vec![metric(
            "g",
            "",
            metric::Data::Gauge(Gauge {
                data_points: vec![num(T0, 1.0, vec![])],
            }),
        )],
    );
    assert_eq!(
        lines(&translate(&req)),
        vec![r#"g{job="api", otel_scope_name="my.lib", otel_scope_version="1.2.3"} 1@0"#]
    );
}

#[test]
fn promoted_resource_attributes_become_labels() {
    let mut res = svc();
    res.push(s("deployment.environment", "prod"));
    let req = request(
        res,
        vec![metric(
            "g",
            "",
            metric::Data::Gauge(Gauge {
                data_points: vec![num(T0, 1.0, vec![])],
            }),
        )],
    );
    let tr = Translator::new(TranslatorOptions {
        promote_resource_attributes: vec!["deployment.environment".into()],
        ..Default::default()
    });
    let l = lines(&tr.translate(&req));
    assert!(
        l[0].starts_with(r#"g{deployment_environment="prod", instance="i-1""#),
        "{l:?}"
    );
}

#[test]
fn metric_naming_rules() {
    use Kind::*;
    let cases = [
        (
            "http.server.duration",
            "s",
            Other,
            "http_server_duration_seconds",
        ),
        (
            "http.server.requests",
            "{requests}",
            Counter,
            "http_server_requests_total",
        ),
        ("requests.total", "", Counter, "requests_total"),
        (
            "system.cpu.utilization",
            "1",
            Gauge,
            "system_cpu_utilization_ratio",
        ),
        (
            "system.cpu.utilization",
            "1",
            NonMonotonicSum,
            "system_cpu_utilization",
        ),
        ("speed", "m/s", Gauge, "speed_meters_per_second"),
        ("latency_seconds", "s", Other, "latency_seconds"),
        ("io", "By", Counter, "io_bytes_total"),
        ("io_bytes_total", "By", Counter, "io_bytes_total"),
        ("packets", "1/s", Gauge, "packets_per_second"),
        ("temp", "Cel", Gauge, "temp_celsius"),
        ("load", "%", Gauge, "load_percent"),
        ("weird-name!!x", "ms", Gauge, "weird_name_x_milliseconds"),
        ("2xx.count", "", Counter, "_2xx_count_total"),
        ("foo__bar", "", Gauge, "foo_bar"),
        ("custom", "widgets", Gauge, "custom_widgets"),
        ("rate", "{req}/s", Gauge, "rate_per_second"),
    ];
    for (name, unit, kind, want) in cases {
        assert_eq!(
            normalize_name_with_suffixes(name, unit, kind),
            want,
            "{name} [{unit}] {kind:?}"
        );
    }
    assert_eq!(sanitize_metric_name("a.b--c"), "a_b_c");
    assert_eq!(sanitize_metric_name("1a"), "_1a");
}

#[test]
fn suffixes_can_be_disabled() {
    let req = request(
        vec![],
        vec![metric(
            "http.requests",
            "s",
            sum(
                vec![num(T0, 1.0, vec![])],
                AggregationTemporality::Cumulative,
                true,
            ),
        )],
    );
    let tr = Translator::new(TranslatorOptions {
        add_unit_and_type_suffixes: false,
        ..Default::default()
    });
    assert_eq!(
        lines(&tr.translate(&req)),
        vec![r#"http_requests{otel_scope_name="my.lib", otel_scope_version="1.2.3"} 1@0"#]
    );
}

#[test]
fn label_name_sanitisation_and_collisions() {
    assert_eq!(sanitize_label_name("http.method"), "http_method");
    assert_eq!(sanitize_label_name("0abc"), "key_0abc");
    assert_eq!(sanitize_label_name("_x"), "key_x");
    assert_eq!(sanitize_label_name("__reserved"), "__reserved");
    assert_eq!(sanitize_label_name("ünï"), "key_n_");
    let req = request(
        vec![],
        vec![metric(
            "g",
            "",
            metric::Data::Gauge(Gauge {
                data_points: vec![num(T0, 1.0, vec![s("b.c", "2"), s("b_c", "1")])],
            }),
        )],
    );
    let l = lines(&translate(&req));
    assert!(l[0].contains(r#"b_c="2;1""#), "{l:?}");
}

#[test]
fn cumulative_monotonic_sum_is_a_counter_and_non_monotonic_a_gauge() {
    let req = request(
        svc(),
        vec![
            metric(
                "calls",
                "",
                sum(
                    vec![num(T0, 7.0, vec![])],
                    AggregationTemporality::Cumulative,
                    true,
                ),
            ),
            metric(
                "queue.size",
                "",
                sum(
                    vec![num(T0, -2.0, vec![])],
                    AggregationTemporality::Cumulative,
                    false,
                ),
            ),
        ],
    );
    let l = lines(&translate(&req));
    assert!(
        l[0].starts_with("calls_total{") && l[0].ends_with(" 7@0"),
        "{l:?}"
    );
    assert!(
        l[1].starts_with("queue_size{") && l[1].ends_with(" -2@0"),
        "{l:?}"
    );
}

#[test]
fn int_values_are_converted() {
    let mut p = num(T0, 0.0, vec![]);
    p.value = Some(number_data_point::Value::AsInt(5));
    let req = request(
        vec![],
        vec![metric(
            "g",
            "",
            metric::Data::Gauge(Gauge {
                data_points: vec![p],
            }),
        )],
    );
    assert!(lines(&translate(&req))[0].ends_with(" 5@0"));
}

#[test]
fn delta_sums_are_accumulated_per_series() {
    let tr = Translator::new(TranslatorOptions::default());
    let req = |t: u64, v: f64, who: &str| {
        request(
            svc(),
            vec![metric(
                "c",
                "",
                sum(
                    vec![num(t, v, vec![s("who", who)])],
                    AggregationTemporality::Delta,
                    true,
                ),
            )],
        )
    };
    let v = |t: &Translation| t.batch.series[0].samples[0].v;
    assert_eq!(v(&tr.translate(&req(T0, 2.0, "a"))), 2.0);
    assert_eq!(v(&tr.translate(&req(T0 + 1_000_000_000, 3.0, "a"))), 5.0);
    assert_eq!(v(&tr.translate(&req(T0 + 1_000_000_000, 1.0, "b"))), 1.0);
    // A point not newer than the last one is rejected, not double counted.
    let late = tr.translate(&req(T0 + 500_000_000, 10.0, "a"));
    assert_eq!(late.rejected_points, 1);
    assert!(
        late.error_message.contains("not newer"),
        "{}",
        late.error_message
    );
    assert_eq!(v(&tr.translate(&req(T0 + 2_000_000_000, 1.0, "a"))), 6.0);
}

#[test]
fn delta_is_rejected_when_conversion_is_disabled_and_unspecified_temporality_always() {
    let tr = Translator::new(TranslatorOptions {
        delta_to_cumulative: false,
        ..Default::default()
    });
    let req = request(
        vec![],
        vec![
            metric(
                "c",
                "",
                sum(
                    vec![num(T0, 1.0, vec![]), num(T0, 2.0, vec![])],
                    AggregationTemporality::Delta,
                    true,
                ),
            ),
            metric(
                "u",
                "",
                sum(
                    vec![num(T0, 1.0, vec![])],
                    AggregationTemporality::Unspecified,
                    true,
                ),
            ),
            Metric {
                name: "empty".into(),
                ..Default::default()
            },
            metric(
                "g",
                "",
                metric::Data::Gauge(Gauge {
                    data_points: vec![NumberDataPoint {
                        time_unix_nano: T0,
                        ..Default::default()
                    }],
                }),
            ),
        ],
    );
    let t = tr.translate(&req);
    assert!(t.batch.series.is_empty());
    assert_eq!(t.rejected_points, 5);
    let m = &t.error_message;
    assert!(m.starts_with("5 data points rejected: "), "{m}");
    assert!(m.contains("sum \"c\" has delta temporality and delta-to-cumulative conversion is disabled (2 points)"), "{m}");
    assert!(
        m.contains("sum \"u\" has unspecified aggregation temporality"),
        "{m}"
    );
    assert!(m.contains("metric \"empty\" has no data"), "{m}");
    assert!(m.contains("a data point of \"g\" has no value"), "{m}");
}

fn hist_point(t: u64, bounds: Vec<f64>, counts: Vec<u64>, sum: f64) -> HistogramDataPoint {
    HistogramDataPoint {
        time_unix_nano: t,
        count: counts.iter().sum(),
        sum: Some(sum),
        bucket_counts: counts,
        explicit_bounds: bounds,
        ..Default::default()
    }
}

#[test]
fn explicit_histogram_becomes_cumulative_buckets() {
    let req = request(
        vec![],
        vec![metric(
            "http.server.duration",
            "ms",
            metric::Data::Histogram(Histogram {
                data_points: vec![hist_point(T0, vec![5.0, 10.0], vec![1, 2, 3], 42.5)],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            }),
        )],
    );
    let sc = r#"otel_scope_name="my.lib", otel_scope_version="1.2.3""#;
    assert_eq!(
        lines(&translate(&req)),
        vec![
            format!(r#"http_server_duration_milliseconds_bucket{{le="+Inf", {sc}}} 6@0"#),
            format!(r#"http_server_duration_milliseconds_bucket{{le="10", {sc}}} 3@0"#),
            format!(r#"http_server_duration_milliseconds_bucket{{le="5", {sc}}} 1@0"#),
            format!(r#"http_server_duration_milliseconds_count{{{sc}}} 6@0"#),
            format!(r#"http_server_duration_milliseconds_sum{{{sc}}} 42.5@0"#),
        ]
    );
}

#[test]
fn histogram_without_buckets_and_malformed_histograms() {
    let mut p = hist_point(T0, vec![], vec![], 3.0);
    p.count = 4;
    let bad = hist_point(T0, vec![1.0, 2.0], vec![1, 1], 3.0);
    let req = request(
        vec![],
        vec![metric(
            "h",
            "",
            metric::Data::Histogram(Histogram {
                data_points: vec![p, bad],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            }),
        )],
    );
    let t = translate(&req);
    let l = lines(&t);
    assert_eq!(l.len(), 3, "{l:?}");
    assert!(l[0].starts_with(r#"h_bucket{le="+Inf""#) && l[0].ends_with(" 4@0"));
    assert_eq!(t.rejected_points, 1);
    assert!(
        t.error_message
            .contains("2 bucket counts for 2 explicit bounds"),
        "{}",
        t.error_message
    );
}

#[test]
fn delta_histograms_are_accumulated() {
    let tr = Translator::new(TranslatorOptions::default());
    let req = |t: u64, counts: Vec<u64>, sum: f64| {
        request(
            vec![],
            vec![metric(
                "h",
                "",
                metric::Data::Histogram(Histogram {
                    data_points: vec![hist_point(t, vec![1.0], counts, sum)],
                    aggregation_temporality: AggregationTemporality::Delta as i32,
                }),
            )],
        )
    };
    tr.translate(&req(T0, vec![1, 1], 2.0));
    let t = tr.translate(&req(T0 + 1_000_000_000, vec![2, 0], 1.0));
    let l = lines(&t);
    assert!(
        l[0].starts_with(r#"h_bucket{le="+Inf""#) && l[0].ends_with(" 4@1000"),
        "{l:?}"
    );
    assert!(
        l[1].starts_with(r#"h_bucket{le="1""#) && l[1].ends_with(" 3@1000"),
        "{l:?}"
    );
    assert!(
        l[2].starts_with("h_count") && l[2].ends_with(" 4@1000"),
        "{l:?}"
    );
    assert!(
        l[3].starts_with("h_sum") && l[3].ends_with(" 3@1000"),
        "{l:?}"
    );
}

#[test]
fn exponential_histogram_becomes_classic_buckets() {
    let p = ExponentialHistogramDataPoint {
        time_unix_nano: T0,
        count: 6,
        sum: Some(7.5),
        scale: 0,
        zero_count: 1,
        zero_threshold: 0.0,
        // base 2: index 0 is (1,2], index 1 is (2,4].
        positive: Some(Buckets {
            offset: 0,
            bucket_counts: vec![1, 2],
        }),
        // index 0 is [-2,-1), upper bound -1; index 1 is [-4,-2), upper -2.
        negative: Some(Buckets {
            offset: 0,
            bucket_counts: vec![1, 1],
        }),
        ..Default::default()
    };
    let req = request(
        vec![],
        vec![metric(
            "e",
            "",
            metric::Data::ExponentialHistogram(ExponentialHistogram {
                data_points: vec![p],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            }),
        )],
    );
    let got: Vec<String> = lines(&translate(&req))
        .into_iter()
        .map(|l| {
            l.replace(
                r#", otel_scope_name="my.lib", otel_scope_version="1.2.3""#,
                "",
            )
            .replace(
                r#"{otel_scope_name="my.lib", otel_scope_version="1.2.3"}"#,
                "",
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            r#"e_bucket{le="+Inf"} 6@0"#,
            r#"e_bucket{le="-1"} 2@0"#,
            r#"e_bucket{le="-2"} 1@0"#,
            r#"e_bucket{le="0"} 3@0"#,
            r#"e_bucket{le="2"} 4@0"#,
            r#"e_bucket{le="4"} 6@0"#,
            "e_count 6@0",
            "e_sum 7.5@0",
        ]
    );
    assert_eq!(exp_upper(0, 1), std::f64::consts::SQRT_2);
    assert_eq!(exp_upper(1, -1), 16.0);
}

#[test]
fn summary_becomes_quantiles_sum_and_count() {
    let p = SummaryDataPoint {
        time_unix_nano: T0,
        count: 10,
        sum: 5.5,
        quantile_values: vec![
            ValueAtQuantile {
                quantile: 0.5,
                value: 0.4,
            },
            ValueAtQuantile {
                quantile: 0.99,
                value: 1.2,
            },
        ],
        ..Default::default()
    };
    let req = request(
        vec![],
        vec![metric(
            "rpc.latency",
            "s",
            metric::Data::Summary(Summary {
                data_points: vec![p],
            }),
        )],
    );
    let l = lines(&translate(&req));
    assert_eq!(l.len(), 4);
    assert!(
        l[0].starts_with("rpc_latency_seconds_count") && l[0].ends_with(" 10@0"),
        "{l:?}"
    );
    assert!(
        l[1].starts_with("rpc_latency_seconds_sum") && l[1].ends_with(" 5.5@0"),
        "{l:?}"
    );
    assert!(l[2].starts_with(r#"rpc_latency_seconds{otel_scope_name="my.lib", otel_scope_version="1.2.3", quantile="0.5"} 0.4@0"#), "{l:?}");
    assert!(
        l[3].contains(r#"quantile="0.99""#) && l[3].ends_with(" 1.2@0"),
        "{l:?}"
    );
}

#[test]
fn no_recorded_value_flag_gives_stale_markers() {
    let mut p = num(T0, 0.0, vec![]);
    p.flags = 1;
    p.value = None;
    let mut h = hist_point(T0, vec![1.0], vec![0, 0], 0.0);
    h.flags = 1;
    let req = request(
        vec![],
        vec![
            metric(
                "g",
                "",
                metric::Data::Gauge(Gauge {
                    data_points: vec![p],
                }),
            ),
            metric(
                "h",
                "",
                metric::Data::Histogram(Histogram {
                    data_points: vec![h],
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                }),
            ),
        ],
    );
    let t = translate(&req);
    assert_eq!(t.rejected_points, 0);
    assert_eq!(t.batch.series.len(), 5);
    assert!(t.batch.series.iter().all(|s| is_stale_nan(s.samples[0].v)));
}

/// Shaped exactly like the example in the OTLP specification (JSON
/// encoding): string int64s, lowerCamelCase, integer enums, hex ids.
const SPEC_JSON: &str = r#"{
  "resourceMetrics": [
    {
      "resource": {
        "attributes": [
          { "key": "service.name", "value": { "stringValue": "my.service" } },
          { "key": "host.id", "value": { "intValue": "42" } }
        ]
      },
      "scopeMetrics": [
        {
          "scope": {
            "name": "my.library",
            "version": "1.0.0",
            "attributes": [ { "key": "my.scope.attribute", "value": { "stringValue": "some scope attribute" } } ]
          },
          "metrics": [
            {
              "name": "my.counter",
              "unit": "1",
              "description": "I am a Counter",
              "sum": {
                "aggregationTemporality": 2,
                "isMonotonic": true,
                "dataPoints": [
                  {
                    "asDouble": 5,
                    "startTimeUnixNano": "1544712660300000000",
                    "timeUnixNano": "1544712660300000000",
                    "attributes": [ { "key": "my.counter.attr", "value": { "stringValue": "some value" } } ],
                    "exemplars": [
                      {
                        "timeUnixNano": "1544712660300000000",
                        "asInt": "3",
                        "traceId": "5b8efff798038103d269b633813fc60c",
                        "spanId": "eee19b7ec3c1b174"
                      }
                    ]
                  }
                ]
              }
            },
            {
              "name": "my.gauge",
              "unit": "1",
              "description": "I am a Gauge",
              "gauge": { "dataPoints": [ { "asInt": "10", "timeUnixNano": "1544712660300000000" } ] }
            },
            {
              "name": "my.histogram",
              "unit": "1",
              "description": "I am a Histogram",
              "histogram": {
                "aggregationTemporality": 1,
                "dataPoints": [
                  {
                    "startTimeUnixNano": "1544712660300000000",
                    "timeUnixNano": "1544712660300000000",
                    "count": "2",
                    "sum": 2,
                    "bucketCounts": ["1", "1"],
                    "explicitBounds": [1],
                    "min": 0,
                    "max": 2
                  }
                ]
              }
            },
            {
              "name": "my.exponential.histogram",
              "unit": "1",
              "exponentialHistogram": {
                "aggregationTemporality": 1,
                "dataPoints": [
                  {
                    "startTimeUnixNano": "1544712660300000000",
                    "timeUnixNano": "1544712660300000000",
                    "count": "3",
                    "sum": 10,
                    "scale": 0,
                    "zeroCount": "1",
                    "positive": { "offset": 1, "bucketCounts": ["0", "2"] },
                    "min": 0,
                    "max": 5,
                    "zeroThreshold": 0
                  }
                ]
              }
            }
          ]
        }
      ]
    }
  ]
}"#;

#[test]
fn otlp_json_spec_example_decodes_and_translates() {
    let req = decode_metrics_request(SPEC_JSON.as_bytes(), Encoding::Json).unwrap();
    let m = &req.resource_metrics[0].scope_metrics[0].metrics;
    assert_eq!(m.len(), 4);
    let Some(metric::Data::Sum(sum)) = &m[0].data else {
        panic!("sum expected")
    };
    assert_eq!(sum.aggregation_temporality, 2);
    assert_eq!(sum.data_points[0].time_unix_nano, 1_544_712_660_300_000_000);
    assert_eq!(sum.data_points[0].exemplars[0].trace_id.len(), 16);
    let Some(metric::Data::Gauge(g)) = &m[1].data else {
        panic!("gauge expected")
    };
    assert_eq!(
        g.data_points[0].value,
        Some(number_data_point::Value::AsInt(10))
    );
    let t = translate(&req);
    assert_eq!(t.rejected_points, 0, "{}", t.error_message);
    let l: Vec<String> = lines(&t)
        .iter()
        .map(|l| l.replace(&format!("@{}", 1_544_712_660_300 - T0_MS), ""))
        .collect();
    let has = |prefix: &str, suffix: &str| {
        l.iter()
            .any(|x| x.starts_with(prefix) && x.ends_with(suffix))
    };
    assert!(
        has(
            r#"my_counter_total{job="my.service", my_counter_attr="some value""#,
            " 5"
        ),
        "{l:?}"
    );
    // Scope name, version and attributes become otel_scope_* labels.
    let scoped = r#"my_counter_total{job="my.service", my_counter_attr="some value", otel_scope_my_scope_attribute="some scope attribute", otel_scope_name="my.library", otel_scope_version="1.0.0"} 5"#;
    assert!(l.iter().any(|x| x == scoped), "{l:?}");
    assert!(has(r#"my_gauge_ratio{job="my.service""#, " 10"), "{l:?}");
    assert!(
        has(r#"my_histogram_bucket{job="my.service", le="1""#, " 1"),
        "{l:?}"
    );
    assert!(
        has(
            r#"my_exponential_histogram_bucket{job="my.service", le="8""#,
            " 3"
        ),
        "{l:?}"
    );
    assert!(
        has(r#"target_info{host_id="42", job="my.service"}"#, " 1"),
        "{l:?}"
    );
    // Delta histogram with delta state: count is cumulative over one point.
    assert!(has(r#"my_histogram_count{job="my.service""#, " 2"), "{l:?}");
    let md: Vec<(&str, &str, &str)> = t
        .metadata
        .iter()
        .map(|m| {
            (
                m.metric_family_name.as_str(),
                m.type_.as_str(),
                m.help.as_str(),
            )
        })
        .collect();
    assert_eq!(
        md,
        vec![
            ("my_counter_total", "counter", "I am a Counter"),
            ("my_gauge_ratio", "gauge", "I am a Gauge"),
            ("my_histogram", "histogram", "I am a Histogram"),
            ("my_exponential_histogram", "histogram", ""),
        ]
    );
}

#[test]
fn translator_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Translator>();
}

#[test]
fn protobuf_round_trip_and_decode_errors() {
    let req = request(
        svc(),
        vec![metric(
            "g",
            "",
            metric::Data::Gauge(Gauge {
                data_points: vec![num(T0, 1.0, vec![])],
            }),
        )],
    );
    let back = decode_metrics_request(&req.encode_to_vec(), Encoding::Protobuf).unwrap();
    assert_eq!(back, req);
    let e = decode_metrics_request(&[0x0a, 0xff, 0xff, 0xff], Encoding::Protobuf).unwrap_err();
    assert!(e.to_string().contains("ExportMetricsServiceRequest"), "{e}");
    let e = decode_metrics_request(b"{\"resourceMetrics\": [", Encoding::Json).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("body is not valid OTLP/JSON ExportMetricsServiceRequest"),
        "{e}"
    );
    assert!(e.to_string().contains("line 1"), "{e}");
}

proptest::proptest! {
    #[test]
    fn arbitrary_protobuf_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
        if let Ok(req) = decode_metrics_request(&bytes, Encoding::Protobuf) {
            let _ = translate(&req);
        }
    }
}

#[test]
fn base64_matches_rfc4648() {
    assert_eq!(base64(b""), "");
    assert_eq!(base64(b"f"), "Zg==");
    assert_eq!(base64(b"fo"), "Zm8=");
    assert_eq!(base64(b"foo"), "Zm9v");
    assert_eq!(base64(b"foobar"), "Zm9vYmFy");
}
