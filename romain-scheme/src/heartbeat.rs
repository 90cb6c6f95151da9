//! Liveness probes: is a driver's request loop still answering?
//!
//! Every period the supervisor opens the driver's heartbeat path. Any answer,
//! even an error, shows that the loop runs, so this works for any scheme driver
//! without changing it. No answer for `missed_periods` periods, counted from the
//! last answer or from the start, means a hang (a deadlock, an endless loop, a
//! stopped process).
//!
//! The first probe goes out as the driver starts and waits for the scheme to be
//! served (queued on the name the group holds, or tried again every millisecond
//! where it holds none): its answer is the moment the driver started serving,
//! which makes a restart's restart-to-serving time. A
//! process that has not served yet has [`START_GRACE`] (or the missed periods,
//! if longer) to do so: a replication engine starting three traced replicas
//! under emulation takes more than a second, and a heartbeat that killed it for
//! that would kill every successor the same way.
//!
//! Opening a scheme blocks until the scheme answers, on Redox as on the host, and
//! a hung driver never answers. So each open runs on a probe thread, at most one
//! per replica at a time, and its result comes back over a channel the
//! supervisor drains every round; the supervisor's loop never waits. The probe
//! of a hung driver returns when the supervisor kills the driver.

use std::io;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::thread;
use std::time::{Duration, Instant};

use scheme_runtime::Handle;
use syscall::error::{ECONNRESET, ENODEV, EPIPE, ESTALE};
use syscall::flag::O_RDONLY;

use crate::process::ReplicaId;

/// How long a new process may take to answer its first probe, at least.
pub const START_GRACE: Duration = Duration::from_secs(10);

/// The outcome of one probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeReply {
    pub replica: ReplicaId,
    pub answered: bool,
    pub at: Instant,
}

/// The channel probe threads report on.
pub struct Probes {
    sender: Sender<ProbeReply>,
    receiver: Receiver<ProbeReply>,
}

impl Probes {
    pub fn new() -> Self {
        let (sender, receiver) = channel();
        Self { sender, receiver }
    }

    pub fn sender(&self) -> &Sender<ProbeReply> {
        &self.sender
    }

    /// The replies that arrived since the last call.
    pub fn drain(&self) -> impl Iterator<Item = ProbeReply> + '_ {
        self.receiver.try_iter()
    }
}

/// What the heartbeat of one replica needs now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Due {
    Nothing,
    Probe,
    /// No answer for this many periods: kill the replica.
    Hung {
        missed_periods: u32,
    },
}

/// The heartbeat state of one replica.
#[derive(Debug)]
pub struct Heartbeat {
    path: String,
    period: Duration,
    missed_periods: u32,
    last_answer: Instant,
    next_probe: Instant,
    probing: bool,
    /// When the driver first answered; `None` while it has not served yet.
    serving_since: Option<Instant>,
}

impl Heartbeat {
    /// The first probe goes out at `started` and waits for the driver to serve,
    /// as long as a process that has not served yet may take ([`START_GRACE`],
    /// or the missed periods if longer).
    pub fn new(path: &str, period: Duration, missed_periods: u32, started: Instant) -> Self {
        Self {
            path: path.to_owned(),
            period,
            missed_periods,
            last_answer: started,
            next_probe: started,
            probing: false,
            serving_since: None,
        }
    }

    pub fn due(&self, now: Instant) -> Due {
        if now.saturating_duration_since(self.last_answer) >= self.silence_allowed() {
            Due::Hung {
                missed_periods: self.missed_periods,
            }
        } else if !self.probing && now >= self.next_probe {
            Due::Probe
        } else {
            Due::Nothing
        }
    }

    /// Checks the replica and starts a probe if one is due; the number of
    /// periods without an answer when the replica counts as hung.
    pub fn poll(
        &mut self,
        replica: ReplicaId,
        now: Instant,
        probes: &Sender<ProbeReply>,
    ) -> Option<u32> {
        match self.due(now) {
            Due::Hung { missed_periods } => Some(missed_periods),
            Due::Probe => {
                let wait_to_serve = match self.serving_since {
                    None => self.silence_allowed(),
                    Some(_) => Duration::ZERO,
                };
                match start_probe(&self.path, replica, wait_to_serve, probes) {
                    Ok(()) => self.probing = true,
                    // Counts as no answer; the next period tries again.
                    Err(e) => log::warn!("heartbeat {}: cannot start a probe: {e}", self.path),
                }
                self.next_probe = now + self.period;
                None
            }
            Due::Nothing => None,
        }
    }

    /// The driver has answered once.
    pub fn has_served(&self) -> bool {
        self.serving_since.is_some()
    }

    /// How long the driver may go without an answer now.
    fn silence_allowed(&self) -> Duration {
        let missed = self.period.saturating_mul(self.missed_periods);
        match self.serving_since {
            None => missed.max(START_GRACE),
            Some(_) => missed,
        }
    }

    /// Takes a probe's reply; the time of the driver's first answer, when this
    /// is it.
    pub fn record(&mut self, answered: bool, at: Instant) -> Option<Instant> {
        self.probing = false;
        if !answered {
            return None;
        }
        self.last_answer = self.last_answer.max(at);
        match self.serving_since {
            Some(_) => None,
            None => {
                self.serving_since = Some(at);
                // The regular probes count from the first answer.
                self.next_probe = at + self.period;
                Some(at)
            }
        }
    }
}

