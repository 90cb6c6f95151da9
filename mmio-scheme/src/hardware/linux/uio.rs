//! A PCI function's INTx interrupt through UIO (`uio_pci_generic`): reading
//! `/dev/uioN` answers the total of interrupts once it has grown (4 bytes).
//! The kernel masks INTx as it fires, by setting Interrupt Disable (bit 10 of
//! the command register); `uio_pci_generic` has no write to clear it again, so
//! unmasking clears the bit through the function's `config` file, reading and
//! writing the command register as one 16-bit word as the kernel's own
//! masking does. (A one-byte write of its high byte, as the kernel's UIO
//! how-to shows, left QEMU's e1000 with its interrupt pending and unmasked
//! yet storming as unhandled after a few thousand interrupts.)

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use crate::interrupt::{InterruptLine, Unmasked};

/// The PCI command register, in configuration space.
const COMMAND_OFFSET: u64 = 0x04;
/// Interrupt Disable, bit 10 of the command register.
const INTX_DISABLE: u16 = 1 << 10;
/// The PCI status register, in configuration space.
const STATUS_OFFSET: u64 = 0x06;
/// Interrupt Status, bit 3 of the status register: the function asserts INTx.
const INTX_STATUS: u16 = 1 << 3;

pub(super) struct UioLine {
    file: File,
    /// The function's configuration space.
    config: File,
    /// The total the last read answered; none before the first.
    seen: Option<u32>,
}

impl UioLine {
    /// Opens `uio_name` (as `uio/` of the function names it) under `dev`, and
    /// the function's `config`.
    pub fn open(dev: &Path, uio_name: &str, config: &Path) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_CLOEXEC)
            .open(dev.join(uio_name))?;
        let config = OpenOptions::new().read(true).write(true).open(config)?;
        Ok(Self {
            file,
            config,
            seen: None,
        })
    }
}

impl InterruptLine for UioLine {
    fn wake_fd(&self) -> Option<RawFd> {
        Some(self.file.as_raw_fd())
    }

    fn take_fired(&mut self) -> io::Result<u64> {
        let mut total = [0; 4];
        match self.file.read(&mut total) {
            Ok(4) => {}
            Ok(n) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("a UIO read answered {n} bytes, not 4"),
                ))
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(0),
            Err(error) => return Err(error),
        }
        let total = u32::from_ne_bytes(total);
        // The first read knows no earlier total: it saw at least one.
        let fired = self.seen.map_or(1, |seen| total.wrapping_sub(seen).max(1));
        self.seen = Some(total);
        Ok(u64::from(fired))
    }

    /// Clears Interrupt Disable; a function that still asserts INTx (a cause
    /// that arose while masked) is pending: measured under QEMU's e1000, such a
    /// cause was not always delivered as a new interrupt, and a frame waited
    /// for the next one.
    fn unmask(&mut self) -> io::Result<Unmasked> {
        let mut command = [0; 2];
        self.config.read_exact_at(&mut command, COMMAND_OFFSET)?;
        let command = u16::from_le_bytes(command);
        if command & INTX_DISABLE != 0 {
            let unmasked = command & !INTX_DISABLE;
            self.config
                .write_all_at(&unmasked.to_le_bytes(), COMMAND_OFFSET)?;
        }
        let mut status = [0; 2];
        self.config.read_exact_at(&mut status, STATUS_OFFSET)?;
        match u16::from_le_bytes(status) & INTX_STATUS {
            0 => Ok(Unmasked::Quiet),
            _ => Ok(Unmasked::Pending),
        }
    }
}
