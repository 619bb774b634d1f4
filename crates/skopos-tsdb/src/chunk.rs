//! Sample chunks: Gorilla-style bit-packed compression.
//!
//! # Format (chunk format version 1)
//!
//! A chunk is a header followed by a big-endian bit stream. The sample count
//! is not stored in the chunk; the owner (head series, block index) keeps it
//! next to the chunk.
//!
//! Header: `encoding: u8`; for encoding 2 one more byte `flags`
//! (bits 0–3: decimal digits `d`, bit 4: values as deltas instead of
//! deltas-of-deltas, bit 5: a multiplier follows) and, with bit 5, the
//! LEB128 varints `multiplier` and zigzag `base`: the stream then holds
//! `(k - base) / multiplier` (used when all values step by a common factor,
//! e.g. memory sizes in 4 KiB pages).
//!
//! The encoding byte's top bit (`0x80`) selects grid timestamps; the grid
//! `step` and `offset` then follow the other header fields as zigzag varints.
//!
//! Timestamps: the first timestamp, then either (default) the first delta
//! and deltas-of-deltas, or (grid) for sample `i > 0` the residual
//! `t_i - (t_0 + offset + i * step)` — cheaper for regular scrapes with a
//! few ms of jitter. Each is written with the signed bucket code
//! `0` (zero) | `10`+2 bits | `110`+5 bits | `1110`+9 bits | `11110`+16 bits
//! | `111110`+24 bits | `111111`+64 bits (two's complement payloads).
//!
//! Values:
//! * encoding 1 (`XOR`): the first value as 64 raw bits; then
//!   `v XOR prev` as `0` (same value), `10` + meaningful bits inside the
//!   previous leading/trailing-zero window, or `11` + 5 bits leading zeros +
//!   6 bits meaningful length (0 means 64) + meaningful bits.
//! * encoding 2 (`SCALED`): every value is `k / 10^d` for an integer `k`
//!   with `|k| < 2^53` (bit-exactly, checked when encoding; `-0.0`, NaN and
//!   infinities never qualify). The `k`s are written like timestamps: first
//!   value, first delta, then deltas-of-deltas (or, with the delta flag, all
//!   deltas) with the bucket code. Counters with a steady rate cost ~1 bit
//!   per sample; values like CPU seconds with two decimals stay small.
//!
//! The head starts a chunk as `SCALED` when the first value allows it and
//! re-encodes the chunk as `XOR` when a value does not fit; blocks try the
//! candidate encodings per chunk and keep the smallest. NaN payloads
//! (including the staleness marker), infinities and `-0.0` survive
//! bit-exactly.

use skopos_model::Sample;

pub const ENC_XOR: u8 = 1;
pub const ENC_SCALED: u8 = 2;
const FLAG_DELTA: u8 = 0x10;
const FLAG_MUL: u8 = 0x20;
/// In the encoding byte: timestamps are grid residuals.
const FLAG_GRID: u8 = 0x80;
const MAX_DECIMALS: u8 = 6;
/// Decimal digits the head tries before falling back to XOR.
const HEAD_MAX_DECIMALS: u8 = 3;

/// Samples per head chunk before a new one is started.
pub const HEAD_CHUNK_SAMPLES: usize = 120;
/// Samples per chunk when writing blocks.
pub const BLOCK_CHUNK_SAMPLES: usize = 480;

#[derive(Debug, Clone, Default)]
struct BitWriter {
    buf: Vec<u8>,
    /// Bits used in the last byte (0 means the last byte is full or absent).
    used: u8,
}

impl BitWriter {
    /// Grows by ~1/8 instead of doubling: head chunks stay open for a long
    /// time, and doubling would waste up to half of their memory.
    fn push_byte(&mut self) {
        if self.buf.len() == self.buf.capacity() {
            self.buf.reserve_exact((self.buf.len() / 8).max(16));
        }
        self.buf.push(0);
    }

    fn write_bit(&mut self, bit: bool) {
        if self.used == 0 {
            self.push_byte();
        }
        if bit {
            *self.buf.last_mut().expect("pushed above") |= 0x80 >> self.used;
        }
        self.used = (self.used + 1) % 8;
    }

