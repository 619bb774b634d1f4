//! OpenTelemetry → Prometheus names: metric name normalisation with unit
//! and type suffixes, and label name sanitisation, per the OpenTelemetry
//! "Prometheus and OpenMetrics Compatibility" specification.

/// The shape of an OTLP metric, for naming.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    Counter,
    NonMonotonicSum,
    /// Histograms and summaries.
    Other,
}

fn unit_name(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "TiBy" => "tibibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        "Cel" => "celsius",
        "Hz" => "hertz",
        "1" => "",
        "%" => "percent",
        _ => return None,
    })
}

fn per_unit_name(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        _ => return None,
    })
}

/// Splits on every character that is not `[a-zA-Z0-9:]`, dropping empties.
fn tokens(s: &str) -> Vec<String> {
    s.split(|c: char| !(c.is_ascii_alphanumeric() || c == ':'))
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

fn clean_unit(s: &str) -> String {
    tokens(s).join("_")
}

/// Metric name without suffixes: invalid characters to `_`, runs of `_`
/// collapsed, a leading digit prefixed with `_`.
pub fn sanitize_metric_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        let c = if c.is_ascii_alphanumeric() || c == ':' || c == '_' {
            c
        } else {
            '_'
        };
        if c == '_' && out.ends_with('_') {
            continue;
        }
        out.push(c);
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// The full OTel→Prometheus metric name normalisation with unit and type
/// suffixes.
pub fn normalize_name_with_suffixes(name: &str, unit: &str, kind: Kind) -> String {
    let mut toks = tokens(name);
    let (main, per) = match unit.split_once('/') {
        Some((m, p)) => (m.trim(), Some(p.trim())),
        None => (unit.trim(), None),
    };
    let mut main_prom = String::new();
    if !main.is_empty() && !main.contains(['{', '}']) {
        main_prom = clean_unit(unit_name(main).unwrap_or(main));
        if toks.contains(&main_prom) {
            main_prom.clear();
        }
    }
    let mut per_prom = String::new();
    if let Some(per) = per.filter(|p| !p.is_empty() && !p.contains(['{', '}'])) {
        let p = clean_unit(per_unit_name(per).unwrap_or(per));
        if !p.is_empty() {
            per_prom = format!("per_{p}");
            let per_toks = tokens(&per_prom);
            if toks
                .windows(per_toks.len())
                .any(|w| w == per_toks.as_slice())
            {
                per_prom.clear();
            }
        }
    }
    if !main_prom.is_empty() {
        toks.extend(tokens(&main_prom));
    }
    if !per_prom.is_empty() {
        toks.extend(tokens(&per_prom));
    }
    if kind == Kind::Counter {
        toks.retain(|t| t != "total");
        toks.push("total".into());
    }
    if unit == "1" && kind == Kind::Gauge {
        toks.retain(|t| t != "ratio");
        toks.push("ratio".into());
    }
    let mut out = toks.join("_");
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// Attribute key → Prometheus label name.
pub fn sanitize_label_name(key: &str) -> String {
    if key.is_empty() {
        return String::new();
    }
    let mut out: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert_str(0, "key_");
    } else if out.starts_with('_') && !out.starts_with("__") {
        out.insert_str(0, "key");
    }
    out
}
