//! The query corpus of the differential test, generated combinatorially
//! from templates the way the PromQL compliance tester does: every function
//! × range × offset, every aggregation × grouping, every binary operator ×
//! matching modifier, plus subqueries, `@`, and edge cases.

/// Queries in the corpus that are errors by design; both servers must
/// refuse them (the test checks they agree, and that nothing else errors).
pub const EXPECTED_ERRORS: &[&str] = &[
    "rate(http_requests_total[5m]) / on (job) memory_usage_bytes",
    "memory_usage_bytes + on (job) group_left memory_usage_bytes",
    // Comparisons between scalars need `bool`.
    "2 != 3",
    "2 < 3",
    "2 <= 3",
    "2 == 3",
    "2 > 3",
    "2 >= 3",
    // Relabelling that makes two series identical.
    "label_join(memory_usage_bytes, \"job\", \",\", \"instance\")",
    "label_replace(memory_usage_bytes, \"job\", \"\", \"job\", \".*\")",
    // `^` binds tighter than `/`, so the matching modifier lands on a scalar.
    "memory_usage_bytes / 1e6 ^ on (job, instance) group_right rate(http_requests_total[5m])",
];

pub fn queries() -> Vec<String> {
    let mut q: Vec<String> = Vec::new();
    let ranges = ["1m", "5m", "15m"];
    let offsets = ["", " offset 10m"];

    // Selectors with every matcher, offsets, lookback, staleness, sparse data.
    for sel in [
        "http_requests_total",
        "http_requests_total{job=\"api\"}",
        "http_requests_total{job!=\"api\"}",
        "http_requests_total{code=~\"5..\"}",
        "http_requests_total{code!~\"2..|4..\",method=\"GET\"}",
        "{__name__=~\"http_.*\",instance=\"10.0.0.3:9100\"}",
        "pod_restarts",
        "batch_last_success_timestamp_seconds",
        "odd_values",
        "temperature_celsius{sensor=\"outside\"}",
        "nonexistent_metric",
    ] {
        for off in ["", " offset 5m", " offset 1h", " offset -5m"] {
            q.push(format!("{sel}{off}"));
        }
    }

    // Range-vector functions × ranges × offsets.
    let counter_fns = ["rate", "irate", "increase", "resets"];
    let gauge_fns = [
        "delta",
        "idelta",
        "deriv",
        "changes",
        "avg_over_time",
        "min_over_time",
        "max_over_time",
        "sum_over_time",
        "count_over_time",
        "stddev_over_time",
        "stdvar_over_time",
        "last_over_time",
        "present_over_time",
    ];
    for r in ranges {
        for off in offsets {
            for f in counter_fns {
                q.push(format!("{f}(http_requests_total[{r}]{off})"));
            }
            for f in gauge_fns {
                q.push(format!("{f}(temperature_celsius[{r}]{off})"));
            }
            q.push(format!(
                "quantile_over_time(0.9, memory_usage_bytes[{r}]{off})"
            ));
            q.push(format!(
                "predict_linear(temperature_celsius[{r}]{off}, 600)"
            ));
            q.push(format!(
                "holt_winters(temperature_celsius[{r}]{off}, 0.5, 0.5)"
            ));
            q.push(format!("absent_over_time(nonexistent_metric[{r}]{off})"));
            q.push(format!("absent_over_time(memory_usage_bytes[{r}]{off})"));
        }
    }
    for f in gauge_fns {
        q.push(format!("{f}(pod_restarts[10m])"));
        q.push(format!("{f}(odd_values[5m])"));
    }
    for f in ["rate", "increase", "irate"] {
        q.push(format!("{f}(node_cpu_seconds_total{{mode=\"idle\"}}[5m])"));
        q.push(format!("{f}(batch_last_success_timestamp_seconds[30m])"));
    }

    // Aggregations × grouping × inner expression.
    let aggs = [
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "topk(3, ",
        "bottomk(3, ",
        "quantile(0.5, ",
        "quantile(0.99, ",
        "count_values(\"value\", ",
    ];
    let groupings = [
        "",
        " by (job)",
        " without (instance)",
        " by (job, code)",
        " without ()",
    ];
    let inners = [
        "rate(http_requests_total[5m])",
        "memory_usage_bytes",
        "odd_values",
    ];
    for a in aggs {
        for g in groupings {
            for inner in inners {
                if a.ends_with(", ") {
                    q.push(format!(
                        "{}{g} ({}{inner})",
                        a.split('(').next().unwrap(),
                        &a[a.find('(').unwrap() + 1..]
                    ));
                } else {
                    q.push(format!("{a}{g} ({inner})"));
                }
            }
        }
    }

    // Binary operators × matching modifiers.
    let arith = ["+", "-", "*", "/", "%", "^"];
    let cmp = ["==", "!=", ">", "<", ">=", "<="];
    let lhs = "sum by (job, instance) (rate(http_requests_total[5m]))";
    let rhs = "memory_usage_bytes / 1e6";
    for op in arith.iter().chain(cmp.iter()) {
        q.push(format!("{lhs} {op} {rhs}"));
        q.push(format!("{lhs} {op} on (job, instance) {rhs}"));
        q.push(format!("{lhs} {op} ignoring (code) {rhs}"));
        q.push(format!(
            "rate(http_requests_total[5m]) {op} on (job, instance) group_left {rhs}"
        ));
        q.push(format!(
            "{rhs} {op} on (job, instance) group_right rate(http_requests_total[5m])"
        ));
        q.push(format!("temperature_celsius {op} 40"));
        q.push(format!("40 {op} temperature_celsius"));
        q.push(format!("2 {op} 3"));
        if cmp.contains(op) {
            q.push(format!("temperature_celsius {op} bool 40"));
            q.push(format!("{lhs} {op} bool {rhs}"));
            q.push(format!("2 {op} bool 3"));
        }
    }
    for op in ["and", "or", "unless"] {
        q.push(format!(
            "http_requests_total {op} http_requests_total{{code=\"200\"}}"
        ));
        q.push(format!(
            "memory_usage_bytes {op} on (instance) temperature_celsius{{sensor=\"cpu\"}}"
        ));
        q.push(format!(
            "memory_usage_bytes {op} ignoring (job) memory_usage_bytes{{job=\"api\"}}"
        ));
        q.push(format!("pod_restarts {op} pod_restarts > 2"));
    }
    // Errors both must give: duplicate series on the "one" side.
    q.push("rate(http_requests_total[5m]) / on (job) memory_usage_bytes".into());
    q.push("memory_usage_bytes + on (job) group_left memory_usage_bytes".into());
    q.push("http_requests_total + http_requests_total".into());
    q.push("-http_requests_total".into());
    q.push("1 + 2 * 3 ^ 2 ^ 0.5 % 4".into());

    // Instant-vector functions.
    for f in [
        "abs",
        "ceil",
        "floor",
        "exp",
        "ln",
        "log2",
        "log10",
        "sqrt",
        "sgn",
        "round",
        "timestamp",
        "sort",
        "sort_desc",
        "sin",
        "cos",
        "tan",
        "asin",
        "acos",
        "atan",
        "sinh",
        "cosh",
        "tanh",
        "asinh",
        "acosh",
        "atanh",
        "deg",
        "rad",
        "absent",
    ] {
        q.push(format!("{f}(temperature_celsius)"));
        q.push(format!("{f}(odd_values)"));
        q.push(format!("{f}(temperature_celsius / 100)"));
    }
    for f in [
        "day_of_month",
        "day_of_week",
        "day_of_year",
        "days_in_month",
        "hour",
        "minute",
        "month",
        "year",
    ] {
        q.push(format!("{f}()"));
        q.push(format!("{f}(batch_last_success_timestamp_seconds)"));
        q.push(format!("{f}(timestamp(memory_usage_bytes))"));
    }
    q.extend(
        [
            "round(temperature_celsius, 5)",
            "round(odd_values, 0.3)",
            "clamp(temperature_celsius, 0, 42)",
            "clamp(temperature_celsius, 42, 0)",
            "clamp_min(temperature_celsius, 41)",
            "clamp_max(temperature_celsius, 41)",
            "absent(nonexistent_metric{job=\"x\"})",
            "absent(nonexistent_metric{job=~\"x\"})",
            "vector(1)",
            "vector(time())",
            "scalar(sum(memory_usage_bytes))",
            "scalar(memory_usage_bytes)",
            "time()",
            "pi()",
            "label_replace(memory_usage_bytes, \"host\", \"$1\", \"instance\", \"(.*):.*\")",
            "label_replace(memory_usage_bytes, \"job\", \"\", \"job\", \".*\")",
            "label_replace(memory_usage_bytes, \"x\", \"$2\", \"instance\", \"(.*)\")",
            "label_join(memory_usage_bytes, \"joined\", \"-\", \"job\", \"instance\")",
            "label_join(memory_usage_bytes, \"job\", \",\", \"instance\")",
            "count(count by (instance) (node_cpu_seconds_total))",
            "sum(rate(node_cpu_seconds_total{mode!=\"idle\"}[5m])) by (instance) / sum(rate(node_cpu_seconds_total[5m])) by (instance)",
            "topk(1, memory_usage_bytes) by (job)",
            "max by (sensor) (temperature_celsius) - min by (sensor) (temperature_celsius)",
            "avg(odd_values)",
            "sum(odd_values)",
            "stddev(odd_values)",
            "count_values(\"v\", odd_values)",
        ]
        .map(String::from),
    );

    // Histograms.
    for quantile in ["0", "0.25", "0.5", "0.9", "0.99", "1", "-1", "2"] {
        q.push(format!(
            "histogram_quantile({quantile}, sum by (le, job) (rate(request_duration_seconds_bucket[5m])))"
        ));
        q.push(format!(
            "histogram_quantile({quantile}, rate(request_duration_seconds_bucket[15m]))"
        ));
    }
    q.push("histogram_quantile(0.9, sum by (le) (rate(request_duration_seconds_bucket[5m] offset 30m)))".into());
    q.push("histogram_quantile(0.5, request_duration_seconds_bucket)".into());
    q.push(
        "rate(request_duration_seconds_sum[5m]) / rate(request_duration_seconds_count[5m])".into(),
    );

    // Subqueries and @.
    for inner in [
        "rate(http_requests_total[5m])",
        "temperature_celsius",
        "sum(memory_usage_bytes)",
    ] {
        for sub in ["[30m:1m]", "[10m:]", "[1h:5m]", "[30m:1m] offset 10m"] {
            q.push(format!("max_over_time({inner}{sub})"));
            q.push(format!("avg_over_time({inner}{sub})"));
        }
    }
    q.push("rate(http_requests_total[5m:30s])".into());
    q.push("deriv(sum(memory_usage_bytes)[20m:2m])".into());
    for at in [
        "@ 1700005000",
        "@ start()",
        "@ end()",
        "@ 1700002000 offset 5m",
    ] {
        q.push(format!("memory_usage_bytes {at}"));
        q.push(format!("rate(http_requests_total[5m] {at})"));
        q.push(format!("sum(temperature_celsius {at})"));
    }

    q.sort();
    q.dedup();
    q
}
