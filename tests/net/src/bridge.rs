//! The TAP bridge: the guest's own network stack on a TAP device, its frames carried
//! both ways through a NIC served as a scheme. It sleeps in poll(2) on the TAP
//! device, the NIC's event descriptor and a signal descriptor; nothing spins.
//!
//! The NIC's driver may die and be restarted by its supervisor: the NIC's
//! handles then fail with `ESTALE` (the request at hand when a replicated
//! driver's group restarts, once with `EIO`), and the bridge opens them again on
//! the successor and goes on, as MINIX 3's network server reopened a restarted
//! driver. Frames in flight are lost on the way; TCP sends them again. A NIC
//! that fails request after request with nothing moved in between ends the
//! bridge.

use std::io;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signalfd::SignalFd;

use crate::nic::{request_failed, server_gone, Nic};
use crate::relay::{pump, BridgeCounters, Pumped};
use crate::tap::Tap;

/// The line a bridge prints once frames flow: `tap-bridge relaying <details>`.
pub const RELAYING: &str = "tap-bridge relaying";
/// How long the bridge waits for a restarted driver to serve again before it
/// gives up; a supervisor backing off a driver that keeps failing waits up to
/// minutes.
const REOPEN_LIMIT: Duration = Duration::from_secs(300);
/// How long one reopen attempt waits before the bridge looks for a stop signal.
const REOPEN_SLICE: Duration = Duration::from_millis(500);
/// Requests that failed (`EIO`) in a row, each followed by a reopen and no frame
/// moved since, after which the NIC counts as broken and the bridge ends.
const FAILED_REQUESTS_LIMIT: u32 = 3;
/// A frame from the NIC is at most this long (header and MTU 1500, no check sequence).
const NIC_FRAME_MAX: usize = 1514;
/// The TAP device hands over whatever the stack sends; anything over
/// [`NIC_FRAME_MAX`] is read whole and then dropped, not cut.
const TAP_FRAME_MAX: usize = 64 << 10;

pub struct Bridge {
    tap: Tap,
    nic: Nic,
    /// Frames moved one way before the other way gets its turn.
    budget: usize,
    counters: BridgeCounters,
}

impl Bridge {
    pub fn new(tap: Tap, nic: Nic, budget: usize) -> Self {
        Self {
            tap,
            nic,
            budget: budget.max(1),
            counters: BridgeCounters::default(),
        }
    }

