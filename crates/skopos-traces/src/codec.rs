//! The byte encoding of spans, shared by WAL records and segment blocks.
//!
//! ```text
//! table:    nresources v | resource* | nscopes v | scope*
//! resource: attrs | dropped v
//! scope:    name | version | attrs
//! span:     trace id [16] | span id [8] | parent: 0 | 1 [8] | trace state
//!           | flags v | name | kind v | start z | end - start z | attrs
//!           | dropped attrs v | nevents v | event* | dropped events v
//!           | nlinks v | link* | dropped links v | status v | status message
//!           | resource index v | scope index v
//! event:    time - start z | name | attrs | dropped v
//! link:     trace id [16] | span id [8] | trace state | attrs | dropped v
//! attrs:    n v | (key, value)*
//! value:    tag u8, then 0 str | 1 int z | 2 f64 LE [8] | 3 bool u8
//!           | 4 bytes | 5 n v value* | 6 attrs
//! ```
//! Strings and byte strings are length-prefixed (`v` LEB128, `z` zigzag).
//! A span names its resource and scope by index into the table before it,
//! so the resource that a batch's spans share is written once. Decoding is
//! bounds-checked and never panics on corrupt input; values nest at most
//! [`MAX_DEPTH`] deep (the store flattens deeper ones on append).

use std::collections::HashMap;
use std::sync::Arc;

use skopos_model::codec::{put_bytes, put_uvarint, put_varint, Reader};
use skopos_model::{
    AttrValue, Attribute, Resource, Scope, Span, SpanEvent, SpanKind, SpanLink, StatusCode,
};

/// Deepest nesting of array and map values the codec accepts.
pub(crate) const MAX_DEPTH: usize = 16;

/// Builds the resource and scope table of a run of spans, sharing equal ones.
#[derive(Default)]
pub(crate) struct Tables {
    resources: Vec<Arc<Resource>>,
    scopes: Vec<Arc<Scope>>,
    by_resource_ptr: HashMap<usize, u32>,
    by_scope_ptr: HashMap<usize, u32>,
}

/// How many earlier entries are compared for equality before a resource or
/// scope with a new pointer gets an entry of its own.
const SHARE_SCAN: usize = 64;

impl Tables {
    pub fn resource(&mut self, r: &Arc<Resource>) -> u32 {
        let ptr = Arc::as_ptr(r) as usize;
        if let Some(&i) = self.by_resource_ptr.get(&ptr) {
            if Arc::ptr_eq(&self.resources[i as usize], r) {
                return i;
            }
        }
        let i = match self
            .resources
            .iter()
            .rev()
            .take(SHARE_SCAN)
            .position(|x| x == r)
        {
            Some(back) => (self.resources.len() - 1 - back) as u32,
            None => {
                self.resources.push(r.clone());
                (self.resources.len() - 1) as u32
            }
        };
        self.by_resource_ptr.insert(ptr, i);
        i
    }

    pub fn scope(&mut self, s: &Arc<Scope>) -> u32 {
        let ptr = Arc::as_ptr(s) as usize;
        if let Some(&i) = self.by_scope_ptr.get(&ptr) {
            if Arc::ptr_eq(&self.scopes[i as usize], s) {
                return i;
            }
        }
        let i = match self
            .scopes
            .iter()
            .rev()
            .take(SHARE_SCAN)
            .position(|x| x == s)
        {
            Some(back) => (self.scopes.len() - 1 - back) as u32,
            None => {
                self.scopes.push(s.clone());
                (self.scopes.len() - 1) as u32
            }
        };
        self.by_scope_ptr.insert(ptr, i);
        i
    }

    pub fn encode(&self, buf: &mut Vec<u8>) {
        put_uvarint(buf, self.resources.len() as u64);
        for r in &self.resources {
            put_attrs(buf, &r.attributes);
            put_uvarint(buf, u64::from(r.dropped_attributes));
        }
        put_uvarint(buf, self.scopes.len() as u64);
        for s in &self.scopes {
            put_bytes(buf, s.name.as_bytes());
            put_bytes(buf, s.version.as_bytes());
            put_attrs(buf, &s.attributes);
        }
    }
}

/// The decoded table: what span records point into.
pub(crate) struct Table {
    pub resources: Vec<Arc<Resource>>,
    pub scopes: Vec<Arc<Scope>>,
}

