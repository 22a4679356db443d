//! Lining up tracks with RTCP sender reports.
//!
//! Each sender report pairs an NTP wall-clock instant with the RTP time of the same instant on
//! that track's clock. With one report per track, any RTP time of either track can be expressed
//! on the NTP line, which is how audio finds its place on the video timeline. Before reports
//! arrive, arrival times are the fallback (good to a jitter-buffer's accuracy).

/// NTP 64-bit fixed point (seconds since 1900 in the high word) to seconds as f64.
pub fn ntp_to_seconds(ntp: u64) -> f64 {
    (ntp >> 32) as f64 + (ntp & 0xffff_ffff) as f64 / 4_294_967_296.0
}

/// Extends a 32-bit RTP time to the unwrapped value nearest to `reference` (an unwrapped time of
/// the same track).
pub fn extend_near(reference: i64, value: u32) -> i64 {
    const CYCLE: i64 = 1 << 32;
    let base = reference - reference.rem_euclid(CYCLE);
    [base - CYCLE, base, base + CYCLE]
        .into_iter()
        .map(|b| b + i64::from(value))
        .min_by_key(|candidate| (candidate - reference).abs())
        .unwrap_or(i64::from(value))
}

/// The latest sender report of a track, with its RTP time unwrapped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClockAnchor {
    pub rtp_time: i64,
    pub ntp_seconds: f64,
    pub clock_rate: u32,
}

impl ClockAnchor {
    pub fn new(ntp_time: u64, rtp_time: u32, reference: i64, clock_rate: u32) -> Self {
        Self {
            rtp_time: extend_near(reference, rtp_time),
            ntp_seconds: ntp_to_seconds(ntp_time),
            clock_rate,
        }
    }

    /// Wall-clock seconds of an (unwrapped) RTP time of this track.
    pub fn seconds_of(&self, rtp_time: i64) -> f64 {
        self.ntp_seconds + (rtp_time - self.rtp_time) as f64 / f64::from(self.clock_rate)
    }

    /// The RTP time of this track at wall-clock `seconds`.
    pub fn rtp_at(&self, seconds: f64) -> i64 {
        self.rtp_time + ((seconds - self.ntp_seconds) * f64::from(self.clock_rate)).round() as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_audio_onto_video_through_reports() {
        // Both reports describe the same instant, 1000 s after the NTP epoch.
        let ntp = 1000u64 << 32;
        let video = ClockAnchor::new(ntp, 90_000, 90_000, 90_000);
        let audio = ClockAnchor::new(ntp + (1u64 << 31), 500_000, 500_000, 48_000); // 0.5 s later
                                                                                    // Video 1 s after its report = 1001 s; audio reaches that at 500000 + 0.5 s × 48k.
        let t = video.seconds_of(180_000);
        assert!((t - 1001.0).abs() < 1e-9);
        assert_eq!(audio.rtp_at(t), 524_000);
    }

    #[test]
    fn extends_reports_across_a_wrap() {
        let reference = (1i64 << 32) + 100;
        assert_eq!(extend_near(reference, u32::MAX - 50), (1i64 << 32) - 51);
        assert_eq!(extend_near(reference, 200), (1i64 << 32) + 200);
    }
}