    /// Relays until a signal arrives on `stop`; returns what went each way. A
    /// NIC whose driver was restarted is opened again; any other error of
    /// either device ends it.
    pub fn run(&mut self, stop: &SignalFd) -> io::Result<BridgeCounters> {
        let mut nic_buf = vec![0; NIC_FRAME_MAX];
        let mut tap_buf = vec![0; TAP_FRAME_MAX];
        // Frames may have arrived before the bridge registered for events.
        let mut nic_pending = true;
        // The link may be down already; from here on its changes come as events.
        self.sync_carrier();
        // Failed requests since a frame last moved, and the frames then.
        let mut failed_in_a_row = 0;
        let mut frames_then = self.frames_moved();
        loop {
            match self.relay(stop, &mut nic_buf, &mut tap_buf, &mut nic_pending) {
                Ok(Relayed::Stopped) => return Ok(self.counters),
                Ok(Relayed::Moved) => {}
                Err(e) if server_gone(&e) || request_failed(&e) => {
                    if request_failed(&e) {
                        if self.frames_moved() != frames_then {
                            failed_in_a_row = 0;
                        }
                        failed_in_a_row += 1;
                        if failed_in_a_row >= FAILED_REQUESTS_LIMIT {
                            return Err(e);
                        }
                        log::warn!("a request to the NIC failed ({e}); reopening it");
                    }
                    frames_then = self.frames_moved();
                    if !self.reopen_nic(stop)? {
                        return Ok(self.counters);
                    }
                    // The new driver may have frames already, and another link.
                    nic_pending = true;
                    self.sync_carrier();
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Gives the TAP device the carrier the NIC has now. A NIC that cannot say
    /// leaves it as it was: a driver gone shows at the next request.
    fn sync_carrier(&mut self) {
        let synced = self.nic.link_up().and_then(|up| self.tap.set_carrier(up));
        if let Err(error) = synced {
            log::warn!("the NIC's link state: {error}");
        }
    }

    /// Gives the TAP device the NIC's carrier after a change.
    fn follow_link(&mut self, up: bool) -> io::Result<()> {
        self.tap.set_carrier(up)?;
        self.counters.link_changes += 1;
        log::warn!(
            "the NIC's link is {}: {} follows",
            if up { "up" } else { "down" },
            self.tap.name()
        );
        Ok(())
    }

    fn frames_moved(&self) -> u64 {
        self.counters.nic_to_tap.frames + self.counters.tap_to_nic.frames
    }

    /// Opens the NIC again once its driver serves again; false if a stop signal
    /// came first.
    fn reopen_nic(&mut self, stop: &SignalFd) -> io::Result<bool> {
        let started = Instant::now();
        log::warn!("the NIC's driver is gone; reopening it");
        loop {
            match self.nic.reopen(REOPEN_SLICE) {
                Ok(()) => break,
                // Not served yet, or the successor died too, or its group was
                // started afresh (a request at hand then fails with EIO), while
                // the bridge was reopening it: wait for the next one.
                Err(e)
                    if e.raw_os_error() == Some(syscall::error::ENODEV)
                        || server_gone(&e)
                        || request_failed(&e) =>
                {
                    let [stopping] = wait([stop.as_fd()], PollTimeout::ZERO)?;
                    if stopping {
                        return Ok(false);
                    }
                    if started.elapsed() >= REOPEN_LIMIT {
                        return Err(io::Error::new(
                            e.kind(),
                            format!(
                                "the NIC's driver did not serve again within {} s: {e}",
                                REOPEN_LIMIT.as_secs()
                            ),
                        ));
                    }
                }
                Err(e) => return Err(e),
            }
        }
        self.counters.reopened += 1;
        log::warn!(
            "reopened the NIC after {} ms (reopen {})",
            started.elapsed().as_millis(),
            self.counters.reopened
        );
        Ok(true)
    }

    /// One wait and what it found to do.
    fn relay(
        &mut self,
        stop: &SignalFd,
        nic_buf: &mut [u8],
        tap_buf: &mut [u8],
        nic_pending: &mut bool,
    ) -> io::Result<Relayed> {
        let timeout = if *nic_pending {
            PollTimeout::ZERO
        } else {
            PollTimeout::NONE
        };
        let [tap_ready, nic_events, link_events, stopping] = wait(
            [
                self.tap.as_fd(),
                self.nic.events(),
                self.nic.link_events(),
                stop.as_fd(),
            ],
            timeout,
        )?;
        if stopping {
            return Ok(Relayed::Stopped);
        }
        if link_events {
            if let Some(up) = self.nic.take_link_change()? {
                self.follow_link(up)?;
            }
        }
        if nic_events && self.nic.take_arrivals()? {
            *nic_pending = true;
        }
        if *nic_pending {
            let flow = &mut self.counters.nic_to_tap;
            let pumped = pump(&mut self.nic, &mut self.tap, nic_buf, self.budget, flow)?;
            // Drained: the next frame is a rising edge, and comes as an event.
            *nic_pending = pumped == Pumped::BudgetSpent;
        }
        if tap_ready {
            let flow = &mut self.counters.tap_to_nic;
            pump(&mut self.tap, &mut self.nic, tap_buf, self.budget, flow)?;
        }
        Ok(Relayed::Moved)
    }
}

/// What one [`Bridge::relay`] did.
enum Relayed {
    Moved,
    Stopped,
}

/// Which of `fds` have something to read (or an error or hang-up to report).
fn wait<const N: usize>(
    fds: [std::os::fd::BorrowedFd<'_>; N],
    timeout: PollTimeout,
) -> io::Result<[bool; N]> {
    let mut polled = fds.map(|fd| PollFd::new(fd, PollFlags::POLLIN));
    loop {
        match poll(&mut polled, timeout) {
            Ok(_) => break,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    let attention = PollFlags::POLLIN | PollFlags::POLLERR | PollFlags::POLLHUP;
    Ok(polled.map(|fd| fd.revents().is_some_and(|r| r.intersects(attention))))
}
