//! Opening a path again once its scheme's server is back, on both platforms.
//!
//! A handle whose server died fails with `ESTALE` (see `Handle::reopen`). The
//! successor takes a moment to serve: until it has, opening the path fails with
//! `ENODEV` (a failed connect, some microseconds), and the open is tried again
//! every millisecond for the first [`QUICK_RESTART`], then twice as long each
//! time up to [`LONGEST_PAUSE`]: a restart of tens of milliseconds is seen
//! within a millisecond of its end, and a supervisor's backoff of seconds costs
//! few attempts. Where a supervisor holds the scheme's name across the restart
//! (`SchemeListener`), the first open is queued there and waits instead.

use std::io;
use std::time::{Duration, Instant};

use syscall::error::ENODEV;

const FIRST_PAUSE: Duration = Duration::from_millis(1);
/// How long a restart may take and still be seen at once: a driver's start
/// under emulation takes a few hundred milliseconds, and a failed connect costs
/// microseconds.
const QUICK_RESTART: Duration = Duration::from_secs(1);
const LONGEST_PAUSE: Duration = Duration::from_millis(50);

/// Calls `open` until it succeeds, fails with anything but `ENODEV`, or `wait`
/// has passed (then its last `ENODEV`). A zero `wait` tries once.
pub fn open_when_served<T>(
    wait: Duration,
    mut open: impl FnMut() -> io::Result<T>,
) -> io::Result<T> {
    let started = Instant::now();
    let deadline = started + wait;
    let mut pause = FIRST_PAUSE;
    loop {
        match open() {
            Err(e) if e.raw_os_error() == Some(ENODEV) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(e);
                }
                std::thread::sleep(pause.min(left));
                if started.elapsed() >= QUICK_RESTART {
                    pause = (pause * 2).min(LONGEST_PAUSE);
                }
            }
            done => return done,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io_error;
    use syscall::error::{Error, EACCES};

    #[test]
    fn a_scheme_not_served_yet_is_tried_again_until_it_is() {
        let mut attempts = 0;
        let opened = open_when_served(Duration::from_secs(10), || {
            attempts += 1;
            match attempts {
                1..=3 => Err(io_error(Error::new(ENODEV))),
                _ => Ok(attempts),
            }
        });
        assert_eq!(opened.unwrap(), 4);
    }

    #[test]
    fn any_other_refusal_ends_it_at_once() {
        let mut attempts = 0;
        let opened: io::Result<()> = open_when_served(Duration::from_secs(10), || {
            attempts += 1;
            Err(io_error(Error::new(EACCES)))
        });
        assert_eq!(opened.unwrap_err().raw_os_error(), Some(EACCES));
        assert_eq!(attempts, 1);
    }

    #[test]
    fn it_gives_up_with_enodev_once_the_wait_has_passed() {
        let started = Instant::now();
        let mut attempts = 0;
        let opened: io::Result<()> = open_when_served(Duration::from_millis(300), || {
            attempts += 1;
            Err(io_error(Error::new(ENODEV)))
        });
        assert_eq!(opened.unwrap_err().raw_os_error(), Some(ENODEV));
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(300), "{waited:?}");
        // One a millisecond at most (fewer if sleeps run long): never a busy loop.
        assert!((30..=301).contains(&attempts), "{attempts} attempts");
    }

    #[test]
    fn a_long_wait_backs_off_to_the_longest_pause() {
        let mut attempts = Vec::new();
        let started = Instant::now();
        let _: io::Result<()> = open_when_served(QUICK_RESTART * 2, || {
            attempts.push(started.elapsed());
            Err(io_error(Error::new(ENODEV)))
        });
        let gaps: Vec<Duration> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
        // The very last pause is cut short by the deadline.
        let longest = gaps.iter().max().copied().unwrap_or_default();
        assert!(
            longest >= LONGEST_PAUSE && longest < LONGEST_PAUSE * 3,
            "the longest pause was {longest:?}"
        );
        assert!(
            gaps[..10].iter().all(|gap| *gap < LONGEST_PAUSE),
            "{gaps:?}"
        );
    }
}
