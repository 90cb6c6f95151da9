//! The `mmio:` access layer: the only process that touches device registers.
//!
//! Drivers open one BAR of a PCI function (`pci/<bdf>/bar<N>`) or an I/O port
//! range (`port/<first>-<last>`), having found their device in the list of
//! the functions their rule grants (`pci`), and read and write registers through the
//! handle, one access at a time (`pread`/`pwrite`) or in batches (`call`, in
//! the [`wire`] format), and wait for a function's interrupt
//! (`pci/<bdf>/irq`, an [`interrupt::InterruptLine`]). A [`driver_policy::Policy`] decides what each driver
//! may open, and every access is range-, alignment- and width-checked before
//! it reaches a device.
//!
//! Drivers depend on this crate for [`wire`] (building batches) and
//! [`client`] (opening what it serves, finding their device); the daemon is [`MmioScheme`] over a
//! [`Hardware`]: the platform's real devices ([`SystemHardware`]) or, in host
//! tests, a [`SoftMachine`] of software register banks.

#[cfg(not(target_arch = "x86_64"))]
compile_error!("mmio-scheme serves x86 I/O ports and is built for x86_64 only");

pub mod bus;
pub mod client;
pub mod hardware;
pub mod interrupt;
pub mod open_path;
pub mod region;
pub mod scheme;
pub mod status;
pub mod wire;

pub use hardware::{Hardware, SoftMachine, SystemHardware};
pub use scheme::MmioScheme;

/// The scheme's name: its socket in the scheme directory on Linux.
pub const SCHEME_NAME: &str = "mmio";

/// The page size of x86_64, the granule of direct BAR mappings.
pub const PAGE_SIZE: usize = 4096;
