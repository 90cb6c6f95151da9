//! The 16550 itself: finding it, programming it, and moving bytes between its FIFOs
//! and the driver's buffers, one batch of register accesses per step.
//!
//! A step reads RBR only when the LSR of the step before showed Data Ready, and
//! writes THR only when it showed THR Empty, then reads LSR for the next step. A
//! speculative RBR read (LSR and RBR in one batch before knowing DR) would be
//! cheaper through `mmio:` but could swallow a byte that arrives between the two
//! reads, so a step takes at most one received byte; it gives the transmitter up to
//! a FIFO's worth (16 bytes, 1 without FIFOs).

use std::fmt;
use std::io;

use crate::access::{PortAccess, PortIo};
use crate::line::LineSettings;
use crate::registers::{
    DLL, DLM, FCR, FCR_FIFO_ENABLE, FCR_RCVR_FIFO_RESET, FCR_RCVR_TRIGGER_14, FCR_XMIT_FIFO_RESET,
    FIFO_DEPTH, IER, IIR, IIR_FIFOS_ENABLED, LCR, LCR_DLAB, LSR, LSR_BI, LSR_DR, LSR_FE, LSR_OE,
    LSR_PE, LSR_THRE, MCR, MCR_DTR, MCR_RTS, RBR, SCR, THR,
};

/// Patterns written to the scratch register to see that a UART is there.
const SCRATCH_PATTERNS: [u8; 2] = [0x5a, 0xa5];

/// Why the UART could not be set up.
#[derive(Debug)]
pub enum OpenError {
    /// The scratch register does not hold a byte: no UART at these ports.
    NotFound {
        wrote: u8,
        read: u8,
    },
    Io(io::Error),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound { wrote, read } => write!(
                f,
                "no 16550 here: its scratch register read {read:#04x} after {wrote:#04x} was written"
            ),
            Self::Io(error) => write!(f, "register access failed: {error}"),
        }
    }
}

impl std::error::Error for OpenError {}

impl From<io::Error> for OpenError {
    fn from(error: io::Error) -> Self {
        Self::Io(error)
    }
}

/// What one step did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Step {
    pub received: Option<u8>,
    /// Bytes given to the transmitter, from the front of the offered bytes.
    pub sent: usize,
    /// The error bits of the LSR this step read (they clear on reading).
    pub line_errors: LineErrors,
}

impl Step {
    pub fn moved(&self) -> bool {
        self.received.is_some() || self.sent > 0
    }
}

/// The error bits of one LSR read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LineErrors {
    pub overrun: bool,
    pub parity: bool,
    pub framing: bool,
    pub break_received: bool,
}

impl LineErrors {
    fn from_lsr(lsr: u8) -> Self {
        Self {
            overrun: lsr & LSR_OE != 0,
            parity: lsr & LSR_PE != 0,
            framing: lsr & LSR_FE != 0,
            break_received: lsr & LSR_BI != 0,
        }
    }
}

/// A programmed 16550 with FIFOs on and interrupts off (the driver polls).
pub struct Uart<P> {
    ports: P,
    /// The last LSR read: what the next step may do.
    lsr: u8,
    /// Bytes the transmitter takes when THRE is set.
    transmit_burst: usize,
    batch: Vec<PortAccess>,
}

