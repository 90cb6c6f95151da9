//! The 16550 UART registers the COM2 tests use, as offsets from the port base
//! (National Semiconductor PC16550D datasheet, table II).

/// Receiver Buffer (read, DLAB clear).
pub const RBR: u64 = 0;
/// Transmitter Holding Register (write, DLAB clear).
pub const THR: u64 = 0;
/// Line Control.
pub const LCR: u64 = 3;
/// Line Status.
pub const LSR: u64 = 5;
/// Scratch register: holds a byte and does nothing else.
pub const SCR: u64 = 7;

/// LCR: 8 data bits, no parity, 1 stop bit, DLAB clear so offset 0 is THR/RBR.
pub const LCR_8N1: u8 = 0x03;
/// LSR: Data Ready.
pub const LSR_DR: u8 = 1 << 0;
/// LSR: Transmitter Holding Register Empty.
pub const LSR_THRE: u8 = 1 << 5;
