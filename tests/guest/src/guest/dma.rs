//! Physically contiguous, device-visible memory for user-space drivers in the guest: one
//! locked 2 MiB huge page whose physical address comes from `/proc/self/pagemap`
//! (needs root and huge pages reserved through `/proc/sys/vm/nr_hugepages`).

use std::fs::File;
use std::io;
use std::num::NonZeroUsize;
use std::os::unix::fs::FileExt;
use std::ptr::NonNull;

use nix::sys::mman::{mmap_anonymous, munmap, MapFlags, ProtFlags};

pub const HUGE_PAGE_SIZE: usize = 2 << 20;
const PAGE_SIZE: u64 = 4096;
const PAGEMAP_PRESENT: u64 = 1 << 63;
const PAGEMAP_PFN_MASK: u64 = (1 << 55) - 1;

/// One huge page, zeroed, locked, with a known physical (= bus, without an IOMMU) address.
#[derive(Debug)]
pub struct DmaPage {
    virt: NonNull<u8>,
    phys: u64,
}

impl DmaPage {
    pub fn allocate() -> io::Result<DmaPage> {
        let len = NonZeroUsize::new(HUGE_PAGE_SIZE).expect("a huge page is not empty");
        // SAFETY: a fresh anonymous mapping that nothing else aliases.
        let virt = unsafe {
            mmap_anonymous(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_PRIVATE
                    | MapFlags::MAP_HUGETLB
                    | MapFlags::MAP_POPULATE
                    | MapFlags::MAP_LOCKED,
            )
        }?
        .cast::<u8>();
        let mut page = DmaPage { virt, phys: 0 };
        let mut entry = [0u8; 8];
        let index = virt.as_ptr() as u64 / PAGE_SIZE;
        File::open("/proc/self/pagemap")?.read_exact_at(&mut entry, index * 8)?;
        page.phys = physical_address(u64::from_le_bytes(entry), virt.as_ptr() as u64)?;
        Ok(page)
    }

    pub fn physical_address(&self) -> u64 {
        self.phys
    }

    /// Copies `bytes` into the page at `offset` with volatile stores (the device reads them).
    pub fn write(&self, offset: usize, bytes: &[u8]) -> io::Result<()> {
        let start = self.checked(offset, bytes.len())?;
        for (i, byte) in bytes.iter().enumerate() {
            // SAFETY: `checked` proved offset..offset+len lies inside the page.
            unsafe { start.add(i).write_volatile(*byte) };
        }
        Ok(())
    }

    /// Reads one byte the device may have written.
    pub fn read8(&self, offset: usize) -> io::Result<u8> {
        // SAFETY: `checked` proved the byte lies inside the page.
        Ok(unsafe { self.checked(offset, 1)?.read_volatile() })
    }

    fn checked(&self, offset: usize, len: usize) -> io::Result<*mut u8> {
        if offset
            .checked_add(len)
            .is_none_or(|end| end > HUGE_PAGE_SIZE)
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{len} bytes at {offset:#x} do not fit in a huge page"),
            ));
        }
        // SAFETY: offset <= HUGE_PAGE_SIZE, inside or one past the mapping.
        Ok(unsafe { self.virt.as_ptr().add(offset) })
    }
}

impl Drop for DmaPage {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `allocate`, unmapped only here.
        if let Err(err) = unsafe { munmap(self.virt.cast(), HUGE_PAGE_SIZE) } {
            log::warn!("munmap of a DMA page failed: {err}");
        }
    }
}

/// Physical address of virtual address `virt` from its pagemap entry.
fn physical_address(entry: u64, virt: u64) -> io::Result<u64> {
    let frame = entry & PAGEMAP_PFN_MASK;
    if entry & PAGEMAP_PRESENT == 0 {
        return Err(io::Error::other(format!(
            "page at {virt:#x} is not present"
        )));
    }
    // The kernel reports frame 0 to callers without CAP_SYS_ADMIN.
    if frame == 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "pagemap hides physical frames (not root?)",
        ));
    }
    Ok(frame * PAGE_SIZE + virt % PAGE_SIZE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn present_entry_gives_frame_address_plus_page_offset() {
        let entry = PAGEMAP_PRESENT | (1 << 55) | 0x1_2345;
        assert_eq!(
            physical_address(entry, 0x7f00_0000_0abc).unwrap(),
            0x1234_5abc
        );
    }

    #[test]
    fn absent_or_hidden_frames_are_errors() {
        assert_eq!(
            physical_address(0x1_2345, 0).unwrap_err().kind(),
            io::ErrorKind::Other
        );
        assert_eq!(
            physical_address(PAGEMAP_PRESENT, 0).unwrap_err().kind(),
            io::ErrorKind::PermissionDenied
        );
    }
}
