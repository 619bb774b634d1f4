//! Spans as the trace store, TraceQL and span metrics see them, and the read
//! seam between the store and the query engine (the traces counterpart of
//! [`crate::LogQueryable`]).
//!
//! The shape follows OTLP's data model (a span with its resource and
//! instrumentation scope, attributes, events, links and status) so nothing
//! an OTLP exporter sends is lost in between; Zipkin spans map onto it.
//! Time is Unix nanoseconds throughout. Ids are raw bytes; their hex form is
//! an edge concern (`hex` helpers here for every edge to share).

use std::sync::Arc;

use crate::StorageError;

pub type TraceId = [u8; 16];
pub type SpanId = [u8; 8];

/// An attribute value, as OTLP's `AnyValue`.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Bytes(Vec<u8>),
    Array(Vec<AttrValue>),
    Map(Vec<Attribute>),
}

impl AttrValue {
    /// [`AttrValue::to_text`], borrowing a string value instead of
    /// copying it.
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        match self {
            AttrValue::Str(s) => std::borrow::Cow::Borrowed(s),
            other => std::borrow::Cow::Owned(other.to_text()),
        }
    }

    /// The value as TraceQL and the search APIs compare it as text: strings
    /// as they are, numbers and booleans in their usual form, the rest as
    /// JSON-like text.
    pub fn to_text(&self) -> String {
        match self {
            AttrValue::Str(s) => s.clone(),
            AttrValue::Int(i) => i.to_string(),
            AttrValue::Float(f) => f.to_string(),
            AttrValue::Bool(b) => b.to_string(),
            AttrValue::Bytes(b) => to_hex(b),
            AttrValue::Array(a) => {
                let parts: Vec<String> = a.iter().map(AttrValue::to_text).collect();
                format!("[{}]", parts.join(","))
            }
            AttrValue::Map(m) => {
                let parts: Vec<String> = m
                    .iter()
                    .map(|a| format!("{}:{}", a.key, a.value.to_text()))
                    .collect();
                format!("{{{}}}", parts.join(","))
            }
        }
    }
}

/// A key and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Attribute {
    pub key: String,
    pub value: AttrValue,
}

impl Attribute {
    pub fn new(key: impl Into<String>, value: AttrValue) -> Self {
        Attribute {
            key: key.into(),
            value,
        }
    }

    pub fn str(key: impl Into<String>, value: impl Into<String>) -> Self {
        Attribute::new(key, AttrValue::Str(value.into()))
    }
}

/// The value of `key` among `attrs`, if any.
pub fn find_attr<'a>(attrs: &'a [Attribute], key: &str) -> Option<&'a AttrValue> {
    attrs.iter().find(|a| a.key == key).map(|a| &a.value)
}

/// OTLP's span kinds, with OTLP's numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub enum SpanKind {
    #[default]
    Unspecified = 0,
    Internal = 1,
    Server = 2,
    Client = 3,
    Producer = 4,
    Consumer = 5,
}

impl SpanKind {
    pub fn from_i32(n: i32) -> Option<SpanKind> {
        Some(match n {
            0 => SpanKind::Unspecified,
            1 => SpanKind::Internal,
            2 => SpanKind::Server,
            3 => SpanKind::Client,
            4 => SpanKind::Producer,
            5 => SpanKind::Consumer,
            _ => return None,
        })
    }

    /// TraceQL's and Tempo's name: `server`, `client`, ...
    pub fn name(self) -> &'static str {
        match self {
            SpanKind::Unspecified => "unspecified",
            SpanKind::Internal => "internal",
            SpanKind::Server => "server",
            SpanKind::Client => "client",
            SpanKind::Producer => "producer",
            SpanKind::Consumer => "consumer",
        }
    }
}

/// OTLP's status codes, with OTLP's numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub enum StatusCode {
    #[default]
    Unset = 0,
    Ok = 1,
    Error = 2,
}

impl StatusCode {
    pub fn from_i32(n: i32) -> Option<StatusCode> {
        Some(match n {
            0 => StatusCode::Unset,
            1 => StatusCode::Ok,
            2 => StatusCode::Error,
            _ => return None,
        })
    }

