//! The full-text index of a segment: every distinct token of its lines, with
//! the blocks it occurs in. A `|=` needle is answered from it without
//! reading the blocks that cannot hold the needle.
//!
//! Tokens are the maximal runs of ASCII letters and digits and of non-ASCII
//! bytes; everything else separates them. That makes the index exact for
//! substring search: a needle split at its separators into pieces
//! `p1 · p2 · … · pn` occurs in a line only if the line has a token ending
//! with `p1`, tokens equal to `p2 … pn-1`, and a token starting with `pn`
//! (one piece: a token containing it). The dictionary is kept in memory as
//! one newline-separated string of the tokens grouped by length, shortest
//! first: a token as long as the piece can only hold it by being equal to
//! it (a binary search, through a permutation sorted by bytes that is built
//! when the segment opens), and only the tokens longer than the piece are
//! scanned with `memmem`; for a request id, whose tokens all have one
//! length, that leaves almost nothing to scan. The blocks of the matching
//! tokens are the candidates. Within a length, tokens are in the order they
//! first occur in the segment's blocks: blocks refer to long tokens by
//! their number (see [`encode_line`]), and in this order a block's
//! references fall close together in the dictionary, so a full scan reads
//! it nearly in sequence instead of jumping about a dictionary of tens of
//! megabytes for every line.
//!
//! Tokens made only of digits (timestamps, sizes, durations, counters) are
//! not indexed: they are most of the distinct tokens of a typical log and
//! rarely what anyone searches for. A needle piece made only of digits
//! could sit in such a token, so it narrows nothing; a piece with any other
//! byte cannot, so the index stays exact.

use memchr::memmem;
use skopos_model::fxhash::FxHashMap;

/// Whether `b` belongs to a token.
#[inline]
pub(crate) fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b >= 0x80
}

/// Calls `f` with each token of `s`.
pub(crate) fn each_token(s: &[u8], mut f: impl FnMut(&[u8])) {
    let mut i = 0;
    while i < s.len() {
        while i < s.len() && !is_token_byte(s[i]) {
            i += 1;
        }
        let start = i;
        while i < s.len() && is_token_byte(s[i]) {
            i += 1;
        }
        if i > start {
            f(&s[start..i]);
        }
    }
}

fn is_digits(t: &[u8]) -> bool {
    t.iter().all(u8::is_ascii_digit)
}

/// Collects tokens per block while a segment is written.
#[derive(Default)]
pub(crate) struct Builder {
    /// Token to its slot in `postings` (the order tokens were first seen).
    slots: FxHashMap<Box<[u8]>, u32>,
    postings: Vec<Vec<u32>>,
    /// Slot to the token's number in the dictionary, once finished.
    rank: Vec<u32>,
}

impl Builder {
    pub(crate) fn add_line(&mut self, block: u32, line: &str) {
        self.add_line_noting(block, line, None);
    }

    /// [`Builder::add_line`], also noting in `refs` where each token of
    /// [`MIN_REF_LEN`] bytes or more sits in the line and its slot, so that
    /// the line can be written with references without being split again.
    pub(crate) fn add_line_noting(
        &mut self,
        block: u32,
        line: &str,
        mut refs: Option<&mut Vec<TokenRef>>,
    ) {
        let base = line.as_ptr() as usize;
        each_token(line.as_bytes(), |t| {
            if is_digits(t) {
                return;
            }
            let slot = match self.slots.get(t) {
                Some(&slot) => {
                    let p = &mut self.postings[slot as usize];
                    if p.last() != Some(&block) {
                        p.push(block);
                    }
                    slot
                }
                None => {
                    let slot = self.postings.len() as u32;
                    self.slots.insert(t.into(), slot);
                    self.postings.push(vec![block]);
                    slot
                }
            };
            if t.len() >= MIN_REF_LEN {
                if let Some(refs) = refs.as_deref_mut() {
                    refs.push(TokenRef {
                        at: (t.as_ptr() as usize - base) as u32,
                        len: t.len() as u32,
                        slot,
                    });
                }
            }
        });
    }

