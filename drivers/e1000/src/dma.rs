//! Memory the NIC reads and writes by bus address: where the descriptor rings and
//! their packet buffers live.

use std::io;

use dma_scheme::{BufferFlags, Direction, DmaBuffer};

use crate::ring::{RingRegions, DESCRIPTORS_LEN, PACKETS_LEN};

/// A physically contiguous region, mapped into the driver.
pub trait DmaMemory {
    /// This process's mapping of byte 0. The device writes behind the compiler's
    /// back: descriptors are accessed with volatile loads and stores.
    fn as_ptr(&self) -> *mut u8;
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The device's address of byte 0.
    fn bus_addr(&self) -> u64;
}

/// A `dma:` buffer with a known bus address.
pub struct SchemeBuffer {
    buffer: DmaBuffer,
    bus_addr: u64,
}

impl SchemeBuffer {
    /// Allocates a device-shared `dma:` buffer of at least `size` bytes whose
    /// bytes go `direction`, kept under `name` when this driver dies: its
    /// successor gets the same buffer back ([`SchemeBuffer::adopted`]) and can
    /// take over the ring in it.
    pub fn alloc_kept(size: usize, direction: Direction, name: &str) -> io::Result<Self> {
        let buffer = DmaBuffer::alloc_kept(size, BufferFlags::SHARED, direction, name)
            .map_err(|e| io::Error::new(e.kind(), format!("dma: buffer {name}: {e}")))?;
        let bus_addr = buffer
            .bus_addr()
            .ok_or_else(|| io::Error::other("dma: gave a buffer without a bus address"))?;
        Ok(Self { buffer, bus_addr })
    }

    /// The buffer is a predecessor's, with what it left in it.
    pub fn adopted(&self) -> bool {
        self.buffer.adopted()
    }

    /// The regions of a ring of [`RING_SLOTS`](crate::ring::RING_SLOTS), kept under `name` (its
    /// descriptors, which go both ways) and `name.packets` (its packet
    /// buffers, which go `packets`); and whether both are a predecessor's.
    pub fn kept_ring(name: &str, packets: Direction) -> io::Result<(RingRegions, bool)> {
        let descriptors = Self::alloc_kept(DESCRIPTORS_LEN, Direction::Both, name)?;
        let buffers = Self::alloc_kept(PACKETS_LEN, packets, &format!("{name}.packets"))?;
        let adopted = descriptors.adopted() && buffers.adopted();
        let regions = RingRegions {
            descriptors: Box::new(descriptors),
            packets: Box::new(buffers),
        };
        Ok((regions, adopted))
    }
}

impl DmaMemory for SchemeBuffer {
    fn as_ptr(&self) -> *mut u8 {
        self.buffer.as_ptr()
    }

    fn len(&self) -> usize {
        self.buffer.len()
    }

    fn bus_addr(&self) -> u64 {
        self.bus_addr
    }
}
