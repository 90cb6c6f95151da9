//! PCI functions seen through sysfs: finding one by vendor and device id, enabling it
//! through its config space, and mapping a memory BAR, which is all a user-space driver
//! needs when no kernel driver is bound.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::num::NonZeroUsize;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;

use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};

/// Where the kernel lists PCI functions, one folder per bus/device/function address.
pub const SYSFS_PCI_DEVICES: &str = "/sys/bus/pci/devices";

/// Config space offset of the 16-bit Command register.
const COMMAND: u64 = 0x04;
/// Command register bit: respond to memory-space accesses (BARs).
pub const COMMAND_MEMORY_SPACE: u16 = 1 << 1;
/// Command register bit: allow the function to master the bus (DMA).
pub const COMMAND_BUS_MASTER: u16 = 1 << 2;

/// One PCI function's sysfs folder.
#[derive(Debug, Clone)]
pub struct PciFunction {
    dir: PathBuf,
}

impl PciFunction {
    /// The first function under `devices_dir` with this vendor and device id.
    pub fn find(devices_dir: &Path, vendor: u16, device: u16) -> io::Result<PciFunction> {
        let mut dirs: Vec<PathBuf> = fs::read_dir(devices_dir)?
            .map(|entry| entry.map(|e| e.path()))
            .collect::<io::Result<_>>()?;
        dirs.sort();
        for dir in dirs {
            if read_id(&dir.join("vendor"))? == vendor && read_id(&dir.join("device"))? == device {
                return Ok(PciFunction { dir });
            }
        }
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "no PCI function {vendor:04x}:{device:04x} in {}",
                devices_dir.display()
            ),
        ))
    }

    /// The bus/device/function address, e.g. `0000:00:03.0`.
    pub fn address(&self) -> String {
        self.dir
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// Sets `bits` in the Command register and returns the value read back.
    pub fn set_command_bits(&self, bits: u16) -> io::Result<u16> {
        let config = OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.dir.join("config"))?;
        let mut command = [0u8; 2];
        config.read_exact_at(&mut command, COMMAND)?;
        let enabled = u16::from_le_bytes(command) | bits;
        config.write_all_at(&enabled.to_le_bytes(), COMMAND)?;
        config.read_exact_at(&mut command, COMMAND)?;
        Ok(u16::from_le_bytes(command))
    }

    /// Maps all of memory BAR `bar` (its `resourceN` file).
    pub fn map_bar(&self, bar: u8) -> io::Result<Mmio> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.dir.join(format!("resource{bar}")))?;
        Mmio::map(&file)
    }
}

fn read_id(path: &Path) -> io::Result<u16> {
    let text = fs::read_to_string(path)?;
    let hex = text.trim().trim_start_matches("0x");
    u16::from_str_radix(hex, 16).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} holds {text:?}, not a hex id", path.display()),
        )
    })
}

/// A mapped register window; every access is bounds- and alignment-checked and volatile.
#[derive(Debug)]
pub struct Mmio {
    base: NonNull<u8>,
    len: usize,
}

impl Mmio {
    fn map(file: &File) -> io::Result<Mmio> {
        let len = usize::try_from(file.metadata()?.len())
            .ok()
            .and_then(NonZeroUsize::new);
        let len = len.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty BAR"))?;
        // SAFETY: a fresh shared mapping of the whole file; nothing else aliases it in Rust.
        let base = unsafe {
            mmap(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                file,
                0,
            )
        }?;
        Ok(Mmio {
            base: base.cast(),
            len: len.get(),
        })
    }

    /// Size of the window in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn read32(&self, offset: usize) -> io::Result<u32> {
        // SAFETY: `register` checked that the aligned word lies inside the mapping.
        Ok(unsafe { self.register(offset)?.read_volatile() })
    }

    pub fn write32(&self, offset: usize, value: u32) -> io::Result<()> {
        // SAFETY: as in read32.
        unsafe { self.register(offset)?.write_volatile(value) };
        Ok(())
    }

    fn register(&self, offset: usize) -> io::Result<*mut u32> {
        if !offset.is_multiple_of(4) || offset.checked_add(4).is_none_or(|end| end > self.len) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "register offset {offset:#x} is outside the {:#x}-byte window or misaligned",
                    self.len
                ),
            ));
        }
        // SAFETY: offset + 4 <= len, so the pointer stays inside the mapping.
        Ok(unsafe { self.base.as_ptr().add(offset).cast() })
    }
}

