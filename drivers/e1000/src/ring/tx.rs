//! The transmit ring. The driver fills the descriptor at `tail` and the NIC sends
//! everything from TDH up to TDT; each descriptor asks for a status report (RS),
//! so a set DD bit says its buffer is free again. TDT moves once per round.

use std::fmt;
use std::io;
use std::ptr::addr_of_mut;
use std::sync::atomic::{fence, Ordering};

use super::{RingMemory, RingRegions, BUFFER_LEN};

/// Legacy transmit descriptor (manual section 3.3.3).
#[repr(C)]
struct TxDescriptor {
    buffer_addr: u64,
    length: u16,
    cso: u8,
    cmd: u8,
    status: u8,
    css: u8,
    special: u16,
}

/// Command: end of packet.
const CMD_EOP: u8 = 1 << 0;
/// Command: insert the frame check sequence.
const CMD_IFCS: u8 = 1 << 1;
/// Command: report status (set DD when done).
const CMD_RS: u8 = 1 << 3;
/// Status: descriptor done.
const STATUS_DD: u8 = 1 << 0;

/// Why a frame was not queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxError {
    /// Every descriptor is in flight.
    Full,
    /// The frame does not fit one packet buffer.
    TooLong(usize),
}

impl fmt::Display for TxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full => f.write_str("the transmit ring is full"),
            Self::TooLong(len) => {
                write!(f, "a {len}-byte frame exceeds a {BUFFER_LEN}-byte buffer")
            }
        }
    }
}

pub struct TxRing {
    memory: RingMemory,
    /// The next descriptor to fill.
    tail: u16,
    /// The oldest descriptor in flight.
    clean: u16,
    in_flight: u16,
    tail_moved: bool,
}

impl TxRing {
    /// Lays out an empty ring in `regions`.
    pub fn new(regions: RingRegions, slots: u16) -> io::Result<Self> {
        let memory = RingMemory::new(regions, slots)?;
        for index in 0..slots {
            let desc = memory.descriptor::<TxDescriptor>(index);
            // SAFETY: desc points at a descriptor inside the ring (RingMemory).
            unsafe {
                desc.write_volatile(TxDescriptor {
                    buffer_addr: memory.buffer_bus_addr(index),
                    length: 0,
                    cso: 0,
                    cmd: 0,
                    status: 0,
                    css: 0,
                    special: 0,
                })
            };
        }
        Ok(Self {
            memory,
            tail: 0,
            clean: 0,
            in_flight: 0,
            tail_moved: false,
        })
    }

    /// Takes over a ring a predecessor left running in `regions`, which the NIC
    /// is still using: TDH and TDT as the NIC holds them. The frames from TDH up
    /// to TDT are still in flight (the NIC sends them as if nothing happened);
    /// the rest of the ring is free. Nothing is written. The regions come back if
    /// the ring is not what this driver lays out.
    pub fn adopt(
        regions: RingRegions,
        slots: u16,
        head: u32,
        tail: u32,
    ) -> Result<Self, RingRegions> {
        let (memory, head, tail) = RingMemory::laid_out(regions, slots, head, tail)?;
        Ok(Self {
            memory,
            tail,
            clean: head,
            in_flight: (tail + slots - head) % slots,
            tail_moved: false,
        })
    }

    pub fn bus_addr(&self) -> u64 {
        self.memory.ring_bus_addr()
    }

    /// TDLEN.
    pub fn bytes(&self) -> u32 {
        self.memory.ring_bytes()
    }

    pub fn in_flight(&self) -> u16 {
        self.in_flight
    }

    /// Frees the descriptors the NIC has finished; returns how many.
    pub fn reclaim(&mut self) -> u16 {
        let mut freed = 0;
        while self.in_flight > 0 && self.done(self.clean) {
            self.clean = self.memory.next(self.clean);
            self.in_flight -= 1;
            freed += 1;
        }
        freed
    }

    /// A frame can be queued now.
    pub fn has_room(&mut self) -> bool {
        self.reclaim();
        // One descriptor stays empty: TDT == TDH means an empty ring to the NIC.
        self.in_flight < self.memory.slots - 1
    }

    /// Copies `frame` into the next buffer and queues it; the NIC learns of it at
    /// the next [`take_tail_update`](Self::take_tail_update).
    pub fn push(&mut self, frame: &[u8]) -> Result<(), TxError> {
        let length = u16::try_from(frame.len())
            .ok()
            .filter(|&len| usize::from(len) <= BUFFER_LEN)
            .ok_or(TxError::TooLong(frame.len()))?;
        if !self.has_room() {
            return Err(TxError::Full);
        }
        let desc = self.memory.descriptor::<TxDescriptor>(self.tail);
        // SAFETY: the descriptor at tail and its buffer are not in flight (has_room),
        // and frame fits the buffer (checked above).
        unsafe {
            std::ptr::copy_nonoverlapping(
                frame.as_ptr(),
                self.memory.buffer(self.tail),
                frame.len(),
            );
            addr_of_mut!((*desc).length).write_volatile(length);
            addr_of_mut!((*desc).cmd).write_volatile(CMD_EOP | CMD_IFCS | CMD_RS);
            addr_of_mut!((*desc).status).write_volatile(0);
        }
        self.tail = self.memory.next(self.tail);
        self.in_flight += 1;
        self.tail_moved = true;
        Ok(())
    }

