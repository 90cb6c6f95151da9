//! A software 16550 for host tests of the driver: the registers, a receive and a
//! transmit FIFO, LSR's status and error bits, the divisor latch behind DLAB, and
//! the peer at the other end of the line. Real chips are tested in the QEMU guest.
//!
//! The peer's bytes enter the receive FIFO as it has room and wait otherwise, as
//! QEMU's 16550 leaves them in its character device; [`Soft16550::receive_unpaced`]
//! instead overruns a full FIFO, as a line without flow control does. Bytes written
//! to THR go out on the line at once unless the line is [paused](Soft16550::pause_line).

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::access::PortIo;
use crate::registers::{
    DLL, DLM, FCR, FCR_FIFO_ENABLE, FCR_RCVR_FIFO_RESET, FCR_XMIT_FIFO_RESET, FIFO_DEPTH, IER, IIR,
    IIR_FIFOS_ENABLED, IIR_NO_INTERRUPT, LCR, LCR_DLAB, LSR, LSR_DR, LSR_OE, LSR_TEMT, LSR_THRE,
    MCR, PORT_COUNT, RBR, SCR, THR,
};

/// A software 16550. Clones share the chip, so a test keeps one to play the peer
/// and inspect the registers while the driver owns another.
#[derive(Clone, Debug)]
pub struct Soft16550 {
    chip: Arc<Mutex<Chip>>,
}

#[derive(Debug, Default)]
struct Chip {
    /// An 8250 or 16450: FCR does nothing and there is a one-byte holding register.
    has_fifos: bool,
    /// No chip at all: reads float to 0xff and writes vanish.
    absent: bool,
    failing: bool,
    fifos_enabled: bool,
    ier: u8,
    lcr: u8,
    mcr: u8,
    scr: u8,
    divisor: u16,
    receive_fifo: VecDeque<u8>,
    transmit_fifo: VecDeque<u8>,
    /// The peer's bytes that have not entered the receive FIFO yet.
    incoming: VecDeque<u8>,
    /// Bytes that went out on the line.
    transmitted: Vec<u8>,
    line_paused: bool,
    /// LSR's error bits, cleared when LSR is read.
    line_errors: u8,
    /// THR writes into a full transmit FIFO: bytes the driver lost.
    transmit_overflows: usize,
    accesses: usize,
}

impl Soft16550 {
    /// A 16550A after reset: FIFOs present but off, everything zero.
    pub fn new() -> Self {
        Self::with_chip(Chip {
            has_fifos: true,
            ..Chip::default()
        })
    }

    /// An older UART (8250, 16450) without FIFOs.
    pub fn without_fifos() -> Self {
        Self::with_chip(Chip::default())
    }

    /// No UART at these ports.
    pub fn absent() -> Self {
        Self::with_chip(Chip {
            absent: true,
            ..Chip::default()
        })
    }

    fn with_chip(chip: Chip) -> Self {
        Self {
            chip: Arc::new(Mutex::new(chip)),
        }
    }

    fn chip(&self) -> MutexGuard<'_, Chip> {
        // A test that panicked while holding the lock has failed already.
        self.chip
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The peer sends `bytes`; they enter the receive FIFO as it has room.
    pub fn receive(&self, bytes: &[u8]) {
        let mut chip = self.chip();
        chip.incoming.extend(bytes);
        chip.refill();
    }

    /// The peer sends `bytes` regardless of room: those a full FIFO cannot take are
    /// lost and set LSR's Overrun Error.
    pub fn receive_unpaced(&self, bytes: &[u8]) {
        let mut chip = self.chip();
        for &byte in bytes {
            if chip.receive_fifo.len() < chip.receive_capacity() {
                chip.receive_fifo.push_back(byte);
            } else {
                chip.line_errors |= LSR_OE;
            }
        }
    }

    /// Sets LSR error bits, as a damaged character would.
    pub fn raise_line_errors(&self, bits: u8) {
        self.chip().line_errors |= bits;
    }

    /// Takes the bytes that went out on the line.
    pub fn take_transmitted(&self) -> Vec<u8> {
        std::mem::take(&mut self.chip().transmitted)
    }