    /// The dictionary (tokens by length, then in order of first occurrence,
    /// each followed by `\n`) and the postings, in dictionary order. The
    /// builder then answers [`Builder::rank`].
    pub(crate) fn finish(&mut self) -> (Vec<u8>, Vec<Vec<u32>>) {
        let mut order: Vec<(&[u8], u32)> = self.slots.iter().map(|(t, &s)| (&**t, s)).collect();
        order.sort_unstable_by_key(|&(t, slot)| (t.len(), slot));
        let mut dict = Vec::with_capacity(order.iter().map(|(t, _)| t.len() + 1).sum());
        let mut postings = Vec::with_capacity(order.len());
        let mut rank = vec![0u32; self.postings.len()];
        for (i, (t, slot)) in order.into_iter().enumerate() {
            dict.extend_from_slice(t);
            dict.push(b'\n');
            postings.push(std::mem::take(&mut self.postings[slot as usize]));
            rank[slot as usize] = i as u32;
        }
        self.rank = rank;
        (dict, postings)
    }

    /// The number in the finished dictionary of the token in `slot`.
    pub(crate) fn rank_of(&self, slot: u32) -> u32 {
        self.rank[slot as usize]
    }
}

/// Where a long token sits in a line, and its slot in the [`Builder`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct TokenRef {
    at: u32,
    len: u32,
    slot: u32,
}

/// Tokens at least this long are written into blocks as a reference to the
/// dictionary instead of their bytes: request and trace ids, which are most
/// of a segment's distinct tokens, are then stored once, in the index.
pub(crate) const MIN_REF_LEN: usize = 12;

/// Marks a reference in a block's line text: a byte that UTF-8 never holds,
/// followed by the token's number as a varint.
pub(crate) const REF: u8 = 0xFF;

/// Appends `line` to `out` with each of its long tokens (`refs`, in order,
/// as [`Builder::add_line_noting`] noted them) replaced by [`REF`] and its
/// number in the finished dictionary.
pub(crate) fn encode_line(out: &mut Vec<u8>, line: &[u8], refs: &[TokenRef], b: &Builder) {
    let mut copied = 0;
    for r in refs {
        let (at, len) = (r.at as usize, r.len as usize);
        out.extend_from_slice(&line[copied..at]);
        out.push(REF);
        skopos_model::codec::put_uvarint(out, u64::from(b.rank_of(r.slot)));
        copied = at + len;
    }
    out.extend_from_slice(&line[copied..]);
}

/// Undoes [`encode_line`] into `out` (cleared first): the line with its
/// references replaced by the tokens of `index`; `None` when a reference
/// is malformed or the result is not UTF-8.
pub(crate) fn decode_line<'o>(text: &[u8], index: &Index, out: &'o mut Vec<u8>) -> Option<&'o str> {
    out.clear();
    let mut i = 0;
    while i < text.len() {
        let next = memchr::memchr(REF, &text[i..]).map_or(text.len(), |p| i + p);
        out.extend_from_slice(&text[i..next]);
        if next == text.len() {
            break;
        }
        let mut r = skopos_model::codec::Reader::new(&text[next + 1..]);
        let n = usize::try_from(r.uvarint()?).ok()?;
        if n >= index.len() {
            return None;
        }
        out.extend_from_slice(index.token(n));
        i = text.len() - r.remaining();
    }
    std::str::from_utf8(out).ok()
}

/// A segment's index in memory.
pub(crate) struct Index {
    dict: Vec<u8>,
    /// Start of each token in `dict`.
    starts: Vec<u32>,
    /// Token numbers sorted by (length, bytes), for binary searches.
    sorted: Vec<u32>,
    /// Blocks of token `i`: `blocks[offsets[i]..offsets[i + 1]]`.
    offsets: Vec<u32>,
    blocks: Vec<u32>,
}

