//! What one kill costs a stream, read off the stream's own timeline around it.
//!
//! A row's throughput against the rows without kills measures every kill at once,
//! but under emulation two rows without kills already lie 5-15% apart, far more
//! than a kill every 16 s can cost. Around each kill the stream itself is the
//! baseline: the bytes of the `span` before the kill give the rate the stream
//! had, and what the `span` after it fell short of that rate, in milliseconds of
//! stream at that rate, is the kill's cost. Noise a second long cancels out, and
//! a row's loss is its kills' mean cost over the kill interval.
//!
//! The span must hold the whole recovery (the restart, then TCP catching up)
//! and no other kill: half the interval, at most [`MAX_SPAN`].
//!
//! The kills' costs scatter (the stream's own rate wanders by tens of
//! milliseconds a second under emulation), so a row's mean comes with its
//! standard error ([`KillCost`]): a cost is measured only when the mean stands
//! clear of zero by more than twice that. The same reading at instants where
//! nothing was killed (sham kills in the rows without kills) shows the method's
//! bias and noise.

use std::time::Duration;

/// The longest span looked at on either side of a kill: a restart takes tens of
/// milliseconds and TCP's catching up a few hundred.
pub const MAX_SPAN: Duration = Duration::from_secs(1);

/// The span for kills `every` apart: each kill's spans hold no other kill.
pub fn span_for(every: Duration) -> Duration {
    (every / 2).min(MAX_SPAN)
}

/// Bytes received so far, sampled as time went on (from the stream's first byte).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Timeline {
    samples: Vec<(Duration, u64)>,
}

impl Timeline {
    /// Adds a sample; one older than the last is dropped (time only goes on).
    pub fn record(&mut self, at: Duration, bytes: u64) {
        if self.samples.last().is_none_or(|&(last, _)| at >= last) {
            self.samples.push((at, bytes));
        }
    }

    /// The bytes received by `at`, between the samples around it; `None`
    /// outside the samples.
    fn bytes_at(&self, at: Duration) -> Option<f64> {
        let after = self.samples.partition_point(|&(t, _)| t < at);
        let &(t1, b1) = self.samples.get(after)?;
        if t1 == at {
            return Some(b1 as f64);
        }
        let &(t0, b0) = self.samples.get(after.checked_sub(1)?)?;
        let share = (at - t0).as_secs_f64() / (t1 - t0).as_secs_f64();
        Some(b0 as f64 + (b1 as f64 - b0 as f64) * share)
    }

    /// The milliseconds of stream, at the rate of the `span` before `kill_at`,
    /// that the `span` after it fell short by; negative when it got ahead.
    /// `None` when the samples do not cover both spans or nothing came before.
    pub fn kill_cost_ms(&self, kill_at: Duration, span: Duration) -> Option<f64> {
        let before = self.bytes_at(kill_at)? - self.bytes_at(kill_at.checked_sub(span)?)?;
        let after = self.bytes_at(kill_at + span)? - self.bytes_at(kill_at)?;
        let rate_per_ms = before / span.as_secs_f64() / 1000.0;
        (rate_per_ms > 0.0).then(|| (before - after) / rate_per_ms)
    }

    /// What the kills at `kills` whose spans the samples cover cost.
    pub fn kill_cost(&self, kills: &[Duration], span: Duration) -> Option<KillCost> {
        let costs: Vec<f64> = kills
            .iter()
            .filter_map(|&at| self.kill_cost_ms(at, span))
            .collect();
        KillCost::of(&costs)
    }
}

/// What a row's kills cost the stream: the mean over its kills and how sure it is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KillCost {
    /// Milliseconds of stream one kill cost, on the mean.
    pub mean_ms: f64,
    /// The standard error of the mean, from the spread of the kills' costs;
    /// `None` with a single kill measured.
    pub standard_error_ms: Option<f64>,
}

impl KillCost {
    /// The mean and its standard error over `costs`; `None` for no costs.
    pub fn of(costs: &[f64]) -> Option<KillCost> {
        let n = costs.len() as f64;
        let mean_ms = costs.iter().sum::<f64>() / n;
        let standard_error_ms = (costs.len() > 1).then(|| {
            let variance = costs.iter().map(|c| (c - mean_ms).powi(2)).sum::<f64>() / (n - 1.0);
            (variance / n).sqrt()
        });
        (!costs.is_empty()).then_some(KillCost {
            mean_ms,
            standard_error_ms,
        })
    }

    /// Whether the mean stands above zero by more than twice its standard error
    /// (noise alone does that about one time in forty). Without an error the
    /// mean is taken as it is: any cost above zero counts.
    pub fn stands_out(&self) -> bool {
        self.mean_ms > 2.0 * self.standard_error_ms.unwrap_or(0.0)
    }
}

