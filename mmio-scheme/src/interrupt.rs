//! A PCI function's interrupt, as `pci/<bdf>/irq` serves it: a line that counts
//! how often it fired and stays masked from each firing until the driver,
//! having read and so cleared its device's interrupt cause, acknowledges it.
//!
//! The masking is what level-triggered INTx needs: the line stays asserted
//! until the driver clears the cause, so it is masked as it fires (Linux's
//! `uio_pci_generic` sets the function's Interrupt Disable bit, Redox's `irq:`
//! masks the line) and unmasked by the acknowledgement. A driver that drains
//! its rings before acknowledging gets one interrupt per burst, not per frame.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// One function's interrupt line, opened for one handle.
pub trait InterruptLine {
    /// A descriptor that polls readable once the line has fired, for the
    /// scheme's event loop to wait on; `None` for a line nothing waits on.
    fn wake_fd(&self) -> Option<RawFd>;

    /// How often the line fired since the last call, without waiting.
    fn take_fired(&mut self) -> io::Result<u64>;

    /// Unmasks the line once the driver has cleared its device's cause, and
    /// says whether the device still asks for service.
    fn unmask(&mut self) -> io::Result<Unmasked>;
}

/// What a device says as its line is unmasked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unmasked {
    Quiet,
    /// A cause arose while the line was masked and the device still asserts
    /// it: the unmasking need not deliver it as a new interrupt (QEMU's e1000
    /// under `uio_pci_generic` does not, always), so it counts as a firing.
    Pending,
}

/// A line fired by hand, for host tests; clones share it.
#[derive(Clone, Debug, Default)]
pub struct SoftInterrupt {
    state: Arc<SoftLineState>,
}

#[derive(Debug, Default)]
struct SoftLineState {
    /// Firings not yet taken.
    fired: AtomicU64,
    masked: AtomicBool,
    /// Raised while masked: pending at the unmask.
    raised_while_masked: AtomicBool,
    unmasks: AtomicU64,
}

impl SoftInterrupt {
    /// The device raises the line: counted and masked, unless it is masked
    /// already (a masked line delivers nothing, and says so at the unmask).
    pub fn fire(&self) {
        if self.state.masked.swap(true, Ordering::SeqCst) {
            self.state.raised_while_masked.store(true, Ordering::SeqCst);
        } else {
            self.state.fired.fetch_add(1, Ordering::SeqCst);
        }
    }

    pub fn is_masked(&self) -> bool {
        self.state.masked.load(Ordering::SeqCst)
    }

    /// How often the line was unmasked.
    pub fn unmasks(&self) -> u64 {
        self.state.unmasks.load(Ordering::SeqCst)
    }
}

impl InterruptLine for SoftInterrupt {
    fn wake_fd(&self) -> Option<RawFd> {
        None
    }

    fn take_fired(&mut self) -> io::Result<u64> {
        Ok(self.state.fired.swap(0, Ordering::SeqCst))
    }

    fn unmask(&mut self) -> io::Result<Unmasked> {
        self.state.masked.store(false, Ordering::SeqCst);
        self.state.unmasks.fetch_add(1, Ordering::SeqCst);
        match self.state.raised_while_masked.swap(false, Ordering::SeqCst) {
            true => Ok(Unmasked::Pending),
            false => Ok(Unmasked::Quiet),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_soft_line_fires_once_until_it_is_unmasked() {
        let device = SoftInterrupt::default();
        let mut line = device.clone();
        assert_eq!(line.take_fired().unwrap(), 0);
        device.fire();
        device.fire();
        assert!(device.is_masked());
        assert_eq!(line.take_fired().unwrap(), 1, "masked after the first");
        assert_eq!(line.take_fired().unwrap(), 0, "taken");
        line.unmask().unwrap();
        assert!(!device.is_masked());
        device.fire();
        assert_eq!(line.take_fired().unwrap(), 1);
        assert_eq!(device.unmasks(), 1);
        assert_eq!(line.wake_fd(), None);
    }
}
