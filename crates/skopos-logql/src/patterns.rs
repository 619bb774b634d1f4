//! Log patterns as Loki's pattern ingester finds them (`/loki/api/v1/patterns`):
//! the Drain clustering of log lines (He et al., 2017) with Loki's defaults,
//! one instance per stream, and per pattern the count of lines in 10-second
//! buckets.
//!
//! A line's tokens depend on the stream's format, chosen from its first
//! line: a JSON object (the first string of `log`, `message`, `msg`,
//! `msg_`, `_msg`, `content`, clustered as plain text and shown between
//! `<_>`s), logfmt (keys and values alternate; the values of `ts`, `t`,
//! `traceID`, `time` and `timestamp` are always `<_>`), or plain text,
//! split at blanks, `=` and punctuation other than `_ - . : /` (punctuation
//! and `=` are tokens; the blanks are put back where the cluster's first
//! line had them).
//!
//! Drain: clusters live at the leaves of a tree whose first level is the
//! number of tokens and whose next levels are the leading tokens (up to
//! [`MAX_DEPTH`]; a token with a number (any script), or one past [`MAX_CHILDREN`]
//! children, goes down the `<_>` branch). A line joins the most similar
//! cluster of its leaf (the share of positions with the same token, `<_>`
//! not counted; ties to the one with more `<_>`) when that share is at
//! least [`SIMILARITY`], turning the positions that differ into `<_>`;
//! otherwise it starts a cluster. At most [`MAX_CLUSTERS`] clusters, the
//! least recently used dropped first. Lines longer than
//! [`MAX_LINE_BYTES`] or with fewer than 4 or more than 80 tokens are not
//! clustered.

use std::collections::{BTreeMap, HashMap};

use crate::parsers::{parse_json_object, scan_logfmt, JKind};

/// The wildcard of a pattern.
pub const PARAM: &str = "<_>";
pub const SIMILARITY: f64 = 0.3;
pub const MAX_CLUSTERS: usize = 300;
pub const MAX_CHILDREN: usize = 15;
/// Tree levels below the token count (Loki's depth 30, minus two).
pub const MAX_DEPTH: usize = 28;
pub const MAX_LINE_BYTES: usize = 3000;
const MIN_TOKENS: usize = 4;
const MAX_TOKENS: usize = 80;
/// The bucket width of a pattern's counts, in nanoseconds.
pub const SAMPLE_INTERVAL_NS: i64 = 10_000_000_000;
const JSON_MESSAGE_FIELDS: [&str; 6] = ["log", "message", "msg", "msg_", "_msg", "content"];
const LOGFMT_TIME_KEYS: [&str; 5] = ["ts", "t", "traceID", "time", "timestamp"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Logfmt,
    Text,
}

/// A line as Drain sees it.
struct Tokens {
    tokens: Vec<String>,
    /// Plain text: after which tokens a blank followed (how many).
    spaces: Vec<(usize, usize)>,
}

struct Cluster {
    tokens: Vec<String>,
    spaces: Vec<(usize, usize)>,
    /// The keys from the token-count level down to its leaf.
    path: Vec<String>,
    /// Lines per 10 s bucket (start of the bucket, ns).
    samples: BTreeMap<i64, u64>,
    last_used: u64,
}

#[derive(Default)]
struct Node {
    children: HashMap<String, Node>,
    clusters: Vec<usize>,
}

/// The Drain clustering of one stream.
pub struct Drain {
    format: Option<Format>,
    by_length: HashMap<usize, Node>,
    clusters: Vec<Option<Cluster>>,
    live: usize,
    tick: u64,
    /// Live clusters by when they were last used, oldest first.
    lru: BTreeMap<u64, usize>,
}

impl Default for Drain {
    fn default() -> Self {
        Self::new()
    }
}

impl Drain {
    pub fn new() -> Drain {
        Drain {
            format: None,
            by_length: HashMap::new(),
            clusters: Vec::new(),
            live: 0,
            tick: 0,
            lru: BTreeMap::new(),
        }
    }

