//! `skopos query`: PromQL against a running server's Prometheus API, as a
//! readable table or the raw JSON response.

use anyhow::{bail, Context};
use serde_json::Value;

pub struct QueryArgs {
    pub expr: String,
    pub url: String,
    pub time: Option<String>,
    pub start: Option<String>,
    pub end: Option<String>,
    pub step: Option<String>,
    pub output: String,
    pub token: Option<String>,
}

pub fn run(a: QueryArgs) -> anyhow::Result<()> {
    let range = a.start.is_some() || a.end.is_some() || a.step.is_some();
    let mut form: Vec<(&str, String)> = vec![("query", a.expr.clone())];
    let path = if range {
        let (Some(start), Some(end)) = (&a.start, &a.end) else {
            bail!("a range query needs --start and --end (and --step, default 60s)");
        };
        form.push(("start", start.clone()));
        form.push(("end", end.clone()));
        form.push(("step", a.step.clone().unwrap_or_else(|| "60s".into())));
        "/api/v1/query_range"
    } else {
        if let Some(t) = &a.time {
            form.push(("time", t.clone()));
        }
        "/api/v1/query"
    };
    let url = format!("{}{path}", a.url.trim_end_matches('/'));
    let body = post_form(&url, &form, a.token.as_deref())?;
    if a.output == "json" {
        println!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(());
    }
    if a.output != "table" {
        bail!("-o: {:?} is not one of table, json", a.output);
    }
    if body["status"] != "success" {
        bail!(
            "{}: {}",
            body["errorType"].as_str().unwrap_or("error"),
            body["error"].as_str().unwrap_or("unknown error")
        );
    }
    print!("{}", render_table(&body["data"]));
    Ok(())
}

/// The error for a 401: what to pass, not what the body looked like.
pub fn unauthorized(url: &str, had_token: bool) -> anyhow::Error {
    if had_token {
        anyhow::anyhow!("{url} answered 401 Unauthorized: the server refused the bearer token read from --auth-token-file (SKOPOS_AUTH_TOKEN_FILE)")
    } else {
        anyhow::anyhow!("{url} answered 401 Unauthorized: the server wants a bearer token; pass --auth-token-file FILE (or set SKOPOS_AUTH_TOKEN_FILE)")
    }
}

/// POSTs `form` to `url` (with the bearer token, if any) and parses the
/// JSON answer, whatever its status: API errors come back as JSON too.
pub fn post_form(url: &str, form: &[(&str, String)], token: Option<&str>) -> anyhow::Result<Value> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut req = reqwest::Client::new().post(url).form(form);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        let status = resp.status();
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(unauthorized(url, token.is_some()));
        }
        let text = resp.text().await?;
        serde_json::from_str::<Value>(&text).with_context(|| {
            format!("{url} answered {status} with something that is not JSON: {text}")
        })
    })
}

/// Sends the request `build` makes from a client (with the bearer token,
/// if any) and returns the body of a 2xx answer; any other status is an
/// error carrying the server's message (its JSON `error`, else the body).
pub fn fetch(
    url: &str,
    token: Option<&str>,
    build: impl FnOnce(reqwest::Client) -> reqwest::RequestBuilder,
) -> anyhow::Result<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut req = build(reqwest::Client::new());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        let status = resp.status();
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(unauthorized(url, token.is_some()));
        }
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            let msg = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string))
                .unwrap_or(text);
            anyhow::bail!("{url} answered {status}: {}", msg.trim());
        }
        Ok(text)
    })
}

fn metric_text(m: &Value) -> String {
    let Some(obj) = m.as_object() else {
        return String::new();
    };
    let name = obj.get("__name__").and_then(Value::as_str).unwrap_or("");
    let labels: Vec<String> = obj
        .iter()
        .filter(|(k, _)| k.as_str() != "__name__")
        .map(|(k, v)| format!("{k}={:?}", v.as_str().unwrap_or("")))
        .collect();
    format!("{name}{{{}}}", labels.join(", "))
}

fn point(p: &Value) -> (String, String) {
    let t = p[0].as_f64().map(|t| format!("{t:.3}")).unwrap_or_default();
    (t, p[1].as_str().unwrap_or("").to_string())
}

/// Renders a query result: one row per series (vector), per point (matrix).
pub fn render_table(data: &Value) -> String {
    let mut rows: Vec<[String; 3]> = Vec::new();
    match data["resultType"].as_str() {
        Some("vector") => {
            for s in data["result"].as_array().into_iter().flatten() {
                let (t, v) = point(&s["value"]);
                rows.push([metric_text(&s["metric"]), v, t]);
            }
        }
        Some("matrix") => {
            for s in data["result"].as_array().into_iter().flatten() {
                let m = metric_text(&s["metric"]);
                for p in s["values"].as_array().into_iter().flatten() {
                    let (t, v) = point(p);
                    rows.push([m.clone(), v, t]);
                }
            }
        }
        Some("scalar") | Some("string") => {
            let (t, v) = point(&data["result"]);
            rows.push([String::from("(scalar)"), v, t]);
        }
        _ => return "no data\n".into(),
    }
    if rows.is_empty() {
        return "no data\n".into();
    }
    let header = [
        String::from("SERIES"),
        String::from("VALUE"),
        String::from("TIMESTAMP"),
    ];
    let widths: Vec<usize> = (0..3)
        .map(|i| {
            rows.iter()
                .chain(std::iter::once(&header))
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in std::iter::once(&header).chain(rows.iter()) {
        out.push_str(&format!(
            "{:<w0$}  {:>w1$}  {}\n",
            r[0],
            r[1],
            r[2],
            w0 = widths[0],
            w1 = widths[1]
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vector_renders_one_row_per_series() {
        let data = serde_json::json!({"resultType": "vector", "result": [
            {"metric": {"__name__": "up", "job": "api"}, "value": [1700000000.0, "1"]},
            {"metric": {"job": "db"}, "value": [1700000000.0, "0"]}]});
        let t = render_table(&data);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("SERIES"));
        assert!(
            lines[1].starts_with("up{job=\"api\"}") && lines[1].contains(" 1  1700000000.000"),
            "{t}"
        );
        assert!(lines[2].starts_with("{job=\"db\"}"), "{t}");
    }

    #[test]
    fn empty_result_says_so() {
        let data = serde_json::json!({"resultType": "matrix", "result": []});
        assert_eq!(render_table(&data), "no data\n");
    }
}
