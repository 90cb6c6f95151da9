//! The 16550's registers as offsets from its base port, and the bits the driver uses,
//! named as in the National Semiconductor PC16550D datasheet (table II).

/// Ports the UART decodes, from its base.
pub const PORT_COUNT: u16 = 8;

/// Receiver Buffer Register (read, DLAB clear).
pub const RBR: u8 = 0;
/// Transmitter Holding Register (write, DLAB clear).
pub const THR: u8 = 0;
/// Divisor Latch, least significant byte (DLAB set).
pub const DLL: u8 = 0;
/// Divisor Latch, most significant byte (DLAB set).
pub const DLM: u8 = 1;
/// Interrupt Enable Register (DLAB clear).
pub const IER: u8 = 1;
/// Interrupt Identification Register (read).
pub const IIR: u8 = 2;
/// FIFO Control Register (write).
pub const FCR: u8 = 2;
/// Line Control Register.
pub const LCR: u8 = 3;
/// Modem Control Register.
pub const MCR: u8 = 4;
/// Line Status Register.
pub const LSR: u8 = 5;
/// Scratch Register: holds a byte and does nothing else.
pub const SCR: u8 = 7;

/// IIR bits 6-7: both set when FCR's FIFO Enable took effect (a 16550A).
pub const IIR_FIFOS_ENABLED: u8 = 0xc0;
/// IIR bit 0: no interrupt pending.
pub const IIR_NO_INTERRUPT: u8 = 1 << 0;

/// FCR bit 0: FIFO Enable.
pub const FCR_FIFO_ENABLE: u8 = 1 << 0;
/// FCR bit 1: RCVR FIFO Reset.
pub const FCR_RCVR_FIFO_RESET: u8 = 1 << 1;
/// FCR bit 2: XMIT FIFO Reset.
pub const FCR_XMIT_FIFO_RESET: u8 = 1 << 2;
/// FCR bits 6-7: RCVR trigger level of 14 bytes.
pub const FCR_RCVR_TRIGGER_14: u8 = 0xc0;

/// LCR bits 0-1: Word Length Select, the number of data bits minus 5.
pub const LCR_WLS_MASK: u8 = 0x03;
/// LCR bit 2: Number of Stop Bits (2, or 1.5 with 5-bit words).
pub const LCR_STB: u8 = 1 << 2;
/// LCR bit 3: Parity Enable.
pub const LCR_PEN: u8 = 1 << 3;
/// LCR bit 4: Even Parity Select.
pub const LCR_EPS: u8 = 1 << 4;
/// LCR bit 5: Stick Parity.
pub const LCR_STICK_PARITY: u8 = 1 << 5;
/// LCR bit 7: Divisor Latch Access Bit.
pub const LCR_DLAB: u8 = 1 << 7;

/// MCR bit 0: Data Terminal Ready.
pub const MCR_DTR: u8 = 1 << 0;
/// MCR bit 1: Request To Send.
pub const MCR_RTS: u8 = 1 << 1;

/// LSR bit 0: Data Ready, a received byte waits in RBR (or the RCVR FIFO).
pub const LSR_DR: u8 = 1 << 0;
/// LSR bit 1: Overrun Error, a received byte was lost.
pub const LSR_OE: u8 = 1 << 1;
/// LSR bit 2: Parity Error.
pub const LSR_PE: u8 = 1 << 2;
/// LSR bit 3: Framing Error.
pub const LSR_FE: u8 = 1 << 3;
/// LSR bit 4: Break Interrupt.
pub const LSR_BI: u8 = 1 << 4;
/// LSR bit 5: Transmitter Holding Register Empty (with FIFOs: the XMIT FIFO is empty).
pub const LSR_THRE: u8 = 1 << 5;
/// LSR bit 6: Transmitter Empty, THR and the shift register both empty.
pub const LSR_TEMT: u8 = 1 << 6;

/// Depth of the 16550A's RCVR and XMIT FIFOs.
pub const FIFO_DEPTH: usize = 16;
/// The baud rate of divisor 1: the 1.8432 MHz crystal over 16.
pub const BAUD_CLOCK: u32 = 115_200;
