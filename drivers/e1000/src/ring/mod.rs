//! Descriptor rings (manual section 3.2 and 3.3, legacy descriptors): a ring of
//! 16-byte descriptors and one packet buffer per descriptor, in two DMA regions
//! ([`RingRegions`]). The receive ring hands the NIC empty buffers and takes
//! frames back; the transmit ring hands it frames and takes the buffers back once
//! sent.

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
/// replication engine compares received packets with the device's memory
/// whenever the NIC wrote a descriptor, so every slot costs 2 KiB of
/// comparison then.
pub const RING_SLOTS: u16 = 128;
/// Bytes per packet buffer; RCTL.BSIZE is set to match.
pub const BUFFER_LEN: usize = 2048;
/// Bytes of descriptors in a ring of [`RING_SLOTS`].
pub const DESCRIPTORS_LEN: usize = RING_SLOTS as usize * DESCRIPTOR_LEN;
/// Bytes of packet buffers in a ring of [`RING_SLOTS`].
pub const PACKETS_LEN: usize = RING_SLOTS as usize * BUFFER_LEN;
// Each region fits one 2 MiB `dma:` buffer, the granule the daemon hands out.
const _: () = assert!(PACKETS_LEN <= 2 << 20);

/// A ring's DMA memory: its descriptors, which the driver and the NIC both
/// write, and its packet buffers, which only one side writes (the NIC those of
/// a receive ring, the driver those of a transmit ring). Apart, they can be
/// `dma:` buffers of their own direction (`dir=`), and a replication engine
/// compares with the device only what the device may have written.
pub struct RingRegions {
    pub descriptors: Box<dyn DmaMemory>,
    pub packets: Box<dyn DmaMemory>,
}

/// `value` (a head or tail register) as a descriptor index of a ring of `slots`.
fn index_in(value: u32, slots: u16) -> Option<u16> {
    u16::try_from(value).ok().filter(|&index| index < slots)
}

/// The layout of one ring in its DMA regions.
struct RingMemory {
    regions: RingRegions,
    slots: u16,
}

impl RingMemory {
    fn new(regions: RingRegions, slots: u16) -> io::Result<Self> {
        Self::check(&regions, slots)?;
        Ok(Self { regions, slots })
    }

    /// The ring a predecessor laid out in `regions`, with the NIC's `head` and
    /// `tail` registers as descriptor indices, if every descriptor still points
    /// at its own buffer and both registers lie inside the ring; the regions
    /// back if not.
    fn laid_out(
        regions: RingRegions,
        slots: u16,
        head: u32,
        tail: u32,
    ) -> Result<(Self, u16, u16), RingRegions> {
        let (Some(head), Some(tail)) = (index_in(head, slots), index_in(tail, slots)) else {
            return Err(regions);
        };
        if Self::check(&regions, slots).is_err() {
            return Err(regions);
        }
        let ring = Self { regions, slots };
        let intact = (0..slots).all(|index| {
            // Both kinds of legacy descriptor start with their buffer's address.
            // SAFETY: the descriptor lies inside the ring, 16-byte aligned.
            let buffer = unsafe { ring.descriptor::<u64>(index).read_volatile() };
            buffer == ring.buffer_bus_addr(index)
        });
        match intact {
            true => Ok((ring, head, tail)),
            false => Err(ring.regions),
        }
    }

    fn check(regions: &RingRegions, slots: u16) -> io::Result<()> {
        let invalid = |why: String| Err(io::Error::new(io::ErrorKind::InvalidInput, why));
        // RDLEN/TDLEN must be a multiple of 128 bytes (8 descriptors).
        if slots < 8 || !slots.is_multiple_of(8) {
            return invalid(format!(
                "a ring of {slots} descriptors (want a multiple of 8)"
            ));
        }
        for (what, region, needed) in [
            (
                "descriptors",
                &regions.descriptors,
                usize::from(slots) * DESCRIPTOR_LEN,
            ),
            (
                "packet buffers",
                &regions.packets,
                usize::from(slots) * BUFFER_LEN,
            ),
        ] {
            if region.len() < needed {
                return invalid(format!(
                    "the {what} of a ring of {slots} need {needed} bytes, the region has {}",
                    region.len()
                ));
            }
        }
        if !regions.descriptors.bus_addr().is_multiple_of(16) {
            return invalid(format!(
                "ring base {:#x} is not 16-byte aligned",
                regions.descriptors.bus_addr()
            ));
        }
        Ok(())
    }

    fn ring_bus_addr(&self) -> u64 {
        self.regions.descriptors.bus_addr()
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
        unsafe { self.regions.descriptors.as_ptr().add(offset).cast() }
    }

    /// Packet buffer `index` (taken modulo the ring size).
    fn buffer(&self, index: u16) -> *mut u8 {
        // SAFETY: the buffers lie inside their region (checked in new).
        unsafe { self.regions.packets.as_ptr().add(self.buffer_offset(index)) }
    }

    fn buffer_bus_addr(&self, index: u16) -> u64 {
        self.regions.packets.bus_addr() + self.buffer_offset(index) as u64
    }

    fn buffer_offset(&self, index: u16) -> usize {
        usize::from(index % self.slots) * BUFFER_LEN
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::FakeDma;

    #[test]
    fn refuses_bad_geometry() {
        let dma = FakeDma::new();
        let regions = |descriptors, packets| RingRegions {
            descriptors: dma.alloc(descriptors),
            packets: dma.alloc(packets),
        };
        for (descriptors, packets) in [
            (DESCRIPTORS_LEN - 1, PACKETS_LEN),
            (DESCRIPTORS_LEN, PACKETS_LEN - 1),
        ] {
            let small = RingMemory::new(regions(descriptors, packets), RING_SLOTS);
            let err = small.err().expect("a region too small is refused");
            assert!(err.to_string().contains("need"), "{err}");
        }
        for slots in [0, 4, 12] {
            let err = RingMemory::new(regions(DESCRIPTORS_LEN, PACKETS_LEN), slots).err();
            assert!(err.is_some(), "{slots} descriptors");
        }
        let ring = RingMemory::new(regions(DESCRIPTORS_LEN, PACKETS_LEN), 16).unwrap();
        assert_eq!(ring.ring_bytes(), 256);
        let packets = ring.regions.packets.bus_addr();
        assert_eq!(ring.buffer_bus_addr(1) - packets, 2048);
        assert_ne!(packets, ring.ring_bus_addr(), "two regions");
        assert_eq!(ring.next(15), 0);
    }
}
