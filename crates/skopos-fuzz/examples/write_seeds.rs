//! Writes the seed inputs of every fuzz target into `fuzz/corpus/<target>/`
//! from the repository's own test data: the raw string literals of the
//! decoders' unit tests (and their protobuf encodings), the exposition
//! cases, the PromQL/LogQL/TraceQL case files. A tool run by hand, not
//! a test:
//!
//! ```text
//! cargo run -p skopos-fuzz --example write_seeds
//! ```
//!
//! then let the fuzzer grow the corpus and `cargo fuzz cmin` it (see
//! FUZZING.md). Seeds are named `seed-<hash>`, so running this twice adds
//! nothing.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use prost::Message;
use skopos_ingest::otlp::Encoding;
use skopos_model::{Labels, Sample, SeriesSamples, WriteBatch};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The contents of every `r#"…"#` literal in a Rust source file.
fn raw_literals(src: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = src;
    while let Some(i) = rest.find("r#\"") {
        let after = &rest[i + 3..];
        let Some(j) = after.find("\"#") else { break };
        out.push(after[..j].to_string());
        rest = &after[j + 2..];
    }
    out
}

struct Seeds(BTreeSet<Vec<u8>>);

impl Seeds {
    fn new() -> Self {
        Seeds(BTreeSet::new())
    }
    fn add(&mut self, b: impl AsRef<[u8]>) {
        let b = b.as_ref();
        if b.len() <= 64 << 10 {
            self.0.insert(b.to_vec());
        }
    }
    fn write(self, target: &str) {
        let dir = repo().join("fuzz/corpus").join(target);
        std::fs::create_dir_all(&dir).expect("mkdir corpus");
        for s in &self.0 {
            // FNV-1a: stable names, so a second run adds nothing.
            let h = s.iter().fold(0xcbf29ce484222325u64, |h, &b| {
                (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
            });
            std::fs::write(dir.join(format!("seed-{h:016x}")), s).expect("write seed");
        }
        eprintln!("{target}: {} seeds", self.0.len());
    }
}

/// The queries of a PromQL test script (`eval … <query>`).
fn promql_queries(script: &str) -> Vec<String> {
    script
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let rest = l.strip_prefix("eval_fail ").or(l.strip_prefix("eval "))?;
            let rest = rest
                .strip_prefix("instant at ")
                .or(rest.strip_prefix("range from "))?;
            // `instant at 50m <q>` or `range from 0 to 10m step 1m <q>`.
            let words: Vec<&str> = rest.splitn(6, ' ').collect();
            if l.contains("range from ") {
                words.get(5).map(|s| s.to_string())
            } else {
                rest.split_once(' ').map(|(_, q)| q.to_string())
            }
        })
        .collect()
}

/// The line after each `query …` line of a LogQL or TraceQL case file.
fn case_queries(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    lines
        .windows(2)
        .filter(|w| w[0].starts_with("query"))
        .map(|w| w[1].to_string())
        .collect()
}

/// The log lines of a LogQL case file (`<time> <line>` after `stream`).
fn case_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_stream = false;
    for l in text.lines() {
        if l.starts_with("stream ") {
            in_stream = true;
            continue;
        }
        if l.is_empty() || l.starts_with("query") || l.starts_with('#') {
            in_stream = false;
            continue;
        }
        if in_stream {
            if let Some((_, line)) = l.split_once(' ') {
                let line = line
                    .strip_prefix('@')
                    .map_or(line, |m| m.split_once("} ").map_or(m, |(_, rest)| rest));
                out.push(line.to_string());
            }
        }
    }
    out
}

fn files_in(dir: &str, ext: &str) -> Vec<String> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(repo().join(dir))
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v.iter()
        .map(|p| std::fs::read_to_string(p).expect("read"))
        .collect()
}

