//! Registers through `mmio:` requests: a batch of accesses is one `call` in
//! `mmio:`'s wire format, so one round trip carries a whole ring setup or every
//! tail update of a round.

use std::io;

use mmio_scheme::wire::{Batch, Width, START_BUS_MASTER};
use scheme_runtime::Handle;

use super::{check_batch, Access, Io, RegOp};

pub struct MmioIo {
    bar: Handle,
    len: usize,
    /// Reused from call to call.
    batch: Batch,
}

impl MmioIo {
    /// Uses `bar`, an open `mmio:` BAR handle.
    pub fn new(bar: Handle) -> io::Result<Self> {
        let len = usize::try_from(bar.fstat()?.st_size)
            .map_err(|_| io::Error::other("mmio: reports a BAR larger than memory"))?;
        Ok(Self {
            bar,
            len,
            batch: Batch::new(),
        })
    }
}

/// Asks `mmio:` to let the function behind `bar` master the bus.
pub(super) fn start_bus_master(bar: &Handle) -> io::Result<()> {
    bar.call(&mut [], &[START_BUS_MASTER]).map(drop)
}

impl Io for MmioIo {
    fn start_bus_master(&mut self) -> io::Result<()> {
        start_bus_master(&self.bar)
    }

    fn run(&mut self, ops: &mut [RegOp]) -> io::Result<()> {
        // mmio: checks too; checking here keeps the error message the driver's own.
        check_batch(ops, self.len)?;
        if ops.is_empty() {
            return Ok(());
        }
        self.batch.clear();
        for op in ops.iter() {
            let pushed = match op.access {
                Access::Read => self.batch.read(op.reg.into(), Width::U32),
                Access::Write => self.batch.write(op.reg.into(), Width::U32, op.value.into()),
            };
            pushed.map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        }
        let performed = self.bar.call(self.batch.payload_mut(), &[])?;
        if performed != ops.len() {
            return Err(io::Error::other(format!(
                "mmio: performed {performed} of {} register accesses",
                ops.len()
            )));
        }
        for (index, op) in ops.iter_mut().enumerate() {
            if op.access == Access::Read {
                let value = self.batch.value(index).unwrap_or_default();
                op.value = u32::try_from(value).map_err(|_| {
                    io::Error::other(format!("mmio: a 32-bit read returned {value:#x}"))
                })?;
            }
        }
        Ok(())
    }
}
