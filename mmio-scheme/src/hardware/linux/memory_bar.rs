//! A memory BAR mapped from its sysfs `resourceN` file.

use std::fs::File;
use std::io;
use std::num::NonZeroUsize;
use std::os::fd::OwnedFd;
use std::ptr::NonNull;

use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};
use scheme_runtime::MapGrant;

use crate::bus::{RegisterBus, VolatileRegion};
use crate::region::{Access, Region};
use crate::PAGE_SIZE;

/// The registers of a memory BAR, reached by volatile loads and stores.
pub struct SysfsMemoryBar {
    registers: VolatileRegion,
    mapping: NonNull<std::ffi::c_void>,
    mapping_len: usize,
    /// Kept to hand clients in direct mode.
    file: File,
}

// SAFETY: the mapping is owned by this value alone and reached through `&mut self`.
unsafe impl Send for SysfsMemoryBar {}

impl SysfsMemoryBar {
    /// Maps `len` bytes of registers from `file` (a `resourceN` file).
    pub fn map(file: File, len: u64) -> io::Result<Self> {
        let too_large =
            || io::Error::new(io::ErrorKind::InvalidData, format!("BAR of {len:#x} bytes"));
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
        // SAFETY: `len` bytes at the page-aligned `mapping` stay mapped until drop.
        let registers = unsafe { VolatileRegion::new(mapping.cast(), len) };
        Ok(Self {
            registers,
            mapping,
            mapping_len: mapping_len.get(),
            file,
        })
    }
}

impl Drop for SysfsMemoryBar {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, unmapped once; no access outlives `self`.
        if let Err(error) = unsafe { munmap(self.mapping, self.mapping_len) } {
            log::error!("unmapping a BAR failed: {error}");
        }
    }
}

impl RegisterBus for SysfsMemoryBar {
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
        Ok(MapGrant {
            fd: OwnedFd::from(self.file.try_clone()?),
            offset,
        })
    }

    fn mapped_address(&self, offset: u64) -> Option<usize> {
        self.registers.address(offset)
    }
}
