//! A memory BAR mapped uncached from the `memory` scheme (`physical@uc`).

use std::io;
use std::ptr::NonNull;

use libredox::call::{mmap, munmap, MmapArgs};
use libredox::flag::{MAP_SHARED, O_CLOEXEC, O_RDWR, PROT_READ, PROT_WRITE};
use libredox::Fd;

use crate::bus::{RegisterBus, VolatileRegion};
use crate::region::{Access, Region};
use crate::PAGE_SIZE;

/// The registers of a memory BAR, reached by volatile loads and stores.
pub struct PhysicalBar {
    registers: VolatileRegion,
    mapping: NonNull<u8>,
    mapping_len: usize,
}

// SAFETY: the mapping is owned by this value alone and reached through `&mut self`.
unsafe impl Send for PhysicalBar {}

impl PhysicalBar {
    /// Maps `size` bytes of device memory at physical address `address`.
    pub fn map(address: u64, size: u64) -> io::Result<Self> {
        let bad = || {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("BAR at {address:#x} of {size:#x} bytes"),
            )
        };
        if address == 0 || !address.is_multiple_of(PAGE_SIZE as u64) {
            return Err(bad());
        }
        let mapping_len = usize::try_from(size)
            .ok()
            .and_then(|len| len.checked_next_multiple_of(PAGE_SIZE));
        let mapping_len = mapping_len.filter(|len| *len > 0).ok_or_else(bad)?;
        let memory = Fd::open("/scheme/memory/physical@uc", O_CLOEXEC | O_RDWR, 0)?;
        let args = MmapArgs {
            addr: std::ptr::null_mut(),
            length: mapping_len,
            prot: PROT_READ | PROT_WRITE,
            flags: MAP_SHARED,
            fd: memory.raw(),
            offset: address,
        };
        // SAFETY: a fresh mapping at an address the kernel chooses; nothing aliases it.
        let mapping = unsafe { mmap(args) }?;
        let mapping = NonNull::new(mapping.cast::<u8>()).ok_or_else(bad)?;
        // SAFETY: `size` bytes at the page-aligned `mapping` stay mapped until drop.
        let registers = unsafe { VolatileRegion::new(mapping, size) };
        Ok(Self {
            registers,
            mapping,
            mapping_len,
        })
    }
}

impl Drop for PhysicalBar {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, unmapped once; no access outlives `self`.
        if let Err(error) = unsafe { munmap(self.mapping.as_ptr().cast(), self.mapping_len) } {
            log::error!("unmapping a BAR failed: {error}");
        }
    }
}

impl RegisterBus for PhysicalBar {
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

    fn mapped_address(&self, offset: u64) -> Option<usize> {
        self.registers.address(offset)
    }
}
