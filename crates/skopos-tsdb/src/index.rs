//! In-memory inverted index shared by the head and by loaded blocks: a
//! symbol table (every label string stored once) and postings
//! (label name → label value → sorted series refs), answering the four
//! Prometheus matcher kinds.

use std::collections::HashMap;
use std::sync::Arc;

use skopos_model::{Label, Labels, MatchOp, Matcher};

/// Interned strings. Series store `u32` symbol ids instead of strings.
/// Reference-counted, so the head's table does not grow forever with
/// series churn: a released symbol's id is reused.
#[derive(Debug, Default)]
pub struct Symbols {
    strs: Vec<Arc<str>>,
    refs: Vec<u32>,
    free: Vec<u32>,
    map: HashMap<Arc<str>, u32>,
}

impl Symbols {
    pub fn intern(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.map.get(s) {
            self.refs[id as usize] = self.refs[id as usize].saturating_add(1);
            return id;
        }
        let a: Arc<str> = Arc::from(s);
        let id = match self.free.pop() {
            Some(id) => {
                self.strs[id as usize] = a.clone();
                self.refs[id as usize] = 1;
                id
            }
            None => {
                self.strs.push(a.clone());
                self.refs.push(1);
                (self.strs.len() - 1) as u32
            }
        };
        self.map.insert(a, id);
        id
    }

    /// Drops one reference taken by [`Symbols::intern`].
    pub fn release(&mut self, id: u32) {
        let r = &mut self.refs[id as usize];
        *r = r.saturating_sub(1);
        if *r == 0 {
            let s = std::mem::replace(&mut self.strs[id as usize], Arc::from(""));
            self.map.remove(&s);
            self.free.push(id);
        }
    }

    /// Live (referenced) symbols.
    pub fn live(&self) -> usize {
        self.map.len()
    }

    pub fn lookup(&self, s: &str) -> Option<u32> {
        self.map.get(s).copied()
    }

    pub fn get(&self, id: u32) -> &str {
        &self.strs[id as usize]
    }

    /// All symbols by id (only meaningful while none was released).
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.strs.iter().map(|s| &**s)
    }

    /// Resolves interleaved (name, value) symbol ids to labels.
    pub fn labels(&self, syms: &[u32]) -> Labels {
        let v = syms
            .chunks_exact(2)
            .map(|p| Label {
                name: self.get(p[0]).to_string(),
                value: self.get(p[1]).to_string(),
            })
            .collect();
        // Stored label sets are already valid, sorted and unique.
        Labels::from_sorted_checked(v).unwrap_or_default()
    }

    /// Label symbol pairs equal `labels`?
    pub fn labels_eq(&self, syms: &[u32], labels: &Labels) -> bool {
        syms.len() == labels.len() * 2
            && syms
                .chunks_exact(2)
                .zip(labels.iter())
                .all(|(p, l)| self.get(p[0]) == l.name && self.get(p[1]) == l.value)
    }
}

/// Postings for one kind of series ref (`u64` head refs, `u32` block ids).
#[derive(Debug)]
pub struct MemIndex<R> {
    pub symbols: Symbols,
    pub postings: HashMap<u32, HashMap<u32, Vec<R>>>,
}

impl<R> Default for MemIndex<R> {
    fn default() -> Self {
        MemIndex {
            symbols: Symbols::default(),
            postings: HashMap::new(),
        }
    }
}