fn main() {
    let ingest = |f: &str| raw_literals(&read(&format!("crates/skopos-ingest/src/{f}")));

    // Remote write: protobuf (the target compresses it) and snappy bodies.
    let mut s = Seeds::new();
    let mut b = WriteBatch::default();
    b.series.push(SeriesSamples {
        labels: Labels::from_pairs([("__name__", "up"), ("job", "api"), ("instance", "h:1")]),
        samples: vec![Sample::new(1000, 1.0), Sample::new(2000, f64::NAN)],
    });
    b.series.push(SeriesSamples {
        labels: Labels::from_pairs([("__name__", "temp_celsius"), ("le", "+Inf")]),
        samples: vec![Sample::new(-5, -0.5), Sample::new(i64::MAX, f64::INFINITY)],
    });
    let md = [skopos_ingest::MetricMetadata {
        metric_family_name: "up".into(),
        type_: "gauge".into(),
        help: "Up.".into(),
        unit: "".into(),
    }];
    let proto = skopos_ingest::remote_write::to_proto(&b, &md);
    s.add(proto.encode_to_vec());
    s.add(skopos_ingest::remote_write::encode(&b));
    s.add(b"");
    s.write("remote_write");

    // OTLP: every JSON literal of the tests that decodes, and its protobuf.
    for (target, src) in [
        ("otlp_metrics", ingest("otlp/tests.rs")),
        ("otlp_logs", ingest("otlp_logs.rs")),
        ("otlp_traces", ingest("otlp_traces.rs")),
    ] {
        let mut s = Seeds::new();
        for lit in src {
            let body = lit.as_bytes();
            let proto = match target {
                "otlp_metrics" => skopos_ingest::otlp::decode_metrics_request(body, Encoding::Json)
                    .ok()
                    .map(|r| r.encode_to_vec()),
                "otlp_logs" => skopos_ingest::otlp_logs::decode_logs_request(body, Encoding::Json)
                    .ok()
                    .map(|r| r.encode_to_vec()),
                _ => skopos_ingest::otlp_traces::decode_traces_request(body, Encoding::Json)
                    .ok()
                    .map(|r| r.encode_to_vec()),
            };
            if let Some(p) = proto {
                s.add(body);
                s.add(p);
            }
        }
        assert!(s.0.len() >= 2, "{target}: no seeds found");
        s.write(target);
    }

    // Loki push: the JSON literals and protobuf bodies.
    let mut s = Seeds::new();
    for lit in ingest("loki.rs") {
        s.add(&lit);
    }
    use skopos_ingest::loki::proto as lp;
    let push = lp::PushRequest {
        streams: vec![lp::Stream {
            labels: r#"{app="api", msg="a \"q\" b\\"}"#.into(),
            entries: vec![lp::Entry {
                timestamp: Some(prost_types_timestamp(1_700_000_000, 5)),
                line: "hello k=v".into(),
                structured_metadata: vec![lp::LabelPair {
                    name: "trace_id".into(),
                    value: "abc".into(),
                }],
            }],
        }],
    };
    s.add(push.encode_to_vec());
    s.write("loki_push");

    let mut s = Seeds::new();
    for lit in ingest("zipkin.rs") {
        s.add(&lit);
    }
    s.write("zipkin");

    let mut s = Seeds::new();
    for lit in ingest("ndjson.rs") {
        s.add(&lit);
    }
    s.add("{\"ts\":1700000000,\"msg\":\"x\",\"level\":\"warn\"}\n{\"time\":\"2023-11-14T22:13:20.5+01:00\",\"message\":\"y\"}\n");
    s.write("ndjson");

    // Exposition: the input of every case in testdata/exposition.txt.
    let mut s = Seeds::new();
    for case in read("crates/skopos-ingest/testdata/exposition.txt")
        .split("=== ")
        .skip(1)
    {
        let body = case.split_once('\n').map_or("", |(_, b)| b);
        let input = body.split("--- ").next().unwrap_or("");
        s.add(input);
    }
    s.write("exposition");

    // PromQL, LogQL, TraceQL: the queries of the case files.
    let mut s = Seeds::new();
    for f in files_in("crates/skopos-promql/testdata", "test") {
        for q in promql_queries(&f) {
            s.add(q);
        }
    }
    s.write("promql");

    let logql_files = files_in("crates/skopos-logql/testdata", "test");
    let mut s = Seeds::new();
    let mut p = Seeds::new();
    for f in &logql_files {
        let lines = case_lines(f);
        for (i, q) in case_queries(f).into_iter().enumerate() {
            s.add(&q);
            // `{…} | stages` and a line of the same file, for the parsers.
            if let Some(stages) = q
                .strip_prefix('{')
                .and_then(|r| r.split_once("} | "))
                .map(|(_, st)| st)
            {
                if !stages.contains('[') {
                    let line = lines
                        .get(i % lines.len().max(1))
                        .cloned()
                        .unwrap_or_default();
                    p.add(format!("{stages}\n{line}"));
                }
            }
        }
    }
    for (stages, line) in [
        ("logfmt", r#"k="\é" x=1"#),
        ("logfmt --strict --keep-empty", "a= b=\"c d\" =e"),
        (
            "json",
            r#"{"a":{"b":[1,{"c":"é"}]},"d":"\u00e9\ud83d\ude00"}"#,
        ),
        (
            r#"json x="a.b[1].c", y="d""#,
            r#"{"a":{"b":[1,{"c":"é"}]},"d":2}"#,
        ),
        (
            r#"pattern "<ip> - <_> [<ts>] \"<method> <path> <_>\" <status> <size>""#,
            r#"10.0.0.1 - - [10/Oct/2023:13:55:36 +0000] "GET /index.html HTTP/1.1" 200 2326"#,
        ),
        (
            r#"regexp "(?P<method>\\w+) (?P<path>/\\S*)""#,
            "GET /a/b?c=d",
        ),
        (
            r#"line_format "{{.a | upper}} {{ printf \"%05.1f\" .n }} {{ if eq .a \"x\" }}yes{{ else }}no{{ end }}""#,
            "a=x n=3.14159",
        ),
        (
            r#"logfmt | label_format b="{{.a}}-{{ .__line__ | len }}", c=a"#,
            "a=é",
        ),
        (
            r#"line_format "{{ regexReplaceAll \"(\\\\w)\" .__line__ \"$1$1\" }} {{ .__timestamp__ | date \"2006-01-02\" }}""#,
            "abc",
        ),
        ("unpack", r#"{"_entry":"inner line","k":"v"}"#),
        (
            r#"logfmt | duration > 1m30s or size < 20KB | line_format "{{.duration}}""#,
            "duration=2m size=10KB",
        ),
        (
            r#"decolorize | keep a, b | drop c"#,
            "\u{1b}[31ma=1 b=2 c=3\u{1b}[0m",
        ),
    ] {
        p.add(format!("{stages}\n{line}"));
    }
    s.write("logql");
    p.write("logql_parsers");

    let mut s = Seeds::new();
    for f in files_in("crates/skopos-traceql/testdata", "test") {
        for q in case_queries(&f) {
            s.add(q);
        }
    }
    s.write("traceql");

    let mut s = Seeds::new();
    for l in [
        "1h30m\n5m\n1d",
        "service.name=api http.status_code=500 \"user id\"=42\n100ms\n2s",
        "api\nGET /\nhttp.method\nGET\n1.5ms\n1h",
        "0\n1y2w3d4h5m6s7ms\n1.5h\n-5m\n1min",
        "512MiB\n1GB\n100KB\n0x10\n18446744073709551616B",
        "0102030405060708090a0b0c0d0e0f10\n0102030405060708\nzz",
        "2024-01-02T03:04:05+0\u{e9}00\n2024-01-02T03:04:05.123456789Z",
        "9999-12-31T23:59:59.999999999+14:00\n1.5\n-1e3\n1677-09-21T00:12:43.145224192Z",
        "2262-04-11T23:47:16.854775807Z\n0.001\nNaN\n1e400",
    ] {
        s.add(l);
    }
    s.write("units");

    // The storage targets: a few edit programs of each kind (op, file).
    for target in [
        "tsdb_wal",
        "tsdb_block",
        "logs_wal",
        "logs_segment",
        "traces_wal",
        "traces_segment",
    ] {
        let mut s = Seeds::new();
        s.add(b"");
        for op in 0u8..10 {
            for file in 0u8..3 {
                s.add([op, file, 7, 1, 0, 0, 3, 0xff, 0xff, 0xff]);
            }
        }
        s.write(target);
    }
}

fn prost_types_timestamp(seconds: i64, nanos: i32) -> skopos_ingest::loki::proto::Timestamp {
    skopos_ingest::loki::proto::Timestamp { seconds, nanos }
}
