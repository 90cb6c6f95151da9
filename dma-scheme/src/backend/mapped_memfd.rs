//! A memfd mapped shared into the daemon: the memory object of the Linux backends.
//!
//! The client maps the buffer through a descriptor of this memfd (the host
//! transport passes it), and a descriptor it can map writable is one it could
//! resize: shrinking a hugetlb buffer to nothing returned the huge page to the
//! pool while its bus address was still listed, growing one held memory beyond
//! the quota (a 4 KiB memfd buffer grew to 1 GiB). So the memfd is created
//! sealable, sized, and then sealed against shrinking, growing (`ftruncate`, and
//! `fallocate` past the end, with or without `FALLOC_FL_KEEP_SIZE`) and further
//! sealing, before any client sees it. The seals hold for hugetlb memfds too
//! (Linux 4.16 and later; checked on 6.18). Punching a hole is not covered by
//! them; see [`super::page_pin`].

use std::io;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, OwnedFd};
use std::ptr::NonNull;

use nix::sys::memfd::MFdFlags;
use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};

use super::page_pin::PagePin;
use super::DmaMemory;

/// One buffer: a memfd of `len` bytes, sealed at that size, its pages faulted
/// in, mapped in the daemon.
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
    /// The daemon's own reference on the memory, for backends whose memory a
    /// device sees; dropped after the mapping and the memfd, so last.
    pin: Option<PagePin>,
}

impl MappedMemfd {
    /// Creates the sealed memfd with `flags` and maps it. The pages are populated
    /// now, so a hugetlb shortage fails here and not at first touch.
    pub(super) fn create(name: &str, len: usize, flags: MFdFlags) -> io::Result<Self> {
        let length = NonZeroUsize::new(len).ok_or_else(|| io::Error::other("empty buffer"))?;
        let fd = scheme_runtime::sealed_memfd(name, len, flags)?;
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
            pin: None,
        })
    }

    /// Holds the memory's first page with a reference of the daemon's own, so that
    /// a client punching a hole cannot return it to the kernel while the buffer
    /// lives (see [`super::page_pin`]). For a buffer of one huge page, that is all
    /// of it.
    pub(super) fn pin_first_page(&mut self) -> io::Result<()> {
        // SAFETY: our own read-write mapping of at least one page, which no
        // client has seen yet.
        self.pin = Some(unsafe { PagePin::hold(self.base.as_ptr()) }?);
        Ok(())
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