fn intersect<R: Ord + Copy>(a: &[R], b: &[R]) -> Vec<R> {
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

fn subtract<R: Ord + Copy>(a: Vec<R>, b: &[R]) -> Vec<R> {
    if b.is_empty() {
        return a;
    }
    let mut j = 0;
    a.into_iter()
        .filter(|x| {
            while j < b.len() && b[j] < *x {
                j += 1;
            }
            !(j < b.len() && b[j] == *x)
        })
        .collect()
}

impl<R: Ord + Copy> MemIndex<R> {
    /// Adds `r` to the postings of each label; `r` must be larger than every
    /// ref added before (refs are allocated increasingly), keeping lists sorted.
    pub fn add_sorted(&mut self, r: R, syms: &[u32]) {
        for p in syms.chunks_exact(2) {
            let list = self
                .postings
                .entry(p[0])
                .or_default()
                .entry(p[1])
                .or_default();
            if list.len() == list.capacity() {
                // Most lists (e.g. per-instance values) hold one or two refs.
                list.reserve_exact((list.len() / 4).max(1));
            }
            if list.last().is_none_or(|l| *l < r) {
                list.push(r);
            } else if let Err(i) = list.binary_search(&r) {
                list.insert(i, r);
            }
        }
    }

    /// Removes refs (sorted) from every postings list; drops empty lists.
    pub fn remove(&mut self, removed: &[R]) {
        for values in self.postings.values_mut() {
            for list in values.values_mut() {
                let kept = subtract(std::mem::take(list), removed);
                *list = kept;
            }
            values.retain(|_, l| !l.is_empty());
        }
        self.postings.retain(|_, v| !v.is_empty());
    }

    pub fn all(&self) -> Vec<R> {
        let name = self.symbols.lookup(skopos_model::METRIC_NAME);
        let mut out: Vec<R> = match name.and_then(|n| self.postings.get(&n)) {
            // Every stored series has a metric name.
            Some(values) => values.values().flatten().copied().collect(),
            None => self
                .postings
                .values()
                .flat_map(|v| v.values().flatten())
                .copied()
                .collect(),
        };
        out.sort_unstable();
        out.dedup();
        out
    }

    fn union_where(&self, name: &str, pred: impl Fn(&str) -> bool) -> Vec<R> {
        let Some(values) = self
            .symbols
            .lookup(name)
            .and_then(|n| self.postings.get(&n))
        else {
            return Vec::new();
        };
        let lists: Vec<&Vec<R>> = values
            .iter()
            .filter(|(v, _)| pred(self.symbols.get(**v)))
            .map(|(_, l)| l)
            .collect();
        union(lists)
    }

    fn union_values(&self, name: &str, wanted: &[String]) -> Vec<R> {
        let Some(values) = self
            .symbols
            .lookup(name)
            .and_then(|n| self.postings.get(&n))
        else {
            return Vec::new();
        };
        let lists: Vec<&Vec<R>> = wanted
            .iter()
            .filter_map(|w| self.symbols.lookup(w))
            .filter_map(|v| values.get(&v))
            .collect();
        union(lists)
    }

    /// Refs of series having label `m.name` with a value that (does / does
    /// not, per `want`) satisfy `m`.
    fn with_value(&self, m: &Matcher, want: bool) -> Vec<R> {
        let positive = matches!(m.op, MatchOp::Equal | MatchOp::RegexMatch) == want;
        match m.op {
            MatchOp::Equal | MatchOp::NotEqual if positive => {
                self.union_values(&m.name, std::slice::from_ref(&m.value))
            }
            MatchOp::RegexMatch | MatchOp::RegexNoMatch if positive => match m.set_matches() {
                Some(set) => self.union_values(&m.name, &set),
                None => self.union_where(&m.name, |v| m.matches(v) == want),
            },
            _ => self.union_where(&m.name, |v| m.matches(v) == want),
        }
    }

    /// Sorted refs of the series selected by all matchers. Matchers that
    /// accept the empty string also select series lacking the label; if
    /// every matcher accepts it (or there are none), all series are candidates.
    pub fn select(&self, matchers: &[Matcher]) -> Vec<R> {
        let mut result: Option<Vec<R>> = None;
        for m in matchers.iter().filter(|m| !m.matches_empty()) {
            let p = self.with_value(m, true);
            let next = match result {
                None => p,
                Some(r) => intersect(&r, &p),
            };
            if next.is_empty() {
                return next;
            }
            result = Some(next);
        }
        let mut result = result.unwrap_or_else(|| self.all());
        for m in matchers.iter().filter(|m| m.matches_empty()) {
            if result.is_empty() {
                break;
            }
            let excluded = self.with_value(m, false);
            result = subtract(result, &excluded);
        }
        result
    }

    pub fn label_names(&self) -> Vec<String> {
        self.postings
            .keys()
            .map(|n| self.symbols.get(*n).to_string())
            .collect()
    }

    pub fn label_values(&self, name: &str) -> Vec<String> {
        match self
            .symbols
            .lookup(name)
            .and_then(|n| self.postings.get(&n))
        {
            Some(values) => values
                .keys()
                .map(|v| self.symbols.get(*v).to_string())
                .collect(),
            None => Vec::new(),
        }
    }
}

fn union<R: Ord + Copy>(lists: Vec<&Vec<R>>) -> Vec<R> {
    match lists.len() {
        0 => Vec::new(),
        1 => lists[0].clone(),
        _ => {
            let mut out: Vec<R> = lists.into_iter().flatten().copied().collect();
            out.sort_unstable();
            out.dedup();
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> (MemIndex<u32>, Vec<Labels>) {
        let sets = vec![
            Labels::from_pairs([("__name__", "up"), ("job", "api"), ("env", "prod")]),
            Labels::from_pairs([("__name__", "up"), ("job", "db")]),
            Labels::from_pairs([("__name__", "up"), ("job", "web"), ("env", "dev")]),
            Labels::from_pairs([("__name__", "down"), ("job", "api")]),
        ];
        let mut ix = MemIndex::default();
        for (i, l) in sets.iter().enumerate() {
            let syms: Vec<u32> = l
                .iter()
                .flat_map(|l| [l.name.as_str(), l.value.as_str()])
                .map(|s| ix.symbols.intern(s))
                .collect();
            ix.add_sorted(i as u32, &syms);
        }
        (ix, sets)
    }

    fn m(op: MatchOp, n: &str, v: &str) -> Matcher {
        Matcher::new(op, n, v).unwrap()
    }

    #[test]
    fn selects_like_a_linear_scan() {
        use MatchOp::*;
        let (ix, sets) = index();
        let cases: Vec<Vec<Matcher>> = vec![
            vec![m(Equal, "__name__", "up")],
            vec![m(Equal, "__name__", "up"), m(NotEqual, "job", "api")],
            vec![m(RegexMatch, "job", "api|db")],
            vec![m(RegexMatch, "job", "a.*"), m(Equal, "__name__", "up")],
            vec![m(RegexNoMatch, "job", "api|web")],
            vec![m(RegexNoMatch, "job", "w.b")],
            vec![m(Equal, "env", "")],
            vec![m(NotEqual, "env", "")],
            vec![m(RegexMatch, "env", "prod|")],
            vec![m(RegexMatch, "env", ".*")],
            vec![m(Equal, "nope", "x")],
            vec![],
        ];
        for ms in cases {
            let want: Vec<u32> = (0..sets.len() as u32)
                .filter(|i| ms.iter().all(|m| m.matches_labels(&sets[*i as usize])))
                .collect();
            assert_eq!(ix.select(&ms), want, "matchers {ms:?}");
        }
    }

    #[test]
    fn released_symbols_are_reused() {
        let mut s = Symbols::default();
        let a = s.intern("a");
        assert_eq!(s.intern("a"), a);
        let b = s.intern("b");
        s.release(a);
        assert_eq!(s.lookup("a"), Some(a), "still referenced once");
        s.release(a);
        assert_eq!(s.lookup("a"), None);
        assert_eq!(s.intern("c"), a, "id reused");
        assert_eq!(s.get(a), "c");
        assert_eq!(s.get(b), "b");
        assert_eq!(s.live(), 2);
    }

    #[test]
    fn remove_drops_refs_and_empty_values() {
        let (mut ix, _) = index();
        ix.remove(&[0, 2]);
        assert_eq!(ix.all(), vec![1, 3]);
        assert!(ix.label_values("env").is_empty());
    }
}
