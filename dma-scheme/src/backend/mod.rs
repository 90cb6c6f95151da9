//! Where DMA memory comes from: one backend per platform or purpose.
//!
//! A backend allocates physically contiguous memory, maps it into the daemon and
//! knows its bus address. The scheme zeroes every buffer itself before handing it
//! out, whatever the backend promises.

use std::io;

use crate::Direction;

#[cfg(target_os = "linux")]
mod hugetlb;
#[cfg(target_os = "linux")]
mod mapped_memfd;
#[cfg(target_os = "linux")]
mod memfd;
#[cfg(target_os = "linux")]
mod page_pin;
#[cfg(target_os = "linux")]
mod pagemap;
#[cfg(target_os = "redox")]
mod redox_memory;

#[cfg(target_os = "linux")]
pub use hugetlb::HugetlbBackend;
#[cfg(target_os = "linux")]
pub use mapped_memfd::MappedMemfd;
#[cfg(target_os = "linux")]
pub use memfd::MemfdBackend;
#[cfg(target_os = "redox")]
pub use redox_memory::{RedoxMemory, RedoxMemoryBackend};

/// A source of DMA buffers.
pub trait DmaBackend {
    type Memory: DmaMemory;

    /// A short name for logs and `status`.
    fn name(&self) -> &'static str;

    /// The size of the buffer that serves a request for `requested` bytes (the
    /// request rounded up to what the backend allocates), or `None` if that is
    /// more than [`Self::max_buffer_size`].
    fn buffer_size(&self, requested: u64) -> Option<usize>;

    /// The largest buffer the backend can guarantee to be physically contiguous.
    fn max_buffer_size(&self) -> usize;

    /// Allocates `size` bytes, a size [`Self::buffer_size`] returned, for
    /// bytes that go `direction` (on Linux, the memory object's name says it:
    /// [`Direction::object_name`]).
    fn allocate(&mut self, size: usize, direction: Direction) -> io::Result<Self::Memory>;
}

/// One buffer's memory, mapped read-write into the daemon; freed on drop.
pub trait DmaMemory {
    /// The daemon's mapping of byte 0.
    fn as_ptr(&self) -> *mut u8;

    /// Bytes in the buffer.
    fn size(&self) -> usize;

    /// The device's address of byte 0; `None` if no device can see this memory.
    fn bus_addr(&self) -> Option<u64>;

    /// A new descriptor of the memory object, for a client to map (host transport).
    #[cfg(target_os = "linux")]
    fn share_fd(&self) -> io::Result<std::os::fd::OwnedFd>;
}

/// `requested` rounded up to a multiple of `granule`, if that is at most `max`.
fn round_up_within(requested: u64, granule: usize, max: usize) -> Option<usize> {
    usize::try_from(requested)
        .ok()?
        .checked_next_multiple_of(granule)
        .filter(|&size| size <= max)
}

/// Where a run of page addresses that should be physically contiguous is not.
#[derive(Debug, PartialEq, Eq)]
struct Discontiguity {
    /// The index of the first page that does not follow its predecessor.
    page: usize,
}

/// Checks that each of `addresses` (one per page of `page_size` bytes) follows
/// the one before it.
fn check_contiguous(addresses: &[u64], page_size: u64) -> Result<(), Discontiguity> {
    match addresses
        .windows(2)
        .position(|pair| pair[1] != pair[0].wrapping_add(page_size))
    {
        Some(i) => Err(Discontiguity { page: i + 1 }),
        None => Ok(()),
    }
}

/// An error saying the memory a backend got is not physically contiguous.
fn not_contiguous(backend: &str, at: Discontiguity) -> io::Error {
    io::Error::other(format!(
        "{backend}: memory is not physically contiguous (page {} breaks the run)",
        at.page
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_up_within_max() {
        assert_eq!(round_up_within(1, 4096, 8192), Some(4096));
        assert_eq!(round_up_within(4096, 4096, 8192), Some(4096));
        assert_eq!(round_up_within(4097, 4096, 8192), Some(8192));
        assert_eq!(round_up_within(8193, 4096, 8192), None);
        assert_eq!(round_up_within(u64::MAX, 4096, usize::MAX), None);
    }

    #[test]
    fn contiguity() {
        assert_eq!(check_contiguous(&[0x5000, 0x6000, 0x7000], 0x1000), Ok(()));
        assert_eq!(check_contiguous(&[0x5000], 0x1000), Ok(()));
        assert_eq!(
            check_contiguous(&[0x5000, 0x6000, 0x9000], 0x1000),
            Err(Discontiguity { page: 2 })
        );
        assert_eq!(
            check_contiguous(&[0x5000, 0x4000], 0x1000),
            Err(Discontiguity { page: 1 })
        );
    }
}
