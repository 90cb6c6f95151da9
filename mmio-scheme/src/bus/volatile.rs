//! Volatile loads and stores into a mapped register region, and the register
//! bus every backend that maps a memory BAR is (Linux sysfs, Redox physical
//! memory, a client's direct mapping): [`MappedRegion`], the region and what
//! keeps it mapped.

use std::io;
use std::ptr::NonNull;

use scheme_runtime::MapGrant;

use super::RegisterBus;
use crate::region::{Access, Region};
use crate::wire::Width;

/// What keeps a [`MappedRegion`] mapped (unmapping it on drop), and what
/// else its backend lends.
pub(crate) trait RegionOwner: Send {
    /// Linux direct mode: see [`RegisterBus::map_grant`].
    fn map_grant(&self, offset: u64) -> io::Result<MapGrant> {
        let _ = offset;
        Err(io::ErrorKind::Unsupported.into())
    }
}

/// A memory BAR's registers, reached by volatile loads and stores, with
/// the owner that keeps them mapped (dropped after them).
pub(crate) struct MappedRegion<O: RegionOwner> {
    registers: VolatileRegion,
    owner: O,
}

impl<O: RegionOwner> MappedRegion<O> {
    /// # Safety
    /// `registers` stays mapped, readable and writable (or only ever read,
    /// behind a read-only window), for as long as `owner` lives.
    pub(crate) unsafe fn new(registers: VolatileRegion, owner: O) -> Self {
        Self { registers, owner }
    }
}

impl<O: RegionOwner> RegisterBus for MappedRegion<O> {
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

    fn map_grant(&self, offset: u64) -> io::Result<MapGrant> {
        self.owner.map_grant(offset)
    }

    fn mapped_address(&self, offset: u64) -> Option<usize> {
        self.registers.address(offset)
    }
}

/// A mapped memory BAR: `len` bytes of registers at `base`.
#[derive(Debug)]
pub(crate) struct VolatileRegion {
    base: NonNull<u8>,
    len: u64,
}

// SAFETY: the registers are reached only through `&mut` methods of the bus that
// owns this region, so moving it to another thread is as safe as any pointer move.
unsafe impl Send for VolatileRegion {}

impl VolatileRegion {
    /// # Safety
    /// `base..base + len` is mapped, readable and writable for as long as this
    /// value lives, and `base` is aligned to 8 bytes.
    pub(crate) unsafe fn new(base: NonNull<u8>, len: u64) -> Self {
        Self { base, len }
    }

    pub(crate) fn region(&self) -> Region {
        Region::memory(self.len)
    }

    pub(crate) fn address(&self, offset: u64) -> Option<usize> {
        (offset < self.len).then(|| self.base.as_ptr() as usize + offset as usize)
    }

    /// # Safety
    /// `access` passed `self.region().check(..)`.
    pub(crate) unsafe fn read(&self, access: Access) -> u64 {
        // SAFETY: the access lies inside the mapping and is aligned to its width
        // (checked), so the pointer is valid for one volatile load of that width.
        unsafe {
            let at = self.base.as_ptr().add(access.offset() as usize);
            match access.width() {
                Width::U8 => at.read_volatile().into(),
                Width::U16 => at.cast::<u16>().read_volatile().into(),
                Width::U32 => at.cast::<u32>().read_volatile().into(),
                Width::U64 => at.cast::<u64>().read_volatile(),
            }
        }
    }

    /// # Safety
    /// `access` passed `self.region().check(..)`.
    pub(crate) unsafe fn write(&self, access: Access, value: u64) {
        // SAFETY: as in `read`; the truncations keep the bits of the width,
        // which are all the bits the value has (the window checks it fits).
        unsafe {
            let at = self.base.as_ptr().add(access.offset() as usize);
            match access.width() {
                Width::U8 => at.write_volatile(value as u8),
                Width::U16 => at.cast::<u16>().write_volatile(value as u16),
                Width::U32 => at.cast::<u32>().write_volatile(value as u32),
                Width::U64 => at.cast::<u64>().write_volatile(value),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_and_stores_little_endian_registers() {
        let mut backing = vec![0u64; 4];
        let base = NonNull::new(backing.as_mut_ptr().cast::<u8>()).unwrap();
        // SAFETY: `backing` is 32 bytes, 8-aligned and outlives `regs`.
        let regs = unsafe { VolatileRegion::new(base, 32) };
        let at = |offset, width| regs.region().check(offset, width).unwrap();
        // SAFETY: every access below was checked against the region.
        unsafe {
            regs.write(at(8, Width::U32), 0x8008_0783);
            regs.write(at(16, Width::U8), 0x5a);
            regs.write(at(24, Width::U64), 0x0102_0304_0506_0708);
            assert_eq!(regs.read(at(8, Width::U32)), 0x8008_0783);
            assert_eq!(regs.read(at(10, Width::U16)), 0x8008);
            assert_eq!(regs.read(at(16, Width::U64)), 0x5a);
            assert_eq!(regs.read(at(31, Width::U8)), 0x01);
        }
        assert_eq!(regs.address(31), Some(base.as_ptr() as usize + 31));
        assert_eq!(regs.address(32), None);
        assert_eq!(backing[1], 0x8008_0783);
    }
}
