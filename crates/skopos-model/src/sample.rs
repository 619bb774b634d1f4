/// One float sample: a millisecond Unix timestamp and a value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub t: i64,
    pub v: f64,
}

impl Sample {
    pub fn new(t: i64, v: f64) -> Self {
        Sample { t, v }
    }

    /// Bit-exact equality: two NaNs with the same payload are equal, which is
    /// what duplicate detection needs (`0.0 == -0.0` is not a duplicate).
    pub fn same_as(&self, other: &Sample) -> bool {
        self.t == other.t && self.v.to_bits() == other.v.to_bits()
    }
}

/// Bit pattern of Prometheus' staleness marker: a signalling NaN that no
/// arithmetic produces, so it cannot be confused with an ordinary NaN value.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// The staleness marker as a float.
pub const STALE_NAN: f64 = f64::from_bits(STALE_NAN_BITS);

/// True if `v` is the staleness marker (and not any other NaN).
pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_nan_is_distinguished_from_ordinary_nan() {
        assert!(STALE_NAN.is_nan());
        assert!(is_stale_nan(STALE_NAN));
        assert!(!is_stale_nan(f64::NAN));
        assert!(!is_stale_nan(0.0));
    }

    #[test]
    fn duplicate_check_is_bitwise() {
        let a = Sample::new(1, 0.0);
        assert!(!a.same_as(&Sample::new(1, -0.0)));
        assert!(Sample::new(1, f64::NAN).same_as(&Sample::new(1, f64::NAN)));
        assert!(!Sample::new(1, STALE_NAN).same_as(&Sample::new(1, f64::NAN)));
    }
}