    /// Clusters one line stamped `ts` (ns). Lines are expected in time
    /// order within a stream.
    pub fn train(&mut self, line: &str, ts: i64) {
        if line.len() > MAX_LINE_BYTES {
            return;
        }
        let format = *self.format.get_or_insert_with(|| detect(line));
        let Some(t) = tokenize(format, line) else {
            return;
        };
        if t.tokens.len() < MIN_TOKENS || t.tokens.len() > MAX_TOKENS {
            return;
        }
        self.tick += 1;
        let bucket = ts.saturating_sub(ts.rem_euclid(SAMPLE_INTERVAL_NS));
        let id = match self.search(&t.tokens) {
            Some(id) => {
                let c = self.clusters[id].as_mut().expect("a live cluster");
                for (have, new) in c.tokens.iter_mut().zip(&t.tokens) {
                    if have != new && have != PARAM {
                        *have = PARAM.to_string();
                    }
                }
                id
            }
            None => self.add(t),
        };
        let c = self.clusters[id].as_mut().expect("a live cluster");
        self.lru.remove(&c.last_used);
        c.last_used = self.tick;
        self.lru.insert(self.tick, id);
        *c.samples.entry(bucket).or_default() += 1;
    }

    /// The patterns found, each with its counts per 10 s bucket (start in
    /// ns, ascending). Patterns that print the same are merged.
    pub fn patterns(&self) -> BTreeMap<String, BTreeMap<i64, u64>> {
        let mut out: BTreeMap<String, BTreeMap<i64, u64>> = BTreeMap::new();
        for c in self.clusters.iter().flatten() {
            let text = match self.format {
                Some(Format::Json) => format!("{PARAM}{}{PARAM}", join_text(c)),
                Some(Format::Logfmt) => join_logfmt(&c.tokens),
                _ => join_text(c),
            };
            let text = collapse_params(&text);
            if text.is_empty() || text == PARAM {
                continue;
            }
            let merged = out.entry(text).or_default();
            for (t, n) in &c.samples {
                *merged.entry(*t).or_default() += n;
            }
        }
        out
    }

    fn search(&self, tokens: &[String]) -> Option<usize> {
        let mut node = self.by_length.get(&tokens.len())?;
        for (depth, tok) in tokens.iter().enumerate() {
            if depth + 1 >= MAX_DEPTH || depth + 1 == tokens.len() {
                break;
            }
            node = node
                .children
                .get(tok.as_str())
                .or_else(|| node.children.get(PARAM))?;
        }
        let mut best: Option<(usize, f64, usize)> = None;
        for &id in &node.clusters {
            let Some(c) = &self.clusters[id] else {
                continue;
            };
            let (mut same, mut params) = (0usize, 0usize);
            for (a, b) in c.tokens.iter().zip(tokens) {
                if a == PARAM {
                    params += 1;
                } else if a == b {
                    same += 1;
                }
            }
            let sim = same as f64 / tokens.len() as f64;
            let better = match best {
                None => true,
                Some((_, s, p)) => sim > s || (sim == s && params > p),
            };
            if better {
                best = Some((id, sim, params));
            }
        }
        best.filter(|&(_, sim, _)| sim >= SIMILARITY)
            .map(|(id, _, _)| id)
    }

    fn add(&mut self, t: Tokens) -> usize {
        if self.live >= MAX_CLUSTERS {
            if let Some((_, old)) = self.lru.pop_first() {
                self.evict(old);
            }
        }
        let id = self.clusters.len();
        let n = t.tokens.len();
        let mut path = Vec::new();
        let mut node = self.by_length.entry(n).or_default();
        for (depth, tok) in t.tokens.iter().enumerate() {
            if depth + 1 >= MAX_DEPTH || depth + 1 >= n {
                break;
            }
            let key = if node.children.contains_key(tok.as_str()) {
                tok.clone()
            } else if tok.chars().any(char::is_numeric) {
                PARAM.to_string()
            } else if node.children.contains_key(PARAM) {
                if node.children.len() < MAX_CHILDREN {
                    tok.clone()
                } else {
                    PARAM.to_string()
                }
            } else if node.children.len() + 1 < MAX_CHILDREN {
                tok.clone()
            } else {
                PARAM.to_string()
            };
            node = node.children.entry(key.clone()).or_default();
            path.push(key);
        }
        node.clusters.push(id);
        self.clusters.push(Some(Cluster {
            tokens: t.tokens,
            spaces: t.spaces,
            path,
            samples: BTreeMap::new(),
            last_used: self.tick,
        }));
        self.lru.insert(self.tick, id);
        self.live += 1;
        id
    }

