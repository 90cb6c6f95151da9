//! In-guest building blocks for test and benchmark programs: waiting for the daemons,
//! finding PCI functions, register access through `mmio:`, the e1000's registers,
//! running parts of a program as a driver's user, driving and faulting a replicated
//! driver through the engine's control socket or through the `romain:` supervisor,
//! and reporting results.

pub mod control;
pub mod daemons;
pub mod e1000;
pub mod faults;
pub mod mmio;
pub mod pci;
pub mod report;
pub mod roles;
pub mod romain;