pub(crate) fn decode_table(r: &mut Reader) -> Option<Table> {
    let n = r.len(r.remaining())?;
    let mut resources = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        let attributes = read_attrs(r, 0)?;
        let dropped_attributes = read_u32(r)?;
        resources.push(Arc::new(Resource {
            attributes,
            dropped_attributes,
        }));
    }
    let n = r.len(r.remaining())?;
    let mut scopes = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        let name = r.string()?;
        let version = r.string()?;
        let attributes = read_attrs(r, 0)?;
        scopes.push(Arc::new(Scope {
            name,
            version,
            attributes,
        }));
    }
    Some(Table { resources, scopes })
}

fn read_u32(r: &mut Reader) -> Option<u32> {
    u32::try_from(r.uvarint()?).ok()
}

fn id<const N: usize>(r: &mut Reader) -> Option<[u8; N]> {
    r.bytes(N)?.try_into().ok()
}

pub(crate) fn put_attrs(buf: &mut Vec<u8>, attrs: &[Attribute]) {
    put_uvarint(buf, attrs.len() as u64);
    for a in attrs {
        put_bytes(buf, a.key.as_bytes());
        put_value(buf, &a.value);
    }
}

fn put_value(buf: &mut Vec<u8>, v: &AttrValue) {
    match v {
        AttrValue::Str(s) => {
            buf.push(0);
            put_bytes(buf, s.as_bytes());
        }
        AttrValue::Int(i) => {
            buf.push(1);
            put_varint(buf, *i);
        }
        AttrValue::Float(f) => {
            buf.push(2);
            buf.extend_from_slice(&f.to_bits().to_le_bytes());
        }
        AttrValue::Bool(b) => {
            buf.push(3);
            buf.push(u8::from(*b));
        }
        AttrValue::Bytes(b) => {
            buf.push(4);
            put_bytes(buf, b);
        }
        AttrValue::Array(a) => {
            buf.push(5);
            put_uvarint(buf, a.len() as u64);
            for x in a {
                put_value(buf, x);
            }
        }
        AttrValue::Map(m) => {
            buf.push(6);
            put_attrs(buf, m);
        }
    }
}

fn read_attrs(r: &mut Reader, depth: usize) -> Option<Vec<Attribute>> {
    if depth > MAX_DEPTH {
        return None;
    }
    let n = r.len(r.remaining())?;
    let mut out = Vec::with_capacity(n.min(256));
    for _ in 0..n {
        let key = r.string()?;
        let value = read_value(r, depth)?;
        out.push(Attribute { key, value });
    }
    Some(out)
}

fn read_value(r: &mut Reader, depth: usize) -> Option<AttrValue> {
    let tag = r.bytes(1)?[0];
    Some(match tag {
        0 => AttrValue::Str(r.string()?),
        1 => AttrValue::Int(r.varint()?),
        2 => AttrValue::Float(f64::from_bits(r.u64_le()?)),
        3 => match r.bytes(1)?[0] {
            0 => AttrValue::Bool(false),
            1 => AttrValue::Bool(true),
            _ => return None,
        },
        4 => AttrValue::Bytes(r.len_bytes()?.to_vec()),
        5 => {
            if depth >= MAX_DEPTH {
                return None;
            }
            let n = r.len(r.remaining())?;
            let mut a = Vec::with_capacity(n.min(256));
            for _ in 0..n {
                a.push(read_value(r, depth + 1)?);
            }
            AttrValue::Array(a)
        }
        6 => AttrValue::Map(read_attrs(r, depth + 1)?),
        _ => return None,
    })
}