impl Drop for Mmio {
    fn drop(&mut self) {
        // SAFETY: base/len are exactly the mapping made in `map`, unmapped only here.
        if let Err(err) = unsafe { munmap(self.base.cast(), self.len) } {
            log::warn!("munmap of a BAR failed: {err}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake sysfs PCI folder; no real device is touched.
    fn fake_function(devices: &Path, address: &str, vendor: &str, device: &str) -> PathBuf {
        let dir = devices.join(address);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("vendor"), format!("{vendor}\n")).unwrap();
        fs::write(dir.join("device"), format!("{device}\n")).unwrap();
        dir
    }

    #[test]
    fn finds_the_function_with_matching_ids() {
        let sysfs = tempfile::tempdir().unwrap();
        fake_function(sysfs.path(), "0000:00:01.0", "0x8086", "0x7000");
        fake_function(sysfs.path(), "0000:00:03.0", "0x8086", "0x100e");
        let nic = PciFunction::find(sysfs.path(), 0x8086, 0x100e).unwrap();
        assert_eq!(nic.address(), "0000:00:03.0");
    }

    #[test]
    fn missing_function_is_a_not_found_error_naming_the_ids() {
        let sysfs = tempfile::tempdir().unwrap();
        fake_function(sysfs.path(), "0000:00:01.0", "0x8086", "0x7000");
        let err = PciFunction::find(sysfs.path(), 0x8086, 0x100e).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains("8086:100e"), "{err}");
    }

    #[test]
    fn garbage_id_file_is_an_invalid_data_error() {
        let sysfs = tempfile::tempdir().unwrap();
        fake_function(sysfs.path(), "0000:00:01.0", "intel", "0x7000");
        let err = PciFunction::find(sysfs.path(), 0x8086, 0x100e).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn command_bits_are_set_and_the_rest_of_config_space_is_kept() {
        let sysfs = tempfile::tempdir().unwrap();
        let dir = fake_function(sysfs.path(), "0000:00:03.0", "0x8086", "0x100e");
        let mut config: Vec<u8> = (0..64).collect();
        config[4..6].copy_from_slice(&0x0103u16.to_le_bytes());
        fs::write(dir.join("config"), &config).unwrap();

        let nic = PciFunction::find(sysfs.path(), 0x8086, 0x100e).unwrap();
        let command = nic
            .set_command_bits(COMMAND_MEMORY_SPACE | COMMAND_BUS_MASTER)
            .unwrap();
        assert_eq!(command, 0x0107);
        config[4..6].copy_from_slice(&0x0107u16.to_le_bytes());
        assert_eq!(fs::read(dir.join("config")).unwrap(), config);
    }

    #[test]
    fn mapped_window_reads_writes_and_rejects_bad_offsets() {
        let sysfs = tempfile::tempdir().unwrap();
        let dir = fake_function(sysfs.path(), "0000:00:03.0", "0x8086", "0x100e");
        let mut resource = vec![0u8; 4096];
        resource[8..12].copy_from_slice(&0x8008_0783u32.to_le_bytes());
        fs::write(dir.join("resource0"), &resource).unwrap();

        let nic = PciFunction::find(sysfs.path(), 0x8086, 0x100e).unwrap();
        let bar = nic.map_bar(0).unwrap();
        assert_eq!(bar.len(), 4096);
        assert_eq!(bar.read32(8).unwrap(), 0x8008_0783);
        bar.write32(0xffc, 0xdead_beef).unwrap();
        assert_eq!(bar.read32(0xffc).unwrap(), 0xdead_beef);
        for bad in [0x1000, 0xffe, 2, usize::MAX - 1] {
            let err = bar.read32(bad).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "offset {bad:#x}");
        }
        assert!(bar.write32(0x1000, 1).is_err());
        drop(bar);
        assert_eq!(
            &fs::read(dir.join("resource0")).unwrap()[0xffc..],
            &[0xef, 0xbe, 0xad, 0xde]
        );
    }

    #[test]
    fn empty_bar_is_refused() {
        let sysfs = tempfile::tempdir().unwrap();
        let dir = fake_function(sysfs.path(), "0000:00:03.0", "0x8086", "0x100e");
        fs::write(dir.join("resource0"), b"").unwrap();
        let nic = PciFunction::find(sysfs.path(), 0x8086, 0x100e).unwrap();
        assert_eq!(
            nic.map_bar(0).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }
}
