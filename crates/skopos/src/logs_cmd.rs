//! `skopos logs query`: LogQL against a running server's Loki API. Log
//! queries print one line per entry (time, stream labels, line), coloured
//! on a terminal; metric queries print the same table as `skopos query`.

use std::io::IsTerminal;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::bail;
use serde_json::Value;

/// `skopos logs inspect`: the log store's segments and WAL, read-only.
pub fn inspect(data_dir: &std::path::Path, output: &str) -> anyhow::Result<()> {
    let dir = data_dir.join("logs");
    if !dir.is_dir() {
        bail!(
            "{} holds no log store (no logs/ directory)",
            data_dir.display()
        );
    }
    let r = skopos_logs::inspect(&dir)
        .map_err(|e| anyhow::anyhow!("inspecting {}: {e}", dir.display()))?;
    match output {
        "text" => print!("{r}"),
        "json" => {
            let segments: Vec<Value> = r
                .segments
                .iter()
                .map(|s| {
                    serde_json::json!({
                        "file": s.file, "streams": s.streams, "blocks": s.blocks,
                        "entries": s.entries, "lineBytes": s.line_bytes,
                        "fileBytes": s.file_bytes, "minTime": s.min_ts,
                        "maxTime": s.max_ts, "tokens": s.tokens,
                    })
                })
                .collect();
            let v = serde_json::json!({
                "segments": segments, "streams": r.streams, "ratio": r.ratio(),
                "walFiles": r.wal_files, "walBytes": r.wal_bytes,
            });
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        other => bail!("-o: {other:?} is not one of text, json"),
    }
    Ok(())
}

pub struct LogsQueryArgs {
    pub expr: String,
    pub url: String,
    pub since: String,
    pub start: Option<String>,
    pub end: Option<String>,
    pub limit: usize,
    pub forward: bool,
    pub output: String,
    pub token: Option<String>,
}

pub fn query(a: LogsQueryArgs) -> anyhow::Result<()> {
    if a.output != "text" && a.output != "json" {
        bail!("-o: {:?} is not one of text, json", a.output);
    }
    let mut form: Vec<(&str, String)> = vec![
        ("query", a.expr.clone()),
        ("limit", a.limit.to_string()),
        (
            "direction",
            if a.forward { "forward" } else { "backward" }.into(),
        ),
    ];
    match &a.start {
        Some(s) => form.push(("start", s.clone())),
        None => form.push(("since", a.since.clone())),
    }
    if let Some(e) = &a.end {
        form.push(("end", e.clone()));
    }
    let url = format!("{}/loki/api/v1/query_range", a.url.trim_end_matches('/'));
    let body = crate::query_cmd::post_form(&url, &form, a.token.as_deref())?;
    if a.output == "json" {
        println!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(());
    }
    if body["status"] != "success" {
        bail!(
            "{}: {}",
            body["errorType"].as_str().unwrap_or("error"),
            body["error"].as_str().unwrap_or("unknown error")
        );
    }
    let data = &body["data"];
    if data["resultType"] == "streams" {
        print!(
            "{}",
            render_lines(data, a.forward, std::io::stdout().is_terminal())
        );
    } else {
        print!("{}", crate::query_cmd::render_table(data));
    }
    Ok(())
}

fn labels_text(stream: &Value) -> String {
    let pairs: Vec<String> = stream
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={:?}", v.as_str().unwrap_or("")))
        .collect();
    format!("{{{}}}", pairs.join(", "))
}

/// The entries of a `streams` result in time order (newest first unless
/// `forward`), one per line: RFC 3339 time, stream labels, the line.
pub fn render_lines(data: &Value, forward: bool, colour: bool) -> String {
    let mut rows: Vec<(i64, String, String, Option<String>)> = Vec::new();
    for s in data["result"].as_array().into_iter().flatten() {
        let labels = labels_text(&s["stream"]);
        let level = s["stream"]["level"].as_str().map(str::to_lowercase);
        for v in s["values"].as_array().into_iter().flatten() {
            let ts = v[0]
                .as_str()
                .and_then(|t| t.parse::<i64>().ok())
                .unwrap_or(0);
            let line = v[1].as_str().unwrap_or("").to_string();
            rows.push((ts, labels.clone(), line, level.clone()));
        }
    }
    if rows.is_empty() {
        return "no lines\n".into();
    }
    rows.sort_by_key(|r| r.0);
    if !forward {
        rows.reverse();
    }
    let mut out = String::new();
    for (ts, labels, line, level) in rows {
        let t = UNIX_EPOCH + Duration::from_nanos(ts.max(0) as u64);
        let time = humantime::format_rfc3339_millis(t).to_string();
        if colour {
            let line_colour = match level.as_deref() {
                Some("error" | "fatal" | "critical") => "\x1b[31m",
                Some("warn" | "warning") => "\x1b[33m",
                Some("debug" | "trace") => "\x1b[2m",
                _ => "",
            };
            let reset = if line_colour.is_empty() {
                ""
            } else {
                "\x1b[0m"
            };
            out.push_str(&format!(
                "\x1b[2m{time}\x1b[0m \x1b[36m{labels}\x1b[0m {line_colour}{line}{reset}\n"
            ));
        } else {
            out.push_str(&format!("{time} {labels} {line}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::render_lines;

    #[test]
    fn lines_are_in_time_order_with_their_labels() {
        let data = serde_json::json!({"resultType": "streams", "result": [
            {"stream": {"app": "a", "level": "error"}, "values": [["2000000000", "boom"]]},
            {"stream": {"app": "b"}, "values": [["1000000000", "first"], ["3000000000", "last"]]}
        ]});
        let text = render_lines(&data, true, false);
        assert_eq!(
            text,
            "1970-01-01T00:00:01.000Z {app=\"b\"} first\n\
             1970-01-01T00:00:02.000Z {app=\"a\", level=\"error\"} boom\n\
             1970-01-01T00:00:03.000Z {app=\"b\"} last\n"
        );
        let back = render_lines(&data, false, false);
        assert!(back.starts_with("1970-01-01T00:00:03.000Z"));
        let coloured = render_lines(&data, true, true);
        assert!(coloured.contains("\x1b[31mboom\x1b[0m"), "{coloured:?}");
        let none = serde_json::json!({"resultType": "streams", "result": []});
        assert_eq!(render_lines(&none, true, false), "no lines\n");
    }
}
