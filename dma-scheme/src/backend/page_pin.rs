//! A reference of the daemon's own on a buffer's page, so that no client can free it.
//!
//! A client maps a buffer through a writable descriptor of its memfd, and with
//! that descriptor it can punch a hole (`fallocate(FALLOC_FL_PUNCH_HOLE)`, or
//! `madvise(MADV_REMOVE)` on its mapping). The size seals do not forbid that;
//! only a write seal does, and the kernel refuses a write seal while writable
//! shared mappings exist, which the daemon's and the client's are. The kernel then
//! takes the page out of the memfd and out of every mapping, the daemon's too,
//! and frees it once nothing references it. Measured on Linux 6.18 with a
//! hugetlb buffer: the huge page went straight back to the pool
//! (`HugePages_Free` rose by one) and the very next buffer got the same bus
//! address, while the first was still open and a device might still write there.
//!
//! So the daemon holds a reference of its own: it splices the buffer's first
//! page into a pipe that it keeps and never reads to the end (`vmsplice` hands
//! the pipe the page itself, not a copy). For a huge page a reference on any part
//! of it holds the whole page. A punched page then leaves the memfd and every
//! mapping but stays allocated, out of the pool, until the buffer is freed and
//! the pipe closed, so its bus address never reaches another buffer while this
//! one is open. Whether the kernel passed a reference is checked on every pin:
//! a kernel that copied instead would fail the allocation, never pass silently.
//!
//! What the pin does not stop: after a punch the client's next touch faults a
//! fresh page into the memfd, so a client can hold one extra page per buffer
//! beyond its quota (the size seals keep it to one), and that page is not the
//! one the device sees. Only the client itself is hurt by the second part.

use std::io;
use std::os::fd::OwnedFd;

use nix::fcntl::{vmsplice, OFlag, SpliceFFlags};
use nix::unistd::{pipe2, read};
use syscall::PAGE_SIZE;

/// What [`PagePin::hold`] writes to see whether the pipe holds the page or a copy.
const MARK: u8 = 0xa5;

/// One page referenced from a pipe; dropping it drops the reference.
#[derive(Debug)]
pub struct PagePin {
    /// The read end of the pipe that holds the page; the write end is closed,
    /// and the pipe keeps what it holds until its last end closes.
    _pipe: OwnedFd,
}

impl PagePin {
    /// Takes a reference on the page at `page`.
    ///
    /// # Safety
    ///
    /// `page` must be the start of a page mapped read-write in this process, and
    /// nothing else may use that page during the call: its first byte is written.
    pub unsafe fn hold(page: *mut u8) -> io::Result<Self> {
        let (pipe, writer) = pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
        // SAFETY: the caller lends us the page, mapped read-write.
        unsafe { page.write_volatile(0) };
        // SAFETY: PAGE_SIZE mapped bytes; the slice is gone when vmsplice returns.
        let whole_page = unsafe { std::slice::from_raw_parts(page, PAGE_SIZE) };
        let spliced = vmsplice(
            &writer,
            &[io::IoSlice::new(whole_page)],
            SpliceFFlags::empty(),
        )?;
        if spliced != PAGE_SIZE {
            return Err(io::Error::other(format!(
                "pinning a DMA page: vmsplice took {spliced} of {PAGE_SIZE} bytes"
            )));
        }
        // A reference shows the page as it is now; a copy, as it was.
        // SAFETY: as above.
        unsafe { page.write_volatile(MARK) };
        let mut first = [0];
        let got = read(&pipe, &mut first)?;
        // SAFETY: as above.
        unsafe { page.write_volatile(0) };
        if got != 1 || first[0] != MARK {
            return Err(io::Error::other(
                "pinning a DMA page: this kernel's vmsplice copies instead of referencing, \
                 so a client could free the page under its bus address",
            ));
        }
        // The pipe still holds the other PAGE_SIZE - 1 bytes, and the page with them.
        Ok(Self { _pipe: pipe })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroUsize;

    use nix::sys::mman::{mmap_anonymous, munmap, MapFlags, ProtFlags};

    #[test]
    fn a_pin_holds_the_page_itself_and_leaves_it_zeroed() {
        // SAFETY: a fresh private mapping, unmapped below.
        let page = unsafe {
            mmap_anonymous(
                None,
                NonZeroUsize::new(PAGE_SIZE).unwrap(),
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_PRIVATE,
            )
        }
        .unwrap();
        let bytes = page.as_ptr().cast::<u8>();
        // SAFETY: our own page, used by nothing else.
        let pin = unsafe { PagePin::hold(bytes) }.unwrap();
        // SAFETY: as above.
        assert_eq!(unsafe { bytes.read_volatile() }, 0);
        // Unmapping leaves the page to the pin, which frees it when dropped.
        // SAFETY: the mapping made above.
        unsafe { munmap(page, PAGE_SIZE) }.unwrap();
        drop(pin);
    }
}