/// Appends one span; its resource and scope go into `tables`.
pub(crate) fn put_span(buf: &mut Vec<u8>, tables: &mut Tables, s: &Span) {
    buf.extend_from_slice(&s.trace_id);
    buf.extend_from_slice(&s.span_id);
    match &s.parent_span_id {
        Some(p) => {
            buf.push(1);
            buf.extend_from_slice(p);
        }
        None => buf.push(0),
    }
    put_bytes(buf, s.trace_state.as_bytes());
    put_uvarint(buf, u64::from(s.flags));
    put_bytes(buf, s.name.as_bytes());
    put_uvarint(buf, s.kind as u64);
    put_varint(buf, s.start_ns);
    put_varint(buf, s.end_ns.wrapping_sub(s.start_ns));
    put_attrs(buf, &s.attributes);
    put_uvarint(buf, u64::from(s.dropped_attributes));
    put_uvarint(buf, s.events.len() as u64);
    for e in &s.events {
        put_varint(buf, e.time_ns.wrapping_sub(s.start_ns));
        put_bytes(buf, e.name.as_bytes());
        put_attrs(buf, &e.attributes);
        put_uvarint(buf, u64::from(e.dropped_attributes));
    }
    put_uvarint(buf, u64::from(s.dropped_events));
    put_uvarint(buf, s.links.len() as u64);
    for l in &s.links {
        buf.extend_from_slice(&l.trace_id);
        buf.extend_from_slice(&l.span_id);
        put_bytes(buf, l.trace_state.as_bytes());
        put_attrs(buf, &l.attributes);
        put_uvarint(buf, u64::from(l.dropped_attributes));
    }
    put_uvarint(buf, u64::from(s.dropped_links));
    put_uvarint(buf, s.status as u64);
    put_bytes(buf, s.status_message.as_bytes());
    put_uvarint(buf, u64::from(tables.resource(&s.resource)));
    put_uvarint(buf, u64::from(tables.scope(&s.scope)));
}

pub(crate) fn read_span(r: &mut Reader, table: &Table) -> Option<Span> {
    let trace_id = id::<16>(r)?;
    let span_id = id::<8>(r)?;
    let parent_span_id = match r.bytes(1)?[0] {
        0 => None,
        1 => Some(id::<8>(r)?),
        _ => return None,
    };
    let trace_state = r.string()?;
    let flags = read_u32(r)?;
    let name = r.string()?;
    let kind = SpanKind::from_i32(i32::try_from(r.uvarint()?).ok()?)?;
    let start_ns = r.varint()?;
    let end_ns = start_ns.wrapping_add(r.varint()?);
    let attributes = read_attrs(r, 0)?;
    let dropped_attributes = read_u32(r)?;
    let n = r.len(r.remaining())?;
    let mut events = Vec::with_capacity(n.min(256));
    for _ in 0..n {
        let time_ns = start_ns.wrapping_add(r.varint()?);
        let name = r.string()?;
        let attributes = read_attrs(r, 0)?;
        let dropped_attributes = read_u32(r)?;
        events.push(SpanEvent {
            time_ns,
            name,
            attributes,
            dropped_attributes,
        });
    }
    let dropped_events = read_u32(r)?;
    let n = r.len(r.remaining())?;
    let mut links = Vec::with_capacity(n.min(256));
    for _ in 0..n {
        let trace_id = id::<16>(r)?;
        let span_id = id::<8>(r)?;
        let trace_state = r.string()?;
        let attributes = read_attrs(r, 0)?;
        let dropped_attributes = read_u32(r)?;
        links.push(SpanLink {
            trace_id,
            span_id,
            trace_state,
            attributes,
            dropped_attributes,
        });
    }
    let dropped_links = read_u32(r)?;
    let status = StatusCode::from_i32(i32::try_from(r.uvarint()?).ok()?)?;
    let status_message = r.string()?;
    let resource = table.resources.get(r.len(usize::MAX)?)?.clone();
    let scope = table.scopes.get(r.len(usize::MAX)?)?.clone();
    Some(Span {
        trace_id,
        span_id,
        parent_span_id,
        trace_state,
        flags,
        name,
        kind,
        start_ns,
        end_ns,
        attributes,
        dropped_attributes,
        events,
        dropped_events,
        links,
        dropped_links,
        status,
        status_message,
        resource,
        scope,
    })
}

/// Bytes `s` takes in a run (less its share of the table).
pub(crate) fn encoded_len(s: &Span) -> u64 {
    let mut tables = Tables::default();
    let mut buf = Vec::with_capacity(512);
    put_span(&mut buf, &mut tables, s);
    buf.len() as u64
}

/// A run of spans with its table in front: `table | nspans v | span*` (a
/// WAL record's payload).
pub(crate) fn encode_run(tables: &Tables, spans_bytes: &[u8], nspans: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(spans_bytes.len() + 256);
    tables.encode(&mut out);
    put_uvarint(&mut out, nspans as u64);
    out.extend_from_slice(spans_bytes);
    out
}

