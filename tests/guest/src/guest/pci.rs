//! PCI functions as sysfs lists them, to learn which address a device has in the guest.
//! Listing needs no privilege; everything beyond that goes through `mmio:`.

use std::fs;
use std::io;
use std::path::Path;

use driver_policy::{Bdf, DeviceId};

/// Where the kernel lists PCI functions, one folder per bus/device/function address.
pub const SYSFS_PCI_DEVICES: &str = "/sys/bus/pci/devices";

/// One PCI function: its address and what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciFunction {
    pub bdf: Bdf,
    pub id: DeviceId,
}

/// Every function under `devices_dir`, ordered by address.
pub fn list(devices_dir: &Path) -> io::Result<Vec<PciFunction>> {
    let mut functions = fs::read_dir(devices_dir)?
        .map(|entry| read_function(&entry?.path()))
        .collect::<io::Result<Vec<_>>>()?;
    functions.sort_by_key(|function| function.bdf);
    Ok(functions)
}

/// The address of the first function that is an `id`.
pub fn find(devices_dir: &Path, id: DeviceId) -> io::Result<Bdf> {
    list(devices_dir)?
        .into_iter()
        .find(|function| function.id == id)
        .map(|function| function.bdf)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no PCI function {id} in {}", devices_dir.display()),
            )
        })
}

fn read_function(dir: &Path) -> io::Result<PciFunction> {
    let name = dir.file_name().unwrap_or_default().to_string_lossy();
    let bdf = name
        .parse()
        .map_err(|err| invalid_data(dir, format!("{err}")))?;
    let id = DeviceId {
        vendor: read_id(&dir.join("vendor"))?,
        device: read_id(&dir.join("device"))?,
    };
    Ok(PciFunction { bdf, id })
}

fn read_id(path: &Path) -> io::Result<u16> {
    let text = fs::read_to_string(path)?;
    let hex = text.trim().trim_start_matches("0x");
    u16::from_str_radix(hex, 16)
        .map_err(|_| invalid_data(path, format!("holds {text:?}, not a hex id")))
}

fn invalid_data(path: &Path, why: String) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{}: {why}", path.display()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const E1000: DeviceId = DeviceId {
        vendor: 0x8086,
        device: 0x100e,
    };

    /// A fake sysfs PCI folder; no real device is touched.
    fn fake_function(devices: &Path, address: &str, vendor: &str, device: &str) {
        let dir = devices.join(address);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("vendor"), format!("{vendor}\n")).unwrap();
        fs::write(dir.join("device"), format!("{device}\n")).unwrap();
    }

    #[test]
    fn lists_functions_in_address_order_and_finds_by_id() {
        let sysfs = tempfile::tempdir().unwrap();
        fake_function(sysfs.path(), "0000:00:03.0", "0x8086", "0x100e");
        fake_function(sysfs.path(), "0000:00:01.0", "0x8086", "0x7000");
        let functions = list(sysfs.path()).unwrap();
        let addresses: Vec<String> = functions.iter().map(|f| f.bdf.to_string()).collect();
        assert_eq!(addresses, ["0000:00:01.0", "0000:00:03.0"]);
        assert_eq!(functions[1].id, E1000);
        assert_eq!(
            find(sysfs.path(), E1000).unwrap().to_string(),
            "0000:00:03.0"
        );
    }

    #[test]
    fn missing_function_is_a_not_found_error_naming_the_ids() {
        let sysfs = tempfile::tempdir().unwrap();
        fake_function(sysfs.path(), "0000:00:01.0", "0x8086", "0x7000");
        let err = find(sysfs.path(), E1000).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains("8086:100e"), "{err}");
    }

    #[test]
    fn garbage_ids_and_names_are_invalid_data_errors() {
        let sysfs = tempfile::tempdir().unwrap();
        fake_function(sysfs.path(), "0000:00:01.0", "intel", "0x7000");
        let err = list(sysfs.path()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("not a hex id"), "{err}");

        let sysfs = tempfile::tempdir().unwrap();
        fake_function(sysfs.path(), "not-an-address", "0x8086", "0x7000");
        let err = list(sysfs.path()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