impl std::fmt::Display for KillCost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.0}", self.mean_ms)?;
        match self.standard_error_ms {
            Some(error) => write!(f, " ± {error:.0} ms"),
            None => write!(f, " ms"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// 1 MB/s (1000 bytes a millisecond), sampled every 10 ms, stalled over
    /// `stall` (no byte in it, and none made up later).
    fn timeline(stall: Option<(u64, u64)>) -> Timeline {
        let mut timeline = Timeline::default();
        let mut bytes = 0;
        for t in (0..=4000).step_by(10) {
            timeline.record(ms(t), bytes);
            let stalled = stall.is_some_and(|(from, to)| (from..to).contains(&t));
            if !stalled {
                bytes += 10_000;
            }
        }
        timeline
    }

    #[test]
    fn a_stall_costs_its_length_and_a_steady_stream_costs_nothing() {
        let steady = timeline(None);
        assert_eq!(steady.kill_cost_ms(ms(2000), ms(1000)), Some(0.0));
        let stalled = timeline(Some((2000, 2120)));
        let cost = stalled.kill_cost_ms(ms(2000), ms(1000)).unwrap();
        assert!((cost - 120.0).abs() < 1e-9, "{cost}");
        // The stall lies outside a kill's spans: nothing is charged to it.
        assert_eq!(stalled.kill_cost_ms(ms(500), ms(400)), Some(0.0));
    }

    #[test]
    fn a_stream_that_catches_up_costs_less_and_one_that_gets_ahead_costs_below_zero() {
        let mut timeline = Timeline::default();
        // 1 MB/s, then a 100 ms stall at 1 s made up by the end of the span.
        for (t, bytes) in [
            (0, 0),
            (1000, 1_000_000),
            (1100, 1_000_000),
            (2000, 2_000_000),
        ] {
            timeline.record(ms(t), bytes);
        }
        let cost = timeline.kill_cost_ms(ms(1000), ms(1000)).unwrap();
        assert!(cost.abs() < 1e-9, "{cost}");
        let mut ahead = Timeline::default();
        for (t, bytes) in [(0, 0), (1000, 1_000_000), (2000, 2_500_000)] {
            ahead.record(ms(t), bytes);
        }
        let cost = ahead.kill_cost_ms(ms(1000), ms(1000)).unwrap();
        assert!((cost + 500.0).abs() < 1e-9, "{cost}");
    }

    #[test]
    fn samples_are_interpolated_and_spans_outside_them_are_not_measured() {
        let mut timeline = Timeline::default();
        timeline.record(ms(0), 0);
        timeline.record(ms(100), 1000);
        timeline.record(ms(50), 999_999);
        assert_eq!(
            timeline.bytes_at(ms(25)),
            Some(250.0),
            "the late sample is dropped"
        );
        assert_eq!(timeline.bytes_at(ms(100)), Some(1000.0));
        assert_eq!(timeline.bytes_at(ms(101)), None);
        assert_eq!(
            timeline.kill_cost_ms(ms(50), ms(60)),
            None,
            "before the first"
        );
        assert_eq!(
            timeline.kill_cost_ms(ms(50), ms(51)),
            None,
            "after the last"
        );
        assert_eq!(Timeline::default().kill_cost_ms(ms(1), ms(1)), None);
        let idle = Timeline {
            samples: vec![(ms(0), 0), (ms(100), 0), (ms(200), 500)],
        };
        assert_eq!(idle.kill_cost_ms(ms(100), ms(100)), None, "no rate before");
    }

    #[test]
    fn a_rows_cost_is_the_mean_over_the_kills_it_can_measure() {
        let stalled = timeline(Some((1000, 1100)));
        let cost = stalled
            .kill_cost(&[ms(1000), ms(3000), ms(3990)], ms(500))
            .unwrap();
        assert!((cost.mean_ms - 50.0).abs() < 1e-9, "{cost:?}");
        // Costs of 100 and 0 ms: a spread of 70.7 ms, 50 ms for the mean of two.
        let error = cost.standard_error_ms.unwrap();
        assert!((error - 50.0).abs() < 1e-9, "{cost:?}");
        assert_eq!(stalled.kill_cost(&[ms(3990)], ms(500)), None);
        assert_eq!(span_for(Duration::from_secs(16)), MAX_SPAN);
        assert_eq!(span_for(Duration::from_secs(1)), ms(500));
    }

    #[test]
    fn a_mean_stands_out_only_beyond_twice_its_standard_error() {
        let steady = KillCost::of(&[30.0, 32.0, 28.0, 30.0]).unwrap();
        assert!((steady.mean_ms - 30.0).abs() < 1e-9);
        assert!(steady.stands_out(), "{steady}");
        let noisy = KillCost::of(&[120.0, -80.0, 90.0, -60.0]).unwrap();
        assert!((noisy.mean_ms - 17.5).abs() < 1e-9);
        assert!(!noisy.stands_out(), "{noisy}");
        assert_eq!(noisy.to_string(), "18 ± 51 ms");
        let negative = KillCost::of(&[-10.0, -12.0, -11.0]).unwrap();
        assert!(!negative.stands_out(), "a gain is no loss");
        let single = KillCost::of(&[5.0]).unwrap();
        assert_eq!(single.standard_error_ms, None);
        assert!(single.stands_out());
        assert!(!KillCost::of(&[0.0]).unwrap().stands_out());
        assert_eq!(single.to_string(), "5 ms");
        assert_eq!(KillCost::of(&[]), None);
    }
}
