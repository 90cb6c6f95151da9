//! A driver's end of one `mmio:` register handle: single accesses as a pread or pwrite
//! whose length is the access width, and batches of accesses in one `call`.

use std::io;

use mmio_scheme::open_path::{RegisterTarget, Target};
use mmio_scheme::wire::Batch;
use scheme_runtime::Handle;
use syscall::flag::O_RDWR;

/// An open register window (a BAR or a port range).
#[derive(Debug)]
pub struct Registers {
    handle: Handle,
}

impl Registers {
    pub fn open(target: RegisterTarget) -> io::Result<Registers> {
        Self::open_as(target, None)
    }

    /// Opens `target` on behalf of driver `label`, as the supervisor (uid 0) does.
    pub fn open_for(target: RegisterTarget, label: &str) -> io::Result<Registers> {
        Self::open_as(target, Some(label))
    }

    /// The tests tell denials by their errno, which `Handle::open` keeps.
    fn open_as(target: RegisterTarget, label: Option<&str>) -> io::Result<Registers> {
        let path = mmio_scheme::client::path(Target::Registers(target), label);
        Ok(Registers {
            handle: Handle::open(&path, O_RDWR)?,
        })
    }

    /// A 32-bit read; `offset` is a register (`u32`, as `e1000::regs` names them)
    /// or any byte offset (`u64`, to probe the checks).
    pub fn read32(&self, offset: impl Into<u64>) -> io::Result<u32> {
        self.read(offset.into()).map(u32::from_le_bytes)
    }

    pub fn write32(&self, offset: impl Into<u64>, value: u32) -> io::Result<()> {
        self.write(offset.into(), &value.to_le_bytes())
    }

    pub fn read8(&self, offset: u64) -> io::Result<u8> {
        self.read(offset).map(|[byte]| byte)
    }

    pub fn write8(&self, offset: u64, value: u8) -> io::Result<()> {
        self.write(offset, &[value])
    }

    /// Runs every operation of `batch`; read values land in the batch.
    pub fn run(&self, batch: &mut Batch) -> io::Result<()> {
        let performed = self.handle.call(batch.payload_mut(), &[])?;
        if performed != batch.len() {
            return Err(io::Error::other(format!(
                "mmio: performed {performed} of {} operations",
                batch.len()
            )));
        }
        Ok(())
    }

    /// Lets the BAR's PCI function master the bus (DMA): `mmio:` leaves it off
    /// at open, for the driver to start once the device is in order.
    pub fn start_bus_master(&self) -> io::Result<()> {
        self.handle
            .call(&mut [], &[mmio_scheme::wire::START_BUS_MASTER])
            .map(drop)
    }

    /// The scheme handle, for requests the typed methods do not make (bad ones, mmap).
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    fn read<const N: usize>(&self, offset: u64) -> io::Result<[u8; N]> {
        let mut value = [0; N];
        let len = self.handle.read_at(&mut value, offset)?;
        if len != N {
            return Err(io::Error::other(format!(
                "mmio: {N}-byte read at {offset:#x} returned {len} bytes"
            )));
        }
        Ok(value)
    }

    fn write(&self, offset: u64, value: &[u8]) -> io::Result<()> {
        let len = self.handle.write_at(value, offset)?;
        if len != value.len() {
            return Err(io::Error::other(format!(
                "mmio: {}-byte write at {offset:#x} took {len} bytes",
                value.len()
            )));
        }
        Ok(())
    }
}