    /// TraceQL's name: `unset`, `ok`, `error`.
    pub fn name(self) -> &'static str {
        match self {
            StatusCode::Unset => "unset",
            StatusCode::Ok => "ok",
            StatusCode::Error => "error",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct SpanEvent {
    pub time_ns: i64,
    pub name: String,
    pub attributes: Vec<Attribute>,
    pub dropped_attributes: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SpanLink {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub trace_state: String,
    pub attributes: Vec<Attribute>,
    pub dropped_attributes: u32,
}

/// The entity that produced spans (OTLP `Resource`); shared by its spans.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Resource {
    pub attributes: Vec<Attribute>,
    pub dropped_attributes: u32,
}

/// The default of `service.name` when a resource has none, as OTLP's SDKs
/// name it.
pub const UNKNOWN_SERVICE: &str = "unknown_service";

impl Resource {
    /// `service.name`, or [`UNKNOWN_SERVICE`].
    pub fn service_name(&self) -> &str {
        match find_attr(&self.attributes, "service.name") {
            Some(AttrValue::Str(s)) if !s.is_empty() => s,
            _ => UNKNOWN_SERVICE,
        }
    }
}

/// The instrumentation scope (library) that made a span.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Scope {
    pub name: String,
    pub version: String,
    pub attributes: Vec<Attribute>,
}

/// One span.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    /// `None` for a root span.
    pub parent_span_id: Option<SpanId>,
    pub trace_state: String,
    /// W3C trace flags (OTLP `flags`).
    pub flags: u32,
    pub name: String,
    pub kind: SpanKind,
    pub start_ns: i64,
    pub end_ns: i64,
    pub attributes: Vec<Attribute>,
    pub dropped_attributes: u32,
    pub events: Vec<SpanEvent>,
    pub dropped_events: u32,
    pub links: Vec<SpanLink>,
    pub dropped_links: u32,
    pub status: StatusCode,
    pub status_message: String,
    pub resource: Arc<Resource>,
    pub scope: Arc<Scope>,
}

impl Span {
    /// End minus start, never negative.
    pub fn duration_ns(&self) -> i64 {
        self.end_ns.saturating_sub(self.start_ns).max(0)
    }

    pub fn service_name(&self) -> &str {
        self.resource.service_name()
    }

    pub fn is_root(&self) -> bool {
        self.parent_span_id.is_none()
    }
}

/// Spans to append: the unit of acknowledgement of the trace store.
#[derive(Debug, Clone, Default)]
pub struct SpanBatch {
    pub spans: Vec<Span>,
}

/// The spans of one trace, in start-time order.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    pub trace_id: TraceId,
    pub spans: Vec<Span>,
}

impl Trace {
    /// The root span: the one without a parent (the earliest such), if any.
    pub fn root(&self) -> Option<&Span> {
        self.spans
            .iter()
            .filter(|s| s.is_root())
            .min_by_key(|s| s.start_ns)
    }

    /// Earliest start and latest end over the spans.
    pub fn bounds(&self) -> (i64, i64) {
        let start = self.spans.iter().map(|s| s.start_ns).min().unwrap_or(0);
        let end = self.spans.iter().map(|s| s.end_ns).max().unwrap_or(0);
        (start, end)
    }
}

/// A span field a search condition looks at.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SpanField {
    Name,
    /// The resource's `service.name`.
    ServiceName,
    /// `ok`, `error`, `unset`.
    Status,
    /// `server`, `client`, ...
    Kind,
    /// A span attribute.
    SpanAttr(String),
    /// A resource attribute.
    ResourceAttr(String),
    /// A span attribute or, failing that, a resource attribute (TraceQL's
    /// unscoped `.key`).
    AnyAttr(String),
}

