//! In-guest building blocks for test programs: finding and mapping PCI functions,
//! legacy port I/O, physically contiguous DMA memory, and reporting results.

pub mod dma;
pub mod pci;
pub mod port_io;
pub mod report;
