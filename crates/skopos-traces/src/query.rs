//! Reads: trace by id, search, tag names and values, over the head, the
//! head being flushed and the segments.
//!
//! A search gathers eagerly the traces it cannot judge block by block — the
//! head's, and traces marked `split` (spans in more than one segment), which
//! it assembles whole — and lazily the rest: the blocks that the time
//! range, the longest span and the index allow, in order of their newest
//! span. A trace is handed out only once no unread block could hold a newer
//! one, so the caller gets traces newest first and a search that stops
//! early reads only the newest blocks.

use std::cmp::Ordering as Cmp;
use std::collections::{BTreeSet, BinaryHeap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use skopos_model::{
    find_attr, AttrValue, Span, SpanField, StorageError, TagNames, Trace, TraceId, TraceQueryable,
    TraceSelect,
};

use crate::segment::{
    key_hash, typed_values, value_hash, Segment, FIELD_KIND, FIELD_NAME, FIELD_RESOURCE,
    FIELD_SERVICE, FIELD_SPAN, FIELD_STATUS,
};
use crate::{Head, Store, TracesError};

/// Whether span `s` has `field` equal to `value` (as text).
pub(crate) fn span_has(s: &Span, field: &SpanField, value: &str) -> bool {
    let text = |v: Option<&AttrValue>| v.is_some_and(|v| v.text() == value);
    match field {
        SpanField::Name => s.name == value,
        SpanField::ServiceName => s.service_name() == value,
        SpanField::Status => s.status.name() == value,
        SpanField::Kind => s.kind.name() == value,
        SpanField::SpanAttr(k) => text(find_attr(&s.attributes, k)),
        SpanField::ResourceAttr(k) => text(find_attr(&s.resource.attributes, k)),
        SpanField::AnyAttr(k) => match find_attr(&s.attributes, k) {
            Some(v) => v.text() == value,
            None => text(find_attr(&s.resource.attributes, k)),
        },
    }
}

/// Whether the spans of a trace meet every hint of `sel`.
pub(crate) fn trace_matches(spans: &[Span], sel: &TraceSelect) -> bool {
    sel.equals
        .iter()
        .all(|(f, v)| spans.iter().any(|s| span_has(s, f, v)))
        && sel
            .min_span_duration_ns
            .is_none_or(|d| spans.iter().any(|s| s.duration_ns() >= d))
}

/// The earliest start in `[start, end)`, if a span starts there.
fn key_in_range(spans: &[Span], sel: &TraceSelect) -> Option<i64> {
    spans
        .iter()
        .map(|s| s.start_ns)
        .filter(|&t| t >= sel.start && t < sel.end)
        .min()
}

/// Sorts by start (then span id) and drops repeated span ids.
fn finish(trace_id: TraceId, mut spans: Vec<Span>) -> Trace {
    let mut seen = HashSet::with_capacity(spans.len());
    spans.retain(|s| seen.insert(s.span_id));
    spans.sort_by_key(|s| (s.start_ns, s.span_id));
    Trace { trace_id, spans }
}

/// Blocks of `seg` that may hold a span with `field` = `value`.
fn index_blocks(seg: &Segment, field: &SpanField, value: &str) -> Vec<u32> {
    let look = |f: u8, key: &str| -> Vec<u32> {
        match seg.index.get(&(f, key.to_string())) {
            None => Vec::new(),
            // Overflowed: the block filters know every value, the
            // dictionary only some.
            Some(k) if k.overflow => {
                let h = value_hash(key_hash(f, key), value);
                (0..seg.blocks.len() as u32)
                    .filter(|&b| seg.filters[b as usize].binary_search(&h).is_ok())
                    .collect()
            }
            Some(k) => k.values.get(value).map(|v| v.1.clone()).unwrap_or_default(),
        }
    };
    match field {
        SpanField::Name => look(FIELD_NAME, ""),
        SpanField::ServiceName => look(FIELD_SERVICE, ""),
        SpanField::Status => look(FIELD_STATUS, ""),
        SpanField::Kind => look(FIELD_KIND, ""),
        SpanField::SpanAttr(k) => look(FIELD_SPAN, k),
        SpanField::ResourceAttr(k) => look(FIELD_RESOURCE, k),
        SpanField::AnyAttr(k) => {
            let mut a = look(FIELD_SPAN, k);
            a.extend(look(FIELD_RESOURCE, k));
            a.sort_unstable();
            a.dedup();
            a
        }
    }
}

/// Blocks of `seg` a search must read.
fn candidate_blocks(seg: &Segment, sel: &TraceSelect) -> Vec<usize> {
    if seg.blocks.is_empty() || seg.max_start < sel.start || seg.min_start >= sel.end {
        return Vec::new();
    }
    let mut allowed: Option<Vec<bool>> = None;
    for (field, value) in &sel.equals {
        let mut these = vec![false; seg.blocks.len()];
        for b in index_blocks(seg, field, value) {
            these[b as usize] = true;
        }
        allowed = Some(match allowed {
            None => these,
            Some(a) => a.iter().zip(&these).map(|(x, y)| *x && *y).collect(),
        });
    }
    seg.blocks
        .iter()
        .enumerate()
        .filter(|(i, b)| {
            b.max_start >= sel.start
                && b.min_start < sel.end
                && sel.min_span_duration_ns.is_none_or(|d| b.max_duration >= d)
                && allowed.as_ref().is_none_or(|a| a[*i])
        })
        .map(|(i, _)| i)
        .collect()
}

/// A trace ready to hand out, ordered by its key: whole, or a head trace
/// that is read (whole, with any spans added since) only when handed out.
struct Ready(i64, u64, Pending);

enum Pending {
    Trace(Trace),
    Head(TraceId),
}

impl PartialEq for Ready {
    fn eq(&self, o: &Self) -> bool {
        (self.0, self.1) == (o.0, o.1)
    }
}
impl Eq for Ready {}
impl PartialOrd for Ready {
    fn partial_cmp(&self, o: &Self) -> Option<Cmp> {
        Some(self.cmp(o))
    }
}
impl Ord for Ready {
    fn cmp(&self, o: &Self) -> Cmp {
        // Newest first; among equals, first found first.
        self.0.cmp(&o.0).then(o.1.cmp(&self.1))
    }
}

impl Store {
    /// Spans of trace `id` in a head, cloned.
    fn head_spans(h: &Head, id: &TraceId, out: &mut Vec<Span>) {
        if let Some(t) = h.traces.get(id) {
            out.extend(t.spans.iter().cloned());
        }
    }

    fn read_block(&self, seg: &Segment, i: usize) -> Result<Vec<u8>, TracesError> {
        self.blocks_read.fetch_add(1, Ordering::Relaxed);
        seg.read_block(i)
    }

    /// Every stored span of trace `id`, or `None` if it has none.
    pub fn trace_by_id(&self, id: &TraceId) -> Result<Option<Trace>, TracesError> {
        let (segments, mut spans) = {
            let parts = self.parts.read();
            let mut spans = Vec::new();
            if let Some(f) = &parts.flushing {
                Self::head_spans(f, id, &mut spans);
            }
            Self::head_spans(&parts.head, id, &mut spans);
            (parts.segments.clone(), spans)
        };
        for seg in &segments {
            if let Some(e) = seg.find(id) {
                let raw = self.read_block(seg, e.block as usize)?;
                for (_, s) in seg.decode_block(&raw, Some(id))? {
                    spans.extend(s);
                }
            }
        }
        Ok((!spans.is_empty()).then(|| finish(*id, spans)))
    }

    /// Could trace `id`, split over parts, have a span starting in range?
    fn split_in_range(
        segments: &[Arc<Segment>],
        heads: &[&Head],
        id: &TraceId,
        sel: &TraceSelect,
    ) -> bool {
        segments.iter().any(|s| {
            s.find(id)
                .is_some_and(|e| e.max_start >= sel.start && e.min_start < sel.end)
        }) || heads.iter().any(|h| {
            h.traces
                .get(id)
                .is_some_and(|t| key_in_range(&t.spans, sel).is_some())
        })
    }

    /// Traces matching `sel`, newest first, handed to `f` until it returns
    /// false. Whole traces: every stored span of each.
    pub fn search(
        &self,
        sel: &TraceSelect,
        f: &mut dyn FnMut(Trace) -> bool,
    ) -> Result<(), TracesError> {
        if sel.end <= sel.start {
            return Ok(());
        }
        let mut ready = BinaryHeap::new();
        let mut seq = 0u64;
        let mut push = |ready: &mut BinaryHeap<Ready>, key: i64, t: Pending| {
            seq += 1;
            ready.push(Ready(key, seq, t));
        };
        let (segments, split_ids) = {
            let parts = self.parts.read();
            let heads: Vec<&Head> = parts
                .flushing
                .as_deref()
                .into_iter()
                .chain([&parts.head])
                .collect();
            let mut split: HashSet<TraceId> = HashSet::new();
            for s in &parts.segments {
                split.extend(s.split.iter().copied());
            }
            for h in &heads {
                split.extend(h.traces.iter().filter(|t| t.1.is_split()).map(|t| *t.0));
            }
            // A trace in both heads is split too (the flushing one has it
            // with no prior, the current one with).
            for h in &heads {
                for (id, t) in &h.traces {
                    if split.contains(id) {
                        continue;
                    }
                    if let Some(key) = key_in_range(&t.spans, sel) {
                        if trace_matches(&t.spans, sel) {
                            push(&mut ready, key, Pending::Head(*id));
                        }
                    }
                }
            }
            let split_ids: Vec<TraceId> = split
                .into_iter()
                .filter(|id| Self::split_in_range(&parts.segments, &heads, id, sel))
                .collect();
            (parts.segments.clone(), split_ids)
        };
        let split_set: HashSet<TraceId> = split_ids.iter().copied().collect();
        for id in &split_ids {
            if let Some(t) = self.trace_by_id(id)? {
                if let Some(key) = key_in_range(&t.spans, sel) {
                    if trace_matches(&t.spans, sel) {
                        push(&mut ready, key, Pending::Trace(t));
                    }
                }
            }
        }
        // Blocks to read, by the newest start they can hold in range.
        let mut blocks: Vec<(i64, usize, usize)> = Vec::new();
        for (si, seg) in segments.iter().enumerate() {
            for bi in candidate_blocks(seg, sel) {
                let bound = seg.blocks[bi].max_start.min(sel.end - 1);
                blocks.push((bound, si, bi));
            }
        }
        blocks.sort_unstable_by(|a, b| b.cmp(a));
        let mut next = 0;
        let mut emitted: HashSet<TraceId> = HashSet::new();
        loop {
            let block_bound = blocks.get(next).map(|b| b.0);
            let emit = match (ready.peek(), block_bound) {
                (None, None) => return Ok(()),
                (Some(_), None) => true,
                (Some(r), Some(b)) => r.0 >= b,
                (None, Some(_)) => false,
            };
            if emit {
                let t = match ready.pop().expect("peeked").2 {
                    Pending::Trace(t) => t,
                    Pending::Head(id) => match self.trace_by_id(&id)? {
                        Some(t) => t,
                        None => continue,
                    },
                };
                if emitted.insert(t.trace_id) && !f(t) {
                    return Ok(());
                }
                continue;
            }
            let (_, si, bi) = blocks[next];
            next += 1;
            let seg = &segments[si];
            let raw = self.read_block(seg, bi)?;
            for (id, spans) in seg.decode_block(&raw, None)? {
                if split_set.contains(&id) {
                    continue;
                }
                if let Some(key) = key_in_range(&spans, sel) {
                    if trace_matches(&spans, sel) {
                        push(&mut ready, key, Pending::Trace(finish(id, spans)));
                    }
                }
            }
        }
    }

    /// Span and resource attribute keys on spans starting in `[start, end)`
    /// (for segments: keys of the segments overlapping the range).
    pub fn tag_names(&self, start: i64, end: i64) -> TagNames {
        let mut span = BTreeSet::new();
        let mut resource = BTreeSet::new();
        let parts = self.parts.read();
        for h in parts.flushing.as_deref().into_iter().chain([&parts.head]) {
            for t in h.traces.values() {
                for s in t
                    .spans
                    .iter()
                    .filter(|s| s.start_ns >= start && s.start_ns < end)
                {
                    for a in &s.attributes {
                        if !span.contains(&a.key) {
                            span.insert(a.key.clone());
                        }
                    }
                    for a in &s.resource.attributes {
                        if !resource.contains(&a.key) {
                            resource.insert(a.key.clone());
                        }
                    }
                }
            }
        }
        for seg in &parts.segments {
            if seg.max_start < start || seg.min_start >= end {
                continue;
            }
            for (field, key) in seg.index.keys() {
                match *field {
                    FIELD_SPAN => span.insert(key.clone()),
                    FIELD_RESOURCE => resource.insert(key.clone()),
                    _ => false,
                };
            }
        }
        TagNames {
            span: span.into_iter().collect(),
            resource: resource.into_iter().collect(),
        }
    }

    /// Distinct values of `field` on spans starting in `[start, end)`, at
    /// most `limit` (segments answer from their index, which holds at most
    /// a bounded number of values per key).
    pub fn tag_values(
        &self,
        field: &SpanField,
        start: i64,
        end: i64,
        limit: usize,
    ) -> Vec<AttrValue> {
        let mut seen: HashSet<(u8, String)> = HashSet::new();
        let mut out = Vec::new();
        let mut add = |v: AttrValue, out: &mut Vec<AttrValue>| {
            if out.len() < limit && seen.insert((tag(&v), v.to_text())) {
                out.push(v);
            }
        };
        let parts = self.parts.read();
        'heads: for h in parts.flushing.as_deref().into_iter().chain([&parts.head]) {
            for t in h.traces.values() {
                for s in t
                    .spans
                    .iter()
                    .filter(|s| s.start_ns >= start && s.start_ns < end)
                {
                    if out.len() >= limit {
                        break 'heads;
                    }
                    if let Some(v) = field_value(s, field) {
                        add(v, &mut out);
                    }
                }
            }
        }
        let fields: &[(u8, &str)] = match field {
            SpanField::Name => &[(FIELD_NAME, "")],
            SpanField::ServiceName => &[(FIELD_SERVICE, "")],
            SpanField::Status => &[(FIELD_STATUS, "")],
            SpanField::Kind => &[(FIELD_KIND, "")],
            SpanField::SpanAttr(k) => &[(FIELD_SPAN, k.as_str())],
            SpanField::ResourceAttr(k) => &[(FIELD_RESOURCE, k.as_str())],
            SpanField::AnyAttr(k) => &[(FIELD_SPAN, k.as_str()), (FIELD_RESOURCE, k.as_str())],
        };
        let mut typed = Vec::new();
        for seg in &parts.segments {
            if seg.max_start < start || seg.min_start >= end {
                continue;
            }
            for (f, key) in fields {
                if let Some(k) = seg.index.get(&(*f, key.to_string())) {
                    let mut values: Vec<_> = k.values.iter().collect();
                    values.sort_unstable_by(|a, b| a.0.cmp(b.0));
                    for (text, (kinds, _)) in values {
                        if out.len() >= limit {
                            return out;
                        }
                        typed.clear();
                        typed_values(text, *kinds, &mut typed);
                        for v in typed.drain(..) {
                            add(v, &mut out);
                        }
                    }
                }
            }
        }
        out
    }
}

