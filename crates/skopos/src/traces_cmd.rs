//! `skopos traces get|search`: a trace as a waterfall in the terminal, and
//! TraceQL search, against a running server's Tempo API.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::UNIX_EPOCH;

use anyhow::{bail, Context};
use serde_json::Value;

/// GETs `url` with `query` and the bearer token: the JSON answer, or the
/// server's error as a CLI error.
fn get_json(url: &str, query: &[(&str, String)], token: Option<&str>) -> anyhow::Result<Value> {
    let text = crate::query_cmd::fetch(url, token, |c| {
        c.get(url).header("Accept", "application/json").query(query)
    })?;
    serde_json::from_str(&text)
        .with_context(|| format!("{url} answered something that is not JSON: {text}"))
}

/// A number that OTLP/JSON may write as a string or a number.
fn int(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

/// One span of a waterfall.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub span_id: String,
    pub parent: String,
    pub service: String,
    pub name: String,
    pub start_ns: i64,
    pub end_ns: i64,
    pub error: bool,
}

/// The spans of an OTLP/JSON trace (`resourceSpans` → `scopeSpans` → `spans`).
pub fn rows(resource_spans: &Value) -> Vec<Row> {
    let mut out = Vec::new();
    for rs in resource_spans.as_array().into_iter().flatten() {
        let service = rs["resource"]["attributes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["key"] == "service.name")
            .and_then(|a| a["value"]["stringValue"].as_str())
            .unwrap_or("unknown_service")
            .to_string();
        for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
            for s in ss["spans"].as_array().into_iter().flatten() {
                out.push(Row {
                    span_id: s["spanId"].as_str().unwrap_or("").to_string(),
                    parent: s["parentSpanId"].as_str().unwrap_or("").to_string(),
                    service: service.clone(),
                    name: s["name"].as_str().unwrap_or("").to_string(),
                    start_ns: int(&s["startTimeUnixNano"]),
                    end_ns: int(&s["endTimeUnixNano"]),
                    error: int(&s["status"]["code"]) == 2,
                });
            }
        }
    }
    out
}

fn human(ns: i64) -> String {
    let ns = ns.max(0);
    if ns >= 1_000_000_000 {
        format!("{:.2}s", ns as f64 / 1e9)
    } else if ns >= 1_000_000 {
        format!("{:.2}ms", ns as f64 / 1e6)
    } else {
        format!("{:.0}µs", ns as f64 / 1e3)
    }
}

