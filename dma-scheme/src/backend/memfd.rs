//! Host test memory: plain memfd pages. NOT FOR DEVICES.
//!
//! These buffers behave like DMA buffers towards clients (mapped, zeroed, counted,
//! freed) but are not physically contiguous and have no bus address: the info a
//! client gets says `bus_addr` 0. The daemon uses this backend only when asked
//! for it by name (`--backend memfd-not-for-devices`).

use std::io;

use nix::sys::memfd::MFdFlags;
use syscall::PAGE_SIZE;

use super::{round_up_within, DmaBackend, MappedMemfd};
use crate::Direction;

/// The largest buffer, the same as on Redox so that host tests meet Redox's limit.
const MAX_BUFFER_SIZE: usize = 4 << 20;

/// Page-granular memfd buffers without a bus address.
#[derive(Debug, Default)]
pub struct MemfdBackend;

impl DmaBackend for MemfdBackend {
    type Memory = MappedMemfd;

    fn name(&self) -> &'static str {
        "memfd-not-for-devices"
    }

    fn buffer_size(&self, requested: u64) -> Option<usize> {
        round_up_within(requested, PAGE_SIZE, MAX_BUFFER_SIZE)
    }

    fn max_buffer_size(&self) -> usize {
        MAX_BUFFER_SIZE
    }

    fn allocate(&mut self, size: usize, direction: Direction) -> io::Result<MappedMemfd> {
        MappedMemfd::create(
            &direction.object_name("dma-not-for-devices"),
            size,
            MFdFlags::empty(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::DmaMemory;

    #[test]
    fn allocates_mapped_memory_without_bus_address() {
        let mut backend = MemfdBackend;
        let size = backend.buffer_size(100).unwrap();
        assert_eq!(size, PAGE_SIZE);
        let memory = backend.allocate(size, Direction::Both).unwrap();
        assert_eq!(memory.size(), PAGE_SIZE);
        assert_eq!(memory.bus_addr(), None);
        // SAFETY: the mapping is `len` bytes, read-write, owned by `memory`.
        unsafe {
            memory.as_ptr().write(0x5a);
            assert_eq!(memory.as_ptr().read(), 0x5a);
        }
        assert_eq!(backend.buffer_size(MAX_BUFFER_SIZE as u64 + 1), None);
    }
}
