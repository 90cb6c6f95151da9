//! The restart schedule of a driver that keeps failing (MINIX 3 style).
//!
//! The first fault is restarted at once: a driver that failed once is most
//! likely fine again, and clients are waiting. From the second consecutive fault
//! on the delay doubles, 1, 2, 4, ... periods, up to a cap, so a driver that dies
//! at start-up costs a bounded amount of work and never becomes a busy loop.

use std::time::Duration;

/// How long to wait before restarting after the `repetition`-th consecutive
/// fault (counted from 1).
pub fn restart_delay(repetition: u32, period: Duration, cap_periods: u32) -> Duration {
    let periods = match repetition {
        0 | 1 => 0,
        n => 1u32.checked_shl(n - 2).unwrap_or(u32::MAX).min(cap_periods),
    };
    period.saturating_mul(periods)
}

/// How long a driver must run before its faults stop counting as consecutive:
/// once it has stayed up as long as the longest backoff, it has recovered.
pub fn stable_after(period: Duration, cap_periods: u32) -> Duration {
    period.saturating_mul(cap_periods)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PERIOD: Duration = Duration::from_secs(5);

    fn periods(repetition: u32, cap: u32) -> u32 {
        let delay = restart_delay(repetition, PERIOD, cap);
        assert_eq!(delay.as_nanos() % PERIOD.as_nanos(), 0);
        (delay.as_nanos() / PERIOD.as_nanos()) as u32
    }

    #[test]
    fn first_restart_is_immediate_then_doubles_to_the_cap() {
        let schedule: Vec<u32> = (1..=9).map(|r| periods(r, 30)).collect();
        assert_eq!(schedule, [0, 1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(periods(0, 30), 0);
        assert_eq!(periods(5, 3), 3);
        assert_eq!(periods(2, 1), 1);
    }

    #[test]
    fn huge_repetitions_stay_at_the_cap() {
        assert_eq!(periods(33, 30), 30);
        assert_eq!(periods(34, 30), 30);
        assert_eq!(periods(u32::MAX, 1000), 1000);
        assert_eq!(restart_delay(40, Duration::MAX, 1000), Duration::MAX);
    }

    #[test]
    fn stability_is_the_longest_backoff() {
        assert_eq!(stable_after(PERIOD, 30), Duration::from_secs(150));
        assert_eq!(
            stable_after(Duration::from_millis(100), 4),
            Duration::from_millis(400)
        );
    }
}
