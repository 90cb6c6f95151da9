//! How the driver reaches the UART's registers: byte reads and writes at a port
//! offset from the UART's base, one at a time or as a batch performed in order.
//!
//! Two implementations, chosen at start: [`DirectPorts`] executes `in`/`out` itself
//! (the instructions the replication engine traps), [`MmioPorts`] asks `mmio:` and
//! sends a batch as one call. Host tests use the software chip in [`crate::soft`].

mod direct;
mod mmio;

use std::io;

pub use direct::DirectPorts;
pub use mmio::MmioPorts;

/// One register access of a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortAccess {
    /// Reads the register at `offset`; `value` holds what was read once the batch ran.
    Read {
        offset: u8,
        value: u8,
    },
    Write {
        offset: u8,
        value: u8,
    },
}

impl PortAccess {
    pub fn read(offset: u8) -> Self {
        Self::Read { offset, value: 0 }
    }

    pub fn write(offset: u8, value: u8) -> Self {
        Self::Write { offset, value }
    }

    /// What a read returned (after the batch ran) or a write wrote.
    pub fn value(&self) -> u8 {
        match *self {
            Self::Read { value, .. } | Self::Write { value, .. } => value,
        }
    }
}

/// Byte access to the registers at offsets `0..8` from the UART's base port.
pub trait PortIo {
    fn read(&mut self, offset: u8) -> io::Result<u8>;

    fn write(&mut self, offset: u8, value: u8) -> io::Result<()>;

    /// Performs `batch` in order, storing read values in place; stops at the first
    /// error. Backends with a cost per request override this to send one request.
    fn run(&mut self, batch: &mut [PortAccess]) -> io::Result<()> {
        for access in batch {
            match access {
                PortAccess::Read { offset, value } => *value = self.read(*offset)?,
                PortAccess::Write { offset, value } => self.write(*offset, *value)?,
            }
        }
        Ok(())
    }
}
