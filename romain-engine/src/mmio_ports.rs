//! The ports a replica group's port instructions reach: performed once, through
//! `mmio:port/<first>-<last>`, which checks each access against the driver's policy.

use std::io;

use driver_policy::PortRange;
use mmio_scheme::open_path::{RegisterTarget, Target};
use scheme_runtime::Handle;
use syscall::flag::O_RDWR;

use crate::trap::{PortDevice, Width};

/// What an `in` reads when the access cannot be made: an unclaimed ISA port floats high.
const FLOATING: u32 = u32::MAX;

/// An `mmio:` handle on one port range, used on behalf of a replicated driver.
pub struct MmioPorts {
    handle: Handle,
    range: PortRange,
}

impl MmioPorts {
    /// Opens `range` for the driver whose policy rule is `label`; `mmio:` lets only
    /// uid 0 act for another driver, and only for what that driver's rule grants.
    pub fn open(range: PortRange, label: Option<&str>) -> io::Result<Self> {
        let ports = Target::Registers(RegisterTarget::Ports(range));
        let handle = mmio_scheme::client::open(ports, label, O_RDWR)?;
        Ok(Self { handle, range })
    }

    /// The offset of `port` in the range, if the whole access lies inside it.
    fn offset(&self, port: u16, width: Width) -> Option<u64> {
        let last = u64::from(port) + width.bytes() - 1;
        (port >= self.range.first() && last <= u64::from(self.range.last()))
            .then(|| u64::from(port - self.range.first()))
    }
}

impl PortDevice for MmioPorts {
    fn read(&mut self, port: u16, width: Width) -> u32 {
        let Some(offset) = self.offset(port, width) else {
            log::warn!(
                "replicas read port {port:#x}, outside {}: refused",
                self.range
            );
            return FLOATING;
        };
        let mut bytes = [0; 4];
        let len = width.bytes() as usize;
        match self.handle.read_at(&mut bytes[..len], offset) {
            Ok(read) if read == len => u32::from_le_bytes(bytes),
            Ok(read) => {
                log::warn!("mmio: read {read} of {len} bytes at port {port:#x}");
                FLOATING
            }
            Err(error) => {
                log::warn!("mmio: read of port {port:#x} failed: {error}");
                FLOATING
            }
        }
    }

    fn write(&mut self, port: u16, width: Width, value: u32) {
        let Some(offset) = self.offset(port, width) else {
            log::warn!(
                "replicas wrote port {port:#x}, outside {}: refused",
                self.range
            );
            return;
        };
        let len = width.bytes() as usize;
        if let Err(error) = self.handle.write_at(&value.to_le_bytes()[..len], offset) {
            log::warn!("mmio: write of port {port:#x} failed: {error}");
        }
    }
}
