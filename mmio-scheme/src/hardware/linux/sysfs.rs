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

/// The kernel driver that hands a function's INTx interrupt to user space.
const UIO_DRIVER: &str = "uio_pci_generic";

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

    /// The UIO device (`uioN`) that serves this function's interrupt. A
    /// function no kernel driver holds is bound to `uio_pci_generic` first
    /// (through `driver_override`, for this function alone); one another
    /// driver holds is refused: its interrupt is that driver's.
    pub fn uio_device(&self) -> io::Result<String> {
        if let Some(name) = self.uio_name()? {
            return Ok(name);
        }
        match fs::read_link(self.dir.join("driver")) {
            Ok(driver) => {
                let name = driver.file_name().map(|n| n.to_string_lossy().into_owned());
                return Err(io::Error::new(
                    io::ErrorKind::ResourceBusy,
                    format!(
                        "{} is held by the kernel driver {}, not {UIO_DRIVER}",
                        self.bdf,
                        name.unwrap_or_default()
                    ),
                ));
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(error),
        }
        fs::write(self.dir.join("driver_override"), UIO_DRIVER)?;
        // Beside `devices/`, taken lexically: a function's directory is a
        // symlink into the device tree, where `..` leads elsewhere.
        let probe = self
            .dir
            .parent()
            .and_then(Path::parent)
            .map(|bus| bus.join("drivers_probe"))
            .ok_or_else(|| invalid(format!("{}: no bus directory above it", self.bdf)))?;
        fs::write(&probe, self.bdf.to_string()).map_err(|error| {
            io::Error::new(
                error.kind(),
                format!(
                    "binding {} to {UIO_DRIVER}: {error} (is the module loaded?)",
                    self.bdf
                ),
            )
        })?;
        self.uio_name()?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{} has no UIO device after binding it to {UIO_DRIVER} (is the module \
                     loaded, and does the function mask INTx?)",
                    self.bdf
                ),
            )
        })
    }

    /// The function's configuration space, as a file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config")
    }

    /// The name in `uio/`, where the function has a UIO device.
    fn uio_name(&self) -> io::Result<Option<String>> {
        let entries = match fs::read_dir(self.dir.join("uio")) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error),
        };
        for entry in entries {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if name.starts_with("uio") {
                return Ok(Some(name));
            }
        }
        Ok(None)
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
            .open(self.config_path())?;
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

    fn function(name: &str) -> (PathBuf, SysfsFunction) {
        let root = std::env::temp_dir().join(format!("mmio-uio-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let devices = root.join("devices");
        let bdf: Bdf = "0000:00:03.0".parse().unwrap();
        fs::create_dir_all(devices.join(bdf.to_string())).unwrap();
        let function = SysfsFunction::open(&devices, bdf).unwrap();
        (root, function)
    }

    #[test]
    fn a_free_function_is_bound_to_uio_and_a_bound_one_is_found() {
        let (root, function) = function("free");
        // The probe fails here (a plain directory has no kernel behind it): the
        // override was written, and the error says what to check.
        let error = function.uio_device().unwrap_err();
        assert!(
            error.to_string().contains("is the module loaded"),
            "{error}"
        );
        assert_eq!(
            fs::read_to_string(function.dir.join("driver_override")).unwrap(),
            "uio_pci_generic"
        );
        fs::write(root.join("drivers_probe"), "").unwrap();
        let error = function.uio_device().unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotFound, "{error}");
        assert_eq!(
            fs::read_to_string(root.join("drivers_probe")).unwrap(),
            "0000:00:03.0"
        );
        fs::create_dir_all(function.dir.join("uio/uio2")).unwrap();
        assert_eq!(function.uio_device().unwrap(), "uio2");
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_function_another_driver_holds_keeps_its_interrupt() {
        let (root, function) = function("held");
        std::os::unix::fs::symlink("../../drivers/e1000", function.dir.join("driver")).unwrap();
        let error = function.uio_device().unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::ResourceBusy);
        assert_eq!(
            error.to_string(),
            "0000:00:03.0 is held by the kernel driver e1000, not uio_pci_generic"
        );
        assert!(!function.dir.join("driver_override").exists());
        fs::remove_dir_all(&root).unwrap();
    }

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
