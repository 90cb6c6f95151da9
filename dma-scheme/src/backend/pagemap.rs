//! Physical addresses of the daemon's own pages, from `/proc/self/pagemap`.
//!
//! Each 4 KiB virtual page has a 64-bit entry: bit 63 says the page is present,
//! bits 0-54 hold its page frame number. Without `CAP_SYS_ADMIN` the kernel
//! reports every frame number as 0.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use syscall::PAGE_SIZE;

use super::{check_contiguous, not_contiguous};

const PRESENT: u64 = 1 << 63;
const FRAME_MASK: u64 = (1 << 55) - 1;

/// The physical address of `len` bytes mapped at page-aligned `base`, which must
/// be present and physically contiguous.
pub fn contiguous_physical_base(base: *const u8, len: usize) -> io::Result<u64> {
    let first_page = base as usize / PAGE_SIZE;
    let pages = len.div_ceil(PAGE_SIZE);
    let mut raw = vec![0; pages * 8];
    File::open("/proc/self/pagemap")?.read_exact_at(&mut raw, (first_page * 8) as u64)?;
    let addresses = raw
        .chunks_exact(8)
        .map(|entry| physical_address(u64::from_ne_bytes(entry.try_into().expect("chunks of 8"))))
        .collect::<io::Result<Vec<u64>>>()?;
    check_contiguous(&addresses, PAGE_SIZE as u64).map_err(|at| not_contiguous("pagemap", at))?;
    Ok(addresses[0])
}

/// The physical address of the page a pagemap entry describes.
fn physical_address(entry: u64) -> io::Result<u64> {
    if entry & PRESENT == 0 {
        return Err(io::Error::other(
            "pagemap: page not present (it should have been populated)",
        ));
    }
    match entry & FRAME_MASK {
        0 => Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "pagemap hides physical addresses: the daemon needs CAP_SYS_ADMIN (run it as root)",
        )),
        frame => Ok(frame * PAGE_SIZE as u64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_entries() {
        assert_eq!(physical_address(PRESENT | 0x1234).unwrap(), 0x1234 * 4096);
        // Soft-dirty (55) and exclusive (56) bits are not part of the frame.
        assert_eq!(
            physical_address(PRESENT | 3 << 55 | 0x10).unwrap(),
            0x10 * 4096
        );
        assert_eq!(
            physical_address(0x1234).unwrap_err().kind(),
            io::ErrorKind::Other
        );
        assert_eq!(
            physical_address(PRESENT).unwrap_err().kind(),
            io::ErrorKind::PermissionDenied
        );
    }
}
