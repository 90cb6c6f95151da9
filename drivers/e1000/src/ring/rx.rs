//! The receive ring. The NIC owns the descriptors from RDH up to (not including)
//! RDT and fills them in order; the driver takes each frame from the descriptor at
//! `next` once its DD bit is set, and hands consumed descriptors back by moving
//! RDT, once per round rather than once per frame.

use std::io;
use std::ptr::addr_of_mut;
use std::sync::atomic::{fence, Ordering};

use super::{RingMemory, RingRegions, BUFFER_LEN};

/// Legacy receive descriptor (manual section 3.2.3).
#[repr(C)]
struct RxDescriptor {
    buffer_addr: u64,
    length: u16,
    checksum: u16,
    status: u8,
    errors: u8,
    special: u16,
}

/// Status: descriptor done (the NIC wrote it back).
const STATUS_DD: u8 = 1 << 0;
/// Status: end of packet (the frame's last descriptor).
const STATUS_EOP: u8 = 1 << 1;

/// What [`RxRing::take`] copied out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received {
    /// Bytes copied into the caller's buffer.
    pub len: usize,
    /// Bytes of the frame; more than `len` if the caller's buffer was shorter.
    pub frame_len: usize,
}

pub struct RxRing {
    memory: RingMemory,
    /// The next descriptor the NIC fills.
    next: u16,
    /// The last descriptor consumed since RDT was last written.
    consumed: Option<u16>,
    /// Inside a frame that spans descriptors (never with 2 KiB buffers and long
    /// packets off; dropped whole if it happens).
    discarding: bool,
    dropped: u64,
}

impl RxRing {
    /// Lays out a ring in `regions` whose every descriptor points at its buffer.
    pub fn new(regions: RingRegions, slots: u16) -> io::Result<Self> {
        let memory = RingMemory::new(regions, slots)?;
        for index in 0..slots {
            let desc = memory.descriptor::<RxDescriptor>(index);
            // SAFETY: desc points at a descriptor inside the ring (RingMemory).
            unsafe {
                desc.write_volatile(RxDescriptor {
                    buffer_addr: memory.buffer_bus_addr(index),
                    length: 0,
                    checksum: 0,
                    status: 0,
                    errors: 0,
                    special: 0,
                })
            };
        }
        Ok(Self {
            memory,
            next: 0,
            consumed: None,
            discarding: false,
            dropped: 0,
        })
    }

    /// Takes over a ring a predecessor left running in `regions`, which the NIC
    /// is still using: RDH and RDT as the NIC holds them. The NIC owns the
    /// descriptors from RDH up to RDT; the predecessor owned the rest, from RDT:
    /// first those it consumed but had not handed back yet (status cleared), then
    /// frames the NIC wrote back that it never took (DD set). Nothing is written.
    /// The regions come back if the ring is not what this driver lays out (a
    /// descriptor that does not point at its own buffer, heads outside the ring).
    pub fn adopt(
        regions: RingRegions,
        slots: u16,
        head: u32,
        tail: u32,
    ) -> Result<Self, RingRegions> {
        let (memory, head, tail) = RingMemory::laid_out(regions, slots, head, tail)?;
        let mut ring = Self {
            memory,
            next: head,
            consumed: None,
            discarding: false,
            dropped: 0,
        };
        let mut index = ring.memory.next(tail);
        while index != head {
            if ring.status(index).0 & STATUS_DD != 0 {
                ring.next = index;
                break;
            }
            ring.consumed = Some(index);
            index = ring.memory.next(index);
        }
        Ok(ring)
    }

    pub fn bus_addr(&self) -> u64 {
        self.memory.ring_bus_addr()
    }

    /// The regions back, for a ring laid out anew.
    pub fn into_regions(self) -> RingRegions {
        self.memory.regions
    }

    /// RDLEN.
    pub fn bytes(&self) -> u32 {
        self.memory.ring_bytes()
    }

    /// RDT at start: every descriptor but one belongs to the NIC (RDH == RDT would
    /// mean an empty ring to it).
    pub fn initial_tail(&self) -> u32 {
        u32::from(self.memory.slots - 1)
    }

    /// Frames (or frame parts) the NIC flagged with errors, dropped here.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// A good frame is waiting at `next`.
    pub fn frame_waiting(&mut self) -> bool {
        self.drop_unusable();
        self.status(self.next).0 & STATUS_DD != 0
    }