/// What a trace search asks the store for.
#[derive(Debug, Clone, Default)]
pub struct TraceSelect {
    /// Traces with a span starting in `[start, end)`, Unix ns.
    pub start: i64,
    pub end: i64,
    /// Hints: each wanted trace has, for each condition, some span whose
    /// field equals the value (as [`AttrValue::to_text`] renders it). A store
    /// may answer them from an index; the caller still checks everything.
    pub equals: Vec<(SpanField, String)>,
    /// Hint: each wanted trace has a span lasting at least this long (ns).
    pub min_span_duration_ns: Option<i64>,
}

/// What TraceQL and the search APIs read: the seam between the trace store
/// and the evaluators, so that another store can slot in behind it.
pub trait TraceQueryable: Send + Sync {
    /// The whole trace with this id, if any span of it is stored.
    fn trace(&self, id: &TraceId) -> Result<Option<Trace>, StorageError>;

    /// Hands `f` each trace matching `sel` (every stored span of it), one
    /// at a time, newest first by start of its earliest span in range.
    /// Stops when `f` returns false.
    fn select_traces(
        &self,
        sel: &TraceSelect,
        f: &mut dyn FnMut(Trace) -> bool,
    ) -> Result<(), StorageError>;

    /// Span attribute keys and resource attribute keys seen on spans
    /// starting in `[start, end)`.
    fn tag_names(&self, start: i64, end: i64) -> Result<TagNames, StorageError>;

    /// Distinct values of a field on spans starting in `[start, end)`, at
    /// most `limit`.
    fn tag_values(
        &self,
        field: &SpanField,
        start: i64,
        end: i64,
        limit: usize,
    ) -> Result<Vec<AttrValue>, StorageError>;
}

/// Attribute keys by scope.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TagNames {
    pub span: Vec<String>,
    pub resource: Vec<String>,
}

/// Lower-case hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// Parses hex (either case) into exactly `N` bytes. A shorter trace id is
/// left-padded with zeros, as Tempo and Jaeger accept 64-bit ids; longer
/// input, odd length or a non-hex digit is an error naming the problem.
pub fn parse_hex_id<const N: usize>(s: &str) -> Result<[u8; N], String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty id".into());
    }
    if s.len() > 2 * N {
        return Err(format!(
            "id {s:?} has {} hex digits, more than {}",
            s.len(),
            2 * N
        ));
    }
    let mut out = [0u8; N];
    let digits: Vec<u8> = s
        .bytes()
        .map(|c| match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            b'A'..=b'F' => Ok(c - b'A' + 10),
            _ => Err(format!("id {s:?} has a non-hex character {:?}", c as char)),
        })
        .collect::<Result<_, _>>()?;
    // Right-align: a short id is the low bytes.
    let pad = 2 * N - digits.len();
    for (i, d) in digits.iter().enumerate() {
        let at = pad + i;
        out[at / 2] |= if at.is_multiple_of(2) { d << 4 } else { *d };
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_ids_round_trip_and_bad_ones_are_refused() {
        let id: TraceId = parse_hex_id("0102030405060708090A0b0c0d0e0f10").unwrap();
        assert_eq!(to_hex(&id), "0102030405060708090a0b0c0d0e0f10");
        let short: TraceId = parse_hex_id("abc").unwrap();
        assert_eq!(to_hex(&short), "00000000000000000000000000000abc");
        assert!(parse_hex_id::<8>("0102030405060708ff").is_err());
        assert!(parse_hex_id::<8>("01020304zz")
            .unwrap_err()
            .contains("non-hex"));
        assert!(parse_hex_id::<8>("").is_err());
    }

    #[test]
    fn service_name_defaults_and_root_is_the_parentless_span() {
        assert_eq!(Resource::default().service_name(), UNKNOWN_SERVICE);
        let r = Resource {
            attributes: vec![Attribute::str("service.name", "api")],
            dropped_attributes: 0,
        };
        assert_eq!(r.service_name(), "api");
        assert_eq!(SpanKind::from_i32(3), Some(SpanKind::Client));
        assert_eq!(StatusCode::from_i32(2).map(StatusCode::name), Some("error"));
        assert_eq!(SpanKind::from_i32(9), None);
    }
}