    /// Drops cluster `id` from its leaf, and the branches left empty, so
    /// that neither the tree nor a leaf's list grows with evicted clusters.
    fn evict(&mut self, id: usize) {
        let Some(c) = self.clusters[id].take() else {
            return;
        };
        self.live -= 1;
        let n = c.tokens.len();
        /// Removes `id` below `node` along `path`; whether `node` is empty.
        fn prune(node: &mut Node, path: &[String], id: usize) -> bool {
            match path.split_first() {
                None => node.clusters.retain(|&i| i != id),
                Some((key, rest)) => {
                    if let Some(child) = node.children.get_mut(key) {
                        if prune(child, rest, id) {
                            node.children.remove(key);
                        }
                    }
                }
            }
            node.clusters.is_empty() && node.children.is_empty()
        }
        if let Some(top) = self.by_length.get_mut(&n) {
            if prune(top, &c.path, id) {
                self.by_length.remove(&n);
            }
        }
    }
}

fn detect(line: &str) -> Format {
    let l = line.trim();
    if l.starts_with('{') && l.ends_with('}') {
        return Format::Json;
    }
    // logfmt: `key=value` pairs and nothing else.
    let (mut pairs, mut bare) = (0, 0);
    let _ = scan_logfmt(l, false, |k, v| {
        if !k.is_empty() && !v.is_empty() {
            pairs += 1;
        } else {
            bare += 1;
        }
    });
    if pairs > 0 && bare == 0 && l.split_once('=').is_some_and(|(k, _)| !k.contains(' ')) {
        Format::Logfmt
    } else {
        Format::Text
    }
}

fn tokenize(format: Format, line: &str) -> Option<Tokens> {
    match format {
        Format::Text => Some(tokenize_text(line)),
        Format::Json => {
            let obj = parse_json_object(line).ok()?;
            let JKind::Obj(members) = obj.kind else {
                return None;
            };
            let msg = JSON_MESSAGE_FIELDS.iter().find_map(|f| {
                members.iter().find_map(|(k, v)| match &v.kind {
                    JKind::Str(s) if k == f => Some(s.clone()),
                    _ => None,
                })
            })?;
            Some(tokenize_text(&msg))
        }
        Format::Logfmt => {
            let mut tokens = Vec::new();
            let _ = scan_logfmt(line, false, |k, v| {
                tokens.push(k.to_string());
                if LOGFMT_TIME_KEYS.iter().any(|t| {
                    if *t == "t" {
                        k == "t"
                    } else {
                        k.eq_ignore_ascii_case(t)
                    }
                }) {
                    tokens.push(PARAM.to_string());
                } else {
                    tokens.push(v);
                }
            });
            Some(Tokens {
                tokens,
                spaces: Vec::new(),
            })
        }
    }
}

/// Plain text: letters, digits, `_ - . : /` and symbols (`$ + < > ^ | ~`)
/// stay in a token; blanks end one; `=` and other punctuation are tokens of
/// their own.
fn tokenize_text(line: &str) -> Tokens {
    let mut tokens: Vec<String> = Vec::new();
    let mut spaces: Vec<(usize, usize)> = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if tokens.len() > MAX_TOKENS {
            // Past what is clustered: the line is left out anyway.
            break;
        }
        if c == ' ' {
            if !cur.is_empty() {
                tokens.push(std::mem::take(&mut cur));
            }
            let mut n = 1;
            while chars.next_if(|&c| c == ' ').is_some() {
                n += 1;
            }
            spaces.push((tokens.len(), n));
        } else if c == '=' || (is_punctuation(c) && !matches!(c, '_' | '-' | '.' | ':' | '/')) {
            if !cur.is_empty() {
                tokens.push(std::mem::take(&mut cur));
            }
            tokens.push(c.to_string());
        } else {
            cur.push(c);
        }
    }
    if !cur.is_empty() {
        tokens.push(cur);
    }
    Tokens { tokens, spaces }
}