    fn write_bits(&mut self, v: u64, n: u8) {
        let mut left = n;
        while left > 0 {
            if self.used == 0 {
                self.push_byte();
            }
            let free = 8 - self.used;
            let take = free.min(left);
            let shift = left - take;
            let chunk = ((v >> shift) & ((1u64 << take) - 1)) as u8;
            *self.buf.last_mut().expect("pushed above") |= chunk << (free - take);
            self.used = (self.used + take) % 8;
            left -= take;
        }
    }
}

struct BitReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl BitReader<'_> {
    fn bits_left(&self) -> usize {
        (self.buf.len() * 8).saturating_sub(self.pos)
    }

    /// The next bits, most significant first, without consuming them: at
    /// least 57 valid bits, zeros past the end of the buffer.
    #[inline]
    fn peek(&self) -> u64 {
        let i = self.pos / 8;
        let word = match self.buf.get(i..i + 8) {
            Some(b) => u64::from_be_bytes(b.try_into().expect("8 bytes")),
            None => {
                let mut b = [0u8; 8];
                let tail = self.buf.get(i..).unwrap_or(&[]);
                b[..tail.len()].copy_from_slice(tail);
                u64::from_be_bytes(b)
            }
        };
        word << (self.pos % 8)
    }

    #[inline]
    fn read_bit(&mut self) -> Option<bool> {
        self.read_bits(1).map(|b| b == 1)
    }

    #[inline]
    fn read_bits(&mut self, n: u8) -> Option<u64> {
        if n as usize > self.bits_left() {
            return None;
        }
        match n {
            0 => Some(0),
            1..=56 => {
                let v = self.peek() >> (64 - n as u32);
                self.pos += n as usize;
                Some(v)
            }
            _ => {
                let hi = self.read_bits(n - 32)?;
                let lo = self.read_bits(32)?;
                Some(hi << 32 | lo)
            }
        }
    }
}

/// (prefix, prefix length, payload bits) of the signed bucket code.
const BUCKETS: [(u64, u8, u8); 5] = [
    (0b10, 2, 2),
    (0b110, 3, 5),
    (0b1110, 4, 9),
    (0b11110, 5, 16),
    (0b111110, 6, 24),
];

fn fits(x: i64, bits: u8) -> bool {
    let lim = 1i64 << (bits - 1);
    (-lim..lim).contains(&x)
}

fn put_signed(w: &mut BitWriter, x: i64) {
    if x == 0 {
        w.write_bit(false);
        return;
    }
    for (prefix, plen, bits) in BUCKETS {
        if fits(x, bits) {
            w.write_bits(prefix, plen);
            w.write_bits(x as u64 & ((1u64 << bits) - 1), bits);
            return;
        }
    }
    w.write_bits(0b111111, 6);
    w.write_bits(x as u64, 64);
}

fn get_signed(r: &mut BitReader) -> Option<i64> {
    // The prefix: up to six ones, ended by a zero unless there are six.
    let ones = (r.peek().leading_ones() as usize).min(6);
    let prefix = if ones == 6 { 6 } else { ones + 1 };
    if prefix > r.bits_left() {
        return None;
    }
    r.pos += prefix;
    if ones == 0 {
        return Some(0);
    }
    if ones == 6 {
        return Some(r.read_bits(64)? as i64);
    }
    let bits = BUCKETS[ones - 1].2;
    let raw = r.read_bits(bits)?;
    // Sign-extend.
    let shift = 64 - bits as u32;
    Some(((raw << shift) as i64) >> shift)
}

fn pow10(d: u8) -> f64 {
    10f64.powi(d as i32)
}

/// `v` as `k` with `k / 10^d == v` bit-exactly, if there is such a `k`.
fn scaled(v: f64, d: u8) -> Option<i64> {
    let scale = pow10(d);
    let k = (v * scale).round();
    if !k.is_finite() || k.abs() >= 9_007_199_254_740_992.0 || v.is_sign_negative() && k == 0.0 {
        return None;
    }
    ((k / scale).to_bits() == v.to_bits()).then_some(k as i64)
}

fn decimals_for(samples: &[Sample], max: u8) -> Option<u8> {
    (0..=max).find(|d| samples.iter().all(|s| scaled(s.v, *d).is_some()))
}

