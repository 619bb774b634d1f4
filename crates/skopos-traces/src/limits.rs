//! Span limits applied on append, the way OpenTelemetry SDKs apply theirs:
//! attributes, events and links past their count limits are dropped and
//! counted in the matching `dropped_*` field; strings and byte strings
//! longer than the value limit are cut; values nested deeper than
//! [`FLATTEN_DEPTH`] become their text. The span itself is kept.

use std::collections::HashMap;
use std::sync::Arc;

use skopos_model::{AttrValue, Attribute, Resource, Scope, Span};

use crate::Options;

/// Array and map values nested this deep are replaced by their text.
pub(crate) const FLATTEN_DEPTH: usize = 8;

/// Resources and scopes already limited in this batch, by pointer, so that
/// spans sharing one keep sharing it.
#[derive(Default)]
pub(crate) struct Cache {
    resources: HashMap<usize, (Arc<Resource>, bool)>,
    scopes: HashMap<usize, (Arc<Scope>, bool)>,
}

/// Applies the limits to `s`; true if anything was dropped or cut.
pub(crate) fn apply(s: &mut Span, o: &Options, cache: &mut Cache) -> bool {
    let max = o.max_attribute_value_bytes;
    let mut changed = false;
    changed |= attrs(&mut s.attributes, &mut s.dropped_attributes, o);
    changed |= cut(&mut s.name, max);
    changed |= cut(&mut s.status_message, max);
    changed |= cut(&mut s.trace_state, max);
    if s.events.len() > o.max_events_per_span {
        let excess = s.events.len() - o.max_events_per_span;
        s.dropped_events = s.dropped_events.saturating_add(excess as u32);
        s.events.truncate(o.max_events_per_span);
        changed = true;
    }
    for e in &mut s.events {
        changed |= cut(&mut e.name, max);
        changed |= attrs(&mut e.attributes, &mut e.dropped_attributes, o);
    }
    if s.links.len() > o.max_links_per_span {
        let excess = s.links.len() - o.max_links_per_span;
        s.dropped_links = s.dropped_links.saturating_add(excess as u32);
        s.links.truncate(o.max_links_per_span);
        changed = true;
    }
    for l in &mut s.links {
        changed |= cut(&mut l.trace_state, max);
        changed |= attrs(&mut l.attributes, &mut l.dropped_attributes, o);
    }
    let ptr = Arc::as_ptr(&s.resource) as usize;
    let (r, c) = cache.resources.entry(ptr).or_insert_with(|| {
        let mut r = (*s.resource).clone();
        let c = attrs(&mut r.attributes, &mut r.dropped_attributes, o);
        if c {
            (Arc::new(r), true)
        } else {
            (s.resource.clone(), false)
        }
    });
    if *c {
        s.resource = r.clone();
        changed = true;
    }
    let ptr = Arc::as_ptr(&s.scope) as usize;
    let (sc, c) = cache.scopes.entry(ptr).or_insert_with(|| {
        let mut sc = (*s.scope).clone();
        let mut dropped = 0;
        let mut c = attrs(&mut sc.attributes, &mut dropped, o);
        c |= cut(&mut sc.name, max);
        c |= cut(&mut sc.version, max);
        if c {
            (Arc::new(sc), true)
        } else {
            (s.scope.clone(), false)
        }
    });
    if *c {
        s.scope = sc.clone();
        changed = true;
    }
    changed
}

fn attrs(a: &mut Vec<Attribute>, dropped: &mut u32, o: &Options) -> bool {
    let mut changed = false;
    if a.len() > o.max_attributes_per_span {
        let excess = a.len() - o.max_attributes_per_span;
        *dropped = dropped.saturating_add(excess as u32);
        a.truncate(o.max_attributes_per_span);
        changed = true;
    }
    for x in a.iter_mut() {
        changed |= cut(&mut x.key, o.max_attribute_value_bytes);
        changed |= value(&mut x.value, o, 0);
    }
    changed
}

fn value(v: &mut AttrValue, o: &Options, depth: usize) -> bool {
    let max = o.max_attribute_value_bytes;
    match v {
        AttrValue::Str(s) => cut(s, max),
        AttrValue::Bytes(b) if b.len() > max => {
            b.truncate(max);
            true
        }
        AttrValue::Array(_) | AttrValue::Map(_) if depth >= FLATTEN_DEPTH => {
            let mut text = v.to_text();
            cut(&mut text, max);
            *v = AttrValue::Str(text);
            true
        }
        AttrValue::Array(items) => {
            let mut changed = false;
            if items.len() > o.max_attributes_per_span {
                items.truncate(o.max_attributes_per_span);
                changed = true;
            }
            for x in items {
                changed |= value(x, o, depth + 1);
            }
            changed
        }
        AttrValue::Map(m) => {
            let mut changed = false;
            if m.len() > o.max_attributes_per_span {
                m.truncate(o.max_attributes_per_span);
                changed = true;
            }
            for x in m {
                changed |= cut(&mut x.key, max);
                changed |= value(&mut x.value, o, depth + 1);
            }
            changed
        }
        _ => false,
    }
}

/// Cuts `s` to at most `max` bytes at a character boundary.
fn cut(s: &mut String, max: usize) -> bool {
    if s.len() <= max {
        return false;
    }
    let mut at = max;
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    s.truncate(at);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::tests::full_span;

    #[test]
    fn limits_drop_and_count_excess_and_cut_long_values() {
        let o = Options {
            max_attributes_per_span: 3,
            max_attribute_value_bytes: 4,
            max_events_per_span: 0,
            max_links_per_span: 0,
            ..Options::default()
        };
        let mut s = full_span(1, 2, 0);
        let before = s.attributes.len() as u32;
        s.attributes[0] = Attribute::str("s", "ééé"); // 6 bytes
        let mut cache = Cache::default();
        assert!(apply(&mut s, &o, &mut cache));
        assert_eq!(s.attributes.len(), 3);
        assert_eq!(s.dropped_attributes, 3 + before - 3);
        assert_eq!(s.attributes[0].value, AttrValue::Str("éé".into()));
        assert_eq!(s.name, "op-2");
        assert!(s.events.is_empty() && s.links.is_empty());
        assert_eq!(s.dropped_events, 4 + 1);
        assert_eq!(s.dropped_links, 6 + 1);
        // A span within every limit is left alone.
        let mut ok = full_span(1, 2, 0);
        assert!(!apply(&mut ok, &Options::default(), &mut Cache::default()));
        assert_eq!(ok, full_span(1, 2, 0));
        // Deep nesting is flattened to text, so the codec can read it back.
        let mut deep = AttrValue::Int(1);
        for _ in 0..40 {
            deep = AttrValue::Array(vec![deep]);
        }
        let mut v = deep;
        assert!(value(&mut v, &Options::default(), 0));
        let mut d = 0;
        let mut at = &v;
        while let AttrValue::Array(a) = at {
            d += 1;
            at = &a[0];
        }
        assert_eq!(d, FLATTEN_DEPTH);
        assert!(matches!(at, AttrValue::Str(_)));
    }
}
