//! A software register bank: registers kept in memory, for host tests of the
//! scheme and of drivers. Real devices are tested in the QEMU guest.

use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use super::RegisterBus;
use crate::region::{Access, Region, Space};
use crate::wire::{RegisterOp, Width};

/// Registers in memory that remember every access made through the bus.
///
/// Clones share the registers, so a test keeps one clone to inspect what the
/// scheme did with another. [`slice`](Self::slice) gives a bus over part of the
/// bank (a port range out of the whole port space).
#[derive(Clone, Debug)]
pub struct SoftBank {
    space: Space,
    base: u64,
    len: u64,
    registers: Arc<Mutex<Registers>>,
}

#[derive(Debug, Default)]
struct Registers {
    bytes: Vec<u8>,
    log: Vec<RegisterOp>,
}

impl SoftBank {
    /// A memory BAR of `len` bytes, all zero.
    pub fn memory(len: usize) -> Self {
        Self::new(Space::Memory, len)
    }

    /// The whole x86 I/O port space (65536 ports), all zero; [`slice`](Self::slice)
    /// it into port ranges.
    pub fn port_space() -> Self {
        Self::new(Space::Port, 1 << 16)
    }

    fn new(space: Space, len: usize) -> Self {
        let registers = Registers {
            bytes: vec![0; len],
            log: Vec::new(),
        };
        Self {
            space,
            base: 0,
            len: len as u64,
            registers: Arc::new(Mutex::new(registers)),
        }
    }

    /// A bus over `len` bytes from `base` of this bank, sharing its registers.
    ///
    /// # Panics
    /// If the slice does not lie inside this bank.
    pub fn slice(&self, base: u64, len: u64) -> Self {
        assert!(
            base.checked_add(len).is_some_and(|end| end <= self.len),
            "slice outside the bank"
        );
        Self {
            base: self.base + base,
            len,
            ..self.clone()
        }
    }

    /// Reads a register without going through the bus (not logged). `offset`
    /// is relative to the whole bank.
    ///
    /// # Panics
    /// If the register lies outside the bank.
    pub fn peek(&self, offset: u64, width: Width) -> u64 {
        let registers = self.lock();
        let bytes = &registers.bytes[byte_range(offset, width)];
        let mut value = [0; 8];
        value[..bytes.len()].copy_from_slice(bytes);
        u64::from_le_bytes(value)
    }

    /// Writes a register without going through the bus (not logged), as a
    /// device would change its own state.
    ///
    /// # Panics
    /// If the register lies outside the bank or the value does not fit the width.
    pub fn poke(&self, offset: u64, width: Width, value: u64) {
        assert!(value <= width.max_value(), "value wider than the register");
        let mut registers = self.lock();
        registers.bytes[byte_range(offset, width)]
            .copy_from_slice(&value.to_le_bytes()[..width.bytes()]);
    }

    /// Every access made through a bus of this bank, in order, with offsets
    /// relative to the whole bank and the values read or written.
    pub fn log(&self) -> Vec<RegisterOp> {
        self.lock().log.clone()
    }

    fn lock(&self) -> MutexGuard<'_, Registers> {
        // A test that panicked while holding the lock leaves plain bytes behind: still usable.
        self.registers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn byte_range(offset: u64, width: Width) -> std::ops::Range<usize> {
    let start = offset as usize;
    start..start + width.bytes()
}

impl RegisterBus for SoftBank {
    fn region(&self) -> Region {
        Region {
            space: self.space,
            len: self.len,
        }
    }

    unsafe fn read(&mut self, access: Access) -> io::Result<u64> {
        let offset = self.base + access.offset();
        let value = self.peek(offset, access.width());
        self.lock().log.push(RegisterOp {
            value,
            ..RegisterOp::read(offset, access.width())
        });
        Ok(value)
    }

    unsafe fn write(&mut self, access: Access, value: u64) -> io::Result<()> {
        let offset = self.base + access.offset();
        self.poke(offset, access.width(), value);
        self.lock()
            .log
            .push(RegisterOp::write(offset, access.width(), value));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_share_registers_and_log_absolute_offsets() {
        let space = SoftBank::port_space();
        let mut com2 = space.slice(0x2f8, 8);
        assert_eq!(com2.region(), Region::ports(8));
        let access = com2.region().check(3, Width::U8).unwrap();
        // SAFETY: checked against the slice's region just above.
        unsafe { com2.write(access, 0x83).unwrap() };
        assert_eq!(space.peek(0x2fb, Width::U8), 0x83);
        assert_eq!(space.log(), vec![RegisterOp::write(0x2fb, Width::U8, 0x83)]);
    }

    #[test]
    #[should_panic(expected = "slice outside the bank")]
    fn slice_must_fit() {
        SoftBank::memory(16).slice(8, 9);
    }
}