/// Opens `path` on a thread of its own, trying again while the scheme is not
/// served until `wait_to_serve` has passed, and reports on `probes`.
fn start_probe(
    path: &str,
    replica: ReplicaId,
    wait_to_serve: Duration,
    probes: &Sender<ProbeReply>,
) -> io::Result<()> {
    let path = path.to_owned();
    let probes = probes.clone();
    thread::Builder::new()
        .name("heartbeat".into())
        .spawn(move || {
            crate::platform::leave_child_signals_to_the_main_thread();
            let opened =
                scheme_runtime::open_when_served(wait_to_serve, || Handle::open(&path, O_RDONLY));
            let answered = scheme_answered(&opened);
            // The supervisor may have dropped the replica meanwhile; nobody misses
            // a reply for it.
            let _ = probes.send(ProbeReply {
                replica,
                answered,
                at: Instant::now(),
            });
        })?;
    Ok(())
}

/// Whether an open reached the scheme and got its answer. A missing scheme (not
/// served yet, or gone) and a connection that broke mid-request are no answer.
fn scheme_answered<T>(result: &io::Result<T>) -> bool {
    match result {
        Ok(_) => true,
        Err(e) => {
            matches!(e.raw_os_error(), Some(errno) if !matches!(errno, ENODEV | EPIPE | ECONNRESET | ESTALE))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use syscall::error::{EACCES, ENOENT};

    const PERIOD: Duration = Duration::from_millis(100);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn probes_every_period_and_declares_a_hang_after_the_missed_periods() {
        let start = Instant::now();
        let mut heartbeat = Heartbeat::new("drv:", PERIOD, 2, start);
        // The first probe waits for the driver to serve.
        assert_eq!(heartbeat.due(start), Due::Probe);
        heartbeat.probing = true;
        assert_eq!(heartbeat.due(start + ms(5)), Due::Nothing);
        assert_eq!(
            heartbeat.record(true, start + ms(20)),
            Some(start + ms(20)),
            "the first answer is when the driver started serving"
        );
        assert_eq!(heartbeat.due(start + ms(119)), Due::Nothing);
        assert_eq!(heartbeat.due(start + ms(120)), Due::Probe);

        // A probe in flight is not doubled.
        heartbeat.probing = true;
        assert_eq!(heartbeat.due(start + ms(150)), Due::Nothing);
        assert_eq!(
            heartbeat.record(true, start + ms(120)),
            None,
            "not the first"
        );
        heartbeat.next_probe = start + ms(200);
        assert_eq!(heartbeat.due(start + ms(250)), Due::Probe);
        // Two periods after the last answer, not after the start.
        assert_eq!(heartbeat.due(start + ms(319)), Due::Probe);
        assert_eq!(
            heartbeat.due(start + ms(320)),
            Due::Hung { missed_periods: 2 }
        );
    }

    #[test]
    fn negative_or_stale_replies_do_not_count_as_answers() {
        let start = Instant::now();
        let mut heartbeat = Heartbeat::new("drv:", PERIOD, 3, start);
        heartbeat.probing = true;
        assert_eq!(heartbeat.record(false, start + ms(250)), None);
        assert!(!heartbeat.probing);
        assert_eq!(heartbeat.due(start + ms(300)), Due::Probe, "still starting");
        assert_eq!(
            heartbeat.due(start + START_GRACE),
            Due::Hung { missed_periods: 3 }
        );

        assert_eq!(
            heartbeat.record(true, start + ms(280)),
            Some(start + ms(280))
        );
        assert_eq!(heartbeat.record(true, start + ms(200)), None);
        assert_eq!(
            heartbeat.last_answer,
            start + ms(280),
            "an older reply does not move the clock back"
        );
    }

    #[test]
    fn a_driver_that_never_serves_is_hung_after_the_start_grace() {
        let start = Instant::now();
        let mut heartbeat = Heartbeat::new("drv:", PERIOD, 2, start);
        heartbeat.probing = true;
        assert_eq!(heartbeat.due(start + ms(200)), Due::Nothing);
        assert_eq!(
            heartbeat.due(start + START_GRACE - ms(1)),
            Due::Nothing,
            "still starting"
        );
        assert_eq!(
            heartbeat.due(start + START_GRACE),
            Due::Hung { missed_periods: 2 }
        );
        // Periods longer than the grace count in full.
        let slow = Heartbeat::new("drv:", START_GRACE, 2, start);
        assert_eq!(slow.due(start + START_GRACE * 2 - ms(1)), Due::Probe);
    }

    #[test]
    fn which_results_are_answers() {
        let errno = |n| -> io::Result<()> { Err(io::Error::from_raw_os_error(n)) };
        assert!(scheme_answered(&Ok(())));
        assert!(scheme_answered(&errno(ENOENT)));
        assert!(scheme_answered(&errno(EACCES)));
        assert!(!scheme_answered(&errno(ENODEV)));
        assert!(!scheme_answered(&errno(EPIPE)));
        assert!(!scheme_answered(&errno(ECONNRESET)));
        assert!(!scheme_answered(&errno(ESTALE)));
        assert!(!scheme_answered::<()>(&Err(io::Error::other("no errno"))));
    }
}