    /// Copies the next frame into `buf` (truncated to `buf`, as a datagram read
    /// is) and consumes its descriptor; `None` when no frame is waiting.
    pub fn take(&mut self, buf: &mut [u8]) -> Option<Received> {
        if !self.frame_waiting() {
            return None;
        }
        let desc = self.memory.descriptor::<RxDescriptor>(self.next);
        // SAFETY: desc points at a descriptor inside the ring; its DD bit was seen
        // set, so the NIC is done with it and its buffer.
        let frame_len =
            usize::from(unsafe { addr_of_mut!((*desc).length).read_volatile() }).min(BUFFER_LEN);
        let len = frame_len.min(buf.len());
        // SAFETY: len <= BUFFER_LEN bytes of this descriptor's buffer.
        unsafe {
            std::ptr::copy_nonoverlapping(self.memory.buffer(self.next), buf.as_mut_ptr(), len)
        };
        self.recycle();
        Some(Received { len, frame_len })
    }

    /// The RDT value that hands consumed descriptors back, once; `None` if none
    /// were consumed since the last call.
    pub fn take_tail_update(&mut self) -> Option<u32> {
        // The descriptors' cleared status is in memory before the NIC may reuse them.
        fence(Ordering::Release);
        self.consumed.take().map(u32::from)
    }

    /// Drops written-back descriptors that do not start a good frame: errors, or
    /// parts of a frame that spans descriptors.
    fn drop_unusable(&mut self) {
        loop {
            let (status, errors) = self.status(self.next);
            if status & STATUS_DD == 0 {
                return;
            }
            let end_of_packet = status & STATUS_EOP != 0;
            if !self.discarding && end_of_packet && errors == 0 {
                return;
            }
            log::debug!(
                "rx descriptor {}: status {status:#04x} errors {errors:#04x}, dropped",
                self.next
            );
            self.discarding = !end_of_packet;
            if end_of_packet {
                self.dropped += 1;
            }
            self.recycle();
        }
    }

    /// (status, errors) of descriptor `index`; what follows a set DD bit is read
    /// only after it.
    fn status(&self, index: u16) -> (u8, u8) {
        let desc = self.memory.descriptor::<RxDescriptor>(index);
        // SAFETY: desc points at a descriptor inside the ring.
        let status = unsafe { addr_of_mut!((*desc).status).read_volatile() };
        fence(Ordering::Acquire);
        // SAFETY: as above.
        let errors = unsafe { addr_of_mut!((*desc).errors).read_volatile() };
        (status, errors)
    }