/// Appends samples to one chunk. Timestamps must be strictly increasing.
#[derive(Debug, Clone)]
pub struct ChunkEncoder {
    w: BitWriter,
    enc: u8,
    flags: u8,
    count: u32,
    t: i64,
    t_delta: i64,
    v_bits: u64,
    iv: i64,
    iv_delta: i64,
    lead: u8,
    trail: u8,
    min_t: i64,
    mul: i64,
    base: i64,
    /// Timestamps as residuals from a grid of step `t_delta` shifted by
    /// this offset (blocks only).
    grid: Option<i8>,
}

impl ChunkEncoder {
    pub fn new(enc: u8) -> Self {
        Self::with_flags(enc, 0)
    }

    fn with_flags(enc: u8, flags: u8) -> Self {
        let mut w = BitWriter::default();
        w.buf.push(enc);
        if enc == ENC_SCALED {
            w.buf.push(flags);
        }
        ChunkEncoder {
            w,
            enc,
            flags,
            count: 0,
            t: 0,
            t_delta: 0,
            v_bits: 0,
            iv: 0,
            iv_delta: 0,
            lead: u8::MAX,
            trail: 0,
            min_t: 0,
            mul: 1,
            base: 0,
            grid: None,
        }
    }

    /// Switches an empty encoder to grid timestamps.
    fn with_grid(mut self, step: i64, offset: i8) -> Self {
        debug_assert_eq!(self.count, 0);
        self.w.buf[0] |= FLAG_GRID;
        crate::encoding::put_varint(&mut self.w.buf, step);
        crate::encoding::put_varint(&mut self.w.buf, offset as i64);
        self.grid = Some(offset);
        self.t_delta = step;
        self
    }

    fn with_multiplier(flags: u8, mul: i64, base: i64) -> Self {
        let mut e = Self::with_flags(ENC_SCALED, flags | FLAG_MUL);
        crate::encoding::put_uvarint(&mut e.w.buf, mul as u64);
        crate::encoding::put_varint(&mut e.w.buf, base);
        e.mul = mul;
        e.base = base;
        e
    }

    pub fn count(&self) -> usize {
        self.count as usize
    }

    pub fn min_t(&self) -> i64 {
        self.min_t
    }

    pub fn max_t(&self) -> i64 {
        self.t
    }

    pub fn bytes(&self) -> &[u8] {
        &self.w.buf
    }

    pub fn into_bytes(self) -> Box<[u8]> {
        self.w.buf.into_boxed_slice()
    }

    /// Reserves room for `bytes` bytes of chunk in total.
    pub fn reserve(&mut self, bytes: usize) {
        self.w
            .buf
            .reserve_exact(bytes.saturating_sub(self.w.buf.len()));
    }

    fn decimals(&self) -> u8 {
        self.flags & 0x0f
    }

    /// Appends to a head chunk, re-encoding a `SCALED` chunk as `XOR` when
    /// a value does not fit it.
    pub fn push(&mut self, t: i64, v: f64) {
        if self.enc == ENC_SCALED && scaled(v, self.decimals()).is_none() {
            let mut old = Vec::with_capacity(self.count());
            // Our own bytes always decode.
            let _ = decode(&self.w.buf, self.count(), &mut old);
            let mut x = ChunkEncoder::new(ENC_XOR);
            x.w.buf.reserve(self.w.buf.len() * 2);
            for s in old {
                x.append(s.t, s.v);
            }
            *self = x;
        }
        self.append(t, v);
    }

    /// A head chunk encoder suited to a first value `v`.
    pub fn for_value(v: f64) -> Self {
        match (0..=HEAD_MAX_DECIMALS).find(|d| scaled(v, *d).is_some()) {
            Some(d) => ChunkEncoder::with_flags(ENC_SCALED, d),
            None => ChunkEncoder::new(ENC_XOR),
        }
    }

    /// Encoder holding `samples` (sorted) in the encoding the head would use.
    pub fn from_samples(samples: &[Sample]) -> Self {
        let mut e = match decimals_for(samples, HEAD_MAX_DECIMALS) {
            Some(d) => ChunkEncoder::with_flags(ENC_SCALED, d),
            None => ChunkEncoder::new(ENC_XOR),
        };
        for s in samples {
            e.append(s.t, s.v);
        }
        e
    }

