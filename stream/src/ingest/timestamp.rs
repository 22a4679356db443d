//! Unwrapping of 32-bit RTP timestamps (and 16-bit sequence numbers) onto a monotonic i64 line.

/// Extends wrapping counters of `BITS` bits to i64 by choosing, for each new value, the
/// candidate nearest to the previous one. Reordered packets just before a wrap stay negative
/// relative to the wrap instead of jumping forward a whole cycle.
#[derive(Debug, Clone, Default)]
pub struct Unwrapper<const BITS: u32> {
    last: Option<i64>,
}

pub type TimestampUnwrapper = Unwrapper<32>;
pub type SeqUnwrapper = Unwrapper<16>;

impl<const BITS: u32> Unwrapper<BITS> {
    const CYCLE: i64 = 1i64 << BITS;
    const HALF: i64 = 1i64 << (BITS - 1);

    pub fn new() -> Self {
        Self { last: None }
    }

    pub fn unwrap(&mut self, value: u32) -> i64 {
        let value = i64::from(value) & (Self::CYCLE - 1);
        let extended = match self.last {
            None => value,
            Some(last) => {
                let base = last - last.rem_euclid(Self::CYCLE);
                let mut candidate = base + value;
                if candidate - last > Self::HALF {
                    candidate -= Self::CYCLE;
                } else if last - candidate > Self::HALF {
                    candidate += Self::CYCLE;
                }
                candidate
            }
        };
        // Only move forward: a late packet must not drag the reference back.
        if self.last.is_none_or(|last| extended > last) {
            self.last = Some(extended);
        }
        extended
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_continue_across_the_32_bit_wrap() {
        let mut u = TimestampUnwrapper::new();
        assert_eq!(u.unwrap(u32::MAX - 2999), i64::from(u32::MAX) - 2999);
        assert_eq!(u.unwrap(u32::MAX), i64::from(u32::MAX));
        // 3000 ticks later the counter wrapped.
        assert_eq!(u.unwrap(2999), i64::from(u32::MAX) + 3000);
        // A reordered packet from before the wrap keeps its place.
        assert_eq!(u.unwrap(u32::MAX - 1000), i64::from(u32::MAX) - 1000);
        assert_eq!(u.unwrap(5999), i64::from(u32::MAX) + 6000);
    }

    #[test]
    fn sequence_numbers_wrap_at_16_bits() {
        let mut u = SeqUnwrapper::new();
        assert_eq!(u.unwrap(65535), 65535);
        assert_eq!(u.unwrap(0), 65536);
        assert_eq!(u.unwrap(65534), 65534);
        assert_eq!(u.unwrap(2), 65538);
    }
}