/// The span tree as a waterfall: each span under its parent (children by
/// start time), with its service and name, offset from the trace's start,
/// duration, a bar placed on the trace's time line `width` columns wide,
/// and its status. Spans whose parent is missing are shown as roots.
pub fn waterfall(rows: &[Row], width: usize, colour: bool) -> String {
    if rows.is_empty() {
        return "no spans\n".into();
    }
    let t0 = rows.iter().map(|r| r.start_ns).min().unwrap_or(0);
    let t1 = rows
        .iter()
        .map(|r| r.end_ns)
        .max()
        .unwrap_or(t0)
        .max(t0 + 1);
    let ids: std::collections::HashSet<&str> = rows.iter().map(|r| r.span_id.as_str()).collect();
    let mut children: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut roots = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        if r.parent.is_empty() || !ids.contains(r.parent.as_str()) || r.parent == r.span_id {
            roots.push(i);
        } else {
            children.entry(r.parent.as_str()).or_default().push(i);
        }
    }
    let by_start = |v: &mut Vec<usize>| v.sort_by_key(|&i| (rows[i].start_ns, i));
    by_start(&mut roots);
    for v in children.values_mut() {
        by_start(v);
    }
    // Depth-first, with a visited set so a cycle cannot loop forever.
    let mut order: Vec<(usize, usize)> = Vec::new();
    let mut seen = vec![false; rows.len()];
    let mut stack: Vec<(usize, usize)> = roots.iter().rev().map(|&i| (i, 0)).collect();
    // Spans in a parent cycle are reachable from no root: each left over
    // starts a tree of its own.
    let mut leftover = (0..rows.len()).collect::<Vec<_>>();
    by_start(&mut leftover);
    let mut leftover = leftover.into_iter();
    loop {
        while let Some((i, depth)) = stack.pop() {
            if std::mem::replace(&mut seen[i], true) {
                continue;
            }
            order.push((i, depth));
            if let Some(c) = children.get(rows[i].span_id.as_str()) {
                stack.extend(c.iter().rev().map(|&j| (j, depth + 1)));
            }
        }
        match leftover.find(|&i| !seen[i]) {
            Some(i) => stack.push((i, 0)),
            None => break,
        }
    }
    let labels: Vec<String> = order
        .iter()
        .map(|&(i, d)| format!("{}{} {}", "  ".repeat(d), rows[i].service, rows[i].name))
        .collect();
    let label_w = labels
        .iter()
        .map(|l| l.chars().count())
        .max()
        .unwrap_or(0)
        .min(60);
    let span = (t1 - t0) as f64;
    let mut out = format!(
        "{:<label_w$}  {:>10}  {:>10}  {:<width$}  STATUS\n",
        "SPAN", "OFFSET", "DURATION", "TIMELINE"
    );
    for ((i, _), label) in order.iter().zip(labels) {
        let r = &rows[*i];
        let from = (((r.start_ns - t0) as f64 / span) * width as f64).floor() as usize;
        let to = (((r.end_ns - t0) as f64 / span) * width as f64).ceil() as usize;
        let from = from.min(width.saturating_sub(1));
        let to = to.clamp(from + 1, width);
        let bar = format!(
            "{}{}{}",
            " ".repeat(from),
            "█".repeat(to - from),
            " ".repeat(width - to)
        );
        let label: String = label.chars().take(label_w).collect();
        let status = if r.error { "ERROR" } else { "ok" };
        let (on, off) = match (colour, r.error) {
            (true, true) => ("\x1b[31m", "\x1b[0m"),
            (true, false) => ("\x1b[36m", "\x1b[0m"),
            _ => ("", ""),
        };
        out.push_str(&format!(
            "{label:<label_w$}  {:>10}  {:>10}  {on}{bar}{off}  {on}{status}{off}\n",
            human(r.start_ns - t0),
            human(r.end_ns - r.start_ns),
        ));
    }
    out
}