fn tag(v: &AttrValue) -> u8 {
    match v {
        AttrValue::Str(_) => 0,
        AttrValue::Int(_) => 1,
        AttrValue::Float(_) => 2,
        AttrValue::Bool(_) => 3,
        AttrValue::Bytes(_) => 4,
        AttrValue::Array(_) => 5,
        AttrValue::Map(_) => 6,
    }
}

/// The value of `field` on `s`, as tag values list it.
fn field_value(s: &Span, field: &SpanField) -> Option<AttrValue> {
    let str = |x: &str| Some(AttrValue::Str(x.to_string()));
    // Segments list non-scalar values as text; the head does the same.
    let scalar = |v: &AttrValue| match v {
        AttrValue::Str(_) | AttrValue::Int(_) | AttrValue::Float(_) | AttrValue::Bool(_) => {
            v.clone()
        }
        other => AttrValue::Str(other.to_text()),
    };
    match field {
        SpanField::Name => str(&s.name),
        SpanField::ServiceName => str(s.service_name()),
        SpanField::Status => str(s.status.name()),
        SpanField::Kind => str(s.kind.name()),
        SpanField::SpanAttr(k) => find_attr(&s.attributes, k).map(scalar),
        SpanField::ResourceAttr(k) => find_attr(&s.resource.attributes, k).map(scalar),
        SpanField::AnyAttr(k) => find_attr(&s.attributes, k)
            .or_else(|| find_attr(&s.resource.attributes, k))
            .map(scalar),
    }
}

impl TraceQueryable for Store {
    fn trace(&self, id: &TraceId) -> Result<Option<Trace>, StorageError> {
        self.trace_by_id(id).map_err(Into::into)
    }

    fn select_traces(
        &self,
        sel: &TraceSelect,
        f: &mut dyn FnMut(Trace) -> bool,
    ) -> Result<(), StorageError> {
        self.search(sel, f).map_err(Into::into)
    }

    fn tag_names(&self, start: i64, end: i64) -> Result<TagNames, StorageError> {
        Ok(Store::tag_names(self, start, end))
    }

    fn tag_values(
        &self,
        field: &SpanField,
        start: i64,
        end: i64,
        limit: usize,
    ) -> Result<Vec<AttrValue>, StorageError> {
        Ok(Store::tag_values(self, field, start, end, limit))
    }
}
