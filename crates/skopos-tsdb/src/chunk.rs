//! Sample chunks: Gorilla-style bit-packed compression.
//!
//! # Format (chunk format version 1)
//!
//! A chunk is `encoding: u8` followed by a big-endian bit stream. The sample
//! count is not stored in the chunk; the owner (head series, block index)
//! keeps it next to the chunk.
//!
//! Timestamps (both encodings): the first timestamp, then the first delta,
//! then deltas-of-deltas, each written with the signed bucket code
//! `0` (zero) | `10`+7 bits | `110`+12 bits | `1110`+20 bits | `1111`+64 bits.
//!
//! Values:
//! * encoding 1 (`XOR`): the first value as 64 raw bits; then
//!   `v XOR prev` as `0` (same value), `10` + meaningful bits inside the
//!   previous leading/trailing-zero window, or `11` + 5 bits leading zeros +
//!   6 bits meaningful length (0 means 64) + meaningful bits.
//! * encoding 2 (`INT`, only written into blocks, when every value is an
//!   integer of magnitude < 2^53 and not `-0.0`): the first value, the first
//!   delta, then deltas-of-deltas of the values as i64, with the bucket code
//!   above. Counters with a steady rate cost ~1 bit per sample.
//!
//! NaN payloads (including the staleness marker), infinities and `-0.0`
//! survive bit-exactly in the XOR encoding.

use skopos_model::Sample;

pub const ENC_XOR: u8 = 1;
pub const ENC_INT: u8 = 2;

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

impl<'a> BitReader<'a> {
    fn read_bit(&mut self) -> Option<bool> {
        let byte = *self.buf.get(self.pos / 8)?;
        let bit = byte & (0x80 >> (self.pos % 8)) != 0;
        self.pos += 1;
        Some(bit)
    }

    fn read_bits(&mut self, n: u8) -> Option<u64> {
        let mut v = 0u64;
        let mut left = n;
        while left > 0 {
            let byte = *self.buf.get(self.pos / 8)?;
            let off = (self.pos % 8) as u8;
            let avail = 8 - off;
            let take = avail.min(left);
            let bits = (byte >> (avail - take)) & ((1u16 << take) - 1) as u8;
            v = (v << take) | bits as u64;
            self.pos += take as usize;
            left -= take;
        }
        Some(v)
    }
}

fn fits(x: i64, bits: u8) -> bool {
    let lim = 1i64 << (bits - 1);
    (-lim..lim).contains(&x)
}

fn put_signed(w: &mut BitWriter, x: i64) {
    if x == 0 {
        w.write_bit(false);
        return;
    }
    for (prefix, plen, bits) in [(0b10u64, 2u8, 7u8), (0b110, 3, 12), (0b1110, 4, 20)] {
        if fits(x, bits) {
            w.write_bits(prefix, plen);
            w.write_bits(x as u64 & ((1u64 << bits) - 1), bits);
            return;
        }
    }
    w.write_bits(0b1111, 4);
    w.write_bits(x as u64, 64);
}

fn get_signed(r: &mut BitReader) -> Option<i64> {
    let mut ones = 0;
    while ones < 4 && r.read_bit()? {
        ones += 1;
    }
    let bits: u8 = match ones {
        0 => return Some(0),
        1 => 7,
        2 => 12,
        3 => 20,
        _ => return Some(r.read_bits(64)? as i64),
    };
    let raw = r.read_bits(bits)?;
    // Sign-extend.
    let shift = 64 - bits as u32;
    Some(((raw << shift) as i64) >> shift)
}

fn is_int_value(v: f64) -> bool {
    v.fract() == 0.0 && v.abs() < 9_007_199_254_740_992.0 && !(v == 0.0 && v.is_sign_negative())
}

/// Appends samples to one chunk. Timestamps must be strictly increasing.
#[derive(Debug, Clone)]
pub struct ChunkEncoder {
    w: BitWriter,
    enc: u8,
    count: u32,
    t: i64,
    t_delta: i64,
    v_bits: u64,
    iv: i64,
    iv_delta: i64,
    lead: u8,
    trail: u8,
    min_t: i64,
}