    /// Stops the transmitter: written bytes stay in the transmit FIFO.
    pub fn pause_line(&self) {
        self.chip().line_paused = true;
    }

    /// Restarts the transmitter, which sends what waits in the FIFO.
    pub fn resume_line(&self) {
        let mut chip = self.chip();
        chip.line_paused = false;
        chip.transmit();
    }

    /// Makes every access fail (a dead `mmio:` connection, a bus error), or stops that.
    pub fn set_failing(&self, failing: bool) {
        self.chip().failing = failing;
    }

    /// Bytes the peer sent that wait outside the receive FIFO.
    pub fn held(&self) -> usize {
        self.chip().incoming.len()
    }

    pub fn receive_fifo_len(&self) -> usize {
        self.chip().receive_fifo.len()
    }

    pub fn transmit_fifo_len(&self) -> usize {
        self.chip().transmit_fifo.len()
    }

    /// THR writes the transmit FIFO had no room for.
    pub fn transmit_overflows(&self) -> usize {
        self.chip().transmit_overflows
    }

    pub fn divisor(&self) -> u16 {
        self.chip().divisor
    }

    pub fn lcr(&self) -> u8 {
        self.chip().lcr
    }

    pub fn ier(&self) -> u8 {
        self.chip().ier
    }

    pub fn mcr(&self) -> u8 {
        self.chip().mcr
    }

    pub fn fifos_enabled(&self) -> bool {
        self.chip().fifos_enabled
    }

    /// Register accesses made so far.
    pub fn accesses(&self) -> usize {
        self.chip().accesses
    }
}

impl Default for Soft16550 {
    fn default() -> Self {
        Self::new()
    }
}

impl PortIo for Soft16550 {
    fn read(&mut self, offset: u8) -> io::Result<u8> {
        let mut chip = self.chip();
        chip.admit(offset)?;
        if chip.absent {
            return Ok(0xff);
        }
        let dlab = chip.lcr & LCR_DLAB != 0;
        Ok(match offset {
            DLL if dlab => chip.divisor.to_le_bytes()[0],
            DLM if dlab => chip.divisor.to_le_bytes()[1],
            RBR => {
                let byte = chip.receive_fifo.pop_front().unwrap_or(0);
                chip.refill();
                byte
            }
            IER => chip.ier,
            IIR if chip.fifos_enabled => IIR_FIFOS_ENABLED | IIR_NO_INTERRUPT,
            IIR => IIR_NO_INTERRUPT,
            LCR => chip.lcr,
            MCR => chip.mcr,
            LSR => {
                let mut lsr = std::mem::take(&mut chip.line_errors);
                if !chip.receive_fifo.is_empty() {
                    lsr |= LSR_DR;
                }
                if chip.transmit_fifo.is_empty() {
                    lsr |= LSR_THRE | LSR_TEMT;
                }
                lsr
            }
            SCR => chip.scr,
            // MSR: no modem lines are modelled.
            _ => 0,
        })
    }

    fn write(&mut self, offset: u8, value: u8) -> io::Result<()> {
        let mut chip = self.chip();
        chip.admit(offset)?;
        if chip.absent {
            return Ok(());
        }
        let dlab = chip.lcr & LCR_DLAB != 0;
        match offset {
            DLL if dlab => chip.divisor = chip.divisor & 0xff00 | u16::from(value),
            DLM if dlab => chip.divisor = chip.divisor & 0x00ff | u16::from(value) << 8,
            THR => {
                if chip.transmit_fifo.len() < chip.transmit_capacity() {
                    chip.transmit_fifo.push_back(value);
                    chip.transmit();
                } else {
                    chip.transmit_overflows += 1;
                }
            }
            IER => chip.ier = value,
            FCR if chip.has_fifos => {
                chip.fifos_enabled = value & FCR_FIFO_ENABLE != 0;
                if value & FCR_RCVR_FIFO_RESET != 0 {
                    chip.receive_fifo.clear();
                    chip.refill();
                }
                if value & FCR_XMIT_FIFO_RESET != 0 {
                    chip.transmit_fifo.clear();
                }
            }
            LCR => chip.lcr = value,
            MCR => chip.mcr = value,
            SCR => chip.scr = value,
            // FCR without FIFOs, and the read-only LSR and MSR.
            _ => {}
        }
        Ok(())
    }
}

