//! How long a group's restarts take: from the fault (the driver's death, or the
//! heartbeat it missed) to its successor serving again (its first heartbeat
//! answer). MINIX 3 measured 0.36-0.5 s for its network drivers; clients of a
//! restarted driver wait this long before their reopen succeeds.

use std::time::{Duration, Instant};

/// The restart-to-serving times of one group.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServingTimes {
    /// When the fault being recovered from happened; `None` while the driver
    /// serves, or when its start was not a restart (the group's first).
    fault_at: Option<Instant>,
    last: Option<Duration>,
    total: Duration,
    count: u32,
}

impl ServingTimes {
    /// The driver stopped serving at `at`; the next first answer ends the
    /// restart. A second fault before that (a successor that died starting) keeps
    /// the first one's time: the clients have waited since then.
    pub fn fault(&mut self, at: Instant) {
        self.fault_at.get_or_insert(at);
    }

    /// The driver started serving at `at`; ends the restart under way, if any,
    /// and says how long it took.
    pub fn serving(&mut self, at: Instant) -> Option<Duration> {
        let fault_at = self.fault_at.take()?;
        let took = at.saturating_duration_since(fault_at);
        self.last = Some(took);
        self.total = self.total.saturating_add(took);
        self.count = self.count.saturating_add(1);
        Some(took)
    }

    /// The group was brought up afresh: what comes next is no restart.
    pub fn forget_fault(&mut self) {
        self.fault_at = None;
    }

    /// The last completed restart's time.
    pub fn last(&self) -> Option<Duration> {
        self.last
    }

    /// The mean over every completed restart.
    pub fn mean(&self) -> Option<Duration> {
        (self.count > 0).then(|| self.total / self.count)
    }

    /// Completed restarts measured.
    pub fn count(&self) -> u32 {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_restart_runs_from_the_fault_to_the_first_answer() {
        let start = Instant::now();
        let mut times = ServingTimes::default();
        assert_eq!((times.last(), times.mean(), times.count()), (None, None, 0));
        times.fault(start);
        assert_eq!(times.serving(start + ms(30)), Some(ms(30)));
        times.fault(start + ms(1000));
        assert_eq!(times.serving(start + ms(1010)), Some(ms(10)));
        assert_eq!(times.last(), Some(ms(10)));
        assert_eq!(times.mean(), Some(ms(20)));
        assert_eq!(times.count(), 2);
    }

    #[test]
    fn a_start_that_was_no_restart_is_not_counted() {
        let start = Instant::now();
        let mut times = ServingTimes::default();
        assert_eq!(times.serving(start + ms(5)), None);
        assert_eq!(times.count(), 0);
        times.fault(start + ms(10));
        times.forget_fault();
        times.serving(start + ms(20));
        assert_eq!((times.last(), times.count()), (None, 0));
    }

    #[test]
    fn a_successor_that_dies_starting_extends_the_first_faults_restart() {
        let start = Instant::now();
        let mut times = ServingTimes::default();
        times.fault(start);
        times.fault(start + ms(40));
        times.serving(start + ms(100));
        assert_eq!(times.last(), Some(ms(100)));
        // Answers after the first end nothing.
        assert_eq!(times.serving(start + ms(200)), None);
        assert_eq!((times.last(), times.count()), (Some(ms(100)), 1));
    }
}