    /// Clears descriptor `next` for the NIC's next use and moves on.
    fn recycle(&mut self) {
        let desc = self.memory.descriptor::<RxDescriptor>(self.next);
        // SAFETY: desc points at a descriptor inside the ring, owned by the driver.
        unsafe { addr_of_mut!((*desc).status).write_volatile(0) };
        self.consumed = Some(self.next);
        self.next = self.memory.next(self.next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{write_back_rx, FakeDma, DD, EOP};

    const SLOTS: u16 = 8;

    fn ring() -> (RxRing, FakeDma) {
        let dma = FakeDma::new();
        (RxRing::new(dma.ring(SLOTS), SLOTS).unwrap(), dma)
    }

    /// The NIC writes `frame` back into descriptor `index`.
    fn arrive(ring: &RxRing, dma: &FakeDma, index: u16, frame: &[u8], status: u8, errors: u8) {
        write_back_rx(
            dma,
            ring.bus_addr() + u64::from(index) * 16,
            frame,
            status,
            errors,
        );
    }

    fn frame(byte: u8) -> Vec<u8> {
        vec![byte; 60]
    }

    #[test]
    fn empty_ring_has_nothing_to_take_or_give_back() {
        let (mut ring, _dma) = ring();
        assert_eq!(ring.initial_tail(), 7);
        assert_eq!(ring.bytes(), 128);
        assert!(!ring.frame_waiting());
        assert_eq!(ring.take(&mut [0; 64]), None);
        assert_eq!(ring.take_tail_update(), None);
    }

    #[test]
    fn takes_frames_in_order_and_gives_descriptors_back_once() {
        let (mut ring, dma) = ring();
        arrive(&ring, &dma, 0, &frame(1), DD | EOP, 0);
        arrive(&ring, &dma, 1, &frame(2), DD | EOP, 0);
        let mut buf = [0; 1514];
        for byte in [1, 2] {
            let received = ring.take(&mut buf).expect("a frame");
            assert_eq!(
                received,
                Received {
                    len: 60,
                    frame_len: 60
                }
            );
            assert_eq!(buf[..60], frame(byte)[..]);
        }
        assert_eq!(ring.take(&mut buf), None);
        assert_eq!(ring.take_tail_update(), Some(1), "RDT = last consumed");
        assert_eq!(ring.take_tail_update(), None);
        assert_eq!(
            dma.read(ring.bus_addr() + 12, 1),
            [0],
            "status cleared for reuse"
        );
    }

    #[test]
    fn short_buffer_gets_the_frame_head_and_the_frame_is_consumed() {
        let (mut ring, dma) = ring();
        let long: Vec<u8> = (0..100).collect();
        arrive(&ring, &dma, 0, &long, DD | EOP, 0);
        let mut buf = [0; 10];
        assert_eq!(
            ring.take(&mut buf),
            Some(Received {
                len: 10,
                frame_len: 100
            })
        );
        assert_eq!(buf[..], long[..10]);
        assert!(!ring.frame_waiting());
    }

    #[test]
    fn errored_frames_and_spanning_frames_are_dropped_whole() {
        let (mut ring, dma) = ring();
        arrive(&ring, &dma, 0, &frame(1), DD | EOP, 0x01); // CRC error
        arrive(&ring, &dma, 1, &frame(2), DD, 0); // first part of a long frame
        arrive(&ring, &dma, 2, &frame(3), DD | EOP, 0); // its last part
        arrive(&ring, &dma, 3, &frame(4), DD | EOP, 0);
        let mut buf = [0; 1514];
        assert_eq!(ring.take(&mut buf).map(|r| r.len), Some(60));
        assert_eq!(buf[0], 4, "the first good frame");
        assert_eq!(ring.dropped(), 2);
        assert_eq!(ring.take_tail_update(), Some(3));
    }

    #[test]
    fn an_adopted_ring_goes_on_where_its_predecessor_stopped() {
        let (mut first, dma) = ring();
        let mut buf = [0; 64];
        // Frames 1 and 2 taken and handed back, 3 taken but not handed back when
        // the predecessor died, 4 and 5 written back and never taken.
        for (index, byte) in (0..5).zip(1..) {
            arrive(&first, &dma, index, &frame(byte), DD | EOP, 0);
        }
        first.take(&mut buf).unwrap();
        first.take(&mut buf).unwrap();
        assert_eq!(first.take_tail_update(), Some(1));
        first.take(&mut buf).unwrap();
        let memory = dma.alias_ring(first.bus_addr());
        drop(first);

        let mut ring = RxRing::adopt(memory, SLOTS, 5, 1)
            .ok()
            .expect("a ring laid out as ours");
        for byte in [4, 5] {
            assert_eq!(ring.take(&mut buf).map(|r| r.len), Some(60));
            assert_eq!(buf[0], byte);
        }
        assert_eq!(ring.take(&mut buf), None);
        assert_eq!(
            ring.take_tail_update(),
            Some(4),
            "the descriptor it consumed is handed back too"
        );
    }

    #[test]
    fn an_adopted_ring_with_nothing_pending_waits_at_the_head() {
        let (first, dma) = ring();
        let memory = dma.alias_ring(first.bus_addr());
        let mut ring = RxRing::adopt(memory, SLOTS, 0, 7).ok().unwrap();
        assert_eq!(ring.take_tail_update(), None);
        arrive(&ring, &dma, 0, &frame(9), DD | EOP, 0);
        let mut buf = [0; 64];
        assert_eq!(ring.take(&mut buf).map(|r| r.len), Some(60));
        assert_eq!(buf[0], 9);
    }

    #[test]
    fn memory_not_laid_out_as_a_ring_or_heads_outside_it_are_not_adopted() {
        let dma = FakeDma::new();
        assert!(RxRing::adopt(dma.ring(SLOTS), SLOTS, 0, 7).is_err());
        let (first, dma) = ring();
        let base = first.bus_addr();
        assert!(RxRing::adopt(dma.alias_ring(base), SLOTS, SLOTS.into(), 7).is_err());
        assert!(RxRing::adopt(dma.alias_ring(base), SLOTS, 0, 8).is_err());
        assert!(RxRing::adopt(dma.alias_ring(base), SLOTS, 0, 7).is_ok());
    }

    #[test]
    fn wraps_around_the_ring() {
        let (mut ring, dma) = ring();
        let mut buf = [0; 64];
        for n in 0..3 * SLOTS {
            arrive(&ring, &dma, n % SLOTS, &frame(n as u8), DD | EOP, 0);
            assert!(ring.frame_waiting(), "frame {n}");
            ring.take(&mut buf).unwrap();
            assert_eq!(buf[0], n as u8);
            assert_eq!(ring.take_tail_update(), Some(u32::from(n % SLOTS)));
        }
    }
}