/// Unicode punctuation (the categories P*), as far as it matters for log
/// lines: ASCII punctuation that is not a symbol, and the general
/// punctuation block.
fn is_punctuation(c: char) -> bool {
    matches!(
        c,
        '!' | '"' | '#' | '%' | '&' | '\'' | '(' | ')' | '*' | ',' | '-' | '.' | '/' | ':'
            | ';' | '?' | '@' | '[' | '\\' | ']' | '_' | '{' | '}'
            | '\u{a1}' | '\u{a7}' | '\u{ab}' | '\u{b6}' | '\u{b7}' | '\u{bb}' | '\u{bf}'
            | '\u{2010}'..='\u{2027}'
            | '\u{2030}'..='\u{205e}'
            | '\u{3001}'..='\u{3003}'
    )
}

/// The tokens back to text, with the first line's blanks where they were.
fn join_text(c: &Cluster) -> String {
    let mut out = String::new();
    let mut spaces = c.spaces.iter().peekable();
    for (i, t) in c.tokens.iter().enumerate() {
        while let Some(&&(at, n)) = spaces.peek() {
            if at > i {
                break;
            }
            out.extend(std::iter::repeat_n(' ', n));
            spaces.next();
        }
        out.push_str(t);
    }
    for &(_, n) in spaces {
        out.extend(std::iter::repeat_n(' ', n));
    }
    out
}

/// Keys and values back to logfmt, values quoted when they must be.
fn join_logfmt(tokens: &[String]) -> String {
    let mut out = String::new();
    for pair in tokens.chunks(2) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&pair[0]);
        out.push('=');
        let v = pair.get(1).map_or("", String::as_str);
        if v.is_empty()
            || v.chars()
                .any(|c| c <= ' ' || c == '=' || c == '"' || c == '\u{7f}')
        {
            out.push_str(&crate::units::go_quote(v));
        } else {
            out.push_str(v);
        }
    }
    out
}

