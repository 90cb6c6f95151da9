//! Descriptor rings (manual section 3.2 and 3.3, legacy descriptors): a ring of
//! 16-byte descriptors followed by one packet buffer per descriptor, all in one DMA
//! region. The receive ring hands the NIC empty buffers and takes frames back; the
//! transmit ring hands it frames and takes the buffers back once sent.

mod rx;
mod tx;

pub use rx::{Received, RxRing};
pub use tx::{TxError, TxRing};

use std::io;

use crate::dma::DmaMemory;

/// Bytes per legacy descriptor.
pub const DESCRIPTOR_LEN: usize = 16;
/// Descriptors per ring: deep enough to absorb a burst between two polls (a
/// 1 ms tick at gigabit line rate is some 80 full frames), and no deeper: a
/// replication engine compares the rings' memory with the device's at each
/// round, so every slot costs 2 KiB of comparison in every round.
pub const RING_SLOTS: u16 = 128;
/// Bytes per packet buffer; RCTL.BSIZE is set to match.
pub const BUFFER_LEN: usize = 2048;
/// Bytes of DMA memory a ring of [`RING_SLOTS`] needs.
pub const REGION_LEN: usize = buffers_offset(RING_SLOTS) + RING_SLOTS as usize * BUFFER_LEN;
// Each ring fits one 2 MiB `dma:` buffer, the granule the daemon hands out.
const _: () = assert!(REGION_LEN <= 2 << 20);

/// The buffers start after the descriptors, on a buffer-size boundary.
const fn buffers_offset(slots: u16) -> usize {
    (slots as usize * DESCRIPTOR_LEN).next_multiple_of(BUFFER_LEN)
}

/// `value` (a head or tail register) as a descriptor index of a ring of `slots`.
fn index_in(value: u32, slots: u16) -> Option<u16> {
    u16::try_from(value).ok().filter(|&index| index < slots)
}

/// The layout of one ring in its DMA region.
struct RingMemory {
    memory: Box<dyn DmaMemory>,
    slots: u16,
}

impl RingMemory {
    fn new(memory: Box<dyn DmaMemory>, slots: u16) -> io::Result<Self> {
        Self::check(&*memory, slots)?;
        Ok(Self { memory, slots })
    }

    /// The ring a predecessor laid out in `memory`, with the NIC's `head` and
    /// `tail` registers as descriptor indices, if every descriptor still points
    /// at its own buffer and both registers lie inside the ring; the memory back
    /// if not.
    fn laid_out(
        memory: Box<dyn DmaMemory>,
        slots: u16,
        head: u32,
        tail: u32,
    ) -> Result<(Self, u16, u16), Box<dyn DmaMemory>> {
        let (Some(head), Some(tail)) = (index_in(head, slots), index_in(tail, slots)) else {
            return Err(memory);
        };
        if Self::check(&*memory, slots).is_err() {
            return Err(memory);
        }
        let ring = Self { memory, slots };
        let intact = (0..slots).all(|index| {
            // Both kinds of legacy descriptor start with their buffer's address.
            // SAFETY: the descriptor lies inside the ring, 16-byte aligned.
            let buffer = unsafe { ring.descriptor::<u64>(index).read_volatile() };
            buffer == ring.buffer_bus_addr(index)
        });
        match intact {
            true => Ok((ring, head, tail)),
            false => Err(ring.memory),
        }
    }

    fn check(memory: &dyn DmaMemory, slots: u16) -> io::Result<()> {
        let invalid = |why: String| Err(io::Error::new(io::ErrorKind::InvalidInput, why));
        // RDLEN/TDLEN must be a multiple of 128 bytes (8 descriptors).
        if slots < 8 || !slots.is_multiple_of(8) {
            return invalid(format!(
                "a ring of {slots} descriptors (want a multiple of 8)"
            ));
        }
        let needed = buffers_offset(slots) + slots as usize * BUFFER_LEN;
        if memory.len() < needed {
            return invalid(format!(
                "a ring of {slots} descriptors needs {needed} bytes, the region has {}",
                memory.len()
            ));
        }
        if !memory.bus_addr().is_multiple_of(16) {
            return invalid(format!(
                "ring base {:#x} is not 16-byte aligned",
                memory.bus_addr()
            ));
        }
        Ok(())
    }

    fn ring_bus_addr(&self) -> u64 {
        self.memory.bus_addr()
    }

    fn ring_bytes(&self) -> u32 {
        u32::from(self.slots) * DESCRIPTOR_LEN as u32
    }

    fn next(&self, index: u16) -> u16 {
        (index + 1) % self.slots
    }

    /// Descriptor `index` (taken modulo the ring size), as a `T` laid out like it.
    fn descriptor<T>(&self, index: u16) -> *mut T {
        let offset = usize::from(index % self.slots) * DESCRIPTOR_LEN;
        // SAFETY: offset + 16 <= slots * 16 <= the region's length (checked in new).
        unsafe { self.memory.as_ptr().add(offset).cast() }
    }

    /// Packet buffer `index` (taken modulo the ring size).
    fn buffer(&self, index: u16) -> *mut u8 {
        // SAFETY: the buffers lie inside the region (checked in new).
        unsafe { self.memory.as_ptr().add(self.buffer_offset(index)) }
    }

    fn buffer_bus_addr(&self, index: u16) -> u64 {
        self.memory.bus_addr() + self.buffer_offset(index) as u64
    }

    fn buffer_offset(&self, index: u16) -> usize {
        buffers_offset(self.slots) + usize::from(index % self.slots) * BUFFER_LEN
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::FakeDma;

    #[test]
    fn buffers_follow_the_descriptors_on_a_buffer_boundary() {
        assert_eq!(buffers_offset(RING_SLOTS), 2048);
        assert_eq!(buffers_offset(256), 4096);
        assert_eq!(buffers_offset(8), 2048);
        assert_eq!(REGION_LEN, 2048 + 128 * 2048);
    }

    #[test]
    fn refuses_bad_geometry() {
        let dma = FakeDma::new();
        let small = RingMemory::new(dma.alloc(REGION_LEN - 1), RING_SLOTS);
        let err = small.err().expect("a region too small is refused");
        assert!(err.to_string().contains("needs"), "{err}");
        for slots in [0, 4, 12] {
            let err = RingMemory::new(dma.alloc(REGION_LEN), slots).err();
            assert!(err.is_some(), "{slots} descriptors");
        }
        let ring = RingMemory::new(dma.alloc(REGION_LEN), 16).unwrap();
        assert_eq!(ring.ring_bytes(), 256);
        assert_eq!(ring.buffer_bus_addr(1) - ring.ring_bus_addr(), 2048 + 2048);
        assert_eq!(ring.next(15), 0);
    }
}