    fn put_value_int(&mut self, iv: i64) {
        let delta_mode = self.flags & FLAG_DELTA != 0;
        match self.count {
            0 => put_signed(&mut self.w, iv),
            1 => {
                self.iv_delta = iv.wrapping_sub(self.iv);
                put_signed(&mut self.w, self.iv_delta);
            }
            _ => {
                let d = iv.wrapping_sub(self.iv);
                put_signed(
                    &mut self.w,
                    if delta_mode {
                        d
                    } else {
                        d.wrapping_sub(self.iv_delta)
                    },
                );
                self.iv_delta = d;
            }
        }
        self.iv = iv;
    }

    fn put_value_xor(&mut self, v: f64) {
        if self.count == 0 {
            self.w.write_bits(v.to_bits(), 64);
            return;
        }
        let x = v.to_bits() ^ self.v_bits;
        if x == 0 {
            self.w.write_bit(false);
            return;
        }
        let lead = (x.leading_zeros() as u8).min(31);
        let trail = x.trailing_zeros() as u8;
        if self.lead != u8::MAX && lead >= self.lead && trail >= self.trail {
            self.w.write_bits(0b10, 2);
            let sig = 64 - self.lead - self.trail;
            self.w.write_bits(x >> self.trail, sig);
        } else {
            let sig = 64 - lead - trail;
            self.w.write_bits(0b11, 2);
            self.w.write_bits(lead as u64, 5);
            self.w.write_bits((sig % 64) as u64, 6);
            self.w.write_bits(x >> trail, sig);
            self.lead = lead;
            self.trail = trail;
        }
    }

    /// Appends a sample; for `SCALED` chunks the value must fit (see [`push`](Self::push)).
    pub fn append(&mut self, t: i64, v: f64) {
        match self.count {
            0 => {
                self.min_t = t;
                put_signed(&mut self.w, t);
            }
            n if self.grid.is_some() => {
                let off = self.grid.unwrap_or_default() as i64;
                let expected = self
                    .min_t
                    .wrapping_add(off)
                    .wrapping_add((n as i64).wrapping_mul(self.t_delta));
                put_signed(&mut self.w, t.wrapping_sub(expected));
            }
            1 => {
                self.t_delta = t.wrapping_sub(self.t);
                put_signed(&mut self.w, self.t_delta);
            }
            _ => {
                let d = t.wrapping_sub(self.t);
                put_signed(&mut self.w, d.wrapping_sub(self.t_delta));
                self.t_delta = d;
            }
        }
        self.t = t;
        if self.enc == ENC_SCALED {
            let iv = scaled(v, self.decimals()).unwrap_or_default();
            self.put_value_int(iv.wrapping_sub(self.base) / self.mul);
        } else {
            self.put_value_xor(v);
        }
        self.v_bits = v.to_bits();
        self.count += 1;
    }
}

/// Encodes sorted samples into one chunk, trying each applicable encoding
/// and keeping the smallest.
pub fn encode(samples: &[Sample]) -> Vec<u8> {
    let grid = grid_step(samples);
    let run = |e: ChunkEncoder| {
        let mut e = match grid {
            Some((step, off)) => e.with_grid(step, off),
            None => e,
        };
        for s in samples {
            e.append(s.t, s.v);
        }
        e.w.buf
    };
    let mut best = run(ChunkEncoder::new(ENC_XOR));
    if let Some(d) = decimals_for(samples, MAX_DECIMALS) {
        let ks: Vec<i64> = samples.iter().filter_map(|s| scaled(s.v, d)).collect();
        let base = ks[0];
        let mul = ks.iter().fold(0i64, |g, k| gcd(g, k.wrapping_sub(base)));
        for flags in [d, d | FLAG_DELTA] {
            let e = if mul > 1 {
                ChunkEncoder::with_multiplier(flags, mul, base)
            } else {
                ChunkEncoder::with_flags(ENC_SCALED, flags)
            };
            let c = run(e);
            if c.len() < best.len() {
                best = c;
            }
        }
    }
    best
}

/// Bits the bucket code spends on `x`.
fn code_bits(x: i64) -> u64 {
    if x == 0 {
        return 1;
    }
    BUCKETS
        .iter()
        .find(|(_, _, bits)| fits(x, *bits))
        .map_or(70, |(_, plen, bits)| (*plen + *bits) as u64)
}