/// `<_><_>...` as one `<_>`.
fn collapse_params(s: &str) -> String {
    let double = format!("{PARAM}{PARAM}");
    let mut out = s.to_string();
    while out.contains(&double) {
        out = out.replace(&double, PARAM);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patterns(lines: &[&str]) -> Vec<(String, u64)> {
        let mut d = Drain::new();
        for (i, l) in lines.iter().enumerate() {
            d.train(l, i as i64 * 1_000_000_000);
        }
        d.patterns()
            .into_iter()
            .map(|(p, s)| (p, s.values().sum()))
            .collect()
    }

    #[test]
    fn plain_lines_cluster_with_their_varying_tokens_as_wildcards() {
        let got = patterns(&[
            "GET /api/users/1 200 in 12ms from 10.0.0.1",
            "GET /api/users/2 200 in 7ms from 10.0.0.2",
            "GET /api/users/3 500 in 30ms from 10.0.0.9",
            "connection reset by peer while reading response header",
            "connection reset by peer while reading response body",
            // Words without digits choose the branch of the tree: a line
            // that differs from the others in one leads to its own cluster.
            "connection reset by peer while writing response body",
        ]);
        assert_eq!(
            got,
            vec![
                ("GET <_> <_> in <_> from <_>".to_string(), 3),
                (
                    "connection reset by peer while reading response <_>".to_string(),
                    2
                ),
                (
                    "connection reset by peer while writing response body".to_string(),
                    1
                ),
            ]
        );
    }

    #[test]
    fn punctuation_splits_and_blanks_come_back_as_they_were() {
        let t = tokenize_text(r#"user="bob7"  failed (code=7), retrying"#);
        assert_eq!(
            t.tokens,
            [
                "user", "=", "\"", "bob7", "\"", "failed", "(", "code", "=", "7", ")", ",",
                "retrying"
            ]
        );
        let got = patterns(&[
            r#"user="bob7"  failed (code=7), retrying"#,
            r#"user="amy9"  failed (code=9), retrying"#,
        ]);
        assert_eq!(
            got,
            vec![(r#"user="<_>"  failed (code=<_>), retrying"#.to_string(), 2)]
        );
    }

    #[test]
    fn json_lines_cluster_on_their_message_and_logfmt_on_keys_and_values() {
        let got = patterns(&[
            r#"{"level":"info","msg":"order 17 shipped to Berlin","ts":1}"#,
            r#"{"level":"info","msg":"order 18 shipped to Paris","ts":2}"#,
        ]);
        assert_eq!(got, vec![("<_>order <_> shipped to <_>".to_string(), 2)]);
        let got = patterns(&[
            "ts=2024-01-01T00:00:00Z level=info msg=\"cache miss\" key=a1",
            "ts=2024-01-01T00:00:01Z level=info msg=\"cache miss\" key=b7",
        ]);
        assert_eq!(
            got,
            vec![(
                "ts=<_> level=info msg=\"cache miss\" key=<_>".to_string(),
                2
            )]
        );
    }

    #[test]
    fn numbers_of_any_script_take_the_wildcard_branch() {
        // Arabic-Indic digits differ in the first token: without the
        // wildcard branch the lines would land in different leaves.
        let got = patterns(&["job ٣ done in time", "job ٤ done in time"]);
        assert_eq!(got, vec![("job <_> done in time".to_string(), 2)]);
    }

    #[test]
    fn hostile_lines_never_panic() {
        let mut d = Drain::new();
        let nasty = [
            String::new(),
            " ".repeat(10),
            "é=ü \"ß\" (日本語) , ; \u{2028} x".to_string(),
            "\0 \0 \0 \0 \0".to_string(),
            "=".repeat(200),
            format!("{} a b c", "é".repeat(MAX_LINE_BYTES / 2)),
            format!("{}é b c d", "x".repeat(MAX_LINE_BYTES - 7)),
            "{\"msg\":\"é ü ß 1\"".to_string(),
            "k=\"\\é\" x=1 y=2 z=3".to_string(),
        ];
        for (i, l) in nasty.iter().enumerate() {
            d.train(l, i64::MIN + i as i64);
            d.train(l, i64::MAX - i as i64);
        }
        for (p, samples) in d.patterns() {
            assert!(!p.is_empty());
            assert!(samples.values().all(|&n| n > 0));
        }
    }

    #[test]
    fn too_short_too_long_and_different_lengths_stay_apart() {
        let long = format!("a b c {}", "x".repeat(MAX_LINE_BYTES));
        let got = patterns(&[
            "a b c",
            &long,
            "one two three four",
            "one two three four five",
        ]);
        assert_eq!(
            got,
            vec![
                ("one two three four".to_string(), 1),
                ("one two three four five".to_string(), 1),
            ]
        );
    }

    #[test]
    fn counts_fall_into_ten_second_buckets_and_clusters_are_capped() {
        let mut d = Drain::new();
        for s in 0..25 {
            d.train("worker finished job in time", s * 1_000_000_000);
        }
        let p = d.patterns();
        let samples: Vec<(i64, u64)> = p["worker finished job in time"]
            .iter()
            .map(|(t, n)| (*t / 1_000_000_000, *n))
            .collect();
        assert_eq!(samples, vec![(0, 10), (10, 10), (20, 5)]);
        // Lines with nothing in common each start a cluster; past the cap
        // the least recently used go.
        let word = |mut n: usize| {
            let mut w = String::new();
            for _ in 0..4 {
                w.push((b'a' + (n % 26) as u8) as char);
                n /= 26;
            }
            w
        };
        let mut d = Drain::new();
        let lines: Vec<String> = (0..MAX_CLUSTERS + 20)
            .map(|n| {
                (0..4)
                    .map(|k| word(n * 4 + k))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        for (n, l) in lines.iter().enumerate() {
            d.train(l, n as i64);
        }
        assert_eq!(d.live, MAX_CLUSTERS);
        assert_eq!(d.lru.len(), MAX_CLUSTERS);
        // Evicted clusters leave nothing behind in the tree.
        fn count(n: &Node) -> usize {
            n.clusters.len() + n.children.values().map(count).sum::<usize>()
        }
        assert_eq!(d.by_length.values().map(count).sum::<usize>(), MAX_CLUSTERS);
        let p = d.patterns();
        assert_eq!(p.len(), MAX_CLUSTERS);
        assert!(!p.contains_key(&lines[0]), "the oldest cluster was kept");
        assert!(p.contains_key(&lines[MAX_CLUSTERS + 19]));
    }
}