/// How a needle piece must sit in a token.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fit {
    Anywhere,
    Prefix,
    Suffix,
    Whole,
}

impl Index {
    pub(crate) fn new(dict: Vec<u8>, postings: Vec<Vec<u32>>) -> Option<Index> {
        let mut starts = Vec::with_capacity(postings.len());
        let mut at = 0usize;
        for line in dict.split(|&b| b == b'\n') {
            if at >= dict.len() {
                break;
            }
            starts.push(u32::try_from(at).ok()?);
            at += line.len() + 1;
        }
        if starts.len() != postings.len() {
            return None;
        }
        let mut offsets = Vec::with_capacity(postings.len() + 1);
        let mut blocks = Vec::new();
        offsets.push(0);
        for p in postings {
            blocks.extend(p);
            offsets.push(u32::try_from(blocks.len()).ok()?);
        }
        let mut index = Index {
            dict,
            starts,
            sorted: Vec::new(),
            offsets,
            blocks,
        };
        // Lengths never decrease along the dictionary: the search for the
        // first longer token relies on it.
        let grouped =
            (1..index.starts.len()).all(|i| index.token(i - 1).len() <= index.token(i).len());
        if !grouped {
            return None;
        }
        index.sorted = index.sort_tokens();
        Some(index)
    }

    /// Token numbers in (length, bytes) order. Sorted by length and the
    /// first eight bytes as integers, in place, then only runs sharing
    /// those are compared byte by byte: a comparison that chases two
    /// tokens through a dictionary of tens of megabytes costs cache misses,
    /// and a segment holds a million tokens.
    fn sort_tokens(&self) -> Vec<u32> {
        let mut keyed: Vec<(u32, u64, u32)> = (0..self.starts.len())
            .map(|i| {
                let t = self.token(i);
                let mut head = [0u8; 8];
                let n = t.len().min(8);
                head[..n].copy_from_slice(&t[..n]);
                (t.len() as u32, u64::from_be_bytes(head), i as u32)
            })
            .collect();
        keyed.sort_unstable();
        let mut i = 0;
        while i < keyed.len() {
            let mut j = i + 1;
            while j < keyed.len() && keyed[j].0 == keyed[i].0 && keyed[j].1 == keyed[i].1 {
                j += 1;
            }
            if j - i > 1 && keyed[i].0 > 8 {
                keyed[i..j].sort_unstable_by(|a, b| {
                    self.token(a.2 as usize).cmp(self.token(b.2 as usize))
                });
            }
            i = j;
        }
        keyed.into_iter().map(|k| k.2).collect()
    }

    /// Distinct tokens.
    pub(crate) fn len(&self) -> usize {
        self.starts.len()
    }

    /// Bytes held in memory.
    pub(crate) fn bytes(&self) -> usize {
        self.dict.len()
            + 4 * (self.starts.len() + self.sorted.len() + self.offsets.len() + self.blocks.len())
    }

    pub(crate) fn token(&self, i: usize) -> &[u8] {
        let start = self.starts[i] as usize;
        let end = self
            .starts
            .get(i + 1)
            .map_or(self.dict.len(), |&s| s as usize);
        &self.dict[start..end - 1]
    }

