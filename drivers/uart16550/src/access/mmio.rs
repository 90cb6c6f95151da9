//! Access through `mmio:`: the registers through `mmio:port/<first>-<last>`, the access layer
//! that checks every access against the policy. A single access is a one-byte
//! pread/pwrite; a batch is one `call` in `mmio_scheme::wire` format, so a step of
//! the driver (take a byte, fill the transmit FIFO, read the line status) costs one
//! round trip.

use std::io;

use driver_policy::PortRange;
use mmio_scheme::open_path::{RegisterTarget, Target};
use mmio_scheme::wire::{Batch, Width};
use scheme_runtime::Handle;
use syscall::flag::O_RDWR;

use super::{PortAccess, PortIo};

/// An `mmio:` handle on the UART's ports.
pub struct MmioPorts {
    handle: Handle,
    batch: Batch,
}

impl MmioPorts {
    /// Opens the ports as the calling user; `mmio:` grants them only to the driver
    /// whose policy rule has this uid and names the range.
    pub fn open(range: PortRange) -> io::Result<Self> {
        let ports = Target::Registers(RegisterTarget::Ports(range));
        let handle = mmio_scheme::client::open(ports, None, O_RDWR)?;
        Ok(Self {
            handle,
            batch: Batch::new(),
        })
    }
}

impl PortIo for MmioPorts {
    fn read(&mut self, offset: u8) -> io::Result<u8> {
        let mut value = [0];
        expect_one(self.handle.read_at(&mut value, offset.into())?)?;
        Ok(value[0])
    }

    fn write(&mut self, offset: u8, value: u8) -> io::Result<()> {
        expect_one(self.handle.write_at(&[value], offset.into())?)
    }

    fn run(&mut self, batch: &mut [PortAccess]) -> io::Result<()> {
        self.batch.clear();
        for access in batch.iter() {
            let pushed = match *access {
                PortAccess::Read { offset, .. } => self.batch.read(offset.into(), Width::U8),
                PortAccess::Write { offset, value } => {
                    self.batch.write(offset.into(), Width::U8, value.into())
                }
            };
            pushed.map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error))?;
        }
        let performed = self.handle.call(self.batch.payload_mut(), &[])?;
        if performed != batch.len() {
            return Err(io::Error::other(format!(
                "mmio: performed {performed} of {} accesses",
                batch.len()
            )));
        }
        for (index, access) in batch.iter_mut().enumerate() {
            if let PortAccess::Read { value, .. } = access {
                // Reads of one byte come back zero-extended.
                *value = self.batch.value(index).unwrap_or_default() as u8;
            }
        }
        Ok(())
    }
}

fn expect_one(transferred: usize) -> io::Result<()> {
    match transferred {
        1 => Ok(()),
        n => Err(io::Error::other(format!(
            "mmio: a one-byte access moved {n} bytes"
        ))),
    }
}
