//! A driver for the 16550 UART, served as a serial scheme (`uart.com2` by default;
//! paths `data`, `settings`, `status`, see [`scheme`]).
//!
//! The driver reaches the chip through a small [`access::PortIo`] trait, chosen at
//! start: `direct` executes `in`/`out` itself (the instructions the replication
//! engine traps; needs port rights, root on Linux), `mmio` goes through
//! `mmio:port/<first>-<last>` as the policy's unprivileged uart driver. It polls the
//! chip ([`poll`]), since no interrupt reaches a user-space COM2 driver on Linux, and
//! buffers both directions with bounds and back-pressure ([`port`]).
//!
//! [`soft::Soft16550`] is a software chip for host tests. Line settings a client
//! sets survive a restart by the supervisor through its state store ([`state`]).

#[cfg(not(target_arch = "x86_64"))]
compile_error!("the 16550 driver uses x86 I/O ports and is built for x86_64 only");

pub mod access;
pub mod line;
pub mod options;
pub mod poll;
pub mod port;
pub mod registers;
pub mod scheme;
pub mod soft;
pub mod state;
pub mod status;
pub mod uart;

pub use line::{LineSettings, Parity};
pub use options::{run, Access, Options};
pub use scheme::UartScheme;