impl<P: PortIo> Uart<P> {
    /// Checks that a UART answers, then programs it: interrupts off, `settings`,
    /// FIFOs on and cleared (receive trigger at 14), DTR and RTS asserted.
    pub fn open(mut ports: P, settings: LineSettings) -> Result<Self, OpenError> {
        for wrote in SCRATCH_PATTERNS {
            let mut probe = [PortAccess::write(SCR, wrote), PortAccess::read(SCR)];
            ports.run(&mut probe)?;
            let read = probe[1].value();
            if read != wrote {
                return Err(OpenError::NotFound { wrote, read });
            }
        }
        let fifo_control =
            FCR_FIFO_ENABLE | FCR_RCVR_FIFO_RESET | FCR_XMIT_FIFO_RESET | FCR_RCVR_TRIGGER_14;
        let mut setup = vec![PortAccess::write(IER, 0)];
        setup.extend(line_accesses(settings));
        setup.extend([
            PortAccess::write(FCR, fifo_control),
            PortAccess::write(MCR, MCR_DTR | MCR_RTS),
            PortAccess::read(IIR),
            PortAccess::read(LSR),
        ]);
        ports.run(&mut setup)?;
        let [.., iir, lsr] = setup[..] else {
            unreachable!("the setup batch ends with IIR and LSR reads")
        };
        let transmit_burst = if iir.value() & IIR_FIFOS_ENABLED == IIR_FIFOS_ENABLED {
            FIFO_DEPTH
        } else {
            log::warn!("the UART has no working FIFOs (an 8250 or 16450?): one byte per step");
            1
        };
        Ok(Self {
            ports,
            lsr: lsr.value(),
            transmit_burst,
            batch: Vec::with_capacity(FIFO_DEPTH + 2),
        })
    }

    /// Bytes the transmitter takes per step: 16 with FIFOs, else 1.
    pub fn transmit_burst(&self) -> usize {
        self.transmit_burst
    }

    /// Reprograms the divisor and the line format, at once: bytes still in the
    /// transmit FIFO go out with the new settings.
    pub fn set_line(&mut self, settings: LineSettings) -> io::Result<()> {
        let mut accesses = line_accesses(settings);
        self.ports.run(&mut accesses)
    }

    /// Whether the last LSR read lets the next step move bytes: Data Ready when the
    /// driver can take a byte, THR Empty when it has bytes to send.
    pub fn ready(&self, can_receive: bool, has_transmit: bool) -> bool {
        (can_receive && self.lsr & LSR_DR != 0) || (has_transmit && self.lsr & LSR_THRE != 0)
    }

    /// One step: takes the byte the last LSR announced if `can_receive`, gives the
    /// transmitter the front of `transmit` if the last LSR showed room, and reads
    /// LSR. After an error the next step only reads LSR, so nothing is assumed of
    /// a batch that may have run in part.
    pub fn step(&mut self, can_receive: bool, transmit: &[u8]) -> io::Result<Step> {
        let receive = can_receive && self.lsr & LSR_DR != 0;
        let sent = if self.lsr & LSR_THRE != 0 {
            transmit.len().min(self.transmit_burst)
        } else {
            0
        };
        self.batch.clear();
        if receive {
            self.batch.push(PortAccess::read(RBR));
        }
        self.batch.extend(
            transmit[..sent]
                .iter()
                .map(|&byte| PortAccess::write(THR, byte)),
        );
        self.batch.push(PortAccess::read(LSR));
        self.lsr = 0;
        self.ports.run(&mut self.batch)?;
        self.lsr = self.batch.last().map_or(0, PortAccess::value);
        Ok(Step {
            received: receive.then(|| self.batch[0].value()),
            sent,
            line_errors: LineErrors::from_lsr(self.lsr),
        })
    }
}

