//! The TAP bridge: the guest's own network stack on a TAP device, its frames carried
//! both ways through a NIC served as a scheme. It sleeps in poll(2) on the TAP
//! device, the NIC's event descriptor and a signal descriptor; nothing spins.

use std::io;
use std::os::fd::AsFd;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signalfd::SignalFd;

use crate::nic::Nic;
use crate::relay::{pump, BridgeCounters, Pumped};
use crate::tap::Tap;

/// The line a bridge prints once frames flow: `tap-bridge relaying <details>`.
pub const RELAYING: &str = "tap-bridge relaying";
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

    /// Relays until a signal arrives on `stop`; returns what went each way. Any
    /// error of either device ends it.
    pub fn run(&mut self, stop: &SignalFd) -> io::Result<BridgeCounters> {
        let mut nic_buf = vec![0; NIC_FRAME_MAX];
        let mut tap_buf = vec![0; TAP_FRAME_MAX];
        // Frames may have arrived before the bridge registered for events.
        let mut nic_pending = true;
        loop {
            let timeout = if nic_pending {
                PollTimeout::ZERO
            } else {
                PollTimeout::NONE
            };
            let [tap_ready, nic_events, stopping] =
                wait([self.tap.as_fd(), self.nic.events(), stop.as_fd()], timeout)?;
            if stopping {
                return Ok(self.counters);
            }
            if nic_events && self.nic.take_arrivals()? {
                nic_pending = true;
            }
            if nic_pending {
                let flow = &mut self.counters.nic_to_tap;
                let pumped = pump(
                    &mut self.nic,
                    &mut self.tap,
                    &mut nic_buf,
                    self.budget,
                    flow,
                )?;
                // Drained: the next frame is a rising edge, and comes as an event.
                nic_pending = pumped == Pumped::BudgetSpent;
            }
            if tap_ready {
                let flow = &mut self.counters.tap_to_nic;
                pump(
                    &mut self.tap,
                    &mut self.nic,
                    &mut tap_buf,
                    self.budget,
                    flow,
                )?;
            }
        }
    }
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
