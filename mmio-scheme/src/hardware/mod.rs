//! The machine's devices as the scheme sees them: PCI functions with BARs, and
//! legacy I/O port ranges. Each platform opens them its own way.

#[cfg(target_os = "linux")]
mod linux;
#[cfg(any(target_os = "redox", test))]
mod pcid_wire;
#[cfg(target_os = "redox")]
mod redox;
mod soft;

use std::io;

use driver_policy::{Bdf, DeviceId, PciFunction, PortRange};

use crate::bus::RegisterBus;
use crate::interrupt::InterruptLine;

#[cfg(target_os = "linux")]
pub use linux::LinuxHardware;
#[cfg(target_os = "redox")]
pub use redox::RedoxHardware;
pub use soft::SoftMachine;

/// This platform's real hardware.
#[cfg(target_os = "linux")]
pub type SystemHardware = LinuxHardware;
/// This platform's real hardware.
#[cfg(target_os = "redox")]
pub type SystemHardware = RedoxHardware;

/// Opens the registers the scheme serves. Called only after the policy
/// granted the request, except [`device_id`](Self::device_id), which the
/// policy decision itself needs.
pub trait Hardware {
    /// Every PCI function on the machine, in address order, with its ids:
    /// what `mmio:pci` lists to a driver that must find its device. Reading
    /// the ids takes no function from anyone.
    fn functions(&mut self) -> io::Result<Vec<PciFunction>>;

    /// The vendor and device id the PCI function at `bdf` reports.
    fn device_id(&mut self, bdf: Bdf) -> io::Result<DeviceId>;

    /// The registers of BAR `bar` of the function at `bdf`, with the function
    /// set up to decode them. Bus mastering is left as it is: off after a
    /// [`stop_bus_master`](Self::stop_bus_master), until the driver has put the
    /// device's DMA in order and asks for [`start_bus_master`](Self::start_bus_master).
    fn open_bar(&mut self, bdf: Bdf, bar: u8) -> io::Result<Box<dyn RegisterBus>>;

    /// The I/O ports of `range`.
    fn open_ports(&mut self, range: PortRange) -> io::Result<Box<dyn RegisterBus>>;

    /// The interrupt line of the function at `bdf`, masked as it fires and
    /// unmasked by [`InterruptLine::unmask`]. Called only after the policy
    /// granted it.
    fn open_interrupt(&mut self, bdf: Bdf) -> io::Result<Box<dyn InterruptLine>>;

    /// Stops the function at `bdf` from mastering the bus: clears Bus Master
    /// Enable (bit 2 of the PCI command register), so that it starts no more
    /// DMA. Called when the last handle on the function's BARs closes, a dead
    /// driver's included: without an IOMMU, a device left running after its
    /// driver went would keep writing into buffers `dma:` frees.
    fn stop_bus_master(&mut self, bdf: Bdf) -> io::Result<()>;

    /// Lets the function at `bdf` master the bus again: sets Bus Master
    /// Enable. Only at its driver's request, once the device was reset or its
    /// rings were found in memory the driver holds: a device a dead driver
    /// left running still points at that driver's buffers, which `dma:` may
    /// have freed and given to someone else by the time a successor opens the
    /// registers.
    fn start_bus_master(&mut self, bdf: Bdf) -> io::Result<()>;
}

/// Bits of the PCI command register (PCI Local Bus Specification 3.0,
/// section 6.2.2), at offset 0x04 of configuration space.
pub mod command {
    /// I/O Space: the function answers accesses to its I/O BARs.
    pub const IO_SPACE: u16 = 1 << 0;
    /// Memory Space: the function answers accesses to its memory BARs.
    pub const MEMORY_SPACE: u16 = 1 << 1;
    /// Bus Master: the function may start transactions of its own (DMA).
    pub const BUS_MASTER: u16 = 1 << 2;
}
