//! Linux DMA memory: one 2 MiB hugetlb page per buffer.
//!
//! A huge page is physically contiguous and never swapped, so its bus address
//! (from `/proc/self/pagemap`) stays valid while the buffer lives. Two huge pages
//! are not contiguous with each other in general, so no buffer is larger than one.
//! Needs root (pagemap) and free huge pages (`/proc/sys/vm/nr_hugepages`).
//!
//! The memfd is sealed at its size, and the daemon pins the page itself: a client
//! can neither resize the buffer nor, by punching a hole, give its page back to
//! the pool while the buffer's bus address is still in use
//! ([`super::page_pin`]).

use std::io;

use nix::sys::memfd::MFdFlags;

use super::{pagemap, round_up_within, DmaBackend, DmaMemory, MappedMemfd};
use crate::Direction;

const HUGE_PAGE_SIZE: usize = 2 << 20;

/// Buffers of one 2 MiB huge page each.
#[derive(Debug, Default)]
pub struct HugetlbBackend;

impl DmaBackend for HugetlbBackend {
    type Memory = MappedMemfd;

    fn name(&self) -> &'static str {
        "hugetlb"
    }

    fn buffer_size(&self, requested: u64) -> Option<usize> {
        round_up_within(requested, HUGE_PAGE_SIZE, HUGE_PAGE_SIZE)
    }

    fn max_buffer_size(&self) -> usize {
        HUGE_PAGE_SIZE
    }

    fn allocate(&mut self, size: usize, direction: Direction) -> io::Result<MappedMemfd> {
        let mut memory = MappedMemfd::create(
            &direction.object_name("dma-hugetlb"),
            size,
            MFdFlags::MFD_HUGETLB | MFdFlags::MFD_HUGE_2MB,
        )
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("no 2 MiB huge page ({e}); see /proc/sys/vm/nr_hugepages"),
            )
        })?;
        // Pinned before its address is read: the address reported is that of the
        // page the daemon holds.
        memory.pin_first_page()?;
        let bus_addr = pagemap::contiguous_physical_base(memory.as_ptr(), size)?;
        // A huge page is aligned to its size; anything else is not one.
        if bus_addr % HUGE_PAGE_SIZE as u64 != 0 {
            return Err(io::Error::other(format!(
                "hugetlb: memory at {bus_addr:#x} is not a 2 MiB page"
            )));
        }
        memory.set_bus_addr(bus_addr);
        Ok(memory)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        let backend = HugetlbBackend;
        assert_eq!(backend.buffer_size(1), Some(HUGE_PAGE_SIZE));
        assert_eq!(
            backend.buffer_size(HUGE_PAGE_SIZE as u64),
            Some(HUGE_PAGE_SIZE)
        );
        assert_eq!(backend.buffer_size(HUGE_PAGE_SIZE as u64 + 1), None);
    }
}
