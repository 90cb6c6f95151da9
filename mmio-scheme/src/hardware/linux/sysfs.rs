//! One PCI function in Linux sysfs (`/sys/bus/pci/devices/<bdf>/`): its ids,
//! its BARs (the `resource` table) and its command register (in `config`).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use driver_policy::{Bdf, DeviceId};

use crate::region::Space;

/// Where sysfs lists the PCI functions.
pub(super) const PCI_DEVICES: &str = "/sys/bus/pci/devices";

/// The PCI command register, in configuration space.
const COMMAND_OFFSET: u64 = 0x04;

/// Flags of a `resource` line (Linux `IORESOURCE_IO`, `IORESOURCE_MEM`).
const IORESOURCE_IO: u64 = 0x100;
const IORESOURCE_MEM: u64 = 0x200;

/// What the `resource` table says about one BAR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct BarResource {
    pub space: Space,
    pub len: u64,
}

pub(super) struct SysfsFunction {
    bdf: Bdf,
    dir: PathBuf,
}

impl SysfsFunction {
    pub fn open(devices: &Path, bdf: Bdf) -> io::Result<Self> {
        let dir = devices.join(bdf.to_string());
        if dir.is_dir() {
            Ok(Self { bdf, dir })
        } else {
            Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no PCI function {bdf}"),
            ))
        }
    }

    pub fn device_id(&self) -> io::Result<DeviceId> {
        Ok(DeviceId {
            vendor: self.read_id("vendor")?,
            device: self.read_id("device")?,
        })
    }

    fn read_id(&self, name: &str) -> io::Result<u16> {
        let text = fs::read_to_string(self.dir.join(name))?;
        text.trim()
            .strip_prefix("0x")
            .and_then(|hex| u16::from_str_radix(hex, 16).ok())
            .ok_or_else(|| invalid(format!("{bdf}: {name} reads {text:?}", bdf = self.bdf)))
    }

    pub fn bar(&self, bar: u8) -> io::Result<BarResource> {
        let table = fs::read_to_string(self.dir.join("resource"))?;
        let line = table.lines().nth(bar.into()).unwrap_or("");
        let (start, end, flags) = parse_resource_line(line)
            .ok_or_else(|| invalid(format!("{}: resource line {bar} reads {line:?}", self.bdf)))?;
        let space = resource_space(flags)
            .filter(|_| end > start)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("BAR {bar} of {} is not implemented", self.bdf),
                )
            })?;
        Ok(BarResource {
            space,
            len: end - start + 1,
        })
    }

    /// The file whose contents are the registers of BAR `bar`.
    pub fn resource_file(&self, bar: u8) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.dir.join(format!("resource{bar}")))
    }

    /// Sets `bits` in the command register (decoding, bus mastering); leaves the others.
    pub fn enable(&self, bits: u16) -> io::Result<()> {
        self.update_command(|old| old | bits)
    }

    /// Clears `bits` in the command register; leaves the others.
    pub fn disable(&self, bits: u16) -> io::Result<()> {
        self.update_command(|old| old & !bits)
    }

    /// Reads the command register and writes `change` of it back if that
    /// differs. The kernel's `config` file passes a 2-byte write at offset 4
    /// to the device as one configuration write of the command register.
    fn update_command(&self, change: impl FnOnce(u16) -> u16) -> io::Result<()> {
        let config = OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.dir.join("config"))?;
        let mut command = [0; 2];
        config.read_exact_at(&mut command, COMMAND_OFFSET)?;
        let old = u16::from_le_bytes(command);
        let new = change(old);
        if new != old {
            config.write_all_at(&new.to_le_bytes(), COMMAND_OFFSET)?;
            // The scheme's own line says why (a driver opened or closed a BAR).
            log::debug!("{}: command register {old:#06x} -> {new:#06x}", self.bdf);
        }
        Ok(())
    }
}

/// The address space that the flags of a `resource` line name.
fn resource_space(flags: u64) -> Option<Space> {
    if flags & IORESOURCE_MEM != 0 {
        Some(Space::Memory)
    } else if flags & IORESOURCE_IO != 0 {
        Some(Space::Port)
    } else {
        None
    }
}

/// `0x00000000febc0000 0x00000000febdffff 0x0000000000040200`: start, end, flags.
fn parse_resource_line(line: &str) -> Option<(u64, u64, u64)> {
    let mut fields = line.split_whitespace().map(|field| {
        field
            .strip_prefix("0x")
            .and_then(|hex| u64::from_str_radix(hex, 16).ok())
    });
    let parsed = (fields.next()??, fields.next()??, fields.next()??);
    fields.next().is_none().then_some(parsed)
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_lines() {
        assert_eq!(
            parse_resource_line("0x00000000febc0000 0x00000000febdffff 0x0000000000040200"),
            Some((0xfebc_0000, 0xfebd_ffff, 0x40200))
        );
        assert_eq!(parse_resource_line("0x0 0x0 0x0"), Some((0, 0, 0)));
        assert_eq!(parse_resource_line(""), None);
        assert_eq!(parse_resource_line("0x1 0x2"), None);
        assert_eq!(parse_resource_line("0x1 0x2 0x3 0x4"), None);
        assert_eq!(parse_resource_line("1 0x2 0x3"), None);
    }
}
