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
    /// Opens the interrupt of the function at `bdf`, non-blocking, with interest
    /// in its readiness.
    pub fn open(bdf: Bdf) -> io::Result<Self> {
        let path = format!("/scheme/mmio/pci/{bdf}/irq");
        let handle = Handle::open(&path, O_RDWR | O_NONBLOCK)
            .map_err(|e| io::Error::new(e.kind(), format!("opening {path}: {e}")))?;
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
