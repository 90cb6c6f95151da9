//! The NIC's interrupt as the driver waits for it: `mmio:pci/<bdf>/irq`.
//!
//! The driver enables the causes it handles ([`HANDLED_CAUSES`]: a frame
//! received, transmit descriptors written back, a link change) and its event
//! loop sleeps until a client's request or the line ([`Interrupt::wake_fd`]).
//! `mmio:` masks the line as it fires; the driver reads ICR, which clears the
//! causes and lowers the level-triggered line, and only then acknowledges, or
//! the line would fire again at once for the same causes.

use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use driver_policy::Bdf;
use mmio_scheme::open_path::Target;
use scheme_runtime::replicated::RelayedLine;
use scheme_runtime::Handle;
use syscall::flag::{EventFlags, O_NONBLOCK, O_RDWR};

use crate::regs::{ICR_LSC, ICR_RXT0, ICR_TXDW};

/// The causes the driver enables in IMS and handles.
pub const HANDLED_CAUSES: u32 = ICR_RXT0 | ICR_TXDW | ICR_LSC;

/// An interrupt line the driver waits on.
pub trait Interrupt {
    /// The descriptor that polls readable once the line may have fired.
    fn wake_fd(&self) -> Option<RawFd>;

    /// Whether the line fired since the last call, without waiting.
    fn fired(&mut self) -> io::Result<bool>;

    /// Unmasks the line: the driver has read ICR.
    fn acknowledge(&mut self) -> io::Result<()>;
}

/// How often a driver that saw no readiness event still asks for the count:
/// a lost event must not leave the line masked for good.
const RECHECK: Duration = Duration::from_millis(100);

/// The line as `mmio:` serves it.
pub struct MmioInterrupt {
    handle: Handle,
    last_asked: Instant,
}

impl MmioInterrupt {
    /// Where `mmio:` serves the interrupt of the function at `bdf`.
    pub fn path(bdf: Bdf) -> String {
        mmio_scheme::client::path(Target::Interrupt { bdf }, None)
    }

    /// Opens the interrupt of the function at `bdf`, non-blocking, with interest
    /// in its readiness.
    pub fn open(bdf: Bdf) -> io::Result<Self> {
        let handle =
            mmio_scheme::client::open(Target::Interrupt { bdf }, None, O_RDWR | O_NONBLOCK)?;
        handle.fevent(EventFlags::EVENT_READ)?;
        Ok(Self {
            handle,
            last_asked: Instant::now(),
        })
    }
}

impl Interrupt for MmioInterrupt {
    fn wake_fd(&self) -> Option<RawFd> {
        self.handle.events_fd()
    }

    /// The readiness event says so, with no request; without one, the count
    /// is asked for every [`RECHECK`].
    fn fired(&mut self) -> io::Result<bool> {
        if self.handle.take_events()?.contains(EventFlags::EVENT_READ) {
            return Ok(true);
        }
        if self.last_asked.elapsed() < RECHECK {
            return Ok(false);
        }
        self.last_asked = Instant::now();
        let mut count = [0; 8];
        match self.handle.read(&mut count) {
            Ok(_) => Ok(u64::from_le_bytes(count) > 0),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Also counts, for `mmio:`, what fired as read.
    fn acknowledge(&mut self) -> io::Result<()> {
        self.handle.write(&[0; 8]).map(drop)
    }
}

/// The line as a replica's engine relays it: the engine waits on it for the
/// group and says in a round that it fired; the replicas' acknowledgement,
/// voted with their reply, unmasks it.
pub struct RelayedInterrupt(pub RelayedLine);

impl Interrupt for RelayedInterrupt {
    fn wake_fd(&self) -> Option<RawFd> {
        None
    }

    fn fired(&mut self) -> io::Result<bool> {
        Ok(self.0.take_fired())
    }

    fn acknowledge(&mut self) -> io::Result<()> {
        self.0.acknowledge();
        Ok(())
    }
}

/// How long the driver polls after the last frame before it sleeps on its
/// line again, by default: under TCG it keeps a TCP stream's frames off the
/// interrupt path (a few hundred interrupts for 20 MiB instead of tens of
/// thousands) and leaves an idle driver asleep (the benchmark's table of the
/// ways of waiting).
pub const DEFAULT_BUSY_POLL_US: u64 = 2000;

/// How the driver waits once its line fired: it leaves the line masked and
/// polls the rings every `every` while frames keep moving, and reads the
/// causes and unmasks the line once `budget` passes with none (NAPI's
/// choice in Linux). A budget of nought takes every burst by its interrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BusyPoll {
    pub every: Duration,
    pub budget: Duration,
}

/// Where the driver stands with its line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LineState {
    /// Unmasked: the next cause fires it.
    Armed,
    /// Fired and still masked, and frames moved in the last round (or it
    /// just fired): the driver polls.
    Busy,
    /// Fired and still masked, and no frame moved since `since`: the driver
    /// polls until the budget has passed.
    Quiet { since: Instant },
}

/// The line, and whether the driver sleeps on it or polls after a burst.
pub struct InterruptWait {
    line: Box<dyn Interrupt>,
    busy_poll: BusyPoll,
    state: LineState,
}