pub(crate) fn decode_run(payload: &[u8]) -> Option<Vec<Span>> {
    let mut r = Reader::new(payload);
    let table = decode_table(&mut r)?;
    let n = r.len(payload.len())?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(read_span(&mut r, &table)?);
    }
    r.is_empty().then_some(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A span with every field set and every kind of attribute value.
    pub fn full_span(trace: u8, span: u8, start: i64) -> Span {
        let resource = Arc::new(Resource {
            attributes: vec![
                Attribute::str("service.name", format!("svc-{}", trace % 3)),
                Attribute::new("host.cpus", AttrValue::Int(8)),
            ],
            dropped_attributes: 2,
        });
        let scope = Arc::new(Scope {
            name: "lib".into(),
            version: "1.2.3".into(),
            attributes: vec![Attribute::new("scope.flag", AttrValue::Bool(true))],
        });
        let every = vec![
            Attribute::str("s", "héllo"),
            Attribute::new("i", AttrValue::Int(-42)),
            Attribute::new("f", AttrValue::Float(-0.5)),
            Attribute::new("b", AttrValue::Bool(false)),
            Attribute::new("y", AttrValue::Bytes(vec![0, 255, 7])),
            Attribute::new(
                "a",
                AttrValue::Array(vec![AttrValue::Int(1), AttrValue::Str("x".into())]),
            ),
            Attribute::new(
                "m",
                AttrValue::Map(vec![Attribute::new(
                    "inner",
                    AttrValue::Array(vec![AttrValue::Float(f64::INFINITY)]),
                )]),
            ),
        ];
        Span {
            trace_id: [trace; 16],
            span_id: [span; 8],
            parent_span_id: (span > 1).then_some([span - 1; 8]),
            trace_state: "k=v".into(),
            flags: 0x101,
            name: format!("op-{span}"),
            kind: SpanKind::from_i32(i32::from(span % 6)).unwrap(),
            start_ns: start,
            end_ns: start + 1_000 * i64::from(span),
            attributes: every.clone(),
            dropped_attributes: 3,
            events: vec![SpanEvent {
                time_ns: start + 5,
                name: "exception".into(),
                attributes: every.clone(),
                dropped_attributes: 1,
            }],
            dropped_events: 4,
            links: vec![SpanLink {
                trace_id: [9; 16],
                span_id: [8; 8],
                trace_state: "a=b".into(),
                attributes: every,
                dropped_attributes: 5,
            }],
            dropped_links: 6,
            status: StatusCode::from_i32(i32::from(span % 3)).unwrap(),
            status_message: "bad things".into(),
            resource,
            scope,
        }
    }

    #[test]
    fn runs_round_trip_every_field_and_garbage_is_refused() {
        let spans: Vec<Span> = (1..5)
            .map(|i| full_span(7, i, 1_000 * i64::from(i)))
            .collect();
        let mut tables = Tables::default();
        let mut buf = Vec::new();
        for s in &spans {
            put_span(&mut buf, &mut tables, s);
        }
        let payload = encode_run(&tables, &buf, spans.len());
        let back = decode_run(&payload).unwrap();
        assert_eq!(back, spans);
        // Different `Arc`s of equal resources share one table entry.
        assert_eq!(tables.resources.len(), 1);
        for cut in 0..payload.len() {
            assert!(decode_run(&payload[..cut]).is_none(), "prefix {cut}");
        }
    }

    #[test]
    fn mangled_runs_never_panic() {
        let spans: Vec<Span> = (1..4).map(|i| full_span(2, i, 0)).collect();
        let mut tables = Tables::default();
        let mut buf = Vec::new();
        for s in &spans {
            put_span(&mut buf, &mut tables, s);
        }
        let payload = encode_run(&tables, &buf, spans.len());
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut p = payload.clone();
            for k in 0..1 + (x % 4) as usize {
                let at = (x.rotate_left(k as u32 * 16) % p.len() as u64) as usize;
                p[at] = (x >> (8 * k)) as u8;
            }
            let _ = decode_run(&p);
        }
        // Deep nesting in corrupt input is refused, not recursed into.
        // (no resources; one scope: empty name and version, one attribute
        // with an empty key whose value is an array of an array of ...)
        let mut deep = vec![0u8, 1, 0, 0, 1, 0];
        deep.extend(std::iter::repeat_n([5u8, 1], 100_000).flatten());
        assert!(decode_run(&deep).is_none());
        let mut shallow = vec![0u8, 1, 0, 0, 1, 0];
        shallow.extend(std::iter::repeat_n([5u8, 1], 3).flatten());
        shallow.extend([1, 2, 0]); // Int(1), then no spans
        assert_eq!(decode_run(&shallow), Some(Vec::new()));
    }
}
