//! A memory BAR mapped uncached from the `memory` scheme (`physical@uc`).

use std::io;
use std::ptr::NonNull;

use libredox::call::{mmap, munmap, MmapArgs};
use libredox::flag::{MAP_SHARED, O_CLOEXEC, O_RDWR, PROT_READ, PROT_WRITE};
use libredox::Fd;

use crate::bus::{MappedRegion, RegionOwner, VolatileRegion};
use crate::PAGE_SIZE;

/// A BAR's physical memory mapped: unmapped on drop.
pub struct PhysicalMapping {
    mapping: NonNull<u8>,
    mapping_len: usize,
}

// SAFETY: the mapping is owned by this value alone; the registers in it are
// reached through the `&mut self` of the bus that owns this value.
unsafe impl Send for PhysicalMapping {}

impl RegionOwner for PhysicalMapping {}

/// The registers of a memory BAR, reached by volatile loads and stores.
pub type PhysicalBar = MappedRegion<PhysicalMapping>;

/// Maps `size` bytes of device memory at physical address `address`.
pub fn map(address: u64, size: u64) -> io::Result<PhysicalBar> {
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
    let owner = PhysicalMapping {
        mapping,
        mapping_len,
    };
    // SAFETY: `size` bytes at the page-aligned `mapping` stay mapped until
    // `owner` drops.
    Ok(unsafe { MappedRegion::new(VolatileRegion::new(mapping, size), owner) })
}

impl Drop for PhysicalMapping {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, unmapped once; no access outlives it.
        if let Err(error) = unsafe { munmap(self.mapping.as_ptr().cast(), self.mapping_len) } {
            log::error!("unmapping a BAR failed: {error}");
        }
    }
}
