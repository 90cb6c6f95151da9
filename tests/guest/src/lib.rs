//! Shared by the host harness and the programs it runs inside the QEMU guest: the result
//! line protocol, and helpers that reach the guest's devices directly (PCI functions
//! through sysfs, legacy I/O ports, DMA memory).

pub mod guest;
pub mod protocol;
