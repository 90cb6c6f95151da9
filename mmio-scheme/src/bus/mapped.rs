//! A memory BAR as a client of `mmio:` reaches it in direct mode: mapped from
//! the scheme, which lends it only where the policy grants `direct_bars`.
//!
//! The replication engine performs its replicas' register batches on one: the
//! batch is checked by the same [`super::Window`] the scheme checks it with,
//! and costs loads and stores instead of a round trip to the scheme.

use std::io;

use scheme_runtime::{Handle, Mapping};

use super::{RegisterBus, VolatileRegion};
use crate::region::{Access, Region};

/// The registers behind an open BAR handle, mapped into this process.
pub struct MappedBar {
    registers: VolatileRegion,
    /// Unmapped on drop, after `registers` is gone.
    _mapping: Mapping,
    /// Kept open for as long as the mapping is used, so that `mmio:` accounts
    /// for it and keeps the function's bus mastering.
    _handle: Handle,
}

impl MappedBar {
    /// Maps all of the registers behind `bar`, an `mmio:` BAR handle, writable
    /// when `writable` (the handle was opened for writing). Fails as the scheme
    /// refuses: `EACCES` where the driver's rule does not grant the BAR in
    /// `direct_bars`.
    pub fn map(bar: Handle, writable: bool) -> io::Result<Self> {
        let len = bar.fstat()?.st_size;
        let mapping = bar.mmap(
            0,
            usize::try_from(len).map_err(|_| io::Error::other("a BAR larger than memory"))?,
            writable,
        )?;
        if mapping.len() as u64 != len || !(mapping.as_ptr() as usize).is_multiple_of(8) {
            return Err(io::Error::other("mmio: mapped a BAR not as asked"));
        }
        // SAFETY: `len` bytes at the page-aligned start of `mapping`, which
        // this value keeps mapped for as long as `registers` lives; a
        // read-only mapping is only ever read, since its window refuses writes.
        let registers = unsafe {
            VolatileRegion::new(
                std::ptr::NonNull::new(mapping.as_ptr()).ok_or_else(|| io::Error::other("null"))?,
                len,
            )
        };
        Ok(Self {
            registers,
            _mapping: mapping,
            _handle: bar,
        })
    }
}

impl RegisterBus for MappedBar {
    fn region(&self) -> Region {
        self.registers.region()
    }

    unsafe fn read(&mut self, access: Access) -> io::Result<u64> {
        // SAFETY: the caller checked `access` against `self.region()`.
        Ok(unsafe { self.registers.read(access) })
    }

    unsafe fn write(&mut self, access: Access, value: u64) -> io::Result<()> {
        // SAFETY: the caller checked `access` against `self.region()`.
        unsafe { self.registers.write(access, value) };
        Ok(())
    }
}