/// `skopos traces get ID`.
pub fn get(id: &str, url: &str, output: &str, token: Option<&str>) -> anyhow::Result<()> {
    if output != "text" && output != "json" {
        bail!("-o: {output:?} is not one of text, json");
    }
    let base = url.trim_end_matches('/');
    let v = get_json(&format!("{base}/api/v2/traces/{id}"), &[], token)?;
    if output == "json" {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let rows = rows(&v["trace"]["resourceSpans"]);
    let colour = std::io::stdout().is_terminal();
    println!("trace {id}: {} spans", rows.len());
    print!("{}", waterfall(&rows, 40, colour));
    Ok(())
}

/// `skopos traces logs ID`: the log lines that carry the trace id.
pub fn logs(id: &str, url: &str, output: &str, token: Option<&str>) -> anyhow::Result<()> {
    if output != "text" && output != "json" {
        bail!("-o: {output:?} is not one of text, json");
    }
    let base = url.trim_end_matches('/');
    let v = get_json(&format!("{base}/api/traces/{id}/logs"), &[], token)?;
    if output == "json" {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    print!(
        "{}",
        crate::logs_cmd::render_lines(&v["data"], true, std::io::stdout().is_terminal())
    );
    Ok(())
}

/// `skopos traces search 'TRACEQL'`.
pub fn search(
    query: &str,
    url: &str,
    since: &str,
    limit: usize,
    output: &str,
    token: Option<&str>,
) -> anyhow::Result<()> {
    if output != "text" && output != "json" {
        bail!("-o: {output:?} is not one of text, json");
    }
    let since = skopos_units::parse_duration(since).map_err(|e| anyhow::anyhow!("--since: {e}"))?;
    let now = std::time::SystemTime::now().duration_since(UNIX_EPOCH)?;
    let start = now.saturating_sub(since).as_secs();
    let base = url.trim_end_matches('/');
    let v = get_json(
        &format!("{base}/api/search"),
        &[
            ("q", query.to_string()),
            ("start", start.to_string()),
            ("end", (now.as_secs() + 1).to_string()),
            ("limit", limit.to_string()),
        ],
        token,
    )?;
    if output == "json" {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    print!("{}", search_table(&v));
    Ok(())
}

/// The traces of a Tempo search answer as a table.
pub fn search_table(v: &Value) -> String {
    let traces = v["traces"].as_array().cloned().unwrap_or_default();
    if traces.is_empty() {
        return "no traces\n".into();
    }
    let mut out = format!(
        "{:<32}  {:<24}  {:<20}  {:<24}  {:>10}  {:>7}\n",
        "TRACE ID", "ROOT SERVICE", "ROOT SPAN", "START", "DURATION", "MATCHED"
    );
    for t in traces {
        let start = skopos_units::format_rfc3339(
            int(&t["startTimeUnixNano"]),
            skopos_units::Precision::Millis,
        );
        let matched: i64 = t["spanSets"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| int(&s["matched"]))
            .sum();
        out.push_str(&format!(
            "{:<32}  {:<24}  {:<20}  {:<24}  {:>10}  {:>7}\n",
            t["traceID"].as_str().unwrap_or(""),
            t["rootServiceName"].as_str().unwrap_or(""),
            t["rootTraceName"].as_str().unwrap_or(""),
            start,
            human(int(&t["durationMs"]) * 1_000_000),
            matched,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, parent: &str, svc: &str, name: &str, s: i64, e: i64, err: bool) -> Row {
        Row {
            span_id: id.into(),
            parent: parent.into(),
            service: svc.into(),
            name: name.into(),
            start_ns: s,
            end_ns: e,
            error: err,
        }
    }

    #[test]
    fn waterfall_nests_children_under_parents_in_start_order() {
        let rows = vec![
            row("c2", "a", "db", "query", 60_000_000, 90_000_000, true),
            row("a", "", "web", "GET /", 0, 100_000_000, false),
            row("c1", "a", "api", "call", 10_000_000, 50_000_000, false),
            row("g", "c1", "api", "inner", 20_000_000, 30_000_000, false),
            row("o", "missing", "x", "orphan", 0, 1_000, false),
        ];
        let text = waterfall(&rows, 10, false);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("SPAN"), "{text}");
        assert!(lines[1].starts_with("web GET /"), "{text}");
        assert!(lines[2].starts_with("  api call"), "{text}");
        assert!(lines[3].starts_with("    api inner"), "{text}");
        assert!(lines[4].starts_with("  db query"), "{text}");
        assert!(lines[5].starts_with("x orphan"), "{text}");
        // The root spans the whole time line; the db span its last part.
        assert!(lines[1].contains("██████████"), "{text}");
        assert!(
            lines[4].contains("      ███ ") || lines[4].contains("      ████"),
            "{text}"
        );
        assert!(lines[4].ends_with("ERROR"), "{text}");
        assert!(
            lines[2].contains("10.00ms") && lines[2].contains("40.00ms"),
            "{text}"
        );
        assert_eq!(waterfall(&[], 10, false), "no spans\n");
    }

    #[test]
    fn a_parent_cycle_does_not_loop() {
        let rows = vec![
            row("a", "b", "s", "x", 0, 10, false),
            row("b", "a", "s", "y", 0, 10, false),
        ];
        // Neither is a root; both are still drawn, once each.
        let text = waterfall(&rows, 10, false);
        assert_eq!(text.lines().count(), 3, "{text}");
        assert_eq!(text.matches("s x").count(), 1, "{text}");
        assert_eq!(text.matches("s y").count(), 1, "{text}");
    }

    #[test]
    fn otlp_json_spans_become_rows() {
        let v = serde_json::json!([{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "api"}}]},
            "scopeSpans": [{"spans": [{
                "spanId": "00000000000000aa", "parentSpanId": "",
                "name": "GET", "startTimeUnixNano": "100", "endTimeUnixNano": 250,
                "status": {"code": 2}
            }]}]
        }]);
        assert_eq!(
            rows(&v),
            vec![row("00000000000000aa", "", "api", "GET", 100, 250, true)]
        );
    }
}
