//! Taking over a NIC that a predecessor left running: what its registers must say
//! for the rings in the kept `dma:` buffers to still be the NIC's.
//!
//! A driver that crashed leaves the NIC as it was: receiver and transmitter on,
//! the rings where it put them. Its supervisor starts a successor at once, and
//! `dma:` hands that successor the very buffers the rings live in (kept
//! buffers, adopted by name). If the registers point at exactly those buffers,
//! with this driver's receive and transmit settings, the successor goes on with
//! the rings as they are, without a reset and without writing RCTL: QEMU's e1000
//! refuses to receive for a second after every RCTL write, and frames that
//! arrived meanwhile (QEMU queues them while bus mastering is off, from the
//! driver's death until the successor, having found its rings in place, asks
//! `mmio:` to start it again) land in the ring the successor reads. Anything else, and the NIC is brought up afresh.

use std::fmt;

use crate::dma::DmaMemory;
use crate::io::RegOp;
use crate::regs::*;

/// The registers that say how the NIC was left, read in one batch.
pub const LEFT_RUNNING_REGS: [u32; 12] = [
    RCTL, TCTL, RDBAL, RDBAH, RDLEN, RDH, RDT, TDBAL, TDBAH, TDLEN, TDH, TDT,
];

/// What [`LEFT_RUNNING_REGS`] read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeftRunning {
    pub rctl: u32,
    pub tctl: u32,
    pub rx_base: u64,
    pub rx_len: u32,
    pub rx_head: u32,
    pub rx_tail: u32,
    pub tx_base: u64,
    pub tx_len: u32,
    pub tx_head: u32,
    pub tx_tail: u32,
}

/// Why a NIC is not taken over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotTakenOver {
    /// The buffers are fresh: no predecessor's rings are in them.
    FreshBuffers,
    /// The receiver or transmitter is off or set up otherwise (a clean stop
    /// switches both off).
    Stopped { rctl: u32, tctl: u32 },
    /// A ring register points elsewhere than the kept buffer.
    RingMoved {
        ring: &'static str,
        base: u64,
        len: u32,
    },
    /// The memory does not hold this driver's ring layout.
    NotLaidOut(&'static str),
}

impl fmt::Display for NotTakenOver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::FreshBuffers => f.write_str("its ring buffers are fresh"),
            Self::Stopped { rctl, tctl } => {
                write!(f, "it was stopped (RCTL {rctl:#010x}, TCTL {tctl:#010x})")
            }
            Self::RingMoved { ring, base, len } => write!(
                f,
                "its {ring} ring is at {base:#x} ({len} bytes), not in the kept buffer"
            ),
            Self::NotLaidOut(ring) => write!(f, "the kept {ring} buffer holds no ring"),
        }
    }
}

impl LeftRunning {
    /// The batch that reads it.
    pub fn read_ops() -> [RegOp; LEFT_RUNNING_REGS.len()] {
        LEFT_RUNNING_REGS.map(RegOp::read)
    }

    /// Decodes what [`Self::read_ops`] read, in its order.
    pub fn from_ops(ops: &[RegOp; LEFT_RUNNING_REGS.len()]) -> Self {
        let value = |reg: u32| ops.iter().find(|op| op.reg == reg).map_or(0, |op| op.value);
        let base = |low: u32, high: u32| u64::from(value(high)) << 32 | u64::from(value(low));
        Self {
            rctl: value(RCTL),
            tctl: value(TCTL),
            rx_base: base(RDBAL, RDBAH),
            rx_len: value(RDLEN),
            rx_head: value(RDH),
            rx_tail: value(RDT),
            tx_base: base(TDBAL, TDBAH),
            tx_len: value(TDLEN),
            tx_head: value(TDH),
            tx_tail: value(TDT),
        }
    }

    /// Whether the NIC runs with `rctl` and `tctl` and its rings of
    /// `ring_bytes` each in `rx` and `tx`; why not, if not.
    pub fn check(
        &self,
        (rctl, tctl): (u32, u32),
        rx: &dyn DmaMemory,
        tx: &dyn DmaMemory,
        ring_bytes: u32,
    ) -> Result<(), NotTakenOver> {
        if (self.rctl, self.tctl) != (rctl, tctl) {
            return Err(NotTakenOver::Stopped {
                rctl: self.rctl,
                tctl: self.tctl,
            });
        }
        for (ring, base, len, memory) in [
            ("receive", self.rx_base, self.rx_len, rx),
            ("transmit", self.tx_base, self.tx_len, tx),
        ] {
            if (base, len) != (memory.bus_addr(), ring_bytes) {
                return Err(NotTakenOver::RingMoved { ring, base, len });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::FakeDma;

    fn read(values: [(u32, u32); 12]) -> LeftRunning {
        let mut ops = LeftRunning::read_ops();
        for (op, (reg, value)) in ops.iter_mut().zip(values) {
            assert_eq!(op.reg, reg);
            op.value = value;
        }
        LeftRunning::from_ops(&ops)
    }

    #[test]
    fn the_registers_decode_into_the_rings_as_left() {
        let left = read([
            (RCTL, 1),
            (TCTL, 2),
            (RDBAL, 0x2340_0000),
            (RDBAH, 1),
            (RDLEN, 2048),
            (RDH, 5),
            (RDT, 4),
            (TDBAL, 0x2360_0000),
            (TDBAH, 1),
            (TDLEN, 2048),
            (TDH, 7),
            (TDT, 9),
        ]);
        assert_eq!(left.rx_base, 0x1_2340_0000);
        assert_eq!(left.tx_base, 0x1_2360_0000);
        assert_eq!(
            (left.rx_head, left.rx_tail, left.tx_head, left.tx_tail),
            (5, 4, 7, 9)
        );
    }

    #[test]
    fn only_a_nic_running_with_these_settings_on_these_buffers_is_taken_over() {
        let dma = FakeDma::new();
        let (rx, tx) = (dma.alloc(4096), dma.alloc(4096));
        let running = LeftRunning {
            rctl: 0x10,
            tctl: 0x20,
            rx_base: rx.bus_addr(),
            rx_len: 2048,
            rx_head: 0,
            rx_tail: 127,
            tx_base: tx.bus_addr(),
            tx_len: 2048,
            tx_head: 0,
            tx_tail: 0,
        };
        let check = |left: LeftRunning| left.check((0x10, 0x20), &*rx, &*tx, 2048);
        assert_eq!(check(running), Ok(()));
        assert_eq!(
            check(LeftRunning { rctl: 0, ..running }),
            Err(NotTakenOver::Stopped {
                rctl: 0,
                tctl: 0x20
            })
        );
        let moved = LeftRunning {
            tx_base: rx.bus_addr(),
            ..running
        };
        assert!(matches!(
            check(moved),
            Err(NotTakenOver::RingMoved {
                ring: "transmit",
                ..
            })
        ));
        let shorter = LeftRunning {
            rx_len: 1024,
            ..running
        };
        assert!(matches!(
            check(shorter),
            Err(NotTakenOver::RingMoved {
                ring: "receive",
                ..
            })
        ));
    }
}
