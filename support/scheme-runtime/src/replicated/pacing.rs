//! Pacing a costly periodic job by its own cost.
//!
//! Through traced replicas a round costs milliseconds under emulation and
//! microseconds on hardware; no fixed period suits both. A paced job starts again no sooner than
//! it last took after it last ended, so it keeps to at most half of the time
//! however slow it is, and runs as often as asked when it is cheap.

use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Pacing {
    /// When the job last ended and how long it took.
    last: Option<(Instant, Duration)>,
}

impl Pacing {
    /// Whether the job may start at `now`.
    pub fn due(&self, now: Instant) -> bool {
        self.last
            .is_none_or(|(ended, took)| now.duration_since(ended) >= took)
    }

    /// The job ran from `started` to `ended`.
    pub fn ran(&mut self, started: Instant, ended: Instant) {
        self.last = Some((ended, ended.duration_since(started)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_as_long_as_the_last_run_took() {
        let start = Instant::now();
        let mut pacing = Pacing::default();
        assert!(pacing.due(start), "the first run starts at once");
        let ended = start + Duration::from_millis(10);
        pacing.ran(start, ended);
        assert!(!pacing.due(ended + Duration::from_millis(9)));
        assert!(pacing.due(ended + Duration::from_millis(10)));
    }
}
