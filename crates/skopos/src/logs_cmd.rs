//! `skopos logs query|tail|delete|inspect`: LogQL against a running
//! server's Loki API (query, live tail over its WebSocket, delete), and the
//! store on disk (inspect). Log lines print one per entry (time, stream
//! labels, line), coloured on a terminal; metric queries print the same
//! table as `skopos query`.

use std::io::IsTerminal;
use std::time::UNIX_EPOCH;

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

pub struct LogsTailArgs {
    pub expr: String,
    pub url: String,
    pub since: String,
    pub limit: usize,
    pub delay_for: u64,
    pub output: String,
    pub token: Option<String>,
}

/// The WebSocket URL of the server's tail endpoint for `a`.
fn tail_url(a: &LogsTailArgs) -> anyhow::Result<reqwest::Url> {
    let since =
        skopos_units::parse_duration(&a.since).map_err(|e| anyhow::anyhow!("--since: {e}"))?;
    let start = std::time::SystemTime::now()
        .checked_sub(since)
        .unwrap_or(UNIX_EPOCH)
        .duration_since(UNIX_EPOCH)?
        .as_nanos();
    let base = a.url.trim_end_matches('/');
    let mut url = reqwest::Url::parse(&format!("{base}/loki/api/v1/tail"))
        .map_err(|e| anyhow::anyhow!("--url {:?}: {e}", a.url))?;
    let scheme = match url.scheme() {
        "http" => "ws",
        "https" => "wss",
        other => bail!("--url: scheme {other:?} is not http or https"),
    };
    url.set_scheme(scheme)
        .map_err(|()| anyhow::anyhow!("--url {:?}: cannot use {scheme}", a.url))?;
    url.query_pairs_mut()
        .append_pair("query", &a.expr)
        .append_pair("start", &start.to_string())
        .append_pair("limit", &a.limit.to_string())
        .append_pair("delay_for", &a.delay_for.to_string());
    Ok(url)
}

/// `skopos logs tail`: the newest lines, then new ones as they arrive,
/// until interrupted or the server closes the socket.
pub fn tail(a: LogsTailArgs) -> anyhow::Result<()> {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;

    if a.output != "text" && a.output != "json" {
        bail!("-o: {:?} is not one of text, json", a.output);
    }
    let url = tail_url(&a)?;
    let mut req = url.as_str().into_client_request()?;
    if let Some(t) = &a.token {
        req.headers_mut()
            .insert("authorization", format!("Bearer {t}").parse()?);
    }
    let colour = std::io::stdout().is_terminal();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let (mut ws, _) = match tokio_tungstenite::connect_async(req).await {
            Ok(x) => x,
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) if resp.status() == 401 => {
                return Err(crate::query_cmd::unauthorized(&a.url, a.token.is_some()));
            }
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                let body = resp
                    .body()
                    .as_deref()
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default();
                let msg = serde_json::from_str::<Value>(&body)
                    .ok()
                    .and_then(|v| v["error"].as_str().map(str::to_string))
                    .unwrap_or_else(|| body.trim().to_string());
                bail!("{} refused the tail ({}): {msg}", a.url, resp.status());
            }
            Err(e) => bail!("cannot reach {}: {e}", a.url),
        };
        while let Some(msg) = ws.next().await {
            let text = match msg? {
                Message::Text(t) => t,
                Message::Close(Some(f)) if !matches!(u16::from(f.code), 1000 | 1001) => {
                    bail!("the server ended the tail: {}", f.reason)
                }
                Message::Close(_) => return Ok(()),
                _ => continue,
            };
            if a.output == "json" {
                println!("{text}");
                continue;
            }
            let v: Value = serde_json::from_str(&text)?;
            let data = serde_json::json!({ "result": v["streams"] });
            if data["result"].as_array().is_some_and(|r| !r.is_empty()) {
                print!("{}", render_lines(&data, true, colour));
            }
            if let Some(d) = v["dropped_entries"].as_array().filter(|d| !d.is_empty()) {
                eprintln!(
                    "skopos: {} lines were dropped: the tail could not keep up",
                    d.len()
                );
            }
        }
        Ok(())
    })
}

pub struct LogsDeleteArgs {
    pub expr: String,
    pub url: String,
    pub start: Option<String>,
    pub since: Option<String>,
    pub end: Option<String>,
    pub yes: bool,
    pub token: Option<String>,
}

/// A time argument as Unix ns: RFC 3339, Unix seconds or ns.
fn time_ns(flag: &str, v: &str) -> anyhow::Result<i128> {
    if let Ok(n) = v.parse::<i128>() {
        return Ok(if v.len() <= 10 { n * 1_000_000_000 } else { n });
    }
    if let Ok(f) = v.parse::<f64>() {
        return Ok((f * 1e9) as i128);
    }
    let t = skopos_units::parse_log_time(v)
        .map_err(|e| anyhow::anyhow!("{flag}: {e}; want RFC 3339, Unix seconds or ns"))?;
    Ok(i128::from(t))
}

/// `skopos logs delete`: counts the lines a selector (with optional line
/// filters) picks in the range; deletes them for good only with `--yes`.
pub fn delete(a: LogsDeleteArgs) -> anyhow::Result<()> {
    let now = std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)?
        .as_nanos() as i128;
    let start = match (&a.start, &a.since) {
        (Some(s), None) => time_ns("--start", s)?,
        (None, Some(d)) => {
            let d = skopos_units::parse_duration(d).map_err(|e| anyhow::anyhow!("--since: {e}"))?;
            now - d.as_nanos() as i128
        }
        _ => bail!("give the range to delete with --start or --since (one of them)"),
    };
    let end = match &a.end {
        Some(e) => time_ns("--end", e)?,
        None => now,
    };
    if end < start {
        bail!("--end is before the start of the range");
    }
    let base = a.url.trim_end_matches('/');
    let url = format!("{base}/loki/api/v1/delete");
    let form = vec![
        ("query", a.expr.clone()),
        ("start", start.to_string()),
        ("end", end.to_string()),
    ];
    let post = |form: Vec<(&'static str, String)>| {
        crate::query_cmd::fetch(&url, a.token.as_deref(), |c| c.post(&url).form(&form))
    };
    // What would go: the server counts it, line filters included.
    let mut dry = form.clone();
    dry.push(("dry_run", "true".into()));
    let counted: Value = serde_json::from_str(&post(dry)?)?;
    let lines = counted["lines"].as_u64().unwrap_or(0);
    let fmt = |t: i128| {
        let t = t.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
        skopos_units::format_rfc3339(t, skopos_units::Precision::Seconds)
    };
    let range = format!("{} to {}", fmt(start), fmt(end));
    if !a.yes {
        println!(
            "{lines} lines match {} from {range}; nothing deleted: run again with --yes to delete them",
            a.expr
        );
        return Ok(());
    }
    post(form)?;
    println!("deleted {lines} lines matching {} from {range}", a.expr);
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
        let time = skopos_units::format_rfc3339(ts, skopos_units::Precision::Millis);
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
