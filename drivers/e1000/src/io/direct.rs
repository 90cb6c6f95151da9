//! Registers through a direct mapping of BAR 0: `mmio:` hands the BAR itself to a
//! driver its policy grants `direct_bars`, and each access is one volatile load or
//! store (the replication engine traps these as page faults).

use std::io;

use scheme_runtime::{Handle, Mapping};

use super::{check_batch, Access, Io, RegOp};

pub struct DirectIo {
    mapping: Mapping,
    /// Kept open for as long as the mapping is used, so `mmio:` accounts for it.
    bar: Handle,
}

impl DirectIo {
    /// Maps all of the register window behind `bar` (an open `mmio:` BAR handle).
    pub fn map(bar: Handle) -> io::Result<Self> {
        let len = usize::try_from(bar.fstat()?.st_size)
            .map_err(|_| io::Error::other("mmio: reports a BAR larger than memory"))?;
        let mapping = bar.mmap(0, len, true)?;
        Ok(Self { mapping, bar })
    }
}

impl Io for DirectIo {
    fn run(&mut self, ops: &mut [RegOp]) -> io::Result<()> {
        check_batch(ops, self.mapping.len())?;
        for op in ops {
            // SAFETY: check_batch proved the 4 bytes at op.reg lie inside the
            // mapping, 4-byte aligned; the mapping is device memory nothing else in
            // this process aliases.
            let register = unsafe { self.mapping.as_ptr().add(op.reg as usize).cast::<u32>() };
            match op.access {
                // SAFETY: `register` is inside the mapping and aligned (above).
                Access::Read => op.value = unsafe { register.read_volatile() },
                // SAFETY: as for the read.
                Access::Write => unsafe { register.write_volatile(op.value) },
            }
        }
        Ok(())
    }

    fn start_bus_master(&mut self) -> io::Result<()> {
        super::mmio::start_bus_master(&self.bar)
    }
}
