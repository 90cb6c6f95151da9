//! A memory BAR mapped from its sysfs `resourceN` file.

use std::fs::File;
use std::io;
use std::num::NonZeroUsize;
use std::os::fd::OwnedFd;
use std::ptr::NonNull;

use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};
use scheme_runtime::MapGrant;

use crate::bus::{MappedRegion, RegionOwner, VolatileRegion};
use crate::PAGE_SIZE;

/// A BAR's `resourceN` file mapped: unmapped on drop, and handed to clients
/// in direct mode.
pub struct SysfsMapping {
    mapping: NonNull<std::ffi::c_void>,
    mapping_len: usize,
    file: File,
}

// SAFETY: the mapping is owned by this value alone; the registers in it are
// reached through the `&mut self` of the bus that owns this value.
unsafe impl Send for SysfsMapping {}

/// The registers of a memory BAR, reached by volatile loads and stores.
pub type SysfsMemoryBar = MappedRegion<SysfsMapping>;

/// Maps `len` bytes of registers from `file` (a `resourceN` file).
pub fn map(file: File, len: u64) -> io::Result<SysfsMemoryBar> {
    let too_large = || io::Error::new(io::ErrorKind::InvalidData, format!("BAR of {len:#x} bytes"));
    let mapping_len = usize::try_from(len)
        .map_err(|_| too_large())?
        .checked_next_multiple_of(PAGE_SIZE);
    let mapping_len = mapping_len
        .and_then(NonZeroUsize::new)
        .ok_or_else(too_large)?;
    // SAFETY: a fresh shared mapping of a file we own; nothing else aliases it.
    let mapping = unsafe {
        mmap(
            None,
            mapping_len,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            MapFlags::MAP_SHARED,
            &file,
            0,
        )
    }?;
    let owner = SysfsMapping {
        mapping,
        mapping_len: mapping_len.get(),
        file,
    };
    // SAFETY: `len` bytes at the page-aligned `mapping` stay mapped until
    // `owner` drops.
    Ok(unsafe { MappedRegion::new(VolatileRegion::new(mapping.cast(), len), owner) })
}

impl Drop for SysfsMapping {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, unmapped once; no access outlives it.
        if let Err(error) = unsafe { munmap(self.mapping, self.mapping_len) } {
            log::error!("unmapping a BAR failed: {error}");
        }
    }
}

impl RegionOwner for SysfsMapping {
    fn map_grant(&self, offset: u64) -> io::Result<MapGrant> {
        Ok(MapGrant {
            fd: OwnedFd::from(self.file.try_clone()?),
            offset,
        })
    }
}