impl Chip {
    /// Counts the access, or refuses it as the ports or the bus would.
    fn admit(&mut self, offset: u8) -> io::Result<()> {
        if u16::from(offset) >= PORT_COUNT {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("offset {offset} is beyond the UART's {PORT_COUNT} ports"),
            ));
        }
        if self.failing {
            return Err(io::Error::other("the software UART was told to fail"));
        }
        self.accesses += 1;
        Ok(())
    }

    fn receive_capacity(&self) -> usize {
        if self.fifos_enabled {
            FIFO_DEPTH
        } else {
            1
        }
    }

    fn transmit_capacity(&self) -> usize {
        self.receive_capacity()
    }

    /// Moves waiting peer bytes into the receive FIFO while it has room.
    fn refill(&mut self) {
        while self.receive_fifo.len() < self.receive_capacity() {
            match self.incoming.pop_front() {
                Some(byte) => self.receive_fifo.push_back(byte),
                None => break,
            }
        }
    }

    fn transmit(&mut self) {
        if !self.line_paused {
            self.transmitted.extend(self.transmit_fifo.drain(..));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registers::LSR_PE;

    #[test]
    fn divisor_latch_sits_behind_dlab() {
        let mut uart = Soft16550::new();
        uart.write(LCR, LCR_DLAB).unwrap();
        uart.write(DLL, 0x0c).unwrap();
        uart.write(DLM, 0x01).unwrap();
        assert_eq!(uart.read(DLL).unwrap(), 0x0c);
        uart.write(LCR, 0x03).unwrap();
        uart.write(IER, 0x00).unwrap();
        assert_eq!(uart.divisor(), 0x010c, "IER's write did not touch DLM");
        assert_eq!(uart.lcr(), 0x03);
    }

    #[test]
    fn fifo_holds_sixteen_and_the_peer_waits_or_overruns() {
        let mut uart = Soft16550::new();
        uart.write(FCR, FCR_FIFO_ENABLE).unwrap();
        uart.receive(&[7; 20]);
        assert_eq!((uart.receive_fifo_len(), uart.held()), (16, 4));
        assert_eq!(uart.read(LSR).unwrap() & (LSR_DR | LSR_OE), LSR_DR);
        assert_eq!(uart.read(RBR).unwrap(), 7);
        assert_eq!((uart.receive_fifo_len(), uart.held()), (16, 3));

        uart.receive_unpaced(&[1, 2]);
        uart.raise_line_errors(LSR_PE);
        assert_eq!(uart.read(LSR).unwrap() & (LSR_OE | LSR_PE), LSR_OE | LSR_PE);
        assert_eq!(
            uart.read(LSR).unwrap() & (LSR_OE | LSR_PE),
            0,
            "errors clear on read"
        );
    }

    #[test]
    fn transmit_fifo_overflows_only_while_the_line_is_paused() {
        let mut uart = Soft16550::without_fifos();
        uart.write(FCR, FCR_FIFO_ENABLE).unwrap();
        assert_eq!(
            uart.read(IIR).unwrap(),
            IIR_NO_INTERRUPT,
            "no FIFOs to enable"
        );
        uart.pause_line();
        uart.write(THR, b'a').unwrap();
        assert_eq!(uart.read(LSR).unwrap() & LSR_THRE, 0);
        uart.write(THR, b'b').unwrap();
        assert_eq!(uart.transmit_overflows(), 1);
        uart.resume_line();
        assert_eq!(uart.take_transmitted(), b"a");
    }

    #[test]
    fn absent_failing_and_out_of_range() {
        let mut nothing = Soft16550::absent();
        nothing.write(SCR, 0x5a).unwrap();
        assert_eq!(nothing.read(SCR).unwrap(), 0xff);
        let mut uart = Soft16550::new();
        assert_eq!(
            uart.read(8).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        uart.set_failing(true);
        assert!(uart.write(SCR, 1).is_err());
        uart.set_failing(false);
        uart.write(SCR, 1).unwrap();
        assert_eq!(uart.accesses(), 1, "refused accesses are not counted");
    }
}
