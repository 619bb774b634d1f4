//! Prometheus' HTTP API envelope shared by every read edge: the JSON
//! success and error shapes (`ApiError`), request parameters from a query
//! string or a form body with repeatable keys (`Params`), times and series
//! selectors as Prometheus parses them.

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use skopos_model::Matcher;

/// Prometheus' smallest and largest representable timestamps, in ms, used
/// when `start`/`end` are absent.
pub(crate) const MIN_TIME: i64 = i64::MIN / 2;
pub(crate) const MAX_TIME: i64 = i64::MAX / 2;

/// An API error in Prometheus' envelope.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    error_type: &'static str,
    message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, error_type: &'static str, message: String) -> Self {
        ApiError {
            status,
            error_type,
            message,
        }
    }

    pub fn bad_data(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            error_type: "bad_data",
            message: message.into(),
        }
    }
    pub(crate) fn internal(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            error_type: "internal",
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"status": "error", "errorType": self.error_type, "error": self.message});
        (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response()
    }
}

pub(crate) fn success(data: Value) -> Response {
    let body = json!({"status": "success", "data": data});
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Query parameters from the URL and, for POST, the form body; repeated
/// keys are kept in order.
pub struct Params(Vec<(String, String)>);

impl Params {
    pub async fn collect(
        method: &Method,
        headers: &HeaderMap,
        query: Option<String>,
        body: Body,
    ) -> Result<Params, ApiError> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        if let Some(q) = query {
            pairs.extend(form_urlencoded_pairs(&q));
        }
        let is_form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
        if method == Method::POST && is_form {
            let bytes = axum::body::to_bytes(body, 1 << 20)
                .await
                .map_err(|e| ApiError::bad_data(format!("reading form body: {e}")))?;
            let text = std::str::from_utf8(&bytes)
                .map_err(|_| ApiError::bad_data("form body is not UTF-8"))?;
            pairs.extend(form_urlencoded_pairs(text));
        }
        Ok(Params(pairs))
    }

    /// Every key and value, in order.
    pub fn pairs(&self) -> impl Iterator<Item = (&String, &String)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

fn form_urlencoded_pairs(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |j: usize| bytes.get(j).and_then(|b| (*b as char).to_digit(16));
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (hex(i + 1), hex(i + 2)) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses a Prometheus timestamp parameter: RFC 3339 or (fractional) Unix
/// seconds. Returns milliseconds.
pub fn parse_time(name: &str, value: &str) -> Result<i64, ApiError> {
    let err = || {
        ApiError::bad_data(format!(
            "invalid parameter {name:?}: cannot parse {value:?} to a valid timestamp"
        ))
    };
    if let Ok(secs) = value.parse::<f64>() {
        if !secs.is_finite() {
            return Err(err());
        }
        let ms = (secs * 1000.0).round();
        return Ok(ms.clamp(MIN_TIME as f64, MAX_TIME as f64) as i64);
    }
    let ms = skopos_units::parse_rfc3339_millis(value).map_err(|_| err())?;
    Ok(ms.clamp(MIN_TIME, MAX_TIME))
}

pub use skopos_promql::parse_selector;

/// The storage matchers of a parsed selector: one list, or one per `or`
/// alternative.
pub fn selector_matchers(
    vs: &promql_parser::parser::VectorSelector,
) -> Result<Vec<Vec<Matcher>>, String> {
    skopos_promql::matcher_sets(vs).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_prometheus_does() {
        assert_eq!(parse_time("t", "1700000000").unwrap(), 1_700_000_000_000);
        assert_eq!(
            parse_time("t", "1700000000.123").unwrap(),
            1_700_000_000_123
        );
        assert_eq!(
            parse_time("t", "2023-11-14T22:13:20Z").unwrap(),
            1_700_000_000_000
        );
        assert_eq!(
            parse_time("t", "2023-11-14T23:13:20.5+01:00").unwrap(),
            1_700_000_000_500
        );
        let e = parse_time("start", "yesterday").unwrap_err();
        assert!(e.message.contains("\"start\""));
    }

    #[test]
    fn multibyte_time_offset_is_refused_not_panicked_on() {
        // Regression: `2024-01-02T03:04:05+0é00` sliced inside the `é` and
        // dropped the connection.
        for v in ["2024-01-02T03:04:05+0é00", "2024-01-02T03:04:0é", "é"] {
            let e = parse_time("time", v).unwrap_err();
            assert!(e.message.contains("cannot parse"), "{v}: {}", e.message);
        }
    }

    #[test]
    fn selectors_become_matchers() {
        let m = parse_selector(r#"up{job=~"a|b",env!="dev"}"#).unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m[0], Matcher::equal("__name__", "up"));
        assert!(m[1].matches("a") && !m[1].matches("c"));
        assert!(parse_selector(r#"{job=""}"#).is_err());
        assert!(parse_selector("rate(x[5m])").is_err());
        assert!(parse_selector("up{").is_err());
    }

    #[test]
    fn form_pairs_decode_percent_and_plus() {
        let p = form_urlencoded_pairs("match%5B%5D=up%7Bjob%3D%22a+b%22%7D&match[]=x&bad=%zz");
        assert_eq!(p[0], ("match[]".into(), "up{job=\"a b\"}".into()));
        assert_eq!(p[1], ("match[]".into(), "x".into()));
        assert_eq!(p[2], ("bad".into(), "%zz".into()));
    }
}