    /// The TDT value that hands queued frames to the NIC, once; `None` if nothing
    /// was queued since the last call.
    pub fn take_tail_update(&mut self) -> Option<u32> {
        // Descriptors and frames are in memory before the NIC learns of them.
        fence(Ordering::Release);
        std::mem::take(&mut self.tail_moved).then_some(u32::from(self.tail))
    }

    fn done(&self, index: u16) -> bool {
        let desc = self.memory.descriptor::<TxDescriptor>(index);
        // SAFETY: desc points at a descriptor inside the ring.
        unsafe { addr_of_mut!((*desc).status).read_volatile() & STATUS_DD != 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{consume_tx, FakeDma};

    const SLOTS: u16 = 8;

    fn ring() -> (TxRing, FakeDma) {
        let dma = FakeDma::new();
        (TxRing::new(dma.ring(SLOTS), SLOTS).unwrap(), dma)
    }

    /// The NIC sends the frame of descriptor `index`.
    fn send(ring: &TxRing, dma: &FakeDma, index: u16) -> Vec<u8> {
        consume_tx(dma, ring.bus_addr() + u64::from(index) * 16)
    }

    #[test]
    fn an_adopted_ring_keeps_the_frames_in_flight_and_queues_after_them() {
        let (mut first, dma) = ring();
        for byte in 1..=3 {
            first.push(&[byte; 60]).unwrap();
        }
        assert_eq!(first.take_tail_update(), Some(3));
        // The NIC sent the first frame, then the driver died.
        assert_eq!(send(&first, &dma, 0)[0], 1);
        let memory = dma.alias_ring(first.bus_addr());
        drop(first);

        let mut ring = TxRing::adopt(memory, SLOTS, 1, 3)
            .ok()
            .expect("a ring laid out as ours");
        assert_eq!(ring.in_flight(), 2);
        ring.push(&[4; 60]).unwrap();
        assert_eq!(ring.take_tail_update(), Some(4));
        for (index, byte) in [(1, 2), (2, 3), (3, 4)] {
            assert_eq!(send(&ring, &dma, index)[0], byte);
        }
        assert_eq!(ring.reclaim(), 3);
        assert_eq!(ring.in_flight(), 0);
    }

    #[test]
    fn memory_not_laid_out_as_a_transmit_ring_is_not_adopted() {
        let dma = FakeDma::new();
        assert!(TxRing::adopt(dma.ring(SLOTS), SLOTS, 0, 0).is_err());
        let (first, dma) = ring();
        assert!(TxRing::adopt(dma.alias_ring(first.bus_addr()), SLOTS, 0, 9).is_err());
        assert!(TxRing::adopt(dma.alias_ring(first.bus_addr()), SLOTS, 2, 2).is_ok());
    }

    #[test]
    fn queued_frame_is_described_whole_with_a_status_report() {
        let (mut ring, dma) = ring();
        let frame: Vec<u8> = (0..60).collect();
        ring.push(&frame).unwrap();
        let desc = dma.read(ring.bus_addr(), 16);
        assert_eq!(u16::from_le_bytes([desc[8], desc[9]]), 60);
        assert_eq!(desc[11], CMD_EOP | CMD_IFCS | CMD_RS);
        assert_eq!(ring.take_tail_update(), Some(1));
        assert_eq!(ring.take_tail_update(), None, "the tail moves once");
        assert_eq!(send(&ring, &dma, 0), frame);
        assert_eq!(ring.reclaim(), 1);
        assert_eq!(ring.in_flight(), 0);
    }

    #[test]
    fn full_ring_refuses_until_the_nic_finishes() {
        let (mut ring, dma) = ring();
        for n in 0..SLOTS - 1 {
            ring.push(&[n as u8; 60]).unwrap();
        }
        assert!(!ring.has_room());
        assert_eq!(ring.push(&[0; 60]), Err(TxError::Full));
        assert_eq!(ring.take_tail_update(), Some(7));
        send(&ring, &dma, 0);
        send(&ring, &dma, 1);
        assert!(ring.has_room());
        assert_eq!(ring.in_flight(), 5);
        ring.push(&[9; 60]).unwrap();
        assert_eq!(ring.take_tail_update(), Some(0), "wrapped");
    }

    #[test]
    fn frame_longer_than_a_buffer_is_refused() {
        let (mut ring, _dma) = ring();
        let error = ring.push(&[0; BUFFER_LEN + 1]).unwrap_err();
        assert_eq!(error, TxError::TooLong(2049));
        assert_eq!(
            error.to_string(),
            "a 2049-byte frame exceeds a 2048-byte buffer"
        );
        assert_eq!(ring.in_flight(), 0);
        assert_eq!(ring.take_tail_update(), None);
    }
}