    /// The first token for which `before` is false (tokens are ordered).
    /// The first place in `order` (token numbers by position) at whose
    /// token `before` is false; `before` must hold for a prefix of `order`.
    fn lower_bound(&self, order: impl Fn(usize) -> usize, before: impl Fn(&[u8]) -> bool) -> usize {
        let (mut lo, mut hi) = (0, self.starts.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            if before(self.token(order(mid))) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// The tokens (by number) in which `piece` sits as `fit` asks.
    fn tokens(&self, piece: &[u8], fit: Fit) -> Vec<usize> {
        let mut out: Vec<usize> = Vec::new();
        let key = (piece.len(), piece);
        let exact = self.lower_bound(|i| self.sorted[i] as usize, |t| (t.len(), t) < key);
        if let Some(&tok) = self.sorted.get(exact) {
            if self.token(tok as usize) == piece {
                out.push(tok as usize);
            }
        }
        if fit == Fit::Whole {
            return out;
        }
        // Only a longer token can hold the piece otherwise.
        // Tokens are grouped by length, so this is a place in the dictionary.
        let longer = self.lower_bound(|i| i, |t| t.len() <= piece.len());
        let Some(&from) = self.starts.get(longer) else {
            return out;
        };
        let from = from as usize;
        for pos in memmem::find_iter(&self.dict[from..], piece) {
            let pos = from + pos;
            // The token holding this occurrence (tokens have no '\n').
            let tok = self.starts.partition_point(|&s| s as usize <= pos) - 1;
            let start = self.starts[tok] as usize;
            let end = start + self.token(tok).len();
            let ok = match fit {
                Fit::Anywhere => true,
                Fit::Prefix => pos == start,
                Fit::Suffix => pos + piece.len() == end,
                Fit::Whole => false,
            };
            if ok && out.last() != Some(&tok) {
                out.push(tok);
            }
        }
        out
    }

    /// Blocks that may hold a line containing every needle, or `None` when
    /// the needles say nothing (no token piece in them).
    pub(crate) fn candidates(&self, needles: &[String], nblocks: usize) -> Option<Vec<bool>> {
        let mut acc: Option<Vec<bool>> = None;
        for needle in needles {
            let b = needle.as_bytes();
            let mut pieces: Vec<(usize, usize)> = Vec::new();
            let mut i = 0;
            while i < b.len() {
                while i < b.len() && !is_token_byte(b[i]) {
                    i += 1;
                }
                let s = i;
                while i < b.len() && is_token_byte(b[i]) {
                    i += 1;
                }
                if i > s {
                    pieces.push((s, i));
                }
            }
            for &(s, e) in &pieces {
                if is_digits(&b[s..e]) {
                    // It may sit in a token that is not indexed.
                    continue;
                }
                let open_left = s == 0;
                let open_right = e == b.len();
                let fit = match (open_left, open_right) {
                    (true, true) => Fit::Anywhere,
                    (true, false) => Fit::Suffix,
                    (false, true) => Fit::Prefix,
                    (false, false) => Fit::Whole,
                };
                let mut here = vec![false; nblocks];
                for tok in self.tokens(&b[s..e], fit) {
                    let (lo, hi) = (self.offsets[tok] as usize, self.offsets[tok + 1] as usize);
                    for &blk in &self.blocks[lo..hi] {
                        if let Some(x) = here.get_mut(blk as usize) {
                            *x = true;
                        }
                    }
                }
                acc = Some(match acc {
                    None => here,
                    Some(mut a) => {
                        for (x, y) in a.iter_mut().zip(&here) {
                            *x &= *y;
                        }
                        a
                    }
                });
            }
        }
        acc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(blocks: &[&[&str]]) -> Index {
        builder(blocks).1
    }

    fn builder(blocks: &[&[&str]]) -> (Builder, Index) {
        let mut b = Builder::default();
        for (i, lines) in blocks.iter().enumerate() {
            for l in *lines {
                b.add_line(i as u32, l);
            }
        }
        let (dict, postings) = b.finish();
        (b, Index::new(dict, postings).unwrap())
    }

    #[test]
    fn the_search_order_is_length_then_bytes_whatever_the_dictionary_order() {
        // Tokens sharing their first eight bytes, of many lengths, seen in
        // no particular order.
        let mut lines = Vec::new();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for i in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let tail = format!("{x:016x}");
            let len = 3 + (x as usize % 20);
            lines.push(format!(
                "abcdefgh{} z{} {}",
                &tail[..len.min(16)],
                &tail[..3],
                i % 7
            ));
        }
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let idx = index(&[&refs]);
        let got: Vec<&[u8]> = idx.sorted.iter().map(|&t| idx.token(t as usize)).collect();
        let mut want = got.clone();
        want.sort_by(|a, b| (a.len(), *a).cmp(&(b.len(), *b)));
        assert_eq!(got, want);
        assert_eq!(got.len(), idx.len());
        // And every token is found by its exact search.
        for t in &want {
            assert!(
                !idx.tokens(t, Fit::Whole).is_empty(),
                "{:?}",
                String::from_utf8_lossy(t)
            );
        }
    }

    #[test]
    fn long_tokens_become_references_and_come_back() {
        let lines: &[&str] = &[
            "req=00122ef15db0fdcb000736ff14b8c99e done in 12345678901234 ms",
            "naïve-café-crème-brûlée-über-longtoken id=abcdefabcdef",
            "short words only",
            "",
            "00122ef15db0fdcb000736ff14b8c99e",
        ];
        let mut b = Builder::default();
        let mut refs = Vec::new();
        let mut ends = Vec::new();
        for l in lines {
            b.add_line_noting(0, l, Some(&mut refs));
            ends.push(refs.len());
        }
        let (dict, postings) = b.finish();
        let idx = Index::new(dict, postings).unwrap();
        let mut from = 0;
        for (l, &to) in lines.iter().zip(&ends) {
            let mut enc = Vec::new();
            encode_line(&mut enc, l.as_bytes(), &refs[from..to], &b);
            from = to;
            assert_eq!(decode_line(&enc, &idx, &mut Vec::new()), Some(*l));
            if l.contains("00122ef1") {
                assert!(enc.len() < l.len() - 20, "{l}: not referenced");
            }
            // Digit-only tokens are not indexed, so they stay as they are.
            if l.contains("12345678901234") {
                assert!(enc.windows(14).any(|w| w == b"12345678901234"));
            }
        }
        // A reference past the dictionary is refused, not a panic.
        let bad = [b'x', REF, 0xff, 0xff, 0x7f];
        assert_eq!(decode_line(&bad, &idx, &mut Vec::new()), None);
        assert_eq!(decode_line(&[b'a', REF], &idx, &mut Vec::new()), None);
    }

    /// Brute force: blocks with a line containing every needle.
    fn truth(blocks: &[&[&str]], needles: &[&str]) -> Vec<bool> {
        blocks
            .iter()
            .map(|lines| lines.iter().any(|l| needles.iter().all(|n| l.contains(n))))
            .collect()
    }

    #[test]
    fn candidates_never_miss_a_block_and_prune_the_rest() {
        let blocks: &[&[&str]] = &[
            &["GET /api/users 200 req=7f3a9c2e", "ok", "took 1234 ms"],
            &["POST /api/orders 500 req=ab12cd34 error=timeout"],
            &["xreq=7f3a9c2eZ trailing", "naïve café"],
            &["nothing here"],
        ];
        let idx = index(blocks);
        // (needles, whether the candidates are exactly the matching blocks:
        // digit-only pieces narrow nothing, so those may over-approximate).
        for (needles, exact) in [
            (vec!["7f3a9c2e"], true),
            (vec!["req=7f3a"], true),
            (vec!["3a9c"], true),
            (vec!["/api/orders 500"], true),
            (vec!["api", "500"], false),
            (vec!["error=timeout"], true),
            (vec!["café"], true),
            (vec!["missing"], true),
            (vec!["q=7f3a9c2e"], true),
            (vec!["1234 ms"], true),
        ] {
            let got = idx.candidates(
                &needles.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                blocks.len(),
            );
            let got = got.expect("token pieces give candidates");
            let want = truth(blocks, &needles);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    !w || *g,
                    "{needles:?}: block {i} holds a match but was pruned"
                );
            }
            if exact {
                assert_eq!(got, want, "{needles:?}: exact on this data");
            }
        }
        // Only separators, or only digits: nothing to say.
        assert!(idx.candidates(&["= /".to_string()], blocks.len()).is_none());
        assert!(idx
            .candidates(&["1234".to_string()], blocks.len())
            .is_none());
    }
}
