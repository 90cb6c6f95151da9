//! The watchdog: a replica that does not reach the next event within the period is
//! stopped with SIGSTOP, so the engine's blocking wait returns and the replica is
//! counted as hung.
//!
//! The engine waits in `waitpid`, which has no timeout; a helper thread keeps the
//! deadline instead. It signals only the replicas still marked as awaited, under the
//! same lock the engine takes to mark an arrival.

use std::collections::BTreeSet;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

#[derive(Default)]
struct Shared {
    /// When the awaited replicas are overdue; none while nothing is awaited.
    deadline: Option<Instant>,
    awaited: BTreeSet<i32>,
    /// Replicas the watchdog stopped since the last arm.
    stopped: BTreeSet<i32>,
    quit: bool,
}

pub struct Watchdog {
    period: Duration,
    shared: Arc<(Mutex<Shared>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    pub fn new(period: Duration) -> Self {
        let shared = Arc::new((Mutex::new(Shared::default()), Condvar::new()));
        let thread = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name("romain-watchdog".into())
                .spawn(move || watch(&shared))
                .expect("the watchdog thread starts")
        };
        Self {
            period,
            shared,
            thread: Some(thread),
        }
    }

    pub fn period(&self) -> Duration {
        self.period
    }

    /// Starts a period in which every pid of `awaited` must arrive.
    ///
    /// Waking the watchdog thread costs a context switch, more than an event itself
    /// on one CPU; so the thread is woken only when it sleeps without a deadline.
    /// Otherwise it wakes at the deadline it knows, sees the later one and sleeps on.
    pub fn arm(&self, awaited: impl IntoIterator<Item = Pid>) {
        let (lock, wake) = &*self.shared;
        let mut shared = lock.lock().expect("watchdog lock");
        shared.awaited = awaited.into_iter().map(Pid::as_raw).collect();
        shared.stopped.clear();
        let idle = shared.deadline.is_none();
        shared.deadline = Some(Instant::now() + self.period);
        if idle {
            wake.notify_one();
        }
    }

    /// `pid` arrived in time; returns false if the watchdog had already stopped it, in
    /// which case the stop it reported is the watchdog's.
    pub fn arrived(&self, pid: Pid) -> bool {
        let mut shared = self.shared.0.lock().expect("watchdog lock");
        shared.awaited.remove(&pid.as_raw());
        !shared.stopped.contains(&pid.as_raw())
    }

    /// Whether the watchdog stopped `pid` in the current period.
    pub fn stopped(&self, pid: Pid) -> bool {
        let shared = self.shared.0.lock().expect("watchdog lock");
        shared.stopped.contains(&pid.as_raw())
    }

    /// Nothing is awaited any more. The deadline stays for the thread to find
    /// (see [`Self::arm`]).
    pub fn disarm(&self) {
        let mut shared = self.shared.0.lock().expect("watchdog lock");
        shared.awaited.clear();
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        {
            let (lock, wake) = &*self.shared;
            lock.lock().expect("watchdog lock").quit = true;
            wake.notify_one();
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn watch(shared: &(Mutex<Shared>, Condvar)) {
    let (lock, wake) = shared;
    let mut state = lock.lock().expect("watchdog lock");
    loop {
        if state.quit {
            return;
        }
        let now = Instant::now();
        state = match state.deadline {
            None => wake.wait(state).expect("watchdog lock"),
            Some(deadline) if deadline > now => {
                wake.wait_timeout(state, deadline - now)
                    .expect("watchdog lock")
                    .0
            }
            Some(_) if state.awaited.is_empty() => {
                state.deadline = None;
                state
            }
            Some(_) => {
                let overdue: Vec<i32> = state.awaited.iter().copied().collect();
                for pid in overdue {
                    log::debug!("watchdog: replica pid {pid} overdue; stopping it");
                    // A replica that ended meanwhile is reported by its own status.
                    let _ = kill(Pid::from_raw(pid), Signal::SIGSTOP);
                    state.stopped.insert(pid);
                }
                state.awaited.clear();
                state.deadline = None;
                state
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    use nix::unistd::{fork, ForkResult};

    #[test]
    fn an_overdue_process_is_stopped_and_a_punctual_one_is_not() {
        // SAFETY: the child only pauses in a loop until it is killed.
        let child = match unsafe { fork() }.unwrap() {
            ForkResult::Child => loop {
                // SAFETY: pause is async-signal-safe.
                unsafe { nix::libc::pause() };
            },
            ForkResult::Parent { child } => child,
        };
        let watchdog = Watchdog::new(Duration::from_millis(50));
        watchdog.arm([child]);
        let status = waitpid(child, Some(WaitPidFlag::WUNTRACED)).unwrap();
        assert_eq!(status, WaitStatus::Stopped(child, Signal::SIGSTOP));
        assert!(watchdog.stopped(child));
        assert!(!watchdog.arrived(child));

        watchdog.arm([child]);
        assert!(watchdog.arrived(child), "arrived before the deadline");
        thread::sleep(Duration::from_millis(120));
        assert!(!watchdog.stopped(child));
        kill(child, Signal::SIGKILL).unwrap();
        waitpid(child, None).unwrap();
    }
}