/// The grid (step, offset) when residuals from `t0 + offset + i * step`
/// code smaller than deltas-of-deltas (regular scrapes with ms of jitter).
fn grid_step(samples: &[Sample]) -> Option<(i64, i8)> {
    let n = samples.len();
    if n < 3 {
        return None;
    }
    let (t0, tn) = (samples[0].t, samples[n - 1].t);
    let step = (tn.checked_sub(t0)? as i128 / (n as i128 - 1)) as i64;
    let mut dod = code_bits(samples[1].t.wrapping_sub(t0));
    let mut residuals = Vec::with_capacity(n - 1);
    for i in 1..n {
        let expected = t0.wrapping_add((i as i64).wrapping_mul(step));
        residuals.push(samples[i].t.wrapping_sub(expected));
        if i >= 2 {
            let d1 = samples[i].t.wrapping_sub(samples[i - 1].t);
            let d0 = samples[i - 1].t.wrapping_sub(samples[i - 2].t);
            dod += code_bits(d1.wrapping_sub(d0));
        }
    }
    let (cost, off) = (-8i8..=8)
        .map(|o| {
            (
                residuals
                    .iter()
                    .map(|r| code_bits(r.wrapping_sub(o as i64)))
                    .sum::<u64>(),
                o,
            )
        })
        .min()?;
    (cost + 24 < dod).then_some((step, off))
}

fn gcd(a: i64, b: i64) -> i64 {
    // Differences of values below 2^53 cannot overflow an i64.
    let (mut a, mut b) = (a.unsigned_abs(), b.unsigned_abs());
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.min(i64::MAX as u64) as i64
}

