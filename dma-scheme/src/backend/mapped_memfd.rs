//! A memfd mapped shared into the daemon: the memory object of the Linux backends.

use std::io;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, OwnedFd};
use std::ptr::NonNull;

use nix::sys::memfd::{memfd_create, MFdFlags};
use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};
use nix::unistd::ftruncate;

use super::DmaMemory;

/// One buffer: a memfd of `len` bytes, its pages faulted in, mapped in the daemon.
///
/// Each buffer is its own memfd and is never reused: a client that keeps its
/// mapping after closing the handle keeps those pages, and no later buffer can be
/// backed by them.
#[derive(Debug)]
pub struct MappedMemfd {
    fd: OwnedFd,
    base: NonNull<u8>,
    len: usize,
    bus_addr: Option<u64>,
}

impl MappedMemfd {
    /// Creates the memfd with `flags` (plus close-on-exec) and maps it. The pages
    /// are populated now, so a hugetlb shortage fails here and not at first touch.
    pub(super) fn create(name: &str, len: usize, flags: MFdFlags) -> io::Result<Self> {
        let length = NonZeroUsize::new(len).ok_or_else(|| io::Error::other("empty buffer"))?;
        let fd = memfd_create(name, flags | MFdFlags::MFD_CLOEXEC)?;
        ftruncate(&fd, i64::try_from(len).map_err(io::Error::other)?)?;
        // SAFETY: a fresh shared mapping of our own memfd, placed by the kernel;
        // nothing else refers to that range.
        let base = unsafe {
            mmap(
                None,
                length,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED | MapFlags::MAP_POPULATE,
                &fd,
                0,
            )?
        };
        Ok(Self {
            fd,
            base: base.cast(),
            len,
            bus_addr: None,
        })
    }

    /// Records the bus address the backend found for byte 0.
    pub(super) fn set_bus_addr(&mut self, bus_addr: u64) {
        self.bus_addr = Some(bus_addr);
    }
}

impl DmaMemory for MappedMemfd {
    fn as_ptr(&self) -> *mut u8 {
        self.base.as_ptr()
    }

    fn size(&self) -> usize {
        self.len
    }

    fn bus_addr(&self) -> Option<u64> {
        self.bus_addr
    }

    fn share_fd(&self) -> io::Result<OwnedFd> {
        self.fd.as_fd().try_clone_to_owned()
    }
}

impl Drop for MappedMemfd {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `create`, of `len` bytes, unmapped once.
        if let Err(e) = unsafe { munmap(self.base.cast(), self.len) } {
            log::error!("unmapping a {}-byte buffer: {e}", self.len);
        }
    }
}