impl InterruptWait {
    pub fn new(line: Box<dyn Interrupt>, busy_poll: BusyPoll) -> Self {
        Self {
            line,
            busy_poll,
            state: LineState::Armed,
        }
    }

    /// Whether the line fired since the last round: the driver then polls,
    /// the line masked, until [`settle`](Self::settle) says it is time to
    /// read the causes and acknowledge.
    pub fn fired(&mut self) -> io::Result<bool> {
        if self.state != LineState::Armed || !self.line.fired()? {
            return Ok(false);
        }
        self.state = LineState::Busy;
        Ok(true)
    }

    /// After a round in which frames moved (`active`) or not: true once the
    /// driver has polled a whole budget without a frame, and must read the
    /// causes and [`acknowledge`](Self::acknowledge). `clock` is read only
    /// in rounds without a frame, and never with a budget of nought: under
    /// replication every clock read is an event of the group.
    pub fn settle(&mut self, active: bool, clock: impl FnOnce() -> Instant) -> bool {
        match self.state {
            LineState::Armed => false,
            _ if self.busy_poll.budget.is_zero() => true,
            _ if active => {
                self.state = LineState::Busy;
                false
            }
            LineState::Busy => {
                self.state = LineState::Quiet { since: clock() };
                false
            }
            LineState::Quiet { since } => {
                clock().saturating_duration_since(since) >= self.busy_poll.budget
            }
        }
    }

    /// Unmasks the line: the causes were read.
    pub fn acknowledge(&mut self) -> io::Result<()> {
        self.state = LineState::Armed;
        self.line.acknowledge()
    }

    /// The line's descriptor while the driver sleeps on it; none while it
    /// polls (the line is masked).
    pub fn wake_fd(&self) -> Option<RawFd> {
        match self.state {
            LineState::Armed => self.line.wake_fd(),
            LineState::Busy | LineState::Quiet { .. } => None,
        }
    }

    /// The polling period while the driver polls.
    pub fn next_round_within(&self) -> Option<Duration> {
        match self.state {
            LineState::Armed => None,
            LineState::Busy | LineState::Quiet { .. } => Some(self.busy_poll.every),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    /// A line that fires when told, and counts acknowledgements.
    #[derive(Clone, Default)]
    struct TestLine {
        pending: Rc<Cell<bool>>,
        acks: Rc<Cell<u32>>,
    }

    impl Interrupt for TestLine {
        fn wake_fd(&self) -> Option<RawFd> {
            Some(7)
        }
        fn fired(&mut self) -> io::Result<bool> {
            Ok(self.pending.replace(false))
        }
        fn acknowledge(&mut self) -> io::Result<()> {
            self.acks.set(self.acks.get() + 1);
            Ok(())
        }
    }

    fn wait(budget_ms: u64) -> (InterruptWait, TestLine) {
        let line = TestLine::default();
        let busy_poll = BusyPoll {
            every: Duration::from_micros(100),
            budget: Duration::from_millis(budget_ms),
        };
        (InterruptWait::new(Box::new(line.clone()), busy_poll), line)
    }

    #[test]
    fn with_no_budget_every_interrupt_is_settled_in_the_round_it_fired() {
        let (mut wait, line) = wait(0);
        let unread = || -> Instant { panic!("no clock is read without a budget") };
        assert!(!wait.fired().unwrap());
        assert!(
            !wait.settle(false, unread),
            "nothing fired, nothing to settle"
        );
        line.pending.set(true);
        assert!(wait.fired().unwrap());
        assert!(wait.settle(false, unread));
        wait.acknowledge().unwrap();
        assert_eq!(line.acks.get(), 1);
        assert_eq!(wait.wake_fd(), Some(7));
        assert_eq!(wait.next_round_within(), None);
    }

    #[test]
    fn the_driver_polls_with_the_line_masked_until_a_budget_passes_without_a_frame() {
        let (mut wait, line) = wait(2);
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let unread = || -> Instant { panic!("no clock is read while frames move") };
        line.pending.set(true);
        assert!(wait.fired().unwrap());
        assert_eq!(
            wait.wake_fd(),
            None,
            "masked: the line cannot wake the driver"
        );
        assert_eq!(wait.next_round_within(), Some(Duration::from_micros(100)));
        assert!(!wait.settle(true, unread));
        assert!(!wait.settle(false, || at(1)), "the quiet spell starts");
        assert!(!wait.settle(true, unread), "a frame ends it");
        assert!(!wait.settle(false, || at(5)), "another starts");
        line.pending.set(true);
        assert!(
            !wait.fired().unwrap(),
            "no interrupt is taken while polling"
        );
        assert!(
            !wait.settle(false, || at(6)),
            "a millisecond without a frame"
        );
        assert!(wait.settle(false, || at(7)), "two");
        wait.acknowledge().unwrap();
        assert_eq!(line.acks.get(), 1);
        assert_eq!(wait.wake_fd(), Some(7));
        assert!(wait.fired().unwrap(), "armed again, the line is taken");
    }
}