/// Divisor latch, then line format with DLAB clear again.
fn line_accesses(settings: LineSettings) -> Vec<PortAccess> {
    let [low, high] = settings.divisor().to_le_bytes();
    vec![
        PortAccess::write(LCR, LCR_DLAB),
        PortAccess::write(DLL, low),
        PortAccess::write(DLM, high),
        PortAccess::write(LCR, settings.lcr()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::soft::Soft16550;

    fn open(chip: &Soft16550) -> Uart<Soft16550> {
        Uart::open(chip.clone(), LineSettings::default()).unwrap()
    }

    #[test]
    fn open_programs_the_chip() {
        let chip = Soft16550::new();
        let settings = LineSettings::default()
            .changed_by("baud=9600 parity=odd")
            .unwrap();
        let uart = Uart::open(chip.clone(), settings).unwrap();
        assert_eq!(chip.divisor(), 12);
        assert_eq!(chip.lcr(), settings.lcr(), "DLAB is clear again");
        assert_eq!(chip.ier(), 0, "interrupts off: the driver polls");
        assert_eq!(chip.mcr(), MCR_DTR | MCR_RTS);
        assert!(chip.fifos_enabled());
        assert_eq!(uart.transmit_burst(), FIFO_DEPTH);
    }

    #[test]
    fn open_finds_no_uart_where_the_scratch_register_floats() {
        let error = Uart::open(Soft16550::absent(), LineSettings::default())
            .err()
            .unwrap();
        assert!(matches!(
            error,
            OpenError::NotFound {
                wrote: 0x5a,
                read: 0xff
            }
        ));
        assert_eq!(
            error.to_string(),
            "no 16550 here: its scratch register read 0xff after 0x5a was written"
        );
        let failing = Soft16550::new();
        failing.set_failing(true);
        let error = Uart::open(failing, LineSettings::default()).err().unwrap();
        assert!(matches!(error, OpenError::Io(_)));
    }

    #[test]
    fn a_step_reads_rbr_only_after_lsr_showed_data() {
        let chip = Soft16550::new();
        let mut uart = open(&chip);
        chip.receive(b"ab");
        // The LSR read at open predates the bytes: this step only reads LSR.
        let first = uart.step(true, &[]).unwrap();
        assert_eq!(first.received, None);
        assert!(uart.ready(true, false) && !uart.ready(false, false));
        assert_eq!(uart.step(true, &[]).unwrap().received, Some(b'a'));
        assert_eq!(
            uart.step(false, &[]).unwrap().received,
            None,
            "no room: the byte stays in the chip"
        );
        assert_eq!(chip.receive_fifo_len(), 1);
        assert_eq!(uart.step(true, &[]).unwrap().received, Some(b'b'));
        assert!(!uart.step(true, &[]).unwrap().moved());
    }

    #[test]
    fn a_step_fills_the_transmit_fifo_only_when_it_is_empty() {
        let chip = Soft16550::new();
        let mut uart = open(&chip);
        let data: Vec<u8> = (0..40).collect();
        assert_eq!(uart.step(true, &data).unwrap().sent, 16);
        chip.pause_line();
        assert_eq!(uart.step(true, &data[16..]).unwrap().sent, 16);
        assert_eq!(uart.step(true, &data[32..]).unwrap().sent, 0, "FIFO full");
        chip.resume_line();
        assert_eq!(
            uart.step(true, &data[32..]).unwrap().sent,
            0,
            "LSR predates"
        );
        assert_eq!(uart.step(true, &data[32..]).unwrap().sent, 8);
        assert_eq!(chip.take_transmitted(), data);
        assert_eq!(chip.transmit_overflows(), 0);
    }

    #[test]
    fn without_fifos_one_byte_per_step() {
        let chip = Soft16550::without_fifos();
        let mut uart = open(&chip);
        assert_eq!(uart.transmit_burst(), 1);
        assert_eq!(uart.step(true, b"xyz").unwrap().sent, 1);
        assert_eq!(chip.take_transmitted(), b"x");
    }

    #[test]
    fn line_errors_are_reported_and_an_error_step_assumes_nothing() {
        let chip = Soft16550::new();
        let mut uart = open(&chip);
        chip.receive_unpaced(&[0; 17]);
        let step = uart.step(true, b"q").unwrap();
        assert!(step.line_errors.overrun && !step.line_errors.parity);
        chip.set_failing(true);
        assert!(uart.step(true, b"q").is_err());
        chip.set_failing(false);
        let after = uart.step(true, b"q").unwrap();
        assert_eq!((after.received, after.sent), (None, 0), "only LSR was read");
        assert_eq!(uart.step(true, b"q").unwrap().sent, 1);
    }

    #[test]
    fn set_line_reprograms_divisor_and_format() {
        let chip = Soft16550::new();
        let mut uart = open(&chip);
        let settings = LineSettings::default()
            .changed_by("baud=300 data=7 stop=2 parity=space")
            .unwrap();
        uart.set_line(settings).unwrap();
        assert_eq!(chip.divisor(), 384);
        assert_eq!(chip.lcr(), settings.lcr());
    }
}
