//! A PCI function's legacy interrupt through Redox's `irq:` scheme
//! (`/scheme/irq/<n>`): a read answers the line's 8-byte counter once it has
//! grown, and writing that counter back acknowledges it and unmasks the line.

use std::io;
use std::os::fd::RawFd;

use libredox::flag::{O_CLOEXEC, O_NONBLOCK, O_RDWR};
use libredox::Fd;

use crate::interrupt::{InterruptLine, Unmasked};

pub(super) struct IrqLine {
    file: Fd,
    /// The counter the last read answered; none before the first.
    seen: Option<u64>,
}

impl IrqLine {
    pub fn open(irq: u8) -> io::Result<Self> {
        let file = Fd::open(
            &format!("/scheme/irq/{irq}"),
            O_RDWR | O_NONBLOCK | O_CLOEXEC,
            0,
        )?;
        Ok(Self { file, seen: None })
    }
}

impl InterruptLine for IrqLine {
    fn wake_fd(&self) -> Option<RawFd> {
        RawFd::try_from(self.file.raw()).ok()
    }

    fn take_fired(&mut self) -> io::Result<u64> {
        let mut counter = [0; 8];
        match self.file.read(&mut counter) {
            Ok(8) => {}
            Ok(n) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("an irq: read answered {n} bytes, not 8"),
                ))
            }
            Err(error) if error.errno() == syscall::error::EWOULDBLOCK => return Ok(0),
            Err(error) => return Err(error.into()),
        }
        let counter = u64::from_ne_bytes(counter);
        let fired = self
            .seen
            .map_or(1, |seen| counter.wrapping_sub(seen).max(1));
        self.seen = Some(counter);
        Ok(fired)
    }

    /// `irq:` masks the legacy line until this write, and a line still
    /// asserted then fires again, so nothing is pending here.
    fn unmask(&mut self) -> io::Result<Unmasked> {
        let counter = self.seen.unwrap_or(0).to_ne_bytes();
        self.file.write(&counter)?;
        Ok(Unmasked::Quiet)
    }
}
