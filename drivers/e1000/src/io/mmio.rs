//! Registers through `mmio:` requests: a batch of accesses is one `call` in
//! `mmio:`'s wire format, so one round trip carries a whole ring setup or every
//! tail update of a round.

use std::io;

use mmio_scheme::wire::{records, Batch, RegisterOp, Width, START_BUS_MASTER};
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

impl MmioIo {
    /// Checks `ops` and lays them out as the batch to send.
    fn lay_out(&mut self, ops: &[RegOp]) -> io::Result<()> {
        // mmio: checks too; checking here keeps the error message the driver's own.
        check_batch(ops, self.len)?;
        self.batch.clear();
        for op in ops {
            let pushed = match op.access {
                Access::Read => self.batch.read(op.reg.into(), Width::U32),
                Access::Write => self.batch.write(op.reg.into(), Width::U32, op.value.into()),
            };
            pushed.map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        }
        Ok(())
    }
}

fn check_performed(performed: usize, asked: usize) -> io::Result<()> {
    if performed == asked {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "mmio: performed {performed} of {asked} register accesses"
        )))
    }
}

impl Io for MmioIo {
    fn start_bus_master(&mut self) -> io::Result<()> {
        start_bus_master(&self.bar)
    }

    fn read_request(&mut self, reg: u32) -> Option<(u32, Vec<u8>)> {
        self.lay_out(&[RegOp::read(reg)]).ok()?;
        self.bar.call_request(self.batch.payload_mut(), &[]).ok()
    }

    fn value_in_answer(&self, answer: &[u8]) -> Option<u32> {
        let [record] = records(answer).ok()? else {
            return None;
        };
        let value = RegisterOp::decode(record).ok()?.value;
        u32::try_from(value).ok()
    }

    fn run_late(&mut self, ops: &mut [RegOp]) -> io::Result<()> {
        if ops.iter().any(|op| op.access == Access::Read) {
            return self.run(ops);
        }
        self.lay_out(ops)?;
        match self.bar.call_held(self.batch.payload_mut(), &[])? {
            Some(performed) => check_performed(performed, ops.len()),
            // mmio: refuses a bad batch whole, and this one was checked.
            None => Ok(()),
        }
    }

    fn run(&mut self, ops: &mut [RegOp]) -> io::Result<()> {
        self.lay_out(ops)?;
        if ops.is_empty() {
            return Ok(());
        }
        let performed = self.bar.call(self.batch.payload_mut(), &[])?;
        check_performed(performed, ops.len())?;
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
