//! Per-subscriber rewriting of RTP sequence numbers and timestamps.
//!
//! Each forwarding leg has its own SSRC (str0m assigns it), so the numbering must be its own
//! too: it starts low (ROC 0, so receivers need no out-of-band rollover signalling) and stays
//! continuous when the leg switches to another source (`tracks/update`) — a jump there would
//! look like massive loss or a timestamp discontinuity to the receiver's jitter buffer.

use std::time::Instant;

/// First outgoing sequence number of a fresh leg; any value below 2^16 keeps the ROC at 0.
const FIRST_SEQ: u64 = 1;

#[derive(Debug, Default)]
pub struct Rewriter {
    /// `out = in + offset` for the current source, once its first packet fixed the offsets.
    seq_offset: Option<i64>,
    ts_offset: u32,
    /// Lowest input sequence the current source may forward (older packets predate the rebase).
    first_in_seq: u64,
    last_out_seq: Option<u64>,
    last_out_ts: u32,
    last_out_at: Option<Instant>,
}

impl Rewriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Forget the current source's offsets: the next packet (from whichever source) continues
    /// the outgoing numbering.
    pub fn rebase(&mut self) {
        self.seq_offset = None;
    }

    /// Maps one incoming packet to its outgoing (extended sequence number, timestamp).
    /// `None` for a packet older than the current source's first forwarded packet.
    pub fn rewrite(
        &mut self,
        in_seq: u64,
        in_ts: u32,
        now: Instant,
        clock_rate: u32,
    ) -> Option<(u64, u32)> {
        let offset = match self.seq_offset {
            Some(offset) => offset,
            None => {
                let out_seq = self.last_out_seq.map_or(FIRST_SEQ, |s| s + 1);
                // Continue the outgoing clock by the wall time that passed since the last packet,
                // so the receiver sees a plausible gap rather than a jump.
                let out_ts = match self.last_out_at {
                    Some(at) => {
                        let elapsed = now.saturating_duration_since(at);
                        let ticks = (elapsed.as_secs_f64() * f64::from(clock_rate)) as u32;
                        self.last_out_ts.wrapping_add(ticks.max(1))
                    }
                    None => 0,
                };
                let offset = out_seq as i64 - in_seq as i64;
                self.seq_offset = Some(offset);
                self.ts_offset = out_ts.wrapping_sub(in_ts);
                self.first_in_seq = in_seq;
                offset
            }
        };
        if in_seq < self.first_in_seq {
            return None;
        }
        let out_seq = (in_seq as i64 + offset) as u64;
        let out_ts = in_ts.wrapping_add(self.ts_offset);
        if self.last_out_seq.is_none_or(|last| out_seq > last) {
            self.last_out_seq = Some(out_seq);
            self.last_out_ts = out_ts;
            self.last_out_at = Some(now);
        }
        Some((out_seq, out_ts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn fresh_leg_starts_low_and_keeps_gaps() {
        let mut rw = Rewriter::new();
        let t = Instant::now();
        assert_eq!(rw.rewrite(70_000, 5_000, t, 90_000), Some((1, 0)));
        assert_eq!(rw.rewrite(70_001, 8_000, t, 90_000), Some((2, 3_000)));
        // A lost packet stays a gap, a late one keeps its place.
        assert_eq!(rw.rewrite(70_003, 14_000, t, 90_000), Some((4, 9_000)));
        assert_eq!(rw.rewrite(70_002, 11_000, t, 90_000), Some((3, 6_000)));
    }

    #[test]
    fn switching_source_continues_numbering() {
        let mut rw = Rewriter::new();
        let t = Instant::now();
        rw.rewrite(10, 1_000, t, 90_000);
        rw.rewrite(11, 4_000, t, 90_000);
        rw.rebase();
        let later = t + Duration::from_millis(100);
        let (seq, ts) = rw.rewrite(500, 77, later, 90_000).unwrap();
        assert_eq!(seq, 3);
        assert_eq!(ts, 3_000 + 9_000);
        // Packets of the new source from before the switch are not forwarded.
        assert_eq!(rw.rewrite(499, 0, later, 90_000), None);
    }

    #[test]
    fn timestamp_wraps() {
        let mut rw = Rewriter::new();
        let t = Instant::now();
        rw.rewrite(1, u32::MAX - 10, t, 48_000);
        assert_eq!(rw.rewrite(2, 9, t, 48_000), Some((2, 20)));
    }
}