#[derive(Debug, thiserror::Error)]
#[error("corrupt chunk: {0}")]
pub struct ChunkError(pub &'static str);

const SHORT: ChunkError = ChunkError("truncated bit stream");

/// Decodes `count` samples from a chunk, appending them to `out`.
pub fn decode(bytes: &[u8], count: usize, out: &mut Vec<Sample>) -> Result<(), ChunkError> {
    let (&enc_byte, mut rest) = bytes.split_first().ok_or(ChunkError("empty"))?;
    let grid = enc_byte & FLAG_GRID != 0;
    let enc = enc_byte & !FLAG_GRID;
    let mut flags = 0;
    let (mut mul, mut base) = (1i64, 0i64);
    match enc {
        ENC_XOR => {}
        ENC_SCALED => {
            (flags, rest) = rest.split_first().map(|(f, r)| (*f, r)).ok_or(SHORT)?;
            if flags & 0x0f > MAX_DECIMALS || flags & !0x3f != 0 {
                return Err(ChunkError("bad flags"));
            }
            if flags & FLAG_MUL != 0 {
                let mut r = crate::encoding::Reader::new(rest);
                mul = r.uvarint().ok_or(SHORT)? as i64;
                base = r.varint().ok_or(SHORT)?;
                rest = &rest[rest.len() - r.remaining()..];
            }
        }
        _ => return Err(ChunkError("unknown encoding")),
    }
    let (mut step, mut off) = (0i64, 0i64);
    if grid {
        let mut r = crate::encoding::Reader::new(rest);
        step = r.varint().ok_or(SHORT)?;
        off = r.varint().ok_or(SHORT)?;
        rest = &rest[rest.len() - r.remaining()..];
    }
    let scale = pow10(flags & 0x0f);
    let delta_mode = flags & FLAG_DELTA != 0;
    let mut r = BitReader { buf: rest, pos: 0 };
    let (mut t, mut t0, mut td) = (0i64, 0i64, 0i64);
    let (mut vb, mut iv, mut ivd) = (0u64, 0i64, 0i64);
    let (mut lead, mut trail) = (0u8, 0u8);
    out.reserve(count);
    for i in 0..count {
        let x = get_signed(&mut r).ok_or(SHORT)?;
        match i {
            0 => {
                t = x;
                t0 = x;
            }
            _ if grid => {
                t = t0
                    .wrapping_add(off)
                    .wrapping_add((i as i64).wrapping_mul(step))
                    .wrapping_add(x)
            }
            1 => {
                td = x;
                t = t.wrapping_add(td);
            }
            _ => {
                td = td.wrapping_add(x);
                t = t.wrapping_add(td);
            }
        }
        let v = if enc == ENC_SCALED {
            let x = get_signed(&mut r).ok_or(SHORT)?;
            match i {
                0 => iv = x,
                1 => {
                    ivd = x;
                    iv = iv.wrapping_add(ivd);
                }
                _ if delta_mode => iv = iv.wrapping_add(x),
                _ => {
                    ivd = ivd.wrapping_add(x);
                    iv = iv.wrapping_add(ivd);
                }
            }
            base.wrapping_add(mul.wrapping_mul(iv)) as f64 / scale
        } else {
            if i == 0 {
                vb = r.read_bits(64).ok_or(SHORT)?;
            } else if r.read_bit().ok_or(SHORT)? {
                if r.read_bit().ok_or(SHORT)? {
                    lead = r.read_bits(5).ok_or(SHORT)? as u8;
                    let mut sig = r.read_bits(6).ok_or(SHORT)? as u8;
                    if sig == 0 {
                        sig = 64;
                    }
                    if lead as u32 + sig as u32 > 64 {
                        return Err(ChunkError("bad xor window"));
                    }
                    trail = 64 - lead - sig;
                }
                let sig = 64 - lead - trail;
                let bits = r.read_bits(sig).ok_or(SHORT)?;
                vb ^= bits << trail;
            }
            f64::from_bits(vb)
        };
        out.push(Sample { t, v });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use skopos_model::STALE_NAN;

    fn round_trip(samples: &[Sample]) {
        let mut head = ChunkEncoder::for_value(samples[0].v);
        for s in samples {
            head.push(s.t, s.v);
        }
        let candidates = [
            ChunkEncoder::from_samples(samples).w.buf,
            head.w.buf,
            encode(samples),
            {
                let mut e = ChunkEncoder::new(ENC_XOR);
                samples.iter().for_each(|s| e.append(s.t, s.v));
                e.w.buf
            },
        ];
        for bytes in candidates {
            let enc = bytes[0] & !FLAG_GRID;
            let mut out = Vec::new();
            decode(&bytes, samples.len(), &mut out).unwrap();
            assert_eq!(out.len(), samples.len());
            for (a, b) in out.iter().zip(samples) {
                assert!(a.same_as(b), "{a:?} != {b:?} (encoding {enc})");
            }
        }
    }

    fn special() -> impl Strategy<Value = f64> {
        prop_oneof![
            Just(f64::NAN),
            Just(STALE_NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(-0.0),
            Just(0.0),
            Just(f64::MIN_POSITIVE),
            Just(f64::MAX),
            (-1_000_000i64..1_000_000).prop_map(|i| i as f64),
            (-100_000_000i64..100_000_000).prop_map(|i| i as f64 / 100.0),
            (-100_000_000i64..100_000_000).prop_map(|i| i as f64 / 1000.0),
            any::<f64>(),
            any::<u64>().prop_map(f64::from_bits),
        ]
    }

    proptest! {
        #[test]
        fn random_samples_round_trip(
            start in any::<i64>().prop_map(|t| t / 4),
            deltas in prop::collection::vec(prop_oneof![1i64..100, 1i64..100_000, Just(15_000), 1i64..(1 << 40)], 0..300),
            values in prop::collection::vec(special(), 300),
        ) {
            let mut t = start;
            let mut samples = vec![Sample::new(t, values[0])];
            for (i, d) in deltas.iter().enumerate() {
                t = t.saturating_add(*d);
                if t == i64::MAX { break; }
                samples.push(Sample::new(t, values[i + 1 - (i + 1) / 300]));
            }
            round_trip(&samples);
        }

        #[test]
        fn integer_counters_round_trip(
            start in 0i64..2_000_000_000_000,
            incs in prop::collection::vec(0i64..10_000, 1..500),
        ) {
            let mut v = 0i64;
            let samples: Vec<Sample> = incs.iter().enumerate().map(|(i, inc)| {
                v += inc;
                Sample::new(start + i as i64 * 15_000 + inc % 7, v as f64)
            }).collect();
            round_trip(&samples);
        }

        /// A counter with a steady rate (increments within 10% of it) is
        /// smaller as scaled integers than as XOR floats. Increments drawn
        /// uniformly from a wide range are not: XOR and scaled deltas then
        /// cost about the same, and either may win.
        #[test]
        fn steady_integer_counters_use_the_scaled_encoding(
            start in 0i64..2_000_000_000_000,
            rate in 1i64..10_000,
            jitter in prop::collection::vec(0i64..1_000, 2..500),
        ) {
            let mut v = 0i64;
            let samples: Vec<Sample> = jitter.iter().enumerate().map(|(i, j)| {
                v += rate + j % (rate / 10 + 1);
                Sample::new(start + i as i64 * 15_000 + j % 7, v as f64)
            }).collect();
            prop_assert_eq!(encode(&samples)[0] & !FLAG_GRID, ENC_SCALED);
            round_trip(&samples);
        }
    }

    proptest! {
        #[test]
        fn decimal_values_round_trip(
            decimals in 0u32..8,
            factor in prop_oneof![Just(1i64), 2i64..5000],
            ks in prop::collection::vec(-(1i64 << 38)..(1i64 << 38), 1..300),
        ) {
            let scale = 10f64.powi(decimals as i32);
            let samples: Vec<Sample> =
                ks.iter().enumerate().map(|(i, k)| Sample::new(i as i64 * 1000, (*k * factor) as f64 / scale)).collect();
            round_trip(&samples);
        }
    }

    #[test]
    fn two_decimal_counters_use_the_scaled_encoding() {
        let samples: Vec<Sample> = (0..480)
            .map(|i| Sample::new(i * 15_000, (1_234_500 + i * 1_493) as f64 / 100.0))
            .collect();
        let bytes = encode(&samples);
        assert_eq!(bytes[0] & !FLAG_GRID, ENC_SCALED);
        assert!(bytes.len() < 480 / 2, "{} bytes", bytes.len());
        round_trip(&samples);
    }

    #[test]
    fn page_sized_gauges_use_a_multiplier() {
        let samples: Vec<Sample> = (0..480)
            .map(|i| {
                Sample::new(
                    i * 15_000,
                    (8_000_000_000i64 + ((i * 7919) % 4096) * 4096) as f64,
                )
            })
            .collect();
        let bytes = encode(&samples);
        assert_eq!(
            (bytes[0] & !FLAG_GRID, bytes[1] & FLAG_MUL),
            (ENC_SCALED, FLAG_MUL)
        );
        assert!(bytes.len() < 480 * 2, "{} bytes", bytes.len());
        round_trip(&samples);
    }

    #[test]
    fn jittered_scrapes_use_grid_timestamps() {
        let mut x = 7u64;
        let samples: Vec<Sample> = (0..480)
            .map(|i| {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                Sample::new(1_700_000_000_000 + i * 15_000 + (x >> 62) as i64, 1.0)
            })
            .collect();
        let bytes = encode(&samples);
        assert_eq!(bytes[0] & FLAG_GRID, FLAG_GRID);
        let dod = ChunkEncoder::from_samples(&samples).w.buf;
        assert!(
            bytes.len() * 4 < dod.len() * 3,
            "grid {} vs dod {} bytes",
            bytes.len(),
            dod.len()
        );
        round_trip(&samples);
    }

    #[test]
    fn regular_scrapes_compress_to_about_a_bit_per_timestamp() {
        let samples: Vec<Sample> = (0..480)
            .map(|i| Sample::new(1_700_000_000_000 + i * 15_000, 42.0))
            .collect();
        let bytes = encode(&samples);
        assert!(bytes.len() <= 2 * 480 / 8 + 16, "{} bytes", bytes.len());
        round_trip(&samples);
    }

    #[test]
    fn head_chunk_switches_from_int_to_xor_on_first_fraction() {
        let mut e = ChunkEncoder::for_value(1.0);
        assert_eq!(e.bytes()[0], ENC_SCALED);
        let vals = [1.0, 2.0, 3.0, 3.5, 1.0 / 3.0, f64::NAN, 4.0, STALE_NAN];
        for (i, v) in vals.iter().enumerate() {
            e.push(i as i64 * 10, *v);
        }
        assert_eq!(e.bytes()[0], ENC_XOR);
        let mut out = Vec::new();
        decode(e.bytes(), vals.len(), &mut out).unwrap();
        for (s, v) in out.iter().zip(vals) {
            assert_eq!(s.v.to_bits(), v.to_bits());
        }
    }

    #[test]
    fn corrupt_chunks_error_instead_of_panicking() {
        let samples: Vec<Sample> = (0..50)
            .map(|i| Sample::new(i * 1000, i as f64 * 1.5))
            .collect();
        let bytes = encode(&samples);
        let mut out = Vec::new();
        assert!(decode(&bytes[..bytes.len() / 2], 50, &mut out).is_err());
        assert!(decode(&[9, 1, 2], 1, &mut out).is_err());
        assert!(decode(&[], 1, &mut out).is_err());
    }
}
