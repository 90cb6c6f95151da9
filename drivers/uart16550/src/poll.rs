//! When the driver looks at the chip. There is no interrupt path to a user-space
//! driver of COM2 on Linux, so the daemon polls: once per round of the scheme
//! server (after requests, and every tick without them), and while bytes move it
//! keeps stepping, so a transfer runs at the speed of the device rather than one
//! FIFO per tick.
//!
//! An idle round costs one step (one LSR read: an `in`, or one `mmio:` call); a busy
//! round steps until the chip has been quiet for `linger`, or for `budget` at most,
//! so requests keep being served during a long transfer.

use std::time::{Duration, Instant};

/// The longest one round polls a busy chip: parked reads and writes, and other
/// clients, wait at most this long for their answer.
pub const ROUND_BUDGET: Duration = Duration::from_millis(5);

/// How a round polls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PollPolicy {
    /// How long a busy round goes on stepping after the last byte moved: the time
    /// the other end (QEMU refilling the receive FIFO) gets to deliver more.
    pub linger: Duration,
    /// The longest a round polls before the server serves requests again.
    pub budget: Duration,
}

impl PollPolicy {
    /// Calls `step` until it has not moved bytes for `linger`, or `budget` has
    /// passed; an idle device gets exactly one step.
    pub fn poll(&self, mut step: impl FnMut() -> bool) {
        let started = Instant::now();
        let mut last_moved = None;
        loop {
            let moved = step();
            let now = Instant::now();
            if moved {
                last_moved = Some(now);
            } else if last_moved.is_none_or(|at| now.duration_since(at) >= self.linger) {
                return;
            }
            if now.duration_since(started) >= self.budget {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUICK: PollPolicy = PollPolicy {
        linger: Duration::ZERO,
        budget: Duration::from_secs(10),
    };

    /// Polls with `policy` a device that moves bytes in its first `busy` steps;
    /// returns the steps taken.
    fn steps(policy: PollPolicy, busy: u32) -> u32 {
        let mut steps = 0;
        policy.poll(|| {
            steps += 1;
            steps <= busy
        });
        steps
    }

    #[test]
    fn an_idle_device_gets_one_step() {
        assert_eq!(steps(QUICK, 0), 1);
    }

    #[test]
    fn a_busy_device_is_stepped_until_quiet() {
        assert_eq!(steps(QUICK, 4), 5);
    }

    #[test]
    fn lingering_waits_for_more_after_the_last_byte() {
        let policy = PollPolicy {
            linger: Duration::from_millis(20),
            ..QUICK
        };
        let started = Instant::now();
        assert!(steps(policy, 1) > 2);
        assert!(started.elapsed() >= policy.linger);
    }

    #[test]
    fn the_budget_ends_a_round_that_never_goes_quiet() {
        let policy = PollPolicy {
            linger: Duration::ZERO,
            budget: Duration::from_millis(5),
        };
        let started = Instant::now();
        policy.poll(|| true);
        let took = started.elapsed();
        assert!(
            took >= policy.budget && took < Duration::from_secs(5),
            "{took:?}"
        );
    }
}