impl ChunkEncoder {
    pub fn new(enc: u8) -> Self {
        let mut w = BitWriter::default();
        w.buf.push(enc);
        ChunkEncoder {
            w,
            enc,
            count: 0,
            t: 0,
            t_delta: 0,
            v_bits: 0,
            iv: 0,
            iv_delta: 0,
            lead: u8::MAX,
            trail: 0,
            min_t: 0,
        }
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

    pub fn heap_bytes(&self) -> usize {
        self.w.buf.capacity()
    }

    /// Appends to a head chunk, switching an integer chunk to XOR (by
    /// re-encoding it) when the first non-integer value arrives.
    pub fn push(&mut self, t: i64, v: f64) {
        if self.enc == ENC_INT && !is_int_value(v) {
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
        ChunkEncoder::new(if is_int_value(v) { ENC_INT } else { ENC_XOR })
    }

    /// Encoder holding `samples` (sorted), for re-encoding head chunks.
    pub fn from_samples(samples: &[Sample]) -> Self {
        let enc = if samples.iter().all(|s| is_int_value(s.v)) {
            ENC_INT
        } else {
            ENC_XOR
        };
        let mut e = ChunkEncoder::new(enc);
        for s in samples {
            e.append(s.t, s.v);
        }
        e
    }

    pub fn append(&mut self, t: i64, v: f64) {
        match self.count {
            0 => {
                self.min_t = t;
                put_signed(&mut self.w, t);
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
        if self.enc == ENC_INT {
            let iv = v as i64;
            match self.count {
                0 => put_signed(&mut self.w, iv),
                1 => {
                    self.iv_delta = iv.wrapping_sub(self.iv);
                    put_signed(&mut self.w, self.iv_delta);
                }
                _ => {
                    let d = iv.wrapping_sub(self.iv);
                    put_signed(&mut self.w, d.wrapping_sub(self.iv_delta));
                    self.iv_delta = d;
                }
            }
            self.iv = iv;
        } else if self.count == 0 {
            self.w.write_bits(v.to_bits(), 64);
        } else {
            let x = v.to_bits() ^ self.v_bits;
            if x == 0 {
                self.w.write_bit(false);
            } else {
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
        }
        self.v_bits = v.to_bits();
        self.count += 1;
    }
}

/// Encodes sorted samples into one chunk, choosing the smaller encoding.
pub fn encode(samples: &[Sample]) -> Vec<u8> {
    ChunkEncoder::from_samples(samples).w.buf
}

#[derive(Debug, thiserror::Error)]
#[error("corrupt chunk: {0}")]
pub struct ChunkError(pub &'static str);

/// Decodes `count` samples from a chunk, appending them to `out`.
pub fn decode(bytes: &[u8], count: usize, out: &mut Vec<Sample>) -> Result<(), ChunkError> {
    let (&enc, rest) = bytes.split_first().ok_or(ChunkError("empty"))?;
    if enc != ENC_XOR && enc != ENC_INT {
        return Err(ChunkError("unknown encoding"));
    }
    let mut r = BitReader { buf: rest, pos: 0 };
    let (mut t, mut td) = (0i64, 0i64);
    let (mut vb, mut iv, mut ivd) = (0u64, 0i64, 0i64);
    let (mut lead, mut trail) = (0u8, 0u8);
    out.reserve(count);
    for i in 0..count {
        let x = get_signed(&mut r).ok_or(ChunkError("truncated bit stream"))?;
        match i {
            0 => t = x,
            1 => {
                td = x;
                t = t.wrapping_add(td);
            }
            _ => {
                td = td.wrapping_add(x);
                t = t.wrapping_add(td);
            }
        }
        let v = if enc == ENC_INT {
            let x = get_signed(&mut r).ok_or(ChunkError("truncated bit stream"))?;
            match i {
                0 => iv = x,
                1 => {
                    ivd = x;
                    iv = iv.wrapping_add(ivd);
                }
                _ => {
                    ivd = ivd.wrapping_add(x);
                    iv = iv.wrapping_add(ivd);
                }
            }
            iv as f64
        } else {
            if i == 0 {
                vb = r.read_bits(64).ok_or(ChunkError("truncated bit stream"))?;
            } else if r.read_bit().ok_or(ChunkError("truncated bit stream"))? {
                if r.read_bit().ok_or(ChunkError("truncated bit stream"))? {
                    lead = r.read_bits(5).ok_or(ChunkError("truncated bit stream"))? as u8;
                    let mut sig = r.read_bits(6).ok_or(ChunkError("truncated bit stream"))? as u8;
                    if sig == 0 {
                        sig = 64;
                    }
                    if lead as u32 + sig as u32 > 64 {
                        return Err(ChunkError("bad xor window"));
                    }
                    trail = 64 - lead - sig;
                }
                let sig = 64 - lead - trail;
                let bits = r.read_bits(sig).ok_or(ChunkError("truncated bit stream"))?;
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
        for enc in [ENC_XOR, encode(samples)[0]] {
            let mut e = ChunkEncoder::new(enc);
            for s in samples {
                e.append(s.t, s.v);
            }
            let mut out = Vec::new();
            decode(e.bytes(), samples.len(), &mut out).unwrap();
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
            assert_eq!(encode(&samples)[0], ENC_INT);
            round_trip(&samples);
        }
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
        assert_eq!(e.bytes()[0], ENC_INT);
        let vals = [1.0, 2.0, 3.0, 3.5, f64::NAN, 4.0, STALE_NAN];
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
